//! Listing repositories and tags, sorted lexically as the
//! distribution-spec's pagination (`n`, `last`) expects.

use std::fs;
use std::path::Path;

use crate::error::{IoContext, Result};
use crate::layout::REPO_MARKER;
use crate::{Store, check_repository, fsutil};

impl Store {
    /// Every repository, sorted.
    pub fn repositories(&self) -> Result<Vec<String>> {
        let mut out = Vec::new();
        let root = self.layout().repositories();
        walk(&root, "", &mut out)?;
        out.sort();
        Ok(out)
    }

    /// Whether `repo` exists (has ever held a blob or manifest link).
    pub fn repository_exists(&self, repo: &str) -> Result<bool> {
        check_repository(repo)?;
        Ok(self.layout().repository(repo).is_dir())
    }

    /// The tags of `repo`, sorted; `None` if the repository is unknown.
    pub fn tags(&self, repo: &str) -> Result<Option<Vec<String>>> {
        if !self.repository_exists(repo)? {
            return Ok(None);
        }
        let dir = self.layout().tags(repo);
        let mut tags = fsutil::list_names(&dir).at(&dir)?;
        tags.retain(|t| ferry_oci::name::is_valid_tag(t));
        tags.sort();
        Ok(Some(tags))
    }
}

fn walk(dir: &Path, prefix: &str, out: &mut Vec<String>) -> Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).at(dir),
    };
    for entry in entries {
        let entry = entry.at(dir)?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if name == REPO_MARKER || !entry.file_type().at(&entry.path())?.is_dir() {
            continue;
        }
        let full = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        let path = entry.path();
        if path.join(REPO_MARKER).is_dir() {
            out.push(full.clone());
        }
        walk(&path, &full, out)?;
    }
    Ok(())
}
