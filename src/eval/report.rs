//! `evaluation.json`: every figure of an evaluation, twin against baseline, with intervals and
//! sample counts; the headline figures a gate reads; the gate's verdict; and the short table
//! `twin eval` prints.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::answers::Answer;
use super::grounding::{Retrieval, Threshold};
use super::stats::Estimate;

/// A figure for the twin, for the baseline, and their difference (twin − baseline, paired).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Compared {
    /// The twin's mean.
    pub twin: Estimate,
    /// The baseline's mean.
    pub baseline: Estimate,
    /// Twin − baseline, paired by item.
    pub difference: Estimate,
}

/// NLL per token of one set of texts.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TextLikelihood {
    /// Mean nats per token, per text, twin and baseline (difference: twin − baseline, so
    /// negative when the twin finds the text likelier).
    pub nll: Compared,
    /// Tokens scored under each model.
    pub tokens: usize,
    /// Per text: [twin, baseline] nats per token (the report's chart).
    pub per_text: Vec<[f64; 2]>,
}

/// Voice by likelihood.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Likelihood {
    /// The author's held-out passages as the answers to their instructions.
    pub author_answers: TextLikelihood,
    /// The same passages as plain text.
    pub author_text: TextLikelihood,
    /// The control text, as plain text.
    pub control_text: TextLikelihood,
    /// How much more the twin lowered the author's NLL than the control's, in nats per token:
    /// (baseline − twin on the author's text) − (baseline − twin on the control).
    pub author_specific_reduction: Estimate,
}

/// Burrows' Delta of the pooled answers to the author.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeltaFigures {
    /// The twin's answers (lower is closer).
    pub twin: f64,
    /// The baseline's.
    pub baseline: f64,
    /// Words of the twin's answers, pooled.
    pub twin_words: usize,
    /// Words of the baseline's.
    pub baseline_words: usize,
    /// Most frequent words compared.
    pub most_frequent_words: usize,
    /// Whether both pools are long enough for Delta to be stable.
    pub stable: bool,
}

/// One question, its reference and both answers.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Item {
    /// The held-out instruction.
    pub instruction: String,
    /// The author's passage that answers it.
    pub reference: String,
    /// The twin's answer.
    pub twin: Answer,
    /// The baseline's.
    pub baseline: Answer,
    /// Author-likeness of each: [twin, baseline].
    pub likeness: [f64; 2],
    /// The judge's verdicts: [twin, baseline].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub judge: Option<[super::judge::Verdict; 2]>,
}

/// The judge's scores (1–3), twin against baseline.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Judged {
    /// The judge's endpoint.
    pub judge: String,
    /// The model it was asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Accuracy against the author's passage.
    pub accuracy: Compared,
    /// Style against the author's passage.
    pub style: Compared,
}

/// Voice and grounding in generated answers.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Answers {
    /// Character 3–5-gram TF-IDF cosine to the author's profile.
    pub author_likeness: Compared,
    /// Share of questions where the twin's answer is closer to the profile (ties count half).
    pub win_rate: Estimate,
    /// Burrows' Delta; absent when the texts are too short for any segment.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delta: Option<DeltaFigures>,
    /// Cosine to the author's writing as the dataset's embedding model sees it.
    pub embedding_likeness: Compared,
    /// Share of the questions where the twin's answer is closer by that measure.
    pub embedding_win_rate: Estimate,
    /// Share of answer sentences a passage the gateway retrieved supports (absent where the
    /// endpoint names no passages, or none of the answers has a sentence to check).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub faithfulness: Option<Compared>,
    /// The threshold faithfulness used and how it was set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub faithfulness_threshold: Option<Threshold>,
    /// The judge's scores, when a judge was given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub judge: Option<Judged>,
    /// Each question with both answers.
    pub items: Vec<Item>,
}

/// What was evaluated.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Subject {
    /// The GGUF model run in process, or the endpoint's URL.
    pub model: String,
    /// The LoRA adapter, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub adapter: Option<String>,
}

/// The dataset revision evaluated on.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct DatasetFacts {
    /// Its URI as given.
    pub uri: String,
    /// The dataset's name.
    pub dataset: String,
    pub revision: String,
    pub author: String,
    /// Distinct held-out passages in its test split.
    pub test_passages: usize,
    /// Distinct training passages (the author's profile).
    pub train_passages: usize,
}

/// How the evaluation ran.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Settings {
    /// Questions answered by each model.
    pub questions: usize,
    /// Held-out passages scored by likelihood.
    pub passages: usize,
    /// Longest answer, in tokens.
    pub max_tokens: u32,
    /// The seed of the sampling of questions and of the bootstrap.
    pub seed: u64,
    /// The control text (`builtin:opticks` or a URI).
    pub control: String,
    /// Decoding: greedy.
    pub decoding: String,
}

/// The figures a gate may set a minimum on.
pub const FIGURES: [(&str, &str); 6] = [
    ("nllReduction", "baseline − twin NLL per token on the author's held-out answers (nats)"),
    ("authorSpecificNllReduction", "that reduction on the author's text minus the one on the control text"),
    ("winRate", "share of questions where the twin's answer is closer to the author's character profile"),
    ("embeddingWinRate", "the same, with the dataset's embedding model"),
    ("recallAt5", "share of held-out instructions whose source passage retrieval ranks in the top 5"),
    ("faithfulness", "share of the twin's answer sentences supported by a retrieved passage"),
];

/// Minimums of a gate (`--gate FILE`, YAML or JSON: `minimums: {winRate: 0.5}`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Gate {
    /// The least each figure may be.
    pub minimums: BTreeMap<String, f64>,
}

/// A minimum the twin did not reach.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct Shortfall {
    pub figure: String,
    pub minimum: f64,
    /// What was measured; absent when it was not.
    pub value: Option<f64>,
}

/// The gate's verdict.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct Verdict {
    pub minimums: BTreeMap<String, f64>,
    /// Whether every one was reached.
    pub passed: bool,
    /// Those that were not (a figure that was not measured does not pass).
    pub failed: Vec<Shortfall>,
}

impl Gate {
    /// Reads a gate file; an unknown figure is an error listing the known ones.
    pub fn parse(text: &str) -> Result<Self, String> {
        let gate: Gate = serde_saphyr::from_str(text).map_err(|e| format!("the gate: {e}"))?;
        for name in gate.minimums.keys() {
            if !FIGURES.iter().any(|(known, _)| known == name) {
                let known: Vec<&str> = FIGURES.iter().map(|(k, _)| *k).collect();
                return Err(format!(
                    "the gate names {name:?}, which is not a figure; known: {}",
                    known.join(", ")
                ));
            }
        }
        Ok(gate)
    }

    /// The verdict on `headline`.
    pub fn judge(&self, headline: &BTreeMap<String, f64>) -> Verdict {
        let failed: Vec<Shortfall> = self
            .minimums
            .iter()
            .filter_map(|(figure, &minimum)| {
                let value = headline.get(figure).copied();
                value.is_none_or(|v| v < minimum).then(|| Shortfall {
                    figure: figure.clone(),
                    minimum,
                    value,
                })
            })
            .collect();
        Verdict { minimums: self.minimums.clone(), passed: failed.is_empty(), failed }
    }
}

/// Everything an evaluation measured.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct Evaluation {
    /// The format's version.
    pub version: u32,
    /// The dataset revision.
    pub dataset: DatasetFacts,
    pub twin: Subject,
    /// What it is compared with.
    pub baseline: Subject,
    /// How it ran.
    pub settings: Settings,
    /// Voice by likelihood (absent when the weights were not at hand).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub likelihood: Option<Likelihood>,
    /// Voice and grounding in answers (absent with `--questions 0`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answers: Option<Answers>,
    /// Retrieval of the held-out instructions' sources.
    pub retrieval: Retrieval,
    /// Why a part was not measured, by part (`likelihood`, `judge`, …): nothing is invented.
    pub not_measured: BTreeMap<String, String>,
    /// The figures a gate reads.
    pub headline: BTreeMap<String, f64>,
    /// The gate's verdict, when a gate was given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gate: Option<Verdict>,
    /// Seconds the evaluation took.
    pub seconds: f64,
}

impl Evaluation {
    /// The headline figures from the parts measured.
    pub fn headline_figures(&self) -> BTreeMap<String, f64> {
        let mut figures = BTreeMap::new();
        if let Some(l) = &self.likelihood {
            // `+ 0.0` keeps a nil reduction from printing as −0.000.
            figures.insert("nllReduction".into(), -l.author_answers.nll.difference.value + 0.0);
            figures.insert("authorSpecificNllReduction".into(), l.author_specific_reduction.value);
        }
        if let Some(a) = &self.answers {
            figures.insert("winRate".into(), a.win_rate.value);
            figures.insert("embeddingWinRate".into(), a.embedding_win_rate.value);
            if let Some(f) = &a.faithfulness {
                figures.insert("faithfulness".into(), f.twin.value);
            }
        }
        if self.retrieval.questions > 0 {
            let at5 = self.retrieval.k.iter().position(|&k| k == 5).map(|i| self.retrieval.recall[i]);
            if let Some(at5) = at5 {
                figures.insert("recallAt5".into(), at5);
            }
        }
        figures
    }

    /// The table `twin eval` prints.
    pub fn table(&self) -> String {
        let mut rows: Vec<[String; 4]> =
            vec![["measure".into(), "baseline".into(), "twin".into(), "twin − baseline (95% CI)".into()]];
        let interval = |e: &Estimate| format!("{:+.3} [{:+.3}, {:+.3}] n={}", e.value, e.low, e.high, e.n);
        let mut compared = |name: &str, c: &Compared| {
            rows.push([
                name.into(),
                format!("{:.3}", c.baseline.value),
                format!("{:.3}", c.twin.value),
                interval(&c.difference),
            ]);
        };
        if let Some(l) = &self.likelihood {
            compared("NLL/token, author's answers", &l.author_answers.nll);
            compared("NLL/token, author's text", &l.author_text.nll);
            compared("NLL/token, control text", &l.control_text.nll);
        }
        if let Some(a) = &self.answers {
            compared("author-likeness (char n-grams)", &a.author_likeness);
            compared("author-likeness (embedding)", &a.embedding_likeness);
            if let Some(f) = &a.faithfulness {
                compared("faithfulness", f);
            }
            if let Some(j) = &a.judge {
                compared("judge: accuracy (1–3)", &j.accuracy);
                compared("judge: style (1–3)", &j.style);
            }
        }
        let mut lines: Vec<String> = Vec::new();
        let widths: Vec<usize> =
            (0..4).map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0)).collect();
        for row in &rows {
            let cells: Vec<String> = row
                .iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c}{}", " ".repeat(w - c.chars().count())))
                .collect();
            lines.push(cells.join("  ").trim_end().to_string());
        }
        if let Some(l) = &self.likelihood {
            lines.push(format!("author-specific NLL reduction: {}", interval(&l.author_specific_reduction)));
        }
        if let Some(a) = &self.answers {
            lines.push(format!("win rate (char n-grams): {}", interval(&a.win_rate)));
            lines.push(format!("win rate (embedding): {}", interval(&a.embedding_win_rate)));
            if let Some(d) = &a.delta {
                let note = if d.stable { "" } else { " (unstable: fewer than 2,500 words pooled)" };
                lines.push(format!(
                    "Burrows' Delta to the author: baseline {:.3}, twin {:.3}, over {} and {} words{note}",
                    d.baseline, d.twin, d.baseline_words, d.twin_words
                ));
            }
        }
        let r = &self.retrieval;
        let recall: Vec<String> = r.k.iter().zip(&r.recall).map(|(k, v)| format!("@{k} {v:.2}")).collect();
        lines.push(format!(
            "retrieval of the source passage: recall {}, MRR {:.3}, n={}",
            recall.join(" "),
            r.mrr,
            r.questions
        ));
        for (part, why) in &self.not_measured {
            lines.push(format!("not measured: {part}: {why}"));
        }
        if let Some(gate) = &self.gate {
            if gate.passed {
                lines.push("gate: passed".into());
            } else {
                let failed: Vec<String> = gate
                    .failed
                    .iter()
                    .map(|s| match s.value {
                        Some(v) => format!("{} {v:.3} < {}", s.figure, s.minimum),
                        None => format!("{} not measured (minimum {})", s.figure, s.minimum),
                    })
                    .collect();
                lines.push(format!("gate: FAILED: {}", failed.join("; ")));
            }
        }
        lines.join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gate_fails_on_a_low_figure_and_on_one_not_measured_and_refuses_unknown_names() {
        let gate = Gate::parse("minimums:\n  winRate: 0.5\n  nllReduction: 0.1\n").unwrap();
        let headline = BTreeMap::from([("winRate".to_string(), 0.75)]);
        let verdict = gate.judge(&headline);
        assert!(!verdict.passed);
        assert_eq!(verdict.failed.len(), 1);
        assert_eq!((verdict.failed[0].figure.as_str(), verdict.failed[0].value), ("nllReduction", None));
        let headline = BTreeMap::from([("winRate".to_string(), 0.75), ("nllReduction".to_string(), 0.2)]);
        assert!(gate.judge(&headline).passed);
        let low = BTreeMap::from([("winRate".to_string(), 0.25), ("nllReduction".to_string(), 0.2)]);
        assert_eq!(gate.judge(&low).failed[0].value, Some(0.25));
        let error = Gate::parse("minimums: {accuracy: 2}").unwrap_err();
        assert!(error.contains("\"accuracy\"") && error.contains("winRate"), "{error}");
        assert!(Gate::parse("minimum: {winRate: 1}").is_err());
    }
}
