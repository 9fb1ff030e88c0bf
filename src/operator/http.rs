//! The operator's HTTP server: `/metrics` (Prometheus text), `/healthz` (the process serves),
//! `/readyz` (caches synced while leading, or standing by with a working Lease API).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::sync::watch;

use super::leader::Leadership;
use super::metrics::Metrics;

/// What the endpoints report on.
pub struct Health {
    /// The election's state.
    pub leadership: watch::Receiver<Leadership>,
    /// Whether the controllers' caches are synced (only while leading).
    pub caches_synced: AtomicBool,
    /// Refreshes gauges computed from the caches just before a scrape.
    pub refresh_gauges: Box<dyn Fn() + Send + Sync>,
}

impl Health {
    /// Ready: leading with synced caches, or standing by.
    pub fn ready(&self) -> Result<&'static str, &'static str> {
        match *self.leadership.borrow() {
            Leadership::Leading if self.caches_synced.load(Ordering::SeqCst) => Ok("leading; caches synced"),
            Leadership::Leading => Err("leading; caches are syncing"),
            Leadership::StandingBy => Ok("standing by"),
            Leadership::Unknown => Err("leader election has not started"),
            Leadership::Failing => Err("the Lease API is failing"),
        }
    }
}

struct AppState {
    metrics: Arc<Metrics>,
    health: Arc<Health>,
}

/// The router of the three endpoints.
pub fn router(metrics: Arc<Metrics>, health: Arc<Health>) -> Router {
    Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready_handler))
        .with_state(Arc::new(AppState { metrics, health }))
}

async fn metrics_handler(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    (state.health.refresh_gauges)();
    (
        [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
        state.metrics.encode(),
    )
}

async fn ready_handler(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    match state.health.ready() {
        Ok(message) => (StatusCode::OK, message),
        Err(message) => (StatusCode::SERVICE_UNAVAILABLE, message),
    }
}
