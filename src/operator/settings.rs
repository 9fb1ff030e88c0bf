//! The operator's settings: command-line flags, each with an environment variable that the
//! Helm chart sets.

use std::net::SocketAddr;

use crate::contract::env;

/// How `twin operator` runs.
#[derive(clap::Args, Clone, Debug)]
pub struct OperatorSettings {
    /// Address of the /metrics, /healthz and /readyz server.
    #[arg(long, default_value = "0.0.0.0:8080", env = "TWIN_METRICS_ADDR")]
    pub metrics_addr: SocketAddr,
    /// Reconcile twins in this namespace only. Empty means every namespace.
    #[arg(long, default_value = "", env = "TWIN_WATCH_NAMESPACE")]
    pub watch_namespace: String,
    /// Namespace of the leader-election Lease (the operator's own).
    #[arg(long, default_value = "default", env = "POD_NAMESPACE")]
    pub lease_namespace: String,
    /// Name of the leader-election Lease.
    #[arg(long, default_value = "twin-operator", env = "TWIN_LEASE_NAME")]
    pub lease_name: String,
    /// This replica's identity in the Lease. Unset means the host name and process id.
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Seconds a leader holds the Lease without renewing; a stand-by takes over after that.
    #[arg(long, default_value_t = 15, env = "TWIN_LEASE_DURATION_SECONDS", value_parser = clap::value_parser!(u64).range(2..=300))]
    pub lease_duration_seconds: u64,
    /// Image of TwinDataset Jobs and RAG gateways.
    #[arg(long, default_value = concat!("ghcr.io/twin-operator/twin:", env!("CARGO_PKG_VERSION")), env = "TWIN_IMAGE")]
    pub twin_image: String,
    /// Default trainer image of the kubernetes training backend.
    #[arg(long, default_value = "ghcr.io/twin-operator/twin-trainer:0.1.0", env = "TWIN_TRAINER_IMAGE")]
    pub trainer_image: String,
    /// Default training image of the sagemaker backend, in ECR (SageMaker pulls only from
    /// ECR, so there is no public default). Empty means unset: each job must name its image.
    #[arg(long, default_value = "", env = "TWIN_SAGEMAKER_TRAINER_IMAGE")]
    pub sagemaker_trainer_image: String,
    /// Shortest wait between two DescribeTrainingJob calls of a running SageMaker job; the
    /// wait grows with the time the job has not changed, up to five minutes.
    #[arg(long, default_value_t = 30, env = "TWIN_SAGEMAKER_POLL_SECONDS", value_parser = clap::value_parser!(u64).range(1..=600))]
    pub sagemaker_poll_seconds: u64,
    /// The SageMaker client every call goes through, instead of one per region and identity
    /// (tests and embedding; not a flag).
    #[arg(skip)]
    pub sagemaker_client: Option<crate::operator::training::sagemaker::wire::Client>,
    /// Where the per-job SageMaker clients send their calls instead of the region's endpoint
    /// (tests and embedding; not a flag: a deployment sets `AWS_ENDPOINT_URL_SAGEMAKER`).
    #[arg(skip)]
    pub sagemaker_endpoint_url: Option<String>,
    /// Where the shared engines' adapter agents are reached instead of each ready pod's
    /// `http://<pod IP>:8001` (tests, where pods do not run; not a flag).
    #[arg(skip)]
    pub agent_url: Option<String>,
    /// Default image of the vllm engine.
    #[arg(long, default_value = "vllm/vllm-openai:v0.11.0", env = "TWIN_VLLM_IMAGE")]
    pub vllm_image: String,
    /// Comma-separated CIDRs dataset crawlers may reach although private (passed to the Jobs).
    #[arg(long, default_value = "", env = env::CRAWLER_ALLOW_NETWORKS)]
    pub crawler_allow_networks: String,
    /// Log format: `json` (for log collectors) or `text`. Unset means JSON unless stderr is a
    /// terminal.
    #[arg(long, env = env::LOG_FORMAT, value_parser = ["json", "text"])]
    pub log_format: Option<String>,
    /// User-Agent of the dataset crawlers.
    #[arg(
        long,
        default_value = "twin-operator/0.1 (+https://github.com/twin-operator/twin-operator)",
        env = env::CRAWLER_USER_AGENT
    )]
    pub crawler_user_agent: String,
}

impl OperatorSettings {
    /// The identity written into the Lease.
    pub fn identity(&self) -> String {
        self.identity.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/etc/hostname")
                .map(|h| h.trim().to_string())
                .unwrap_or_else(|_| "twin".into());
            format!("{host}-{}", std::process::id())
        })
    }

    /// Settings for tests and embedding: metrics on a free loopback port, every namespace.
    pub fn for_tests(identity: &str) -> Self {
        Self {
            metrics_addr: "127.0.0.1:0".parse().unwrap(),
            watch_namespace: String::new(),
            lease_namespace: "twin-system".into(),
            lease_name: "twin-operator".into(),
            identity: Some(identity.into()),
            lease_duration_seconds: 3,
            twin_image: "twin:test".into(),
            trainer_image: "twin-trainer:test".into(),
            sagemaker_trainer_image: String::new(),
            sagemaker_poll_seconds: 1,
            sagemaker_client: None,
            sagemaker_endpoint_url: None,
            agent_url: None,
            vllm_image: "vllm:test".into(),
            crawler_allow_networks: String::new(),
            log_format: None,
            crawler_user_agent: "twin-operator-test".into(),
        }
    }
}
