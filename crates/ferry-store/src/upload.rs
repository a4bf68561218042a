//! Blob upload sessions (distribution-spec "Pushing blobs").
//!
//! An upload is a directory `uploads/<id>/` holding the bytes received so
//! far (`data`) and the repository it belongs to. Bytes are appended in
//! order and hashed as they arrive; nothing under `uploads/` is ever
//! visible as a blob. [`UploadWriter::commit`] verifies digest and size,
//! fsyncs the data and renames it into `blobs/`, then links it into the
//! repository.
//!
//! Sessions survive a restart: the in-memory hash state is lost with the
//! process, so the first write after a restart re-hashes the data already
//! on disk. The offset a client resumes from is the length of `data`, which
//! after a crash holds exactly the bytes whose writes completed.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use ferry_oci::{Algorithm, Digest, Hasher};

use crate::error::{IoContext, Result, StoreError};
use crate::{Store, check_repository, fsutil};

/// An upload's in-memory state between requests.
pub(crate) struct UploadState {
    repo: String,
    /// Hash of `data` so far; `None` until the first writer after a
    /// restart has re-hashed the file.
    hasher: Option<Hasher>,
    /// A writer holds the session.
    busy: bool,
}

const WRITE_BUFFER: usize = 256 * 1024;

/// Start writing data back to disk after this many new bytes, so that the
/// fsync at commit has little left to do: for a 1 GiB blob the disk works
/// while the rest arrives, instead of after it (see [`BackgroundFlush`]).
const FLUSH_EVERY: u64 = 64 * 1024 * 1024;

impl Store {
    /// Starts an upload session in `repo` and returns its id (128 random
    /// bits, so that session URLs cannot be guessed).
    pub fn start_upload(&self, repo: &str) -> Result<String> {
        let id = fsutil::random_hex(16);
        self.create_session(repo, &id, false)?;
        Ok(id)
    }

    /// Takes upload session `id` of `repo` for writing, creating it if it
    /// does not exist. For callers that name their sessions themselves so
    /// that they find them again after a crash (the bundle cache names a
    /// download after the blob's digest and resumes it where it stopped).
    /// `id` must look like the ids [`Store::start_upload`] makes: 32
    /// lowercase hex digits.
    pub fn resume_or_start_upload(&self, repo: &str, id: &str) -> Result<UploadWriter> {
        match self.open_upload(repo, id) {
            Err(StoreError::UploadUnknown(_)) if is_session_id(id) => {
                self.create_session(repo, id, false)?;
                self.open_upload(repo, id)
            }
            other => other,
        }
    }

    /// Creates session `id`. It is put together in `tmp/` and renamed into
    /// `uploads/` whole, so a session exists with both its files or not at
    /// all: a failure half-way (a full disk) leaves nothing behind.
    /// `claimed`: the session is busy from the moment it is visible, so
    /// that garbage collection never takes it before its writer opens it
    /// (with no grace period, a session nobody writes to yet is idle).
    fn create_session(&self, repo: &str, id: &str, claimed: bool) -> Result<()> {
        check_repository(repo)?;
        let dir = self.layout().upload(id);
        self.inner.uploads.lock().expect("uploads lock").insert(
            id.to_string(),
            UploadState {
                repo: repo.to_string(),
                hasher: Some(Hasher::new(Algorithm::Sha256)),
                busy: claimed,
            },
        );
        let staging = fsutil::temp_path(&self.layout().tmp());
        let created = (|| {
            fs::create_dir(&staging)?;
            File::create(staging.join("data"))?;
            fs::write(staging.join("repository"), repo)?;
            fs::rename(&staging, &dir)?;
            fsutil::sync_dir(&self.layout().uploads())
        })();
        if let Err(source) = created {
            let _ = fs::remove_dir_all(&staging);
            self.inner.uploads.lock().expect("uploads lock").remove(id);
            return Err(source).at(&dir);
        }
        Ok(())
    }

    /// Bytes received so far by upload `id` of `repo`.
    pub fn upload_offset(&self, repo: &str, id: &str) -> Result<u64> {
        let dir = self.session_dir(repo, id)?;
        let data = dir.join("data");
        Ok(fs::metadata(&data).at(&data)?.len())
    }

    /// Whether a writer holds upload `id` right now.
    pub fn upload_is_busy(&self, id: &str) -> bool {
        let uploads = self.inner.uploads.lock().expect("uploads lock");
        uploads.get(id).is_some_and(|s| s.busy)
    }

    /// Takes the session for writing. Only one writer at a time: a second
    /// concurrent request for the same session gets `UploadBusy`.
    pub fn open_upload(&self, repo: &str, id: &str) -> Result<UploadWriter> {
        let dir = self.session_dir(repo, id)?;
        let hasher = {
            let mut uploads = self.inner.uploads.lock().expect("uploads lock");
            let state = uploads
                .entry(id.to_string())
                .or_insert_with(|| UploadState {
                    repo: repo.to_string(),
                    hasher: None,
                    busy: false,
                });
            if state.busy {
                return Err(StoreError::UploadBusy(id.to_string()));
            }
            state.busy = true;
            state.hasher.take()
        };
        self.writer(id, dir, hasher)
    }

    /// The writer of session `id` in `dir`, which the caller has claimed.
    fn writer(
        &self,
        id: &str,
        dir: std::path::PathBuf,
        hasher: Option<Hasher>,
    ) -> Result<UploadWriter> {
        let mut writer = UploadWriter {
            store: self.clone(),
            id: id.to_string(),
            dir,
            file: None,
            hasher: None,
            offset: 0,
            ended: false,
            flush: BackgroundFlush::default(),
        };
        writer.open(hasher)?;
        Ok(writer)
    }

    /// Cancels an upload and removes what it received.
    pub fn cancel_upload(&self, repo: &str, id: &str) -> Result<()> {
        let dir = self.session_dir(repo, id)?;
        if self.upload_is_busy(id) {
            return Err(StoreError::UploadBusy(id.to_string()));
        }
        self.remove_session(id, &dir);
        Ok(())
    }

    /// Stores a whole blob from `reader` into `repo`, verifying `digest`
    /// (and `size`, if given). For callers that have the content at hand
    /// (bundle import, tests); the registry streams through
    /// [`UploadWriter`] instead.
    pub fn put_blob(
        &self,
        repo: &str,
        digest: &Digest,
        size: Option<u64>,
        reader: &mut dyn Read,
    ) -> Result<u64> {
        if let Some(existing) = self.blob_size(digest)? {
            check_repository(repo)?;
            self.link_blob(repo, digest)?;
            return Ok(existing);
        }
        // Claimed from its creation: see `create_session`.
        let id = fsutil::random_hex(16);
        self.create_session(repo, &id, true)?;
        let hasher = self
            .inner
            .uploads
            .lock()
            .expect("uploads lock")
            .get_mut(&id)
            .and_then(|state| state.hasher.take());
        let mut writer = self.writer(&id, self.layout().upload(&id), hasher)?;
        writer.set_algorithm(digest.algorithm())?;
        let mut buf = vec![0u8; WRITE_BUFFER];
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    writer.abandon();
                    return Err(StoreError::Io {
                        path: format!("source of {digest}"),
                        source: e,
                    });
                }
            };
            if let Err(e) = writer.write(&buf[..n]) {
                writer.abandon();
                return Err(e);
            }
        }
        writer.commit(digest, size)
    }

    fn session_dir(&self, repo: &str, id: &str) -> Result<PathBuf> {
        check_repository(repo)?;
        let unknown = || StoreError::UploadUnknown(id.to_string());
        if !is_session_id(id) {
            return Err(unknown());
        }
        let dir = self.layout().upload(id);
        let repo_file = dir.join("repository");
        match fsutil::read_optional(&repo_file).at(&repo_file)? {
            Some(owner) if owner == repo.as_bytes() => Ok(dir),
            _ => Err(unknown()),
        }
    }

    fn remove_session(&self, id: &str, dir: &std::path::Path) {
        self.inner.uploads.lock().expect("uploads lock").remove(id);
        if let Err(e) = fs::remove_dir_all(dir) {
            tracing::warn!(upload = id, error = %e, "could not remove upload directory");
        }
    }

    /// Removes every upload session that has received nothing for
    /// `idle_for` (or, with `dry_run`, only counts them), and returns how
    /// many. A session with a writer is never idle. Each session is
    /// claimed first, as a writer would claim it, so that a client coming
    /// back at that moment gets "busy" (and on its retry "unknown")
    /// instead of writing into a file being removed.
    pub fn purge_idle_uploads(&self, idle_for: Duration, dry_run: bool) -> Result<usize> {
        let cutoff = SystemTime::now()
            .checked_sub(idle_for)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let uploads = self.layout().uploads();
        let mut purged = 0;
        for id in fsutil::list_names(&uploads).at(&uploads)? {
            let dir = uploads.join(&id);
            if !self.is_idle_since(&dir, cutoff) || !self.claim(&id) {
                continue;
            }
            // A write may have ended between the look and the claim.
            if self.is_idle_since(&dir, cutoff) {
                purged += 1;
                if !dry_run {
                    tracing::info!(upload = %id, "removing an idle upload session");
                    self.remove_session(&id, &dir);
                    continue;
                }
            }
            self.release(&id);
        }
        Ok(purged)
    }

    /// Whether the session in `dir` last received data before `cutoff`:
    /// its data file's mtime, or the directory's for a session without
    /// one (a directory left by a crash, or by older versions).
    fn is_idle_since(&self, dir: &std::path::Path, cutoff: SystemTime) -> bool {
        fs::metadata(dir.join("data"))
            .or_else(|_| fs::metadata(dir))
            .and_then(|m| m.modified())
            .is_ok_and(|m| m < cutoff)
    }

    /// Marks session `id` busy, as a writer does; `false` if it already is.
    fn claim(&self, id: &str) -> bool {
        let mut uploads = self.inner.uploads.lock().expect("uploads lock");
        let state = uploads
            .entry(id.to_string())
            .or_insert_with(|| UploadState {
                repo: String::new(),
                hasher: None,
                busy: false,
            });
        !std::mem::replace(&mut state.busy, true)
    }

    /// Undoes [`Self::claim`].
    fn release(&self, id: &str) {
        let mut uploads = self.inner.uploads.lock().expect("uploads lock");
        if let Some(state) = uploads.get_mut(id) {
            state.busy = false;
        }
    }

    /// The repository an in-memory session belongs to.
    pub fn upload_repository(&self, id: &str) -> Option<String> {
        let uploads = self.inner.uploads.lock().expect("uploads lock");
        uploads.get(id).map(|s| s.repo.clone())
    }
}

/// Exclusive access to one upload session: append bytes, then commit or
/// drop. Dropping returns the session (with its hash state) for the next
/// request.
pub struct UploadWriter {
    store: Store,
    id: String,
    dir: PathBuf,
    file: Option<BufWriter<File>>,
    hasher: Option<Hasher>,
    offset: u64,
    /// Committed or abandoned: the session no longer exists.
    ended: bool,
    flush: BackgroundFlush,
}

/// An `fdatasync` of the upload's data on a helper thread, started every
/// [`FLUSH_EVERY`] bytes. It runs on a clone of the file descriptor, so
/// the writer keeps writing meanwhile; the commit waits for it and then
/// fsyncs what remains.
#[derive(Default)]
struct BackgroundFlush {
    since_last: u64,
    running: Option<std::thread::JoinHandle<io::Result<()>>>,
}

impl BackgroundFlush {
    fn account(&mut self, bytes: u64, file: &File) {
        self.since_last += bytes;
        if self.since_last < FLUSH_EVERY || self.running.as_ref().is_some_and(|t| !t.is_finished())
        {
            return;
        }
        if let Some(done) = self.running.take() {
            let _ = done.join(); // its outcome is re-checked by the final fsync
        }
        if let Ok(clone) = file.try_clone() {
            self.since_last = 0;
            self.running = Some(std::thread::spawn(move || clone.sync_data()));
        }
    }

    fn wait(&mut self) {
        if let Some(t) = self.running.take() {
            let _ = t.join();
        }
    }
}

impl UploadWriter {
    fn open(&mut self, hasher: Option<Hasher>) -> Result<()> {
        let data = self.dir.join("data");
        let mut file = match OpenOptions::new().read(true).append(true).open(&data) {
            Ok(file) => file,
            // Cancelled or expired since it was looked up.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::UploadUnknown(self.id.clone()));
            }
            Err(e) => return Err(e).at(&data),
        };
        let len = file.metadata().at(&data)?.len();
        let hasher = match hasher {
            Some(h) if h.bytes() == len => h,
            // A restart, or a write that failed half-way: hash what is on disk.
            stale => rehash(
                &mut file,
                stale.map_or(Algorithm::Sha256, |h| h.algorithm()),
            )
            .at(&data)?,
        };
        self.offset = len;
        self.hasher = Some(hasher);
        self.file = Some(BufWriter::with_capacity(WRITE_BUFFER, file));
        Ok(())
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// Bytes received so far, including this writer's.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The hash of the bytes received so far, for a caller that continues
    /// the content from elsewhere and verifies it on its own way in (a
    /// resumed download hands it to the registry client).
    pub fn hasher(&self) -> Hasher {
        self.hasher.clone().expect("open writer has a hasher")
    }

    /// Hashes with `algorithm` from here on (re-hashing what is on disk
    /// if it differs). Used when the digest is known before the data.
    pub fn set_algorithm(&mut self, algorithm: Algorithm) -> Result<()> {
        if self
            .hasher
            .as_ref()
            .is_some_and(|h| h.algorithm() == algorithm)
        {
            return Ok(());
        }
        self.flush()?;
        let data = self.dir.join("data");
        let mut f = File::open(&data).at(&data)?;
        self.hasher = Some(rehash(&mut f, algorithm).at(&data)?);
        Ok(())
    }

    /// Appends `data` to the upload.
    pub fn write(&mut self, data: &[u8]) -> Result<()> {
        let written = self.file()?.write_all(data);
        if let Err(source) = written {
            return Err(self.data_error(source));
        }
        self.hasher
            .as_mut()
            .expect("open writer has a hasher")
            .update(data);
        self.offset += data.len() as u64;
        let file = self
            .file
            .as_ref()
            .expect("open writer has a file")
            .get_ref();
        self.flush.account(data.len() as u64, file);
        Ok(())
    }

    /// Writes buffered bytes to the file.
    pub fn flush(&mut self) -> Result<()> {
        let flushed = self.file()?.flush();
        flushed.map_err(|source| self.data_error(source))
    }

    /// The session's data file; gone once the session has ended.
    fn file(&mut self) -> Result<&mut BufWriter<File>> {
        self.file
            .as_mut()
            .ok_or_else(|| StoreError::UploadUnknown(self.id.clone()))
    }

    /// The error for a failed write of the session's data. What reached
    /// the file is unknown, so the next writer re-hashes it. A full disk
    /// ends the session: what it received is released at once, so the
    /// space is the registry's again (the client starts the blob over).
    fn data_error(&mut self, source: io::Error) -> StoreError {
        self.hasher = None;
        if source.kind() == io::ErrorKind::StorageFull {
            tracing::warn!(upload = %self.id, bytes = self.offset, "the disk is full: upload released");
            self.end();
        }
        StoreError::Io {
            path: self.dir.join("data").display().to_string(),
            source,
        }
    }

    /// Verifies the content against `digest` (and `size` if given), makes
    /// it durable and visible as a blob, links it into the session's
    /// repository and ends the session. On a mismatch the session is
    /// removed and nothing becomes visible.
    pub fn commit(mut self, digest: &Digest, size: Option<u64>) -> Result<u64> {
        self.flush()?;
        let repo = self.repository();
        let verdict = self
            .verify_and_place(digest, size)
            .and_then(|len| self.store.link_blob(&repo, digest).map(|()| len));
        // Client errors end the session (as Distribution does); an I/O
        // error leaves it for a retry, unless the disk is full (see
        // `data_error`).
        let retry = matches!(&verdict, Err(StoreError::Io { source, .. })
            if source.kind() != io::ErrorKind::StorageFull);
        if !retry {
            self.end();
        }
        verdict
    }

    fn repository(&self) -> String {
        let repo_file = self.dir.join("repository");
        fs::read_to_string(repo_file).unwrap_or_default()
    }

    fn verify_and_place(&mut self, digest: &Digest, size: Option<u64>) -> Result<u64> {
        self.set_algorithm(digest.algorithm())?;
        let actual = self.hasher.as_ref().expect("hasher").peek();
        if let Some(expected) = size
            && expected != self.offset
        {
            return Err(StoreError::SizeMismatch {
                expected,
                actual: self.offset,
            });
        }
        if &actual != digest {
            return Err(StoreError::DigestMismatch {
                expected: digest.clone(),
                actual,
            });
        }
        let data = self.dir.join("data");
        self.flush.wait();
        let file = self.file.as_mut().expect("file").get_mut();
        file.sync_all().at(&data)?;
        let layout = self.store.layout();
        let dest = layout.blob(digest);
        let parent = dest.parent().expect("blob path has a parent").to_path_buf();
        fsutil::ensure_dir(&parent).at(&parent)?;
        // The blob's mtime is its commit time: GC's grace period counts
        // from it, for new and for deduplicated uploads alike.
        self.store.pin(digest);
        match touch(&dest) {
            Ok(()) => {}
            // Not there (or quarantined a moment ago): this upload is it.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                touch(&data).at(&data)?;
                fs::rename(&data, &dest).at(&dest)?;
                fsutil::sync_dir(&parent).at(&parent)?;
            }
            Err(e) => return Err(e).at(&dest),
        }
        Ok(self.offset)
    }

    /// Gives up on the session entirely (its data is removed).
    pub fn abandon(mut self) {
        self.end();
    }

    fn end(&mut self) {
        self.file = None;
        self.ended = true;
        self.store.remove_session(&self.id, &self.dir);
    }
}

impl Drop for UploadWriter {
    fn drop(&mut self) {
        if self.ended {
            return;
        }
        if self.flush_on_drop().is_err() {
            self.hasher = None;
        }
        let mut uploads = self.store.inner.uploads.lock().expect("uploads lock");
        if let Some(state) = uploads.get_mut(&self.id) {
            state.busy = false;
            state.hasher = self.hasher.take();
        }
    }
}

impl UploadWriter {
    fn flush_on_drop(&mut self) -> io::Result<()> {
        match self.file.as_mut() {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }
}

fn touch(path: &std::path::Path) -> io::Result<()> {
    File::options()
        .write(true)
        .open(path)?
        .set_modified(SystemTime::now())
}

/// Whether `id` has the form of a session id (32 lowercase hex digits);
/// anything else could name a path outside `uploads/`.
fn is_session_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Hashes a file from its start, leaving the position at its end.
fn rehash(file: &mut File, algorithm: Algorithm) -> io::Result<Hasher> {
    let mut hasher = Hasher::new(algorithm);
    file.seek(SeekFrom::Start(0))?;
    let mut buf = vec![0u8; 1024 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher)
}
