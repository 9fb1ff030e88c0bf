//! What `twin up` runs, in which order, checked before anything runs: each resource after what
//! it references (datasets, then the training jobs that train on them, then the endpoints that
//! serve them); a reference to a resource that is not in the YAML, a name used twice, and what
//! exists only in a cluster (`pvc://`, ConfigMap sources) or not at all (a corpus folder) are
//! named by file and field.

use std::collections::BTreeSet;

use serde_json::Value;

use super::manifest::{Located, Twin, find};

/// A `file://` folder that must exist: `(field, path)`.
fn local_folders(twin: &Twin) -> Vec<(String, String)> {
    let Twin::Dataset(dataset) = twin else { return Vec::new() };
    dataset
        .spec
        .sources
        .iter()
        .enumerate()
        .filter_map(|(i, source)| {
            let uri = &source.files.as_ref()?.uri;
            let path = uri.strip_prefix("file://")?;
            Some((format!("spec.sources[{i}].files.uri"), path.to_string()))
        })
        .collect()
}

/// Every string field under `value` that names a `pvc://` location, as `spec.a.b[0]`.
fn pvc_fields(value: &Value, path: &str, out: &mut Vec<String>) {
    match value {
        Value::String(text) if text.starts_with("pvc://") => out.push(path.to_string()),
        Value::Object(fields) => {
            for (name, field) in fields {
                pvc_fields(field, &format!("{path}.{name}"), out);
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                pvc_fields(item, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// What in a resource exists only in a cluster, or not on this machine.
fn local_problems(resource: &Located) -> Vec<String> {
    let at = resource.at();
    let spec = match &resource.twin {
        Twin::Dataset(d) => serde_json::to_value(&d.spec),
        Twin::Training(t) => serde_json::to_value(&t.spec),
        Twin::Endpoint(e) => serde_json::to_value(&e.spec),
    }
    .unwrap_or_default();
    let mut fields = Vec::new();
    pvc_fields(&spec, "spec", &mut fields);
    let mut problems: Vec<String> = fields
        .into_iter()
        .map(|field| {
            format!(
                "{at}: {field}: pvc:// locations exist only in a cluster; use file:///absolute/path locally"
            )
        })
        .collect();
    if let Twin::Dataset(dataset) = &resource.twin {
        for (i, source) in dataset.spec.sources.iter().enumerate() {
            if source.config_map.is_some() {
                problems.push(format!(
                    "{at}: spec.sources[{i}].configMap: ConfigMaps exist only in a cluster; use a files source locally"
                ));
            }
        }
    }
    for (field, path) in local_folders(&resource.twin) {
        if !std::path::Path::new(&path).is_dir() {
            problems.push(format!("{at}: {field}: the folder {path} does not exist"));
        }
    }
    problems
}

/// The names a resource references: `(kind, name, field)`.
fn references(twin: &Twin) -> Vec<(&'static str, String, &'static str)> {
    match twin {
        Twin::Dataset(_) => Vec::new(),
        Twin::Training(job) => {
            vec![("TwinDataset", job.spec.dataset_ref.name.clone(), "spec.datasetRef.name")]
        }
        Twin::Endpoint(endpoint) => {
            let mut refs = Vec::new();
            if let Some(job) = &endpoint.spec.model.training_job_ref {
                refs.push(("TwinTrainingJob", job.name.clone(), "spec.model.trainingJobRef.name"));
            }
            if let Some(dataset) = &endpoint.spec.dataset_ref {
                refs.push(("TwinDataset", dataset.name.clone(), "spec.datasetRef.name"));
            }
            refs
        }
    }
}

fn rank(twin: &Twin) -> u8 {
    match twin {
        Twin::Dataset(_) => 0,
        Twin::Training(_) => 1,
        Twin::Endpoint(_) => 2,
    }
}

/// The resources in the order they run, or every problem found.
pub fn plan(mut resources: Vec<Located>) -> Result<Vec<Located>, Vec<String>> {
    let mut problems = Vec::new();
    let mut seen = BTreeSet::new();
    for resource in &resources {
        let key =
            (resource.twin.kind(), resource.twin.namespace().to_string(), resource.twin.name().to_string());
        if !seen.insert(key) {
            problems.push(format!(
                "{}: {} {} is defined twice in namespace {}",
                resource.at(),
                resource.twin.kind(),
                resource.twin.name(),
                resource.twin.namespace()
            ));
        }
    }
    for resource in &resources {
        problems.extend(local_problems(resource));
        for (kind, name, field) in references(&resource.twin) {
            let known = find(&resources, kind, resource.twin.namespace(), &name).is_some();
            if !known {
                problems.push(format!(
                    "{}: {field}: {kind} {name:?} is not in the YAML given (namespace {})",
                    resource.at(),
                    resource.twin.namespace()
                ));
            }
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    // Stable: resources of one kind keep the order they were written in.
    resources.sort_by_key(|resource| rank(&resource.twin));
    Ok(resources)
}
