//! The trainer's side of the contract (`trainer/`, Python): the JSON configuration the operator
//! writes for a run, and the one-line result the trainer leaves in its termination message.
//! trainer/README.md documents the same fields.

use serde::{Deserialize, Serialize};

use crate::api::training::{DpoSpec, SftSpec};

/// The configuration of one run (`twin-trainer --config FILE`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TrainerConfig {
    /// The run's name.
    pub run: String,
    /// The dataset revision's folder, as the trainer reaches it (s3://, or a mounted path).
    pub dataset_uri: String,
    /// The revision, for lineage.
    pub dataset_revision: String,
    /// The base model, as the trainer reaches it.
    pub base_model_uri: String,
    /// Where the run's artifacts go, as the trainer reaches it.
    pub output_uri: String,
    /// SFT settings (the TwinTrainingJob's own).
    pub sft: SftSpec,
    /// DPO settings (the TwinTrainingJob's own).
    pub dpo: DpoSpec,
    /// Where the one-line result goes.
    pub termination_message_path: String,
}

/// The trainer's one-line result.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(tag = "status")]
pub enum TrainerResult {
    /// The adapter is published.
    Succeeded(TrainerSuccess),
    /// Why the run failed.
    Failed(TrainerFailure),
}

/// What a successful run reports.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TrainerSuccess {
    /// Mean SFT training loss.
    #[serde(default)]
    pub sft_train_loss: Option<f64>,
    /// SFT loss on the test split.
    #[serde(default)]
    pub sft_eval_loss: Option<f64>,
    /// DPO reward accuracy (none when DPO was skipped).
    #[serde(default)]
    pub dpo_reward_accuracy: Option<f64>,
    /// The `--max-lora-rank` vLLM needs for this adapter.
    #[serde(default)]
    pub vllm_max_lora_rank: Option<u32>,
    /// Why DPO did not run (disabled, or no preference triples), when it did not.
    #[serde(default)]
    pub dpo_skipped: Option<String>,
}

/// What a failed run reports.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct TrainerFailure {
    /// A CamelCase word: DatasetMissing, ModelGated, OutOfMemory, ...
    pub reason: String,
    /// What happened and what to do.
    pub message: String,
}

impl TrainerResult {
    /// Reads a termination message.
    pub fn parse(message: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(message.trim())
    }
}
