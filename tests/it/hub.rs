//! `hf://` models downloaded from a Hub (a fake one on 127.0.0.1 serving the real
//! all-MiniLM-L6-v2 files) into the models folder once, then found there.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::extract::Path as UrlPath;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use serde_json::json;
use twin_operator::embedding::resolve_model;
use twin_operator::net::http::Fetcher;
use twin_operator::pipeline::{BuildError, build};
use twin_operator::storage::hub::HubOptions;

use super::pipeline::{Scratch, corpus, dataset, model_dir, options};
use crate::support::serve::serve;

/// Serves `/<org>/<name>/resolve/<revision>/<file>` from the local model folder; the gated
/// organisation wants a token.
async fn fake_hub(requests: Arc<AtomicUsize>) -> std::net::SocketAddr {
    let handler = move |UrlPath((org, name, revision, file)): UrlPath<(String, String, String, String)>,
                        headers: HeaderMap| {
        let requests = requests.clone();
        async move {
            requests.fetch_add(1, Ordering::SeqCst);
            let token = headers.get("authorization").and_then(|v| v.to_str().ok());
            if org == "gated" && token != Some("Bearer hf_test") {
                return Err(StatusCode::UNAUTHORIZED);
            }
            if name != "all-MiniLM-L6-v2" || revision != "main" || file.contains("..") {
                return Err(StatusCode::NOT_FOUND);
            }
            std::fs::read(model_dir().join(&file)).map_err(|_| StatusCode::NOT_FOUND)
        }
    };
    let app = axum::Router::new().route("/{org}/{name}/resolve/{revision}/{*file}", get(handler));
    serve(app).await
}

#[tokio::test]
async fn hf_models_are_downloaded_once_into_the_models_folder() {
    let scratch = Scratch::new("hub");
    corpus(&scratch);
    let requests = Arc::new(AtomicUsize::new(0));
    let addr = fake_hub(requests.clone()).await;
    let mut options = options(&scratch);
    options.fetch.guard = twin_operator::net::NetworkGuard::new("127.0.0.1/32").unwrap();
    options.models_dir = Some(scratch.0.join("models"));
    options.hub = HubOptions { endpoint: format!("http://{addr}"), token: None };
    let mut spec = dataset(&scratch, None);
    spec.spec.embedding =
        serde_json::from_value(json!({"model": "hf://sentence-transformers/all-MiniLM-L6-v2"})).unwrap();
    let result = build(&spec, &options).await.unwrap();
    assert!(result.stats.chunks > 0);
    let folder = scratch.0.join("models/sentence-transformers/all-MiniLM-L6-v2");
    for file in [
        "config.json",
        "tokenizer.json",
        "model.safetensors",
        "sentence_bert_config.json",
        "1_Pooling/config.json",
    ] {
        assert_eq!(
            std::fs::read(folder.join(file)).unwrap(),
            std::fs::read(model_dir().join(file)).unwrap(),
            "{file} is the Hub's file"
        );
    }
    assert!(
        !std::fs::read_dir(&folder).unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .ends_with(".partial"))
    );
    // Found in the models folder from now on: no request.
    let before = requests.load(Ordering::SeqCst);
    let fetcher = Fetcher::new(options.fetch.clone()).unwrap();
    let again = resolve_model(
        "hf://sentence-transformers/all-MiniLM-L6-v2",
        options.models_dir.as_deref(),
        &options.hub,
        &fetcher,
    )
    .await
    .unwrap();
    assert_eq!((again, requests.load(Ordering::SeqCst)), (folder, before));

    // A gated model without a token, and a model that does not exist: clear errors, no folder.
    let hub = HubOptions { endpoint: format!("http://{addr}"), token: None };
    let gated = resolve_model("hf://gated/all-MiniLM-L6-v2", options.models_dir.as_deref(), &hub, &fetcher)
        .await
        .unwrap_err();
    assert!(gated.contains("HTTP 401") && gated.contains("HF_TOKEN"), "{gated}");
    assert!(!scratch.0.join("models/gated/all-MiniLM-L6-v2/config.json").exists());
    let with_token = HubOptions { token: Some("hf_test".into()), ..hub };
    resolve_model("hf://gated/all-MiniLM-L6-v2", options.models_dir.as_deref(), &with_token, &fetcher)
        .await
        .unwrap();
    spec.spec.embedding.model = "hf://nobody/no-such-model".into();
    let missing = build(&spec, &options).await.unwrap_err();
    assert!(matches!(missing, BuildError::ModelDownload(_)), "{missing}");
    assert!(missing.to_string().contains("no such model"), "{missing}");
}
