//! Checks custom resources against their CRDs as a real API server does on create and update:
//! schema defaults, the OpenAPI v3 schema (strict: unknown fields are errors, as with
//! `kubectl apply`'s default `--validate=strict`), `x-kubernetes-list-type` uniqueness, and the
//! CEL `x-kubernetes-validations` rules (with `oldSelf` on update), evaluated by kube-cel.
//!
//! `twin up` checks its YAML with it; the validation tests hold its verdicts to the real API
//! server's.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube_cel::{CompiledSchema, Validator, apply_defaults, compile_schema};
use serde_json::{Map, Value};

/// One served version of one CRD, ready to check objects.
pub struct CrdSchema {
    /// API group, e.g. `llmtwin.dev`.
    pub group: String,
    /// Served version, e.g. `v1alpha1`.
    pub version: String,
    /// Kind, e.g. `TwinDataset`.
    pub kind: String,
    /// Plural resource name, e.g. `twindatasets`.
    pub plural: String,
    /// The `openAPIV3Schema` exactly as in the CRD.
    pub openapi_schema: Value,
    strict_json_schema: jsonschema::Validator,
    cel: CompiledSchema,
}

impl CrdSchema {
    /// Reads the first served version of a CRD. A CEL rule that does not compile is an error:
    /// the API server would refuse such a CRD.
    pub fn from_crd(crd: &CustomResourceDefinition) -> Result<Self, String> {
        let kind = &crd.spec.names.kind;
        let version = crd
            .spec
            .versions
            .iter()
            .find(|v| v.served)
            .ok_or_else(|| format!("{kind}: no served version"))?;
        let schema = version.schema.as_ref().and_then(|s| s.open_api_v3_schema.as_ref());
        let openapi_schema =
            serde_json::to_value(schema.ok_or_else(|| format!("{kind}: no openAPIV3Schema"))?)
                .map_err(|e| format!("{kind}: {e}"))?;
        let mut strict = to_strict_json_schema(&openapi_schema);
        // The API server always accepts the object envelope, whatever the schema lists.
        let envelope = serde_json::json!({"apiVersion": {"type": "string"}, "kind": {"type": "string"}, "metadata": {"type": "object"}});
        let properties = strict["properties"]
            .as_object_mut()
            .ok_or_else(|| format!("{kind}: the schema has no properties"))?;
        for (name, schema) in envelope.as_object().into_iter().flatten() {
            properties.entry(name.clone()).or_insert(schema.clone());
        }
        let strict_json_schema = jsonschema::draft4::new(&strict)
            .map_err(|e| format!("{kind}: the schema is not valid JSON Schema: {e}"))?;
        let cel = compile_schema(&openapi_schema);
        let mut compile_errors = Vec::new();
        collect_compile_errors(&cel, &mut compile_errors);
        if !compile_errors.is_empty() {
            return Err(format!("{kind}: CEL rules do not compile: {compile_errors:?}"));
        }
        Ok(Self {
            group: crd.spec.group.clone(),
            version: version.name.clone(),
            kind: crd.spec.names.kind.clone(),
            plural: crd.spec.names.plural.clone(),
            openapi_schema,
            strict_json_schema,
            cel,
        })
    }

    /// `apiVersion` of objects of this CRD.
    pub fn api_version(&self) -> String {
        format!("{}/{}", self.group, self.version)
    }

    /// The object with the schema's defaults filled in, as the API server stores it.
    pub fn with_defaults(&self, object: &Value) -> Value {
        apply_defaults(&self.openapi_schema, object)
    }

    /// Checks an object on create (`old` is `None`) or update. Returns the defaulted object, or
    /// every violation as `path: message`, the way the API server lists them in a 422.
    pub fn check(&self, object: &Value, old: Option<&Value>) -> Result<Value, Vec<String>> {
        let mut errors = Vec::new();
        if object.get("apiVersion").and_then(Value::as_str) != Some(&self.api_version()) {
            errors.push(format!("apiVersion: must be {}", self.api_version()));
        }
        if object.get("kind").and_then(Value::as_str) != Some(&self.kind) {
            errors.push(format!("kind: must be {}", self.kind));
        }
        let defaulted = self.with_defaults(object);
        for error in self.strict_json_schema.iter_errors(&defaulted) {
            let path = pointer_to_path(&error.instance_path().to_string());
            errors.push(format!("{path}: {error}"));
        }
        check_list_types(&self.openapi_schema, &defaulted, "", &mut errors);
        // Validation ratcheting (Kubernetes 1.33): a write that leaves the spec as it was (a
        // status update) does not run the spec's CEL rules again.
        let spec_unchanged = old.is_some_and(|old| old.get("spec") == object.get("spec"));
        if errors.is_empty() && !spec_unchanged {
            let old_defaulted = old.map(|o| self.with_defaults(o));
            if let Err(failures) =
                Validator::new().validate_compiled(&self.cel, &defaulted, old_defaulted.as_ref())
            {
                errors.extend(failures.iter().map(ToString::to_string));
            }
        }
        if errors.is_empty() { Ok(defaulted) } else { Err(errors) }
    }

    /// Every CEL rule in the schema with the message it reports, walking the whole tree.
    pub fn rules(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        collect_rules(&self.openapi_schema, &mut out);
        out
    }

    /// The compiled CEL rules, for static analysis.
    pub fn compiled(&self) -> &CompiledSchema {
        &self.cel
    }
}

/// The CRDs of a cluster, looked up by `apiVersion` and `kind`.
pub struct CrdCatalog {
    /// One entry per CRD.
    pub schemas: Vec<CrdSchema>,
}

impl CrdCatalog {
    /// The CRDs of the three kinds, generated from the Rust types (`crds/` is checked against
    /// them by the tests). Their rules compile (the tests hold them to it).
    pub fn generated() -> Self {
        let schemas = crate::api::crds().iter().map(CrdSchema::from_crd).collect::<Result<_, _>>();
        Self { schemas: schemas.expect("the generated CRDs' schemas and rules compile") }
    }

    /// The CRD of a kind.
    pub fn by_kind(&self, kind: &str) -> Option<&CrdSchema> {
        self.schemas.iter().find(|s| s.kind == kind)
    }

    /// Checks an object against the CRD named by its `kind`.
    pub fn check(&self, object: &Value, old: Option<&Value>) -> Result<Value, Vec<String>> {
        let kind = object.get("kind").and_then(Value::as_str).unwrap_or_default();
        match self.schemas.iter().find(|s| s.kind == kind) {
            Some(schema) => schema.check(object, old),
            None => Err(vec![format!("kind: no CRD serves kind {kind:?}")]),
        }
    }
}

/// Turns a Kubernetes structural schema into a strict JSON Schema (draft 4 semantics, as
/// OpenAPI 3.0 uses): `nullable` allows null, and objects with `properties` refuse unknown
/// fields unless they preserve them.
fn to_strict_json_schema(schema: &Value) -> Value {
    let Value::Object(map) = schema else {
        return schema.clone();
    };
    let mut out = Map::new();
    for (key, value) in map {
        let converted = match key.as_str() {
            "properties" => Value::Object(
                value
                    .as_object()
                    .map(|props| props.iter().map(|(k, v)| (k.clone(), to_strict_json_schema(v))).collect())
                    .unwrap_or_default(),
            ),
            "items" | "additionalProperties" if value.is_object() => to_strict_json_schema(value),
            "allOf" | "anyOf" | "oneOf" => Value::Array(
                value.as_array().map(|a| a.iter().map(to_strict_json_schema).collect()).unwrap_or_default(),
            ),
            "not" => to_strict_json_schema(value),
            // Descriptions and Kubernetes extensions do not validate anything by themselves.
            "description" | "default" | "nullable" | "format" => continue,
            k if k.starts_with("x-kubernetes-") => continue,
            _ => value.clone(),
        };
        out.insert(key.clone(), converted);
    }
    if map.get("nullable") == Some(&Value::Bool(true)) {
        if let Some(Value::String(t)) = out.get("type").cloned() {
            out.insert("type".into(), serde_json::json!([t, "null"]));
        }
        if let Some(Value::Array(values)) = out.get_mut("enum") {
            values.push(Value::Null);
        }
    }
    let preserves = map.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
    if map.contains_key("properties") && !map.contains_key("additionalProperties") && !preserves {
        out.insert("additionalProperties".into(), Value::Bool(false));
    }
    out.into_iter().collect::<Map<_, _>>().into()
}

/// Enforces `x-kubernetes-list-type: map` (unique keys) and `set` (unique items).
fn check_list_types(schema: &Value, value: &Value, path: &str, errors: &mut Vec<String>) {
    match value {
        Value::Object(fields) => {
            for (name, field) in fields {
                if let Some(sub) = schema.get("properties").and_then(|p| p.get(name)) {
                    check_list_types(sub, field, &join(path, name), errors);
                } else if let Some(sub) = schema.get("additionalProperties").filter(|s| s.is_object()) {
                    check_list_types(sub, field, &join(path, name), errors);
                }
            }
        }
        Value::Array(items) => {
            let list_type = schema.get("x-kubernetes-list-type").and_then(Value::as_str);
            let mut seen = Vec::new();
            for (i, item) in items.iter().enumerate() {
                let identity = match list_type {
                    Some("map") => {
                        let keys: Vec<Value> = schema["x-kubernetes-list-map-keys"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(Value::as_str)
                            .map(|k| item.get(k).cloned().unwrap_or(Value::Null))
                            .collect();
                        Some(Value::Array(keys))
                    }
                    Some("set") => Some(item.clone()),
                    _ => None,
                };
                if let Some(identity) = identity {
                    if seen.contains(&identity) {
                        errors.push(format!("{path}[{i}]: Duplicate value: {identity}"));
                    }
                    seen.push(identity);
                }
                if let Some(sub) = schema.get("items") {
                    check_list_types(sub, item, &format!("{path}[{i}]"), errors);
                }
            }
        }
        _ => {}
    }
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() { name.to_string() } else { format!("{path}.{name}") }
}

/// `/spec/sources/0/name` -> `spec.sources[0].name`.
fn pointer_to_path(pointer: &str) -> String {
    let mut out = String::new();
    for part in pointer.split('/').filter(|p| !p.is_empty()) {
        if part.chars().all(|c| c.is_ascii_digit()) {
            out.push_str(&format!("[{part}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(part);
        }
    }
    if out.is_empty() { "<root>".into() } else { out }
}

fn collect_rules(schema: &Value, out: &mut Vec<(String, String)>) {
    match schema {
        Value::Object(map) => {
            if let Some(Value::Array(rules)) = map.get("x-kubernetes-validations") {
                for rule in rules {
                    out.push((
                        rule["rule"].as_str().unwrap_or_default().to_string(),
                        rule["message"].as_str().unwrap_or_default().to_string(),
                    ));
                }
            }
            for value in map.values() {
                collect_rules(value, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|i| collect_rules(i, out)),
        _ => {}
    }
}

fn collect_compile_errors(schema: &CompiledSchema, out: &mut Vec<String>) {
    out.extend(schema.compilation_errors().iter().map(|e| e.to_string()));
    for child in schema.properties.values() {
        collect_compile_errors(child, out);
    }
    if let Some(items) = &schema.items {
        collect_compile_errors(items, out);
    }
    if let Some(additional) = &schema.additional_properties {
        collect_compile_errors(additional, out);
    }
}
