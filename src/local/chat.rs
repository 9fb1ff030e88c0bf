//! `twin chat URL`: a terminal chat with any twin endpoint. Each question is sent with the
//! conversation so far, the answer is printed as it streams in, then the passages it drew on
//! (the `sources` a twin adds to its first chunk). With `--question` it asks once and exits,
//! for scripts; otherwise it reads questions from standard input until it ends (Ctrl-D).

use std::io::{IsTerminal, Write};
use std::time::Duration;

use serde_json::{Value, json};

use crate::net::sse::{EventStream, innermost};
use crate::serve::api::{Lineage, Source};

/// The largest streamed answer read.
const ANSWER_LIMIT: usize = 16 << 20;

/// `twin chat` settings.
#[derive(clap::Args, Debug, Clone)]
pub struct ChatArgs {
    /// The endpoint's base URL: `http://localhost:8080` (`/v1` is added when missing).
    pub url: String,
    /// The endpoint's API key, sent as a bearer token.
    #[arg(long, env = "TWIN_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Ask this one question, print the answer and its sources, and exit.
    #[arg(long, short = 'q', value_name = "QUESTION")]
    pub question: Option<String>,
    /// Longest answer, in tokens (unset: the endpoint's default).
    #[arg(long)]
    pub max_tokens: Option<u32>,
}

/// One side of the conversation so far.
#[derive(Debug, Clone, PartialEq)]
struct Turn {
    role: &'static str,
    content: String,
}

/// A chat session with one endpoint.
struct Session {
    client: reqwest::Client,
    base: String,
    api_key: Option<String>,
    max_tokens: Option<u32>,
    history: Vec<Turn>,
}

/// The endpoint's `/v1` base from what the user typed.
fn api_base(url: &str) -> Result<String, String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!("{url:?} must be an http:// or https:// URL"));
    }
    let trimmed = url.trim_end_matches('/');
    Ok(if trimmed.ends_with("/v1") { trimmed.to_string() } else { format!("{trimmed}/v1") })
}

/// How the sources of an answer are printed: one numbered line each.
fn source_lines(sources: &[Source]) -> Vec<String> {
    sources
        .iter()
        .enumerate()
        .map(|(index, source)| {
            let title = source.title.as_deref().unwrap_or(&source.chunk_id);
            let place = source.url.as_deref().map_or(String::new(), |url| format!("  {url}"));
            format!("  {}. {title}{place}  ({}, score {:.3})", index + 1, source.chunk_id, source.score)
        })
        .collect()
}

/// What answered, in one line: the model, its adapter (and the revision it learned from, when
/// retrieval uses a newer one), the dataset revision.
fn lineage_line(lineage: &Lineage) -> String {
    let mut line = lineage.base_model.clone();
    if let Some(adapter) = &lineage.adapter {
        line.push_str(&format!(" with adapter {adapter}"));
        if let Some(trained) =
            lineage.adapter_revision.as_ref().filter(|t| lineage.revision.as_ref() != Some(*t))
        {
            line.push_str(&format!(" (trained on revision {trained})"));
        }
    }
    if let (Some(dataset), Some(revision)) = (&lineage.dataset, &lineage.revision) {
        line.push_str(&format!(", passages from dataset {dataset} revision {revision}"));
    }
    line
}

/// An error answer's message (OpenAI's `{"error": {"message": ...}}`), else the body.
fn error_message(status: reqwest::StatusCode, body: &str) -> String {
    let said = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
        .unwrap_or_else(|| crate::net::sse::truncate(body.trim()).to_string());
    let hint =
        if status == reqwest::StatusCode::UNAUTHORIZED { " (give --api-key or TWIN_API_KEY)" } else { "" };
    format!("the endpoint answered {status}: {said}{hint}")
}

impl Session {
    fn new(args: &ChatArgs) -> Result<Self, String> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("twin-operator/", env!("CARGO_PKG_VERSION"), " (twin chat)"))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Self {
            client,
            base: api_base(&args.url)?,
            api_key: args.api_key.clone().filter(|k| !k.is_empty()),
            max_tokens: args.max_tokens,
            history: Vec::new(),
        })
    }

    fn post(&self, path: &str) -> reqwest::RequestBuilder {
        let request = self.client.post(format!("{}{path}", self.base));
        match &self.api_key {
            Some(key) => request.bearer_auth(key),
            None => request,
        }
    }

    /// The twin's name, as `/v1/models` lists it first.
    async fn model_name(&self) -> Result<String, String> {
        let mut request = self.client.get(format!("{}/models", self.base));
        if let Some(key) = &self.api_key {
            request = request.bearer_auth(key);
        }
        let response =
            request.send().await.map_err(|e| format!("cannot reach {}: {}", self.base, innermost(&e)))?;
        let status = response.status();
        let body =
            response.text().await.map_err(|e| format!("reading {}/models: {}", self.base, innermost(&e)))?;
        if !status.is_success() {
            return Err(error_message(status, &body));
        }
        let models: Value =
            serde_json::from_str(&body).map_err(|_| format!("{}/models did not answer JSON", self.base))?;
        Ok(models["data"][0]["id"].as_str().unwrap_or("the twin").to_string())
    }

    /// Asks `question` with the conversation so far, writing the answer to `out` as it comes
    /// and then its sources. The conversation keeps the turn only when the answer was whole.
    async fn ask(&mut self, question: &str, out: &mut impl Write) -> Result<(), String> {
        let mut messages: Vec<Value> =
            self.history.iter().map(|t| json!({"role": t.role, "content": t.content})).collect();
        messages.push(json!({"role": "user", "content": question}));
        let mut body = json!({"messages": messages, "stream": true});
        if let Some(tokens) = self.max_tokens {
            body["max_tokens"] = json!(tokens);
        }
        let response = self
            .post("/chat/completions")
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| format!("cannot reach {}: {}", self.base, innermost(&e)))?;
        let status = response.status();
        if !status.is_success() {
            let text = response.text().await.unwrap_or_default();
            return Err(error_message(status, &text));
        }
        let mut events = EventStream::new(response, ANSWER_LIMIT);
        let mut answer = String::new();
        let mut sources: Vec<Source> = Vec::new();
        let mut lineage: Option<Lineage> = None;
        let write = |out: &mut dyn Write, text: &str| {
            let _ = out.write_all(text.as_bytes());
            let _ = out.flush();
        };
        loop {
            let data = match events.next().await {
                Ok(Some(data)) => data,
                Ok(None) => return Err("the answer broke off: the endpoint closed the stream".into()),
                Err(error) => return Err(format!("the answer's {error}")),
            };
            if data.trim() == "[DONE]" {
                break;
            }
            let chunk: Value = serde_json::from_str(&data)
                .map_err(|_| format!("the endpoint sent an event that is not JSON: {data:?}"))?;
            if let Some(error) = chunk.get("error") {
                return Err(format!(
                    "the answer broke off: {}",
                    error["message"].as_str().unwrap_or("no message")
                ));
            }
            if let Some(listed) = chunk.get("sources").filter(|s| !s.is_null()) {
                sources = serde_json::from_value(listed.clone()).unwrap_or_default();
            }
            if let Some(said) = chunk.get("lineage").filter(|l| !l.is_null()) {
                lineage = serde_json::from_value(said.clone()).ok();
            }
            if let Some(text) = chunk["choices"][0]["delta"]["content"].as_str() {
                answer.push_str(text);
                write(out, text);
            }
        }
        write(out, "\n");
        if !sources.is_empty() {
            write(out, &format!("\nSources:\n{}\n", source_lines(&sources).join("\n")));
        }
        if let Some(lineage) = &lineage {
            write(out, &format!("Answered by: {}\n", lineage_line(lineage)));
        }
        self.history.push(Turn { role: "user", content: question.to_string() });
        self.history.push(Turn { role: "assistant", content: answer });
        Ok(())
    }
}

/// Reads one line of standard input (blocking, off the runtime's threads); `None` at its end.
async fn read_line() -> Option<String> {
    tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        match std::io::stdin().read_line(&mut line) {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(line.trim_end_matches(['\r', '\n']).to_string()),
        }
    })
    .await
    .ok()
    .flatten()
}

/// `twin chat`: exits non-zero when the endpoint cannot be reached or refuses, or when the
/// one `--question` got no whole answer.
pub async fn run(args: ChatArgs) -> std::process::ExitCode {
    match chat(args).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn chat(args: ChatArgs) -> Result<(), String> {
    let mut session = Session::new(&args)?;
    let name = session.model_name().await?;
    let mut out = std::io::stdout();
    if let Some(question) = &args.question {
        return session.ask(question, &mut out).await;
    }
    let interactive = std::io::stdin().is_terminal();
    if interactive {
        println!("Chatting with {name} at {}. Ctrl-D ends.", session.base);
    }
    loop {
        if interactive {
            print!("\nyou> ");
            let _ = out.flush();
        }
        let Some(question) = read_line().await else { break };
        if question.trim().is_empty() {
            continue;
        }
        if interactive {
            print!("{name}> ");
        }
        if let Err(error) = session.ask(&question, &mut out).await {
            eprintln!("\nerror: {error}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_api_base_gets_v1_once() {
        assert_eq!(api_base("http://localhost:8080").unwrap(), "http://localhost:8080/v1");
        assert_eq!(api_base("http://localhost:8080/v1/").unwrap(), "http://localhost:8080/v1");
        assert!(api_base("localhost:8080").is_err());
        assert!(api_base("ftp://host/v1").unwrap_err().contains("http://"));
    }

    #[test]
    fn sources_are_numbered_with_their_place_and_score() {
        let sources = vec![
            Source {
                chunk_id: "a1".into(),
                title: Some("Why my operator retries".into()),
                url: Some("https://paul.dev/retries".into()),
                score: 0.0328,
                similarity: None,
                bm25: None,
            },
            Source {
                chunk_id: "b2".into(),
                title: None,
                url: None,
                score: 0.01,
                similarity: None,
                bm25: None,
            },
        ];
        assert_eq!(
            source_lines(&sources),
            [
                "  1. Why my operator retries  https://paul.dev/retries  (a1, score 0.033)",
                "  2. b2  (b2, score 0.010)"
            ]
        );
    }

    #[test]
    fn the_lineage_names_the_model_the_adapter_and_the_revision() {
        let mut lineage = Lineage {
            dataset: Some("paul".into()),
            revision: Some("r1".into()),
            engine: "embedded".into(),
            base_model: "smollm2.gguf".into(),
            adapter: Some("/out/models/paul-v1/g1-r1/adapter.gguf".into()),
            adapter_revision: Some("r1".into()),
        };
        assert_eq!(
            lineage_line(&lineage),
            "smollm2.gguf with adapter /out/models/paul-v1/g1-r1/adapter.gguf, passages from dataset paul revision r1"
        );
        // Retrieval on a newer revision than the adapter learned from: both named.
        lineage.revision = Some("r2".into());
        assert_eq!(
            lineage_line(&lineage),
            "smollm2.gguf with adapter /out/models/paul-v1/g1-r1/adapter.gguf (trained on revision r1), passages from dataset paul revision r2"
        );
        lineage.adapter = None;
        lineage.revision = None;
        assert_eq!(lineage_line(&lineage), "smollm2.gguf");
    }

    #[test]
    fn an_error_answer_is_said_with_its_message() {
        let said =
            error_message(reqwest::StatusCode::UNAUTHORIZED, r#"{"error":{"message":"missing API key"}}"#);
        assert_eq!(
            said,
            "the endpoint answered 401 Unauthorized: missing API key (give --api-key or TWIN_API_KEY)"
        );
        assert_eq!(
            error_message(reqwest::StatusCode::BAD_GATEWAY, "down\n"),
            "the endpoint answered 502 Bad Gateway: down"
        );
    }
}
