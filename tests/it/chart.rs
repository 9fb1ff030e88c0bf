//! The Helm chart: `helm lint` passes, every rendered object parses into its k8s-openapi type
//! with no unknown field, the operator runs locked down, RBAC lists exactly the verbs used,
//! the monitoring assets are installed as written, and `values.schema.json` refuses bad values.

use std::process::Command;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::support::repo;

const CHART: &str = "charts/twin-operator";

fn render(set: &[&str]) -> Vec<Value> {
    let mut args = vec!["template", "twin", CHART, "--namespace", "twin-system"];
    for value in set {
        args.extend(["--set", value]);
    }
    let text = repo::run_helm(&args);
    let documents: Vec<Value> = serde_saphyr::from_str_multiple(&text).expect("helm renders YAML");
    documents.into_iter().filter(|d| !d.is_null()).collect()
}

/// Parses into `T` and back: equal JSON means every field is known to the Kubernetes type.
fn typed<T: DeserializeOwned + Serialize>(document: &Value) -> T {
    let typed: T = serde_json::from_value(document.clone())
        .unwrap_or_else(|e| panic!("{} does not parse: {e}", document["kind"]));
    let back = serde_json::to_value(&typed).unwrap();
    assert_eq!(
        &back, document,
        "{} {} has fields its type does not know",
        document["kind"], document["metadata"]["name"]
    );
    typed
}

/// Every object parses into its type; returns the kinds in order.
fn check_all_typed(documents: &[Value]) -> Vec<String> {
    let mut kinds = Vec::new();
    for document in documents {
        let kind = document["kind"].as_str().expect("every object has a kind");
        match kind {
            "Namespace" => drop(typed::<Namespace>(document)),
            "ServiceAccount" => drop(typed::<ServiceAccount>(document)),
            "CustomResourceDefinition" => drop(typed::<CustomResourceDefinition>(document)),
            "ClusterRole" => drop(typed::<ClusterRole>(document)),
            "ClusterRoleBinding" => drop(typed::<ClusterRoleBinding>(document)),
            "Role" => drop(typed::<Role>(document)),
            "RoleBinding" => drop(typed::<RoleBinding>(document)),
            "Service" => drop(typed::<Service>(document)),
            "Deployment" => drop(typed::<Deployment>(document)),
            "NetworkPolicy" => drop(typed::<NetworkPolicy>(document)),
            "ConfigMap" => drop(typed::<ConfigMap>(document)),
            "PrometheusRule" => {
                assert_eq!(document["apiVersion"], "monitoring.coreos.com/v1");
                assert!(document["spec"]["groups"].as_array().is_some_and(|g| !g.is_empty()));
            }
            "ServiceMonitor" => {
                assert_eq!(document["apiVersion"], "monitoring.coreos.com/v1");
                assert_eq!(document["spec"]["endpoints"][0]["port"], "http-metrics");
            }
            other => panic!("the chart renders an unexpected kind {other}"),
        }
        kinds.push(kind.to_string());
    }
    kinds
}

fn find<'a>(documents: &'a [Value], kind: &str) -> Vec<&'a Value> {
    documents.iter().filter(|d| d["kind"] == kind).collect()
}

#[test]
fn helm_lint_passes() {
    let output = repo::run_helm(&["lint", "--strict", CHART]);
    assert!(output.contains("0 chart(s) failed"), "{output}");
    repo::run_helm(&[
        "lint",
        "--strict",
        CHART,
        "--set",
        "rbac.clusterWide=false,serviceMonitor.enabled=true,networkPolicy.enabled=true,networkPolicy.apiServer.cidrs[0]=10.0.0.1/32",
    ]);
}

#[test]
fn default_render_parses_into_kubernetes_types() {
    let documents = render(&[]);
    let mut kinds = check_all_typed(&documents);
    kinds.sort();
    assert_eq!(
        kinds,
        [
            "ClusterRole",
            "ClusterRoleBinding",
            "CustomResourceDefinition",
            "CustomResourceDefinition",
            "CustomResourceDefinition",
            "CustomResourceDefinition",
            "Deployment",
            "Role",
            "RoleBinding",
            "Service",
            "ServiceAccount"
        ]
    );
    for crd in find(&documents, "CustomResourceDefinition") {
        assert_eq!(
            crd["metadata"]["annotations"]["helm.sh/resource-policy"], "keep",
            "CRDs survive helm uninstall"
        );
    }
}

#[test]
fn every_optional_object_renders_and_parses() {
    let documents = render(&[
        "rbac.clusterWide=false",
        "serviceMonitor.enabled=true",
        "networkPolicy.enabled=true",
        "networkPolicy.apiServer.cidrs[0]=172.18.0.2/32",
        "networkPolicy.apiServer.ports[0]=6443",
        "networkPolicy.awsCIDRs=null",
        "namespace.create=true",
        "monitoring.alerts=true",
        "monitoring.dashboard=true",
    ]);
    let kinds = check_all_typed(&documents);
    for kind in ["ServiceMonitor", "NetworkPolicy", "Namespace", "PrometheusRule", "ConfigMap"] {
        assert!(kinds.iter().any(|k| k == kind), "{kind} missing from {kinds:?}");
    }
    assert!(
        !kinds.iter().any(|k| k.starts_with("Cluster")),
        "namespaced mode grants nothing cluster-wide: {kinds:?}"
    );
    let policy: NetworkPolicy = typed(find(&documents, "NetworkPolicy")[0]);
    let spec = policy.spec.unwrap();
    assert_eq!(spec.policy_types.unwrap(), ["Ingress", "Egress"]);
    // DNS, the API server, then the shared engines' agents alone: with awsCIDRs emptied, no
    // other host is reachable.
    let egress = spec.egress.unwrap();
    assert_eq!(egress.len(), 3, "{egress:?}");
    let agents = &egress[2];
    let peer = &agents.to.as_ref().unwrap()[0];
    assert_eq!(
        peer.pod_selector.as_ref().unwrap().match_labels.as_ref().unwrap()["app.kubernetes.io/name"],
        "twin-engine"
    );
    assert!(agents.ports.as_ref().unwrap().iter().all(|p| p.port == Some(IntOrString::Int(8001))));
    let api_server = &egress[1];
    let cidrs: Vec<&str> =
        api_server.to.as_ref().unwrap().iter().map(|p| p.ip_block.as_ref().unwrap().cidr.as_str()).collect();
    assert_eq!(cidrs, ["172.18.0.2/32"]);
    assert_eq!(api_server.ports.as_ref().unwrap()[0].port, Some(IntOrString::Int(6443)));
    // Without addresses and without a cluster to read them from, the chart says what to set.
    let output = std::process::Command::new(repo::helm())
        .args(["template", "twin-operator", CHART, "--set", "networkPolicy.enabled=true"])
        .current_dir(repo::root())
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("networkPolicy.apiServer.cidrs"), "{output:?}");
    let without_crds = render(&["crds.install=false"]);
    assert!(find(&without_crds, "CustomResourceDefinition").is_empty());
}

#[test]
fn the_operator_runs_locked_down() {
    let documents = render(&[]);
    let deployment: Deployment = typed(find(&documents, "Deployment")[0]);
    let pod = deployment.spec.unwrap().template.spec.unwrap();
    let pod_security = pod.security_context.unwrap();
    assert_eq!(pod_security.run_as_non_root, Some(true));
    assert_eq!(pod_security.seccomp_profile.unwrap().type_, "RuntimeDefault");
    assert!(pod_security.run_as_user.is_some_and(|uid| uid != 0));
    let [container] = &pod.containers[..] else { panic!("one container expected") };
    assert_eq!(container.args.as_ref().unwrap()[0], "operator");
    let security = container.security_context.clone().unwrap();
    assert_eq!(security.read_only_root_filesystem, Some(true));
    assert_eq!(security.allow_privilege_escalation, Some(false));
    assert_eq!(security.capabilities.unwrap().drop.unwrap(), ["ALL"]);
    let resources = container.resources.clone().unwrap();
    for kind in ["cpu", "memory"] {
        assert!(resources.requests.as_ref().unwrap().contains_key(kind), "request for {kind}");
    }
    assert!(resources.limits.as_ref().unwrap().contains_key("memory"), "memory limit");
    let liveness = container.liveness_probe.clone().unwrap().http_get.unwrap();
    let readiness = container.readiness_probe.clone().unwrap().http_get.unwrap();
    assert_eq!(liveness.path.as_deref(), Some("/healthz"));
    assert_eq!(readiness.path.as_deref(), Some("/readyz"));
    let service: Service = typed(find(&documents, "Service")[0]);
    let port = &service.spec.unwrap().ports.unwrap()[0];
    assert_eq!(port.name.as_deref(), Some("http-metrics"));
    assert!(container.ports.as_ref().unwrap().iter().any(|p| p.name.as_deref() == Some("http-metrics")));
}

fn rule(groups: &[&str], resources: &[&str], verbs: &[&str]) -> PolicyRule {
    let strings = |v: &[&str]| Some(v.iter().map(|s| s.to_string()).collect());
    PolicyRule {
        api_groups: strings(groups),
        resources: strings(resources),
        verbs: verbs.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

/// Widening RBAC must be a deliberate change of this list (tests/it/cluster_rbac.rs holds it
/// to what the operator calls on a real API server).
fn expected_rules() -> Vec<PolicyRule> {
    // Applied and pruned, never read one by one or watched.
    let applied = ["list", "create", "patch", "delete"];
    vec![
        rule(
            &["llmtwin.dev"],
            &["twindatasets", "twintrainingjobs", "twinengines"],
            &["get", "list", "watch"],
        ),
        rule(&["llmtwin.dev"], &["twinendpoints"], &["list", "watch"]),
        rule(&["llmtwin.dev"], &["twintrainingjobs"], &["patch"]),
        rule(
            &["llmtwin.dev"],
            &["twindatasets/status", "twintrainingjobs/status", "twinendpoints/status", "twinengines/status"],
            &["patch"],
        ),
        rule(&["batch"], &["jobs"], &["get", "list", "watch", "create", "patch"]),
        rule(&["batch"], &["cronjobs"], &applied),
        // A shared engine's are watched and pruned; the others go with their owner.
        rule(&[""], &["configmaps"], &["get", "list", "watch", "create", "patch", "delete"]),
        // A shared engine's are watched.
        rule(&[""], &["services"], &["list", "watch", "create", "patch", "delete"]),
        rule(&[""], &["pods"], &["list", "watch"]),
        rule(&["apps"], &["deployments"], &["get", "list", "watch", "create", "patch", "delete"]),
        rule(&["autoscaling"], &["horizontalpodautoscalers"], &applied),
        rule(&["policy"], &["poddisruptionbudgets"], &applied),
        rule(&["monitoring.coreos.com"], &["servicemonitors"], &applied),
        rule(&["keda.sh"], &["scaledobjects"], &applied),
        rule(&["events.k8s.io"], &["events"], &["create", "patch"]),
    ]
}

#[test]
fn rbac_grants_exactly_the_verbs_the_operator_uses() {
    let documents = render(&[]);
    let cluster_role: ClusterRole = typed(find(&documents, "ClusterRole")[0]);
    assert_eq!(cluster_role.rules.unwrap(), expected_rules());
    let lease_role: Role = typed(find(&documents, "Role")[0]);
    assert_eq!(lease_role.metadata.namespace.as_deref(), Some("twin-system"));
    assert_eq!(
        lease_role.rules.unwrap(),
        [rule(&["coordination.k8s.io"], &["leases"], &["get", "create", "update"])]
    );
    let binding: ClusterRoleBinding = typed(find(&documents, "ClusterRoleBinding")[0]);
    let subject = &binding.subjects.unwrap()[0];
    assert_eq!(
        (subject.kind.as_str(), subject.namespace.as_deref()),
        ("ServiceAccount", Some("twin-system"))
    );
    assert!(!serde_json::to_string(&documents).unwrap().contains("\"*\""), "no wildcard in any rule");
    assert!(!serde_json::to_string(&documents).unwrap().contains("secrets"), "no Secret by default");

    let namespaced = render(&["rbac.clusterWide=false", "watchNamespace=twins"]);
    let roles: Vec<Role> = find(&namespaced, "Role").into_iter().map(typed).collect();
    let twins_role = roles
        .iter()
        .find(|r| r.metadata.namespace.as_deref() == Some("twins"))
        .expect("a Role in the watched namespace");
    assert_eq!(twins_role.rules.clone().unwrap(), expected_rules());
    let deployment = find(&namespaced, "Deployment")[0];
    let env = deployment["spec"]["template"]["spec"]["containers"][0]["env"].as_array().unwrap();
    assert!(env.iter().any(|e| e["name"] == "TWIN_WATCH_NAMESPACE" && e["value"] == "twins"));
}

/// SageMaker credentials: `get` on the named Secrets only, in their namespaces.
#[test]
fn sagemaker_credentials_are_readable_by_name_in_their_namespace_only() {
    let documents = render(&[
        "rbac.sagemakerCredentials[0].namespace=twins",
        "rbac.sagemakerCredentials[0].names[0]=aws-sagemaker",
        "rbac.sagemakerCredentials[1].namespace=research",
        "rbac.sagemakerCredentials[1].names[0]=aws-a",
        "rbac.sagemakerCredentials[1].names[1]=aws-b",
    ]);
    let roles: Vec<Role> = find(&documents, "Role").into_iter().map(typed).collect();
    let secrets: Vec<(Option<&str>, Vec<PolicyRule>)> = roles
        .iter()
        .filter(|r| r.metadata.name.as_deref().is_some_and(|n| n.ends_with("-sagemaker-credentials")))
        .map(|r| (r.metadata.namespace.as_deref(), r.rules.clone().unwrap()))
        .collect();
    let named = |names: &[&str]| PolicyRule {
        resource_names: Some(names.iter().map(|n| n.to_string()).collect()),
        ..rule(&[""], &["secrets"], &["get"])
    };
    assert_eq!(
        secrets,
        [
            (Some("twins"), vec![named(&["aws-sagemaker"])]),
            (Some("research"), vec![named(&["aws-a", "aws-b"])])
        ]
    );
    let bindings: Vec<RoleBinding> = find(&documents, "RoleBinding").into_iter().map(typed).collect();
    assert_eq!(bindings.iter().filter(|b| b.role_ref.name.ends_with("-sagemaker-credentials")).count(), 2);
    let cluster_role: ClusterRole = typed(find(&documents, "ClusterRole")[0]);
    assert_eq!(cluster_role.rules.unwrap(), expected_rules(), "no Secret in the ClusterRole");
}

#[test]
fn the_chart_installs_the_monitoring_assets_as_manifests_monitoring_has_them() {
    for file in ["twin-alerts.yaml", "twin-dashboard.json"] {
        assert_eq!(
            repo::read(&format!("{CHART}/files/{file}")),
            repo::read(&format!("manifests/monitoring/{file}")),
            "{CHART}/files/{file} drifted from manifests/monitoring/: run scripts/generate"
        );
    }
    let documents =
        render(&["monitoring.alerts=true", "monitoring.dashboard=true", "monitoring.labels.release=kps"]);
    let rule = find(&documents, "PrometheusRule")[0];
    let wanted: Value = serde_saphyr::from_str(&repo::read("manifests/monitoring/twin-alerts.yaml")).unwrap();
    assert_eq!(
        rule["spec"], wanted["spec"],
        "the alerts are installed as written, Prometheus's templates untouched"
    );
    assert_eq!(rule["metadata"]["labels"]["release"], "kps");
    let dashboard: ConfigMap = typed(find(&documents, "ConfigMap")[0]);
    assert_eq!(dashboard.metadata.labels.as_ref().unwrap()["grafana_dashboard"], "1");
    let json = &dashboard.data.unwrap()["twin-dashboard.json"];
    assert_eq!(json, &repo::read("manifests/monitoring/twin-dashboard.json"));
    let defaults = render(&[]);
    assert!(
        find(&defaults, "PrometheusRule").is_empty() && find(&defaults, "ConfigMap").is_empty(),
        "off by default"
    );
}

#[test]
fn values_schema_refuses_bad_values() {
    for bad in [
        "replicaCount=-1",
        "operator.logFormat=xml",
        "image.pullPolicy=Sometimes",
        "rbac.clusterwide=false",
        "crawler.allowNetworks[0]=10.0.0.0",
        "monitoring.alert=true",
    ] {
        let output = Command::new(repo::helm())
            .args(["template", "twin", CHART, "--set", bad])
            .current_dir(repo::root())
            .output()
            .unwrap();
        assert!(!output.status.success(), "helm accepted --set {bad}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("values don't meet the specifications of the schema"),
            "--set {bad}: {stderr}"
        );
    }
}

#[test]
fn notes_tell_the_user_what_to_do_next() {
    let notes = repo::run_helm(&["install", "twin", CHART, "--dry-run=client", "--namespace", "twin-system"]);
    assert!(notes.contains("kubectl get twin"), "{notes}");
    assert!(notes.contains("rollout status deployment/twin-twin-operator"), "{notes}");
}

/// Every variable the chart sets on the operator is one `twin operator` reads.
#[test]
fn the_deployment_sets_only_variables_the_operator_reads() {
    let documents = render(&[]);
    let deployment = find(&documents, "Deployment")[0];
    let help = Command::new(env!("CARGO_BIN_EXE_twin")).args(["operator", "--help"]).output().unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    let env = deployment["spec"]["template"]["spec"]["containers"][0]["env"].as_array().unwrap();
    for variable in env.iter().map(|e| e["name"].as_str().unwrap()) {
        let known = variable == "RUST_LOG" || help.contains(&format!("[env: {variable}="));
        assert!(known, "the chart sets {variable}, which `twin operator` does not read:\n{help}");
    }
}

/// The release workflow pushes the images and the chart the chart's defaults name: the twin
/// image at the chart's appVersion (its empty tag), the trainer image at the same version; and
/// the workflows pass actionlint and both Dockerfiles hadolint.
#[test]
fn the_release_pushes_the_images_the_chart_names_and_passes_its_linters() {
    let workflow: Value =
        serde_saphyr::from_str(&repo::read(".github/workflows/release.yaml")).expect("the workflow is YAML");
    let registry = workflow["env"]["REGISTRY"].as_str().expect("env.REGISTRY");
    let pushed: Vec<&str> = workflow["jobs"]["images"]["strategy"]["matrix"]["include"]
        .as_array()
        .expect("one matrix entry per image")
        .iter()
        .map(|entry| entry["image"].as_str().unwrap())
        .collect();
    assert_eq!(pushed, ["twin", "twin-trainer"]);
    let tags = workflow["jobs"]["images"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|step| step["with"]["tags"].as_str());
    assert_eq!(tags, Some("${{ env.REGISTRY }}/${{ matrix.image }}:${{ env.VERSION }}"));

    let chart: Value = serde_saphyr::from_str(&repo::read(&format!("{CHART}/Chart.yaml"))).unwrap();
    let version = chart["appVersion"].as_str().unwrap();
    let values: Value = serde_saphyr::from_str(&repo::read(&format!("{CHART}/values.yaml"))).unwrap();
    assert_eq!(values["image"]["repository"], format!("{registry}/twin").as_str());
    assert_eq!(values["image"]["tag"], "", "the twin image's tag is the chart's appVersion");
    assert_eq!(values["workloads"]["trainerImage"], format!("{registry}/twin-trainer:{version}").as_str());

    let workflows = repo::files_with_extension(".github/workflows", "yaml");
    assert!(workflows.len() >= 2, "{workflows:?}");
    let lint = Command::new(repo::installed_tool("actionlint"))
        .arg("-no-color")
        .args(&workflows)
        .current_dir(repo::root())
        .output()
        .expect("actionlint runs");
    assert!(lint.status.success(), "actionlint:\n{}", String::from_utf8_lossy(&lint.stdout));
    for dockerfile in ["Dockerfile", "trainer/Dockerfile"] {
        let lint = Command::new(repo::installed_tool("hadolint"))
            .args(["--no-color", dockerfile])
            .current_dir(repo::root())
            .output()
            .expect("hadolint runs");
        assert!(lint.status.success(), "hadolint {dockerfile}:\n{}", String::from_utf8_lossy(&lint.stdout));
    }
}
