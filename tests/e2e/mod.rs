//! The operator's scenarios against a real cluster where the chart is installed (kind in the
//! GitHub workflow). They are ignored unless asked for, and then need `TWIN_E2E_KUBECONFIG`:
//!
//!   TWIN_E2E_KUBECONFIG=$HOME/.kube/config cargo test --test it e2e -- --ignored
//!
//! Each test works in a namespace of its own and deletes it afterwards.

use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::{Client, Config};
use serde_json::{Value, json};
use twin_operator::api::{TwinDataset, TwinEndpoint, TwinTrainingJob};

use crate::support::{repo, twins, wait};

/// A client for the e2e cluster named by `TWIN_E2E_KUBECONFIG`.
async fn cluster() -> Option<Client> {
    let path = std::env::var_os("TWIN_E2E_KUBECONFIG")
        .expect("set TWIN_E2E_KUBECONFIG to the kubeconfig of the e2e cluster");
    let kubeconfig =
        kube::config::Kubeconfig::read_from(&path).expect("TWIN_E2E_KUBECONFIG is a readable kubeconfig");
    let config =
        Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await.expect("a usable kubeconfig");
    Some(Client::try_from(config).expect("a client for the e2e cluster"))
}

/// A fresh namespace, deleted when the guard drops.
struct TestNamespace {
    client: Client,
    name: String,
}

impl TestNamespace {
    async fn create(client: &Client, prefix: &str) -> Self {
        let name = format!(
            "{prefix}-{}",
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis()
                % 1_000_000_000
        );
        let namespace: Namespace = serde_json::from_value(
            json!({"metadata": {"name": name, "labels": {"twin-operator/e2e": "true"}}}),
        )
        .unwrap();
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &namespace)
            .await
            .expect("create the test namespace");
        Self { client: client.clone(), name }
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        let (client, name) = (self.client.clone(), self.name.clone());
        // Deletion is asynchronous in Kubernetes anyway; fire it and go.
        tokio::spawn(async move {
            let _ = Api::<Namespace>::all(client).delete(&name, &DeleteParams::background()).await;
        });
    }
}

async fn eventually<T, F, Fut>(what: &str, timeout: Duration, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    wait::eventually(what, timeout, Duration::from_millis(500), check).await
}

async fn wait_for_phase<K>(api: &Api<K>, name: &str, phase: &str, reason: &str) -> Value
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + serde::Serialize,
{
    wait::for_phase(api, name, phase, reason, Duration::from_secs(60)).await
}

async fn apply_example(client: &Client, namespace: &str, file: &str) {
    twins::apply_file(client, namespace, &repo::path(file), "twin-e2e").await;
}

#[tokio::test]
#[ignore = "needs a cluster: see the module documentation"]
async fn e2e_examples_reach_their_phases() {
    let Some(client) = cluster().await else { return };
    let ns = TestNamespace::create(&client, "twin-e2e-examples").await;
    for file in
        ["twindataset.yaml", "twintrainingjob.yaml", "twinendpoint.yaml", "twinendpoint-external.yaml"]
    {
        apply_example(&client, &ns.name, &format!("manifests/examples/{file}")).await;
    }
    wait_for_phase(
        &Api::<TwinDataset>::namespaced(client.clone(), &ns.name),
        "paul",
        "Pending",
        "ConfigMapNotFound",
    )
    .await;
    wait_for_phase(
        &Api::<TwinTrainingJob>::namespaced(client.clone(), &ns.name),
        "paul-v1",
        "WaitingForDataset",
        "WaitingForDataset",
    )
    .await;
    wait_for_phase(
        &Api::<TwinEndpoint>::namespaced(client.clone(), &ns.name),
        "paul",
        "Pending",
        "WaitingForModel",
    )
    .await;
    wait_for_phase(
        &Api::<TwinEndpoint>::namespaced(client.clone(), &ns.name),
        "paul-external",
        "Pending",
        "WaitingForDataset",
    )
    .await;
}

#[tokio::test]
#[ignore = "needs a cluster: see the module documentation"]
async fn e2e_invalid_reference_and_recovery() {
    let Some(client) = cluster().await else { return };
    let ns = TestNamespace::create(&client, "twin-e2e-refs").await;
    let jobs = Api::<TwinTrainingJob>::namespaced(client.clone(), &ns.name);
    let job: TwinTrainingJob = serde_json::from_value(json!({
        "apiVersion": "llmtwin.dev/v1alpha1", "kind": "TwinTrainingJob", "metadata": {"name": "orphan"},
        "spec": {"datasetRef": {"name": "nobody"}, "baseModel": {"uri": "hf://a/b"}, "backend": {"kubernetes": {}}, "output": {"uri": "s3://bucket/x"}}
    }))
    .unwrap();
    jobs.create(&PostParams::default(), &job).await.unwrap();
    wait_for_phase(&jobs, "orphan", "Pending", "DatasetNotFound").await;
    let dataset: TwinDataset = serde_json::from_value(json!({"apiVersion": "llmtwin.dev/v1alpha1", "kind": "TwinDataset", "metadata": {"name": "nobody"},
        "spec": {"author": {"name": "N"}, "sources": [{"name": "blog", "feed": {"url": "https://example.com/feed"}}], "output": {"uri": "s3://bucket/x"}}})).unwrap();
    Api::<TwinDataset>::namespaced(client.clone(), &ns.name)
        .create(&PostParams::default(), &dataset)
        .await
        .unwrap();
    wait_for_phase(&jobs, "orphan", "WaitingForDataset", "WaitingForDataset").await;
}

/// The real API server evaluates the CRDs' CEL rules as the tests' checker does.
#[tokio::test]
#[ignore = "needs a cluster: see the module documentation"]
async fn e2e_the_api_server_refuses_invalid_twins() {
    let Some(client) = cluster().await else { return };
    let ns = TestNamespace::create(&client, "twin-e2e-cel").await;
    let jobs = Api::<TwinTrainingJob>::namespaced(client.clone(), &ns.name);
    let bad: TwinTrainingJob = serde_json::from_value(json!({
        "apiVersion": "llmtwin.dev/v1alpha1", "kind": "TwinTrainingJob", "metadata": {"name": "bad"},
        "spec": {"datasetRef": {"name": "paul"}, "baseModel": {"uri": "hf://a/b"}, "backend": {}, "output": {"uri": "s3://bucket/x"}}
    }))
    .unwrap();
    match jobs.create(&PostParams::default(), &bad).await {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 422);
            assert!(
                status.message.contains("set exactly one backend: kubernetes or sagemaker"),
                "{}",
                status.message
            );
        }
        other => panic!("expected a 422, got {other:?}"),
    }
    let good = serde_json::from_value::<TwinTrainingJob>(json!({
        "apiVersion": "llmtwin.dev/v1alpha1", "kind": "TwinTrainingJob", "metadata": {"name": "good"},
        "spec": {"datasetRef": {"name": "paul"}, "baseModel": {"uri": "hf://a/b"}, "backend": {"kubernetes": {}}, "output": {"uri": "s3://bucket/x"}}
    }))
    .unwrap();
    jobs.create(&PostParams::default(), &good).await.unwrap();
    let moved = jobs
        .patch(
            "good",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"datasetRef": {"name": "other"}}})),
        )
        .await;
    assert!(
        matches!(moved, Err(kube::Error::Api(ref s)) if s.code == 422 && s.message.contains("datasetRef is immutable")),
        "{moved:?}"
    );
}

#[tokio::test]
#[ignore = "needs a cluster: see the module documentation"]
async fn e2e_one_replica_holds_the_lease() {
    let Some(client) = cluster().await else { return };
    let namespace = std::env::var("TWIN_E2E_OPERATOR_NAMESPACE").unwrap_or_else(|_| "twin-system".into());
    let lease = eventually("the operator's Lease", Duration::from_secs(60), || async {
        let lease =
            Api::<Lease>::namespaced(client.clone(), &namespace).get_opt("twin-operator").await.ok()??;
        lease.spec.as_ref()?.holder_identity.is_some().then_some(lease)
    })
    .await;
    let holder = lease.spec.unwrap().holder_identity.unwrap();
    assert!(holder.starts_with("twin-operator"), "the Lease is held by {holder}");
}

/// An OpenAI-compatible stub (a Python standard-library server from a ConfigMap) as the
/// external engine: the operator deploys the gateway in front of it, the endpoint turns Ready,
/// and a question asked through the gateway's Service comes back answered.
#[tokio::test]
#[ignore = "needs a cluster: see the module documentation"]
async fn e2e_an_external_endpoint_answers_through_the_gateway() {
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::core::v1::{ConfigMap, Service};

    let Some(client) = cluster().await else { return };
    let ns = TestNamespace::create(&client, "twin-e2e-endpoint").await;
    let labels = json!({"app": "openai-stub"});
    let script =
        json!({"metadata": {"name": "openai-stub"}, "data": {"stub.py": include_str!("openai-stub.py")}});
    Api::<ConfigMap>::namespaced(client.clone(), &ns.name)
        .create(&PostParams::default(), &serde_json::from_value(script).unwrap())
        .await
        .unwrap();
    let stub = json!({
        "metadata": {"name": "openai-stub"},
        "spec": {"replicas": 1, "selector": {"matchLabels": labels}, "template": {
            "metadata": {"labels": labels},
            "spec": {
                "securityContext": {"runAsNonRoot": true, "runAsUser": 65534, "seccompProfile": {"type": "RuntimeDefault"}},
                "containers": [{"name": "stub", "image": "python:3.12-alpine", "command": ["python", "/stub/stub.py"],
                    "ports": [{"name": "http", "containerPort": 8000}],
                    "readinessProbe": {"httpGet": {"path": "/health", "port": "http"}, "periodSeconds": 2},
                    "securityContext": {"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true, "capabilities": {"drop": ["ALL"]}},
                    "volumeMounts": [{"name": "stub", "mountPath": "/stub"}]}],
                "volumes": [{"name": "stub", "configMap": {"name": "openai-stub"}}]}}}
    });
    Api::<Deployment>::namespaced(client.clone(), &ns.name)
        .create(&PostParams::default(), &serde_json::from_value(stub).unwrap())
        .await
        .unwrap();
    let service = json!({"metadata": {"name": "openai-stub"},
        "spec": {"selector": labels, "ports": [{"name": "http", "port": 8000, "targetPort": "http"}]}});
    Api::<Service>::namespaced(client.clone(), &ns.name)
        .create(&PostParams::default(), &serde_json::from_value(service).unwrap())
        .await
        .unwrap();
    let endpoint: TwinEndpoint = serde_json::from_value(json!({
        "apiVersion": "llmtwin.dev/v1alpha1", "kind": "TwinEndpoint", "metadata": {"name": "stubbed"},
        "spec": {"model": {"baseModel": {"uri": "hf://e2e/stub"}},
                 "engine": {"kind": "external", "url": format!("http://openai-stub.{}.svc:8000/v1", ns.name)},
                 "gateway": {"replicas": 1, "pod": {"resources": {"requests": {"cpu": "50m", "memory": "64Mi"}}}}}
    }))
    .unwrap();
    let endpoints = Api::<TwinEndpoint>::namespaced(client.clone(), &ns.name);
    endpoints.create(&PostParams::default(), &endpoint).await.unwrap();
    let ready = eventually("the endpoint to be Ready", Duration::from_secs(300), || async {
        let object = serde_json::to_value(endpoints.get_opt("stubbed").await.ok()??).ok()?;
        wait::has_phase(&object, "Ready", "Serving").then_some(object)
    })
    .await;
    assert_eq!(ready["status"]["url"], format!("http://stubbed.{}.svc:8080/v1", ns.name));
    assert_eq!(ready["status"]["replicas"]["gateway"], "1/1");
    // Asked through the API server's proxy to the gateway's Service.
    let question = "What does the operator deploy for an external engine?";
    let body = json!({"model": "stubbed", "messages": [{"role": "user", "content": question}]});
    let request = http::Request::post(format!(
        "/api/v1/namespaces/{}/services/stubbed:8080/proxy/v1/chat/completions",
        ns.name
    ))
    .header("content-type", "application/json")
    .body(serde_json::to_vec(&body).unwrap())
    .unwrap();
    let answer: Value =
        serde_json::from_str(&client.request_text(request).await.expect("the gateway answers")).unwrap();
    let content = answer["choices"][0]["message"]["content"].as_str().unwrap_or_default();
    assert!(content.starts_with("The stub heard:") && content.contains(question), "{answer}");
}
