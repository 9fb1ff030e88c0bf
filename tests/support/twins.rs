//! Applying twin documents (the examples) as `kubectl apply --server-side` would.

use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use serde_json::{Value, json};

/// Server-side applies every twin document of a YAML file into `namespace` as `manager`.
pub async fn apply_file(client: &kube::Client, namespace: &str, path: &std::path::Path, manager: &str) {
    let documents: Vec<Value> =
        serde_saphyr::from_str_multiple(&std::fs::read_to_string(path).unwrap()).unwrap();
    for mut document in documents {
        document["metadata"]["namespace"] = json!(namespace);
        apply_value(client, namespace, &document, manager).await;
    }
}

/// Server-side applies one document (with `force`, as `kubectl apply --server-side
/// --force-conflicts`) into `namespace` as `manager`.
pub async fn apply_value(client: &kube::Client, namespace: &str, document: &Value, manager: &str) {
    let (group, version) = document["apiVersion"].as_str().unwrap().split_once('/').expect("a group/version");
    let gvk = GroupVersionKind::gvk(group, version, document["kind"].as_str().unwrap());
    let api: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), namespace, &ApiResource::from_gvk(&gvk));
    let name = document["metadata"]["name"].as_str().unwrap().to_string();
    api.patch(&name, &PatchParams::apply(manager).force(), &Patch::Apply(document))
        .await
        .unwrap_or_else(|e| panic!("applying {} {name}: {e}", gvk.kind));
}
