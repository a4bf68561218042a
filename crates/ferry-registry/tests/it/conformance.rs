//! The OCI distribution-spec conformance suite
//! (opencontainers/distribution-spec, `conformance/`), replayed in process
//! against the Router, check by check and in the suite's order, with the
//! suite's expectations (where it accepts several statuses, the same set).
//!
//! The suite exists in two generations, and both are replayed:
//! - [`workflows`]: the Ginkgo suite of the v1.1 releases, four workflows
//!   run in order against one repository (pull, push, content discovery,
//!   content management), each leaving state the next one sees;
//! - [`runner`]: the data-driven runner that replaced it, which tries every
//!   blob upload method per digest algorithm, range requests, then pushes,
//!   lists, heads, pulls, queries the referrers of and deletes one kind of
//!   content after another (images, indexes, nested indexes, artifacts,
//!   subjects, sha512, large manifests, ...), with its 1.1 defaults.
//!
//! Requests are shaped as the suite's Go client puts them on the wire: query
//! values are escaped as `url.Values` escapes them, and a `Content-Length`
//! header set without a body goes out as `Content-Length: 0`. Every
//! scenario runs twice: against the Router in process, and over HTTP/1.1
//! to the Router served on a loopback port, as the suite would reach it.

/// Declares module `$name` with two tests running `scenario(&registry)`:
/// `in_process` and `over_http`.
macro_rules! both_transports {
    ($name:ident, $scenario:ident) => {
        mod $name {
            #[tokio::test]
            async fn in_process() {
                super::$scenario(&crate::TestRegistry::with_default_limits()).await;
            }

            #[tokio::test]
            async fn over_http() {
                super::$scenario(&crate::TestRegistry::served_with_default_limits().await).await;
            }
        }
    };
}

mod runner;
mod workflows;

use std::sync::atomic::{AtomicU64, Ordering};

use axum::http::Method;

use crate::{Reply, TestRegistry};

pub const OCTET: &str = "application/octet-stream";

/// Fails unless the reply's status is one of `allowed`.
#[track_caller]
pub fn expect_status(reply: &Reply, allowed: &[u16], what: &str) {
    assert!(
        allowed.contains(&reply.status.as_u16()),
        "{what}: status {}, expected one of {allowed:?}; body: {}",
        reply.status,
        reply.text()
    );
}

/// Fails unless the reply's status is 2xx.
#[track_caller]
pub fn expect_2xx(reply: &Reply, what: &str) {
    assert!(
        reply.status.is_success(),
        "{what}: status {}, expected 2xx; body: {}",
        reply.status,
        reply.text()
    );
}

/// Fails unless the reply has header `name` (any value).
#[track_caller]
pub fn expect_header<'a>(reply: &'a Reply, name: &str, what: &str) -> &'a str {
    match reply.header(name) {
        Some(v) if !v.is_empty() => v,
        _ => panic!("{what}: no {name} header in {:?}", reply.headers),
    }
}

/// `uri` with `key=value` added to its query, escaped as Go's
/// `url.Values.Encode` escapes it (`:` as `%3A`, `+` as `%2B`, `/` as `%2F`).
pub fn with_param(uri: &str, key: &str, value: &str) -> String {
    let escaped: String = form_urlencoded::byte_serialize(value.as_bytes()).collect();
    let separator = if uri.contains('?') { '&' } else { '?' };
    format!("{uri}{separator}{key}={escaped}")
}

/// Bytes that differ on every call (content-addressed tests need distinct
/// digests), from a splitmix64 stream: deterministic, no extra crate.
pub fn random_bytes(len: usize) -> Vec<u8> {
    static STREAM: AtomicU64 = AtomicU64::new(0x5eed_f00d);
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        let mut z = STREAM.fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A short random string usable in annotation keys and values.
pub fn random_text() -> String {
    random_bytes(10)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A request with the given headers and body.
pub async fn request(
    r: &TestRegistry,
    method: Method,
    uri: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Reply {
    r.send(method, uri, headers, body.to_vec()).await
}
