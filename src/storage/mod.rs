//! Storage URIs (`s3://`, `pvc://`, `file://`, and `hf://` for models) and the object store the
//! pipeline writes artifacts to, with atomic writes.

pub mod fetch;
pub mod hub;
pub mod local;
pub mod s3;

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

pub use local::LocalStore;
pub use s3::{S3Options, S3Store};

/// Errors of storage access.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The URI is not one the operator understands.
    #[error("invalid storage URI {uri:?}: {reason}")]
    InvalidUri {
        /// The URI.
        uri: String,
        /// Why.
        reason: String,
    },
    /// The URI's scheme cannot be used here.
    #[error("{0}")]
    Unsupported(String),
    /// A request to a remote store failed.
    #[error("cannot {op} {uri}: {reason}")]
    Remote {
        /// What was being done.
        op: &'static str,
        /// The object.
        uri: String,
        /// What the store said.
        reason: String,
    },
    /// A file operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// Where.
        path: String,
        /// What went wrong.
        source: std::io::Error,
    },
}

/// A parsed storage URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageUri {
    /// `s3://bucket/prefix`.
    S3 {
        /// Bucket.
        bucket: String,
        /// Key prefix without leading or trailing slashes (may be empty).
        prefix: String,
    },
    /// `pvc://claim/sub/path`: a PersistentVolumeClaim mounted into the pod.
    Pvc {
        /// Claim name.
        claim: String,
        /// Path inside the volume (may be empty).
        path: String,
    },
    /// `file:///absolute/path` (local mode).
    File {
        /// The absolute path.
        path: PathBuf,
    },
}

impl FromStr for StorageUri {
    type Err = StorageError;

    fn from_str(uri: &str) -> Result<Self, Self::Err> {
        let invalid = |reason: &str| StorageError::InvalidUri { uri: uri.into(), reason: reason.into() };
        if let Some(rest) = uri.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(invalid("no bucket"));
            }
            Ok(StorageUri::S3 { bucket: bucket.into(), prefix: prefix.trim_matches('/').into() })
        } else if let Some(rest) = uri.strip_prefix("pvc://") {
            let (claim, path) = rest.split_once('/').unwrap_or((rest, ""));
            if claim.is_empty() {
                return Err(invalid("no claim name"));
            }
            Ok(StorageUri::Pvc { claim: claim.into(), path: path.trim_matches('/').into() })
        } else if let Some(path) = uri.strip_prefix("file://") {
            if !path.starts_with('/') {
                return Err(invalid("file URIs need an absolute path: file:///..."));
            }
            Ok(StorageUri::File { path: PathBuf::from(path) })
        } else {
            Err(invalid("expected s3://, pvc:// or file://"))
        }
    }
}

impl fmt::Display for StorageUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StorageUri::S3 { bucket, prefix } if prefix.is_empty() => write!(f, "s3://{bucket}"),
            StorageUri::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
            StorageUri::Pvc { claim, path } if path.is_empty() => write!(f, "pvc://{claim}"),
            StorageUri::Pvc { claim, path } => write!(f, "pvc://{claim}/{path}"),
            StorageUri::File { path } => write!(f, "file://{}", path.display()),
        }
    }
}

impl StorageUri {
    /// The URI of a path below this one (`relative` uses `/`).
    pub fn join(&self, relative: &str) -> StorageUri {
        let relative = relative.trim_matches('/');
        let join =
            |base: &str| if base.is_empty() { relative.to_string() } else { format!("{base}/{relative}") };
        match self {
            StorageUri::S3 { bucket, prefix } => {
                StorageUri::S3 { bucket: bucket.clone(), prefix: join(prefix) }
            }
            StorageUri::Pvc { claim, path } => StorageUri::Pvc { claim: claim.clone(), path: join(path) },
            StorageUri::File { path } => StorageUri::File { path: path.join(relative) },
        }
    }

    /// The local folder of a `file://` URI, or of a `pvc://` URI whose claim is mounted under
    /// `pvc_root/<claim>`.
    pub fn local_path(&self, pvc_root: &Path) -> Result<PathBuf, StorageError> {
        match self {
            StorageUri::File { path } => Ok(path.clone()),
            StorageUri::Pvc { claim, path } => Ok(pvc_root.join(claim).join(path)),
            StorageUri::S3 { .. } => Err(StorageError::Unsupported(format!("{self} is not a local path"))),
        }
    }
}

/// Where artifacts are written.
pub enum ObjectStore {
    /// A local folder (`file://`, or a mounted `pvc://`).
    Local(LocalStore),
    /// An S3 bucket.
    S3(S3Store),
}

impl ObjectStore {
    /// Opens the store of a root URI.
    pub async fn open(root: &StorageUri, pvc_root: &Path, s3: &S3Options) -> Result<Self, StorageError> {
        match root {
            StorageUri::S3 { bucket, prefix } => Ok(ObjectStore::S3(S3Store::new(bucket, prefix, s3).await)),
            _ => Ok(ObjectStore::Local(LocalStore::new(root.local_path(pvc_root)?))),
        }
    }

    /// Reads an object, `None` when it does not exist.
    pub async fn read(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        match self {
            ObjectStore::Local(store) => store.read(key),
            ObjectStore::S3(store) => store.read(key).await,
        }
    }

    /// Adds lines to a log object: appended to the file in a local folder; on S3, which cannot
    /// append, written as a new object beside it (`<key stem>.<unix millis>.<extension>`).
    pub async fn append(&self, key: &str, bytes: &[u8]) -> Result<(), StorageError> {
        match self {
            ObjectStore::Local(store) => store.append(key, bytes),
            ObjectStore::S3(store) => {
                let millis = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_millis())
                    .unwrap_or_default();
                let part = match key.rsplit_once('.') {
                    Some((stem, extension)) if !extension.contains('/') => {
                        format!("{stem}.{millis}.{extension}")
                    }
                    _ => format!("{key}.{millis}"),
                };
                store.write(&part, bytes).await
            }
        }
    }

    /// Writes an object atomically: readers see the old content or the new, never a part.
    pub async fn write(&self, key: &str, bytes: &[u8]) -> Result<(), StorageError> {
        match self {
            ObjectStore::Local(store) => store.write(key, bytes),
            ObjectStore::S3(store) => store.write(key, bytes).await,
        }
    }
}
