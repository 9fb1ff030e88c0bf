//! The TwinDataset controller: check what the dataset reads from (ConfigMaps, local-only URIs),
//! then (in the dataset issue) build and apply the build Job, and write the status.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::{Future, StreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::ResourceExt;
use kube::runtime::controller::Action;
use kube::runtime::{Controller, WatchStreamExt, predicates, reflector, watcher};
use serde_json::json;

use super::conditions::Assessment;
use super::context::Context;
use super::error::{Error, Result};
use super::reconcile::{TwinKind, error_policy, instrumented, publish_status};
use super::references::{StorageCheck, check_storage_uri};
use crate::api::TwinDataset;
use crate::api::dataset::DatasetPhase;

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
    match dataset.current_phase() {
        // A published revision stays published while nothing else is known.
        Some(DatasetPhase::Ready) => (
            Assessment::ready(DatasetPhase::Ready, "RevisionPublished", "the published revision is current"),
            Some(Duration::from_secs(300)),
        ),
        _ => (
            Assessment::not_ready(
                DatasetPhase::Pending,
                "BuildPending",
                "spec accepted; waiting for the build Job to start",
            ),
            Some(Duration::from_secs(300)),
        ),
    }
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
        let (assessment, requeue) = assess(&dataset, &config_maps);
        let previous = serde_json::to_value(&dataset.status)
            .map_err(|source| Error::Serialize { what: "status", source })?;
        let status = if previous.is_null() { json!({}) } else { previous.clone() };
        publish_status(&ctx, &*dataset, &assessment, status, previous).await?;
        Ok(requeue.map(Action::requeue).unwrap_or_else(Action::await_change))
    })
    .await
}

/// The controller: TwinDatasets, woken by changes of their spec (not of their own status).
pub fn run(
    ctx: Arc<Context>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) -> (reflector::Store<TwinDataset>, impl Future<Output = ()>) {
    let (reader, writer) = reflector::store();
    let stream = watcher(ctx.watched_api::<TwinDataset>(), watcher::Config::default())
        .default_backoff()
        .reflect(writer)
        .applied_objects()
        .predicate_filter(predicates::generation, Default::default());
    let controller = Controller::for_stream(stream, reader.clone())
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
