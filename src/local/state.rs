//! What `twin up` ran and how each resource ended, kept in the state folder
//! (`<state>/state.json`, written whole or not at all) so that `twin status` can show it again,
//! in the words of `kubectl get`.

use std::path::Path;

use k8s_openapi::jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::api::dataset::DatasetPhase;
use crate::api::endpoint::EndpointPhase;
use crate::api::training::TrainingPhase;

const FILE: &str = "state.json";

/// A resource's kind with its phase, of that kind's own phase enum, as the operator would set
/// it. Kept as `"kind": "TwinDataset", "phase": "Ready"`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(tag = "kind", content = "phase")]
pub enum Phase {
    /// A TwinDataset's.
    #[serde(rename = "TwinDataset")]
    Dataset(DatasetPhase),
    /// A TwinTrainingJob's.
    #[serde(rename = "TwinTrainingJob")]
    Training(TrainingPhase),
    /// A TwinEndpoint's.
    #[serde(rename = "TwinEndpoint")]
    Endpoint(EndpointPhase),
}

impl Phase {
    /// The kind it is a phase of.
    pub fn kind(self) -> &'static str {
        match self {
            Phase::Dataset(_) => "TwinDataset",
            Phase::Training(_) => "TwinTrainingJob",
            Phase::Endpoint(_) => "TwinEndpoint",
        }
    }

    /// Whether the resource got where it should: a Ready dataset or endpoint, a Succeeded
    /// training job.
    pub fn reached(self) -> bool {
        matches!(
            self,
            Phase::Dataset(DatasetPhase::Ready)
                | Phase::Training(TrainingPhase::Succeeded)
                | Phase::Endpoint(EndpointPhase::Ready)
        )
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The variants' names are the API's phase names.
        match self {
            Phase::Dataset(phase) => write!(f, "{phase:?}"),
            Phase::Training(phase) => write!(f, "{phase:?}"),
            Phase::Endpoint(phase) => write!(f, "{phase:?}"),
        }
    }
}

impl From<DatasetPhase> for Phase {
    fn from(phase: DatasetPhase) -> Self {
        Phase::Dataset(phase)
    }
}

impl From<TrainingPhase> for Phase {
    fn from(phase: TrainingPhase) -> Self {
        Phase::Training(phase)
    }
}

impl From<EndpointPhase> for Phase {
    fn from(phase: EndpointPhase) -> Self {
        Phase::Endpoint(phase)
    }
}

/// A status as `twin up` reports it: what the Ready condition of the operator's would say.
#[derive(Debug)]
pub struct Status {
    /// The kind's phase.
    pub phase: Phase,
    /// CamelCase, as a condition's.
    pub reason: String,
    /// What a person reads.
    pub message: String,
    pub(super) revision: Option<String>,
    pub(super) promoted: Option<String>,
}

impl Status {
    /// A status with no dataset revision.
    pub fn new(phase: impl Into<Phase>, reason: &str, message: impl Into<String>) -> Self {
        Self {
            phase: phase.into(),
            reason: reason.into(),
            message: message.into(),
            revision: None,
            promoted: None,
        }
    }

    /// The status with the dataset revision it concerns.
    pub fn with_revision(self, revision: Option<String>) -> Self {
        Self { revision, ..self }
    }

    /// A training job's status with its promoted revision.
    pub(super) fn with_promoted(self, promoted: Option<String>) -> Self {
        Self { promoted, ..self }
    }

    /// Whether the resource got where it should: a Ready dataset or endpoint, a Succeeded
    /// training job.
    pub(super) fn reached(&self) -> bool {
        self.phase.reached()
    }
}

/// One resource's last status.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct Entry {
    /// Its kind and phase.
    #[serde(flatten)]
    pub phase: Phase,
    pub namespace: String,
    pub name: String,
    /// The Ready condition's reason.
    pub reason: String,
    /// The Ready condition's message.
    pub message: String,
    /// When this status was written (RFC 3339).
    pub updated: String,
    /// The dataset revision published or used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// A training job's promoted run: the dataset revision of the newest run that passed its
    /// gate, the one endpoints serve.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promoted: Option<String>,
    /// The file it was read from.
    pub file: String,
}

/// Every resource `twin up` has run in this state folder.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct State {
    /// By kind, namespace and name.
    pub resources: Vec<Entry>,
}

impl State {
    /// The state kept in `dir`; empty when there is none yet.
    pub fn load(dir: &Path) -> Result<Self, String> {
        let path = dir.join(FILE);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| format!("{} is not twin up's state: {e}", path.display())),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(error) => Err(format!("{}: {error}", path.display())),
        }
    }

    /// Writes the state whole: to a temporary file, then renamed over the old one.
    pub fn save(&self, dir: &Path) -> Result<(), String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let path = dir.join(FILE);
        let temporary = dir.join(format!(".{FILE}.{}", std::process::id()));
        let text = serde_json::to_string_pretty(self).expect("the state serialises");
        std::fs::write(&temporary, text).map_err(|e| format!("{}: {e}", temporary.display()))?;
        std::fs::rename(&temporary, &path).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Records a resource's status, replacing its previous one.
    pub fn record(&mut self, entry: Entry) {
        let same =
            |e: &Entry| e.kind() == entry.kind() && e.namespace == entry.namespace && e.name == entry.name;
        match self.resources.iter_mut().find(|e| same(e)) {
            Some(existing) => *existing = entry,
            None => self.resources.push(entry),
        }
        self.resources
            .sort_by(|a, b| (a.kind(), &a.namespace, &a.name).cmp(&(b.kind(), &b.namespace, &b.name)));
    }

    /// A training job's promoted revision (for a state written before promotion: the revision
    /// of its last Succeeded run).
    pub fn promoted(&self, namespace: &str, name: &str) -> Option<String> {
        let entry = self.get("TwinTrainingJob", namespace, name)?;
        entry.promoted.clone().or_else(|| {
            (entry.phase == Phase::Training(TrainingPhase::Succeeded))
                .then(|| entry.revision.clone())
                .flatten()
        })
    }

    /// A resource's last status.
    pub fn get(&self, kind: &str, namespace: &str, name: &str) -> Option<&Entry> {
        self.resources.iter().find(|e| e.kind() == kind && e.namespace == namespace && e.name == name)
    }

    /// A dataset's last status as the operator would have written it: what a training job or
    /// an endpoint run here reads of it.
    pub fn dataset_status(&self, namespace: &str, name: &str) -> Option<crate::api::TwinDatasetStatus> {
        let entry = self.get("TwinDataset", namespace, name)?;
        let Phase::Dataset(phase) = entry.phase else { return None };
        let ready = k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
            type_: crate::api::CONDITION_READY.into(),
            status: if phase == DatasetPhase::Ready { "True" } else { "False" }.into(),
            reason: entry.reason.clone(),
            message: entry.message.clone(),
            last_transition_time: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                entry.updated.parse().unwrap_or(Timestamp::UNIX_EPOCH),
            ),
            observed_generation: None,
        };
        Some(crate::api::TwinDatasetStatus {
            phase: Some(phase),
            revision: entry.revision.clone(),
            conditions: vec![ready],
            ..Default::default()
        })
    }
}

impl Entry {
    #[allow(missing_docs)]
    pub fn kind(&self) -> &'static str {
        self.phase.kind()
    }
}

/// How long ago, as kubectl says it: `42s`, `7m`, `3h`, `2d`.
fn age(updated: &str, now: Timestamp) -> String {
    let Ok(then) = updated.parse::<Timestamp>() else { return "?".into() };
    let seconds = now.duration_since(then).as_secs().max(0);
    match seconds {
        s if s < 120 => format!("{s}s"),
        s if s < 2 * 3600 => format!("{}m", s / 60),
        s if s < 2 * 86400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

/// The state as `kubectl get` prints objects: one aligned row each.
pub fn table(state: &State, now: Timestamp) -> String {
    let mut rows =
        vec![["NAMESPACE", "NAME", "PHASE", "REASON", "AGE", "MESSAGE"].map(String::from).to_vec()];
    for entry in &state.resources {
        rows.push(vec![
            entry.namespace.clone(),
            format!("{}/{}", entry.kind().to_ascii_lowercase(), entry.name),
            entry.phase.to_string(),
            entry.reason.clone(),
            age(&entry.updated, now),
            entry.message.clone(),
        ]);
    }
    let widths: Vec<usize> =
        (0..5).map(|column| rows.iter().map(|row| row[column].chars().count()).max().unwrap_or(0)).collect();
    rows.iter()
        .map(|row| {
            let mut line = String::new();
            for (column, width) in widths.iter().enumerate() {
                line.push_str(&format!("{:<width$}   ", row[column], width = width));
            }
            line.push_str(&row[5]);
            line.trim_end().to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, phase: DatasetPhase, updated: &str) -> Entry {
        Entry {
            phase: Phase::Dataset(phase),
            namespace: "default".into(),
            name: name.into(),
            reason: "RevisionPublished".into(),
            message: "revision r1".into(),
            updated: updated.into(),
            revision: Some("r1".into()),
            promoted: None,
            file: "twin.yaml".into(),
        }
    }

    #[test]
    fn the_state_is_saved_whole_and_read_back() {
        let dir = std::env::temp_dir().join(format!("twin-state-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(State::load(&dir).unwrap(), State::default());
        let mut state = State::default();
        state.record(entry("paul", DatasetPhase::Running, "2026-12-02T10:00:00Z"));
        state.record(entry("paul", DatasetPhase::Ready, "2026-12-02T10:01:00Z"));
        state.record(entry("ada", DatasetPhase::Ready, "2026-12-02T10:02:00Z"));
        state.save(&dir).unwrap();
        let read = State::load(&dir).unwrap();
        assert_eq!(read, state);
        assert_eq!(read.resources.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(), ["ada", "paul"]);
        assert_eq!(
            read.get("TwinDataset", "default", "paul").unwrap().phase,
            Phase::Dataset(DatasetPhase::Ready)
        );
        let written = std::fs::read_to_string(dir.join(FILE)).unwrap();
        assert!(
            written.contains(r#""kind": "TwinDataset""#) && written.contains(r#""phase": "Ready""#),
            "{written}"
        );
        std::fs::write(dir.join(FILE), "{").unwrap();
        assert!(State::load(&dir).unwrap_err().contains("is not twin up's state"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_table_reads_like_kubectl_get() {
        let mut state = State::default();
        state.record(entry("paul", DatasetPhase::Ready, "2026-12-02T10:00:00Z"));
        let now: Timestamp = "2026-12-02T10:07:30Z".parse().unwrap();
        let table = table(&state, now);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with("NAMESPACE   NAME") && lines[0].ends_with("MESSAGE"), "{table}");
        assert!(
            lines[1].starts_with("default     twindataset/paul   Ready   RevisionPublished   7m"),
            "{table}"
        );
        assert!(lines[1].ends_with("revision r1"), "{table}");
        assert_eq!(age("2026-12-02T10:00:00Z", "2026-12-04T10:00:00Z".parse().unwrap()), "2d");
    }
}
