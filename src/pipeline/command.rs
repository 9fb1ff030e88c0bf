//! `twin dataset build`: reads a TwinDataset (YAML or JSON), runs the pipeline, prints the
//! result as JSON on stdout and writes it to the termination-message path, where the operator
//! reads it from the Job's pod.

use std::path::PathBuf;
use std::process::ExitCode;

use super::collect::CollectOptions;
use super::{BuildError, BuildOptions, build};
use crate::api::TwinDataset;
use crate::contract::{BuildReport, FailedBuild, env, paths};
use crate::net::NetworkGuard;
use crate::net::http::FetchOptions;

/// Flags of `twin dataset build`.
#[derive(clap::Args, Debug, Clone)]
pub struct BuildArgs {
    /// A file holding the TwinDataset, YAML or JSON (as mounted from a ConfigMap).
    #[arg(short = 'f', long = "filename")]
    pub file: PathBuf,
    /// Where `hf://` models are kept (`<dir>/<org>/<name>`, or `<dir>/<name>`) and downloaded
    /// to from the Hub (`HF_ENDPOINT`, `HF_TOKEN`). Default: ~/.cache/twin/models.
    #[arg(long, env = env::MODELS_DIR)]
    pub models_dir: Option<PathBuf>,
    /// Where `pvc://claim/...` volumes are mounted.
    #[arg(long, env = env::PVC_ROOT, default_value = paths::PVC_ROOT)]
    pub pvc_root: PathBuf,
    /// Where ConfigMap sources are mounted (`<dir>/<name>/<key>`).
    #[arg(long, env = env::CONFIGMAP_ROOT, default_value = paths::CONFIGMAP_ROOT)]
    pub configmap_root: PathBuf,
    /// A network crawlers may reach although it is private (CIDR; repeat for more). Comma
    /// separated in the environment variable, which the operator sets from its Helm values.
    #[arg(
        long = "allow-network",
        value_name = "CIDR",
        env = env::CRAWLER_ALLOW_NETWORKS,
        value_delimiter = ','
    )]
    pub allow_networks: Vec<String>,
    /// The crawlers' User-Agent.
    #[arg(long, env = env::CRAWLER_USER_AGENT)]
    pub user_agent: Option<String>,
    /// Also write the result here (the Job sets the container's termination-message path).
    #[arg(long, env = env::TERMINATION_MESSAGE_PATH)]
    pub termination_message_path: Option<PathBuf>,
}

fn read_dataset(path: &PathBuf) -> Result<TwinDataset, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    serde_json::from_str(&text)
        .or_else(|_| serde_saphyr::from_str(&text))
        .map_err(|e| format!("{} does not hold a TwinDataset: {e}", path.display()))
}

/// Runs the command; returns the process exit code.
pub async fn run(args: BuildArgs) -> ExitCode {
    crate::telemetry::init(None);
    let dataset = match read_dataset(&args.file) {
        Ok(dataset) => dataset,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
    };
    let guard = match NetworkGuard::new(&args.allow_networks.join(",")) {
        Ok(guard) => guard,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
    };
    let mut fetch = FetchOptions { guard, ..Default::default() };
    if let Some(user_agent) = args.user_agent.filter(|u| !u.is_empty()) {
        fetch.user_agent = user_agent;
    }
    let options = BuildOptions {
        collect: CollectOptions {
            pvc_root: args.pvc_root,
            configmap_root: args.configmap_root,
            ..Default::default()
        },
        models_dir: args.models_dir,
        fetch,
        hub: crate::storage::hub::HubOptions::from_env(),
        // Bars on a terminal only: a Job's log carries the counts in its log lines.
        progress: Default::default(),
    };
    let (code, report) = match build(&dataset, &options).await {
        Ok(published) => {
            eprintln!("{}", published.quality.summary());
            (ExitCode::SUCCESS, BuildReport::Published(published))
        }
        Err(error) => {
            eprintln!("error: {error}");
            let sources = match &error {
                BuildError::NoDocuments { sources } => sources.clone(),
                _ => Vec::new(),
            };
            let failed = FailedBuild { error: error.to_string(), reason: error.reason().into(), sources };
            (ExitCode::FAILURE, BuildReport::Failed(failed))
        }
    };
    println!("{}", serde_json::to_string_pretty(&report).expect("a build report serialises"));
    if let Some(path) = &args.termination_message_path
        && let Err(error) = std::fs::write(path, report.to_termination_message())
    {
        eprintln!("warning: cannot write the termination message to {}: {error}", path.display());
    }
    code
}
