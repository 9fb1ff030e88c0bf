//! `twin up -f PATH`: the resources of the YAML, checked and ordered, run on this machine, each
//! status printed as it changes and kept in the state folder; and `twin status`, which shows
//! them again. TwinDatasets run through the dataset pipeline in this process (a rerun on an
//! unchanged corpus keeps its revision and rewrites nothing). Training jobs and endpoints are
//! recorded as not run yet: this release runs them only on a cluster.

use std::path::PathBuf;
use std::process::ExitCode;

use k8s_openapi::jiff::Timestamp;

use super::manifest::{self, Located, Twin};
use super::plan;
use super::state::{Entry, State, table};
use crate::api::TwinDataset;
use crate::contract::env;
use crate::pipeline::{BuildOptions, build};

/// `twin up` settings.
#[derive(clap::Args, Debug, Clone)]
pub struct UpArgs {
    /// A YAML file of TwinDataset, TwinTrainingJob and TwinEndpoint documents, or a folder of them.
    #[arg(short = 'f', long = "filename", value_name = "PATH")]
    pub path: PathBuf,
    /// Where `twin up` keeps the statuses of what it ran.
    #[arg(long, default_value = ".twin", env = "TWIN_STATE_DIR")]
    pub state_dir: PathBuf,
    /// Where `hf://` models are found, and downloaded to from the Hub. Default:
    /// ~/.cache/twin/models.
    #[arg(long, env = env::MODELS_DIR)]
    pub models_dir: Option<PathBuf>,
}

/// `twin status` settings.
#[derive(clap::Args, Debug, Clone)]
pub struct StatusArgs {
    /// The state folder `twin up` wrote.
    #[arg(long, default_value = ".twin", env = "TWIN_STATE_DIR")]
    pub state_dir: PathBuf,
}

/// A status as `twin up` reports it.
struct Status<'a> {
    phase: &'a str,
    reason: &'a str,
    message: String,
    revision: Option<String>,
}

/// Prints a resource's status and keeps it in the state folder.
fn report(
    state: &mut State,
    dir: &std::path::Path,
    resource: &Located,
    status: Status,
) -> Result<(), String> {
    println!("{} {} ({}): {}", resource.twin.handle(), status.phase, status.reason, status.message);
    state.record(Entry {
        kind: resource.twin.kind().into(),
        namespace: resource.twin.namespace().into(),
        name: resource.twin.name().into(),
        phase: status.phase.into(),
        reason: status.reason.into(),
        message: status.message,
        updated: Timestamp::now().to_string(),
        revision: status.revision,
        file: resource.file.display().to_string(),
    });
    state.save(dir)
}

/// Builds a dataset with the pipeline; its final status.
async fn build_dataset(dataset: &TwinDataset, options: &BuildOptions) -> Status<'static> {
    match build(dataset, options).await {
        Ok(published) => {
            let stats = &published.stats;
            let unchanged = if published.unchanged { "; unchanged, nothing rewritten" } else { "" };
            Status {
                phase: "Ready",
                reason: if published.unchanged { "RevisionUnchanged" } else { "RevisionPublished" },
                message: format!(
                    "revision {}: {} documents, {} chunks, {} instruction samples{unchanged}",
                    published.revision, stats.documents, stats.chunks, stats.instruct_samples
                ),
                revision: Some(published.revision),
            }
        }
        Err(error) => {
            Status { phase: "Failed", reason: error.reason(), message: error.to_string(), revision: None }
        }
    }
}

/// Runs one resource; whether it reached the state it should.
/// The final status of work run on a thread of its own (with its own runtime), so that a stop
/// request is heard while the pipeline keeps threads busy.
type Running = tokio::sync::oneshot::Receiver<Status<'static>>;

fn on_own_thread<F>(work: impl FnOnce() -> F + Send + 'static) -> Running
where
    F: std::future::Future<Output = Status<'static>>,
{
    let (done, running) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
        let status = match runtime {
            Ok(runtime) => runtime.block_on(work()),
            Err(error) => Status {
                phase: "Failed",
                reason: "Crashed",
                message: format!("cannot start a runtime: {error}"),
                revision: None,
            },
        };
        let _ = done.send(status);
    });
    running
}

/// What runs a resource: its status while it runs, and the work that gives its final status.
fn work(resource: &Located, options: &BuildOptions) -> (Status<'static>, Option<Running>) {
    match &resource.twin {
        Twin::Dataset(dataset) => {
            let running = Status {
                phase: "Running",
                reason: "Building",
                message: "collecting, cleaning, chunking and embedding the sources".into(),
                revision: None,
            };
            let (dataset, options) = (dataset.clone(), options.clone());
            (running, Some(on_own_thread(move || async move { build_dataset(&dataset, &options).await })))
        }
        Twin::Training(_) | Twin::Endpoint(_) => {
            let status = Status {
                phase: "Pending",
                reason: "NotRunLocally",
                message: format!(
                    "this release of twin up builds datasets only; run this {} on a cluster (kubectl apply)",
                    resource.twin.kind()
                ),
                revision: None,
            };
            (status, None)
        }
    }
}

/// Ctrl-C, or SIGTERM (a supervisor stopping the process).
async fn stop_requested() {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async { match terminate.as_mut() { Some(signal) => { signal.recv().await; } None => std::future::pending().await } } => {}
    }
}

/// `twin up`: exit status 0 when every resource reached its goal, 1 when one failed or could
/// not run, 2 for YAML that cannot run (nothing is run or written then), 130 when stopped.
pub async fn run(args: UpArgs) -> ExitCode {
    crate::telemetry::init(None);
    let resources = match manifest::load(&args.path).and_then(plan::plan) {
        Ok(resources) => resources,
        Err(problems) => {
            for problem in problems {
                eprintln!("error: {problem}");
            }
            return ExitCode::from(2);
        }
    };
    let mut state = match State::load(&args.state_dir) {
        Ok(state) => state,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
    };
    let options = BuildOptions {
        models_dir: args.models_dir.clone(),
        hub: crate::storage::hub::HubOptions::from_env(),
        ..Default::default()
    };
    let mut all_reached = true;
    for resource in &resources {
        let (first, running) = work(resource, &options);
        let reached = first.phase == "Ready";
        if let Err(error) = report(&mut state, &args.state_dir, resource, first) {
            eprintln!("error: cannot keep the state: {error}");
            return ExitCode::FAILURE;
        }
        let Some(running) = running else {
            all_reached &= reached;
            continue;
        };
        let last = tokio::select! {
            finished = running => finished.unwrap_or_else(|error| Status {
                phase: "Failed",
                reason: "Crashed",
                message: format!("the work on it ended without a result ({error})"),
                revision: None,
            }),
            _ = stop_requested() => {
                let stopped = Status {
                    phase: "Pending",
                    reason: "Interrupted",
                    message: "stopped (Ctrl-C or SIGTERM) before it finished; nothing partial was published".into(),
                    revision: None,
                };
                let _ = report(&mut state, &args.state_dir, resource, stopped);
                // The pipeline may hold a thread in the middle of a batch: leave without waiting.
                std::process::exit(130);
            }
        };
        all_reached &= last.phase == "Ready";
        if let Err(error) = report(&mut state, &args.state_dir, resource, last) {
            eprintln!("error: cannot keep the state: {error}");
            return ExitCode::FAILURE;
        }
    }
    if all_reached { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

/// `twin status`: what `twin up` last ran here.
pub fn status(args: StatusArgs) -> ExitCode {
    match State::load(&args.state_dir) {
        Ok(state) if state.resources.is_empty() => {
            eprintln!(
                "nothing has run here yet: `twin up -f PATH` keeps its state in {}",
                args.state_dir.display()
            );
            ExitCode::FAILURE
        }
        Ok(state) => {
            println!("{}", table(&state, Timestamp::now()));
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(2)
        }
    }
}
