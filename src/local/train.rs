//! A TwinTrainingJob run by `twin up`: the trainer (`trainer/`, Python) as a child process on
//! this machine's CPU or GPU, with the configuration the operator would write for the same run;
//! its step log shown as it trains; its one-line result read back and judged against the job's
//! evaluation gate, as the operator judges it. A run that already finished (its `metrics.json`,
//! which the trainer writes last, is there) is reused, not trained again.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::board::Line;
use crate::api::training::{TrainedModel, TrainingPhase, TwinTrainingJobStatus};
use crate::api::{TwinDataset, TwinTrainingJob};
use crate::contract::trainer::{
    Run, RunPlaces, TrainerConfig, TrainerResult, TrainerSuccess, must_beat_adapter, run_output,
};
use crate::eval::promotion;
use crate::storage::StorageUri;

/// Where the trainer is on this machine.
#[derive(Debug, Clone, Default)]
pub struct Trainer {
    /// The Python of the trainer's environment (`scripts/trainer-env` prints it).
    pub python: Option<PathBuf>,
    /// The trainer's package source (`trainer/src`), put first on `PYTHONPATH` when given and
    /// there; unset, the package installed in the environment runs.
    pub source: Option<PathBuf>,
}

/// How a local training run ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// `Succeeded`, `Rejected` (trained, but it failed its gate), `Failed` or `Pending`.
    pub phase: TrainingPhase,
    /// A CamelCase reason.
    pub reason: String,
    /// What happened.
    pub message: String,
    /// The dataset revision of the run whose adapter is promoted now: this one once it passed,
    /// else the one promoted before (given to [`train`]).
    pub promoted: Option<String>,
}

/// The child process of a run, so that a stop request can end it.
pub type ChildSlot = Arc<Mutex<Option<Child>>>;

fn outcome(phase: TrainingPhase, reason: &str, message: String) -> Outcome {
    Outcome { phase, reason: reason.into(), message, promoted: None }
}

/// The revision of `job`'s promoted run in `state`, when that run's folder is in the job's
/// output as the YAML names it now (YAML that moved its output starts with nothing promoted).
pub fn promoted_here(job: &TwinTrainingJob, state: &super::state::State) -> Option<String> {
    let namespace = job.metadata.namespace.as_deref().unwrap_or(super::manifest::DEFAULT_NAMESPACE);
    let revision = state.promoted(namespace, job.metadata.name.as_deref()?)?;
    let output = run_output(job, &Run::new(job, &revision)).ok()?;
    local_folder(&output).is_some_and(|folder| folder.is_dir()).then_some(revision)
}

/// `job` as the operator would see it with `promoted` (a revision it trained before) as its
/// promoted model: what the run's configuration and its gate read.
fn with_promoted(job: &TwinTrainingJob, promoted: Option<&str>) -> Result<TwinTrainingJob, String> {
    let mut job = job.clone();
    let model = match promoted {
        Some(revision) => {
            let run = Run::new(&job, revision);
            Some(TrainedModel {
                run: Some(run.name.clone()),
                dataset_revision: Some(revision.to_string()),
                base_model: job.spec.base_model.uri.clone(),
                adapter_uri: run_output(&job, &run)?.join("adapter").to_string(),
                ..Default::default()
            })
        }
        None => None,
    };
    job.status = Some(TwinTrainingJobStatus { model, ..Default::default() });
    Ok(job)
}

/// A finished run judged against the job's gate: promoted, or rejected (the promoted one kept:
/// [`train`] carries it over).
fn judged(
    job: &TwinTrainingJob,
    run: &Run,
    output: &StorageUri,
    success: &TrainerSuccess,
    reused: bool,
) -> Outcome {
    let adapter = output.join("adapter").to_string();
    let kept = job.status.as_ref().and_then(|s| s.model.as_ref());
    let evaluation = promotion::judge(
        &job.spec.evaluation,
        &run.name,
        &adapter,
        success,
        must_beat_adapter(job, run).as_deref(),
        Some(output.join("metrics.json").to_string()),
    );
    let summary = if reused {
        format!("run {} on revision {} trained before: {}", run.name, run.revision, success.summary(&adapter))
    } else {
        success.summary(&adapter)
    };
    if evaluation.passed {
        let reason = if reused { "AdapterReused" } else { "AdapterPublished" };
        return Outcome {
            promoted: Some(run.revision.clone()),
            ..outcome(TrainingPhase::Succeeded, reason, summary)
        };
    }
    let kept = kept.map(|m| (m.run.as_deref().unwrap_or("-"), m.adapter_uri.as_str()));
    outcome(TrainingPhase::Rejected, "GateFailed", promotion::rejection(&evaluation, kept, &summary))
}

/// What a finished run's `metrics.json` says of its evaluation, as its result line did.
fn recorded_success(metrics: &Path) -> Result<TrainerSuccess, String> {
    let text = std::fs::read_to_string(metrics).map_err(|e| format!("{}: {e}", metrics.display()))?;
    let document: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{} is not JSON: {e}", metrics.display()))?;
    let sft = &document["sft"];
    let mut success: TrainerSuccess =
        serde_json::from_value(document["headline"].clone()).unwrap_or_default();
    success.sft_train_loss = sft["trainLoss"].as_f64();
    success.sft_eval_loss = sft["evalLoss"].as_f64();
    success.dpo_reward_accuracy = document["dpo"]["rewardAccuracy"].as_f64();
    success.dpo_skipped = document["dpo"]["skipped"].as_str().map(str::to_string);
    Ok(success)
}

/// The run's folder on this machine, when its output is local.
fn local_folder(uri: &StorageUri) -> Option<PathBuf> {
    match uri {
        StorageUri::File { path } => Some(path.clone()),
        _ => None,
    }
}

/// Trains `job` on `revision` of `dataset`, the child process kept in `slot` while it runs;
/// `promoted` is the revision whose run's adapter is promoted so far. Blocks: run it on a
/// thread of its own.
pub fn train(
    job: &TwinTrainingJob,
    dataset: &TwinDataset,
    revision: &str,
    promoted: Option<&str>,
    here: &Here,
) -> Outcome {
    let trained = train_run(job, dataset, revision, promoted, here);
    Outcome { promoted: trained.promoted.or_else(|| promoted.map(str::to_string)), ..trained }
}

/// What a run on this machine is given by `twin up`.
pub struct Here<'a> {
    /// Where the trainer is.
    pub trainer: &'a Trainer,
    /// `twin up`'s state folder, which keeps each run's configuration, result, progress and log.
    pub state_dir: &'a Path,
    /// Where the trainer's process is kept while it runs.
    pub slot: &'a ChildSlot,
    /// The job's live line.
    pub line: &'a Line,
}

/// The files `twin up` keeps of one run, in its state folder.
pub struct RunFiles {
    /// The trainer's configuration.
    pub config: PathBuf,
    /// Its one-line result.
    pub result: PathBuf,
    /// Its progress, as JSON lines.
    pub progress: PathBuf,
    /// Its standard output and error.
    pub log: PathBuf,
}

impl RunFiles {
    /// The files of the run of `job` on `revision`.
    pub fn of(state_dir: &Path, job: &TwinTrainingJob, revision: &str) -> Self {
        let run = Run::new(job, revision);
        let stem = format!(
            "{}-{}-{}",
            job.metadata.namespace.as_deref().unwrap_or("default"),
            job.metadata.name.as_deref().unwrap_or_default(),
            run.name
        );
        let file = |extension: &str| state_dir.join("training").join(format!("{stem}.{extension}"));
        Self { config: file("json"), result: file("result"), progress: file("progress"), log: file("log") }
    }
}

fn train_run(
    job: &TwinTrainingJob,
    dataset: &TwinDataset,
    revision: &str,
    promoted: Option<&str>,
    here: &Here,
) -> Outcome {
    let Here { trainer, state_dir, slot, line } = *here;
    let job = &match with_promoted(job, promoted) {
        Ok(job) => job,
        Err(error) => return outcome(TrainingPhase::Failed, "InvalidSpec", error),
    };
    let run = Run::new(job, revision);
    let places = match RunPlaces::of(job, dataset, &run) {
        Ok(places) => places,
        Err(error) => return outcome(TrainingPhase::Failed, "InvalidSpec", error),
    };
    let output = places.output.clone();
    if let Some(metrics) = local_folder(&output).map(|f| f.join("metrics.json")).filter(|m| m.is_file()) {
        if promoted == Some(revision) {
            let adapter = output.join("adapter");
            let message = format!(
                "run {} on revision {revision} trained before and is promoted: adapter at {adapter}",
                run.name
            );
            return Outcome {
                promoted: Some(revision.into()),
                ..outcome(TrainingPhase::Succeeded, "AdapterReused", message)
            };
        }
        return match recorded_success(&metrics) {
            Ok(success) => judged(job, &run, &output, &success, true),
            Err(error) => outcome(
                TrainingPhase::Failed,
                "MetricsUnreadable",
                format!("run {} trained before, but {error}", run.name),
            ),
        };
    }
    let Some(python) = trainer.python.as_ref().filter(|p| p.is_file()) else {
        return outcome(
            TrainingPhase::Pending,
            "TrainerNotInstalled",
            "the trainer's Python environment is not set up here: run scripts/trainer-env and give the \
             python it prints as --trainer-python (or TWIN_TRAINER_PYTHON)"
                .into(),
        );
    };
    let files = RunFiles::of(state_dir, job, revision);
    let runs = state_dir.join("training");
    if let Err(error) = std::fs::create_dir_all(&runs) {
        return outcome(TrainingPhase::Failed, "StateUnwritable", format!("{}: {error}", runs.display()));
    }
    for stale in [&files.result, &files.progress] {
        let _ = std::fs::remove_file(stale);
    }
    let config = TrainerConfig {
        progress_path: Some(files.progress.display().to_string()),
        ..TrainerConfig::for_run(job, &run, &places, &files.result.display().to_string(), str::to_string)
    };
    let written = serde_json::to_string_pretty(&config).expect("the trainer configuration serialises");
    if let Err(error) = std::fs::write(&files.config, written) {
        return outcome(
            TrainingPhase::Failed,
            "StateUnwritable",
            format!("{}: {error}", files.config.display()),
        );
    }
    // The trainer's own output (its step dictionaries, library notices) goes to the run's log;
    // its progress is drawn from the progress file.
    let log = match std::fs::File::create(&files.log).and_then(|log| Ok((log.try_clone()?, log))) {
        Ok(log) => log,
        Err(error) => {
            return outcome(
                TrainingPhase::Failed,
                "StateUnwritable",
                format!("{}: {error}", files.log.display()),
            );
        }
    };
    let mut command = Command::new(python);
    command.args(["-m", "twin_trainer", "--config"]).arg(&files.config).stdout(log.0).stderr(log.1);
    if let Some(source) = trainer.source.as_ref().filter(|source| source.is_dir()) {
        let mut path = std::ffi::OsString::from(source.as_os_str());
        if let Some(existing) = std::env::var_os("PYTHONPATH") {
            path.push(":");
            path.push(existing);
        }
        command.env("PYTHONPATH", path);
    }
    // The datasets library's per-sample bars and deprecation notices only fill the log.
    for (name, value) in [
        ("HF_DATASETS_DISABLE_PROGRESS_BARS", "1"),
        ("PYTHONWARNINGS", "ignore::FutureWarning"),
        ("PYTHONUNBUFFERED", "1"),
    ] {
        if std::env::var_os(name).is_none() {
            command.env(name, value);
        }
    }
    let mut watch = TrainerWatch::new(&files.progress);
    let child = match command.spawn() {
        Ok(child) => child,
        Err(error) => {
            return outcome(
                TrainingPhase::Failed,
                "TrainerNotStarted",
                format!("cannot start {}: {error}", python.display()),
            );
        }
    };
    *slot.lock().expect("child slot") = Some(child);
    let status = loop {
        let mut guard = slot.lock().expect("child slot");
        let Some(child) = guard.as_mut() else {
            return outcome(TrainingPhase::Pending, "Interrupted", "the trainer was stopped".into());
        };
        match child.try_wait() {
            Ok(Some(status)) => {
                guard.take();
                break status;
            }
            Ok(None) => {}
            Err(error) => {
                return outcome(
                    TrainingPhase::Failed,
                    "TrainerLost",
                    format!("waiting for the trainer: {error}"),
                );
            }
        }
        drop(guard);
        watch.show(line);
        std::thread::sleep(Duration::from_millis(200));
    };
    let result = std::fs::read_to_string(&files.result).ok().map(|text| TrainerResult::parse(&text));
    match result {
        Some(Ok(TrainerResult::Succeeded(success))) => judged(job, &run, &output, &success, false),
        Some(Ok(TrainerResult::Failed(failure))) => {
            outcome(TrainingPhase::Failed, &failure.reason, failure.message)
        }
        _ => outcome(
            TrainingPhase::Failed,
            "TrainerFailed",
            format!(
                "the trainer exited with {status} and left no result; its last lines: {} (all of it: {})",
                last_lines(&files.log, 3),
                files.log.display()
            ),
        ),
    }
}

/// The last `count` non-empty lines of the log at `path` (progress bars' carriage returns
/// end lines too), joined with ` | `.
fn last_lines(path: &Path, count: usize) -> String {
    let Ok(bytes) = std::fs::read(path) else { return "(the log is unreadable)".into() };
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<&str> = text.split(['\n', '\r']).map(str::trim).filter(|l| !l.is_empty()).collect();
    if lines.is_empty() {
        return "(none: it wrote nothing)".into();
    }
    lines[lines.len().saturating_sub(count)..].join(" | ")
}

/// Reads the trainer's progress file as it grows and draws each record on the job's line.
struct TrainerWatch {
    path: PathBuf,
    read: usize,
    /// The training stage under way and when (the trainer's clock) it started.
    stage: Option<(String, f64)>,
}

impl TrainerWatch {
    fn new(path: &Path) -> Self {
        Self { path: path.to_path_buf(), read: 0, stage: None }
    }

    /// Draws the records written since the last call (whole lines only).
    fn show(&mut self, line: &Line) {
        use std::io::{Read, Seek, SeekFrom};
        // Only what was appended since the last call is read.
        let mut bytes = Vec::new();
        let read = std::fs::File::open(&self.path).and_then(|mut file| {
            file.seek(SeekFrom::Start(self.read as u64))?;
            file.read_to_end(&mut bytes)
        });
        if read.is_err() {
            return;
        }
        let Some(end) = bytes.iter().rposition(|b| *b == b'\n') else { return };
        let fresh = &bytes[..end + 1];
        self.read += end + 1;
        for record in fresh.split(|b| *b == b'\n').filter(|r| !r.is_empty()) {
            if let Ok(record) = serde_json::from_slice::<serde_json::Value>(record) {
                self.draw(&record, line);
            }
        }
    }

    fn draw(&mut self, record: &serde_json::Value, line: &Line) {
        let stage = record["stage"].as_str().unwrap_or_default();
        let number = |key: &str| record[key].as_u64().unwrap_or(0);
        let elapsed = record["elapsed"].as_f64().unwrap_or(0.0);
        match stage {
            "loading" => line.busy("loading the base model and the dataset"),
            "sft" | "dpo" => {
                let started = match &self.stage {
                    Some((name, started)) if name == stage => *started,
                    _ => {
                        self.stage = Some((stage.to_string(), elapsed));
                        elapsed
                    }
                };
                let mut detail = Vec::new();
                if let Some(loss) = record["loss"].as_f64() {
                    detail.push(format!("loss {loss:.3}"));
                }
                let seconds = elapsed - started;
                if number("tokens") > 0 && seconds > 0.0 {
                    detail.push(format!("{:.0} tokens/s", number("tokens") as f64 / seconds));
                }
                let what = if stage == "sft" { "training: SFT" } else { "training: DPO" };
                line.count(what, "steps", &detail.join(", "), number("step"), number("steps"));
            }
            "sft-eval" => line.busy(&format!("scoring {} held-out samples", number("samples"))),
            "evaluation" => {
                let (what, unit) = match record["part"].as_str() {
                    Some("answers") => ("evaluating: answers", "questions"),
                    _ => ("evaluating: likelihood", "texts"),
                };
                line.count(what, unit, "", number("done"), number("total"));
            }
            "publishing" => line.busy("publishing the adapter"),
            _ => {}
        }
    }
}

/// Ends a run's trainer, if one runs.
pub fn stop(slot: &ChildSlot) {
    if let Some(mut child) = slot.lock().expect("child slot").take() {
        let _ = child.kill();
        let _ = child.wait();
    }
}
