//! Conditions from what was observed: the `Ready` condition every twin carries, keeping
//! `lastTransitionTime` while the status does not change, and `observedGeneration` on each.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::api::CONDITION_READY;

/// What a reconcile concluded about an object: its phase (of the kind's phase enum), and the
/// Ready condition's status, reason and message.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct Assessment<P> {
    pub phase: P,
    /// The Ready condition's status: whether the object does its job.
    pub ready: bool,
    /// CamelCase, for the condition and Events.
    pub reason: String,
    /// What a person can act on.
    pub message: String,
}

impl<P> Assessment<P> {
    /// A not-ready assessment.
    pub fn not_ready(phase: P, reason: &str, message: impl Into<String>) -> Self {
        Self { phase, ready: false, reason: reason.into(), message: message.into() }
    }

    /// A ready assessment.
    pub fn ready(phase: P, reason: &str, message: impl Into<String>) -> Self {
        Self { phase, ready: true, reason: reason.into(), message: message.into() }
    }
}

/// The Ready condition for an assessment, keeping the previous transition time when its
/// status did not change.
pub fn ready_condition<P>(
    assessment: &Assessment<P>,
    generation: Option<i64>,
    previous: &[Condition],
    now: Time,
) -> Condition {
    condition(CONDITION_READY, assessment, generation, previous, now)
}

/// A condition of `type_` for an assessment (of the whole object, or of one of its parts),
/// keeping the previous transition time when its status did not change.
pub fn condition<P>(
    type_: &str,
    assessment: &Assessment<P>,
    generation: Option<i64>,
    previous: &[Condition],
    now: Time,
) -> Condition {
    let status = if assessment.ready { "True" } else { "False" };
    let last_transition_time = previous
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or(now);
    Condition {
        type_: type_.into(),
        status: status.into(),
        reason: assessment.reason.clone(),
        message: assessment.message.clone(),
        observed_generation: generation,
        last_transition_time,
    }
}

/// The conditions with `Ready` replaced, others kept.
pub fn with_ready(previous: &[Condition], ready: Condition) -> Vec<Condition> {
    let mut conditions: Vec<Condition> =
        previous.iter().filter(|c| c.type_ != CONDITION_READY).cloned().collect();
    conditions.insert(0, ready);
    conditions
}

#[cfg(test)]
mod tests {
    use super::*;

    fn time(s: &str) -> Time {
        Time(s.parse().unwrap())
    }

    #[test]
    fn transition_time_is_kept_while_the_status_holds() {
        let waiting = Assessment::not_ready("Pending", "WaitingForDataset", "dataset paul is Running");
        let first = ready_condition(&waiting, Some(1), &[], time("2026-11-28T06:00:00Z"));
        let again = Assessment::not_ready("Pending", "DatasetNotFound", "dataset paul not found");
        let second =
            ready_condition(&again, Some(2), std::slice::from_ref(&first), time("2026-11-28T06:05:00Z"));
        assert_eq!(second.last_transition_time, time("2026-11-28T06:00:00Z"));
        assert_eq!((second.reason.as_str(), second.observed_generation), ("DatasetNotFound", Some(2)));
        let ready = Assessment::ready("Ready", "Published", "revision r1");
        let third = ready_condition(&ready, Some(2), &[second], time("2026-11-28T06:10:00Z"));
        assert_eq!(
            (third.status.as_str(), third.last_transition_time),
            ("True", time("2026-11-28T06:10:00Z"))
        );
    }

    #[test]
    fn other_conditions_survive_a_ready_update() {
        let other = Condition {
            type_: "Audited".into(),
            status: "True".into(),
            reason: "Ok".into(),
            message: String::new(),
            observed_generation: None,
            last_transition_time: time("2026-11-28T06:00:00Z"),
        };
        let ready = ready_condition(
            &Assessment::ready("Ready", "Ok", ""),
            Some(1),
            &[],
            time("2026-11-28T06:00:00Z"),
        );
        let conditions = with_ready(std::slice::from_ref(&other), ready);
        assert_eq!(conditions.iter().map(|c| c.type_.as_str()).collect::<Vec<_>>(), ["Ready", "Audited"]);
    }
}
