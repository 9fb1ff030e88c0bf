//! The real controllers on the real control plane (tests/support/scene.rs), as the chart's
//! ServiceAccount: examples reach their phases, references are followed across kinds, bad
//! references and refused children settle without a hot loop, faults injected by a proxy in
//! front of the API server do not lose updates, one replica of two reconciles, and the process
//! starts and stops cleanly.

use std::time::{Duration, Instant};

use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use twin_operator::api::dataset::SourceStatus;
use twin_operator::api::{TwinDataset, TwinEndpoint, TwinTrainingJob};
use twin_operator::contract::{BuildReport, FailedBuild};
use twin_operator::operator::Operator;

use crate::support::control_plane::RELEASE_NAMESPACE;
use crate::support::fault_proxy::Verb;
use crate::support::scene::{Scene, eventually};

/// A scene with an L4 GPU node, an operator, the examples applied and the example dataset's
/// first build published as `revision`.
pub(crate) async fn examples_with_a_dataset(prefix: &str, revision: &str) -> (Scene, Operator) {
    let scene = Scene::new(prefix).await;
    scene.gpu_node("kwok-l4", 8).await;
    let operator = scene.operator("replica-a").await;
    scene.apply_examples().await;
    scene.publish_build("paul", "paul-build-1", revision).await;
    (scene, operator)
}

/// The message of a twin's Ready condition.
pub(crate) fn ready_message(object: &Value) -> String {
    object["status"]["conditions"][0]["message"].as_str().unwrap_or_default().to_string()
}

/// The holder of a test's leader Lease.
async fn lease_of(scene: &Scene) -> Lease {
    Api::<Lease>::namespaced(scene.client.clone(), RELEASE_NAMESPACE)
        .get(&format!("twin-operator-{}", scene.namespace))
        .await
        .unwrap()
}

#[tokio::test]
async fn examples_reach_their_expected_phases_and_conditions() {
    let scene = Scene::new("examples").await;
    let operator = scene.operator("replica-a").await;
    scene.apply_examples().await;
    scene.wait_for_phase::<TwinDataset>("paul", "Running", "Building").await;
    scene.wait_for_phase::<TwinTrainingJob>("paul-v1", "WaitingForDataset", "WaitingForDataset").await;
    // The job may have been reconciled before the dataset's build started: its message follows
    // the dataset once the dataset's change wakes it.
    let ready = eventually("paul-v1's condition to name the dataset's phase", || async {
        let ready = scene.status_of::<TwinTrainingJob>("paul-v1").await["conditions"][0].clone();
        ready["message"].as_str()?.contains("TwinDataset \"paul\" is Running").then_some(ready)
    })
    .await;
    assert_eq!((ready["type"].as_str(), ready["status"].as_str()), (Some("Ready"), Some("False")));
    scene
        .wait_for_phase::<TwinTrainingJob>("paul-v1-sagemaker", "WaitingForDataset", "WaitingForDataset")
        .await;
    scene.wait_for_phase::<TwinEndpoint>("paul", "Pending", "WaitingForModel").await;
    scene.wait_for_phase::<TwinEndpoint>("paul-external", "Pending", "WaitingForDataset").await;
    // Status is written by the operator's field manager, through the status subresource.
    let dataset = scene.get::<TwinDataset>("paul").await.unwrap();
    let managers: Vec<(&str, &str)> = dataset["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["manager"].as_str().unwrap(), m["subresource"].as_str().unwrap_or("")))
        .collect();
    assert!(managers.contains(&("twin-operator", "status")), "{managers:?}");
    // Phase changes are Events on the objects.
    let events = eventually("an Event for paul-v1", || async {
        let found: Vec<Value> =
            scene.list::<Event>().await.into_iter().filter(|e| e["regarding"]["name"] == "paul-v1").collect();
        (!found.is_empty()).then_some(found)
    })
    .await;
    assert!(events.iter().any(|e| e["reason"] == "WaitingForDataset"), "{events:?}");
    assert_eq!(events[0]["reportingController"], "twin-operator");
    operator.shutdown().await;
}

#[tokio::test]
async fn a_training_job_waiting_for_its_dataset_moves_on_when_it_turns_ready() {
    let scene = Scene::new("waiting").await;
    scene.gpu_node("kwok-l4", 8).await;
    let operator = scene.operator("replica-a").await;
    scene.apply_examples().await;
    scene.wait_for_phase::<TwinTrainingJob>("paul-v1", "WaitingForDataset", "WaitingForDataset").await;
    scene.publish_build("paul", "paul-build-1", "rev-3f9a").await;
    let job = scene.wait_for_phase::<TwinTrainingJob>("paul-v1", "Running", "Training").await;
    assert_eq!(job["status"]["datasetRevision"], "rev-3f9a");
    // The endpoint over a base model and the dataset resolves, with lineage, and its gateway
    // rolls out on the real Deployment controller.
    let endpoint = scene.wait_for_phase::<TwinEndpoint>("paul-external", "Ready", "Serving").await;
    assert_eq!(endpoint["status"]["model"]["datasetRevision"], "rev-3f9a");
    assert_eq!(endpoint["status"]["model"]["baseModel"], "hf://meta-llama/Llama-3.1-8B-Instruct");
    // A training job that succeeds wakes the endpoint that serves it.
    scene.end_job("paul-v1-train-g1-rev3f9a", 0, r#"{"status":"Succeeded","sftTrainLoss":1.2}"#).await;
    let endpoint = scene.wait_for_phase::<TwinEndpoint>("paul", "Ready", "Serving").await;
    assert_eq!(
        endpoint["status"]["model"]["adapterUri"],
        "s3://twins-bucket/twins/models/paul-v1/g1-rev3f9a/adapter"
    );
    assert_eq!(endpoint["status"]["model"]["trainingJob"], "paul-v1");
    operator.shutdown().await;
}

#[tokio::test]
async fn an_invalid_reference_gives_a_clear_condition_and_no_hot_loop() {
    let scene = Scene::new("orphan").await;
    let proxy = scene.fault_proxy().await;
    let operator = scene.operator_through(&proxy, "replica-a").await;
    let job: TwinTrainingJob = serde_json::from_value(json!({
        "apiVersion": "llmtwin.dev/v1alpha1", "kind": "TwinTrainingJob", "metadata": {"name": "orphan"},
        "spec": {"datasetRef": {"name": "nobody"}, "baseModel": {"uri": "hf://a/b"}, "backend": {"kubernetes": {}}, "output": {"uri": "s3://bucket/x"}}
    }))
    .unwrap();
    let jobs = scene.api::<TwinTrainingJob>();
    jobs.create(&PostParams::default(), &job).await.unwrap();
    let object = scene.wait_for_phase::<TwinTrainingJob>("orphan", "Pending", "DatasetNotFound").await;
    let message = ready_message(&object);
    assert!(
        message.contains(&format!("TwinDataset \"nobody\" not found in namespace \"{}\"", scene.namespace))
            && message.contains("spec.datasetRef.name"),
        "{message}"
    );
    let settled = operator.metrics.reconcile_count("twintrainingjob");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let later = operator.metrics.reconcile_count("twintrainingjob");
    assert!(later <= settled + 1, "a bad reference keeps reconciling: {settled} then {later} reconciles");
    let status_writes = proxy
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
    jobs.create(&PostParams::default(), &local).await.unwrap();
    let failed = scene.wait_for_phase::<TwinTrainingJob>("local", "Failed", "InvalidSpec").await;
    assert!(ready_message(&failed).contains("twin up"));
    // Creating the dataset wakes the orphan: the reference resolves.
    let dataset: TwinDataset = serde_json::from_value(json!({"apiVersion": "llmtwin.dev/v1alpha1", "kind": "TwinDataset", "metadata": {"name": "nobody"},
        "spec": {"author": {"name": "N"}, "sources": [{"name": "blog", "feed": {"url": "https://example.com/feed"}}], "output": {"uri": "s3://bucket/x"}}})).unwrap();
    scene.api::<TwinDataset>().create(&PostParams::default(), &dataset).await.unwrap();
    scene.wait_for_phase::<TwinTrainingJob>("orphan", "WaitingForDataset", "WaitingForDataset").await;
    operator.shutdown().await;
}

#[tokio::test]
async fn faults_do_not_stop_convergence_or_lose_updates() {
    let scene = Scene::new("faults").await;
    scene.gpu_node("kwok-l4", 8).await;
    scene.apply_examples().await;
    // Status writes fail, reads of referenced datasets conflict, watches break, answers are slow.
    let proxy = scene.fault_proxy().await;
    proxy.fail_next(Some(Verb::Patch), None, 500, 4);
    proxy.fail_next(Some(Verb::Get), Some("twindatasets"), 409, 2);
    proxy.fail_next(Some(Verb::List), Some("twintrainingjobs"), 500, 1);
    proxy.fail_next(Some(Verb::List), Some("twinendpoints"), 429, 2);
    proxy.set_delay(Duration::from_millis(100));
    let operator = scene.operator_through(&proxy, "replica-a").await;
    let watches = || proxy.requests().iter().filter(|r| r.verb == Verb::Watch).count();
    eventually("the operator's watches", || async { (watches() >= 3).then_some(()) }).await;
    let before = watches();
    proxy.close_watches();
    scene.wait_for_phase::<TwinTrainingJob>("paul-v1", "WaitingForDataset", "WaitingForDataset").await;
    eventually("the closed watches to be opened again", || async { (watches() >= before * 2).then_some(()) })
        .await;
    proxy.set_delay(Duration::ZERO);
    // Spec changes made while watches break and requests fail are all seen.
    proxy.fail_next_subresource(Verb::Patch, "twintrainingjobs", "status", 500, 2);
    proxy.fail_next_subresource(Verb::Patch, "twintrainingjobs", "status", 409, 1);
    for epochs in [4, 5, 6] {
        scene.apply_example("twintrainingjob.yaml", |job| job["spec"]["sft"]["epochs"] = json!(epochs)).await;
        proxy.close_watches();
    }
    let job =
        scene.wait_for_phase::<TwinTrainingJob>("paul-v1", "WaitingForDataset", "WaitingForDataset").await;
    assert_eq!(job["metadata"]["generation"], 4);
    assert_eq!(job["spec"]["sft"]["epochs"], 6);
    scene.publish_build("paul", "paul-build-1", "rev-1").await;
    proxy.close_watches();
    scene.wait_for_phase::<TwinTrainingJob>("paul-v1", "Running", "Training").await;
    scene.wait_for_phase::<TwinEndpoint>("paul-external", "Ready", "Serving").await;
    assert_eq!(proxy.unused_faults(), Vec::<String>::new(), "every injected fault reached the operator");
    assert!(
        operator.metrics.encode().contains("twin_reconcile_failures_total{controller="),
        "failures are counted"
    );
    operator.shutdown().await;
}

#[tokio::test]
async fn one_of_two_replicas_reconciles_and_the_other_takes_over() {
    let scene = Scene::new("replicas").await;
    scene.gpu_node("kwok-l4", 8).await;
    let first = scene.operator("replica-a").await;
    eventually("replica-a to lead", || async { first.is_leader().then_some(()) }).await;
    let second = scene.operator("replica-b").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!second.is_leader());
    assert_eq!(second.health.ready(), Ok("standing by"));
    let leader_gauge = |operator: &Operator| sample(&operator.metrics.encode(), "twin_leader");
    eventually("replica-a's twin_leader to be 1", || async {
        (leader_gauge(&first) == Some(1.0)).then_some(())
    })
    .await;
    assert_eq!(leader_gauge(&second), Some(0.0), "the stand-by does not lead");
    scene.apply_examples().await;
    scene.wait_for_phase::<TwinTrainingJob>("paul-v1", "WaitingForDataset", "WaitingForDataset").await;
    assert!(first.metrics.reconcile_count("twintrainingjob") > 0);
    assert_eq!(second.metrics.reconcile_count("twintrainingjob"), 0, "the stand-by must not reconcile");
    // The leader dies without releasing the Lease: the stand-by takes over once it expires.
    let died = Instant::now();
    first.abort();
    eventually("replica-b to lead", || async { second.is_leader().then_some(()) }).await;
    let takeover = died.elapsed();
    assert!(takeover <= Duration::from_secs(3 + 2), "takeover took {takeover:?} with a 3 s lease");
    eventually("replica-b's twin_leader to be 1", || async {
        (leader_gauge(&second) == Some(1.0)).then_some(())
    })
    .await;
    scene.publish_build("paul", "paul-build-1", "rev-2").await;
    scene.wait_for_phase::<TwinTrainingJob>("paul-v1", "Running", "Training").await;
    assert!(second.metrics.reconcile_count("twintrainingjob") > 0);
    let lease = lease_of(&scene).await;
    assert_eq!(lease.spec.as_ref().unwrap().holder_identity.as_deref(), Some("replica-b"));
    assert_eq!(lease.spec.unwrap().lease_transitions, Some(1));
    // A clean shutdown releases the Lease at once.
    second.shutdown().await;
    assert_eq!(lease_of(&scene).await.spec.unwrap().holder_identity, None);
}

/// A leader whose Lease another holder takes (a replica that judged it expired, or a person
/// with kubectl) stops reconciling at its next renewal and stands by; it does not take the
/// Lease back while the new holder's renewal is fresh.
#[tokio::test]
async fn a_leader_that_loses_its_lease_stops_reconciling() {
    let scene = Scene::new("lease-lost").await;
    let operator = scene.operator("replica-a").await;
    eventually("replica-a to lead", || async { operator.is_leader().then_some(()) }).await;
    let leases = Api::<Lease>::namespaced(scene.client.clone(), RELEASE_NAMESPACE);
    let mut lease = lease_of(&scene).await;
    let name = lease.metadata.name.clone().unwrap();
    let spec = lease.spec.get_or_insert_default();
    spec.holder_identity = Some("replica-z".into());
    spec.renew_time = Some(MicroTime(k8s_openapi::jiff::Timestamp::now()));
    spec.lease_duration_seconds = Some(60);
    leases.replace(&name, &PostParams::default(), &lease).await.unwrap();
    eventually("replica-a to stand by", || async { (!operator.is_leader()).then_some(()) }).await;
    eventually("replica-a's twin_leader to be 0", || async {
        (sample(&operator.metrics.encode(), "twin_leader") == Some(0.0)).then_some(())
    })
    .await;
    assert_eq!(operator.health.ready(), Ok("standing by"));
    let reconciled = operator.metrics.reconcile_count("twintrainingjob");
    scene.apply_examples().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        operator.metrics.reconcile_count("twintrainingjob"),
        reconciled,
        "a stand-by reconciles nothing"
    );
    assert!(!operator.is_leader());
    assert_eq!(lease_of(&scene).await.spec.unwrap().holder_identity.as_deref(), Some("replica-z"));
    operator.shutdown().await;
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
    let scene = Scene::new("metrics").await;
    let operator = scene.operator("replica-a").await;
    assert_eq!(http_get(operator.metrics_addr, "/healthz").await.0, 200);
    eventually("/readyz to pass", || async {
        (http_get(operator.metrics_addr, "/readyz").await.0 == 200).then_some(())
    })
    .await;
    scene.apply_examples().await;
    scene.wait_for_phase::<TwinEndpoint>("paul", "Pending", "WaitingForModel").await;
    // The controllers may still be at work on a busy machine (the engine, applied after the
    // endpoints, is often reconciled last): wait until every object is counted in its phase.
    let training_jobs = "twin_objects{kind=\"TwinTrainingJob\",phase=\"WaitingForDataset\"}";
    let dataset_reconciles = "twin_reconcile_duration_seconds_count{controller=\"twindataset\"}";
    let pending_endpoints = "twin_objects{kind=\"TwinEndpoint\",phase=\"Pending\"}";
    let unused_engines = "twin_objects{kind=\"TwinEngine\",phase=\"Unused\"}";
    let body = eventually("every object in its phase and a dataset reconcile to be counted", || async {
        let (code, body) = http_get(operator.metrics_addr, "/metrics").await;
        (code == 200
            && sample(&body, training_jobs) == Some(2.0)
            && sample(&body, pending_endpoints) == Some(3.0)
            && sample(&body, unused_engines) == Some(1.0)
            && sample(&body, dataset_reconciles).is_some_and(|n| n >= 1.0))
        .then_some(body)
    })
    .await;
    let value =
        |series: &str| sample(&body, series).unwrap_or_else(|| panic!("/metrics lacks {series}:\n{body}"));
    assert!(value("twin_reconciliations_total{controller=\"twintrainingjob\"}") >= 2.0);
    assert!(value("twin_reconcile_duration_seconds_count{controller=\"twindataset\"}") >= 1.0);
    // Counted in no other phase: paul and paula wait for paul-v1's model, paul-external for the
    // dataset; llama-8b holds no GPU while none of its endpoints has a model yet.
    let counted = |kind: &str| {
        body.lines().filter(|l| l.starts_with(&format!("twin_objects{{kind=\"{kind}\","))).count()
    };
    assert_eq!(
        (counted("TwinTrainingJob"), counted("TwinEndpoint"), counted("TwinEngine")),
        (1, 1, 1),
        "{body}"
    );
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
    let scene = Scene::new("unfilled").await;
    let proxy = scene.fault_proxy().await;
    proxy.fail_next(Some(Verb::List), Some("twindatasets"), 500, 10_000);
    let operator = scene.operator_through(&proxy, "replica-a").await;
    eventually("the replica to lead", || async { operator.is_leader().then_some(()) }).await;
    eventually("a TwinDataset list to have failed", || async {
        proxy.requests().iter().any(|r| r.verb == Verb::List && r.plural == "twindatasets").then_some(())
    })
    .await;
    tokio::time::timeout(Duration::from_secs(5), operator.shutdown())
        .await
        .expect("the replica stops within 5 s although a cache never filled");
    assert_eq!(lease_of(&scene).await.spec.unwrap().holder_identity, None, "the Lease is released");
}

#[tokio::test]
async fn sigterm_stops_the_operator_gracefully_and_releases_the_lease() {
    let scene = Scene::new("sigterm").await;
    let lease_name = format!("twin-operator-{}", scene.namespace);
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_twin"))
        .args(["operator", "--metrics-addr", "127.0.0.1:0", "--watch-namespace", &scene.namespace])
        .args(["--lease-namespace", RELEASE_NAMESPACE, "--lease-name", &lease_name])
        .args(["--identity", "process-a", "--lease-duration-seconds", "3"])
        .env("KUBECONFIG", &scene.plane.operator_kubeconfig)
        .env("TWIN_LOG_FORMAT", "json")
        // The SageMaker client is built at start; it must never ask the metadata address.
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    eventually("the process to take the Lease", || async {
        let lease = Api::<Lease>::namespaced(scene.client.clone(), RELEASE_NAMESPACE)
            .get_opt(&lease_name)
            .await
            .ok()??;
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
    let mut stderr = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).await.unwrap();
    assert!(status.success(), "exit status {status:?}: {stderr}");
    assert_eq!(
        lease_of(&scene).await.spec.unwrap().holder_identity,
        None,
        "the Lease is released on SIGTERM"
    );
    let first_line: Value = serde_json::from_str(stderr.lines().next().unwrap()).expect("JSON log lines");
    assert!(first_line.get("level").is_some() && first_line.get("timestamp").is_some(), "{first_line}");
    assert!(stderr.contains("released the leader Lease"), "{stderr}");
}

#[tokio::test]
async fn a_dataset_runs_a_build_job_whose_result_becomes_its_status() {
    let scene = Scene::new("build").await;
    let operator = scene.operator("replica-a").await;
    scene.apply_examples().await;
    scene.wait_for_phase::<TwinDataset>("paul", "Running", "Building").await;
    // The Job runs `twin dataset build` on the spec, locked down, with the sources mounted.
    let job = scene.get::<Job>("paul-build-1").await.expect("the build Job");
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
    let spec_map =
        scene.get::<k8s_openapi::api::core::v1::ConfigMap>("paul-spec").await.expect("the spec ConfigMap");
    let spec: Value = serde_json::from_str(spec_map["data"]["twindataset.json"].as_str().unwrap()).unwrap();
    assert_eq!(spec["spec"]["author"]["name"], "Paul Iusztin");
    // The example's schedule makes a CronJob running the same build.
    let cron = scene.get::<CronJob>("paul-refresh").await.expect("the refresh CronJob");
    assert_eq!(cron["spec"]["schedule"], "0 4 * * *");
    assert_eq!(
        cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["args"],
        container["args"]
    );

    // Success: the termination message becomes the status.
    let ready = scene.publish_build("paul", "paul-build-1", "rev-77").await;
    let status = &ready["status"];
    assert_eq!(status["revision"], "rev-77");
    assert_eq!(status["stats"]["chunks"], 80);
    assert_eq!(status["artifacts"]["root"], "s3://twins-bucket/twins/datasets/paul/rev-77");
    assert_eq!(
        status["sources"][1]["error"],
        "cannot clone https://git.example.com/course.git at main: HTTP 404"
    );
    assert!(ready_message(&ready).contains("sources that failed: course"));

    // A CronJob that looks like the dataset's (same labels) but is not controlled by it.
    let mut look_alike = cron.clone();
    look_alike["metadata"] = json!({"name": "paul-by-hand", "labels": cron["metadata"]["labels"]});
    look_alike.as_object_mut().unwrap().remove("status");
    scene
        .api::<CronJob>()
        .create(&PostParams::default(), &serde_json::from_value(look_alike).unwrap())
        .await
        .unwrap();

    // A spec change starts the next generation's Job; dropping the schedule drops the CronJob.
    scene
        .apply_example("twindataset.yaml", |dataset| {
            dataset["spec"]["chunking"]["maxTokens"] = json!(384);
            dataset["spec"].as_object_mut().unwrap().remove("schedule");
        })
        .await;
    scene.wait_for_phase::<TwinDataset>("paul", "Running", "Building").await;
    assert!(scene.get::<Job>("paul-build-2").await.is_some());
    scene.wait_gone::<CronJob>("paul-refresh").await;
    assert!(scene.get::<CronJob>("paul-by-hand").await.is_some(), "only the dataset's own children go");

    // Failure: the reason and message come from the termination message. The real Job
    // controller retries a failed build twice (backoffLimit 2), with its back-off between
    // tries; the dataset keeps Building until the Job has failed.
    let failure = BuildReport::Failed(FailedBuild {
        error: "no source yielded a usable document".into(),
        reason: "NoDocuments".into(),
        sources: vec![SourceStatus {
            name: "newsletter".into(),
            documents: 0,
            error: Some("HTTP 404 from https://decodingml.substack.com/feed".into()),
        }],
    })
    .to_termination_message();
    for attempt in 1..=3 {
        scene.end_job("paul-build-2", 1, &failure).await;
        if attempt < 3 {
            let dataset = scene.get::<TwinDataset>("paul").await.unwrap();
            assert_eq!(
                dataset["status"]["phase"], "Running",
                "attempt {attempt} of 3 failed, the Job retries"
            );
            // Its pod is Failed before the next one is created.
            eventually("the failed pod to be seen", || async {
                let pods = scene.pods("batch.kubernetes.io/job-name=paul-build-2").await;
                let failed = pods
                    .iter()
                    .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Failed"))
                    .count();
                (failed == attempt).then_some(())
            })
            .await;
        }
    }
    let failed = scene.wait_for_phase::<TwinDataset>("paul", "Failed", "NoDocuments").await;
    let message = ready_message(&failed);
    assert!(
        message.contains("no source yielded a usable document") && message.contains("HTTP 404"),
        "{message}"
    );
    // Nothing was created twice.
    let builds: Vec<Value> = scene
        .list::<Job>()
        .await
        .into_iter()
        .filter(|j| j["metadata"]["labels"]["app.kubernetes.io/component"] == "dataset-build")
        .collect();
    assert_eq!(
        builds.len(),
        2,
        "{:?}",
        builds.iter().map(|j| j["metadata"]["name"].clone()).collect::<Vec<_>>()
    );
    operator.shutdown().await;
}

fn scheduled_dataset(name: &str, schedule: &str) -> TwinDataset {
    serde_json::from_value(json!({"apiVersion": "llmtwin.dev/v1alpha1", "kind": "TwinDataset", "metadata": {"name": name},
        "spec": {"author": {"name": "Paul"}, "sources": [{"name": "blog", "feed": {"url": "https://paul.example.com/feed"}}],
                 "output": {"uri": "s3://twins-bucket/twins"}, "schedule": schedule}}))
    .unwrap()
}

/// The names of the Jobs building a dataset, found as the operator finds them: by the full name.
async fn build_jobs_of(scene: &Scene, dataset: &str) -> Vec<String> {
    let jobs = scene.list::<Job>().await.into_iter();
    let ours = jobs.filter(|job| job["metadata"]["annotations"]["llmtwin.dev/dataset"] == dataset);
    ours.map(|job| job["metadata"]["name"].as_str().unwrap().to_string()).collect()
}

#[tokio::test]
async fn datasets_with_long_names_get_their_own_children_and_wake_when_their_builds_end() {
    let scene = Scene::new("long").await;
    let operator = scene.operator("replica-a").await;
    // 70 characters, the first 60 shared: the instance label is hashed, names are cut.
    let prefix = "the-collected-newsletters-essays-and-talks-of-paul-iusztin-20";
    let names = [format!("{prefix}20-edition-a"), format!("{prefix}20-edition-b")];
    let datasets = scene.api::<TwinDataset>();
    for name in &names {
        datasets.create(&PostParams::default(), &scheduled_dataset(name, "@daily")).await.unwrap();
    }
    for name in &names {
        scene.wait_for_phase::<TwinDataset>(name, "Running", "Building").await;
    }
    let cron_jobs: Vec<Value> = scene.list::<CronJob>().await;
    let cron_names: Vec<&str> = cron_jobs.iter().map(|c| c["metadata"]["name"].as_str().unwrap()).collect();
    assert_eq!(cron_names.len(), 2, "each dataset has its own refresh CronJob: {cron_names:?}");
    assert!(cron_names[0] != cron_names[1] && cron_names.iter().all(|n| n.len() <= 52), "{cron_names:?}");
    // The generation's Job ends: the dataset whose name the label could not hold wakes.
    let first = build_jobs_of(&scene, &names[0]).await;
    assert_eq!(first.len(), 1);
    assert!(first[0].len() <= 63, "{}", first[0]);
    let ready = scene.publish_build(&names[0], &first[0], "rev-long-1").await;
    assert_eq!(ready["status"]["revision"], "rev-long-1");
    scene.wait_for_phase::<TwinDataset>(&names[1], "Running", "Building").await;
    // A refresh of the schedule run by hand (`kubectl create job --from=cronjob/...`, a Job the
    // CronJob controls) wakes its dataset too.
    let cron_job = cron_jobs
        .iter()
        .find(|c| {
            c["spec"]["jobTemplate"]["metadata"]["annotations"]["llmtwin.dev/dataset"] == names[1].as_str()
        })
        .unwrap();
    let cron_name = cron_job["metadata"]["name"].as_str().unwrap();
    scene.plane.run_kubectl(&[
        "create",
        "job",
        "refresh-by-hand",
        &format!("--from=cronjob/{cron_name}"),
        "-n",
        &scene.namespace,
    ]);
    scene.publish_build(&names[1], "refresh-by-hand", "rev-scheduled").await;
    assert_eq!(
        scene.status_of::<TwinDataset>(&names[0]).await["revision"],
        "rev-long-1",
        "the other dataset is untouched"
    );
    operator.shutdown().await;
}

#[tokio::test]
async fn a_child_the_api_server_refuses_shows_in_the_status_and_an_event_then_waits_for_a_fix() {
    let scene = Scene::new("refused").await;
    let operator = scene.operator("replica-a").await;
    // The schema accepts five fields; the API server's cron parser refuses minute 61.
    let datasets = scene.api::<TwinDataset>();
    datasets.create(&PostParams::default(), &scheduled_dataset("paul", "61 4 * * *")).await.unwrap();
    let failed = scene.wait_for_phase::<TwinDataset>("paul", "Failed", "ChildRejected").await;
    let message = ready_message(&failed);
    assert!(
        message.contains("applying CronJob paul-refresh")
            && message.contains("spec.schedule: Invalid value: \"61 4 * * *\"")
            && message.contains("above maximum (59)"),
        "{message}"
    );
    let event = eventually("a ChildRejected Event", || async {
        scene.list::<Event>().await.into_iter().find(|e| e["reason"] == "ChildRejected")
    })
    .await;
    assert_eq!(event["type"], "Warning");
    assert!(event["note"].as_str().unwrap().contains("CronJob paul-refresh"), "{event}");
    // It waits for a change rather than retrying what will fail the same way. The reconcile
    // that wrote the status is counted only once it ends, and its own status write wakes one
    // more: take the count once it has stood still for a second, then watch it for three.
    let mut settled = operator.metrics.reconcile_count("twindataset");
    // At most ten seconds: one that never stands still fails the assertion below.
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = operator.metrics.reconcile_count("twindataset");
        if now == settled {
            break;
        }
        settled = now;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        operator.metrics.reconcile_count("twindataset") <= settled + 1,
        "a refused child keeps reconciling"
    );
    // A fixed schedule goes through.
    let fixed = json!({"spec": {"schedule": "1 4 * * *"}});
    datasets.patch("paul", &PatchParams::default(), &Patch::Merge(&fixed)).await.unwrap();
    scene.wait_for_phase::<TwinDataset>("paul", "Running", "Building").await;
    assert!(scene.get::<CronJob>("paul-refresh").await.is_some());
    operator.shutdown().await;
}

#[tokio::test]
async fn a_sagemaker_training_job_holds_a_finalizer_until_its_cleanup_ran() {
    let scene = Scene::new("finalizer").await;
    let operator = scene.operator("replica-a").await;
    scene.apply_examples().await;
    let jobs = scene.api::<TwinTrainingJob>();
    eventually("the SageMaker job's finalizer", || async {
        let job = jobs.get("paul-v1-sagemaker").await.ok()?;
        (job.metadata.finalizers.as_deref() == Some(&["llmtwin.dev/sagemaker-training-job".to_string()][..]))
            .then_some(())
    })
    .await;
    scene
        .wait_for_phase::<TwinTrainingJob>("paul-v1-sagemaker", "WaitingForDataset", "WaitingForDataset")
        .await;
    // A job on the cluster's GPUs owns nothing outside the cluster: no finalizer.
    assert_eq!(jobs.get("paul-v1").await.unwrap().metadata.finalizers, None);
    // The API server keeps the object, marked for deletion, until the operator has cleaned up
    // and removed its finalizer.
    jobs.delete("paul-v1-sagemaker", &Default::default()).await.unwrap();
    scene.wait_gone::<TwinTrainingJob>("paul-v1-sagemaker").await;
    // Without an operator, the finalizer holds the object.
    scene.apply_example("twintrainingjob-sagemaker.yaml", |_| {}).await;
    eventually("the finalizer again", || async {
        let job = jobs.get("paul-v1-sagemaker").await.ok()?;
        job.metadata.finalizers.filter(|f| !f.is_empty()).map(|_| ())
    })
    .await;
    operator.shutdown().await;
    jobs.delete("paul-v1-sagemaker", &Default::default()).await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let held = jobs.get("paul-v1-sagemaker").await.expect("held by its finalizer");
    assert!(held.metadata.deletion_timestamp.is_some());
    // A new replica finishes the cleanup.
    let operator = scene.operator("replica-b").await;
    scene.wait_gone::<TwinTrainingJob>("paul-v1-sagemaker").await;
    operator.shutdown().await;
}
