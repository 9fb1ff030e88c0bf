//! Validating a TwinEndpoint (pure): the model it serves resolves (a TwinTrainingJob's promoted
//! adapter, or a base model), then the dataset it retrieves from has published a revision.

use std::time::Duration;

use kube::ResourceExt;

use crate::api::dataset::DatasetPhase;
use crate::api::endpoint::{EndpointPhase, RetrievalRevision, ServedModel};
use crate::api::training::TrainingPhase;
use crate::api::{TwinDataset, TwinEndpoint, TwinTrainingJob};
use crate::operator::conditions::Assessment;
use crate::operator::driver::{Validation, Verdict, upstream_failure};
use crate::operator::references::{StorageCheck, check_model_uri, check_storage_uri, missing_reference};

/// How often a Ready endpoint is looked at again without a watch event.
pub const RESOLVED_RECHECK: Duration = Duration::from_secs(300);

/// The model the endpoint serves, given its training job as observed.
pub fn resolve_model(
    endpoint: &TwinEndpoint,
    training_job: Option<&TwinTrainingJob>,
) -> Validation<ServedModel, EndpointPhase> {
    let namespace = endpoint.namespace().unwrap_or_default();
    let wait = Validation::wait;
    let model = &endpoint.spec.model;
    let cluster_uris = [
        model.base_model.as_ref().map(|b| ("spec.model.baseModel.uri", b.uri.as_str())),
        model.adapter_uri.as_deref().map(|a| ("spec.model.adapterUri", a)),
    ];
    // `<name>-engine` is the engine's Deployment and Service of the endpoint `<name>`, and `<name>`
    // the gateway's: an endpoint with that suffix would take over another one's engine.
    if endpoint.name_any().ends_with("-engine") {
        let message = format!(
            "the name {:?} ends with -engine, the suffix of another endpoint's engine Deployment and Service: rename it",
            endpoint.name_any()
        );
        return wait(EndpointPhase::Failed, "InvalidName", message);
    }
    for (field, uri) in cluster_uris.into_iter().flatten() {
        if let StorageCheck::Unusable(message) = check_model_uri(field, uri) {
            return wait(EndpointPhase::Failed, "InvalidSpec", message);
        }
    }
    if let Some(log) = &endpoint.spec.gateway.prompt_log_uri
        && let StorageCheck::Unusable(message) = check_storage_uri("spec.gateway.promptLogUri", log)
    {
        return wait(EndpointPhase::Failed, "InvalidSpec", message);
    }
    match (&model.training_job_ref, &model.base_model) {
        (Some(reference), _) => {
            let name = &reference.name;
            let Some(job) = training_job else {
                let message =
                    missing_reference("TwinTrainingJob", name, &namespace, "spec.model.trainingJobRef.name");
                return wait(EndpointPhase::Pending, "TrainingJobNotFound", message);
            };
            let status = job.status.as_ref();
            // The job's promoted model: the newest run that passed its gate, kept while later
            // runs train, fail or are rejected.
            if let Some(promoted) = status.and_then(|s| s.model.as_ref()) {
                let legacy_revision = || {
                    // Written before models named their revision: the status's, which was the
                    // model's while a new run cleared the model.
                    status
                        .filter(|s| s.phase == Some(TrainingPhase::Succeeded))
                        .and_then(|s| s.dataset_revision.clone())
                };
                let revision = promoted.dataset_revision.clone().or_else(legacy_revision);
                return Validation::Proceed(ServedModel {
                    base_model: promoted.base_model.clone(),
                    adapter_uri: Some(promoted.adapter_uri.clone()),
                    training_job: Some(name.clone()),
                    dataset_revision: revision.clone(),
                    adapter_revision: revision,
                });
            }
            // A job whose status lost its model (recreated, or written by an older operator):
            // the adapter this endpoint serves stays, and is watched over.
            let last_good = endpoint.status.as_ref().and_then(|s| s.model.as_ref()).filter(|shown| {
                shown.training_job.as_deref() == Some(name.as_str()) && shown.adapter_uri.is_some()
            });
            if let Some(last_good) = last_good {
                return Validation::Proceed(last_good.clone());
            }
            match status.and_then(|s| s.phase) {
                Some(TrainingPhase::Failed) => wait(
                    EndpointPhase::Failed,
                    "TrainingJobFailed",
                    format!(
                        "TwinTrainingJob {name:?} failed, so there is no model to serve: {}",
                        upstream_failure(job)
                    ),
                ),
                Some(TrainingPhase::Rejected) => wait(
                    EndpointPhase::Failed,
                    "GateFailed",
                    format!(
                        "no run of TwinTrainingJob {name:?} has passed its evaluation gate, so there is no model to serve: {}",
                        upstream_failure(job)
                    ),
                ),
                phase => {
                    let state = phase.map(|p| format!("{p:?}")).unwrap_or_else(|| "not started".into());
                    wait(
                        EndpointPhase::Pending,
                        "WaitingForModel",
                        format!(
                            "TwinTrainingJob {name:?} is {state}; serving starts once a run has Succeeded"
                        ),
                    )
                }
            }
        }
        (None, Some(base)) => Validation::Proceed(ServedModel {
            base_model: base.uri.clone(),
            adapter_uri: model.adapter_uri.clone(),
            training_job: None,
            dataset_revision: None,
            adapter_revision: None,
        }),
        (None, None) => wait(
            EndpointPhase::Failed,
            "InvalidSpec",
            "spec.model needs trainingJobRef or baseModel".to_string(),
        ),
    }
}

/// The served model with the dataset revision retrieval uses (the dataset's newest published
/// one, or with `gateway.rag.revision: adapter` the one the adapter was trained on), given the
/// dataset as observed; with the verdict to stop on when it has published none yet.
pub fn resolve_dataset(
    endpoint: &TwinEndpoint,
    dataset: Option<&TwinDataset>,
    mut served: ServedModel,
) -> (ServedModel, Option<Verdict<EndpointPhase>>) {
    let waiting = |reason: &str, message: String| {
        Some(Verdict::settled(Assessment::not_ready(EndpointPhase::Pending, reason, message)))
    };
    if let Some(reference) = &endpoint.spec.dataset_ref {
        let name = &reference.name;
        let Some(dataset) = dataset else {
            let namespace = endpoint.namespace().unwrap_or_default();
            let message = format!(
                "TwinDataset {name:?} not found in namespace {namespace:?}: create it, correct spec.datasetRef.name, or remove datasetRef to serve without retrieval"
            );
            return (served, waiting("DatasetNotFound", message));
        };
        let status = dataset.status.as_ref();
        match (status.and_then(|s| s.phase), status.and_then(|s| s.revision.clone())) {
            // The newest published revision (kept in the status while the dataset builds again,
            // or after a build failed: its files stay where they are), unless retrieval is
            // pinned to the adapter's.
            (_, Some(newest)) => match endpoint.spec.gateway.rag.revision {
                RetrievalRevision::Latest => served.dataset_revision = Some(newest),
                RetrievalRevision::Adapter => {
                    served.dataset_revision.get_or_insert(newest);
                }
            },
            (Some(DatasetPhase::Failed), _) => {
                let message = format!(
                    "TwinDataset {name:?} failed: {}; serving starts once it is Ready",
                    upstream_failure(dataset)
                );
                return (served, waiting("DatasetFailed", message));
            }
            (phase, _) => {
                let state = phase.map(|p| format!("{p:?}")).unwrap_or_else(|| "not built yet".into());
                let message = format!("TwinDataset {name:?} is {state}; serving starts once it is Ready");
                return (served, waiting("WaitingForDataset", message));
            }
        }
    }
    (served, None)
}
