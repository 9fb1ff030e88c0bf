//! The TwinEndpoint controller. Each reconcile: fetch the training job and the dataset it
//! names → validate (resolve the model, the dataset revision and how the engine loads the
//! model) → observe the engine and gateway Deployments (which revision the gateway pins, by
//! annotation or, on a shared engine, in its lineage ConfigMap; whether the engine serves the
//! new adapter yet) → build the children → apply them → observe the Deployments and pods →
//! status.

pub mod build;
pub mod engine;
pub mod gateway;
pub mod parts;
pub mod plan;
pub mod scaling;
pub mod status;
pub mod validate;

use std::sync::Arc;

use futures::Future;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::runtime::controller::Action;
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use tokio_util::sync::CancellationToken;

use super::children::apply_children;
use super::children::job::{labelled_pods, twin_of_labelled};
use super::children::naming::is_controlled_by;
use super::context::Context;
use super::driver::{FirstList, Validation, publish_event, referrers, run_controller, settle};
use super::error::{Error, Result};
use crate::api::endpoint::EngineKind;
use crate::api::{TwinDataset, TwinEndpoint, TwinEngine, TwinTrainingJob};
use crate::contract::labels;
use parts::Inputs;

async fn reconcile(endpoint: Arc<TwinEndpoint>, ctx: Arc<Context>) -> Result<Action> {
    let namespace = endpoint.namespace().ok_or(Error::Unidentified("namespace"))?;
    let status = endpoint.status.clone().unwrap_or_default();
    let (training_job, dataset, shared) = fetch_upstream(&ctx, &endpoint, &namespace).await?;
    let valid = match validate::validate(&endpoint, training_job.as_ref(), dataset.as_ref(), shared.as_ref())
    {
        Validation::Proceed(valid) => valid,
        Validation::Wait(verdict) => return settle(&ctx, &*endpoint, &verdict, status).await,
    };
    let lineage = fetch_lineage(&ctx, &endpoint, &namespace).await?;
    let before = observe(&ctx, &endpoint, &namespace, shared.clone(), lineage).await?;
    let trained = engine::trained_model(&valid.model, training_job.as_ref(), before.engine.as_ref());
    let gateway_model = status::gateway_model(&endpoint, &valid.model, &before);
    let inputs = Inputs::new(&endpoint, &valid, trained.as_ref(), &gateway_model);
    let children = build::build(&inputs, &ctx.settings);
    apply_children(&ctx, &*endpoint, &children.child_set()?).await?;
    // The lineage ConfigMap holds no status: what the gateway is told now is what was applied.
    let observed = observe(&ctx, &endpoint, &namespace, shared.clone(), children.lineage.clone()).await?;
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let (verdict, mut status) =
        status::from_observed(&endpoint, &valid.model, &observed, status, now.clone());
    let held = status::promotion_held(training_job.as_ref());
    if status::with_promotion_held(&mut status, held.as_ref(), endpoint.metadata.generation, now)
        && let Some(held) = &held
    {
        publish_event(&ctx, &*endpoint, true, "PromotionHeld", &held.message).await;
    }
    settle(&ctx, &*endpoint, &verdict, status).await
}

/// The training job, the dataset and the shared engine the endpoint names, as they are now.
async fn fetch_upstream(
    ctx: &Context,
    endpoint: &TwinEndpoint,
    namespace: &str,
) -> Result<(Option<TwinTrainingJob>, Option<TwinDataset>, Option<TwinEngine>)> {
    let training_job = match &endpoint.spec.model.training_job_ref {
        Some(reference) => ctx.fetch::<TwinTrainingJob>(namespace, &reference.name).await?,
        None => None,
    };
    let dataset = match &endpoint.spec.dataset_ref {
        Some(reference) => ctx.fetch::<TwinDataset>(namespace, &reference.name).await?,
        None => None,
    };
    let shared = match (&endpoint.spec.engine.kind, &endpoint.spec.engine.engine_ref) {
        (EngineKind::Shared, Some(reference)) => ctx.fetch::<TwinEngine>(namespace, &reference.name).await?,
        _ => None,
    };
    Ok((training_job, dataset, shared))
}

/// The lineage ConfigMap of a gateway on a shared engine (the one the endpoint controls), as
/// it is now.
async fn fetch_lineage(ctx: &Context, endpoint: &TwinEndpoint, namespace: &str) -> Result<Option<ConfigMap>> {
    let uid = endpoint.uid().ok_or(Error::Unidentified("uid"))?;
    Ok(match endpoint.spec.engine.kind {
        EngineKind::Shared => ctx
            .fetch::<ConfigMap>(namespace, &parts::lineage_name(endpoint))
            .await?
            .filter(|c| is_controlled_by(&c.metadata, &uid)),
        EngineKind::Vllm | EngineKind::External | EngineKind::Embedded => None,
    })
}

/// The endpoint's Deployments (those it controls) and pods as they are now, with the shared
/// engine and the gateway's lineage ConfigMap given.
async fn observe(
    ctx: &Context,
    endpoint: &TwinEndpoint,
    namespace: &str,
    shared: Option<TwinEngine>,
    lineage: Option<ConfigMap>,
) -> Result<status::Observed> {
    let uid = endpoint.uid().ok_or(Error::Unidentified("uid"))?;
    let owned = |deployment: Option<Deployment>| deployment.filter(|d| is_controlled_by(&d.metadata, &uid));
    let engine = match endpoint.spec.engine.kind {
        EngineKind::Vllm => owned(ctx.fetch::<Deployment>(namespace, &parts::engine_name(endpoint)).await?),
        EngineKind::Shared | EngineKind::External | EngineKind::Embedded => None,
    };
    let gateway = owned(ctx.fetch::<Deployment>(namespace, &parts::gateway_name(endpoint)).await?);
    let pods = labelled_pods(ctx, namespace, parts::ENDPOINT_NAME, &endpoint.name_any()).await?;
    Ok(status::Observed { engine, gateway, pods, shared, lineage })
}

/// The controller: TwinEndpoints, woken by changes of their spec, of the TwinTrainingJobs and
/// TwinDatasets they reference, of their Deployments, and of their pods (a crash loop or an OOM
/// kill shows at once, without waiting for the Deployment to change).
pub fn run(
    ctx: Arc<Context>,
    stop: CancellationToken,
) -> (Store<TwinEndpoint>, FirstList, impl Future<Output = ()>) {
    let training_jobs = ctx.watched_api::<TwinTrainingJob>();
    let datasets = ctx.watched_api::<TwinDataset>();
    let engines = ctx.watched_api::<TwinEngine>();
    let deployments = ctx.watched_api::<Deployment>();
    let pods = ctx.watched_api::<Pod>();
    let parts = watcher::Config::default().labels(&format!("{}={}", labels::NAME, parts::ENDPOINT_NAME));
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
            let by_engine = referrers::<TwinEndpoint, TwinEngine>(endpoints, |endpoint| {
                endpoint.spec.engine.engine_ref.as_ref().map(|r| r.name.as_str())
            });
            controller
                .watches(training_jobs, watcher::Config::default(), by_training_job)
                .watches(datasets, watcher::Config::default(), by_dataset)
                .watches(engines, watcher::Config::default(), by_engine)
                .owns(deployments, parts.clone())
                .watches(pods, parts, twin_of_labelled(endpoints))
        },
        reconcile,
    )
}
