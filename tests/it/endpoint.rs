//! The TwinEndpoint controller on the real control plane, for each engine kind: the children it
//! applies, Ready once the real Deployment controller has rolled them out on kwok's nodes,
//! Degraded or Pending with the reason when a pod crash-loops, is OOM-killed or cannot be
//! scheduled, children the spec drops deleted, and a new adapter rolled out (by surge, the old
//! pod serving) before the gateway moves to its dataset revision.

use std::sync::{Arc, Mutex};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::ResourceExt;
use kube::api::{DeleteParams, ListParams, WatchEvent, WatchParams};
use kube::core::DynamicObject;
use serde_json::{Value, json};
use twin_operator::api::{TwinEndpoint, TwinTrainingJob};

use crate::operator::{examples_with_a_dataset, ready_message};
use crate::support::control_plane::end_pod;
use crate::support::scene::{Scene, eventually};

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

/// A child of another project's kind (ServiceMonitor, ScaledObject), if it exists.
async fn custom_child(scene: &Scene, group: &str, version: &str, kind: &str, name: &str) -> Option<Value> {
    let resource = kube::api::ApiResource::from_gvk(&kube::api::GroupVersionKind::gvk(group, version, kind));
    let api = kube::Api::<DynamicObject>::namespaced_with(scene.client.clone(), &scene.namespace, &resource);
    api.get_opt(name).await.unwrap().map(|o| serde_json::to_value(o).unwrap())
}

/// The one live pod of an endpoint's part (`engine` or `gateway`) of `endpoint`.
async fn pod_of(scene: &Scene, endpoint: &str, part: &str) -> String {
    let selector = format!("app.kubernetes.io/instance={endpoint},app.kubernetes.io/component={part}");
    eventually(&format!("one {part} pod of {endpoint}"), || async {
        let pods = scene.pods(&selector).await;
        (pods.len() == 1).then(|| pods[0].name_any())
    })
    .await
}

async fn delete_pod(scene: &Scene, pod: &str) {
    scene.api::<Pod>().delete(pod, &DeleteParams::default()).await.unwrap();
}

/// Every version of the namespace's Deployments and of one endpoint, in the order the API
/// server wrote them, from now on.
fn record_history(scene: &Scene) -> Arc<Mutex<Vec<Value>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    for kind in ["Deployment", "TwinEndpoint"] {
        let seen = seen.clone();
        let client = scene.client.clone();
        let namespace = scene.namespace.clone();
        tokio::spawn(async move {
            let stream = match kind {
                "Deployment" => watch_values(kube::Api::<Deployment>::namespaced(client, &namespace)).await,
                _ => watch_values(kube::Api::<TwinEndpoint>::namespaced(client, &namespace)).await,
            };
            futures::pin_mut!(stream);
            while let Some(object) = stream.next().await {
                seen.lock().unwrap().push(object);
            }
        });
    }
    seen
}

async fn watch_values<K>(api: kube::Api<K>) -> futures::stream::BoxStream<'static, Value>
where
    K: kube::Resource
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + serde::Serialize
        + Send
        + 'static,
{
    let version = api.list(&ListParams::default()).await.unwrap().metadata.resource_version.unwrap();
    let events = api.watch(&WatchParams::default().timeout(290), &version).await.unwrap();
    events
        .filter_map(|event| async move {
            match event.ok()? {
                WatchEvent::Added(o) | WatchEvent::Modified(o) => Some(serde_json::to_value(o).unwrap()),
                _ => None,
            }
        })
        .boxed()
}

/// One line per recorded version: what the endpoint said, or where a Deployment stood.
fn summary(history: &[Value]) -> Vec<String> {
    history
        .iter()
        .map(|o| {
            let (metadata, status) = (&o["metadata"], &o["status"]);
            if o["kind"] == "TwinEndpoint" {
                let ready = &status["conditions"][0];
                format!("{} {}: {} {} {}", metadata["resourceVersion"], metadata["name"], ready["reason"], status["model"]["adapterUri"], ready["message"])
            } else {
                format!(
                    "{} Deployment {} gen {} observed {} updated {} available {} replicas {} adapter {} dataset {:?}",
                    metadata["resourceVersion"], metadata["name"], metadata["generation"], status["observedGeneration"],
                    status["updatedReplicas"], status["availableReplicas"], status["replicas"],
                    o["spec"]["template"]["metadata"]["annotations"]["llmtwin.dev/adapter"], env(o, "TWIN_SERVE_DATASET")
                )
            }
        })
        .collect()
}

#[tokio::test]
async fn a_vllm_endpoint_deploys_reports_failing_pods_prunes_and_rolls_a_new_adapter() {
    let (scene, operator) = examples_with_a_dataset("endpoint-vllm", "rev-1").await;
    let gpu_node = format!("kwok-l4-{}", scene.namespace);
    scene.wait_for_phase::<TwinTrainingJob>("paul-v1", "Running", "Training").await;
    scene.end_job("paul-v1-train-g1-rev1", 0, r#"{"status":"Succeeded","vllmMaxLoraRank":32}"#).await;

    // The objects built: GPUs, the adapter's init container, LoRA flags, autoscaler, budgets,
    // monitors, each controlled by the endpoint.
    let engine = scene.wait_for::<Deployment>("paul-engine").await;
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
    let hpa = scene.wait_for::<HorizontalPodAutoscaler>("paul-engine").await;
    assert_eq!(hpa["spec"]["scaleTargetRef"]["name"], "paul-engine");
    assert_eq!(hpa["spec"]["metrics"][0]["pods"]["metric"]["name"], "vllm:num_requests_running");
    for budget in ["paul-engine", "paul"] {
        scene.wait_for::<PodDisruptionBudget>(budget).await;
    }
    for monitor in ["paul-engine", "paul"] {
        eventually(&format!("ServiceMonitor {monitor}"), || {
            custom_child(&scene, "monitoring.coreos.com", "v1", "ServiceMonitor", monitor)
        })
        .await;
    }
    let gateway = scene.wait_for::<Deployment>("paul").await;
    let upstream = format!("http://paul-engine.{}.svc:8000/v1", scene.namespace);
    assert_eq!(env(&gateway, "TWIN_SERVE_UPSTREAM"), Some(upstream));
    assert_eq!(
        env(&gateway, "TWIN_SERVE_DATASET").as_deref(),
        Some("s3://twins-bucket/twins/datasets/paul/rev-1")
    );

    // Ready once the real controllers have rolled both Deployments out on kwok's nodes, the
    // engine on the scene's GPU node.
    let ready = scene.wait_for_phase::<TwinEndpoint>("paul", "Ready", "Serving").await;
    assert_eq!(ready["status"]["url"], format!("http://paul.{}.svc:8080/v1", scene.namespace));
    // Both are autoscaled: one replica each until their autoscalers (no HPA controller runs
    // here) say otherwise.
    assert_eq!(ready["status"]["replicas"], json!({"engine": "1/1", "gateway": "1/1"}));
    let gateway_hpa = scene.get::<HorizontalPodAutoscaler>("paul").await.unwrap();
    assert_eq!(
        (gateway_hpa["spec"]["minReplicas"].clone(), gateway_hpa["spec"]["maxReplicas"].clone()),
        (json!(2), json!(6))
    );
    assert_eq!(ready["status"]["model"]["adapterUri"], adapter);
    let engine_pod = pod_of(&scene, "paul", "engine").await;
    let placed = scene.api::<Pod>().get(&engine_pod).await.unwrap();
    assert_eq!(placed.spec.unwrap().node_name.as_deref(), Some(gpu_node.as_str()));

    // A crash loop turns it Degraded, with the container's last words and the counts.
    end_pod(
        &scene.client,
        &scene.namespace,
        &engine_pod,
        1,
        None,
        "RuntimeError: CUDA error: no kernel image is available",
    )
    .await;
    let degraded = eventually("Degraded with the crash and the counts", || async {
        let endpoint = scene.get::<TwinEndpoint>("paul").await?;
        let message = ready_message(&endpoint);
        (endpoint["status"]["conditions"][0]["reason"] == "EngineCrashLoopBackOff"
            && message.contains("engine 0/1 ready"))
        .then_some(endpoint)
    })
    .await;
    assert_eq!(degraded["status"]["phase"], "Degraded");
    assert!(ready_message(&degraded).contains("no kernel image"), "{degraded}");
    // A fresh engine pod runs; an OOM-killed gateway names the memory.
    delete_pod(&scene, &engine_pod).await;
    let gateway_pod = pod_of(&scene, "paul", "gateway").await;
    end_pod(&scene.client, &scene.namespace, &gateway_pod, 137, Some("OOMKilled"), "").await;
    scene.wait_for_phase::<TwinEndpoint>("paul", "Degraded", "GatewayOOMKilled").await;
    delete_pod(&scene, &gateway_pod).await;
    scene.wait_for_phase::<TwinEndpoint>("paul", "Ready", "Serving").await;
    // No GPU node to place a new engine pod on: Pending with the scheduler's words.
    scene.cordon(&gpu_node, true).await;
    delete_pod(&scene, &pod_of(&scene, "paul", "engine").await).await;
    let pending = scene.wait_for_phase::<TwinEndpoint>("paul", "Pending", "EngineUnschedulable").await;
    let message = ready_message(&pending);
    assert!(message.contains("nodes are available") && message.contains("unschedulable"), "{message}");
    scene.cordon(&gpu_node, false).await;
    scene.wait_for_phase::<TwinEndpoint>("paul", "Ready", "Serving").await;

    // KEDA instead of the autoscaler: a ScaledObject on vLLM's queue, the engine's HPA gone.
    scene
        .apply_example("twinendpoint.yaml", |e| {
            e["spec"]["engine"]["modelCache"] = json!({"sizeLimit": "20Gi"});
            e["spec"]["autoscaling"]["keda"] =
                json!({"serverAddress": "http://prometheus.monitoring.svc:9090"});
        })
        .await;
    let scaled = eventually("the ScaledObject", || {
        custom_child(&scene, "keda.sh", "v1alpha1", "ScaledObject", "paul-engine")
    })
    .await;
    assert_eq!(scaled["spec"]["scaleTargetRef"]["name"], "paul-engine");
    assert_eq!(scaled["spec"]["triggers"][0]["metadata"]["threshold"], "8");
    scene.wait_gone::<HorizontalPodAutoscaler>("paul-engine").await;

    // Children the spec no longer wants go: monitoring off, autoscaling off (removed from the
    // YAML and applied server-side: the real API server drops the block).
    scene
        .apply_example("twinendpoint.yaml", |e| {
            e["spec"]["engine"]["modelCache"] = json!({"sizeLimit": "20Gi"});
            e["spec"]["monitoring"]["serviceMonitor"] = json!(false);
            e["spec"].as_object_mut().unwrap().remove("autoscaling");
        })
        .await;
    for (group, version, kind, name) in [
        ("monitoring.coreos.com", "v1", "ServiceMonitor", "paul"),
        ("monitoring.coreos.com", "v1", "ServiceMonitor", "paul-engine"),
        ("keda.sh", "v1alpha1", "ScaledObject", "paul-engine"),
    ] {
        eventually(&format!("{kind} {name} to be deleted"), || async {
            custom_child(&scene, group, version, kind, name).await.is_none().then_some(())
        })
        .await;
    }
    scene.wait_gone::<PodDisruptionBudget>("paul-engine").await;
    assert!(scene.get::<PodDisruptionBudget>("paul").await.is_some(), "two gateway replicas keep theirs");
    scene.wait_for_phase::<TwinEndpoint>("paul", "Ready", "Serving").await;

    // Retrieval pinned to the adapter's revision: a new dataset revision and a re-run training
    // job, and the engine rolls first (by surge, the old pod serving meanwhile), then the
    // gateway moves to the new adapter's revision.
    scene
        .apply_example("twinendpoint.yaml", |e| {
            e["spec"]["engine"]["modelCache"] = json!({"sizeLimit": "20Gi"});
            e["spec"]["monitoring"]["serviceMonitor"] = json!(false);
            e["spec"].as_object_mut().unwrap().remove("autoscaling");
            e["spec"]["gateway"]["rag"]["revision"] = json!("adapter");
        })
        .await;
    scene.apply_example("twindataset.yaml", |d| d["spec"]["author"]["name"] = json!("Paul I.")).await;
    scene.publish_build("paul", "paul-build-2", "rev-2").await;
    let history = record_history(&scene);
    // Its training job trains again: the endpoint goes on serving the last good adapter.
    scene.apply_example("twintrainingjob.yaml", |j| j["spec"]["sft"]["epochs"] = json!(4)).await;
    scene.wait_for_phase::<TwinTrainingJob>("paul-v1", "Running", "Training").await;
    scene.end_job("paul-v1-train-g2-rev2", 0, r#"{"status":"Succeeded"}"#).await;
    let new_adapter = "s3://twins-bucket/twins/models/paul-v1/g2-rev2/adapter";
    let ready = eventually("Ready with the new adapter", || async {
        let endpoint = scene.get::<TwinEndpoint>("paul").await?;
        let serving = crate::support::wait::has_phase(&endpoint, "Ready", "Serving")
            && endpoint["status"]["model"]["adapterUri"] == new_adapter;
        serving.then_some(endpoint)
    })
    .await;
    assert_eq!(ready["status"]["model"]["datasetRevision"], "rev-2");
    let history = history.lock().unwrap().clone();
    let endpoint_versions: Vec<&Value> =
        history.iter().filter(|o| o["kind"] == "TwinEndpoint" && o["metadata"]["name"] == "paul").collect();
    assert!(
        endpoint_versions
            .iter()
            .all(|o| o["status"]["phase"] == "Ready" || o["status"]["phase"] == "Deploying"),
        "the endpoint stopped serving while its job retrained: {:#?}",
        summary(&history)
    );
    let rolling = history
        .iter()
        .find(|o| {
            o["kind"] == "TwinEndpoint"
                && o["metadata"]["name"] == "paul"
                && o["status"]["conditions"][0]["reason"] == "RollingOutAdapter"
        })
        .unwrap_or_else(|| panic!("no RollingOutAdapter status among {:#?}", summary(&history)));
    assert_eq!(
        rolling["status"]["model"]["adapterUri"], adapter,
        "the status names the adapter still served"
    );
    // In the order the API server wrote them: the engine's new template, its rollout done,
    // then the gateway's move to rev-2 (with the new adapter's name).
    let deployments: Vec<&Value> = history.iter().filter(|o| o["kind"] == "Deployment").collect();
    let position = |what: &str, test: &dyn Fn(&Value) -> bool| {
        deployments.iter().position(|d| test(d)).unwrap_or_else(|| panic!("never saw {what}"))
    };
    let named = |d: &Value, name: &str| d["metadata"]["name"] == name;
    let new_engine = |d: &Value| {
        named(d, "paul-engine")
            && d["spec"]["template"]["metadata"]["annotations"]["llmtwin.dev/adapter"] == new_adapter
    };
    let engine_template = position("the engine's new template", &new_engine);
    let surge = &deployments[engine_template]["spec"]["strategy"]["rollingUpdate"];
    assert_eq!(*surge, json!({"maxSurge": 1, "maxUnavailable": 0}));
    let engine_rolled = position("the engine rolled out", &|d| {
        let status = &d["status"];
        new_engine(d)
            && status["observedGeneration"] == d["metadata"]["generation"]
            && status["updatedReplicas"] == 1
            && status["availableReplicas"] == 1
            && status["replicas"] == 1
    });
    let gateway_moved = position("the gateway on rev-2", &|d| {
        named(d, "paul")
            && env(d, "TWIN_SERVE_DATASET").as_deref() == Some("s3://twins-bucket/twins/datasets/paul/rev-2")
    });
    assert!(engine_template < engine_rolled && engine_rolled < gateway_moved, "{:#?}", summary(&history));
    let moved = deployments[gateway_moved];
    assert_eq!(moved["metadata"]["annotations"]["llmtwin.dev/dataset-revision"], "rev-2");
    assert_eq!(env(moved, "TWIN_SERVE_UPSTREAM_ADAPTER").as_deref(), Some(new_adapter));

    // Served by an engine of the user's own instead: the engine's Deployment and Service go.
    let external = "http://vllm.inference.svc.cluster.local:8000/v1";
    scene
        .apply_example("twinendpoint.yaml", |e| {
            e["spec"]["engine"] = json!({"kind": "external", "url": external});
            e["spec"]["monitoring"]["serviceMonitor"] = json!(false);
            e["spec"].as_object_mut().unwrap().remove("autoscaling");
        })
        .await;
    scene.wait_gone::<Deployment>("paul-engine").await;
    scene.wait_gone::<Service>("paul-engine").await;
    eventually("the gateway to call the external engine", || async {
        let gateway = scene.get::<Deployment>("paul").await?;
        (env(&gateway, "TWIN_SERVE_UPSTREAM")? == external).then_some(())
    })
    .await;
    operator.shutdown().await;
}

#[tokio::test]
async fn external_and_embedded_endpoints_run_only_the_gateway() {
    let (scene, operator) = examples_with_a_dataset("endpoint-gateway", "rev-1").await;
    scene.wait_for_phase::<TwinEndpoint>("paul-external", "Ready", "Serving").await;
    let gateway = scene.get::<Deployment>("paul-external").await.unwrap();
    assert_eq!(
        env(&gateway, "TWIN_SERVE_UPSTREAM").as_deref(),
        Some("http://vllm.inference.svc.cluster.local:8000/v1")
    );
    assert!(scene.get::<Deployment>("paul-external-engine").await.is_none());
    assert!(scene.get::<PodDisruptionBudget>("paul-external").await.is_none(), "one replica");
    // Serving and unchanged, it is not reconciled again and again.
    let settled = operator.metrics.reconcile_count("twinendpoint");
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let later = operator.metrics.reconcile_count("twinendpoint");
    assert!(later <= settled + 1, "endpoints keep reconciling: {settled} then {later}");
    // More replicas bring a budget; back to one removes it.
    scene.apply_example("twinendpoint-external.yaml", |e| e["spec"]["gateway"]["replicas"] = json!(3)).await;
    scene.wait_for::<PodDisruptionBudget>("paul-external").await;
    scene.apply_example("twinendpoint-external.yaml", |_| {}).await;
    scene.wait_gone::<PodDisruptionBudget>("paul-external").await;

    // An embedded engine loading its model and adapter from volumes: Pending with the
    // scheduler's words until the claims exist, bound by the real volume binder.
    let embedded = json!({
        "apiVersion": "llmtwin.dev/v1alpha1", "kind": "TwinEndpoint",
        "metadata": {"name": "paul-small", "namespace": scene.namespace},
        "spec": {"model": {"baseModel": {"uri": "pvc://models/SmolLM2-135M-Instruct.Q4_1.gguf"},
                           "adapterUri": "pvc://twins-data/models/paul-v1/g1-r1/adapter"},
                 "engine": {"kind": "embedded"}, "gateway": {"replicas": 1}}
    });
    scene.apply(&embedded).await;
    let pending = scene.wait_for_phase::<TwinEndpoint>("paul-small", "Pending", "GatewayUnschedulable").await;
    assert!(ready_message(&pending).contains("persistentvolumeclaim \"models\" not found"), "{pending}");
    let gateway = scene.get::<Deployment>("paul-small").await.unwrap();
    assert_eq!(env(&gateway, "TWIN_SERVE_ENGINE").as_deref(), Some("embedded"));
    assert_eq!(env(&gateway, "TWIN_SERVE_ADAPTER").as_deref(), Some("/adapters/paul-small/adapter.gguf"));
    for claim in ["models", "twins-data"] {
        scene.volume(claim).await;
    }
    scene.wait_for_phase::<TwinEndpoint>("paul-small", "Ready", "Serving").await;
    operator.shutdown().await;
}

/// The adapter of run `run` of the example job.
fn adapter_of(run: &str) -> String {
    format!("s3://twins-bucket/twins/models/paul-v1/{run}/adapter")
}

/// The example TwinTrainingJob with `gate` as its evaluation gate and `epochs` (a spec change:
/// a new run).
async fn gate_and_retrain(scene: &Scene, gate: &Value, epochs: u32) {
    scene
        .apply_example("twintrainingjob.yaml", |job| {
            job["spec"]["evaluation"] = json!({"gate": gate});
            job["spec"]["sft"]["epochs"] = json!(epochs);
        })
        .await;
}

/// The endpoint's condition of `type_`.
fn condition<'a>(endpoint: &'a Value, type_: &str) -> Option<&'a Value> {
    endpoint["status"]["conditions"].as_array()?.iter().find(|c| c["type"] == type_)
}

#[tokio::test]
async fn an_endpoint_serves_its_jobs_promoted_adapter_while_later_runs_train_fail_or_fail_their_gate() {
    let (scene, operator) = examples_with_a_dataset("promotion", "rev-1").await;
    scene.wait_for_phase::<TwinTrainingJob>("paul-v1", "Running", "Training").await;
    let passing = r#"{"status":"Succeeded","vllmMaxLoraRank":32,"evaluationNllReduction":0.091,"evaluationAuthorSpecificNllReduction":0.032,"evaluationWinRate":0.75}"#;
    scene.end_job("paul-v1-train-g1-rev1", 0, passing).await;
    let first = adapter_of("g1-rev1");
    let promoted = scene.wait_for_phase::<TwinTrainingJob>("paul-v1", "Succeeded", "AdapterPublished").await;
    assert_eq!(promoted["status"]["model"]["run"], "g1-rev1");
    assert_eq!(promoted["status"]["model"]["datasetRevision"], "rev-1");
    assert_eq!(
        promoted["status"]["evaluation"],
        json!({"run": "g1-rev1", "adapterUri": first, "nllReduction": 0.091, "authorSpecificNllReduction": 0.032,
               "winRate": 0.75, "passed": true,
               "metricsUri": "s3://twins-bucket/twins/models/paul-v1/g1-rev1/metrics.json"})
    );
    let ready = scene.wait_for_phase::<TwinEndpoint>("paul", "Ready", "Serving").await;
    assert_eq!(ready["status"]["model"]["adapterUri"], first);
    assert!(condition(&ready, "PromotionHeld").is_none(), "a job without a gate holds nothing back");
    let history = record_history(&scene);

    // A gate, and a new run under it: the job keeps its promoted model while it trains.
    let gate = json!({"minimums": {"authorSpecificNllReduction": 0.01}, "mustBeat": "serving"});
    gate_and_retrain(&scene, &gate, 4).await;
    let training = scene.wait_for_phase::<TwinTrainingJob>("paul-v1", "Running", "Training").await;
    assert_eq!(training["status"]["run"], "g2-rev1");
    assert_eq!(
        training["status"]["model"]["adapterUri"], first,
        "the promoted model stays while a run trains"
    );
    assert!(training["status"].get("evaluation").is_none(), "no figure of a run still training");
    // The run must beat the adapter served, which its trainer is given to measure.
    let config = scene.get::<k8s_openapi::api::core::v1::ConfigMap>("paul-v1-train-g2-rev1").await.unwrap();
    let config: Value = serde_json::from_str(config["data"]["config.json"].as_str().unwrap()).unwrap();
    assert_eq!(config["evaluation"]["servingAdapterUri"], first);
    assert_eq!(training["status"]["mustBeatAdapterUri"], first);

    // Meanwhile the engine crash-loops: Degraded, with the adapter it serves still named.
    let engine_pod = pod_of(&scene, "paul", "engine").await;
    end_pod(&scene.client, &scene.namespace, &engine_pod, 1, None, "RuntimeError: CUDA error").await;
    let degraded = scene.wait_for_phase::<TwinEndpoint>("paul", "Degraded", "EngineCrashLoopBackOff").await;
    assert_eq!(degraded["status"]["model"]["adapterUri"], first);
    delete_pod(&scene, &engine_pod).await;
    scene.wait_for_phase::<TwinEndpoint>("paul", "Ready", "Serving").await;

    // The run fails: the job says so, and its promoted model stays served.
    let failure = r#"{"status":"Failed","reason":"OutOfMemory","message":"SFT ran out of GPU memory"}"#;
    scene.end_job("paul-v1-train-g2-rev1", 1, failure).await;
    let failed = scene.wait_for_phase::<TwinTrainingJob>("paul-v1", "Failed", "OutOfMemory").await;
    assert_eq!(failed["status"]["model"]["adapterUri"], first);
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let after_failure = scene.wait_for_phase::<TwinEndpoint>("paul", "Ready", "Serving").await;
    assert_eq!(after_failure["status"]["model"]["adapterUri"], first);
    // ... and a crash loop after the failure is reported too.
    let engine_pod = pod_of(&scene, "paul", "engine").await;
    end_pod(&scene.client, &scene.namespace, &engine_pod, 1, None, "RuntimeError: CUDA error").await;
    scene.wait_for_phase::<TwinEndpoint>("paul", "Degraded", "EngineCrashLoopBackOff").await;
    delete_pod(&scene, &engine_pod).await;
    scene.wait_for_phase::<TwinEndpoint>("paul", "Ready", "Serving").await;

    // A run that trains but falls short of its gate is Rejected; the endpoint keeps serving the
    // promoted adapter and says which run was held back and why, with an Event.
    gate_and_retrain(&scene, &gate, 5).await;
    scene.wait_for_phase::<TwinTrainingJob>("paul-v1", "Running", "Training").await;
    let short = r#"{"status":"Succeeded","vllmMaxLoraRank":32,"evaluationNllReduction":0.05,"evaluationAuthorSpecificNllReduction":0.002,"evaluationServingNllReduction":0.01}"#;
    scene.end_job("paul-v1-train-g3-rev1", 0, short).await;
    let rejected = scene.wait_for_phase::<TwinTrainingJob>("paul-v1", "Rejected", "GateFailed").await;
    let status = &rejected["status"];
    assert_eq!(status["model"]["adapterUri"], first, "a rejected run is not promoted");
    assert_eq!(status["evaluation"]["passed"], false);
    assert_eq!(
        status["evaluation"]["shortfalls"],
        json!(["authorSpecificNllReduction +0.002 < minimum +0.010"])
    );
    assert_eq!(status["evaluation"]["servingNllReduction"], 0.01);
    let message = ready_message(&rejected);
    assert!(
        message.contains(&format!("the promoted adapter {first} (run g1-rev1) stays served")),
        "{message}"
    );
    let held = eventually("PromotionHeld on the endpoint", || async {
        let endpoint = scene.get::<TwinEndpoint>("paul").await?;
        (condition(&endpoint, "PromotionHeld")?["status"] == "True").then_some(endpoint)
    })
    .await;
    assert_eq!(held["status"]["phase"], "Ready");
    assert_eq!(held["status"]["model"]["adapterUri"], first);
    let reason = condition(&held, "PromotionHeld").unwrap();
    let said = reason["message"].as_str().unwrap();
    assert_eq!(reason["reason"], "GateFailed");
    for part in [
        "run g3-rev1",
        "authorSpecificNllReduction +0.002 < minimum +0.010",
        "nllReduction +0.050",
        "keeps serving run g1-rev1",
    ] {
        assert!(said.contains(part), "{part:?} not in {said}");
    }
    let event = eventually("a PromotionHeld Event", || async {
        scene
            .list::<k8s_openapi::api::events::v1::Event>()
            .await
            .into_iter()
            .find(|e| e["reason"] == "PromotionHeld")
    })
    .await;
    assert_eq!(
        (event["type"].as_str(), event["regarding"]["name"].as_str()),
        (Some("Warning"), Some("paul"))
    );
    let engine = scene.get::<Deployment>("paul-engine").await.unwrap();
    assert_eq!(engine["metadata"]["annotations"]["llmtwin.dev/adapter"], first, "nothing rolled");
    // kubectl shows the latest run's figure and whether it passed.
    let table = crate::support::control_plane::shared().run_kubectl(&[
        "get",
        "ttj",
        "paul-v1",
        "-n",
        &scene.namespace,
    ]);
    let (head, row) = table.split_once('\n').unwrap();
    let columns: Vec<&str> = head.split_whitespace().collect();
    let values: Vec<&str> = row.split_whitespace().collect();
    let at = |name: &str| {
        values[columns.iter().position(|c| *c == name).unwrap_or_else(|| panic!("no {name} in {table}"))]
    };
    assert_eq!((at("PHASE"), at("NLL-REDUCTION"), at("PASSED")), ("Rejected", "0.05", "false"), "{table}");

    // A run that passes rolls out, and nothing is held any more.
    gate_and_retrain(&scene, &gate, 6).await;
    scene.wait_for_phase::<TwinTrainingJob>("paul-v1", "Running", "Training").await;
    scene
        .end_job(
            "paul-v1-train-g4-rev1",
            0,
            passing
                .replace("0.75", "0.8")
                .replace("\"vllm", "\"evaluationServingNllReduction\":0.02,\"vllm")
                .as_str(),
        )
        .await;
    let second = adapter_of("g4-rev1");
    let rolled = eventually("Ready with the passing run's adapter", || async {
        let endpoint = scene.get::<TwinEndpoint>("paul").await?;
        (crate::support::wait::has_phase(&endpoint, "Ready", "Serving")
            && endpoint["status"]["model"]["adapterUri"] == second)
            .then_some(endpoint)
    })
    .await;
    assert_eq!(rolled["status"]["model"]["adapterRevision"], "rev-1");
    let released = condition(&rolled, "PromotionHeld").unwrap();
    assert_eq!(
        (released["status"].as_str(), released["reason"].as_str()),
        (Some("False"), Some("LatestRunPromoted"))
    );
    let history = history.lock().unwrap().clone();
    let phases: Vec<&str> = history
        .iter()
        .filter(|o| o["kind"] == "TwinEndpoint" && o["metadata"]["name"] == "paul")
        .map(|o| o["status"]["phase"].as_str().unwrap_or_default())
        .collect();
    assert!(
        phases.iter().all(|p| matches!(*p, "Ready" | "Deploying" | "Degraded")),
        "the endpoint stopped serving while its job retrained: {:#?}",
        summary(&history)
    );

    // The dataset publishes a new revision: retrieval moves to it at once (the default,
    // `rag.revision: latest`), with no training run, and the answers name both revisions.
    scene.apply_example("twindataset.yaml", |d| d["spec"]["chunking"]["maxTokens"] = json!(384)).await;
    scene.publish_build("paul", "paul-build-2", "rev-2").await;
    let moved = eventually("the gateway on rev-2 with the promoted adapter", || async {
        let gateway = scene.get::<Deployment>("paul").await?;
        (env(&gateway, "TWIN_SERVE_DATASET")? == "s3://twins-bucket/twins/datasets/paul/rev-2")
            .then_some(gateway)
    })
    .await;
    assert_eq!(env(&moved, "TWIN_SERVE_UPSTREAM_ADAPTER").as_deref(), Some(second.as_str()));
    assert_eq!(env(&moved, "TWIN_SERVE_ADAPTER_REVISION").as_deref(), Some("rev-1"));
    let fresh = eventually("the endpoint Ready on rev-2", || async {
        let endpoint = scene.get::<TwinEndpoint>("paul").await?;
        (crate::support::wait::has_phase(&endpoint, "Ready", "Serving")
            && endpoint["status"]["model"]["datasetRevision"] == "rev-2")
            .then_some(endpoint)
    })
    .await;
    assert_eq!(
        (
            fresh["status"]["model"]["adapterUri"].as_str(),
            fresh["status"]["model"]["adapterRevision"].as_str()
        ),
        (Some(second.as_str()), Some("rev-1"))
    );
    let trainers = crate::training::trainer_jobs(&scene).await;
    assert!(trainers.iter().all(|name| !name.ends_with("rev2")), "no run trains on rev-2: {trainers:?}");
    operator.shutdown().await;
}

/// A scheduled refresh of the example dataset, run now (`kubectl create job --from=cronjob/`),
/// publishes `revision`.
async fn refresh(scene: &Scene, job: &str, revision: &str) {
    scene.wait_for::<k8s_openapi::api::batch::v1::CronJob>("paul-refresh").await;
    scene.plane.run_kubectl(&["create", "job", job, "--from=cronjob/paul-refresh", "-n", &scene.namespace]);
    scene.end_job(job, 0, &crate::support::scene::build_result("paul", revision)).await;
    // Ready already (with the last revision): waited for until it names the new one.
    eventually(&format!("the dataset Ready with {revision}"), || async {
        let dataset = scene.get::<twin_operator::api::TwinDataset>("paul").await?;
        (crate::support::wait::has_phase(&dataset, "Ready", "RevisionPublished")
            && dataset["status"]["revision"] == revision)
            .then_some(())
    })
    .await;
}

/// The run of the example job (its second generation: the test edits it) on `revision` has
/// started; its trainer configuration.
async fn run_started(scene: &Scene, revision: &str) -> Value {
    let run = format!("g2-{}", revision.replace('-', ""));
    let running = scene.wait_for_phase::<TwinTrainingJob>("paul-v1", "Running", "Training").await;
    assert_eq!(running["status"]["run"], run.as_str());
    let config =
        scene.wait_for::<k8s_openapi::api::core::v1::ConfigMap>(&format!("paul-v1-train-{run}")).await;
    serde_json::from_str(config["data"]["config.json"].as_str().unwrap()).unwrap()
}

/// The endpoint Ready and serving `adapter`.
async fn serving(scene: &Scene, adapter: &str) -> Value {
    eventually(&format!("the endpoint Ready with {adapter}"), || async {
        let endpoint = scene.get::<TwinEndpoint>("paul").await?;
        (crate::support::wait::has_phase(&endpoint, "Ready", "Serving")
            && endpoint["status"]["model"]["adapterUri"] == adapter)
            .then_some(endpoint)
    })
    .await
}

#[tokio::test]
async fn continuous_training_retrains_on_each_refresh_and_serves_only_runs_that_pass() {
    let scene = Scene::new("continuous").await;
    scene.gpu_node("kwok-l4", 8).await;
    let operator = scene.operator("replica-a").await;
    scene.apply_examples().await;
    // Retrain on every new revision, promoting only a run at least as close to the author as
    // the one served.
    scene
        .apply_example("twintrainingjob.yaml", |job| {
            job["spec"]["retrainOnNewRevision"] = json!(true);
            job["spec"]["evaluation"] =
                json!({"gate": {"minimums": {"authorSpecificNllReduction": 0.01}, "mustBeat": "serving"}});
        })
        .await;
    scene.publish_build("paul", "paul-build-1", "rev-1").await;
    let config = run_started(&scene, "rev-1").await;
    assert!(config["evaluation"].get("servingAdapterUri").is_none(), "the first run has nothing to beat");
    let result = |specific: f64, serving: f64| {
        format!(
            r#"{{"status":"Succeeded","vllmMaxLoraRank":32,"evaluationNllReduction":0.09,"evaluationAuthorSpecificNllReduction":{specific},"evaluationServingNllReduction":{serving}}}"#
        )
    };
    scene.end_job("paul-v1-train-g2-rev1", 0, &result(0.03, 0.0)).await;
    serving(&scene, &adapter_of("g2-rev1")).await;

    // The nightly refresh finds a new post: a new revision, which retrieval uses at once and
    // the job trains on, measured against the adapter served; it passes and rolls out.
    refresh(&scene, "refresh-1", "rev-2").await;
    let config = run_started(&scene, "rev-2").await;
    assert_eq!(config["evaluation"]["servingAdapterUri"], adapter_of("g2-rev1").as_str());
    let meanwhile = eventually("retrieval on rev-2 while the run trains", || async {
        let endpoint = scene.get::<TwinEndpoint>("paul").await?;
        (endpoint["status"]["model"]["datasetRevision"] == "rev-2"
            && crate::support::wait::has_phase(&endpoint, "Ready", "Serving"))
        .then_some(endpoint)
    })
    .await;
    assert_eq!(meanwhile["status"]["model"]["adapterUri"], adapter_of("g2-rev1").as_str());
    scene.end_job("paul-v1-train-g2-rev2", 0, &result(0.04, 0.012)).await;
    let rolled = serving(&scene, &adapter_of("g2-rev2")).await;
    assert_eq!(rolled["status"]["model"]["adapterRevision"], "rev-2");

    // The next refresh: its run is further from the author than the one served, so it is
    // rejected and the endpoint keeps the passing adapter, saying why.
    refresh(&scene, "refresh-2", "rev-3").await;
    let config = run_started(&scene, "rev-3").await;
    assert_eq!(config["evaluation"]["servingAdapterUri"], adapter_of("g2-rev2").as_str());
    scene.end_job("paul-v1-train-g2-rev3", 0, &result(0.05, -0.02)).await;
    let rejected = scene.wait_for_phase::<TwinTrainingJob>("paul-v1", "Rejected", "GateFailed").await;
    let shortfall = rejected["status"]["evaluation"]["shortfalls"][0].as_str().unwrap();
    assert!(
        shortfall.starts_with(&format!("does not beat the serving adapter {}", adapter_of("g2-rev2"))),
        "{shortfall}"
    );
    let held = eventually("PromotionHeld naming the rev-3 run", || async {
        let endpoint = scene.get::<TwinEndpoint>("paul").await?;
        let held = condition(&endpoint, "PromotionHeld")?;
        (held["status"] == "True" && held["message"].as_str()?.contains("run g2-rev3")).then_some(endpoint)
    })
    .await;
    assert_eq!(held["status"]["phase"], "Ready");
    assert_eq!(held["status"]["model"]["adapterUri"], adapter_of("g2-rev2").as_str());
    assert_eq!(held["status"]["model"]["datasetRevision"], "rev-3", "retrieval still moves on");
    let engine = scene.get::<Deployment>("paul-engine").await.unwrap();
    assert_eq!(engine["metadata"]["annotations"]["llmtwin.dev/adapter"], adapter_of("g2-rev2").as_str());
    operator.shutdown().await;
}

/// Scale to zero: KEDA may take the engine to zero replicas (a ScaledObject with
/// `minReplicaCount: 0` woken by the gateway's own in-flight requests), the gateway is told to
/// hold requests while it wakes, and the endpoint says Idle, not Pending or Degraded; woken, it
/// is Ready again.
#[tokio::test]
async fn an_engine_scaled_to_zero_leaves_the_endpoint_idle_and_ready_to_wake() {
    let (scene, operator) = examples_with_a_dataset("endpoint-idle", "rev-1").await;
    scene.wait_for_phase::<TwinTrainingJob>("paul-v1", "Running", "Training").await;
    scene.end_job("paul-v1-train-g1-rev1", 0, r#"{"status":"Succeeded","vllmMaxLoraRank":32}"#).await;
    let keda = json!({"serverAddress": "http://prometheus.monitoring.svc:9090"});
    scene
        .apply_example("twinendpoint.yaml", |e| {
            e["spec"]["engine"]["modelCache"] = json!({"sizeLimit": "20Gi"});
            e["spec"]["autoscaling"] =
                json!({"minReplicas": 0, "maxReplicas": 2, "wakeSeconds": 240, "keda": keda});
        })
        .await;
    let scaled = eventually("the ScaledObject that may scale to zero", || async {
        let scaled = custom_child(&scene, "keda.sh", "v1alpha1", "ScaledObject", "paul-engine").await?;
        (scaled["spec"]["minReplicaCount"] == 0).then_some(scaled)
    })
    .await;
    let trigger = &scaled["spec"]["triggers"][0]["metadata"];
    let query = trigger["query"].as_str().unwrap();
    assert!(
        query.starts_with("sum(twin_gateway_in_flight{")
            && query.contains("pod=~\"(paul)-[a-z0-9]+-[a-z0-9]+\""),
        "{query}"
    );
    assert_eq!(trigger["activationThreshold"], "0", "any request wakes it");
    let gateway = eventually("the gateway told to hold requests while the engine wakes", || async {
        let gateway = scene.get::<Deployment>("paul").await?;
        (env(&gateway, "TWIN_SERVE_UPSTREAM_WAIT_SECONDS").as_deref() == Some("240")).then_some(gateway)
    })
    .await;
    assert!(env(&gateway, "TWIN_SERVE_UPSTREAM").is_some());
    scene.wait_for_phase::<TwinEndpoint>("paul", "Ready", "Serving").await;

    // KEDA scales it to zero: Idle, its Ready condition True, with what the first request costs.
    scene.plane.run_kubectl(&["scale", "deployment/paul-engine", "--replicas=0", "-n", &scene.namespace]);
    let idle = scene.wait_for_phase::<TwinEndpoint>("paul", "Idle", "ScaledToZero").await;
    assert_eq!(idle["status"]["conditions"][0]["status"], "True", "{idle}");
    assert!(ready_message(&idle).contains("waits up to 240 s"), "{idle}");
    assert_eq!(idle["status"]["replicas"]["engine"], "0/0");
    // A request wakes it: Ready again once it runs.
    scene.plane.run_kubectl(&["scale", "deployment/paul-engine", "--replicas=1", "-n", &scene.namespace]);
    scene.wait_for_phase::<TwinEndpoint>("paul", "Ready", "Serving").await;
    operator.shutdown().await;
}
