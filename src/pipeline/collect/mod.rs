//! Collection: each source of a TwinDataset yields documents, or an error that is reported for
//! that source alone while the others still land.

pub mod feed;
pub mod files;
pub mod html;

use std::path::PathBuf;

use crate::api::dataset::DataSource;
use crate::net::http::Fetcher;

use super::document::Document;

/// Where collectors find what the pod mounts, and their limits.
#[derive(Debug, Clone)]
pub struct CollectOptions {
    /// Where `pvc://claim/...` volumes are mounted: `<pvc_root>/<claim>`.
    pub pvc_root: PathBuf,
    /// Where ConfigMaps are mounted: `<configmap_root>/<name>/<key>`.
    pub configmap_root: PathBuf,
    /// Largest single file or page read, in bytes.
    pub max_document_bytes: u64,
}

impl Default for CollectOptions {
    fn default() -> Self {
        Self {
            pvc_root: PathBuf::from("/mnt/twin/pvc"),
            configmap_root: PathBuf::from("/etc/twin/configmaps"),
            max_document_bytes: 10 * 1024 * 1024,
        }
    }
}

/// What one source yielded.
#[derive(Debug)]
pub struct Collected {
    /// The source's name.
    pub source: String,
    /// Its documents, or why it failed.
    pub result: Result<Vec<Document>, String>,
}

/// Collects one source.
pub async fn collect(source: &DataSource, options: &CollectOptions, fetcher: &Fetcher) -> Collected {
    let result = if let Some(feed) = &source.feed {
        feed::collect_feed(&source.name, feed, fetcher).await
    } else if let Some(files) = &source.files {
        files::collect_files(&source.name, files, options)
    } else if let Some(config_map) = &source.config_map {
        files::collect_config_map(&source.name, config_map, options)
    } else {
        let kind = if source.git.is_some() {
            "git"
        } else if source.web.is_some() {
            "web"
        } else {
            "archive"
        };
        Err(format!(
            "{kind} sources are not supported by this build of twin yet; files and configMap sources are"
        ))
    };
    Collected { source: source.name.clone(), result }
}
