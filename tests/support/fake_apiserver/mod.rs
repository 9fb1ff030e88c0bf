//! An in-process fake Kubernetes API server on 127.0.0.1 that `kube::Client` and `kubectl` talk
//! to over HTTP: CRUD, list and watch with resource versions, JSON merge / JSON / strategic
//! patches, server-side apply with field managers, the status subresource, generation,
//! finalizers and deletion, owner-reference garbage collection, label selectors, Leases,
//! validation of the twin CRDs (OpenAPI + CEL) with 422s, discovery and Tables for kubectl,
//! fault injection, and helpers that play the Job controller and the kubelet, also served
//! over a small admin HTTP API (`admin.rs`) for scripts and people.

mod admin;
mod builtin;
mod fields;
mod http;
mod kubelet;
mod patch;
mod registry;
mod selector;
mod store;
mod table;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

pub use store::{ObjectKey, Store};

/// The verbs, for fault injection and the request log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verb {
    Get,
    List,
    Watch,
    Create,
    Update,
    Patch,
    Delete,
    #[serde(rename = "deletecollection")]
    DeleteCollection,
}

/// One request the server received.
#[derive(Debug, Clone)]
pub struct RequestRecord {
    pub verb: Verb,
    pub plural: String,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
}

/// Requests to fail on purpose: the next `remaining` that match.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct FaultRule {
    /// The verb, any when unset.
    #[serde(default)]
    pub verb: Option<Verb>,
    /// The resource's plural (`cronjobs`), any when unset.
    #[serde(default, rename = "resource")]
    pub plural: Option<String>,
    /// The subresource (`status`), any when unset.
    #[serde(default)]
    pub subresource: Option<String>,
    /// The HTTP status to answer with.
    pub code: u16,
    /// The message of the Status answered, a generic one when unset.
    #[serde(default)]
    pub message: Option<String>,
    /// How many requests fail.
    #[serde(default = "one", rename = "count")]
    pub remaining: usize,
}

fn one() -> usize {
    1
}

/// State shared by the HTTP handlers and the test.
pub struct Shared {
    pub store: Mutex<Store>,
    faults: Mutex<Vec<FaultRule>>,
    delay: Mutex<Duration>,
    close_watches: tokio::sync::watch::Sender<u64>,
    requests: Mutex<Vec<RequestRecord>>,
}

impl Shared {
    fn record(
        &self,
        verb: Verb,
        plural: &str,
        namespace: Option<&str>,
        name: Option<&str>,
        subresource: Option<&str>,
    ) {
        self.requests.lock().unwrap().push(RequestRecord {
            verb,
            plural: plural.into(),
            namespace: namespace.map(String::from),
            name: name.map(String::from),
            subresource: subresource.map(String::from),
        });
    }

    fn take_fault(
        &self,
        verb: Verb,
        plural: &str,
        subresource: Option<&str>,
    ) -> Option<(u16, Option<String>)> {
        let mut faults = self.faults.lock().unwrap();
        let rule = faults.iter_mut().find(|r| {
            r.remaining > 0
                && r.verb.is_none_or(|v| v == verb)
                && r.plural.as_deref().is_none_or(|p| p == plural)
                && r.subresource.as_deref().is_none_or(|s| Some(s) == subresource)
        })?;
        rule.remaining -= 1;
        Some((rule.code, rule.message.clone()))
    }

    /// Fails the next requests a rule matches.
    pub fn inject(&self, rule: FaultRule) {
        self.faults.lock().unwrap().push(rule);
    }

    /// Fails the next `count` requests of a verb (any verb when `None`) on a resource (any when
    /// `None`) with an HTTP status (500 or 409 in the tests).
    pub fn fail_next(&self, verb: Option<Verb>, plural: Option<&str>, code: u16, count: usize) {
        self.inject(FaultRule {
            verb,
            plural: plural.map(String::from),
            subresource: None,
            code,
            message: None,
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
            message: None,
            remaining: count,
        });
    }

    /// Forgets every fault not yet used.
    pub fn clear_faults(&self) {
        self.faults.lock().unwrap().clear();
    }

    /// Ends every open watch stream (clients must re-watch).
    pub fn close_watches(&self) {
        self.close_watches.send_modify(|generation| *generation += 1);
    }

    /// Delays every response.
    pub fn set_delay(&self, delay: Duration) {
        *self.delay.lock().unwrap() = delay;
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.requests.lock().unwrap().clone()
    }

    /// An object, as stored.
    pub fn get(&self, api_version: &str, kind: &str, namespace: &str, name: &str) -> Option<Value> {
        let store = self.store.lock().unwrap();
        let type_index = store.type_of_kind(api_version, kind)?;
        let namespace = if store.types[type_index].namespaced { namespace } else { "" };
        store.get(&ObjectKey { type_index, namespace: namespace.into(), name: name.into() }).ok()
    }

    /// Every stored object of a kind.
    pub fn list(&self, api_version: &str, kind: &str) -> Vec<Value> {
        let store = self.store.lock().unwrap();
        let Some(type_index) = store.type_of_kind(api_version, kind) else { return Vec::new() };
        store.list(type_index, None, &selector::LabelSelector::default(), "")
    }
}

/// A running fake API server. Dropping it stops the server.
pub struct FakeApiServer {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    pub addr: SocketAddr,
    pub shared: Arc<Shared>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl FakeApiServer {
    /// Starts on a free port of 127.0.0.1.
    pub async fn start() -> Self {
        Self::start_on("127.0.0.1:0".parse().unwrap()).await
    }

    /// Starts on a given address (port 0 picks a free one).
    pub async fn start_on(addr: SocketAddr) -> Self {
        let shared = Arc::new(Shared {
            store: Mutex::new(Store::new(registry::default_types())),
            faults: Mutex::new(Vec::new()),
            delay: Mutex::new(Duration::ZERO),
            close_watches: tokio::sync::watch::channel(0).0,
            requests: Mutex::new(Vec::new()),
        });
        let listener = tokio::net::TcpListener::bind(addr).await.expect("bind the fake API server");
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new()
            .nest("/admin", admin::router())
            .fallback(http::handle)
            .with_state(shared.clone());
        let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    stopped.await.ok();
                })
                .await
                .ok();
        });
        Self { url: format!("http://{addr}"), addr, shared, shutdown: Some(shutdown) }
    }

    /// A client for this server, with `default` as its namespace.
    pub fn client(&self) -> kube::Client {
        let mut config = kube::Config::new(self.url.parse().unwrap());
        config.default_namespace = "default".into();
        config.read_timeout = Some(Duration::from_secs(330));
        kube::Client::try_from(config).expect("a client for the fake API server")
    }

    /// A kubeconfig for kubectl and for `twin operator`.
    pub fn kubeconfig(&self) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: twin-fake\n  cluster:\n    server: {url}\ncontexts:\n- name: twin-fake\n  context:\n    cluster: twin-fake\n    user: twin-fake\n    namespace: default\ncurrent-context: twin-fake\nusers:\n- name: twin-fake\n  user:\n    token: fake\n",
            url = self.url
        )
    }

    /// Writes [`Self::kubeconfig`] to a file of its own in the temporary folder, named after
    /// `purpose`, this process and the server's port; returns its path.
    pub fn write_kubeconfig(&self, purpose: &str) -> std::path::PathBuf {
        let path = std::env::temp_dir().join(format!(
            "twin-{purpose}-{}-{}.kubeconfig",
            std::process::id(),
            self.addr.port()
        ));
        std::fs::write(&path, self.kubeconfig()).expect("the kubeconfig is written");
        path
    }

    /// Stops serving; open watches end.
    pub fn stop(&mut self) {
        self.close_watches();
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

/// The server's state and helpers (faults, the Job controller's and kubelet's parts) are
/// reachable from the server itself.
impl std::ops::Deref for FakeApiServer {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.shared
    }
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        self.stop();
    }
}
