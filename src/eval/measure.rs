//! The measures `twin eval` reports, each the twin against its baseline on the same texts:
//! voice by likelihood (held-out answers and passages, the control text), and voice and
//! grounding in generated answers (style likeness, Burrows' Delta, retrieval, support, the
//! judge's scores), with paired bootstrap intervals.

use std::collections::{BTreeMap, HashMap};

use super::answers::Answer;
use super::local::InProcess;
use super::report::{self, Answers, Compared, DeltaFigures, Item, TextLikelihood};
use super::stats::{Estimate, bootstrap_mean, difference_of_means, paired_difference};
use super::testset::Sample;
use super::{Revision, grounding, judge, likelihood, style};

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
pub(super) fn measure_likelihood(
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
pub(super) fn measure_answers(
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
pub(super) fn judged(
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
