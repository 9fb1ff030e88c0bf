//! The gateway's HTTP surface: the router (the chat page at `/` included), authentication,
//! request counting, health, readiness, metrics and models. The chat and embeddings endpoints
//! have modules of their own; what they share is in [`super::gateway`].

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::api::ApiError;
use super::chat::chat_completions;
use super::embeddings::embeddings;
use super::gateway::{Gateway, model_not_found};
use super::metrics::{RequestLabels, RouteLabels};

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
    let named = info.map(|i| gateway.model_named(i));
    json!({
        "id": gateway.name,
        "object": "model",
        "created": gateway.started,
        "owned_by": "twin-operator",
        "root": named.as_ref().map(|(model, ..)| model),
        "twin": {
            "engine": info.map(|i| i.kind),
            "adapter": named.as_ref().and_then(|(_, adapter, _)| adapter.as_ref()),
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
