//! Models from the Hugging Face Hub (`hf://org/name[@revision]`): the files a
//! sentence-transformers folder needs, downloaded once into the models folder through the
//! guarded HTTP client, each file written beside its final name and renamed into place, with
//! `config.json` last so that a half-finished download is never taken for a model.

use std::path::{Path, PathBuf};

use crate::net::http::Fetcher;

/// Files a model needs, and files used when present.
const REQUIRED: &[&str] = &["tokenizer.json", "model.safetensors", "config.json"];
const OPTIONAL: &[&str] = &["sentence_bert_config.json", "modules.json", "1_Pooling/config.json"];

/// Largest file downloaded.
const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024 * 1024;

/// Where the Hub is and who is asking.
#[derive(Debug, Clone)]
pub struct HubOptions {
    /// The Hub's base URL (`HF_ENDPOINT`, for mirrors).
    pub endpoint: String,
    /// A token for gated or private models (`HF_TOKEN`).
    pub token: Option<String>,
}

impl Default for HubOptions {
    fn default() -> Self {
        Self { endpoint: "https://huggingface.co".into(), token: None }
    }
}

impl HubOptions {
    /// The Hub as the environment configures it.
    pub fn from_env() -> Self {
        let mut options = Self::default();
        if let Ok(endpoint) = std::env::var("HF_ENDPOINT")
            && !endpoint.is_empty()
        {
            options.endpoint = endpoint;
        }
        options.token = std::env::var("HF_TOKEN").ok().filter(|t| !t.is_empty());
        options
    }
}

/// A parsed `hf://org/name[@revision]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubModel {
    /// `org/name`.
    pub repo: String,
    /// Branch, tag or commit; `main` when unset.
    pub revision: String,
}

impl HubModel {
    /// Parses a `hf://` URI.
    pub fn parse(uri: &str) -> Result<Self, String> {
        let rest = uri.strip_prefix("hf://").ok_or_else(|| format!("{uri} is not an hf:// URI"))?;
        let (repo, revision) = rest.split_once('@').unwrap_or((rest, "main"));
        let valid = |part: &str| {
            !part.is_empty()
                && part != "."
                && part != ".."
                && part.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        };
        let parts: Vec<&str> = repo.split('/').collect();
        if parts.is_empty() || parts.len() > 2 || !parts.iter().all(|p| valid(p)) {
            return Err(format!("{uri}: expected hf://org/name or hf://name"));
        }
        if revision.is_empty() || revision.contains("..") || revision.starts_with('/') {
            return Err(format!("{uri}: bad revision {revision:?}"));
        }
        Ok(Self { repo: repo.into(), revision: revision.into() })
    }

    /// The model's folder under the models folder: `org/name`, or `org/name@revision` for a
    /// revision other than `main`.
    pub fn folder(&self, models_dir: &Path) -> PathBuf {
        if self.revision == "main" {
            models_dir.join(&self.repo)
        } else {
            models_dir.join(format!("{}@{}", self.repo, self.revision.replace('/', "--")))
        }
    }
}

/// Downloads a model's files into its folder unless already there; returns the folder.
pub async fn download(
    model: &HubModel,
    models_dir: &Path,
    hub: &HubOptions,
    fetcher: &Fetcher,
) -> Result<PathBuf, String> {
    let folder = model.folder(models_dir);
    if folder.join("config.json").is_file() {
        return Ok(folder);
    }
    tracing::info!(model = %model.repo, revision = %model.revision, folder = %folder.display(), "downloading from the Hub");
    let files = OPTIONAL.iter().map(|f| (*f, false)).chain(REQUIRED.iter().map(|f| (*f, true)));
    for (file, required) in files {
        fetch_file(model, &folder, file, required, hub, fetcher).await?;
    }
    Ok(folder)
}

/// Downloads one file of a Hub repository (a GGUF model, say) into the model's folder unless
/// already there; returns its path.
pub async fn download_file(
    model: &HubModel,
    file: &str,
    models_dir: &Path,
    hub: &HubOptions,
    fetcher: &Fetcher,
) -> Result<PathBuf, String> {
    if file.split('/').any(|part| part.is_empty() || part == "." || part == "..") {
        return Err(format!("hf://{}: bad file name {file:?}", model.repo));
    }
    let folder = model.folder(models_dir);
    let path = folder.join(file);
    if !path.is_file() {
        tracing::info!(model = %model.repo, revision = %model.revision, file, "downloading from the Hub");
        fetch_file(model, &folder, file, true, hub, fetcher).await?;
    }
    Ok(path)
}

/// Streams one file into `folder`, through a partial file renamed into place; a missing
/// optional file is no error.
async fn fetch_file(
    model: &HubModel,
    folder: &Path,
    file: &str,
    required: bool,
    hub: &HubOptions,
    fetcher: &Fetcher,
) -> Result<(), String> {
    let url =
        format!("{}/{}/resolve/{}/{file}", hub.endpoint.trim_end_matches('/'), model.repo, model.revision);
    let destination = folder.join(file);
    let parent = destination.parent().expect("a file has a folder");
    std::fs::create_dir_all(parent).map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    let partial = parent.join(format!(".{}.partial", destination.file_name().unwrap().to_string_lossy()));
    match fetcher.download(&url, &partial, MAX_FILE_BYTES, hub.token.as_deref()).await {
        Ok(bytes) => {
            std::fs::rename(&partial, &destination)
                .map_err(|e| format!("cannot move {} into place: {e}", destination.display()))?;
            tracing::info!(file, bytes, "downloaded");
            Ok(())
        }
        Err(crate::net::http::FetchError::Status { status: 404, .. }) if !required => {
            let _ = std::fs::remove_file(&partial);
            Ok(())
        }
        Err(error) => {
            let _ = std::fs::remove_file(&partial);
            let hint = match &error {
                crate::net::http::FetchError::Status { status: 401 | 403, .. } => {
                    " (a gated or private model needs HF_TOKEN)"
                }
                crate::net::http::FetchError::Status { status: 404, .. } => {
                    " (no such model, revision or file)"
                }
                _ => "",
            };
            Err(format!("cannot download hf://{}@{}: {error}{hint}", model.repo, model.revision))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_parse_into_safe_folders() {
        let model = HubModel::parse("hf://sentence-transformers/all-MiniLM-L6-v2").unwrap();
        assert_eq!(model.revision, "main");
        assert_eq!(model.folder(Path::new("/m")), Path::new("/m/sentence-transformers/all-MiniLM-L6-v2"));
        let pinned = HubModel::parse("hf://org/name@v1.0").unwrap();
        assert_eq!(pinned.folder(Path::new("/m")), Path::new("/m/org/name@v1.0"));
        for bad in ["hf://../etc", "hf://a/b/c", "hf://org/..", "hf://", "hf://org/name@"] {
            assert!(HubModel::parse(bad).is_err(), "{bad}");
        }
    }
}
