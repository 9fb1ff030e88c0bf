//! Whether a training run's evaluation passes its TwinTrainingJob's gate: the one verdict the
//! operator and `twin up` both act on (promote the run's adapter, or keep the one serving).

use std::collections::BTreeMap;

use super::report::Gate;
use crate::api::training::{EvaluationSpec, MustBeat, RunEvaluation};
use crate::contract::trainer::TrainerSuccess;

/// The evaluation of run `run`, whose adapter is `adapter_uri`, from what the trainer
/// measured, judged against `spec`'s gate. `must_beat` is the adapter the run had to beat
/// (`mustBeat: serving`), none when nothing was promoted before it.
pub fn judge(
    spec: &EvaluationSpec,
    run: &str,
    adapter_uri: &str,
    success: &TrainerSuccess,
    must_beat: Option<&str>,
    metrics_uri: Option<String>,
) -> RunEvaluation {
    let figures: BTreeMap<String, f64> = [
        ("nllReduction", success.evaluation_nll_reduction),
        ("authorSpecificNllReduction", success.evaluation_author_specific_nll_reduction),
        ("winRate", success.evaluation_win_rate),
    ]
    .into_iter()
    .filter_map(|(name, value)| value.map(|v| (name.to_string(), v)))
    .collect();
    let why_unmeasured =
        success.evaluation_not_measured.as_deref().map(|why| format!(" ({why})")).unwrap_or_default();
    let mut shortfalls = Vec::new();
    if let Some(gate) = spec.gate.as_ref().filter(|_| spec.enabled) {
        let minimums = gate.minimums.by_figure().into_iter().map(|(name, m)| (name.to_string(), m)).collect();
        for shortfall in (Gate { minimums }).judge(&figures).failed {
            shortfalls.push(match shortfall.value {
                Some(value) => {
                    format!("{} {value:+.3} < minimum {:+.3}", shortfall.figure, shortfall.minimum)
                }
                None => format!(
                    "{} was not measured{why_unmeasured}, and the gate sets a minimum of {:+.3}",
                    shortfall.figure, shortfall.minimum
                ),
            });
        }
        if gate.must_beat == Some(MustBeat::Serving)
            && let Some(serving) = must_beat
        {
            match success.evaluation_serving_nll_reduction {
                Some(reduction) if reduction > 0.0 => {}
                Some(reduction) => shortfalls.push(format!(
                    "does not beat the serving adapter {serving}: NLL per token on the author's held-out answers {:+.3} against it",
                    -reduction + 0.0
                )),
                None => shortfalls.push(format!(
                    "was not compared with the serving adapter {serving}{why_unmeasured}, and the gate says mustBeat: serving"
                )),
            }
        }
    }
    RunEvaluation {
        run: run.to_string(),
        adapter_uri: adapter_uri.to_string(),
        nll_reduction: success.evaluation_nll_reduction,
        author_specific_nll_reduction: success.evaluation_author_specific_nll_reduction,
        win_rate: success.evaluation_win_rate,
        serving_nll_reduction: success.evaluation_serving_nll_reduction,
        passed: shortfalls.is_empty(),
        shortfalls,
        metrics_uri,
    }
}

/// The figures measured, in one line (`nllReduction +0.091, winRate 0.500`), or what says none were.
pub fn figures(evaluation: &RunEvaluation) -> String {
    let measured: Vec<String> = [
        ("nllReduction", evaluation.nll_reduction, true),
        ("authorSpecificNllReduction", evaluation.author_specific_nll_reduction, true),
        ("winRate", evaluation.win_rate, false),
        ("servingNllReduction", evaluation.serving_nll_reduction, true),
    ]
    .into_iter()
    .filter_map(|(name, value, signed)| {
        value.map(|v| if signed { format!("{name} {v:+.3}") } else { format!("{name} {v:.3}") })
    })
    .collect();
    if measured.is_empty() { "no figure measured".into() } else { measured.join(", ") }
}

/// What a rejected run says: which minimums it missed, what it measured, and what serves
/// instead (`kept`: the promoted run and its adapter, if any).
pub fn rejection(evaluation: &RunEvaluation, kept: Option<(&str, &str)>, summary: &str) -> String {
    let kept = match kept {
        Some((run, adapter)) => format!("the promoted adapter {adapter} (run {run}) stays served"),
        None => "no run has passed yet, so there is no model to serve".into(),
    };
    format!(
        "run {} failed its evaluation gate ({}; measured {}): {kept}; {summary}",
        evaluation.run,
        evaluation.shortfalls.join("; "),
        figures(evaluation)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::training::{GateMinimums, GateSpec};

    fn success(nll: Option<f64>, win: Option<f64>, serving: Option<f64>) -> TrainerSuccess {
        TrainerSuccess {
            evaluation_nll_reduction: nll,
            evaluation_author_specific_nll_reduction: nll.map(|n| n / 3.0),
            evaluation_win_rate: win,
            evaluation_serving_nll_reduction: serving,
            ..Default::default()
        }
    }

    fn gated(minimums: GateMinimums, must_beat: Option<MustBeat>) -> EvaluationSpec {
        EvaluationSpec { gate: Some(GateSpec { minimums, must_beat }), ..Default::default() }
    }

    #[test]
    fn with_no_gate_every_run_passes_with_what_it_measured() {
        let judged = judge(
            &EvaluationSpec::default(),
            "g1-r",
            "s3://b/a",
            &success(Some(0.09), None, None),
            None,
            None,
        );
        assert!(judged.passed && judged.shortfalls.is_empty());
        assert_eq!(judged.nll_reduction, Some(0.09));
        assert_eq!(judged.win_rate, None, "nothing invented");
        assert_eq!(figures(&judged), "nllReduction +0.090, authorSpecificNllReduction +0.030");
    }

    #[test]
    fn a_minimum_not_reached_or_not_measured_fails_and_says_which() {
        let spec = gated(
            GateMinimums { nll_reduction: Some(0.05), win_rate: Some(0.5), ..Default::default() },
            None,
        );
        let low = judge(&spec, "g2-r", "s3://b/a", &success(Some(0.01), Some(0.75), None), None, None);
        assert!(!low.passed);
        assert_eq!(low.shortfalls, ["nllReduction +0.010 < minimum +0.050"]);
        let unmeasured = TrainerSuccess {
            evaluation_not_measured: Some("answers: evaluation.questions is 0".into()),
            ..success(Some(0.09), None, None)
        };
        let judged = judge(&spec, "g2-r", "s3://b/a", &unmeasured, None, None);
        assert_eq!(
            judged.shortfalls,
            [
                "winRate was not measured (answers: evaluation.questions is 0), and the gate sets a minimum of +0.500"
            ]
        );
        let passing = judge(&spec, "g2-r", "s3://b/a", &success(Some(0.06), Some(0.5), None), None, None);
        assert!(passing.passed, "{passing:?}");
    }

    #[test]
    fn must_beat_serving_needs_a_lower_nll_than_the_promoted_adapter_when_there_is_one() {
        let spec = gated(GateMinimums::default(), Some(MustBeat::Serving));
        let worse = judge(
            &spec,
            "g3-r",
            "s3://b/g3",
            &success(Some(0.1), None, Some(-0.02)),
            Some("s3://b/g2"),
            None,
        );
        assert!(!worse.passed);
        assert!(worse.shortfalls[0].starts_with("does not beat the serving adapter s3://b/g2"), "{worse:?}");
        let better =
            judge(&spec, "g3-r", "s3://b/g3", &success(Some(0.1), None, Some(0.02)), Some("s3://b/g2"), None);
        assert!(better.passed);
        // The first run has nothing to beat.
        let first = judge(&spec, "g1-r", "s3://b/g1", &success(Some(0.1), None, None), None, None);
        assert!(first.passed);
        let unmeasured =
            judge(&spec, "g3-r", "s3://b/g3", &success(Some(0.1), None, None), Some("s3://b/g2"), None);
        assert!(!unmeasured.passed);
    }
}
