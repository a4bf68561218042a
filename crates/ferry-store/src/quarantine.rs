//! Taking corrupt blobs out of service.
//!
//! A blob whose bytes no longer hash to its name (a flipped bit on disk, a
//! file edited by hand) must not be served, and must not make a push or an
//! import of the same digest believe the blob is already there. Nothing in
//! the store ever overwrites a blob that exists, so the corrupt file is
//! moved out of `blobs/` into `quarantine/` (kept for inspection, never
//! read by ferry): from then on the blob is simply missing, every lookup
//! says so, and the next push or import stores it again. Repository links
//! stay, so the manifests that need it are whole again as soon as it is.
//!
//! [`Store::recheck_blob`] is the one-blob check (what `bundle import
//! --repair` runs on each blob it would otherwise trust);
//! [`Store::fsck_and_repair`] is fsck that quarantines what it finds.

use std::fs;
use std::io;
use std::path::PathBuf;

use ferry_oci::Digest;

use crate::error::{IoContext, Result};
use crate::{Store, fsutil};

/// What re-hashing one stored blob found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobCheck {
    /// The store has no data for it.
    Missing,
    /// Its data hashes to its digest.
    Intact { size: u64 },
    /// Its data hashed to `actual`; it has been moved to `quarantined`
    /// and is now missing.
    Corrupt {
        actual: Digest,
        quarantined: PathBuf,
    },
}

impl Store {
    /// Re-hashes the data of blob `digest`. A corrupt one is quarantined,
    /// so that it is no longer served and the next push or
    /// [`Store::put_blob`] of that digest stores it again.
    pub fn recheck_blob(&self, digest: &Digest) -> Result<BlobCheck> {
        let path = self.layout().blob(digest);
        let mut buf = vec![0u8; 1024 * 1024];
        match fsutil::hash_file(&path, digest.algorithm(), &mut buf) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(BlobCheck::Missing),
            Err(e) => Err(e).at(&path),
            Ok((actual, size)) if &actual == digest => Ok(BlobCheck::Intact { size }),
            Ok((actual, _)) => match self.quarantine_blob(digest)? {
                Some(quarantined) => Ok(BlobCheck::Corrupt {
                    actual,
                    quarantined,
                }),
                // Gone meanwhile (collected), or replaced by good bytes.
                None => self.recheck_blob(digest),
            },
        }
    }

    /// Moves blob `digest`'s data into `quarantine/` if it is corrupt, and
    /// returns where it went; `None` if there was nothing to move. The
    /// file is hashed again once it is out of `blobs/`, so that only bytes
    /// known to be wrong are ever taken away: should good bytes have taken
    /// its place in the meantime, they go back.
    pub fn quarantine_blob(&self, digest: &Digest) -> Result<Option<PathBuf>> {
        let path = self.layout().blob(digest);
        let dir = self.layout().quarantine();
        fsutil::ensure_dir(&dir).at(&dir)?;
        let name = format!(
            "{}.{}",
            crate::layout::flat_name(digest),
            fsutil::random_hex(4)
        );
        let moved = dir.join(name);
        match fs::rename(&path, &moved) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).at(&path),
        }
        let parent = path.parent().expect("blob path has a parent");
        fsutil::sync_dir(parent).at(parent)?;
        fsutil::sync_dir(&dir).at(&dir)?;
        let mut buf = vec![0u8; 1024 * 1024];
        let (actual, _) = fsutil::hash_file(&moved, digest.algorithm(), &mut buf).at(&moved)?;
        if &actual == digest {
            // Good bytes after all: back into place, unless a push has
            // placed its own copy meanwhile.
            match fs::hard_link(&moved, &path) {
                Ok(()) => fsutil::sync_dir(parent).at(parent)?,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e).at(&path),
            }
            fsutil::remove(&moved).at(&moved)?;
            return Ok(None);
        }
        tracing::info!(%digest, actual = %actual, quarantined = %moved.display(), "corrupt blob taken out of service");
        Ok(Some(moved))
    }
}
