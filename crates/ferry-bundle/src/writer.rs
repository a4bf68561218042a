//! Writing a bundle from entries whose content is in a local content store
//! (ferry's cache).
//!
//! Same inputs, same bytes: members in a fixed order (`oci-layout`,
//! `index.json`, `ferry/bundle.json`, `ferry/signature`, blobs sorted by
//! digest), ustar headers with mode 0644, owner 0:0 and the mtime of
//! `created` (or 0). Every blob is hashed again as it is copied, so a
//! corrupt cache cannot produce a bundle that lies. The output appears only
//! when complete: parts are written under temporary names, fsynced, and
//! renamed at the end.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use ferry_oci::progress::Progress;
use ferry_oci::{Descriptor, Digest, Hasher, media_type};
use ferry_store::Store;

use crate::container;
use crate::format::{self, BaseBundle, BlobRecord, BundleManifest, Entry};
use crate::graph::{self, GraphError, ManifestSource};

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("{0}")]
    Graph(#[from] GraphError),
    #[error("blob {0} is not in the content cache")]
    MissingBlob(Digest),
    #[error(
        "cached blob {digest} is corrupt (it hashes to {actual}); remove it from the cache and create again"
    )]
    CorruptCache { digest: Digest, actual: Digest },
    #[error("writing {path}: {source}")]
    Io { path: String, source: io::Error },
    #[error("reading the content cache: {0}")]
    Store(#[from] ferry_store::StoreError),
    #[error("--split and --self-extracting cannot be combined")]
    SplitSelfExtracting,
    #[error("--split needs a part size of at least 1 MiB")]
    SplitTooSmall,
    #[error("signing failed: {0}")]
    Sign(String),
    #[error("stopped before the end (interrupted); nothing was written")]
    Cancelled,
    #[error(
        "creation time {0} is outside what a bundle can record (0 to {LATEST_CREATED} seconds since 1970, up to 2242-03-16T12:56:31Z)"
    )]
    CreatedOutOfRange(i64),
}

/// What to put in the bundle.
pub struct Plan {
    pub entries: Vec<Entry>,
    /// The spec file as JSON, echoed into `ferry/bundle.json`.
    pub spec: serde_json::Value,
    /// Seconds since the epoch to record as the creation time (and tar mtimes).
    pub created: Option<i64>,
    /// For a delta: the base bundle and the blobs it already carries,
    /// with their sizes (so that they need not be in the cache).
    pub base: Option<(BaseBundle, HashMap<Digest, u64>)>,
}

/// Signs the bytes of `ferry/bundle.json`, returning the signature file.
pub type Signer = Box<dyn Fn(&[u8]) -> Result<Vec<u8>, String> + Send + Sync>;

/// How to write it.
#[derive(Default)]
pub struct WriteOptions {
    /// Cut the output into parts of this many bytes (`out.000`, `out.001`, ...).
    pub split: Option<u64>,
    /// Prepend this executable and append a trailer, making a
    /// self-extracting file.
    pub self_extracting: Option<PathBuf>,
    /// Signs `ferry/bundle.json`; returns the signature file's bytes.
    pub signer: Option<Signer>,
    /// Set (by a Ctrl-C handler) to stop writing: the write returns
    /// [`WriteError::Cancelled`] and removes its temporary files.
    pub cancel: Option<Arc<AtomicBool>>,
}

/// What was written.
#[derive(Debug, Clone, serde::Serialize)]
pub struct WriteReport {
    pub files: Vec<PathBuf>,
    pub bytes: u64,
    pub blobs: usize,
    pub blob_bytes: u64,
    /// Sum of the stored blobs' sizes over entries, counting shared blobs
    /// once per entry (`blob_bytes` is what storing them once takes).
    pub bytes_before_dedup: u64,
    /// Blobs a delta leaves out because its base carries them, and their
    /// bytes (apart from the deduplication above).
    pub base_blobs: usize,
    pub base_bytes: u64,
}

struct CacheManifests<'a>(&'a Store);

impl ManifestSource for CacheManifests<'_> {
    fn manifest_bytes(&self, digest: &Digest) -> io::Result<Option<Vec<u8>>> {
        match self.0.open_content(digest) {
            Ok(Some((mut f, _))) => {
                let mut buf = Vec::new();
                f.read_to_end(&mut buf)?;
                Ok(Some(buf))
            }
            Ok(None) => Ok(None),
            Err(e) => Err(io::Error::other(e.to_string())),
        }
    }
}

/// Writes `plan` with content from `cache` to `out`.
pub fn write_bundle(
    plan: &Plan,
    cache: &Store,
    out: &Path,
    options: &WriteOptions,
    progress: &dyn Progress,
) -> Result<WriteReport, WriteError> {
    if options.split.is_some() && options.self_extracting.is_some() {
        return Err(WriteError::SplitSelfExtracting);
    }
    if options.split.is_some_and(|s| s < 1024 * 1024) {
        return Err(WriteError::SplitTooSmall);
    }
    // Every blob each entry needs. A delta leaves out what its base
    // carries, except manifests: they are small, and with them a delta
    // can be inspected, verified and walked on its own.
    let mut per_entry = Vec::new();
    let mut manifests = HashSet::new();
    let base_digests = plan.base.as_ref().map(|(_, d)| d);
    for entry in &plan.entries {
        let graph = graph::walk(&CacheManifests(cache), &entry.descriptor)?;
        manifests.extend(graph.manifests.iter().map(|(d, _)| d.digest.clone()));
        per_entry.push(graph.digests());
    }
    let left_out = |digest: &Digest| {
        base_digests.is_some_and(|b| b.contains_key(digest)) && !manifests.contains(digest)
    };
    // What the stored blobs would take if each entry carried its own copy
    // (the base's blobs are not stored, so they save nothing here).
    let mut bytes_before_dedup = 0;
    for digest in per_entry.iter().flatten().filter(|d| !left_out(d)) {
        bytes_before_dedup += blob_size(cache, base_digests, digest)?;
    }
    let all: BTreeSet<Digest> = per_entry.into_iter().flatten().collect();
    let mut blobs = Vec::new();
    let mut base_blobs = Vec::new();
    for digest in all {
        let record = BlobRecord {
            size: blob_size(cache, base_digests, &digest)?,
            digest,
        };
        if left_out(&record.digest) {
            base_blobs.push(record);
        } else {
            blobs.push(record);
        }
    }

    let index = index_json(&plan.entries);
    let manifest = BundleManifest {
        schema_version: format::SCHEMA_VERSION,
        tool: format!("ferry {}", env!("CARGO_PKG_VERSION")),
        created: plan.created.map(creation_time).transpose()?,
        spec: plan.spec.clone(),
        index: BlobRecord {
            digest: Digest::sha256(&index),
            size: index.len() as u64,
        },
        base: plan.base.as_ref().map(|(b, _)| b.clone()),
        entries: plan.entries.clone(),
        blobs: blobs.clone(),
        base_blobs: base_blobs.clone(),
    };
    let manifest_bytes = serde_json::to_vec_pretty(&manifest).expect("bundle manifest serializes");
    let signature = match &options.signer {
        Some(sign) => Some(sign(&manifest_bytes).map_err(WriteError::Sign)?),
        None => None,
    };

    let total: u64 = blobs.iter().map(|b| b.size).sum();
    progress.start("bundle", "write", Some(total));
    let mut sink = Sink::create(out, options)?;
    // In range: `creation_time` checked it above.
    let mtime = plan.created.unwrap_or(0) as u64;
    let cancelled = || {
        options
            .cancel
            .as_ref()
            .is_some_and(|c| c.load(Ordering::Relaxed))
    };
    {
        let mut tar = tar::Builder::new(&mut sink);
        tar.mode(tar::HeaderMode::Deterministic);
        let io_err = |e: io::Error| {
            if cancelled() {
                WriteError::Cancelled
            } else {
                WriteError::Io {
                    path: out.display().to_string(),
                    source: e,
                }
            }
        };
        append_dir(&mut tar, "blobs/", mtime).map_err(io_err)?;
        let mut dirs: Vec<String> = blobs
            .iter()
            .map(|b| format!("blobs/{}/", b.digest.algorithm()))
            .collect();
        dirs.dedup();
        for d in &dirs {
            append_dir(&mut tar, d, mtime).map_err(io_err)?;
        }
        append_dir(&mut tar, "ferry/", mtime).map_err(io_err)?;
        append_file(
            &mut tar,
            format::OCI_LAYOUT,
            format::OCI_LAYOUT_CONTENT,
            mtime,
        )
        .map_err(io_err)?;
        append_file(&mut tar, format::INDEX, &index, mtime).map_err(io_err)?;
        append_file(&mut tar, format::MANIFEST, &manifest_bytes, mtime).map_err(io_err)?;
        if let Some(sig) = &signature {
            append_file(&mut tar, format::SIGNATURE, sig, mtime).map_err(io_err)?;
        }
        for record in &blobs {
            let (file, size) = cache
                .open_content(&record.digest)?
                .ok_or_else(|| WriteError::MissingBlob(record.digest.clone()))?;
            let mut header = header(size, mtime, tar::EntryType::Regular);
            let mut reader = VerifyingReader {
                inner: file,
                hasher: Hasher::new(record.digest.algorithm()),
                progress,
            };
            tar.append_data(
                &mut header,
                format::blob_member(&record.digest),
                &mut reader,
            )
            .map_err(io_err)?;
            let actual = reader.hasher.finish();
            if actual != record.digest {
                return Err(WriteError::CorruptCache {
                    digest: record.digest.clone(),
                    actual,
                });
            }
        }
        tar.finish().map_err(io_err)?;
    }
    if cancelled() {
        return Err(WriteError::Cancelled);
    }
    let files = sink.finish(out)?;
    progress.finish("bundle", "written");
    let bytes = files
        .iter()
        .map(|f| std::fs::metadata(f).map_or(0, |m| m.len()))
        .sum();
    Ok(WriteReport {
        files,
        bytes,
        blobs: blobs.len(),
        blob_bytes: total,
        bytes_before_dedup,
        base_bytes: base_blobs.iter().map(|b| b.size).sum(),
        base_blobs: base_blobs.len(),
    })
}

/// A blob's size: from the cache, else (a blob only the base bundle
/// carries, which a delta does not fetch) from the base's record.
fn blob_size(
    cache: &Store,
    base: Option<&HashMap<Digest, u64>>,
    digest: &Digest,
) -> Result<u64, WriteError> {
    if let Some(size) = cache.blob_size(digest)? {
        return Ok(size);
    }
    base.and_then(|b| b.get(digest).copied())
        .ok_or_else(|| WriteError::MissingBlob(digest.clone()))
}

/// `index.json`: one descriptor per entry, named by its source reference.
fn index_json(entries: &[Entry]) -> Vec<u8> {
    let manifests: Vec<Descriptor> = entries
        .iter()
        .map(|e| {
            let mut d = e.descriptor.clone();
            d.platform = None;
            let mut annotations = d.annotations.take().unwrap_or_default();
            annotations.insert(
                media_type::ANNOTATION_REF_NAME.to_string(),
                e.ref_name().to_string(),
            );
            d.annotations = Some(annotations);
            d
        })
        .collect();
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_INDEX,
        "manifests": manifests,
    });
    serde_json::to_vec(&index).expect("index serializes")
}

fn header(size: u64, mtime: u64, kind: tar::EntryType) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(if kind.is_dir() { 0o755 } else { 0o644 });
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(mtime);
    h
}

fn append_dir<W: Write>(tar: &mut tar::Builder<W>, path: &str, mtime: u64) -> io::Result<()> {
    let mut h = header(0, mtime, tar::EntryType::Directory);
    tar.append_data(&mut h, path, io::empty())
}

fn append_file<W: Write>(
    tar: &mut tar::Builder<W>,
    path: &str,
    data: &[u8],
    mtime: u64,
) -> io::Result<()> {
    let mut h = header(data.len() as u64, mtime, tar::EntryType::Regular);
    tar.append_data(&mut h, path, data)
}

/// The latest creation time a bundle can record: the largest mtime a
/// ustar header holds (11 octal digits, 2242-03-16T12:56:31Z).
pub const LATEST_CREATED: i64 = 0o77_777_777_777;

/// `created` (seconds since 1970) as the RFC 3339 time `ferry/bundle.json`
/// records; refused outside `0..=LATEST_CREATED`, where the tar headers
/// that carry it as mtime could not (and RFC 3339's four-digit year would
/// not) hold it.
pub fn creation_time(created: i64) -> Result<String, WriteError> {
    let out_of_range = || WriteError::CreatedOutOfRange(created);
    if !(0..=LATEST_CREATED).contains(&created) {
        return Err(out_of_range());
    }
    time::OffsetDateTime::from_unix_timestamp(created)
        .map_err(|_| out_of_range())?
        .format(&time::format_description::well_known::Rfc3339)
        .map_err(|_| out_of_range())
}

/// Hashes what the tar builder copies, and reports progress.
struct VerifyingReader<'a, R> {
    inner: R,
    hasher: Hasher,
    progress: &'a dyn Progress,
}

impl<R: Read> Read for VerifyingReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.progress.advance("bundle", n as u64);
        Ok(n)
    }
}

/// Where the tar goes: one file, parts of a fixed size, or the tail of a
/// copy of ferry's executable. Temporary names until [`Sink::finish`].
struct Sink {
    parts: Vec<(PathBuf, BufWriter<File>)>,
    cancel: Option<Arc<AtomicBool>>,
    split: Option<u64>,
    in_part: u64,
    out: PathBuf,
    /// Self-extracting: where the tar starts in the file, and its length so far.
    tar_offset: Option<u64>,
    tar_len: u64,
}

impl Sink {
    fn create(out: &Path, options: &WriteOptions) -> Result<Sink, WriteError> {
        let mut sink = Sink {
            parts: Vec::new(),
            cancel: options.cancel.clone(),
            split: options.split,
            in_part: 0,
            out: out.to_path_buf(),
            tar_offset: None,
            tar_len: 0,
        };
        sink.open_part()?;
        if let Some(exe) = &options.self_extracting {
            let io_err = |source| WriteError::Io {
                path: exe.display().to_string(),
                source,
            };
            let mut src = File::open(exe).map_err(io_err)?;
            let copied = io::copy(&mut src, &mut sink.parts[0].1).map_err(io_err)?;
            sink.tar_offset = Some(copied);
        }
        Ok(sink)
    }

    fn final_name(&self, index: usize) -> PathBuf {
        match self.split {
            Some(_) => {
                let mut name = self.out.as_os_str().to_owned();
                name.push(format!(".{index:03}"));
                PathBuf::from(name)
            }
            None => self.out.clone(),
        }
    }

    fn open_part(&mut self) -> Result<(), WriteError> {
        let final_name = self.final_name(self.parts.len());
        let mut tmp = final_name.as_os_str().to_owned();
        tmp.push(".partial");
        let tmp = PathBuf::from(tmp);
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(|source| WriteError::Io {
                path: tmp.display().to_string(),
                source,
            })?;
        self.parts
            .push((tmp, BufWriter::with_capacity(1024 * 1024, file)));
        self.in_part = 0;
        Ok(())
    }

    fn finish(mut self, out: &Path) -> Result<Vec<PathBuf>, WriteError> {
        let io_err = |path: &Path| {
            let path = path.display().to_string();
            move |source| WriteError::Io { path, source }
        };
        if let Some(offset) = self.tar_offset {
            let trailer = container::trailer(offset, self.tar_len);
            self.parts[0].1.write_all(&trailer).map_err(io_err(out))?;
        }
        let mut files = Vec::new();
        let count = self.parts.len();
        let parts = std::mem::take(&mut self.parts);
        let temporary: Vec<PathBuf> = parts.iter().map(|(tmp, _)| tmp.clone()).collect();
        let renamed = self.rename_into_place(parts, &mut files);
        if let Err(e) = renamed {
            for tmp in &temporary {
                let _ = std::fs::remove_file(tmp);
            }
            return Err(e);
        }
        // Parts left over from an earlier, longer split of the same name
        // would be read as part of this bundle.
        if self.split.is_some() {
            for stale in count.. {
                let name = self.final_name(stale);
                if std::fs::remove_file(&name).is_err() {
                    break;
                }
            }
        }
        if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(io_err(dir))?;
        }
        Ok(files)
    }

    fn rename_into_place(
        &self,
        parts: Vec<(PathBuf, BufWriter<File>)>,
        files: &mut Vec<PathBuf>,
    ) -> Result<(), WriteError> {
        let io_err = |path: &Path| {
            let path = path.display().to_string();
            move |source| WriteError::Io { path, source }
        };
        for (i, (tmp, writer)) in parts.into_iter().enumerate() {
            let file = writer.into_inner().map_err(|e| WriteError::Io {
                path: tmp.display().to_string(),
                source: e.into_error(),
            })?;
            file.sync_all().map_err(io_err(&tmp))?;
            if self.tar_offset.is_some() {
                use std::os::unix::fs::PermissionsExt;
                file.set_permissions(std::fs::Permissions::from_mode(0o755))
                    .map_err(io_err(&tmp))?;
            }
            let final_name = self.final_name(i);
            std::fs::rename(&tmp, &final_name).map_err(io_err(&final_name))?;
            files.push(final_name);
        }
        Ok(())
    }
}

/// A bundle that was not finished leaves no temporary part behind.
impl Drop for Sink {
    fn drop(&mut self) {
        for (tmp, _) in &self.parts {
            let _ = std::fs::remove_file(tmp);
        }
    }
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self
            .cancel
            .as_ref()
            .is_some_and(|c| c.load(Ordering::Relaxed))
        {
            return Err(io::Error::other("interrupted"));
        }
        let mut room = buf.len();
        if let Some(limit) = self.split {
            if self.in_part == limit {
                self.open_part()
                    .map_err(|e| io::Error::other(e.to_string()))?;
            }
            room = room.min((limit - self.in_part) as usize);
        }
        let n = self
            .parts
            .last_mut()
            .expect("a part is open")
            .1
            .write(&buf[..room])?;
        self.in_part += n as u64;
        self.tar_len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.parts.last_mut().expect("a part is open").1.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creation_times() {
        assert_eq!(creation_time(0).unwrap(), "1970-01-01T00:00:00Z");
        assert_eq!(
            creation_time(1_700_000_000).unwrap(),
            "2023-11-14T22:13:20Z"
        );
        assert_eq!(creation_time(951_782_400).unwrap(), "2000-02-29T00:00:00Z");
        assert_eq!(
            creation_time(LATEST_CREATED).unwrap(),
            "2242-03-16T12:56:31Z"
        );
        for refused in [-1, LATEST_CREATED + 1, 99_999_999_999_999, i64::MIN] {
            assert!(
                matches!(
                    creation_time(refused),
                    Err(WriteError::CreatedOutOfRange(_))
                ),
                "{refused}"
            );
        }
    }
}
