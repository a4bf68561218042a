//! Plain HTTP(S) downloads (files, chart repositories, charts), streamed
//! into the cache.
//!
//! - Content with a known sha256 that the cache has is not requested.
//! - Otherwise the last download's `ETag` / `Last-Modified` (a cache memo)
//!   go out as `If-None-Match` / `If-Modified-Since` (RFC 9110 13.1); a
//!   `304` reuses the cached content.
//! - A body cut short is resumed with `Range: bytes=N-` and `If-Range`
//!   (RFC 9110 14.2, 13.1.5); a server that answers `200` to that has its
//!   first N bytes skipped.
//! - With a `sha256`, the download also survives the process: it goes into
//!   a cache session named after the digest ([`ContentCache::download`]),
//!   and the next run asks only for the rest. Kept bytes that turn out
//!   wrong (the file changed upstream) fail the digest; the download then
//!   starts over once.
//! - TLS is ferry-client's rustls set-up: the system roots plus a host's
//!   CA file, or no verification for a host marked insecure. Basic auth is
//!   sent to the configured host only (reqwest drops it on redirects to
//!   other hosts).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use ferry_oci::Digest;
use ferry_oci::progress::Progress;
use ferry_store::StoreError;
use reqwest::StatusCode;
use reqwest::header;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;

use crate::cache::{BlobPipe, CacheError, ContentCache, Download};
use crate::sources::SourceError;

const MEMO_KIND: &str = "url";
const MAX_ATTEMPTS: u32 = 6;

/// How to reach one HTTP host.
#[derive(Debug, Clone, Default)]
pub struct HttpHost {
    pub insecure: bool,
    pub ca_files: Vec<PathBuf>,
    /// Basic auth: user and password.
    pub basic: Option<(String, String)>,
}

/// The validators of a URL's last download.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct UrlMemo {
    etag: Option<String>,
    last_modified: Option<String>,
    digest: Digest,
    size: u64,
}

/// Downloads into the cache; one per bundle creation.
pub struct HttpSource {
    hosts: HashMap<String, HttpHost>,
    clients: Mutex<HashMap<String, reqwest::Client>>,
    retry_delay: Duration,
}

/// What a download did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fetched {
    /// Known sha256 already in the cache: no request.
    Cached,
    /// `304 Not Modified`.
    NotModified,
    Downloaded,
}

impl HttpSource {
    pub fn new(hosts: HashMap<String, HttpHost>) -> HttpSource {
        HttpSource {
            hosts,
            clients: Mutex::new(HashMap::new()),
            retry_delay: Duration::from_millis(500),
        }
    }

    fn host_key(url: &url::Url) -> String {
        let host = url.host_str().unwrap_or_default();
        match url.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.to_string(),
        }
    }

    fn client(&self, url: &url::Url) -> Result<(reqwest::Client, HttpHost), SourceError> {
        let key = Self::host_key(url);
        let host = self.hosts.get(&key).cloned().unwrap_or_default();
        let mut clients = self.clients.lock().expect("http clients lock");
        if let Some(c) = clients.get(&key) {
            return Ok((c.clone(), host));
        }
        let tls = if host.insecure {
            ferry_client::tls::insecure_config()
        } else {
            ferry_client::tls::verifying_config(&host.ca_files)
        }
        .map_err(|e| SourceError::Http {
            url: url.to_string(),
            message: e.to_string(),
        })?;
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .user_agent(format!("ferry/{}", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(30))
            .read_timeout(Duration::from_secs(300))
            .build()
            .map_err(|e| SourceError::Http {
                url: url.to_string(),
                message: format!("building the HTTP client: {e}"),
            })?;
        clients.insert(key, client.clone());
        Ok((client, host))
    }

    /// Downloads `url` into the cache (see the module documentation);
    /// with `expected`, the content must have that sha256.
    pub async fn fetch(
        &self,
        url: &str,
        expected: Option<&Digest>,
        cache: &ContentCache,
        progress: &dyn Progress,
    ) -> Result<(Digest, u64, Fetched), SourceError> {
        if let Some(digest) = expected
            && let Some(size) = cache.size(digest)?
        {
            return Ok((digest.clone(), size, Fetched::Cached));
        }
        let parsed = url::Url::parse(url).map_err(|e| SourceError::Http {
            url: url.to_string(),
            message: e.to_string(),
        })?;
        let (client, host) = self.client(&parsed)?;
        let memo = cache
            .memo::<UrlMemo>(MEMO_KIND, url)
            .filter(|m| expected.is_none_or(|d| d == &m.digest))
            .filter(|m| matches!(cache.size(&m.digest), Ok(Some(s)) if s == m.size));
        let http_err = |message: String| SourceError::Http {
            url: url.to_string(),
            message,
        };

        let mut sink = match expected {
            Some(digest) => Sink::Named(Box::new(cache.download(digest, None).await?)),
            None => Sink::Plain(cache.put_stream()),
        };
        let resumed_at = sink.resumed();
        let mut received = resumed_at;
        let mut total: Option<u64> = None;
        let mut validator: Option<(Option<String>, Option<String>)> = None;
        let mut attempt = 0;
        let id = url.to_string();
        let mut started = false;
        // Ok(None): not modified; Ok(Some(validators)): downloaded.
        type Validators = (Option<String>, Option<String>);
        let outcome: Result<Option<Validators>, SourceError> = 'download: loop {
            let mut request = client.get(parsed.clone());
            if let Some((user, password)) = &host.basic {
                request = request.basic_auth(user, Some(password));
            }
            if received > 0 {
                request = request.header(header::RANGE, format!("bytes={received}-"));
                if let Some((etag, modified)) = &validator
                    && let Some(v) = etag.as_ref().or(modified.as_ref())
                {
                    request = request.header(header::IF_RANGE, v);
                }
            } else if let Some(m) = &memo {
                if let Some(etag) = &m.etag {
                    request = request.header(header::IF_NONE_MATCH, etag);
                }
                if let Some(modified) = &m.last_modified {
                    request = request.header(header::IF_MODIFIED_SINCE, modified);
                }
            }
            let retry = |attempt: &mut u32, why: String| -> Result<(), SourceError> {
                *attempt += 1;
                if *attempt >= MAX_ATTEMPTS {
                    return Err(http_err(format!(
                        "{why} (gave up after {attempt} attempts)"
                    )));
                }
                tracing::debug!("{url}: {why}; retrying");
                Ok(())
            };
            let response = match request.send().await {
                Ok(r) => r,
                Err(e) => {
                    if let Err(e) = retry(&mut attempt, error_chain(&e)) {
                        break 'download Err(e);
                    }
                    tokio::time::sleep(self.retry_delay * 2u32.pow(attempt - 1)).await;
                    continue;
                }
            };
            let status = response.status();
            let mut skip = 0;
            match status {
                StatusCode::NOT_MODIFIED if received == 0 && memo.is_some() => {
                    break 'download Ok(None);
                }
                StatusCode::OK => skip = received,
                StatusCode::PARTIAL_CONTENT if received > 0 => {
                    let start = response
                        .headers()
                        .get(header::CONTENT_RANGE)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.strip_prefix("bytes "))
                        .and_then(|v| v.split('-').next())
                        .and_then(|v| v.parse::<u64>().ok());
                    if start != Some(received) {
                        break 'download Err(http_err(format!(
                            "asked to resume at byte {received}, the server answered from {start:?}"
                        )));
                    }
                }
                s if s.is_server_error() || s == StatusCode::TOO_MANY_REQUESTS => {
                    if let Err(e) = retry(&mut attempt, format!("server answered {s}")) {
                        break 'download Err(e);
                    }
                    tokio::time::sleep(self.retry_delay * 2u32.pow(attempt - 1)).await;
                    continue;
                }
                s => {
                    let hint = match s {
                        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                            " (credentials: set username and password_env for this host under `hosts` in the spec)"
                        }
                        StatusCode::NOT_FOUND => " (check the URL)",
                        _ => "",
                    };
                    break 'download Err(http_err(format!("server answered {s}{hint}")));
                }
            }
            if validator.is_none() {
                let get = |h: header::HeaderName| {
                    response
                        .headers()
                        .get(h)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string)
                };
                validator = Some((get(header::ETAG), get(header::LAST_MODIFIED)));
                // A 206 carries what is left after `received`.
                total = response.content_length().map(|len| {
                    if status == StatusCode::PARTIAL_CONTENT {
                        received + len
                    } else {
                        len
                    }
                });
            }
            if !started {
                progress.start(&id, &short_url(&parsed), total);
                progress.advance(&id, resumed_at);
                started = true;
            }
            let mut response = response;
            let mut cut = None;
            loop {
                match response.chunk().await {
                    Ok(Some(mut chunk)) => {
                        if skip > 0 {
                            let n = skip.min(chunk.len() as u64);
                            skip -= n;
                            chunk = chunk.slice(n as usize..);
                        }
                        if chunk.is_empty() {
                            continue;
                        }
                        if let Err(e) = sink.writer().write_all(&chunk).await {
                            break 'download Err(http_err(format!("storing the download: {e}")));
                        }
                        received += chunk.len() as u64;
                        progress.advance(&id, chunk.len() as u64);
                    }
                    Ok(None) => break,
                    Err(e) => {
                        cut = Some(error_chain(&e));
                        break;
                    }
                }
            }
            if cut.is_none() && total.is_some_and(|t| received < t) {
                cut = Some(format!(
                    "the body ended after {received} of {total:?} bytes"
                ));
            }
            if let Some(why) = cut {
                if let Err(e) = retry(&mut attempt, why) {
                    break 'download Err(e);
                }
                tokio::time::sleep(self.retry_delay * 2u32.pow(attempt - 1)).await;
                continue;
            }
            break 'download Ok(Some(validator.clone().unwrap_or_default()));
        };
        if started {
            progress.finish(
                &id,
                if outcome.is_ok() {
                    "downloaded"
                } else {
                    "failed"
                },
            );
        }
        match outcome {
            Ok(None) => {
                let _ = sink.abort(false).await;
                let m = memo.expect("304 only with a memo");
                Ok((m.digest, m.size, Fetched::NotModified))
            }
            Ok(Some((etag, last_modified))) => {
                let stored = sink.finish().await;
                if resumed_at > 0
                    && matches!(
                        stored,
                        Err(CacheError::Store(
                            StoreError::DigestMismatch { .. } | StoreError::SizeMismatch { .. }
                        ))
                    )
                {
                    // The kept bytes belong to an older file: the session is
                    // gone with the mismatch, so this starts from byte 0.
                    tracing::warn!("{url}: resumed download did not verify; downloading it again");
                    return Box::pin(self.fetch(url, expected, cache, progress)).await;
                }
                let (digest, size) = stored.map_err(|e| match e {
                    CacheError::Store(StoreError::DigestMismatch { expected, actual }) => {
                        SourceError::Checksum {
                            what: url.to_string(),
                            expected,
                            actual,
                        }
                    }
                    e => e.into(),
                })?;
                if etag.is_some() || last_modified.is_some() {
                    let memo = UrlMemo {
                        etag,
                        last_modified,
                        digest: digest.clone(),
                        size,
                    };
                    cache.set_memo(MEMO_KIND, url, &memo);
                }
                Ok((digest, size, Fetched::Downloaded))
            }
            Err(e) => {
                // What arrived is kept for the next run when it can find it.
                let _ = sink.abort(true).await;
                Err(e)
            }
        }
    }
}

/// Where a download goes: with a known digest, a cache session named after
/// it that a later run resumes; without, a plain pipe into the cache.
enum Sink {
    /// Boxed: it holds a hash state, far larger than a pipe.
    Named(Box<Download>),
    Plain(BlobPipe),
}

impl Sink {
    /// Bytes an earlier run left.
    fn resumed(&self) -> u64 {
        match self {
            Sink::Named(d) => d.resumed.bytes(),
            Sink::Plain(_) => 0,
        }
    }

    fn writer(&mut self) -> &mut tokio::io::DuplexStream {
        match self {
            Sink::Named(d) => &mut d.writer,
            Sink::Plain(p) => &mut p.writer,
        }
    }

    async fn finish(self) -> Result<(Digest, u64), CacheError> {
        match self {
            Sink::Named(d) => d.finish().await,
            Sink::Plain(p) => p.finish().await,
        }
    }

    /// Gives up; `keep` keeps a named session's bytes for the next run.
    async fn abort(self, keep: bool) -> Result<(Digest, u64), CacheError> {
        match self {
            Sink::Named(d) if keep => d.keep().await,
            Sink::Named(d) => d.discard().await,
            Sink::Plain(p) => p.abort().await,
        }
    }
}

/// The last path component of a URL, for progress labels.
pub fn short_url(url: &url::Url) -> String {
    url.path_segments()
        .and_then(|mut s| s.next_back().map(str::to_string))
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| url.to_string())
}

/// reqwest's message plus its causes ("error sending request" alone does
/// not say that the connection was refused).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}
