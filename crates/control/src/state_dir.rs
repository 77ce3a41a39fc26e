//! The control plane's private state directory (created mode 0700). The CA keeps its
//! generated root under `ca/`.

use std::fs;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Why the state directory is unusable.
#[derive(Debug, thiserror::Error)]
#[error("state directory {path}: {source}")]
pub struct StateDirError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

/// The control plane's state directory.
#[derive(Debug, Clone)]
pub struct StateDir {
    path: PathBuf,
}

impl StateDir {
    /// Creates `path` (and parents) if missing and makes it mode 0700.
    pub fn open(path: &Path) -> Result<Self, StateDirError> {
        let fail = |source| StateDirError {
            path: path.to_owned(),
            source,
        };
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(path)
            .map_err(fail)?;
        fs::set_permissions(path, fs::Permissions::from_mode(0o700)).map_err(fail)?;
        Ok(Self {
            path: path.to_owned(),
        })
    }

    /// The directory itself.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where the self-signed root CA is persisted.
    pub fn ca_dir(&self) -> PathBuf {
        self.path.join("ca")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_a_private_directory() {
        let base = tempfile::tempdir().expect("tempdir");
        let path = base.path().join("a/state");
        let dir = StateDir::open(&path).expect("open");
        let mode = fs::metadata(dir.path()).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("chmod");
        StateDir::open(&path).expect("reopen");
        let mode = fs::metadata(&path).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "reopening tightens the mode");
    }
}
