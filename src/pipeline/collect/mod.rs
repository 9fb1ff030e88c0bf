//! Collection: each source of a TwinDataset yields documents, or an error that is reported for
//! that source alone while the others still land.

pub mod archive;
pub mod chrome;
pub mod feed;
pub mod files;
pub mod ghost;
pub mod git;
pub mod html;
pub mod web;
pub mod wordpress;

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
    /// Limits on export archives.
    pub archive: archive::ArchiveLimits,
    /// How `s3://` archives are reached: the output's endpoint and region.
    pub s3: crate::storage::S3Options,
}

impl Default for CollectOptions {
    fn default() -> Self {
        Self {
            pvc_root: PathBuf::from("/mnt/twin/pvc"),
            configmap_root: PathBuf::from("/etc/twin/configmaps"),
            max_document_bytes: 10 * 1024 * 1024,
            archive: archive::ArchiveLimits::default(),
            s3: crate::storage::S3Options::default(),
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
    } else if let Some(web) = &source.web {
        web::collect_web(&source.name, web, fetcher).await
    } else if let Some(archive) = &source.archive {
        archive::collect_archive(&source.name, archive, options, fetcher).await
    } else if let Some(git) = &source.git {
        git::collect_git(&source.name, git, options, fetcher).await
    } else {
        Err("the source names no kind (feed, git, web, archive, configMap or files)".to_string())
    };
    Collected { source: source.name.clone(), result }
}
