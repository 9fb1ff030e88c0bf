//! Server-side Tables (`Accept: application/json;as=Table;...`), which `kubectl get` asks for:
//! the name, the CRD's printer columns, and each row's object metadata.

use serde_json::{Value, json};

use super::registry::ResourceType;

/// The value at a simple JSONPath like `.status.stats.documents`.
fn json_path<'a>(object: &'a Value, path: &str) -> Option<&'a Value> {
    path.trim_start_matches('.').split('.').try_fold(object, |node, segment| node.get(segment))
}

pub fn render(resource: &ResourceType, objects: &[Value], resource_version: u64) -> Value {
    let mut columns = vec![
        json!({"name": "Name", "type": "string", "format": "name", "description": "Name of the object", "priority": 0}),
    ];
    let printer_columns: Vec<Value> = if resource.printer_columns.is_empty() {
        vec![json!({"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"})]
    } else {
        resource.printer_columns.clone()
    };
    for column in &printer_columns {
        columns.push(json!({
            "name": column["name"], "type": column["type"], "format": column.get("format").cloned().unwrap_or(json!("")),
            "description": column.get("description").cloned().unwrap_or(json!("")), "priority": column.get("priority").cloned().unwrap_or(json!(0)),
        }));
    }
    let rows: Vec<Value> = objects
        .iter()
        .map(|object| {
            let mut cells = vec![object["metadata"]["name"].clone()];
            for column in &printer_columns {
                let cell = json_path(object, column["jsonPath"].as_str().unwrap_or_default()).cloned().unwrap_or(Value::Null);
                // Like the API server, dates become ages ("5m") in the table.
                let cell = match (column["type"].as_str(), cell.as_str()) {
                    (Some("date"), Some(timestamp)) => json!(age(timestamp)),
                    _ => cell,
                };
                cells.push(cell);
            }
            json!({
                "cells": cells,
                "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": object["metadata"]},
            })
        })
        .collect();
    json!({
        "kind": "Table", "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version.to_string()},
        "columnDefinitions": columns, "rows": rows,
    })
}

/// A human age like the API server's: `42s`, `17m`, `5h`, `3d`.
fn age(timestamp: &str) -> String {
    let Ok(then) = timestamp.parse::<k8s_openapi::jiff::Timestamp>() else { return "<invalid>".into() };
    let seconds = (k8s_openapi::jiff::Timestamp::now().as_second() - then.as_second()).max(0);
    match seconds {
        s if s < 120 => format!("{s}s"),
        s if s < 3 * 3600 => format!("{}m", s / 60),
        s if s < 48 * 3600 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}
