//! The status of a TwinDataset from its newest build Job (pure): Running while it runs,
//! Ready with the revision its report names once it succeeded, Failed with the report's reason
//! once it failed.

use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use kube::ResourceExt;

use crate::api::TwinDataset;
use crate::api::dataset::{DatasetPhase, TwinDatasetStatus};
use crate::contract::{BuildReport, FailedBuild, PublishedBuild};
use crate::operator::conditions::Assessment;
use crate::operator::driver::Verdict;

/// How often a Ready dataset is looked at again without a watch event.
const READY_RECHECK: Duration = Duration::from_secs(300);

/// The newest build Job of a dataset (its generation's or a scheduled refresh), with the
/// termination message of its finished pod.
#[derive(Debug, Clone, Default)]
pub struct ObservedBuild {
    /// The Job, if any exists.
    pub job: Option<Job>,
    /// What the finished build container wrote to its termination-message path.
    pub termination_message: Option<String>,
}

/// Whether a Job has a condition of this type that is true (`Complete`, `Failed`).
pub fn job_condition(job: &Job, type_: &str) -> bool {
    job.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == type_ && c.status == "True"))
}

/// Whether a Job has finished, well or not.
pub fn job_finished(job: &Job) -> bool {
    job_condition(job, "Complete") || job_condition(job, "Failed")
}

/// The verdict and the status a build gives. A published revision stays in the status while
/// a newer build runs or fails: what was published is still there.
pub fn from_build(
    dataset: &TwinDataset,
    observed: &ObservedBuild,
) -> (Verdict<DatasetPhase>, TwinDatasetStatus) {
    let mut status = dataset.status.clone().unwrap_or_default();
    let Some(job) = &observed.job else {
        let assessment = Assessment::not_ready(
            DatasetPhase::Pending,
            "BuildPending",
            "spec accepted; starting the build Job",
        );
        return (Verdict::settled(assessment), status);
    };
    let name = job.name_any();
    let report = observed.termination_message.as_deref().map(BuildReport::parse);
    let finished = job.status.as_ref().and_then(|s| s.completion_time.clone());
    let assessment = if job_condition(job, "Complete") {
        match report {
            Some(Ok(BuildReport::Published(published))) => {
                let assessment = Assessment::ready(
                    DatasetPhase::Ready,
                    "RevisionPublished",
                    published_message(&published),
                );
                status.revision = Some(published.revision);
                status.stats = Some(published.stats);
                status.sources = published.sources;
                status.artifacts = Some(published.artifacts);
                status.last_build_time = finished;
                return (Verdict { assessment, recheck: Some(READY_RECHECK) }, status);
            }
            _ => Assessment::not_ready(
                DatasetPhase::Failed,
                "BuildResultMissing",
                format!(
                    "Job {name} succeeded but its pod left no readable result in its termination message"
                ),
            ),
        }
    } else if job_condition(job, "Failed") {
        match report {
            Some(Ok(BuildReport::Failed(failed))) => {
                let assessment = Assessment::not_ready(
                    DatasetPhase::Failed,
                    &failed.reason,
                    failed_message(&name, &failed),
                );
                status.sources = failed.sources;
                assessment
            }
            _ => Assessment::not_ready(
                DatasetPhase::Failed,
                "BuildFailed",
                format!("Job {name} failed; see kubectl logs job/{name}"),
            ),
        }
    } else {
        Assessment::not_ready(
            DatasetPhase::Running,
            "Building",
            format!("Job {name} is building the dataset"),
        )
    };
    (Verdict::settled(assessment), status)
}

fn published_message(published: &PublishedBuild) -> String {
    let failed: Vec<&str> =
        published.sources.iter().filter(|s| s.error.is_some()).map(|s| s.name.as_str()).collect();
    let stats = &published.stats;
    format!(
        "revision {}: {} documents, {} chunks, {} instruction samples{}",
        published.revision,
        stats.documents,
        stats.chunks,
        stats.instruct_samples,
        if failed.is_empty() {
            String::new()
        } else {
            format!("; sources that failed: {}", failed.join(", "))
        }
    )
}

fn failed_message(job: &str, failed: &FailedBuild) -> String {
    let sources: Vec<String> =
        failed.sources.iter().filter_map(|s| s.error.as_ref().map(|e| format!("{}: {e}", s.name))).collect();
    let detail = if sources.is_empty() { String::new() } else { format!(" ({})", sources.join("; ")) };
    format!("Job {job} failed: {}{detail}", failed.error)
}
