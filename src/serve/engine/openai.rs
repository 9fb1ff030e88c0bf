//! The `openai` engine: any OpenAI-compatible upstream. Pooled connections; streamed answers
//! passed on as they arrive; separate connect, first-token and between-token timeouts; a retry
//! only before the first byte of an answer, so that nothing is ever said twice.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use backon::Retryable;
use std::sync::Arc;

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use serde_json::{Map, Value, json};
use tokenizers::Tokenizer;
use tokio::sync::OnceCell;

use super::{Completion, Engine, EngineError, EngineInfo, FinishReason, Piece, PieceStream, Prompt};
use crate::net::sse::{EventStream, SseError, innermost, truncate};
use crate::serve::api::Usage;

/// Where the upstream is and how long to wait for it.
#[derive(Debug, Clone)]
pub struct OpenAiOptions {
    /// Base URL of the API, e.g. `http://vllm:8000/v1`.
    pub base_url: String,
    /// The model to ask for; unset means the first one the upstream lists.
    pub model: Option<String>,
    /// The base model and adapter the upstream runs, for the lineage; unset: the model's name.
    pub lineage: (Option<String>, Option<String>),
    /// Bearer token for the upstream.
    pub api_key: Option<String>,
    /// Tokens of context of the upstream's model.
    pub context_tokens: usize,
    /// Time to open a connection.
    pub connect_timeout: Duration,
    /// Time until the first token of a streamed answer.
    pub first_token_timeout: Duration,
    /// Longest silence between two parts of a streamed answer.
    pub between_tokens_timeout: Duration,
    /// Time for a whole answer that is not streamed.
    pub request_timeout: Duration,
    /// Tries before the first byte of an answer (connection refused, 429, 502, 503).
    pub attempts: u32,
    /// How long an upstream that is not up (an engine waking from zero replicas) is waited
    /// for, tried every second; zero: not at all.
    pub wake_wait: Duration,
    /// Largest answer read, in bytes.
    pub max_response_bytes: usize,
}

/// The engine: a handle on the shared upstream client.
pub struct OpenAiEngine {
    upstream: Arc<Upstream>,
    tokenizer: Option<Tokenizer>,
    info: EngineInfo,
}

/// The pooled client and what it needs, shared by every request's future.
struct Upstream {
    client: reqwest::Client,
    options: OpenAiOptions,
    completions_url: String,
    model: OnceCell<String>,
}

impl OpenAiEngine {
    /// A pooled client for the upstream; `tokenizer` counts tokens as its model does (else 1
    /// token per 3 bytes, which over-counts English and so errs on the side of fitting).
    pub fn new(options: OpenAiOptions, tokenizer: Option<Tokenizer>) -> Result<Self, String> {
        let base = reqwest::Url::parse(&options.base_url)
            .map_err(|e| format!("--upstream {:?} is not a URL: {e}", options.base_url))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(format!("--upstream {base} must be http:// or https://"));
        }
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .connect_timeout(options.connect_timeout)
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(1024)
            .tcp_nodelay(true)
            .no_proxy()
            .user_agent(concat!("twin-operator/", env!("CARGO_PKG_VERSION"), " (twin serve)"))
            .build()
            .map_err(|e| format!("cannot build the upstream client: {e}"))?;
        let base_url = options.base_url.trim_end_matches('/').to_string();
        let model = OnceCell::new();
        if let Some(name) = &options.model {
            model.set(name.clone()).expect("a new cell is empty");
        }
        let info = EngineInfo {
            kind: "openai",
            model: options
                .lineage
                .0
                .clone()
                .or_else(|| options.model.clone())
                .unwrap_or_else(|| base_url.clone()),
            adapter: options.lineage.1.clone(),
            context_tokens: options.context_tokens,
        };
        let upstream = Arc::new(Upstream {
            client,
            completions_url: format!("{base_url}/chat/completions"),
            options,
            model,
        });
        Ok(Self { upstream, tokenizer, info })
    }
}

impl Upstream {
    /// The upstream's model: the configured one, else the first its `/models` lists (asked once).
    async fn model(&self) -> Result<String, EngineError> {
        let url = format!("{}/models", self.options.base_url.trim_end_matches('/'));
        self.model
            .get_or_try_init(|| async {
                let response = self
                    .authorised(self.client.get(&url))
                    .timeout(self.options.first_token_timeout)
                    .send()
                    .await
                    .map_err(|e| transport_error(&url, e))?;
                let status = response.status();
                let body = response.bytes().await.map_err(|e| transport_error(&url, e))?;
                if !status.is_success() {
                    return Err(status_error(status.as_u16(), &body));
                }
                let listed: Value = serde_json::from_slice(&body).map_err(|_| {
                    EngineError::BadResponse(format!("{url} did not answer with a model list"))
                })?;
                listed["data"][0]["id"].as_str().map(str::to_string).ok_or_else(|| {
                    EngineError::BadResponse(format!("{url} lists no model: set --upstream-model"))
                })
            })
            .await
            .cloned()
    }

    fn authorised(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.options.api_key {
            Some(key) => request.bearer_auth(key),
            None => request,
        }
    }

    fn body(&self, model: String, prompt: &Prompt, stream: bool) -> Vec<u8> {
        let mut body: Map<String, Value> = prompt.extra.clone();
        body.insert("model".into(), Value::String(model));
        body.insert("messages".into(), serde_json::to_value(&prompt.turns).expect("turns serialise"));
        body.insert("stream".into(), Value::Bool(stream));
        if stream {
            body.insert("stream_options".into(), json!({"include_usage": true}));
        }
        let sampling = &prompt.sampling;
        if let Some(t) = sampling.temperature {
            body.insert("temperature".into(), json!(t));
        }
        if let Some(p) = sampling.top_p {
            body.insert("top_p".into(), json!(p));
        }
        if let Some(m) = sampling.max_tokens {
            body.insert("max_tokens".into(), json!(m));
        }
        if !sampling.stop.is_empty() {
            body.insert("stop".into(), json!(sampling.stop));
        }
        if let Some(s) = sampling.seed {
            body.insert("seed".into(), json!(s));
        }
        serde_json::to_vec(&body).expect("a JSON map serialises")
    }

    /// Sends the request until the upstream answers with a success status, retrying only what
    /// failed before any answer began; an upstream that is down is waited for up to the wake
    /// wait (an engine starting from zero replicas), then it is a 503 to retry later. Returns
    /// the response and whether the engine had to be waited for.
    async fn send(
        &self,
        body: Vec<u8>,
        header_timeout: Duration,
    ) -> Result<(reqwest::Response, bool), EngineError> {
        let url = &self.completions_url;
        let attempt = || async {
            let request = self
                .authorised(self.client.post(url))
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone());
            let response = match tokio::time::timeout(header_timeout, request.send()).await {
                Err(_) => {
                    return Err(EngineError::Timeout(format!(
                        "the upstream {url} did not answer within {header_timeout:?}"
                    )));
                }
                Ok(result) => result.map_err(|e| transport_error(url, e))?,
            };
            let status = response.status();
            if status.is_success() {
                return Ok(response);
            }
            let body =
                read_limited(response, self.options.max_response_bytes, self.options.between_tokens_timeout)
                    .await
                    .unwrap_or_default();
            Err(status_error(status.as_u16(), &body))
        };
        let tries = || {
            attempt
                .retry(
                    crate::backoff::request_retries(self.options.attempts)
                        .with_min_delay(Duration::from_millis(50)),
                )
                .when(|e: &EngineError| matches!(e, EngineError::Unavailable(_) | EngineError::Busy(_)))
        };
        let wait = self.options.wake_wait;
        let started = Instant::now();
        loop {
            match tries().await {
                Err(EngineError::Unavailable(why)) if !wait.is_zero() => {
                    if started.elapsed() >= wait {
                        return Err(EngineError::Starting(format!(
                            "the engine is not up after {wait:?} (it starts from zero replicas when idle; a cold start takes minutes): retry later ({why})"
                        )));
                    }
                    tokio::time::sleep(Duration::from_secs(1).min(wait.saturating_sub(started.elapsed())))
                        .await;
                }
                Ok(response) => return Ok((response, started.elapsed() >= Duration::from_secs(1))),
                Err(error) => return Err(error),
            }
        }
    }

    /// A whole answer, asked for streamed: an upstream that accepts the request and never
    /// answers is a 504 at the first-token timeout, as a streamed request's is, and the rest of
    /// the answer is bounded by the whole-request timeout.
    async fn complete(&self, prompt: Prompt) -> Result<Completion, EngineError> {
        // Waiting for an engine to wake is not the answer's time.
        let budget = self.options.request_timeout + self.options.wake_wait;
        let deadline = tokio::time::Instant::now() + budget;
        let timed_out = || EngineError::Timeout(format!("the answer was not finished within {budget:?}"));
        let pieces =
            tokio::time::timeout_at(deadline, self.stream(prompt)).await.map_err(|_| timed_out())??;
        super::collect(pieces, Some(deadline), budget).await
    }

    async fn stream(&self, prompt: Prompt) -> Result<PieceStream, EngineError> {
        let model = self.model().await?;
        let mut started = Instant::now();
        let first_token = self.options.first_token_timeout;
        let (response, waited) = self.send(self.body(model, &prompt, true), first_token).await?;
        if waited {
            // The first token is timed from when the woken engine took the request.
            started = Instant::now();
        }
        let mut events = SseReader::new(response, self.options.max_response_bytes);
        // The first piece is awaited here, so that an upstream that never starts answering is
        // a 504, not a stream that opens and then fails.
        let left = first_token.saturating_sub(started.elapsed());
        let first = match tokio::time::timeout(left, events.next()).await {
            Err(_) => {
                return Err(EngineError::Timeout(format!(
                    "the upstream wrote no token within {first_token:?}"
                )));
            }
            Ok(first) => first?,
        };
        if matches!(first, Piece::Done { .. }) {
            return Ok(futures::stream::iter([Ok(first)]).boxed());
        }
        let between = self.options.between_tokens_timeout;
        let rest = futures::stream::unfold(Some(events), move |events| async move {
            let mut events = events?;
            match tokio::time::timeout(between, events.next()).await {
                Err(_) => Some((
                    Err(EngineError::Timeout(format!("the upstream went silent for {between:?} mid-answer"))),
                    None,
                )),
                Ok(Ok(piece @ Piece::Done { .. })) => Some((Ok(piece), None)),
                Ok(Ok(piece)) => Some((Ok(piece), Some(events))),
                Ok(Err(error)) => Some((Err(error), None)),
            }
        });
        Ok(futures::stream::iter([Ok(first)]).chain(rest).boxed())
    }
}

impl Engine for OpenAiEngine {
    fn info(&self) -> &EngineInfo {
        &self.info
    }

    fn count_tokens(&self, text: &str) -> usize {
        match &self.tokenizer {
            Some(tokenizer) => {
                tokenizer.encode_fast(text, false).map(|e| e.len()).unwrap_or(text.len().div_ceil(3))
            }
            None => text.len().div_ceil(3),
        }
    }

    fn complete(&self, prompt: Prompt) -> BoxFuture<'static, Result<Completion, EngineError>> {
        let upstream = self.upstream.clone();
        async move { upstream.complete(prompt).await }.boxed()
    }

    fn stream(&self, prompt: Prompt) -> BoxFuture<'static, Result<PieceStream, EngineError>> {
        let upstream = self.upstream.clone();
        async move { upstream.stream(prompt).await }.boxed()
    }
}

/// Reads a server-sent-event answer, one piece at a time.
struct SseReader {
    events: EventStream,
    pending: VecDeque<Piece>,
    finish_reason: Option<FinishReason>,
    usage: Option<Usage>,
}

impl SseReader {
    fn new(response: reqwest::Response, limit: usize) -> Self {
        Self {
            events: EventStream::new(response, limit),
            pending: VecDeque::new(),
            finish_reason: None,
            usage: None,
        }
    }

    /// The next piece: text, or `Done` at `data: [DONE]`. The end of the body before that is an
    /// error: the upstream cut the answer.
    async fn next(&mut self) -> Result<Piece, EngineError> {
        loop {
            if let Some(piece) = self.pending.pop_front() {
                return Ok(piece);
            }
            match self.events.next().await {
                Ok(Some(data)) => self.read_event(&data)?,
                Ok(None) => {
                    return Err(EngineError::Unavailable(
                        "the upstream closed the stream before the answer was finished".into(),
                    ));
                }
                Err(error @ SseError::Broken(_)) => {
                    return Err(EngineError::Unavailable(format!("the upstream's {error}")));
                }
                Err(error) => return Err(EngineError::BadResponse(format!("the upstream's {error}"))),
            }
        }
    }

    fn read_event(&mut self, data: &str) -> Result<(), EngineError> {
        if data.trim() == "[DONE]" {
            self.pending.push_back(Piece::Done {
                finish_reason: self.finish_reason.unwrap_or(FinishReason::Stop),
                usage: self.usage,
            });
            return Ok(());
        }
        let chunk: Value = serde_json::from_str(data).map_err(|_| {
            EngineError::BadResponse(format!(
                "the upstream sent an event that is not JSON: {:?}",
                truncate(data)
            ))
        })?;
        if let Some(error) = chunk.get("error") {
            let message = error["message"].as_str().unwrap_or("no message").to_string();
            return Err(EngineError::Unavailable(format!("the upstream failed mid-answer: {message}")));
        }
        if !chunk["usage"].is_null() {
            self.usage = serde_json::from_value(chunk["usage"].clone()).ok();
        }
        let choices = chunk["choices"].as_array().ok_or_else(|| {
            EngineError::BadResponse(format!("the upstream sent a chunk without choices: {}", truncate(data)))
        })?;
        if let Some(choice) = choices.first() {
            if let Some(content) = choice["delta"]["content"].as_str()
                && !content.is_empty()
            {
                self.pending.push_back(Piece::Text(content.to_string()));
            }
            if let Some(reason) = choice["finish_reason"].as_str() {
                self.finish_reason = Some(FinishReason::parse(reason));
            }
        }
        Ok(())
    }
}

/// Reads a body up to `limit` bytes, each part within `timeout` of the last.
async fn read_limited(
    mut response: reqwest::Response,
    limit: usize,
    timeout: Duration,
) -> Result<Vec<u8>, EngineError> {
    let mut body = Vec::new();
    loop {
        let chunk = match tokio::time::timeout(timeout, response.chunk()).await {
            Err(_) => {
                return Err(EngineError::Timeout(format!("the upstream's answer stalled for {timeout:?}")));
            }
            Ok(chunk) => chunk.map_err(|e| {
                EngineError::Unavailable(format!("the upstream's answer broke off: {}", innermost(&e)))
            })?,
        };
        let Some(chunk) = chunk else { return Ok(body) };
        if body.len() + chunk.len() > limit {
            return Err(EngineError::BadResponse(format!("the upstream's answer is over {limit} bytes")));
        }
        body.extend_from_slice(&chunk);
    }
}

/// An error status from the upstream, with its own message when it sent one.
fn status_error(status: u16, body: &[u8]) -> EngineError {
    let message = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| {
            v["error"]["message"]
                .as_str()
                .or(v["message"].as_str())
                .or(v["detail"].as_str())
                .map(str::to_string)
        })
        .unwrap_or_else(|| truncate(&String::from_utf8_lossy(body)).to_string());
    let said = format!("the upstream answered {status}: {message}");
    match status {
        429 => EngineError::Busy(said),
        401 | 403 => EngineError::Unavailable(format!("{said} (check the gateway's upstream API key)")),
        504 => EngineError::Timeout(said),
        400..=499 => EngineError::Rejected { status, message },
        _ => EngineError::Unavailable(said),
    }
}

fn transport_error(url: &str, error: reqwest::Error) -> EngineError {
    if error.is_timeout() {
        EngineError::Timeout(format!("the upstream {url} timed out: {}", innermost(&error)))
    } else {
        EngineError::Unavailable(format!("cannot reach the upstream {url}: {}", innermost(&error)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_statuses_map_to_what_the_client_should_do() {
        assert!(
            matches!(status_error(400, br#"{"error":{"message":"too long"}}"#), EngineError::Rejected { status: 400, ref message } if message == "too long")
        );
        assert!(matches!(status_error(429, b""), EngineError::Busy(_)));
        assert!(matches!(status_error(401, b""), EngineError::Unavailable(_)));
        assert!(matches!(status_error(503, b"down"), EngineError::Unavailable(_)));
        assert!(matches!(status_error(504, b""), EngineError::Timeout(_)));
    }
}
