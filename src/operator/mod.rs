//! `twin operator`: the controllers for the three twin kinds, run by the replica that holds
//! the leader Lease, with the metrics and health server beside them.
//!
//! Start-up checks that the API server answers (and exits with a clear message when it does
//! not), then campaigns for the Lease; the leader runs the controllers until it stops leading
//! or is asked to shut down, and releases the Lease on the way out.

pub mod children;
pub mod conditions;
pub mod context;
pub mod dataset;
pub mod driver;
pub mod endpoint;
pub mod engine;
pub mod error;
pub mod http;
pub mod leader;
pub mod metrics;
pub mod references;
pub mod settings;
pub mod training;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::runtime::reflector::Store;
use kube::{Api, Client};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::api::{TwinDataset, TwinEndpoint, TwinEngine, TwinTrainingJob};
use context::Context;
use http::Health;
use leader::{LeaderElector, Leadership};
use metrics::{Metrics, PhaseLabels};
pub use settings::OperatorSettings;

/// Why the operator could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The API server did not answer.
    #[error("cannot reach the Kubernetes API server at {url}: {reason}")]
    Unreachable {
        /// The server's URL.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// The metrics address could not be bound.
    #[error("cannot serve /metrics on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// What went wrong.
        source: std::io::Error,
    },
}

/// The caches of the four controllers.
type Stores = (Store<TwinDataset>, Store<TwinTrainingJob>, Store<TwinEndpoint>, Store<TwinEngine>);

/// The caches of the running controllers, for the objects-by-phase gauge.
#[derive(Default)]
struct Caches(Mutex<Option<Stores>>);

impl Caches {
    fn refresh(&self, metrics: &Metrics) {
        metrics.objects.clear();
        let guard = self.0.lock().expect("caches lock");
        let Some((datasets, jobs, endpoints, engines)) = guard.as_ref() else { return };
        let count = |kind: &str, phase: Option<String>| {
            let labels = PhaseLabels { kind: kind.into(), phase: phase.unwrap_or_else(|| "Unknown".into()) };
            metrics.objects.get_or_create(&labels).inc();
        };
        let name = |phase: &dyn std::fmt::Debug| format!("{phase:?}");
        for d in datasets.state() {
            count("TwinDataset", d.status.as_ref().and_then(|s| s.phase).map(|p| name(&p)));
        }
        for j in jobs.state() {
            count("TwinTrainingJob", j.status.as_ref().and_then(|s| s.phase).map(|p| name(&p)));
        }
        for e in endpoints.state() {
            count("TwinEndpoint", e.status.as_ref().and_then(|s| s.phase).map(|p| name(&p)));
        }
        for e in engines.state() {
            count("TwinEngine", e.status.as_ref().and_then(|s| s.phase).map(|p| name(&p)));
        }
    }
}

/// A running operator replica.
#[allow(missing_docs)]
pub struct Operator {
    /// Where /metrics, /healthz and /readyz are served.
    pub metrics_addr: SocketAddr,
    pub metrics: Arc<Metrics>,
    /// Its health, as /readyz reports it.
    pub health: Arc<Health>,
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl Operator {
    /// Checks the API server, binds the metrics address and starts campaigning.
    pub async fn start(
        client: Client,
        cluster_url: &str,
        settings: OperatorSettings,
    ) -> Result<Self, StartError> {
        let unreachable = |reason: String| StartError::Unreachable { url: cluster_url.to_string(), reason };
        let version = tokio::time::timeout(Duration::from_secs(10), client.apiserver_version())
            .await
            .map_err(|_| unreachable("no answer within 10 s".into()))?
            .map_err(|e| unreachable(e.to_string()))?;
        info!(server = %cluster_url, version = %version.git_version, "connected to the Kubernetes API server");
        let listener = tokio::net::TcpListener::bind(settings.metrics_addr)
            .await
            .map_err(|source| StartError::Bind { addr: settings.metrics_addr, source })?;
        let metrics_addr = listener
            .local_addr()
            .map_err(|source| StartError::Bind { addr: settings.metrics_addr, source })?;
        let metrics = Arc::new(Metrics::default());
        let shutdown = CancellationToken::new();
        let (leadership_tx, leadership_rx) = watch::channel(Leadership::Unknown);
        let caches = Arc::new(Caches::default());
        let health = Arc::new(Health {
            leadership: leadership_rx.clone(),
            caches_synced: Default::default(),
            refresh_gauges: {
                let (caches, metrics) = (caches.clone(), metrics.clone());
                Box::new(move || caches.refresh(&metrics))
            },
        });
        let mut tasks = Vec::new();
        let router = http::router(metrics.clone(), health.clone());
        let http_shutdown = shutdown.clone();
        tasks.push(tokio::spawn(async move {
            let serve = axum::serve(listener, router).with_graceful_shutdown(http_shutdown.cancelled_owned());
            if let Err(error) = serve.await {
                warn!("the metrics server stopped: {error}");
            }
        }));
        let lease_api: Api<Lease> = Api::namespaced(client.clone(), &settings.lease_namespace);
        let elector = LeaderElector::new(
            lease_api,
            &settings.lease_name,
            &settings.identity(),
            Duration::from_secs(settings.lease_duration_seconds),
        );
        info!(identity = %settings.identity(), lease = %format!("{}/{}", settings.lease_namespace, settings.lease_name), "campaigning for leadership");
        tasks.push(tokio::spawn(elector.run(leadership_tx, shutdown.clone())));
        let ctx = Arc::new(Context::new(client, settings, metrics.clone()));
        tasks.push(tokio::spawn(supervise(ctx, leadership_rx, health.clone(), caches, shutdown.clone())));
        Ok(Self { metrics_addr, metrics, health, shutdown, tasks })
    }

    /// Stops the controllers, releases the Lease and stops serving; returns when all is done.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        for task in self.tasks {
            let _ = task.await;
        }
        info!("operator stopped");
    }

    /// Stops everything at once without releasing the Lease, as a crash or a lost node would:
    /// a stand-by takes over only once the Lease expires.
    pub fn abort(self) {
        for task in &self.tasks {
            task.abort();
        }
        self.shutdown.cancel();
    }

    /// Whether this replica leads.
    pub fn is_leader(&self) -> bool {
        *self.health.leadership.borrow() == Leadership::Leading
    }
}

/// Runs the controllers whenever this replica leads.
async fn supervise(
    ctx: Arc<Context>,
    mut leadership: watch::Receiver<Leadership>,
    health: Arc<Health>,
    caches: Arc<Caches>,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            leading = async { leadership.wait_for(|l| *l == Leadership::Leading).await.is_ok() } => if !leading { return },
        }
        info!("leading: starting the controllers");
        ctx.metrics.leader.set(1);
        let stop = shutdown.child_token();
        let (datasets, datasets_listed, run_datasets) = dataset::run(ctx.clone(), stop.clone());
        let (jobs, jobs_listed, run_jobs) = training::run(ctx.clone(), stop.clone());
        let (endpoints, endpoints_listed, run_endpoints) = endpoint::run(ctx.clone(), stop.clone());
        let (engines, engines_listed, run_engines) = engine::run(ctx.clone(), stop.clone());
        *caches.0.lock().expect("caches lock") = Some((datasets, jobs, endpoints, engines));
        let synced = {
            let health = health.clone();
            tokio::spawn(async move {
                // Told by the watch streams, never asked of the caches, whose own waiters are
                // kube's runners (see `driver::FirstList`).
                for listed in [datasets_listed, jobs_listed, endpoints_listed, engines_listed] {
                    if !listed.wait().await {
                        return;
                    }
                }
                health.caches_synced.store(true, Ordering::SeqCst);
                info!("caches synced");
            })
        };
        let controllers = futures::future::join4(run_datasets, run_jobs, run_endpoints, run_engines);
        tokio::pin!(controllers);
        tokio::select! {
            _ = &mut controllers => {}
            _ = async { drop(leadership.wait_for(|l| *l != Leadership::Leading).await) } => {
                warn!("no longer leading: stopping the controllers");
                stop.cancel();
                controllers.await;
            }
            _ = shutdown.cancelled() => {
                stop.cancel();
                controllers.await;
            }
        }
        synced.abort();
        ctx.metrics.leader.set(0);
        health.caches_synced.store(false, Ordering::SeqCst);
        *caches.0.lock().expect("caches lock") = None;
        if shutdown.is_cancelled() {
            return;
        }
    }
}

/// `twin operator`: connects with the usual configuration (in-cluster, or `KUBECONFIG`), runs
/// until SIGTERM or Ctrl-C, then shuts down gracefully. Returns the process exit code.
pub async fn main(settings: OperatorSettings) -> std::process::ExitCode {
    crate::telemetry::init(settings.log_format.as_deref());
    let config = match tokio::time::timeout(Duration::from_secs(10), kube::Config::infer()).await {
        Ok(Ok(config)) => config,
        Ok(Err(error)) => {
            eprintln!("error: no Kubernetes configuration: {error} (run in a cluster, or set KUBECONFIG)");
            return std::process::ExitCode::FAILURE;
        }
        Err(_) => {
            eprintln!("error: reading the Kubernetes configuration took longer than 10 s");
            return std::process::ExitCode::FAILURE;
        }
    };
    let url = config.cluster_url.to_string();
    let client = match Client::try_from(config) {
        Ok(client) => client,
        Err(error) => {
            eprintln!("error: cannot build a Kubernetes client for {url}: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let operator = match Operator::start(client, &url, settings).await {
        Ok(operator) => operator,
        Err(error) => {
            eprintln!("error: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    info!(metrics = %operator.metrics_addr, "serving /metrics, /healthz and /readyz");
    crate::shutdown::requested().await;
    info!("shutting down");
    operator.shutdown().await;
    std::process::ExitCode::SUCCESS
}
