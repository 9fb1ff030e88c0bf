//! The write verbs built on the store: JSON merge patch (RFC 7386), JSON patch (RFC 6902),
//! strategic merge patch (merge patch whose list-maps merge by key) and server-side apply.

use serde_json::{Value, json};

use super::fields::{self, ManagedEntry, Scope, Step};
use super::registry::ResourceType;
use super::store::{ApiError, ObjectKey, Ownership, Store};

/// RFC 7386: objects merge, `null` removes, anything else replaces.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(patch_map) => {
            if !target.is_object() {
                *target = json!({});
            }
            let target_map = target.as_object_mut().unwrap();
            for (key, value) in patch_map {
                if value.is_null() {
                    target_map.remove(key);
                } else {
                    merge_patch(target_map.entry(key.clone()).or_insert(Value::Null), value);
                }
            }
        }
        other => *target = other.clone(),
    }
}

/// A merge patch whose lists of keyed items (containers by name, conditions by type) merge by
/// key, as Kubernetes' strategic merge patch does for built-in types.
pub fn strategic_merge_patch(
    resource: &ResourceType,
    target: &mut Value,
    patch: &Value,
    path: &mut Vec<String>,
) {
    match (target.as_object_mut(), patch) {
        (Some(target_map), Value::Object(patch_map)) => {
            for (key, value) in patch_map {
                if value.is_null() {
                    target_map.remove(key);
                    continue;
                }
                path.push(key.clone());
                let keys = resource.list_map_keys(path);
                match (target_map.get_mut(key), value, keys) {
                    (Some(Value::Array(items)), Value::Array(patch_items), Some(keys)) => {
                        for patch_item in patch_items {
                            let same = |i: &Value| keys.iter().all(|k| i.get(k) == patch_item.get(k));
                            match items.iter_mut().find(|i| same(i)) {
                                Some(existing) => {
                                    path.push("[]".into());
                                    strategic_merge_patch(resource, existing, patch_item, path);
                                    path.pop();
                                }
                                None => items.push(patch_item.clone()),
                            }
                        }
                    }
                    (Some(existing), _, _) if existing.is_object() && value.is_object() => {
                        strategic_merge_patch(resource, existing, value, path)
                    }
                    _ => {
                        target_map.insert(key.clone(), value.clone());
                    }
                }
                path.pop();
            }
        }
        _ => *target = patch.clone(),
    }
}

/// RFC 6902 operations: add, remove, replace, move, copy, test.
pub fn json_patch(target: &mut Value, operations: &Value) -> Result<(), ApiError> {
    let bad = |m: String| ApiError::BadRequest(m);
    for operation in
        operations.as_array().ok_or_else(|| bad("a JSON patch is a list of operations".into()))?
    {
        let op = operation["op"].as_str().unwrap_or_default();
        let path =
            operation["path"].as_str().ok_or_else(|| bad(format!("operation {operation} has no path")))?;
        match op {
            "add" => add(target, path, operation["value"].clone())?,
            "remove" => {
                remove(target, path)?;
            }
            "replace" => {
                remove(target, path)?;
                add(target, path, operation["value"].clone())?;
            }
            "move" | "copy" => {
                let from = operation["from"].as_str().ok_or_else(|| bad(format!("{op} needs from")))?;
                let value =
                    target.pointer(from).cloned().ok_or_else(|| bad(format!("{from} does not exist")))?;
                if op == "move" {
                    remove(target, from)?;
                }
                add(target, path, value)?;
            }
            // As the API server's JSON patch does, a path that does not exist tests equal to
            // null (kube-runtime's finalizer helper relies on it to add the first finalizer).
            "test" => {
                if target.pointer(path).unwrap_or(&Value::Null) != &operation["value"] {
                    return Err(ApiError::Invalid {
                        name: "patch".into(),
                        causes: vec![format!("test operation for path {path:?} failed")],
                    });
                }
            }
            other => return Err(bad(format!("unknown JSON patch operation {other:?}"))),
        }
    }
    Ok(())
}

fn split_pointer(path: &str) -> Result<(String, String), ApiError> {
    let (parent, last) =
        path.rsplit_once('/').ok_or_else(|| ApiError::BadRequest(format!("bad JSON pointer {path:?}")))?;
    Ok((parent.to_string(), last.replace("~1", "/").replace("~0", "~")))
}

fn add(target: &mut Value, path: &str, value: Value) -> Result<(), ApiError> {
    if path.is_empty() {
        *target = value;
        return Ok(());
    }
    let (parent, last) = split_pointer(path)?;
    match target.pointer_mut(&parent) {
        Some(Value::Object(map)) => {
            map.insert(last, value);
        }
        Some(Value::Array(items)) if last == "-" => items.push(value),
        Some(Value::Array(items)) => {
            let index: usize =
                last.parse().map_err(|_| ApiError::BadRequest(format!("bad index in {path:?}")))?;
            if index > items.len() {
                return Err(ApiError::BadRequest(format!("index out of range in {path:?}")));
            }
            items.insert(index, value);
        }
        _ => return Err(ApiError::BadRequest(format!("the parent of {path:?} does not exist"))),
    }
    Ok(())
}

fn remove(target: &mut Value, path: &str) -> Result<Value, ApiError> {
    let (parent, last) = split_pointer(path)?;
    let missing = || ApiError::BadRequest(format!("{path:?} does not exist"));
    match target.pointer_mut(&parent) {
        Some(Value::Object(map)) => map.remove(&last).ok_or_else(missing),
        Some(Value::Array(items)) => {
            let index: usize = last.parse().map_err(|_| missing())?;
            (index < items.len()).then(|| items.remove(index)).ok_or_else(missing)
        }
        _ => Err(missing()),
    }
}

/// Server-side apply of `applied` by `manager`: creates the object when it does not exist,
/// else merges it, refuses (409) to change fields another manager owns with a different value
/// unless `force`, and removes fields this manager applied before but no longer does.
pub fn apply(
    store: &mut Store,
    key: &ObjectKey,
    mut applied: Value,
    scope: Scope,
    manager: &str,
    force: bool,
) -> Result<Value, ApiError> {
    let resource = store.types[key.type_index].clone();
    if manager.is_empty() {
        return Err(ApiError::BadRequest("PATCH with apply requires the fieldManager parameter".into()));
    }
    let live = match store.get(key) {
        Ok(live) => live,
        Err(ApiError::NotFound(_)) if scope != Scope::Status => {
            applied["metadata"]["name"] = json!(key.name);
            return store.create(key.type_index, &key.namespace, applied, manager, "Apply");
        }
        Err(other) => return Err(other),
    };
    let subresource = (scope == Scope::Status).then(|| "status".to_string());
    let applied_fields = fields::field_set(&resource, &applied, scope);
    let mut entries = fields::managed_entries(&live);
    let is_mine =
        |e: &ManagedEntry| e.manager == manager && e.operation == "Apply" && e.subresource == subresource;
    let mut conflicts = Vec::new();
    for entry in entries.iter_mut().filter(|e| !is_mine(e)) {
        let contested: Vec<Vec<Step>> = entry
            .fields
            .intersection(&applied_fields)
            .filter(|p| fields::get(&resource, &live, p) != fields::get(&resource, &applied, p))
            .cloned()
            .collect();
        if force {
            entry.fields.retain(|p| !contested.contains(p));
        } else {
            conflicts.extend(
                contested
                    .iter()
                    .map(|p| format!("conflict with {:?}: {}", entry.manager, fields::display(p))),
            );
        }
    }
    if !conflicts.is_empty() {
        return Err(ApiError::Conflict(format!(
            "Apply failed with {} conflicts: {}",
            conflicts.len(),
            conflicts.join(", ")
        )));
    }
    let previous = entries.iter().find(|e| is_mine(e)).map(|e| e.fields.clone()).unwrap_or_default();
    let mut merged = live.clone();
    let mut scoped = applied.clone();
    if let Some(map) = scoped.as_object_mut() {
        map.retain(|k, _| k == "metadata" || k == "apiVersion" || k == "kind" || scope.includes(k));
        if scope == Scope::Status {
            map.remove("metadata");
        }
    }
    fields::merge_applied(&resource, &mut merged, &scoped, &[]);
    for dropped in previous.difference(&applied_fields) {
        let owned_by_others = entries.iter().any(|e| !is_mine(e) && e.fields.contains(dropped));
        if !owned_by_others {
            fields::remove(&resource, &mut merged, dropped);
        }
    }
    entries.retain(|e| !is_mine(e));
    entries.push(ManagedEntry {
        manager: manager.into(),
        operation: "Apply".into(),
        subresource,
        api_version: resource.api_version(),
        time: k8s_openapi::jiff::Timestamp::now().round(k8s_openapi::jiff::Unit::Second).unwrap().to_string(),
        fields: applied_fields,
    });
    merged["metadata"]["resourceVersion"] = applied["metadata"]["resourceVersion"].clone();
    if merged["metadata"]["resourceVersion"].is_null() {
        merged["metadata"].as_object_mut().unwrap().remove("resourceVersion");
    }
    store.write(key, merged, scope, Ownership::Applied(entries))
}
