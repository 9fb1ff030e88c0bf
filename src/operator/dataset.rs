//! The TwinDataset controller: check what the dataset reads from (ConfigMaps, local-only URIs),
//! then (in the dataset issue) build and apply the build Job, and write the status.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::{Future, StreamExt};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{Controller, reflector, watcher};
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::build::dataset_job::{self, COMPONENT};
use super::conditions::Assessment;
use super::context::{Context, FIELD_MANAGER};
use super::error::{Error, Result};
use super::reconcile::{TwinKind, error_policy, instrumented, primary_stream, publish_status};
use super::references::{StorageCheck, check_storage_uri};
use crate::api::TwinDataset;
use crate::api::dataset::{DatasetArtifacts, DatasetPhase, DatasetStats, SourceStatus};

/// How often to look again for a ConfigMap that is missing (ConfigMaps are not watched: a
/// cluster-wide ConfigMap cache would cost more memory than the operator itself).
const CONFIGMAP_RECHECK: Duration = Duration::from_secs(30);

impl TwinKind for TwinDataset {
    const CONTROLLER: &'static str = "twindataset";
    type Phase = DatasetPhase;

    fn current_phase(&self) -> Option<DatasetPhase> {
        self.status.as_ref().and_then(|s| s.phase)
    }

    fn current_conditions(&self) -> &[Condition] {
        self.status.as_ref().map(|s| s.conditions.as_slice()).unwrap_or_default()
    }

    fn is_warning(phase: DatasetPhase) -> bool {
        phase == DatasetPhase::Failed
    }
}

/// The ConfigMaps a dataset reads, by name, as observed (`None`: not found).
pub type ObservedConfigMaps = BTreeMap<String, Option<ConfigMap>>;

/// Pure: the state of a dataset given the ConfigMaps its sources name. Returns the assessment
/// and when to look again.
pub fn assess(
    dataset: &TwinDataset,
    config_maps: &ObservedConfigMaps,
) -> (Assessment<DatasetPhase>, Option<Duration>) {
    let namespace = dataset.namespace().unwrap_or_default();
    if let StorageCheck::Unusable(message) = check_storage_uri("spec.output.uri", &dataset.spec.output.uri) {
        return (Assessment::not_ready(DatasetPhase::Failed, "InvalidSpec", message), None);
    }
    for source in &dataset.spec.sources {
        if let Some(files) = &source.files
            && let StorageCheck::Unusable(message) =
                check_storage_uri(&format!("source {:?} files.uri", source.name), &files.uri)
        {
            return (Assessment::not_ready(DatasetPhase::Failed, "InvalidSpec", message), None);
        }
        let Some(reference) = &source.config_map else { continue };
        match config_maps.get(&reference.name).and_then(Option::as_ref) {
            None => {
                return (
                    Assessment::not_ready(
                        DatasetPhase::Pending,
                        "ConfigMapNotFound",
                        format!(
                            "ConfigMap {:?} (source {:?}) not found in namespace {namespace:?}: create it or correct the source",
                            reference.name, source.name
                        ),
                    ),
                    Some(CONFIGMAP_RECHECK),
                );
            }
            Some(config_map) => {
                let present = |key: &String| {
                    config_map.data.as_ref().is_some_and(|d| d.contains_key(key))
                        || config_map.binary_data.as_ref().is_some_and(|d| d.contains_key(key))
                };
                let missing: Vec<&String> = reference.keys.iter().filter(|k| !present(k)).collect();
                if !missing.is_empty() {
                    return (
                        Assessment::not_ready(
                            DatasetPhase::Pending,
                            "ConfigMapKeyNotFound",
                            format!(
                                "ConfigMap {:?} (source {:?}) has no key {missing:?}",
                                reference.name, source.name
                            ),
                        ),
                        Some(CONFIGMAP_RECHECK),
                    );
                }
            }
        }
    }
    (
        Assessment::not_ready(DatasetPhase::Pending, "BuildPending", "spec accepted; starting the build Job"),
        None,
    )
}

/// The latest build Job of a dataset (its generation's or a scheduled refresh), with the
/// termination message of its finished pod.
#[derive(Debug, Clone, Default)]
pub struct ObservedBuild {
    /// The Job, if any exists.
    pub job: Option<Job>,
    /// What the finished build container wrote to its termination-message path.
    pub termination_message: Option<String>,
}

/// What a finished build reported, as `twin dataset build` prints it.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct BuildReport {
    revision: Option<String>,
    stats: Option<DatasetStats>,
    #[serde(default)]
    sources: Vec<SourceStatus>,
    artifacts: Option<DatasetArtifacts>,
    error: Option<String>,
    reason: Option<String>,
}

/// The status fields a build sets besides phase and conditions.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BuildOutcome {
    /// The published revision.
    pub revision: Option<String>,
    /// Its counts.
    pub stats: Option<DatasetStats>,
    /// Per-source results.
    pub sources: Option<Vec<SourceStatus>>,
    /// Its artifacts.
    pub artifacts: Option<DatasetArtifacts>,
    /// When it finished.
    pub finished: Option<Time>,
}

fn job_condition(job: &Job, type_: &str) -> bool {
    job.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == type_ && c.status == "True"))
}

/// Pure: the dataset's state from its latest build Job.
pub fn assess_build(observed: &ObservedBuild) -> (Assessment<DatasetPhase>, BuildOutcome) {
    let Some(job) = &observed.job else {
        return (
            Assessment::not_ready(
                DatasetPhase::Pending,
                "BuildPending",
                "spec accepted; starting the build Job",
            ),
            BuildOutcome::default(),
        );
    };
    let name = job.name_any();
    let report: Option<BuildReport> =
        observed.termination_message.as_deref().and_then(|m| serde_json::from_str(m).ok());
    let finished = job.status.as_ref().and_then(|s| s.completion_time.clone());
    if job_condition(job, "Complete") {
        return match report {
            Some(BuildReport {
                revision: Some(revision),
                stats: Some(stats),
                artifacts: Some(artifacts),
                sources,
                ..
            }) => {
                let failed: Vec<&str> =
                    sources.iter().filter(|s| s.error.is_some()).map(|s| s.name.as_str()).collect();
                let message = format!(
                    "revision {revision}: {} documents, {} chunks, {} instruction samples{}",
                    stats.documents,
                    stats.chunks,
                    stats.instruct_samples,
                    if failed.is_empty() {
                        String::new()
                    } else {
                        format!("; sources that failed: {}", failed.join(", "))
                    }
                );
                let outcome = BuildOutcome {
                    revision: Some(revision),
                    stats: Some(stats),
                    sources: Some(sources),
                    artifacts: Some(artifacts),
                    finished,
                };
                (Assessment::ready(DatasetPhase::Ready, "RevisionPublished", message), outcome)
            }
            _ => (
                Assessment::not_ready(
                    DatasetPhase::Failed,
                    "BuildResultMissing",
                    format!(
                        "Job {name} succeeded but its pod left no readable result in its termination message"
                    ),
                ),
                BuildOutcome::default(),
            ),
        };
    }
    if job_condition(job, "Failed") {
        let (reason, message) = match report {
            Some(BuildReport { error: Some(error), reason, sources, .. }) => {
                let failed: Vec<String> = sources
                    .iter()
                    .filter_map(|s| s.error.as_ref().map(|e| format!("{}: {e}", s.name)))
                    .collect();
                let detail =
                    if failed.is_empty() { String::new() } else { format!(" ({})", failed.join("; ")) };
                (
                    reason.unwrap_or_else(|| "BuildFailed".into()),
                    format!("Job {name} failed: {error}{detail}"),
                )
            }
            _ => ("BuildFailed".into(), format!("Job {name} failed; see kubectl logs job/{name}")),
        };
        return (
            Assessment::not_ready(DatasetPhase::Failed, &reason, message),
            BuildOutcome { finished, ..Default::default() },
        );
    }
    (
        Assessment::not_ready(
            DatasetPhase::Running,
            "Building",
            format!("Job {name} is building the dataset"),
        ),
        BuildOutcome::default(),
    )
}

async fn reconcile(dataset: Arc<TwinDataset>, ctx: Arc<Context>) -> Result<Action> {
    instrumented(dataset.clone(), ctx.clone(), async move {
        let namespace = dataset.namespace().ok_or(Error::MissingNamespace)?;
        let config_maps_api = ctx.namespaced_api::<ConfigMap>(&namespace);
        let mut config_maps = ObservedConfigMaps::new();
        for reference in dataset.spec.sources.iter().filter_map(|s| s.config_map.as_ref()) {
            if !config_maps.contains_key(&reference.name) {
                config_maps.insert(reference.name.clone(), config_maps_api.get_opt(&reference.name).await?);
            }
        }
        let (mut assessment, mut requeue) = assess(&dataset, &config_maps);
        let previous = serde_json::to_value(&dataset.status)
            .map_err(|source| Error::Serialize { what: "status", source })?;
        let mut status = if previous.is_null() { json!({}) } else { previous.clone() };
        if assessment.reason == "BuildPending" {
            let children = dataset_job::build(&dataset, &ctx.settings);
            apply_children(&ctx, &dataset, &namespace, &children).await?;
            let observed = observe_latest_build(&ctx, &dataset, &namespace).await?;
            let (build_assessment, outcome) = assess_build(&observed);
            assessment = build_assessment;
            requeue = (assessment.phase == DatasetPhase::Ready).then_some(Duration::from_secs(300));
            if let Some(revision) = outcome.revision {
                status["revision"] = json!(revision);
                status["stats"] = json!(outcome.stats);
                status["artifacts"] = json!(outcome.artifacts);
                status["lastBuildTime"] = json!(outcome.finished);
            }
            if let Some(sources) = outcome.sources {
                status["sources"] = json!(sources);
            }
        }
        publish_status(&ctx, &*dataset, &assessment, status, previous).await?;
        Ok(requeue.map(Action::requeue).unwrap_or_else(Action::await_change))
    })
    .await
}

/// Applies the spec ConfigMap and the CronJob (server-side apply, one field manager), and
/// creates the generation's Job once: a Job's pod template cannot change, and a new
/// generation gets a Job of its own.
async fn apply_children(
    ctx: &Context,
    dataset: &TwinDataset,
    namespace: &str,
    children: &dataset_job::DatasetChildren,
) -> Result<()> {
    let apply = PatchParams::apply(FIELD_MANAGER).force();
    let config_maps = ctx.namespaced_api::<ConfigMap>(namespace);
    let name = children.spec_config_map.name_any();
    config_maps.patch(&name, &apply, &Patch::Apply(with_type_meta(&children.spec_config_map)?)).await?;
    let jobs = ctx.namespaced_api::<Job>(namespace);
    let job_name = children.job.name_any();
    if jobs.get_opt(&job_name).await?.is_none() {
        jobs.patch(&job_name, &apply, &Patch::Apply(with_type_meta(&children.job)?)).await?;
    }
    let cron_jobs = ctx.namespaced_api::<CronJob>(namespace);
    match &children.cron_job {
        Some(cron_job) => {
            cron_jobs.patch(&cron_job.name_any(), &apply, &Patch::Apply(with_type_meta(cron_job)?)).await?;
        }
        None => {
            // A schedule that was removed: its CronJob goes too.
            let selector = dataset_job::build_selector(dataset);
            for cron_job in cron_jobs.list(&ListParams::default().labels(&selector)).await? {
                cron_jobs.delete(&cron_job.name_any(), &DeleteParams::background()).await?;
            }
        }
    }
    Ok(())
}

/// A child with `apiVersion` and `kind` set, as server-side apply needs them.
fn with_type_meta<K: Resource<DynamicType = ()> + serde::Serialize>(object: &K) -> Result<serde_json::Value> {
    let mut value =
        serde_json::to_value(object).map_err(|source| Error::Serialize { what: "child object", source })?;
    value["apiVersion"] = json!(K::api_version(&()));
    value["kind"] = json!(K::kind(&()));
    Ok(value)
}

/// The newest build Job of the dataset (the generation's, or a scheduled refresh) and, when it
/// has finished, its pod's termination message.
async fn observe_latest_build(
    ctx: &Context,
    dataset: &TwinDataset,
    namespace: &str,
) -> Result<ObservedBuild> {
    let selector = dataset_job::build_selector(dataset);
    let jobs = ctx.namespaced_api::<Job>(namespace).list(&ListParams::default().labels(&selector)).await?;
    let generation_job = dataset_job::job_name(dataset);
    // Refreshes run the current spec too; the generation's own Job is preferred while it is the
    // newest, so that a spec change is never reported with an older build's result.
    let job = jobs
        .items
        .into_iter()
        .max_by_key(|j| (j.metadata.creation_timestamp.clone().map(|t| t.0), j.name_any() == generation_job));
    let Some(job) = job else { return Ok(ObservedBuild::default()) };
    let finished = job_condition(&job, "Complete") || job_condition(&job, "Failed");
    let mut termination_message = None;
    if finished {
        let pods = ctx
            .namespaced_api::<Pod>(namespace)
            .list(&ListParams::default().labels(&format!("batch.kubernetes.io/job-name={}", job.name_any())))
            .await?;
        termination_message = pods
            .items
            .iter()
            .filter_map(|p| {
                p.status
                    .as_ref()?
                    .container_statuses
                    .as_ref()?
                    .iter()
                    .find_map(|c| c.state.as_ref()?.terminated.as_ref()?.message.clone())
            })
            .next_back();
    }
    Ok(ObservedBuild { job: Some(job), termination_message })
}

/// The controller: TwinDatasets, woken by changes of their spec (not of their own status).
pub fn run(
    ctx: Arc<Context>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) -> (reflector::Store<TwinDataset>, impl Future<Output = ()>) {
    let (reader, stream) = primary_stream::<TwinDataset>(&ctx);
    // Build Jobs wake their dataset, found by label: Jobs of scheduled refreshes belong to the
    // CronJob, not to the dataset.
    let jobs = watcher::Config::default().labels(&format!("app.kubernetes.io/component={COMPONENT}"));
    let controller = Controller::for_stream(stream, reader.clone())
        .watches(ctx.watched_api::<Job>(), jobs, |job: Job| {
            let namespace = job.namespace()?;
            let instance = job.labels().get("app.kubernetes.io/instance")?.clone();
            Some(ObjectRef::<TwinDataset>::new(&instance).within(&namespace))
        })
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy::<TwinDataset>, ctx)
        .for_each(|_| async {});
    (reader, controller)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dataset(sources: serde_json::Value, output: &str) -> TwinDataset {
        serde_json::from_value(json!({
            "apiVersion": "llmtwin.dev/v1alpha1", "kind": "TwinDataset",
            "metadata": {"name": "paul", "namespace": "twins", "generation": 1},
            "spec": {"author": {"name": "Paul"}, "sources": sources, "output": {"uri": output}}
        }))
        .unwrap()
    }

    fn config_map(data: serde_json::Value) -> ConfigMap {
        serde_json::from_value(json!({"metadata": {"name": "notes"}, "data": data})).unwrap()
    }

    #[test]
    fn missing_config_maps_and_keys_are_named() {
        let ds = dataset(
            json!([{"name": "drafts", "configMap": {"name": "notes", "keys": ["a.md", "b.md"]}}]),
            "s3://b/x",
        );
        let (missing, requeue) = assess(&ds, &[("notes".to_string(), None)].into());
        assert_eq!((missing.phase, missing.reason.as_str()), (DatasetPhase::Pending, "ConfigMapNotFound"));
        assert!(missing.message.contains("\"notes\" (source \"drafts\") not found in namespace \"twins\""));
        assert_eq!(requeue, Some(CONFIGMAP_RECHECK));
        let (key, _) = assess(&ds, &[("notes".to_string(), Some(config_map(json!({"a.md": "x"}))))].into());
        assert_eq!(key.reason, "ConfigMapKeyNotFound");
        assert!(key.message.contains("b.md"));
        let (ok, _) =
            assess(&ds, &[("notes".to_string(), Some(config_map(json!({"a.md": "x", "b.md": "y"}))))].into());
        assert_eq!(ok.reason, "BuildPending");
    }

    #[test]
    fn local_paths_fail_in_a_cluster() {
        let (output, requeue) = assess(
            &dataset(json!([{"name": "n", "configMap": {"name": "notes"}}]), "file:///tmp/out"),
            &Default::default(),
        );
        assert_eq!((output.phase, output.reason.as_str()), (DatasetPhase::Failed, "InvalidSpec"));
        assert_eq!(requeue, None, "a bad spec waits for a change");
        let (files, _) = assess(
            &dataset(json!([{"name": "drafts", "files": {"uri": "file:///home/me/drafts"}}]), "s3://b/x"),
            &Default::default(),
        );
        assert!(files.message.contains("source \"drafts\" files.uri"));
    }
}
