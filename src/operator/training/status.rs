//! The status of a TwinTrainingJob from its run's Job (pure): Running while the trainer runs,
//! Succeeded with its metrics and the adapter's URI once it succeeded, Failed with the
//! trainer's reason once it failed.

use kube::ResourceExt;

use super::build::Run;
use crate::api::TwinTrainingJob;
use crate::api::training::{
    BackendKind, BackendStatus, TrainedModel, TrainingMetrics, TrainingPhase, TwinTrainingJobStatus,
};
use crate::contract::TrainerResult;
use crate::contract::trainer::{TrainerSuccess, must_beat_adapter};
use crate::eval::promotion;
use crate::operator::children::job::{JobOutcome, JobPods, JobReport, ObservedJob};
use crate::operator::conditions::Assessment;
use crate::operator::driver::Verdict;
use crate::storage::StorageUri;

impl JobReport for TrainerResult {
    fn read(line: &str) -> Option<Self> {
        TrainerResult::parse(line).ok()
    }
}

/// The verdict and status a run's Job gives. `output` is the run's artifact folder.
pub fn from_run(
    job: &TwinTrainingJob,
    run: &Run,
    output: &StorageUri,
    observed: &ObservedJob,
) -> (Verdict<TrainingPhase>, TwinTrainingJobStatus) {
    let (Some(child), Some(outcome)) = (&observed.job, observed.outcome::<TrainerResult>()) else {
        let mut status = job.status.clone().unwrap_or_default();
        status.dataset_revision = Some(run.revision.clone());
        let assessment = Assessment::not_ready(
            TrainingPhase::Pending,
            "TrainerPending",
            format!("dataset revision {} is pinned; creating the trainer Job", run.revision),
        );
        return (Verdict::settled(assessment), status);
    };
    let name = child.name_any();
    let job_status = child.status.clone().unwrap_or_default();
    let mut status = new_run(job, run, &name, BackendKind::Kubernetes);
    let mut backend = status.backend.take().unwrap_or_default();
    status.start_time = job_status.start_time.clone().or(status.start_time);
    let assessment = match outcome {
        JobOutcome::Succeeded { report: Some(TrainerResult::Succeeded(success)), at } => {
            status.completion_time = at;
            backend.detail = Some("Complete".into());
            published(job, &mut status, run, output, &success)
        }
        JobOutcome::Succeeded { .. } => Assessment::not_ready(
            TrainingPhase::Failed,
            "TrainerResultMissing",
            format!("Job {name} succeeded but its pod left no readable result in its termination message"),
        ),
        JobOutcome::Failed { report, reason, at } => {
            status.completion_time = at;
            let why = reason.map_or(String::new(), |r| format!(" ({r})"));
            backend.detail = Some(format!("Failed{why}"));
            match report {
                Some(TrainerResult::Failed(failure)) => Assessment::not_ready(
                    TrainingPhase::Failed,
                    &failure.reason,
                    format!("Job {name} failed: {}", failure.message),
                ),
                _ => died_without_a_result(&name, &why, &observed.pods),
            }
        }
        JobOutcome::Running => match &observed.pods.unschedulable {
            Some(scheduler) => {
                backend.detail = Some("Unschedulable".into());
                Assessment::not_ready(
                    TrainingPhase::Pending,
                    "TrainerUnschedulable",
                    format!("the trainer's pod of Job {name} cannot be scheduled: {scheduler}"),
                )
            }
            None => {
                let active = job_status.active.unwrap_or(0);
                backend.detail = Some(if active > 0 { "Running".into() } else { "Starting".into() });
                Assessment::not_ready(
                    TrainingPhase::Running,
                    "Training",
                    format!("Job {name} is training on dataset revision {}", run.revision),
                )
            }
        },
    };
    status.backend = Some(backend);
    (Verdict::settled(assessment), status)
}

/// Why a trainer that left no result failed, from how its container ended: out of memory
/// (killed by the kernel, or a log tail naming the error), else the last lines of its log
/// (what `FallbackToLogsOnError` leaves), else where to look.
fn died_without_a_result(name: &str, why: &str, pods: &JobPods) -> Assessment<TrainingPhase> {
    const TAIL_LINES: usize = 5;
    let Some(end) = &pods.ended else {
        return Assessment::not_ready(
            TrainingPhase::Failed,
            "TrainerFailed",
            format!("Job {name} failed{why}; see kubectl logs job/{name}"),
        );
    };
    let tail = end
        .message_tail(TAIL_LINES)
        .map_or_else(|| format!("; see kubectl logs job/{name}"), |t| format!("; its log ends:\n{t}"));
    if end.out_of_memory() {
        let how = match end.reason.as_deref() {
            Some("OOMKilled") => format!("killed by the kernel (OOMKilled, exit code {})", end.exit_code),
            _ => format!("exit code {}", end.exit_code),
        };
        return Assessment::not_ready(
            TrainingPhase::Failed,
            "OutOfMemory",
            format!(
                "Job {name} failed{why}: the trainer ran out of memory ({how}); use qlora, a shorter \
                 sft.maxSeqLength, or a node with more memory{tail}"
            ),
        );
    }
    Assessment::not_ready(
        TrainingPhase::Failed,
        "TrainerFailed",
        format!("Job {name} failed{why} with exit code {}{tail}", end.exit_code),
    )
}

/// The stored status carried over to `run`, executed as `name` on the backend `kind`: the
/// run's revision and backend, and, when the stored status is a previous run's, what that run
/// reported cleared. The promoted model stays: endpoints serve it whatever this run does.
pub fn new_run(job: &TwinTrainingJob, run: &Run, name: &str, kind: BackendKind) -> TwinTrainingJobStatus {
    let mut status = job.status.clone().unwrap_or_default();
    status.dataset_revision = Some(run.revision.clone());
    let previous = status.backend.take().filter(|b| b.job_name.as_deref() == Some(name));
    if previous.is_none() {
        status.metrics = None;
        status.evaluation = None;
        status.start_time = None;
        status.completion_time = None;
        // Fixed now, before this run may be promoted itself.
        status.must_beat_adapter_uri = must_beat_adapter(job, run);
    }
    status.run = Some(run.name.clone());
    status.backend =
        Some(BackendStatus { kind, job_name: Some(name.into()), ..previous.unwrap_or_default() });
    status
}

/// A run that published its adapter, on either backend: its metrics and evaluation in the
/// status, and its model promoted when the evaluation passed the job's gate (or there is
/// none); the Ready assessment saying where the adapter is, or why it is not served.
pub fn published(
    job: &TwinTrainingJob,
    status: &mut TwinTrainingJobStatus,
    run: &Run,
    output: &StorageUri,
    success: &TrainerSuccess,
) -> Assessment<TrainingPhase> {
    let adapter = output.join("adapter").to_string();
    status.metrics = Some(TrainingMetrics {
        sft_train_loss: success.sft_train_loss,
        sft_eval_loss: success.sft_eval_loss,
        dpo_reward_accuracy: success.dpo_reward_accuracy,
    });
    let evaluation = promotion::judge(
        &job.spec.evaluation,
        &run.name,
        &adapter,
        success,
        status.must_beat_adapter_uri.as_deref(),
        Some(output.join("metrics.json").to_string()),
    );
    let summary = success.summary(&adapter);
    let verdict = if evaluation.passed {
        status.model = Some(TrainedModel {
            run: Some(run.name.clone()),
            dataset_revision: Some(run.revision.clone()),
            base_model: job.spec.base_model.uri.clone(),
            adapter_uri: adapter.clone(),
            max_lora_rank: success.vllm_max_lora_rank,
            chat_template: success.chat_template.clone(),
        });
        Assessment::ready(TrainingPhase::Succeeded, "AdapterPublished", summary)
    } else {
        let kept = status
            .model
            .as_ref()
            .map(|m| (m.run.as_deref().unwrap_or("before this one"), m.adapter_uri.as_str()));
        Assessment::not_ready(
            TrainingPhase::Rejected,
            "GateFailed",
            promotion::rejection(&evaluation, kept, &summary),
        )
    };
    status.evaluation = Some(evaluation);
    verdict
}
