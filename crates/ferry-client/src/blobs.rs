//! Blob reads: `HEAD` (does it exist, how big) and a verified, resuming
//! download (distribution-spec "Pulling blobs").
//!
//! [`BlobReader`] hashes every byte it hands out and checks size and
//! digest when the blob ends: the last call to [`BlobReader::chunk`]
//! returns `Ok(None)` only if the content is right. Callers therefore keep
//! what they receive provisional (a temporary file) until then. A body cut
//! short (reset, truncation) is resumed with `Range: bytes=N-` from the
//! next byte, up to the client's retry limit; a server that ignores the
//! range and answers 200 has its first N bytes skipped.

use std::sync::Arc;

use bytes::Bytes;
use ferry_oci::progress::Progress;
use ferry_oci::{Descriptor, Digest, Hasher};
use futures_util::Stream;
use http::{Method, StatusCode};
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::client::{Host, Request};
use crate::error::{ClientError, Result};
use crate::repository::{Repository, expect_status, header_str};

impl Repository {
    /// `HEAD` of a blob: its size if the repository has it, `None` if not.
    pub async fn blob_exists(&self, digest: &Digest) -> Result<Option<u64>> {
        let host = self.host().await?;
        let url = self.url(&host, &format!("blobs/{digest}"));
        let response = self
            .client()
            .send(&host, Request::new(Method::HEAD, url, self.pull_scopes()))
            .await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let response = expect_status(&Method::HEAD, response, &[StatusCode::OK]).await?;
        Ok(Some(
            header_str(&response, "content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
        ))
    }

    /// Starts a verified download of a blob. `size` is checked if given.
    pub async fn get_blob(&self, digest: &Digest, size: Option<u64>) -> Result<BlobReader> {
        self.get_blob_from(digest, size, Hasher::new(digest.algorithm()))
            .await
    }

    /// Continues a download whose first `hasher.bytes()` bytes the caller
    /// already has (and hashed into `hasher`), e.g. a partial file.
    pub async fn get_blob_from(
        &self,
        digest: &Digest,
        size: Option<u64>,
        hasher: Hasher,
    ) -> Result<BlobReader> {
        if hasher.algorithm() != digest.algorithm() {
            return Err(ClientError::InvalidArgument(format!(
                "hasher is {} but the digest is {digest}",
                hasher.algorithm()
            )));
        }
        let host = self.host().await?;
        let mut reader = BlobReader {
            repository: self.clone(),
            host,
            digest: digest.clone(),
            size,
            offset: hasher.bytes(),
            hasher: Some(hasher),
            response: None,
            skip: 0,
            retries: 0,
        };
        reader.open().await?;
        Ok(reader)
    }

    /// Downloads a blob into `writer`, verified, reporting progress under
    /// the digest as task id. Returns the number of bytes written. The
    /// writer has received unverified data if this fails.
    pub async fn fetch_blob<W: AsyncWrite + Unpin>(
        &self,
        descriptor: &Descriptor,
        writer: &mut W,
        progress: &dyn Progress,
    ) -> Result<u64> {
        let fresh = Hasher::new(descriptor.digest.algorithm());
        self.fetch_blob_after(descriptor, fresh, writer, progress)
            .await
    }

    /// [`Repository::fetch_blob`] for a download whose first
    /// `hasher.bytes()` bytes the caller already holds (hashed into
    /// `hasher`): only the rest is requested and written. Returns the
    /// number of bytes written by this call.
    pub async fn fetch_blob_after<W: AsyncWrite + Unpin>(
        &self,
        descriptor: &Descriptor,
        hasher: Hasher,
        writer: &mut W,
        progress: &dyn Progress,
    ) -> Result<u64> {
        let id = descriptor.digest.to_string();
        progress.start(&id, &descriptor.digest.short(), Some(descriptor.size));
        progress.advance(&id, hasher.bytes());
        let result = async {
            let mut reader = self
                .get_blob_from(&descriptor.digest, Some(descriptor.size), hasher)
                .await?;
            let mut written = 0u64;
            while let Some(chunk) = reader.chunk().await? {
                writer
                    .write_all(&chunk)
                    .await
                    .map_err(|error| ClientError::Io {
                        path: "(download destination)".into(),
                        error,
                    })?;
                written += chunk.len() as u64;
                progress.advance(&id, chunk.len() as u64);
            }
            writer.flush().await.map_err(|error| ClientError::Io {
                path: "(download destination)".into(),
                error,
            })?;
            Ok(written)
        }
        .await;
        progress.finish(&id, if result.is_ok() { "pulled" } else { "failed" });
        result
    }
}

/// A blob being downloaded; see the module documentation.
pub struct BlobReader {
    repository: Repository,
    host: Arc<Host>,
    digest: Digest,
    size: Option<u64>,
    /// Bytes handed out so far (including any the caller had before).
    offset: u64,
    /// `None` once verified.
    hasher: Option<Hasher>,
    response: Option<reqwest::Response>,
    /// Bytes to drop from the current response (server ignored `Range`).
    skip: u64,
    retries: u32,
}

impl BlobReader {
    /// The blob's size, once known (given, or from the response).
    pub fn size(&self) -> Option<u64> {
        self.size
    }

    /// Bytes received so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    fn what(&self) -> String {
        format!(
            "blob {} of {}/{}",
            self.digest,
            self.repository.registry(),
            self.repository.name()
        )
    }

    /// Issues the GET for the bytes from `offset` on.
    async fn open(&mut self) -> Result<()> {
        self.response = None;
        if self.size == Some(self.offset) && self.offset > 0 {
            return Ok(()); // complete already; `chunk` verifies
        }
        let url = self
            .repository
            .url(&self.host, &format!("blobs/{}", self.digest));
        let mut request = Request::new(Method::GET, url, self.repository.pull_scopes());
        if self.offset > 0 {
            request = request.header(http::header::RANGE, &format!("bytes={}-", self.offset))?;
        }
        let response = self.repository.client().send(&self.host, request).await?;
        let response = expect_status(
            &Method::GET,
            response,
            &[StatusCode::OK, StatusCode::PARTIAL_CONTENT],
        )
        .await?;
        let total = if response.status() == StatusCode::PARTIAL_CONTENT {
            let range = header_str(&response, "content-range")
                .and_then(parse_content_range)
                .ok_or_else(|| {
                    ClientError::protocol(response.url(), "206 without a usable Content-Range")
                })?;
            if range.0 != self.offset {
                return Err(ClientError::protocol(
                    response.url(),
                    format!("asked for bytes from {}, got from {}", self.offset, range.0),
                ));
            }
            self.skip = 0;
            range.1
        } else {
            self.skip = self.offset;
            response.content_length()
        };
        match (self.size, total) {
            (Some(expected), Some(actual)) if expected != actual => {
                return Err(ClientError::SizeMismatch {
                    what: self.what(),
                    expected,
                    actual,
                });
            }
            (None, Some(actual)) => self.size = Some(actual),
            _ => {}
        }
        self.response = Some(response);
        Ok(())
    }

    /// After a failed or short response: resume if retries remain.
    async fn resume_after(&mut self, error: ClientError) -> Result<()> {
        let policy = &self.repository.client().options().retry;
        if self.retries >= policy.max_retries {
            return Err(error);
        }
        tracing::debug!("{}: {error}; resuming at {}", self.what(), self.offset);
        tokio::time::sleep(policy.delay(self.retries, None)).await;
        self.retries += 1;
        self.open().await
    }

    /// The next piece of the blob; `Ok(None)` at the verified end.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>> {
        loop {
            let Some(hasher) = self.hasher.as_mut() else {
                return Ok(None);
            };
            let Some(response) = self.response.as_mut() else {
                // Complete before any request (resumed at the end).
                return self.verify().map(|()| None);
            };
            match response.chunk().await {
                Ok(Some(mut bytes)) => {
                    if self.skip > 0 {
                        let n = self.skip.min(bytes.len() as u64);
                        self.skip -= n;
                        bytes = bytes.slice(n as usize..);
                        if bytes.is_empty() {
                            continue;
                        }
                    }
                    let end = self.offset + bytes.len() as u64;
                    if let Some(size) = self.size
                        && end > size
                    {
                        return Err(ClientError::SizeMismatch {
                            what: self.what(),
                            expected: size,
                            actual: end,
                        });
                    }
                    hasher.update(&bytes);
                    self.offset = end;
                    return Ok(Some(bytes));
                }
                Ok(None) => {
                    if let Some(size) = self.size
                        && self.offset < size
                    {
                        let error = ClientError::SizeMismatch {
                            what: self.what(),
                            expected: size,
                            actual: self.offset,
                        };
                        self.resume_after(error).await?;
                        continue;
                    }
                    self.response = None;
                    return self.verify().map(|()| None);
                }
                Err(e) => {
                    let url = response.url().to_string();
                    let error = ClientError::transport(&Method::GET, &url, e);
                    self.resume_after(error).await?;
                }
            }
        }
    }

    fn verify(&mut self) -> Result<()> {
        let Some(hasher) = self.hasher.take() else {
            return Ok(());
        };
        let actual = hasher.finish();
        if actual != self.digest {
            return Err(ClientError::DigestMismatch {
                what: self.what(),
                expected: self.digest.clone(),
                actual,
            });
        }
        Ok(())
    }

    /// The blob as a stream of chunks; the last item is an error if the
    /// content does not verify.
    pub fn into_stream(self) -> impl Stream<Item = Result<Bytes>> + Send {
        futures_util::stream::unfold(Some(self), |state| async move {
            let mut reader = state?;
            match reader.chunk().await {
                Ok(Some(bytes)) => Some((Ok(bytes), Some(reader))),
                Ok(None) => None,
                Err(e) => Some((Err(e), None)),
            }
        })
    }
}

/// `bytes START-END/TOTAL` → (START, Some(TOTAL)) (`*` total → None).
fn parse_content_range(value: &str) -> Option<(u64, Option<u64>)> {
    let rest = value.trim().strip_prefix("bytes")?.trim_start();
    let (range, total) = rest.split_once('/')?;
    let (start, _end) = range.split_once('-')?;
    let total = match total.trim() {
        "*" => None,
        t => Some(t.parse().ok()?),
    };
    Some((start.trim().parse().ok()?, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range() {
        assert_eq!(
            parse_content_range("bytes 10-99/100"),
            Some((10, Some(100)))
        );
        assert_eq!(parse_content_range("bytes 0-0/*"), Some((0, None)));
        assert_eq!(parse_content_range("10-99/100"), None);
        assert_eq!(parse_content_range("bytes x-1/2"), None);
    }
}
