//! A TwinTrainingJob run by `twin up`: the trainer (`trainer/`, Python) as a child process on
//! this machine's CPU or GPU, with the configuration the operator would write for the same run;
//! its step log shown as it trains; its one-line result read back and judged against the job's
//! evaluation gate, as the operator judges it. A run that already finished (its `metrics.json`,
//! which the trainer writes last, is there) is reused, not trained again.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::api::training::{TrainedModel, TwinTrainingJobStatus};
use crate::api::{TwinDataset, TwinTrainingJob};
use crate::contract::trainer::{
    Run, TrainerConfig, TrainerResult, TrainerSuccess, must_beat_adapter, run_output,
};
use crate::eval::promotion;
use crate::storage::StorageUri;

/// Where the trainer is on this machine.
#[derive(Debug, Clone, Default)]
pub struct Trainer {
    /// The Python of the trainer's environment (`scripts/trainer-env` prints it).
    pub python: Option<PathBuf>,
    /// The trainer's package source (`trainer/src`), put on `PYTHONPATH` when it exists.
    pub source: PathBuf,
}

/// How a local training run ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// `Succeeded`, `Rejected` (trained, but it failed its gate), `Failed` or `Pending`.
    pub phase: &'static str,
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

fn outcome(phase: &'static str, reason: &str, message: String) -> Outcome {
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
        return Outcome { promoted: Some(run.revision.clone()), ..outcome("Succeeded", reason, summary) };
    }
    let kept = kept.map(|m| (m.run.as_deref().unwrap_or("-"), m.adapter_uri.as_str()));
    outcome("Rejected", "GateFailed", promotion::rejection(&evaluation, kept, &summary))
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
    trainer: &Trainer,
    state_dir: &Path,
    slot: &ChildSlot,
) -> Outcome {
    let trained = train_run(job, dataset, revision, promoted, trainer, state_dir, slot);
    Outcome { promoted: trained.promoted.or_else(|| promoted.map(str::to_string)), ..trained }
}

fn train_run(
    job: &TwinTrainingJob,
    dataset: &TwinDataset,
    revision: &str,
    promoted: Option<&str>,
    trainer: &Trainer,
    state_dir: &Path,
    slot: &ChildSlot,
) -> Outcome {
    let job = &match with_promoted(job, promoted) {
        Ok(job) => job,
        Err(error) => return outcome("Failed", "InvalidSpec", error),
    };
    let run = Run::new(job, revision);
    let output = match run_output(job, &run) {
        Ok(output) => output,
        Err(error) => return outcome("Failed", "InvalidSpec", error),
    };
    if let Some(metrics) = local_folder(&output).map(|f| f.join("metrics.json")).filter(|m| m.is_file()) {
        if promoted == Some(revision) {
            let adapter = output.join("adapter");
            let message = format!(
                "run {} on revision {revision} trained before and is promoted: adapter at {adapter}",
                run.name
            );
            return Outcome {
                promoted: Some(revision.into()),
                ..outcome("Succeeded", "AdapterReused", message)
            };
        }
        return match recorded_success(&metrics) {
            Ok(success) => judged(job, &run, &output, &success, true),
            Err(error) => outcome(
                "Failed",
                "MetricsUnreadable",
                format!("run {} trained before, but {error}", run.name),
            ),
        };
    }
    let Some(python) = trainer.python.as_ref().filter(|p| p.is_file()) else {
        return outcome(
            "Pending",
            "TrainerNotInstalled",
            "the trainer's Python environment is not set up here: run scripts/trainer-env and give the \
             python it prints as --trainer-python (or TWIN_TRAINER_PYTHON)"
                .into(),
        );
    };
    let runs = state_dir.join("training");
    if let Err(error) = std::fs::create_dir_all(&runs) {
        return outcome("Failed", "StateUnwritable", format!("{}: {error}", runs.display()));
    }
    let stem = format!(
        "{}-{}-{}",
        job.metadata.namespace.as_deref().unwrap_or("default"),
        job.metadata.name.as_deref().unwrap_or_default(),
        run.name
    );
    let result_path = runs.join(format!("{stem}.result"));
    let _ = std::fs::remove_file(&result_path);
    let config = match TrainerConfig::for_run(
        job,
        dataset,
        &run,
        &result_path.display().to_string(),
        str::to_string,
    ) {
        Ok(config) => config,
        Err(error) => return outcome("Failed", "InvalidSpec", error),
    };
    let config_path = runs.join(format!("{stem}.json"));
    let written = serde_json::to_string_pretty(&config).expect("the trainer configuration serialises");
    if let Err(error) = std::fs::write(&config_path, written) {
        return outcome("Failed", "StateUnwritable", format!("{}: {error}", config_path.display()));
    }
    let mut command = Command::new(python);
    command.args(["-m", "twin_trainer", "--config"]).arg(&config_path);
    if trainer.source.is_dir() {
        let mut path = std::ffi::OsString::from(trainer.source.as_os_str());
        if let Some(existing) = std::env::var_os("PYTHONPATH") {
            path.push(":");
            path.push(existing);
        }
        command.env("PYTHONPATH", path);
    }
    // The trainer's step log (steps, loss) goes to this terminal as it trains; the per-sample
    // progress bars of the datasets library and library deprecation notices would bury it.
    for (name, value) in
        [("HF_DATASETS_DISABLE_PROGRESS_BARS", "1"), ("PYTHONWARNINGS", "ignore::FutureWarning")]
    {
        if std::env::var_os(name).is_none() {
            command.env(name, value);
        }
    }
    let child = match command.spawn() {
        Ok(child) => child,
        Err(error) => {
            return outcome(
                "Failed",
                "TrainerNotStarted",
                format!("cannot start {}: {error}", python.display()),
            );
        }
    };
    *slot.lock().expect("child slot") = Some(child);
    let status = loop {
        let mut guard = slot.lock().expect("child slot");
        let Some(child) = guard.as_mut() else {
            return outcome("Pending", "Interrupted", "the trainer was stopped".into());
        };
        match child.try_wait() {
            Ok(Some(status)) => {
                guard.take();
                break status;
            }
            Ok(None) => {}
            Err(error) => {
                return outcome("Failed", "TrainerLost", format!("waiting for the trainer: {error}"));
            }
        }
        drop(guard);
        std::thread::sleep(Duration::from_millis(200));
    };
    let result = std::fs::read_to_string(&result_path).ok().map(|text| TrainerResult::parse(&text));
    match result {
        Some(Ok(TrainerResult::Succeeded(success))) => judged(job, &run, &output, &success, false),
        Some(Ok(TrainerResult::Failed(failure))) => outcome("Failed", &failure.reason, failure.message),
        _ => outcome(
            "Failed",
            "TrainerFailed",
            format!("the trainer exited with {status} and left no result in {}", result_path.display()),
        ),
    }
}

/// Ends a run's trainer, if one runs.
pub fn stop(slot: &ChildSlot) {
    if let Some(mut child) = slot.lock().expect("child slot").take() {
        let _ = child.kill();
        let _ = child.wait();
    }
}
