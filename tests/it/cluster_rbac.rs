//! The chart's RBAC rules held to what the operator really calls: the other tests run the
//! operator as the chart's ServiceAccount on the real control plane, whose API server writes
//! every request of that account to an audit log (`TWIN_CONTROL_PLANE_AUDIT`, set by
//! `scripts/test`); this test, run after them, reads the log. A request the API server refused
//! (403) is a verb the chart forgot; a verb the chart grants that no test called is one to cut,
//! or a path no test covers.

use std::collections::BTreeSet;
use std::process::Command;

use serde_json::Value;

use crate::support::control_plane::{RELEASE, RELEASE_NAMESPACE};
use crate::support::repo;

const OPERATOR: &str = "system:serviceaccount:twin-system:twin-operator";

/// `group/resource[/subresource] verb`, as RBAC rules name them.
fn permission(group: &str, resource: &str, verb: &str) -> String {
    let group = if group.is_empty() { "core" } else { group };
    format!("{group}/{resource} {verb}")
}

/// Every permission the chart grants the operator's account, with SageMaker credentials named
/// (as the SageMaker tests name them).
fn granted() -> BTreeSet<String> {
    let credentials = r#"rbac.sagemakerCredentials=[{"namespace":"twins","names":["aws-training"]}]"#;
    let rendered = Command::new(repo::helm())
        .args(["template", RELEASE, "charts/twin-operator", "--namespace", RELEASE_NAMESPACE])
        .args(["--show-only", "templates/rbac.yaml", "--set-json", credentials])
        .current_dir(repo::root())
        .output()
        .expect("helm template");
    assert!(rendered.status.success(), "{}", String::from_utf8_lossy(&rendered.stderr));
    let documents: Vec<Value> =
        serde_saphyr::from_str_multiple(&String::from_utf8(rendered.stdout).unwrap()).unwrap();
    let mut granted = BTreeSet::new();
    for document in documents.iter().filter(|d| matches!(d["kind"].as_str(), Some("ClusterRole" | "Role"))) {
        for rule in document["rules"].as_array().into_iter().flatten() {
            let strings = |key: &str| -> Vec<String> {
                rule[key].as_array().into_iter().flatten().map(|v| v.as_str().unwrap().to_string()).collect()
            };
            for group in strings("apiGroups") {
                for resource in strings("resources") {
                    for verb in strings("verbs") {
                        granted.insert(permission(&group, &resource, &verb));
                    }
                }
            }
        }
    }
    granted
}

#[test]
#[ignore = "run by scripts/test after the other tests, on the audit log they leave"]
fn the_chart_grants_the_operator_exactly_what_it_calls() {
    let path = std::env::var("TWIN_CONTROL_PLANE_AUDIT").expect("TWIN_CONTROL_PLANE_AUDIT: the audit log");
    let log = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    let mut called = BTreeSet::new();
    let mut refused = BTreeSet::new();
    for line in log.lines() {
        let event: Value = serde_json::from_str(line).unwrap();
        let object = &event["objectRef"];
        if event["user"]["username"] != OPERATOR || object.is_null() {
            continue;
        }
        let mut resource = object["resource"].as_str().unwrap_or_default().to_string();
        if let Some(subresource) = object["subresource"].as_str() {
            resource = format!("{resource}/{subresource}");
        }
        let group = object["apiGroup"].as_str().unwrap_or_default();
        let verb = event["verb"].as_str().unwrap_or_default();
        let code = event["responseStatus"]["code"].as_i64().unwrap_or_default();
        if code == 403 {
            refused.insert(format!(
                "{} ({})",
                permission(group, &resource, verb),
                event["responseStatus"]["message"]
            ));
            continue;
        }
        called.insert(permission(group, &resource, verb));
        // A server-side apply that creates its object is authorized as a create too.
        if verb == "patch" && code == 201 {
            called.insert(permission(group, &resource, "create"));
        }
    }
    assert!(!called.is_empty(), "the audit log {path} has no request of {OPERATOR}");
    assert!(refused.is_empty(), "the API server refused the operator (the chart lacks these): {refused:#?}");
    let granted = granted();
    let unused: Vec<&String> = granted.difference(&called).collect();
    let ungranted: Vec<&String> = called.difference(&granted).collect();
    assert!(
        unused.is_empty(),
        "the chart grants what no test made the operator call: cut it, or cover the path that needs it: {unused:#?}\n(called: {called:#?})"
    );
    assert!(ungranted.is_empty(), "called without a rule of the chart: {ungranted:#?}");
}
