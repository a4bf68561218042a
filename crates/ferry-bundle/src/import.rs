//! `ferry bundle import`: a bundle into ferry's embedded store directly,
//! without HTTP. Each blob streams from its place in the bundle into the
//! store's verified ingest (the one copy a different file needs); nothing
//! is extracted first, and the store makes a blob visible only once its
//! digest matched. Manifests follow children first, then tags.

use std::io::{Read, Seek, SeekFrom};

use ferry_oci::progress::Progress;
use ferry_store::{ManifestRef, Store, StoreError};
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
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ImportReport {
    pub blobs_imported: usize,
    pub blobs_present: usize,
    pub bytes: u64,
    pub manifests: usize,
    pub tags: Vec<String>,
}

/// Imports every entry of `bundle` into `store`, under `prefix/` if given.
pub fn import(
    bundle: &Bundle,
    store: &Store,
    prefix: &str,
    progress: &dyn Progress,
) -> Result<ImportReport, ImportError> {
    let mut report = ImportReport::default();
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
            if store
                .blob_size(&blob.digest)
                .map_err(store_err(blob.digest.to_string()))?
                .is_some()
            {
                report.blobs_present += 1;
            } else {
                report.blobs_imported += 1;
                report.bytes += member.size;
            }
            let mut reader = bundle.container().reader();
            reader.seek(SeekFrom::Start(member.offset)).map_err(|e| {
                store_err(blob.digest.to_string())(StoreError::Io {
                    path: bundle.name().into(),
                    source: e,
                })
            })?;
            let mut reader = Counting {
                inner: reader.take(member.size),
                progress,
            };
            store
                .put_blob(&repo, &blob.digest, Some(member.size), &mut reader)
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
