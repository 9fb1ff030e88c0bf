//! Field ownership for server-side apply: the set of leaf fields an object sets, encoded in
//! `metadata.managedFields` as FieldsV1; apply merges by list-map keys, reports conflicts with
//! other managers, and removes the fields a manager stopped applying.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use super::registry::ResourceType;

/// One step of a field path: a field name, or the key of a list-map item (canonical JSON).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Step {
    Field(String),
    Key(String),
}

/// A leaf field.
pub type FieldPath = Vec<Step>;
/// The fields a manager owns.
pub type FieldSet = BTreeSet<FieldPath>;

/// Metadata fields the server owns: never part of anyone's field set.
const SERVER_METADATA: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
];

/// Which top-level fields a write may touch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The main resource: everything but `status` when status is a subresource.
    Main { status_is_subresource: bool },
    /// The status subresource: `status` only.
    Status,
}

impl Scope {
    /// Whether a top-level field belongs to this scope.
    pub fn includes(self, field: &str) -> bool {
        match self {
            Scope::Main { status_is_subresource } => !(status_is_subresource && field == "status"),
            Scope::Status => field == "status",
        }
    }
}

/// The leaf fields an object sets within a scope.
pub fn field_set(resource: &ResourceType, object: &Value, scope: Scope) -> FieldSet {
    let mut out = FieldSet::new();
    let Some(map) = object.as_object() else { return out };
    for (name, value) in map {
        if name == "apiVersion" || name == "kind" || !scope.includes(name) {
            continue;
        }
        if name == "metadata" {
            for (meta_name, meta_value) in value.as_object().into_iter().flatten() {
                if !SERVER_METADATA.contains(&meta_name.as_str()) {
                    let path = vec![Step::Field(name.clone()), Step::Field(meta_name.clone())];
                    collect(resource, meta_value, &path, &mut out);
                }
            }
        } else {
            collect(resource, value, &[Step::Field(name.clone())], &mut out);
        }
    }
    out
}

fn schema_path(path: &[Step]) -> Vec<String> {
    path.iter()
        .map(|s| match s {
            Step::Field(f) => f.clone(),
            Step::Key(_) => "[]".into(),
        })
        .collect()
}

fn item_key(item: &Value, keys: &[String]) -> Option<String> {
    let map: Map<String, Value> =
        keys.iter().map(|k| item.get(k).map(|v| (k.clone(), v.clone()))).collect::<Option<_>>()?;
    Some(Value::Object(map).to_string())
}

fn collect(resource: &ResourceType, value: &Value, path: &[Step], out: &mut FieldSet) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (name, child) in map {
                let mut child_path = path.to_vec();
                child_path.push(Step::Field(name.clone()));
                collect(resource, child, &child_path, out);
            }
        }
        Value::Array(items) if !items.is_empty() => match resource.list_map_keys(&schema_path(path)) {
            Some(keys) if items.iter().all(|i| item_key(i, &keys).is_some()) => {
                for item in items {
                    let mut item_path = path.to_vec();
                    item_path.push(Step::Key(item_key(item, &keys).expect("checked above")));
                    collect(resource, item, &item_path, out);
                }
            }
            _ => {
                out.insert(path.to_vec());
            }
        },
        _ => {
            out.insert(path.to_vec());
        }
    }
}

/// The value at a path, if present.
pub fn get<'a>(resource: &ResourceType, object: &'a Value, path: &[Step]) -> Option<&'a Value> {
    let mut node = object;
    for (i, step) in path.iter().enumerate() {
        node = match step {
            Step::Field(name) => node.get(name)?,
            Step::Key(key) => {
                let keys = resource.list_map_keys(&schema_path(&path[..i]))?;
                node.as_array()?.iter().find(|item| item_key(item, &keys).as_deref() == Some(key))?
            }
        };
    }
    Some(node)
}

/// Merges an applied object into the live one: maps recursively, list-maps by key, other
/// lists and scalars replaced.
pub fn merge_applied(resource: &ResourceType, live: &mut Value, applied: &Value, path: &[Step]) {
    match (live, applied) {
        (Value::Object(live_map), Value::Object(applied_map)) => {
            for (name, value) in applied_map {
                let mut child_path = path.to_vec();
                child_path.push(Step::Field(name.clone()));
                match live_map.get_mut(name) {
                    Some(existing) => merge_applied(resource, existing, value, &child_path),
                    None => {
                        live_map.insert(name.clone(), value.clone());
                    }
                }
            }
        }
        (Value::Array(live_items), Value::Array(applied_items)) => {
            match resource.list_map_keys(&schema_path(path)) {
                Some(keys)
                    if applied_items
                        .iter()
                        .chain(live_items.iter())
                        .all(|i| item_key(i, &keys).is_some()) =>
                {
                    for applied_item in applied_items {
                        let key = item_key(applied_item, &keys);
                        match live_items.iter_mut().find(|l| item_key(l, &keys) == key) {
                            Some(existing) => {
                                let mut item_path = path.to_vec();
                                item_path.push(Step::Key(key.expect("checked above")));
                                merge_applied(resource, existing, applied_item, &item_path);
                            }
                            None => live_items.push(applied_item.clone()),
                        }
                    }
                }
                _ => *live_items = applied_items.clone(),
            }
        }
        (live, applied) => *live = applied.clone(),
    }
}

/// Removes a leaf, then every parent map (or list-map item holding only its keys) left empty.
pub fn remove(resource: &ResourceType, object: &mut Value, path: &[Step]) {
    let Some((last, parent_path)) = path.split_last() else { return };
    let Some(parent) = get_mut(resource, object, parent_path) else { return };
    match last {
        Step::Field(name) => {
            if let Some(map) = parent.as_object_mut() {
                map.remove(name);
            }
        }
        Step::Key(key) => {
            if let (Some(keys), Some(items)) =
                (resource.list_map_keys(&schema_path(parent_path)), parent.as_array_mut())
            {
                items.retain(|item| item_key(item, &keys).as_deref() != Some(key));
            }
        }
    }
    // Drop what the removal emptied, but never the top-level sections themselves.
    if parent_path.len() > 1 {
        let emptied = match get(resource, object, parent_path) {
            Some(Value::Object(map)) => {
                map.is_empty()
                    || matches!(parent_path.last(), Some(Step::Key(key))
                        if serde_json::from_str::<Map<String, Value>>(key).is_ok_and(|k| k.len() == map.len()))
            }
            Some(Value::Array(items)) => items.is_empty(),
            _ => false,
        };
        if emptied {
            remove(resource, object, parent_path);
        }
    }
}

fn get_mut<'a>(resource: &ResourceType, object: &'a mut Value, path: &[Step]) -> Option<&'a mut Value> {
    let mut node = object;
    for (i, step) in path.iter().enumerate() {
        node = match step {
            Step::Field(name) => node.get_mut(name)?,
            Step::Key(key) => {
                let keys = resource.list_map_keys(&schema_path(&path[..i]))?;
                node.as_array_mut()?.iter_mut().find(|item| item_key(item, &keys).as_deref() == Some(key))?
            }
        };
    }
    Some(node)
}

/// One entry of `metadata.managedFields`, decoded.
#[derive(Debug, Clone)]
pub struct ManagedEntry {
    pub manager: String,
    pub operation: String,
    pub subresource: Option<String>,
    pub api_version: String,
    pub time: String,
    pub fields: FieldSet,
}

impl ManagedEntry {
    /// The JSON form stored in the object.
    pub fn to_json(&self) -> Value {
        let mut entry = json!({
            "manager": self.manager, "operation": self.operation, "apiVersion": self.api_version,
            "time": self.time, "fieldsType": "FieldsV1", "fieldsV1": encode(&self.fields),
        });
        if let Some(subresource) = &self.subresource {
            entry["subresource"] = json!(subresource);
        }
        entry
    }
}

/// Reads `metadata.managedFields`.
pub fn managed_entries(object: &Value) -> Vec<ManagedEntry> {
    object["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| ManagedEntry {
            manager: e["manager"].as_str().unwrap_or_default().into(),
            operation: e["operation"].as_str().unwrap_or_default().into(),
            subresource: e["subresource"].as_str().map(String::from),
            api_version: e["apiVersion"].as_str().unwrap_or_default().into(),
            time: e["time"].as_str().unwrap_or_default().into(),
            fields: decode(&e["fieldsV1"]),
        })
        .collect()
}

/// Writes `metadata.managedFields`, dropping entries that own nothing.
pub fn set_managed_entries(object: &mut Value, entries: &[ManagedEntry]) {
    let list: Vec<Value> =
        entries.iter().filter(|e| !e.fields.is_empty()).map(ManagedEntry::to_json).collect();
    object["metadata"]["managedFields"] = Value::Array(list);
}

fn encode(fields: &FieldSet) -> Value {
    let mut root = Map::new();
    for path in fields {
        let mut node = &mut root;
        for step in path {
            let key = match step {
                Step::Field(f) => format!("f:{f}"),
                Step::Key(k) => format!("k:{k}"),
            };
            node = node.entry(key).or_insert_with(|| json!({})).as_object_mut().expect("an object");
        }
        node.insert(".".into(), json!({}));
    }
    Value::Object(root)
}

fn decode(value: &Value) -> FieldSet {
    fn walk(value: &Value, path: &mut FieldPath, out: &mut FieldSet) {
        for (key, child) in value.as_object().into_iter().flatten() {
            if key == "." {
                out.insert(path.clone());
                continue;
            }
            let step = if let Some(f) = key.strip_prefix("f:") {
                Step::Field(f.into())
            } else if let Some(k) = key.strip_prefix("k:") {
                Step::Key(k.into())
            } else {
                continue;
            };
            path.push(step);
            walk(child, path, out);
            path.pop();
        }
    }
    let mut out = FieldSet::new();
    walk(value, &mut Vec::new(), &mut out);
    out
}

/// Leaf paths whose values differ between two objects (added, changed or removed).
pub fn changed_fields(
    resource: &ResourceType,
    old: &Value,
    new: &Value,
    scope: Scope,
) -> (FieldSet, FieldSet) {
    let old_set = field_set(resource, old, scope);
    let new_set = field_set(resource, new, scope);
    let changed =
        new_set.iter().filter(|p| get(resource, old, p) != get(resource, new, p)).cloned().collect();
    let removed = old_set.difference(&new_set).cloned().collect();
    (changed, removed)
}

/// A path as the API server prints it in conflict messages: `.spec.replicas`.
pub fn display(path: &[Step]) -> String {
    path.iter()
        .map(|s| match s {
            Step::Field(f) => format!(".{f}"),
            Step::Key(k) => format!("[{k}]"),
        })
        .collect()
}
