//! The fake API server's state and its semantics: resource versions, generation, the status
//! subresource, server-side apply, patches, optimistic concurrency, finalizers, deletion,
//! owner-reference garbage collection, validation of custom resources, and the event history
//! that watches replay.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde_json::{Map, Value, json};
use tokio::sync::broadcast;

use super::fields::{self, ManagedEntry, Scope};
use super::registry::ResourceType;
use super::selector::LabelSelector;

/// Where an object lives: its type (index into the registry), namespace and name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ObjectKey {
    pub type_index: usize,
    pub namespace: String,
    pub name: String,
}

/// A change, as a watch delivers it.
#[derive(Debug)]
pub struct WatchEvent {
    pub resource_version: u64,
    pub key: ObjectKey,
    /// ADDED, MODIFIED or DELETED.
    pub kind: &'static str,
    pub object: Value,
}

/// The backlog of a new watch and the receiver of the events to come.
pub type Subscription = (Vec<Arc<WatchEvent>>, broadcast::Receiver<Arc<WatchEvent>>);

/// Errors with the status codes and reasons of the real API server.
#[derive(Debug, Clone)]
pub enum ApiError {
    NotFound(String),
    AlreadyExists(String),
    Conflict(String),
    Invalid { name: String, causes: Vec<String> },
    BadRequest(String),
    MethodNotAllowed(String),
    Gone(String),
    Injected { code: u16, message: Option<String> },
}

impl ApiError {
    pub fn code(&self) -> u16 {
        match self {
            ApiError::NotFound(_) => 404,
            ApiError::AlreadyExists(_) | ApiError::Conflict(_) => 409,
            ApiError::Invalid { .. } => 422,
            ApiError::BadRequest(_) => 400,
            ApiError::MethodNotAllowed(_) => 405,
            ApiError::Gone(_) => 410,
            ApiError::Injected { code, .. } => *code,
        }
    }

    pub fn reason(&self) -> &'static str {
        match self {
            ApiError::NotFound(_) => "NotFound",
            ApiError::AlreadyExists(_) => "AlreadyExists",
            ApiError::Conflict(_) => "Conflict",
            ApiError::Invalid { .. } => "Invalid",
            ApiError::BadRequest(_) => "BadRequest",
            ApiError::MethodNotAllowed(_) => "MethodNotAllowed",
            ApiError::Gone(_) => "Expired",
            ApiError::Injected { code: 409, .. } => "Conflict",
            ApiError::Injected { code: 422, .. } => "Invalid",
            ApiError::Injected { code: 400, .. } => "BadRequest",
            ApiError::Injected { code: 403, .. } => "Forbidden",
            ApiError::Injected { .. } => "InternalError",
        }
    }

    pub fn message(&self) -> String {
        match self {
            ApiError::NotFound(m) | ApiError::AlreadyExists(m) | ApiError::Conflict(m) => m.clone(),
            ApiError::BadRequest(m) | ApiError::MethodNotAllowed(m) | ApiError::Gone(m) => m.clone(),
            ApiError::Invalid { name, causes } => format!("{name} is invalid: {}", causes.join(", ")),
            ApiError::Injected { message: Some(message), .. } => message.clone(),
            ApiError::Injected { code, message: None } => format!("injected fault: HTTP {code}"),
        }
    }
}

/// A write's field manager and how it changes ownership.
pub enum Ownership<'a> {
    /// PUT, merge/JSON/strategic patch, create: the manager takes the fields it changed.
    Update(&'a str),
    /// Server-side apply: ownership already computed.
    Applied(Vec<ManagedEntry>),
    /// Server-internal writes (garbage collection, deletion): ownership unchanged.
    Server,
}

/// All objects and their history.
pub struct Store {
    pub types: Vec<ResourceType>,
    resource_version: u64,
    objects: BTreeMap<ObjectKey, Value>,
    history: Vec<Arc<WatchEvent>>,
    events: broadcast::Sender<Arc<WatchEvent>>,
}

fn now() -> String {
    k8s_openapi::jiff::Timestamp::now().round(k8s_openapi::jiff::Unit::Second).unwrap().to_string()
}

/// `metadata.name=x,metadata.namespace=y` field selectors.
pub fn field_selector_matches(selector: &str, object: &Value) -> bool {
    selector.split(',').filter(|p| !p.is_empty()).all(|part| {
        let (path, value, negate) = match part.split_once("!=") {
            Some((p, v)) => (p, v, true),
            None => match part.split_once("==").or_else(|| part.split_once('=')) {
                Some((p, v)) => (p, v, false),
                None => return false,
            },
        };
        let mut node = object;
        for segment in path.trim().split('.') {
            node = &node[segment];
        }
        (node.as_str().unwrap_or_default() == value.trim()) != negate
    })
}

impl Store {
    pub fn new(types: Vec<ResourceType>) -> Self {
        let (events, _) = broadcast::channel(65536);
        Self { types, resource_version: 0, objects: BTreeMap::new(), history: Vec::new(), events }
    }

    /// The current resource version (what a list returns).
    pub fn resource_version(&self) -> u64 {
        self.resource_version
    }

    pub fn type_index(&self, group: &str, version: &str, plural: &str) -> Option<usize> {
        self.types.iter().position(|t| t.group == group && t.version == version && t.plural == plural)
    }

    pub fn type_of_kind(&self, api_version: &str, kind: &str) -> Option<usize> {
        self.types.iter().position(|t| t.api_version() == api_version && t.kind == kind)
    }

    fn not_found(&self, key: &ObjectKey) -> ApiError {
        let t = &self.types[key.type_index];
        let resource =
            if t.group.is_empty() { t.plural.clone() } else { format!("{}.{}", t.plural, t.group) };
        ApiError::NotFound(format!("{resource} \"{}\" not found", key.name))
    }

    pub fn get(&self, key: &ObjectKey) -> Result<Value, ApiError> {
        self.objects.get(key).cloned().ok_or_else(|| self.not_found(key))
    }

    /// Objects of a type, in a namespace or all, matching the selectors.
    pub fn list(
        &self,
        type_index: usize,
        namespace: Option<&str>,
        labels_sel: &LabelSelector,
        fields_sel: &str,
    ) -> Vec<Value> {
        self.of_type(type_index, namespace)
            .filter(|(_, o)| labels_sel.matches_object(o) && field_selector_matches(fields_sel, o))
            .map(|(_, o)| o.clone())
            .collect()
    }

    /// The objects of one type (in one namespace), found by key range rather than by a scan of
    /// every object: keys order by type, then namespace, then name.
    fn of_type<'a>(
        &'a self,
        type_index: usize,
        namespace: Option<&str>,
    ) -> impl Iterator<Item = (&'a ObjectKey, &'a Value)> + 'a {
        let start =
            ObjectKey { type_index, namespace: namespace.unwrap_or_default().into(), name: String::new() };
        let namespace = namespace.map(String::from);
        self.objects.range(start..).take_while(move |(k, _)| {
            k.type_index == type_index && namespace.as_ref().is_none_or(|ns| k.namespace == *ns)
        })
    }

    /// Every object, for tests that look across types.
    pub fn all(&self) -> impl Iterator<Item = (&ObjectKey, &Value)> {
        self.objects.iter()
    }

    /// Events after `from` (or synthetic ADDED events for the current state when `from` is
    /// `None`), and a receiver for the ones to come. Taken under the store lock, so nothing is
    /// missed between the two.
    pub fn subscribe(&self, type_index: usize, from: Option<u64>) -> Result<Subscription, ApiError> {
        let receiver = self.events.subscribe();
        let backlog = match from {
            None => self
                .of_type(type_index, None)
                .map(|(k, o)| {
                    Arc::new(WatchEvent {
                        resource_version: self.resource_version,
                        key: k.clone(),
                        kind: "ADDED",
                        object: o.clone(),
                    })
                })
                .collect(),
            Some(rv) if rv > self.resource_version => {
                return Err(ApiError::Gone(format!(
                    "too large resource version: {rv}, current: {}",
                    self.resource_version
                )));
            }
            Some(rv) => {
                let start = self.history.partition_point(|e| e.resource_version <= rv);
                self.history[start..].iter().filter(|e| e.key.type_index == type_index).cloned().collect()
            }
        };
        Ok((backlog, receiver))
    }

    fn emit(&mut self, key: ObjectKey, kind: &'static str, object: Value) {
        let event = Arc::new(WatchEvent { resource_version: self.resource_version, key, kind, object });
        self.history.push(event.clone());
        let _ = self.events.send(event);
    }

    fn next_version(&mut self) -> u64 {
        self.resource_version += 1;
        self.resource_version
    }

    /// Creates an object. `namespace` comes from the URL; `operation` is `Update` for a POST
    /// and `Apply` for a server-side apply that creates. The manager owns the fields it sent.
    pub fn create(
        &mut self,
        type_index: usize,
        namespace: &str,
        mut object: Value,
        manager: &str,
        operation: &str,
    ) -> Result<Value, ApiError> {
        let resource = self.types[type_index].clone();
        if !object.is_object() {
            return Err(ApiError::BadRequest("the body must be a JSON object".into()));
        }
        let scope = Scope::Main { status_is_subresource: resource.status_subresource };
        let requested_fields = fields::field_set(&resource, &object, scope);
        check_type_meta(&resource, &mut object)?;
        let metadata = object["metadata"]
            .as_object_mut()
            .ok_or_else(|| ApiError::BadRequest("metadata is required".into()))?;
        if metadata.get("name").and_then(Value::as_str).is_none_or(str::is_empty) {
            match metadata.get("generateName").and_then(Value::as_str) {
                Some(prefix) => {
                    let name = format!("{prefix}{:05x}", (self.resource_version + 1) * 7919 % 0xfffff);
                    metadata.insert("name".into(), json!(name));
                }
                None => {
                    return Err(ApiError::Invalid {
                        name: resource.kind.clone(),
                        causes: vec![
                            "metadata.name: Required value: name or generateName is required".into(),
                        ],
                    });
                }
            }
        }
        if resource.namespaced {
            match metadata.get("namespace").and_then(Value::as_str) {
                Some(ns) if ns != namespace => {
                    return Err(ApiError::BadRequest(format!(
                        "the namespace of the provided object ({ns}) does not match the namespace sent on the request ({namespace})"
                    )));
                }
                _ => {
                    metadata.insert("namespace".into(), json!(namespace));
                }
            }
        } else {
            metadata.remove("namespace");
        }
        let name = metadata["name"].as_str().unwrap_or_default().to_string();
        let key = ObjectKey {
            type_index,
            namespace: if resource.namespaced { namespace.into() } else { String::new() },
            name,
        };
        if self.objects.contains_key(&key) {
            let kind = if resource.group.is_empty() {
                resource.plural.clone()
            } else {
                format!("{}.{}", resource.plural, resource.group)
            };
            return Err(ApiError::AlreadyExists(format!("{kind} \"{}\" already exists", key.name)));
        }
        if resource.status_subresource {
            object.as_object_mut().unwrap().remove("status");
        }
        let mut object = self.validate(&resource, &key.name, object, None)?;
        let rv = self.next_version();
        let metadata = object["metadata"].as_object_mut().unwrap();
        metadata.insert("uid".into(), json!(format!("00000000-0000-4000-8000-{rv:012x}")));
        metadata.insert("creationTimestamp".into(), json!(now()));
        metadata.insert("generation".into(), json!(1));
        metadata.insert("resourceVersion".into(), json!(rv.to_string()));
        for server_field in ["deletionTimestamp", "deletionGracePeriodSeconds", "managedFields"] {
            metadata.remove(server_field);
        }
        let entry = ManagedEntry {
            manager: manager.into(),
            operation: operation.into(),
            subresource: None,
            api_version: resource.api_version(),
            time: now(),
            fields: requested_fields,
        };
        fields::set_managed_entries(&mut object, &[entry]);
        self.objects.insert(key.clone(), object.clone());
        self.emit(key, "ADDED", object.clone());
        Ok(object)
    }

    fn validate(
        &self,
        resource: &ResourceType,
        name: &str,
        object: Value,
        old: Option<&Value>,
    ) -> Result<Value, ApiError> {
        match &resource.schema {
            Some(schema) => schema
                .check(&object, old)
                .map_err(|causes| ApiError::Invalid { name: format!("{} {name:?}", resource.kind), causes }),
            None => super::builtin::validate(resource, &object)
                .map(|()| object)
                .map_err(|causes| ApiError::Invalid { name: format!("{} {name:?}", resource.kind), causes }),
        }
    }

    /// Writes a new version of an existing object: the common path of PUT, patches and apply.
    pub fn write(
        &mut self,
        key: &ObjectKey,
        mut new: Value,
        scope: Scope,
        ownership: Ownership<'_>,
    ) -> Result<Value, ApiError> {
        let resource = self.types[key.type_index].clone();
        let old = self.get(key)?;
        check_type_meta(&resource, &mut new)?;
        if let Some(requested) = new["metadata"]["resourceVersion"].as_str().filter(|v| !v.is_empty())
            && requested != old["metadata"]["resourceVersion"].as_str().unwrap_or_default()
        {
            return Err(ApiError::Conflict(format!(
                "Operation cannot be fulfilled on {} \"{}\": the object has been modified; please apply your changes to the latest version and try again",
                resource.plural, key.name
            )));
        }
        if new["metadata"]["name"].as_str().is_some_and(|n| n != key.name) {
            return Err(ApiError::BadRequest(format!(
                "the name of the object ({}) does not match the name on the URL ({})",
                new["metadata"]["name"], key.name
            )));
        }
        // Each scope writes only its own part; the rest of the object stays as stored.
        let mut merged = match scope {
            Scope::Status => {
                let mut merged = old.clone();
                match new.get("status") {
                    Some(status) => merged["status"] = status.clone(),
                    None => {
                        merged.as_object_mut().unwrap().remove("status");
                    }
                }
                merged
            }
            Scope::Main { status_is_subresource } => {
                if status_is_subresource {
                    let map = new.as_object_mut().unwrap();
                    map.remove("status");
                    if let Some(status) = old.get("status") {
                        map.insert("status".into(), status.clone());
                    }
                }
                new
            }
        };
        {
            let metadata = merged["metadata"]
                .as_object_mut()
                .ok_or_else(|| ApiError::BadRequest("metadata is required".into()))?;
            for server_field in [
                "name",
                "namespace",
                "uid",
                "creationTimestamp",
                "generation",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
            ] {
                match old["metadata"].get(server_field) {
                    Some(value) => metadata.insert(server_field.into(), value.clone()),
                    None => metadata.remove(server_field),
                };
            }
        }
        if old["metadata"].get("deletionTimestamp").is_some() {
            let old_finalizers: BTreeSet<&str> = string_list(&old["metadata"]["finalizers"]);
            let new_finalizers: BTreeSet<&str> = string_list(&merged["metadata"]["finalizers"]);
            if !new_finalizers.is_subset(&old_finalizers) {
                return Err(ApiError::Invalid {
                    name: format!("{} {:?}", resource.kind, key.name),
                    causes: vec!["metadata.finalizers: Forbidden: no new finalizers can be added if the object is being deleted".into()],
                });
            }
        }
        let mut merged = self.validate(&resource, &key.name, merged, Some(&old))?;
        let mut entries = match ownership {
            Ownership::Applied(entries) => entries,
            Ownership::Server => fields::managed_entries(&old),
            Ownership::Update(manager) => {
                let (changed, removed) = fields::changed_fields(&resource, &old, &merged, scope);
                let subresource = (scope == Scope::Status).then(|| "status".to_string());
                let mut entries = fields::managed_entries(&old);
                for entry in &mut entries {
                    entry.fields.retain(|p| !removed.contains(p) && !changed.contains(p));
                }
                match entries
                    .iter_mut()
                    .find(|e| e.manager == manager && e.operation == "Update" && e.subresource == subresource)
                {
                    Some(entry) => {
                        entry.fields.extend(changed);
                        entry.time = now();
                    }
                    None if !changed.is_empty() => entries.push(ManagedEntry {
                        manager: manager.into(),
                        operation: "Update".into(),
                        subresource,
                        api_version: resource.api_version(),
                        time: now(),
                        fields: changed,
                    }),
                    None => {}
                }
                entries
            }
        };
        entries.retain(|e| !e.fields.is_empty());
        fields::set_managed_entries(&mut merged, &entries);
        let comparable = |object: &Value| {
            let mut object = object.clone();
            let metadata = object["metadata"].as_object_mut().unwrap();
            metadata.remove("managedFields");
            metadata.remove("resourceVersion");
            object
        };
        if comparable(&old) == comparable(&merged) {
            // A no-op write changes nothing, not even the resource version, as in Kubernetes.
            return Ok(old);
        }
        if spec_changed(&old, &merged) {
            let generation = old["metadata"]["generation"].as_i64().unwrap_or(1) + 1;
            merged["metadata"]["generation"] = json!(generation);
        }
        let rv = self.next_version();
        merged["metadata"]["resourceVersion"] = json!(rv.to_string());
        if merged["metadata"].get("deletionTimestamp").is_some()
            && string_list(&merged["metadata"]["finalizers"]).is_empty()
        {
            self.objects.remove(key);
            self.emit(key.clone(), "DELETED", merged.clone());
            self.collect_garbage(&merged);
            return Ok(merged);
        }
        self.objects.insert(key.clone(), merged.clone());
        self.emit(key.clone(), "MODIFIED", merged.clone());
        Ok(merged)
    }

    /// Deletes an object, or marks it for deletion while finalizers remain.
    pub fn delete(&mut self, key: &ObjectKey) -> Result<Value, ApiError> {
        let object = self.get(key)?;
        if !string_list(&object["metadata"]["finalizers"]).is_empty() {
            if object["metadata"].get("deletionTimestamp").is_some() {
                return Ok(object);
            }
            let mut marked = object.clone();
            marked["metadata"]["deletionTimestamp"] = json!(now());
            marked["metadata"]["deletionGracePeriodSeconds"] = json!(0);
            // As in Kubernetes, marking for deletion bumps the generation, so controllers that
            // filter on generation still see it.
            marked["metadata"]["generation"] =
                json!(object["metadata"]["generation"].as_i64().unwrap_or(1) + 1);
            let rv = self.next_version();
            marked["metadata"]["resourceVersion"] = json!(rv.to_string());
            self.objects.insert(key.clone(), marked.clone());
            self.emit(key.clone(), "MODIFIED", marked.clone());
            return Ok(marked);
        }
        self.objects.remove(key);
        let mut deleted = object;
        let rv = self.next_version();
        deleted["metadata"]["resourceVersion"] = json!(rv.to_string());
        self.emit(key.clone(), "DELETED", deleted.clone());
        self.collect_garbage(&deleted);
        Ok(deleted)
    }

    /// Deletes the dependents of a removed object that have no other owner left (background
    /// propagation), recursively.
    fn collect_garbage(&mut self, removed: &Value) {
        let Some(uid) = removed["metadata"]["uid"].as_str() else { return };
        let live_uids: BTreeSet<String> =
            self.objects.values().filter_map(|o| o["metadata"]["uid"].as_str().map(String::from)).collect();
        let orphans: Vec<ObjectKey> = self
            .objects
            .iter()
            .filter(|(_, o)| {
                let owners: Vec<&str> = o["metadata"]["ownerReferences"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|r| r["uid"].as_str())
                    .collect();
                owners.contains(&uid) && owners.iter().all(|owner| !live_uids.contains(*owner))
            })
            .map(|(k, _)| k.clone())
            .collect();
        for key in orphans {
            let _ = self.delete(&key);
        }
    }
}

fn string_list(value: &Value) -> BTreeSet<&str> {
    value.as_array().into_iter().flatten().filter_map(Value::as_str).collect()
}

/// `apiVersion` and `kind` are filled in when absent and must match the URL when present.
fn check_type_meta(resource: &ResourceType, object: &mut Value) -> Result<(), ApiError> {
    let map = object
        .as_object_mut()
        .ok_or_else(|| ApiError::BadRequest("the body must be a JSON object".into()))?;
    for (field, expected) in [("apiVersion", resource.api_version()), ("kind", resource.kind.clone())] {
        match map.get(field).and_then(Value::as_str) {
            Some(actual) if actual != expected => {
                return Err(ApiError::BadRequest(format!(
                    "{field} {actual:?} does not match the URL's {expected:?}"
                )));
            }
            _ => {
                map.insert(field.into(), json!(expected));
            }
        }
    }
    map.entry("metadata").or_insert_with(|| Value::Object(Map::new()));
    Ok(())
}

/// Whether anything but metadata and status differs: what bumps `metadata.generation`.
fn spec_changed(old: &Value, new: &Value) -> bool {
    let strip = |v: &Value| -> Value {
        let mut v = v.clone();
        if let Some(map) = v.as_object_mut() {
            map.remove("metadata");
            map.remove("status");
        }
        v
    };
    strip(old) != strip(new)
}
