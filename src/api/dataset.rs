//! `TwinDataset`: the person's writing, collected from its sources and turned into a retrieval
//! index and fine-tuning datasets by a Job.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{
    HTTP_URL_MESSAGE, HTTP_URL_RULE, MODEL_URI_MESSAGE, MODEL_URI_RULE, PodOverrides, STORAGE_URI_RULE,
    SecretKeyRef, StorageLocation,
};

/// The default embedding model: all-MiniLM-L6-v2 (384 dimensions).
pub const DEFAULT_EMBEDDING_MODEL: &str = "hf://sentence-transformers/all-MiniLM-L6-v2";

/// The writing of one person, collected, cleaned, chunked, embedded and turned into
/// fine-tuning datasets, published as a content-addressed revision.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "llmtwin.dev",
    version = "v1alpha1",
    kind = "TwinDataset",
    namespaced,
    status = "TwinDatasetStatus",
    shortname = "tds",
    category = "twin",
    doc = "A TwinDataset collects one person's writing from its sources (feeds, web pages, git repositories, export archives, ConfigMaps, files), cleans, chunks and embeds it, and writes the retrieval index and fine-tuning datasets as a versioned revision.",
    printcolumn(
        name = "Phase",
        type_ = "string",
        json_path = ".status.phase",
        description = "Pending, Running, Ready or Failed"
    ),
    printcolumn(
        name = "Revision",
        type_ = "string",
        json_path = ".status.revision",
        description = "Content hash of the published revision"
    ),
    printcolumn(
        name = "Documents",
        type_ = "integer",
        json_path = ".status.stats.documents",
        description = "Cleaned documents in the revision"
    ),
    printcolumn(
        name = "Chunks",
        type_ = "integer",
        json_path = ".status.stats.chunks",
        description = "Embedded chunks in the revision"
    ),
    printcolumn(
        name = "Author",
        type_ = "string",
        json_path = ".spec.author.name",
        priority = 1,
        description = "Whose writing this is"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.output.uri == oldSelf.output.uri").message("output.uri is immutable: published revisions live there; create a new TwinDataset to write elsewhere"))]
pub struct TwinDatasetSpec {
    /// The person whose writing this is.
    pub author: Author,
    /// Where the writing comes from: 1 to 32 sources, each with a unique name and exactly one
    /// of feed, git, web, archive, configMap or files.
    #[schemars(length(min = 1, max = 32))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub sources: Vec<DataSource>,
    /// How cleaned documents are split into chunks for retrieval and training.
    #[serde(default)]
    pub chunking: Chunking,
    /// The sentence-embedding model for the retrieval index.
    #[serde(default)]
    pub embedding: Embedding,
    /// Fine-tuning datasets (SFT instruction pairs, DPO preference triples). Unset means
    /// the instruction set is still derived from titles and headings with default settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instruct: Option<InstructSpec>,
    /// Where revisions are written: `<uri>/datasets/<name>/<revision>/`. Immutable.
    pub output: StorageLocation,
    /// Optional periodic refresh, in cron syntax (`0 4 * * *`) or a macro (`@daily`). An
    /// unchanged corpus yields the same revision, so nothing downstream restarts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128))]
    #[x_kube(validation = Rule::new(r"self.matches('^(@(yearly|annually|monthly|weekly|daily|midnight|hourly)|(\\S+\\s+){4}\\S+)$')").message("must be a cron expression of five fields (minute hour day-of-month month day-of-week) or @hourly, @daily, @weekly, @monthly, @yearly"))]
    pub schedule: Option<String>,
    /// Pod overrides for the build Job (image, resources, node selector, tolerations,
    /// service account).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<PodOverrides>,
}

/// The author of the writing.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
pub struct Author {
    /// Full name, as the twin should introduce itself.
    #[schemars(length(min = 1, max = 256))]
    pub name: String,
}

/// One place the writing comes from. Exactly one kind is set.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("(has(self.feed) ? 1 : 0) + (has(self.git) ? 1 : 0) + (has(self.web) ? 1 : 0) + (has(self.archive) ? 1 : 0) + (has(self.configMap) ? 1 : 0) + (has(self.files) ? 1 : 0) == 1").message("each source sets exactly one of feed, git, web, archive, configMap or files"))]
pub struct DataSource {
    /// A short name for the source, unique in this dataset (a DNS label); status reports per name.
    #[schemars(length(min = 1, max = 63), regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"))]
    pub name: String,
    /// An RSS or Atom feed (Substack, Medium, any blog).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feed: Option<FeedSource>,
    /// A git repository, cloned at a ref.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git: Option<GitSource>,
    /// Web pages, with links followed within the same site.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub web: Option<WebSource>,
    /// A data export (LinkedIn, Medium, Substack, WordPress, Ghost, or a zip of markdown files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive: Option<ArchiveSource>,
    /// A ConfigMap in the same namespace: each key is one document.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map: Option<ConfigMapSource>,
    /// Files under a folder: `pvc://claim/path` in cluster, `file:///path` locally.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<FilesSource>,
}

/// An RSS or Atom feed.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct FeedSource {
    /// URL of the feed.
    #[schemars(length(min = 1, max = 2048))]
    #[x_kube(validation = Rule::new(HTTP_URL_RULE).message(HTTP_URL_MESSAGE))]
    pub url: String,
    /// Most entries taken from the feed, newest first.
    #[serde(default = "default_feed_max_items")]
    #[schemars(range(min = 1, max = 10000))]
    pub max_items: u32,
}

fn default_feed_max_items() -> u32 {
    500
}

/// A git repository.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct GitSource {
    /// Clone URL (https:// or ssh://).
    #[schemars(length(min = 1, max = 2048))]
    #[x_kube(validation = Rule::new(r"self.matches('^(https?|ssh)://[^\\s]+$')").message("must be an https://, http:// or ssh:// clone URL"))]
    pub url: String,
    /// Branch, tag or commit to clone.
    #[serde(default = "default_git_ref")]
    #[schemars(length(min = 1, max = 256))]
    pub r#ref: String,
    /// Glob patterns of files to take, relative to the repository root.
    #[serde(default = "default_git_include")]
    #[schemars(length(max = 64))]
    pub include: Vec<String>,
    /// Glob patterns of files to skip, after `include`. Binaries and vendored folders are
    /// always skipped.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub exclude: Vec<String>,
    /// A Secret key holding a token for private repositories (used as the HTTPS password).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_secret_ref: Option<SecretKeyRef>,
}

fn default_git_ref() -> String {
    "HEAD".into()
}

fn default_git_include() -> Vec<String> {
    vec!["**/*.md".into(), "**/*.markdown".into(), "**/*.rst".into(), "**/*.txt".into()]
}

/// Web pages, crawled within their own site.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebSource {
    /// Start pages, each an http:// or https:// URL.
    #[schemars(length(min = 1, max = 100))]
    pub urls: Vec<WebUrl>,
    /// Most pages fetched in all, start pages included.
    #[serde(default = "default_max_pages")]
    #[schemars(range(min = 1, max = 10000))]
    pub max_pages: u32,
    /// How many links deep to follow from a start page, on the same host only; 0 fetches only
    /// the start pages.
    #[serde(default)]
    #[schemars(range(min = 0, max = 10))]
    pub max_depth: u32,
}

/// An http:// or https:// URL.
// An OpenAPI pattern, not a CEL rule: the API server multiplies a rule's cost by every enclosing
// list's maxItems, and a regex rule on up to 32 sources of 100 URLs cost 1.8 times its budget.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(transparent)]
pub struct WebUrl(
    #[schemars(length(min = 1, max = 2048), regex(pattern = crate::api::common::HTTP_URL_PATTERN))] pub String,
);

fn default_max_pages() -> u32 {
    50
}

/// An export archive.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ArchiveSource {
    /// Where the archive is: `s3://`, `pvc://`, `file://`, or an `https://` URL.
    #[schemars(length(min = 1, max = 2048))]
    #[x_kube(validation = Rule::new(format!("{STORAGE_URI_RULE} || {HTTP_URL_RULE}")).message("must be an s3://, pvc://, file://, http:// or https:// URI"))]
    pub uri: String,
    /// Layout of the archive.
    pub format: ArchiveFormat,
}

/// The layouts of export archives understood.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ArchiveFormat {
    /// A LinkedIn data export: `Shares.csv` and `Articles/*.html`.
    Linkedin,
    /// A Medium export: `posts/*.html`.
    Medium,
    /// A Substack export: `posts.csv` and `posts/*.html`.
    Substack,
    /// A zip of markdown files.
    Markdown,
    /// A WordPress export (Tools → Export): its WXR file (`.xml`), or a zip of them. Published
    /// posts and pages; drafts, attachments and comments are left out.
    Wordpress,
    /// A Ghost export (Settings → Import/Export): its `.json` file, or a zip holding it.
    /// Published posts and pages.
    Ghost,
}

/// A ConfigMap of documents.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
pub struct ConfigMapSource {
    /// Name of the ConfigMap, in the same namespace.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Keys to take. Empty means every key.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    pub keys: Vec<String>,
}

/// Files under a folder.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct FilesSource {
    /// The folder: `pvc://claim/sub/path` in cluster, `file:///absolute/path` locally.
    #[schemars(length(min = 1, max = 2048))]
    #[x_kube(validation = Rule::new("self.startsWith('pvc://') || self.startsWith('file:///')").message("must be pvc://claim/sub/path or file:///absolute/path"))]
    pub uri: String,
    /// Glob patterns of files to take, relative to the folder.
    #[serde(default = "default_files_include")]
    #[schemars(length(max = 64))]
    pub include: Vec<String>,
    /// Glob patterns of files to skip, after `include`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub exclude: Vec<String>,
}

fn default_files_include() -> Vec<String> {
    vec!["**/*.md".into(), "**/*.markdown".into(), "**/*.txt".into(), "**/*.html".into()]
}

/// Token-aware chunking.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.overlapTokens < self.maxTokens").message("overlapTokens must be less than maxTokens"))]
pub struct Chunking {
    /// Most tokens in a chunk, counted with the embedding model's tokenizer.
    #[serde(default = "default_max_tokens")]
    #[schemars(range(min = 16, max = 8192))]
    pub max_tokens: u32,
    /// Tokens shared by consecutive chunks of a document.
    #[serde(default = "default_overlap_tokens")]
    #[schemars(range(min = 0, max = 4096))]
    pub overlap_tokens: u32,
}

fn default_max_tokens() -> u32 {
    256
}

fn default_overlap_tokens() -> u32 {
    32
}

impl Default for Chunking {
    fn default() -> Self {
        Self { max_tokens: default_max_tokens(), overlap_tokens: default_overlap_tokens() }
    }
}

/// The sentence-embedding model.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Embedding {
    /// Model URI: `hf://org/name` or a folder with config.json, model.safetensors and
    /// tokenizer.json at `s3://`, `pvc://` or `file://`.
    #[serde(default = "default_embedding_model")]
    #[schemars(length(min = 1, max = 2048))]
    #[x_kube(validation = Rule::new(MODEL_URI_RULE).message(MODEL_URI_MESSAGE))]
    pub model: String,
    /// Chunks embedded per forward pass.
    #[serde(default = "default_embedding_batch")]
    #[schemars(range(min = 1, max = 1024))]
    pub batch_size: u32,
}

fn default_embedding_model() -> String {
    DEFAULT_EMBEDDING_MODEL.into()
}

fn default_embedding_batch() -> u32 {
    32
}

impl Default for Embedding {
    fn default() -> Self {
        Self { model: default_embedding_model(), batch_size: default_embedding_batch() }
    }
}

/// The fine-tuning datasets.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!self.preference || has(self.generator)").message("preference pairs need a generator: it writes the rejected answers"))]
pub struct InstructSpec {
    /// An OpenAI-compatible chat API that writes instructions (and rejected answers for DPO).
    /// Unset means instructions are derived from titles and headings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generator: Option<Generator>,
    /// Instruction/answer samples made from each training passage (the author's text cut at
    /// paragraph, sentence or code-line boundaries, without overlap; each instruction has one
    /// answer).
    #[serde(default = "default_samples_per_chunk")]
    #[schemars(range(min = 1, max = 16))]
    pub samples_per_chunk: u32,
    /// Share of samples held out as the test split (deterministic by passage, so that no answer
    /// is in both splits).
    #[serde(default = "default_test_fraction")]
    #[schemars(range(min = 0.0, max = 0.5))]
    pub test_fraction: f64,
    /// Also build prompt/chosen/rejected triples for DPO. Needs a generator.
    #[serde(default)]
    pub preference: bool,
}

fn default_samples_per_chunk() -> u32 {
    2
}

fn default_test_fraction() -> f64 {
    0.1
}

/// An OpenAI-compatible chat completions API.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Generator {
    /// Base URL of the API, up to and including `/v1`. Requests go through the crawlers'
    /// address guard: an API on a private or in-cluster address needs its network in the
    /// operator's `crawler.allowNetworks`.
    #[schemars(length(min = 1, max = 2048))]
    #[x_kube(validation = Rule::new(HTTP_URL_RULE).message(HTTP_URL_MESSAGE))]
    pub url: String,
    /// Model name passed to the API.
    #[schemars(length(min = 1, max = 256))]
    pub model: String,
    /// A Secret key holding the API key, sent as a bearer token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_secret_ref: Option<SecretKeyRef>,
}

/// The phase of a TwinDataset.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum DatasetPhase {
    /// Accepted; no build has started yet.
    Pending,
    /// A build Job is running.
    Running,
    /// A revision is published.
    Ready,
    /// The last build failed; see the Ready condition.
    Failed,
}

/// The observed state of a TwinDataset.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct TwinDatasetStatus {
    /// The spec generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// One-word summary: Pending, Running, Ready or Failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<DatasetPhase>,
    /// Content hash of the cleaned documents and processing parameters of the published
    /// revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// When the published revision was built.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_build_time: Option<Time>,
    /// Counts of the published revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats: Option<DatasetStats>,
    /// What each source yielded in the last build.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub sources: Vec<SourceStatus>,
    /// URIs of the published revision's artifacts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifacts: Option<DatasetArtifacts>,
    /// Standard conditions; `Ready` is always present.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
}

/// Counts of a revision.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DatasetStats {
    /// Cleaned, deduplicated documents.
    pub documents: u64,
    /// Chunks (one embedding each).
    pub chunks: u64,
    /// SFT samples (train and test).
    pub instruct_samples: u64,
    /// DPO samples (train and test).
    pub preference_samples: u64,
}

/// What one source yielded.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct SourceStatus {
    /// The source's name in the spec.
    pub name: String,
    /// Documents kept from this source.
    pub documents: u64,
    /// Why the source failed, if it did. The other sources still count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// URIs of a revision's artifacts.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct DatasetArtifacts {
    /// The revision's folder; `manifest.json` in it is written last.
    pub root: String,
    /// `documents.jsonl`.
    pub documents: String,
    /// `chunks.jsonl`.
    pub chunks: String,
    /// `embeddings.safetensors`.
    pub embeddings: String,
    /// `instruct/` (TRL SFT format).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instruct: Option<String>,
    /// `preference/` (TRL DPO format).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preference: Option<String>,
}
