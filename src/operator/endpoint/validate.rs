//! Validating a TwinEndpoint (pure): the model it serves resolves (a TwinTrainingJob's promoted
//! adapter, or a base model), the dataset it retrieves from has published a revision, and its
//! engine can load the model. What it returns is everything the builders need, so they cannot
//! fail on the spec.

use std::time::Duration;

use kube::ResourceExt;

use super::plan::{EnginePlan, plan_engine};
use crate::api::common::missing_reference;
use crate::api::common::{SecretKeyRef, StorageLocation};
use crate::api::endpoint::{EndpointPhase, EngineKind, RetrievalRevision, ServedModel};
use crate::api::readiness::{DatasetReadiness, NO_RETRIEVAL};
use crate::api::training::TrainingPhase;
use crate::api::{TwinDataset, TwinEndpoint, TwinEngine, TwinTrainingJob};
use crate::contract::trainer::dataset_output;
use crate::operator::conditions::Assessment;
use crate::operator::driver::{Validation, Verdict, upstream_failure};
use crate::operator::references::{StorageCheck, check_model_uri, check_storage_uri};
use crate::storage::StorageUri;

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
                let message = missing_reference(
                    "TwinTrainingJob",
                    name,
                    &namespace,
                    "spec.model.trainingJobRef.name",
                    None,
                );
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
    let Some(reference) = &endpoint.spec.dataset_ref else { return (served, None) };
    let readiness = DatasetReadiness::of(dataset);
    match (&readiness, readiness.published_revision()) {
        // The newest published revision (kept in the status while the dataset builds again,
        // or after a build failed: its files stay where they are), unless retrieval is pinned
        // to the adapter's.
        (_, Some(newest)) => match endpoint.spec.gateway.rag.revision {
            RetrievalRevision::Latest => served.dataset_revision = Some(newest.to_string()),
            RetrievalRevision::Adapter => {
                served.dataset_revision.get_or_insert_with(|| newest.to_string());
            }
        },
        (DatasetReadiness::NotReady { why, .. }, None) => {
            let namespace = endpoint.namespace().unwrap_or_default();
            let wait =
                why.wait(&reference.name, &namespace, "spec.datasetRef.name", "serving", Some(NO_RETRIEVAL));
            let assessment = Assessment::not_ready(EndpointPhase::Pending, wait.reason, wait.message);
            return (served, Some(Verdict::settled(assessment)));
        }
        (DatasetReadiness::Ready(_), None) => unreachable!("a Ready dataset has published its revision"),
    }
    (served, None)
}

/// The dataset retrieval reads, with the root its revisions are under.
#[derive(Debug, Clone)]
#[allow(missing_docs)]
pub struct Retrieval<'a> {
    pub dataset: &'a TwinDataset,
    /// Its `spec.output.uri`, read.
    pub output: StorageUri,
}

/// An endpoint that can be served: the model, where it comes from, what retrieval reads and
/// how the engine loads it.
#[derive(Debug, Clone)]
pub struct ValidEndpoint<'a> {
    /// The model wanted now: base model, adapter and the dataset revisions of its lineage.
    pub model: ServedModel,
    /// The training job whose adapter it serves.
    pub training_job: Option<&'a TwinTrainingJob>,
    /// The dataset retrieval reads, when it names one.
    pub retrieval: Option<Retrieval<'a>>,
    /// The Hugging Face token of a gated base model.
    pub hub_token: Option<&'a SecretKeyRef>,
    /// Where the adapter was written (its S3 endpoint, region and credentials).
    pub adapter_location: Option<&'a StorageLocation>,
    /// How the engine loads the model.
    pub engine: EnginePlan,
    /// The TwinEngine it shares, for `engine.kind: shared`.
    pub shared_engine: Option<&'a TwinEngine>,
}

/// The LoRA rank of the served adapter, when its training job reported it.
pub fn adapter_rank(model: &ServedModel, training_job: Option<&TwinTrainingJob>) -> Option<u32> {
    let trained = training_job?.status.as_ref()?.model.as_ref()?;
    (Some(&trained.adapter_uri) == model.adapter_uri.as_ref()).then_some(trained.max_lora_rank).flatten()
}

/// Checks that a shared engine's TwinEngine exists and runs the base model the adapter was
/// trained on, and can hold its rank.
pub fn check_shared_engine(
    endpoint: &TwinEndpoint,
    model: &ServedModel,
    training_job: Option<&TwinTrainingJob>,
    engine: Option<&TwinEngine>,
) -> Option<Verdict<EndpointPhase>> {
    let reference = endpoint
        .spec
        .engine
        .engine_ref
        .as_ref()
        .filter(|_| endpoint.spec.engine.kind == EngineKind::Shared)?;
    let name = &reference.name;
    let settled = |phase, reason: &str, message: String| {
        Some(Verdict::settled(Assessment::not_ready(phase, reason, message)))
    };
    let Some(engine) = engine else {
        let namespace = endpoint.namespace().unwrap_or_default();
        let message = missing_reference("TwinEngine", name, &namespace, "spec.engine.engineRef.name", None);
        return settled(EndpointPhase::Pending, "EngineNotFound", message);
    };
    let runs = &engine.spec.base_model.uri;
    if runs != &model.base_model {
        return settled(
            EndpointPhase::Failed,
            "BaseModelMismatch",
            format!(
                "the model is {} but TwinEngine {name:?} runs {runs}: an adapter is served only on the base model it was trained on; name a TwinEngine of {}",
                model.base_model, model.base_model
            ),
        );
    }
    if let (Some(rank), Some(most)) = (adapter_rank(model, training_job), engine.spec.adapters.max_rank)
        && rank > most
    {
        return settled(
            EndpointPhase::Failed,
            "AdapterRankTooLarge",
            format!(
                "the adapter's LoRA rank is {rank}, above TwinEngine {name:?}'s adapters.maxRank {most}: raise it (the engine restarts once) or train with a smaller rank"
            ),
        );
    }
    None
}

/// Checks an endpoint against its training job, dataset and shared engine as observed.
pub fn validate<'a>(
    endpoint: &'a TwinEndpoint,
    training_job: Option<&'a TwinTrainingJob>,
    dataset: Option<&'a TwinDataset>,
    shared_engine: Option<&'a TwinEngine>,
) -> Validation<ValidEndpoint<'a>, EndpointPhase> {
    let served = match resolve_model(endpoint, training_job) {
        Validation::Proceed(served) => served,
        Validation::Wait(verdict) => return Validation::Wait(verdict),
    };
    let (model, waiting) = resolve_dataset(endpoint, dataset, served);
    if let Some(verdict) = waiting {
        return Validation::Wait(verdict);
    }
    let invalid = |message| Validation::wait(EndpointPhase::Failed, "InvalidSpec", message);
    if let Some(verdict) = check_shared_engine(endpoint, &model, training_job, shared_engine) {
        return Validation::Wait(verdict);
    }
    let engine = match plan_engine(endpoint, &model) {
        Ok(engine) => engine,
        Err(message) => return invalid(message),
    };
    let retrieval = match dataset.filter(|_| endpoint.spec.dataset_ref.is_some()) {
        Some(dataset) => match dataset_output(dataset) {
            Ok(output) => Some(Retrieval { dataset, output }),
            Err(message) => return invalid(message),
        },
        None => None,
    };
    let job_spec = training_job.map(|job| &job.spec);
    Validation::Proceed(ValidEndpoint {
        hub_token: match job_spec {
            Some(spec) => spec.base_model.token_secret_ref.as_ref(),
            None => endpoint.spec.model.base_model.as_ref().and_then(|b| b.token_secret_ref.as_ref()),
        },
        adapter_location: job_spec.map(|spec| &spec.output),
        training_job,
        retrieval,
        engine,
        model,
        shared_engine: shared_engine.filter(|_| endpoint.spec.engine.kind == EngineKind::Shared),
    })
}
