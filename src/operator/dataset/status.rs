//! The status of a TwinDataset from its newest build Job (pure): Running while it runs,
//! Ready with the revision its report names once it succeeded, Failed with the report's reason
//! once it failed.

use std::time::Duration;

use kube::ResourceExt;

use crate::api::TwinDataset;
use crate::api::dataset::{DatasetPhase, TwinDatasetStatus};
use crate::contract::{BuildReport, FailedBuild, PublishedBuild};
use crate::operator::children::job::{JobOutcome, JobReport, ObservedJob};
use crate::operator::conditions::Assessment;
use crate::operator::driver::Verdict;

/// How often a Ready dataset is looked at again without a watch event.
const READY_RECHECK: Duration = Duration::from_secs(300);

impl JobReport for BuildReport {
    fn read(line: &str) -> Option<Self> {
        BuildReport::parse(line).ok()
    }
}

/// The verdict and the status the newest build Job (the generation's or a scheduled refresh)
/// gives. A published revision stays in the status while a newer build runs or fails: what was
/// published is still there.
pub fn from_build(
    dataset: &TwinDataset,
    observed: &ObservedJob,
) -> (Verdict<DatasetPhase>, TwinDatasetStatus) {
    let mut status = dataset.status.clone().unwrap_or_default();
    let (Some(job), Some(outcome)) = (&observed.job, observed.outcome::<BuildReport>()) else {
        let assessment = Assessment::not_ready(
            DatasetPhase::Pending,
            "BuildPending",
            "spec accepted; starting the build Job",
        );
        return (Verdict::settled(assessment), status);
    };
    let name = job.name_any();
    let assessment = match outcome {
        JobOutcome::Succeeded { report: Some(BuildReport::Published(published)), at } => {
            let assessment =
                Assessment::ready(DatasetPhase::Ready, "RevisionPublished", published_message(&published));
            status.revision = Some(published.revision);
            status.stats = Some(published.stats);
            status.sources = published.sources;
            status.artifacts = Some(published.artifacts);
            status.last_build_time = at;
            return (Verdict { assessment, recheck: Some(READY_RECHECK) }, status);
        }
        JobOutcome::Succeeded { .. } => Assessment::not_ready(
            DatasetPhase::Failed,
            "BuildResultMissing",
            format!("Job {name} succeeded but its pod left no readable result in its termination message"),
        ),
        JobOutcome::Failed { report: Some(BuildReport::Failed(failed)), .. } => {
            let assessment =
                Assessment::not_ready(DatasetPhase::Failed, &failed.reason, failed_message(&name, &failed));
            status.sources = failed.sources;
            assessment
        }
        JobOutcome::Failed { .. } => Assessment::not_ready(
            DatasetPhase::Failed,
            "BuildFailed",
            format!("Job {name} failed; see kubectl logs job/{name}"),
        ),
        JobOutcome::Running => Assessment::not_ready(
            DatasetPhase::Running,
            "Building",
            format!("Job {name} is building the dataset"),
        ),
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
