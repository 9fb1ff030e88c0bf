//! The TwinTrainingJob controller: fetch the dataset it trains on, check it, pin its revision,
//! then (in the training issue) build and apply the trainer, and write the status.

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
use super::references::{StorageCheck, check_model_uri, check_storage_uri};
use crate::api::dataset::DatasetPhase;
use crate::api::training::TrainingPhase;
use crate::api::{TwinDataset, TwinTrainingJob};

impl TwinKind for TwinTrainingJob {
    const CONTROLLER: &'static str = "twintrainingjob";
    type Phase = TrainingPhase;

    fn current_phase(&self) -> Option<TrainingPhase> {
        self.status.as_ref().and_then(|s| s.phase)
    }

    fn current_conditions(&self) -> &[Condition] {
        self.status.as_ref().map(|s| s.conditions.as_slice()).unwrap_or_default()
    }

    fn is_warning(phase: TrainingPhase) -> bool {
        phase == TrainingPhase::Failed
    }
}

/// What the reconcile concluded, with the dataset revision it pins.
#[derive(Debug, PartialEq)]
pub struct TrainingAssessment {
    /// Phase and Ready condition.
    pub assessment: Assessment<TrainingPhase>,
    /// The dataset revision this run trains on.
    pub dataset_revision: Option<String>,
    /// When to look again.
    pub requeue: Option<Duration>,
}

/// Pure: the state of a training job given its dataset as observed.
pub fn assess(job: &TwinTrainingJob, dataset: Option<&TwinDataset>) -> TrainingAssessment {
    let pinned = job.status.as_ref().and_then(|s| s.dataset_revision.clone());
    let waiting =
        |assessment| TrainingAssessment { assessment, dataset_revision: pinned.clone(), requeue: None };
    let namespace = job.namespace().unwrap_or_default();
    if let StorageCheck::Unusable(message) = check_storage_uri("spec.output.uri", &job.spec.output.uri) {
        return waiting(Assessment::not_ready(TrainingPhase::Failed, "InvalidSpec", message));
    }
    if let StorageCheck::Unusable(message) = check_model_uri("spec.baseModel.uri", &job.spec.base_model.uri) {
        return waiting(Assessment::not_ready(TrainingPhase::Failed, "InvalidSpec", message));
    }
    let name = &job.spec.dataset_ref.name;
    let Some(dataset) = dataset else {
        return waiting(Assessment::not_ready(
            TrainingPhase::Pending,
            "DatasetNotFound",
            format!(
                "TwinDataset {name:?} not found in namespace {namespace:?}: create it or correct spec.datasetRef.name"
            ),
        ));
    };
    let status = dataset.status.as_ref();
    let phase = status.and_then(|s| s.phase);
    let revision = status.and_then(|s| s.revision.clone());
    match (phase, revision) {
        (Some(DatasetPhase::Ready), Some(revision)) => {
            // A run keeps the revision it started with; a new generation takes the newest.
            let observed_generation = job.status.as_ref().and_then(|s| s.observed_generation);
            let revision = match pinned {
                Some(pinned) if observed_generation == job.metadata.generation => pinned,
                _ => revision,
            };
            TrainingAssessment {
                assessment: Assessment::not_ready(
                    TrainingPhase::Pending,
                    "DatasetReady",
                    format!(
                        "TwinDataset {name:?} revision {revision} is pinned; waiting for the trainer to start"
                    ),
                ),
                dataset_revision: Some(revision),
                requeue: Some(Duration::from_secs(300)),
            }
        }
        (Some(DatasetPhase::Failed), _) => waiting(Assessment::not_ready(
            TrainingPhase::WaitingForDataset,
            "DatasetFailed",
            format!(
                "TwinDataset {name:?} failed; training starts once it is Ready (see kubectl describe twindataset {name})"
            ),
        )),
        (phase, _) => waiting(Assessment::not_ready(
            TrainingPhase::WaitingForDataset,
            "WaitingForDataset",
            format!(
                "TwinDataset {name:?} is {}; training starts once it is Ready",
                phase.map(|p| format!("{p:?}")).unwrap_or_else(|| "not built yet".into())
            ),
        )),
    }
}

async fn reconcile(job: Arc<TwinTrainingJob>, ctx: Arc<Context>) -> Result<Action> {
    instrumented(job.clone(), ctx.clone(), async move {
        let namespace = job.namespace().ok_or(Error::MissingNamespace)?;
        let dataset =
            ctx.namespaced_api::<TwinDataset>(&namespace).get_opt(&job.spec.dataset_ref.name).await?;
        let outcome = assess(&job, dataset.as_ref());
        let previous = serde_json::to_value(&job.status)
            .map_err(|source| Error::Serialize { what: "status", source })?;
        let mut status = previous.clone();
        if status.is_null() {
            status = json!({});
        }
        status["datasetRevision"] = json!(outcome.dataset_revision);
        publish_status(&ctx, &*job, &outcome.assessment, status, previous).await?;
        Ok(outcome.requeue.map(Action::requeue).unwrap_or_else(Action::await_change))
    })
    .await
}

/// The controller: TwinTrainingJobs, woken by changes of their spec (not of their own
/// status) and of the TwinDatasets they reference.
pub fn run(
    ctx: Arc<Context>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) -> (reflector::Store<TwinTrainingJob>, impl Future<Output = ()>) {
    let (reader, stream) = primary_stream::<TwinTrainingJob>(&ctx);
    let jobs = reader.clone();
    let controller = Controller::for_stream(stream, reader.clone())
        .watches(ctx.watched_api::<TwinDataset>(), watcher::Config::default(), move |dataset: TwinDataset| {
            jobs.state()
                .into_iter()
                .filter(|job| {
                    job.namespace() == dataset.namespace() && job.spec.dataset_ref.name == dataset.name_any()
                })
                .map(|job| ObjectRef::from_obj(&*job))
                .collect::<Vec<_>>()
        })
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy::<TwinTrainingJob>, ctx)
        .for_each(|_| async {});
    (reader, controller)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job() -> TwinTrainingJob {
        serde_json::from_value(json!({
            "apiVersion": "llmtwin.dev/v1alpha1", "kind": "TwinTrainingJob",
            "metadata": {"name": "paul-v1", "namespace": "twins", "generation": 1},
            "spec": {"datasetRef": {"name": "paul"}, "baseModel": {"uri": "hf://meta-llama/Llama-3.1-8B"},
                     "backend": {"kubernetes": {}}, "output": {"uri": "s3://twins/out"}}
        }))
        .unwrap()
    }

    fn dataset(phase: &str, revision: Option<&str>) -> TwinDataset {
        serde_json::from_value(json!({
            "apiVersion": "llmtwin.dev/v1alpha1", "kind": "TwinDataset",
            "metadata": {"name": "paul", "namespace": "twins"},
            "spec": {"author": {"name": "Paul"}, "sources": [{"name": "n", "configMap": {"name": "n"}}], "output": {"uri": "s3://twins/out"}},
            "status": {"phase": phase, "revision": revision}
        }))
        .unwrap()
    }

    #[test]
    fn a_missing_dataset_is_named_in_the_message() {
        let outcome = assess(&job(), None);
        assert_eq!(outcome.assessment.phase, TrainingPhase::Pending);
        assert_eq!(outcome.assessment.reason, "DatasetNotFound");
        assert!(outcome.assessment.message.contains("\"paul\" not found in namespace \"twins\""));
        assert_eq!(outcome.requeue, None, "no hot loop: the dataset watch wakes it");
    }

    #[test]
    fn waits_for_a_dataset_that_is_not_ready() {
        let outcome = assess(&job(), Some(&dataset("Running", None)));
        assert_eq!(
            (outcome.assessment.phase, outcome.assessment.reason.as_str()),
            (TrainingPhase::WaitingForDataset, "WaitingForDataset")
        );
        assert!(outcome.assessment.message.contains("is Running"));
        let failed = assess(&job(), Some(&dataset("Failed", None)));
        assert_eq!(failed.assessment.reason, "DatasetFailed");
    }

    #[test]
    fn pins_the_revision_of_a_ready_dataset() {
        let outcome = assess(&job(), Some(&dataset("Ready", Some("r1"))));
        assert_eq!(outcome.dataset_revision.as_deref(), Some("r1"));
        assert_eq!(outcome.assessment.reason, "DatasetReady");
        // The same generation keeps its pinned revision when the dataset moves on.
        let mut pinned = job();
        pinned.status =
            Some(serde_json::from_value(json!({"observedGeneration": 1, "datasetRevision": "r1"})).unwrap());
        assert_eq!(
            assess(&pinned, Some(&dataset("Ready", Some("r2")))).dataset_revision.as_deref(),
            Some("r1")
        );
        // A new generation trains on the newest revision.
        pinned.metadata.generation = Some(2);
        assert_eq!(
            assess(&pinned, Some(&dataset("Ready", Some("r2")))).dataset_revision.as_deref(),
            Some("r2")
        );
    }

    #[test]
    fn local_only_uris_fail_in_a_cluster() {
        let mut local = job();
        local.spec.output.uri = "file:///tmp/out".into();
        let outcome = assess(&local, None);
        assert_eq!(
            (outcome.assessment.phase, outcome.assessment.reason.as_str()),
            (TrainingPhase::Failed, "InvalidSpec")
        );
        assert!(outcome.assessment.message.contains("twin up"));
    }
}
