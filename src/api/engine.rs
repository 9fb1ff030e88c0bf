//! `TwinEngine`: one vLLM shared by the twins of one base model. Each TwinEndpoint that names it
//! (`engine.kind: shared`) has its adapter loaded into it at run time, under the endpoint's name,
//! and keeps its own gateway; a new or retrained adapter restarts nothing.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{BaseModel, StorageLocation};
use super::endpoint::{Autoscaling, Engine, Monitoring};

/// A vLLM engine that serves the LoRA adapters of every TwinEndpoint naming it, loaded and
/// unloaded at run time.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "llmtwin.dev",
    version = "v1alpha1",
    kind = "TwinEngine",
    namespaced,
    status = "TwinEngineStatus",
    shortname = "teng",
    category = "twin",
    doc = "A TwinEngine is one vLLM shared by the twins of one base model: every TwinEndpoint that names it (engine.kind shared) has its LoRA adapter loaded into it at run time, so a new or retrained twin restarts nothing and needs no GPU of its own.",
    printcolumn(
        name = "Phase",
        type_ = "string",
        json_path = ".status.phase",
        description = "Unused, Pending, Deploying, Ready, Idle, Degraded or Failed"
    ),
    printcolumn(
        name = "Base",
        type_ = "string",
        json_path = ".spec.baseModel.uri",
        description = "The base model it runs"
    ),
    printcolumn(
        name = "Adapters",
        type_ = "string",
        json_path = ".status.adapterSummary",
        description = "Adapters loaded/wanted"
    ),
    printcolumn(
        name = "Replicas",
        type_ = "string",
        json_path = ".status.replicas",
        description = "Ready/desired engine replicas"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.vllm.kind == 'vllm'").message("a TwinEngine runs vLLM: vllm.kind must be vllm (or unset)"))]
pub struct TwinEngineSpec {
    /// The base model every adapter loaded here was trained on (`hf://`, `s3://` or `pvc://`).
    pub base_model: BaseModel,
    /// How vLLM runs: image, GPUs, pod overrides, context length, extra arguments, model cache,
    /// shared memory (the fields of a TwinEndpoint's `engine`; `kind` is vllm).
    #[serde(default)]
    pub vllm: Engine,
    /// How many adapters it holds, and of which rank.
    #[serde(default)]
    pub adapters: AdapterSlots,
    /// Horizontal autoscaling of the engine on in-flight requests, as a TwinEndpoint's. With
    /// `minReplicas: 0` (and `keda`) it scales to zero while none of its twins is asked: it is
    /// `Idle`, and the first request to any of them wakes it (each twin's gateway holds requests
    /// up to `wakeSeconds` meanwhile). Unset runs one replica.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<Autoscaling>,
    /// Prometheus scraping of the engine.
    #[serde(default)]
    pub monitoring: Monitoring,
}

/// The adapters an engine holds.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.maxCpu >= self.maxLoaded").message("adapters.maxCpu must be at least adapters.maxLoaded"))]
pub struct AdapterSlots {
    /// Adapters in one batch on the GPU at once (vLLM's `--max-loras`); others wait in CPU
    /// memory and are swapped in by the requests that ask for them.
    #[serde(default = "default_max_loaded")]
    #[schemars(range(min = 1, max = 256))]
    pub max_loaded: u32,
    /// Adapters kept in CPU memory (vLLM's `--max-cpu-loras`); beyond, the least recently used
    /// is reloaded from the engine's disk when asked for.
    #[serde(default = "default_max_cpu")]
    #[schemars(range(min = 1, max = 4096))]
    pub max_cpu: u32,
    /// Largest LoRA rank accepted (vLLM's `--max-lora-rank`). Unset means the largest rank of
    /// the adapters loaded (16 when none says): a twin of a larger rank then restarts the
    /// engine once, to resize it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 512))]
    pub max_rank: Option<u32>,
    /// Where adapters are read from, for its S3 endpoint, region and credentials (S3 adapters
    /// outside `uri` are still read, with these settings). Unset means AWS S3 and the usual
    /// credential chain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<StorageLocation>,
}

fn default_max_loaded() -> u32 {
    4
}
fn default_max_cpu() -> u32 {
    16
}

impl Default for AdapterSlots {
    fn default() -> Self {
        Self { max_loaded: default_max_loaded(), max_cpu: default_max_cpu(), max_rank: None, store: None }
    }
}

/// The phase of a TwinEngine.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum EnginePhase {
    /// No TwinEndpoint names it: nothing runs.
    Unused,
    /// Its pods cannot start (no node with its GPUs, an image that cannot be pulled).
    Pending,
    /// Rolling out.
    Deploying,
    /// Serving; `status.adapters` says which adapters are loaded.
    Ready,
    /// Not every replica serves; the Ready condition says why.
    Degraded,
    /// Cannot run until its spec changes; the Ready condition says why.
    Failed,
    /// Scaled to zero while none of its twins is asked (`autoscaling.minReplicas: 0`): ready
    /// to wake on the first request.
    Idle,
}

/// The state of an adapter in the engine.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum AdapterState {
    /// Being fetched or loaded (or the engine is not up yet).
    Loading,
    /// Loaded on every ready replica.
    Loaded,
    /// The engine refused it, or it could not be fetched; `message` says why.
    Failed,
}

/// An adapter the engine serves for an endpoint.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EngineAdapter {
    /// The TwinEndpoint, whose name the adapter is served under.
    pub endpoint: String,
    /// The adapter.
    pub uri: String,
    /// Loading, Loaded or Failed.
    pub state: AdapterState,
    /// Replicas that have it loaded, out of the ready ones (`"2/2"`).
    pub replicas: String,
    /// Why it failed, or what it waits for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// The observed state of a TwinEngine.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct TwinEngineStatus {
    /// The spec generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// One-word summary: Unused, Pending, Deploying, Ready, Idle, Degraded or Failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<EnginePhase>,
    /// The engine's OpenAI-compatible base URL inside the cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Ready/desired replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<String>,
    /// Adapters loaded/wanted (`"3/3"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adapter_summary: Option<String>,
    /// Each endpoint's adapter and its state, by endpoint name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 4096))]
    pub adapters: Vec<EngineAdapter>,
    /// Standard conditions; `Ready` is always present.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
}
