//! The status of a TwinTrainingJob from its SageMaker training job as DescribeTrainingJob
//! returned it (pure): Running with SageMaker's secondary status while it runs, Succeeded with
//! the metrics SageMaker read from the trainer's result, Failed with the trainer's reason
//! (SageMaker's FailureReason), or why it was stopped; and when to describe it again.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use super::super::build::Run;
use super::super::status::{new_run, published};
use super::request::RESULT_METRICS;
use super::wire::{SecondaryStatus, TrainingJobDescription, TrainingJobStatus};
use crate::api::TwinTrainingJob;
use crate::api::training::{BackendKind, TrainingPhase, TwinTrainingJobStatus};
use crate::contract::trainer::{CHAT_TEMPLATE_FILE, TrainerSuccess};
use crate::operator::conditions::Assessment;
use crate::operator::driver::Verdict;
use crate::storage::StorageUri;

/// The longest wait between two DescribeTrainingJob calls of a running job.
pub const POLL_CEILING: Duration = Duration::from_secs(300);

/// What DescribeTrainingJob said, in the terms the status needs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ObservedTrainingJob {
    /// The job's ARN.
    pub arn: Option<String>,
    /// The job's state; `None` when the answer named none.
    pub status: Option<TrainingJobStatus>,
    /// The finer state: `Starting`, `Downloading`, `Training`, `Uploading`,
    /// `MaxRuntimeExceeded`, ...
    pub secondary: Option<SecondaryStatus>,
    /// The message of the latest secondary status.
    pub secondary_message: Option<String>,
    /// Why it failed.
    pub failure_reason: Option<String>,
    /// When training started and ended.
    pub started: Option<Time>,
    /// When training ended.
    pub ended: Option<Time>,
    /// When the job last changed.
    pub last_modified: Option<Time>,
    /// The final value of each metric.
    pub metrics: BTreeMap<String, f64>,
}

/// A time as the protocol writes it, seconds since the epoch.
fn time(seconds: f64) -> Option<Time> {
    let whole = seconds.floor();
    Timestamp::new(whole as i64, ((seconds - whole) * 1e9).round().min(999_999_999.0) as i32).ok().map(Time)
}

impl From<&TrainingJobDescription> for ObservedTrainingJob {
    fn from(output: &TrainingJobDescription) -> Self {
        let metrics = output
            .final_metric_data_list
            .iter()
            .filter_map(|m| {
                // SageMaker keeps metrics as 32-bit floats; their shortest decimal form is what
                // the trainer printed.
                let value: f64 = m.value?.to_string().parse().ok()?;
                Some((m.metric_name.clone()?, value))
            })
            .collect();
        Self {
            arn: output.training_job_arn.clone(),
            status: output.training_job_status.clone(),
            secondary: output.secondary_status.clone(),
            secondary_message: output
                .secondary_status_transitions
                .last()
                .and_then(|t| t.status_message.clone()),
            failure_reason: output.failure_reason.clone(),
            started: output.training_start_time.and_then(time),
            ended: output.training_end_time.and_then(time),
            last_modified: output.last_modified_time.and_then(time),
            metrics,
        }
    }
}

/// How long to wait before describing a running job again: a quarter of the time since it last
/// changed, between `floor` and five minutes. A job that just moved on is looked at soon; one
/// that has trained for an hour, every few minutes (DescribeTrainingJob is rate limited per
/// account).
pub fn poll_after(last_change: Option<&Time>, now: Timestamp, floor: Duration) -> Duration {
    let since = last_change
        .map(|t| Duration::from_secs(now.duration_since(t.0).as_secs().max(0) as u64))
        .unwrap_or_default();
    (since / 4).clamp(floor, POLL_CEILING.max(floor))
}

/// A failure's reason and message from SageMaker's FailureReason. The trainer writes
/// `<Reason>: <message>` to /opt/ml/output/failure, which SageMaker reports after
/// `AlgorithmError: `; SageMaker's own failures start with their kind (`ClientError: `,
/// `CapacityError: `).
fn failure(text: &str) -> (String, String) {
    let from_trainer = text.strip_prefix("AlgorithmError: ");
    let rest = from_trainer.unwrap_or(text);
    let camel_word = |word: &str| {
        word.len() <= 64
            && word.starts_with(|c: char| c.is_ascii_uppercase())
            && word.chars().all(|c| c.is_ascii_alphanumeric())
    };
    match rest.split_once(": ") {
        Some((word, message)) if camel_word(word) => (word.to_string(), message.trim().to_string()),
        _ if from_trainer.is_some() => ("TrainerFailed".into(), rest.trim().to_string()),
        _ => ("SageMakerFailed".into(), text.trim().to_string()),
    }
}

/// The verdict and status a described training job gives. `floor` is the shortest wait
/// between two descriptions.
pub fn from_training_job(
    job: &TwinTrainingJob,
    run: &Run,
    output: &StorageUri,
    name: &str,
    observed: &ObservedTrainingJob,
    now: Timestamp,
    floor: Duration,
) -> (Verdict<TrainingPhase>, TwinTrainingJobStatus) {
    let mut status = new_run(job, run, name, BackendKind::Sagemaker);
    let state = observed.status.as_ref().map_or(String::new(), ToString::to_string);
    let secondary = observed.secondary.as_ref().map_or_else(|| state.clone(), ToString::to_string);
    let backend = status.backend.get_or_insert_default();
    backend.training_job_arn = observed.arn.clone().or(backend.training_job_arn.take());
    backend.detail = Some(format!("{state}/{secondary}"));
    status.start_time = observed.started.clone().or(status.start_time);
    let running = |reason: &str, what: &str| {
        let said = observed.secondary_message.as_deref().map_or(String::new(), |m| format!(": {m}"));
        let assessment = Assessment::not_ready(
            TrainingPhase::Running,
            reason,
            format!("SageMaker training job {name} {what} ({secondary}{said})"),
        );
        Verdict { assessment, recheck: Some(poll_after(observed.last_modified.as_ref(), now, floor)) }
    };
    let finished = |assessment| Verdict::settled(assessment);
    let verdict = match &observed.status {
        Some(TrainingJobStatus::Completed) => {
            let success = TrainerSuccess {
                sft_train_loss: observed.metrics.get(RESULT_METRICS[0].0).copied(),
                sft_eval_loss: observed.metrics.get(RESULT_METRICS[1].0).copied(),
                dpo_reward_accuracy: observed.metrics.get(RESULT_METRICS[2].0).copied(),
                vllm_max_lora_rank: observed.metrics.get(RESULT_METRICS[3].0).map(|rank| *rank as u32),
                chat_template: observed
                    .metrics
                    .get(RESULT_METRICS[4].0)
                    .filter(|written| **written >= 1.0)
                    .map(|_| CHAT_TEMPLATE_FILE.to_string()),
                dpo_skipped: match (job.spec.dpo.enabled, observed.metrics.contains_key(RESULT_METRICS[2].0))
                {
                    (false, _) => Some("disabled in spec.dpo".into()),
                    (true, false) => {
                        Some("no reward accuracy in the job's log (no preference triples?)".into())
                    }
                    (true, true) => None,
                },
                evaluation_nll_reduction: observed.metrics.get(RESULT_METRICS[5].0).copied(),
                evaluation_author_specific_nll_reduction: observed.metrics.get(RESULT_METRICS[6].0).copied(),
                evaluation_win_rate: observed.metrics.get(RESULT_METRICS[7].0).copied(),
                evaluation_serving_nll_reduction: observed.metrics.get(RESULT_METRICS[8].0).copied(),
                // SageMaker keeps numbers only; metrics.json next to the adapter says why.
                evaluation_not_measured: None,
            };
            status.completion_time = observed.ended.clone().or(observed.last_modified.clone());
            finished(published(job, &mut status, run, output, &success))
        }
        Some(TrainingJobStatus::Failed) => {
            status.completion_time = observed.ended.clone().or(observed.last_modified.clone());
            let (reason, message) = failure(observed.failure_reason.as_deref().unwrap_or("no reason given"));
            finished(Assessment::not_ready(
                TrainingPhase::Failed,
                &reason,
                format!("SageMaker training job {name} failed: {message}"),
            ))
        }
        Some(TrainingJobStatus::Stopped) => {
            status.completion_time = observed.ended.clone().or(observed.last_modified.clone());
            let (reason, message) = match &observed.secondary {
                Some(SecondaryStatus::MaxRuntimeExceeded) => (
                    "MaxRuntimeExceeded",
                    "was stopped after spec.backend.sagemaker.maxRuntimeSeconds".to_string(),
                ),
                Some(SecondaryStatus::MaxWaitTimeExceeded) => (
                    "MaxWaitTimeExceeded",
                    "was stopped: spot capacity and training took longer than spec.backend.sagemaker.maxWaitSeconds"
                        .to_string(),
                ),
                _ => ("TrainingJobStopped", "was stopped (StopTrainingJob) before it finished".to_string()),
            };
            finished(Assessment::not_ready(
                TrainingPhase::Failed,
                reason,
                format!("SageMaker training job {name} {message}; change the spec to train again"),
            ))
        }
        Some(TrainingJobStatus::Stopping) => running("Stopping", "is stopping"),
        _ => running("Training", &format!("is training on dataset revision {}", run.revision)),
    };
    (verdict, status)
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn job(dpo: bool) -> TwinTrainingJob {
        serde_json::from_value(json!({
            "apiVersion": "llmtwin.dev/v1alpha1", "kind": "TwinTrainingJob",
            "metadata": {"name": "paul-twin", "namespace": "twins", "uid": "5f0c", "generation": 1},
            "spec": {
                "datasetRef": {"name": "paul"}, "baseModel": {"uri": "hf://HuggingFaceTB/SmolLM2-135M"},
                "dpo": {"enabled": dpo},
                "backend": {"sagemaker": {"region": "eu-west-1", "roleArn": "arn:aws:iam::123456789012:role/twin-training"}},
                "output": {"uri": "s3://twins-bucket/twins"}
            }
        }))
        .unwrap()
    }

    /// A DescribeTrainingJob answer as the service writes it.
    fn describe(status: &str, secondary: &str) -> Value {
        json!({
            "TrainingJobName": "paul-twin-g1-rev1-0123456789",
            "TrainingJobArn": "arn:aws:sagemaker:eu-west-1:123456789012:training-job/paul-twin-g1-rev1-0123456789",
            "TrainingJobStatus": status,
            "SecondaryStatus": secondary,
            "SecondaryStatusTransitions": [
                {"Status": secondary, "StartTime": 1_800_000_100, "StatusMessage": "Downloading the training image"}
            ],
            "TrainingStartTime": 1_800_000_000,
            "TrainingEndTime": 1_800_003_600,
            "LastModifiedTime": 1_800_000_100
        })
    }

    fn observe(job: &TwinTrainingJob, output: Value) -> (Verdict<TrainingPhase>, TwinTrainingJobStatus) {
        let output: TrainingJobDescription = serde_json::from_value(output).unwrap();
        let run = Run::new(job, "rev-1");
        let root = "s3://twins-bucket/twins/models/paul-twin/g1-rev1".parse().unwrap();
        let now = Timestamp::from_second(1_800_000_500).unwrap();
        from_training_job(
            job,
            &run,
            &root,
            "paul-twin-g1-rev1-0123456789",
            &(&output).into(),
            now,
            Duration::from_secs(10),
        )
    }

    #[test]
    fn a_running_job_says_what_sagemaker_is_doing_and_is_polled_with_backoff() {
        let (verdict, status) = observe(&job(true), describe("InProgress", "Downloading"));
        assert_eq!(verdict.assessment.phase, TrainingPhase::Running);
        assert_eq!(verdict.assessment.reason, "Training");
        assert!(
            verdict.assessment.message.contains("(Downloading: Downloading the training image)"),
            "{}",
            verdict.assessment.message
        );
        // Changed 400 s ago: looked at again in 100 s.
        assert_eq!(verdict.recheck, Some(Duration::from_secs(100)));
        let backend = status.backend.unwrap();
        assert_eq!(backend.kind, BackendKind::Sagemaker);
        assert_eq!(backend.detail.as_deref(), Some("InProgress/Downloading"));
        assert!(backend.training_job_arn.unwrap().ends_with("training-job/paul-twin-g1-rev1-0123456789"));
        assert_eq!(status.start_time.unwrap().0.as_second(), 1_800_000_000);
    }

    #[test]
    fn polling_grows_with_quiet_time_between_a_floor_and_a_ceiling() {
        let now = Timestamp::from_second(1_000_000).unwrap();
        let changed = |ago: i64| Time(Timestamp::from_second(1_000_000 - ago).unwrap());
        let floor = Duration::from_secs(15);
        assert_eq!(poll_after(Some(&changed(5)), now, floor), floor);
        assert_eq!(poll_after(Some(&changed(400)), now, floor), Duration::from_secs(100));
        assert_eq!(poll_after(Some(&changed(86_400)), now, floor), POLL_CEILING);
        assert_eq!(poll_after(None, now, floor), floor);
    }

    #[test]
    fn a_completed_job_publishes_the_adapter_with_the_metrics_sagemaker_read() {
        let mut output = describe("Completed", "Completed");
        let metric =
            |name: &str, value: f64| json!({"MetricName": name, "Value": value, "Timestamp": 1_800_003_600});
        output["FinalMetricDataList"] = json!([
            metric("sft:train_loss", 1.234),
            metric("sft:eval_loss", 1.5),
            metric("dpo:reward_accuracy", 0.75),
            metric("vllm:max_lora_rank", 16.0),
            metric("twin:chat_template", 1.0),
            metric("train:progress", 100.0)
        ]);
        let (verdict, status) = observe(&job(true), output);
        assert_eq!(
            (verdict.assessment.phase, verdict.assessment.reason.as_str()),
            (TrainingPhase::Succeeded, "AdapterPublished")
        );
        assert_eq!(verdict.recheck, None);
        let metrics = status.metrics.unwrap();
        assert_eq!(
            (metrics.sft_train_loss, metrics.sft_eval_loss, metrics.dpo_reward_accuracy),
            (Some(1.234), Some(1.5), Some(0.75))
        );
        let model = status.model.unwrap();
        assert_eq!(model.adapter_uri, "s3://twins-bucket/twins/models/paul-twin/g1-rev1/adapter");
        assert_eq!(model.max_lora_rank, Some(16));
        assert_eq!(model.chat_template.as_deref(), Some("chat_template.jinja"));
        assert_eq!(status.completion_time.unwrap().0.as_second(), 1_800_003_600);
        assert!(verdict.assessment.message.contains("SFT loss 1.234"), "{}", verdict.assessment.message);
    }

    #[test]
    fn a_completed_job_without_dpo_says_why_there_is_no_reward_accuracy() {
        let (verdict, _) = observe(&job(false), describe("Completed", "Completed"));
        assert!(
            verdict.assessment.message.contains("DPO skipped: disabled in spec.dpo"),
            "{}",
            verdict.assessment.message
        );
    }

    #[test]
    fn a_failed_job_carries_the_trainers_reason() {
        let failed = |reason: &str| {
            let mut output = describe("Failed", "Failed");
            output["FailureReason"] = json!(reason);
            let (verdict, status) = observe(&job(true), output);
            assert_eq!(verdict.assessment.phase, TrainingPhase::Failed);
            assert!(status.completion_time.is_some());
            (verdict.assessment.reason, verdict.assessment.message)
        };
        let (reason, message) =
            failed("AlgorithmError: OutOfMemory: CUDA out of memory at batch size 8 and 2048 tokens");
        assert_eq!(reason, "OutOfMemory");
        assert!(message.ends_with("failed: CUDA out of memory at batch size 8 and 2048 tokens"), "{message}");
        assert_eq!(failed("ClientError: No S3 objects found under S3 URL").0, "ClientError");
        assert_eq!(failed("AlgorithmError: exit code 137").0, "TrainerFailed");
        assert_eq!(failed("something else").0, "SageMakerFailed");
    }

    #[test]
    fn a_stopped_job_fails_the_run_saying_who_stopped_it() {
        let stopped = |secondary| observe(&job(true), describe("Stopped", secondary)).0.assessment;
        assert_eq!(stopped("MaxRuntimeExceeded").reason, "MaxRuntimeExceeded");
        assert_eq!(stopped("MaxWaitTimeExceeded").reason, "MaxWaitTimeExceeded");
        let by_hand = stopped("Stopped");
        assert_eq!((by_hand.phase, by_hand.reason.as_str()), (TrainingPhase::Failed, "TrainingJobStopped"));
    }
}
