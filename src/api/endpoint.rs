//! `TwinEndpoint`: the tuned model served by an inference engine behind a RAG gateway with an
//! OpenAI-compatible API, autoscaled and monitored.

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{
    BaseModel, HTTP_URL_MESSAGE, HTTP_URL_RULE, LocalObjectRef, MODEL_URI_MESSAGE, MODEL_URI_RULE,
    PodOverrides, STORAGE_URI_MESSAGE, STORAGE_URI_RULE, SecretKeyRef,
};

/// A served twin: an inference engine with the tuned adapter, behind a RAG gateway that
/// answers OpenAI-compatible requests with the author's own passages as context.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "llmtwin.dev",
    version = "v1alpha1",
    kind = "TwinEndpoint",
    namespaced,
    status = "TwinEndpointStatus",
    shortname = "tep",
    category = "twin",
    doc = "A TwinEndpoint serves a tuned twin: an inference engine (vLLM by default) with the LoRA adapter loaded, behind a RAG gateway with an OpenAI-compatible API, autoscaled and monitored.",
    printcolumn(
        name = "Phase",
        type_ = "string",
        json_path = ".status.phase",
        description = "Pending, Deploying, Ready, Idle, Degraded or Failed"
    ),
    printcolumn(
        name = "URL",
        type_ = "string",
        json_path = ".status.url",
        description = "The OpenAI-compatible base URL"
    ),
    printcolumn(
        name = "Engine",
        type_ = "string",
        json_path = ".status.replicas.engine",
        description = "Ready/desired engine replicas"
    ),
    printcolumn(
        name = "Gateway",
        type_ = "string",
        json_path = ".status.replicas.gateway",
        description = "Ready/desired gateway replicas"
    ),
    printcolumn(
        name = "Adapter",
        type_ = "string",
        json_path = ".status.model.adapterUri",
        priority = 1,
        description = "The adapter served"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.engine.kind != 'embedded' || !has(self.autoscaling) || self.autoscaling.maxReplicas == 1").message("the embedded engine runs in the gateway process and cannot be autoscaled: set autoscaling.maxReplicas to 1 or use vllm"),
    validation = Rule::new("self.engine.kind != 'external' || !has(self.autoscaling)").message("the external engine is scaled by whoever runs it: remove autoscaling, or scale the gateway with gateway.maxReplicas"),
    validation = Rule::new("self.engine.kind != 'shared' || !has(self.autoscaling)").message("a shared engine is scaled by its TwinEngine: remove autoscaling, or scale the gateway with gateway.maxReplicas")
)]
pub struct TwinEndpointSpec {
    /// The model to serve: `trainingJobRef` (a Succeeded TwinTrainingJob's adapter) or
    /// `baseModel` with an optional `adapterUri`.
    pub model: EndpointModel,
    /// The TwinDataset whose passages the gateway retrieves for every request. Unset serves the
    /// model without retrieval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset_ref: Option<LocalObjectRef>,
    /// The inference engine.
    #[serde(default)]
    pub engine: Engine,
    /// Horizontal autoscaling of the engine on in-flight requests. Unset runs one replica.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<Autoscaling>,
    /// The RAG gateway in front of the engine.
    #[serde(default)]
    pub gateway: Gateway,
    /// Prometheus scraping.
    #[serde(default)]
    pub monitoring: Monitoring,
}

/// The model to serve. Exactly one of `trainingJobRef` or `baseModel` is set.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("has(self.trainingJobRef) != has(self.baseModel)").message("set exactly one of model.trainingJobRef or model.baseModel"),
    validation = Rule::new("!has(self.adapterUri) || has(self.baseModel)").message("adapterUri goes with baseModel; a trainingJobRef brings its own adapter")
)]
pub struct EndpointModel {
    /// A TwinTrainingJob in the same namespace; its adapter and base model are served once it
    /// has Succeeded, and a newer run is rolled out when it succeeds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub training_job_ref: Option<LocalObjectRef>,
    /// A base model served as is, or with `adapterUri`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_model: Option<BaseModel>,
    /// A PEFT adapter for `baseModel`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2048))]
    #[x_kube(validation = Rule::new(MODEL_URI_RULE).message(MODEL_URI_MESSAGE))]
    pub adapter_uri: Option<String>,
}

/// The inference engine.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("(self.kind == 'external') == has(self.url)").message("url is required for, and only for, the external engine"),
    validation = Rule::new("(self.kind == 'shared') == has(self.engineRef)").message("engineRef is required for, and only for, the shared engine"),
    validation = Rule::new("self.kind == 'vllm' || !(has(self.image) || has(self.gpus) || has(self.maxModelLen) || has(self.extraArgs) || has(self.sharedMemory))").message("image, gpus, maxModelLen, extraArgs and sharedMemory apply only to the vllm engine"),
    validation = Rule::new("self.kind == 'vllm' || self.kind == 'embedded' || !has(self.modelCache)").message("modelCache applies to the vllm and embedded engines, which load a model (a shared engine's is its TwinEngine's)")
)]
pub struct Engine {
    /// `vllm` runs vLLM on GPUs; `shared` loads the adapter into the TwinEngine `engineRef`
    /// names, beside other twins of the same base model; `external` uses an existing
    /// OpenAI-compatible URL; `embedded` runs a small CPU model inside the gateway (local mode
    /// and demos).
    #[serde(default)]
    pub kind: EngineKind,
    /// vLLM image. Unset means the operator's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub image: Option<String>,
    /// GPUs per engine replica (tensor parallel size). Unset means 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 16))]
    pub gpus: Option<u32>,
    /// Resources, node selector, tolerations and service account of the engine pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<PodOverrides>,
    /// Longest context (prompt plus answer) in tokens. Unset means the model's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 128, max = 1048576))]
    pub max_model_len: Option<u32>,
    /// Extra command-line arguments for vLLM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub extra_args: Option<Vec<String>>,
    /// Where the engine keeps the models it downloads, so that a restarted pod does not
    /// download the base model again. Unset means an emptyDir (kept across container restarts,
    /// not across pods).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_cache: Option<ModelCache>,
    /// Size of the engine's `/dev/shm` (memory-backed; vLLM's tensor-parallel workers and
    /// PyTorch share tensors through it, and a pod's default is 64 MiB). Unset means 2Gi.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared_memory: Option<Quantity>,
    /// The external engine's OpenAI-compatible base URL, up to and including `/v1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2048))]
    #[x_kube(validation = Rule::new(HTTP_URL_RULE).message(HTTP_URL_MESSAGE))]
    pub url: Option<String>,
    /// The shared engine's TwinEngine, in the same namespace; its base model must be the one
    /// the adapter was trained on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine_ref: Option<LocalObjectRef>,
}

/// Where downloaded models are kept.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!(has(self.claimName) && has(self.sizeLimit))").message("sizeLimit bounds the emptyDir used without claimName; a claim's size is its own"))]
pub struct ModelCache {
    /// A PersistentVolumeClaim in the same namespace, mounted read-write by every engine
    /// replica (ReadWriteMany when there is more than one). Unset means an emptyDir.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub claim_name: Option<String>,
    /// Largest size of the emptyDir cache. Unset means no limit but the node's disk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_limit: Option<Quantity>,
}

/// The kinds of inference engine.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    /// vLLM on GPUs, with the LoRA adapter loaded.
    #[default]
    Vllm,
    /// The adapter loaded at run time into a TwinEngine shared with other twins.
    Shared,
    /// An existing OpenAI-compatible endpoint.
    External,
    /// A small CPU model inside the gateway.
    Embedded,
}

/// Horizontal autoscaling of the engine.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.minReplicas <= self.maxReplicas").message("minReplicas must not exceed maxReplicas"),
    validation = Rule::new("self.minReplicas > 0 || has(self.keda)").message("minReplicas 0 (scale to zero) needs keda: a HorizontalPodAutoscaler cannot scale to zero, and KEDA wakes the engine on the gateway's requests")
)]
pub struct Autoscaling {
    /// Fewest engine replicas. 0 (with `keda`) scales the engine to zero while no request comes:
    /// the endpoint is `Idle`, the gateway holds the first request while the engine starts (up
    /// to `wakeSeconds`), and KEDA wakes it on the gateway's own in-flight requests.
    #[serde(default = "default_min_replicas")]
    #[schemars(range(min = 0, max = 100))]
    pub min_replicas: i32,
    /// Most engine replicas.
    #[serde(default = "default_max_replicas")]
    #[schemars(range(min = 1, max = 100))]
    pub max_replicas: i32,
    /// In-flight requests per engine replica the autoscaler aims for.
    #[serde(default = "default_target_requests")]
    #[schemars(range(min = 1, max = 10000))]
    pub target_requests_per_replica: i32,
    /// Scale with KEDA on vLLM's queue read from Prometheus (a `ScaledObject`), instead of a
    /// HorizontalPodAutoscaler on the `vllm:num_requests_running` pods metric, which needs a
    /// custom-metrics adapter most clusters lack. With `minReplicas: 0`, on the gateway's
    /// in-flight requests instead, which are there while the engine is not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keda: Option<Keda>,
    /// With `minReplicas: 0`: seconds a request waits while the engine wakes from zero
    /// replicas; then 503 with `Retry-After`.
    #[serde(default = "default_wake_seconds")]
    #[schemars(range(min = 10, max = 3600))]
    pub wake_seconds: i32,
}

fn default_wake_seconds() -> i32 {
    300
}

impl Autoscaling {
    /// With `minReplicas: 0`, how long a request waits while the engine wakes from zero.
    pub fn wake_seconds(&self) -> Option<u64> {
        (self.min_replicas == 0).then_some(self.wake_seconds as u64)
    }
}

/// KEDA scaling of the engine.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Keda {
    /// The Prometheus server KEDA queries, e.g. `http://prometheus-operated.monitoring.svc:9090`.
    /// It must scrape the engine (`monitoring.serviceMonitor`, or its own configuration).
    #[schemars(length(min = 1, max = 2048))]
    #[x_kube(validation = Rule::new(HTTP_URL_RULE).message(HTTP_URL_MESSAGE))]
    pub server_address: String,
}

fn default_min_replicas() -> i32 {
    1
}
fn default_max_replicas() -> i32 {
    4
}
fn default_target_requests() -> i32 {
    8
}

/// The RAG gateway (`twin serve`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.maxReplicas) || self.maxReplicas >= self.replicas").message("gateway.maxReplicas must be at least gateway.replicas"))]
pub struct Gateway {
    /// Gateway replicas (the fewest, when `maxReplicas` is set).
    #[serde(default = "default_gateway_replicas")]
    #[schemars(range(min = 1, max = 100))]
    pub replicas: i32,
    /// Most gateway replicas: above `replicas`, a HorizontalPodAutoscaler scales the gateway
    /// between the two on CPU (70% of its request). Unset runs `replicas`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub max_replicas: Option<i32>,
    /// Retrieval settings.
    #[serde(default)]
    pub rag: Rag,
    /// System prompt. Unset means one that asks the model to answer as the author, grounded in
    /// the retrieved passages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16384))]
    pub system_prompt: Option<String>,
    /// A Secret key holding the API key clients must send as a bearer token. Unset means no
    /// authentication (keep the Service internal).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_secret_ref: Option<SecretKeyRef>,
    /// Where the gateway appends each request's prompt, sources and answer as JSON lines
    /// (`s3://` or `pvc://`; an S3 store takes the dataset's endpoint, region and credentials).
    /// Unset logs no prompts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2048))]
    #[x_kube(validation = Rule::new(STORAGE_URI_RULE).message(STORAGE_URI_MESSAGE))]
    pub prompt_log_uri: Option<String>,
    /// Resources, node selector, tolerations and service account of the gateway pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<PodOverrides>,
}

fn default_gateway_replicas() -> i32 {
    2
}

impl Default for Gateway {
    fn default() -> Self {
        Self {
            replicas: default_gateway_replicas(),
            max_replicas: None,
            rag: Rag::default(),
            system_prompt: None,
            api_key_secret_ref: None,
            prompt_log_uri: None,
            pod: None,
        }
    }
}

/// Retrieval-augmented generation.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Rag {
    /// Passages retrieved per request; 0 turns retrieval off.
    #[serde(default = "default_top_k")]
    #[schemars(range(min = 0, max = 64))]
    pub top_k: u32,
    /// Which revision of the dataset passages come from: `latest`, its newest Ready revision
    /// (a new post is cited as soon as it is built, with no training run), or `adapter`, the
    /// revision the served adapter was trained on (retrieval moves only with a new adapter).
    #[serde(default)]
    pub revision: RetrievalRevision,
}

fn default_top_k() -> u32 {
    4
}

impl Default for Rag {
    fn default() -> Self {
        Self { top_k: default_top_k(), revision: RetrievalRevision::default() }
    }
}

/// Which dataset revision the gateway retrieves from.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RetrievalRevision {
    /// The dataset's newest Ready revision.
    #[default]
    Latest,
    /// The revision the served adapter was trained on.
    Adapter,
}

/// Prometheus scraping.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Monitoring {
    /// Create Prometheus Operator ServiceMonitors for the engine and gateway (needs the
    /// ServiceMonitor CRD in the cluster).
    #[serde(default)]
    pub service_monitor: bool,
}

/// The phase of a TwinEndpoint.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum EndpointPhase {
    /// Accepted; waiting for its model.
    Pending,
    /// Rolling out the engine and gateway.
    Deploying,
    /// Serving at `status.url`.
    Ready,
    /// Not every replica serves: pods crash-loop, are OOM-killed, cannot pull their image, or
    /// fewer are ready than desired; the conditions say which part and why.
    Degraded,
    /// Cannot serve; see the Ready condition.
    Failed,
    /// Scaled to zero while no request comes (`autoscaling.minReplicas: 0`): ready to wake on
    /// the first request, which waits for the engine to start.
    Idle,
}

/// The observed state of a TwinEndpoint.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct TwinEndpointStatus {
    /// The spec generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// One-word summary: Pending, Deploying, Ready, Idle, Degraded or Failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<EndpointPhase>,
    /// The OpenAI-compatible base URL inside the cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// What is served: lineage from dataset revision to adapter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<ServedModel>,
    /// Ready/desired replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<ReplicaStatus>,
    /// Standard conditions; `Ready` is always present.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
}

/// What an endpoint serves.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServedModel {
    /// The base model.
    pub base_model: String,
    /// The adapter, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adapter_uri: Option<String>,
    /// The TwinTrainingJob that produced the adapter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub training_job: Option<String>,
    /// The dataset revision the gateway retrieves from (`gateway.rag.revision`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset_revision: Option<String>,
    /// The dataset revision the adapter was trained on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adapter_revision: Option<String>,
}

/// Ready/desired replicas, as `"ready/desired"`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct ReplicaStatus {
    /// Engine replicas.
    pub engine: String,
    /// Gateway replicas.
    pub gateway: String,
}
