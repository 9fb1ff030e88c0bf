//! The gateway's state, which every request reads, and what every endpoint shares: admission
//! within the in-flight limit, its JSON body within the size limit, and the error answers.

use std::sync::{Arc, Mutex, OnceLock};

use arc_swap::ArcSwapOption;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, FailedToBufferBody};
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::api::ApiError;
use super::engine::{Engine, EngineInfo};
use super::knowledge::Shelf;
use super::metrics::GatewayMetrics;
use super::promptlog::PromptLog;
use crate::api::endpoint::ServedModel;

/// Everything a request needs.
pub struct Gateway {
    /// The model name clients ask for.
    pub name: String,
    /// What answers, once loaded.
    pub engine: OnceLock<Arc<dyn Engine>>,
    /// The dataset revision served (`None` inside until loaded).
    pub shelf: Arc<Shelf>,
    /// Whether a dataset was configured (without one, the twin answers without retrieval).
    pub has_dataset: bool,
    /// The configured system prompt (else one written from the manifest's author).
    pub system_prompt: Option<String>,
    /// Passages per request unless the request says otherwise.
    pub top_k: u32,
    /// The dataset revision the adapter was trained on, named in the lineage next to the one
    /// retrieved from.
    pub adapter_revision: Option<String>,
    /// What the lineage file says is served (`--lineage-file`), which answers name instead of
    /// the engine's model and adapter and `adapter_revision`.
    pub served: ArcSwapOption<ServedModel>,
    /// Tokens kept for the answer when a request does not set `max_tokens`.
    pub answer_tokens: u32,
    /// SHA-256 of the API key clients must send.
    pub api_key_sha256: Option<[u8; 32]>,
    /// Requests served at once; more get 429.
    pub in_flight: Arc<Semaphore>,
    /// Largest request body.
    pub max_body_bytes: usize,
    /// How often a streamed answer sends a keep-alive comment while no token comes.
    pub keep_alive: std::time::Duration,
    /// Metrics.
    pub metrics: Arc<GatewayMetrics>,
    /// The prompt log, when configured.
    pub prompt_log: Option<PromptLog>,
    /// Why the engine or the dataset could not be loaded (shown by /readyz until they are).
    pub load_error: Mutex<Option<String>>,
    /// Unix seconds of the start (the model's `created`).
    pub started: u64,
}

impl Gateway {
    /// What /readyz says: ready (with the revision served), or what is still loading and why.
    pub fn readiness(&self) -> Result<String, String> {
        let engine = self.engine.get().is_some();
        let knowledge = self.shelf.get();
        let waiting = |what: &str| match self.load_error.lock().expect("not poisoned").clone() {
            Some(error) => Err(format!("{what}: {error}")),
            None => Err(what.to_string()),
        };
        match (engine, self.has_dataset, &knowledge) {
            (false, _, _) => waiting("the engine is loading"),
            (true, true, None) => waiting("the dataset index is loading"),
            (true, _, Some(k)) => Ok(format!("ready: revision {} ({} passages)", k.revision, k.index.len())),
            (true, false, None) => Ok("ready (no dataset: answers without retrieval)".into()),
        }
    }

    /// The base model, the adapter and the dataset revision it was trained on that answers by
    /// `engine` name: what the lineage file says, else what the engine and flags say.
    pub(super) fn model_named(&self, engine: &EngineInfo) -> (String, Option<String>, Option<String>) {
        match self.served.load().as_deref() {
            Some(served) => (
                served.base_model.clone(),
                served.adapter_uri.clone(),
                served.adapter_uri.as_ref().and(served.adapter_revision.clone()),
            ),
            None => (
                engine.model.clone(),
                engine.adapter.clone(),
                engine.adapter.as_ref().and(self.adapter_revision.clone()),
            ),
        }
    }

    pub(super) fn engine(&self) -> Result<&Arc<dyn Engine>, ApiError> {
        self.engine.get().ok_or_else(|| not_ready("the engine is still loading"))
    }
}

pub(super) fn model_not_found(gateway: &Gateway, asked: &str) -> ApiError {
    gateway.metrics.error("model_not_found");
    ApiError {
        param: Some("model".into()),
        ..ApiError::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            Some("model_not_found"),
            format!("the model {asked:?} does not exist here: this endpoint serves {:?}", gateway.name),
        )
    }
}

/// A request's JSON body, read within the router's body limit (axum's `DefaultBodyLimit`, set
/// to `--max-body-bytes`): a larger body gets 413, a body that is not JSON or lacks the
/// expected fields 400, each as an OpenAI error object, counted. The content type is not
/// checked: `curl -d` sends JSON as a form.
pub(super) struct JsonBody<T>(pub T);

impl<T: serde::de::DeserializeOwned> FromRequest<Arc<Gateway>> for JsonBody<T> {
    type Rejection = Response;

    async fn from_request(request: Request, gateway: &Arc<Gateway>) -> Result<Self, Response> {
        let bytes = Bytes::from_request(request, gateway).await.map_err(|rejection| {
            let error = match rejection {
                BytesRejection::FailedToBufferBody(FailedToBufferBody::LengthLimitError(_)) => ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "invalid_request_error",
                    Some("request_too_large"),
                    format!(
                        "the request body is larger than this gateway's limit of {} bytes",
                        gateway.max_body_bytes
                    ),
                ),
                other => ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_request_error",
                    Some("invalid_body"),
                    format!("the request body could not be read: {}", other.body_text()),
                ),
            };
            refused(gateway, error)
        })?;
        let parsed = serde_json::from_slice(&bytes).map_err(|e| {
            let what = if e.is_syntax() || e.is_eof() {
                "the body is not valid JSON"
            } else {
                "the body does not have the expected fields"
            };
            let error = ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                Some("invalid_json"),
                format!("{what}: {e}"),
            );
            refused(gateway, error)
        })?;
        Ok(Self(parsed))
    }
}

/// A permit of the in-flight limit, or a 429.
pub(super) fn admit(gateway: &Gateway) -> Result<OwnedSemaphorePermit, ApiError> {
    gateway.in_flight.clone().try_acquire_owned().map_err(|_| {
        gateway.metrics.error("rate_limited");
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit_error",
            Some("too_many_requests"),
            "this gateway is serving as many requests as it allows (--max-in-flight); retry shortly",
        )
    })
}

/// Tracks a request in the in-flight gauge for as long as it lives.
pub(super) struct InFlight {
    metrics: Arc<GatewayMetrics>,
    _permit: OwnedSemaphorePermit,
}

impl InFlight {
    pub(super) fn new(metrics: Arc<GatewayMetrics>, permit: OwnedSemaphorePermit) -> Self {
        metrics.in_flight.inc();
        Self { metrics, _permit: permit }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.metrics.in_flight.dec();
    }
}
pub(super) fn refused(gateway: &Gateway, error: ApiError) -> Response {
    let kind = match error.status {
        StatusCode::BAD_REQUEST => "invalid_request",
        StatusCode::PAYLOAD_TOO_LARGE => "request_too_large",
        StatusCode::SERVICE_UNAVAILABLE => "not_ready",
        _ => error.code.unwrap_or(error.kind),
    };
    gateway.metrics.error(kind);
    error.into_response()
}

pub(super) fn not_ready(message: &str) -> ApiError {
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "service_unavailable", Some("not_ready"), message)
}

pub(super) fn internal(message: String) -> ApiError {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", None, message)
}
