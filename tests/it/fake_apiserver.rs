//! The fake API server's own tests, through the real `kube::Client` (and kubectl), so that
//! controller tests can trust its semantics.

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::{Value, json};
use twin_operator::api::{TwinDataset, TwinTrainingJob};

use crate::support::fake_apiserver::{FakeApiServer, Verb};

fn configmap(name: &str, data: Value) -> ConfigMap {
    serde_json::from_value(
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}),
    )
    .unwrap()
}

fn dataset(name: &str) -> TwinDataset {
    serde_json::from_value(json!({
        "apiVersion": "llmtwin.dev/v1alpha1", "kind": "TwinDataset", "metadata": {"name": name},
        "spec": {"author": {"name": "Ada"}, "sources": [{"name": "notes", "configMap": {"name": "notes"}}], "output": {"uri": "s3://twins/out"}}
    }))
    .unwrap()
}

/// The pod of a finished Job, and how its container terminated.
async fn finished_pod_of(
    pods: &Api<Pod>,
    job: &str,
) -> (Pod, k8s_openapi::api::core::v1::ContainerStateTerminated) {
    let pod = pods
        .list(&ListParams::default().labels(&format!("batch.kubernetes.io/job-name={job}")))
        .await
        .unwrap()
        .items
        .remove(0);
    let terminated =
        pod.status.clone().unwrap().container_statuses.unwrap()[0].state.clone().unwrap().terminated.unwrap();
    (pod, terminated)
}

fn api_status(error: kube::Error) -> (u16, String, String) {
    match error {
        kube::Error::Api(status) => (status.code, status.reason, status.message),
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test]
async fn crud_with_not_found_and_already_exists() {
    let server = FakeApiServer::start().await;
    let cms: Api<ConfigMap> = Api::namespaced(server.client(), "default");
    let created = cms.create(&PostParams::default(), &configmap("a", json!({"k": "v"}))).await.unwrap();
    assert!(created.metadata.uid.is_some() && created.metadata.creation_timestamp.is_some());
    assert_eq!(created.metadata.generation, Some(1));
    let (code, reason, _) =
        api_status(cms.create(&PostParams::default(), &configmap("a", json!({}))).await.unwrap_err());
    assert_eq!((code, reason.as_str()), (409, "AlreadyExists"));
    assert_eq!(cms.get("a").await.unwrap().data.unwrap()["k"], "v");
    let (code, reason, message) = api_status(cms.get("missing").await.unwrap_err());
    assert_eq!((code, reason.as_str()), (404, "NotFound"));
    assert!(message.contains("configmaps \"missing\" not found"), "{message}");
    assert!(cms.get_opt("missing").await.unwrap().is_none());
    cms.delete("a", &DeleteParams::default()).await.unwrap();
    assert!(cms.get_opt("a").await.unwrap().is_none());
    let other_namespace: Api<ConfigMap> = Api::namespaced(server.client(), "other");
    other_namespace.create(&PostParams::default(), &configmap("b", json!({}))).await.unwrap();
    assert_eq!(
        Api::<ConfigMap>::all(server.client()).list(&ListParams::default()).await.unwrap().items.len(),
        1
    );
    assert!(cms.list(&ListParams::default()).await.unwrap().items.is_empty());
}

#[tokio::test]
async fn stale_updates_conflict() {
    let server = FakeApiServer::start().await;
    let cms: Api<ConfigMap> = Api::namespaced(server.client(), "default");
    let first = cms.create(&PostParams::default(), &configmap("a", json!({"k": "1"}))).await.unwrap();
    let mut second = first.clone();
    second.data = Some([("k".to_string(), "2".to_string())].into());
    cms.replace("a", &PostParams::default(), &second).await.unwrap();
    let mut stale = first.clone();
    stale.data = Some([("k".to_string(), "3".to_string())].into());
    let (code, reason, _) = api_status(cms.replace("a", &PostParams::default(), &stale).await.unwrap_err());
    assert_eq!((code, reason.as_str()), (409, "Conflict"));
    assert_eq!(cms.get("a").await.unwrap().data.unwrap()["k"], "2");
}

#[tokio::test]
async fn status_is_a_subresource_and_generation_follows_the_spec() {
    let server = FakeApiServer::start().await;
    let datasets: Api<TwinDataset> = Api::namespaced(server.client(), "default");
    datasets.create(&PostParams::default(), &dataset("ada")).await.unwrap();
    let params = PatchParams::default();
    // Status through the main resource is ignored.
    let patched =
        datasets.patch("ada", &params, &Patch::Merge(json!({"status": {"phase": "Ready"}}))).await.unwrap();
    assert!(patched.status.is_none());
    // Status through the subresource changes status only, and not the generation.
    let patched = datasets
        .patch_status(
            "ada",
            &params,
            &Patch::Merge(json!({"status": {"phase": "Running"}, "spec": {"author": {"name": "Eve"}}})),
        )
        .await
        .unwrap();
    assert_eq!(patched.spec.author.name, "Ada");
    assert_eq!(patched.metadata.generation, Some(1));
    assert_eq!(serde_json::to_value(patched.status.unwrap().phase).unwrap(), "Running");
    // Label changes keep the generation; spec changes bump it.
    let labelled = datasets
        .patch("ada", &params, &Patch::Merge(json!({"metadata": {"labels": {"team": "ml"}}})))
        .await
        .unwrap();
    assert_eq!(labelled.metadata.generation, Some(1));
    let changed = datasets
        .patch("ada", &params, &Patch::Merge(json!({"spec": {"author": {"name": "Ada L."}}})))
        .await
        .unwrap();
    assert_eq!(changed.metadata.generation, Some(2));
    assert!(changed.status.is_some(), "a spec write keeps the status");
}

#[tokio::test]
async fn custom_resources_are_validated_against_the_crds() {
    let server = FakeApiServer::start().await;
    let datasets: Api<TwinDataset> = Api::namespaced(server.client(), "default");
    let mut bad = serde_json::to_value(dataset("bad")).unwrap();
    bad["spec"]["sources"][0]["feed"] = json!({"url": "https://example.com/feed"});
    let bad: TwinDataset = serde_json::from_value(bad).unwrap();
    let (code, reason, message) =
        api_status(datasets.create(&PostParams::default(), &bad).await.unwrap_err());
    assert_eq!((code, reason.as_str()), (422, "Invalid"));
    assert!(
        message.contains("each source sets exactly one of feed, git, web, archive, configMap or files"),
        "{message}"
    );
    // Defaults are stored, as the API server stores them.
    let created = datasets.create(&PostParams::default(), &dataset("ada")).await.unwrap();
    assert_eq!(created.spec.chunking.max_tokens, 256);
    // Transition rules see the old object.
    let (code, _, message) = api_status(
        datasets
            .patch(
                "ada",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"output": {"uri": "s3://elsewhere/x"}}})),
            )
            .await
            .unwrap_err(),
    );
    assert_eq!(code, 422);
    assert!(message.contains("output.uri is immutable"), "{message}");
    // Status is validated too.
    let (code, _, message) = api_status(
        datasets
            .patch_status(
                "ada",
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {"phase": "Sleeping"}})),
            )
            .await
            .unwrap_err(),
    );
    assert_eq!(code, 422);
    assert!(message.contains("status.phase"), "{message}");
}

#[tokio::test]
async fn server_side_apply_merges_records_managers_and_detects_conflicts() {
    let server = FakeApiServer::start().await;
    let cms: Api<ConfigMap> = Api::namespaced(server.client(), "default");
    let apply = |manager: &str, force: bool| {
        let mut params = PatchParams::apply(manager);
        params.force = force;
        params
    };
    let applied = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"}, "data": {"a": "1", "b": "2"}});
    let created = cms.patch("cfg", &apply("alice", false), &Patch::Apply(&applied)).await.unwrap();
    let managers: Vec<_> = created
        .metadata
        .managed_fields
        .unwrap()
        .into_iter()
        .map(|m| (m.manager.unwrap(), m.operation.unwrap()))
        .collect();
    assert_eq!(managers, [("alice".to_string(), "Apply".to_string())]);
    // A partial apply by another manager merges.
    let partial =
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"}, "data": {"c": "3"}});
    let merged = cms.patch("cfg", &apply("bob", false), &Patch::Apply(&partial)).await.unwrap();
    assert_eq!(merged.data.unwrap().len(), 3);
    // Changing alice's field is a conflict unless forced.
    let contested = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"}, "data": {"a": "9", "c": "3"}});
    let (code, _, message) =
        api_status(cms.patch("cfg", &apply("bob", false), &Patch::Apply(&contested)).await.unwrap_err());
    assert_eq!(code, 409);
    assert!(message.contains("alice") && message.contains(".data.a"), "{message}");
    let forced = cms.patch("cfg", &apply("bob", true), &Patch::Apply(&contested)).await.unwrap();
    assert_eq!(forced.data.as_ref().unwrap()["a"], "9");
    // Alice stops applying b: it is removed; a is bob's now, so it stays.
    let shrunk = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"}, "data": {}});
    let after = cms.patch("cfg", &apply("alice", false), &Patch::Apply(&shrunk)).await.unwrap();
    let data = after.data.unwrap();
    assert_eq!(data.keys().collect::<Vec<_>>(), ["a", "c"]);
    // Re-applying the same object is a no-op: the resource version does not move.
    let again = cms.patch("cfg", &apply("bob", false), &Patch::Apply(&contested)).await.unwrap();
    let once_more = cms.patch("cfg", &apply("bob", false), &Patch::Apply(&contested)).await.unwrap();
    assert_eq!(again.metadata.resource_version, once_more.metadata.resource_version);
}

#[tokio::test]
async fn apply_to_status_merges_conditions_by_type() {
    let server = FakeApiServer::start().await;
    let datasets: Api<TwinDataset> = Api::namespaced(server.client(), "default");
    datasets.create(&PostParams::default(), &dataset("ada")).await.unwrap();
    let condition = |t: &str, s: &str| json!({"type": t, "status": s, "reason": "Because", "message": "", "lastTransitionTime": "2026-11-28T00:00:00Z"});
    let status = |conditions: Vec<Value>, phase: &str| json!({"apiVersion": "llmtwin.dev/v1alpha1", "kind": "TwinDataset", "metadata": {"name": "ada"}, "status": {"phase": phase, "conditions": conditions}});
    datasets
        .patch_status(
            "ada",
            &PatchParams::apply("operator").force(),
            &Patch::Apply(status(vec![condition("Ready", "False")], "Running")),
        )
        .await
        .unwrap();
    datasets
        .patch_status(
            "ada",
            &PatchParams::apply("auditor").force(),
            &Patch::Apply(status(vec![condition("Audited", "True")], "Running")),
        )
        .await
        .unwrap();
    let both = datasets.get_status("ada").await.unwrap().status.unwrap();
    let types: Vec<&str> = both.conditions.iter().map(|c| c.type_.as_str()).collect();
    assert_eq!(types, ["Ready", "Audited"]);
    let ready = datasets
        .patch_status(
            "ada",
            &PatchParams::apply("operator").force(),
            &Patch::Apply(status(vec![condition("Ready", "True")], "Ready")),
        )
        .await
        .unwrap();
    let conditions = ready.status.unwrap().conditions;
    assert_eq!(conditions.len(), 2);
    assert_eq!(conditions.iter().find(|c| c.type_ == "Ready").unwrap().status, "True");
    assert_eq!(ready.metadata.generation, Some(1));
}

#[tokio::test]
async fn json_patch_and_merge_patch() {
    let server = FakeApiServer::start().await;
    let cms: Api<ConfigMap> = Api::namespaced(server.client(), "default");
    cms.create(&PostParams::default(), &configmap("a", json!({"x": "1", "y": "2"}))).await.unwrap();
    let merged = cms
        .patch("a", &PatchParams::default(), &Patch::Merge(json!({"data": {"x": null, "z": "3"}})))
        .await
        .unwrap();
    assert_eq!(merged.data.unwrap().keys().collect::<Vec<_>>(), ["y", "z"]);
    let ops: json_patch_ops::Ops = json_patch_ops::ops(json!([
        {"op": "test", "path": "/data/y", "value": "2"},
        {"op": "add", "path": "/metadata/finalizers", "value": ["twin/test"]},
    ]));
    let patched = cms.patch("a", &PatchParams::default(), &Patch::<()>::Json(ops)).await.unwrap();
    assert_eq!(patched.metadata.finalizers.unwrap(), ["twin/test"]);
    let failing = json_patch_ops::ops(json!([{"op": "test", "path": "/data/y", "value": "other"}]));
    let (code, _, _) =
        api_status(cms.patch("a", &PatchParams::default(), &Patch::<()>::Json(failing)).await.unwrap_err());
    assert_eq!(code, 422);
}

/// JSON patches as kube's `Patch::Json` takes them.
mod json_patch_ops {
    pub type Ops = json_patch::Patch;
    pub fn ops(value: serde_json::Value) -> Ops {
        serde_json::from_value(value).unwrap()
    }
}

#[tokio::test]
async fn finalizers_hold_deletion_until_removed() {
    let server = FakeApiServer::start().await;
    let cms: Api<ConfigMap> = Api::namespaced(server.client(), "default");
    let mut cm = configmap("held", json!({}));
    cm.metadata.finalizers = Some(vec!["twin/hold".into()]);
    cms.create(&PostParams::default(), &cm).await.unwrap();
    cms.delete("held", &DeleteParams::default()).await.unwrap();
    let marked = cms.get("held").await.unwrap();
    assert!(marked.metadata.deletion_timestamp.is_some());
    assert_eq!(marked.metadata.generation, Some(2), "marking for deletion bumps the generation");
    let (code, _, message) = api_status(
        cms.patch(
            "held",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": ["twin/hold", "twin/new"]}})),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(code, 422, "{message}");
    cms.patch("held", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"finalizers": null}})))
        .await
        .unwrap();
    assert!(cms.get_opt("held").await.unwrap().is_none());
}

#[tokio::test]
async fn owner_references_garbage_collect_dependents() {
    let server = FakeApiServer::start().await;
    let cms: Api<ConfigMap> = Api::namespaced(server.client(), "default");
    let owner_a = cms.create(&PostParams::default(), &configmap("owner-a", json!({}))).await.unwrap();
    let owner_b = cms.create(&PostParams::default(), &configmap("owner-b", json!({}))).await.unwrap();
    let owned = |name: &str, owners: &[&ConfigMap]| {
        let mut cm = configmap(name, json!({}));
        cm.metadata.owner_references = Some(
            owners
                .iter()
                .map(|o| serde_json::from_value(json!({"apiVersion": "v1", "kind": "ConfigMap", "name": o.metadata.name, "uid": o.metadata.uid})).unwrap())
                .collect(),
        );
        cm
    };
    cms.create(&PostParams::default(), &owned("child", &[&owner_a])).await.unwrap();
    cms.create(&PostParams::default(), &owned("shared", &[&owner_a, &owner_b])).await.unwrap();
    let grandchild_owner = cms.get("child").await.unwrap();
    cms.create(&PostParams::default(), &owned("grandchild", &[&grandchild_owner])).await.unwrap();
    cms.delete("owner-a", &DeleteParams::default()).await.unwrap();
    assert!(cms.get_opt("child").await.unwrap().is_none());
    assert!(cms.get_opt("grandchild").await.unwrap().is_none());
    assert!(cms.get_opt("shared").await.unwrap().is_some(), "another owner is alive");
    cms.delete("owner-b", &DeleteParams::default()).await.unwrap();
    assert!(cms.get_opt("shared").await.unwrap().is_none());
}

#[tokio::test]
async fn label_selectors_filter_lists() {
    let server = FakeApiServer::start().await;
    let cms: Api<ConfigMap> = Api::namespaced(server.client(), "default");
    for (name, tier) in [("a", "web"), ("b", "db"), ("c", "web")] {
        let mut cm = configmap(name, json!({}));
        cm.metadata.labels = Some([("tier".to_string(), tier.to_string())].into());
        cms.create(&PostParams::default(), &cm).await.unwrap();
    }
    cms.create(&PostParams::default(), &configmap("plain", json!({}))).await.unwrap();
    let names = |list: kube::api::ObjectList<ConfigMap>| {
        list.items.into_iter().map(|c| c.metadata.name.unwrap()).collect::<Vec<_>>()
    };
    assert_eq!(names(cms.list(&ListParams::default().labels("tier=web")).await.unwrap()), ["a", "c"]);
    assert_eq!(names(cms.list(&ListParams::default().labels("tier!=web")).await.unwrap()), ["b", "plain"]);
    assert_eq!(
        names(cms.list(&ListParams::default().labels("tier in (db, web),tier notin (web)")).await.unwrap()),
        ["b"]
    );
    assert_eq!(names(cms.list(&ListParams::default().labels("!tier")).await.unwrap()), ["plain"]);
    assert_eq!(names(cms.list(&ListParams::default().fields("metadata.name=b")).await.unwrap()), ["b"]);
}

#[tokio::test]
async fn watch_replays_from_a_resource_version_and_streams_changes() {
    let server = FakeApiServer::start().await;
    let cms: Api<ConfigMap> = Api::namespaced(server.client(), "default");
    cms.create(&PostParams::default(), &configmap("before", json!({}))).await.unwrap();
    let list = cms.list(&ListParams::default()).await.unwrap();
    let version = list.metadata.resource_version.unwrap();
    cms.create(&PostParams::default(), &configmap("after", json!({}))).await.unwrap();
    let mut stream = cms.watch(&WatchParams::default().timeout(10), &version).await.unwrap().boxed();
    cms.patch("after", &PatchParams::default(), &Patch::Merge(json!({"data": {"k": "v"}}))).await.unwrap();
    cms.delete("after", &DeleteParams::default()).await.unwrap();
    let mut seen = Vec::new();
    while seen.len() < 3 {
        match tokio::time::timeout(Duration::from_secs(5), stream.try_next()).await.unwrap().unwrap().unwrap()
        {
            WatchEvent::Added(cm) => seen.push(format!("ADDED {}", cm.metadata.name.unwrap())),
            WatchEvent::Modified(cm) => seen.push(format!("MODIFIED {}", cm.metadata.name.unwrap())),
            WatchEvent::Deleted(cm) => seen.push(format!("DELETED {}", cm.metadata.name.unwrap())),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(seen, ["ADDED after", "MODIFIED after", "DELETED after"]);
}

#[tokio::test]
async fn kube_runtime_watchers_survive_closed_watches() {
    let server = FakeApiServer::start().await;
    let cms: Api<ConfigMap> = Api::namespaced(server.client(), "default");
    let mut objects = watcher::watcher(cms.clone(), watcher::Config::default())
        .applied_objects()
        .map_ok(|cm: ConfigMap| cm.metadata.name.unwrap())
        .boxed();
    cms.create(&PostParams::default(), &configmap("one", json!({}))).await.unwrap();
    async fn next(
        stream: &mut futures::stream::BoxStream<'static, Result<String, watcher::Error>>,
    ) -> String {
        tokio::time::timeout(Duration::from_secs(10), stream.try_next()).await.unwrap().unwrap().unwrap()
    }
    assert_eq!(next(&mut objects).await, "one");
    server.close_watches();
    cms.create(&PostParams::default(), &configmap("two", json!({}))).await.unwrap();
    assert_eq!(next(&mut objects).await, "two");
}

#[tokio::test]
async fn faults_fail_the_next_requests_then_clear() {
    let server = FakeApiServer::start().await;
    let cms: Api<ConfigMap> = Api::namespaced(server.client(), "default");
    server.fail_next(Some(Verb::Create), Some("configmaps"), 500, 2);
    for _ in 0..2 {
        let (code, _, message) =
            api_status(cms.create(&PostParams::default(), &configmap("a", json!({}))).await.unwrap_err());
        assert_eq!(code, 500, "{message}");
    }
    cms.create(&PostParams::default(), &configmap("a", json!({}))).await.unwrap();
    server.fail_next(None, None, 409, 1);
    assert_eq!(api_status(cms.get("a").await.unwrap_err()).0, 409);
    cms.get("a").await.unwrap();
    server.set_delay(Duration::from_millis(300));
    let started = std::time::Instant::now();
    cms.get("a").await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(300));
    let gets =
        server.requests().iter().filter(|r| r.verb == Verb::Get && r.name.as_deref() == Some("a")).count();
    assert_eq!(gets, 3);
}

#[tokio::test]
async fn leases_support_leader_election_writes() {
    let server = FakeApiServer::start().await;
    let leases: Api<Lease> = Api::namespaced(server.client(), "twin-system");
    let lease: Lease = serde_json::from_value(json!({"metadata": {"name": "twin-operator"},
        "spec": {"holderIdentity": "pod-a", "leaseDurationSeconds": 15}}))
    .unwrap();
    let created = leases.create(&PostParams::default(), &lease).await.unwrap();
    let mut taken = created.clone();
    taken.spec.as_mut().unwrap().holder_identity = Some("pod-b".into());
    leases.replace("twin-operator", &PostParams::default(), &taken).await.unwrap();
    let (code, _, _) =
        api_status(leases.replace("twin-operator", &PostParams::default(), &created).await.unwrap_err());
    assert_eq!(code, 409, "a stale lease write loses");
}

#[tokio::test]
async fn kubelet_helpers_finish_jobs_with_termination_messages() {
    let server = FakeApiServer::start().await;
    let jobs: Api<Job> = Api::namespaced(server.client(), "twins");
    let job: Job =
        serde_json::from_value(json!({"metadata": {"name": "build"}, "spec": {"template": {"spec": {
        "restartPolicy": "Never", "containers": [{"name": "twin", "image": "twin"}]}}}}))
        .unwrap();
    jobs.create(&PostParams::default(), &job).await.unwrap();
    server.mark_job_succeeded("twins", "build", r#"{"revision":"r1"}"#).unwrap();
    let done = jobs.get_status("build").await.unwrap().status.unwrap();
    assert_eq!(done.succeeded, Some(1));
    assert!(done.conditions.unwrap().iter().any(|c| c.type_ == "Complete" && c.status == "True"));
    let pods: Api<Pod> = Api::namespaced(server.client(), "twins");
    let (_, terminated) = finished_pod_of(&pods, "build").await;
    assert_eq!(terminated.message.as_deref(), Some(r#"{"revision":"r1"}"#));
    // Deleting the Job collects its pod.
    jobs.delete("build", &DeleteParams::default()).await.unwrap();
    assert!(pods.list(&ListParams::default()).await.unwrap().items.is_empty());
    let training: Api<TwinTrainingJob> = Api::namespaced(server.client(), "twins");
    assert!(training.list(&ListParams::default()).await.unwrap().items.is_empty());
}

/// The admin API plays the cluster's controllers over HTTP, as scripts and the README use it.
#[tokio::test]
async fn the_admin_api_finishes_jobs_and_pods_runs_cron_jobs_marks_deployments_and_injects_faults() {
    let server = FakeApiServer::start().await;
    let http = crate::support::gateway::client();
    let admin = |path: &str| format!("{}/admin/{path}", server.url);
    let job: Job =
        serde_json::from_value(json!({"metadata": {"name": "build"}, "spec": {"template": {"spec": {
        "restartPolicy": "Never", "containers": [{"name": "twin", "image": "twin"}]}}}}))
        .unwrap();
    let jobs: Api<Job> = Api::namespaced(server.client(), "twins");
    jobs.create(&PostParams::default(), &job).await.unwrap();
    let answer = http
        .post(admin("jobs/twins/build/fail"))
        .body(r#"{"error":"boom","reason":"NoDocuments"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let failed = jobs.get_status("build").await.unwrap().status.unwrap();
    assert!(failed.conditions.unwrap().iter().any(|c| c.type_ == "Failed" && c.status == "True"));
    let pods: Api<Pod> = Api::namespaced(server.client(), "twins");
    let (pod, terminated) = finished_pod_of(&pods, "build").await;
    assert_eq!(
        (terminated.exit_code, terminated.message.as_deref()),
        (1, Some(r#"{"error":"boom","reason":"NoDocuments"}"#))
    );
    // A pod on its own.
    let pod_name = pod.metadata.name.clone().unwrap();
    http.post(admin(&format!("pods/twins/{pod_name}/succeed"))).body("done").send().await.unwrap();
    let pod = pods.get(&pod_name).await.unwrap().status.unwrap();
    assert_eq!(pod.phase.as_deref(), Some("Succeeded"));
    // An unknown object is a 404 with the reason.
    let missing = http.post(admin("jobs/twins/nobody/succeed")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    assert!(missing.text().await.unwrap().contains("nobody"));
    // A CronJob's run is a Job owned by the CronJob, from its template.
    let cron_jobs: Api<k8s_openapi::api::batch::v1::CronJob> = Api::namespaced(server.client(), "twins");
    let cron_job =
        serde_json::from_value(json!({"metadata": {"name": "refresh"}, "spec": {"schedule": "0 4 * * *",
        "jobTemplate": {"metadata": {"annotations": {"llmtwin.dev/dataset": "paul"}}, "spec": job.spec}}}))
        .unwrap();
    cron_jobs.create(&PostParams::default(), &cron_job).await.unwrap();
    let run = http.post(admin("cronjobs/twins/refresh/run")).send().await.unwrap().text().await.unwrap();
    let run: Value = serde_json::from_str(&run).unwrap();
    let run = jobs.get(run["metadata"]["name"].as_str().unwrap()).await.unwrap();
    assert_eq!(run.metadata.annotations.unwrap()["llmtwin.dev/dataset"], "paul");
    assert_eq!(run.metadata.owner_references.unwrap()[0].kind, "CronJob");
    // A CronJob whose schedule does not parse is refused as the real API server refuses it.
    let bad = serde_json::from_value(json!({"metadata": {"name": "bad"}, "spec": {"schedule": "61 4 * * *",
        "jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}}}}}))
    .unwrap();
    let (code, _, message) = api_status(cron_jobs.create(&PostParams::default(), &bad).await.unwrap_err());
    assert_eq!(code, 422);
    assert!(message.contains("spec.schedule") && message.contains("above maximum (59)"), "{message}");
    // Deployments become available and unavailable.
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> = Api::namespaced(server.client(), "twins");
    let deployment = serde_json::from_value(json!({"metadata": {"name": "engine"}, "spec": {"replicas": 2,
        "selector": {"matchLabels": {"app": "e"}}, "template": {"metadata": {"labels": {"app": "e"}},
        "spec": {"containers": [{"name": "c", "image": "i"}]}}}}))
    .unwrap();
    deployments.create(&PostParams::default(), &deployment).await.unwrap();
    http.post(admin("deployments/twins/engine/available")).send().await.unwrap();
    assert_eq!(deployments.get_status("engine").await.unwrap().status.unwrap().available_replicas, Some(2));
    http.post(admin(
        "deployments/twins/engine/unavailable?reason=CrashLoopBackOff&message=back-off%20restarting",
    ))
    .send()
    .await
    .unwrap();
    let status = deployments.get_status("engine").await.unwrap().status.unwrap();
    let available = status.conditions.unwrap().into_iter().find(|c| c.type_ == "Available").unwrap();
    assert_eq!((status.available_replicas, available.reason.as_deref()), (Some(0), Some("CrashLoopBackOff")));
    // A pod of the Deployment, as the scheduler left it.
    let unschedulable = json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/1 nodes are available"}]});
    let pod: Value = http
        .post(admin("deployments/twins/engine/pods"))
        .body(unschedulable.to_string())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(pod["metadata"]["labels"]["app"], "e", "the template's labels");
    assert_eq!(pod["status"]["conditions"][0]["reason"], "Unschedulable");
    let refused = http.post(admin("deployments/twins/engine/pods")).body("not json").send().await.unwrap();
    assert_eq!(refused.status(), 400);
    // Faults: the next matching request fails with the given status and message, then none.
    let fault = json!({"verb": "patch", "resource": "cronjobs", "code": 422, "message": "schedule refused", "count": 1});
    assert_eq!(http.post(admin("faults")).body(fault.to_string()).send().await.unwrap().status(), 200);
    let patch = Patch::Merge(json!({"spec": {"suspend": true}}));
    let (code, _, message) =
        api_status(cron_jobs.patch("refresh", &PatchParams::default(), &patch).await.unwrap_err());
    assert_eq!((code, message.as_str()), (422, "schedule refused"));
    cron_jobs.patch("refresh", &PatchParams::default(), &patch).await.unwrap();
    let refused = http.post(admin("faults")).body("{\"code\": \"many\"}").send().await.unwrap();
    assert_eq!(refused.status(), 400);
    server.fail_next(Some(Verb::Get), Some("jobs"), 500, 5);
    assert_eq!(http.delete(admin("faults")).send().await.unwrap().status(), 200);
    jobs.get("build").await.expect("cleared faults no longer fail requests");
}

/// kubectl (1.35, from scripts/install-tools) can discover, server-side apply, get with
/// printer columns, explain and delete the twin kinds against the fake API server.
#[tokio::test]
async fn kubectl_applies_gets_and_deletes_twins() {
    let server = FakeApiServer::start().await;
    let kubeconfig = server.write_kubeconfig("kubectl");
    let kubectl = crate::support::repo::kubectl();
    let run = move |args: Vec<&str>| {
        let args: Vec<String> = args.into_iter().map(String::from).collect();
        let (kubectl, kubeconfig) = (kubectl.clone(), kubeconfig.clone());
        tokio::task::spawn_blocking(move || {
            let output = std::process::Command::new(&kubectl)
                .args(&args)
                .env("KUBECONFIG", &kubeconfig)
                .env("HOME", std::env::temp_dir())
                .current_dir(crate::support::repo::root())
                .output()
                .unwrap();
            (
                output.status.success(),
                format!(
                    "{}{}",
                    String::from_utf8_lossy(&output.stdout),
                    String::from_utf8_lossy(&output.stderr)
                ),
            )
        })
    };
    let (ok, out) = run(vec!["apply", "--server-side", "-f", "manifests/examples/"]).await.unwrap();
    assert!(ok, "{out}");
    assert!(out.contains("twindataset.llmtwin.dev/paul serverside-applied"), "{out}");
    let (ok, out) = run(vec!["get", "tds", "-n", "twins"]).await.unwrap();
    assert!(ok, "{out}");
    let header: Vec<&str> = out.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "PHASE", "REVISION", "DOCUMENTS", "CHUNKS", "AGE"]);
    let (ok, out) = run(vec!["get", "twin", "-A"]).await.unwrap();
    assert!(ok, "{out}");
    for name in [
        "twindataset.llmtwin.dev/paul",
        "twintrainingjob.llmtwin.dev/paul-v1",
        "twinendpoint.llmtwin.dev/paul-external",
    ] {
        assert!(out.contains(name), "kubectl get twin lacks {name}:\n{out}");
    }
    let (ok, out) = run(vec!["explain", "twindataset.spec.chunking.maxTokens"]).await.unwrap();
    assert!(ok && out.contains("counted with the embedding model's tokenizer"), "{out}");
    let (ok, out) = run(vec!["delete", "-n", "twins", "ttj", "paul-v1"]).await.unwrap();
    assert!(ok, "{out}");
    assert!(server.get("llmtwin.dev/v1alpha1", "TwinTrainingJob", "twins", "paul-v1").is_none());
    let bad = std::env::temp_dir().join(format!("twin-bad-{}.yaml", server.addr.port()));
    std::fs::write(&bad, "apiVersion: llmtwin.dev/v1alpha1\nkind: TwinTrainingJob\nmetadata: {name: bad, namespace: twins}\nspec: {datasetRef: {name: paul}, baseModel: {uri: hf://a/b}, backend: {}, output: {uri: s3://bucket/x}}\n").unwrap();
    let (ok, out) = run(vec!["apply", "--server-side", "-f", bad.to_str().unwrap()]).await.unwrap();
    assert!(!ok, "{out}");
    assert!(out.contains("set exactly one backend: kubernetes or sagemaker"), "{out}");
}
