//! `twin serve --twin ...`: several twins of one base model from one process and one port. Each
//! twin is a whole gateway of its own (its adapter, dataset, prompt log, lineage and metrics) on
//! a loopback port, all answering from one shared engine; in front, one router picks the twin a
//! request names in `model`, as vLLM picks an adapter, lists them all on `/v1/models`, and
//! serves their metrics together, each sample labelled with its `twin`.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tokio::sync::watch;

use super::api::ApiError;
use super::config::ServeArgs;

/// One twin of `--twin`: its name (what requests ask for in `model`), its adapter and dataset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TwinSpec {
    /// The model name clients ask for.
    pub name: String,
    /// Its GGUF adapter (else `--adapter`).
    pub adapter: Option<String>,
    /// Its dataset (else `--dataset`).
    pub dataset: Option<String>,
}

/// Reads `name=anna,adapter=/a.gguf,dataset=file:///d/anna` (adapter and dataset optional).
pub fn parse_twin(text: &str) -> Result<TwinSpec, String> {
    let mut spec = TwinSpec { name: String::new(), adapter: None, dataset: None };
    for part in text.split(',').filter(|p| !p.trim().is_empty()) {
        let (key, value) = part
            .split_once('=')
            .ok_or_else(|| format!("{part:?} is not key=value (name=anna,adapter=PATH,dataset=URI)"))?;
        let value = value.trim().to_string();
        match key.trim() {
            "name" => spec.name = value,
            "adapter" => spec.adapter = Some(value),
            "dataset" => spec.dataset = Some(value),
            other => return Err(format!("unknown key {other:?}: a twin takes name, adapter and dataset")),
        }
    }
    if spec.name.is_empty() {
        return Err(format!("{text:?} names no twin: name=... is required"));
    }
    Ok(spec)
}

/// What the front router knows: each twin's name and the base URL of its gateway.
struct Front {
    twins: BTreeMap<String, String>,
    client: reqwest::Client,
}

/// Serves the twins of `args.twins` on `listener` until `stop` ends.
pub async fn serve_twins(
    args: ServeArgs,
    listener: std::net::TcpListener,
    stop: impl Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    let mut each = Vec::new();
    for spec in &args.twins {
        if each.iter().any(|a: &ServeArgs| a.gateway.name.as_deref() == Some(spec.name.as_str())) {
            return Err(format!(
                "--twin name={} is given twice: each twin needs a name of its own",
                spec.name
            ));
        }
        let mut twin = args.clone();
        twin.twins.clear();
        twin.gateway.name = Some(spec.name.clone());
        twin.gateway.adapter = spec.adapter.clone().or(twin.gateway.adapter);
        twin.gateway.dataset = spec.dataset.clone().or(twin.gateway.dataset);
        each.push(twin);
    }
    // One copy of the base model answers them all, each with its own adapter.
    super::share_embedded_engines(&mut each.iter_mut().collect::<Vec<_>>());
    let (stopping, stopped) = watch::channel(false);
    let mut twins = BTreeMap::new();
    let mut gateways = tokio::task::JoinSet::new();
    for twin in each {
        let inner = super::bind("127.0.0.1:0")?;
        let address = inner.local_addr().map_err(|e| format!("cannot listen on loopback: {e}"))?;
        twins.insert(twin.gateway.name.clone().unwrap_or_default(), format!("http://{address}"));
        let mut stopped = stopped.clone();
        let until = async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        };
        gateways.spawn(super::serve(twin, inner, until, None));
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(256)
        .build()
        .map_err(|e| format!("cannot build the client of the twins' gateways: {e}"))?;
    let front = Arc::new(Front { twins, client });
    let app = Router::new()
        .route("/v1/chat/completions", post(by_model))
        .route("/v1/embeddings", post(by_model))
        .route("/v1/models", get(models))
        .route("/v1/models/{*id}", get(model))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(|| async {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                Some("unknown_url"),
                "no such route: see /v1/chat/completions, /v1/models and /v1/embeddings (several twins are served here: name one in model)",
            )
        })
        .layer(axum::extract::DefaultBodyLimit::max(args.max_body_bytes))
        .with_state(front);
    let listener = tokio::net::TcpListener::from_std(listener).map_err(|e| format!("cannot listen: {e}"))?;
    let server = axum::serve(listener, app).with_graceful_shutdown(stop);
    let failed = async {
        // A twin's gateway ends only when it cannot serve (its engine did not load).
        match gateways.join_next().await {
            Some(Ok(Err(message))) => message,
            Some(Ok(Ok(()))) => "a twin's gateway stopped".to_string(),
            Some(Err(e)) => format!("a twin's gateway panicked: {e}"),
            None => std::future::pending().await,
        }
    };
    let served = tokio::select! {
        served = server => served.map_err(|e| format!("the server failed: {e}")),
        message = failed => Err(message),
    };
    let _ = stopping.send(true);
    while gateways.join_next().await.is_some() {}
    served
}

/// A request whose `model` names no twin here, as an OpenAI error about that field.
fn refuse(status: StatusCode, code: &'static str, message: String) -> Response {
    let error = ApiError::new(status, "invalid_request_error", Some(code), message);
    ApiError { param: Some("model".into()), ..error }.into_response()
}

/// Forwards a request to the gateway of the twin its body names in `model`.
async fn by_model(
    State(front): State<Arc<Front>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let asked =
        serde_json::from_slice::<Value>(&body).ok().and_then(|v| v["model"].as_str().map(str::to_string));
    let names = front.twins.keys().cloned().collect::<Vec<_>>().join(", ");
    let twin = match asked {
        Some(name) => match front.twins.get(&name) {
            Some(url) => url,
            None => {
                return refuse(
                    StatusCode::NOT_FOUND,
                    "model_not_found",
                    format!("the model {name:?} does not exist here: this gateway serves the twins {names}"),
                );
            }
        },
        None if front.twins.len() == 1 => front.twins.values().next().expect("one twin"),
        None => {
            return refuse(
                StatusCode::BAD_REQUEST,
                "model_required",
                format!("several twins are served here ({names}): name one in model"),
            );
        }
    };
    forward(&front, reqwest::Method::POST, &format!("{twin}{}", uri.path()), &headers, Some(body)).await
}

/// Passes a request on to a twin's gateway and its answer back as it comes (streamed answers
/// included).
async fn forward(
    front: &Front,
    method: reqwest::Method,
    url: &str,
    headers: &HeaderMap,
    body: Option<Bytes>,
) -> Response {
    let mut request = front.client.request(method, url);
    for name in [header::AUTHORIZATION, header::CONTENT_TYPE, header::ACCEPT] {
        if let Some(value) = headers.get(&name) {
            request = request.header(name.as_str(), value.as_bytes());
        }
    }
    if let Some(body) = body {
        request = request.body(body);
    }
    let response = match request.send().await {
        Ok(response) => response,
        Err(e) => {
            return ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "service_unavailable",
                Some("not_ready"),
                format!("the twin's gateway does not answer: {}", crate::net::sse::innermost(&e)),
            )
            .into_response();
        }
    };
    let mut answer = Response::builder().status(response.status().as_u16());
    for name in ["content-type", "retry-after", "x-accel-buffering", "cache-control"] {
        if let Some(value) = response.headers().get(name) {
            answer = answer.header(name, value.as_bytes());
        }
    }
    // Chunk by chunk, as the twin writes them (a streamed answer's events pass at once).
    let stream = futures::stream::unfold(Some(response), |response| async move {
        let mut response = response?;
        match response.chunk().await {
            Ok(Some(chunk)) => Some((Ok(chunk), Some(response))),
            Ok(None) => None,
            Err(e) => Some((Err(std::io::Error::other(e)), None)),
        }
    });
    answer.body(Body::from_stream(stream)).unwrap_or_else(|_| StatusCode::BAD_GATEWAY.into_response())
}

/// Every twin's model card, in one list.
async fn models(State(front): State<Arc<Front>>, headers: HeaderMap) -> Response {
    let mut data = Vec::new();
    for url in front.twins.values() {
        let mut request = front.client.get(format!("{url}/v1/models"));
        if let Some(value) = headers.get(header::AUTHORIZATION) {
            request = request.header("authorization", value.as_bytes());
        }
        let response = match request.send().await {
            Ok(response) => response,
            Err(e) => {
                let message = format!("a twin's gateway does not answer: {}", crate::net::sse::innermost(&e));
                return ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "service_unavailable",
                    Some("not_ready"),
                    message,
                )
                .into_response();
            }
        };
        if !response.status().is_success() {
            // An API key refused, say: the twin's own answer.
            let status = response.status().as_u16();
            let body = response.bytes().await.unwrap_or_default();
            return (
                StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY),
                [(header::CONTENT_TYPE, "application/json")],
                body,
            )
                .into_response();
        }
        let listed: Value = response.json().await.unwrap_or_default();
        data.extend(listed["data"].as_array().cloned().unwrap_or_default());
    }
    axum::Json(json!({"object": "list", "data": data})).into_response()
}

/// One twin's model card.
async fn model(State(front): State<Arc<Front>>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    match front.twins.get(&id) {
        Some(url) => {
            forward(&front, reqwest::Method::GET, &format!("{url}/v1/models/{id}"), &headers, None).await
        }
        None => refuse(
            StatusCode::NOT_FOUND,
            "model_not_found",
            format!(
                "the model {id:?} does not exist here: this gateway serves the twins {}",
                front.twins.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        ),
    }
}

/// Ready once every twin is.
async fn readyz(State(front): State<Arc<Front>>) -> Response {
    let mut said = Vec::new();
    let mut ready = true;
    for (name, url) in &front.twins {
        let answer = front.client.get(format!("{url}/readyz")).send().await;
        let (ok, text) = match answer {
            Ok(response) => (response.status().is_success(), response.text().await.unwrap_or_default()),
            Err(e) => (false, e.to_string()),
        };
        ready &= ok;
        said.push(format!("{name}: {}", text.trim()));
    }
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, said.join("\n")).into_response()
}

/// The twins' metrics as one exposition: each family once, its samples labelled `twin`.
async fn metrics(State(front): State<Arc<Front>>) -> Response {
    let mut texts = Vec::new();
    for (name, url) in &front.twins {
        if let Ok(response) = front.client.get(format!("{url}/metrics")).send().await {
            texts.push((name.clone(), response.text().await.unwrap_or_default()));
        }
    }
    let body = merge_metrics(&texts);
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], body)
        .into_response()
}

/// OpenMetrics texts of several twins as one: a family's metadata once, then every twin's
/// samples of it (families must not interleave), each with a `twin` label first; one `# EOF`.
pub fn merge_metrics(texts: &[(String, String)]) -> String {
    let mut order: Vec<String> = Vec::new();
    let mut families: BTreeMap<String, (Vec<String>, Vec<String>)> = BTreeMap::new();
    for (twin, text) in texts {
        let mut current = String::new();
        for line in text.lines() {
            if line == "# EOF" || line.is_empty() {
                continue;
            }
            if let Some(meta) = line.strip_prefix("# ") {
                let mut words = meta.splitn(3, ' ');
                let (_, family) = (words.next(), words.next().unwrap_or_default().to_string());
                if !families.contains_key(&family) {
                    order.push(family.clone());
                }
                let entry = families.entry(family.clone()).or_default();
                if !entry.0.contains(&line.to_string()) {
                    entry.0.push(line.to_string());
                }
                current = family;
                continue;
            }
            let label = format!("twin=\"{}\"", twin.replace('\\', "\\\\").replace('"', "\\\""));
            let sample = match line.find('{') {
                Some(open) if line[..open].find(' ').is_none() => {
                    let rest = &line[open + 1..];
                    let separator = if rest.starts_with('}') { "" } else { "," };
                    format!("{}{{{label}{separator}{rest}", &line[..open])
                }
                _ => match line.split_once(' ') {
                    Some((name, value)) => format!("{name}{{{label}}} {value}"),
                    None => continue,
                },
            };
            families.entry(current.clone()).or_default().1.push(sample);
        }
    }
    let mut out = String::new();
    for family in order {
        let (meta, samples) = &families[&family];
        for line in meta.iter().chain(samples) {
            out.push_str(line);
            out.push('\n');
        }
    }
    out.push_str("# EOF\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twins_read_from_their_flags_or_say_why_not() {
        assert_eq!(
            parse_twin("name=anna,adapter=/a.gguf,dataset=file:///d/anna").unwrap(),
            TwinSpec {
                name: "anna".into(),
                adapter: Some("/a.gguf".into()),
                dataset: Some("file:///d/anna".into())
            }
        );
        assert!(parse_twin("adapter=/a.gguf").unwrap_err().contains("name=... is required"));
        assert!(parse_twin("name=anna,colour=blue").unwrap_err().contains("unknown key \"colour\""));
    }

    #[test]
    fn metrics_of_several_twins_are_one_exposition_with_a_twin_label() {
        let anna = "# HELP twin_gateway_in_flight Requests.\n# TYPE twin_gateway_in_flight gauge\ntwin_gateway_in_flight 1\n# TYPE twin_gateway_requests counter\ntwin_gateway_requests_total{route=\"/v1/chat/completions\",status=\"200\"} 3\n# EOF\n";
        let ben = anna.replace(" 1\n", " 2\n").replace("} 3", "} 5");
        let merged = merge_metrics(&[("anna".into(), anna.into()), ("ben".into(), ben)]);
        assert_eq!(
            merged,
            "# HELP twin_gateway_in_flight Requests.\n# TYPE twin_gateway_in_flight gauge\ntwin_gateway_in_flight{twin=\"anna\"} 1\ntwin_gateway_in_flight{twin=\"ben\"} 2\n# TYPE twin_gateway_requests counter\ntwin_gateway_requests_total{twin=\"anna\",route=\"/v1/chat/completions\",status=\"200\"} 3\ntwin_gateway_requests_total{twin=\"ben\",route=\"/v1/chat/completions\",status=\"200\"} 5\n# EOF\n"
        );
    }
}
