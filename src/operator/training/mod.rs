//! The TwinTrainingJob controller. Each reconcile: fetch the dataset it trains on → validate
//! (the dataset is Ready) → pin its revision in the status. The trainer's children (a GPU Job,
//! or a SageMaker job) join as build and apply steps with the training backend. A job on the
//! SageMaker backend carries a finalizer from the start, so that deleting it can stop what it
//! runs outside the cluster.

pub mod cleanup;
pub mod validate;

use std::sync::Arc;

use futures::Future;
use kube::ResourceExt;
use kube::runtime::controller::Action;
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use tokio_util::sync::CancellationToken;

use super::context::Context;
use super::driver::{Validation, referrers, run_controller, settle, with_finalizer};
use super::error::{Error, Result};
use crate::api::{TwinDataset, TwinTrainingJob};

/// The finalizer of training jobs that run on SageMaker: removed once what runs there is
/// stopped.
pub const SAGEMAKER_FINALIZER: &str = "llmtwin.dev/sagemaker-training-job";

async fn reconcile(job: Arc<TwinTrainingJob>, ctx: Arc<Context>) -> Result<Action> {
    if job.spec.backend.sagemaker.is_none() {
        return train(job, ctx).await;
    }
    let (apply_ctx, cleanup_ctx) = (ctx.clone(), ctx.clone());
    with_finalizer(
        &ctx,
        job,
        SAGEMAKER_FINALIZER,
        move |job| train(job, apply_ctx),
        move |job| cleanup::stop_outside_work(job, cleanup_ctx),
    )
    .await
}

/// The steps of a live training job.
async fn train(job: Arc<TwinTrainingJob>, ctx: Arc<Context>) -> Result<Action> {
    let namespace = job.namespace().ok_or(Error::Unidentified("namespace"))?;
    let mut status = job.status.clone().unwrap_or_default();
    let dataset = ctx.fetch::<TwinDataset>(&namespace, &job.spec.dataset_ref.name).await?;
    match validate::validate(&job, dataset.as_ref()) {
        Validation::Wait(verdict) => settle(&ctx, &*job, &verdict, status).await,
        Validation::Proceed(pinned) => {
            status.dataset_revision = Some(pinned.revision);
            settle(&ctx, &*job, &pinned.verdict, status).await
        }
    }
}

/// The controller: TwinTrainingJobs, woken by changes of their spec and of the TwinDatasets
/// they reference.
pub fn run(ctx: Arc<Context>, stop: CancellationToken) -> (Store<TwinTrainingJob>, impl Future<Output = ()>) {
    let datasets = ctx.watched_api::<TwinDataset>();
    run_controller(
        ctx,
        stop,
        move |controller, jobs| {
            let by_dataset =
                referrers::<TwinTrainingJob, TwinDataset>(jobs, |job| Some(&job.spec.dataset_ref.name));
            controller.watches(datasets, watcher::Config::default(), by_dataset)
        },
        reconcile,
    )
}
