//! Blobs as a repository sees them: a blob is in a repository when its
//! verified data is in `blobs/` and the repository links it (as a blob, or
//! as a manifest, which is stored as a blob too). Linking per repository
//! is what keeps one tenant from reading another's blobs by digest, and
//! what a cross-repository mount checks.

use std::fs::{self, File};
use std::io;

use ferry_oci::Digest;

use crate::error::{IoContext, Result};
use crate::{Store, check_repository, fsutil};

impl Store {
    /// Size of the blob if its data is in the store (in any repository).
    pub fn blob_size(&self, digest: &Digest) -> Result<Option<u64>> {
        self.pin(digest);
        let path = self.layout().blob(digest);
        match fs::metadata(&path) {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).at(&path),
        }
    }

    /// Size of the blob if `repo` links it (as a blob or a manifest) and
    /// its data is present.
    pub fn repo_blob_size(&self, repo: &str, digest: &Digest) -> Result<Option<u64>> {
        check_repository(repo)?;
        if !self.is_linked(repo, digest) {
            return Ok(None);
        }
        self.blob_size(digest)
    }

    fn is_linked(&self, repo: &str, digest: &Digest) -> bool {
        self.layout().blob_link(repo, digest).exists()
            || self.layout().manifest_link(repo, digest).exists()
    }

    /// Opens the blob for reading if `repo` has it; returns the file and its size.
    pub fn open_blob(&self, repo: &str, digest: &Digest) -> Result<Option<(File, u64)>> {
        check_repository(repo)?;
        if !self.is_linked(repo, digest) {
            return Ok(None);
        }
        self.open_content(digest)
    }

    /// Opens a blob by digest alone, whatever repository links it: for
    /// trusted local callers (a content cache, bundle writing), never for
    /// requests from the network.
    pub fn open_content(&self, digest: &Digest) -> Result<Option<(File, u64)>> {
        self.pin(digest);
        let path = self.layout().blob(digest);
        match File::open(&path) {
            Ok(f) => {
                let len = f.metadata().at(&path)?.len();
                Ok(Some((f, len)))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).at(&path),
        }
    }

    /// Reads a whole (small) blob that `repo` has.
    pub fn read_blob(&self, repo: &str, digest: &Digest) -> Result<Option<Vec<u8>>> {
        check_repository(repo)?;
        if !self.is_linked(repo, digest) {
            return Ok(None);
        }
        self.pin(digest);
        let path = self.layout().blob(digest);
        fsutil::read_optional(&path).at(&path)
    }

    /// Links an existing blob into `repo`.
    pub(crate) fn link_blob(&self, repo: &str, digest: &Digest) -> Result<()> {
        let link = self.layout().blob_link(repo, digest);
        fsutil::create_marker(&link).at(&link)?;
        Ok(())
    }

    /// Cross-repository mount: links into `to` a blob that `from` has.
    /// Returns the blob's size, or `None` if it is not mountable (then the
    /// registry falls back to an ordinary upload).
    pub fn mount_blob(&self, to: &str, from: &str, digest: &Digest) -> Result<Option<u64>> {
        check_repository(to)?;
        let Some(size) = self.repo_blob_size(from, digest)? else {
            return Ok(None);
        };
        self.link_blob(to, digest)?;
        // The data may have been collected between the check and the link.
        if self.blob_size(digest)?.is_none() {
            return Ok(None);
        }
        Ok(Some(size))
    }

    /// Cross-repository mount without a named source (distribution-spec:
    /// "the registry MAY treat the from parameter as optional"): links into
    /// `to` a blob whose verified data the store holds. Returns its size,
    /// or `None` if the store does not have it.
    ///
    /// This reveals nothing a caller could not already read: every caller
    /// allowed to push may pull from every repository (see the registry's
    /// auth), and a blob's data is only ever content verified against the
    /// digest asked for.
    pub fn mount_stored_blob(&self, to: &str, digest: &Digest) -> Result<Option<u64>> {
        check_repository(to)?;
        if self.blob_size(digest)?.is_none() {
            return Ok(None);
        }
        self.link_blob(to, digest)?;
        // The data may have been collected between the check and the link.
        self.blob_size(digest)
    }

    /// Removes `repo`'s link to a blob. The data stays until GC finds no
    /// manifest that references it. Returns whether the blob was linked.
    pub fn delete_blob(&self, repo: &str, digest: &Digest) -> Result<bool> {
        check_repository(repo)?;
        let link = self.layout().blob_link(repo, digest);
        fsutil::remove(&link).at(&link)
    }
}
