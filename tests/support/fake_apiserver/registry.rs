//! The resource types the fake API server serves: the built-in kinds the operator touches and
//! the twin CRDs (with their schemas, printer columns and list-map keys).

use std::sync::Arc;

use serde_json::Value;

use crate::support::crd_schema::CrdSchema;

/// One served resource type.
#[derive(Clone)]
pub struct ResourceType {
    /// API group; empty for the core group.
    pub group: String,
    /// Served version.
    pub version: String,
    /// Kind.
    pub kind: String,
    /// Plural resource name (the URL segment).
    pub plural: String,
    /// Namespaced or cluster-scoped.
    pub namespaced: bool,
    /// Whether `status` is a subresource (main writes ignore status, status writes ignore the rest).
    pub status_subresource: bool,
    /// Short names for kubectl.
    pub short_names: Vec<String>,
    /// Categories for kubectl (`kubectl get twin`).
    pub categories: Vec<String>,
    /// `additionalPrinterColumns` of CRDs, as JSON.
    pub printer_columns: Vec<Value>,
    /// The schema checker of CRDs; built-in kinds are not validated.
    pub schema: Option<Arc<CrdSchema>>,
}

impl ResourceType {
    /// `group/version`, or `version` for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() { self.version.clone() } else { format!("{}/{}", self.group, self.version) }
    }

    /// The singular name: the lower-cased kind.
    pub fn singular(&self) -> String {
        self.kind.to_lowercase()
    }

    /// Keys of a list that merges by key (`x-kubernetes-list-type: map`) at `path`, a sequence
    /// of field names where list items are marked `[]`.
    pub fn list_map_keys(&self, path: &[String]) -> Option<Vec<String>> {
        if path.last().map(String::as_str) == Some("ownerReferences") {
            return Some(vec!["uid".into()]);
        }
        if let Some(schema) = &self.schema {
            let mut node = &schema.openapi_schema;
            for segment in path {
                node = if segment == "[]" {
                    node.get("items")?
                } else {
                    node.get("properties")?.get(segment)?
                };
            }
            if node.get("x-kubernetes-list-type").and_then(Value::as_str) == Some("map") {
                let keys = node.get("x-kubernetes-list-map-keys")?.as_array()?;
                return Some(keys.iter().filter_map(Value::as_str).map(String::from).collect());
            }
            return None;
        }
        // Built-in kinds: the merge keys of the lists the operator's children use.
        let field = path.last()?.as_str();
        let parent = path.iter().rev().nth(2).map(String::as_str);
        let key = match (field, parent) {
            (
                "containers"
                | "initContainers"
                | "ephemeralContainers"
                | "volumes"
                | "env"
                | "imagePullSecrets",
                _,
            ) => "name",
            ("volumeMounts", _) => "mountPath",
            ("ports", Some("containers" | "initContainers")) => "containerPort",
            ("ports", _) => "port",
            ("conditions", _) => "type",
            _ => return None,
        };
        Some(vec![key.into()])
    }
}

fn builtin(
    group: &str,
    version: &str,
    kind: &str,
    plural: &str,
    namespaced: bool,
    status: bool,
    short: &[&str],
) -> ResourceType {
    ResourceType {
        group: group.into(),
        version: version.into(),
        kind: kind.into(),
        plural: plural.into(),
        namespaced,
        status_subresource: status,
        short_names: short.iter().map(|s| s.to_string()).collect(),
        categories: Vec::new(),
        printer_columns: Vec::new(),
        schema: None,
    }
}

/// Every served type: the built-ins, then the twin CRDs generated from the Rust types.
pub fn default_types() -> Vec<ResourceType> {
    let mut types = vec![
        builtin("", "v1", "Namespace", "namespaces", false, true, &["ns"]),
        builtin("", "v1", "Pod", "pods", true, true, &["po"]),
        builtin("", "v1", "ConfigMap", "configmaps", true, false, &["cm"]),
        builtin("", "v1", "Secret", "secrets", true, false, &[]),
        builtin("", "v1", "Service", "services", true, true, &["svc"]),
        builtin("", "v1", "ServiceAccount", "serviceaccounts", true, false, &["sa"]),
        builtin("", "v1", "Event", "events", true, false, &["ev"]),
        builtin("apps", "v1", "Deployment", "deployments", true, true, &["deploy"]),
        builtin("batch", "v1", "Job", "jobs", true, true, &[]),
        builtin("batch", "v1", "CronJob", "cronjobs", true, true, &["cj"]),
        builtin(
            "autoscaling",
            "v2",
            "HorizontalPodAutoscaler",
            "horizontalpodautoscalers",
            true,
            true,
            &["hpa"],
        ),
        builtin("policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets", true, true, &["pdb"]),
        builtin("coordination.k8s.io", "v1", "Lease", "leases", true, false, &[]),
        builtin("events.k8s.io", "v1", "Event", "events", true, false, &["ev"]),
        builtin("monitoring.coreos.com", "v1", "ServiceMonitor", "servicemonitors", true, false, &[]),
        builtin("keda.sh", "v1alpha1", "ScaledObject", "scaledobjects", true, true, &["so"]),
        builtin(
            "apiextensions.k8s.io",
            "v1",
            "CustomResourceDefinition",
            "customresourcedefinitions",
            false,
            true,
            &["crd", "crds"],
        ),
    ];
    for crd in twin_operator::api::crds() {
        let schema = CrdSchema::from_crd(&crd).expect("the generated CRDs compile");
        let version = crd.spec.versions.iter().find(|v| v.served).expect("a served version");
        types.push(ResourceType {
            group: crd.spec.group.clone(),
            version: version.name.clone(),
            kind: crd.spec.names.kind.clone(),
            plural: crd.spec.names.plural.clone(),
            namespaced: crd.spec.scope == "Namespaced",
            status_subresource: version.subresources.as_ref().is_some_and(|s| s.status.is_some()),
            short_names: crd.spec.names.short_names.clone().unwrap_or_default(),
            categories: crd.spec.names.categories.clone().unwrap_or_default(),
            printer_columns: version
                .additional_printer_columns
                .iter()
                .flatten()
                .map(|c| serde_json::to_value(c).expect("printer column serialises"))
                .collect(),
            schema: Some(Arc::new(schema)),
        });
    }
    types
}
