//! `twin eval`: does a twin write like its author and answer from their writing? Measured on a
//! dataset revision's held-out split, for the twin and for a baseline (its base model, another
//! adapter, or another endpoint), with paired bootstrap intervals: voice by likelihood (NLL of
//! the author's held-out passages and of a control text), voice in generated answers
//! (character n-gram and embedding likeness, Burrows' Delta), and grounding (retrieval of each
//! question's source, answer sentences a retrieved passage supports). Writes `evaluation.json`
//! and `report.html`, prints a table, and fails when a gate's minimum is not reached.

pub mod answers;
pub mod grounding;
pub mod html;
pub mod judge;
pub mod likelihood;
mod local;
pub mod promotion;
pub mod report;
pub mod stats;
pub mod style;
pub mod testset;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use self::answers::{Answer, Asker};
use self::local::{InProcess, load_models, responder};
use self::report::{
    Answers, Compared, DatasetFacts, DeltaFigures, Evaluation, Gate, Item, Settings, Subject, TextLikelihood,
};
use self::stats::{Estimate, bootstrap_mean, difference_of_means, paired_difference};
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

/// Per text, [twin, baseline] likelihood.
fn score_all(
    texts: &[likelihood::Scored],
    twin: &mut likelihood::Scorer,
    baseline: &mut likelihood::Scorer,
    progress: &dyn Fn(usize),
) -> Result<(Vec<[f64; 2]>, usize), String> {
    let mut scores = Vec::with_capacity(texts.len());
    let mut tokens = 0;
    for (i, text) in texts.iter().enumerate() {
        let t = twin.score(text)?;
        let b = baseline.score(text)?;
        if t.tokens > 0 {
            scores.push([t.per_token(), b.per_token()]);
            tokens += t.tokens;
        }
        progress(i + 1);
    }
    Ok((scores, tokens))
}

fn compared(pairs: &[[f64; 2]], seed: u64) -> Option<Compared> {
    let twin: Vec<f64> = pairs.iter().map(|p| p[0]).collect();
    let baseline: Vec<f64> = pairs.iter().map(|p| p[1]).collect();
    Some(Compared {
        twin: bootstrap_mean(&twin, seed)?,
        baseline: bootstrap_mean(&baseline, seed.wrapping_add(1))?,
        difference: paired_difference(&twin, &baseline, seed.wrapping_add(2))?,
    })
}

fn text_likelihood(
    pairs: Vec<[f64; 2]>,
    tokens: usize,
    seed: u64,
    what: &str,
) -> Result<TextLikelihood, String> {
    let nll = compared(&pairs, seed).ok_or_else(|| format!("no {what} could be scored"))?;
    Ok(TextLikelihood { nll, tokens, per_text: pairs })
}

/// Voice by likelihood: the held-out passages and the control text under both models.
fn measure_likelihood(
    twin: &mut InProcess,
    baseline: &mut InProcess,
    passages: &[Sample],
    control: &[String],
    threads: usize,
    seed: u64,
) -> Result<report::Likelihood, String> {
    let twin_model = twin.model.model;
    let baseline_model = baseline.model.model;
    let mut twin_scorer = likelihood::Scorer::new(twin_model, twin.handles.first_mut(), threads)?;
    let mut baseline_scorer = likelihood::Scorer::new(baseline_model, baseline.handles.first_mut(), threads)?;
    let total = passages.len() * 2 + control.len();
    let done = std::sync::atomic::AtomicUsize::new(0);
    let progress = |_: usize| {
        let n = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        if n.is_multiple_of(20) || n == total {
            eprintln!("likelihood: {n}/{total} texts scored");
        }
    };
    let answers: Vec<likelihood::Scored> = passages
        .iter()
        .map(|s| likelihood::Scored::Answer {
            system: &s.system,
            instruction: &s.instruction,
            answer: &s.answer,
        })
        .collect();
    let (answer_pairs, answer_tokens) =
        score_all(&answers, &mut twin_scorer, &mut baseline_scorer, &progress)?;
    let plain: Vec<likelihood::Scored> =
        passages.iter().map(|s| likelihood::Scored::Plain(&s.answer)).collect();
    let (plain_pairs, plain_tokens) = score_all(&plain, &mut twin_scorer, &mut baseline_scorer, &progress)?;
    let control_texts: Vec<likelihood::Scored> =
        control.iter().map(|c| likelihood::Scored::Plain(c)).collect();
    let (control_pairs, control_tokens) =
        score_all(&control_texts, &mut twin_scorer, &mut baseline_scorer, &progress)?;
    // Reductions (baseline − twin) per text; the author's minus the control's.
    let reduction = |pairs: &[[f64; 2]]| pairs.iter().map(|p| p[1] - p[0]).collect::<Vec<f64>>();
    let author_specific = difference_of_means(&reduction(&plain_pairs), &reduction(&control_pairs), seed)
        .ok_or("no control text could be scored")?;
    Ok(report::Likelihood {
        author_answers: text_likelihood(answer_pairs, answer_tokens, seed, "held-out answer")?,
        author_text: text_likelihood(plain_pairs, plain_tokens, seed, "held-out passage")?,
        control_text: text_likelihood(control_pairs, control_tokens, seed, "control passage")?,
        author_specific_reduction: author_specific,
    })
}

/// Differences smaller than this are ties (the same answer scores the same up to rounding).
const TIE: f64 = 1e-9;

/// The share of pairs where the twin's figure is the higher, ties counting half.
fn win_rate(pairs: &[[f64; 2]], seed: u64) -> Estimate {
    let wins: Vec<f64> = pairs
        .iter()
        .map(|p| {
            if (p[0] - p[1]).abs() <= TIE {
                0.5
            } else if p[0] > p[1] {
                1.0
            } else {
                0.0
            }
        })
        .collect();
    bootstrap_mean(&wins, seed).unwrap_or(Estimate { value: 0.0, low: 0.0, high: 0.0, n: 0 })
}

/// Voice and grounding in the answers.
fn measure_answers(
    items: Vec<(Sample, Answer, Answer)>,
    revision: &Revision,
    control_text: &str,
    test_sources: &[(&str, Vec<usize>)],
    seed: u64,
    not_measured: &mut BTreeMap<String, String>,
) -> Result<Answers, String> {
    let knowledge = &revision.knowledge;
    let profile = style::Profile::new(revision.train_answers.iter().map(String::as_str));
    let likeness: Vec<[f64; 2]> =
        items.iter().map(|(_, t, b)| [profile.likeness(&t.text), profile.likeness(&b.text)]).collect();
    let author_likeness = compared(&likeness, seed).ok_or("no answers to measure")?;
    let delta = style::Delta::new(&revision.train_answers.join("\n\n"), control_text).map(|delta| {
        let pooled = |pick: fn(&(Sample, Answer, Answer)) -> &str| {
            items.iter().map(pick).collect::<Vec<_>>().join("\n\n")
        };
        let (twin, baseline) = (pooled(|i| &i.1.text), pooled(|i| &i.2.text));
        let (twin_words, baseline_words) = (style::words(&twin).len(), style::words(&baseline).len());
        DeltaFigures {
            twin: delta.distance(&twin),
            baseline: delta.distance(&baseline),
            twin_words,
            baseline_words,
            most_frequent_words: style::DELTA_WORDS,
            stable: twin_words.min(baseline_words) >= style::DELTA_STABLE_WORDS,
        }
    });
    if delta.is_none() {
        not_measured.insert(
            "delta".into(),
            "the author's training text and the control text hold fewer than three 1,000-word segments"
                .into(),
        );
    }
    // The author's writing as the embedding model sees it: every chunk but the held-out ones.
    let held_out: std::collections::HashSet<usize> =
        test_sources.iter().flat_map(|(_, s)| s.iter().copied()).collect();
    let texts: Vec<&str> = items.iter().flat_map(|(_, t, b)| [t.text.as_str(), b.text.as_str()]).collect();
    let similarity = grounding::centroid_similarity(
        &texts,
        (0..knowledge.index.len()).filter(|i| !held_out.contains(i)),
        &knowledge.index,
        &knowledge.embedder,
    )?;
    let embedding_pairs: Vec<[f64; 2]> = similarity.chunks(2).map(|p| [p[0], p[1]]).collect();
    let embedding_likeness =
        compared(&embedding_pairs, seed.wrapping_add(10)).ok_or("no answers to embed")?;
    // Faithfulness: sentences a passage the gateway used supports.
    let position: HashMap<&str, usize> =
        (0..knowledge.index.len()).map(|i| (knowledge.index.passage(i).chunk_id.as_str(), i)).collect();
    let used = |answer: &Answer| {
        answer.sources.iter().filter_map(|id| position.get(id.as_str()).copied()).collect::<Vec<_>>()
    };
    let threshold = grounding::calibrate(&knowledge.index, &knowledge.embedder, test_sources, seed)?;
    let mut faithfulness = None;
    match &threshold {
        None => {
            not_measured.insert(
                "faithfulness".into(),
                "no held-out passage has a sentence and a source chunk to set the threshold on".into(),
            );
        }
        Some(threshold) => {
            let mut pairs = Vec::new();
            for (_, twin, baseline) in &items {
                let index = &knowledge.index;
                let t = grounding::supported_share(
                    &twin.text,
                    &used(twin),
                    index,
                    &knowledge.embedder,
                    threshold.threshold,
                )?;
                let b = grounding::supported_share(
                    &baseline.text,
                    &used(baseline),
                    index,
                    &knowledge.embedder,
                    threshold.threshold,
                )?;
                if let (Some(t), Some(b)) = (t, b) {
                    pairs.push([t, b]);
                }
            }
            faithfulness = compared(&pairs, seed.wrapping_add(20));
            if faithfulness.is_none() {
                not_measured.insert(
                    "faithfulness".into(),
                    "no answer pair had both a sentence to check and passages the endpoint named (an endpoint that is not a twin gateway names none)".into(),
                );
            }
        }
    }
    Ok(Answers {
        author_likeness,
        win_rate: win_rate(&likeness, seed.wrapping_add(3)),
        delta,
        embedding_likeness,
        embedding_win_rate: win_rate(&embedding_pairs, seed.wrapping_add(11)),
        faithfulness,
        faithfulness_threshold: threshold,
        judge: None,
        items: items
            .into_iter()
            .zip(&likeness)
            .map(|((sample, twin, baseline), l)| Item {
                instruction: sample.instruction,
                reference: sample.answer,
                twin,
                baseline,
                likeness: *l,
                judge: None,
            })
            .collect(),
    })
}

/// The judge's scores, twin against baseline.
fn judged(
    url: &str,
    model: Option<String>,
    verdicts: &[[judge::Verdict; 2]],
    seed: u64,
) -> Result<report::Judged, String> {
    let pairs = |pick: fn(&judge::Verdict) -> u8| -> Vec<[f64; 2]> {
        verdicts.iter().map(|[t, b]| [pick(t) as f64, pick(b) as f64]).collect()
    };
    Ok(report::Judged {
        judge: url.to_string(),
        model,
        accuracy: compared(&pairs(|v| v.accuracy.score), seed.wrapping_add(30)).ok_or("no verdicts")?,
        style: compared(&pairs(|v| v.style.score), seed.wrapping_add(31)).ok_or("no verdicts")?,
    })
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
