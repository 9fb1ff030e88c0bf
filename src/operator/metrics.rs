//! Prometheus metrics of the operator: reconciles, failures by reason, reconcile durations per
//! controller, objects by phase, and leadership.

use std::sync::atomic::AtomicI64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Labels of per-controller metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabels {
    /// `twindataset`, `twintrainingjob` or `twinendpoint`.
    pub controller: String,
}

/// Labels of failures.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
#[allow(missing_docs)]
pub struct FailureLabels {
    pub controller: String,
    /// The error's CamelCase reason.
    pub reason: String,
}

/// Labels of the objects-by-phase gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
#[allow(missing_docs)]
pub struct PhaseLabels {
    pub kind: String,
    /// The phase (`Unknown` before the first status).
    pub phase: String,
}

/// Labels of training runs.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RunLabels {
    /// `kubernetes` or `sagemaker`.
    pub backend: String,
    /// The phase a run reached: `Running`, `Succeeded` or `Failed`.
    pub phase: String,
}

/// Labels of the run-duration histogram.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BackendLabels {
    /// `kubernetes` or `sagemaker`.
    pub backend: String,
}

/// Every metric, registered once.
pub struct Metrics {
    registry: Registry,
    reconciles: Family<ControllerLabels, Counter>,
    failures: Family<FailureLabels, Counter>,
    durations: Family<ControllerLabels, Histogram>,
    /// Objects by kind and phase, refreshed from the caches at each scrape.
    pub objects: Family<PhaseLabels, Gauge<i64, AtomicI64>>,
    /// 1 while this replica leads.
    pub leader: Gauge<i64, AtomicI64>,
    runs: Family<RunLabels, Counter>,
    run_durations: Family<BackendLabels, Histogram>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("twin");
        let reconciles = Family::<ControllerLabels, Counter>::default();
        let failures = Family::<FailureLabels, Counter>::default();
        let durations = Family::<ControllerLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0])
        });
        let objects = Family::<PhaseLabels, Gauge<i64, AtomicI64>>::default();
        let leader = Gauge::<i64, AtomicI64>::default();
        registry.register("reconciliations", "Reconciles run, by controller", reconciles.clone());
        registry.register(
            "reconcile_failures",
            "Reconciles that failed, by controller and reason",
            failures.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time spent in one reconcile, by controller",
            durations.clone(),
        );
        registry.register("objects", "Twin objects by kind and phase", objects.clone());
        registry.register("leader", "1 while this replica holds the leader lease", leader.clone());
        let runs = Family::<RunLabels, Counter>::default();
        // Training runs last minutes to days.
        let run_durations = Family::<BackendLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0, 28800.0, 86400.0, 259200.0])
        });
        registry.register(
            "training_runs",
            "Training runs that reached a phase (Running, Succeeded, Failed), by backend",
            runs.clone(),
        );
        registry.register(
            "training_run_duration_seconds",
            "Duration of finished training runs, start to completion, by backend",
            run_durations.clone(),
        );
        Self { registry, reconciles, failures, durations, objects, leader, runs, run_durations }
    }
}

impl Metrics {
    /// Counts a reconcile and its duration.
    pub fn reconciled(&self, controller: &str, duration: Duration) {
        let labels = ControllerLabels { controller: controller.into() };
        self.reconciles.get_or_create(&labels).inc();
        self.durations.get_or_create(&labels).observe(duration.as_secs_f64());
    }

    /// Counts a failed reconcile.
    pub fn failed(&self, controller: &str, reason: &str) {
        self.failures
            .get_or_create(&FailureLabels { controller: controller.into(), reason: reason.into() })
            .inc();
    }

    /// Counts a training run reaching a phase, and the duration of a finished one.
    pub fn training_run(&self, backend: &str, phase: &str, duration: Option<Duration>) {
        self.runs.get_or_create(&RunLabels { backend: backend.into(), phase: phase.into() }).inc();
        if let Some(duration) = duration {
            self.run_durations
                .get_or_create(&BackendLabels { backend: backend.into() })
                .observe(duration.as_secs_f64());
        }
    }

    /// Reconciles so far of one controller (for tests and logs).
    pub fn reconcile_count(&self, controller: &str) -> u64 {
        self.reconciles.get_or_create(&ControllerLabels { controller: controller.into() }).get()
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}
