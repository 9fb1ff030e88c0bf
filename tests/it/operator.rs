//! The real controllers against the fake API server: examples reach their phases, references
//! are followed across kinds, bad references settle without a hot loop, faults do not lose
//! updates, one replica of two reconciles, and the process starts and stops cleanly.

use std::future::Future;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use twin_operator::api::dataset::{DatasetArtifacts, DatasetStats, SourceStatus};
use twin_operator::api::{TwinDataset, TwinTrainingJob};
use twin_operator::contract::{BuildReport, FailedBuild, PublishedBuild};
use twin_operator::operator::{Operator, OperatorSettings};

use crate::support::fake_apiserver::{FakeApiServer, Verb};
use crate::support::{repo, twins, wait};

pub(crate) const NS: &str = "twins";

/// An operator replica; its SageMaker client reaches nothing (tests/it/sagemaker.rs gives one
/// that does), so no test calls out of the machine.
pub(crate) async fn start(server: &FakeApiServer, identity: &str) -> Operator {
    let mut settings = OperatorSettings::for_tests(identity);
    settings.sagemaker_client = Some(crate::support::sagemaker::unreachable().await);
    Operator::start(server.client(), &server.url, settings).await.expect("the operator starts")
}

pub(crate) async fn eventually<T, F, Fut>(what: &str, timeout: Duration, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    wait::eventually(what, timeout, Duration::from_millis(50), check).await
}

pub(crate) fn status_of(server: &FakeApiServer, kind: &str, name: &str) -> Value {
    server.get("llmtwin.dev/v1alpha1", kind, NS, name).map(|o| o["status"].clone()).unwrap_or(Value::Null)
}

/// Waits until an object's status shows its current generation with this phase and reason.
pub(crate) async fn wait_for_phase(
    server: &FakeApiServer,
    kind: &str,
    name: &str,
    phase: &str,
    reason: &str,
) -> Value {
    eventually(
        &format!("{kind} {name} to be {phase}/{reason} (now {})", status_of(server, kind, name)),
        Duration::from_secs(15),
        || async {
            let object = server.get("llmtwin.dev/v1alpha1", kind, NS, name)?;
            wait::has_phase(&object, phase, reason).then_some(object)
        },
    )
    .await
}

/// Applies every cluster example as `kubectl apply -f manifests/examples/` would (the
/// quickstart folder below it is the local-mode example).
pub(crate) async fn apply_examples(server: &FakeApiServer) {
    let client = server.client();
    for file in repo::files_with_extension("manifests/examples", "yaml")
        .into_iter()
        .filter(|f| f.parent() == Some(&repo::path("manifests/examples")))
    {
        twins::apply_file(&client, NS, &file, "kubectl").await;
    }
}

pub(crate) async fn create_drafts_config_map(server: &FakeApiServer) {
    let cm: ConfigMap = serde_json::from_value(
        json!({"metadata": {"name": "paul-drafts"}, "data": {"draft.md": "# A draft"}}),
    )
    .unwrap();
    Api::<ConfigMap>::namespaced(server.client(), NS).create(&PostParams::default(), &cm).await.unwrap();
}

/// The report `twin dataset build` leaves in its termination message, as the build writes it.
pub(crate) fn build_result(dataset: &str, revision: &str) -> String {
    let root = format!("s3://twins-bucket/twins/datasets/{dataset}/{revision}");
    BuildReport::Published(PublishedBuild {
        revision: revision.into(),
        unchanged: false,
        stats: DatasetStats { documents: 12, chunks: 80, instruct_samples: 160, preference_samples: 0 },
        sources: vec![
            SourceStatus { name: "newsletter".into(), documents: 12, error: None },
            SourceStatus {
                name: "course".into(),
                documents: 0,
                error: Some("cannot clone https://git.example.com/course.git at main: HTTP 404".into()),
            },
        ],
        artifacts: DatasetArtifacts {
            documents: format!("{root}/documents.jsonl"),
            chunks: format!("{root}/chunks.jsonl"),
            embeddings: format!("{root}/embeddings.safetensors"),
            instruct: Some(format!("{root}/instruct")),
            preference: None,
            root,
        },
        clean: Default::default(),
        embedded_chunks: 80,
        quality: Default::default(),
        timings: None,
    })
    .to_termination_message()
}

/// Plays the Job controller and kubelet: the dataset's first build Job succeeds with a result
/// for `revision`.
pub(crate) async fn publish_dataset_revision(server: &FakeApiServer, name: &str, revision: &str) {
    let job = format!("{name}-build-1");
    eventually(&format!("Job {job}"), Duration::from_secs(15), || async {
        server.get("batch/v1", "Job", NS, &job)
    })
    .await;
    server.mark_job_succeeded(NS, &job, &build_result(name, revision)).unwrap();
}

/// A fake API server with the examples applied, an operator reconciling them, and the
/// example dataset's first build published as `revision`.
pub(crate) async fn examples_with_a_dataset(revision: &str) -> (FakeApiServer, Operator) {
    let server = FakeApiServer::start().await;
    create_drafts_config_map(&server).await;
    let operator = start(&server, "replica-a").await;
    apply_examples(&server).await;
    publish_dataset_revision(&server, "paul", revision).await;
    (server, operator)
}

#[tokio::test]
async fn examples_reach_their_expected_phases_and_conditions() {
    let server = FakeApiServer::start().await;
    create_drafts_config_map(&server).await;
    let operator = start(&server, "replica-a").await;
    apply_examples(&server).await;
    wait_for_phase(&server, "TwinDataset", "paul", "Running", "Building").await;
    wait_for_phase(&server, "TwinTrainingJob", "paul-v1", "WaitingForDataset", "WaitingForDataset").await;
    // The job may have been reconciled before the dataset's build started: its message follows
    // the dataset once the dataset's change wakes it.
    let ready =
        eventually("paul-v1's condition to name the dataset's phase", Duration::from_secs(15), || async {
            let ready = status_of(&server, "TwinTrainingJob", "paul-v1")["conditions"][0].clone();
            ready["message"].as_str()?.contains("TwinDataset \"paul\" is Running").then_some(ready)
        })
        .await;
    assert_eq!((ready["type"].as_str(), ready["status"].as_str()), (Some("Ready"), Some("False")));
    wait_for_phase(&server, "TwinTrainingJob", "paul-v1-sagemaker", "WaitingForDataset", "WaitingForDataset")
        .await;
    wait_for_phase(&server, "TwinEndpoint", "paul", "Pending", "WaitingForModel").await;
    wait_for_phase(&server, "TwinEndpoint", "paul-external", "Pending", "WaitingForDataset").await;
    // Status is written by the operator's field manager, through the status subresource.
    let dataset = server.get("llmtwin.dev/v1alpha1", "TwinDataset", NS, "paul").unwrap();
    let managers: Vec<(&str, &str)> = dataset["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["manager"].as_str().unwrap(), m["subresource"].as_str().unwrap_or("")))
        .collect();
    assert!(managers.contains(&("twin-operator", "status")), "{managers:?}");
    // Phase changes are Events on the objects.
    let events = eventually("an Event for paul-v1", Duration::from_secs(5), || async {
        let list = Api::<Event>::namespaced(server.client(), NS).list(&ListParams::default()).await.ok()?;
        let found: Vec<Event> = list
            .items
            .into_iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("paul-v1"))
            .collect();
        (!found.is_empty()).then_some(found)
    })
    .await;
    assert!(events.iter().any(|e| e.reason.as_deref() == Some("WaitingForDataset")), "{events:?}");
    assert_eq!(events[0].reporting_controller.as_deref(), Some("twin-operator"));
    operator.shutdown().await;
}

#[tokio::test]
async fn a_training_job_waiting_for_its_dataset_moves_on_when_it_turns_ready() {
    let server = FakeApiServer::start().await;
    create_drafts_config_map(&server).await;
    let operator = start(&server, "replica-a").await;
    apply_examples(&server).await;
    wait_for_phase(&server, "TwinTrainingJob", "paul-v1", "WaitingForDataset", "WaitingForDataset").await;
    publish_dataset_revision(&server, "paul", "rev-3f9a").await;
    let job = wait_for_phase(&server, "TwinTrainingJob", "paul-v1", "Running", "Training").await;
    assert_eq!(job["status"]["datasetRevision"], "rev-3f9a");
    // The endpoint over a base model and the dataset resolves, with lineage.
    let endpoint =
        wait_for_phase(&server, "TwinEndpoint", "paul-external", "Deploying", "GatewayRollingOut").await;
    assert_eq!(endpoint["status"]["model"]["datasetRevision"], "rev-3f9a");
    assert_eq!(endpoint["status"]["model"]["baseModel"], "hf://meta-llama/Llama-3.1-8B-Instruct");
    // A training job that succeeds wakes the endpoint that serves it.
    server
        .mark_job_succeeded(NS, "paul-v1-train-g1-rev3f9a", r#"{"status":"Succeeded","sftTrainLoss":1.2}"#)
        .unwrap();
    let endpoint = wait_for_phase(&server, "TwinEndpoint", "paul", "Deploying", "EngineRollingOut").await;
    assert_eq!(
        endpoint["status"]["model"]["adapterUri"],
        "s3://twins-bucket/twins/models/paul-v1/g1-rev3f9a/adapter"
    );
    assert_eq!(endpoint["status"]["model"]["trainingJob"], "paul-v1");
    operator.shutdown().await;
}

#[tokio::test]
async fn an_invalid_reference_gives_a_clear_condition_and_no_hot_loop() {
    let server = FakeApiServer::start().await;
    let operator = start(&server, "replica-a").await;
    let job: TwinTrainingJob = serde_json::from_value(json!({
        "apiVersion": "llmtwin.dev/v1alpha1", "kind": "TwinTrainingJob", "metadata": {"name": "orphan"},
        "spec": {"datasetRef": {"name": "nobody"}, "baseModel": {"uri": "hf://a/b"}, "backend": {"kubernetes": {}}, "output": {"uri": "s3://bucket/x"}}
    }))
    .unwrap();
    Api::<TwinTrainingJob>::namespaced(server.client(), NS)
        .create(&PostParams::default(), &job)
        .await
        .unwrap();
    let object = wait_for_phase(&server, "TwinTrainingJob", "orphan", "Pending", "DatasetNotFound").await;
    let message = object["status"]["conditions"][0]["message"].as_str().unwrap().to_string();
    assert!(
        message.contains("TwinDataset \"nobody\" not found in namespace \"twins\"")
            && message.contains("spec.datasetRef.name"),
        "{message}"
    );
    let settled = operator.metrics.reconcile_count("twintrainingjob");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let later = operator.metrics.reconcile_count("twintrainingjob");
    assert!(later <= settled + 1, "a bad reference keeps reconciling: {settled} then {later} reconciles");
    let status_writes = server
        .requests()
        .iter()
        .filter(|r| {
            r.verb == Verb::Patch
                && r.subresource.as_deref() == Some("status")
                && r.name.as_deref() == Some("orphan")
        })
        .count();
    assert_eq!(status_writes, 1, "one status write, not a loop");
    // A local-only URI is a permanent error with an actionable message.
    let local: TwinTrainingJob = serde_json::from_value(json!({
        "apiVersion": "llmtwin.dev/v1alpha1", "kind": "TwinTrainingJob", "metadata": {"name": "local"},
        "spec": {"datasetRef": {"name": "nobody"}, "baseModel": {"uri": "hf://a/b"}, "backend": {"kubernetes": {}}, "output": {"uri": "file:///tmp/twins"}}
    }))
    .unwrap();
    Api::<TwinTrainingJob>::namespaced(server.client(), NS)
        .create(&PostParams::default(), &local)
        .await
        .unwrap();
    let failed = wait_for_phase(&server, "TwinTrainingJob", "local", "Failed", "InvalidSpec").await;
    assert!(failed["status"]["conditions"][0]["message"].as_str().unwrap().contains("twin up"));
    // Creating the dataset wakes the orphan: the reference resolves.
    let dataset: TwinDataset = serde_json::from_value(json!({"apiVersion": "llmtwin.dev/v1alpha1", "kind": "TwinDataset", "metadata": {"name": "nobody"},
        "spec": {"author": {"name": "N"}, "sources": [{"name": "blog", "feed": {"url": "https://example.com/feed"}}], "output": {"uri": "s3://bucket/x"}}})).unwrap();
    Api::<TwinDataset>::namespaced(server.client(), NS)
        .create(&PostParams::default(), &dataset)
        .await
        .unwrap();
    wait_for_phase(&server, "TwinTrainingJob", "orphan", "WaitingForDataset", "WaitingForDataset").await;
    operator.shutdown().await;
}

#[tokio::test]
async fn faults_do_not_stop_convergence_or_lose_updates() {
    let server = FakeApiServer::start().await;
    create_drafts_config_map(&server).await;
    apply_examples(&server).await;
    // Status writes fail, reads of referenced datasets conflict, watches break.
    server.fail_next(Some(Verb::Patch), None, 500, 4);
    server.fail_next(Some(Verb::Get), Some("twindatasets"), 409, 2);
    server.fail_next(Some(Verb::List), Some("twintrainingjobs"), 500, 1);
    let operator = start(&server, "replica-a").await;
    server.close_watches();
    wait_for_phase(&server, "TwinTrainingJob", "paul-v1", "WaitingForDataset", "WaitingForDataset").await;
    // Spec changes made while watches break and requests fail are all seen.
    server.fail_next_subresource(Verb::Patch, "twintrainingjobs", "status", 500, 2);
    server.fail_next_subresource(Verb::Patch, "twintrainingjobs", "status", 409, 1);
    let jobs = Api::<TwinTrainingJob>::namespaced(server.client(), NS);
    for epochs in [4, 5, 6] {
        let mut edited: Value =
            serde_saphyr::from_str(&repo::read("manifests/examples/twintrainingjob.yaml")).unwrap();
        edited["spec"]["sft"]["epochs"] = json!(epochs);
        jobs.patch("paul-v1", &PatchParams::apply("kubectl"), &Patch::Apply(&edited)).await.unwrap();
        server.close_watches();
    }
    let job =
        wait_for_phase(&server, "TwinTrainingJob", "paul-v1", "WaitingForDataset", "WaitingForDataset").await;
    assert_eq!(job["metadata"]["generation"], 4);
    assert_eq!(job["spec"]["sft"]["epochs"], 6);
    publish_dataset_revision(&server, "paul", "rev-1").await;
    server.close_watches();
    wait_for_phase(&server, "TwinTrainingJob", "paul-v1", "Running", "Training").await;
    wait_for_phase(&server, "TwinEndpoint", "paul-external", "Deploying", "GatewayRollingOut").await;
    assert!(
        operator.metrics.encode().contains("twin_reconcile_failures_total{controller="),
        "failures are counted"
    );
    operator.shutdown().await;
}

#[tokio::test]
async fn one_of_two_replicas_reconciles_and_the_other_takes_over() {
    let server = FakeApiServer::start().await;
    let first = start(&server, "replica-a").await;
    eventually("replica-a to lead", Duration::from_secs(10), || async { first.is_leader().then_some(()) })
        .await;
    let second = start(&server, "replica-b").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!second.is_leader());
    assert_eq!(second.health.ready(), Ok("standing by"));
    let leader_gauge = |operator: &Operator| sample(&operator.metrics.encode(), "twin_leader");
    eventually("replica-a's twin_leader to be 1", Duration::from_secs(5), || async {
        (leader_gauge(&first) == Some(1.0)).then_some(())
    })
    .await;
    assert_eq!(leader_gauge(&second), Some(0.0), "the stand-by does not lead");
    create_drafts_config_map(&server).await;
    apply_examples(&server).await;
    wait_for_phase(&server, "TwinTrainingJob", "paul-v1", "WaitingForDataset", "WaitingForDataset").await;
    assert!(first.metrics.reconcile_count("twintrainingjob") > 0);
    assert_eq!(second.metrics.reconcile_count("twintrainingjob"), 0, "the stand-by must not reconcile");
    // The leader dies without releasing the Lease: the stand-by takes over once it expires.
    let died = Instant::now();
    first.abort();
    eventually("replica-b to lead", Duration::from_secs(10), || async { second.is_leader().then_some(()) })
        .await;
    let takeover = died.elapsed();
    assert!(takeover <= Duration::from_secs(3 + 2), "takeover took {takeover:?} with a 3 s lease");
    eventually("replica-b's twin_leader to be 1", Duration::from_secs(5), || async {
        (leader_gauge(&second) == Some(1.0)).then_some(())
    })
    .await;
    publish_dataset_revision(&server, "paul", "rev-2").await;
    wait_for_phase(&server, "TwinTrainingJob", "paul-v1", "Running", "Training").await;
    assert!(second.metrics.reconcile_count("twintrainingjob") > 0);
    let lease = Api::<Lease>::namespaced(server.client(), "twin-system").get("twin-operator").await.unwrap();
    assert_eq!(lease.spec.as_ref().unwrap().holder_identity.as_deref(), Some("replica-b"));
    assert_eq!(lease.spec.unwrap().lease_transitions, Some(1));
    // A clean shutdown releases the Lease at once.
    second.shutdown().await;
    let lease = Api::<Lease>::namespaced(server.client(), "twin-system").get("twin-operator").await.unwrap();
    assert_eq!(lease.spec.unwrap().holder_identity, None);
}

/// The value of one series in a Prometheus exposition (`name value` or `name{labels} value`),
/// never read from its HELP or TYPE lines.
pub(crate) fn sample(exposition: &str, series: &str) -> Option<f64> {
    exposition.lines().filter(|line| !line.starts_with('#')).find_map(|line| {
        let (name, value) = line.rsplit_once(' ')?;
        if name == series { value.parse().ok() } else { None }
    })
}

/// A minimal HTTP/1.1 GET, for the operator's own endpoints.
async fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let code = response.split_whitespace().nth(1).unwrap().parse().unwrap();
    (code, response.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default())
}

#[tokio::test]
async fn metrics_health_and_readiness_are_served() {
    let server = FakeApiServer::start().await;
    create_drafts_config_map(&server).await;
    let operator = start(&server, "replica-a").await;
    assert_eq!(http_get(operator.metrics_addr, "/healthz").await.0, 200);
    eventually("/readyz to pass", Duration::from_secs(10), || async {
        (http_get(operator.metrics_addr, "/readyz").await.0 == 200).then_some(())
    })
    .await;
    apply_examples(&server).await;
    wait_for_phase(&server, "TwinEndpoint", "paul", "Pending", "WaitingForModel").await;
    // The other controllers may still be at work on a busy machine: wait until both training
    // jobs are counted in their phase.
    let training_jobs = "twin_objects{kind=\"TwinTrainingJob\",phase=\"WaitingForDataset\"}";
    let body = eventually("both training jobs to be counted", Duration::from_secs(15), || async {
        let (code, body) = http_get(operator.metrics_addr, "/metrics").await;
        (code == 200 && sample(&body, training_jobs) == Some(2.0)).then_some(body)
    })
    .await;
    let value =
        |series: &str| sample(&body, series).unwrap_or_else(|| panic!("/metrics lacks {series}:\n{body}"));
    assert!(value("twin_reconciliations_total{controller=\"twintrainingjob\"}") >= 2.0);
    assert!(value("twin_reconcile_duration_seconds_count{controller=\"twindataset\"}") >= 1.0);
    assert_eq!(value("twin_objects{kind=\"TwinTrainingJob\",phase=\"WaitingForDataset\"}"), 2.0);
    assert_eq!(value("twin_objects{kind=\"TwinEndpoint\",phase=\"Pending\"}"), 2.0);
    assert_eq!(value("twin_leader"), 1.0, "the leader says so");
    operator.shutdown().await;
}

#[tokio::test]
async fn the_operator_exits_with_a_clear_message_when_the_api_server_is_unreachable() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let kubeconfig = std::env::temp_dir().join(format!("twin-unreachable-{port}.kubeconfig"));
    std::fs::write(&kubeconfig, format!("apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: http://127.0.0.1:{port}\ncontexts:\n- name: c\n  context:\n    cluster: c\n    user: u\ncurrent-context: c\nusers:\n- name: u\n  user:\n    token: t\n")).unwrap();
    let started = Instant::now();
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_twin"))
        .args(["operator", "--metrics-addr", "127.0.0.1:0"])
        .env("KUBECONFIG", &kubeconfig)
        .env_remove("KUBERNETES_SERVICE_HOST")
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    assert!(started.elapsed() < Duration::from_secs(15), "took {:?}", started.elapsed());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("cannot reach the Kubernetes API server at http://127.0.0.1:{port}")),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_replica_stopped_before_its_caches_fill_stops_at_once() {
    // The TwinDataset list keeps failing, so that cache never gets its first list: kube-runtime's
    // runner would hold its queue for that list forever, shutdown included.
    let server = FakeApiServer::start().await;
    server.fail_next(Some(Verb::List), Some("twindatasets"), 500, 10_000);
    let operator = start(&server, "replica-a").await;
    eventually("the replica to lead", Duration::from_secs(15), || async {
        operator.is_leader().then_some(())
    })
    .await;
    eventually("a TwinDataset list to have failed", Duration::from_secs(15), || async {
        server.requests().iter().any(|r| r.verb == Verb::List && r.plural == "twindatasets").then_some(())
    })
    .await;
    tokio::time::timeout(Duration::from_secs(5), operator.shutdown())
        .await
        .expect("the replica stops within 5 s although a cache never filled");
    let lease = Api::<Lease>::namespaced(server.client(), "twin-system").get("twin-operator").await.unwrap();
    assert_eq!(lease.spec.unwrap().holder_identity, None, "the Lease is released");
}

#[tokio::test]
async fn sigterm_stops_the_operator_gracefully_and_releases_the_lease() {
    let server = FakeApiServer::start().await;
    let kubeconfig = server.write_kubeconfig("sigterm");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_twin"))
        .args([
            "operator",
            "--metrics-addr",
            "127.0.0.1:0",
            "--lease-namespace",
            "twin-system",
            "--identity",
            "process-a",
            "--lease-duration-seconds",
            "3",
        ])
        .env("KUBECONFIG", &kubeconfig)
        .env("TWIN_LOG_FORMAT", "json")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let leases = Api::<Lease>::namespaced(server.client(), "twin-system");
    eventually("the process to take the Lease", Duration::from_secs(15), || async {
        let lease = leases.get_opt("twin-operator").await.ok()??;
        (lease.spec?.holder_identity.as_deref() == Some("process-a")).then_some(())
    })
    .await;
    let pid = child.id().unwrap().to_string();
    let killed = tokio::process::Command::new("kill").args(["-TERM", &pid]).status().await.unwrap();
    assert!(killed.success());
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("stops within 10 s")
        .unwrap();
    assert!(status.success(), "exit status {status:?}");
    let lease = leases.get("twin-operator").await.unwrap();
    assert_eq!(lease.spec.unwrap().holder_identity, None, "the Lease is released on SIGTERM");
    let mut stderr = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).await.unwrap();
    let first_line: Value = serde_json::from_str(stderr.lines().next().unwrap()).expect("JSON log lines");
    assert!(first_line.get("level").is_some() && first_line.get("timestamp").is_some(), "{first_line}");
    assert!(stderr.contains("released the leader Lease"), "{stderr}");
}

#[tokio::test]
async fn a_dataset_runs_a_build_job_whose_result_becomes_its_status() {
    let server = FakeApiServer::start().await;
    create_drafts_config_map(&server).await;
    let operator = start(&server, "replica-a").await;
    apply_examples(&server).await;
    wait_for_phase(&server, "TwinDataset", "paul", "Running", "Building").await;
    // The Job runs `twin dataset build` on the spec, locked down, with the sources mounted.
    let job = server.get("batch/v1", "Job", NS, "paul-build-1").expect("the build Job");
    let pod = &job["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    assert_eq!(container["image"], "twin:test");
    assert_eq!(
        container["args"],
        json!([
            "dataset",
            "build",
            "-f",
            "/etc/twin/spec/twindataset.json",
            "--termination-message-path",
            "/dev/termination-log"
        ])
    );
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["serviceAccountName"], "twin-datasets");
    assert_eq!(container["resources"]["limits"]["memory"], "4Gi");
    let mounts: Vec<&str> = container["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["mountPath"].as_str().unwrap())
        .collect();
    assert!(
        mounts.contains(&"/etc/twin/spec") && mounts.contains(&"/etc/twin/configmaps/paul-drafts"),
        "{mounts:?}"
    );
    assert_eq!(job["metadata"]["ownerReferences"][0]["kind"], "TwinDataset");
    assert_eq!(job["metadata"]["labels"]["app.kubernetes.io/managed-by"], "twin-operator");
    let spec_map = server.get("v1", "ConfigMap", NS, "paul-spec").expect("the spec ConfigMap");
    let spec: Value = serde_json::from_str(spec_map["data"]["twindataset.json"].as_str().unwrap()).unwrap();
    assert_eq!(spec["spec"]["author"]["name"], "Paul Iusztin");
    // The example's schedule makes a CronJob running the same build.
    let cron = server.get("batch/v1", "CronJob", NS, "paul-refresh").expect("the refresh CronJob");
    assert_eq!(cron["spec"]["schedule"], "0 4 * * *");
    assert_eq!(
        cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["args"],
        container["args"]
    );

    // Success: the termination message becomes the status.
    server.mark_job_succeeded(NS, "paul-build-1", &build_result("paul", "rev-77")).unwrap();
    let ready = wait_for_phase(&server, "TwinDataset", "paul", "Ready", "RevisionPublished").await;
    let status = &ready["status"];
    assert_eq!(status["revision"], "rev-77");
    assert_eq!(status["stats"]["chunks"], 80);
    assert_eq!(status["artifacts"]["root"], "s3://twins-bucket/twins/datasets/paul/rev-77");
    assert_eq!(
        status["sources"][1]["error"],
        "cannot clone https://git.example.com/course.git at main: HTTP 404"
    );
    assert!(status["conditions"][0]["message"].as_str().unwrap().contains("sources that failed: course"));

    // A CronJob that looks like the dataset's (same labels) but is not controlled by it.
    let mut look_alike = cron.clone();
    look_alike["metadata"] =
        json!({"name": "paul-by-hand", "namespace": NS, "labels": cron["metadata"]["labels"]});
    look_alike.as_object_mut().unwrap().remove("status");
    Api::<k8s_openapi::api::batch::v1::CronJob>::namespaced(server.client(), NS)
        .create(&PostParams::default(), &serde_json::from_value(look_alike).unwrap())
        .await
        .unwrap();

    // A spec change starts the next generation's Job; dropping the schedule drops the CronJob.
    let mut edited: Value =
        serde_saphyr::from_str(&repo::read("manifests/examples/twindataset.yaml")).unwrap();
    edited["spec"]["chunking"]["maxTokens"] = json!(384);
    edited["spec"].as_object_mut().unwrap().remove("schedule");
    Api::<TwinDataset>::namespaced(server.client(), NS)
        .patch("paul", &PatchParams::apply("kubectl"), &Patch::Apply(&edited))
        .await
        .unwrap();
    wait_for_phase(&server, "TwinDataset", "paul", "Running", "Building").await;
    assert!(server.get("batch/v1", "Job", NS, "paul-build-2").is_some());
    eventually("the CronJob to go", Duration::from_secs(10), || async {
        server.get("batch/v1", "CronJob", NS, "paul-refresh").is_none().then_some(())
    })
    .await;
    assert!(
        server.get("batch/v1", "CronJob", NS, "paul-by-hand").is_some(),
        "only the dataset's own children go"
    );

    // Failure: the reason and message come from the termination message.
    let failure = BuildReport::Failed(FailedBuild {
        error: "no source yielded a usable document".into(),
        reason: "NoDocuments".into(),
        sources: vec![SourceStatus {
            name: "newsletter".into(),
            documents: 0,
            error: Some("HTTP 404 from https://decodingml.substack.com/feed".into()),
        }],
    });
    server.mark_job_failed(NS, "paul-build-2", &failure.to_termination_message()).unwrap();
    let failed = wait_for_phase(&server, "TwinDataset", "paul", "Failed", "NoDocuments").await;
    let message = failed["status"]["conditions"][0]["message"].as_str().unwrap();
    assert!(
        message.contains("no source yielded a usable document") && message.contains("HTTP 404"),
        "{message}"
    );
    // Nothing was created twice (the training job trains on the published revision meanwhile).
    let jobs: Vec<Value> = server
        .list("batch/v1", "Job")
        .into_iter()
        .filter(|j| j["metadata"]["labels"]["app.kubernetes.io/component"] == "dataset-build")
        .collect();
    assert_eq!(jobs.len(), 2, "{:?}", jobs.iter().map(|j| j["metadata"]["name"].clone()).collect::<Vec<_>>());
    operator.shutdown().await;
}

fn scheduled_dataset(name: &str, schedule: &str) -> TwinDataset {
    serde_json::from_value(json!({"apiVersion": "llmtwin.dev/v1alpha1", "kind": "TwinDataset", "metadata": {"name": name},
        "spec": {"author": {"name": "Paul"}, "sources": [{"name": "blog", "feed": {"url": "https://paul.example.com/feed"}}],
                 "output": {"uri": "s3://twins-bucket/twins"}, "schedule": schedule}}))
    .unwrap()
}

/// The Jobs building a dataset, found as the operator finds them: by the full name.
fn build_jobs_of(server: &FakeApiServer, dataset: &str) -> Vec<Value> {
    server
        .list("batch/v1", "Job")
        .into_iter()
        .filter(|job| job["metadata"]["annotations"]["llmtwin.dev/dataset"] == dataset)
        .collect()
}

#[tokio::test]
async fn datasets_with_long_names_get_their_own_children_and_wake_when_their_builds_end() {
    let server = FakeApiServer::start().await;
    let operator = start(&server, "replica-a").await;
    // 70 characters, the first 60 shared: the instance label is hashed, names are cut.
    let prefix = "the-collected-newsletters-essays-and-talks-of-paul-iusztin-20";
    let names = [format!("{prefix}20-edition-a"), format!("{prefix}20-edition-b")];
    let datasets = Api::<TwinDataset>::namespaced(server.client(), NS);
    for name in &names {
        datasets.create(&PostParams::default(), &scheduled_dataset(name, "@daily")).await.unwrap();
    }
    for name in &names {
        wait_for_phase(&server, "TwinDataset", name, "Running", "Building").await;
    }
    let cron_jobs: Vec<String> = server
        .list("batch/v1", "CronJob")
        .iter()
        .map(|c| c["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(cron_jobs.len(), 2, "each dataset has its own refresh CronJob: {cron_jobs:?}");
    assert!(cron_jobs[0] != cron_jobs[1] && cron_jobs.iter().all(|n| n.len() <= 52), "{cron_jobs:?}");
    // The generation's Job ends: the dataset whose name the label could not hold wakes.
    let first = build_jobs_of(&server, &names[0]);
    assert_eq!(first.len(), 1);
    let job = first[0]["metadata"]["name"].as_str().unwrap().to_string();
    assert!(job.len() <= 63, "{job}");
    server.mark_job_succeeded(NS, &job, &build_result(&names[0], "rev-long-1")).unwrap();
    let ready = wait_for_phase(&server, "TwinDataset", &names[0], "Ready", "RevisionPublished").await;
    assert_eq!(ready["status"]["revision"], "rev-long-1");
    wait_for_phase(&server, "TwinDataset", &names[1], "Running", "Building").await;
    // A scheduled refresh's Job, owned by the CronJob, wakes its dataset too.
    let cron_job = server
        .list("batch/v1", "CronJob")
        .into_iter()
        .find(|c| {
            c["spec"]["jobTemplate"]["metadata"]["annotations"]["llmtwin.dev/dataset"] == names[1].as_str()
        })
        .unwrap();
    // Creation times have one-second resolution; a schedule's run is never in the same second.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let run = server.run_cron_job(NS, cron_job["metadata"]["name"].as_str().unwrap()).unwrap();
    let run = run["metadata"]["name"].as_str().unwrap().to_string();
    server.mark_job_succeeded(NS, &run, &build_result(&names[1], "rev-scheduled")).unwrap();
    let refreshed = wait_for_phase(&server, "TwinDataset", &names[1], "Ready", "RevisionPublished").await;
    assert_eq!(refreshed["status"]["revision"], "rev-scheduled");
    assert_eq!(
        status_of(&server, "TwinDataset", &names[0])["revision"],
        "rev-long-1",
        "the other dataset is untouched"
    );
    operator.shutdown().await;
}

#[tokio::test]
async fn a_child_the_api_server_refuses_shows_in_the_status_and_an_event_then_waits_for_a_fix() {
    let server = FakeApiServer::start().await;
    let operator = start(&server, "replica-a").await;
    // The schema accepts five fields; the API server's cron parser refuses minute 61.
    let datasets = Api::<TwinDataset>::namespaced(server.client(), NS);
    datasets.create(&PostParams::default(), &scheduled_dataset("paul", "61 4 * * *")).await.unwrap();
    let failed = wait_for_phase(&server, "TwinDataset", "paul", "Failed", "ChildRejected").await;
    let message = failed["status"]["conditions"][0]["message"].as_str().unwrap().to_string();
    assert!(
        message.contains("applying CronJob paul-refresh")
            && message.contains("spec.schedule: Invalid value: \"61 4 * * *\"")
            && message.contains("above maximum (59)"),
        "{message}"
    );
    let events = eventually("a ChildRejected Event", Duration::from_secs(5), || async {
        let list = Api::<Event>::namespaced(server.client(), NS).list(&ListParams::default()).await.ok()?;
        list.items.into_iter().find(|e| e.reason.as_deref() == Some("ChildRejected"))
    })
    .await;
    assert_eq!(events.type_.as_deref(), Some("Warning"));
    assert!(events.note.unwrap().contains("CronJob paul-refresh"));
    // It waits for a change rather than retrying what will fail the same way.
    let settled = operator.metrics.reconcile_count("twindataset");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        operator.metrics.reconcile_count("twindataset") <= settled + 1,
        "a refused child keeps reconciling"
    );
    // A fixed schedule goes through.
    let fixed = json!({"spec": {"schedule": "1 4 * * *"}});
    datasets.patch("paul", &PatchParams::default(), &Patch::Merge(&fixed)).await.unwrap();
    wait_for_phase(&server, "TwinDataset", "paul", "Running", "Building").await;
    assert!(server.get("batch/v1", "CronJob", NS, "paul-refresh").is_some());
    operator.shutdown().await;
}

#[tokio::test]
async fn a_sagemaker_training_job_holds_a_finalizer_until_its_cleanup_ran() {
    let server = FakeApiServer::start().await;
    create_drafts_config_map(&server).await;
    let operator = start(&server, "replica-a").await;
    apply_examples(&server).await;
    let jobs = Api::<TwinTrainingJob>::namespaced(server.client(), NS);
    eventually("the SageMaker job's finalizer", Duration::from_secs(10), || async {
        let job = jobs.get("paul-v1-sagemaker").await.ok()?;
        (job.metadata.finalizers.as_deref() == Some(&["llmtwin.dev/sagemaker-training-job".to_string()][..]))
            .then_some(())
    })
    .await;
    wait_for_phase(&server, "TwinTrainingJob", "paul-v1-sagemaker", "WaitingForDataset", "WaitingForDataset")
        .await;
    // A job on the cluster's GPUs owns nothing outside the cluster: no finalizer.
    assert_eq!(jobs.get("paul-v1").await.unwrap().metadata.finalizers, None);
    jobs.delete("paul-v1-sagemaker", &Default::default()).await.unwrap();
    eventually("the SageMaker job to be gone", Duration::from_secs(10), || async {
        jobs.get_opt("paul-v1-sagemaker").await.ok()?.is_none().then_some(())
    })
    .await;
    operator.shutdown().await;
}
