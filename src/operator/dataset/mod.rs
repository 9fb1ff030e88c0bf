//! The TwinDataset controller. Each reconcile: fetch the ConfigMaps its sources name →
//! validate → build the spec ConfigMap, the generation's build Job and the refresh CronJob →
//! apply them → fetch the newest build Job → status from its report.

pub mod build;
pub mod status;
pub mod validate;

use std::sync::Arc;

use futures::Future;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::ResourceExt;
use kube::api::ListParams;
use kube::runtime::controller::Action;
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use tokio_util::sync::CancellationToken;

use super::children::apply_children;
use super::children::job::{ObservedJob, observe_job, twin_of_labelled};
use super::context::Context;
use super::driver::{FirstList, Validation, run_controller, settle};
use super::error::{Error, Result};
use crate::api::TwinDataset;
use crate::contract::labels;
use validate::ObservedConfigMaps;

async fn reconcile(dataset: Arc<TwinDataset>, ctx: Arc<Context>) -> Result<Action> {
    let current = dataset.status.clone().unwrap_or_default();
    let config_maps = fetch_config_maps(&ctx, &dataset).await?;
    let valid = match validate::validate(&dataset, &config_maps) {
        Validation::Proceed(valid) => valid,
        Validation::Wait(verdict) => return settle(&ctx, &*dataset, &verdict, current).await,
    };
    let children = build::build(&valid, &ctx.settings).child_set()?;
    apply_children(&ctx, &*dataset, &children).await?;
    let observed = fetch_newest_build(&ctx, &dataset).await?;
    let (verdict, status) = status::from_build(&dataset, &observed);
    settle(&ctx, &*dataset, &verdict, status).await
}

/// The ConfigMaps the dataset's sources name, each read once.
async fn fetch_config_maps(ctx: &Context, dataset: &TwinDataset) -> Result<ObservedConfigMaps> {
    let namespace = dataset.namespace().ok_or(Error::Unidentified("namespace"))?;
    let mut observed = ObservedConfigMaps::new();
    for reference in dataset.spec.sources.iter().filter_map(|s| s.config_map.as_ref()) {
        if !observed.contains_key(&reference.name) {
            observed
                .insert(reference.name.clone(), ctx.fetch::<ConfigMap>(&namespace, &reference.name).await?);
        }
    }
    Ok(observed)
}

/// The newest build Job of the dataset (the generation's, or a scheduled refresh) and its pods.
async fn fetch_newest_build(ctx: &Context, dataset: &TwinDataset) -> Result<ObservedJob> {
    let namespace = dataset.namespace().ok_or(Error::Unidentified("namespace"))?;
    let listed = |kind: &str| {
        let kind = kind.to_string();
        move |source| Error::ListChildren { kind, source }
    };
    let jobs = ctx
        .namespaced_api::<Job>(&namespace)
        .list(&ListParams::default().labels(&build::build_selector(dataset)))
        .await
        .map_err(listed("Job"))?;
    let generation_job = build::job_name(dataset);
    // Refreshes run the current spec too; the generation's own Job is preferred while it is the
    // newest, so that a spec change is never reported with an older build's result.
    let newest =
        jobs.items.into_iter().filter(|job| build::builds_dataset(job, dataset)).max_by_key(|j| {
            (j.metadata.creation_timestamp.clone().map(|t| t.0), j.name_any() == generation_job)
        });
    observe_job(ctx, &namespace, newest).await
}

/// The controller: TwinDatasets, woken by changes of their spec and of their build Jobs.
pub fn run(
    ctx: Arc<Context>,
    stop: CancellationToken,
) -> (Store<TwinDataset>, FirstList, impl Future<Output = ()>) {
    let jobs = watcher::Config::default().labels(&format!(
        "{}={}",
        labels::COMPONENT,
        labels::DATASET_BUILD_COMPONENT
    ));
    let job_api = ctx.watched_api::<Job>();
    run_controller(
        ctx,
        stop,
        // A refresh's Job belongs to the CronJob, not the dataset: every build Job wakes its
        // dataset by its instance label.
        move |controller, datasets| controller.watches(job_api, jobs, twin_of_labelled(datasets)),
        reconcile,
    )
}
