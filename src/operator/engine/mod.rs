//! The TwinEngine controller: one vLLM shared by the TwinEndpoints that name it. Each reconcile:
//! list the endpoints that name it (none: remove everything, `Unused`) → validate the base model
//! → resolve the adapter each wants (as the endpoint does) → build the ConfigMap of wanted
//! adapters, the Deployment (vLLM with the runtime LoRA API, and the adapter agent) and the
//! Service → apply → read each ready pod's agent → status, with every adapter's state, which
//! the endpoints read for theirs.
//!
//! Why a kind of its own rather than a field naming a pool: the engine has settings of its own
//! (GPUs, image, cache, adapter slots) that no single twin should decide, a status of its own
//! (which adapters are loaded where) that `kubectl get twinengines` shows, and a lifetime of
//! its own: it runs while an endpoint names it, and nothing runs once none does.

pub mod build;
pub mod report;

use std::sync::Arc;

use futures::Future;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
use kube::ResourceExt;
use kube::runtime::controller::Action;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use tokio_util::sync::CancellationToken;

use super::children::apply_children;
use super::children::job::{labelled_pods, twin_of_labelled};
use super::children::naming::is_controlled_by;
use super::context::Context;
use super::driver::{FirstList, Validation, noting_first_list, run_controller, settle};
use super::error::{Error, Result};
use crate::api::engine::EnginePhase;
use crate::api::{TwinEndpoint, TwinEngine, TwinTrainingJob};
use crate::contract::labels;
use crate::operator::endpoint::parts::gateway_name;
use crate::operator::endpoint::plan::{BaseArgs, base_args};

/// The base model as vLLM is given it, or why vLLM cannot run it.
pub fn validate(engine: &TwinEngine) -> Validation<BaseArgs, EnginePhase> {
    match base_args(&engine.spec.base_model.uri) {
        Ok(base) => Validation::Proceed(base),
        Err(message) => {
            Validation::wait(EnginePhase::Failed, "InvalidSpec", format!("spec.baseModel.uri: {message}"))
        }
    }
}

async fn reconcile(
    engine: Arc<TwinEngine>,
    ctx: Arc<Context>,
    endpoints: Store<TwinEndpoint>,
    endpoints_listed: FirstList,
) -> Result<Action> {
    let namespace = engine.namespace().ok_or(Error::Unidentified("namespace"))?;
    let status = engine.status.clone().unwrap_or_default();
    let base = match validate(&engine) {
        Validation::Proceed(base) => base,
        Validation::Wait(verdict) => return settle(&ctx, &*engine, &verdict, status).await,
    };
    // Until the endpoints' cache has its first list, no endpoint would look like none, and the
    // engine's children would be pruned. Engines reconcile side by side: each waits on the
    // stream's word, never on the store itself (see `FirstList`).
    if !endpoints_listed.wait().await {
        // The cache's watch has ended: the controller is stopping.
        return Ok(Action::await_change());
    }
    let mut endpoints: Vec<TwinEndpoint> = endpoints
        .state()
        .iter()
        .filter(|endpoint| endpoint.namespace().as_deref() == Some(namespace.as_str()))
        .map(|endpoint| TwinEndpoint::clone(endpoint))
        .collect();
    // By name, as the API lists them: what is built from them must not change with the cache's order.
    endpoints.sort_by_key(|endpoint| endpoint.name_any());
    let users = build::users(&engine, &endpoints);
    let mut jobs = Vec::new();
    for endpoint in &users {
        let job = match &endpoint.spec.model.training_job_ref {
            Some(reference) => ctx.fetch::<TwinTrainingJob>(&namespace, &reference.name).await?,
            None => None,
        };
        jobs.push(job);
    }
    let resolving: Vec<(&TwinEndpoint, Option<&TwinTrainingJob>)> =
        users.iter().copied().zip(jobs.iter().map(Option::as_ref)).collect();
    let wanted = build::wanted(&engine, &resolving);
    let active = build::has_work(&engine, &resolving, &wanted);
    let children = match active {
        true => {
            let gateways: Vec<String> = users.iter().map(|e| gateway_name(e)).collect();
            build::build(&engine, &base, &wanted, &gateways, &ctx.settings)
        }
        false => build::EngineChildren::default(),
    };
    apply_children(&ctx, &*engine, &children.child_set()?).await?;
    let (deployment, pods) = observe(&ctx, &engine, &namespace).await?;
    let reports = report::read_agents(&ctx.http, &pods, ctx.settings.agent_url.as_deref()).await;
    let adapters = report::adapter_states(&wanted, &reports);
    let (verdict, status) =
        report::from_observed(&engine, users.len(), active, deployment.as_ref(), &pods, adapters, status);
    settle(&ctx, &*engine, &verdict, status).await
}

/// The engine's Deployment (if it controls one) and pods as they are now.
async fn observe(
    ctx: &Context,
    engine: &TwinEngine,
    namespace: &str,
) -> Result<(Option<Deployment>, Vec<Pod>)> {
    let uid = engine.uid().ok_or(Error::Unidentified("uid"))?;
    let (name, _) = build::names(engine);
    let deployment =
        ctx.fetch::<Deployment>(namespace, &name).await?.filter(|d| is_controlled_by(&d.metadata, &uid));
    let pods = labelled_pods(ctx, namespace, labels::ENGINE_NAME, &engine.name_any()).await?;
    Ok((deployment, pods))
}

/// The controller: TwinEngines, woken by their spec, by the TwinEndpoints that name them (one
/// added, retrained, deleted: read from a cache of their own, rather than listed at every
/// reconcile), by their children and by their pods.
pub fn run(
    ctx: Arc<Context>,
    stop: CancellationToken,
) -> (Store<TwinEngine>, FirstList, impl Future<Output = ()>) {
    let (endpoint_store, cache) = reflector::store::<TwinEndpoint>();
    let (endpoint_events, endpoints_listed) = noting_first_list(
        watcher(ctx.watched_api::<TwinEndpoint>(), watcher::Config::default())
            .default_backoff()
            .modify(|endpoint| endpoint.managed_fields_mut().clear())
            .reflect(cache),
    );
    let endpoints = endpoint_events.touched_objects();
    let deployments = ctx.watched_api::<Deployment>();
    let services = ctx.watched_api::<Service>();
    let config_maps = ctx.watched_api::<ConfigMap>();
    let pods = ctx.watched_api::<Pod>();
    let parts = watcher::Config::default().labels(&format!("{}={}", labels::NAME, labels::ENGINE_NAME));
    run_controller(
        ctx,
        stop,
        move |controller, engines| {
            let named_engine = |endpoint: TwinEndpoint| {
                let namespace = endpoint.namespace()?;
                let reference = endpoint.spec.engine.engine_ref?;
                Some(ObjectRef::<TwinEngine>::new(&reference.name).within(&namespace))
            };
            controller
                .watches_stream(endpoints, named_engine)
                .owns(deployments, parts.clone())
                .owns(services, parts.clone())
                .owns(config_maps, parts.clone())
                .watches(pods, parts, twin_of_labelled(engines))
        },
        move |engine, ctx| reconcile(engine, ctx, endpoint_store.clone(), endpoints_listed.clone()),
    )
}
