//! One module per endpoint family of the distribution-spec.

pub mod blobs;
pub mod manifests;
pub mod referrers;
pub mod tags;
pub mod uploads;

use axum::http::{HeaderMap, HeaderValue, Uri};
use ferry_oci::Digest;

use crate::error::RegistryError;

/// Parses a digest from a path or query, as the spec's DIGEST_INVALID.
pub(crate) fn parse_digest(raw: &str) -> Result<Digest, RegistryError> {
    raw.parse()
        .map_err(|e: ferry_oci::DigestError| RegistryError::DigestInvalid(e.to_string()))
}

/// The query string's parameters, percent-decoded.
///
/// A literal `+` stays a `+` rather than becoming a space as in HTML
/// forms: media types (`application/vnd.oci.image.config.v1+json`) and
/// digest algorithms may hold a `+`, no value this API takes can hold a
/// space, and hand-written URLs (curl) often leave the `+` unescaped.
/// Escaped values (`%2B`, as Go and Rust clients send) decode the same.
pub(crate) fn query(uri: &Uri) -> Vec<(String, String)> {
    uri.query()
        .map(|q| {
            let q = q.replace('+', "%2B");
            form_urlencoded::parse(q.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect()
        })
        .unwrap_or_default()
}

/// The first value of query parameter `key`.
pub(crate) fn param<'a>(params: &'a [(String, String)], key: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// A header's value as text, if present and valid.
pub(crate) fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Whether the request's `If-None-Match` names `etag` (RFC 9110 §13.1.2),
/// so the answer is 304.
pub(crate) fn if_none_match(headers: &HeaderMap, etag: &str) -> bool {
    header_str(headers, "if-none-match").is_some_and(|v| v.split(',').any(|t| t.trim() == etag))
}

/// A header value from text that is known to be valid ASCII (digests,
/// paths built from validated names).
pub(crate) fn value(text: &str) -> HeaderValue {
    HeaderValue::from_str(text).expect("header value built from validated parts")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_keeps_a_literal_plus() {
        let uri: Uri =
            "/v2/a/referrers/x?artifactType=application/vnd.oci.image.config.v1+json&n=1"
                .parse()
                .unwrap();
        let params = query(&uri);
        assert_eq!(
            param(&params, "artifactType"),
            Some("application/vnd.oci.image.config.v1+json")
        );
        let uri: Uri = "/v2/a/tags/list?last=v1%2Bx&mount=sha256%3Aab"
            .parse()
            .unwrap();
        let params = query(&uri);
        assert_eq!(param(&params, "last"), Some("v1+x"));
        assert_eq!(param(&params, "mount"), Some("sha256:ab"));
    }
}
