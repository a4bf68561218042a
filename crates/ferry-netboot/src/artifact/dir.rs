//! Files in a plain directory.

use std::path::{Path, PathBuf};

use crate::artifact::{
    Backing, Fingerprint, ServedFile, SourceTree, components, file_etag, origin,
};
use crate::error::ArtifactError;

pub struct DirTree {
    profile: String,
    root: PathBuf,
}

impl DirTree {
    pub fn open(profile: &str, root: &Path) -> Result<DirTree, ArtifactError> {
        let meta = crate::artifact::open_meta(profile, root)?;
        if !meta.is_dir() {
            return Err(ArtifactError::Open {
                profile: profile.to_string(),
                path: root.to_path_buf(),
                source: std::io::Error::new(std::io::ErrorKind::NotADirectory, "not a directory"),
            });
        }
        Ok(DirTree {
            profile: profile.to_string(),
            root: root.to_path_buf(),
        })
    }
}

impl SourceTree for DirTree {
    fn lookup(&mut self, path: &str) -> Result<Option<ServedFile>, ArtifactError> {
        let Some(parts) = components(path) else {
            return Ok(None);
        };
        let full = parts.iter().fold(self.root.clone(), |p, c| p.join(c));
        // symlinks inside the directory are the operator's choice; follow them
        let meta = match std::fs::metadata(&full) {
            Ok(m) if m.is_file() => m,
            Ok(_) => return Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(ArtifactError::Open {
                    profile: self.profile.clone(),
                    path: full,
                    source,
                });
            }
        };
        let etag = file_etag(&Fingerprint::of(&meta), "");
        let origin = origin(path, &self.describe());
        Ok(Some(ServedFile::whole(
            Backing::Path(full),
            &meta,
            etag,
            origin,
        )))
    }

    fn describe(&self) -> String {
        format!("directory {}", self.root.display())
    }
}
