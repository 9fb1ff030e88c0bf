//! Benchmark: 1,000 twins of mixed kinds (40% TwinDatasets, 40% TwinTrainingJobs, 20%
//! TwinEndpoints) created on the fake API server, reconciled by a real `twin operator` process.
//! Reports the time until every object's status shows its generation, and the operator's peak
//! resident memory (VmHWM).
//!
//!   cargo bench --bench reconcile
//!   TWIN_BENCH_TWINS=10000 cargo bench --bench reconcile
//!   TWIN_BENCH_OPERATOR=/path/to/other/twin cargo bench --bench reconcile   (compare builds)

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::api::{Api, PostParams};
use serde_json::{Value, json};
use twin_operator::api::{TwinDataset, TwinEndpoint, TwinTrainingJob};

use support::fake_apiserver::FakeApiServer;

const NAMESPACES: usize = 10;

/// How many twins, from `TWIN_BENCH_TWINS` (1,000 by default).
fn twins() -> usize {
    std::env::var("TWIN_BENCH_TWINS").ok().and_then(|n| n.parse().ok()).unwrap_or(1000)
}

fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find(|l| l.starts_with("VmHWM:"))?.split_whitespace().nth(1)?.parse().ok()
}

fn all_reconciled(server: &FakeApiServer) -> (usize, usize) {
    let mut done = 0;
    let mut total = 0;
    for kind in ["TwinDataset", "TwinTrainingJob", "TwinEndpoint"] {
        for object in server.list("llmtwin.dev/v1alpha1", kind) {
            total += 1;
            let status: &Value = &object["status"];
            if status["observedGeneration"] == object["metadata"]["generation"] && status["phase"].is_string()
            {
                done += 1;
            }
        }
    }
    (done, total)
}

#[tokio::main]
async fn main() {
    let twins = twins();
    let (datasets, training_jobs) = (twins * 2 / 5, twins * 2 / 5);
    let endpoints = twins - datasets - training_jobs;
    let server = FakeApiServer::start().await;
    let kubeconfig = server.write_kubeconfig("bench");
    // Another build of the operator, to compare two against the same fake API server.
    let binary = std::env::var("TWIN_BENCH_OPERATOR").unwrap_or_else(|_| env!("CARGO_BIN_EXE_twin").into());
    println!("operator: {binary}");
    let mut operator = tokio::process::Command::new(&binary)
        .args([
            "operator",
            "--metrics-addr",
            "127.0.0.1:0",
            "--lease-namespace",
            "twin-system",
            "--identity",
            "bench",
        ])
        .env("KUBECONFIG", &kubeconfig)
        .env("RUST_LOG", "warn")
        .spawn()
        .expect("start twin operator");
    let pid = operator.id().unwrap();
    let client = server.client();
    let mut objects: Vec<(String, Value)> = Vec::new();
    for i in 0..datasets {
        objects.push(("TwinDataset".into(), json!({"apiVersion": "llmtwin.dev/v1alpha1", "kind": "TwinDataset",
            "metadata": {"name": format!("ds-{i}"), "namespace": format!("ns-{}", i % NAMESPACES)},
            "spec": {"author": {"name": format!("Author {i}")}, "sources": [{"name": "blog", "feed": {"url": format!("https://blog{i}.example.com/feed")}}],
                     "output": {"uri": "s3://twins-bench/out"}}})));
    }
    for i in 0..training_jobs {
        objects.push(("TwinTrainingJob".into(), json!({"apiVersion": "llmtwin.dev/v1alpha1", "kind": "TwinTrainingJob",
            "metadata": {"name": format!("tj-{i}"), "namespace": format!("ns-{}", i % NAMESPACES)},
            "spec": {"datasetRef": {"name": format!("ds-{i}")}, "baseModel": {"uri": "hf://meta-llama/Llama-3.1-8B"},
                     "backend": {"kubernetes": {}}, "output": {"uri": "s3://twins-bench/out"}}})));
    }
    for i in 0..endpoints {
        objects.push(("TwinEndpoint".into(), json!({"apiVersion": "llmtwin.dev/v1alpha1", "kind": "TwinEndpoint",
            "metadata": {"name": format!("ep-{i}"), "namespace": format!("ns-{}", i % NAMESPACES)},
            "spec": {"model": {"trainingJobRef": {"name": format!("tj-{i}")}}, "datasetRef": {"name": format!("ds-{i}")}}})));
    }
    let total = objects.len();
    let started = Instant::now();
    futures::stream::iter(objects)
        .for_each_concurrent(16, |(kind, object)| {
            let client = client.clone();
            async move {
                let namespace = object["metadata"]["namespace"].as_str().unwrap().to_string();
                let params = PostParams::default();
                let result = match kind.as_str() {
                    "TwinDataset" => Api::<TwinDataset>::namespaced(client, &namespace)
                        .create(&params, &serde_json::from_value(object).unwrap())
                        .await
                        .map(drop),
                    "TwinTrainingJob" => Api::<TwinTrainingJob>::namespaced(client, &namespace)
                        .create(&params, &serde_json::from_value(object).unwrap())
                        .await
                        .map(drop),
                    _ => Api::<TwinEndpoint>::namespaced(client, &namespace)
                        .create(&params, &serde_json::from_value(object).unwrap())
                        .await
                        .map(drop),
                };
                result.expect("create a benchmark object");
            }
        })
        .await;
    let created = started.elapsed();
    loop {
        let (done, seen) = all_reconciled(&server);
        if done == total && seen == total {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "only {done} of {total} reconciled after 5 minutes"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let reconciled = started.elapsed();
    // Let it settle, then measure the peak memory.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let peak = peak_rss_kib(pid)
        .map(|k| format!("{:.1} MiB", k as f64 / 1024.0))
        .unwrap_or_else(|| "unknown".into());
    let _ = tokio::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status().await;
    let _ = tokio::time::timeout(Duration::from_secs(10), operator.wait()).await;
    println!(
        "objects: {total} ({datasets} TwinDatasets, {training_jobs} TwinTrainingJobs, {endpoints} TwinEndpoints in {NAMESPACES} namespaces)"
    );
    println!("created in: {:.2} s", created.as_secs_f64());
    println!("all reconciled after: {:.2} s from the first create", reconciled.as_secs_f64());
    println!("operator peak resident memory (VmHWM): {peak}");
}
