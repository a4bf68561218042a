//! The client's error type.
//!
//! A registry's refusal carries what the registry said: the HTTP status and
//! the `errors` array of the distribution-spec error body ("Error Codes"
//! section: `{"errors":[{"code":..., "message":..., "detail":...}]}`), so
//! callers can tell `BLOB_UNKNOWN` from `DENIED` without parsing strings.
//! A request that got no answer carries a [`TransportKind`], so callers
//! can tell a registry that is down from one that needs other TLS
//! settings, and the message names the deepest cause ("Connection
//! refused", "invalid peer certificate: UnknownIssuer") instead of the
//! HTTP stack's "error sending request for url".

use std::fmt;
use std::path::PathBuf;

use ferry_oci::Digest;
use http::{Method, StatusCode};
use serde::Deserialize;

pub type Result<T, E = ClientError> = std::result::Result<T, E>;

/// One entry of a registry's JSON error body.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RegistryErrorDetail {
    /// The spec's code (`BLOB_UNKNOWN`, `DIGEST_INVALID`, `DENIED`, ...).
    #[serde(default)]
    pub code: String,
    #[serde(default)]
    pub message: String,
    /// Free-form detail, kept as JSON text (registries put objects here).
    #[serde(default, deserialize_with = "detail_as_text")]
    pub detail: Option<String>,
}

fn detail_as_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let value = Option::<serde_json::Value>::deserialize(d)?;
    Ok(match value {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) => Some(s),
        Some(other) => Some(other.to_string()),
    })
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    errors: Vec<RegistryErrorDetail>,
}

/// Parses a distribution-spec error body; anything else yields no entries.
pub(crate) fn parse_error_body(body: &[u8]) -> Vec<RegistryErrorDetail> {
    serde_json::from_slice::<ErrorBody>(body)
        .map(|b| b.errors)
        .unwrap_or_default()
}

/// The registry's error entries, formatted for a message.
pub(crate) struct ErrorList<'a>(pub &'a [RegistryErrorDetail]);

impl fmt::Display for ErrorList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            f.write_str(if i == 0 { ": " } else { "; " })?;
            write!(f, "{}", e.code)?;
            if !e.message.is_empty() {
                write!(f, " ({})", e.message)?;
            }
            if let Some(detail) = &e.detail {
                write!(f, " [{detail}]")?;
            }
        }
        Ok(())
    }
}

/// Why a request got no (complete) answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportKind {
    /// No connection: refused, no route, the name does not resolve, the
    /// connect timed out.
    Unreachable,
    /// The host's TLS certificate did not verify: unknown CA, another
    /// name, expired.
    UntrustedCertificate,
    /// HTTPS was asked, and the host answered in plain HTTP.
    PlainHttp,
    /// The TLS handshake failed otherwise (no common version, an alert).
    Tls,
    /// Connected, but the exchange broke off: reset, read timeout,
    /// truncated body.
    Interrupted,
}

impl TransportKind {
    /// Of a failed request: from the rustls error under it, if any, else
    /// from whether the connection was made at all.
    fn of(error: &reqwest::Error) -> TransportKind {
        match rustls_error(error) {
            Some(rustls::Error::InvalidCertificate(_)) => TransportKind::UntrustedCertificate,
            Some(_) => TransportKind::Tls,
            None if error.is_connect() => TransportKind::Unreachable,
            None => TransportKind::Interrupted,
        }
    }

    /// Worth another try: a registry that is restarting or a network that
    /// hiccupped may answer the next time; TLS settings do not change.
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            TransportKind::Unreachable | TransportKind::Interrupted
        )
    }
}

/// The rustls error under a failed request. tokio-rustls hands it up
/// wrapped in an `io::Error` (sometimes twice), whose `source()` skips what
/// it wraps, so `io::Error`s are looked into as well.
fn rustls_error(error: &reqwest::Error) -> Option<&rustls::Error> {
    find_rustls(error)
}

fn find_rustls<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    if let Some(tls) = error.downcast_ref::<rustls::Error>() {
        return Some(tls);
    }
    let wrapped = error
        .downcast_ref::<std::io::Error>()
        .and_then(std::io::Error::get_ref)
        .and_then(|inner| find_rustls(inner));
    wrapped.or_else(|| error.source().and_then(find_rustls))
}

/// True if a TLS handshake got bytes that are not TLS at all (rustls:
/// "received corrupt message"), as when the host speaks plain HTTP; the
/// client then asks it in plain HTTP to be sure.
pub(crate) fn answered_without_tls(error: &reqwest::Error) -> bool {
    matches!(rustls_error(error), Some(rustls::Error::InvalidMessage(_)))
}

/// The deepest error in `error`'s source chain: for a failed request that is
/// the one that says why ("Connection refused (os error 111)"), where the
/// outer ones only say "error sending request for url".
fn innermost_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}

/// The reason part of a transport error's message.
struct TransportReason<'a>(TransportKind, &'a reqwest::Error);

impl fmt::Display for TransportReason<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cause = innermost_cause(self.1);
        match self.0 {
            TransportKind::Unreachable => write!(f, "cannot connect: {cause}"),
            TransportKind::UntrustedCertificate => {
                write!(f, "its TLS certificate is not trusted: {cause}")
            }
            TransportKind::PlainHttp => f.write_str("this registry speaks plain HTTP, not HTTPS"),
            TransportKind::Tls => write!(f, "TLS handshake failed: {cause}"),
            TransportKind::Interrupted => f.write_str(&cause),
        }
    }
}

/// Everything that can go wrong talking to a registry.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The registry answered with a status the operation does not accept.
    #[error("{method} {url}: registry answered {status}{}", ErrorList(errors))]
    Registry {
        method: Method,
        url: String,
        status: StatusCode,
        errors: Vec<RegistryErrorDetail>,
    },
    /// The request did not get a complete answer (connect error, TLS,
    /// reset, timeout, truncated body); `kind` says which.
    #[error("{method} {url}: {}", TransportReason(*kind, source))]
    Transport {
        method: Method,
        url: String,
        kind: TransportKind,
        #[source]
        source: reqwest::Error,
    },
    /// The token service refused or returned something unusable;
    /// `status` is its answer's, if it answered.
    #[error("authentication with {realm} failed: {reason}")]
    Auth {
        realm: String,
        status: Option<StatusCode>,
        reason: String,
    },
    /// config.json / auth.json could not be used.
    #[error("credentials: {0}")]
    Credentials(String),
    /// A CA file or the TLS setup is unusable.
    #[error("TLS setup: {0}")]
    Tls(String),
    /// Content from the registry does not match the digest it was asked
    /// for (or the one it announced).
    #[error("{what}: expected {expected}, received content with digest {actual}")]
    DigestMismatch {
        what: String,
        expected: Digest,
        actual: Digest,
    },
    /// Content from the registry has the wrong length.
    #[error("{what}: expected {expected} bytes, received {actual}")]
    SizeMismatch {
        what: String,
        expected: u64,
        actual: u64,
    },
    /// The local source of a blob being pushed does not hash to the
    /// blob's digest; the upload was cancelled before the final request,
    /// so nothing was committed.
    #[error("source {source_name} does not match {expected}: its content hashes to {actual}")]
    SourceMismatch {
        source_name: String,
        expected: Digest,
        actual: Digest,
    },
    /// The local source of a blob is shorter or longer than announced.
    #[error("source {source_name}: {reason}")]
    SourceInvalid { source_name: String, reason: String },
    /// Reading the local source of a blob failed.
    #[error("reading {source_name}: {error}")]
    SourceIo {
        source_name: String,
        #[source]
        error: std::io::Error,
    },
    /// A local file (resume state, credentials) could not be read or written.
    #[error("{path}: {error}")]
    Io {
        path: PathBuf,
        #[source]
        error: std::io::Error,
    },
    /// The registry's answer breaks the protocol (missing Location, bad
    /// Range, unparsable JSON, ...).
    #[error("{url}: unexpected answer from the registry: {reason}")]
    Protocol { url: String, reason: String },
    /// A manifest larger than the configured limit.
    #[error("{url}: manifest larger than the {limit}-byte limit")]
    ManifestTooLarge { url: String, limit: u64 },
    /// Invalid input from the caller (bad repository name, host...).
    #[error("{0}")]
    InvalidArgument(String),
}

impl ClientError {
    /// The HTTP status, when the registry answered.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            ClientError::Registry { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The registry's error codes (`BLOB_UNKNOWN`, ...), if any.
    pub fn codes(&self) -> Vec<&str> {
        match self {
            ClientError::Registry { errors, .. } => {
                errors.iter().map(|e| e.code.as_str()).collect()
            }
            _ => Vec::new(),
        }
    }

    /// True if the registry reported `code`.
    pub fn has_code(&self, code: &str) -> bool {
        self.codes().contains(&code)
    }

    /// Why the request got no answer, for a transport error.
    pub fn transport_kind(&self) -> Option<TransportKind> {
        match self {
            ClientError::Transport { kind, .. } => Some(*kind),
            _ => None,
        }
    }

    /// The URL of the request that failed, if one did.
    pub fn url(&self) -> Option<&str> {
        match self {
            ClientError::Registry { url, .. }
            | ClientError::Transport { url, .. }
            | ClientError::Protocol { url, .. }
            | ClientError::ManifestTooLarge { url, .. } => Some(url),
            ClientError::Auth { realm, .. } => Some(realm),
            _ => None,
        }
    }

    /// True for failures worth retrying: connection failures and broken
    /// exchanges (including truncated bodies), 408, 429 and the 5xx
    /// statuses [`crate::retry::is_transient_status`] names. Not TLS
    /// failures: a certificate or a plain-HTTP host does not change on a
    /// second try.
    pub fn is_transient(&self) -> bool {
        match self {
            ClientError::Transport { kind, .. } => kind.is_transient(),
            ClientError::Registry { status, .. } => crate::retry::is_transient_status(*status),
            _ => false,
        }
    }

    /// True for failures that every other request to the registry would
    /// meet too: its disk is full (507), it refuses the credentials (401,
    /// or the token service does), it cannot be reached, or its TLS does
    /// not do. Many pushes in flight stop at the first such failure
    /// ([`crate::push_blobs`]) instead of each finding out alone.
    pub fn is_registry_wide(&self) -> bool {
        match self {
            ClientError::Transport { kind, .. } => *kind != TransportKind::Interrupted,
            ClientError::Registry { status, .. } => matches!(
                *status,
                StatusCode::INSUFFICIENT_STORAGE | StatusCode::UNAUTHORIZED
            ),
            ClientError::Auth { .. } => true,
            _ => false,
        }
    }

    /// True for failures of the local source (never retried: the same
    /// bytes would fail again).
    pub fn is_source_error(&self) -> bool {
        matches!(
            self,
            ClientError::SourceMismatch { .. }
                | ClientError::SourceInvalid { .. }
                | ClientError::SourceIo { .. }
        )
    }

    pub(crate) fn transport(method: &Method, url: &str, source: reqwest::Error) -> Self {
        ClientError::Transport {
            method: method.clone(),
            url: url.to_string(),
            kind: TransportKind::of(&source),
            source,
        }
    }

    pub(crate) fn protocol(url: impl fmt::Display, reason: impl Into<String>) -> Self {
        ClientError::Protocol {
            url: url.to_string(),
            reason: reason.into(),
        }
    }

    /// Builds a [`ClientError::Registry`] from a response, reading (at most
    /// 64 KiB of) its error body.
    pub(crate) async fn from_response(method: &Method, response: reqwest::Response) -> Self {
        let url = response.url().to_string();
        let status = response.status();
        let body = read_limited(response, 64 * 1024).await.unwrap_or_default();
        ClientError::Registry {
            method: method.clone(),
            url,
            status,
            errors: parse_error_body(&body),
        }
    }
}

/// Reads a response body up to `limit` bytes; returns `None` past the limit.
pub(crate) async fn read_limited(
    mut response: reqwest::Response,
    limit: u64,
) -> Result<Vec<u8>, Option<reqwest::Error>> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(Some)? {
        if body.len() as u64 + chunk.len() as u64 > limit {
            return Err(None);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_body_parsed_and_formatted() {
        let body = br#"{"errors":[{"code":"BLOB_UNKNOWN","message":"blob unknown to registry","detail":{"digest":"x"}},{"code":"DENIED"}]}"#;
        let errors = parse_error_body(body);
        assert_eq!(errors.len(), 2);
        assert_eq!(errors[0].detail.as_deref(), Some(r#"{"digest":"x"}"#));
        let e = ClientError::Registry {
            method: Method::GET,
            url: "http://r/v2/x/blobs/y".into(),
            status: StatusCode::NOT_FOUND,
            errors,
        };
        assert!(e.has_code("DENIED"));
        assert_eq!(
            e.to_string(),
            r#"GET http://r/v2/x/blobs/y: registry answered 404 Not Found: BLOB_UNKNOWN (blob unknown to registry) [{"digest":"x"}]; DENIED"#
        );
        assert!(parse_error_body(b"<html>").is_empty());
    }
}
