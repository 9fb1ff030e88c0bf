//! The TwinEndpoint controller. Each reconcile: fetch the training job and the dataset it
//! names → validate (resolve the model, then the dataset revision) → status with the model's
//! lineage. The engine and gateway join as build and apply steps with the serving release.

pub mod build;
pub mod engine;
pub mod gateway;
pub mod scaling;
pub mod validate;

use std::sync::Arc;

use futures::Future;
use kube::ResourceExt;
use kube::runtime::controller::Action;
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use tokio_util::sync::CancellationToken;

use super::context::Context;
use super::driver::{Validation, referrers, run_controller, settle};
use super::error::{Error, Result};
use crate::api::{TwinDataset, TwinEndpoint, TwinTrainingJob};

async fn reconcile(endpoint: Arc<TwinEndpoint>, ctx: Arc<Context>) -> Result<Action> {
    let namespace = endpoint.namespace().ok_or(Error::Unidentified("namespace"))?;
    let mut status = endpoint.status.clone().unwrap_or_default();
    let training_job = match &endpoint.spec.model.training_job_ref {
        Some(reference) => ctx.fetch::<TwinTrainingJob>(&namespace, &reference.name).await?,
        None => None,
    };
    let served = match validate::resolve_model(&endpoint, training_job.as_ref()) {
        Validation::Proceed(served) => served,
        Validation::Wait(verdict) => return settle(&ctx, &*endpoint, &verdict, status).await,
    };
    let dataset = match &endpoint.spec.dataset_ref {
        Some(reference) => ctx.fetch::<TwinDataset>(&namespace, &reference.name).await?,
        None => None,
    };
    let (served, verdict) = validate::resolve_dataset(&endpoint, dataset.as_ref(), served);
    status.model = Some(served);
    settle(&ctx, &*endpoint, &verdict, status).await
}

/// The controller: TwinEndpoints, woken by changes of their spec and of the TwinTrainingJobs
/// and TwinDatasets they reference.
pub fn run(ctx: Arc<Context>, stop: CancellationToken) -> (Store<TwinEndpoint>, impl Future<Output = ()>) {
    let training_jobs = ctx.watched_api::<TwinTrainingJob>();
    let datasets = ctx.watched_api::<TwinDataset>();
    run_controller(
        ctx,
        stop,
        move |controller, endpoints| {
            let by_training_job = referrers::<TwinEndpoint, TwinTrainingJob>(endpoints, |endpoint| {
                endpoint.spec.model.training_job_ref.as_ref().map(|r| r.name.as_str())
            });
            let by_dataset = referrers::<TwinEndpoint, TwinDataset>(endpoints, |endpoint| {
                endpoint.spec.dataset_ref.as_ref().map(|r| r.name.as_str())
            });
            controller.watches(training_jobs, watcher::Config::default(), by_training_job).watches(
                datasets,
                watcher::Config::default(),
                by_dataset,
            )
        },
        reconcile,
    )
}
