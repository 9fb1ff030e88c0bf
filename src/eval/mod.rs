//! `twin eval`: does a twin write like its author and answer from their writing? Measured on a
//! dataset revision's held-out split, for the twin and for a baseline (its base model, another
//! adapter, or another endpoint), with paired bootstrap intervals: voice by likelihood (NLL of
//! the author's held-out passages and of a control text), voice in generated answers
//! (character n-gram and embedding likeness, Burrows' Delta), and grounding (retrieval of each
//! question's source, answer sentences a retrieved passage supports). Writes `evaluation.json`
//! and `report.html`, prints a table, and fails when a gate's minimum is not reached. The
//! measures themselves are in `measure.rs`.

pub mod answers;
pub mod grounding;
pub mod html;
pub mod judge;
pub mod likelihood;
mod local;
mod measure;
pub mod promotion;
pub mod report;
pub mod stats;
pub mod style;
pub mod testset;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use self::answers::Asker;
use self::local::{InProcess, load_models, responder};
use self::measure::{judged, measure_answers, measure_likelihood};
use self::report::{DatasetFacts, Evaluation, Gate, Settings, Subject};
use self::testset::{Sample, Sources};
use crate::serve::config::parse_duration;
use crate::serve::knowledge::{DatasetLocation, Knowledge};
use crate::storage::S3Options;
use crate::storage::hub::HubOptions;

/// The control text shipped with the project: the opening of Newton's *Opticks* (4th edition,
/// 1730; public domain), prose that is nobody's twin. The trainer's package holds the file, so
/// that the trainer's evaluation and this one read the same text.
const CONTROL_TEXT: &str = include_str!("../../trainer/src/twin_trainer/control/opticks.txt");
/// Words of one control passage: about the size of a dataset passage (a 256-token chunk is
/// some 120–190 words), so that the author's and the control's scored texts cost alike and
/// their per-token NLLs compare texts of one length.
const CONTROL_PASSAGE_WORDS: usize = 120;
/// Exit status when the gate failed (errors exit 1).
pub const GATE_FAILED: u8 = 3;

/// Flags of `twin eval`.
#[derive(clap::Args, Debug, Clone)]
pub struct EvalArgs {
    /// The dataset revision to evaluate on, as `twin serve` takes it (a revision's folder, or a
    /// dataset's folder for its newest revision; file://, pvc:// or s3://).
    #[arg(long, value_name = "URI")]
    pub dataset: String,
    /// The twin's GGUF model, run in this process: a path, file:// or hf://org/repo/file.gguf.
    /// Default: SmolLM2-135M-Instruct in --models-dir.
    #[arg(long, value_name = "PATH_OR_URI")]
    pub model: Option<String>,
    /// The twin's GGUF LoRA adapter (the trainer's adapter.gguf).
    #[arg(long, value_name = "GGUF")]
    pub adapter: Option<String>,
    /// Evaluate an OpenAI-compatible endpoint instead (a TwinEndpoint's gateway, vLLM, …):
    /// its answers only, since likelihoods need the weights.
    #[arg(long, value_name = "URL", conflicts_with_all = ["model", "adapter"])]
    pub endpoint: Option<String>,
    /// A file holding the endpoints' API key (sent as a bearer token).
    #[arg(long, value_name = "FILE")]
    pub api_key_file: Option<PathBuf>,
    /// The model the endpoint is asked for (default: the endpoint's own).
    #[arg(long, value_name = "NAME")]
    pub endpoint_model: Option<String>,
    /// The baseline's GGUF model. Default: the twin's model (so the baseline is the adapter's base).
    #[arg(long, value_name = "PATH_OR_URI")]
    pub baseline_model: Option<String>,
    /// A LoRA adapter on the baseline (to compare with the adapter serving now).
    #[arg(long, value_name = "GGUF")]
    pub baseline_adapter: Option<String>,
    /// An OpenAI-compatible endpoint as the baseline.
    #[arg(long, value_name = "URL", conflicts_with_all = ["baseline_model", "baseline_adapter"])]
    pub baseline_endpoint: Option<String>,
    /// Held-out questions each model answers (0: no answers, likelihood and retrieval only).
    #[arg(long, default_value_t = 8)]
    pub questions: usize,
    /// Held-out passages scored by likelihood (0: all of the test split).
    #[arg(long, default_value_t = 0)]
    pub passages: usize,
    /// Longest answer, in tokens.
    #[arg(long, default_value_t = 128)]
    pub max_tokens: u32,
    /// Seed of the question sample and of the bootstrap; answers are greedy.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Where evaluation.json and report.html are written.
    #[arg(long, value_name = "DIR", default_value = "twin-eval")]
    pub out: PathBuf,
    /// A control text that is not the author's (a UTF-8 file or file:// URI). Default: the
    /// opening of Newton's Opticks, shipped with twin.
    #[arg(long, value_name = "URI")]
    pub control: Option<String>,
    /// A gate (YAML or JSON: `minimums: {winRate: 0.5, nllReduction: 0.05}`): exits 3 when a
    /// minimum is not reached.
    #[arg(long, value_name = "FILE")]
    pub gate: Option<PathBuf>,
    /// Passages the in-process gateway retrieves for each question (as `twin serve --top-k`).
    #[arg(long, default_value_t = 4)]
    pub top_k: u32,
    /// Where models are kept (the default model, the dataset's embedding model).
    #[arg(long, env = crate::contract::env::MODELS_DIR, value_name = "DIR")]
    pub models_dir: Option<PathBuf>,
    /// CPU threads of the in-process models. Default: every core.
    #[arg(long)]
    pub threads: Option<usize>,
    /// An OpenAI-compatible model that scores each answer for accuracy and style (1–3) against
    /// the author's passage, e.g. http://vllm:8000/v1. Unset: no judge, and the report says so.
    #[arg(long, value_name = "URL")]
    pub judge: Option<String>,
    /// The model the judge is asked for (default: the endpoint's own).
    #[arg(long, value_name = "NAME", requires = "judge")]
    pub judge_model: Option<String>,
    /// A file holding the judge's API key.
    #[arg(long, value_name = "FILE", requires = "judge")]
    pub judge_api_key_file: Option<PathBuf>,
    /// Longest wait for one answer of an endpoint or the judge.
    #[arg(long, default_value = "300s", value_parser = parse_duration)]
    pub timeout: Duration,
}

/// Runs `twin eval`.
pub async fn run(args: EvalArgs) -> ExitCode {
    match evaluate(&args).await {
        Ok(evaluation) => {
            println!("{}", evaluation.table());
            println!(
                "wrote {} and {}",
                args.out.join("evaluation.json").display(),
                args.out.join("report.html").display()
            );
            if evaluation.gate.as_ref().is_some_and(|g| !g.passed) {
                ExitCode::from(GATE_FAILED)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// What the dataset gives an evaluation.
struct Revision {
    knowledge: Arc<Knowledge>,
    uri: String,
    test: Vec<Sample>,
    train_answers: Vec<String>,
}

async fn open_revision(args: &EvalArgs) -> Result<Revision, String> {
    let s3 = S3Options::default();
    let pvc_root = PathBuf::from(crate::contract::paths::PVC_ROOT);
    let location = DatasetLocation::open(&args.dataset, &pvc_root, &s3, args.models_dir.clone()).await?;
    let folder = location.current().await?;
    let read_split = |name: &'static str| {
        let location = &location;
        let folder = folder.clone();
        async move {
            let bytes = location.read(&folder, name).await?;
            bytes.map(|b| testset::samples(name, &b)).transpose()
        }
    };
    let test = read_split("instruct/test.jsonl").await?.unwrap_or_default();
    if test.is_empty() {
        return Err(format!(
            "{}: the revision {folder} has no held-out samples (instruct/test.jsonl is missing or empty): set \
             spec.instruct.testFraction above 0 (0.1 is usual) and build the dataset again",
            args.dataset
        ));
    }
    let train = read_split("instruct/train.jsonl").await?.unwrap_or_default();
    let mut seen = std::collections::HashSet::new();
    let train_answers: Vec<String> =
        train.into_iter().map(|s| s.answer).filter(|a| seen.insert(a.clone())).collect();
    if train_answers.is_empty() {
        return Err(format!(
            "{}: the revision {folder} has no training samples (instruct/train.jsonl)",
            args.dataset
        ));
    }
    let knowledge = location.load(&folder, None, &HubOptions::from_env()).await?;
    Ok(Revision { knowledge: Arc::new(knowledge), uri: args.dataset.clone(), test, train_answers })
}

/// The control text as passages of about [`CONTROL_PASSAGE_WORDS`] words, cut at sentences.
fn control_passages(text: &str) -> Vec<String> {
    use unicode_segmentation::UnicodeSegmentation;
    let mut passages = Vec::new();
    let mut current = String::new();
    for sentence in text.unicode_sentences() {
        current.push_str(sentence);
        if current.unicode_words().count() >= CONTROL_PASSAGE_WORDS {
            passages.push(current.split_whitespace().collect::<Vec<_>>().join(" "));
            current.clear();
        }
    }
    if current.unicode_words().count() >= CONTROL_PASSAGE_WORDS / 2 {
        passages.push(current.split_whitespace().collect::<Vec<_>>().join(" "));
    }
    passages
}

fn read_control(control: Option<&str>) -> Result<(String, String), String> {
    let Some(uri) = control else { return Ok(("builtin:opticks".into(), CONTROL_TEXT.to_string())) };
    let path = Path::new(uri.strip_prefix("file://").unwrap_or(uri));
    let text = std::fs::read_to_string(path).map_err(|e| format!("--control {uri}: cannot read it: {e}"))?;
    if control_passages(&text).is_empty() {
        return Err(format!(
            "--control {uri}: the control text needs at least {} words of prose",
            CONTROL_PASSAGE_WORDS / 2
        ));
    }
    Ok((uri.to_string(), text))
}

async fn evaluate(args: &EvalArgs) -> Result<Evaluation, String> {
    let started = Instant::now();
    // An earlier run's figures must not pass for this one's if this one fails.
    for stale in ["evaluation.json", "report.html"] {
        let _ = std::fs::remove_file(args.out.join(stale));
    }
    let gate = match &args.gate {
        Some(path) => Some(Gate::parse(
            &std::fs::read_to_string(path).map_err(|e| format!("--gate {}: {e}", path.display()))?,
        )?),
        None => None,
    };
    let (control_name, control_text) = read_control(args.control.as_deref())?;
    let read_key = |flag: &str, path: &Option<PathBuf>| -> Result<Option<String>, String> {
        path.as_ref()
            .map(|p| std::fs::read_to_string(p).map(|k| k.trim().to_string()))
            .transpose()
            .map_err(|e| format!("{flag} {}: {e}", path.as_ref().expect("set").display()))
    };
    let api_key = read_key("--api-key-file", &args.api_key_file)?;
    let judge = match &args.judge {
        Some(url) => Some(Asker::new(
            url,
            read_key("--judge-api-key-file", &args.judge_api_key_file)?,
            args.judge_model.clone(),
            args.timeout,
        )?),
        None => None,
    };
    std::fs::create_dir_all(&args.out).map_err(|e| format!("--out {}: {e}", args.out.display()))?;

    eprintln!("reading the dataset {}...", args.dataset);
    let revision = open_revision(args).await?;
    let distinct = testset::one_per_passage(revision.test.clone(), args.seed);
    let scored_passages: Vec<Sample> =
        distinct.iter().take(if args.passages == 0 { usize::MAX } else { args.passages }).cloned().collect();
    let questions: Vec<Sample> = distinct.iter().take(args.questions).cloned().collect();
    // As many control passages as the author's, so that both reductions rest on as many texts.
    let control: Vec<String> =
        control_passages(&control_text).into_iter().take(scored_passages.len()).collect();
    let threads = args.threads.unwrap_or_else(crate::parallel::cores);
    let mut not_measured = BTreeMap::new();
    if judge.is_none() {
        not_measured.insert("judge".to_string(), "no --judge given: nothing is scored 1–3".to_string());
    }

    eprintln!("loading the models...");
    let (mut twin, mut baseline) = load_models(args).await?;
    let phase = Instant::now();
    let likelihood = match (twin.take(), baseline.take()) {
        (Some(mut t), Some(mut b)) => {
            let (passages, control_passages) = (scored_passages.clone(), control.clone());
            let seed = args.seed;
            let (measured, t, b) = tokio::task::spawn_blocking(move || {
                let measured =
                    measure_likelihood(&mut t, &mut b, &passages, &control_passages, threads, seed);
                (measured, t, b)
            })
            .await
            .map_err(|e| format!("scoring panicked: {e}"))?;
            (twin, baseline) = (Some(t), Some(b));
            Some(measured?)
        }
        (t, b) => {
            let why = if t.is_none() {
                "the twin is an endpoint: likelihoods need its weights (run with --model and --adapter)"
            } else {
                "the baseline is an endpoint: likelihoods need its weights (use --baseline-model)"
            };
            not_measured.insert("likelihood".into(), why.into());
            (twin, baseline) = (t, b);
            None
        }
    };

    if likelihood.is_some() {
        eprintln!("likelihood: scored in {:.1} s", phase.elapsed().as_secs_f64());
    }
    let knowledge = revision.knowledge.clone();
    let sources = Sources::new(&knowledge.index);
    let test_sources: Vec<(&str, Vec<usize>)> =
        revision.test.iter().map(|s| (s.instruction.as_str(), sources.of(&s.answer))).collect();
    let distinct_sources: Vec<(&str, Vec<usize>)> =
        distinct.iter().map(|s| (s.answer.as_str(), sources.of(&s.answer))).collect();

    let answers = if questions.is_empty() {
        not_measured.insert("answers".into(), "--questions 0".into());
        if judge.is_some() {
            not_measured.insert("judge".into(), "no answers to judge (--questions 0)".into());
        }
        None
    } else {
        let mut answered = Vec::with_capacity(questions.len());
        let mut twin_answers = Vec::new();
        let twin_responder =
            responder(args, args.endpoint.as_deref(), twin.as_mut(), api_key.clone()).await?;
        for (i, sample) in questions.iter().enumerate() {
            eprintln!("twin answering {}/{}...", i + 1, questions.len());
            twin_answers
                .push(twin_responder.asker().ask(&sample.instruction, args.max_tokens, args.seed).await?);
        }
        twin_responder.stop().await;
        let baseline_responder =
            responder(args, args.baseline_endpoint.as_deref(), baseline.as_mut(), api_key.clone()).await?;
        for ((i, sample), twin_answer) in questions.iter().enumerate().zip(twin_answers) {
            eprintln!("baseline answering {}/{}...", i + 1, questions.len());
            let baseline_answer =
                baseline_responder.asker().ask(&sample.instruction, args.max_tokens, args.seed).await?;
            answered.push((sample.clone(), twin_answer, baseline_answer));
        }
        baseline_responder.stop().await;
        let mut verdicts = Vec::new();
        if let Some(judge) = &judge {
            for (i, (sample, twin, baseline)) in answered.iter().enumerate() {
                eprintln!("judging {}/{}...", i + 1, answered.len());
                let (instruction, reference) = (&sample.instruction, &sample.answer);
                let on_twin =
                    self::judge::judge(judge, instruction, reference, &twin.text, args.seed).await?;
                let on_baseline =
                    self::judge::judge(judge, instruction, reference, &baseline.text, args.seed).await?;
                verdicts.push([on_twin, on_baseline]);
            }
        }
        eprintln!("measuring the answers...");
        let mut measured = measure_answers(
            answered,
            &revision,
            &control_text,
            &distinct_sources,
            args.seed,
            &mut not_measured,
        )?;
        if let Some(judge) = &judge {
            measured.judge = Some(judged(judge.base(), args.judge_model.clone(), &verdicts, args.seed)?);
            for (item, verdict) in measured.items.iter_mut().zip(verdicts) {
                item.judge = Some(verdict);
            }
        }
        Some(measured)
    };
    let retrieval = grounding::retrieval(&knowledge.index, &knowledge.embedder, &test_sources)?;

    let describe = |endpoint: &Option<String>, local: &Option<InProcess>| match (endpoint, local) {
        (Some(url), _) => Subject { model: url.clone(), adapter: None },
        (None, Some(l)) => Subject {
            model: l.model.path.display().to_string(),
            adapter: l.adapter.as_ref().map(|a| a.display().to_string()),
        },
        (None, None) => Subject { model: String::new(), adapter: None },
    };
    let mut evaluation = Evaluation {
        version: 1,
        dataset: DatasetFacts {
            uri: revision.uri.clone(),
            dataset: knowledge.dataset.clone(),
            revision: knowledge.revision.clone(),
            author: knowledge.author.clone(),
            test_passages: distinct.len(),
            train_passages: revision.train_answers.len(),
        },
        twin: describe(&args.endpoint, &twin),
        baseline: describe(&args.baseline_endpoint, &baseline),
        settings: Settings {
            questions: questions.len(),
            passages: scored_passages.len(),
            max_tokens: args.max_tokens,
            seed: args.seed,
            control: control_name,
            decoding: "greedy (temperature 0)".into(),
        },
        likelihood,
        answers,
        retrieval,
        not_measured,
        headline: BTreeMap::new(),
        gate: None,
        seconds: 0.0,
    };
    evaluation.headline = evaluation.headline_figures();
    evaluation.gate = gate.map(|g| g.judge(&evaluation.headline));
    evaluation.seconds = (started.elapsed().as_secs_f64() * 10.0).round() / 10.0;
    let json = serde_json::to_vec_pretty(&evaluation).map_err(|e| e.to_string())?;
    // Each file whole or not at all.
    let out = crate::storage::local::LocalStore::new(args.out.clone());
    out.write("evaluation.json", &json).map_err(|e| e.to_string())?;
    out.write("report.html", html::render(&evaluation).as_bytes()).map_err(|e| e.to_string())?;
    Ok(evaluation)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_control_text_is_cut_into_passages_of_prose() {
        let passages = control_passages(CONTROL_TEXT);
        assert!(passages.len() >= 25, "{} passages", passages.len());
        assert!(passages.iter().all(|p| style::words(p).len() >= CONTROL_PASSAGE_WORDS / 2));
        assert!(read_control(Some("/nonexistent/control.txt")).unwrap_err().contains("cannot read it"));
    }
}
