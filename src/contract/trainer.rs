//! The trainer's side of the contract (`trainer/`, Python): what a run is and where its files
//! go, the JSON configuration written for a run (by the operator, or by `twin up`), and the
//! one-line result the trainer leaves in its termination message. trainer/README.md documents
//! the same fields.

use kube::ResourceExt;
use serde::{Deserialize, Serialize};

use crate::api::training::{DpoSpec, MustBeat, SftSpec};
use crate::api::{TwinDataset, TwinTrainingJob};
use crate::hashing::sha256_hex;
use crate::storage::StorageUri;

/// One run: the job's generation on a pinned dataset revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    /// `g<generation>-<revision>` (the revision shortened to fit a name).
    pub name: String,
    /// The dataset revision trained on.
    pub revision: String,
}

impl Run {
    /// The run of `job`'s current generation on `revision`.
    pub fn new(job: &TwinTrainingJob, revision: &str) -> Self {
        let generation = job.metadata.generation.unwrap_or(1);
        let short: String =
            revision.chars().filter(|c| c.is_ascii_alphanumeric()).take(12).collect::<String>();
        let short = if short.is_empty() { sha256_hex(revision.as_bytes())[..12].to_string() } else { short };
        Self { name: format!("g{generation}-{}", short.to_ascii_lowercase()), revision: revision.to_string() }
    }
}

/// Where a run's artifacts go, in the user's terms: `<output>/models/<job>/<run>`.
pub fn run_output(job: &TwinTrainingJob, run: &Run) -> Result<StorageUri, String> {
    let root: StorageUri = job.spec.output.uri.parse().map_err(|e| format!("spec.output.uri: {e}"))?;
    Ok(root.join(&format!("models/{}/{}", job.name_any(), run.name)))
}

/// Where a dataset revision's files are (DESIGN §4): `<output>/datasets/<dataset>/<revision>`.
pub fn revision_folder(dataset: &TwinDataset, revision: &str) -> Result<StorageUri, String> {
    Ok(revision_folder_under(&dataset_output(dataset)?, dataset, revision))
}

/// A dataset's `spec.output.uri`, read.
pub fn dataset_output(dataset: &TwinDataset) -> Result<StorageUri, String> {
    dataset.spec.output.uri.parse().map_err(|e| format!("the dataset's spec.output.uri: {e}"))
}

/// [`revision_folder`] under the dataset's output, already read.
pub fn revision_folder_under(output: &StorageUri, dataset: &TwinDataset, revision: &str) -> StorageUri {
    dataset_folder_under(output, dataset).join(revision)
}

/// The folder of all of `dataset`'s revisions under `output` (its `LATEST` names the newest).
pub fn dataset_folder_under(output: &StorageUri, dataset: &TwinDataset) -> StorageUri {
    output.join(&format!("datasets/{}", dataset.name_any()))
}

/// Where a run reads its dataset revision and writes its artifacts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunPlaces {
    /// The dataset revision's folder ([`revision_folder`]).
    pub dataset: StorageUri,
    /// The run's artifact folder ([`run_output`]).
    pub output: StorageUri,
}

impl RunPlaces {
    /// The places of `run` of `job` on `dataset`, or which URI cannot be read.
    pub fn of(job: &TwinTrainingJob, dataset: &TwinDataset, run: &Run) -> Result<Self, String> {
        Ok(Self { dataset: revision_folder(dataset, &run.revision)?, output: run_output(job, run)? })
    }
}

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
    /// Stop each stage after this many optimiser steps (the job's `maxSteps`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_steps: Option<u32>,
    /// What the run measures after training (the job's `evaluation`, less its gate, which the
    /// operator judges).
    pub evaluation: TrainerEvaluation,
    /// Where the trainer appends its progress (JSON lines, `trainer/src/twin_trainer/progress.py`):
    /// set by `twin up`, which draws it; a cluster's run has its step log in the pod's logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress_path: Option<String>,
}

/// The evaluation a run performs.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TrainerEvaluation {
    /// Whether to measure at all.
    pub enabled: bool,
    /// Held-out passages scored (unset: the trainer's default for its device).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passages: Option<u32>,
    /// Test instructions answered by the adapter and the base model.
    pub questions: u32,
    /// Longest sequence scored.
    pub max_tokens: u32,
    /// Longest answer generated.
    pub answer_tokens: u32,
    /// The control text, as the trainer reaches it.
    pub control: String,
    /// The adapter this run must beat (`mustBeat: serving`), as the trainer reaches it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serving_adapter_uri: Option<String>,
}

/// The adapter run `run` of `job` must beat: none unless its gate says `mustBeat: serving`;
/// then the job's promoted adapter when the run started (kept in the status from then on, so
/// that promoting this very run changes nothing already written for it).
pub fn must_beat_adapter(job: &TwinTrainingJob, run: &Run) -> Option<String> {
    let gate = job.spec.evaluation.gate.as_ref()?;
    if gate.must_beat != Some(MustBeat::Serving) {
        return None;
    }
    let status = job.status.as_ref()?;
    if status.run.as_deref() == Some(run.name.as_str()) {
        return status.must_beat_adapter_uri.clone();
    }
    status.model.as_ref().map(|model| model.adapter_uri.clone())
}

impl TrainerConfig {
    /// The configuration of `run`; `reach` turns a URI into what the trainer opens (a mounted
    /// path for `pvc://` in a pod, the URI itself elsewhere).
    pub fn for_run(
        job: &TwinTrainingJob,
        run: &Run,
        places: &RunPlaces,
        termination_message_path: &str,
        reach: impl Fn(&str) -> String,
    ) -> Self {
        let evaluation = &job.spec.evaluation;
        Self {
            run: run.name.clone(),
            dataset_uri: reach(&places.dataset.to_string()),
            dataset_revision: run.revision.clone(),
            base_model_uri: reach(&job.spec.base_model.uri),
            output_uri: reach(&places.output.to_string()),
            sft: job.spec.sft.clone(),
            dpo: job.spec.dpo.clone(),
            termination_message_path: termination_message_path.into(),
            max_steps: job.spec.max_steps,
            evaluation: TrainerEvaluation {
                enabled: evaluation.enabled,
                passages: evaluation.passages,
                questions: evaluation.questions,
                max_tokens: evaluation.max_tokens,
                answer_tokens: evaluation.answer_tokens,
                control: match evaluation.control.as_str() {
                    builtin if builtin.starts_with("builtin:") => builtin.to_string(),
                    uri => reach(uri),
                },
                serving_adapter_uri: must_beat_adapter(job, run).map(|uri| reach(&uri)),
            },
            progress_path: None,
        }
    }
}

/// The file in a published adapter folder holding the chat template it was trained with.
pub const CHAT_TEMPLATE_FILE: &str = "chat_template.jinja";

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
    /// The file in the adapter folder holding the chat template it was trained with.
    #[serde(default)]
    pub chat_template: Option<String>,
    /// Why DPO did not run (disabled, or no preference triples), when it did not.
    #[serde(default)]
    pub dpo_skipped: Option<String>,
    /// Base − adapter NLL per token on the held-out passages as answers (nats), when the run
    /// measured it.
    #[serde(default)]
    pub evaluation_nll_reduction: Option<f64>,
    /// That reduction on the author's text minus the one on the control text.
    #[serde(default)]
    pub evaluation_author_specific_nll_reduction: Option<f64>,
    /// Share of test instructions where the adapter's answer is closer to the author's
    /// character profile than the base model's.
    #[serde(default)]
    pub evaluation_win_rate: Option<f64>,
    /// Serving adapter − this adapter NLL per token on the held-out answers.
    #[serde(default)]
    pub evaluation_serving_nll_reduction: Option<f64>,
    /// What the evaluation did not measure, and why.
    #[serde(default)]
    pub evaluation_not_measured: Option<String>,
}

/// What a failed run reports.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct TrainerFailure {
    /// A CamelCase word: DatasetMissing, ModelGated, OutOfMemory, ...
    pub reason: String,
    /// What happened and what to do.
    pub message: String,
}

impl TrainerSuccess {
    /// What a published run says: where its adapter is, its losses, and DPO's accuracy or why
    /// DPO did not run.
    pub fn summary(&self, adapter: &str) -> String {
        let number = |value: Option<f64>| value.map_or("-".to_string(), |v| format!("{v:.3}"));
        let dpo = match &self.dpo_skipped {
            Some(why) => format!("DPO skipped: {why}"),
            None => format!("DPO reward accuracy {}", number(self.dpo_reward_accuracy)),
        };
        let evaluation = match (self.evaluation_nll_reduction, self.evaluation_author_specific_nll_reduction)
        {
            (Some(all), Some(specific)) => format!(
                "; held-out NLL {:+.3} nats/token against the base, author-specific reduction {specific:+.3}",
                -all
            ),
            (Some(all), None) => format!("; held-out NLL {:+.3} nats/token against the base", -all),
            _ => String::new(),
        };
        format!(
            "adapter published at {adapter} (SFT loss {}, eval loss {}, {dpo}{evaluation})",
            number(self.sft_train_loss),
            number(self.sft_eval_loss),
        )
    }
}

impl TrainerResult {
    /// Reads a termination message.
    pub fn parse(message: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(message.trim())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_runs_configuration_names_its_folders_and_step_limit() {
        let job: TwinTrainingJob = serde_json::from_value(json!({
            "apiVersion": "llmtwin.dev/v1alpha1", "kind": "TwinTrainingJob",
            "metadata": {"name": "paul-v1", "namespace": "twins", "generation": 3},
            "spec": {"datasetRef": {"name": "paul"}, "baseModel": {"uri": "file:///models/smollm2.gguf"},
                     "backend": {"kubernetes": {}}, "output": {"uri": "file:///twin/out"}, "maxSteps": 20}
        }))
        .unwrap();
        let dataset: TwinDataset = serde_json::from_value(json!({
            "apiVersion": "llmtwin.dev/v1alpha1", "kind": "TwinDataset",
            "metadata": {"name": "paul", "namespace": "twins"},
            "spec": {"author": {"name": "Paul"}, "sources": [{"name": "blog", "files": {"uri": "file:///corpus"}}],
                     "output": {"uri": "file:///twin/out"}}
        }))
        .unwrap();
        let run = Run::new(&job, "Rev-1f2e");
        assert_eq!(run.name, "g3-rev1f2e");
        let places = RunPlaces::of(&job, &dataset, &run).unwrap();
        let config =
            TrainerConfig::for_run(&job, &run, &places, "/tmp/result", |uri| uri.replace("file://", ""));
        assert_eq!(config.dataset_uri, "/twin/out/datasets/paul/Rev-1f2e");
        assert_eq!(config.output_uri, "/twin/out/models/paul-v1/g3-rev1f2e");
        assert_eq!(config.base_model_uri, "/models/smollm2.gguf");
        assert_eq!(config.max_steps, Some(20));
        let written = serde_json::to_value(&config).unwrap();
        assert_eq!(
            (written["maxSteps"].clone(), written["terminationMessagePath"].clone()),
            (json!(20), json!("/tmp/result"))
        );
    }

    #[test]
    fn a_published_run_says_what_its_evaluation_measured_and_nothing_it_did_not() {
        let line = r#"{"status":"Succeeded","sftTrainLoss":2.6,"sftEvalLoss":2.4,"dpoSkipped":"off","evaluationNllReduction":0.0912,"evaluationAuthorSpecificNllReduction":0.0321}"#;
        let TrainerResult::Succeeded(success) = TrainerResult::parse(line).unwrap() else {
            panic!("a success")
        };
        let said = success.summary("s3://b/adapter");
        assert!(
            said.ends_with("DPO skipped: off; held-out NLL -0.091 nats/token against the base, author-specific reduction +0.032)"),
            "{said}"
        );
        let unmeasured = TrainerSuccess { evaluation_nll_reduction: None, ..success };
        assert!(!unmeasured.summary("s3://b/adapter").contains("NLL"));
    }
}
