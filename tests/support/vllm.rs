//! A scripted vLLM on 127.0.0.1 with its runtime LoRA API, answering as vLLM's source does
//! (`vllm/entrypoints/serve/lora/api_router.py`, `vllm/entrypoints/openai/models/serving.py`,
//! `vllm/exceptions.py`):
//!
//! - `POST /v1/load_lora_adapter {"lora_name", "lora_path", "load_inplace"}`: 200 and
//!   `Success: LoRA adapter '<name>' added successfully.` as plain text; 400 `InvalidUserInput`
//!   without both fields, or for a name already loaded without `load_inplace` ("The lora adapter
//!   '<name>' has already been loaded. If you want to load the adapter in place, set
//!   'load_inplace' to True."); 404 `NotFoundError` "Loading lora <name> failed: No adapter
//!   found for <path>" when the path holds no `adapter_config.json`; 500
//!   `InternalServerError` with the engine's words when it cannot load it (here: a rank above
//!   `--max-lora-rank`, "LoRA rank <r> is greater than max_lora_rank <max>.").
//! - `POST /v1/unload_lora_adapter {"lora_name"}`: 200 and `Success: LoRA adapter '<name>'
//!   removed successfully.`; 400 without a name; 404 `NotFoundError` "The lora adapter '<name>'
//!   cannot be found.".
//! - `GET /v1/models`: the base model, then each adapter with its `root` (path) and `parent`.
//! - `POST /v1/chat/completions`, streamed or not, answered by the model it names: an adapter
//!   answers `<name> answers with <path>` (the version loaded now), the base model `<base>
//!   answers`; any other name gets 404 `NotFoundError` "The model `<name>` does not exist.".
//!
//! Errors are `{"error": {"message", "type", "param", "code"}}` with `code` the status. It keeps
//! every runtime LoRA call it received.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::support::gateway::{chunk, sse};

/// The scripted engine's state.
#[derive(Clone)]
pub struct ScriptedVllm {
    /// The served base model's name.
    pub base: String,
    /// `--max-lora-rank`.
    pub max_lora_rank: u64,
    /// Whether it knows `load_inplace` (vLLM from January 2026 on); older ones ignore it.
    pub load_inplace: bool,
    /// Loaded adapters: name → path.
    pub loaded: Arc<Mutex<BTreeMap<String, String>>>,
    /// Every runtime LoRA call: (route, body).
    pub calls: Arc<Mutex<Vec<(String, Value)>>>,
}

impl ScriptedVllm {
    /// An engine serving `base` with `--max-lora-rank max_lora_rank`.
    pub fn new(base: &str, max_lora_rank: u64) -> Self {
        Self {
            base: base.into(),
            max_lora_rank,
            load_inplace: true,
            loaded: Arc::default(),
            calls: Arc::default(),
        }
    }

    /// Serves it; returns its address (without `/v1`).
    pub async fn start(&self) -> String {
        let app = Router::new()
            .route("/health", get(|| async { StatusCode::OK }))
            .route("/v1/models", get(models))
            .route("/v1/load_lora_adapter", post(load))
            .route("/v1/unload_lora_adapter", post(unload))
            .route("/v1/chat/completions", post(chat))
            .with_state(self.clone());
        let addr: SocketAddr = crate::support::serve::serve(app).await;
        format!("http://{addr}")
    }

    /// The calls of one route, their `lora_name`s in order.
    pub fn calls_of(&self, route: &str) -> Vec<Value> {
        self.calls.lock().unwrap().iter().filter(|(r, _)| r == route).map(|(_, body)| body.clone()).collect()
    }

    /// The loaded adapters, name → path.
    pub fn loaded(&self) -> BTreeMap<String, String> {
        self.loaded.lock().unwrap().clone()
    }
}

fn error(status: StatusCode, kind: &str, message: String) -> Response {
    let body = json!({"error": {"message": message, "type": kind, "param": null, "code": status.as_u16()}});
    (status, axum::Json(body)).into_response()
}

async fn models(State(vllm): State<ScriptedVllm>) -> axum::Json<Value> {
    let mut data = vec![json!({"id": vllm.base, "object": "model", "root": vllm.base, "parent": null})];
    for (name, path) in vllm.loaded() {
        data.push(json!({"id": name, "object": "model", "root": path, "parent": vllm.base}));
    }
    axum::Json(json!({"object": "list", "data": data}))
}

async fn load(State(vllm): State<ScriptedVllm>, axum::Json(body): axum::Json<Value>) -> Response {
    vllm.calls.lock().unwrap().push(("load_lora_adapter".into(), body.clone()));
    let (Some(name), Some(path)) = (body["lora_name"].as_str(), body["lora_path"].as_str()) else {
        return error(
            StatusCode::BAD_REQUEST,
            "InvalidUserInput",
            "Both 'lora_name' and 'lora_path' must be provided.".into(),
        );
    };
    let inplace = vllm.load_inplace && body["load_inplace"].as_bool().unwrap_or(false);
    if !inplace && vllm.loaded.lock().unwrap().contains_key(name) {
        return error(
            StatusCode::BAD_REQUEST,
            "InvalidUserInput",
            format!(
                "The lora adapter '{name}' has already been loaded. If you want to load the adapter in place, set 'load_inplace' to True."
            ),
        );
    }
    let config = std::fs::read_to_string(std::path::Path::new(path).join("adapter_config.json"));
    let Ok(config) = config else {
        return error(
            StatusCode::NOT_FOUND,
            "NotFoundError",
            format!("Loading lora {name} failed: No adapter found for {path}"),
        );
    };
    let rank = serde_json::from_str::<Value>(&config).ok().and_then(|c| c["r"].as_u64()).unwrap_or(8);
    if rank > vllm.max_lora_rank {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalServerError",
            format!("LoRA rank {rank} is greater than max_lora_rank {}.", vllm.max_lora_rank),
        );
    }
    vllm.loaded.lock().unwrap().insert(name.into(), path.into());
    (StatusCode::OK, format!("Success: LoRA adapter '{name}' added successfully.")).into_response()
}

async fn unload(State(vllm): State<ScriptedVllm>, axum::Json(body): axum::Json<Value>) -> Response {
    vllm.calls.lock().unwrap().push(("unload_lora_adapter".into(), body.clone()));
    let Some(name) = body["lora_name"].as_str() else {
        return error(
            StatusCode::BAD_REQUEST,
            "InvalidUserInput",
            "'lora_name' needs to be provided to unload a LoRA adapter.".into(),
        );
    };
    if vllm.loaded.lock().unwrap().remove(name).is_none() {
        return error(
            StatusCode::NOT_FOUND,
            "NotFoundError",
            format!("The lora adapter '{name}' cannot be found."),
        );
    }
    (StatusCode::OK, format!("Success: LoRA adapter '{name}' removed successfully.")).into_response()
}

async fn chat(State(vllm): State<ScriptedVllm>, axum::Json(body): axum::Json<Value>) -> Response {
    let asked = body["model"].as_str().unwrap_or_default();
    let text = match vllm.loaded().get(asked) {
        Some(path) => format!("{asked} answers with {path}"),
        None if asked == vllm.base => format!("{asked} answers"),
        None => {
            return error(
                StatusCode::NOT_FOUND,
                "NotFoundError",
                format!("The model `{asked}` does not exist."),
            );
        }
    };
    if !body["stream"].as_bool().unwrap_or(false) {
        return axum::Json(json!({
            "id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": asked,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}]
        }))
        .into_response();
    }
    let end = json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 0, "model": asked,
                     "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]});
    let now = std::time::Duration::ZERO;
    sse(vec![(now, chunk(&text)), (now, format!("data: {end}\n\ndata: [DONE]\n\n").into())])
}
