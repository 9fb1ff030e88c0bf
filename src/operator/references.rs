//! Checks the schema cannot express, shared by the controllers: URIs that only work in local
//! mode. (What a reference to a missing twin says is `api::common::missing_reference`, which
//! `twin up` says too.)

/// Whether a storage URI can be used by workloads in a cluster.
#[derive(Debug, PartialEq, Eq)]
pub enum StorageCheck {
    /// `s3://` or `pvc://`.
    Usable,
    /// Why not, for the Ready condition.
    Unusable(String),
}

/// `file://` URIs name a folder on one machine: fine for `twin up`, meaningless in a cluster.
pub fn check_storage_uri(field: &str, uri: &str) -> StorageCheck {
    check_local(field, uri, "s3://bucket/prefix or pvc://claim/path")
}

/// The same for model URIs, which may also come from the Hugging Face Hub.
pub fn check_model_uri(field: &str, uri: &str) -> StorageCheck {
    check_local(field, uri, "hf://, s3:// or pvc://")
}

fn check_local(field: &str, uri: &str, alternatives: &str) -> StorageCheck {
    if uri.starts_with("file://") {
        StorageCheck::Unusable(format!(
            "{field}: {uri} is a local path, which works only in local mode (twin up); in a cluster use {alternatives}"
        ))
    } else {
        StorageCheck::Usable
    }
}
