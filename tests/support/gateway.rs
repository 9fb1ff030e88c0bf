//! `twin serve` as a user runs it: the real binary on a free port of 127.0.0.1, stopped at the
//! end of the test; and a scripted OpenAI-compatible upstream whose behaviour each request picks
//! with a `scenario` field (which the gateway passes on, as it passes every field it does not read).

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

/// An HTTP client for the tests (rustls needs its crypto provider before the first client, and
/// a test run alone must not rely on another test having installed it).
pub fn client() -> ::reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    ::reqwest::Client::new()
}

/// A running `twin serve`.
pub struct Gateway {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    log: std::path::PathBuf,
}

impl Gateway {
    /// Starts `twin serve` with `args` (plus `--listen`) and waits until /healthz answers.
    pub fn start(args: &[String]) -> Self {
        Self::start_with_env(args, &[])
    }

    /// [`Gateway::start`] with environment variables.
    pub fn start_with_env(args: &[String], env: &[(&str, &str)]) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let log = std::env::temp_dir().join(format!("twin-serve-{port}-{}.log", std::process::id()));
        // Set for the integration tests (this module is also compiled into the benchmarks).
        let Some(twin) = option_env!("CARGO_BIN_EXE_twin") else {
            panic!("the integration tests run the built twin binary")
        };
        let child = Command::new(twin)
            .arg("serve")
            .args(args)
            .args(["--listen", &format!("127.0.0.1:{port}"), "--log-format", "text"])
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("twin serve starts");
        let gateway = Self { child, url: format!("http://127.0.0.1:{port}"), log };
        gateway.wait_for("/healthz", Duration::from_secs(20));
        gateway
    }

    /// Waits until `path` answers 200, panicking with the gateway's log after `limit`.
    pub fn wait_for(&self, path: &str, limit: Duration) {
        let started = Instant::now();
        while started.elapsed() < limit {
            if probe::status(&format!("{}{path}", self.url)).is_some_and(|status| status == 200) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("{path} did not answer 200 within {limit:?}; the gateway's log:\n{}", self.log());
    }

    /// Waits until /readyz answers 200.
    pub fn wait_ready(&self) {
        self.wait_for("/readyz", Duration::from_secs(90));
    }

    /// What the gateway has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The process id (for signals).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops the gateway with SIGTERM (as Kubernetes does) and waits for it to exit.
    pub fn stop(mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "twin serve did not stop on SIGTERM:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// A GET's status from plain blocking code, without a runtime (std's TCP, HTTP/1.1).
mod probe {
    use std::io::{Read, Write};

    pub fn status(url: &str) -> Option<u16> {
        let rest = url.strip_prefix("http://")?;
        let (host, path) =
            rest.split_once('/').map(|(h, p)| (h, format!("/{p}"))).unwrap_or((rest, "/".into()));
        let mut stream = std::net::TcpStream::connect(host).ok()?;
        stream.set_read_timeout(Some(std::time::Duration::from_secs(5))).ok()?;
        write!(stream, "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).ok()?;
        response.split_whitespace().nth(1)?.parse().ok()
    }
}

/// What the scripted upstream received.
#[derive(Clone, Default)]
pub struct Upstream {
    /// Request bodies, in order.
    pub received: Arc<Mutex<Vec<Value>>>,
}

impl Upstream {
    /// Serves the upstream on 127.0.0.1; returns its `/v1` base URL.
    pub async fn start(&self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        self.start_on(listener).await
    }

    /// Serves the upstream on `listener` (an engine that comes up where the gateway was told it
    /// would be); returns its `/v1` base URL.
    pub async fn start_on(&self, listener: tokio::net::TcpListener) -> String {
        let addr: SocketAddr = listener.local_addr().unwrap();
        let app = Router::new()
            .route(
                "/v1/models",
                get(|| async {
                    axum::Json(
                        json!({"object": "list", "data": [{"id": "scripted-model", "object": "model"}]}),
                    )
                }),
            )
            .route("/v1/chat/completions", post(answer))
            .with_state(self.clone());
        crate::support::serve::serve_on(listener, app).await;
        format!("http://{addr}/v1")
    }

    /// The last request body received.
    pub fn last(&self) -> Value {
        self.received.lock().unwrap().last().cloned().expect("the upstream received a request")
    }
}

/// One event of a streamed chat completion carrying `content`.
pub fn chunk(content: &str) -> Bytes {
    let event = json!({"id": "up-1", "object": "chat.completion.chunk", "created": 0, "model": "scripted-model",
                       "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": null}]});
    Bytes::from(format!("data: {event}\n\n"))
}

/// An event stream of `parts`, each sent after its delay.
pub fn sse(parts: Vec<(Duration, Bytes)>) -> Response {
    let stream = futures::stream::unfold(parts.into_iter(), |mut parts| async move {
        let (delay, bytes) = parts.next()?;
        tokio::time::sleep(delay).await;
        Some((Ok::<_, std::convert::Infallible>(bytes), parts))
    });
    Response::builder().header("content-type", "text/event-stream").body(Body::from_stream(stream)).unwrap()
}

/// The scenarios: `plain` (default) answers "Hello from upstream"; `echo` answers with the
/// system prompt it was sent; `error-500`, `error-400`, `garbage`, `hang`, `slow-first-token`
/// and `cut` misbehave as named.
async fn answer(State(upstream): State<Upstream>, axum::Json(body): axum::Json<Value>) -> Response {
    upstream.received.lock().unwrap().push(body.clone());
    let scenario = body["scenario"].as_str().unwrap_or("plain").to_string();
    let stream = body["stream"].as_bool().unwrap_or(false);
    let text = match scenario.as_str() {
        "echo" => body["messages"][0]["content"].as_str().unwrap_or_default().to_string(),
        _ => "Hello from upstream".to_string(),
    };
    let ms = Duration::from_millis;
    match (scenario.as_str(), stream) {
        ("error-500", _) => (StatusCode::INTERNAL_SERVER_ERROR, "engine crashed").into_response(),
        ("error-400", _) => {
            (StatusCode::BAD_REQUEST, axum::Json(json!({"error": {"message": "max_tokens is too large for this model"}}))).into_response()
        }
        ("garbage", false) => (StatusCode::OK, "<html>not an API</html>").into_response(),
        ("garbage", true) => sse(vec![(ms(0), Bytes::from("this is not an event stream\n\n"))]),
        ("hang", _) => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            StatusCode::OK.into_response()
        }
        ("slow-first-token", true) => sse(vec![(ms(3000), chunk("late"))]),
        ("cut", true) => sse(vec![(ms(0), chunk("Hello")), (ms(10), chunk(" from"))]),
        ("slow", true) => sse((0..50).map(|i| (ms(if i == 0 { 0 } else { 200 }), chunk("word "))).collect()),
        (_, true) => {
            let usage = json!({"id": "up-1", "object": "chat.completion.chunk", "created": 0, "model": "scripted-model", "choices": [],
                               "usage": {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14}});
            let end = json!({"id": "up-1", "object": "chat.completion.chunk", "created": 0, "model": "scripted-model",
                             "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]});
            let mut parts: Vec<(Duration, Bytes)> =
                text.split_inclusive(' ').map(|word| (ms(1), chunk(word))).collect();
            parts.push((ms(0), Bytes::from(format!("data: {end}\n\n"))));
            parts.push((ms(0), Bytes::from(format!("data: {usage}\n\ndata: [DONE]\n\n"))));
            sse(parts)
        }
        (_, false) => axum::Json(json!({
            "id": "up-1", "object": "chat.completion", "created": 0, "model": "scripted-model",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14}
        }))
        .into_response(),
    }
}

/// An OTLP/HTTP collector on 127.0.0.1 that keeps the trace exports it receives.
#[derive(Clone, Default)]
pub struct Collector {
    /// The bodies of `POST /v1/traces`, protobuf.
    pub exports: Arc<Mutex<Vec<Bytes>>>,
}

impl Collector {
    /// Serves the collector; returns its base URL (what `OTEL_EXPORTER_OTLP_ENDPOINT` takes).
    pub async fn start(&self) -> String {
        let exports = self.exports.clone();
        let app = Router::new().route(
            "/v1/traces",
            post(move |body: Bytes| {
                let exports = exports.clone();
                async move {
                    exports.lock().unwrap().push(body);
                    StatusCode::OK
                }
            }),
        );
        format!("http://{}", crate::support::serve::serve(app).await)
    }
}
