//! `ferry bundle import`: a bundle into ferry's embedded store directly,
//! without HTTP. Each blob streams from its place in the bundle into the
//! store's verified ingest (the one copy a different file needs); nothing
//! is extracted first, and the store makes a blob visible only once its
//! digest matched. Manifests follow children first, then tags.
//!
//! A blob the store has already is normally kept as it is (same digest,
//! same bytes). With `repair`, the store's copy of every blob the import
//! is about to rely on is hashed again first, and one whose bytes no
//! longer match its digest (a disk fault, a hand edit) is quarantined
//! ([`ferry_store::Store::recheck_blob`], as `ferry registry fsck
//! --repair` does) and stored again from the bundle's verified bytes; a
//! damaged blob that only the delta's base carries is reported, not
//! trusted.

use std::io::{Read, Seek, SeekFrom};

use ferry_oci::Digest;
use ferry_oci::progress::Progress;
use ferry_store::{BlobCheck, ManifestRef, Store, StoreError};
use serde::Serialize;

use crate::graph::{self, GraphError};
use crate::reader::Bundle;

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{0}")]
    Graph(#[from] GraphError),
    #[error("{what}: {source}")]
    Store { what: String, source: StoreError },
    #[error(
        "this delta bundle needs {missing} blob(s) of its base {base} that the store does not have (e.g. {example}); import {base} first"
    )]
    BaseMissing {
        base: String,
        missing: usize,
        example: String,
    },
    #[error("{0} is not in the bundle")]
    MissingBlob(String),
    #[error(
        "the store's copy of {digest} is damaged (it hashes to {actual}) and this delta bundle does not carry it; import its base {base} with --repair first"
    )]
    DamagedBaseBlob {
        digest: String,
        actual: String,
        base: String,
    },
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ImportReport {
    pub blobs_imported: usize,
    /// Blobs the store had already (kept).
    pub blobs_present: usize,
    /// Whether the store's copies of `blobs_present` were hashed again
    /// (`repair`) or taken as they are.
    pub present_verified: bool,
    /// Blobs whose copy in the store was damaged and was replaced by the
    /// bundle's bytes (`repair` only).
    pub blobs_repaired: usize,
    pub bytes: u64,
    pub manifests: usize,
    pub tags: Vec<String>,
}

/// Imports every entry of `bundle` into `store`, under `prefix/` if given;
/// with `repair`, re-hashes what the store has and replaces damaged blobs.
pub fn import(
    bundle: &Bundle,
    store: &Store,
    prefix: &str,
    repair: bool,
    progress: &dyn Progress,
) -> Result<ImportReport, ImportError> {
    let mut report = ImportReport {
        present_verified: repair,
        ..ImportReport::default()
    };
    let total = bundle.manifest.blobs.iter().map(|b| b.size).sum();
    progress.start("import", "import", Some(total));
    let from_base: std::collections::HashSet<_> = bundle
        .manifest
        .base_blobs
        .iter()
        .map(|b| &b.digest)
        .collect();
    for entry in &bundle.manifest.entries {
        let repo = if prefix.is_empty() {
            entry.repository.clone()
        } else {
            format!("{prefix}/{}", entry.repository)
        };
        let store_err = |what: String| move |source| ImportError::Store { what, source };
        let graph = graph::walk(bundle, &entry.descriptor)?;
        let mut missing_base = Vec::new();
        for blob in &graph.blobs {
            if from_base.contains(&blob.digest) {
                // The base's blob must be in the store already: link it.
                match store
                    .blob_size(&blob.digest)
                    .map_err(store_err(blob.digest.to_string()))?
                {
                    Some(size) => {
                        if repair {
                            check_base_blob(bundle, store, &blob.digest)?;
                        }
                        store
                            .put_blob(&repo, &blob.digest, Some(size), &mut std::io::empty())
                            .map_err(store_err(format!("linking {} into {repo}", blob.digest)))?;
                    }
                    None => missing_base.push(blob.digest.to_string()),
                }
                continue;
            }
            let member = bundle
                .blob(&blob.digest)
                .ok_or_else(|| ImportError::MissingBlob(blob.digest.to_string()))?;
            let bytes = || -> Result<_, ImportError> {
                let mut reader = bundle.container().reader();
                reader.seek(SeekFrom::Start(member.offset)).map_err(|e| {
                    store_err(blob.digest.to_string())(StoreError::Io {
                        path: bundle.name().into(),
                        source: e,
                    })
                })?;
                Ok(Counting {
                    inner: reader.take(member.size),
                    progress,
                })
            };
            match stored_state(store, &blob.digest, repair)? {
                Stored::Absent => {
                    report.blobs_imported += 1;
                    report.bytes += member.size;
                }
                Stored::Intact => report.blobs_present += 1,
                // Quarantined by the check: stored again below.
                Stored::Damaged => {
                    report.blobs_repaired += 1;
                    report.bytes += member.size;
                }
            }
            store
                .put_blob(&repo, &blob.digest, Some(member.size), &mut bytes()?)
                .map_err(store_err(format!("importing {} into {repo}", blob.digest)))?;
        }
        if let Some(example) = missing_base.first() {
            return Err(ImportError::BaseMissing {
                base: bundle
                    .manifest
                    .base
                    .as_ref()
                    .map_or_else(String::new, |b| b.name.clone()),
                missing: missing_base.len(),
                example: example.clone(),
            });
        }
        for (desc, bytes) in &graph.manifests {
            // A manifest is stored as a blob too.
            // (quarantined by the check, stored again by put_manifest).
            if repair && stored_state(store, &desc.digest, true)? == Stored::Damaged {
                report.blobs_repaired += 1;
            }
            let reference = match (&entry.tag, desc.digest == entry.descriptor.digest) {
                (Some(tag), true) => ManifestRef::Tag(tag.clone()),
                _ => ManifestRef::Digest(desc.digest.clone()),
            };
            store
                .put_manifest(&repo, &reference, bytes, Some(&desc.media_type))
                .map_err(store_err(format!("manifest {} into {repo}", desc.digest)))?;
            report.manifests += 1;
            if let ManifestRef::Tag(tag) = reference {
                report.tags.push(format!("{repo}:{tag}"));
            }
        }
    }
    progress.finish("import", "imported");
    Ok(report)
}

/// A blob in the store, as far as an import is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stored {
    Absent,
    /// Present (re-hashed when repairing, else taken as it is).
    Intact,
    /// Its bytes no longer hashed to its digest: quarantined, so missing now.
    Damaged,
}

fn stored_state(store: &Store, digest: &Digest, repair: bool) -> Result<Stored, ImportError> {
    let err = |source| ImportError::Store {
        what: digest.to_string(),
        source,
    };
    if !repair {
        return Ok(match store.blob_size(digest).map_err(err)? {
            Some(_) => Stored::Intact,
            None => Stored::Absent,
        });
    }
    Ok(match store.recheck_blob(digest).map_err(err)? {
        BlobCheck::Missing => Stored::Absent,
        BlobCheck::Intact { .. } => Stored::Intact,
        BlobCheck::Corrupt { .. } => Stored::Damaged,
    })
}

/// A delta's blob that only its base carries must be intact in the store:
/// there are no bytes here to repair it with.
fn check_base_blob(bundle: &Bundle, store: &Store, digest: &Digest) -> Result<(), ImportError> {
    let check = store
        .recheck_blob(digest)
        .map_err(|source| ImportError::Store {
            what: digest.to_string(),
            source,
        })?;
    match check {
        BlobCheck::Corrupt { actual, .. } => Err(ImportError::DamagedBaseBlob {
            digest: digest.to_string(),
            actual: actual.to_string(),
            base: bundle
                .manifest
                .base
                .as_ref()
                .map_or_else(String::new, |b| b.name.clone()),
        }),
        _ => Ok(()),
    }
}

/// Reports bytes as the store reads them.
struct Counting<'a, R> {
    inner: R,
    progress: &'a dyn Progress,
}

impl<R: Read> Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress.advance("import", n as u64);
        Ok(n)
    }
}
