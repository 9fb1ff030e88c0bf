//! The gateway's HTTP API: `POST /v1/chat/completions` (whole or streamed as server-sent
//! events), `GET /v1/models`, `POST /v1/embeddings`, and `/healthz`, `/readyz`, `/metrics`.
//! Every refusal is an OpenAI-style error object; every request is counted by route and status.

use std::sync::Arc;
use std::sync::{Mutex, OnceLock};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{MatchedPath, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::StreamExt;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::Instrument;

use super::api::{
    AnswerMessage, ApiError, ChatChunk, ChatCompletion, ChatRequest, Choice, ChunkChoice, Delta, Role,
    Source, Usage, ValidChat,
};
use super::engine::{Engine, EngineError, FinishReason, Piece, Prompt};
use super::index::Passage;
use super::knowledge::{Knowledge, Shelf};
use super::metrics::{GatewayMetrics, RequestLabels, RouteLabels};
use super::prompt::{TokenCounter, default_system_prompt, fit};
use super::promptlog::{Latency, Lineage, PromptLog, PromptRecord};

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
    /// Tokens kept for the answer when a request does not set `max_tokens`.
    pub answer_tokens: u32,
    /// SHA-256 of the API key clients must send.
    pub api_key_sha256: Option<[u8; 32]>,
    /// Requests served at once; more get 429.
    pub in_flight: Arc<Semaphore>,
    /// Largest request body.
    pub max_body_bytes: usize,
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
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(gateway.clone(), count_requests))
        .with_state(gateway)
}

async fn not_found(request: Request) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "invalid_request_error",
        Some("unknown_url"),
        format!(
            "no route {} {}: see /v1/chat/completions, /v1/models, /v1/embeddings",
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
    let engine = gateway.engine.get().is_some();
    let knowledge = gateway.shelf.get();
    let waiting = |what: &str| {
        let error = gateway.load_error.lock().expect("not poisoned").clone();
        let message = match error {
            Some(error) => format!("{what}: {error}"),
            None => what.to_string(),
        };
        (StatusCode::SERVICE_UNAVAILABLE, message).into_response()
    };
    match (engine, gateway.has_dataset, &knowledge) {
        (false, _, _) => waiting("the engine is loading"),
        (true, true, None) => waiting("the dataset index is loading"),
        (true, _, Some(k)) => {
            (StatusCode::OK, format!("ready: revision {} ({} passages)", k.revision, k.index.len()))
                .into_response()
        }
        (true, false, None) => {
            (StatusCode::OK, "ready (no dataset: answers without retrieval)").into_response()
        }
    }
}

impl Gateway {
    fn engine(&self) -> Result<&Arc<dyn Engine>, ApiError> {
        self.engine.get().ok_or_else(|| not_ready("the engine is still loading"))
    }
}

async fn metrics(State(gateway): State<Arc<Gateway>>) -> Response {
    if let Some(knowledge) = gateway.shelf.get() {
        gateway.metrics.index_passages.set(knowledge.index.len() as i64);
    }
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

fn model_not_found(gateway: &Gateway, asked: &str) -> ApiError {
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

/// Reads a JSON body within the size limit.
async fn read_json<T: serde::de::DeserializeOwned>(
    gateway: &Gateway,
    headers: &HeaderMap,
    body: Body,
) -> Result<T, ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request_error",
            Some("request_too_large"),
            format!(
                "the request body is larger than this gateway's limit of {} bytes",
                gateway.max_body_bytes
            ),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|length| length > gateway.max_body_bytes) {
        return Err(too_large());
    }
    let bytes: Bytes = axum::body::to_bytes(body, gateway.max_body_bytes).await.map_err(|_| too_large())?;
    serde_json::from_slice(&bytes).map_err(|e| {
        let what = if e.is_syntax() || e.is_eof() {
            "the body is not valid JSON"
        } else {
            "the body does not have the expected fields"
        };
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            Some("invalid_json"),
            format!("{what}: {e}"),
        )
    })
}

/// A permit of the in-flight limit, or a 429.
fn admit(gateway: &Gateway) -> Result<OwnedSemaphorePermit, ApiError> {
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
struct InFlight {
    metrics: Arc<GatewayMetrics>,
    _permit: OwnedSemaphorePermit,
}

impl InFlight {
    fn new(metrics: Arc<GatewayMetrics>, permit: OwnedSemaphorePermit) -> Self {
        metrics.in_flight.inc();
        Self { metrics, _permit: permit }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.metrics.in_flight.dec();
    }
}

struct Counter<'a>(&'a dyn Engine);

impl TokenCounter for Counter<'_> {
    fn count(&self, text: &str) -> usize {
        self.0.count_tokens(text)
    }
    fn per_turn(&self) -> usize {
        self.0.tokens_per_turn()
    }
}

/// A request ready for the engine, with what retrieval found.
struct Prepared {
    id: String,
    created: u64,
    prompt: Prompt,
    sources: Vec<Source>,
    prompt_tokens: usize,
    question: String,
    latency: Latency,
    started: Instant,
    knowledge: Option<Arc<Knowledge>>,
    engine: Arc<dyn Engine>,
    /// The request's span, open until the answer is finished (a stream outlives the handler).
    span: tracing::Span,
}

async fn chat_completions(State(gateway): State<Arc<Gateway>>, headers: HeaderMap, body: Body) -> Response {
    let started = Instant::now();
    let permit = match admit(&gateway) {
        Ok(permit) => InFlight::new(gateway.metrics.clone(), permit),
        Err(error) => return error.into_response(),
    };
    let span = tracing::info_span!(
        "chat",
        model = %gateway.name,
        stream = tracing::field::Empty,
        passages = tracing::field::Empty,
        prompt_tokens = tracing::field::Empty,
        completion_tokens = tracing::field::Empty,
        finish_reason = tracing::field::Empty,
    );
    async move {
        let chat = match read_json::<ChatRequest>(&gateway, &headers, body).await {
            Ok(request) => request,
            Err(error) => return refused(&gateway, error),
        };
        if let Some(model) = chat.model.as_deref()
            && model != gateway.name
        {
            return model_not_found(&gateway, model).into_response();
        }
        let chat = match chat.validate() {
            Ok(chat) => chat,
            Err(error) => return refused(&gateway, error),
        };
        tracing::Span::current().record("stream", chat.stream);
        let prepared = match prepare(&gateway, &chat, started).await {
            Ok(prepared) => prepared,
            Err(error) => return refused(&gateway, error),
        };
        if chat.stream {
            stream_answer(gateway, prepared, chat.include_usage, permit).await
        } else {
            whole_answer(&gateway, prepared).await
        }
    }
    .instrument(span)
    .await
}

fn refused(gateway: &Gateway, error: ApiError) -> Response {
    let kind = match error.status {
        StatusCode::BAD_REQUEST => "invalid_request",
        StatusCode::PAYLOAD_TOO_LARGE => "request_too_large",
        StatusCode::SERVICE_UNAVAILABLE => "not_ready",
        _ => error.code.unwrap_or(error.kind),
    };
    gateway.metrics.error(kind);
    error.into_response()
}

/// Retrieval and the fitted prompt.
async fn prepare(gateway: &Arc<Gateway>, chat: &ValidChat, started: Instant) -> Result<Prepared, ApiError> {
    let engine = gateway.engine()?;
    let knowledge = gateway.shelf.get();
    if gateway.has_dataset && knowledge.is_none() {
        return Err(not_ready("the dataset index is still loading"));
    }
    let question =
        chat.turns.iter().rev().find(|t| t.role == Role::User).map(|t| t.content.clone()).unwrap_or_default();
    let top_k = chat.top_k.unwrap_or(gateway.top_k).min(64) as usize;
    let mut latency = Latency::default();
    let mut hits = Vec::new();
    if let Some(knowledge) = knowledge.as_ref().filter(|_| top_k > 0) {
        let knowledge = knowledge.clone();
        let text = question.clone();
        let metrics = gateway.metrics.clone();
        let span = tracing::info_span!("retrieve", top_k, passages = knowledge.index.len());
        let (found, embedding, retrieval) = tokio::task::spawn_blocking(move || {
            let _entered = span.enter();
            let t0 = Instant::now();
            let vector = tracing::info_span!("embed").in_scope(|| knowledge.embedder.embed_one(&text))?;
            let embedding = t0.elapsed();
            let t1 = Instant::now();
            let found = knowledge.index.search(&vector, &text, top_k);
            let retrieval = t1.elapsed();
            metrics.embedding.observe(embedding.as_secs_f64());
            metrics.retrieval.observe(retrieval.as_secs_f64());
            Ok::<_, crate::embedding::EmbedError>((found, embedding, retrieval))
        })
        .await
        .map_err(|e| internal(format!("retrieval panicked: {e}")))?
        .map_err(|e| internal(format!("embedding the question failed: {e}")))?;
        latency.embedding = embedding.as_secs_f64() * 1e3;
        latency.retrieval = retrieval.as_secs_f64() * 1e3;
        hits = found;
    }
    let info = engine.info();
    let answer_tokens = chat.sampling.max_tokens.unwrap_or(gateway.answer_tokens) as usize;
    if answer_tokens >= info.context_tokens {
        return Err(ApiError {
            code: Some("context_length_exceeded"),
            ..ApiError::invalid(
                format!(
                    "max_tokens {answer_tokens} leaves no room for the prompt in this twin's {}-token context",
                    info.context_tokens
                ),
                "max_tokens",
            )
        });
    }
    let author =
        knowledge.as_ref().map(|k| k.author.as_str()).filter(|a| !a.is_empty()).unwrap_or("the author");
    let system = gateway.system_prompt.clone().unwrap_or_else(|| default_system_prompt(author));
    let passages: Vec<&Passage> = match &knowledge {
        Some(k) => hits.iter().map(|h| k.index.passage(h.passage)).collect(),
        None => Vec::new(),
    };
    let fitted =
        fit(&system, &chat.turns, &passages, info.context_tokens - answer_tokens, &Counter(engine.as_ref()))?;
    let sources: Vec<Source> = hits
        .iter()
        .take(fitted.passages_used)
        .zip(&passages)
        .map(|(hit, passage)| Source {
            chunk_id: passage.chunk_id.clone(),
            title: passage.title.clone(),
            url: passage.url.clone(),
            score: hit.score,
            similarity: hit.dense,
            bm25: hit.lexical,
        })
        .collect();
    let mut sampling = chat.sampling.clone();
    sampling.max_tokens = Some(answer_tokens as u32);
    Ok(Prepared {
        id: format!("chatcmpl-{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..)),
        created: SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default(),
        prompt: Prompt { turns: fitted.turns, sampling, extra: chat.extra.clone() },
        sources,
        prompt_tokens: fitted.prompt_tokens,
        question,
        latency,
        started,
        knowledge,
        engine: engine.clone(),
        span: tracing::Span::current(),
    })
}

/// The span of the engine's work, a child of the request's, with its token counts once known.
fn generate_span(prepared: &Prepared) -> tracing::Span {
    tracing::info_span!(
        parent: &prepared.span,
        "generate",
        engine = prepared.engine.info().kind,
        prompt_tokens = tracing::field::Empty,
        completion_tokens = tracing::field::Empty,
    )
}

fn not_ready(message: &str) -> ApiError {
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "service_unavailable", Some("not_ready"), message)
}

fn internal(message: String) -> ApiError {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", None, message)
}

/// The HTTP error for an engine's failure.
fn engine_error(error: &EngineError) -> ApiError {
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
        EngineError::Failed(_) => {
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", Some("engine_failed"), message)
        }
    }
}

async fn whole_answer(gateway: &Arc<Gateway>, mut prepared: Prepared) -> Response {
    let prompt = std::mem::take(&mut prepared.prompt);
    let engine = prepared.engine.clone();
    let generate = generate_span(&prepared);
    let generated = engine.complete(prompt).instrument(generate.clone()).await;
    let completion = match generated {
        Ok(completion) => completion,
        Err(error) => {
            gateway.metrics.error(error.kind());
            log_answer(gateway, &prepared, "", "error", Some(error.to_string()), Usage::default());
            return engine_error(&error).into_response();
        }
    };
    prepared.latency.first_token = prepared.started.elapsed().as_secs_f64() * 1e3;
    gateway.metrics.time_to_first_token.observe(prepared.started.elapsed().as_secs_f64());
    let usage = completion.usage.unwrap_or_else(|| {
        Usage::new(prepared.prompt_tokens as u32, engine.count_tokens(&completion.text) as u32)
    });
    generate.record("prompt_tokens", i64::from(usage.prompt_tokens));
    generate.record("completion_tokens", i64::from(usage.completion_tokens));
    let body = ChatCompletion {
        id: &prepared.id,
        object: "chat.completion",
        created: prepared.created,
        model: &gateway.name,
        choices: [Choice {
            index: 0,
            message: AnswerMessage { role: "assistant", content: &completion.text },
            finish_reason: completion.finish_reason.as_str(),
        }],
        usage,
        sources: &prepared.sources,
    };
    let bytes = serde_json::to_vec(&body).expect("an answer serialises");
    log_answer(gateway, &prepared, &completion.text, completion.finish_reason.as_str(), None, usage);
    ([(header::CONTENT_TYPE, "application/json")], bytes).into_response()
}

/// Counts the tokens and writes the prompt-log line of a finished request.
fn log_answer(
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
    let info = prepared.engine.info();
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
        lineage: Lineage {
            dataset: prepared.knowledge.as_ref().map(|k| k.dataset.clone()),
            revision: prepared.knowledge.as_ref().map(|k| k.revision.clone()),
            engine: info.kind.to_string(),
            base_model: info.model.clone(),
            adapter: info.adapter.clone(),
        },
    });
}

/// A chunk of the answer `prepared` with no choice yet.
fn chunk<'a>(gateway: &'a Gateway, prepared: &'a Prepared) -> ChatChunk<'a> {
    ChatChunk {
        id: &prepared.id,
        object: "chat.completion.chunk",
        created: prepared.created,
        model: &gateway.name,
        choices: Vec::new(),
        usage: None,
        sources: None,
    }
}

/// One event of a streamed answer, with its one choice.
fn chunk_event(
    gateway: &Gateway,
    prepared: &Prepared,
    delta: Delta,
    finish_reason: Option<&str>,
    usage: Option<Option<Usage>>,
    sources: Option<&[Source]>,
) -> Bytes {
    event(&ChatChunk {
        choices: vec![ChunkChoice { index: 0, delta, finish_reason }],
        usage,
        sources,
        ..chunk(gateway, prepared)
    })
}

fn event(chunk: &impl serde::Serialize) -> Bytes {
    let mut line = b"data: ".to_vec();
    serde_json::to_writer(&mut line, chunk).expect("a chunk serialises");
    line.extend_from_slice(b"\n\n");
    Bytes::from(line)
}

async fn stream_answer(
    gateway: Arc<Gateway>,
    mut prepared: Prepared,
    include_usage: bool,
    permit: InFlight,
) -> Response {
    let prompt = std::mem::take(&mut prepared.prompt);
    let generate = generate_span(&prepared);
    let pieces = match prepared.engine.stream(prompt).instrument(generate.clone()).await {
        Ok(pieces) => pieces,
        Err(error) => {
            gateway.metrics.error(error.kind());
            log_answer(&gateway, &prepared, "", "error", Some(error.to_string()), Usage::default());
            return engine_error(&error).into_response();
        }
    };
    let delta = Delta { role: Some("assistant"), content: Some("") };
    let first =
        chunk_event(&gateway, &prepared, delta, None, include_usage.then_some(None), Some(&prepared.sources));
    let gateway_for_stream = gateway.clone();
    let body =
        async_stream_events(gateway_for_stream, prepared, pieces, include_usage, permit, first, generate);
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .header("x-accel-buffering", "no")
        .body(Body::from_stream(body))
        .expect("a valid response")
}

/// The events of a streamed answer: the first (with the sources), one per piece, the last with
/// the finish reason, the usage chunk when asked for, then `[DONE]`; or an error event when the
/// engine fails mid-answer (and no `[DONE]`, so that clients see the answer is incomplete).
fn async_stream_events(
    gateway: Arc<Gateway>,
    prepared: Prepared,
    pieces: super::engine::PieceStream,
    include_usage: bool,
    permit: InFlight,
    first: Bytes,
    generate: tracing::Span,
) -> impl futures::Stream<Item = Result<Bytes, std::convert::Infallible>> + Send {
    struct State {
        gateway: Arc<Gateway>,
        prepared: Prepared,
        pieces: Option<super::engine::PieceStream>,
        answer: String,
        first_token_seen: bool,
        include_usage: bool,
        generate: tracing::Span,
        _permit: InFlight,
    }
    // A client that hangs up mid-answer drops the stream: the engine stops (its receiver is
    // gone), and the answer so far is logged as cut short.
    impl Drop for State {
        fn drop(&mut self) {
            if self.pieces.take().is_some() {
                self.gateway.metrics.error("client_disconnected");
                let usage = Usage::new(
                    self.prepared.prompt_tokens as u32,
                    self.prepared.engine.count_tokens(&self.answer) as u32,
                );
                let error = Some("the client closed the connection mid-answer".to_string());
                finish(&self.gateway, &self.prepared, &self.answer, FinishReason::Stop, error, usage);
            }
        }
    }
    let state = State {
        gateway,
        prepared,
        pieces: Some(pieces),
        answer: String::new(),
        first_token_seen: false,
        include_usage,
        generate,
        _permit: permit,
    };
    let rest = futures::stream::unfold(state, |mut state| async move {
        let pieces = state.pieces.as_mut()?;
        let next = pieces.next().await;
        let gateway = state.gateway.clone();
        let usage_field = state.include_usage.then_some(None);
        let prepared = &state.prepared;
        let make = |delta: Delta, finish: Option<&str>| {
            chunk_event(&gateway, prepared, delta, finish, usage_field, None)
        };
        match next {
            Some(Ok(Piece::Text(text))) => {
                let bytes = make(Delta { role: None, content: Some(&text) }, None);
                if !state.first_token_seen {
                    state.first_token_seen = true;
                    let elapsed = state.prepared.started.elapsed();
                    state.prepared.latency.first_token = elapsed.as_secs_f64() * 1e3;
                    gateway.metrics.time_to_first_token.observe(elapsed.as_secs_f64());
                }
                state.answer.push_str(&text);
                Some((Ok(bytes), state))
            }
            Some(Ok(Piece::Done { finish_reason, usage })) => {
                let usage = usage.unwrap_or_else(|| {
                    Usage::new(
                        state.prepared.prompt_tokens as u32,
                        state.prepared.engine.count_tokens(&state.answer) as u32,
                    )
                });
                let mut bytes =
                    make(Delta { role: None, content: None }, Some(finish_reason.as_str())).to_vec();
                if state.include_usage {
                    bytes.extend_from_slice(&event(&ChatChunk {
                        choices: Vec::new(),
                        usage: Some(Some(usage)),
                        ..chunk(&gateway, &state.prepared)
                    }));
                }
                bytes.extend_from_slice(b"data: [DONE]\n\n");
                state.generate.record("prompt_tokens", i64::from(usage.prompt_tokens));
                state.generate.record("completion_tokens", i64::from(usage.completion_tokens));
                finish(&gateway, &state.prepared, &state.answer, finish_reason, None, usage);
                state.pieces = None;
                Some((Ok(Bytes::from(bytes)), state))
            }
            Some(Err(error)) => {
                gateway.metrics.error(error.kind());
                let api_error = engine_error(&error);
                let bytes = event(&api_error.body());
                let usage = Usage::new(
                    state.prepared.prompt_tokens as u32,
                    state.prepared.engine.count_tokens(&state.answer) as u32,
                );
                finish(
                    &gateway,
                    &state.prepared,
                    &state.answer,
                    FinishReason::Stop,
                    Some(error.to_string()),
                    usage,
                );
                state.pieces = None;
                Some((Ok(bytes), state))
            }
            None => {
                // The engine's stream ended without its last piece: say so as an error event.
                let error = EngineError::Failed("the engine ended the answer without finishing it".into());
                gateway.metrics.error(error.kind());
                let bytes = event(&engine_error(&error).body());
                state.pieces = None;
                Some((Ok(bytes), state))
            }
        }
    });
    futures::stream::iter([Ok(first)]).chain(rest)
}

fn finish(
    gateway: &Gateway,
    prepared: &Prepared,
    answer: &str,
    reason: FinishReason,
    error: Option<String>,
    usage: Usage,
) {
    gateway
        .metrics
        .duration
        .get_or_create(&RouteLabels { route: "/v1/chat/completions".into() })
        .observe(prepared.started.elapsed().as_secs_f64());
    let reason = if error.is_some() { "error" } else { reason.as_str() };
    log_answer(gateway, prepared, answer, reason, error, usage);
}

/// `input` of an embeddings request.
#[derive(serde::Deserialize)]
#[serde(untagged)]
enum EmbeddingInput {
    One(String),
    Many(Vec<String>),
}

#[derive(serde::Deserialize)]
struct EmbeddingsRequest {
    input: Option<EmbeddingInput>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    encoding_format: Option<String>,
    #[serde(default)]
    dimensions: Option<usize>,
}

/// Most inputs in one embeddings request (as OpenAI's API allows).
const MAX_EMBEDDING_INPUTS: usize = 2048;

async fn embeddings(State(gateway): State<Arc<Gateway>>, headers: HeaderMap, body: Body) -> Response {
    let permit = match admit(&gateway) {
        Ok(permit) => InFlight::new(gateway.metrics.clone(), permit),
        Err(error) => return error.into_response(),
    };
    let result = async {
        let request: EmbeddingsRequest = read_json(&gateway, &headers, body).await?;
        let Some(knowledge) = gateway.shelf.get() else {
            return Err(if gateway.has_dataset {
                not_ready("the dataset's embedding model is still loading")
            } else {
                ApiError::new(
                    StatusCode::NOT_FOUND,
                    "invalid_request_error",
                    Some("model_not_found"),
                    "this twin has no dataset, so no embedding model",
                )
            });
        };
        if let Some(model) = request.model.as_deref()
            && model != gateway.name
            && model != knowledge.embedding_model
            && !knowledge.embedding_model.ends_with(&format!("/{model}"))
        {
            return Err(ApiError {
                param: Some("model".into()),
                ..ApiError::new(
                    StatusCode::NOT_FOUND,
                    "invalid_request_error",
                    Some("model_not_found"),
                    format!(
                        "the model {model:?} does not exist here: embeddings come from {} (ask for {:?})",
                        knowledge.embedding_model, gateway.name
                    ),
                )
            });
        }
        let texts = match request.input {
            None => return Err(ApiError::invalid("input is required", "input")),
            Some(EmbeddingInput::One(text)) => vec![text],
            Some(EmbeddingInput::Many(texts)) => texts,
        };
        if texts.is_empty() || texts.len() > MAX_EMBEDDING_INPUTS {
            return Err(ApiError::invalid(
                format!("input holds 1 to {MAX_EMBEDDING_INPUTS} strings"),
                "input",
            ));
        }
        if let Some(i) = texts.iter().position(|t| t.is_empty()) {
            return Err(ApiError::invalid(format!("input[{i}] is empty"), "input"));
        }
        if request.dimensions.is_some_and(|d| d != knowledge.embedder.dimension) {
            return Err(ApiError::invalid(
                format!("this model writes {} dimensions only", knowledge.embedder.dimension),
                "dimensions",
            ));
        }
        let base64 = match request.encoding_format.as_deref() {
            None | Some("float") => false,
            Some("base64") => true,
            Some(other) => {
                return Err(ApiError::invalid(
                    format!("encoding_format {other:?} is not float or base64"),
                    "encoding_format",
                ));
            }
        };
        let embedder = knowledge.embedder.clone();
        let (vectors, tokens) = tokio::task::spawn_blocking(move || {
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            let tokens: usize = embedder
                .tokenizer_for_counting()
                .encode_batch(refs.clone(), true)
                .map(|e| e.iter().map(|e| e.len().min(embedder.max_seq_length)).sum())
                .unwrap_or(0);
            embedder.embed(&refs, 32).map(|v| (v, tokens))
        })
        .await
        .map_err(|e| internal(format!("embedding panicked: {e}")))?
        .map_err(|e| internal(e.to_string()))?;
        let data: Vec<Value> = vectors
            .iter()
            .enumerate()
            .map(|(index, vector)| {
                let embedding = if base64 {
                    use base64::Engine as _;
                    let bytes: Vec<u8> = vector.iter().flat_map(|v| v.to_le_bytes()).collect();
                    Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
                } else {
                    json!(vector)
                };
                json!({"object": "embedding", "index": index, "embedding": embedding})
            })
            .collect();
        Ok(json!({
            "object": "list",
            "data": data,
            "model": knowledge.embedding_model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }))
    }
    .await;
    drop(permit);
    match result {
        Ok(body) => axum::Json(body).into_response(),
        Err(error) => refused(&gateway, error),
    }
}
