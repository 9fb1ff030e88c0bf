//! One controller test's part of the shared control plane: a namespace of its own prepared as
//! the README asks, an L4 GPU node of its own (the examples' GPU pods are pinned to it, so tests
//! running side by side never schedule onto each other's nodes), the admin's client for the
//! test's own hands, and the operator run as the chart's ServiceAccount, directly or through a
//! fault proxy.

use std::time::Duration;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod, ServiceAccount};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use twin_operator::operator::{Operator, OperatorSettings};

use super::control_plane::{self, ControlPlane, end_pod};
use super::fault_proxy::FaultProxy;
use super::{repo, twins, wait};

/// How long the real controllers may take for one step (they batch and back off in seconds).
pub const STEP: Duration = Duration::from_secs(60);

/// The label that pins a scene's GPU pods to its own nodes.
pub const POOL_LABEL: &str = "llmtwin.dev/test-pool";

/// A namespaced kind the tests read as JSON.
pub trait Namespaced:
    kube::Resource<Scope = NamespaceResourceScope, DynamicType = ()>
    + Clone
    + std::fmt::Debug
    + DeserializeOwned
    + serde::Serialize
{
}
impl<K> Namespaced for K where
    K: kube::Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + DeserializeOwned
        + serde::Serialize
{
}

pub struct Scene {
    pub plane: &'static ControlPlane,
    pub namespace: String,
    /// The admin's client.
    pub client: Client,
}

/// Polls `check` every 200 ms for up to [`STEP`].
pub async fn eventually<T, F, Fut>(what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    wait::eventually(what, STEP, Duration::from_millis(200), check).await
}

impl Scene {
    /// A fresh namespace named after `prefix`, with the ServiceAccounts the examples' pods run
    /// as (the API server refuses pods whose account is missing) and the drafts ConfigMap.
    pub async fn new(prefix: &str) -> Self {
        let plane = control_plane::shared();
        let namespace = plane.namespace(prefix).await;
        let client = plane.admin().await;
        let scene = Self { plane, namespace, client };
        for account in ["twin-datasets", "twin-training"] {
            let account: ServiceAccount =
                serde_json::from_value(json!({"metadata": {"name": account}})).unwrap();
            scene.api::<ServiceAccount>().create(&PostParams::default(), &account).await.unwrap();
        }
        let drafts: ConfigMap = serde_json::from_value(
            json!({"metadata": {"name": "paul-drafts"}, "data": {"draft.md": "# A draft"}}),
        )
        .unwrap();
        scene.api::<ConfigMap>().create(&PostParams::default(), &drafts).await.unwrap();
        scene
    }

    pub fn api<K: Namespaced>(&self) -> Api<K> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// An operator replica reconciling this namespace, as the chart's ServiceAccount.
    pub async fn operator(&self, identity: &str) -> Operator {
        self.operator_with(identity, |_| {}).await
    }

    /// An operator replica with its settings edited (a SageMaker client of the test's).
    pub async fn operator_with(&self, identity: &str, edit: impl FnOnce(&mut OperatorSettings)) -> Operator {
        let mut settings = self.plane.operator_settings(&self.namespace, identity).await;
        edit(&mut settings);
        super::logs::capture();
        Operator::start(self.plane.as_operator().await, "the control plane", settings)
            .await
            .expect("the operator starts")
    }

    /// A fault proxy that reaches the API server as the chart's ServiceAccount.
    pub async fn fault_proxy(&self) -> FaultProxy {
        FaultProxy::start(self.plane.as_operator().await).await
    }

    /// An operator replica whose every request goes through `proxy`.
    pub async fn operator_through(&self, proxy: &FaultProxy, identity: &str) -> Operator {
        let settings = self.plane.operator_settings(&self.namespace, identity).await;
        super::logs::capture();
        Operator::start(proxy.client(), &proxy.url, settings).await.expect("the operator starts")
    }

    /// An object as JSON, if it exists.
    pub async fn get<K: Namespaced>(&self, name: &str) -> Option<Value> {
        let object = self.api::<K>().get_opt(name).await.unwrap_or_else(|e| panic!("get {name}: {e}"))?;
        Some(serde_json::to_value(object).unwrap())
    }

    /// Every object of a kind in the namespace, as JSON, by name.
    pub async fn list<K: Namespaced>(&self) -> Vec<Value> {
        let list = self.api::<K>().list(&ListParams::default()).await.unwrap();
        list.items.into_iter().map(|o| serde_json::to_value(o).unwrap()).collect()
    }

    /// Waits until an object exists.
    pub async fn wait_for<K: Namespaced>(&self, name: &str) -> Value {
        let kind = K::kind(&());
        eventually(&format!("{kind} {name}"), || self.get::<K>(name)).await
    }

    /// Waits until an object is gone.
    pub async fn wait_gone<K: Namespaced>(&self, name: &str) {
        let kind = K::kind(&());
        eventually(&format!("{kind} {name} to be deleted"), || async {
            self.get::<K>(name).await.is_none().then_some(())
        })
        .await
    }

    /// Waits until a twin reports `phase` with the Ready reason `reason` for its generation.
    pub async fn wait_for_phase<K: Namespaced>(&self, name: &str, phase: &str, reason: &str) -> Value {
        wait::for_phase(&self.api::<K>(), name, phase, reason, STEP).await
    }

    /// The status of a twin (Null when it has none or does not exist).
    pub async fn status_of<K: Namespaced>(&self, name: &str) -> Value {
        self.get::<K>(name).await.map(|o| o["status"].clone()).unwrap_or(Value::Null)
    }

    /// An example file as a user applies it to this namespace: its GPU pods pinned to this
    /// scene's nodes, and `edit` applied.
    pub fn example(&self, file: &str, edit: impl FnOnce(&mut Value)) -> Value {
        let mut object: Value =
            serde_saphyr::from_str(&repo::read(&format!("manifests/examples/{file}"))).unwrap();
        object["metadata"]["namespace"] = json!(self.namespace);
        for pointer in [
            "/spec/backend/kubernetes/nodeSelector",
            "/spec/engine/pod/nodeSelector",
            "/spec/vllm/pod/nodeSelector",
        ] {
            if let Some(selector) = object.pointer_mut(pointer).and_then(Value::as_object_mut) {
                selector.insert(POOL_LABEL.into(), json!(self.namespace));
            }
        }
        edit(&mut object);
        object
    }

    /// Applies an object server-side as `kubectl apply --server-side --force-conflicts` does.
    pub async fn apply(&self, object: &Value) {
        twins::apply_value(&self.client, &self.namespace, object, "kubectl").await
    }

    /// Applies an example file (see [`Self::example`]) with `edit`.
    pub async fn apply_example(&self, file: &str, edit: impl FnOnce(&mut Value)) {
        self.apply(&self.example(file, edit)).await
    }

    /// Applies an example file under another name (see [`Self::example`]), with `edit`.
    pub async fn apply_example_as(&self, file: &str, name: &str, edit: impl FnOnce(&mut Value)) {
        self.apply_example(file, |object| {
            object["metadata"]["name"] = json!(name);
            edit(object)
        })
        .await
    }

    /// Applies every cluster example, as `kubectl apply -f manifests/examples/` would (the
    /// quickstart folder below it is the local mode's). The vLLM endpoint downloads into an
    /// emptyDir: no storage provisioner runs here to bind its model-cache claim.
    pub async fn apply_examples(&self) {
        for file in repo::files_with_extension("manifests/examples", "yaml")
            .into_iter()
            .filter(|f| f.parent() == Some(&repo::path("manifests/examples")))
        {
            let name = file.file_name().unwrap().to_str().unwrap().to_string();
            self.apply_example(&name, |object| {
                if object.pointer("/spec/engine/modelCache/claimName").is_some() {
                    object["spec"]["engine"]["modelCache"] = json!({"sizeLimit": "20Gi"});
                }
            })
            .await;
        }
    }

    /// A node kwok plays, labelled as an L4 GPU node of this scene's pool with `gpus` GPUs and
    /// tainted as GPU nodes are; `name` is suffixed with the namespace.
    pub async fn gpu_node(&self, name: &str, gpus: u32) -> String {
        let name = format!("{name}-{}", self.namespace);
        let mut capacity = json!({"cpu": "32", "memory": "256Gi", "pods": "110"});
        if gpus > 0 {
            capacity["nvidia.com/gpu"] = json!(gpus.to_string());
        }
        let taints = json!([{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}]);
        let node: Node = serde_json::from_value(json!({
            "metadata": {"name": name, "annotations": {"kwok.x-k8s.io/node": "fake"},
                "labels": {"kubernetes.io/hostname": name, "type": "kwok", "nvidia.com/gpu.product": "NVIDIA-L4",
                    POOL_LABEL: self.namespace}},
            "spec": {"taints": taints},
            "status": {"capacity": capacity}
        }))
        .unwrap();
        let nodes = Api::<Node>::all(self.client.clone());
        nodes.create(&PostParams::default(), &node).await.unwrap();
        // New nodes are tainted not-ready until a node lifecycle controller (not run here)
        // clears it: once kwok made it Ready, it keeps the GPU taint only.
        eventually(&format!("node {name} Ready"), || async {
            let node = nodes.get(&name).await.ok()?;
            let ready = node.status?.conditions?.iter().any(|c| c.type_ == "Ready" && c.status == "True");
            ready.then_some(())
        })
        .await;
        nodes
            .patch(&name, &PatchParams::default(), &Patch::Merge(json!({"spec": {"taints": taints}})))
            .await
            .unwrap();
        name
    }

    /// A claim named `claim`, bound by the real volume binder to a volume made for it (a
    /// hostPath: kwok runs no kubelet to mount it).
    pub async fn volume(&self, claim: &str) {
        use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
        let volume_name = format!("{}-{claim}", self.namespace);
        let volume: PersistentVolume = serde_json::from_value(json!({
            "metadata": {"name": volume_name},
            "spec": {"capacity": {"storage": "10Gi"}, "accessModes": ["ReadWriteMany"], "storageClassName": "",
                     "hostPath": {"path": format!("/srv/{volume_name}")},
                     "claimRef": {"namespace": self.namespace, "name": claim}}
        }))
        .unwrap();
        Api::<PersistentVolume>::all(self.client.clone())
            .create(&PostParams::default(), &volume)
            .await
            .unwrap();
        let request: PersistentVolumeClaim = serde_json::from_value(json!({
            "metadata": {"name": claim},
            "spec": {"accessModes": ["ReadWriteMany"], "storageClassName": "", "volumeName": volume_name,
                     "resources": {"requests": {"storage": "10Gi"}}}
        }))
        .unwrap();
        let claims = self.api::<PersistentVolumeClaim>();
        claims.create(&PostParams::default(), &request).await.unwrap();
        eventually(&format!("claim {claim} bound"), || async {
            let phase = claims.get(claim).await.ok()?.status?.phase?;
            (phase == "Bound").then_some(())
        })
        .await;
    }

    /// Marks a node (un)schedulable, as `kubectl cordon` / `uncordon` do.
    pub async fn cordon(&self, node: &str, cordoned: bool) {
        Api::<Node>::all(self.client.clone())
            .patch(node, &PatchParams::default(), &Patch::Merge(json!({"spec": {"unschedulable": cordoned}})))
            .await
            .unwrap();
    }

    /// Pods with a label selector, live ones only.
    pub async fn pods(&self, selector: &str) -> Vec<Pod> {
        let list = self.api::<Pod>().list(&ListParams::default().labels(selector)).await.unwrap();
        list.items.into_iter().filter(|p| p.metadata.deletion_timestamp.is_none()).collect()
    }

    /// The running pod of a Job, once the real Job controller created it and the scheduler
    /// placed it on a kwok node.
    pub async fn running_pod_of_job(&self, job: &str) -> Pod {
        let selector = format!("batch.kubernetes.io/job-name={job}");
        let deadline = std::time::Instant::now() + STEP;
        loop {
            let pods = self.pods(&selector).await;
            let running =
                pods.iter().find(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"));
            if let Some(pod) = running {
                return pod.clone();
            }
            if std::time::Instant::now() > deadline {
                let seen: Vec<_> = pods
                    .iter()
                    .map(|p| {
                        (p.name_any(), p.spec.as_ref().and_then(|s| s.node_name.clone()), p.status.clone())
                    })
                    .collect();
                panic!("no running pod of Job {job} in {STEP:?}; its pods: {seen:?}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// A Job's pod ends on its kwok node: exit code 0 succeeds it, any other fails it; `message`
    /// is its termination message.
    pub async fn end_job(&self, job: &str, exit_code: i32, message: &str) {
        let pod = self.running_pod_of_job(job).await;
        end_pod(&self.client, &self.namespace, &pod.name_any(), exit_code, None, message).await;
    }

    /// The example dataset's build `job` publishes `revision`.
    pub async fn publish_build(&self, dataset: &str, job: &str, revision: &str) -> Value {
        self.end_job(job, 0, &build_result(dataset, revision)).await;
        self.wait_for_phase::<twin_operator::api::TwinDataset>(dataset, "Ready", "RevisionPublished").await
    }
}

/// The report `twin dataset build` leaves in its termination message, as the build writes it.
pub fn build_result(dataset: &str, revision: &str) -> String {
    use twin_operator::api::dataset::{DatasetArtifacts, DatasetStats, SourceStatus};
    use twin_operator::contract::{BuildReport, PublishedBuild};
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
