//! `twin up -f PATH`: the resources of the YAML, checked and ordered, run on this machine, each
//! status printed as it changes and kept in the state folder; and `twin status`, which shows
//! them again. TwinDatasets run through the dataset pipeline in this process (a rerun on an
//! unchanged corpus keeps its revision and rewrites nothing); TwinTrainingJobs through the
//! trainer as a child process (a finished run is reused); TwinEndpoints through the gateway of
//! `twin serve` in this process, served until Ctrl-C.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use k8s_openapi::jiff::Timestamp;

use super::board::{Board, Line};
use super::endpoint;
use super::manifest::{self, Located, Twin};
use super::plan;
use super::serving::{self, ToServe};
use super::state::{Entry, Phase, State, Status, table};
use super::train;
use crate::api::TwinDataset;
use crate::api::dataset::DatasetPhase;
use crate::api::endpoint::EndpointPhase;
use crate::api::readiness::{DatasetReadiness, Unready};
use crate::api::training::TrainingPhase;
use crate::contract::env;
use crate::pipeline::progress::{Progress, Stage};
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
    /// The Python of the trainer's environment, for TwinTrainingJobs (`scripts/trainer-env`
    /// builds it and prints its path). Unset: training jobs wait, saying how to set it up.
    #[arg(long, env = "TWIN_TRAINER_PYTHON")]
    pub trainer_python: Option<PathBuf>,
    /// Runs the trainer from this source folder (put first on its PYTHONPATH) instead of the
    /// package installed in its environment (`scripts/trainer-env` installs it): for working on
    /// the trainer.
    #[arg(long = "trainer-src", env = "TWIN_TRAINER_SRC", value_name = "DIR")]
    pub trainer_source: Option<PathBuf>,
    /// Where the first TwinEndpoint listens; each next one takes the following port (port 0:
    /// any free port). 0.0.0.0 serves other machines too.
    #[arg(long, default_value = "127.0.0.1:8080", env = "TWIN_UP_LISTEN", value_name = "ADDR")]
    pub listen: SocketAddr,
    /// Log lines on standard error as `text` or `json` (for a log collector). Their level comes
    /// from RUST_LOG: by default warnings only while live progress lines are drawn, else info.
    #[arg(long, value_name = "FORMAT", default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
}

/// `twin status` settings.
#[derive(clap::Args, Debug, Clone)]
pub struct StatusArgs {
    /// The state folder `twin up` wrote.
    #[arg(long, default_value = ".twin", env = "TWIN_STATE_DIR")]
    pub state_dir: PathBuf,
}

/// Says a resource's status and keeps it in the state folder.
fn report(
    board: &Board,
    state: &mut State,
    dir: &std::path::Path,
    resource: &Located,
    status: Status,
) -> Result<(), String> {
    board.say(&format!(
        "{} {} ({}): {}",
        resource.twin.handle(),
        status.phase,
        status.reason,
        status.message
    ));
    // A training job's promoted run changes only when a run passes; other statuses keep it.
    let kept = state.get(resource.twin.kind(), resource.twin.namespace(), resource.twin.name());
    let promoted = status.promoted.or_else(|| kept.and_then(|e| e.promoted.clone()));
    state.record(Entry {
        phase: status.phase,
        namespace: resource.twin.namespace().into(),
        name: resource.twin.name().into(),
        reason: status.reason,
        message: status.message,
        updated: Timestamp::now().to_string(),
        revision: status.revision,
        promoted,
        file: resource.file.display().to_string(),
    });
    state.save(dir)
}

/// Builds a dataset with the pipeline; its final status.
async fn build_dataset(dataset: &TwinDataset, options: &BuildOptions) -> Status {
    match build(dataset, options).await {
        Ok(published) => {
            let stats = &published.stats;
            let unchanged = if published.unchanged { "; unchanged, nothing rewritten" } else { "" };
            Status {
                phase: DatasetPhase::Ready.into(),
                reason: if published.unchanged { "RevisionUnchanged" } else { "RevisionPublished" }.into(),
                message: format!(
                    "revision {}: {} documents, {} chunks, {} instruction samples{unchanged}",
                    published.revision, stats.documents, stats.chunks, stats.instruct_samples
                ),
                revision: Some(published.revision),
                promoted: None,
            }
        }
        Err(error) => Status::new(DatasetPhase::Failed, error.reason(), error.to_string()),
    }
}

/// The final status of work run on a thread of its own (with its own runtime), so that a stop
/// request is heard while the pipeline keeps threads busy.
type Running = tokio::sync::oneshot::Receiver<Status>;

fn on_own_thread<F>(failed: Phase, work: impl FnOnce() -> F + Send + 'static) -> Running
where
    F: std::future::Future<Output = Status>,
{
    let (done, running) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
        let status = match runtime {
            Ok(runtime) => runtime.block_on(work()),
            Err(error) => Status::new(failed, "Crashed", format!("cannot start a runtime: {error}")),
        };
        let _ = done.send(status);
    });
    running
}

/// A dataset's build told on its live line.
fn watched(options: &BuildOptions, line: &Line) -> BuildOptions {
    let line = line.clone();
    let progress = Progress::to(move |stage, done, total| {
        // Only embedding is long and counted finely enough for a bar: the others spin.
        match stage {
            Stage::Embedding if total > 0 => line.count(stage.label(), stage.unit(), "", done, total),
            _ => line.busy(stage.label()),
        }
    });
    BuildOptions { progress, ..options.clone() }
}

/// What runs a resource: its status while it runs, and the work that gives its final status,
/// told on `line` meanwhile.
fn work(resource: &Located, context: &Context, state: &State, line: &Line) -> (Status, Option<Running>) {
    match &resource.twin {
        Twin::Dataset(dataset) => {
            let running = Status::new(
                DatasetPhase::Running,
                "Building",
                "collecting, cleaning, chunking and embedding the sources",
            );
            let (dataset, options) = (dataset.clone(), watched(&context.options, line));
            let failed = DatasetPhase::Failed.into();
            (
                running,
                Some(on_own_thread(failed, move || async move { build_dataset(&dataset, &options).await })),
            )
        }
        Twin::Training(job) => {
            let namespace = resource.twin.namespace();
            let name = &job.spec.dataset_ref.name;
            let dataset = match manifest::find(&context.resources, "TwinDataset", namespace, name) {
                Some(Twin::Dataset(dataset)) => Some(dataset.clone()),
                _ => None,
            };
            let promoted = train::promoted_here(job, state);
            let dataset = dataset.map(|mut dataset| {
                dataset.status = state.dataset_status(namespace, name);
                dataset
            });
            let readiness = DatasetReadiness::of(dataset.as_deref());
            let (Some(dataset), Some(revision)) = (dataset, readiness.ready_revision().map(str::to_string))
            else {
                let DatasetReadiness::NotReady { why, .. } = &readiness else {
                    unreachable!("a Ready dataset has a revision")
                };
                let wait = why.wait(name, namespace, "spec.datasetRef.name", "training", None);
                let phase = if matches!(why, Unready::Missing) {
                    TrainingPhase::Pending
                } else {
                    TrainingPhase::WaitingForDataset
                };
                return (Status::new(phase, wait.reason, wait.message), None);
            };
            let running = Status {
                revision: Some(revision.clone()),
                ..Status::new(
                    TrainingPhase::Running,
                    "Training",
                    format!(
                        "training on dataset revision {revision} (the trainer's log: {})",
                        train::RunFiles::of(&context.state_dir, job, &revision).log.display()
                    ),
                )
            }
            .with_promoted(promoted.clone());
            let (job, trainer, state_dir, slot, line) = (
                job.clone(),
                context.trainer.clone(),
                context.state_dir.clone(),
                context.trainer_child.clone(),
                line.clone(),
            );
            let trained = on_own_thread(TrainingPhase::Failed.into(), move || async move {
                let here = train::Here { trainer: &trainer, state_dir: &state_dir, slot: &slot, line: &line };
                let outcome = train::train(&job, &dataset, &revision, promoted.as_deref(), &here);
                Status {
                    revision: Some(revision),
                    promoted: outcome.promoted,
                    ..Status::new(outcome.phase, &outcome.reason, outcome.message)
                }
            });
            (running, Some(trained))
        }
        Twin::Endpoint(_) => unreachable!("endpoints are served once the rest has run"),
    }
}

/// What every resource's run shares.
struct Context {
    resources: Vec<Located>,
    options: BuildOptions,
    trainer: train::Trainer,
    state_dir: PathBuf,
    /// The trainer's process while a training job runs.
    trainer_child: train::ChildSlot,
    board: Board,
}

/// `twin up`: exit status 0 when every resource reached its goal, 1 when one failed or could
/// not run, 2 for YAML that cannot run or an endpoint's address in use (nothing is run or
/// written then), 130 when stopped before everything ran. Endpoints are served until Ctrl-C or
/// SIGTERM, which then ends `twin up` normally.
pub async fn run(args: UpArgs) -> ExitCode {
    let board = Board::for_stdout();
    crate::telemetry::init_with_level(Some(&args.log_format), if board.is_live() { "warn" } else { "info" });
    // Every endpoint's address is taken with the checks, before anything runs: a port in use is
    // said at once, not after hours of training.
    let checked = manifest::load(&args.path).and_then(plan::plan).and_then(|resources| {
        let listeners = endpoint::bind_all(&resources, args.listen)?;
        let state = State::load(&args.state_dir).map_err(|error| vec![error])?;
        Ok((resources, listeners, state))
    });
    let (resources, mut listeners, mut state) = match checked {
        Ok(checked) => checked,
        Err(problems) => {
            for problem in problems {
                eprintln!("error: {problem}");
            }
            return ExitCode::from(2);
        }
    };
    let context = Context {
        options: BuildOptions {
            models_dir: args.models_dir.clone(),
            hub: crate::storage::hub::HubOptions::from_env(),
            ..Default::default()
        },
        trainer: train::Trainer { python: args.trainer_python.clone(), source: args.trainer_source.clone() },
        state_dir: args.state_dir.clone(),
        trainer_child: Default::default(),
        board,
        resources,
    };
    let board = &context.board;
    let mut all_reached = true;
    for resource in &context.resources {
        if matches!(resource.twin, Twin::Endpoint(_)) {
            continue;
        }
        let line = board.line(&resource.twin.handle());
        let (first, running) = work(resource, &context, &state, &line);
        let reached = first.reached();
        if let Err(error) = report(board, &mut state, &args.state_dir, resource, first) {
            eprintln!("error: cannot keep the state: {error}");
            return ExitCode::FAILURE;
        }
        let Some(running) = running else {
            line.clear();
            all_reached &= reached;
            continue;
        };
        let last = tokio::select! {
            finished = running => finished.unwrap_or_else(|error| {
                let failed = resource.twin.phase(DatasetPhase::Failed, TrainingPhase::Failed, EndpointPhase::Failed);
                Status::new(failed, "Crashed", format!("the work on it ended without a result ({error})"))
            }),
            _ = crate::shutdown::requested() => {
                train::stop(&context.trainer_child);
                let stopped = Status::new(
                    resource.twin.phase(DatasetPhase::Pending, TrainingPhase::Pending, EndpointPhase::Pending),
                    "Interrupted",
                    "stopped (Ctrl-C or SIGTERM) before it finished; nothing partial was published",
                );
                line.clear();
                let _ = report(board, &mut state, &args.state_dir, resource, stopped);
                // The pipeline may hold a thread in the middle of a batch: leave without waiting.
                std::process::exit(130);
            }
        };
        line.clear();
        all_reached &= last.reached();
        if let Err(error) = report(board, &mut state, &args.state_dir, resource, last) {
            eprintln!("error: cannot keep the state: {error}");
            return ExitCode::FAILURE;
        }
    }
    let mut to_serve = Vec::new();
    for (index, resource) in context.resources.iter().enumerate() {
        if !matches!(resource.twin, Twin::Endpoint(_)) {
            continue;
        }
        let listener = listeners.remove(&index);
        let url = listener.as_ref().map(endpoint::base_url).unwrap_or_default();
        let here = endpoint::Here {
            resources: &context.resources,
            state: &state,
            models_dir: context.options.models_dir.as_deref(),
            api_key: std::env::var(endpoint::API_KEY_ENV).ok(),
        };
        let planned = endpoint::plan(resource, &here, &url);
        match (planned, listener) {
            (Ok(plan), Some(listener)) => {
                to_serve.push(ToServe { resource: resource.clone(), plan, listener, url })
            }
            (Err(status), _) => {
                all_reached = false;
                if let Err(error) = report(board, &mut state, &args.state_dir, resource, status) {
                    eprintln!("error: cannot keep the state: {error}");
                    return ExitCode::FAILURE;
                }
            }
            (Ok(_), None) => unreachable!("an endpoint served here has its address"),
        }
    }
    if !to_serve.is_empty() {
        // Twins of one base model answer from one copy of it, each with its own adapter.
        crate::serve::share_embedded_engines(
            &mut to_serve.iter_mut().map(|t| &mut t.plan.args).collect::<Vec<_>>(),
        );
        let state_dir = args.state_dir.clone();
        let mut keep =
            |resource: &Located, status: Status| report(board, &mut state, &state_dir, resource, status);
        match serving::serve_until_stopped(to_serve, &mut keep).await {
            Ok(ended) if ended.interrupted => return ExitCode::from(130),
            Ok(ended) => all_reached &= ended.all_reached,
            Err(error) => {
                eprintln!("error: cannot keep the state: {error}");
                return ExitCode::FAILURE;
            }
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
