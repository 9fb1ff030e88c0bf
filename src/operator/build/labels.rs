//! The labels, names and owner references every child carries.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::Resource;

use crate::pipeline::document::sha256_hex;

/// `app.kubernetes.io/*` labels of a child of `instance` in `component`.
pub fn child_labels(name: &str, instance: &str, component: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".into(), name.into()),
        ("app.kubernetes.io/instance".into(), label_value(instance)),
        ("app.kubernetes.io/component".into(), component.into()),
        ("app.kubernetes.io/managed-by".into(), "twin-operator".into()),
        ("app.kubernetes.io/part-of".into(), "twin-operator".into()),
    ])
}

/// A label value: at most 63 characters.
fn label_value(value: &str) -> String {
    if value.len() <= 63 { value.to_string() } else { bounded_name(value, "") }
}

/// A deterministic DNS-label name within 63 characters: `<base><suffix>`, with the base cut
/// and a hash of the whole appended when too long.
pub fn bounded_name(base: &str, suffix: &str) -> String {
    let full = format!("{base}{suffix}");
    if full.len() <= 63 {
        return full;
    }
    let hash = &sha256_hex(full.as_bytes())[..8];
    let keep = 63 - suffix.len() - hash.len() - 1;
    format!("{}-{hash}{suffix}", base[..keep].trim_end_matches('-'))
}

/// The controller owner reference to a twin: its children go when it goes.
pub fn owner_reference<K: Resource<DynamicType = ()>>(owner: &K) -> Option<OwnerReference> {
    owner.controller_owner_ref(&())
}
