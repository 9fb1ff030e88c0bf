//! The gateway's HTTP surface: the router (the chat page at `/` included), authentication,
//! request counting, health, readiness, metrics and models, and what every endpoint shares (its
//! JSON body within the limit, the in-flight limit, error answers). The chat and embeddings endpoints have
//! modules of their own.

use std::sync::Arc;
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, FailedToBufferBody};
use axum::extract::{DefaultBodyLimit, FromRequest, MatchedPath, Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::api::ApiError;
use super::chat::chat_completions;
use super::embeddings::embeddings;
use super::engine::Engine;
use super::knowledge::Shelf;
use super::metrics::{GatewayMetrics, RequestLabels, RouteLabels};
use super::promptlog::PromptLog;

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

/// The router of the whole API.
pub fn router(gateway: Arc<Gateway>) -> Router {
    let v1 = Router::new()
        .route("/chat/completions", post(chat_completions))
        .route("/models", get(list_models))
        .route("/models/{*id}", get(get_model))
        .route("/embeddings", post(embeddings))
        .route_layer(middleware::from_fn_with_state(gateway.clone(), authenticate));
    Router::new()
        .nest("/v1", v1)
        .merge(super::page::routes())
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(gateway.clone(), count_requests))
        .layer(DefaultBodyLimit::max(gateway.max_body_bytes))
        .with_state(gateway)
}

async fn not_found(request: Request) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "invalid_request_error",
        Some("unknown_url"),
        format!(
            "no route {} {}: see /v1/chat/completions, /v1/models, /v1/embeddings, or the chat page at /",
            request.method(),
            request.uri().path()
        ),
    )
}

async fn method_not_allowed(request: Request) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "invalid_request_error",
        Some("method_not_allowed"),
        format!("{} is not allowed on {}", request.method(), request.uri().path()),
    )
}

/// Counts every answer by route and status, and times it (a stream until its headers; the
/// stream itself records its whole time).
async fn count_requests(State(gateway): State<Arc<Gateway>>, request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().map_or("unmatched", |p| p.as_str()).to_string();
    let started = Instant::now();
    let response = next.run(request).await;
    let metrics = &gateway.metrics;
    metrics
        .requests
        .get_or_create(&RequestLabels { route: route.clone(), status: response.status().as_u16() })
        .inc();
    if response.headers().get(header::CONTENT_TYPE).is_none_or(|v| v != "text/event-stream") {
        metrics.duration.get_or_create(&RouteLabels { route }).observe(started.elapsed().as_secs_f64());
    }
    response
}

/// Checks the bearer token in constant time (over hashes, so the key's length leaks neither).
async fn authenticate(State(gateway): State<Arc<Gateway>>, request: Request, next: Next) -> Response {
    if let Some(expected) = &gateway.api_key_sha256 {
        let presented = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .map(|token| Sha256::digest(token.trim().as_bytes()));
        let valid = presented.is_some_and(|hash| bool::from(hash.as_slice().ct_eq(expected)));
        if !valid {
            gateway.metrics.error("unauthorized");
            let error = ApiError::new(
                StatusCode::UNAUTHORIZED,
                "authentication_error",
                Some("invalid_api_key"),
                "a valid API key is required: send it as `Authorization: Bearer <key>`",
            );
            let mut response = error.into_response();
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return response;
        }
    }
    next.run(request).await
}

async fn readyz(State(gateway): State<Arc<Gateway>>) -> Response {
    match gateway.readiness() {
        Ok(message) => (StatusCode::OK, message).into_response(),
        Err(message) => (StatusCode::SERVICE_UNAVAILABLE, message).into_response(),
    }
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

    pub(super) fn engine(&self) -> Result<&Arc<dyn Engine>, ApiError> {
        self.engine.get().ok_or_else(|| not_ready("the engine is still loading"))
    }
}

async fn metrics(State(gateway): State<Arc<Gateway>>) -> Response {
    if let Some(knowledge) = gateway.shelf.get() {
        gateway.metrics.index_passages.set(knowledge.index.len() as i64);
    }
    gateway.metrics.ready.set(i64::from(gateway.readiness().is_ok()));
    (
        [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
        gateway.metrics.encode(),
    )
        .into_response()
}

fn model_object(gateway: &Gateway) -> Value {
    let info = gateway.engine.get().map(|e| e.info());
    json!({
        "id": gateway.name,
        "object": "model",
        "created": gateway.started,
        "owned_by": "twin-operator",
        "root": info.map(|i| i.model.clone()),
        "twin": {
            "engine": info.map(|i| i.kind),
            "adapter": info.and_then(|i| i.adapter.clone()),
            "contextTokens": info.map(|i| i.context_tokens),
            "revision": gateway.shelf.get().map(|k| k.revision.clone()),
        },
    })
}

async fn list_models(State(gateway): State<Arc<Gateway>>) -> Response {
    axum::Json(json!({"object": "list", "data": [model_object(&gateway)]})).into_response()
}

async fn get_model(State(gateway): State<Arc<Gateway>>, Path(id): Path<String>) -> Response {
    if id != gateway.name {
        return model_not_found(&gateway, &id).into_response();
    }
    axum::Json(model_object(&gateway)).into_response()
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
