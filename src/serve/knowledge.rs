//! What a twin knows: one dataset revision's passages, vectors and BM25 index, and the
//! embedding model that wrote the vectors (loaded once per model). The gateway holds it behind
//! an atomic pointer: a new revision is loaded beside the old one and swapped in, and requests
//! already running finish on the one they started with.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwapOption;
use serde::Deserialize;
use tracing::{info, warn};

use super::index::{Index, Passage};
use crate::embedding::revision::{DOCUMENTS, LATEST, MANIFEST, read_revision};
use crate::embedding::{Embedder, resolve_model};
use crate::net::http::{FetchOptions, Fetcher};
use crate::storage::hub::HubOptions;
use crate::storage::{ObjectStore, S3Options, StorageUri};

/// A loaded revision.
pub struct Knowledge {
    /// The revision's id.
    pub revision: String,
    /// The dataset's name.
    pub dataset: String,
    /// The author the twin writes as.
    pub author: String,
    /// The embedding model's URI, as the manifest names it.
    pub embedding_model: String,
    /// The passages and their indexes.
    pub index: Index,
    /// The model that embeds questions (the one that embedded the passages).
    pub embedder: Arc<Embedder>,
}

/// Where a dataset is: a revision's folder, or a dataset's folder (the revision pinned by the
/// gateway's lineage file, else its newest, as named by its `LATEST`).
pub struct DatasetLocation {
    uri: String,
    store: ObjectStore,
    /// The last segment of the URI: the folder in `store`.
    folder: String,
    models_dir: Option<PathBuf>,
    /// The revision of a dataset's folder to serve instead of its `LATEST`.
    pinned: ArcSwapOption<String>,
}

/// Just what the gateway needs of `documents.jsonl`.
#[derive(Deserialize)]
struct DocumentHead {
    id: String,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    url: Option<String>,
}

impl DatasetLocation {
    /// Opens the store that holds `uri` (`file://`, `pvc://` or `s3://`).
    pub async fn open(
        uri: &str,
        pvc_root: &Path,
        s3: &S3Options,
        models_dir: Option<PathBuf>,
    ) -> Result<Self, String> {
        let trimmed = uri.trim_end_matches('/');
        let parsed: StorageUri = trimmed.parse().map_err(|e| format!("--dataset: {e}"))?;
        let (parent, folder) = trimmed
            .rsplit_once('/')
            .filter(|(parent, folder)| !folder.is_empty() && parent.len() > "s3://".len())
            .ok_or_else(|| {
                format!("--dataset {uri}: name a dataset's folder or a revision's, not the store's root")
            })?;
        let parent: StorageUri = match parsed {
            StorageUri::File { .. } if parent == "file://" => "file:///".parse(),
            _ => parent.parse(),
        }
        .map_err(|e| format!("--dataset: {e}"))?;
        let store = ObjectStore::open(&parent, pvc_root, s3).await.map_err(|e| e.to_string())?;
        Ok(Self {
            uri: trimmed.to_string(),
            store,
            folder: folder.to_string(),
            models_dir,
            pinned: ArcSwapOption::empty(),
        })
    }

    /// Serves `revision` of a dataset's folder from the next refresh on (unset: its newest).
    pub fn pin(&self, revision: Option<String>) {
        self.pinned.store(revision.map(Arc::new));
    }

    /// The URI as given.
    pub fn uri(&self) -> &str {
        &self.uri
    }

    /// The folder of the revision to serve now: the URI itself when it holds a manifest, else
    /// the revision pinned, else the one its `LATEST` names.
    pub async fn current(&self) -> Result<String, String> {
        let manifest = format!("{}/{MANIFEST}", self.folder);
        if self.store.read(&manifest).await.map_err(|e| e.to_string())?.is_some() {
            return Ok(self.folder.clone());
        }
        if let Some(pinned) = self.pinned.load_full() {
            return Ok(format!("{}/{}", self.folder, revision_name(&pinned, &self.uri, "the lineage file")?));
        }
        let latest = self
            .store
            .read(&format!("{}/{LATEST}", self.folder))
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| {
                format!(
                    "{} holds no dataset revision: neither {MANIFEST} (a revision's folder) nor {LATEST} (a dataset's \
                     folder, written by `twin dataset build`)",
                    self.uri
                )
            })?;
        let revision = String::from_utf8_lossy(&latest);
        Ok(format!("{}/{}", self.folder, revision_name(&revision, &self.uri, LATEST)?))
    }

    /// A file of the revision in `folder` (`instruct/test.jsonl`), if it has one.
    pub async fn read(&self, folder: &str, name: &str) -> Result<Option<Vec<u8>>, String> {
        self.store.read(&format!("{folder}/{name}")).await.map_err(|e| e.to_string())
    }

    /// Loads the revision in `folder`, reusing `previous`'s embedding model when it is the same.
    pub async fn load(
        &self,
        folder: &str,
        previous: Option<&Knowledge>,
        hub: &HubOptions,
    ) -> Result<Knowledge, String> {
        let started = Instant::now();
        let revision = read_revision(&self.store, folder)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("{}/{folder}: the revision has no {MANIFEST}", self.uri))?;
        let manifest = &revision.manifest;
        let text = |pointer: &str| manifest.pointer(pointer).and_then(|v| v.as_str()).map(str::to_string);
        let revision_id =
            text("/revision").unwrap_or_else(|| folder.rsplit('/').next().unwrap_or(folder).to_string());
        let embedding_model = text("/params/embedding/model")
            .ok_or_else(|| format!("{}/{folder}/{MANIFEST} names no params.embedding.model", self.uri))?;
        let documents = self.store.read(&format!("{folder}/{DOCUMENTS}")).await.map_err(|e| e.to_string())?;
        let mut heads = std::collections::HashMap::new();
        for line in documents.as_deref().unwrap_or_default().split(|&b| b == b'\n') {
            if let Ok(head) = serde_json::from_slice::<DocumentHead>(line) {
                heads.insert(head.id, (head.title, head.url));
            }
        }
        let passages: Vec<Passage> = revision
            .chunks
            .into_iter()
            .map(|chunk| {
                let (title, url) = heads.get(&chunk.document_id).cloned().unwrap_or_default();
                Passage { chunk_id: chunk.id, title, url, text: chunk.text }
            })
            .collect();
        let embedder = match previous {
            Some(previous) if previous.embedding_model == embedding_model => previous.embedder.clone(),
            _ => {
                let fetcher = Fetcher::new(FetchOptions::default())?;
                let folder =
                    resolve_model(&embedding_model, self.models_dir.as_deref(), hub, &fetcher).await?;
                let embedder = tokio::task::spawn_blocking(move || Embedder::load(&folder))
                    .await
                    .map_err(|e| format!("loading the embedding model panicked: {e}"))?
                    .map_err(|e| e.to_string())?;
                Arc::new(embedder)
            }
        };
        let vectors = revision.embeddings;
        if vectors.first().is_some_and(|v| v.len() != embedder.dimension) {
            return Err(format!(
                "{}/{folder}: the vectors have {} dimensions, the embedding model {embedding_model} writes {}",
                self.uri,
                vectors[0].len(),
                embedder.dimension
            ));
        }
        let index = tokio::task::spawn_blocking(move || Index::new(passages, vectors))
            .await
            .map_err(|e| format!("building the index panicked: {e}"))??;
        info!(
            revision = %revision_id,
            passages = index.len(),
            seconds = started.elapsed().as_secs_f64(),
            "loaded the dataset revision"
        );
        Ok(Knowledge {
            revision: revision_id,
            dataset: text("/dataset").unwrap_or_default(),
            author: text("/author").unwrap_or_default(),
            embedding_model,
            index,
            embedder,
        })
    }
}

/// A revision's name as `source` gives it, checked to be one folder of the dataset at `uri`.
fn revision_name<'a>(given: &'a str, uri: &str, source: &str) -> Result<&'a str, String> {
    let revision = given.trim();
    if revision.is_empty() || revision.contains('/') || revision.contains("..") {
        return Err(format!("{source} does not name a revision of {uri}: {revision:?}"));
    }
    Ok(revision)
}

/// The revision being served, swapped atomically.
#[derive(Default)]
pub struct Shelf {
    current: ArcSwapOption<Knowledge>,
    folder: std::sync::Mutex<Option<String>>,
}

impl Shelf {
    /// The knowledge to answer one request with (held for the whole request).
    pub fn get(&self) -> Option<Arc<Knowledge>> {
        self.current.load_full()
    }

    /// Loads the location's current revision when it is not the one served; returns whether it
    /// swapped. On failure the served revision stays.
    pub async fn refresh(&self, location: &DatasetLocation, hub: &HubOptions) -> Result<bool, String> {
        let folder = location.current().await?;
        if self.folder.lock().expect("not poisoned").as_deref() == Some(folder.as_str()) {
            return Ok(false);
        }
        let previous = self.get();
        let knowledge = location.load(&folder, previous.as_deref(), hub).await?;
        self.current.store(Some(Arc::new(knowledge)));
        *self.folder.lock().expect("not poisoned") = Some(folder);
        Ok(true)
    }
}

/// Keeps the shelf on the revision to serve: checks every `interval`, at each SIGHUP and when
/// `pinned` is told (the lineage file pinned another revision), and reports each outcome to
/// `on_refresh`.
pub async fn keep_fresh(
    shelf: Arc<Shelf>,
    location: Arc<DatasetLocation>,
    hub: HubOptions,
    interval: std::time::Duration,
    pinned: Arc<tokio::sync::Notify>,
    on_refresh: impl Fn(&Result<bool, String>) + Send + 'static,
) {
    #[cfg(unix)]
    let mut hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    loop {
        #[cfg(unix)]
        let hangup = async {
            match hangups.as_mut() {
                Some(signal) => {
                    signal.recv().await;
                }
                None => std::future::pending().await,
            }
        };
        #[cfg(not(unix))]
        let hangup = std::future::pending::<()>();
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = hangup => info!("SIGHUP: checking for a new dataset revision"),
            _ = pinned.notified() => info!("the lineage file pins another dataset revision"),
        }
        let outcome = shelf.refresh(&location, &hub).await;
        if let Err(error) = &outcome {
            warn!("cannot load the dataset's newest revision; still serving the last one: {error}");
        }
        on_refresh(&outcome);
    }
}
