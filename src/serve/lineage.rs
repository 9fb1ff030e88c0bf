//! What a gateway is told it serves at run time (`--lineage-file`): the base model, adapter and
//! dataset revisions of a TwinEndpoint on a shared engine, given through a mounted ConfigMap and
//! re-read while the gateway serves, so that a retrained adapter or a new dataset revision
//! moves no pod. Every answer's lineage names what the file says; retrieval reads the dataset
//! revision it pins.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tracing::{info, warn};

use super::gateway::Gateway;
use super::knowledge::DatasetLocation;
use crate::api::endpoint::ServedModel;

/// How often the file is read: a local file, cheap to read, and the kubelet has already waited
/// its own sync period before it changes.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// The served model the file at `path` names (a TwinEndpoint's `status.model`, as JSON).
pub fn read(path: &Path) -> Result<ServedModel, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the lineage file {}: {e}", path.display()))?;
    let served: ServedModel = serde_json::from_str(&text).map_err(|e| {
        format!(
            "the lineage file {} is not a served model ({{\"baseModel\", \"adapterUri\", \"adapterRevision\", \"datasetRevision\"}}): {e}",
            path.display()
        )
    })?;
    if served.base_model.trim().is_empty() {
        return Err(format!("the lineage file {} names no baseModel", path.display()));
    }
    Ok(served)
}

/// Makes `served` what the gateway names, and the revision it pins the one `location` serves
/// from the next refresh on (told through `pinned` when it moved).
pub fn apply(gateway: &Gateway, served: ServedModel, location: Option<&DatasetLocation>, pinned: &Notify) {
    let moved_revision =
        gateway.served.load().as_deref().map(|s| &s.dataset_revision) != Some(&served.dataset_revision);
    if let Some(location) = location
        && moved_revision
    {
        location.pin(served.dataset_revision.clone());
        pinned.notify_one();
    }
    gateway.served.store(Some(Arc::new(served)));
}

/// Re-reads the file every second while the gateway serves, and applies what changed. A file
/// that cannot be read or parsed leaves the last good one in force, said once per new error.
pub async fn follow(
    gateway: Arc<Gateway>,
    path: PathBuf,
    location: Option<Arc<DatasetLocation>>,
    pinned: Arc<Notify>,
) {
    let mut last_error: Option<String> = None;
    loop {
        tokio::time::sleep(CHECK_EVERY).await;
        match read(&path) {
            Ok(served) => {
                last_error = None;
                if gateway.served.load().as_deref() == Some(&served) {
                    continue;
                }
                info!(
                    base_model = %served.base_model,
                    adapter = ?served.adapter_uri,
                    dataset_revision = ?served.dataset_revision,
                    "the lineage file names another model; answers name it from now on"
                );
                apply(&gateway, served, location.as_deref(), &pinned);
            }
            Err(error) if last_error.as_ref() != Some(&error) => {
                warn!("{error}; still naming the last model it named");
                last_error = Some(error);
            }
            Err(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_that_is_not_a_served_model_is_refused_with_its_path() {
        let folder = std::env::temp_dir().join(format!("twin-lineage-{}", std::process::id()));
        std::fs::create_dir_all(&folder).unwrap();
        let file = folder.join("model.json");
        std::fs::write(
            &file,
            r#"{"baseModel": "hf://org/base", "adapterUri": "s3://b/a", "datasetRevision": "r2"}"#,
        )
        .unwrap();
        let served = read(&file).unwrap();
        assert_eq!(
            (served.base_model.as_str(), served.adapter_uri.as_deref(), served.dataset_revision.as_deref()),
            ("hf://org/base", Some("s3://b/a"), Some("r2"))
        );
        std::fs::write(&file, "{\"adapterUri\": 3").unwrap();
        let error = read(&file).unwrap_err();
        assert!(error.contains("is not a served model") && error.contains("model.json"), "{error}");
        std::fs::write(&file, r#"{"baseModel": " "}"#).unwrap();
        assert!(read(&file).unwrap_err().contains("names no baseModel"));
        let missing = read(&folder.join("gone.json")).unwrap_err();
        assert!(missing.starts_with("cannot read the lineage file"), "{missing}");
        std::fs::remove_dir_all(&folder).unwrap();
    }
}
