//! Installing on a real API server as users do: the chart with `helm install` (the harness
//! installs it, and the real Deployment controller rolls out the operator onto a kwok node), the
//! CRDs with `kubectl apply -f crds/`, `manifests/install.yaml`, and the README's examples with
//! `kubectl apply`. The API server's own CRD validation (schema, CEL compilation and cost budget)
//! is what passes or refuses them.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::Api;

use crate::support::control_plane::{self, RELEASE, RELEASE_NAMESPACE};

const CRDS: [&str; 3] =
    ["twindatasets.llmtwin.dev", "twintrainingjobs.llmtwin.dev", "twinendpoints.llmtwin.dev"];

#[tokio::test]
async fn helm_install_deploys_the_chart_and_the_operator_rolls_out() {
    let plane = control_plane::shared();
    assert!(plane.helm_install_output.contains("STATUS: deployed"), "{}", plane.helm_install_output);
    let client = plane.admin().await;
    let deployment =
        Api::<Deployment>::namespaced(client.clone(), RELEASE_NAMESPACE).get(RELEASE).await.unwrap();
    let status = deployment.status.unwrap_or_default();
    assert_eq!(status.available_replicas, Some(1), "the operator's Deployment: {status:?}");
    for name in CRDS {
        let crd = Api::<CustomResourceDefinition>::all(client.clone()).get(name).await.unwrap();
        let conditions = crd.status.and_then(|s| s.conditions).unwrap_or_default();
        assert!(
            conditions.iter().any(|c| c.type_ == "Established" && c.status == "True"),
            "{name} is not established: {conditions:?}"
        );
    }
}

#[tokio::test]
async fn kubectl_applies_the_crds_and_the_install_manifest() {
    let plane = control_plane::shared();
    // Over the chart's own copies, which must be the same objects.
    let applied = plane.run_kubectl(&["apply", "-f", "crds/"]);
    for name in CRDS {
        assert!(
            applied.contains(&format!("customresourcedefinition.apiextensions.k8s.io/{name} ")),
            "kubectl apply -f crds/ said: {applied}"
        );
    }
    // Every object of install.yaml through the API server's validation and admission; dry-run,
    // as the chart's release already owns them.
    let install = plane.run_kubectl(&["apply", "--dry-run=server", "-f", "manifests/install.yaml"]);
    for object in [
        "namespace/twin-system",
        "deployment.apps/twin-operator",
        "clusterrole.rbac.authorization.k8s.io/twin-operator",
    ] {
        assert!(install.contains(object), "kubectl apply -f manifests/install.yaml said: {install}");
    }
}

#[tokio::test]
async fn the_readme_examples_apply_with_kubectl_and_list_as_twins() {
    let plane = control_plane::shared();
    // The examples name their namespace, `twins`, as the README applies them; no other test uses it.
    let namespace = "twins";
    plane.run_kubectl(&["create", "namespace", namespace]);
    let applied = plane.run_kubectl(&["apply", "-f", "manifests/examples/"]);
    for object in [
        "twindataset.llmtwin.dev/paul",
        "twintrainingjob.llmtwin.dev/paul-v1",
        "twintrainingjob.llmtwin.dev/paul-v1-sagemaker",
        "twinendpoint.llmtwin.dev/paul",
        "twinendpoint.llmtwin.dev/paul-external",
        "twinendpoint.llmtwin.dev/paula",
        "twinengine.llmtwin.dev/llama-8b",
    ] {
        assert!(applied.contains(&format!("{object} created")), "kubectl apply said: {applied}");
    }
    // The category and short names: `kubectl get twin` lists all four kinds.
    let listed = plane.run_kubectl(&["get", "twin", "-n", namespace, "-o", "name"]);
    assert_eq!(listed.lines().count(), 7, "kubectl get twin listed: {listed}");
    let short = plane.run_kubectl(&["get", "tds,ttj,tep,teng", "-n", namespace, "-o", "name"]);
    assert_eq!(short.lines().count(), 7, "kubectl get tds,ttj,tep,teng listed: {short}");
}

/// The NetworkPolicy reaches the API server at the addresses the cluster lists for it (the
/// `kubernetes` Service's EndpointSlice, which helm reads when it renders against a cluster), and
/// the API server accepts it. This control plane's API server listens on a loopback address,
/// which an EndpointSlice may not hold, so the test writes the slice a cluster's API server
/// keeps, with a documentation address.
#[tokio::test]
async fn the_network_policy_allows_the_api_server_at_the_addresses_the_cluster_lists() {
    use k8s_openapi::api::discovery::v1::EndpointSlice;
    use kube::api::{Patch, PatchParams};
    let plane = control_plane::shared();
    let slice: EndpointSlice = serde_json::from_value(serde_json::json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"kubernetes.io/service-name": "kubernetes"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["192.0.2.10"], "conditions": {"ready": true}}],
        "ports": [{"name": "https", "port": 6443, "protocol": "TCP"}]
    }))
    .unwrap();
    Api::<EndpointSlice>::namespaced(plane.admin().await, "default")
        .patch("kubernetes", &PatchParams::apply("kube-apiserver").force(), &Patch::Apply(&slice))
        .await
        .unwrap();
    let rendered = plane.run_helm(&[
        "template",
        RELEASE,
        "charts/twin-operator",
        "--namespace",
        RELEASE_NAMESPACE,
        "--dry-run=server",
        "--show-only",
        "templates/networkpolicy.yaml",
        "--set",
        "networkPolicy.enabled=true",
    ]);
    let policy: serde_json::Value = serde_saphyr::from_str(&rendered).unwrap();
    let egress = policy["spec"]["egress"].as_array().unwrap();
    let api_server = egress
        .iter()
        .find(|rule| rule["to"][0]["ipBlock"]["cidr"] == "192.0.2.10/32")
        .unwrap_or_else(|| panic!("no egress to the API server's address: {rendered}"));
    assert_eq!(api_server["ports"], serde_json::json!([{"port": 6443, "protocol": "TCP"}]));
    // Only AWS's rule reaches further, and only on 443.
    let wide: Vec<&serde_json::Value> =
        egress.iter().filter(|rule| rule["to"][0]["ipBlock"]["cidr"] == "0.0.0.0/0").collect();
    assert_eq!(wide.len(), 1, "{rendered}");
    assert_eq!(wide[0]["ports"], serde_json::json!([{"port": 443, "protocol": "TCP"}]));
    let applied = plane
        .kubectl_with_input(&["apply", "--dry-run=server", "-f", "-"], &rendered)
        .unwrap_or_else(|e| panic!("the API server refuses the NetworkPolicy: {e}"));
    assert!(applied.contains("networkpolicy.networking.k8s.io/twin-operator"), "{applied}");
}
