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
    ] {
        assert!(applied.contains(&format!("{object} created")), "kubectl apply said: {applied}");
    }
    // The category and short names: `kubectl get twin` lists all three kinds.
    let listed = plane.run_kubectl(&["get", "twin", "-n", namespace, "-o", "name"]);
    assert_eq!(listed.lines().count(), 5, "kubectl get twin listed: {listed}");
    let short = plane.run_kubectl(&["get", "tds,ttj,tep", "-n", namespace, "-o", "name"]);
    assert_eq!(short.lines().count(), 5, "kubectl get tds,ttj,tep listed: {short}");
}
