//! Waiting for what a controller does: poll a check until it holds or a deadline passes.

use std::future::Future;
use std::time::{Duration, Instant};

/// Polls `check` every `interval` until it returns `Some`, or panics with `what` after
/// `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, interval: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(interval).await;
    }
}

/// Whether an object (as JSON) reports `phase` with a Ready condition of `reason`, for its
/// current generation.
pub fn has_phase(object: &serde_json::Value, phase: &str, reason: &str) -> bool {
    let status = &object["status"];
    let ready = status["conditions"].as_array().and_then(|c| c.iter().find(|c| c["type"] == "Ready"));
    status["phase"] == phase
        && ready.is_some_and(|r| r["reason"] == reason)
        && status["observedGeneration"] == object["metadata"]["generation"]
}

/// Polls a twin until it reports `phase` with the Ready reason `reason` for its current
/// generation; panics after `timeout` with the status it last had.
pub async fn for_phase<K>(
    api: &kube::Api<K>,
    name: &str,
    phase: &str,
    reason: &str,
    timeout: Duration,
) -> serde_json::Value
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + serde::Serialize,
{
    let deadline = Instant::now() + timeout;
    let mut last = serde_json::Value::Null;
    loop {
        if let Ok(Some(object)) = api.get_opt(name).await {
            let object = serde_json::to_value(object).unwrap();
            if has_phase(&object, phase, reason) {
                return object;
            }
            last = object["status"].clone();
        }
        assert!(
            Instant::now() < deadline,
            "{name} did not become {phase}/{reason} in {timeout:?}; its status: {last}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
