//! The Argo CD health checks in `manifests/argocd/argocd-cm.yaml`, run by a real Lua
//! interpreter (Lua 5.1, the dialect of Argo CD's gopher-lua) on objects of every phase.

use mlua::{Lua, Table};
use serde_json::{Value, json};

use crate::support::repo;

fn script(kind: &str) -> String {
    let configmap: Value = serde_saphyr::from_str(&repo::read("manifests/argocd/argocd-cm.yaml")).unwrap();
    configmap["data"][format!("resource.customizations.health.llmtwin.dev_{kind}")]
        .as_str()
        .unwrap_or_else(|| panic!("argocd-cm.yaml has no health check for {kind}"))
        .to_string()
}

/// Runs a health script as Argo CD does: `obj` is a global, the script returns `hs`.
fn health(kind: &str, object: &Value) -> (String, String) {
    let lua = Lua::new();
    lua.globals().set("obj", lua_value(&lua, object)).unwrap();
    let hs: Table = lua.load(script(kind)).set_name(kind).eval().unwrap_or_else(|e| panic!("{kind}: {e}"));
    (hs.get("status").unwrap(), hs.get::<Option<String>>("message").unwrap().unwrap_or_default())
}

/// A JSON value as Argo CD hands it to Lua: objects and arrays as tables (arrays from 1), null
/// as nil. (mlua's serde feature would do this too, but would change the features, and so the
/// build, of crates the binary shares with the tests.)
fn lua_value(lua: &Lua, value: &Value) -> mlua::Value {
    match value {
        Value::Null => mlua::Value::Nil,
        Value::Bool(b) => mlua::Value::Boolean(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => mlua::Value::Integer(i as mlua::Integer),
            None => mlua::Value::Number(n.as_f64().expect("a JSON number")),
        },
        Value::String(s) => mlua::Value::String(lua.create_string(s).unwrap()),
        Value::Array(items) => {
            let table = lua.create_table().unwrap();
            for (index, item) in items.iter().enumerate() {
                table.raw_set(index + 1, lua_value(lua, item)).unwrap();
            }
            mlua::Value::Table(table)
        }
        Value::Object(fields) => {
            let table = lua.create_table().unwrap();
            for (key, field) in fields {
                table.raw_set(key.as_str(), lua_value(lua, field)).unwrap();
            }
            mlua::Value::Table(table)
        }
    }
}

fn object(kind: &str, generation: i64, status: Value) -> Value {
    let mut object = json!({
        "apiVersion": "llmtwin.dev/v1alpha1", "kind": kind,
        "metadata": {"name": "paul", "namespace": "twins", "generation": generation},
        "spec": {}
    });
    if !status.is_null() {
        object["status"] = status;
    }
    object
}

fn ready(status: &str, reason: &str, message: &str) -> Value {
    json!([{"type": "Ready", "status": status, "reason": reason, "message": message,
            "lastTransitionTime": "2026-11-28T06:00:00Z", "observedGeneration": 2}])
}

#[test]
fn every_kind_and_phase_maps_to_the_expected_health() {
    let cases = [
        // kind, status, expected health, words the message must contain
        ("TwinDataset", Value::Null, "Progressing", "Waiting for the operator"),
        ("TwinDataset", json!({"observedGeneration": 1, "phase": "Ready"}), "Progressing", "latest spec"),
        (
            "TwinDataset",
            json!({"observedGeneration": 2, "phase": "Pending", "conditions": ready("False", "Pending", "Build not started")}),
            "Progressing",
            "Build not started",
        ),
        (
            "TwinDataset",
            json!({"observedGeneration": 2, "phase": "Running", "conditions": ready("False", "BuildRunning", "Job paul-build-1a2b is running")}),
            "Progressing",
            "is running",
        ),
        (
            "TwinDataset",
            json!({"observedGeneration": 2, "phase": "Ready", "revision": "r-9f3c", "conditions": ready("True", "RevisionPublished", "")}),
            "Healthy",
            "r-9f3c",
        ),
        (
            "TwinDataset",
            json!({"observedGeneration": 2, "phase": "Ready", "conditions": ready("False", "RefreshFailed", "the nightly refresh failed")}),
            "Degraded",
            "nightly refresh",
        ),
        (
            "TwinDataset",
            json!({"observedGeneration": 2, "phase": "Failed", "conditions": ready("False", "NoDocuments", "no source yielded a document")}),
            "Degraded",
            "no source",
        ),
        (
            "TwinDataset",
            json!({"observedGeneration": 2, "phase": "Pending", "conditions": ready("False", "ConfigMapNotFound", "ConfigMap notes does not exist yet")}),
            "Progressing",
            "notes",
        ),
        (
            "TwinDataset",
            json!({"observedGeneration": 2, "phase": "Failed", "conditions": ready("False", "ChildRejected", "applying CronJob paul-refresh: the API server answered 422 Invalid: spec.schedule")}),
            "Degraded",
            "CronJob paul-refresh",
        ),
        (
            "TwinEndpoint",
            json!({"observedGeneration": 2, "phase": "Idle", "conditions": ready("True", "ScaledToZero", "the engine is scaled to zero while no request comes")}),
            "Healthy",
            "scaled to zero",
        ),
        ("TwinEngine", Value::Null, "Progressing", "Waiting for the operator"),
        (
            "TwinEngine",
            json!({"observedGeneration": 2, "phase": "Unused", "conditions": ready("False", "NoEndpoints", "no TwinEndpoint names TwinEngine \"llama\"")}),
            "Healthy",
            "no TwinEndpoint",
        ),
        (
            "TwinEngine",
            json!({"observedGeneration": 2, "phase": "Ready", "conditions": ready("True", "AdaptersFailed", "2 of 3 adapters loaded; could not load the adapters of eve")}),
            "Healthy",
            "eve",
        ),
        (
            "TwinEngine",
            json!({"observedGeneration": 2, "phase": "Idle", "conditions": ready("True", "ScaledToZero", "scaled to zero while none of its 3 endpoints is asked")}),
            "Healthy",
            "scaled to zero",
        ),
        (
            "TwinEngine",
            json!({"observedGeneration": 2, "phase": "Pending", "conditions": ready("False", "EngineUnschedulable", "0/3 nodes are available")}),
            "Progressing",
            "nodes are available",
        ),
        (
            "TwinEngine",
            json!({"observedGeneration": 2, "phase": "Degraded", "conditions": ready("False", "EngineCrashLoopBackOff", "container vllm is crash-looping")}),
            "Degraded",
            "crash-looping",
        ),
        ("TwinTrainingJob", Value::Null, "Progressing", "Waiting for the operator"),
        ("TwinTrainingJob", json!({"observedGeneration": 2, "phase": "Pending"}), "Progressing", "Pending"),
        (
            "TwinTrainingJob",
            json!({"observedGeneration": 2, "phase": "WaitingForDataset", "conditions": ready("False", "WaitingForDataset", "TwinDataset paul is Running")}),
            "Progressing",
            "paul is Running",
        ),
        (
            "TwinTrainingJob",
            json!({"observedGeneration": 2, "phase": "WaitingForDataset", "conditions": ready("False", "DatasetFailed", "TwinDataset \"paul\" failed: Job paul-build-2 failed: no source yielded a usable document")}),
            "Degraded",
            "no source yielded",
        ),
        (
            "TwinTrainingJob",
            json!({"observedGeneration": 2, "phase": "Running", "conditions": ready("False", "Training", "SFT epoch 2 of 3")}),
            "Progressing",
            "epoch 2",
        ),
        (
            "TwinTrainingJob",
            json!({"observedGeneration": 2, "phase": "Succeeded", "model": {"baseModel": "hf://meta-llama/Llama-3.1-8B", "adapterUri": "s3://b/twins/models/paul-v1/1/adapter"}}),
            "Healthy",
            "s3://b/twins/models/paul-v1/1/adapter",
        ),
        (
            "TwinTrainingJob",
            json!({"observedGeneration": 2, "phase": "Failed", "conditions": ready("False", "TrainerFailed", "CUDA out of memory")}),
            "Degraded",
            "out of memory",
        ),
        (
            "TwinTrainingJob",
            json!({"observedGeneration": 1, "phase": "Succeeded"}),
            "Progressing",
            "latest spec",
        ),
        ("TwinEndpoint", Value::Null, "Progressing", "Waiting for the operator"),
        (
            "TwinEndpoint",
            json!({"observedGeneration": 2, "phase": "Pending", "conditions": ready("False", "WaitingForModel", "TwinTrainingJob paul-v1 has not succeeded")}),
            "Progressing",
            "paul-v1",
        ),
        (
            "TwinEndpoint",
            json!({"observedGeneration": 2, "phase": "Pending", "conditions": ready("False", "DatasetFailed", "TwinDataset \"paul\" failed: no source yielded a usable document")}),
            "Degraded",
            "no source yielded",
        ),
        (
            "TwinEndpoint",
            json!({"observedGeneration": 2, "phase": "Failed", "conditions": ready("False", "TrainingJobFailed", "TwinTrainingJob \"paul-v1\" failed, so there is no model to serve: CUDA out of memory")}),
            "Degraded",
            "CUDA out of memory",
        ),
        (
            "TwinEndpoint",
            json!({"observedGeneration": 2, "phase": "Deploying", "conditions": ready("False", "EngineRollingOut", "engine 0/1 ready, 1 of 1 updated to the current spec")}),
            "Progressing",
            "engine 0/1",
        ),
        (
            "TwinEndpoint",
            json!({"observedGeneration": 2, "phase": "Deploying", "conditions": ready("False", "RollingOutAdapter", "rolling out s3://b/paul-v1/g2/adapter; the previous model serves meanwhile")}),
            "Progressing",
            "previous model serves",
        ),
        // No GPU node yet: a cluster autoscaler may add one, so it is on its way, and says why.
        (
            "TwinEndpoint",
            json!({"observedGeneration": 2, "phase": "Pending", "conditions": ready("False", "EngineUnschedulable", "engine 0/1 ready; pod paul-engine-7c9d-x: 0/3 nodes are available: 3 Insufficient nvidia.com/gpu.")}),
            "Progressing",
            "Insufficient nvidia.com/gpu",
        ),
        (
            "TwinEndpoint",
            json!({"observedGeneration": 2, "phase": "Degraded", "conditions": ready("False", "EngineCrashLoopBackOff", "engine 0/1 ready; pod paul-engine-7c9d-x: container vllm is crash-looping (restarted 4 times, last exit code 1 CUDA error)")}),
            "Degraded",
            "crash-looping",
        ),
        (
            "TwinEndpoint",
            json!({"observedGeneration": 2, "phase": "Degraded", "conditions": ready("False", "GatewayOOMKilled", "gateway 1/2 ready; pod paul-5f7-x: container gateway was OOM-killed (restarted 2 times): raise its memory limit")}),
            "Degraded",
            "OOM-killed",
        ),
        (
            "TwinEndpoint",
            json!({"observedGeneration": 2, "phase": "Degraded", "conditions": ready("False", "GatewayImagePullFailed", "gateway 0/2 ready; pod paul-5f7-x: container gateway cannot pull twin:typo")}),
            "Degraded",
            "cannot pull",
        ),
        (
            "TwinEndpoint",
            json!({"observedGeneration": 2, "phase": "Ready", "url": "http://paul.twins.svc:8080/v1", "conditions": ready("True", "Serving", "")}),
            "Healthy",
            "http://paul.twins.svc:8080/v1",
        ),
        (
            "TwinEndpoint",
            json!({"observedGeneration": 2, "phase": "Degraded", "conditions": ready("False", "EngineRolloutStalled", "engine 1/3 ready; the rollout stalled: ReplicaSet has timed out progressing")}),
            "Degraded",
            "engine 1/3",
        ),
        (
            "TwinEndpoint",
            json!({"observedGeneration": 2, "phase": "Failed", "conditions": ready("False", "ModelNotFound", "TwinTrainingJob paul-v9 does not exist")}),
            "Degraded",
            "paul-v9",
        ),
    ];
    // Suspended means paused on purpose; no twin is, whatever it waits for.
    for kind in ["TwinDataset", "TwinTrainingJob", "TwinEndpoint", "TwinEngine"] {
        assert!(!script(kind).contains("Suspended"), "{kind}'s health check can answer Suspended");
    }
    for (kind, status, expected, words) in cases {
        let (health, message) = health(kind, &object(kind, 2, status.clone()));
        assert_eq!(health, expected, "{kind} with status {status}: message {message:?}");
        assert!(message.contains(words), "{kind} with status {status}: message {message:?} lacks {words:?}");
    }
}

#[test]
fn the_application_installs_the_chart_of_this_repository() {
    let app: Value = serde_saphyr::from_str(&repo::read("manifests/argocd/application.yaml")).unwrap();
    assert_eq!(app["kind"], "Application");
    assert_eq!(app["spec"]["source"]["path"], "charts/twin-operator");
    assert!(repo::path("charts/twin-operator/Chart.yaml").is_file());
    let options: Vec<&str> = app["spec"]["syncPolicy"]["syncOptions"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        options.contains(&"ServerSideApply=true"),
        "the CRDs are too large for client-side apply's annotation"
    );
    // The values it sets are accepted by the chart's values.schema.json.
    let values = serde_json::to_string(&app["spec"]["source"]["helm"]["valuesObject"]).unwrap();
    let values_file = std::env::temp_dir().join(format!("twin-argocd-values-{}.json", std::process::id()));
    std::fs::write(&values_file, values).unwrap();
    let rendered = repo::run_helm(&[
        "template",
        "twin-operator",
        "charts/twin-operator",
        "-f",
        values_file.to_str().unwrap(),
    ]);
    assert!(rendered.contains("replicas: 2"));
    std::fs::remove_file(values_file).ok();
}
