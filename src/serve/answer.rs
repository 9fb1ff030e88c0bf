//! A chat answer on its way: the request prepared for the engine (prompt, sources, lineage,
//! spans), and what every answer does at its end, whole or streamed: the engine's failure as
//! an HTTP error, the token counts, the prompt-log line.

use std::sync::Arc;
use std::time::Instant;

use axum::http::StatusCode;

use super::api::{ApiError, Lineage, Source, Usage};
use super::engine::{Engine, EngineError, Prompt};
use super::gateway::Gateway;
use super::promptlog::{Latency, PromptRecord};

/// A request ready for the engine, with what retrieval found.
pub(super) struct Prepared {
    pub(super) id: String,
    pub(super) created: u64,
    pub(super) prompt: Prompt,
    pub(super) sources: Vec<Source>,
    pub(super) prompt_tokens: usize,
    pub(super) question: String,
    pub(super) latency: Latency,
    pub(super) started: Instant,
    pub(super) engine: Arc<dyn Engine>,
    /// What answers: the dataset revision, the model and the adapter.
    pub(super) lineage: Lineage,
    /// The request's span, open until the answer is finished (a stream outlives the handler).
    pub(super) span: tracing::Span,
}

/// The span of the engine's work, a child of the request's, with its token counts once known.
pub(super) fn generate_span(prepared: &Prepared) -> tracing::Span {
    tracing::debug_span!(
        parent: &prepared.span,
        "generate",
        engine = prepared.engine.info().kind,
        prompt_tokens = tracing::field::Empty,
        completion_tokens = tracing::field::Empty,
    )
}

/// The code of a 503 for an engine that is still starting (from zero replicas).
pub(super) const ENGINE_STARTING: &str = "engine_starting";

/// The HTTP error for an engine's failure.
pub(super) fn engine_error(error: &EngineError) -> ApiError {
    let message = error.to_string();
    match error {
        EngineError::Timeout(_) => {
            ApiError::new(StatusCode::GATEWAY_TIMEOUT, "upstream_error", Some("upstream_timeout"), message)
        }
        EngineError::Unavailable(_) => {
            ApiError::new(StatusCode::BAD_GATEWAY, "upstream_error", Some("upstream_unavailable"), message)
        }
        EngineError::BadResponse(_) => {
            ApiError::new(StatusCode::BAD_GATEWAY, "upstream_error", Some("upstream_bad_response"), message)
        }
        EngineError::Rejected { status, .. } => ApiError::new(
            StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_REQUEST),
            "invalid_request_error",
            Some("upstream_rejected"),
            format!("the engine refused the request: {message}"),
        ),
        EngineError::Busy(_) => {
            ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limit_error", Some("engine_busy"), message)
        }
        EngineError::Starting(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "service_unavailable",
            Some(ENGINE_STARTING),
            message,
        ),
        EngineError::Failed(_) => {
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", Some("engine_failed"), message)
        }
    }
}

/// Counts the tokens and writes the prompt-log line of a finished request.
pub(super) fn log_answer(
    gateway: &Gateway,
    prepared: &Prepared,
    answer: &str,
    finish_reason: &str,
    error: Option<String>,
    usage: Usage,
) {
    prepared.span.record("passages", prepared.sources.len() as i64);
    prepared.span.record("prompt_tokens", i64::from(usage.prompt_tokens));
    prepared.span.record("completion_tokens", i64::from(usage.completion_tokens));
    prepared.span.record("finish_reason", finish_reason);
    let metrics = &gateway.metrics;
    metrics.prompt_tokens.observe(f64::from(usage.prompt_tokens));
    metrics.completion_tokens.observe(f64::from(usage.completion_tokens));
    let Some(log) = &gateway.prompt_log else { return };
    let mut latency = prepared.latency;
    latency.total = prepared.started.elapsed().as_secs_f64() * 1e3;
    log.record(PromptRecord {
        time: k8s_openapi::jiff::Timestamp::now().to_string(),
        id: prepared.id.clone(),
        model: gateway.name.clone(),
        question: prepared.question.clone(),
        passages: prepared.sources.clone(),
        answer: answer.to_string(),
        finish_reason: finish_reason.to_string(),
        error,
        usage,
        latency_ms: latency,
        lineage: prepared.lineage.clone(),
    });
}
