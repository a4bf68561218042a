//! Serving one artifact over HTTP: HEAD, a single byte range, validators,
//! and a body streamed from disk in fixed-size chunks.
//!
//! Written here rather than with tower-http's `ServeFile` because an
//! artifact is not a file: it is ranges of an ISO image or a store blob
//! (see [`crate::artifact`]). The rules are RFC 9110's:
//! - `ETag` (strong) and `Last-Modified` on every response (§8.8);
//! - `If-None-Match`, else `If-Modified-Since`, answer 304 (§13.1.2,
//!   §13.1.3); `If-Match` that fails answers 412 (§13.1.1);
//! - one `Range: bytes=` spec gets 206 with `Content-Range` (§14.2); a
//!   reversed range or one that starts past the end gets 416 with
//!   `bytes */size`; several ranges or a malformed header are ignored
//!   (200, whole file), which §14.2 allows ([`parse_range`]); `If-Range`
//!   that does not match also means 200 (§13.1.5).
//!
//! Memory per response is a few chunks in flight ([`CHUNK`] each, at most
//! [`READ_AHEAD`] queued) whatever the file size: a blocking thread reads
//! ahead of the socket, and waits when hyper has not taken the last ones.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::sync::Arc;
use std::time::SystemTime;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use http_range_header::{EndPosition, RangeUnsatisfiableError, StartPosition};

use crate::artifact::ServedFile;

/// Bytes read per step.
pub const CHUNK: usize = 256 * 1024;

/// A byte range, inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    pub start: u64,
    pub end: u64,
}

/// What a `Range` header asks of a file of `size` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeRequest {
    Whole,
    Partial(ByteRange),
    Unsatisfiable,
}

/// Parses `Range` (RFC 9110 §14.1.2) for a file of `size` bytes with the
/// `http-range-header` crate (what tower-http uses), under the rules the
/// registry's blob GETs follow too (ferry-registry's `range::answer`):
/// one range is served, a suffix longer than the file being the whole
/// file; a reversed range (§14.1.1), a zero-length suffix or a start past
/// the end is unsatisfiable (416); several ranges or a header that does
/// not parse mean the whole file (§14.2 lets a server ignore them).
pub fn parse_range(value: &str, size: u64) -> RangeRequest {
    let value = value.trim();
    // The unit is case-insensitive (§14.1); the crate wants `bytes=`.
    let value = match value.get(..6) {
        Some(unit) if unit.eq_ignore_ascii_case("bytes=") => format!("bytes={}", &value[6..]),
        _ => return RangeRequest::Whole,
    };
    let range = match http_range_header::parse_range_header(&value) {
        Ok(parsed) => match parsed.ranges.as_slice() {
            [one] => *one,
            _ => return RangeRequest::Whole,
        },
        Err(RangeUnsatisfiableError::ZeroSuffix) => return RangeRequest::Unsatisfiable,
        Err(_) => return RangeRequest::Whole,
    };
    let (start, end) = match (range.start, range.end) {
        (StartPosition::FromLast(n), _) => (size.saturating_sub(n), u64::MAX),
        (StartPosition::Index(first), EndPosition::LastByte) => (first, u64::MAX),
        (StartPosition::Index(first), EndPosition::Index(last)) if last < first => {
            return RangeRequest::Unsatisfiable;
        }
        (StartPosition::Index(first), EndPosition::Index(last)) => (first, last),
    };
    if start >= size {
        return RangeRequest::Unsatisfiable;
    }
    RangeRequest::Partial(ByteRange {
        start,
        end: end.min(size - 1),
    })
}

/// The response for `method` on `served`, whose backing `file` is open.
pub fn respond(method: &Method, headers: &HeaderMap, served: ServedFile, file: File) -> Response {
    let size = served.size;
    let etag = served.etag.clone();
    let modified = httpdate::fmt_http_date(served.modified);
    let mut out = HeaderMap::new();
    out.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        out.insert(header::ETAG, v);
    }
    if let Ok(v) = HeaderValue::from_str(&modified) {
        out.insert(header::LAST_MODIFIED, v);
    }

    let header_str = |name| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    if let Some(if_match) = header_str(header::IF_MATCH)
        && !etag_list_matches(if_match, &etag, false)
    {
        return (StatusCode::PRECONDITION_FAILED, out).into_response();
    }
    let not_modified = match header_str(header::IF_NONE_MATCH) {
        Some(list) => etag_list_matches(list, &etag, true),
        None => header_str(header::IF_MODIFIED_SINCE)
            .and_then(|d| httpdate::parse_http_date(d).ok())
            .is_some_and(|since| !newer_than(served.modified, since)),
    };
    if not_modified {
        return (StatusCode::NOT_MODIFIED, out).into_response();
    }

    let mut range = match header_str(header::RANGE) {
        Some(value) => parse_range(value, size),
        None => RangeRequest::Whole,
    };
    if let Some(if_range) = header_str(header::IF_RANGE) {
        let matches = if if_range.trim_start().starts_with('"') {
            if_range.trim() == etag
        } else {
            httpdate::parse_http_date(if_range).is_ok_and(|d| !newer_than(served.modified, d))
        };
        if !matches {
            range = RangeRequest::Whole;
        }
    }
    out.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    let (status, start, len) = match range {
        RangeRequest::Whole => (StatusCode::OK, 0, size),
        RangeRequest::Partial(r) => {
            let value = format!("bytes {}-{}/{size}", r.start, r.end);
            out.insert(
                header::CONTENT_RANGE,
                HeaderValue::from_str(&value).expect("ascii"),
            );
            (StatusCode::PARTIAL_CONTENT, r.start, r.end - r.start + 1)
        }
        RangeRequest::Unsatisfiable => {
            out.insert(
                header::CONTENT_RANGE,
                HeaderValue::from_str(&format!("bytes */{size}")).expect("ascii"),
            );
            return (StatusCode::RANGE_NOT_SATISFIABLE, out).into_response();
        }
    };
    out.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    let body = if method == Method::HEAD || len == 0 {
        Body::empty()
    } else {
        stream_body(Reader {
            file,
            served: Arc::new(served),
            pos: start,
            end: start + len,
            file_pos: None,
        })
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    *response.headers_mut() = out;
    response
}

/// `If-None-Match` / `If-Match` list against our etag (weak comparison
/// for the former, strong for the latter; ours are strong).
fn etag_list_matches(list: &str, etag: &str, weak: bool) -> bool {
    list.split(',')
        .map(str::trim)
        .any(|tag| tag == "*" || tag == etag || (weak && tag.strip_prefix("W/") == Some(etag)))
}

/// HTTP dates have second precision.
fn newer_than(modified: SystemTime, since: SystemTime) -> bool {
    let secs = |t: SystemTime| {
        t.duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    };
    secs(modified) > secs(since)
}

/// Reads the artifact's bytes `pos..end` in chunks.
struct Reader {
    file: File,
    served: Arc<ServedFile>,
    pos: u64,
    end: u64,
    /// The OS file offset, if known (saves a seek per chunk).
    file_pos: Option<u64>,
}

impl Reader {
    fn next_chunk(&mut self) -> io::Result<Bytes> {
        let (backing, in_segment) = self.served.locate(self.pos).ok_or_else(|| {
            io::Error::new(io::ErrorKind::UnexpectedEof, "range past the artifact")
        })?;
        let n = (CHUNK as u64).min(in_segment).min(self.end - self.pos) as usize;
        let chunk = match backing {
            None => Bytes::from(vec![0u8; n]),
            Some(offset) => {
                if self.file_pos != Some(offset) {
                    self.file.seek(SeekFrom::Start(offset))?;
                }
                // read_to_end fills spare capacity without zeroing it first
                let mut buf = Vec::with_capacity(n);
                (&mut self.file).take(n as u64).read_to_end(&mut buf)?;
                if buf.len() != n {
                    self.file_pos = None;
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("{} is shorter than its index says", self.served.origin),
                    ));
                }
                self.file_pos = Some(offset + n as u64);
                Bytes::from(buf)
            }
        };
        self.pos += n as u64;
        Ok(chunk)
    }
}

/// Chunks read ahead of the socket per response: reading the next chunk
/// overlaps with sending this one, and memory stays bounded.
const READ_AHEAD: usize = 2;

/// A body fed by one blocking thread per response that reads ahead of hyper
/// through a bounded channel (one thread hop per response, not per chunk).
fn stream_body(mut reader: Reader) -> Body {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<io::Result<Bytes>>(READ_AHEAD);
    tokio::task::spawn_blocking(move || {
        while reader.pos < reader.end {
            let chunk = reader.next_chunk().inspect_err(|e| {
                tracing::error!("reading {} failed mid-response: {e}", reader.served.origin);
            });
            let failed = chunk.is_err();
            if tx.blocking_send(chunk).is_err() || failed {
                return; // the client went away, or the read failed
            }
        }
    });
    Body::from_stream(futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partial(start: u64, end: u64) -> RangeRequest {
        RangeRequest::Partial(ByteRange { start, end })
    }

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-99", 1000), partial(0, 99));
        assert_eq!(parse_range("bytes=900-", 1000), partial(900, 999));
        assert_eq!(parse_range("bytes=900-5000", 1000), partial(900, 999));
        assert_eq!(parse_range("bytes=-100", 1000), partial(900, 999));
        assert_eq!(parse_range("bytes=-5000", 1000), partial(0, 999));
        assert_eq!(parse_range("BYTES=1-1", 1000), partial(1, 1));
        for unsatisfiable in ["bytes=1000-", "bytes=-0", "bytes=5-1"] {
            assert_eq!(
                parse_range(unsatisfiable, 1000),
                RangeRequest::Unsatisfiable,
                "{unsatisfiable}"
            );
        }
        assert_eq!(parse_range("bytes=0-", 0), RangeRequest::Unsatisfiable);
        assert_eq!(parse_range("bytes=-5", 0), RangeRequest::Unsatisfiable);
        for ignored in [
            "bytes=0-1,5-6",
            "items=0-1",
            "bytes=a-b",
            "bytes",
            "bytes=-",
            "bytes=+1-2",
            "bytes = 1-1",
        ] {
            assert_eq!(parse_range(ignored, 1000), RangeRequest::Whole, "{ignored}");
        }
        // too large for u64: not a range we can parse, so the whole file
        assert_eq!(
            parse_range("bytes=0-99999999999999999999999", 10),
            RangeRequest::Whole
        );
    }
}
