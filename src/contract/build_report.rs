//! The report of `twin dataset build`: printed on stdout, written to the build container's
//! termination message, and read back by the TwinDataset controller into the dataset's status.

use serde::{Deserialize, Serialize};

use super::paths::TERMINATION_MESSAGE_LIMIT;
use crate::api::dataset::{DatasetArtifacts, DatasetStats, SourceStatus};

/// What a build ended with: a published revision, or why nothing was published.
// One report per build, read once: boxing the larger variant would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum BuildReport {
    /// A revision is published (or was already, unchanged).
    Published(PublishedBuild),
    /// Nothing was published.
    Failed(FailedBuild),
}

/// A published revision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PublishedBuild {
    /// The content hash of the revision.
    pub revision: String,
    /// True when the revision already existed and nothing was written.
    #[serde(default)]
    pub unchanged: bool,
    /// Counts of the revision.
    pub stats: DatasetStats,
    /// What each source yielded; a source that failed says why, the others still count.
    #[serde(default)]
    pub sources: Vec<SourceStatus>,
    /// Where the artifacts are.
    pub artifacts: DatasetArtifacts,
    /// What cleaning dropped.
    #[serde(default)]
    pub clean: CleanStats,
    /// Chunks embedded in this run (the rest came from the embedding cache).
    #[serde(default)]
    pub embedded_chunks: usize,
    /// How fit the fine-tuning sets are to train on.
    #[serde(default)]
    pub quality: QualityReport,
    /// Seconds per stage; left out of a termination message that would be too long.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timings: Option<Timings>,
}

/// A build that published nothing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailedBuild {
    /// What went wrong, for the dataset's Ready condition.
    pub error: String,
    /// A CamelCase reason (`NoDocuments`, `GeneratorFailed`, ...).
    pub reason: String,
    /// What each source did.
    #[serde(default)]
    pub sources: Vec<SourceStatus>,
}

/// Counts of what cleaning dropped.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CleanStats {
    /// Documents in.
    pub input: usize,
    /// Dropped as exact duplicates.
    pub exact_duplicates: usize,
    /// Dropped as near-duplicates.
    pub near_duplicates: usize,
    /// Dropped as too short.
    pub too_short: usize,
    /// Dropped because most of their text is contained in a fuller document (a cross-post).
    #[serde(default)]
    pub contained_duplicates: usize,
}

/// A document that cleaning dropped as a copy of another, and which one it kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RemovedDocument {
    /// Where the dropped copy came from (its URL or path), else its id.
    pub document: String,
    /// `exact`, `near` (Jaccard similarity of word shingles) or `contained` (the share of its
    /// shingles found in the kept document).
    pub kind: String,
    /// The route it came by: the kind of its source (`web`, `feed`, `archive`, `git`, `files`,
    /// `configMap`).
    #[serde(default)]
    pub route: String,
    /// The document kept instead.
    pub kept: String,
    /// The route the kept document came by.
    #[serde(default)]
    pub kept_route: String,
    /// The similarity or containment measured (1 for exact copies).
    pub score: f64,
}

/// How fit the fine-tuning sets are to train on: in the manifest and the build's report.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QualityReport {
    /// SFT samples written.
    pub samples: usize,
    /// Preference triples written.
    pub preference_samples: usize,
    /// Samples left out, by reason (`notAtBoundary`, `duplicateInstruction`, `refusedAnswer`...).
    pub dropped: std::collections::BTreeMap<String, usize>,
    /// Documents removed as copies, by kind.
    pub duplicates: DuplicateCounts,
    /// Distinct instructions (each has exactly one answer).
    pub distinct_instructions: usize,
    /// Share of answers that are mostly code.
    pub code_answer_share: f64,
    /// Mean answer length, in the embedding model's tokens.
    pub mean_answer_tokens: f64,
    /// Answers whose prose (code aside) has Markdown or HTML link syntax.
    #[serde(default)]
    pub answers_with_link_syntax: usize,
    /// Answers whose prose has a heading anchor (¶, a trailing #, a `{#id}`).
    #[serde(default)]
    pub answers_with_anchors: usize,
    /// Answers whose prose has a URL of one of the author's crawled sites.
    #[serde(default)]
    pub answers_with_site_urls: usize,
    /// Answers that open mid-sentence.
    #[serde(default)]
    pub answers_starting_mid_sentence: usize,
    /// Copies removed, by route: `feed->web` is a feed's copy of a crawled page, removed for it.
    #[serde(default)]
    pub cross_posts: std::collections::BTreeMap<String, usize>,
}

impl QualityReport {
    /// One line for people: what was made, what was dropped and why.
    pub fn summary(&self) -> String {
        let dropped: usize = self.dropped.values().sum();
        let reasons: Vec<String> = self.dropped.iter().map(|(reason, n)| format!("{reason} {n}")).collect();
        let routes: Vec<String> = self.cross_posts.iter().map(|(route, n)| format!("{route} {n}")).collect();
        format!(
            "training data: {} samples{} ({} distinct instructions, {:.0}% code answers, mean answer {:.0} tokens); \
             dropped {dropped}{}; answers with link syntax {}, anchors {}, site URLs {}, starting mid-sentence {}; \
             documents removed as copies: {} exact, {} near, {} contained{}",
            self.samples,
            if self.preference_samples > 0 {
                format!(" and {} preference pairs", self.preference_samples)
            } else {
                String::new()
            },
            self.distinct_instructions,
            self.code_answer_share * 100.0,
            self.mean_answer_tokens,
            if reasons.is_empty() { String::new() } else { format!(" ({})", reasons.join(", ")) },
            self.answers_with_link_syntax,
            self.answers_with_anchors,
            self.answers_with_site_urls,
            self.answers_starting_mid_sentence,
            self.duplicates.exact,
            self.duplicates.near,
            self.duplicates.contained,
            if routes.is_empty() { String::new() } else { format!(" ({})", routes.join(", ")) },
        )
    }
}

/// Documents removed as copies of others.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DuplicateCounts {
    /// Identical text.
    pub exact: usize,
    /// Near-identical text.
    pub near: usize,
    /// Mostly contained in a fuller document.
    pub contained: usize,
}

/// Seconds spent per stage.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Timings {
    /// Collecting.
    pub collect: f64,
    /// Cleaning.
    pub clean: f64,
    /// Loading the model.
    pub load_model: f64,
    /// Chunking.
    pub chunk: f64,
    /// Embedding.
    pub embed: f64,
    /// Writing instructions and rejected answers with the generator.
    pub generate: f64,
    /// Writing artifacts.
    pub write: f64,
}

impl BuildReport {
    /// Reads a report from a termination message.
    pub fn parse(message: &str) -> Result<Self, String> {
        serde_json::from_str(message).map_err(|e| format!("not a build report: {e}"))
    }

    /// The report as JSON within Kubernetes' termination-message limit: timings go first,
    /// then per-source errors are shortened until it fits.
    pub fn to_termination_message(&self) -> String {
        let mut report = self.clone();
        let mut text = report.to_json();
        let mut keep = 400;
        while text.len() > TERMINATION_MESSAGE_LIMIT && keep > 20 {
            if let BuildReport::Published(published) = &mut report {
                published.timings = None;
            }
            for source in report.sources_mut() {
                if let Some(error) = &mut source.error {
                    *error = error.chars().take(keep).collect();
                }
            }
            text = report.to_json();
            keep /= 2;
        }
        text
    }

    fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a build report serialises")
    }

    fn sources_mut(&mut self) -> &mut Vec<SourceStatus> {
        match self {
            BuildReport::Published(published) => &mut published.sources,
            BuildReport::Failed(failed) => &mut failed.sources,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn published(sources: Vec<SourceStatus>) -> BuildReport {
        BuildReport::Published(PublishedBuild {
            revision: "r1".into(),
            unchanged: false,
            stats: DatasetStats { documents: 3, chunks: 9, instruct_samples: 18, preference_samples: 0 },
            sources,
            artifacts: DatasetArtifacts { root: "s3://b/datasets/p/r1".into(), ..Default::default() },
            clean: CleanStats::default(),
            embedded_chunks: 9,
            quality: QualityReport::default(),
            timings: Some(Timings::default()),
        })
    }

    #[test]
    fn the_quality_summary_reads_as_a_sentence() {
        let report = QualityReport {
            samples: 12,
            dropped: [("notAtBoundary".to_string(), 2)].into(),
            duplicates: DuplicateCounts { exact: 1, near: 0, contained: 3 },
            distinct_instructions: 12,
            code_answer_share: 0.25,
            mean_answer_tokens: 180.4,
            answers_starting_mid_sentence: 1,
            cross_posts: [("feed->web".to_string(), 3), ("web->web".to_string(), 1)].into(),
            ..Default::default()
        };
        assert_eq!(
            report.summary(),
            "training data: 12 samples (12 distinct instructions, 25% code answers, mean answer 180 tokens); \
             dropped 2 (notAtBoundary 2); answers with link syntax 0, anchors 0, site URLs 0, starting mid-sentence 1; \
             documents removed as copies: 1 exact, 0 near, 3 contained (feed->web 3, web->web 1)"
        );
    }

    #[test]
    fn both_outcomes_read_back_as_written() {
        let ok = published(vec![SourceStatus { name: "blog".into(), documents: 3, error: None }]);
        assert_eq!(BuildReport::parse(&ok.to_termination_message()).unwrap(), ok);
        let failed = BuildReport::Failed(FailedBuild {
            error: "no source yielded a usable document".into(),
            reason: "NoDocuments".into(),
            sources: vec![SourceStatus { name: "blog".into(), documents: 0, error: Some("HTTP 404".into()) }],
        });
        assert_eq!(BuildReport::parse(&failed.to_termination_message()).unwrap(), failed);
        assert!(BuildReport::parse("Error: exec format error").is_err());
    }

    #[test]
    fn long_reports_are_shortened_to_the_termination_message_limit() {
        let sources = (0..32)
            .map(|i| SourceStatus {
                name: format!("source-{i}"),
                documents: 0,
                error: Some("x".repeat(2000)),
            })
            .collect();
        let message = published(sources).to_termination_message();
        assert!(message.len() <= TERMINATION_MESSAGE_LIMIT, "{} bytes", message.len());
        let BuildReport::Published(read) = BuildReport::parse(&message).unwrap() else { panic!("published") };
        assert_eq!((read.revision.as_str(), read.sources.len(), read.timings), ("r1", 32, None));
    }
}
