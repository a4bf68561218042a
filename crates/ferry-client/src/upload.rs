//! Blob push (distribution-spec "Pushing blobs"): skip what exists, mount
//! what another repository has, upload the rest in one request or in
//! chunks, resume what was interrupted, and never commit a blob whose
//! bytes do not hash to its digest.
//!
//! The steps of [`Repository::push_blob`]:
//!
//! 1. With a [`ResumeStore`], a saved upload is asked for its status
//!    (`GET` on its URL; the `Range` header says how many bytes the
//!    registry holds) and continued from there.
//! 2. `HEAD` of the blob: present means done ("skipped").
//! 3. `POST ?mount=DIGEST&from=REPO` for each candidate repository: `201`
//!    means mounted; `202` means "not mountable here", and the upload
//!    session it opened is used for a normal upload.
//! 4. Upload. Blobs up to [`PushOptions::monolithic_max`] go in one
//!    request (`POST` then `PUT ?digest=` with the body, or a single
//!    `POST ?digest=` with [`PushOptions::single_post`]); larger ones as
//!    `PATCH` chunks with `Content-Range`, the upload URL and confirmed
//!    offset saved after each chunk, then an empty `PUT ?digest=`.
//!
//! **Verification.** Every byte sent is hashed on the way out. A chunked
//! upload sends its final `PUT` only if the whole source hashed to the
//! digest (after a resume, the bytes the registry already holds are
//! re-read locally and hashed, not re-sent). A one-request upload holds its
//! last piece back until the hash is known, and on a mismatch aborts the
//! request instead of sending it, so the registry never receives a
//! complete body. The upload session is then cancelled (`DELETE`).
//!
//! **Retries.** A failed step (connection lost, 5xx, 429, 416, an expired
//! token) asks the registry where the upload stands and continues from its
//! offset, with backoff; an upload the registry no longer knows starts
//! over. Progress is reset to the resumed offset each time. Only the
//! streaming requests (sent once) are retried this way: the others went
//! through the client's own retries already, and a second layer of retries
//! around them would multiply the wait for a registry that is gone.
//!
//! **Distribution 2.8 (and Harbor, built on it).** Its upload URL carries
//! a signed `_state` with the offset; if a `PATCH` was cut mid-body, the
//! bytes it stored no longer match that offset and the registry cancels
//! the upload on the next request. Resuming from such a registry
//! therefore continues from the last complete chunk when the interruption
//! fell between chunks, and restarts the blob otherwise. Registries that
//! keep partial chunks (ferry's own, Distribution 3, zot) resume mid-chunk.
//! Its `Range: 0-0` also means both "0 bytes" and "1 byte"; it is read as 0
//! (a wrong guess makes the final digest check fail and the upload restart).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use ferry_oci::progress::Progress;
use ferry_oci::{Digest, Hasher};
use futures_util::StreamExt;
use http::{Method, StatusCode};
use tokio::sync::mpsc;
use url::Url;

use crate::auth::Scope;
use crate::client::{Host, Request};
use crate::error::{ClientError, Result};
use crate::repository::{Repository, content_digest, expect_status, header_str};
use crate::resume::{ResumeState, ResumeStore};
use crate::source::BlobSource;

/// How [`Repository::push_blob`] pushes.
#[derive(Debug, Clone)]
pub struct PushOptions {
    /// `HEAD` first and skip blobs the repository already has.
    pub check_exists: bool,
    /// Repositories of the same registry to try mounting the blob from,
    /// in order.
    pub mount_from: Vec<String>,
    /// Blobs up to this size are sent in one request; larger ones in
    /// chunks (which can resume).
    pub monolithic_max: u64,
    /// One-request uploads use a single `POST ?digest=` instead of
    /// `POST` + `PUT` (one round trip less; not every registry has it).
    pub single_post: bool,
    /// Size of each `PATCH` of a chunked upload. ECR needs at least 5 MiB.
    pub chunk_size: u64,
    /// Where chunked uploads save their state, so another process can
    /// resume them; without one, uploads resume only within this call.
    pub resume: Option<ResumeStore>,
}

impl Default for PushOptions {
    fn default() -> Self {
        PushOptions {
            check_exists: true,
            mount_from: Vec::new(),
            monolithic_max: 16 * 1024 * 1024,
            single_post: false,
            chunk_size: 64 * 1024 * 1024,
            resume: None,
        }
    }
}

/// How a blob got to the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushOutcome {
    /// The repository already had it.
    Exists,
    /// Mounted from another repository; no bytes sent.
    Mounted { from: String },
    /// Uploaded (possibly continuing an earlier upload).
    Uploaded,
}

impl PushOutcome {
    /// The word progress reports use.
    pub fn as_str(&self) -> &'static str {
        match self {
            PushOutcome::Exists => "skipped",
            PushOutcome::Mounted { .. } => "mounted",
            PushOutcome::Uploaded => "pushed",
        }
    }
}

/// What [`Repository::push_blob`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushReport {
    pub digest: Digest,
    pub size: u64,
    pub outcome: PushOutcome,
    /// Body bytes handed to the network (re-sent bytes counted again).
    pub bytes_sent: u64,
    /// The registry's offset when an earlier upload (saved state, or an
    /// interrupted attempt of this call) was continued; the largest if
    /// several.
    pub resumed_at: Option<u64>,
    /// Times the upload had to start again from byte 0.
    pub restarts: u32,
}

/// An upload session: where to send the next bytes.
#[derive(Debug, Clone)]
struct Session {
    location: Url,
    offset: u64,
}

enum MountResult {
    Mounted(String),
    /// Not mounted; the session the last declining registry answer opened.
    Declined(Option<Session>),
}

/// Why one upload step failed, and where the session stood.
struct Failure {
    error: ClientError,
    location: Option<Url>,
    /// The failed request went through [`crate::Client`]'s retrying
    /// `send`, which used up the retries already: another round here
    /// would multiply them.
    retried: bool,
}

impl Failure {
    /// A failure of a streaming request (sent once) at `location`.
    fn at(location: &Url) -> impl FnOnce(ClientError) -> Failure + '_ {
        move |error| Failure {
            error,
            location: Some(location.clone()),
            retried: false,
        }
    }

    /// A failure of a request that was retried already.
    fn retried_at(location: &Url) -> impl FnOnce(ClientError) -> Failure + '_ {
        move |error| Failure {
            error,
            location: Some(location.clone()),
            retried: true,
        }
    }
}

impl Repository {
    /// Pushes the blob `digest` whose bytes `source` holds; see the
    /// module documentation. Progress is reported under the digest.
    pub async fn push_blob(
        &self,
        digest: &Digest,
        source: &dyn BlobSource,
        options: &PushOptions,
        progress: &dyn Progress,
    ) -> Result<PushReport> {
        let host = self.host().await?;
        let id = digest.to_string();
        progress.start(&id, &digest.short(), Some(source.len()));
        let mut upload = Upload {
            repository: self,
            host,
            digest,
            source,
            options,
            progress,
            id: &id,
            bytes_sent: Arc::new(AtomicU64::new(0)),
            checkpoint: None,
            resumed_at: None,
            restarts: 0,
        };
        let result = upload.run().await;
        progress.finish(
            &id,
            match &result {
                Ok(outcome) => outcome.as_str(),
                Err(_) => "failed",
            },
        );
        Ok(PushReport {
            digest: digest.clone(),
            size: source.len(),
            outcome: result?,
            bytes_sent: upload.bytes_sent.load(Ordering::Relaxed),
            resumed_at: upload.resumed_at,
            restarts: upload.restarts,
        })
    }

    /// Tries to mount `digest` from repository `from`. `Ok(true)` if
    /// mounted; `Ok(false)` if the registry declined (its upload session
    /// is cancelled).
    pub async fn mount_blob(&self, digest: &Digest, from: &str) -> Result<bool> {
        let host = self.host().await?;
        match self.try_mount(&host, digest, from).await? {
            Some(session) => {
                self.cancel_upload(&host, &session.location).await;
                Ok(false)
            }
            None => Ok(true),
        }
    }

    /// `None` if mounted, else the session the registry opened instead.
    async fn try_mount(&self, host: &Host, digest: &Digest, from: &str) -> Result<Option<Session>> {
        let mut url = self.url(host, "blobs/uploads/");
        url.query_pairs_mut()
            .append_pair("mount", &digest.to_string())
            .append_pair("from", from);
        let scopes = vec![Scope::push(self.name()), Scope::pull(from)];
        let response = self
            .client()
            .send(host, Request::new(Method::POST, url, scopes))
            .await?;
        let response = expect_status(
            &Method::POST,
            response,
            &[StatusCode::CREATED, StatusCode::ACCEPTED],
        )
        .await?;
        if response.status() == StatusCode::CREATED {
            if let Some(reported) = content_digest(&response)
                && &reported != digest
            {
                return Err(ClientError::DigestMismatch {
                    what: format!("blob mounted into {}", self.name()),
                    expected: digest.clone(),
                    actual: reported,
                });
            }
            return Ok(None);
        }
        Ok(Some(Session {
            location: upload_location(&response)?,
            offset: 0,
        }))
    }

    /// Opens an upload session.
    async fn start_upload(&self, host: &Host) -> Result<Session> {
        let url = self.url(host, "blobs/uploads/");
        let response = self
            .client()
            .send(host, Request::new(Method::POST, url, self.push_scopes()))
            .await?;
        let response = expect_status(&Method::POST, response, &[StatusCode::ACCEPTED]).await?;
        Ok(Session {
            location: upload_location(&response)?,
            offset: 0,
        })
    }

    /// Asks where an upload stands. `Ok(None)` if the registry no longer
    /// knows it (finished, cancelled, expired, or refused as invalid).
    async fn upload_status(&self, host: &Host, location: &Url) -> Result<Option<Session>> {
        let response = self
            .client()
            .send(
                host,
                Request::new(Method::GET, location.clone(), self.push_scopes()),
            )
            .await?;
        let status = response.status();
        if status == StatusCode::NOT_FOUND || status == StatusCode::GONE {
            return Ok(None);
        }
        if status == StatusCode::BAD_REQUEST {
            let error = ClientError::from_response(&Method::GET, response).await;
            if error.has_code("BLOB_UPLOAD_INVALID") || error.has_code("BLOB_UPLOAD_UNKNOWN") {
                return Ok(None);
            }
            return Err(error);
        }
        let response = expect_status(
            &Method::GET,
            response,
            &[StatusCode::NO_CONTENT, StatusCode::OK, StatusCode::ACCEPTED],
        )
        .await?;
        let offset = upload_offset(&response)?;
        let location = match header_str(&response, "location") {
            Some(_) => upload_location(&response)?,
            None => location.clone(),
        };
        Ok(Some(Session { location, offset }))
    }

    /// Cancels an upload session, ignoring failures (it expires anyway).
    async fn cancel_upload(&self, host: &Host, location: &Url) {
        let request = Request::new(Method::DELETE, location.clone(), self.push_scopes());
        if let Err(e) = self.client().send(host, request).await {
            tracing::debug!("cancelling upload {location}: {e}");
        }
    }
}

/// The upload URL of a response, resolved against the request URL (it
/// may be relative, RFC 9110 §10.2.2).
fn upload_location(response: &reqwest::Response) -> Result<Url> {
    let value = header_str(response, "location")
        .ok_or_else(|| ClientError::protocol(response.url(), "upload response without Location"))?;
    response
        .url()
        .join(value)
        .map_err(|e| ClientError::protocol(response.url(), format!("bad Location {value:?}: {e}")))
}

/// Bytes the registry holds, from `Range: 0-END` (inclusive; some
/// registries write `bytes=0-END`). No header means nothing received.
fn upload_offset(response: &reqwest::Response) -> Result<u64> {
    let Some(range) = header_str(response, "range") else {
        return Ok(0);
    };
    parse_upload_range(range)
        .ok_or_else(|| ClientError::protocol(response.url(), format!("unusable Range {range:?}")))
}

fn parse_upload_range(range: &str) -> Option<u64> {
    let range = range.trim();
    let range = range.strip_prefix("bytes=").unwrap_or(range);
    let (start, end) = range.split_once('-')?;
    let (start, end): (u64, u64) = (start.trim().parse().ok()?, end.trim().parse().ok()?);
    if start != 0 {
        return None;
    }
    // `0-0` is ambiguous (Distribution writes it for 0 and for 1 byte).
    Some(if end == 0 { 0 } else { end + 1 })
}

/// The state of one `push_blob` call.
struct Upload<'a> {
    repository: &'a Repository,
    host: Arc<Host>,
    digest: &'a Digest,
    source: &'a dyn BlobSource,
    options: &'a PushOptions,
    progress: &'a dyn Progress,
    id: &'a str,
    bytes_sent: Arc<AtomicU64>,
    /// A hash of the source's first N bytes, known good (N, state).
    checkpoint: Option<(u64, Hasher)>,
    resumed_at: Option<u64>,
    restarts: u32,
}

impl Upload<'_> {
    fn size(&self) -> u64 {
        self.source.len()
    }

    async fn run(&mut self) -> Result<PushOutcome> {
        let repo = self.repository;
        let mut session = None;
        if let Some(store) = &self.options.resume
            && let Some(state) = store
                .load(repo.registry(), repo.name(), self.digest)
                .await?
        {
            match Url::parse(&state.location) {
                Ok(location) => session = repo.upload_status(&self.host, &location).await?,
                Err(_) => session = None,
            }
            match &session {
                Some(s) => self.note_resume(s.offset),
                None => {
                    store
                        .remove(repo.registry(), repo.name(), self.digest)
                        .await?
                }
            }
        }
        if session.is_none()
            && self.options.check_exists
            && let Some(size) = repo.blob_exists(self.digest).await?
        {
            if size != self.size() && size != 0 {
                tracing::warn!(
                    "{}: registry has {} with {size} bytes, expected {}",
                    repo.name(),
                    self.digest,
                    self.size()
                );
            }
            return Ok(PushOutcome::Exists);
        }
        if session.is_none() {
            match self.mount().await? {
                MountResult::Mounted(from) => return Ok(PushOutcome::Mounted { from }),
                MountResult::Declined(fallback) => session = fallback,
            }
        }
        self.upload(session).await?;
        Ok(PushOutcome::Uploaded)
    }

    /// Tries each mount candidate in turn. A registry that declines opens
    /// an upload session instead (`202`); the last one is kept for the
    /// upload, earlier ones are cancelled.
    async fn mount(&self) -> Result<MountResult> {
        let repo = self.repository;
        let mut fallback: Option<Session> = None;
        for from in &self.options.mount_from {
            if from == repo.name() {
                continue;
            }
            match repo.try_mount(&self.host, self.digest, from).await {
                Ok(None) => {
                    if let Some(s) = &fallback {
                        repo.cancel_upload(&self.host, &s.location).await;
                    }
                    return Ok(MountResult::Mounted(from.clone()));
                }
                Ok(Some(session)) => {
                    if let Some(previous) = fallback.replace(session) {
                        repo.cancel_upload(&self.host, &previous.location).await;
                    }
                }
                // A registry may refuse mounts outright (no pull right on
                // `from`, unsupported): upload normally instead.
                Err(e) if !e.is_transient() => {
                    tracing::debug!("mount of {} from {from} refused: {e}", self.digest);
                }
                Err(e) => return Err(e),
            }
        }
        Ok(MountResult::Declined(fallback))
    }

    fn note_resume(&mut self, offset: u64) {
        if offset > 0 {
            self.resumed_at = Some(self.resumed_at.map_or(offset, |r| r.max(offset)));
        }
        self.progress.reset(self.id, offset);
    }

    fn chunked(&self) -> bool {
        self.size() > self.options.monolithic_max
    }

    /// The upload loop: one attempt, then on a retryable failure ask the
    /// registry where the upload stands and go on from there.
    async fn upload(&mut self, mut session: Option<Session>) -> Result<()> {
        let repo = self.repository;
        let policy = repo.client().options().retry.clone();
        let mut failures = 0u32;
        loop {
            let result = match session.take() {
                None if !self.chunked() && self.options.single_post => self.single_post().await,
                None => match repo.start_upload(&self.host).await {
                    Ok(s) => self.attempt(s).await,
                    Err(error) => Err(Failure {
                        error,
                        location: None,
                        retried: true,
                    }),
                },
                Some(s) => self.attempt(s).await,
            };
            let Failure {
                error,
                location,
                retried,
            } = match result {
                Ok(()) => {
                    self.forget().await?;
                    return Ok(());
                }
                Err(failure) => failure,
            };
            if error.is_source_error() {
                if let Some(location) = &location {
                    repo.cancel_upload(&self.host, location).await;
                }
                self.forget().await?;
                return Err(error);
            }
            let retryable = error.is_transient()
                || matches!(
                    error.status(),
                    Some(StatusCode::UNAUTHORIZED | StatusCode::RANGE_NOT_SATISFIABLE)
                );
            if retried || !retryable || failures >= policy.max_retries {
                return Err(error);
            }
            tracing::debug!(
                "upload of {} to {}: {error}; retrying",
                self.digest,
                repo.name()
            );
            tokio::time::sleep(policy.delay(failures, None)).await;
            failures += 1;
            session = match &location {
                Some(location) => {
                    let status = repo.upload_status(&self.host, location).await?;
                    if status.is_none() {
                        self.restarts += 1;
                    }
                    status
                }
                None => None,
            };
            match &session {
                Some(s) => self.note_resume(s.offset),
                None => self.progress.reset(self.id, 0),
            }
        }
    }

    async fn forget(&self) -> Result<()> {
        if let Some(store) = &self.options.resume {
            let repo = self.repository;
            store
                .remove(repo.registry(), repo.name(), self.digest)
                .await?;
        }
        Ok(())
    }

    async fn save(&self, session: &Session) -> Result<()> {
        if let Some(store) = &self.options.resume {
            let repo = self.repository;
            store
                .save(&ResumeState {
                    registry: repo.registry().to_string(),
                    repository: repo.name().to_string(),
                    digest: self.digest.clone(),
                    size: self.size(),
                    location: session.location.to_string(),
                    offset: session.offset,
                })
                .await?;
        }
        Ok(())
    }

    async fn attempt(&mut self, session: Session) -> Result<(), Failure> {
        if session.offset == 0 && !self.chunked() {
            self.put_whole(session).await
        } else {
            self.put_chunks(session).await
        }
    }

    /// `url` with `digest=` added to its query (kept: registries put
    /// their state there).
    fn with_digest(&self, url: &Url) -> Url {
        let mut url = url.clone();
        url.query_pairs_mut()
            .append_pair("digest", &self.digest.to_string());
        url
    }

    /// One request carrying the whole blob to an open session.
    async fn put_whole(&mut self, session: Session) -> Result<(), Failure> {
        let url = self.with_digest(&session.location);
        let fail = Failure::at(&session.location);
        let response = self
            .send_range(Method::PUT, url, 0, self.size(), true)
            .await
            .map_err(fail)?;
        self.finished(&Method::PUT, response)
            .await
            .map_err(Failure::at(&session.location))
    }

    /// `POST ?digest=` with the whole blob: no session to resume, so a
    /// failure starts over. A registry without one-request uploads
    /// (Distribution 2.8) ignores the body and answers `202` with a
    /// session, which then gets the blob the usual way.
    async fn single_post(&mut self) -> Result<(), Failure> {
        let mut url = self.repository.url(&self.host, "blobs/uploads/");
        url.query_pairs_mut()
            .append_pair("digest", &self.digest.to_string());
        let no_session = |error| Failure {
            error,
            location: None,
            retried: false,
        };
        let response = self
            .send_range(Method::POST, url, 0, self.size(), true)
            .await
            .map_err(no_session)?;
        if response.status() == StatusCode::ACCEPTED {
            let location = upload_location(&response).map_err(no_session)?;
            self.progress.reset(self.id, 0);
            return self
                .put_whole(Session {
                    location,
                    offset: 0,
                })
                .await;
        }
        self.finished(&Method::POST, response)
            .await
            .map_err(no_session)
    }

    /// Checks the answer to the request that completes an upload.
    async fn finished(&self, method: &Method, response: reqwest::Response) -> Result<()> {
        let response = expect_status(method, response, &[StatusCode::CREATED]).await?;
        if let Some(reported) = content_digest(&response)
            && &reported != self.digest
        {
            return Err(ClientError::DigestMismatch {
                what: format!("blob committed to {}", self.repository.name()),
                expected: self.digest.clone(),
                actual: reported,
            });
        }
        Ok(())
    }

    /// A hasher holding the source's first `offset` bytes: from the last
    /// checkpoint when it is at or before `offset`, else from the start.
    async fn hasher_at(&mut self, offset: u64) -> Result<Hasher> {
        let (mut position, mut hasher) = match &self.checkpoint {
            Some((at, hasher)) if *at <= offset => (*at, hasher.clone()),
            _ => (0, Hasher::new(self.digest.algorithm())),
        };
        if position < offset {
            let mut stream = self
                .source
                .open(position, offset - position)
                .await
                .map_err(|e| self.source_io(e))?;
            while position < offset {
                let chunk = stream
                    .next()
                    .await
                    .ok_or_else(|| self.source_short(position))?
                    .map_err(|e| self.source_io(e))?;
                let take = (offset - position).min(chunk.len() as u64) as usize;
                hasher.update(&chunk[..take]);
                position += take as u64;
            }
        }
        Ok(hasher)
    }

    /// `PATCH` chunks from the session's offset, then the final `PUT`.
    async fn put_chunks(&mut self, mut session: Session) -> Result<(), Failure> {
        let size = self.size();
        if session.offset > size {
            return Err(Failure {
                error: ClientError::protocol(
                    &session.location,
                    format!(
                        "registry holds {} bytes of a {size}-byte blob",
                        session.offset
                    ),
                ),
                location: None,
                retried: false,
            });
        }
        let hasher = self
            .hasher_at(session.offset)
            .await
            .map_err(Failure::at(&session.location))?;
        self.checkpoint = Some((session.offset, hasher));
        self.save(&session)
            .await
            .map_err(Failure::at(&session.location))?;
        while session.offset < size {
            let start = session.offset;
            let len = (size - start).min(self.options.chunk_size.max(1));
            let response = self
                .send_range(Method::PATCH, session.location.clone(), start, len, false)
                .await
                .map_err(Failure::at(&session.location))?;
            let response = expect_status(
                &Method::PATCH,
                response,
                &[StatusCode::ACCEPTED, StatusCode::NO_CONTENT],
            )
            .await
            .map_err(Failure::at(&session.location))?;
            let location = match header_str(&response, "location") {
                Some(_) => upload_location(&response).map_err(Failure::at(&session.location))?,
                None => session.location.clone(),
            };
            let reported = match header_str(&response, "range") {
                Some(_) => upload_offset(&response).map_err(Failure::at(&location))?,
                None => start + len,
            };
            session = Session {
                location,
                offset: reported,
            };
            if reported != start + len {
                // The registry kept a different amount than sent: the
                // retry path asks again and rehashes to its offset.
                return Err(Failure {
                    error: ClientError::Registry {
                        method: Method::PATCH,
                        url: session.location.to_string(),
                        status: StatusCode::RANGE_NOT_SATISFIABLE,
                        errors: Vec::new(),
                    },
                    location: Some(session.location),
                    retried: false,
                });
            }
            self.save(&session)
                .await
                .map_err(Failure::at(&session.location))?;
        }
        let actual = self
            .checkpoint
            .take()
            .map(|(_, hasher)| hasher.finish())
            .expect("checkpoint set above");
        if &actual != self.digest {
            return Err(Failure {
                error: ClientError::SourceMismatch {
                    source_name: self.source.describe(),
                    expected: self.digest.clone(),
                    actual,
                },
                location: Some(session.location),
                retried: false,
            });
        }
        let url = self.with_digest(&session.location);
        let request = Request::new(Method::PUT, url, self.repository.push_scopes());
        let response = self
            .repository
            .client()
            .send(&self.host, request)
            .await
            .map_err(Failure::retried_at(&session.location))?;
        self.finished(&Method::PUT, response)
            .await
            .map_err(Failure::retried_at(&session.location))
    }

    /// Sends `len` bytes of the source from `start` as the body of one
    /// request. With `whole`, the body is the entire blob and its last
    /// piece is held back until the digest is verified. Without it, the
    /// chunk's bytes extend the checkpoint hash once the registry took them.
    async fn send_range(
        &mut self,
        method: Method,
        url: Url,
        start: u64,
        len: u64,
        whole: bool,
    ) -> Result<reqwest::Response> {
        let repo = self.repository;
        let mut request = Request::new(method, url, repo.push_scopes())
            .header(http::header::CONTENT_TYPE, "application/octet-stream")?
            .header(http::header::CONTENT_LENGTH, &len.to_string())?;
        if !whole && len > 0 {
            request = request.header(
                http::header::CONTENT_RANGE,
                &format!("{start}-{}", start + len - 1),
            )?;
        }
        repo.client()
            .prepare_auth(&self.host, &request.scopes)
            .await?;
        // The body is fed through a small channel by `produce`, which runs
        // in this task; the request owns only the receiving end.
        let (tx, rx) = mpsc::channel::<std::io::Result<Bytes>>(4);
        let body = reqwest::Body::wrap_stream(futures_util::stream::unfold(rx, |mut rx| async {
            rx.recv().await.map(|item| (item, rx))
        }));
        let checkpoint = match &self.checkpoint {
            Some((at, h)) if *at == start => Some(h.clone()),
            _ => None,
        };
        let mut hasher = match (whole, checkpoint) {
            (true, _) => Hasher::new(self.digest.algorithm()),
            (false, Some(h)) => h,
            (false, None) => self.hasher_at(start).await?,
        };
        let send = repo.client().send_streaming(&self.host, request, body);
        let produce = self.produce(start, len, whole, &mut hasher, tx);
        let (produced, response) = tokio::join!(produce, send);
        // A source failure explains a failed request better than the
        // transport error it caused.
        produced?;
        let response = response?;
        if !whole && response.status().is_success() {
            self.checkpoint = Some((start + len, hasher));
        }
        Ok(response)
    }

    /// Reads the source and feeds the request body. On a failure the body
    /// gets an error item, which makes hyper abort the request mid-body,
    /// so the registry never receives a complete one.
    async fn produce(
        &self,
        start: u64,
        len: u64,
        whole: bool,
        hasher: &mut Hasher,
        tx: mpsc::Sender<std::io::Result<Bytes>>,
    ) -> Result<()> {
        let result = self.feed_body(start, len, whole, hasher, &tx).await;
        if result.is_err() {
            let _ = tx
                .send(Err(std::io::Error::other("upload source failed")))
                .await;
        }
        result
    }

    async fn feed_body(
        &self,
        start: u64,
        len: u64,
        whole: bool,
        hasher: &mut Hasher,
        tx: &mpsc::Sender<std::io::Result<Bytes>>,
    ) -> Result<()> {
        let mut stream = self
            .source
            .open(start, len)
            .await
            .map_err(|e| self.source_io(e))?;
        let mut position = start;
        let end = start + len;
        let mut held: Option<Bytes> = None;
        while position < end {
            let chunk = stream
                .next()
                .await
                .ok_or_else(|| self.source_short(position))?
                .map_err(|e| self.source_io(e))?;
            let take = (end - position).min(chunk.len() as u64) as usize;
            let chunk = chunk.slice(..take);
            if chunk.is_empty() {
                continue;
            }
            hasher.update(&chunk);
            position += take as u64;
            let ready = if whole {
                held.replace(chunk)
            } else {
                Some(chunk)
            };
            if let Some(ready) = ready
                && !self.feed(tx, ready).await
            {
                return Ok(()); // the request ended early; its error says why
            }
        }
        if whole {
            let actual = hasher.clone().finish();
            if &actual != self.digest {
                return Err(ClientError::SourceMismatch {
                    source_name: self.source.describe(),
                    expected: self.digest.clone(),
                    actual,
                });
            }
            if let Some(last) = held {
                self.feed(tx, last).await;
            }
        }
        Ok(())
    }

    /// Hands one piece to the request; false if the request is gone.
    async fn feed(&self, tx: &mpsc::Sender<std::io::Result<Bytes>>, bytes: Bytes) -> bool {
        let n = bytes.len() as u64;
        if tx.send(Ok(bytes)).await.is_err() {
            return false;
        }
        self.bytes_sent.fetch_add(n, Ordering::Relaxed);
        self.progress.advance(self.id, n);
        true
    }

    fn source_io(&self, error: std::io::Error) -> ClientError {
        ClientError::SourceIo {
            source_name: self.source.describe(),
            error,
        }
    }

    fn source_short(&self, position: u64) -> ClientError {
        ClientError::SourceInvalid {
            source_name: self.source.describe(),
            reason: format!(
                "ends at byte {position}, but the blob has {} bytes",
                self.size()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_ranges() {
        assert_eq!(parse_upload_range("0-0"), Some(0));
        assert_eq!(parse_upload_range("0-99"), Some(100));
        assert_eq!(parse_upload_range("bytes=0-99"), Some(100));
        assert_eq!(parse_upload_range("5-99"), None);
        assert_eq!(parse_upload_range("garbage"), None);
    }
}
