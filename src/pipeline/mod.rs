//! The dataset pipeline that a TwinDataset's Job runs (`twin dataset build`): collect → clean →
//! chunk → embed → fine-tuning datasets → artifacts, published as a content-addressed revision.

pub mod artifacts;
pub mod chunk;
pub mod clean;
pub mod collect;
pub mod command;
pub mod document;
pub mod findings;
pub mod generate;
pub mod instruct;
pub mod links;
pub mod passage;
pub mod progress;
pub mod title;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::Instant;

use serde_json::json;
use tracing::info;

use crate::api::TwinDataset;
use crate::api::dataset::{DatasetArtifacts, DatasetStats, SourceStatus};
use crate::contract::build_report::{DuplicateCounts, PublishedBuild, Timings};
use crate::embedding::revision::{
    CHUNKS, DOCUMENTS, EMBEDDINGS, LATEST, MANIFEST, embeddings_safetensors, read_embeddings,
};
use crate::embedding::{EmbedError, Embedder};
use crate::hashing::sha256_hex;
use crate::net::http::{FetchOptions, Fetcher};
use crate::storage::{ObjectStore, S3Options, StorageError, StorageUri};
use artifacts::{RevisionContent, write_revision};
use collect::CollectOptions;
use progress::Stage;

/// Bumped whenever a change of the pipeline changes its output for the same input: part of
/// every revision hash.
pub const PIPELINE_VERSION: &str = "twin-dataset/4";

/// How a build runs on this machine.
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// Where sources are mounted.
    pub collect: CollectOptions,
    /// Where `hf://` models are found.
    pub models_dir: Option<PathBuf>,
    /// How crawlers fetch: the address guard, User-Agent, timeouts and limits.
    pub fetch: FetchOptions,
    /// Where `hf://` models are downloaded from.
    pub hub: crate::storage::hub::HubOptions,
    /// Who is told how far the build is.
    pub progress: progress::Progress,
}

/// Why a build failed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The spec cannot be built as written.
    #[error("invalid spec: {0}")]
    InvalidSpec(String),
    /// No source yielded a usable document.
    #[error("no source yielded a usable document")]
    NoDocuments {
        /// What each source did.
        sources: Vec<SourceStatus>,
    },
    /// The embedding model failed.
    #[error(transparent)]
    Model(#[from] EmbedError),
    /// The embedding model could not be found or downloaded.
    #[error("{0}")]
    ModelDownload(String),
    /// Chunking failed.
    #[error("chunking failed: {0}")]
    Chunking(String),
    /// Reading or writing artifacts failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The generator API failed: nothing is published rather than a dataset missing samples.
    #[error("{0}")]
    Generator(String),
}

impl BuildError {
    /// A CamelCase reason for the dataset's condition.
    pub fn reason(&self) -> &'static str {
        match self {
            BuildError::InvalidSpec(_) => "InvalidSpec",
            BuildError::NoDocuments { .. } => "NoDocuments",
            BuildError::Model(_) => "EmbeddingModelFailed",
            BuildError::ModelDownload(_) => "EmbeddingModelUnavailable",
            BuildError::Chunking(_) => "ChunkingFailed",
            BuildError::Storage(_) => "StorageFailed",
            BuildError::Generator(_) => "GeneratorFailed",
        }
    }
}

fn revision_of(dataset: &TwinDataset, documents: &[document::Document]) -> String {
    let spec = &dataset.spec;
    let instruct = spec.instruct.as_ref();
    let params = json!({
        "pipeline": PIPELINE_VERSION,
        "author": spec.author.name,
        "chunking": spec.chunking,
        "embedding": spec.embedding.model,
        "samplesPerChunk": instruct.map(|i| i.samples_per_chunk).unwrap_or(2),
        "testFraction": instruct.map(|i| i.test_fraction).unwrap_or(0.1),
        "generator": instruct.and_then(|i| i.generator.as_ref()).map(|g| json!({"url": g.url, "model": g.model})),
        "preference": instruct.is_some_and(|i| i.preference),
    });
    let mut hasher_input = params.to_string();
    for document in documents {
        hasher_input.push('\n');
        hasher_input.push_str(&document.id);
        hasher_input.push('\n');
        hasher_input.push_str(document.title.as_deref().unwrap_or_default());
        hasher_input.push('\n');
        hasher_input.push_str(&document.text);
    }
    sha256_hex(hasher_input.as_bytes())[..16].to_string()
}

fn artifacts_of(root: &StorageUri, preference: bool) -> DatasetArtifacts {
    DatasetArtifacts {
        root: root.to_string(),
        documents: root.join(DOCUMENTS).to_string(),
        chunks: root.join(CHUNKS).to_string(),
        embeddings: root.join(EMBEDDINGS).to_string(),
        instruct: Some(root.join("instruct").to_string()),
        preference: preference.then(|| root.join("preference").to_string()),
    }
}

/// Runs the whole pipeline for a dataset.
pub async fn build(dataset: &TwinDataset, options: &BuildOptions) -> Result<PublishedBuild, BuildError> {
    let spec = &dataset.spec;
    let name = dataset
        .metadata
        .name
        .clone()
        .ok_or_else(|| BuildError::InvalidSpec("metadata.name is required".into()))?;
    let instruct = spec.instruct.as_ref();
    let preference = instruct.is_some_and(|i| i.preference);
    if preference && instruct.is_some_and(|i| i.generator.is_none()) {
        return Err(BuildError::InvalidSpec(
            "instruct.preference needs instruct.generator: it writes the rejected answers".into(),
        ));
    }
    let output: StorageUri = spec.output.uri.parse()?;
    let s3 = S3Options { endpoint_url: spec.output.endpoint_url.clone(), region: spec.output.region.clone() };
    let collect_options = CollectOptions { s3: s3.clone(), ..options.collect.clone() };
    let store = ObjectStore::open(&output, &options.collect.pvc_root, &s3).await?;
    let mut timings = Timings::default();

    let fetcher = Fetcher::new(options.fetch.clone()).map_err(BuildError::InvalidSpec)?;
    let generator = match instruct.and_then(|i| i.generator.as_ref()) {
        Some(generator) => Some(
            generate::GeneratorClient::new(generator, fetcher.clone()).map_err(BuildError::InvalidSpec)?,
        ),
        None => None,
    };
    let started = Instant::now();
    let mut documents = Vec::new();
    let mut sources = Vec::new();
    let collecting = options.progress.stage(Stage::Collecting, spec.sources.len() as u64);
    for (done, source) in spec.sources.iter().enumerate() {
        collecting.at(done as u64);
        let collected = collect::collect(source, &collect_options, &fetcher).await;
        match collected.result {
            Ok(found) => {
                info!(source = %collected.source, documents = found.len(), "collected");
                sources.push(SourceStatus {
                    name: collected.source,
                    documents: found.len() as u64,
                    error: None,
                });
                documents.extend(found);
            }
            Err(error) => {
                tracing::warn!(source = %collected.source, "source failed: {error}");
                sources.push(SourceStatus { name: collected.source, documents: 0, error: Some(error) });
            }
        }
    }
    collecting.finish();
    timings.collect = started.elapsed().as_secs_f64();

    let started = Instant::now();
    let (documents, clean_stats, removed_documents) = clean::clean(documents);
    timings.clean = started.elapsed().as_secs_f64();
    // Per-source counts are of the documents that survived cleaning.
    let mut kept: HashMap<&str, u64> = HashMap::new();
    for document in &documents {
        *kept.entry(document.source.as_str()).or_default() += 1;
    }
    for source in &mut sources {
        source.documents = kept.get(source.name.as_str()).copied().unwrap_or(0);
    }
    info!(kept = documents.len(), dropped = clean_stats.input - documents.len(), "cleaned");
    if documents.is_empty() {
        return Err(BuildError::NoDocuments { sources });
    }

    let revision = revision_of(dataset, &documents);
    let prefix = format!("datasets/{name}/{revision}");
    let root = output.join(&prefix);
    if let Some(manifest) = store.read(&format!("{prefix}/{MANIFEST}")).await? {
        let manifest: serde_json::Value = serde_json::from_slice(&manifest).unwrap_or_default();
        let stats = serde_json::from_value(manifest["stats"].clone()).unwrap_or_default();
        let quality = serde_json::from_value(manifest["quality"].clone()).unwrap_or_default();
        info!(%revision, "revision already published: nothing to write");
        mark_latest(&store, &name, &revision).await?;
        return Ok(PublishedBuild {
            revision,
            unchanged: true,
            stats,
            sources,
            artifacts: artifacts_of(&root, preference),
            clean: clean_stats,
            embedded_chunks: 0,
            quality,
            timings: Some(timings),
        });
    }

    let started = Instant::now();
    let model_dir = crate::embedding::resolve_model(
        &spec.embedding.model,
        options.models_dir.as_deref(),
        &options.hub,
        &fetcher,
    )
    .await
    .map_err(BuildError::ModelDownload)?;
    let embedder = Embedder::load(&model_dir)?;
    timings.load_model = started.elapsed().as_secs_f64();

    let started = Instant::now();
    let max_tokens =
        (spec.chunking.max_tokens as usize).min(embedder.max_seq_length).saturating_sub(2).max(8);
    let overlap = (spec.chunking.overlap_tokens as usize).min(max_tokens / 2);
    let counter = embedder.tokenizer_for_counting();
    let chunks =
        chunk::chunk_documents(&documents, &counter, max_tokens, overlap).map_err(BuildError::Chunking)?;
    timings.chunk = started.elapsed().as_secs_f64();
    info!(chunks = chunks.len(), max_tokens, overlap, "chunked");

    let started = Instant::now();
    let cache_key = format!(
        "datasets/{name}/cache/embeddings-{}.safetensors",
        &sha256_hex(spec.embedding.model.as_bytes())[..12]
    );
    let mut cache: HashMap<String, Vec<f32>> = load_cache(&store, &cache_key).await;
    let hashes: Vec<String> = chunks.iter().map(chunk::Chunk::content_hash).collect();
    let missing: Vec<usize> = (0..chunks.len()).filter(|i| !cache.contains_key(&hashes[*i])).collect();
    let texts: Vec<&str> = missing.iter().map(|i| chunks[*i].text.as_str()).collect();
    let embedding = options.progress.stage(Stage::Embedding, texts.len() as u64);
    let fresh = embedder
        .embed_with_progress(&texts, spec.embedding.batch_size as usize, |done| embedding.at(done as u64))?;
    embedding.finish();
    for (index, vector) in missing.iter().zip(fresh) {
        cache.insert(hashes[*index].clone(), vector);
    }
    let embeddings: Vec<Vec<f32>> = hashes.iter().map(|h| cache[h].clone()).collect();
    timings.embed = started.elapsed().as_secs_f64();
    info!(embedded = missing.len(), cached = chunks.len() - missing.len(), "embedded");

    let samples_per_chunk = instruct.map(|i| i.samples_per_chunk).unwrap_or(2) as usize;
    let test_fraction = instruct.map(|i| i.test_fraction).unwrap_or(0.1);
    options.progress.stage(Stage::Samples, 0).finish();
    let started = Instant::now();
    let count_tokens = |text: &str| counter.encode(text, false).map(|e| e.len()).unwrap_or(text.len() / 3);
    let own_hosts = own_hosts(&documents);
    let passages: Vec<passage::Passage> = {
        use rayon::prelude::*;
        let per_document: Vec<Vec<passage::Passage>> = documents
            .par_iter()
            .map(|d| passage::passages(d, &own_hosts, max_tokens, &count_tokens))
            .collect();
        per_document.into_iter().flatten().collect()
    };
    let (sft, preference_samples, mut quality) =
        match (&generator, instruct.and_then(|i| i.generator.as_ref())) {
            (Some(client), Some(generator_spec)) => {
                let key = generate::cache_key(&name, generator_spec, samples_per_chunk, preference);
                let answers: Vec<&str> =
                    passages.iter().filter(|p| p.at_boundaries).map(|p| p.text.as_str()).collect();
                let (generated, asked) = generate::generate(
                    client,
                    &store,
                    &key,
                    &spec.author.name,
                    &answers,
                    samples_per_chunk,
                    preference,
                )
                .await
                .map_err(BuildError::Generator)?;
                info!(asked, "generated instructions");
                instruct::from_generated(
                    &spec.author.name,
                    &passages,
                    &generated,
                    test_fraction,
                    &count_tokens,
                )
            }
            _ => {
                let (sft, quality) = instruct::derive_sft(
                    &spec.author.name,
                    &documents,
                    &passages,
                    samples_per_chunk,
                    test_fraction,
                    &count_tokens,
                );
                (sft, Vec::new(), quality)
            }
        };
    quality.duplicates = DuplicateCounts {
        exact: clean_stats.exact_duplicates,
        near: clean_stats.near_duplicates,
        contained: clean_stats.contained_duplicates,
    };
    let faults = findings::Faults::of(sft.iter().filter_map(instruct::answer_of), &own_hosts);
    quality.answers_with_link_syntax = faults.link_syntax;
    quality.answers_with_anchors = faults.anchors;
    quality.answers_with_site_urls = faults.site_urls;
    quality.answers_starting_mid_sentence = faults.mid_sentence;
    for copy in &removed_documents {
        *quality.cross_posts.entry(format!("{}->{}", copy.route, copy.kept_route)).or_default() += 1;
    }
    timings.generate = started.elapsed().as_secs_f64();
    info!(
        samples = quality.samples,
        distinct_instructions = quality.distinct_instructions,
        dropped = quality.dropped.values().sum::<usize>(),
        "fine-tuning samples made"
    );

    let stats = DatasetStats {
        documents: documents.len() as u64,
        chunks: chunks.len() as u64,
        instruct_samples: sft.len() as u64,
        preference_samples: preference_samples.len() as u64,
    };
    let source_counts: BTreeMap<&str, u64> = sources.iter().map(|s| (s.name.as_str(), s.documents)).collect();
    let manifest = json!({
        "revision": revision,
        "dataset": name,
        "author": spec.author.name,
        "pipeline": PIPELINE_VERSION,
        "created": k8s_openapi::jiff::Timestamp::now().round(k8s_openapi::jiff::Unit::Second).unwrap().to_string(),
        "params": {"chunking": spec.chunking, "embedding": {"model": spec.embedding.model, "dimension": embedder.dimension},
                   "instruct": {"samplesPerChunk": samples_per_chunk, "testFraction": test_fraction,
                                "generator": instruct.and_then(|i| i.generator.as_ref()).map(|g| json!({"url": g.url, "model": g.model})),
                                "preference": preference}},
        "stats": stats,
        "quality": quality,
        "removedDocuments": removed_documents,
        "sources": sources,
        "sourceDocuments": source_counts,
    });
    options.progress.stage(Stage::Publishing, 0).finish();
    let started = Instant::now();
    let content = RevisionContent {
        documents: &documents,
        chunks: &chunks,
        embeddings: &embeddings,
        dimension: embedder.dimension,
        sft: &sft,
        preference: &preference_samples,
        manifest: &manifest,
    };
    write_revision(&store, &prefix, &content).await?;
    // Keep only this revision's vectors: the cache grows with the corpus, not with history.
    let metadata = HashMap::from([("hashes".to_string(), hashes.join(","))]);
    store
        .write(&cache_key, &embeddings_safetensors("vectors", &embeddings, embedder.dimension, metadata))
        .await?;
    mark_latest(&store, &name, &revision).await?;
    timings.write = started.elapsed().as_secs_f64();
    info!(%revision, root = %root, "published");
    Ok(PublishedBuild {
        revision,
        unchanged: false,
        stats,
        sources,
        artifacts: artifacts_of(&root, preference),
        clean: clean_stats,
        embedded_chunks: missing.len(),
        quality,
        timings: Some(timings),
    })
}

/// The hosts of the author's own sites: those the dataset crawled or read feeds from.
fn own_hosts(documents: &[document::Document]) -> Vec<String> {
    let mut hosts: Vec<String> = documents
        .iter()
        .filter(|d| d.kind == "web" || d.kind == "feed")
        .filter_map(|d| d.url.as_deref().and_then(links::host_of))
        .collect();
    hosts.sort_unstable();
    hosts.dedup();
    hosts
}

/// Points the dataset's `LATEST` at `revision` (after its manifest is written), so that a gateway
/// given the dataset's folder serves it; rewritten only when it changes.
async fn mark_latest(store: &ObjectStore, name: &str, revision: &str) -> Result<(), StorageError> {
    let key = format!("datasets/{name}/{LATEST}");
    if store.read(&key).await?.as_deref() == Some(revision.as_bytes()) {
        return Ok(());
    }
    store.write(&key, revision.as_bytes()).await
}

/// The embedding cache: vectors by chunk content hash. A missing or unreadable cache is empty.
async fn load_cache(store: &ObjectStore, key: &str) -> HashMap<String, Vec<f32>> {
    let Ok(Some(bytes)) = store.read(key).await else { return HashMap::new() };
    let Ok((_, metadata)) = safetensors::SafeTensors::read_metadata(&bytes) else { return HashMap::new() };
    let hashes: Vec<String> = metadata
        .metadata()
        .as_ref()
        .and_then(|m| m.get("hashes"))
        .map(|h| h.split(',').map(String::from).collect())
        .unwrap_or_default();
    match read_embeddings(&bytes, "vectors") {
        Ok(vectors) if vectors.len() == hashes.len() => hashes.into_iter().zip(vectors).collect(),
        _ => HashMap::new(),
    }
}
