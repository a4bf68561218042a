//! ferry's content-addressed OCI store.
//!
//! [`Store`] owns a directory (see [`layout`] for its shape) and offers
//! what a registry needs: blobs that become visible only once their digest
//! and size are verified, their data fsynced and the file renamed into
//! place ([`upload`]); repositories with tags, manifest and blob links and
//! a referrers index ([`manifests`], [`blobs`], [`catalog`]); an online
//! mark-and-sweep garbage collector ([`gc`]), a verifier ([`fsck`]) and
//! the quarantine of corrupt blobs it finds ([`quarantine`]).
//!
//! Metadata is kept as small files written atomically (temporary file,
//! fsync, rename, fsync of the directory) rather than in an embedded
//! database: every record is independent (one tag, one link), so there is
//! no multi-key transaction to protect, a crash leaves each record either
//! old or new, concurrent writers to different repositories never contend
//! on one lock, and `ls` is enough to see what a repository holds. The one
//! cross-record invariant, "a manifest's blobs exist", is kept by ordering:
//! blobs are linked before a manifest that names them is accepted, and GC
//! only removes what no manifest names (with pins and a grace period for
//! pushes in flight).
//!
//! The API is synchronous and thread-safe; async callers run it on a
//! blocking thread. [`Store`] is a cheap handle (an `Arc`) to share.

pub mod blobs;
pub mod catalog;
pub mod error;
pub mod fsck;
mod fsutil;
pub mod gc;
pub mod layout;
pub mod manifests;
pub mod quarantine;
pub mod upload;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use ferry_oci::{Digest, name};

pub use error::{Result, StoreError};
pub use fsck::FsckReport;
pub use gc::{GcOptions, GcReport};
pub use manifests::{ManifestRef, PutManifest, StoredManifest};
pub use quarantine::BlobCheck;
pub use upload::UploadWriter;

use crate::error::IoContext;
use crate::layout::Layout;
use crate::upload::UploadState;

/// Limits applied to what clients may store.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest manifest accepted, in bytes (Distribution's default is 4 MiB).
    pub max_manifest_size: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_manifest_size: 4 * 1024 * 1024,
        }
    }
}

/// A handle to an open store. Clones share state.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    layout: Layout,
    limits: Limits,
    /// Upload sessions known to this process, by id.
    uploads: Mutex<HashMap<String, UploadState>>,
    /// While a GC runs: digests that something looked up or wrote since
    /// it started; the sweep never removes those.
    gc_pins: Mutex<Option<HashSet<Digest>>>,
    /// Serializes GC runs.
    gc_running: Mutex<()>,
    /// Held shared by a manifest PUT from its reference check to its link
    /// write, and exclusively by GC while it turns pinning on: a PUT that
    /// checked before GC started has its link in place before the mark
    /// reads the links, and one that checks after pins what it checks.
    gc_barrier: RwLock<()>,
}

impl Store {
    /// Opens (creating if needed) the store at `root`.
    pub fn open(root: impl Into<PathBuf>, limits: Limits) -> Result<Store> {
        let layout = Layout::new(root.into());
        for dir in [
            layout.root().to_path_buf(),
            layout.tmp(),
            layout.blobs(),
            layout.uploads(),
            layout.repositories(),
        ] {
            fsutil::ensure_dir(&dir).at(&dir)?;
        }
        Ok(Store {
            inner: Arc::new(Inner {
                layout,
                limits,
                uploads: Mutex::new(HashMap::new()),
                gc_pins: Mutex::new(None),
                gc_running: Mutex::new(()),
                gc_barrier: RwLock::new(()),
            }),
        })
    }

    pub fn root(&self) -> &Path {
        self.inner.layout.root()
    }

    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    fn layout(&self) -> &Layout {
        &self.inner.layout
    }

    /// Records that `digest` is in use, so that a running GC keeps it.
    fn pin(&self, digest: &Digest) {
        let mut pins = self.inner.gc_pins.lock().expect("gc pins lock");
        if let Some(pins) = pins.as_mut() {
            pins.insert(digest.clone());
        }
    }
}

/// Checks a repository name before it becomes a path.
pub fn check_repository(repo: &str) -> Result<()> {
    if name::is_valid_repository(repo) {
        Ok(())
    } else {
        Err(StoreError::NameInvalid(repo.to_string()))
    }
}

/// Checks a tag before it becomes a path.
pub fn check_tag(tag: &str) -> Result<()> {
    if name::is_valid_tag(tag) {
        Ok(())
    } else {
        Err(StoreError::TagInvalid(tag.to_string()))
    }
}
