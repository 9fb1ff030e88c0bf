//! Validating a TwinDataset against what the schema cannot check (pure): the ConfigMaps its
//! sources name exist with their keys, and its URIs can be used in a cluster. What it returns
//! is what the build Job mounts.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::ResourceExt;

use crate::api::TwinDataset;
use crate::api::dataset::DatasetPhase;
use crate::operator::conditions::Assessment;
use crate::operator::driver::{Validation, Verdict};
use crate::operator::references::{StorageCheck, check_storage_uri};
use crate::storage::StorageUri;

/// How often to look again for a ConfigMap that is missing (ConfigMaps are not watched: a
/// cluster-wide ConfigMap cache would cost more memory than the operator itself).
pub const CONFIGMAP_RECHECK: Duration = Duration::from_secs(30);

/// The ConfigMaps a dataset's sources name, as observed (`None`: not found).
pub type ObservedConfigMaps = BTreeMap<String, Option<ConfigMap>>;

/// A dataset that can be built, with the volumes its build Job mounts.
#[derive(Debug, Clone)]
#[allow(missing_docs)]
pub struct ValidDataset<'a> {
    pub dataset: &'a TwinDataset,
    /// The ConfigMaps its sources read, each once, sorted.
    pub config_maps: Vec<&'a str>,
    /// The claims of its `pvc://` URIs, each with whether the build writes to it (the output).
    pub claims: BTreeMap<String, bool>,
}

/// Checks a dataset; `Proceed` with what its build mounts, or `Wait` with why not.
pub fn validate<'a>(
    dataset: &'a TwinDataset,
    config_maps: &ObservedConfigMaps,
) -> Validation<ValidDataset<'a>, DatasetPhase> {
    let invalid = |message| Validation::wait(DatasetPhase::Failed, "InvalidSpec", message);
    if let StorageCheck::Unusable(message) = check_storage_uri("spec.output.uri", &dataset.spec.output.uri) {
        return invalid(message);
    }
    let namespace = dataset.namespace().unwrap_or_default();
    for source in &dataset.spec.sources {
        if let Some(files) = &source.files
            && let StorageCheck::Unusable(message) =
                check_storage_uri(&format!("source {:?} files.uri", source.name), &files.uri)
        {
            return invalid(message);
        }
        let Some(reference) = &source.config_map else { continue };
        let missing = |reason: &str, message: String| {
            Validation::Wait(Verdict {
                assessment: Assessment::not_ready(DatasetPhase::Pending, reason, message),
                recheck: Some(CONFIGMAP_RECHECK),
            })
        };
        let Some(config_map) = config_maps.get(&reference.name).and_then(Option::as_ref) else {
            return missing(
                "ConfigMapNotFound",
                format!(
                    "ConfigMap {:?} (source {:?}) not found in namespace {namespace:?}: create it or correct the source",
                    reference.name, source.name
                ),
            );
        };
        let present = |key: &String| {
            config_map.data.as_ref().is_some_and(|d| d.contains_key(key))
                || config_map.binary_data.as_ref().is_some_and(|d| d.contains_key(key))
        };
        let absent: Vec<&String> = reference.keys.iter().filter(|k| !present(k)).collect();
        if !absent.is_empty() {
            return missing(
                "ConfigMapKeyNotFound",
                format!("ConfigMap {:?} (source {:?}) has no key {absent:?}", reference.name, source.name),
            );
        }
    }
    let mut names: Vec<&str> =
        dataset.spec.sources.iter().filter_map(|s| s.config_map.as_ref()).map(|c| c.name.as_str()).collect();
    names.sort();
    names.dedup();
    Validation::Proceed(ValidDataset { dataset, config_maps: names, claims: claims(dataset) })
}

/// The claims a dataset reads or writes through `pvc://` URIs, and whether it writes to them.
fn claims(dataset: &TwinDataset) -> BTreeMap<String, bool> {
    let mut claims = BTreeMap::new();
    let mut add = |uri: &str, writes: bool| {
        if let Ok(StorageUri::Pvc { claim, .. }) = uri.parse::<StorageUri>() {
            *claims.entry(claim).or_insert(false) |= writes;
        }
    };
    for source in &dataset.spec.sources {
        if let Some(files) = &source.files {
            add(&files.uri, false);
        }
        if let Some(archive) = &source.archive {
            add(&archive.uri, false);
        }
    }
    add(&dataset.spec.output.uri, true);
    claims
}
