//! What a twin that reads a TwinDataset (a training job trains on it, an endpoint retrieves
//! from it) finds in the dataset's status, read once for the operator's two controllers and
//! for `twin up`: the revision it may use, or why it waits and what it says meanwhile.

use super::CONDITION_READY;
use super::common::missing_reference;
use super::dataset::{DatasetPhase, TwinDataset};

/// The way out an endpoint has when its dataset is missing: it can serve without retrieval.
pub const NO_RETRIEVAL: &str = "remove datasetRef to serve without retrieval";

/// A dataset as a twin that reads it sees it.
#[derive(Debug, Clone, PartialEq)]
pub enum DatasetReadiness {
    /// Ready, with the revision it published last.
    Ready(String),
    /// Not Ready.
    NotReady {
        /// The revision it published before, if any: its files stay where they are while the
        /// dataset builds again, and after a build failed.
        published: Option<String>,
        /// Why it is not Ready.
        why: Unready,
    },
}

/// Why a dataset is not Ready.
#[derive(Debug, Clone, PartialEq)]
pub enum Unready {
    /// It does not exist.
    Missing,
    /// Its last build failed, in its controller's words (its Ready condition's message).
    Failed(String),
    /// It has not finished a build yet: its phase (`None` before its controller saw it).
    Building(Option<DatasetPhase>),
}

impl DatasetReadiness {
    /// Reads a dataset as observed (`None`: not found).
    pub fn of(dataset: Option<&TwinDataset>) -> Self {
        let Some(dataset) = dataset else {
            return Self::NotReady { published: None, why: Unready::Missing };
        };
        let status = dataset.status.as_ref();
        let published = status.and_then(|s| s.revision.clone());
        match (status.and_then(|s| s.phase), published) {
            (Some(DatasetPhase::Ready), Some(revision)) => Self::Ready(revision),
            (Some(DatasetPhase::Failed), published) => {
                let message = status
                    .and_then(|s| s.conditions.iter().find(|c| c.type_ == CONDITION_READY))
                    .map(|c| c.message.clone())
                    .filter(|m| !m.is_empty())
                    .unwrap_or_else(|| "see kubectl describe twindataset".into());
                Self::NotReady { published, why: Unready::Failed(message) }
            }
            (phase, published) => Self::NotReady { published, why: Unready::Building(phase) },
        }
    }

    /// The revision a training job may pin: a Ready dataset's.
    pub fn ready_revision(&self) -> Option<&str> {
        match self {
            Self::Ready(revision) => Some(revision),
            Self::NotReady { .. } => None,
        }
    }

    /// The newest revision it published, Ready or not: what retrieval may serve from.
    pub fn published_revision(&self) -> Option<&str> {
        match self {
            Self::Ready(revision) | Self::NotReady { published: Some(revision), .. } => Some(revision),
            Self::NotReady { published: None, .. } => None,
        }
    }
}

/// Why a twin waits for its dataset, as its status says it.
#[derive(Debug, Clone, PartialEq)]
pub struct DatasetWait {
    /// `DatasetNotFound`, `DatasetFailed` or `WaitingForDataset`.
    pub reason: &'static str,
    /// What a person reads, ending with what starts once the dataset is Ready.
    pub message: String,
}

impl Unready {
    /// The wait of a twin whose `field` names the dataset `name` in `namespace`; `starts` is
    /// what begins once it is Ready (`training`, `serving`); `or_else` a further way out when
    /// it is missing (`remove datasetRef to serve without retrieval`).
    pub fn wait(
        &self,
        name: &str,
        namespace: &str,
        field: &str,
        starts: &str,
        or_else: Option<&str>,
    ) -> DatasetWait {
        let (reason, message) = match self {
            Unready::Missing => {
                ("DatasetNotFound", missing_reference("TwinDataset", name, namespace, field, or_else))
            }
            Unready::Failed(why) => (
                "DatasetFailed",
                format!("TwinDataset {name:?} failed: {why}; {starts} starts once it is Ready"),
            ),
            Unready::Building(phase) => {
                let state = phase.map_or_else(|| "not built yet".to_string(), |p| format!("{p:?}"));
                (
                    "WaitingForDataset",
                    format!("TwinDataset {name:?} is {state}; {starts} starts once it is Ready"),
                )
            }
        };
        DatasetWait { reason, message }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn dataset(status: serde_json::Value) -> TwinDataset {
        serde_json::from_value(json!({
            "apiVersion": "llmtwin.dev/v1alpha1", "kind": "TwinDataset", "metadata": {"name": "paul"},
            "spec": {"author": {"name": "Paul"}, "sources": [{"name": "blog", "feed": {"url": "https://x.example/feed"}}],
                     "output": {"uri": "s3://b/out"}},
            "status": status
        }))
        .unwrap()
    }

    #[test]
    fn a_ready_revision_is_pinned_and_a_published_one_kept_while_the_dataset_rebuilds_or_fails() {
        let ready = DatasetReadiness::of(Some(&dataset(json!({"phase": "Ready", "revision": "r2"}))));
        assert_eq!((ready.ready_revision(), ready.published_revision()), (Some("r2"), Some("r2")));
        let failed = DatasetReadiness::of(Some(&dataset(json!({"phase": "Failed", "revision": "r1",
            "conditions": [{"type": "Ready", "status": "False", "reason": "NoDocuments", "message": "no source yielded a document",
                            "lastTransitionTime": "2026-12-01T00:00:00Z"}]}))));
        assert_eq!((failed.ready_revision(), failed.published_revision()), (None, Some("r1")));
        let DatasetReadiness::NotReady { why, .. } = failed else { panic!("a failed dataset is not Ready") };
        let wait = why.wait("paul", "twins", "spec.datasetRef.name", "training", None);
        assert_eq!(wait.reason, "DatasetFailed");
        assert!(
            wait.message.contains("no source yielded a document; training starts once it is Ready"),
            "{}",
            wait.message
        );
        let DatasetReadiness::NotReady { why, published: None } = DatasetReadiness::of(None) else {
            panic!("missing")
        };
        let wait = why.wait("paul", "twins", "spec.datasetRef.name", "serving", Some(NO_RETRIEVAL));
        assert_eq!(
            wait.message,
            "TwinDataset \"paul\" not found in namespace \"twins\": create it, correct spec.datasetRef.name, or remove datasetRef to serve without retrieval"
        );
        let building = DatasetReadiness::of(Some(&dataset(json!({"phase": "Running"}))));
        let DatasetReadiness::NotReady { why, .. } = building else { panic!("building") };
        assert_eq!(why.wait("paul", "twins", "f", "training", None).reason, "WaitingForDataset");
    }
}
