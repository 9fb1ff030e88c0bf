//! The TwinEndpoint controller against the fake API server, for each engine kind: the children
//! it applies, Ready when the Deployments are available, Degraded or Pending with the reason
//! when a pod crash-loops, is OOM-killed or cannot be scheduled, children the spec drops
//! deleted, and a new adapter rolled out before the gateway moves to its dataset revision.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use twin_operator::api::{TwinDataset, TwinEndpoint, TwinTrainingJob};

use crate::operator::{NS, build_result, eventually, examples_with_a_dataset, wait_for_phase};
use crate::support::fake_apiserver::FakeApiServer;
use crate::support::repo;

fn child(server: &FakeApiServer, api_version: &str, kind: &str, name: &str) -> Option<Value> {
    server.get(api_version, kind, NS, name)
}

async fn wait_for_child(server: &FakeApiServer, api_version: &str, kind: &str, name: &str) -> Value {
    eventually(&format!("{kind} {name}"), Duration::from_secs(15), || async {
        child(server, api_version, kind, name)
    })
    .await
}

async fn wait_gone(server: &FakeApiServer, api_version: &str, kind: &str, name: &str) {
    eventually(&format!("{kind} {name} to be deleted"), Duration::from_secs(15), || async {
        child(server, api_version, kind, name).is_none().then_some(())
    })
    .await
}

fn args(deployment: &Value) -> Vec<String> {
    serde_json::from_value(deployment["spec"]["template"]["spec"]["containers"][0]["args"].clone()).unwrap()
}

fn env(deployment: &Value, name: &str) -> Option<String> {
    deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()?
        .iter()
        .find(|e| e["name"] == name)
        .and_then(|e| e["value"].as_str().map(String::from))
}

fn crash_looping(container: &str, last: Value) -> Value {
    json!({"phase": "Running", "containerStatuses": [{"name": container, "ready": false, "restartCount": 3,
        "image": "img", "imageID": "", "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s"}},
        "lastState": last}]})
}

async fn delete_pods(server: &FakeApiServer) {
    let pods = Api::<Pod>::namespaced(server.client(), NS);
    for pod in server.list("v1", "Pod") {
        let name = pod["metadata"]["name"].as_str().unwrap().to_string();
        if pod["metadata"]["labels"]["app.kubernetes.io/name"] == "twin-endpoint" {
            pods.delete(&name, &DeleteParams::default()).await.unwrap();
        }
    }
}

/// Edits a twin's spec as `kubectl apply` of its example file with one change.
async fn edit_example<K>(server: &FakeApiServer, file: &str, name: &str, change: impl FnOnce(&mut Value))
where
    K: kube::Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let mut edited: Value = serde_saphyr::from_str(&repo::read(file)).unwrap();
    change(&mut edited);
    Api::<K>::namespaced(server.client(), NS)
        .patch(name, &PatchParams::apply("kubectl"), &Patch::Apply(&edited))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_vllm_endpoint_deploys_reports_failing_pods_prunes_and_rolls_a_new_adapter() {
    let (server, operator) = examples_with_a_dataset("rev-1").await;
    wait_for_phase(&server, "TwinTrainingJob", "paul-v1", "Running", "Training").await;
    server
        .mark_job_succeeded(NS, "paul-v1-train-g1-rev1", r#"{"status":"Succeeded","vllmMaxLoraRank":32}"#)
        .unwrap();
    let endpoint = wait_for_phase(&server, "TwinEndpoint", "paul", "Deploying", "EngineRollingOut").await;
    assert_eq!(endpoint["status"]["url"], "http://paul.twins.svc:8080/v1");

    // The objects built: GPUs, the adapter's init container, LoRA flags, autoscaler, budgets,
    // monitors, each controlled by the endpoint.
    let engine = wait_for_child(&server, "apps/v1", "Deployment", "paul-engine").await;
    let adapter = "s3://twins-bucket/twins/models/paul-v1/g1-rev1/adapter";
    let pod = &engine["spec"]["template"]["spec"];
    assert_eq!(pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"], "1");
    assert_eq!(pod["initContainers"][0]["args"], json!(["fetch", adapter, "/adapters/paul"]));
    let engine_args = args(&engine);
    assert!(
        engine_args.windows(2).any(|w| w == ["--lora-modules", "paul=/adapters/paul"]),
        "{engine_args:?}"
    );
    assert!(engine_args.windows(2).any(|w| w == ["--max-lora-rank", "32"]), "{engine_args:?}");
    assert_eq!(engine["metadata"]["ownerReferences"][0]["kind"], "TwinEndpoint");
    let hpa = child(&server, "autoscaling/v2", "HorizontalPodAutoscaler", "paul-engine").unwrap();
    assert_eq!(hpa["spec"]["scaleTargetRef"]["name"], "paul-engine");
    assert_eq!(hpa["spec"]["metrics"][0]["pods"]["metric"]["name"], "vllm:num_requests_running");
    for budget in ["paul-engine", "paul"] {
        assert!(child(&server, "policy/v1", "PodDisruptionBudget", budget).is_some(), "{budget}");
    }
    for monitor in ["paul-engine", "paul"] {
        assert!(child(&server, "monitoring.coreos.com/v1", "ServiceMonitor", monitor).is_some(), "{monitor}");
    }
    let gateway = child(&server, "apps/v1", "Deployment", "paul").unwrap();
    assert_eq!(env(&gateway, "TWIN_SERVE_UPSTREAM").as_deref(), Some("http://paul-engine.twins.svc:8000/v1"));
    assert_eq!(
        env(&gateway, "TWIN_SERVE_DATASET").as_deref(),
        Some("s3://twins-bucket/twins/datasets/paul/rev-1")
    );

    // Ready once both Deployments are available.
    server.mark_deployment_available(NS, "paul-engine").unwrap();
    server.mark_deployment_available(NS, "paul").unwrap();
    let ready = wait_for_phase(&server, "TwinEndpoint", "paul", "Ready", "Serving").await;
    // Both are autoscaled: one replica each until their autoscalers say otherwise.
    assert_eq!(ready["status"]["replicas"], json!({"engine": "1/1", "gateway": "1/1"}));
    let gateway_hpa = child(&server, "autoscaling/v2", "HorizontalPodAutoscaler", "paul").unwrap();
    assert_eq!(
        (gateway_hpa["spec"]["minReplicas"].clone(), gateway_hpa["spec"]["maxReplicas"].clone()),
        (json!(2), json!(6))
    );
    assert_eq!(ready["status"]["model"]["adapterUri"], adapter);

    // A crash loop turns it Degraded at once, an OOM kill names the memory, no GPU node Pending.
    let last = json!({"terminated": {"exitCode": 1, "reason": "Error", "message": "CUDA error"}});
    server.start_deployment_pod(NS, "paul-engine", crash_looping("vllm", last)).unwrap();
    server
        .mark_deployment_unavailable(NS, "paul-engine", "MinimumReplicasUnavailable", "no replica")
        .unwrap();
    let degraded =
        wait_for_phase(&server, "TwinEndpoint", "paul", "Degraded", "EngineCrashLoopBackOff").await;
    let message = degraded["status"]["conditions"][0]["message"].as_str().unwrap();
    assert!(message.contains("CUDA error") && message.contains("engine 0/1 ready"), "{message}");
    delete_pods(&server).await;
    let oom = json!({"terminated": {"exitCode": 137, "reason": "OOMKilled"}});
    // The pod alone wakes the endpoint: its Deployment has not changed yet, and the reconciles
    // the steps above started are over.
    tokio::time::sleep(Duration::from_millis(500)).await;
    server.start_deployment_pod(NS, "paul", crash_looping("gateway", oom)).unwrap();
    wait_for_phase(&server, "TwinEndpoint", "paul", "Degraded", "GatewayOOMKilled").await;
    delete_pods(&server).await;
    server.mark_deployment_available(NS, "paul").unwrap();
    let unschedulable = json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False",
        "reason": "Unschedulable", "message": "0/2 nodes are available: 2 Insufficient nvidia.com/gpu."}]});
    server.start_deployment_pod(NS, "paul-engine", unschedulable).unwrap();
    server.mark_deployment_unavailable(NS, "paul-engine", "MinimumReplicasUnavailable", "pending").unwrap();
    let pending = wait_for_phase(&server, "TwinEndpoint", "paul", "Pending", "EngineUnschedulable").await;
    assert!(
        pending["status"]["conditions"][0]["message"]
            .as_str()
            .unwrap()
            .contains("Insufficient nvidia.com/gpu")
    );
    delete_pods(&server).await;
    server.mark_deployment_available(NS, "paul-engine").unwrap();
    wait_for_phase(&server, "TwinEndpoint", "paul", "Ready", "Serving").await;

    // KEDA instead of the autoscaler: a ScaledObject on vLLM's queue, the engine's HPA gone.
    edit_example::<TwinEndpoint>(&server, "manifests/examples/twinendpoint.yaml", "paul", |e| {
        e["spec"]["autoscaling"]["keda"] = json!({"serverAddress": "http://prometheus.monitoring.svc:9090"});
    })
    .await;
    let scaled = wait_for_child(&server, "keda.sh/v1alpha1", "ScaledObject", "paul-engine").await;
    assert_eq!(scaled["spec"]["scaleTargetRef"]["name"], "paul-engine");
    assert_eq!(scaled["spec"]["triggers"][0]["metadata"]["threshold"], "8");
    wait_gone(&server, "autoscaling/v2", "HorizontalPodAutoscaler", "paul-engine").await;

    // Children the spec no longer wants go: monitoring off, autoscaling off.
    edit_example::<TwinEndpoint>(&server, "manifests/examples/twinendpoint.yaml", "paul", |e| {
        e["spec"]["monitoring"]["serviceMonitor"] = json!(false);
        e["spec"].as_object_mut().unwrap().remove("autoscaling");
    })
    .await;
    wait_gone(&server, "monitoring.coreos.com/v1", "ServiceMonitor", "paul").await;
    wait_gone(&server, "monitoring.coreos.com/v1", "ServiceMonitor", "paul-engine").await;
    wait_gone(&server, "keda.sh/v1alpha1", "ScaledObject", "paul-engine").await;
    wait_gone(&server, "policy/v1", "PodDisruptionBudget", "paul-engine").await;
    assert!(
        child(&server, "policy/v1", "PodDisruptionBudget", "paul").is_some(),
        "two gateway replicas keep theirs"
    );
    server.mark_deployment_available(NS, "paul-engine").unwrap();
    wait_for_phase(&server, "TwinEndpoint", "paul", "Ready", "Serving").await;

    // A new dataset revision and a re-run training job: the engine rolls first (by surge, the
    // old pods serving meanwhile), then the gateway pins the adapter's revision.
    edit_example::<TwinDataset>(&server, "manifests/examples/twindataset.yaml", "paul", |d| {
        d["spec"]["author"]["name"] = json!("Paul I.");
    })
    .await;
    let build = eventually("the dataset's second build", Duration::from_secs(15), || async {
        child(&server, "batch/v1", "Job", "paul-build-2")
    })
    .await;
    server
        .mark_job_succeeded(NS, build["metadata"]["name"].as_str().unwrap(), &build_result("paul", "rev-2"))
        .unwrap();
    wait_for_phase(&server, "TwinDataset", "paul", "Ready", "RevisionPublished").await;
    edit_example::<TwinTrainingJob>(&server, "manifests/examples/twintrainingjob.yaml", "paul-v1", |j| {
        j["spec"]["sft"]["epochs"] = json!(4);
    })
    .await;
    let run = eventually("the second training run", Duration::from_secs(15), || async {
        child(&server, "batch/v1", "Job", "paul-v1-train-g2-rev2")
    })
    .await;
    server
        .mark_job_succeeded(NS, run["metadata"]["name"].as_str().unwrap(), r#"{"status":"Succeeded"}"#)
        .unwrap();
    let rolling = wait_for_phase(&server, "TwinEndpoint", "paul", "Deploying", "RollingOutAdapter").await;
    assert_eq!(
        rolling["status"]["model"]["adapterUri"], adapter,
        "the status names the adapter still served"
    );
    let engine = child(&server, "apps/v1", "Deployment", "paul-engine").unwrap();
    let new_adapter = "s3://twins-bucket/twins/models/paul-v1/g2-rev2/adapter";
    assert_eq!(engine["spec"]["template"]["metadata"]["annotations"]["llmtwin.dev/adapter"], new_adapter);
    assert_eq!(engine["spec"]["strategy"]["rollingUpdate"], json!({"maxSurge": 1, "maxUnavailable": 0}));
    let gateway = child(&server, "apps/v1", "Deployment", "paul").unwrap();
    assert_eq!(
        env(&gateway, "TWIN_SERVE_DATASET").as_deref(),
        Some("s3://twins-bucket/twins/datasets/paul/rev-1"),
        "the gateway waits for the engine"
    );
    assert_eq!(
        env(&gateway, "TWIN_SERVE_UPSTREAM_ADAPTER").as_deref(),
        Some(adapter),
        "answers name the adapter still served"
    );
    server.mark_deployment_available(NS, "paul-engine").unwrap();
    let moved = eventually("the gateway to pin rev-2", Duration::from_secs(15), || async {
        let gateway = child(&server, "apps/v1", "Deployment", "paul")?;
        (env(&gateway, "TWIN_SERVE_DATASET")? == "s3://twins-bucket/twins/datasets/paul/rev-2")
            .then_some(gateway)
    })
    .await;
    assert_eq!(moved["metadata"]["annotations"]["llmtwin.dev/dataset-revision"], "rev-2");
    assert_eq!(env(&moved, "TWIN_SERVE_UPSTREAM_ADAPTER").as_deref(), Some(new_adapter));
    server.mark_deployment_available(NS, "paul").unwrap();
    let ready = wait_for_phase(&server, "TwinEndpoint", "paul", "Ready", "Serving").await;
    assert_eq!(ready["status"]["model"]["adapterUri"], new_adapter);
    assert_eq!(ready["status"]["model"]["datasetRevision"], "rev-2");
    operator.shutdown().await;
}

#[tokio::test]
async fn external_and_embedded_endpoints_run_only_the_gateway() {
    let (server, operator) = examples_with_a_dataset("rev-1").await;
    wait_for_phase(&server, "TwinEndpoint", "paul-external", "Deploying", "GatewayRollingOut").await;
    let gateway = child(&server, "apps/v1", "Deployment", "paul-external").unwrap();
    assert_eq!(
        env(&gateway, "TWIN_SERVE_UPSTREAM").as_deref(),
        Some("http://vllm.inference.svc.cluster.local:8000/v1")
    );
    assert!(child(&server, "apps/v1", "Deployment", "paul-external-engine").is_none());
    assert!(child(&server, "policy/v1", "PodDisruptionBudget", "paul-external").is_none(), "one replica");
    server.mark_deployment_available(NS, "paul-external").unwrap();
    wait_for_phase(&server, "TwinEndpoint", "paul-external", "Ready", "Serving").await;
    // Serving and unchanged, it is not reconciled again and again.
    let settled = operator.metrics.reconcile_count("twinendpoint");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let later = operator.metrics.reconcile_count("twinendpoint");
    assert!(later <= settled + 1, "endpoints keep reconciling: {settled} then {later}");
    // More replicas bring a budget; back to one removes it.
    edit_example::<TwinEndpoint>(
        &server,
        "manifests/examples/twinendpoint-external.yaml",
        "paul-external",
        |e| {
            e["spec"]["gateway"]["replicas"] = json!(3);
        },
    )
    .await;
    wait_for_child(&server, "policy/v1", "PodDisruptionBudget", "paul-external").await;
    edit_example::<TwinEndpoint>(
        &server,
        "manifests/examples/twinendpoint-external.yaml",
        "paul-external",
        |_| {},
    )
    .await;
    wait_gone(&server, "policy/v1", "PodDisruptionBudget", "paul-external").await;

    let embedded: TwinEndpoint = serde_json::from_value(json!({
        "apiVersion": "llmtwin.dev/v1alpha1", "kind": "TwinEndpoint", "metadata": {"name": "paul-small"},
        "spec": {"model": {"baseModel": {"uri": "pvc://models/SmolLM2-135M-Instruct.Q4_1.gguf"},
                           "adapterUri": "pvc://twins-data/models/paul-v1/g1-r1/adapter"},
                 "engine": {"kind": "embedded"}, "gateway": {"replicas": 1}}
    }))
    .unwrap();
    Api::<TwinEndpoint>::namespaced(server.client(), NS)
        .create(&PostParams::default(), &embedded)
        .await
        .unwrap();
    wait_for_phase(&server, "TwinEndpoint", "paul-small", "Deploying", "GatewayRollingOut").await;
    let gateway = child(&server, "apps/v1", "Deployment", "paul-small").unwrap();
    assert_eq!(env(&gateway, "TWIN_SERVE_ENGINE").as_deref(), Some("embedded"));
    assert_eq!(env(&gateway, "TWIN_SERVE_ADAPTER").as_deref(), Some("/adapters/paul-small/adapter.gguf"));
    let unschedulable = json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False",
        "reason": "Unschedulable", "message": "0/2 nodes are available: 2 Insufficient cpu."}]});
    server.start_deployment_pod(NS, "paul-small", unschedulable).unwrap();
    server.mark_deployment_unavailable(NS, "paul-small", "MinimumReplicasUnavailable", "pending").unwrap();
    wait_for_phase(&server, "TwinEndpoint", "paul-small", "Pending", "GatewayUnschedulable").await;
    delete_pods(&server).await;
    server.mark_deployment_available(NS, "paul-small").unwrap();
    wait_for_phase(&server, "TwinEndpoint", "paul-small", "Ready", "Serving").await;
    operator.shutdown().await;
}
