//! The content cache that every source goes through on its way into a
//! bundle: a [`ferry_store::Store`] (`STATE/cache`) plus small records
//! ("memos") of work that is not content-addressed by itself: which
//! compressed blob an uncompressed docker-archive layer became, and the
//! validators (`ETag`, `Last-Modified`) of a URL's last download.
//!
//! Blobs enter only verified (the store checks digest and size before a
//! blob becomes visible), so anything found in the cache can be used
//! without another look at the source. Writes stream: [`ContentCache::put`]
//! and [`ContentCache::put_new`] read from a `Read` in 1 MiB pieces; async
//! callers write into the pipe of [`ContentCache::put_stream`] (digest not
//! known yet) or [`ContentCache::download`] (digest known), whose other end
//! a blocking thread stores (the pipe holds at most 1 MiB).
//!
//! Downloads whose digest is known (registry blobs, URLs with a `sha256`)
//! survive an interrupted run
//! ([`ContentCache::download`]): each one writes into an upload session
//! named after its digest, so a re-run (after a dropped connection, a
//! Ctrl-C or a kill -9) finds the bytes already received and asks the
//! source only for the rest. The digest is checked over the whole blob,
//! old bytes and new, before it enters the cache. Sessions of sources that
//! never come back stay until the cache directory is removed.

use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use ferry_oci::{Algorithm, Digest, Hasher};
use ferry_store::{Limits, Store, StoreError};
use tokio::io::DuplexStream;

/// The repository the cache links every blob into (the store links blobs
/// per repository; the cache has one).
const REPOSITORY: &str = "cache";
/// Bytes buffered between a download and the thread writing it.
const PIPE_BUFFER: usize = 1024 * 1024;
const MEMO_DIR: &str = "ferry-memo";

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("content cache: {0}")]
    Store(#[from] StoreError),
    #[error("content cache {path}: {source}")]
    Io { path: String, source: io::Error },
    #[error("{what} is larger than {limit} bytes")]
    TooLarge { what: String, limit: u64 },
}

/// A handle on the cache; cheap to clone.
#[derive(Clone)]
pub struct ContentCache {
    store: Store,
    root: PathBuf,
}

impl ContentCache {
    /// Opens (creating it if needed) the cache at `dir`.
    pub fn open(dir: &Path) -> Result<ContentCache, CacheError> {
        std::fs::create_dir_all(dir).map_err(|source| CacheError::Io {
            path: dir.display().to_string(),
            source,
        })?;
        let store = Store::open(dir, Limits::default())?;
        Ok(ContentCache {
            store,
            root: dir.to_path_buf(),
        })
    }

    /// The store underneath, for [`crate::writer::write_bundle`].
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The size of the blob if the cache has it.
    pub fn size(&self, digest: &Digest) -> Result<Option<u64>, CacheError> {
        Ok(self.store.blob_size(digest)?)
    }

    /// Opens a cached blob.
    pub fn open_blob(&self, digest: &Digest) -> Result<Option<(std::fs::File, u64)>, CacheError> {
        Ok(self.store.open_content(digest)?)
    }

    /// Reads a small cached blob (a manifest, a config) whole.
    pub fn read(&self, digest: &Digest, limit: u64) -> Result<Option<Vec<u8>>, CacheError> {
        let Some((file, size)) = self.store.open_content(digest)? else {
            return Ok(None);
        };
        if size > limit {
            return Err(CacheError::TooLarge {
                what: format!("blob {digest}"),
                limit,
            });
        }
        let mut data = Vec::with_capacity(size as usize);
        file.take(limit)
            .read_to_end(&mut data)
            .map_err(|source| CacheError::Io {
                path: digest.to_string(),
                source,
            })?;
        Ok(Some(data))
    }

    /// Stores `data` (small: manifests, configs) and returns its sha256.
    pub fn put_bytes(&self, data: &[u8]) -> Result<Digest, CacheError> {
        let digest = Digest::sha256(data);
        self.put(&digest, Some(data.len() as u64), &mut &data[..])?;
        Ok(digest)
    }

    /// Stores a blob whose digest is known, verifying it (blocking).
    pub fn put(
        &self,
        digest: &Digest,
        size: Option<u64>,
        reader: &mut dyn Read,
    ) -> Result<u64, CacheError> {
        Ok(self.store.put_blob(REPOSITORY, digest, size, reader)?)
    }

    /// Stores a blob whose digest is not known yet (blocking): hashes it
    /// on the way in and returns digest and size.
    pub fn put_new(&self, reader: &mut dyn Read) -> Result<(Digest, u64), CacheError> {
        self.put_new_unless(reader, &AtomicBool::new(false))
    }

    /// [`ContentCache::put_new`], abandoning the blob if `cancelled` is set
    /// when the reader ends (a source that failed looks like an early end).
    fn put_new_unless(
        &self,
        reader: &mut dyn Read,
        cancelled: &AtomicBool,
    ) -> Result<(Digest, u64), CacheError> {
        let id = self.store.start_upload(REPOSITORY)?;
        let mut writer = self.store.open_upload(REPOSITORY, &id)?;
        let mut hasher = Hasher::new(Algorithm::Sha256);
        let mut buf = vec![0u8; 1024 * 1024];
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    writer.abandon();
                    return Err(CacheError::Io {
                        path: "(source)".into(),
                        source,
                    });
                }
            };
            hasher.update(&buf[..n]);
            if let Err(e) = writer.write(&buf[..n]) {
                writer.abandon();
                return Err(e.into());
            }
        }
        if cancelled.load(Ordering::SeqCst) {
            writer.abandon();
            return Err(CacheError::Io {
                path: "(source)".into(),
                source: io::Error::other("the source failed; nothing was stored"),
            });
        }
        let size = hasher.bytes();
        let digest = hasher.finish();
        writer.commit(&digest, Some(size))?;
        Ok((digest, size))
    }

    /// A pipe whose read end is stored by a blocking thread: write a blob
    /// whose digest is not known yet into [`BlobPipe::writer`], then call
    /// [`BlobPipe::finish`], which returns the digest and size it hashed to.
    /// (A blob whose digest is known goes through [`ContentCache::download`].)
    pub fn put_stream(&self) -> BlobPipe {
        let (writer, reader) = tokio::io::duplex(PIPE_BUFFER);
        let cache = self.clone();
        let cancelled = Arc::new(AtomicBool::new(false));
        let flag = cancelled.clone();
        let task = tokio::task::spawn_blocking(move || {
            let mut reader = tokio_util::io::SyncIoBridge::new(reader);
            cache.put_new_unless(&mut reader, &flag)
        });
        BlobPipe {
            writer,
            task,
            cancelled,
        }
    }

    /// Starts or resumes the download of a blob whose digest is known (and
    /// its size, when known); see the module documentation. The returned
    /// [`Download::resumed`] hashes the bytes a previous run left: request
    /// the rest from `resumed.bytes()` on and write it into
    /// [`Download::writer`].
    pub async fn download(
        &self,
        digest: &Digest,
        size: Option<u64>,
    ) -> Result<Download, CacheError> {
        let (writer, reader) = tokio::io::duplex(PIPE_BUFFER);
        let (started_tx, started_rx) = tokio::sync::oneshot::channel();
        let end = Arc::new(AtomicU8::new(End::Commit as u8));
        let cache = self.clone();
        let digest = digest.clone();
        let flag = end.clone();
        let task = tokio::task::spawn_blocking(move || {
            let (mut upload, named) = cache.open_download(&digest, size)?;
            let _ = started_tx.send(upload.hasher());
            let mut reader = tokio_util::io::SyncIoBridge::new(reader);
            let mut buf = vec![0u8; PIPE_BUFFER];
            let copied = loop {
                match reader.read(&mut buf) {
                    Ok(0) => break Ok(()),
                    Ok(n) => {
                        if let Err(e) = upload.write(&buf[..n]) {
                            break Err(e.into());
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(source) => {
                        break Err(CacheError::Io {
                            path: "(download)".into(),
                            source,
                        });
                    }
                }
            };
            match (copied, End::from(flag.load(Ordering::SeqCst))) {
                (Ok(()), End::Commit) => {
                    let size = upload.commit(&digest, size)?;
                    Ok((digest, size))
                }
                // Bytes that did arrive are kept for the next run, when the
                // session can be found again by its name.
                (result, End::Keep) if named && upload.offset() > 0 => {
                    drop(upload);
                    result.and(Err(interrupted()))
                }
                (result, _) => {
                    upload.abandon();
                    result.and(Err(interrupted()))
                }
            }
        });
        match started_rx.await {
            Ok(resumed) => Ok(Download {
                writer,
                resumed,
                task,
                end,
            }),
            // The thread failed before it could start: its error says why.
            Err(_) => match task.await {
                Ok(Err(e)) => Err(e),
                Ok(Ok(_)) => unreachable!("a download commits only after it started"),
                Err(e) => Err(CacheError::Io {
                    path: "(cache writer)".into(),
                    source: io::Error::other(e),
                }),
            },
        }
    }

    /// The upload session a download of `digest` writes into, and whether
    /// it is the one named after the digest (a re-run finds only that one).
    fn open_download(
        &self,
        digest: &Digest,
        size: Option<u64>,
    ) -> Result<(ferry_store::UploadWriter, bool), CacheError> {
        // Session ids are 32 hex digits; the digest's hash gives one that is
        // the same in every run and cannot collide with random ones in practice.
        let id = Digest::sha256(format!("download {digest}").as_bytes()).hex()[..32].to_string();
        let mut upload = match self.store.resume_or_start_upload(REPOSITORY, &id) {
            Ok(upload) => upload,
            // Another task of this run is downloading the same blob.
            Err(StoreError::UploadBusy(_)) => {
                let fresh = self.store.start_upload(REPOSITORY)?;
                return Ok((self.store.open_upload(REPOSITORY, &fresh)?, false));
            }
            Err(e) => return Err(e.into()),
        };
        upload.set_algorithm(digest.algorithm())?;
        if size.is_some_and(|size| upload.offset() > size) {
            // Not a prefix of this blob: start over.
            upload.abandon();
            upload = self.store.resume_or_start_upload(REPOSITORY, &id)?;
            upload.set_algorithm(digest.algorithm())?;
        }
        if upload.offset() > 0 {
            tracing::info!(
                "{digest}: resuming the download at byte {}",
                upload.offset()
            );
        }
        Ok((upload, true))
    }

    fn memo_path(&self, kind: &str, key: &str) -> PathBuf {
        self.root
            .join(MEMO_DIR)
            .join(kind)
            .join(Digest::sha256(key.as_bytes()).hex())
    }

    /// A memo recorded under `kind`/`key`, if any.
    pub fn memo<T: serde::de::DeserializeOwned>(&self, kind: &str, key: &str) -> Option<T> {
        let data = std::fs::read(self.memo_path(kind, key)).ok()?;
        serde_json::from_slice(&data).ok()
    }

    /// Records a memo (temporary file + rename, so readers never see half
    /// of one). A memo is a hint: failing to write one is not an error.
    pub fn set_memo<T: serde::Serialize>(&self, kind: &str, key: &str, value: &T) {
        let path = self.memo_path(kind, key);
        let write = || -> io::Result<()> {
            let dir = path.parent().expect("memo path has a parent");
            std::fs::create_dir_all(dir)?;
            let tmp = dir.join(format!(
                ".{}.tmp",
                path.file_name().unwrap_or_default().to_string_lossy()
            ));
            std::fs::write(&tmp, serde_json::to_vec(value).expect("memo serializes"))?;
            std::fs::rename(&tmp, &path)
        };
        if let Err(e) = write() {
            tracing::debug!("cannot record {kind} memo at {}: {e}", path.display());
        }
    }
}

/// How a [`Download`] ends, decided by the side that feeds it.
#[repr(u8)]
enum End {
    /// The source delivered everything: verify and store.
    Commit,
    /// The source failed part-way (network, interruption): keep the bytes
    /// for the next run.
    Keep,
    /// The content is wrong: throw the bytes away.
    Discard,
}

impl From<u8> for End {
    fn from(value: u8) -> End {
        match value {
            0 => End::Commit,
            1 => End::Keep,
            _ => End::Discard,
        }
    }
}

fn interrupted() -> CacheError {
    CacheError::Io {
        path: "(download)".into(),
        source: io::Error::other("the source failed; what arrived is kept for the next run"),
    }
}

/// A download into the cache; see [`ContentCache::download`].
pub struct Download {
    pub writer: DuplexStream,
    /// The hash of the bytes already stored (from a previous run), `0`
    /// bytes for a new download.
    pub resumed: Hasher,
    task: tokio::task::JoinHandle<Result<(Digest, u64), CacheError>>,
    end: Arc<AtomicU8>,
}

impl Download {
    /// Closes the pipe and waits for the blob to be verified and stored.
    pub async fn finish(self) -> Result<(Digest, u64), CacheError> {
        self.end_with(End::Commit).await
    }

    /// The source failed part-way: keeps what arrived for the next run.
    /// Returns the writer's own error if it failed first.
    pub async fn keep(self) -> Result<(Digest, u64), CacheError> {
        self.end_with(End::Keep).await
    }

    /// The content is wrong: removes what arrived.
    pub async fn discard(self) -> Result<(Digest, u64), CacheError> {
        self.end_with(End::Discard).await
    }

    async fn end_with(self, end: End) -> Result<(Digest, u64), CacheError> {
        self.end.store(end as u8, Ordering::SeqCst);
        drop(self.writer);
        self.task.await.map_err(|e| CacheError::Io {
            path: "(cache writer)".into(),
            source: io::Error::other(e),
        })?
    }
}

/// The write end of [`ContentCache::put_stream`].
pub struct BlobPipe {
    pub writer: DuplexStream,
    task: tokio::task::JoinHandle<Result<(Digest, u64), CacheError>>,
    cancelled: Arc<AtomicBool>,
}

impl BlobPipe {
    /// The source failed: closes the pipe and makes sure nothing of what
    /// went through it is stored. Returns what the writer thread ended
    /// with (its own error, if it failed first).
    pub async fn abort(self) -> Result<(Digest, u64), CacheError> {
        self.cancelled.store(true, Ordering::SeqCst);
        self.finish().await
    }

    /// Closes the pipe and waits for the blob to be stored and verified.
    pub async fn finish(self) -> Result<(Digest, u64), CacheError> {
        drop(self.writer);
        self.task.await.map_err(|e| CacheError::Io {
            path: "(cache writer)".into(),
            source: io::Error::other(e),
        })?
    }
}
