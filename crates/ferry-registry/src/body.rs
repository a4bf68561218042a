//! Moving blob bytes between sockets and the store without holding a blob
//! in memory.
//!
//! Uploads: the request body's frames go through a small bounded channel
//! to a blocking thread that owns the [`ferry_store::UploadWriter`], so
//! receiving the next frame overlaps with hashing and writing this one,
//! and a slow disk pushes back on the client instead of filling memory.
//!
//! Downloads: a blocking thread reads the file in large chunks into a
//! bounded channel that becomes the response body.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use ferry_oci::Digest;
use ferry_store::{Store, StoreError};
use futures_util::StreamExt;
use http_body_util::BodyExt;
use tokio::sync::mpsc;

use crate::error::RegistryError;

/// Frames in flight between the socket and the writer thread.
const UPLOAD_QUEUE: usize = 8;
/// Read size for blob downloads, and chunks in flight per download.
const DOWNLOAD_CHUNK: usize = 256 * 1024;
const DOWNLOAD_QUEUE: usize = 2;
/// How long an upload body may send nothing before it is given up. A
/// client that vanished without closing its connection (a cut cable, a
/// killed VM) would otherwise hold its upload session busy for as long as
/// TCP takes to notice, and its own retry could not resume.
const BODY_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the rest of a refused upload's body is read before the error
/// is answered anyway (see [`drain`]).
const DRAIN_LIMIT: Duration = Duration::from_secs(30);

/// What to do with the upload once the body has been written.
pub enum Finish {
    /// Keep the session open (PATCH).
    Keep,
    /// Verify and commit as this digest (PUT, or POST with `digest`).
    Commit(Digest),
}

enum Frame {
    Data(Bytes),
    /// The body ended cleanly.
    End,
}

/// Appends `body` to upload `id` of `repo`, refusing it unless the upload
/// currently holds exactly `start` bytes (when given). Returns the
/// upload's new offset, or the committed blob's size.
pub async fn stream_into_upload(
    store: Store,
    repo: String,
    id: String,
    body: Body,
    start: Option<u64>,
    finish: Finish,
) -> Result<u64, RegistryError> {
    let (tx, mut rx) = mpsc::channel::<Frame>(UPLOAD_QUEUE);
    let worker = tokio::task::spawn_blocking(move || -> Result<u64, StoreError> {
        let mut writer = store.open_upload(&repo, &id)?;
        if let Some(start) = start
            && start != writer.offset()
        {
            return Err(StoreError::UploadOutOfOrder {
                expected: writer.offset(),
                given: start,
            });
        }
        let mut ended = false;
        while let Some(frame) = rx.blocking_recv() {
            match frame {
                Frame::Data(bytes) => writer.write(&bytes)?,
                Frame::End => ended = true,
            }
        }
        writer.flush()?;
        match finish {
            Finish::Keep => Ok(writer.offset()),
            // A body cut short is never committed; the bytes that did
            // arrive stay in the session for a resumed upload.
            Finish::Commit(_) if !ended => Err(StoreError::Io {
                path: "request body".into(),
                source: std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the request body ended early",
                ),
            }),
            Finish::Commit(digest) => writer.commit(&digest, None),
        }
    });

    let mut body = body.into_data_stream();
    let mut body_error = None;
    // One timer for the whole body, pushed back when it fires after data
    // has arrived, rather than one timer per frame.
    let idle = tokio::time::sleep(BODY_IDLE_TIMEOUT);
    tokio::pin!(idle);
    let mut last_data = tokio::time::Instant::now();
    loop {
        let next = tokio::select! {
            next = body.next() => next,
            () = &mut idle => {
                if last_data.elapsed() >= BODY_IDLE_TIMEOUT {
                    body_error = Some(format!(
                        "no data for {}s; the client is gone",
                        BODY_IDLE_TIMEOUT.as_secs()
                    ));
                    break;
                }
                idle.as_mut().reset(last_data + BODY_IDLE_TIMEOUT);
                continue;
            }
        };
        match next {
            Some(Ok(bytes)) => {
                last_data = tokio::time::Instant::now();
                if tx.send(Frame::Data(bytes)).await.is_err() {
                    // The writer stopped; its error is below, once the
                    // client can read it.
                    drain(&mut body).await;
                    break;
                }
            }
            Some(Err(e)) => {
                body_error = Some(e.to_string());
                break;
            }
            None => {
                let _ = tx.send(Frame::End).await;
                break;
            }
        }
    }
    drop(tx);
    let outcome = worker
        .await
        .map_err(|e| RegistryError::Internal(format!("upload task failed: {e}")))?;
    if let Some(e) = body_error {
        // The client went away or sent a malformed body: a client error.
        return Err(RegistryError::UploadInvalid(format!(
            "reading the request body failed: {e}"
        )));
    }
    Ok(outcome?)
}

/// Reads and discards the rest of a request body whose upload failed, for
/// up to [`DRAIN_LIMIT`], before the error is answered. Clients built on
/// Go's net/http (skopeo, podman) read the answer only once they have sent
/// the whole body: if the server closed the connection first, they would
/// see "broken pipe" instead of the reason (507 "the disk is full"). This
/// is nginx's "lingering close", done before answering.
async fn drain<S>(body: &mut S)
where
    S: futures_util::Stream<Item = Result<Bytes, axum::Error>> + Unpin,
{
    let _ = tokio::time::timeout(DRAIN_LIMIT, async {
        while let Some(Ok(_)) = body.next().await {}
    })
    .await;
}

/// Reads a whole (small) body, refusing more than `limit` bytes.
pub async fn read_limited(body: Body, limit: u64) -> Result<Bytes, RegistryError> {
    let limited = http_body_util::Limited::new(body, limit as usize);
    match limited.collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            Err(RegistryError::Store(StoreError::ManifestTooLarge {
                size: limit + 1,
                limit,
            }))
        }
        Err(e) => Err(RegistryError::BadRequest(format!(
            "reading the request body failed: {e}"
        ))),
    }
}

/// A response body streaming `len` bytes of `file` from `start`.
pub fn file_body(mut file: File, start: u64, len: u64) -> Body {
    let (tx, mut rx) = mpsc::channel::<std::io::Result<Bytes>>(DOWNLOAD_QUEUE);
    tokio::task::spawn_blocking(move || {
        if let Err(e) = file.seek(SeekFrom::Start(start)) {
            let _ = tx.blocking_send(Err(e));
            return;
        }
        let mut remaining = len;
        while remaining > 0 {
            let want = remaining.min(DOWNLOAD_CHUNK as u64);
            // read_to_end fills spare capacity without zeroing it first.
            let mut buf = Vec::with_capacity(want as usize);
            let message = match (&mut file).take(want).read_to_end(&mut buf) {
                Ok(0) => Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "blob file is shorter than its recorded size",
                )),
                Ok(n) => {
                    remaining -= n as u64;
                    Ok(Bytes::from(buf))
                }
                Err(e) => Err(e),
            };
            let failed = message.is_err();
            if tx.blocking_send(message).is_err() || failed {
                return; // the client went away, or the read failed
            }
        }
    });
    let stream = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
    Body::from_stream(stream)
}
