//! The TwinEndpoint controller: resolve the model (a TwinTrainingJob's adapter or a base
//! model) and the dataset it retrieves from, then (in the serving issue) build and apply the
//! engine and gateway, and write the status.

use std::sync::Arc;
use std::time::Duration;

use futures::{Future, StreamExt};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::ResourceExt;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{Controller, reflector, watcher};
use serde_json::json;

use super::conditions::Assessment;
use super::context::Context;
use super::error::{Error, Result};
use super::reconcile::{TwinKind, error_policy, instrumented, primary_stream, publish_status};
use super::references::{StorageCheck, check_model_uri};
use crate::api::dataset::DatasetPhase;
use crate::api::endpoint::{EndpointPhase, ServedModel};
use crate::api::training::TrainingPhase;
use crate::api::{TwinDataset, TwinEndpoint, TwinTrainingJob};

impl TwinKind for TwinEndpoint {
    const CONTROLLER: &'static str = "twinendpoint";
    type Phase = EndpointPhase;

    fn current_phase(&self) -> Option<EndpointPhase> {
        self.status.as_ref().and_then(|s| s.phase)
    }

    fn current_conditions(&self) -> &[Condition] {
        self.status.as_ref().map(|s| s.conditions.as_slice()).unwrap_or_default()
    }

    fn is_warning(phase: EndpointPhase) -> bool {
        matches!(phase, EndpointPhase::Failed | EndpointPhase::Degraded)
    }
}

/// What the endpoint references, as observed.
#[derive(Debug, Default)]
pub struct Observed {
    /// The TwinTrainingJob of `spec.model.trainingJobRef`, if named and found.
    pub training_job: Option<TwinTrainingJob>,
    /// The TwinDataset of `spec.datasetRef`, if named and found.
    pub dataset: Option<TwinDataset>,
}

/// Pure: the endpoint's state and the model it would serve.
pub fn assess(
    endpoint: &TwinEndpoint,
    observed: &Observed,
) -> (Assessment<EndpointPhase>, Option<ServedModel>) {
    let namespace = endpoint.namespace().unwrap_or_default();
    let model = &endpoint.spec.model;
    let local_only = [
        model.base_model.as_ref().map(|b| ("spec.model.baseModel.uri", b.uri.as_str())),
        model.adapter_uri.as_deref().map(|a| ("spec.model.adapterUri", a)),
    ];
    for (field, uri) in local_only.into_iter().flatten() {
        if let StorageCheck::Unusable(message) = check_model_uri(field, uri) {
            return (Assessment::not_ready(EndpointPhase::Failed, "InvalidSpec", message), None);
        }
    }
    let mut served = match (&model.training_job_ref, &model.base_model) {
        (Some(reference), _) => {
            let name = &reference.name;
            let Some(job) = &observed.training_job else {
                let message = format!(
                    "TwinTrainingJob {name:?} not found in namespace {namespace:?}: create it or correct spec.model.trainingJobRef.name"
                );
                return (Assessment::not_ready(EndpointPhase::Pending, "TrainingJobNotFound", message), None);
            };
            let status = job.status.as_ref();
            match (status.and_then(|s| s.phase), status.and_then(|s| s.model.as_ref())) {
                (Some(TrainingPhase::Succeeded), Some(trained)) => ServedModel {
                    base_model: trained.base_model.clone(),
                    adapter_uri: Some(trained.adapter_uri.clone()),
                    training_job: Some(name.clone()),
                    dataset_revision: status.and_then(|s| s.dataset_revision.clone()),
                },
                (Some(TrainingPhase::Failed), _) => {
                    let message = format!(
                        "TwinTrainingJob {name:?} failed, so there is no model to serve (see kubectl describe twintrainingjob {name})"
                    );
                    return (
                        Assessment::not_ready(EndpointPhase::Failed, "TrainingJobFailed", message),
                        None,
                    );
                }
                (phase, _) => {
                    let state = phase.map(|p| format!("{p:?}")).unwrap_or_else(|| "not started".into());
                    let message =
                        format!("TwinTrainingJob {name:?} is {state}; serving starts once it has Succeeded");
                    return (Assessment::not_ready(EndpointPhase::Pending, "WaitingForModel", message), None);
                }
            }
        }
        (None, Some(base)) => ServedModel {
            base_model: base.uri.clone(),
            adapter_uri: model.adapter_uri.clone(),
            training_job: None,
            dataset_revision: None,
        },
        (None, None) => {
            return (
                Assessment::not_ready(
                    EndpointPhase::Failed,
                    "InvalidSpec",
                    "spec.model needs trainingJobRef or baseModel",
                ),
                None,
            );
        }
    };
    if let Some(reference) = &endpoint.spec.dataset_ref {
        let name = &reference.name;
        let Some(dataset) = &observed.dataset else {
            let message = format!(
                "TwinDataset {name:?} not found in namespace {namespace:?}: create it, correct spec.datasetRef.name, or remove datasetRef to serve without retrieval"
            );
            return (Assessment::not_ready(EndpointPhase::Pending, "DatasetNotFound", message), None);
        };
        let status = dataset.status.as_ref();
        match (status.and_then(|s| s.phase), status.and_then(|s| s.revision.clone())) {
            (Some(DatasetPhase::Ready), Some(revision)) => {
                // Retrieval uses the revision the adapter was trained on when there is one.
                served.dataset_revision.get_or_insert(revision);
            }
            (phase, _) => {
                let state = phase.map(|p| format!("{p:?}")).unwrap_or_else(|| "not built yet".into());
                let message = format!("TwinDataset {name:?} is {state}; serving starts once it is Ready");
                return (
                    Assessment::not_ready(EndpointPhase::Pending, "WaitingForDataset", message),
                    Some(served),
                );
            }
        }
    }
    let message = format!(
        "model resolved ({}{}); waiting for the engine and gateway to deploy",
        served.base_model,
        served.adapter_uri.as_deref().map(|a| format!(" + adapter {a}")).unwrap_or_default()
    );
    (Assessment::not_ready(EndpointPhase::Pending, "ModelResolved", message), Some(served))
}

async fn reconcile(endpoint: Arc<TwinEndpoint>, ctx: Arc<Context>) -> Result<Action> {
    instrumented(endpoint.clone(), ctx.clone(), async move {
        let namespace = endpoint.namespace().ok_or(Error::MissingNamespace)?;
        let mut observed = Observed::default();
        if let Some(reference) = &endpoint.spec.model.training_job_ref {
            observed.training_job =
                ctx.namespaced_api::<TwinTrainingJob>(&namespace).get_opt(&reference.name).await?;
        }
        if let Some(reference) = &endpoint.spec.dataset_ref {
            observed.dataset = ctx.namespaced_api::<TwinDataset>(&namespace).get_opt(&reference.name).await?;
        }
        let (assessment, served) = assess(&endpoint, &observed);
        let previous = serde_json::to_value(&endpoint.status)
            .map_err(|source| Error::Serialize { what: "status", source })?;
        let mut status = if previous.is_null() { json!({}) } else { previous.clone() };
        if let Some(served) = served {
            status["model"] =
                serde_json::to_value(served).map_err(|source| Error::Serialize { what: "model", source })?;
        }
        publish_status(&ctx, &*endpoint, &assessment, status, previous).await?;
        let resolved = assessment.reason == "ModelResolved";
        Ok(if resolved { Action::requeue(Duration::from_secs(300)) } else { Action::await_change() })
    })
    .await
}

/// The controller: TwinEndpoints, woken by changes of their spec and of the TwinTrainingJobs
/// and TwinDatasets they reference.
pub fn run(
    ctx: Arc<Context>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) -> (reflector::Store<TwinEndpoint>, impl Future<Output = ()>) {
    let (reader, stream) = primary_stream::<TwinEndpoint>(&ctx);
    let by_training_job = reader.clone();
    let by_dataset = reader.clone();
    let controller = Controller::for_stream(stream, reader.clone())
        .watches(
            ctx.watched_api::<TwinTrainingJob>(),
            watcher::Config::default(),
            move |job: TwinTrainingJob| {
                by_training_job
                    .state()
                    .into_iter()
                    .filter(|e| {
                        e.namespace() == job.namespace()
                            && e.spec
                                .model
                                .training_job_ref
                                .as_ref()
                                .is_some_and(|r| r.name == job.name_any())
                    })
                    .map(|e| ObjectRef::from_obj(&*e))
                    .collect::<Vec<_>>()
            },
        )
        .watches(ctx.watched_api::<TwinDataset>(), watcher::Config::default(), move |dataset: TwinDataset| {
            by_dataset
                .state()
                .into_iter()
                .filter(|e| {
                    e.namespace() == dataset.namespace()
                        && e.spec.dataset_ref.as_ref().is_some_and(|r| r.name == dataset.name_any())
                })
                .map(|e| ObjectRef::from_obj(&*e))
                .collect::<Vec<_>>()
        })
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy::<TwinEndpoint>, ctx)
        .for_each(|_| async {});
    (reader, controller)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(model: serde_json::Value, dataset: Option<&str>) -> TwinEndpoint {
        let mut spec = json!({"model": model});
        if let Some(name) = dataset {
            spec["datasetRef"] = json!({"name": name});
        }
        serde_json::from_value(json!({"apiVersion": "llmtwin.dev/v1alpha1", "kind": "TwinEndpoint",
            "metadata": {"name": "paul", "namespace": "twins", "generation": 1}, "spec": spec}))
        .unwrap()
    }

    fn training_job(status: serde_json::Value) -> TwinTrainingJob {
        serde_json::from_value(json!({"apiVersion": "llmtwin.dev/v1alpha1", "kind": "TwinTrainingJob",
            "metadata": {"name": "paul-v1", "namespace": "twins"},
            "spec": {"datasetRef": {"name": "paul"}, "baseModel": {"uri": "hf://a/b"}, "backend": {"kubernetes": {}}, "output": {"uri": "s3://b/x"}},
            "status": status})).unwrap()
    }

    #[test]
    fn waits_for_the_training_job_then_resolves_its_adapter() {
        let ep = endpoint(json!({"trainingJobRef": {"name": "paul-v1"}}), None);
        let (missing, _) = assess(&ep, &Observed::default());
        assert_eq!(missing.reason, "TrainingJobNotFound");
        let running =
            Observed { training_job: Some(training_job(json!({"phase": "Running"}))), dataset: None };
        let (waiting, _) = assess(&ep, &running);
        assert_eq!((waiting.phase, waiting.reason.as_str()), (EndpointPhase::Pending, "WaitingForModel"));
        let done = Observed {
            training_job: Some(training_job(json!({"phase": "Succeeded", "datasetRevision": "r1",
                "model": {"baseModel": "hf://a/b", "adapterUri": "s3://b/x/models/paul-v1/1/adapter"}}))),
            dataset: None,
        };
        let (resolved, served) = assess(&ep, &done);
        assert_eq!(resolved.reason, "ModelResolved");
        let served = served.unwrap();
        assert_eq!(served.adapter_uri.as_deref(), Some("s3://b/x/models/paul-v1/1/adapter"));
        assert_eq!(served.dataset_revision.as_deref(), Some("r1"));
        let failed = Observed { training_job: Some(training_job(json!({"phase": "Failed"}))), dataset: None };
        assert_eq!(assess(&ep, &failed).0.phase, EndpointPhase::Failed);
    }

    #[test]
    fn a_base_model_endpoint_waits_for_its_dataset() {
        let ep = endpoint(json!({"baseModel": {"uri": "hf://a/b"}}), Some("paul"));
        assert_eq!(assess(&ep, &Observed::default()).0.reason, "DatasetNotFound");
        let dataset: TwinDataset = serde_json::from_value(json!({"apiVersion": "llmtwin.dev/v1alpha1", "kind": "TwinDataset",
            "metadata": {"name": "paul", "namespace": "twins"},
            "spec": {"author": {"name": "P"}, "sources": [{"name": "n", "configMap": {"name": "n"}}], "output": {"uri": "s3://b/x"}},
            "status": {"phase": "Ready", "revision": "r7"}})).unwrap();
        let (ok, served) = assess(&ep, &Observed { training_job: None, dataset: Some(dataset) });
        assert_eq!(ok.reason, "ModelResolved");
        assert_eq!(served.unwrap().dataset_revision.as_deref(), Some("r7"));
        let local = endpoint(json!({"baseModel": {"uri": "file:///models/x"}}), None);
        assert_eq!(assess(&local, &Observed::default()).0.reason, "InvalidSpec");
    }
}
