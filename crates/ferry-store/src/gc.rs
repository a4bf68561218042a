//! Online mark-and-sweep garbage collection.
//!
//! Mark: every manifest linked by any repository is a root; it keeps its
//! own blob and everything it references (config, layers, index children).
//! Sweep: every other blob in `blobs/` goes, unless
//!
//! - it was committed within the grace period (an upload whose manifest
//!   has not been pushed yet), or
//! - something looked it up or wrote it since this GC started (a pin):
//!   a HEAD before a push, a manifest PUT checking its references, a
//!   mount, a commit. The pin check and the unlink happen under one lock,
//!   so a lookup either pins first (the blob stays) or runs after the
//!   unlink (the client sees "unknown" and uploads it again).
//!
//! Uploads in progress live outside `blobs/` and are never swept; upload
//! sessions that received nothing within the grace period are abandoned
//! and removed (a session with a writer never is). Blob links whose data
//! is gone are removed last, and temporary files a crash left in `tmp/`
//! (older than [`TEMP_MAX_AGE`]) too.

use std::collections::HashSet;
use std::fs;
use std::time::{Duration, SystemTime};

use ferry_oci::{Algorithm, Digest, ParsedManifest};

use crate::error::{IoContext, Result};
use crate::{Store, fsutil};

/// A file in `tmp/` older than this is the leftover of an interrupted
/// write: every write renames its temporary file within moments.
pub const TEMP_MAX_AGE: Duration = Duration::from_secs(3600);

#[derive(Debug, Clone)]
pub struct GcOptions {
    /// Blobs committed more recently than this are kept even if
    /// unreferenced; upload sessions that received data more recently are
    /// kept too.
    pub grace: Duration,
    /// Report what would be removed without removing it.
    pub dry_run: bool,
}

impl Default for GcOptions {
    fn default() -> Self {
        GcOptions {
            grace: Duration::from_secs(3600),
            dry_run: false,
        }
    }
}

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct GcReport {
    pub manifests_marked: usize,
    pub blobs_marked: usize,
    pub blobs_deleted: Vec<Digest>,
    pub bytes_freed: u64,
    pub blobs_kept_recent: usize,
    pub blobs_kept_pinned: usize,
    pub uploads_purged: usize,
    pub links_removed: usize,
    /// Leftovers of interrupted writes removed from `tmp/`.
    #[serde(default)]
    pub temp_files_removed: usize,
    pub dry_run: bool,
}

/// Turns pinning off when the GC ends, however it ends.
struct PinScope<'a>(&'a Store);

impl Drop for PinScope<'_> {
    fn drop(&mut self) {
        *self.0.inner.gc_pins.lock().expect("gc pins lock") = None;
    }
}

impl Store {
    /// Runs one garbage collection while the store stays in use.
    pub fn gc(&self, options: &GcOptions) -> Result<GcReport> {
        let _one_at_a_time = self.inner.gc_running.lock().expect("gc lock");
        {
            let _no_put_in_flight = self.inner.gc_barrier.write().expect("gc barrier");
            *self.inner.gc_pins.lock().expect("gc pins lock") = Some(HashSet::new());
        }
        let _pins = PinScope(self);
        let started = SystemTime::now();
        let mut report = GcReport {
            dry_run: options.dry_run,
            ..GcReport::default()
        };

        let marked = self.mark(&mut report)?;
        report.blobs_marked = marked.len();
        self.sweep(&marked, started, options, &mut report)?;
        report.uploads_purged = self.purge_idle_uploads(options.grace, options.dry_run)?;
        if !options.dry_run {
            self.remove_dangling_links(&mut report)?;
            report.temp_files_removed = self.remove_stale_temp_files(started)?;
        }
        Ok(report)
    }

    fn mark(&self, report: &mut GcReport) -> Result<HashSet<Digest>> {
        let mut marked = HashSet::new();
        for repo in self.repositories()? {
            for digest in self.manifest_digests(&repo)? {
                report.manifests_marked += 1;
                marked.insert(digest.clone());
                let path = self.layout().blob(&digest);
                let Some(body) = fsutil::read_optional(&path).at(&path)? else {
                    continue;
                };
                let link = self.layout().manifest_link(&repo, &digest);
                let media_type = fsutil::read_optional(&link)
                    .at(&link)?
                    .and_then(|m| String::from_utf8(m).ok());
                match ParsedManifest::parse(&body, media_type.as_deref()) {
                    Ok(parsed) => {
                        marked.extend(parsed.blob_references().map(|d| d.digest.clone()));
                        marked.extend(parsed.manifests.iter().map(|d| d.digest.clone()));
                    }
                    Err(e) => {
                        tracing::warn!(%repo, %digest, error = %e, "unparseable manifest kept as is");
                    }
                }
            }
        }
        Ok(marked)
    }

    fn sweep(
        &self,
        marked: &HashSet<Digest>,
        started: SystemTime,
        options: &GcOptions,
        report: &mut GcReport,
    ) -> Result<()> {
        let cutoff = started
            .checked_sub(options.grace)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        for algorithm in Algorithm::ALL {
            let alg_dir = self.layout().blobs().join(algorithm.as_str());
            for prefix in fsutil::list_names(&alg_dir).at(&alg_dir)? {
                let dir = alg_dir.join(&prefix);
                for hex in fsutil::list_names(&dir).at(&dir)? {
                    let Ok(digest) = Digest::new(algorithm, &hex) else {
                        continue;
                    };
                    if marked.contains(&digest) {
                        continue;
                    }
                    let path = dir.join(&hex);
                    let Ok(meta) = fs::metadata(&path) else {
                        continue;
                    };
                    if meta.modified().is_ok_and(|m| m > cutoff) {
                        report.blobs_kept_recent += 1;
                        continue;
                    }
                    let pins = self.inner.gc_pins.lock().expect("gc pins lock");
                    if pins.as_ref().is_some_and(|p| p.contains(&digest)) {
                        report.blobs_kept_pinned += 1;
                        continue;
                    }
                    if !options.dry_run {
                        fs::remove_file(&path).at(&path)?;
                    }
                    drop(pins);
                    report.bytes_freed += meta.len();
                    report.blobs_deleted.push(digest);
                }
                if !options.dry_run {
                    fsutil::sync_dir(&dir).at(&dir)?;
                }
            }
        }
        Ok(())
    }

    /// Removes what interrupted writes left in `tmp/`: entries older than
    /// [`TEMP_MAX_AGE`], which no write in progress can be.
    fn remove_stale_temp_files(&self, started: SystemTime) -> Result<usize> {
        let cutoff = started
            .checked_sub(TEMP_MAX_AGE)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let tmp = self.layout().tmp();
        let mut removed = 0;
        for name in fsutil::list_names(&tmp).at(&tmp)? {
            let path = tmp.join(&name);
            let Ok(meta) = fs::symlink_metadata(&path) else {
                continue;
            };
            if !meta.modified().is_ok_and(|m| m < cutoff) {
                continue;
            }
            let gone = if meta.is_dir() {
                fs::remove_dir_all(&path)
            } else {
                fs::remove_file(&path)
            };
            match gone {
                Ok(()) => removed += 1,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).at(&path),
            }
        }
        Ok(removed)
    }

    fn remove_dangling_links(&self, report: &mut GcReport) -> Result<()> {
        for repo in self.repositories()? {
            for digest in self.blob_digests(&repo)? {
                let pins = self.inner.gc_pins.lock().expect("gc pins lock");
                let pinned = pins.as_ref().is_some_and(|p| p.contains(&digest));
                if !pinned && !self.layout().blob(&digest).exists() {
                    let link = self.layout().blob_link(&repo, &digest);
                    if fsutil::remove(&link).at(&link)? {
                        report.links_removed += 1;
                    }
                }
            }
        }
        Ok(())
    }
}
