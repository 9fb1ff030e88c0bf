//! The state every reconcile shares: the client, settings, metrics, the Event recorder, and
//! per-object failure counts for backoff.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use kube::api::Api;
use kube::runtime::events::{Recorder, Reporter};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;

use super::error::{Error, Result};
use super::metrics::Metrics;
use super::settings::OperatorSettings;
use super::training::sagemaker::client::SageMakerClients;

/// The field manager of every server-side apply the operator makes, children and status alike.
pub const FIELD_MANAGER: &str = "twin-operator";

/// Shared by the controllers.
pub struct Context {
    /// The Kubernetes client.
    pub client: Client,
    /// The operator's settings.
    pub settings: OperatorSettings,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// Publishes Kubernetes Events.
    pub recorder: Recorder,
    /// Clients of the sagemaker training backend.
    pub sagemaker: SageMakerClients,
    /// What reads the shared engines' adapter agents.
    pub http: reqwest::Client,
    failures: Mutex<HashMap<String, u32>>,
}

impl Context {
    /// A context for one operator replica.
    pub fn new(client: Client, settings: OperatorSettings, metrics: Arc<Metrics>) -> Self {
        let reporter = Reporter { controller: FIELD_MANAGER.into(), instance: Some(settings.identity()) };
        let recorder = Recorder::new(client.clone(), reporter);
        let sagemaker =
            SageMakerClients::new(settings.sagemaker_client.clone(), settings.sagemaker_endpoint_url.clone());
        // reqwest is built without a TLS provider of its own: the process's is ring.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(3))
            .no_proxy()
            .build()
            .expect("an HTTP client without TLS settings builds");
        Self { client, settings, metrics, recorder, sagemaker, http, failures: Mutex::new(HashMap::new()) }
    }

    /// The API of a kind across the watched namespaces (one, or all).
    pub fn watched_api<K>(&self) -> Api<K>
    where
        K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
            + DeserializeOwned
            + Clone
            + std::fmt::Debug,
    {
        if self.settings.watch_namespace.is_empty() {
            Api::all(self.client.clone())
        } else {
            Api::namespaced(self.client.clone(), &self.settings.watch_namespace)
        }
    }

    /// The API of a kind in one namespace.
    pub fn namespaced_api<K>(&self, namespace: &str) -> Api<K>
    where
        K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
            + DeserializeOwned
            + Clone
            + std::fmt::Debug,
    {
        Api::namespaced(self.client.clone(), namespace)
    }

    /// Reads an object the reconcile depends on; `None` when it does not exist.
    pub async fn fetch<K>(&self, namespace: &str, name: &str) -> Result<Option<K>>
    where
        K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
            + DeserializeOwned
            + Clone
            + std::fmt::Debug,
    {
        self.namespaced_api::<K>(namespace).get_opt(name).await.map_err(|source| Error::Fetch {
            kind: K::kind(&()).into(),
            name: name.into(),
            source,
        })
    }

    /// Counts a transient failure of an object; returns how many in a row.
    pub fn record_failure(&self, key: &str) -> u32 {
        let mut failures = self.failures.lock().expect("failure counts lock");
        let count = failures.entry(key.to_string()).or_default();
        *count += 1;
        *count
    }

    /// Forgets an object's failures after a successful reconcile.
    pub fn clear_failures(&self, key: &str) {
        self.failures.lock().expect("failure counts lock").remove(key);
    }
}
