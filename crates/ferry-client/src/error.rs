//! The client's error type.
//!
//! A registry's refusal carries what the registry said: the HTTP status and
//! the `errors` array of the distribution-spec error body ("Error Codes"
//! section: `{"errors":[{"code":..., "message":..., "detail":...}]}`), so
//! callers can tell `BLOB_UNKNOWN` from `DENIED` without parsing strings.

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
    /// The request did not get a complete answer (connect error, reset,
    /// timeout, truncated body).
    #[error("{method} {url}: {source}")]
    Transport {
        method: Method,
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// The token service refused or returned something unusable.
    #[error("authentication with {realm} failed: {reason}")]
    Auth { realm: String, reason: String },
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

    /// True for failures worth retrying: transport errors (including
    /// truncated bodies), 408, 429 and 5xx except 501 (not implemented)
    /// and 505.
    pub fn is_transient(&self) -> bool {
        match self {
            ClientError::Transport { .. } => true,
            ClientError::Registry { status, .. } => crate::retry::is_transient_status(*status),
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
