//! Renders the field reference of the three resources as Markdown, from the CRD schemas, so
//! that the reference in docs/reference.md is generated like the CRDs and cannot drift from them.

use std::fmt::Write;

use serde_json::Value;

use crate::api;

/// Fields whose type comes from Kubernetes itself: named, not expanded.
const KUBERNETES_TYPES: &[(&str, &str)] = &[
    (
        "resources",
        "[ResourceRequirements](https://kubernetes.io/docs/reference/kubernetes-api/workload-resources/pod-v1/#resources)",
    ),
    (
        "tolerations",
        "[][Toleration](https://kubernetes.io/docs/reference/kubernetes-api/workload-resources/pod-v1/#scheduling)",
    ),
    (
        "conditions",
        "[][Condition](https://kubernetes.io/docs/reference/kubernetes-api/common-definitions/object-meta/#Condition) (listType map, key `type`)",
    ),
];

/// The Markdown reference of every resource: a table of fields per kind, then the rules the
/// API server checks.
pub fn api_reference() -> String {
    let mut out = String::new();
    for crd in api::crds() {
        let version = &crd.spec.versions[0];
        let schema =
            serde_json::to_value(version.schema.as_ref().and_then(|s| s.open_api_v3_schema.as_ref()))
                .unwrap_or_default();
        let names = &crd.spec.names;
        let _ = writeln!(
            out,
            "### {} (`{}/{}`, short name `{}`)\n",
            names.kind,
            crd.spec.group,
            version.name,
            names.short_names.as_deref().unwrap_or_default().join("`, `")
        );
        if let Some(description) = schema.get("description").and_then(Value::as_str) {
            let _ = writeln!(out, "{}\n", one_line(description));
        }
        out.push_str("| Field | Type | Default | Description |\n|---|---|---|---|\n");
        let mut rules = Vec::new();
        for part in ["spec", "status"] {
            if let Some(sub) = schema["properties"].get(part) {
                collect_rules(sub, part, &mut rules);
                fields(sub, part, &mut out);
            }
        }
        if !rules.is_empty() {
            let _ = writeln!(out, "\nChecked by the API server before any reconcile:\n");
            for (path, message) in rules {
                let _ = writeln!(out, "- `{path}`: {message}");
            }
        }
        out.push('\n');
    }
    out
}

fn fields(schema: &Value, path: &str, out: &mut String) {
    let Some(properties) = schema.get("properties").and_then(Value::as_object) else { return };
    for (name, property) in properties {
        let field_path = format!("{path}.{name}");
        let kubernetes_type = KUBERNETES_TYPES.iter().find(|(n, _)| *n == name).map(|(_, t)| *t);
        let type_text = kubernetes_type.map(str::to_string).unwrap_or_else(|| type_of(property));
        let default = property.get("default").map(|d| format!("`{d}`")).unwrap_or_default();
        let required = schema["required"].as_array().is_some_and(|r| r.iter().any(|n| n == name));
        let description =
            property.get("description").and_then(Value::as_str).map(one_line).unwrap_or_default();
        let _ = writeln!(
            out,
            "| `{field_path}`{} | {type_text} | {default} | {} |",
            if required { " *(required)*" } else { "" },
            description.replace('|', "\\|")
        );
        if kubernetes_type.is_none() {
            fields(property, &field_path, out);
            if let Some(items) = property.get("items") {
                fields(items, &format!("{field_path}[]"), out);
            }
        }
    }
}

/// `string, 1–2048 chars`, `integer, 16–8192`, `one of: a, b`, `[]object, at most 32`.
fn type_of(schema: &Value) -> String {
    let base = schema.get("type").and_then(Value::as_str).unwrap_or("any");
    let mut text = match base {
        "array" => format!("[]{}", schema.get("items").map(type_of).unwrap_or_else(|| "any".into())),
        "object" if schema.get("additionalProperties").is_some() => "map of string".to_string(),
        other => other.to_string(),
    };
    if let Some(values) = schema.get("enum").and_then(Value::as_array) {
        let values: Vec<String> = values.iter().filter_map(Value::as_str).map(|v| format!("`{v}`")).collect();
        text = format!("one of {}", values.join(", "));
    }
    let bound = |key: &str| schema.get(key).and_then(Value::as_f64);
    let range = |min: Option<f64>, max: Option<f64>, unit: &str| match (min, max) {
        (Some(min), Some(max)) => format!(", {min}–{max}{unit}"),
        (Some(min), None) => format!(", at least {min}{unit}"),
        (None, Some(max)) => format!(", at most {max}{unit}"),
        (None, None) => String::new(),
    };
    match base {
        "string" => text += &range(bound("minLength").filter(|m| *m > 0.0), bound("maxLength"), " chars"),
        "integer" | "number" => text += &range(bound("minimum"), bound("maximum"), ""),
        "array" => text += &range(bound("minItems").filter(|m| *m > 0.0), bound("maxItems"), " items"),
        _ => {}
    }
    if let Some(pattern) = schema.get("pattern").and_then(Value::as_str) {
        text += &format!(", pattern `{pattern}`");
    }
    text
}

fn collect_rules(schema: &Value, path: &str, out: &mut Vec<(String, String)>) {
    for rule in schema.get("x-kubernetes-validations").and_then(Value::as_array).into_iter().flatten() {
        if let Some(message) = rule.get("message").and_then(Value::as_str) {
            out.push((path.to_string(), message.to_string()));
        }
    }
    for (name, property) in schema.get("properties").and_then(Value::as_object).into_iter().flatten() {
        collect_rules(property, &format!("{path}.{name}"), out);
    }
    if let Some(items) = schema.get("items") {
        collect_rules(items, &format!("{path}[]"), out);
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}
