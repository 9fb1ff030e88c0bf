//! A fault-injecting proxy in front of the real API server, for what it will not do on request:
//! answer 500, 409 or 429 (with Retry-After), close watches mid-stream, answer slowly. Every
//! other request goes through unchanged, with the credentials the proxy was given (so RBAC
//! still judges the operator), and each one is logged for the tests to count.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Method, Request, Response, StatusCode, Uri, header};
use futures::StreamExt;
use serde_json::json;

/// The verbs, as the API server's RBAC and audit name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Get,
    List,
    Watch,
    Create,
    Update,
    Patch,
    Delete,
    DeleteCollection,
}

/// One request to a resource that went through the proxy (or was failed by it).
#[derive(Debug, Clone)]
pub struct RequestRecord {
    pub verb: Verb,
    pub plural: String,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
}

/// Requests to fail on purpose: the next `remaining` that match.
#[derive(Debug, Clone)]
struct FaultRule {
    verb: Option<Verb>,
    plural: Option<String>,
    subresource: Option<String>,
    code: u16,
    remaining: usize,
}

struct Shared {
    upstream: kube::Client,
    faults: Mutex<Vec<FaultRule>>,
    delay: Mutex<Duration>,
    close_watches: tokio::sync::watch::Sender<u64>,
    requests: Mutex<Vec<RequestRecord>>,
}

/// A running proxy on 127.0.0.1; dropping it stops it.
pub struct FaultProxy {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FaultProxy {
    /// Starts a proxy whose requests reach the API server as `upstream` (its address, CA and
    /// credentials).
    pub async fn start(upstream: kube::Client) -> Self {
        let shared = Arc::new(Shared {
            upstream,
            faults: Mutex::new(Vec::new()),
            delay: Mutex::new(Duration::ZERO),
            close_watches: tokio::sync::watch::channel(0).0,
            requests: Mutex::new(Vec::new()),
        });
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let app = axum::Router::new().fallback(forward).with_state(shared.clone());
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self { url, shared, server }
    }

    /// A client that talks to the API server through the proxy, with `default` as its namespace
    /// (the proxy adds the credentials).
    pub fn client(&self) -> kube::Client {
        let mut config = kube::Config::new(self.url.parse().unwrap());
        config.default_namespace = "default".into();
        kube::Client::try_from(config).unwrap()
    }

    /// Fails the next `count` requests of a verb (any when `None`) on a resource (any when
    /// `None`) with an HTTP status.
    pub fn fail_next(&self, verb: Option<Verb>, plural: Option<&str>, code: u16, count: usize) {
        self.inject(FaultRule {
            verb,
            plural: plural.map(String::from),
            subresource: None,
            code,
            remaining: count,
        });
    }

    /// Like [`Self::fail_next`], for requests to one subresource (`status`).
    pub fn fail_next_subresource(
        &self,
        verb: Verb,
        plural: &str,
        subresource: &str,
        code: u16,
        count: usize,
    ) {
        self.inject(FaultRule {
            verb: Some(verb),
            plural: Some(plural.into()),
            subresource: Some(subresource.into()),
            code,
            remaining: count,
        });
    }

    fn inject(&self, rule: FaultRule) {
        self.shared.faults.lock().unwrap().push(rule);
    }

    /// The injected faults not (all) used yet, described.
    pub fn unused_faults(&self) -> Vec<String> {
        let faults = self.shared.faults.lock().unwrap();
        faults.iter().filter(|r| r.remaining > 0).map(|r| format!("{r:?}")).collect()
    }

    /// Ends every watch stream open through the proxy (clients must watch again).
    pub fn close_watches(&self) {
        self.shared.close_watches.send_modify(|generation| *generation += 1);
    }

    /// Delays every answer by `delay`.
    pub fn set_delay(&self, delay: Duration) {
        *self.shared.delay.lock().unwrap() = delay;
    }

    /// Every request to a resource so far, in order.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.shared.requests.lock().unwrap().clone()
    }
}

/// What a request path names: `/api/v1/namespaces/ns/pods/name/status` and the like.
struct Target {
    namespace: Option<String>,
    plural: String,
    name: Option<String>,
    subresource: Option<String>,
}

/// The resource a path names; `None` for discovery, `/version` and other paths that are not one.
fn resource_of(path: &str) -> Option<Target> {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let rest = match segments.as_slice() {
        ["api", _version, rest @ ..] => rest,
        ["apis", _group, _version, rest @ ..] => rest,
        _ => return None,
    };
    let (namespace, rest) = match rest {
        // `namespaces/NAME` alone (or with a subresource) is the Namespace itself.
        ["namespaces", namespace, plural, tail @ ..] if !matches!(*plural, "status" | "finalize") => {
            (Some(namespace.to_string()), [&[*plural][..], tail].concat())
        }
        _ => (None, rest.to_vec()),
    };
    let owned = |s: &&str| s.to_string();
    let (plural, name, subresource) = match rest.as_slice() {
        [plural] => (plural, None, None),
        [plural, name] => (plural, Some(owned(name)), None),
        [plural, name, sub] => (plural, Some(owned(name)), Some(owned(sub))),
        _ => return None,
    };
    Some(Target { namespace, plural: plural.to_string(), name, subresource })
}

fn verb_of(method: &Method, named: bool, query: &str) -> Option<Verb> {
    let watch =
        form_urlencoded::parse(query.as_bytes()).any(|(k, v)| k == "watch" && (v == "true" || v == "1"));
    Some(match (method, named) {
        (&Method::GET, _) if watch => Verb::Watch,
        (&Method::GET, true) => Verb::Get,
        (&Method::GET, false) => Verb::List,
        (&Method::POST, _) => Verb::Create,
        (&Method::PUT, true) => Verb::Update,
        (&Method::PATCH, true) => Verb::Patch,
        (&Method::DELETE, true) => Verb::Delete,
        (&Method::DELETE, false) => Verb::DeleteCollection,
        _ => return None,
    })
}

/// The Status the API server answers errors with, so clients parse it as they would a real one.
fn injected(code: u16, request: &RequestRecord) -> Response<Body> {
    let reason = match code {
        409 => "Conflict",
        429 => "TooManyRequests",
        500 => "InternalError",
        503 => "ServiceUnavailable",
        _ => "Unknown",
    };
    let status = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "code": code, "reason": reason,
        "message": format!("injected by the test's fault proxy: {code} on {:?} {}", request.verb, request.plural),
        "details": {"name": request.name, "kind": request.plural},
    });
    let mut response = Response::builder().status(code).header(header::CONTENT_TYPE, "application/json");
    if code == 429 {
        response = response.header(header::RETRY_AFTER, "1");
    }
    response.body(Body::from(status.to_string())).unwrap()
}

async fn forward(State(shared): State<Arc<Shared>>, request: Request<Body>) -> Response<Body> {
    let (parts, body) = request.into_parts();
    let delay = *shared.delay.lock().unwrap();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let path = parts.uri.path();
    let query = parts.uri.query().unwrap_or_default();
    let mut is_watch = false;
    if let Some(Target { namespace, plural, name, subresource }) = resource_of(path)
        && let Some(verb) = verb_of(&parts.method, name.is_some(), query)
    {
        is_watch = verb == Verb::Watch;
        let record = RequestRecord { verb, plural, namespace, name, subresource };
        shared.requests.lock().unwrap().push(record.clone());
        let fault = {
            let mut faults = shared.faults.lock().unwrap();
            faults
                .iter_mut()
                .find(|r| {
                    r.remaining > 0
                        && r.verb.is_none_or(|v| v == verb)
                        && r.plural.as_deref().is_none_or(|p| p == record.plural)
                        && r.subresource.as_deref().is_none_or(|s| Some(s) == record.subresource.as_deref())
                })
                .map(|rule| {
                    rule.remaining -= 1;
                    rule.code
                })
        };
        if let Some(code) = fault {
            return injected(code, &record);
        }
    }
    let body = match axum::body::to_bytes(body, 16 << 20).await {
        Ok(body) => body,
        Err(e) => return plain(StatusCode::BAD_REQUEST, format!("cannot read the request: {e}")),
    };
    let uri: Uri = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/").parse().unwrap();
    let mut upstream = Request::builder().method(parts.method).uri(uri);
    for (name, value) in copied(&parts.headers) {
        upstream = upstream.header(name, value);
    }
    let upstream = upstream.body(kube::client::Body::from(body.to_vec())).unwrap();
    let answer = match shared.upstream.send(upstream).await {
        Ok(answer) => answer,
        Err(e) => return plain(StatusCode::BAD_GATEWAY, format!("the API server did not answer: {e}")),
    };
    let (parts, body) = answer.into_parts();
    let mut response = Response::builder().status(parts.status);
    for (name, value) in copied(&parts.headers) {
        response = response.header(name, value);
    }
    let body = Body::new(body);
    if !is_watch {
        return response.body(body).unwrap();
    }
    // A watch ends when the test closes watches, as a real stream cut by a load balancer would.
    let mut closed = shared.close_watches.subscribe();
    closed.mark_unchanged();
    let stream = body.into_data_stream().take_until(async move {
        let _ = closed.changed().await;
    });
    response.body(Body::from_stream(stream)).unwrap()
}

/// The headers that describe the content, not the connection or who sends it.
fn copied(headers: &HeaderMap) -> impl Iterator<Item = (&header::HeaderName, &header::HeaderValue)> {
    headers.iter().filter(|(name, _)| {
        !matches!(
            *name,
            &header::HOST
                | &header::AUTHORIZATION
                | &header::CONTENT_LENGTH
                | &header::CONNECTION
                | &header::TRANSFER_ENCODING
        )
    })
}

fn plain(code: StatusCode, message: String) -> Response<Body> {
    Response::builder().status(code).body(Body::from(message)).unwrap()
}
