//! The answers an evaluation reads: asked of an OpenAI-compatible endpoint (a TwinEndpoint's
//! gateway, vLLM, any hosted model), or of a gateway this process starts on a loaded engine, so
//! that the twin is asked exactly as users ask it (its system prompt, its retrieved passages, its
//! chat template).

use std::time::Duration;

use serde::Serialize;
use serde_json::{Value, json};

use crate::serve::api::Source;
use crate::serve::config::ServeArgs;

/// Largest answer body read.
const MAX_ANSWER_BYTES: usize = 4 << 20;

/// An answer and what it drew on.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct Answer {
    pub text: String,
    /// The chunk ids of the passages the gateway put in the prompt (empty for an endpoint that
    /// is not a twin gateway).
    pub sources: Vec<String>,
    /// The adapter the lineage names, when the endpoint says.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub adapter: Option<String>,
}

/// Asks one OpenAI-compatible endpoint.
pub struct Asker {
    client: reqwest::Client,
    base: String,
    api_key: Option<String>,
    model: Option<String>,
}

impl Asker {
    /// An asker of the endpoint at `base` (`…/v1`), waiting at most `timeout` for an answer.
    pub fn new(
        base: &str,
        api_key: Option<String>,
        model: Option<String>,
        timeout: Duration,
    ) -> Result<Self, String> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(timeout)
            .user_agent(concat!("twin-operator/", env!("CARGO_PKG_VERSION"), " (twin eval)"))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        let base = base.trim_end_matches('/');
        let base = if base.ends_with("/v1") { base.to_string() } else { format!("{base}/v1") };
        Ok(Self { client, base, api_key, model })
    }

    /// The endpoint's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Sends `body` to `path` and reads a JSON answer; any failure is said with the endpoint.
    pub async fn post(&self, path: &str, body: &Value) -> Result<Value, String> {
        let url = format!("{}{path}", self.base);
        let mut request = self
            .client
            .post(&url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string());
        if let Some(key) = &self.api_key {
            request = request.bearer_auth(key);
        }
        let response = request.send().await.map_err(|e| {
            let why = if e.is_timeout() { "timed out".to_string() } else { crate::net::sse::innermost(&e) };
            format!("{url}: {why}")
        })?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(|e| format!("{url}: reading the answer: {e}"))?;
        if bytes.len() > MAX_ANSWER_BYTES {
            return Err(format!("{url}: the answer is over {MAX_ANSWER_BYTES} bytes"));
        }
        let text = String::from_utf8_lossy(&bytes);
        if !status.is_success() {
            let said: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            let message = said["error"]["message"]
                .as_str()
                .map_or_else(|| text.chars().take(300).collect(), str::to_string);
            return Err(format!("{url} answered {status}: {message}"));
        }
        serde_json::from_str(&text).map_err(|_| {
            format!("{url} did not answer JSON (an OpenAI-compatible endpoint was expected): {:.200}", text)
        })
    }

    /// The whole answer to `messages`, greedy (temperature 0, `seed`), at most `max_tokens`
    /// long: the response, and its text.
    pub async fn chat(&self, messages: Value, max_tokens: u32, seed: u64) -> Result<(Value, String), String> {
        let mut body =
            json!({"messages": messages, "temperature": 0, "seed": seed, "max_tokens": max_tokens});
        if let Some(model) = &self.model {
            body["model"] = json!(model);
        }
        let said = self.post("/chat/completions", &body).await?;
        let text =
            said["choices"][0]["message"]["content"].as_str().map(str::to_string).ok_or_else(|| {
                format!(
                    "{}/chat/completions answered without choices[0].message.content: {:.200}",
                    self.base, said
                )
            })?;
        Ok((said, text))
    }

    /// The answer to `question`, with the passages a twin gateway names.
    pub async fn ask(&self, question: &str, max_tokens: u32, seed: u64) -> Result<Answer, String> {
        let (said, text) =
            self.chat(json!([{"role": "user", "content": question}]), max_tokens, seed).await?;
        let sources: Vec<Source> = said
            .get("sources")
            .filter(|s| !s.is_null())
            .map(|s| serde_json::from_value(s.clone()))
            .transpose()
            .map_err(|e| {
                format!("{}/chat/completions: its sources are not a twin gateway's: {e}", self.base)
            })?
            .unwrap_or_default();
        Ok(Answer {
            text,
            sources: sources.into_iter().map(|s| s.chunk_id).collect(),
            adapter: said["lineage"]["adapter"].as_str().map(str::to_string),
        })
    }
}

/// A gateway served by this process on a loopback port, until dropped.
pub struct LocalGateway {
    /// Its API's base URL.
    pub url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), String>>>,
}

impl LocalGateway {
    /// Starts `args`' gateway on 127.0.0.1 and waits until it is ready (its engine and dataset
    /// loaded), or says why it could not start.
    pub async fn start(args: ServeArgs) -> Result<Self, String> {
        let listener = crate::serve::bind("127.0.0.1:0")?;
        let url = format!("http://{}/v1", listener.local_addr().map_err(|e| e.to_string())?);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (ready, is_ready) = tokio::sync::oneshot::channel();
        let mut task = tokio::spawn(crate::serve::serve(
            args,
            listener,
            async move {
                let _ = stopped.await;
            },
            Some(ready),
        ));
        tokio::select! {
            ready = is_ready => match ready {
                Ok(_) => Ok(Self { url, stop: Some(stop), task: Some(task) }),
                Err(_) => Err("the evaluation's gateway stopped before it was ready".into()),
            },
            ended = &mut task => Err(match ended {
                Ok(Err(message)) => message,
                Ok(Ok(())) => "the evaluation's gateway stopped before it was ready".into(),
                Err(e) => format!("the evaluation's gateway panicked: {e}"),
            }),
        }
    }

    /// Stops it and waits for it to end.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}
