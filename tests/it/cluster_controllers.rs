//! The controllers on a real control plane (tests/support/control_plane.rs): the README's
//! examples applied, the build and training Jobs run by the real Job controller on kwok's nodes,
//! trainers placed by the real scheduler (GPUs, taints, node selectors), endpoints rolled out by
//! the real Deployment and ReplicaSet controllers, children removed by the real garbage
//! collector, the leader Lease handed over. The operator runs as the chart's ServiceAccount, so
//! any verb the chart does not grant fails these tests.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod, ServiceAccount};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use twin_operator::api::{TwinDataset, TwinEndpoint, TwinTrainingJob};

use crate::operator::build_result;
use crate::support::control_plane::{self, RELEASE_NAMESPACE, end_pod};
use crate::support::{repo, twins, wait};

/// How long the real controllers may take for one step (they batch and back off in seconds).
const STEP: Duration = Duration::from_secs(60);

async fn eventually<T, F, Fut>(what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    wait::eventually(what, STEP, Duration::from_millis(200), check).await
}

async fn wait_for_phase<K>(api: &Api<K>, name: &str, phase: &str, reason: &str) -> Value
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + serde::Serialize,
{
    wait::for_phase(api, name, phase, reason, STEP).await
}

/// What the README asks of a namespace before the examples: the ServiceAccounts their pods run
/// as (the API server refuses pods whose account is missing) and the drafts ConfigMap.
async fn prepare_namespace(client: &Client, namespace: &str) {
    for account in ["twin-datasets", "twin-training"] {
        let account: ServiceAccount = serde_json::from_value(json!({"metadata": {"name": account}})).unwrap();
        Api::<ServiceAccount>::namespaced(client.clone(), namespace)
            .create(&PostParams::default(), &account)
            .await
            .unwrap();
    }
    let drafts: ConfigMap = serde_json::from_value(
        json!({"metadata": {"name": "paul-drafts"}, "data": {"draft.md": "# A draft"}}),
    )
    .unwrap();
    Api::<ConfigMap>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &drafts)
        .await
        .unwrap();
}

async fn apply_example(client: &Client, namespace: &str, file: &str) {
    let path = repo::path(&format!("manifests/examples/{file}"));
    twins::apply_file(client, namespace, &path, "kubectl").await
}

/// The running pod of a Job, once the real Job controller created it and the scheduler placed it.
async fn running_pod_of_job(client: &Client, namespace: &str, job: &str) -> Pod {
    let pods = Api::<Pod>::namespaced(client.clone(), namespace);
    let selector = ListParams::default().labels(&format!("batch.kubernetes.io/job-name={job}"));
    let deadline = std::time::Instant::now() + STEP;
    loop {
        let list = pods.list(&selector).await.unwrap();
        let running = list.items.iter().find(|p| {
            p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
                && p.metadata.deletion_timestamp.is_none()
        });
        if let Some(pod) = running {
            return pod.clone();
        }
        if std::time::Instant::now() > deadline {
            let seen: Vec<_> = list
                .items
                .iter()
                .map(|p| (p.name_any(), p.spec.as_ref().and_then(|s| s.node_name.clone()), p.status.clone()))
                .collect();
            panic!("no running pod of Job {job} in {STEP:?}; its pods: {seen:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The example dataset, built once: its Job's pod ends on a kwok node with the build's report.
async fn publish_dataset(client: &Client, namespace: &str, revision: &str) -> Value {
    apply_example(client, namespace, "twindataset.yaml").await;
    let pod = running_pod_of_job(client, namespace, "paul-build-1").await;
    assert!(pod.spec.as_ref().unwrap().node_name.as_deref().unwrap().starts_with("kwok-"));
    end_pod(client, namespace, &pod.name_any(), 0, None, &build_result("paul", revision)).await;
    wait_for_phase(
        &Api::<TwinDataset>::namespaced(client.clone(), namespace),
        "paul",
        "Ready",
        "RevisionPublished",
    )
    .await
}

/// A fresh namespace prepared as the README asks, an admin client, and an operator reconciling
/// that namespace as the chart's ServiceAccount.
async fn scene(prefix: &str) -> (String, Client, twin_operator::operator::Operator) {
    let plane = control_plane::shared();
    let namespace = plane.namespace(prefix).await;
    let client = plane.admin().await;
    prepare_namespace(&client, &namespace).await;
    let operator = plane.operator(&namespace, "replica-a").await;
    (namespace, client, operator)
}

/// Names of the objects of one kind in a namespace.
async fn names<K>(client: &Client, namespace: &str) -> Vec<String>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned,
{
    let list = Api::<K>::namespaced(client.clone(), namespace).list(&ListParams::default()).await.unwrap();
    list.items.iter().map(|o| o.name_any()).collect()
}

#[tokio::test]
async fn a_build_job_completing_on_a_kwok_node_makes_the_dataset_ready_and_deletion_collects_its_children() {
    use k8s_openapi::api::batch::v1::{CronJob, Job};
    let (namespace, client, operator) = scene("dataset").await;
    let ready = publish_dataset(&client, &namespace, "rev-1").await;
    assert_eq!(ready["status"]["revision"], "rev-1");
    assert_eq!(ready["status"]["stats"]["documents"], 12);
    // The real Job controller saw the pod succeed and completed the Job.
    let job = Api::<Job>::namespaced(client.clone(), &namespace).get("paul-build-1").await.unwrap();
    assert_eq!(job.status.and_then(|s| s.succeeded), Some(1));
    assert!(!names::<CronJob>(&client, &namespace).await.is_empty(), "the schedule's CronJob");

    // Foreground deletion: the dataset stays until the garbage collector has removed every
    // child (and the operator must not recreate them meanwhile), then it goes.
    Api::<TwinDataset>::namespaced(client.clone(), &namespace)
        .delete("paul", &DeleteParams::foreground())
        .await
        .unwrap();
    eventually("the garbage collector to remove the dataset and its children", || async {
        let datasets = Api::<TwinDataset>::namespaced(client.clone(), &namespace);
        let gone = datasets.get_opt("paul").await.ok()?.is_none()
            && names::<Job>(&client, &namespace).await.is_empty()
            && names::<CronJob>(&client, &namespace).await.is_empty()
            && names::<Pod>(&client, &namespace).await.is_empty();
        gone.then_some(())
    })
    .await;
    operator.shutdown().await;
}

/// A node kwok plays, labelled as an L4 GPU node with `gpus` of them, tainted as GPU nodes are.
async fn create_gpu_node(client: &Client, name: &str, gpus: u32) {
    let mut capacity = json!({"cpu": "32", "memory": "256Gi", "pods": "110"});
    if gpus > 0 {
        capacity["nvidia.com/gpu"] = json!(gpus.to_string());
    }
    let node: Node = serde_json::from_value(json!({
        "metadata": {"name": name, "annotations": {"kwok.x-k8s.io/node": "fake"},
            "labels": {"kubernetes.io/hostname": name, "type": "kwok", "nvidia.com/gpu.product": "NVIDIA-L4"}},
        "spec": {"taints": [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}]},
        "status": {"capacity": capacity}
    }))
    .unwrap();
    let nodes = Api::<Node>::all(client.clone());
    nodes.create(&PostParams::default(), &node).await.unwrap();
    // New nodes are tainted not-ready until a node lifecycle controller (not run here) clears it.
    eventually(&format!("node {name} Ready"), || async {
        let node = nodes.get(name).await.ok()?;
        let ready = node.status?.conditions?.iter().any(|c| c.type_ == "Ready" && c.status == "True");
        ready.then_some(())
    })
    .await;
    let untainted =
        json!({"spec": {"taints": [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}]}});
    nodes.patch(name, &PatchParams::default(), &Patch::Merge(untainted)).await.unwrap();
}

#[tokio::test]
async fn a_gpu_trainer_waits_unschedulable_until_a_node_with_gpus_exists_and_an_oom_is_reported() {
    let (namespace, client, operator) = scene("training").await;
    publish_dataset(&client, &namespace, "rev-1").await;
    // The example asks for one GPU on an L4 node; there is none yet.
    apply_example(&client, &namespace, "twintrainingjob.yaml").await;
    let jobs = Api::<TwinTrainingJob>::namespaced(client.clone(), &namespace);
    let pending = wait_for_phase(&jobs, "paul-v1", "Pending", "TrainerUnschedulable").await;
    let message = pending["status"]["conditions"][0]["message"].as_str().unwrap();
    assert!(message.contains("0/") && message.contains("nodes are available"), "{message}");
    // An L4 node without GPUs does not do: the scheduler now says what is missing.
    let suffix = namespace.rsplit('-').next().unwrap();
    create_gpu_node(&client, &format!("kwok-l4-empty-{suffix}"), 0).await;
    let insufficient = eventually("the scheduler to name the missing GPUs", || async {
        let object = serde_json::to_value(jobs.get("paul-v1").await.ok()?).ok()?;
        let message = object["status"]["conditions"][0]["message"].as_str()?.to_string();
        message.contains("Insufficient nvidia.com/gpu").then_some(message)
    })
    .await;
    assert!(
        insufficient.contains("TrainerUnschedulable") || insufficient.contains("cannot be scheduled"),
        "{insufficient}"
    );
    // One with GPUs does, and the trainer runs there.
    let gpu_node = format!("kwok-l4-{suffix}");
    create_gpu_node(&client, &gpu_node, 2).await;
    wait_for_phase(&jobs, "paul-v1", "Running", "Training").await;
    let job_name = "paul-v1-train-g1-rev1";
    let pod = running_pod_of_job(&client, &namespace, job_name).await;
    assert_eq!(pod.spec.as_ref().unwrap().node_name.as_deref(), Some(gpu_node.as_str()));

    // The trainer dies of CUDA OOM without writing its result (FallbackToLogsOnError leaves the
    // log tail as the message): exit code 1 fails the Job at once (its pod failure policy), and
    // the run fails with the reason and the tail.
    let log_tail = "Traceback (most recent call last):\n  File \"/app/trainer/sft.py\", line 88, in train\ntorch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB";
    end_pod(&client, &namespace, &pod.name_any(), 1, None, log_tail).await;
    let failed = wait_for_phase(&jobs, "paul-v1", "Failed", "OutOfMemory").await;
    let message = failed["status"]["conditions"][0]["message"].as_str().unwrap();
    assert!(
        message.contains("ran out of memory")
            && message.contains("CUDA out of memory. Tried to allocate 2.00 GiB"),
        "{message}"
    );
    operator.shutdown().await;
}

#[tokio::test]
async fn the_leader_lease_is_taken_over_when_the_leader_stops() {
    let plane = control_plane::shared();
    let namespace = plane.namespace("leases").await;
    let leases = Api::<Lease>::namespaced(plane.admin().await, RELEASE_NAMESPACE);
    let lease_name = format!("twin-operator-{namespace}");
    let a = plane.operator(&namespace, "replica-a").await;
    let holder = |leases: Api<Lease>, name: String| async move {
        leases.get_opt(&name).await.ok()??.spec?.holder_identity
    };
    let first = eventually("a leader", || holder(leases.clone(), lease_name.clone())).await;
    assert_eq!(first, "replica-a");
    let b = plane.operator(&namespace, "replica-b").await;
    a.shutdown().await;
    eventually("replica-b to take the lease", || async {
        (holder(leases.clone(), lease_name.clone()).await? == "replica-b").then_some(())
    })
    .await;
    b.shutdown().await;
}

#[tokio::test]
async fn an_endpoint_rolls_out_through_the_real_controllers_and_reports_crash_loops_and_oom_kills() {
    let (namespace, client, operator) = scene("endpoint").await;
    let suffix = namespace.rsplit('-').next().unwrap();
    create_gpu_node(&client, &format!("kwok-l4-serve-{suffix}"), 2).await;
    publish_dataset(&client, &namespace, "rev-1").await;
    apply_example(&client, &namespace, "twintrainingjob.yaml").await;
    let pod = running_pod_of_job(&client, &namespace, "paul-v1-train-g1-rev1").await;
    end_pod(&client, &namespace, &pod.name_any(), 0, None, r#"{"status":"Succeeded","sftTrainLoss":1.2}"#)
        .await;
    let jobs = Api::<TwinTrainingJob>::namespaced(client.clone(), &namespace);
    wait_for_phase(&jobs, "paul-v1", "Succeeded", "AdapterPublished").await;

    // The example without its model-cache claim and ServiceMonitor (no storage provisioner and no
    // Prometheus Operator here).
    let mut endpoint: Value =
        serde_saphyr::from_str(&repo::read("manifests/examples/twinendpoint.yaml")).unwrap();
    endpoint["metadata"]["namespace"] = json!(namespace);
    endpoint["spec"]["engine"]["modelCache"] = json!({"sizeLimit": "20Gi"});
    endpoint["spec"]["monitoring"] = json!({"serviceMonitor": false});
    let endpoints = Api::<TwinEndpoint>::namespaced(client.clone(), &namespace);
    endpoints.patch("paul", &PatchParams::apply("kubectl"), &Patch::Apply(&endpoint)).await.unwrap();
    let ready = wait_for_phase(&endpoints, "paul", "Ready", "Serving").await;
    // The gateway's replicas are its HPA's to set (2 to 6); no HPA controller runs here, so the
    // Deployment keeps the API server's default of one.
    assert_eq!(ready["status"]["replicas"], json!({"engine": "1/1", "gateway": "1/1"}));

    let pods = Api::<Pod>::namespaced(client.clone(), &namespace);
    let part_pod = |component: &'static str| {
        let pods = pods.clone();
        async move {
            let list = pods
                .list(&ListParams::default().labels(&format!("app.kubernetes.io/component={component}")))
                .await
                .unwrap();
            list.items.into_iter().next().unwrap_or_else(|| panic!("no {component} pod")).name_any()
        }
    };
    let engine = part_pod("engine").await;
    end_pod(&client, &namespace, &engine, 1, None, "RuntimeError: CUDA error: no kernel image is available")
        .await;
    let degraded = wait_for_phase(&endpoints, "paul", "Degraded", "EngineCrashLoopBackOff").await;
    assert!(
        degraded["status"]["conditions"][0]["message"].as_str().unwrap().contains("no kernel image"),
        "{degraded}"
    );
    let gateway = part_pod("gateway").await;
    end_pod(&client, &namespace, &gateway, 137, Some("OOMKilled"), "").await;
    // The engine still crash-loops and speaks first; once it is replaced the gateway's OOM shows.
    pods.delete(&engine, &DeleteParams::default()).await.unwrap();
    wait_for_phase(&endpoints, "paul", "Degraded", "GatewayOOMKilled").await;
    operator.shutdown().await;
}
