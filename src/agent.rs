//! `twin engine-agent`: the sidecar of a shared engine (TwinEngine). It keeps the vLLM beside it
//! serving the adapters the operator wants (the ConfigMap mounted at `--wanted`): each is
//! fetched into the engine's cache, then loaded through vLLM's runtime LoRA API under its
//! endpoint's name (replaced in place when retrained), and unloaded when its endpoint goes. It
//! reads what vLLM has loaded from `/v1/models` on every pass, so a restarted vLLM gets its
//! adapters back. It reports each adapter's state on `GET /adapters`, which the operator reads.
//!
//! vLLM's runtime API (`vllm/entrypoints/serve/lora/api_router.py`, `vllm/entrypoints/openai/
//! models/serving.py`): with `VLLM_ALLOW_RUNTIME_LORA_UPDATING=True`, `POST
//! /v1/load_lora_adapter {"lora_name", "lora_path", "load_inplace"}` and `POST
//! /v1/unload_lora_adapter {"lora_name"}` answer 200 with a plain-text success line, or an
//! error `{"error": {"message", "type", "param", "code"}}`: 400 for a name already loaded
//! without `load_inplace` (older vLLMs know no `load_inplace`: then the adapter is unloaded and
//! loaded again), 404 for an adapter or name not found, 500 for one the engine cannot load.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use serde_json::{Value, json};
use tracing::{info, warn};

use crate::contract::adapters::{
    AGENT_PORT, AdapterReport, AgentReport, Loading, WANTED_DIR, WANTED_FILE, Wanted,
};
use crate::hashing::sha256_hex;
use crate::serve::config::parse_duration;
use crate::storage::fetch::{FetchArgs, fetch};

/// The agent's settings.
#[derive(clap::Args, Debug, Clone)]
pub struct AgentArgs {
    /// vLLM's address (its OpenAI server, without `/v1`).
    #[arg(long, env = "TWIN_AGENT_VLLM", default_value = "http://127.0.0.1:8000")]
    pub vllm: String,
    /// The file listing the adapters wanted (the engine's ConfigMap, mounted).
    #[arg(long, env = "TWIN_AGENT_WANTED", default_value_t = format!("{WANTED_DIR}/{WANTED_FILE}"))]
    pub wanted: String,
    /// Where adapters are fetched to (a folder of the engine's model cache).
    #[arg(long, env = "TWIN_AGENT_CACHE", default_value = "/models/adapters")]
    pub cache: PathBuf,
    /// Where the report is served.
    #[arg(long, env = "TWIN_AGENT_LISTEN", default_value_t = format!("0.0.0.0:{AGENT_PORT}"))]
    pub listen: String,
    /// How often the wanted adapters are compared with vLLM's.
    #[arg(long, env = "TWIN_AGENT_INTERVAL", default_value = "2s", value_parser = parse_duration)]
    pub interval: Duration,
    /// How long a failed adapter waits before it is tried again.
    #[arg(long, env = "TWIN_AGENT_RETRY", default_value = "60s", value_parser = parse_duration)]
    pub retry: Duration,
    /// S3-compatible endpoint for s3:// adapters (MinIO, Ceph); unset: AWS.
    #[arg(long, env = "AWS_ENDPOINT_URL_S3", value_name = "URL")]
    pub s3_endpoint_url: Option<String>,
    /// The bucket's region for s3:// adapters.
    #[arg(long, env = "AWS_REGION")]
    pub s3_region: Option<String>,
}

/// Runs the agent until SIGTERM or Ctrl-C.
pub async fn run(args: AgentArgs) -> ExitCode {
    crate::telemetry::init(None);
    let listener = match tokio::net::TcpListener::bind(&args.listen).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("error: cannot listen on {}: {e}", args.listen);
            return ExitCode::FAILURE;
        }
    };
    let agent = match Agent::new(args) {
        Ok(agent) => Arc::new(agent),
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::FAILURE;
        }
    };
    let stop = crate::shutdown::requested();
    tokio::select! {
        () = agent.clone().keep_in_step() => ExitCode::SUCCESS,
        served = serve(agent, listener) => match served {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => { eprintln!("error: {e}"); ExitCode::FAILURE }
        },
        () = stop => ExitCode::SUCCESS,
    }
}

/// Serves the report on `listener`: `GET /adapters`, `GET /healthz`, and `GET /readyz` (ready
/// once vLLM is up and every wanted adapter has been tried once, so that a new replica takes
/// requests with its adapters loaded).
pub async fn serve(agent: Arc<Agent>, listener: tokio::net::TcpListener) -> std::io::Result<()> {
    let app = Router::new()
        .route("/adapters", get(|State(agent): State<Arc<Agent>>| async move { axum::Json(agent.report()) }))
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(|State(agent): State<Arc<Agent>>| async move {
                if *agent.settled.lock().expect("not poisoned") {
                    (StatusCode::OK, "ready")
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "loading the adapters")
                }
            }),
        )
        .with_state(agent);
    axum::serve(listener, app).await
}

/// A failure, kept until it is tried again.
#[derive(Debug, Clone)]
struct Failure {
    uri: String,
    message: String,
    at: Instant,
}

/// The agent's state.
pub struct Agent {
    args: AgentArgs,
    client: reqwest::Client,
    /// The last report.
    report: Mutex<AgentReport>,
    /// Adapters that failed, by name.
    failures: Mutex<BTreeMap<String, Failure>>,
    /// The wanted adapters last read well (a malformed file keeps them).
    wanted: Mutex<Wanted>,
    /// Whether a pass has tried every wanted adapter with vLLM up.
    settled: Mutex<bool>,
}

impl Agent {
    /// An agent with `args`.
    pub fn new(args: AgentArgs) -> Result<Self, String> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .no_proxy()
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Self {
            args,
            client,
            report: Mutex::default(),
            failures: Mutex::default(),
            wanted: Mutex::default(),
            settled: Mutex::new(false),
        })
    }

    /// The last report.
    pub fn report(&self) -> AgentReport {
        self.report.lock().expect("not poisoned").clone()
    }

    /// Passes forever, one every `--interval`.
    pub async fn keep_in_step(self: Arc<Self>) {
        loop {
            self.pass().await;
            tokio::time::sleep(self.args.interval).await;
        }
    }

    fn read_wanted(&self) -> Wanted {
        let mut wanted = self.wanted.lock().expect("not poisoned");
        match std::fs::read_to_string(&self.args.wanted) {
            Ok(text) => match serde_json::from_str::<Wanted>(&text) {
                Ok(read) => *wanted = read,
                Err(e) => {
                    warn!("{} is not a list of adapters ({e}); keeping the last one read", self.args.wanted)
                }
            },
            // Not there yet (or gone): nothing is wanted.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => *wanted = Wanted::default(),
            Err(e) => warn!("cannot read {}: {e}; keeping the last list read", self.args.wanted),
        }
        wanted.clone()
    }

    /// vLLM's loaded adapters, name → path, or `None` while it does not answer.
    async fn loaded(&self) -> Option<BTreeMap<String, String>> {
        let vllm = self.args.vllm.trim_end_matches('/');
        let healthy = self.client.get(format!("{vllm}/health")).timeout(Duration::from_secs(5)).send().await;
        if !healthy.is_ok_and(|r| r.status().is_success()) {
            return None;
        }
        let models =
            self.client.get(format!("{vllm}/v1/models")).timeout(Duration::from_secs(10)).send().await;
        let listed: Value = models.ok()?.json().await.ok()?;
        // The base model has no parent; every adapter names the base it runs on.
        let cards = listed["data"].as_array()?;
        Some(
            cards
                .iter()
                .filter(|card| card["parent"].as_str().is_some())
                .filter_map(|card| {
                    Some((card["id"].as_str()?.to_string(), card["root"].as_str()?.to_string()))
                })
                .collect(),
        )
    }

    /// Where an adapter is loaded from: its folder in the cache (fetched first), or the Hub
    /// repository vLLM downloads itself.
    fn path_of(&self, name: &str, uri: &str) -> String {
        match uri.strip_prefix("hf://") {
            Some(repo) => repo.to_string(),
            None => self.args.cache.join(name).join(&sha256_hex(uri.as_bytes())[..16]).display().to_string(),
        }
    }

    /// One pass: every wanted adapter loaded at its URI, every other one unloaded.
    pub async fn pass(&self) {
        let wanted = self.read_wanted();
        let Some(loaded) = self.loaded().await else {
            let waiting = wanted
                .adapters
                .iter()
                .map(|a| AdapterReport {
                    name: a.name.clone(),
                    uri: a.uri.clone(),
                    state: Loading::Loading,
                    message: Some("waiting for vLLM to answer".into()),
                })
                .collect();
            *self.report.lock().expect("not poisoned") = AgentReport { engine_up: false, adapters: waiting };
            return;
        };
        for name in loaded.keys().filter(|name| !wanted.adapters.iter().any(|a| &a.name == *name)) {
            match self.unload(name).await {
                Ok(()) => {
                    info!(adapter = %name, "unloaded: its endpoint is gone");
                    let _ = std::fs::remove_dir_all(self.args.cache.join(name));
                }
                Err(message) => warn!(adapter = %name, "cannot unload: {message}"),
            }
        }
        self.failures
            .lock()
            .expect("not poisoned")
            .retain(|name, _| wanted.adapters.iter().any(|a| &a.name == name));
        let mut reports = Vec::new();
        for adapter in &wanted.adapters {
            let (name, uri) = (&adapter.name, &adapter.uri);
            let path = self.path_of(name, uri);
            if loaded.get(name) == Some(&path) {
                self.failures.lock().expect("not poisoned").remove(name);
                reports.push(AdapterReport {
                    name: name.clone(),
                    uri: uri.clone(),
                    state: Loading::Loaded,
                    message: None,
                });
                continue;
            }
            let failed = self.failures.lock().expect("not poisoned").get(name).cloned();
            if let Some(failure) = failed.filter(|f| &f.uri == uri && f.at.elapsed() < self.args.retry) {
                reports.push(AdapterReport {
                    name: name.clone(),
                    uri: uri.clone(),
                    state: Loading::Failed,
                    message: Some(failure.message),
                });
                continue;
            }
            let outcome = self.fetch_and_load(name, uri, &path, loaded.contains_key(name)).await;
            let report = match outcome {
                Ok(()) => {
                    info!(adapter = %name, %uri, "loaded");
                    self.failures.lock().expect("not poisoned").remove(name);
                    AdapterReport {
                        name: name.clone(),
                        uri: uri.clone(),
                        state: Loading::Loaded,
                        message: None,
                    }
                }
                Err(message) => {
                    warn!(adapter = %name, %uri, "cannot load: {message}");
                    let failure = Failure { uri: uri.clone(), message: message.clone(), at: Instant::now() };
                    self.failures.lock().expect("not poisoned").insert(name.clone(), failure);
                    AdapterReport {
                        name: name.clone(),
                        uri: uri.clone(),
                        state: Loading::Failed,
                        message: Some(message),
                    }
                }
            };
            reports.push(report);
        }
        *self.report.lock().expect("not poisoned") = AgentReport { engine_up: true, adapters: reports };
        *self.settled.lock().expect("not poisoned") = true;
    }

    async fn fetch_and_load(&self, name: &str, uri: &str, path: &str, replacing: bool) -> Result<(), String> {
        if !uri.starts_with("hf://") {
            let args = FetchArgs {
                source: uri.to_string(),
                destination: PathBuf::from(path),
                pvc_root: PathBuf::from(crate::contract::paths::PVC_ROOT),
                s3_endpoint_url: self.args.s3_endpoint_url.clone(),
                s3_region: self.args.s3_region.clone(),
            };
            fetch(&args).await.map_err(|e| format!("cannot fetch {uri}: {e}"))?;
        }
        let body = json!({"lora_name": name, "lora_path": path, "load_inplace": replacing});
        match self.call("load_lora_adapter", &body).await {
            Ok(()) => {}
            // A vLLM without `load_inplace` refuses a name it has: unload it and load again.
            Err((400, message)) if replacing && message.contains("already been loaded") => {
                self.unload(name).await?;
                self.call("load_lora_adapter", &json!({"lora_name": name, "lora_path": path}))
                    .await
                    .map_err(|(status, message)| format!("vLLM answered {status}: {message}"))?;
            }
            Err((status, message)) => return Err(format!("vLLM answered {status}: {message}")),
        }
        // Older versions of this adapter go from the cache.
        if let Ok(entries) = std::fs::read_dir(self.args.cache.join(name)) {
            for entry in entries.flatten().filter(|e| e.path().display().to_string() != path) {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
        Ok(())
    }

    async fn unload(&self, name: &str) -> Result<(), String> {
        match self.call("unload_lora_adapter", &json!({"lora_name": name})).await {
            // Not there: as good as unloaded.
            Ok(()) | Err((404, _)) => Ok(()),
            Err((status, message)) => Err(format!("vLLM answered {status}: {message}")),
        }
    }

    /// POSTs to vLLM's runtime LoRA API; an error is its status and message.
    async fn call(&self, route: &str, body: &Value) -> Result<(), (u16, String)> {
        let url = format!("{}/v1/{route}", self.args.vllm.trim_end_matches('/'));
        let response = self
            .client
            .post(&url)
            .json(body)
            .timeout(Duration::from_secs(300))
            .send()
            .await
            .map_err(|e| (0, format!("cannot reach {url}: {}", crate::net::sse::innermost(&e))))?;
        let status = response.status().as_u16();
        if response.status().is_success() {
            return Ok(());
        }
        let text = response.text().await.unwrap_or_default();
        let body = serde_json::from_str::<Value>(&text).unwrap_or_default();
        // FastAPI's own 404 for a route vLLM did not attach.
        if status == 404 && body["detail"] == "Not Found" {
            return Err((
                0,
                format!("{url} is not served: vLLM runs without VLLM_ALLOW_RUNTIME_LORA_UPDATING=True"),
            ));
        }
        // vLLM's error body is {"error": {"message": ...}}; older ones put the message at the top.
        let message = body["error"]["message"]
            .as_str()
            .or(body["message"].as_str())
            .map(str::to_string)
            .unwrap_or(text);
        Err((status, message))
    }
}
