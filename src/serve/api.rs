//! The OpenAI chat-completions wire format as the gateway reads and writes it: requests
//! (validated, with what cannot be honoured refused), answers and stream chunks (with the
//! twin's extra `sources` field), and OpenAI-style error objects.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A chat-completions request.
#[derive(Debug, Clone, Deserialize)]
pub struct ChatRequest {
    /// The model asked for: the twin's name (or unset).
    #[serde(default)]
    pub model: Option<String>,
    /// The conversation.
    #[serde(default)]
    pub messages: Option<Vec<Message>>,
    /// Server-sent events instead of one answer.
    #[serde(default)]
    pub stream: Option<bool>,
    /// `{"include_usage": true}`: a last chunk with the token counts.
    #[serde(default)]
    pub stream_options: Option<StreamOptions>,
    /// Sampling temperature (0 to 2).
    #[serde(default)]
    pub temperature: Option<f32>,
    /// Nucleus sampling (0 to 1].
    #[serde(default)]
    pub top_p: Option<f32>,
    /// Most tokens to generate (the older name).
    #[serde(default)]
    pub max_tokens: Option<u32>,
    /// Most tokens to generate.
    #[serde(default)]
    pub max_completion_tokens: Option<u32>,
    /// Up to 4 sequences that end the answer.
    #[serde(default)]
    pub stop: Option<Stop>,
    /// Seed of the sampler, for repeatable answers.
    #[serde(default)]
    pub seed: Option<i64>,
    /// Answers per request: only 1 is served.
    #[serde(default)]
    pub n: Option<u32>,
    /// The twin's retrieval settings for this request.
    #[serde(default)]
    pub rag: Option<RagOptions>,
    /// Any other field, passed on to an upstream engine as sent (penalties, `user`, ...);
    /// `tools` and friends are refused.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `stream_options`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct StreamOptions {
    /// Send a last chunk with `usage`.
    #[serde(default)]
    pub include_usage: bool,
}

/// `rag` (a twin extension): `{"topK": 0}` turns retrieval off for the request.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RagOptions {
    /// Passages to retrieve.
    #[serde(default)]
    pub top_k: Option<u32>,
}

/// `stop`: one string or a list.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Stop {
    /// One sequence.
    One(String),
    /// Several.
    Many(Vec<String>),
}

/// One turn of the conversation.
#[derive(Debug, Clone, Deserialize)]
pub struct Message {
    /// `system`, `developer`, `user` or `assistant`.
    pub role: String,
    /// Text, or a list of parts of which the text ones are read.
    #[serde(default)]
    pub content: Option<Content>,
}

/// A message's content.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Content {
    /// Plain text.
    Text(String),
    /// `[{"type": "text", "text": ...}, ...]`.
    Parts(Vec<Value>),
}

/// The roles a conversation may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Instructions (`developer` is read as `system`).
    System,
    /// The person asking.
    User,
    /// The twin.
    Assistant,
}

/// A validated turn.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Turn {
    /// Who speaks.
    pub role: Role,
    /// What they say.
    pub content: String,
}

/// Sampling settings, validated.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sampling {
    /// 0 to 2; unset is the engine's default.
    pub temperature: Option<f32>,
    /// (0, 1].
    pub top_p: Option<f32>,
    /// Most tokens to generate.
    pub max_tokens: Option<u32>,
    /// Sequences that end the answer.
    pub stop: Vec<String>,
    /// Sampler seed.
    pub seed: Option<i64>,
}

/// A request the gateway will serve.
#[derive(Debug, Clone)]
pub struct ValidChat {
    /// The conversation, in order.
    pub turns: Vec<Turn>,
    /// Sampling.
    pub sampling: Sampling,
    /// Streamed answer.
    pub stream: bool,
    /// Streamed answer with a last usage chunk.
    pub include_usage: bool,
    /// Passages to retrieve; `None` is the gateway's default.
    pub top_k: Option<u32>,
    /// Fields passed on to an upstream engine.
    pub extra: Map<String, Value>,
}

/// Fields that ask for what a twin does not do; refused rather than ignored.
const UNSUPPORTED: &[(&str, &str)] = &[
    ("tools", "tool calls are not supported by this twin"),
    ("tool_choice", "tool calls are not supported by this twin"),
    ("functions", "function calls are not supported by this twin"),
    ("function_call", "function calls are not supported by this twin"),
    ("audio", "audio output is not supported by this twin"),
    ("modalities", "only text output is supported by this twin"),
    ("response_format", "structured output (response_format) is not supported by this twin"),
    ("logprobs", "logprobs are not supported by this twin"),
    ("top_logprobs", "logprobs are not supported by this twin"),
];

impl ChatRequest {
    /// Checks the request and turns it into what the gateway serves.
    pub fn validate(self) -> Result<ValidChat, ApiError> {
        if let Some(n) = self.n
            && n != 1
        {
            return Err(ApiError::invalid(format!("n = {n}: this twin writes one answer per request"), "n"));
        }
        for (field, why) in UNSUPPORTED {
            if self.extra.get(*field).is_some_and(|v| !v.is_null() && v != &Value::Bool(false)) {
                return Err(ApiError::invalid(*why, *field));
            }
        }
        let messages = self.messages.ok_or_else(|| ApiError::invalid("messages is required", "messages"))?;
        if messages.is_empty() {
            return Err(ApiError::invalid("messages must hold at least one message", "messages"));
        }
        let mut turns = Vec::with_capacity(messages.len());
        for (i, message) in messages.into_iter().enumerate() {
            let param = format!("messages[{i}]");
            let role = match message.role.as_str() {
                "system" | "developer" => Role::System,
                "user" => Role::User,
                "assistant" => Role::Assistant,
                other => {
                    return Err(ApiError::invalid(
                        format!("{param}.role {other:?} is not one of system, developer, user, assistant"),
                        format!("{param}.role"),
                    ));
                }
            };
            let content = match message.content {
                Some(Content::Text(text)) => text,
                Some(Content::Parts(parts)) => text_of_parts(&parts, &param)?,
                None => String::new(),
            };
            turns.push(Turn { role, content });
        }
        match turns.iter().rposition(|t| t.role == Role::User) {
            None => return Err(ApiError::invalid("messages hold no user message", "messages")),
            Some(i) if turns[i].content.trim().is_empty() => {
                return Err(ApiError::invalid(
                    format!("messages[{i}] (the last user message) is empty"),
                    format!("messages[{i}].content"),
                ));
            }
            Some(_) => {}
        }
        if let Some(t) = self.temperature
            && !(0.0..=2.0).contains(&t)
        {
            return Err(ApiError::invalid(format!("temperature {t} is not between 0 and 2"), "temperature"));
        }
        if let Some(p) = self.top_p
            && !(p > 0.0 && p <= 1.0)
        {
            return Err(ApiError::invalid(format!("top_p {p} is not in (0, 1]"), "top_p"));
        }
        let max_tokens = self.max_completion_tokens.or(self.max_tokens);
        if max_tokens == Some(0) {
            return Err(ApiError::invalid("max_tokens must be at least 1", "max_tokens"));
        }
        let stop = match self.stop {
            None => Vec::new(),
            Some(Stop::One(s)) => vec![s],
            Some(Stop::Many(list)) => list,
        };
        if stop.len() > 4 || stop.iter().any(String::is_empty) {
            return Err(ApiError::invalid("stop takes up to 4 non-empty sequences", "stop"));
        }
        let stream = self.stream.unwrap_or(false);
        let mut extra = self.extra;
        extra.remove("stream_options");
        Ok(ValidChat {
            turns,
            sampling: Sampling {
                temperature: self.temperature,
                top_p: self.top_p,
                max_tokens,
                stop,
                seed: self.seed,
            },
            stream,
            include_usage: stream && self.stream_options.is_some_and(|o| o.include_usage),
            top_k: self.rag.and_then(|r| r.top_k),
            extra,
        })
    }
}

fn text_of_parts(parts: &[Value], param: &str) -> Result<String, ApiError> {
    let mut text = String::new();
    for (j, part) in parts.iter().enumerate() {
        match (part["type"].as_str(), part["text"].as_str()) {
            (Some("text"), Some(t)) => {
                if !text.is_empty() {
                    text.push('\n');
                }
                text.push_str(t);
            }
            (kind, _) => {
                return Err(ApiError::invalid(
                    format!(
                        "{param}.content[{j}]: only text parts are supported, not {}",
                        kind.unwrap_or("an untyped part")
                    ),
                    format!("{param}.content[{j}]"),
                ));
            }
        }
    }
    Ok(text)
}

/// A passage an answer drew on, as the `sources` field lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Source {
    /// The chunk's id in the dataset revision.
    pub chunk_id: String,
    /// The document's title.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Where the document was published.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The fused retrieval score (reciprocal rank fusion of the dense and BM25 rankings).
    pub score: f32,
    /// Cosine similarity with the question, when the dense ranking found the passage.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub similarity: Option<f32>,
    /// BM25 score, when the lexical ranking found the passage.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bm25: Option<f32>,
}

/// What answered: the dataset revision, the model and the adapter (a twin extension of every
/// answer, and part of each prompt-log line).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct Lineage {
    /// The dataset's name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dataset: Option<String>,
    /// The revision served.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// The engine's kind.
    pub engine: String,
    pub base_model: String,
    /// The LoRA adapter.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub adapter: Option<String>,
    /// The dataset revision the adapter was trained on (retrieval may use a newer one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub adapter_revision: Option<String>,
}

/// Token counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    /// Tokens of the prompt the engine read (system prompt and passages included).
    pub prompt_tokens: u32,
    /// Tokens written.
    pub completion_tokens: u32,
    /// The sum.
    pub total_tokens: u32,
}

impl Usage {
    /// Counts with their total.
    pub fn new(prompt_tokens: u32, completion_tokens: u32) -> Self {
        Self { prompt_tokens, completion_tokens, total_tokens: prompt_tokens + completion_tokens }
    }
}

/// A non-streamed answer.
#[derive(Debug, Serialize)]
pub struct ChatCompletion<'a> {
    /// `chatcmpl-…`.
    pub id: &'a str,
    /// `chat.completion`.
    pub object: &'static str,
    /// Unix seconds.
    pub created: u64,
    /// The twin's name.
    pub model: &'a str,
    /// One choice.
    pub choices: [Choice<'a>; 1],
    /// Token counts.
    pub usage: Usage,
    /// The passages retrieved for the answer.
    pub sources: &'a [Source],
    /// What answered.
    pub lineage: &'a Lineage,
}

/// The one choice of an answer.
#[derive(Debug, Serialize)]
pub struct Choice<'a> {
    /// 0.
    pub index: u32,
    /// The answer.
    pub message: AnswerMessage<'a>,
    /// `stop` or `length`.
    pub finish_reason: &'a str,
}

/// The answer's message.
#[derive(Debug, Serialize)]
pub struct AnswerMessage<'a> {
    /// `assistant`.
    pub role: &'static str,
    /// The text.
    pub content: &'a str,
}

/// One server-sent event of a streamed answer.
#[derive(Debug, Serialize)]
pub struct ChatChunk<'a> {
    /// The same id for every chunk of an answer.
    pub id: &'a str,
    /// `chat.completion.chunk`.
    pub object: &'static str,
    /// Unix seconds.
    pub created: u64,
    /// The twin's name.
    pub model: &'a str,
    /// One choice, or none in the last usage chunk.
    pub choices: Vec<ChunkChoice<'a>>,
    /// In the usage chunk only (null elsewhere when usage was asked for, as OpenAI sends it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<Option<Usage>>,
    /// In the first chunk only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sources: Option<&'a [Source]>,
    /// In the first chunk only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lineage: Option<&'a Lineage>,
}

/// A chunk's choice.
#[derive(Debug, Serialize)]
pub struct ChunkChoice<'a> {
    /// 0.
    pub index: u32,
    /// What is new.
    pub delta: Delta<'a>,
    /// Set in the last content chunk.
    pub finish_reason: Option<&'a str>,
}

/// New text of a chunk.
#[derive(Debug, Serialize)]
pub struct Delta<'a> {
    /// `assistant`, in the first chunk.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<&'static str>,
    /// New text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<&'a str>,
}

/// An error as OpenAI's API returns it: `{"error": {"message", "type", "param", "code"}}`.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// What went wrong, for a person.
    pub message: String,
    /// `invalid_request_error`, `authentication_error`, `rate_limit_error`, `upstream_error`, ...
    pub kind: &'static str,
    /// The request field at fault.
    pub param: Option<String>,
    /// A stable code for programs (`model_not_found`, `context_length_exceeded`, ...).
    pub code: Option<&'static str>,
}

impl ApiError {
    /// A 400 about a field of the request.
    pub fn invalid(message: impl Into<String>, param: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            kind: "invalid_request_error",
            param: Some(param.into()),
            code: None,
        }
    }

    /// Any status, kind and code.
    pub fn new(
        status: StatusCode,
        kind: &'static str,
        code: Option<&'static str>,
        message: impl Into<String>,
    ) -> Self {
        Self { status, message: message.into(), kind, param: None, code }
    }

    /// The `{"error": …}` body.
    pub fn body(&self) -> Value {
        serde_json::json!({"error": {
            "message": self.message,
            "type": self.kind,
            "param": self.param,
            "code": self.code,
        }})
    }
}

impl IntoResponse for ApiError {
    /// The error object; a refusal that passes (429: the gateway or its engine is full; 503:
    /// still loading) says when to try again, as OpenAI's clients read `Retry-After` to wait.
    fn into_response(self) -> Response {
        let retry_after = match self.status {
            StatusCode::TOO_MANY_REQUESTS => Some("1"),
            // An engine waking from zero replicas takes minutes, not seconds.
            StatusCode::SERVICE_UNAVAILABLE if self.code == Some("engine_starting") => Some("30"),
            StatusCode::SERVICE_UNAVAILABLE => Some("5"),
            _ => None,
        };
        let mut response = (self.status, axum::Json(self.body())).into_response();
        if let Some(seconds) = retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static(seconds));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_that_pass_say_when_to_try_again() {
        let retry_after = |status: StatusCode| {
            let response = ApiError::new(status, "t", None, "m").into_response();
            response.headers().get(header::RETRY_AFTER).map(|v| v.to_str().unwrap().to_string())
        };
        assert_eq!(retry_after(StatusCode::TOO_MANY_REQUESTS).as_deref(), Some("1"));
        assert_eq!(retry_after(StatusCode::SERVICE_UNAVAILABLE).as_deref(), Some("5"));
        assert_eq!(retry_after(StatusCode::BAD_REQUEST), None);
        assert_eq!(retry_after(StatusCode::GATEWAY_TIMEOUT), None);
    }

    fn parse(body: Value) -> Result<ValidChat, ApiError> {
        serde_json::from_value::<ChatRequest>(body).unwrap().validate()
    }

    #[test]
    fn a_conversation_is_read_with_its_sampling() {
        let chat = parse(serde_json::json!({
            "model": "paul", "stream": true, "stream_options": {"include_usage": true},
            "messages": [{"role": "developer", "content": "Be brief."},
                         {"role": "user", "content": [{"type": "text", "text": "Hi"}, {"type": "text", "text": "there"}]}],
            "temperature": 0.2, "max_completion_tokens": 64, "stop": "\n\n", "seed": 7,
            "rag": {"topK": 0}, "presence_penalty": 0.5
        }))
        .unwrap();
        assert_eq!(chat.turns[0], Turn { role: Role::System, content: "Be brief.".into() });
        assert_eq!(chat.turns[1].content, "Hi\nthere");
        assert_eq!(chat.sampling.max_tokens, Some(64));
        assert_eq!(chat.sampling.stop, vec!["\n\n".to_string()]);
        assert!(chat.stream && chat.include_usage);
        assert_eq!(chat.top_k, Some(0));
        assert_eq!(chat.extra.get("presence_penalty"), Some(&serde_json::json!(0.5)));
    }

    #[test]
    fn what_cannot_be_honoured_is_refused_with_the_field() {
        let user = serde_json::json!([{"role": "user", "content": "hi"}]);
        for (body, param) in [
            (serde_json::json!({"messages": user, "n": 2}), "n"),
            (serde_json::json!({"messages": user, "tools": [{"type": "function"}]}), "tools"),
            (serde_json::json!({"messages": []}), "messages"),
            (serde_json::json!({}), "messages"),
            (serde_json::json!({"messages": [{"role": "tool", "content": "x"}]}), "messages[0].role"),
            (serde_json::json!({"messages": [{"role": "user", "content": "  "}]}), "messages[0].content"),
            (serde_json::json!({"messages": [{"role": "system", "content": "x"}]}), "messages"),
            (serde_json::json!({"messages": user, "temperature": 3}), "temperature"),
            (serde_json::json!({"messages": user, "stop": ["a", "b", "c", "d", "e"]}), "stop"),
            (
                serde_json::json!({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}),
                "messages[0].content[0]",
            ),
        ] {
            let error = parse(body.clone()).unwrap_err();
            assert_eq!(error.status, StatusCode::BAD_REQUEST, "{body}");
            assert_eq!(error.param.as_deref(), Some(param), "{body}: {}", error.message);
        }
    }
}
