//! The models `twin eval` runs in this process (the twin's and the baseline's weights, loaded
//! once when they share a base model, with adapter handles for scoring and for the engine), and
//! where answers come from: an endpoint, or a gateway served here on a loaded engine.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use llama_cpp_2::model::{LlamaLoraAdapter, LlamaModel};

use super::EvalArgs;
use super::answers::{Asker, LocalGateway};
use crate::serve::config::{GatewaySettings, LoadedEngine, ServeArgs};
use crate::serve::engine::embedded::{EmbeddedEngine, EmbeddedOptions, load_adapter, load_model};

/// A model in this process: its weights (shared by the twin and the baseline when they have
/// the same base), and adapter handles for the scorer and for the engine.
pub(super) struct Loaded {
    pub(super) path: PathBuf,
    pub(super) model: &'static LlamaModel,
}

pub(super) fn local_path(uri: &str) -> PathBuf {
    PathBuf::from(uri.strip_prefix("file://").unwrap_or(uri))
}

/// The twin (or baseline) run here: its model and adapter.
pub(super) struct InProcess {
    pub(super) model: Arc<Loaded>,
    pub(super) adapter: Option<PathBuf>,
    /// One handle for scoring, one for the engine.
    pub(super) handles: Vec<LlamaLoraAdapter>,
}

/// Loads the twin's and the baseline's weights, once when they share a base model.
pub(super) async fn load_models(args: &EvalArgs) -> Result<(Option<InProcess>, Option<InProcess>), String> {
    let twin_local = args.endpoint.is_none();
    let baseline_local = args.baseline_endpoint.is_none();
    let twin_path = match twin_local {
        true => Some(crate::serve::embedded_model_path(args.model.clone(), args.models_dir.clone()).await?),
        false => None,
    };
    let baseline_path = match (&args.baseline_model, baseline_local) {
        (_, false) => None,
        (Some(model), true) => {
            Some(crate::serve::embedded_model_path(Some(model.clone()), args.models_dir.clone()).await?)
        }
        (None, true) => Some(twin_path.clone().ok_or(
            "the twin is an endpoint: give the baseline as --baseline-endpoint URL or --baseline-model GGUF",
        )?),
    };
    let twin_adapter = args.adapter.as_deref().map(local_path);
    let baseline_adapter = args.baseline_adapter.as_deref().map(local_path);
    let wants =
        [twin_path.map(|path| (path, twin_adapter)), baseline_path.map(|path| (path, baseline_adapter))];
    tokio::task::spawn_blocking(move || {
        let mut models: HashMap<PathBuf, LlamaModel> = HashMap::new();
        /// A model's path, its adapter's, and the adapter's handles.
        type Wanted = (PathBuf, Option<PathBuf>, Vec<LlamaLoraAdapter>);
        let mut adapters: Vec<Option<Wanted>> = Vec::new();
        for want in wants {
            let Some((path, adapter)) = want else {
                adapters.push(None);
                continue;
            };
            if !models.contains_key(&path) {
                models.insert(path.clone(), load_model(&path)?);
            }
            let model = models.get_mut(&path).expect("loaded");
            let handles = match &adapter {
                Some(file) => vec![load_adapter(model, file)?, load_adapter(model, file)?],
                None => Vec::new(),
            };
            adapters.push(Some((path, adapter, handles)));
        }
        // The engines' contexts borrow the models for the rest of the process.
        let leaked: HashMap<PathBuf, Arc<Loaded>> = models
            .into_iter()
            .map(|(path, model)| {
                let model: &'static LlamaModel = Box::leak(Box::new(model));
                (path.clone(), Arc::new(Loaded { path, model }))
            })
            .collect();
        let mut built = adapters.into_iter().map(|a| {
            a.map(|(path, adapter, handles)| InProcess { model: leaked[&path].clone(), adapter, handles })
        });
        Ok((built.next().flatten(), built.next().flatten()))
    })
    .await
    .map_err(|e| format!("loading the models panicked: {e}"))?
}

/// Where answers come from: an endpoint, or a gateway this process serves.
pub(super) enum Responder {
    Endpoint(Asker),
    Local(Asker, LocalGateway),
}

impl Responder {
    pub(super) fn asker(&self) -> &Asker {
        match self {
            Responder::Endpoint(asker) | Responder::Local(asker, _) => asker,
        }
    }

    pub(super) async fn stop(self) {
        if let Responder::Local(_, gateway) = self {
            gateway.stop().await;
        }
    }
}

pub(super) async fn responder(
    args: &EvalArgs,
    endpoint: Option<&str>,
    local: Option<&mut InProcess>,
    api_key: Option<String>,
) -> Result<Responder, String> {
    if let Some(url) = endpoint {
        return Ok(Responder::Endpoint(Asker::new(url, api_key, args.endpoint_model.clone(), args.timeout)?));
    }
    let local = local.expect("an in-process model where there is no endpoint");
    let options = EmbeddedOptions {
        model: local.model.path.clone(),
        adapter: local.adapter.clone(),
        context_tokens: None,
        // One answer at a time: greedy answers then repeat exactly from run to run.
        parallel: 1,
        queue: 4,
        threads: args.threads.unwrap_or_else(crate::parallel::cores),
        // The evaluation's own limit on one answer bounds the engine's waits too.
        first_token_timeout: args.timeout,
        request_timeout: args.timeout,
    };
    let handle = local.handles.pop();
    let model = local.model.model;
    let engine = tokio::task::spawn_blocking(move || EmbeddedEngine::start(model, handle, &options))
        .await
        .map_err(|e| format!("starting the engine panicked: {e}"))??;
    let mut serve_args = ServeArgs::parse_with_config(Vec::new()).map_err(|e| e.to_string())?;
    serve_args.gateway = GatewaySettings {
        dataset: Some(args.dataset.clone()),
        top_k: args.top_k,
        models_dir: args.models_dir.clone(),
        ..GatewaySettings::default()
    };
    serve_args.loaded_engine = Some(LoadedEngine::ready(Arc::new(engine)));
    let gateway = LocalGateway::start(serve_args).await?;
    Ok(Responder::Local(Asker::new(&gateway.url, None, None, args.timeout)?, gateway))
}
