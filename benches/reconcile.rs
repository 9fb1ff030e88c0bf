//! Benchmark: 1,000 twins of mixed kinds (40% TwinDatasets, 40% TwinTrainingJobs, 20%
//! TwinEndpoints) created on the real control plane (`scripts/control-plane`, with the chart
//! installed, as the tests start it), reconciled by a real `twin operator` process running as
//! the chart's ServiceAccount. Reports the time until every object's status shows its
//! generation, and the operator's peak resident memory (VmHWM). The datasets' build Jobs are
//! real Jobs whose pods the scheduler places on kwok's nodes, so the API server's and the
//! controllers' work is part of the time, as on a cluster.
//!
//!   cargo bench --bench reconcile
//!   TWIN_BENCH_TWINS=10000 cargo bench --bench reconcile
//!   TWIN_BENCH_OPERATOR=/path/to/other/twin cargo bench --bench reconcile   (compare builds)

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, ListParams, PostParams};
use serde_json::{Value, json};
use twin_operator::api::{TwinDataset, TwinEndpoint, TwinTrainingJob};

use support::control_plane::{self, RELEASE_NAMESPACE};

const NAMESPACES: usize = 10;

/// How many twins, from `TWIN_BENCH_TWINS` (1,000 by default).
fn twins() -> usize {
    std::env::var("TWIN_BENCH_TWINS").ok().and_then(|n| n.parse().ok()).unwrap_or(1000)
}

fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find(|l| l.starts_with("VmHWM:"))?.split_whitespace().nth(1)?.parse().ok()
}

async fn all_reconciled(client: &kube::Client) -> (usize, usize) {
    async fn statuses<K>(client: &kube::Client) -> Vec<Value>
    where
        K: kube::Resource<DynamicType = ()>
            + Clone
            + std::fmt::Debug
            + serde::de::DeserializeOwned
            + serde::Serialize,
    {
        let list = Api::<K>::all(client.clone()).list(&ListParams::default()).await.expect("list the twins");
        list.items.into_iter().map(|o| serde_json::to_value(o).unwrap()).collect()
    }
    let mut objects = statuses::<TwinDataset>(client).await;
    objects.extend(statuses::<TwinTrainingJob>(client).await);
    objects.extend(statuses::<TwinEndpoint>(client).await);
    let done = objects
        .iter()
        .filter(|o| {
            o["status"]["observedGeneration"] == o["metadata"]["generation"]
                && o["status"]["phase"].is_string()
        })
        .count();
    (done, objects.len())
}

#[tokio::main]
async fn main() {
    let twins = twins();
    let (datasets, training_jobs) = (twins * 2 / 5, twins * 2 / 5);
    let endpoints = twins - datasets - training_jobs;
    let plane = control_plane::shared();
    let client = plane.admin().await;
    // The namespaces, each with the ServiceAccount the build Jobs' pods run as.
    let mut namespaces = Vec::new();
    for _ in 0..NAMESPACES {
        let namespace = plane.namespace("bench").await;
        let account: ServiceAccount =
            serde_json::from_value(json!({"metadata": {"name": "twin-datasets"}})).unwrap();
        Api::<ServiceAccount>::namespaced(client.clone(), &namespace)
            .create(&PostParams::default(), &account)
            .await
            .unwrap();
        namespaces.push(namespace);
    }
    // Another build of the operator, to compare two against the same control plane.
    let binary = std::env::var("TWIN_BENCH_OPERATOR").unwrap_or_else(|_| env!("CARGO_BIN_EXE_twin").into());
    println!("operator: {binary}");
    let mut operator = tokio::process::Command::new(&binary)
        .args(["operator", "--metrics-addr", "127.0.0.1:0", "--lease-namespace", RELEASE_NAMESPACE])
        .args(["--lease-name", "twin-operator-bench", "--identity", "bench"])
        .env("KUBECONFIG", &plane.operator_kubeconfig)
        .env("RUST_LOG", "warn")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .spawn()
        .expect("start twin operator");
    let pid = operator.id().unwrap();
    let mut objects: Vec<(String, Value)> = Vec::new();
    for i in 0..datasets {
        objects.push(("TwinDataset".into(), json!({"apiVersion": "llmtwin.dev/v1alpha1", "kind": "TwinDataset",
            "metadata": {"name": format!("ds-{i}"), "namespace": namespaces[i % NAMESPACES]},
            "spec": {"author": {"name": format!("Author {i}")}, "sources": [{"name": "blog", "feed": {"url": format!("https://blog{i}.example.com/feed")}}],
                     "output": {"uri": "s3://twins-bench/out"}}})));
    }
    for i in 0..training_jobs {
        objects.push(("TwinTrainingJob".into(), json!({"apiVersion": "llmtwin.dev/v1alpha1", "kind": "TwinTrainingJob",
            "metadata": {"name": format!("tj-{i}"), "namespace": namespaces[i % NAMESPACES]},
            "spec": {"datasetRef": {"name": format!("ds-{i}")}, "baseModel": {"uri": "hf://meta-llama/Llama-3.1-8B"},
                     "backend": {"kubernetes": {}}, "output": {"uri": "s3://twins-bench/out"}}})));
    }
    for i in 0..endpoints {
        objects.push(("TwinEndpoint".into(), json!({"apiVersion": "llmtwin.dev/v1alpha1", "kind": "TwinEndpoint",
            "metadata": {"name": format!("ep-{i}"), "namespace": namespaces[i % NAMESPACES]},
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
        let (done, seen) = all_reconciled(&client).await;
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
