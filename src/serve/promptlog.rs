//! The prompt log: one JSON line per answered request (question, passages with scores, answer,
//! latencies, lineage), written in batches to `<uri>/<endpoint>/<date>/<hour>-<replica>.jsonl`
//! by a task of its own. Requests hand their line to a bounded buffer and never wait: when it
//! is full the line is dropped and counted.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::mpsc;
use tracing::warn;

use super::api::{Lineage, Source, Usage};
use super::metrics::GatewayMetrics;
use crate::storage::ObjectStore;

/// One request's line.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PromptRecord {
    /// When the request came (RFC 3339, UTC).
    pub time: String,
    /// The request's id (the answer's `id`).
    pub id: String,
    /// The twin's name.
    pub model: String,
    /// The last user message.
    pub question: String,
    /// The passages in the prompt, best first.
    pub passages: Vec<Source>,
    /// The answer (as far as it got).
    pub answer: String,
    /// `stop`, `length`, or `error`.
    pub finish_reason: String,
    /// The error that ended the answer, if one did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Token counts.
    pub usage: Usage,
    /// Milliseconds spent, by step.
    pub latency_ms: Latency,
    /// What answered.
    pub lineage: Lineage,
}

/// Milliseconds spent, by step.
#[derive(Debug, Clone, Copy, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Latency {
    /// Embedding the question.
    pub embedding: f64,
    /// Searching the index.
    pub retrieval: f64,
    /// From the request to the first token.
    pub first_token: f64,
    /// The whole request.
    pub total: f64,
}

/// How the log is written.
#[derive(Debug, Clone)]
pub struct PromptLogOptions {
    /// The endpoint's name (a folder of the log).
    pub endpoint: String,
    /// This replica's name (part of each file's name).
    pub replica: String,
    /// Lines held before the oldest unwritten are dropped.
    pub capacity: usize,
    /// Lines per write at most.
    pub batch: usize,
    /// Longest a line waits to be written.
    pub flush_every: Duration,
}

/// The requests' side of the log.
#[derive(Clone)]
pub struct PromptLog {
    sender: mpsc::Sender<PromptRecord>,
    metrics: Arc<GatewayMetrics>,
}

impl PromptLog {
    /// Starts the writer; it ends, having written what it holds, once every `PromptLog` is dropped.
    pub fn start(
        store: ObjectStore,
        options: PromptLogOptions,
        metrics: Arc<GatewayMetrics>,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let (sender, receiver) = mpsc::channel(options.capacity.max(1));
        let writer = tokio::spawn(write_batches(store, options, receiver, metrics.clone()));
        (Self { sender, metrics }, writer)
    }

    /// Hands a line to the writer, or drops and counts it when the buffer is full.
    pub fn record(&self, record: PromptRecord) {
        if self.sender.try_send(record).is_err() {
            self.metrics.prompt_log_dropped.inc();
        }
    }
}

async fn write_batches(
    store: ObjectStore,
    options: PromptLogOptions,
    mut receiver: mpsc::Receiver<PromptRecord>,
    metrics: Arc<GatewayMetrics>,
) {
    let mut batch: Vec<PromptRecord> = Vec::with_capacity(options.batch);
    let mut open = true;
    while open {
        let deadline = tokio::time::sleep(options.flush_every);
        tokio::pin!(deadline);
        // Collect until the batch is full, the deadline passes, or every sender is gone.
        loop {
            tokio::select! {
                received = receiver.recv() => match received {
                    Some(record) => {
                        batch.push(record);
                        if batch.len() >= options.batch {
                            break;
                        }
                    }
                    None => {
                        open = false;
                        break;
                    }
                },
                _ = &mut deadline => break,
            }
        }
        if batch.is_empty() {
            continue;
        }
        // A batch may span an hour's end: each line goes to its own hour's file.
        let mut files: Vec<(String, Vec<u8>)> = Vec::new();
        for record in batch.drain(..) {
            let key = file_key(&options, &record.time);
            let mut line = serde_json::to_vec(&record).expect("a record serialises");
            line.push(b'\n');
            match files.iter_mut().find(|(k, _)| *k == key) {
                Some((_, bytes)) => bytes.extend_from_slice(&line),
                None => files.push((key, line)),
            }
        }
        for (key, bytes) in files {
            let lines = bytes.iter().filter(|&&b| b == b'\n').count() as u64;
            match store.append(&key, &bytes).await {
                Ok(()) => {
                    metrics.prompt_log_written.inc_by(lines);
                }
                Err(error) => {
                    metrics.prompt_log_write_failures.inc();
                    metrics.prompt_log_dropped.inc_by(lines);
                    warn!("cannot write {lines} prompt-log lines to {key}: {error}");
                }
            }
        }
    }
}

/// `<endpoint>/<YYYY-MM-DD>/<HH>-<replica>.jsonl` for a record's RFC 3339 time.
fn file_key(options: &PromptLogOptions, time: &str) -> String {
    let date = time.get(..10).unwrap_or("unknown-date");
    let hour = time.get(11..13).unwrap_or("00");
    format!("{}/{date}/{hour}-{}.jsonl", options.endpoint, options.replica)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_per_endpoint_day_hour_and_replica() {
        let options = PromptLogOptions {
            endpoint: "paul".into(),
            replica: "gw-0".into(),
            capacity: 1,
            batch: 1,
            flush_every: Duration::from_secs(1),
        };
        assert_eq!(file_key(&options, "2026-12-02T07:51:16Z"), "paul/2026-12-02/07-gw-0.jsonl");
    }
}
