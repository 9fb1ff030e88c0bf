//! Validating a TwinTrainingJob (pure): its URIs can be used in a cluster, and the dataset it
//! trains on exists and is Ready; then the revision this run trains on is pinned.

use std::time::Duration;

use kube::ResourceExt;

use crate::api::dataset::DatasetPhase;
use crate::api::training::TrainingPhase;
use crate::api::{TwinDataset, TwinTrainingJob};
use crate::operator::conditions::Assessment;
use crate::operator::driver::{Validation, Verdict, upstream_failure};
use crate::operator::references::{StorageCheck, check_model_uri, check_storage_uri, missing_reference};

/// How often a job with a pinned revision is looked at again without a watch event.
pub const PINNED_RECHECK: Duration = Duration::from_secs(300);

/// A training job whose dataset is Ready, with the revision it trains on.
#[derive(Debug, Clone, PartialEq)]
pub struct PinnedDataset {
    /// The dataset revision this run trains on.
    pub revision: String,
    /// What the status says meanwhile.
    pub verdict: Verdict<TrainingPhase>,
}

/// Checks a training job against its dataset as observed.
pub fn validate(
    job: &TwinTrainingJob,
    dataset: Option<&TwinDataset>,
) -> Validation<PinnedDataset, TrainingPhase> {
    let wait = Validation::wait;
    for check in [
        check_storage_uri("spec.output.uri", &job.spec.output.uri),
        check_model_uri("spec.baseModel.uri", &job.spec.base_model.uri),
        match job.spec.evaluation.control.as_str() {
            builtin if builtin.starts_with("builtin:") => StorageCheck::Usable,
            control => check_storage_uri("spec.evaluation.control", control),
        },
    ] {
        if let StorageCheck::Unusable(message) = check {
            return wait(TrainingPhase::Failed, "InvalidSpec", message);
        }
    }
    // A run keeps the revision it pinned whatever its dataset does meanwhile (a rebuild, a
    // failure: the pinned revision's files stay where they are). A new generation pins the
    // newest Ready revision, and so does a finished run when the spec asks to retrain on new
    // revisions.
    let job_status = job.status.as_ref();
    let pinned = job_status
        .filter(|s| s.observed_generation == job.metadata.generation)
        .and_then(|s| s.dataset_revision.clone());
    let finished = matches!(
        job_status.and_then(|s| s.phase),
        Some(TrainingPhase::Succeeded | TrainingPhase::Rejected | TrainingPhase::Failed)
    );
    let ready_revision = dataset
        .and_then(|d| d.status.as_ref())
        .filter(|s| s.phase == Some(DatasetPhase::Ready))
        .and_then(|s| s.revision.clone());
    let name = &job.spec.dataset_ref.name;
    let revision = match (pinned, ready_revision) {
        (Some(pinned), Some(newest)) if job.spec.retrain_on_new_revision && finished && newest != pinned => {
            Some(newest)
        }
        (Some(pinned), _) => Some(pinned),
        (None, newest) => newest,
    };
    if let Some(revision) = revision {
        let message =
            format!("TwinDataset {name:?} revision {revision} is pinned; waiting for the trainer to start");
        let assessment = Assessment::not_ready(TrainingPhase::Pending, "DatasetReady", message);
        return Validation::Proceed(PinnedDataset {
            revision,
            verdict: Verdict { assessment, recheck: Some(PINNED_RECHECK) },
        });
    }
    let Some(dataset) = dataset else {
        let namespace = job.namespace().unwrap_or_default();
        let message = missing_reference("TwinDataset", name, &namespace, "spec.datasetRef.name");
        return wait(TrainingPhase::Pending, "DatasetNotFound", message);
    };
    let status = dataset.status.as_ref();
    match status.and_then(|s| s.phase) {
        // Still waiting (the dataset may build again and turn Ready), but degraded: the
        // upstream failure is what a person must fix.
        Some(DatasetPhase::Failed) => wait(
            TrainingPhase::WaitingForDataset,
            "DatasetFailed",
            format!(
                "TwinDataset {name:?} failed: {}; training starts once it is Ready",
                upstream_failure(dataset)
            ),
        ),
        phase => wait(
            TrainingPhase::WaitingForDataset,
            "WaitingForDataset",
            format!(
                "TwinDataset {name:?} is {}; training starts once it is Ready",
                phase.map(|p| format!("{p:?}")).unwrap_or_else(|| "not built yet".into())
            ),
        ),
    }
}
