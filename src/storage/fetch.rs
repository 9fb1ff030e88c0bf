//! `twin fetch`: copies a model or adapter from `s3://`, `pvc://` or `file://` into a local
//! folder, whole or not at all. The init containers of a TwinEndpoint's engine run it to put
//! the twin's adapter (and an `s3://` base model) where vLLM or the embedded engine loads it.
//!
//! The copy is written into a hidden folder beside the destination and renamed into place with
//! a marker naming its source, so a pod killed mid-copy leaves nothing that looks complete, and
//! a destination on a cache volume that already holds the same source is not copied again.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::{S3Options, S3Store, StorageError, StorageUri};
use crate::contract::{env, paths};

/// The file in a fetched folder that names where its content came from.
pub const MARKER: &str = ".twin-fetched";

/// What `twin fetch` copies and where.
#[derive(clap::Args, Debug, Clone)]
pub struct FetchArgs {
    /// The source: a folder or one file at `s3://`, `pvc://` or `file://`.
    pub source: String,
    /// The folder to fill (a file source lands in it under its own name).
    pub destination: PathBuf,
    /// Where `pvc://claim/...` volumes are mounted.
    #[arg(long, env = env::PVC_ROOT, default_value = paths::PVC_ROOT)]
    pub pvc_root: PathBuf,
    /// S3-compatible endpoint for s3:// sources (MinIO, Ceph); unset: AWS.
    #[arg(long, env = "AWS_ENDPOINT_URL_S3", value_name = "URL")]
    pub s3_endpoint_url: Option<String>,
    /// The bucket's region for s3:// sources.
    #[arg(long, env = "AWS_REGION")]
    pub s3_region: Option<String>,
}

/// Runs `twin fetch`: 0 when the destination holds the source, 1 with the reason otherwise.
pub async fn run(args: FetchArgs) -> ExitCode {
    match fetch(&args).await {
        Ok(Fetched::Copied(files)) => {
            println!("fetched {} ({files} files) into {}", args.source, args.destination.display());
            ExitCode::SUCCESS
        }
        Ok(Fetched::AlreadyThere) => {
            println!("{} already holds {}", args.destination.display(), args.source);
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("twin fetch: {error}");
            ExitCode::FAILURE
        }
    }
}

/// What a fetch did.
#[derive(Debug, PartialEq, Eq)]
pub enum Fetched {
    /// Copied this many files.
    Copied(usize),
    /// The destination already held the source.
    AlreadyThere,
}

/// Copies `args.source` into `args.destination`.
pub async fn fetch(args: &FetchArgs) -> Result<Fetched, StorageError> {
    let source: StorageUri = args.source.parse()?;
    let destination = &args.destination;
    let marker = destination.join(MARKER);
    if std::fs::read_to_string(&marker).is_ok_and(|held| held.trim() == args.source) {
        return Ok(Fetched::AlreadyThere);
    }
    let io = |op, path: &Path, source| StorageError::Io { op, path: path.display().to_string(), source };
    let name = destination.file_name().and_then(|n| n.to_str()).ok_or_else(|| {
        StorageError::Unsupported(format!("{}: the destination needs a folder name", destination.display()))
    })?;
    let partial = destination.with_file_name(format!(".{name}.partial"));
    if partial.exists() {
        std::fs::remove_dir_all(&partial).map_err(|e| io("remove", &partial, e))?;
    }
    std::fs::create_dir_all(&partial).map_err(|e| io("create", &partial, e))?;
    let files = match &source {
        StorageUri::S3 { bucket, prefix } => {
            let options =
                S3Options { endpoint_url: args.s3_endpoint_url.clone(), region: args.s3_region.clone() };
            copy_s3(&S3Store::new(bucket, "", &options).await, prefix, &partial).await
        }
        local => copy_local(&local.local_path(&args.pvc_root)?, &partial),
    };
    let files = match files {
        Ok(0) => Err(StorageError::Unsupported(format!(
            "nothing to fetch at {}: no such file or folder",
            args.source
        ))),
        other => other,
    };
    let files = match files {
        Ok(files) => files,
        Err(error) => {
            // Nothing half-copied stays behind.
            let _ = std::fs::remove_dir_all(&partial);
            return Err(error);
        }
    };
    std::fs::write(partial.join(MARKER), format!("{}\n", args.source))
        .map_err(|e| io("write", &partial.join(MARKER), e))?;
    if destination.exists() {
        std::fs::remove_dir_all(destination).map_err(|e| io("replace", destination, e))?;
    }
    std::fs::rename(&partial, destination).map_err(|e| io("rename", &partial, e))?;
    Ok(Fetched::Copied(files))
}

/// Copies an object, or every object below a prefix, into `into`.
async fn copy_s3(store: &S3Store, prefix: &str, into: &Path) -> Result<usize, StorageError> {
    let keys = store.list(prefix).await?;
    if keys.is_empty() {
        // Not a folder: one object, kept under its own name.
        let name = prefix.rsplit('/').next().unwrap_or(prefix);
        if name.is_empty() {
            return Ok(0);
        }
        return Ok(usize::from(store.download_to(prefix, &into.join(name)).await?));
    }
    for key in &keys {
        let path = into.join(safe_relative(key)?);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| StorageError::Io {
                op: "create",
                path: parent.display().to_string(),
                source: e,
            })?;
        }
        store.download_to(&format!("{prefix}/{key}"), &path).await?;
    }
    Ok(keys.len())
}

/// A key below the prefix as a relative path, refusing keys that would climb out of the
/// destination (`../`), which a hostile bucket could hold.
fn safe_relative(key: &str) -> Result<PathBuf, StorageError> {
    if key.split('/').any(|part| part.is_empty() || part == "." || part == "..") {
        return Err(StorageError::Unsupported(format!(
            "refusing the object key {key:?}: it is not a plain path"
        )));
    }
    Ok(PathBuf::from(key))
}

/// Copies a file, or a folder's files, into `into`.
fn copy_local(from: &Path, into: &Path) -> Result<usize, StorageError> {
    let io = |op, path: &Path, source| StorageError::Io { op, path: path.display().to_string(), source };
    if from.is_file() {
        let name = from
            .file_name()
            .ok_or_else(|| StorageError::Unsupported(format!("{} has no name", from.display())))?;
        std::fs::copy(from, into.join(name)).map_err(|e| io("copy", from, e))?;
        return Ok(1);
    }
    if !from.is_dir() {
        return Ok(0);
    }
    let mut files = 0;
    for entry in std::fs::read_dir(from).map_err(|e| io("read", from, e))? {
        let entry = entry.map_err(|e| io("read", from, e))?;
        let path = entry.path();
        let kind = entry.file_type().map_err(|e| io("inspect", &path, e))?;
        if kind.is_dir() {
            let sub = into.join(entry.file_name());
            std::fs::create_dir_all(&sub).map_err(|e| io("create", &sub, e))?;
            files += copy_local(&path, &sub)?;
        } else if kind.is_file() {
            std::fs::copy(&path, into.join(entry.file_name())).map_err(|e| io("copy", &path, e))?;
            files += 1;
        }
        // Symbolic links are not followed: a model folder has none, and following one could
        // copy what the source never meant to share.
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(source: String, destination: PathBuf) -> FetchArgs {
        FetchArgs {
            source,
            destination,
            pvc_root: PathBuf::from("/nonexistent"),
            s3_endpoint_url: None,
            s3_region: None,
        }
    }

    #[tokio::test]
    async fn a_folder_is_copied_whole_once_and_a_missing_source_leaves_nothing() {
        let dir = std::env::temp_dir().join(format!("twin-fetch-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let adapter = dir.join("run/adapter");
        std::fs::create_dir_all(adapter.join("nested")).unwrap();
        std::fs::write(adapter.join("adapter_config.json"), "{\"r\": 16}").unwrap();
        std::fs::write(adapter.join("nested/weights.safetensors"), [7u8; 64]).unwrap();
        std::fs::write(dir.join("run/adapter.gguf"), [1u8; 32]).unwrap();

        let into = dir.join("adapters/paul");
        let folder = args(format!("file://{}", adapter.display()), into.clone());
        assert_eq!(fetch(&folder).await.unwrap(), Fetched::Copied(2));
        assert_eq!(std::fs::read(into.join("nested/weights.safetensors")).unwrap(), [7u8; 64]);
        assert_eq!(fetch(&folder).await.unwrap(), Fetched::AlreadyThere);

        // Another source replaces what the folder held.
        let file = args(format!("file://{}", dir.join("run/adapter.gguf").display()), into.clone());
        assert_eq!(fetch(&file).await.unwrap(), Fetched::Copied(1));
        assert!(into.join("adapter.gguf").is_file() && !into.join("adapter_config.json").exists());

        let missing = args(format!("file://{}", dir.join("run/none").display()), dir.join("adapters/none"));
        let error = fetch(&missing).await.unwrap_err().to_string();
        assert!(error.contains("nothing to fetch at file://"), "{error}");
        assert!(!dir.join("adapters/none").exists() && !dir.join("adapters/.none.partial").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn keys_that_climb_out_are_refused() {
        assert!(safe_relative("a/../../etc/passwd").is_err() && safe_relative("/abs").is_err());
        assert_eq!(safe_relative("a/b.json").unwrap(), PathBuf::from("a/b.json"));
    }
}
