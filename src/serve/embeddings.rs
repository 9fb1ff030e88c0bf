//! `POST /v1/embeddings`: the dataset's own embedding model, as floats or base64.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::api::ApiError;
use super::gateway::{Gateway, InFlight, JsonBody, admit, internal, not_ready, refused};

/// `input` of an embeddings request.
#[derive(serde::Deserialize)]
#[serde(untagged)]
enum EmbeddingInput {
    One(String),
    Many(Vec<String>),
}

#[derive(serde::Deserialize)]
pub(super) struct EmbeddingsRequest {
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

pub(super) async fn embeddings(
    State(gateway): State<Arc<Gateway>>,
    JsonBody(request): JsonBody<EmbeddingsRequest>,
) -> Response {
    let permit = match admit(&gateway) {
        Ok(permit) => InFlight::new(gateway.metrics.clone(), permit),
        Err(error) => return error.into_response(),
    };
    let result = async {
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
