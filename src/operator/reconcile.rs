//! What the three controllers share around their own reconcile steps: the span and metrics of
//! each reconcile, the status write (server-side apply to `/status`, skipped when nothing
//! changed), the Event on each phase change, and the error policy.

use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, predicates, watcher};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use tracing::{Instrument, info, info_span, warn};

use super::conditions::{Assessment, ready_condition, with_ready};
use super::context::{Context, FIELD_MANAGER};
use super::error::{Error, Result, backoff};

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
    /// The phase in the object's status, as written.
    fn current_phase(&self) -> Option<Self::Phase>;
    /// The conditions in the object's status.
    fn current_conditions(&self) -> &[Condition];
    /// Whether a phase deserves a Warning Event.
    fn is_warning(phase: Self::Phase) -> bool;
}

/// A controller's own objects: watched across the watched namespaces, cached in the returned
/// store, and filtered to spec changes (`metadata.generation`), so that a status write does not
/// wake its own reconcile.
pub fn primary_stream<K: TwinKind>(
    ctx: &Context,
) -> (Store<K>, impl futures::Stream<Item = Result<K, watcher::Error>> + Send + 'static) {
    let (reader, writer) = reflector::store();
    let stream = watcher(ctx.watched_api::<K>(), watcher::Config::default())
        .default_backoff()
        .reflect(writer)
        .applied_objects()
        .predicate_filter(predicates::generation, Default::default());
    (reader, stream)
}

/// The identity of an object in logs and failure counts.
pub fn object_key<K: Resource>(object: &K) -> String {
    format!(
        "{}/{}",
        object.meta().namespace.as_deref().unwrap_or_default(),
        object.meta().name.as_deref().unwrap_or_default()
    )
}

/// Runs one reconcile with its span and metrics, and resets the backoff on success.
pub async fn instrumented<K, F>(object: Arc<K>, ctx: Arc<Context>, reconcile: F) -> Result<Action>
where
    K: TwinKind,
    F: Future<Output = Result<Action>>,
{
    let started = Instant::now();
    let key = object_key(&*object);
    let span = info_span!("reconcile", controller = K::CONTROLLER, object = %key, generation = object.meta().generation);
    let result = reconcile.instrument(span).await;
    ctx.metrics.reconciled(K::CONTROLLER, started.elapsed());
    if result.is_ok() {
        ctx.clear_failures(&key);
    }
    result
}

/// The error policy of every controller: permanent errors wait for a change of the object,
/// transient ones are retried with exponential backoff and jitter.
pub fn error_policy<K: TwinKind>(object: Arc<K>, error: &Error, ctx: Arc<Context>) -> Action {
    let key = object_key(&*object);
    ctx.metrics.failed(K::CONTROLLER, error.reason());
    if error.is_permanent() {
        warn!(controller = K::CONTROLLER, object = %key, reason = error.reason(), "reconcile failed permanently, waiting for a change: {error}");
        Action::await_change()
    } else {
        let delay = backoff(ctx.record_failure(&key) - 1);
        warn!(controller = K::CONTROLLER, object = %key, reason = error.reason(), retry_in = ?delay, "reconcile failed, will retry: {error}");
        Action::requeue(delay)
    }
}

/// Writes the status (`status_fields` plus phase, observedGeneration and the Ready condition)
/// when it differs from the stored one, and publishes an Event when the phase changed.
pub async fn publish_status<K: TwinKind>(
    ctx: &Context,
    object: &K,
    assessment: &Assessment<K::Phase>,
    mut status_fields: serde_json::Value,
    current_status: serde_json::Value,
) -> Result<()> {
    let namespace = object.namespace().ok_or(Error::MissingNamespace)?;
    let generation = object.meta().generation;
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let ready = ready_condition(assessment, generation, object.current_conditions(), now);
    let conditions = with_ready(object.current_conditions(), ready);
    status_fields["observedGeneration"] = json!(generation);
    status_fields["phase"] = serde_json::to_value(assessment.phase)
        .map_err(|source| Error::Serialize { what: "phase", source })?;
    status_fields["conditions"] = serde_json::to_value(&conditions)
        .map_err(|source| Error::Serialize { what: "conditions", source })?;
    strip_nulls(&mut status_fields);
    if status_fields == current_status {
        return Ok(());
    }
    let patch = json!({"apiVersion": K::api_version(&()), "kind": K::kind(&()), "status": status_fields});
    let api = ctx.namespaced_api::<K>(&namespace);
    api.patch_status(&object.name_any(), &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&patch))
        .await?;
    let previous = object.current_phase();
    if previous != Some(assessment.phase) {
        info!(controller = K::CONTROLLER, object = %object_key(object), from = ?previous, to = ?assessment.phase, reason = %assessment.reason, "phase changed: {}", assessment.message);
        let event = Event {
            type_: if K::is_warning(assessment.phase) { EventType::Warning } else { EventType::Normal },
            reason: assessment.reason.clone(),
            note: Some(truncate(&assessment.message, 1024)),
            action: "Reconcile".into(),
            secondary: None,
        };
        // An Event that cannot be written must not fail the reconcile: the status holds the truth.
        if let Err(error) = ctx.recorder.publish(&event, &object.object_ref(&())).await {
            warn!(object = %object_key(object), "could not publish an Event: {error}");
        }
    }
    Ok(())
}

fn strip_nulls(value: &mut serde_json::Value) {
    if let Some(map) = value.as_object_mut() {
        map.retain(|_, v| !v.is_null());
        map.values_mut().for_each(strip_nulls);
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
