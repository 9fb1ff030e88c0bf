//! The evaluation of a TwinTrainingJob's runs: what the trainer measures after training
//! (`spec.evaluation`), the gate a run must pass to be promoted, and what a run measured
//! (`status.evaluation`).

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The evaluation of each run (the trainer measures, the operator judges the gate).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.enabled || !has(self.gate)").message("a gate needs the evaluation: set evaluation.enabled to true or remove evaluation.gate"),
    validation = Rule::new("self.control == 'builtin:opticks' || self.control.startsWith('pvc://') || self.control.startsWith('file://')").message("evaluation.control must be builtin:opticks or a text file: pvc://claim/path in a cluster, file:///path with twin up")
)]
pub struct EvaluationSpec {
    /// Measure each run's adapter against its base model after training: NLL per token of
    /// held-out passages (the dataset's test split) and of a control text, and answers to a few
    /// test instructions. Forward passes only, on the training device.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Held-out passages scored. Unset: 32 on a GPU, 8 on a CPU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100000))]
    pub passages: Option<u32>,
    /// Test instructions the adapter and the base model answer (greedy), for the
    /// author-likeness win rate (`winRate`). 0 skips generation.
    #[serde(default = "default_evaluation_questions")]
    #[schemars(range(min = 0, max = 1000))]
    pub questions: u32,
    /// Longest sequence scored (instruction and passage), in tokens.
    #[serde(default = "default_evaluation_max_tokens")]
    #[schemars(range(min = 16, max = 131072))]
    pub max_tokens: u32,
    /// Longest answer generated, in tokens.
    #[serde(default = "default_answer_tokens")]
    #[schemars(range(min = 8, max = 8192))]
    pub answer_tokens: u32,
    /// The text that is not the author's: `builtin:opticks` (shipped with the trainer, public
    /// domain), or a file the trainer reads (a mounted `pvc://` path).
    #[serde(default = "default_control")]
    #[schemars(length(min = 1, max = 2048))]
    pub control: String,
    /// What a run must reach to be promoted. Unset: every successful run is promoted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gate: Option<GateSpec>,
}

fn default_evaluation_questions() -> u32 {
    4
}
fn default_evaluation_max_tokens() -> u32 {
    768
}
fn default_answer_tokens() -> u32 {
    128
}
fn default_control() -> String {
    "builtin:opticks".into()
}

impl Default for EvaluationSpec {
    fn default() -> Self {
        Self {
            enabled: true,
            passages: None,
            questions: default_evaluation_questions(),
            max_tokens: default_evaluation_max_tokens(),
            answer_tokens: default_answer_tokens(),
            control: default_control(),
            gate: None,
        }
    }
}

/// The gate a run's evaluation must pass to be promoted.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GateSpec {
    /// The least each figure may be; a figure set here that the run did not measure fails.
    #[serde(default)]
    pub minimums: GateMinimums,
    /// `serving`: the run must also beat the adapter served now (the job's promoted model):
    /// lower NLL per token on the author's held-out answers, both measured in the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub must_beat: Option<MustBeat>,
}

/// Minimums on the figures a run measures.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GateMinimums {
    /// Base − adapter NLL per token on the author's held-out answers (nats).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = -100.0, max = 100.0))]
    pub nll_reduction: Option<f64>,
    /// That reduction minus the one on the control text: what the adapter learned of this
    /// author rather than of English.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = -100.0, max = 100.0))]
    pub author_specific_nll_reduction: Option<f64>,
    /// Share of test instructions where the adapter's answer is closer to the author's
    /// character 3–5-gram profile than the base model's (ties count half).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub win_rate: Option<f64>,
}

impl GateMinimums {
    /// The minimums by figure name (as `twin eval --gate` names them).
    pub fn by_figure(&self) -> Vec<(&'static str, f64)> {
        [
            ("nllReduction", self.nll_reduction),
            ("authorSpecificNllReduction", self.author_specific_nll_reduction),
            ("winRate", self.win_rate),
        ]
        .into_iter()
        .filter_map(|(name, minimum)| minimum.map(|m| (name, m)))
        .collect()
    }
}

/// What a run must beat besides its minimums.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum MustBeat {
    /// The adapter served now: the job's promoted model.
    Serving,
}

/// What a run's evaluation measured (each figure only when it was), and the gate's verdict.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunEvaluation {
    /// The run evaluated.
    pub run: String,
    /// Its adapter, promoted or not.
    pub adapter_uri: String,
    /// Base − adapter NLL per token on the author's held-out answers (nats).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nll_reduction: Option<f64>,
    /// That reduction minus the one on the control text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author_specific_nll_reduction: Option<f64>,
    /// Share of test instructions where the adapter's answer is closer to the author's
    /// character profile than the base model's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub win_rate: Option<f64>,
    /// Serving adapter − this adapter NLL per token on the same held-out answers (positive:
    /// this one is closer to the author), when the gate asked to beat it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serving_nll_reduction: Option<f64>,
    /// Whether the run passed its gate (always, with no gate).
    pub passed: bool,
    /// What it fell short of, one line each (`winRate 0.250 < minimum 0.500`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shortfalls: Vec<String>,
    /// The run's metrics file, with every figure, its interval and its sample count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_uri: Option<String>,
}

fn default_true() -> bool {
    true
}
