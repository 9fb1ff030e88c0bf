//! The gateway's Prometheus metrics: requests by route and status, errors by kind, requests in
//! flight, latency histograms (embedding, retrieval, time to first token, whole request),
//! tokens in and out, the index served, and the prompt log's drops.

use std::sync::atomic::AtomicI64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

/// Labels of the request counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The route (`/v1/chat/completions`, ...).
    pub route: String,
    /// The HTTP status.
    pub status: u16,
}

/// Labels of the error counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// `invalid_request`, `unauthorized`, `rate_limited`, `upstream_timeout`, ...
    pub kind: String,
}

/// Labels of per-route histograms.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
#[allow(missing_docs)]
pub struct RouteLabels {
    pub route: String,
}

/// Every metric of the gateway, registered once.
pub struct GatewayMetrics {
    registry: Registry,
    /// Requests answered, by route and status.
    pub requests: Family<RequestLabels, Counter>,
    /// Failures, by kind.
    pub errors: Family<ErrorLabels, Counter>,
    /// Requests being served.
    pub in_flight: Gauge<i64, AtomicI64>,
    /// 1 when the engine and the dataset are loaded (as /readyz says), else 0.
    pub ready: Gauge<i64, AtomicI64>,
    /// Seconds to embed a question.
    pub embedding: Histogram,
    /// Seconds to search the index.
    pub retrieval: Histogram,
    /// Seconds from the request to the first token of the answer.
    pub time_to_first_token: Histogram,
    /// Seconds of whole requests, by route.
    pub duration: Family<RouteLabels, Histogram>,
    /// Prompt tokens per request (its `_sum` is the total).
    pub prompt_tokens: Histogram,
    /// Answer tokens per request.
    pub completion_tokens: Histogram,
    /// Passages of the revision served.
    pub index_passages: Gauge<i64, AtomicI64>,
    /// Revisions swapped in since start (the first load included).
    pub index_swaps: Counter,
    /// Failed attempts to load a new revision.
    pub index_reload_failures: Counter,
    /// Prompt-log lines dropped because the buffer was full.
    pub prompt_log_dropped: Counter,
    /// Prompt-log lines written.
    pub prompt_log_written: Counter,
    /// Prompt-log batches that could not be written.
    pub prompt_log_write_failures: Counter,
}

impl Default for GatewayMetrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("twin_gateway");
        let latency = || Histogram::new(exponential_buckets(0.0005, 2.0, 18));
        let tokens = || Histogram::new(exponential_buckets(1.0, 2.0, 16));
        let metrics = Self {
            requests: Family::default(),
            errors: Family::default(),
            in_flight: Gauge::default(),
            ready: Gauge::default(),
            embedding: latency(),
            retrieval: latency(),
            time_to_first_token: latency(),
            duration: Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.0005, 2.0, 18))),
            prompt_tokens: tokens(),
            completion_tokens: tokens(),
            index_passages: Gauge::default(),
            index_swaps: Counter::default(),
            index_reload_failures: Counter::default(),
            prompt_log_dropped: Counter::default(),
            prompt_log_written: Counter::default(),
            prompt_log_write_failures: Counter::default(),
            registry: Registry::default(),
        };
        registry.register(
            "requests",
            "Requests answered, by route and HTTP status",
            metrics.requests.clone(),
        );
        registry.register("errors", "Failed requests, by kind", metrics.errors.clone());
        registry.register("in_flight", "Requests being served", metrics.in_flight.clone());
        registry.register(
            "ready",
            "1 when the engine and the dataset are loaded and requests are answered, else 0",
            metrics.ready.clone(),
        );
        registry.register_with_unit(
            "embedding",
            "Time to embed a question",
            Unit::Seconds,
            metrics.embedding.clone(),
        );
        registry.register_with_unit(
            "retrieval",
            "Time to search the index",
            Unit::Seconds,
            metrics.retrieval.clone(),
        );
        registry.register_with_unit(
            "time_to_first_token",
            "Time from the request to the first token of the answer",
            Unit::Seconds,
            metrics.time_to_first_token.clone(),
        );
        registry.register_with_unit(
            "request_duration",
            "Time of whole requests, by route",
            Unit::Seconds,
            metrics.duration.clone(),
        );
        registry.register("prompt_tokens", "Prompt tokens per request", metrics.prompt_tokens.clone());
        registry.register(
            "completion_tokens",
            "Answer tokens per request",
            metrics.completion_tokens.clone(),
        );
        registry.register(
            "index_passages",
            "Passages of the dataset revision served",
            metrics.index_passages.clone(),
        );
        registry.register(
            "index_swaps",
            "Dataset revisions swapped in since start",
            metrics.index_swaps.clone(),
        );
        registry.register(
            "index_reload_failures",
            "Failed attempts to load a new dataset revision",
            metrics.index_reload_failures.clone(),
        );
        registry.register(
            "prompt_log_dropped",
            "Prompt-log lines dropped: the buffer was full",
            metrics.prompt_log_dropped.clone(),
        );
        registry.register(
            "prompt_log_written",
            "Prompt-log lines written",
            metrics.prompt_log_written.clone(),
        );
        registry.register(
            "prompt_log_write_failures",
            "Prompt-log batches that could not be written",
            metrics.prompt_log_write_failures.clone(),
        );
        Self { registry, ..metrics }
    }
}

impl GatewayMetrics {
    /// The Prometheus text exposition (OpenMetrics).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }

    /// Counts a failure of `kind`.
    pub fn error(&self, kind: &str) {
        self.errors.get_or_create(&ErrorLabels { kind: kind.to_string() }).inc();
    }
}
