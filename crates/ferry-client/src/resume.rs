//! Resume state of chunked uploads, kept in a directory the caller
//! chooses, so that a new process (after `kill -9`, a reboot, a lost
//! network) continues an upload where the registry has it instead of
//! sending the blob again.
//!
//! One small JSON file per (registry, repository, digest) holds the
//! upload URL (`Location`) and the offset the registry confirmed. It is
//! rewritten after every chunk the registry accepts, atomically (temporary
//! file, fsync, rename, fsync of the directory: rename(2) is atomic), so a
//! crash leaves the previous state or the new one, never a torn file. The
//! registry stays the authority on the offset: a resumed upload first asks
//! it (`GET` on the upload URL) and continues from what it reports.

use std::path::{Path, PathBuf};

use ferry_oci::Digest;
use ferry_oci::atomic::AtomicWrite;
use serde::{Deserialize, Serialize};

use crate::error::{ClientError, Result};

/// Where an interrupted upload stood.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResumeState {
    pub registry: String,
    pub repository: String,
    pub digest: Digest,
    pub size: u64,
    /// The upload URL the registry returned last (absolute).
    pub location: String,
    /// Bytes the registry confirmed when `location` was returned.
    pub offset: u64,
}

/// A directory of [`ResumeState`] files.
#[derive(Debug, Clone)]
pub struct ResumeStore {
    dir: PathBuf,
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> ClientError + '_ {
    move |error| ClientError::Io {
        path: path.to_path_buf(),
        error,
    }
}

impl ResumeStore {
    /// Uses (and creates) `dir`.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(io_error(&dir))?;
        Ok(ResumeStore { dir })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, registry: &str, repository: &str, digest: &Digest) -> PathBuf {
        let key = Digest::sha256(format!("{registry}\n{repository}\n{digest}").as_bytes());
        self.dir.join(format!("upload-{}.json", &key.hex()[..32]))
    }

    /// The saved state of an upload, if any. A file that does not parse
    /// (or belongs to another upload) is ignored: the upload then simply
    /// starts over.
    pub async fn load(
        &self,
        registry: &str,
        repository: &str,
        digest: &Digest,
    ) -> Result<Option<ResumeState>> {
        let path = self.path(registry, repository, digest);
        let data = tokio::task::spawn_blocking({
            let path = path.clone();
            move || match std::fs::read(&path) {
                Ok(data) => Ok(Some(data)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e),
            }
        })
        .await
        .expect("blocking read does not panic")
        .map_err(io_error(&path))?;
        let Some(data) = data else { return Ok(None) };
        match serde_json::from_slice::<ResumeState>(&data) {
            Ok(state)
                if state.registry == registry
                    && state.repository == repository
                    && &state.digest == digest =>
            {
                Ok(Some(state))
            }
            _ => {
                tracing::warn!("ignoring unusable upload state {}", path.display());
                Ok(None)
            }
        }
    }

    /// Saves `state` atomically.
    pub async fn save(&self, state: &ResumeState) -> Result<()> {
        let path = self.path(&state.registry, &state.repository, &state.digest);
        let data = serde_json::to_vec_pretty(state).expect("state serializes");
        tokio::task::spawn_blocking({
            let path = path.clone();
            move || AtomicWrite::new().replace(&path, &data)
        })
        .await
        .expect("blocking write does not panic")
        .map_err(io_error(&path))
    }

    /// Forgets an upload (finished, or unusable).
    pub async fn remove(&self, registry: &str, repository: &str, digest: &Digest) -> Result<()> {
        let path = self.path(registry, repository, digest);
        tokio::task::spawn_blocking({
            let path = path.clone();
            move || match std::fs::remove_file(&path) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(e),
            }
        })
        .await
        .expect("blocking remove does not panic")
        .map_err(io_error(&path))
    }

    /// Every saved state (for reporting what is pending).
    pub fn list(&self) -> Result<Vec<ResumeState>> {
        let mut states = Vec::new();
        for entry in std::fs::read_dir(&self.dir).map_err(io_error(&self.dir))? {
            let path = entry.map_err(io_error(&self.dir))?.path();
            let is_state = path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("upload-") && n.ends_with(".json"));
            if !is_state {
                continue;
            }
            if let Ok(state) = std::fs::read(&path)
                .map_err(|_| ())
                .and_then(|d| serde_json::from_slice(&d).map_err(|_| ()))
            {
                states.push(state);
            }
        }
        Ok(states)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn save_load_remove() {
        let dir = tempfile::tempdir().unwrap();
        let store = ResumeStore::open(dir.path().join("resume")).unwrap();
        let digest = Digest::sha256(b"blob");
        let state = ResumeState {
            registry: "r:5000".into(),
            repository: "a/b".into(),
            digest: digest.clone(),
            size: 10,
            location: "http://r:5000/v2/a/b/blobs/uploads/x?_state=y".into(),
            offset: 4,
        };
        assert_eq!(store.load("r:5000", "a/b", &digest).await.unwrap(), None);
        store.save(&state).await.unwrap();
        assert_eq!(
            store.load("r:5000", "a/b", &digest).await.unwrap(),
            Some(state.clone())
        );
        assert_eq!(store.load("r:5000", "a/c", &digest).await.unwrap(), None);
        assert_eq!(store.list().unwrap(), vec![state]);
        store.remove("r:5000", "a/b", &digest).await.unwrap();
        store.remove("r:5000", "a/b", &digest).await.unwrap();
        assert_eq!(store.load("r:5000", "a/b", &digest).await.unwrap(), None);
        // Only the state files, no temporaries left behind.
        assert_eq!(std::fs::read_dir(store.dir()).unwrap().count(), 0);
    }

    #[tokio::test]
    async fn garbage_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let store = ResumeStore::open(dir.path()).unwrap();
        let digest = Digest::sha256(b"blob");
        let path = store.path("r", "a", &digest);
        std::fs::write(&path, b"{torn").unwrap();
        assert_eq!(store.load("r", "a", &digest).await.unwrap(), None);
    }
}
