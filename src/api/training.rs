//! `TwinTrainingJob`: LoRA/QLoRA supervised fine-tuning then DPO of an open base model on a
//! TwinDataset, on the cluster's GPUs or on AWS SageMaker.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{BaseModel, LocalObjectRef, PodOverrides, SecretRef, StorageLocation};
pub use super::evaluation::{EvaluationSpec, GateMinimums, GateSpec, MustBeat, RunEvaluation};

/// A fine-tuning run: SFT (LoRA or QLoRA) on a TwinDataset revision, then optionally DPO,
/// producing a LoRA adapter.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "llmtwin.dev",
    version = "v1alpha1",
    kind = "TwinTrainingJob",
    namespaced,
    status = "TwinTrainingJobStatus",
    shortname = "ttj",
    category = "twin",
    doc = "A TwinTrainingJob fine-tunes an open base model on a TwinDataset revision (LoRA or QLoRA SFT, then DPO) on the cluster's GPUs or on AWS SageMaker, and publishes the LoRA adapter.",
    printcolumn(
        name = "Phase",
        type_ = "string",
        json_path = ".status.phase",
        description = "Pending, WaitingForDataset, Running, Succeeded, Rejected or Failed"
    ),
    printcolumn(
        name = "Dataset",
        type_ = "string",
        json_path = ".spec.datasetRef.name",
        description = "The TwinDataset trained on"
    ),
    printcolumn(
        name = "Revision",
        type_ = "string",
        json_path = ".status.datasetRevision",
        description = "The dataset revision pinned by this run"
    ),
    printcolumn(
        name = "Backend",
        type_ = "string",
        json_path = ".status.backend.kind",
        description = "kubernetes or sagemaker"
    ),
    printcolumn(
        name = "NLL-Reduction",
        type_ = "number",
        json_path = ".status.evaluation.nllReduction",
        description = "The latest run's held-out NLL per token, base minus adapter (nats): higher is closer to the author"
    ),
    printcolumn(
        name = "Passed",
        type_ = "boolean",
        json_path = ".status.evaluation.passed",
        description = "Whether the latest run passed its evaluation gate and was promoted"
    ),
    printcolumn(
        name = "Base",
        type_ = "string",
        json_path = ".spec.baseModel.uri",
        priority = 1,
        description = "The base model"
    ),
    printcolumn(
        name = "Adapter",
        type_ = "string",
        json_path = ".status.model.adapterUri",
        priority = 1,
        description = "The promoted adapter: the one endpoints serve"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.datasetRef == oldSelf.datasetRef").message("datasetRef is immutable: create a new TwinTrainingJob to train on another dataset"),
    validation = Rule::new("self.baseModel.uri == oldSelf.baseModel.uri").message("baseModel.uri is immutable: an adapter only fits the base model it was trained on"),
    validation = Rule::new("has(self.backend.kubernetes) == has(oldSelf.backend.kubernetes)").message("the backend kind is immutable: a run cannot move between Kubernetes and SageMaker"),
    validation = Rule::new("self.output.uri == oldSelf.output.uri").message("output.uri is immutable: adapters already written live there"),
    validation = Rule::new("!has(self.backend.sagemaker) || self.output.uri.startsWith('s3://')").message("the sagemaker backend reads and writes S3: output.uri must be an s3:// URI")
)]
pub struct TwinTrainingJobSpec {
    /// The TwinDataset to train on, in the same namespace. The run waits until it is Ready and
    /// pins its revision. Immutable.
    pub dataset_ref: LocalObjectRef,
    /// The open model to fine-tune. Its URI is immutable.
    pub base_model: BaseModel,
    /// Supervised fine-tuning settings.
    #[serde(default)]
    pub sft: SftSpec,
    /// Direct preference optimisation after SFT, on the dataset's preference triples.
    #[serde(default)]
    pub dpo: DpoSpec,
    /// Where training runs: exactly one of `kubernetes` or `sagemaker`. The kind is immutable.
    pub backend: TrainingBackend,
    /// Where adapters are written: `<uri>/models/<name>/<run>/adapter/`. Immutable.
    pub output: StorageLocation,
    /// Train again, as a new run, when the dataset publishes a new revision after this job's
    /// run has finished. Off: a run keeps the revision it pinned until the spec changes.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub retrain_on_new_revision: bool,
    /// Stop each stage (SFT, then DPO) after this many optimiser steps instead of after its
    /// epochs: for trial runs and the quickstart. Unset trains for the epochs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000000))]
    pub max_steps: Option<u32>,
    /// How each run's adapter is measured against its base model after training, and the gate
    /// it must pass to be promoted (served by the endpoints that reference this job).
    #[serde(default)]
    pub evaluation: EvaluationSpec,
}

/// Supervised fine-tuning.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SftSpec {
    /// `lora` trains adapters on a bf16 base; `qlora` on a 4-bit NF4 quantised base (less memory).
    #[serde(default)]
    pub method: SftMethod,
    /// Passes over the training split.
    #[serde(default = "default_sft_epochs")]
    #[schemars(range(min = 1, max = 100))]
    pub epochs: u32,
    /// Peak learning rate (cosine schedule with warm-up).
    #[serde(default = "default_sft_learning_rate")]
    #[schemars(range(min = 1.0e-9, max = 1.0))]
    pub learning_rate: f64,
    /// LoRA rank r.
    #[serde(default = "default_lora_rank")]
    #[schemars(range(min = 1, max = 1024))]
    pub lora_rank: u32,
    /// LoRA alpha (scaling is alpha / r).
    #[serde(default = "default_lora_rank")]
    #[schemars(range(min = 1, max = 4096))]
    pub lora_alpha: u32,
    /// Dropout on LoRA layers.
    #[serde(default = "default_lora_dropout")]
    #[schemars(range(min = 0.0, max = 0.9))]
    pub lora_dropout: f64,
    /// Longest training sequence in tokens; longer samples are truncated.
    #[serde(default = "default_max_seq_length")]
    #[schemars(range(min = 64, max = 131072))]
    pub max_seq_length: u32,
    /// Samples per GPU per step.
    #[serde(default = "default_batch_size")]
    #[schemars(range(min = 1, max = 512))]
    pub per_device_batch_size: u32,
    /// Steps whose gradients are summed before each optimiser update.
    #[serde(default = "default_grad_accum")]
    #[schemars(range(min = 1, max = 1024))]
    pub gradient_accumulation_steps: u32,
}

fn default_sft_epochs() -> u32 {
    3
}
fn default_sft_learning_rate() -> f64 {
    3.0e-4
}
fn default_lora_rank() -> u32 {
    32
}
fn default_lora_dropout() -> f64 {
    0.05
}
fn default_max_seq_length() -> u32 {
    2048
}
fn default_batch_size() -> u32 {
    8
}
fn default_grad_accum() -> u32 {
    1
}

impl Default for SftSpec {
    fn default() -> Self {
        Self {
            method: SftMethod::default(),
            epochs: default_sft_epochs(),
            learning_rate: default_sft_learning_rate(),
            lora_rank: default_lora_rank(),
            lora_alpha: default_lora_rank(),
            lora_dropout: default_lora_dropout(),
            max_seq_length: default_max_seq_length(),
            per_device_batch_size: default_batch_size(),
            gradient_accumulation_steps: default_grad_accum(),
        }
    }
}

/// How the base model is held during SFT.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SftMethod {
    /// LoRA adapters on a bf16 base model.
    #[default]
    Lora,
    /// LoRA adapters on a 4-bit NF4 quantised base model.
    Qlora,
}

/// Direct preference optimisation.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DpoSpec {
    /// Run DPO after SFT. Skipped when the dataset has no preference triples, and the Ready
    /// condition's message says so.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// How far the policy may move from the SFT model (higher stays closer).
    #[serde(default = "default_dpo_beta")]
    #[schemars(range(min = 0.0, max = 10.0))]
    pub beta: f64,
    /// Passes over the preference triples.
    #[serde(default = "default_dpo_epochs")]
    #[schemars(range(min = 1, max = 100))]
    pub epochs: u32,
    /// Peak learning rate.
    #[serde(default = "default_dpo_learning_rate")]
    #[schemars(range(min = 1.0e-12, max = 1.0))]
    pub learning_rate: f64,
}

fn default_true() -> bool {
    true
}
fn default_dpo_beta() -> f64 {
    0.5
}
fn default_dpo_epochs() -> u32 {
    1
}
fn default_dpo_learning_rate() -> f64 {
    2.0e-6
}

impl Default for DpoSpec {
    fn default() -> Self {
        Self {
            enabled: true,
            beta: default_dpo_beta(),
            epochs: default_dpo_epochs(),
            learning_rate: default_dpo_learning_rate(),
        }
    }
}

/// Where training runs. Exactly one is set.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.kubernetes) != has(self.sagemaker)").message("set exactly one backend: kubernetes or sagemaker"))]
pub struct TrainingBackend {
    /// A GPU Job on this cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes: Option<KubernetesBackend>,
    /// An AWS SageMaker training job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sagemaker: Option<SageMakerBackend>,
}

/// A training Job on this cluster's GPUs.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KubernetesBackend {
    /// GPUs for the training pod.
    #[serde(default = "default_gpus")]
    #[schemars(range(min = 0, max = 16))]
    pub gpus: u32,
    /// The extended resource that counts GPUs.
    #[serde(default = "default_gpu_resource")]
    #[schemars(length(min = 1, max = 253))]
    pub gpu_resource_name: String,
    /// Longest the trainer may run before it is stopped and the run fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 60, max = 2419200))]
    pub active_deadline_seconds: Option<i64>,
    /// Image (unset means the operator's trainer image, TRL + PEFT), CPU and memory (GPUs come
    /// from `gpus`), node selector, tolerations (GPU nodes are often tainted) and service
    /// account (for IRSA or Workload Identity to reach storage) of the trainer pod.
    #[serde(flatten)]
    pub pod: PodOverrides,
}

fn default_gpus() -> u32 {
    1
}
fn default_gpu_resource() -> String {
    "nvidia.com/gpu".into()
}

/// An AWS SageMaker training job per run. SageMaker reads and writes AWS S3 only: the dataset
/// and the output are `s3://`, the base model `hf://` (not gated) or `s3://`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("!has(self.maxWaitSeconds) || self.spot").message("maxWaitSeconds applies only to spot training"),
    validation = Rule::new("!has(self.maxWaitSeconds) || self.maxWaitSeconds >= self.maxRuntimeSeconds").message("maxWaitSeconds must be at least maxRuntimeSeconds")
)]
pub struct SageMakerBackend {
    /// AWS region of the training job.
    #[schemars(length(min = 1, max = 32), regex(pattern = r"^[a-z]{2}(-gov)?-[a-z]+-[0-9]$"))]
    pub region: String,
    /// IAM role SageMaker assumes (reads the dataset, writes the adapter).
    #[schemars(length(min = 20, max = 2048), regex(pattern = r"^arn:aws[a-z-]*:iam::[0-9]{12}:role/.+$"))]
    pub role_arn: String,
    /// Training instance type.
    #[serde(default = "default_instance_type")]
    #[schemars(length(min = 4, max = 64), regex(pattern = r"^ml\.[a-z0-9]+\.[a-z0-9]+$"))]
    pub instance_type: String,
    /// Training image in ECR (the same trainer as the kubernetes backend: SageMaker pulls only
    /// from ECR). Unset means the operator's `--sagemaker-trainer-image` (the chart's
    /// `workloads.sagemakerTrainerImage`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub image: Option<String>,
    /// Longest the job may run.
    #[serde(default = "default_max_runtime")]
    #[schemars(range(min = 60, max = 2419200))]
    pub max_runtime_seconds: i64,
    /// Use managed spot training (cheaper, may wait for capacity).
    #[serde(default)]
    pub spot: bool,
    /// Spot only: longest to wait for capacity plus run time; at least maxRuntimeSeconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 60, max = 4838400))]
    pub max_wait_seconds: Option<i64>,
    /// A Secret with `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY` for the operator to call
    /// SageMaker. Unset means the operator's own AWS identity (IRSA, Pod Identity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<SecretRef>,
}

fn default_instance_type() -> String {
    "ml.g5.2xlarge".into()
}
fn default_max_runtime() -> i64 {
    86400
}

/// The phase of a TwinTrainingJob.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum TrainingPhase {
    /// Accepted; nothing started yet.
    Pending,
    /// The referenced TwinDataset is not Ready yet.
    WaitingForDataset,
    /// Training is running.
    Running,
    /// The adapter is published and promoted (it passed its gate, or there is none).
    Succeeded,
    /// The adapter is published but failed its evaluation gate: the promoted model stays.
    Rejected,
    /// The run failed; see the Ready condition.
    Failed,
}

/// The observed state of a TwinTrainingJob.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct TwinTrainingJobStatus {
    /// The spec generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// One-word summary of the latest run: Pending, WaitingForDataset, Running, Succeeded,
    /// Rejected or Failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<TrainingPhase>,
    /// The dataset revision the latest run trains on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset_revision: Option<String>,
    /// The latest run's name (`g<generation>-<revision>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
    /// When training started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    /// When training finished, successfully or not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
    /// Where the run executes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<BackendStatus>,
    /// Training metrics of the latest run, once it finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<TrainingMetrics>,
    /// The latest run's evaluation and the gate's verdict, once it finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evaluation: Option<RunEvaluation>,
    /// The adapter the latest run must beat (`gate.mustBeat: serving`): the promoted one when
    /// the run started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub must_beat_adapter_uri: Option<String>,
    /// The promoted model: the newest run that succeeded and passed its gate. It stays while
    /// later runs train, fail or are rejected; endpoints serve it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<TrainedModel>,
    /// Standard conditions; `Ready` is always present.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
}

/// Where a run executes.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackendStatus {
    /// `kubernetes` or `sagemaker`.
    pub kind: BackendKind,
    /// The run's Kubernetes Job, or its SageMaker training job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_name: Option<String>,
    /// The SageMaker training job's ARN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub training_job_arn: Option<String>,
    /// The backend's own words on the run's state: the Job's, or SageMaker's
    /// `<status>/<secondary status>` (`InProgress/Training`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// Which backend a run executes on.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// A Job on this cluster.
    #[default]
    Kubernetes,
    /// An AWS SageMaker training job.
    Sagemaker,
}

impl BackendKind {
    /// The name in the spec, the status and metrics' labels.
    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::Kubernetes => "kubernetes",
            BackendKind::Sagemaker => "sagemaker",
        }
    }
}

/// Metrics reported by the trainer.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrainingMetrics {
    /// Final SFT training loss.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sft_train_loss: Option<f64>,
    /// SFT loss on the test split.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sft_eval_loss: Option<f64>,
    /// Share of preference triples where the DPO model ranks the chosen answer above the
    /// rejected one (over the last quarter of DPO's steps, on the training triples: a dataset
    /// has no test split of them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dpo_reward_accuracy: Option<f64>,
}

/// The model a run published.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrainedModel {
    /// The run that published it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
    /// The dataset revision it was trained on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset_revision: Option<String>,
    /// The base model the adapter belongs to.
    pub base_model: String,
    /// URI of the PEFT adapter folder.
    pub adapter_uri: String,
    /// The smallest `--max-lora-rank` vLLM accepts that serves this adapter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_lora_rank: Option<u32>,
    /// The file in the adapter folder holding the chat template the adapter was trained with
    /// (the base model's own, or ChatML for a base without one); engines serve with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chat_template: Option<String>,
}
