//! The TwinTrainingJob controller. Each reconcile: fetch the dataset it trains on → validate
//! (the dataset is Ready) → pin its revision → on the kubernetes backend, build the run's
//! trainer ConfigMap and Job → apply them → fetch the Job and its result → status; on the
//! sagemaker backend, create or describe the run's training job → status. A job on the
//! SageMaker backend carries a finalizer from the start, so that deleting it stops what it runs
//! outside the cluster.

pub mod build;
pub mod sagemaker;
pub mod status;
pub mod validate;

use std::sync::Arc;

use futures::Future;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::runtime::controller::Action;
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use tokio_util::sync::CancellationToken;

use super::children::apply_children;
use super::children::job::{observe_job, twin_of_labelled};
use super::context::Context;
use super::driver::{FirstList, Validation, Verdict, referrers, run_controller, settle, with_finalizer};
use super::error::{Error, Result};
use crate::api::training::{BackendKind, KubernetesBackend, TrainingPhase, TwinTrainingJobStatus};
use crate::api::{TwinDataset, TwinTrainingJob};
use crate::contract::labels;
use validate::{Backend, ValidRun};

/// The finalizer of training jobs that run on SageMaker: removed once what runs there is
/// stopped.
pub const SAGEMAKER_FINALIZER: &str = "llmtwin.dev/sagemaker-training-job";

async fn reconcile(job: Arc<TwinTrainingJob>, ctx: Arc<Context>) -> Result<Action> {
    if job.spec.backend.sagemaker.is_none() {
        return train(job, ctx).await;
    }
    // Deleted while a training job runs: it is stopped first, and the finalizer stays until
    // SageMaker says it has stopped.
    if job.metadata.deletion_timestamp.is_some()
        && job.finalizers().iter().any(|f| f == SAGEMAKER_FINALIZER)
        && let Some(wait) = sagemaker::cleanup::stop_outside_work(&job, &ctx).await?
    {
        return Ok(Action::requeue(wait));
    }
    let apply_ctx = ctx.clone();
    with_finalizer(
        &ctx,
        job,
        SAGEMAKER_FINALIZER,
        move |job| train(job, apply_ctx),
        // Reached once nothing runs on SageMaker any more: the finalizer goes.
        |_| async { Ok(Action::await_change()) },
    )
    .await
}

/// The steps of a live training job: dereference its dataset → validate → on its backend,
/// build, apply and observe (kubernetes) or create and describe (sagemaker) → status.
async fn train(job: Arc<TwinTrainingJob>, ctx: Arc<Context>) -> Result<Action> {
    let namespace = job.namespace().ok_or(Error::Unidentified("namespace"))?;
    let status = job.status.clone().unwrap_or_default();
    let dataset = ctx.fetch::<TwinDataset>(&namespace, &job.spec.dataset_ref.name).await?;
    let valid = match validate::validate(&job, dataset.as_ref(), &ctx.settings) {
        Validation::Proceed(valid) => valid,
        Validation::Wait(verdict) => return settle(&ctx, &*job, &verdict, status).await,
    };
    let (verdict, status) = match valid.backend {
        Backend::Kubernetes(backend) => run_on_cluster(&ctx, &job, &valid, backend).await?,
        Backend::Sagemaker(backend, image) => {
            sagemaker::train(&ctx, &job, &valid, backend, image, status).await?
        }
    };
    count_run(&ctx, &job, &verdict.assessment.phase, &status);
    settle(&ctx, &*job, &verdict, status).await
}

/// A valid run on the kubernetes backend: its trainer ConfigMap and Job applied, then the
/// status from the Job and its pods.
async fn run_on_cluster(
    ctx: &Context,
    job: &TwinTrainingJob,
    valid: &ValidRun<'_>,
    backend: &KubernetesBackend,
) -> Result<(Verdict<TrainingPhase>, TwinTrainingJobStatus)> {
    let namespace = job.namespace().ok_or(Error::Unidentified("namespace"))?;
    let children = build::build(job, valid, backend, &ctx.settings);
    apply_children(ctx, job, &children.child_set()?).await?;
    let child = ctx.fetch::<Job>(&namespace, &build::job_name(job, &valid.run)).await?;
    let observed = observe_job(ctx, &namespace, child).await?;
    Ok(status::from_run(job, &valid.run, &valid.places.output, &observed))
}

/// Counts a run that reaches a phase for the first time (a new run, or a new phase of the
/// stored one), and times a finished one. The stored status is the memory: a restarted
/// operator counts nothing twice.
fn count_run(ctx: &Context, job: &TwinTrainingJob, phase: &TrainingPhase, status: &TwinTrainingJobStatus) {
    let stored = job.status.as_ref();
    let job_name = |s: &TwinTrainingJobStatus| s.backend.as_ref().and_then(|b| b.job_name.clone());
    let same_run = stored.and_then(job_name) == job_name(status);
    if same_run && stored.and_then(|s| s.phase).as_ref() == Some(phase) {
        return;
    }
    let name = match phase {
        TrainingPhase::Running => "Running",
        TrainingPhase::Succeeded => "Succeeded",
        TrainingPhase::Rejected => "Rejected",
        TrainingPhase::Failed => "Failed",
        _ => return,
    };
    let duration = match (&status.start_time, &status.completion_time) {
        (Some(start), Some(end)) if *phase != TrainingPhase::Running => {
            Some(std::time::Duration::from_secs(end.0.duration_since(start.0).as_secs().max(0) as u64))
        }
        _ => None,
    };
    let backend = status.backend.as_ref().map_or(BackendKind::Kubernetes, |b| b.kind).as_str();
    ctx.metrics.training_run(backend, name, duration);
}

/// The controller: TwinTrainingJobs, woken by changes of their spec, of the TwinDatasets they
/// reference, of their trainer Jobs, and of the trainers' pods (a pod the scheduler cannot place
/// changes nothing in its Job).
pub fn run(
    ctx: Arc<Context>,
    stop: CancellationToken,
) -> (Store<TwinTrainingJob>, FirstList, impl Future<Output = ()>) {
    let datasets = ctx.watched_api::<TwinDataset>();
    let jobs = ctx.watched_api::<Job>();
    let pods = ctx.watched_api::<Pod>();
    let trainers =
        watcher::Config::default().labels(&format!("{}={}", labels::COMPONENT, labels::TRAINER_COMPONENT));
    run_controller(
        ctx,
        stop,
        move |controller, training_jobs| {
            let by_dataset = referrers::<TwinTrainingJob, TwinDataset>(training_jobs, |job| {
                Some(&job.spec.dataset_ref.name)
            });
            controller
                .watches(datasets, watcher::Config::default(), by_dataset)
                .owns(jobs, trainers.clone())
                .watches(pods, trainers, twin_of_labelled(training_jobs))
        },
        reconcile,
    )
}
