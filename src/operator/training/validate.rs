//! Validating a TwinTrainingJob (pure): its URIs can be used in a cluster, the dataset it
//! trains on is Ready (or was when this run pinned its revision, and still exists), and what
//! its backend needs is there. What it returns is everything the builders and the SageMaker
//! request need, so they cannot fail on the spec.

use kube::ResourceExt;

use super::build::{Run, trainer_config};
use super::sagemaker::request;
use crate::api::readiness::DatasetReadiness;
use crate::api::training::{KubernetesBackend, SageMakerBackend, TrainingPhase};
use crate::api::{TwinDataset, TwinTrainingJob};
use crate::contract::TrainerConfig;
use crate::contract::trainer::RunPlaces;
use crate::operator::driver::Validation;
use crate::operator::references::{StorageCheck, check_model_uri, check_storage_uri};
use crate::operator::settings::OperatorSettings;

/// Where a run executes, with its settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Backend<'a> {
    /// A Job on this cluster.
    Kubernetes(&'a KubernetesBackend),
    /// A SageMaker training job, with the image it trains with.
    Sagemaker(&'a SageMakerBackend, &'a str),
}

/// A run that can start: its dataset (Ready when the run pinned its revision), the run, where
/// it reads and writes, its trainer's configuration and its backend.
#[derive(Debug, Clone)]
pub struct ValidRun<'a> {
    /// The dataset it trains on.
    pub dataset: &'a TwinDataset,
    /// Its name and pinned dataset revision.
    pub run: Run,
    /// The dataset revision's folder and the run's artifact folder.
    pub places: RunPlaces,
    /// What the trainer is given.
    pub config: TrainerConfig,
    /// Where it executes.
    pub backend: Backend<'a>,
}

/// Checks a training job against its dataset as observed.
pub fn validate<'a>(
    job: &'a TwinTrainingJob,
    dataset: Option<&'a TwinDataset>,
    settings: &'a OperatorSettings,
) -> Validation<ValidRun<'a>, TrainingPhase> {
    let invalid = |message| Validation::wait(TrainingPhase::Failed, "InvalidSpec", message);
    for check in [
        check_storage_uri("spec.output.uri", &job.spec.output.uri),
        check_model_uri("spec.baseModel.uri", &job.spec.base_model.uri),
        match job.spec.evaluation.control.as_str() {
            builtin if builtin.starts_with("builtin:") => StorageCheck::Usable,
            control => check_storage_uri("spec.evaluation.control", control),
        },
    ] {
        if let StorageCheck::Unusable(message) = check {
            return invalid(message);
        }
    }
    let name = &job.spec.dataset_ref.name;
    let namespace = job.namespace().unwrap_or_default();
    let readiness = DatasetReadiness::of(dataset);
    let (Some(revision), Some(dataset)) = (pinned_revision(job, &readiness), dataset) else {
        let DatasetReadiness::NotReady { why, .. } = &readiness else {
            unreachable!("a Ready dataset gives a revision to pin")
        };
        let wait = why.wait(name, &namespace, "spec.datasetRef.name", "training", None);
        // A dataset deleted after this run pinned its revision took where its files are with it.
        let phase = if dataset.is_none() { TrainingPhase::Pending } else { TrainingPhase::WaitingForDataset };
        return Validation::wait(phase, wait.reason, wait.message);
    };
    let run = Run::new(job, &revision);
    let places = match RunPlaces::of(job, dataset, &run) {
        Ok(places) => places,
        Err(message) => return invalid(message),
    };
    let config = trainer_config(job, &run, &places);
    let backend = match (&job.spec.backend.kubernetes, &job.spec.backend.sagemaker) {
        (Some(kubernetes), _) => Backend::Kubernetes(kubernetes),
        (None, Some(sagemaker)) => {
            if let Some(message) = request::unreachable_by_sagemaker(job, dataset, &config) {
                return invalid(message);
            }
            let Some(image) = request::image(sagemaker, &settings.sagemaker_trainer_image) else {
                return Validation::wait(
                    TrainingPhase::Pending,
                    "TrainerImageNotSet",
                    "no SageMaker training image: set spec.backend.sagemaker.image, or the operator's \
                     --sagemaker-trainer-image (the chart's workloads.sagemakerTrainerImage) to the trainer \
                     image pushed to ECR, the only registry SageMaker pulls from",
                );
            };
            Backend::Sagemaker(sagemaker, image)
        }
        (None, None) => return invalid("spec.backend needs kubernetes or sagemaker".into()),
    };
    Validation::Proceed(ValidRun { dataset, run, places, config, backend })
}

/// The dataset revision the job's run trains on, if it has one. A run keeps the revision it
/// pinned whatever its dataset does meanwhile (a rebuild, a failure: the pinned revision's
/// files stay where they are). A new generation pins the newest Ready revision, and so does a
/// finished run when the spec asks to retrain on new revisions.
fn pinned_revision(job: &TwinTrainingJob, dataset: &DatasetReadiness) -> Option<String> {
    let job_status = job.status.as_ref();
    let pinned = job_status
        .filter(|s| s.observed_generation == job.metadata.generation)
        .and_then(|s| s.dataset_revision.clone());
    let finished = matches!(
        job_status.and_then(|s| s.phase),
        Some(TrainingPhase::Succeeded | TrainingPhase::Rejected | TrainingPhase::Failed)
    );
    let ready = dataset.ready_revision().map(str::to_string);
    match (pinned, ready) {
        (Some(pinned), Some(newest)) if job.spec.retrain_on_new_revision && finished && newest != pinned => {
            Some(newest)
        }
        (Some(pinned), _) => Some(pinned),
        (None, newest) => newest,
    }
}
