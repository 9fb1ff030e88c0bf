//! What every controller shares around its own steps: the kinds' common traits, the typed
//! outcome of validation, the controller's wiring (its own objects filtered to spec changes,
//! the watches that wake it, the finalizer), the span and metrics of each reconcile, the
//! status write (server-side apply to `/status`, skipped when nothing changed) with an Event
//! when the phase or reason changes, permanent failures written to the status, and the error
//! policy.

use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::runtime::finalizer::{self, finalizer};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{Controller, Predicate, WatchStreamExt, predicates, watcher};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, info_span, warn};

use super::conditions::{Assessment, ready_condition, with_ready};
use super::context::{Context, FIELD_MANAGER};
use super::error::{Error, Result};
use crate::api::dataset::{DatasetPhase, TwinDatasetStatus};
use crate::api::endpoint::{EndpointPhase, TwinEndpointStatus};
use crate::api::engine::{EnginePhase, TwinEngineStatus};
use crate::api::training::{TrainingPhase, TwinTrainingJobStatus};
use crate::api::{TwinDataset, TwinEndpoint, TwinEngine, TwinTrainingJob};

/// A twin kind the operator reconciles.
pub trait TwinKind:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + Debug
    + Serialize
    + DeserializeOwned
    + Send
    + Sync
    + 'static
{
    /// The controller's name in metrics and logs.
    const CONTROLLER: &'static str;
    /// The kind's phase enum.
    type Phase: Serialize + Copy + PartialEq + Debug + Send + Sync;
    /// The kind's status struct.
    type Status: Serialize + Clone + Default + PartialEq + Debug + Send + Sync;
    /// The phase of an object that cannot proceed until its spec changes.
    const FAILED: Self::Phase;
    /// The status as stored.
    fn status(&self) -> Option<&Self::Status>;
    /// A status's phase.
    fn phase_of(status: &Self::Status) -> Option<Self::Phase>;
    /// A status's conditions.
    fn conditions_of(status: &Self::Status) -> &[Condition];
    /// Sets the fields every twin status has.
    fn set_summary(
        status: &mut Self::Status,
        phase: Self::Phase,
        generation: Option<i64>,
        conditions: Vec<Condition>,
    );
    /// Whether a phase deserves a Warning Event.
    fn is_warning(phase: Self::Phase) -> bool;
}

/// Implements [`TwinKind`] for a kind whose status has `phase`, `observed_generation` and
/// `conditions` fields, as all three have.
macro_rules! twin_kind {
    ($kind:ty, $status:ty, $phase:ty, $controller:literal, failed: $failed:expr, warning: $warning:pat) => {
        impl TwinKind for $kind {
            const CONTROLLER: &'static str = $controller;
            type Phase = $phase;
            type Status = $status;
            const FAILED: $phase = $failed;
            fn status(&self) -> Option<&$status> {
                self.status.as_ref()
            }
            fn phase_of(status: &$status) -> Option<$phase> {
                status.phase
            }
            fn conditions_of(status: &$status) -> &[Condition] {
                &status.conditions
            }
            fn set_summary(
                status: &mut $status,
                phase: $phase,
                generation: Option<i64>,
                conditions: Vec<Condition>,
            ) {
                status.phase = Some(phase);
                status.observed_generation = generation;
                status.conditions = conditions;
            }
            fn is_warning(phase: $phase) -> bool {
                matches!(phase, $warning)
            }
        }
    };
}

twin_kind!(TwinDataset, TwinDatasetStatus, DatasetPhase, "twindataset",
    failed: DatasetPhase::Failed, warning: DatasetPhase::Failed);
twin_kind!(TwinTrainingJob, TwinTrainingJobStatus, TrainingPhase, "twintrainingjob",
    failed: TrainingPhase::Failed, warning: TrainingPhase::Failed | TrainingPhase::Rejected);
twin_kind!(TwinEndpoint, TwinEndpointStatus, EndpointPhase, "twinendpoint",
    failed: EndpointPhase::Failed, warning: EndpointPhase::Failed | EndpointPhase::Degraded);
twin_kind!(TwinEngine, TwinEngineStatus, EnginePhase, "twinengine",
    failed: EnginePhase::Failed, warning: EnginePhase::Failed | EnginePhase::Degraded);

/// Why an upstream twin failed, in its controller's words (its Ready condition's message), or
/// where to look when it left none: what a dependent twin repeats.
pub fn upstream_failure<K: TwinKind>(upstream: &K) -> String {
    let message = upstream.status().and_then(|status| {
        K::conditions_of(status)
            .iter()
            .find(|c| c.type_ == crate::api::CONDITION_READY)
            .map(|c| c.message.clone())
    });
    message
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| format!("see kubectl describe {}", K::kind(&()).to_lowercase()))
}

/// What validation decided: go on to build with what it validated, or stop here with a status
/// that says why (and when to look again).
#[derive(Debug, Clone, PartialEq)]
pub enum Validation<T, P> {
    /// Everything the next steps need, checked.
    Proceed(T),
    /// The object cannot proceed yet (or at all, until its spec changes).
    Wait(Verdict<P>),
}

impl<T, P> Validation<T, P> {
    /// Stops with a not-ready status that waits for a change.
    pub fn wait(phase: P, reason: &str, message: impl Into<String>) -> Self {
        Validation::Wait(Verdict::settled(Assessment::not_ready(phase, reason, message)))
    }
}

/// A status to write and when to reconcile again.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict<P> {
    /// Phase and Ready condition.
    pub assessment: Assessment<P>,
    /// When to look again without a watch event; `None` waits for a change.
    pub recheck: Option<Duration>,
}

impl<P> Verdict<P> {
    /// A verdict that waits for a change (of the object, or of what it watches).
    pub fn settled(assessment: Assessment<P>) -> Self {
        Self { assessment, recheck: None }
    }

    /// The controller's next action.
    pub fn action(&self) -> Action {
        self.recheck.map(Action::requeue).unwrap_or_else(Action::await_change)
    }
}

/// Runs a controller for `K`: its own objects across the watched namespaces, cached without
/// their managedFields (woken by spec changes and finalizer changes, not by its own status
/// writes), the extra watches `wire` adds,
/// and `steps` for each reconcile, wrapped by [`drive`] and [`error_policy`]. Returns the
/// objects' cache, whether it has had its first list, and the controller's future.
pub fn run_controller<K, W, S, Fut>(
    ctx: Arc<Context>,
    stop: CancellationToken,
    wire: W,
    steps: S,
) -> (Store<K>, FirstList, impl Future<Output = ()>)
where
    K: TwinKind,
    W: FnOnce(Controller<K>, &Store<K>) -> Controller<K>,
    S: Fn(Arc<K>, Arc<Context>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Action>> + Send + 'static,
{
    let (reader, writer) = reflector::store();
    let (events, first_list) = noting_first_list(
        watcher(ctx.watched_api::<K>(), watcher::Config::default())
            .default_backoff()
            // No step reads managedFields, and they are a large part of each cached object.
            .modify(|object| object.managed_fields_mut().clear())
            .reflect(writer),
    );
    let stream = events
        .applied_objects()
        .predicate_filter(predicates::generation.combine(predicates::finalizers), Default::default());
    let runs = wire(Controller::for_stream(stream, reader.clone()), &reader)
        .graceful_shutdown_on(stop.clone().cancelled_owned())
        .run(move |object, ctx| drive(object, ctx, steps.clone()), error_policy::<K>, ctx)
        .for_each(|_| async {});
    let listed = first_list.clone();
    let controller = async move {
        tokio::pin!(runs);
        tokio::select! {
            () = &mut runs => return,
            () = stop.cancelled() => {}
        }
        // kube-runtime's runner holds its queue until the cache has its first list, and a
        // stopped controller no longer polls the watch that would fill it: stopped before that
        // list, it would wait forever. Nothing can have run then, so there is nothing to drain.
        if listed.done() {
            runs.await;
        }
    };
    (reader, first_list, controller)
}

/// Whether a cache has had its first list, told by the watch stream that fills it and read by
/// any number of tasks.
///
/// Never asked of the cache itself: kube-runtime's `Store::wait_until_ready` wakes only the last
/// task that polled it (it waits on a oneshot channel, which keeps one waker). Two engines
/// reconciled together each awaited it and the one polled first never woke, its status never
/// written. The operator's readiness check, which polled the controllers' own caches every
/// 200 ms, could likewise take the waker from kube's runner, whose first reconciles would then
/// wait for the next event.
#[derive(Clone, Debug)]
pub struct FirstList(watch::Receiver<bool>);

impl FirstList {
    /// Waits for the first list; `false` when the stream ended before it (the controller is
    /// stopping).
    pub async fn wait(&self) -> bool {
        self.0.clone().wait_for(|listed| *listed).await.is_ok()
    }

    /// Whether the first list has come.
    pub fn done(&self) -> bool {
        *self.0.borrow()
    }
}

/// A reflector's stream (after `.reflect()`, so the cache holds what it told) that notes its
/// first `InitDone` in the [`FirstList`] returned with it.
pub fn noting_first_list<K, S>(events: S) -> (impl Stream<Item = S::Item> + Send + use<K, S>, FirstList)
where
    K: Send,
    S: Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send,
{
    let (listed, first_list) = watch::channel(false);
    let events = events.inspect(move |event| {
        if let Ok(watcher::Event::InitDone) = event {
            listed.send_if_modified(|done| !std::mem::replace(done, true));
        }
    });
    (events, FirstList(first_list))
}

/// A mapper for `.watches()`: a changed object of kind `R` wakes the objects of `K` in its
/// namespace that name it (`names_of` reads the reference from a `K`).
pub fn referrers<K, R>(
    store: &Store<K>,
    names_of: fn(&K) -> Option<&str>,
) -> impl Fn(R) -> Vec<ObjectRef<K>> + Send + Sync + 'static + use<K, R>
where
    K: TwinKind,
    R: Resource + 'static,
{
    let store = store.clone();
    move |changed: R| {
        let (namespace, name) = (changed.meta().namespace.clone(), changed.meta().name.clone());
        store
            .state()
            .into_iter()
            .filter(|object| object.namespace() == namespace && names_of(object) == name.as_deref())
            .map(|object| ObjectRef::from_obj(&*object))
            .collect()
    }
}

/// The identity of an object in logs and failure counts.
pub fn object_key<K: Resource>(object: &K) -> String {
    format!(
        "{}/{}",
        object.meta().namespace.as_deref().unwrap_or_default(),
        object.meta().name.as_deref().unwrap_or_default()
    )
}

/// One reconcile: its span and metrics, the backoff reset on success, and a permanent failure
/// written to the status (phase `FAILED`, the error's reason and message) and an Event before
/// the object waits for a change.
pub async fn drive<K, S, Fut>(object: Arc<K>, ctx: Arc<Context>, steps: S) -> Result<Action>
where
    K: TwinKind,
    S: Fn(Arc<K>, Arc<Context>) -> Fut,
    Fut: Future<Output = Result<Action>>,
{
    let started = Instant::now();
    let key = object_key(&*object);
    let span = info_span!("reconcile", controller = K::CONTROLLER, object = %key, generation = object.meta().generation);
    let result = async {
        match steps(object.clone(), ctx.clone()).await {
            Err(error) if error.is_permanent() && object.meta().deletion_timestamp.is_none() => {
                let failed = Assessment::not_ready(K::FAILED, error.reason(), error.to_string());
                let status = object.status().cloned().unwrap_or_default();
                publish_status(&ctx, &*object, &failed, status).await?;
                Err(error)
            }
            other => other,
        }
    }
    .instrument(span)
    .await;
    ctx.metrics.reconciled(K::CONTROLLER, started.elapsed());
    if result.is_ok() {
        ctx.clear_failures(&key);
    }
    result
}

/// The error policy of every controller: permanent errors wait for a change of the object,
/// transient ones are retried with the crate's backoff.
pub fn error_policy<K: TwinKind>(object: Arc<K>, error: &Error, ctx: Arc<Context>) -> Action {
    let key = object_key(&*object);
    ctx.metrics.failed(K::CONTROLLER, error.reason());
    if error.is_permanent() {
        warn!(controller = K::CONTROLLER, object = %key, reason = error.reason(), "reconcile failed permanently, waiting for a change: {error}");
        Action::await_change()
    } else {
        let delay =
            crate::backoff::delay_after(crate::backoff::reconcile_retries(), ctx.record_failure(&key));
        warn!(controller = K::CONTROLLER, object = %key, reason = error.reason(), retry_in = ?delay, "reconcile failed, will retry: {error}");
        Action::requeue(delay)
    }
}

/// Runs `apply` while the object lives and `cleanup` once it is being deleted, behind the
/// finalizer `name`, so that what the object owns outside the cluster is cleaned up before it
/// goes (kube-runtime's finalizer helper).
pub async fn with_finalizer<K, A, AFut, C, CFut>(
    ctx: &Context,
    object: Arc<K>,
    name: &'static str,
    apply: A,
    cleanup: C,
) -> Result<Action>
where
    K: TwinKind,
    A: FnOnce(Arc<K>) -> AFut,
    AFut: Future<Output = Result<Action>>,
    C: FnOnce(Arc<K>) -> CFut,
    CFut: Future<Output = Result<Action>>,
{
    let namespace = object.namespace().ok_or(Error::Unidentified("namespace"))?;
    let api = ctx.namespaced_api::<K>(&namespace);
    let outcome = finalizer(&api, name, object, |event| async move {
        match event {
            finalizer::Event::Apply(object) => apply(object).await,
            finalizer::Event::Cleanup(object) => cleanup(object).await,
        }
    })
    .await;
    outcome.map_err(|error| match error {
        finalizer::Error::ApplyFailed(error) | finalizer::Error::CleanupFailed(error) => error,
        finalizer::Error::AddFinalizer(source) => {
            Error::Finalizer { action: "adding", finalizer: name, source }
        }
        finalizer::Error::RemoveFinalizer(source) => {
            Error::Finalizer { action: "removing", finalizer: name, source }
        }
        finalizer::Error::UnnamedObject | finalizer::Error::InvalidFinalizer => Error::Unidentified("name"),
    })
}

/// Writes the status a verdict gives and returns the verdict's next action: how a driver
/// ends when it cannot go on.
pub async fn settle<K: TwinKind>(
    ctx: &Context,
    object: &K,
    verdict: &Verdict<K::Phase>,
    status: K::Status,
) -> Result<Action> {
    publish_status(ctx, object, &verdict.assessment, status).await?;
    Ok(verdict.action())
}

/// A status patch: server-side apply needs the object's `apiVersion` and `kind`.
#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
struct StatusPatch<'a, S> {
    api_version: String,
    kind: String,
    status: &'a S,
}

/// Writes `status` with the assessment's phase, the observed generation and the Ready
/// condition, when it differs from the stored one; publishes an Event when the phase or the
/// reason changed.
pub async fn publish_status<K: TwinKind>(
    ctx: &Context,
    object: &K,
    assessment: &Assessment<K::Phase>,
    mut status: K::Status,
) -> Result<()> {
    let namespace = object.namespace().ok_or(Error::Unidentified("namespace"))?;
    let generation = object.meta().generation;
    let previous = object.status();
    let previous_conditions = previous.map(K::conditions_of).unwrap_or_default();
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let ready = ready_condition(assessment, generation, previous_conditions, now);
    // The other conditions are the status's own (a reconcile may have set its parts').
    let conditions = with_ready(K::conditions_of(&status), ready);
    K::set_summary(&mut status, assessment.phase, generation, conditions);
    if previous == Some(&status) {
        return Ok(());
    }
    let patch =
        StatusPatch { api_version: K::api_version(&()).into(), kind: K::kind(&()).into(), status: &status };
    ctx.namespaced_api::<K>(&namespace)
        .patch_status(&object.name_any(), &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&patch))
        .await
        .map_err(|source| Error::WriteStatus { source })?;
    let previous_phase = previous.and_then(K::phase_of);
    let previous_reason = previous_conditions
        .iter()
        .find(|c| c.type_ == crate::api::CONDITION_READY)
        .map(|c| c.reason.as_str());
    if previous_phase == Some(assessment.phase) && previous_reason == Some(assessment.reason.as_str()) {
        return Ok(());
    }
    info!(controller = K::CONTROLLER, object = %object_key(object), from = ?previous_phase, to = ?assessment.phase, reason = %assessment.reason, "status changed: {}", assessment.message);
    publish_event(ctx, object, K::is_warning(assessment.phase), &assessment.reason, &assessment.message)
        .await;
    Ok(())
}

/// Publishes an Event about `object`. One that cannot be written does not fail the reconcile:
/// the status holds the truth.
pub async fn publish_event<K: TwinKind>(ctx: &Context, object: &K, warning: bool, reason: &str, note: &str) {
    let event = Event {
        type_: if warning { EventType::Warning } else { EventType::Normal },
        reason: reason.into(),
        note: Some(truncate(note, 1024)),
        action: "Reconcile".into(),
        secondary: None,
    };
    if let Err(error) = ctx.recorder.publish(&event, &object.object_ref(&())).await {
        warn!(object = %object_key(object), "could not publish an Event: {error}");
    }
}

fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use futures::StreamExt;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::runtime::{WatchStreamExt, reflector, watcher};

    use super::noting_first_list;

    #[tokio::test]
    async fn every_waiter_on_a_caches_first_list_wakes_when_it_comes() {
        let (store, writer) = reflector::store::<ConfigMap>();
        let (sender, events) = futures::channel::mpsc::unbounded();
        let (events, first_list) = noting_first_list(events.reflect(writer));
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let first_list = first_list.clone();
                tokio::spawn(async move { first_list.wait().await })
            })
            .collect();
        // Every waiter polls (and parks) before the list comes, and so does the cache's own.
        let cache_waiter = tokio::spawn(async move { store.wait_until_ready().await.is_ok() });
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert!(!first_list.done() && waiters.iter().all(|w| !w.is_finished()), "no list yet");
        sender.unbounded_send(Ok(watcher::Event::Init)).unwrap();
        sender.unbounded_send(Ok(watcher::Event::InitDone)).unwrap();
        drop(sender);
        let _: Vec<_> = events.collect().await;
        assert!(first_list.done());
        for waiter in waiters.into_iter().chain([cache_waiter]) {
            let woke = tokio::time::timeout(Duration::from_secs(5), waiter).await;
            assert!(matches!(woke, Ok(Ok(true))), "a waiter woke with the first list: {woke:?}");
        }
    }

    #[tokio::test]
    async fn a_stream_that_ends_before_its_first_list_says_so() {
        let (_store, writer) = reflector::store::<ConfigMap>();
        let (sender, events) = futures::channel::mpsc::unbounded();
        let (events, first_list) = noting_first_list(events.reflect(writer));
        sender.unbounded_send(Ok(watcher::Event::Init)).unwrap();
        drop(sender);
        let _: Vec<_> = events.collect().await;
        assert!(!first_list.wait().await);
    }
}
