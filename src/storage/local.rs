//! A local folder as an object store: keys are relative paths; writes go to a temporary file
//! in the same folder and are renamed into place, so a reader never sees half a file.

use std::path::{Path, PathBuf};

use super::StorageError;

/// A folder holding objects.
pub struct LocalStore {
    root: PathBuf,
}

impl LocalStore {
    /// A store rooted at `root` (created on the first write).
    pub fn new(root: PathBuf) -> Self {
        Self { root }
    }

    fn path(&self, key: &str) -> Result<PathBuf, StorageError> {
        let relative = Path::new(key);
        // Keys come from the pipeline, never from users; refuse escapes all the same.
        if relative.is_absolute()
            || relative.components().any(|c| matches!(c, std::path::Component::ParentDir))
        {
            return Err(StorageError::Unsupported(format!("object key {key:?} leaves the store")));
        }
        Ok(self.root.join(relative))
    }

    /// Reads a key, `None` when absent.
    pub fn read(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        let path = self.path(key)?;
        match std::fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(StorageError::Io { op: "read", path: path.display().to_string(), source }),
        }
    }

    /// Appends to a key (created if absent) in one write, so that lines of one call stay together.
    pub fn append(&self, key: &str, bytes: &[u8]) -> Result<(), StorageError> {
        use std::io::Write;
        let path = self.path(key)?;
        let io = |op: &'static str| {
            let path = path.display().to_string();
            move |source| StorageError::Io { op, path, source }
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io("create folder for"))?;
        }
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io("open for appending"))?;
        file.write_all(bytes).map_err(io("append to"))
    }

    /// Writes a key atomically (temporary file, fsync, rename).
    pub fn write(&self, key: &str, bytes: &[u8]) -> Result<(), StorageError> {
        use std::io::Write;
        let path = self.path(key)?;
        fn io(op: &'static str, p: &Path) -> impl FnOnce(std::io::Error) -> StorageError + use<> {
            let path = p.display().to_string();
            move |source| StorageError::Io { op, path, source }
        }
        let parent = path.parent().expect("a key has a parent folder");
        std::fs::create_dir_all(parent).map_err(io("create folder", parent))?;
        let temporary = parent.join(format!(
            ".{}.tmp-{}",
            path.file_name().unwrap().to_string_lossy(),
            std::process::id()
        ));
        let mut file = std::fs::File::create(&temporary).map_err(io("create", &temporary))?;
        file.write_all(bytes).map_err(io("write", &temporary))?;
        file.sync_all().map_err(io("sync", &temporary))?;
        std::fs::rename(&temporary, &path).map_err(io("rename into", &path))?;
        Ok(())
    }
}
