//! Errors as the distribution-spec's JSON error bodies
//! ("Error Codes": `{"errors":[{"code","message","detail"}]}`).
//!
//! Every client mistake maps to a 4xx with the spec's code; only a
//! server-side failure is a 500, and its details are logged, never sent.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ferry_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("invalid digest {0:?}")]
    DigestInvalid(String),
    #[error("{0}")]
    UploadInvalid(String),
    /// A chunk that does not start where upload `location` ends.
    #[error("the chunk does not start at byte {offset}, where the upload ends")]
    RangeNotSatisfiable { offset: u64, location: String },
    #[error("{0}")]
    ManifestInvalid(String),
    #[error("the requested endpoint does not exist")]
    NotFound,
    #[error("the operation is unsupported")]
    Unsupported,
    #[error("authentication required")]
    Unauthorized { challenge: String },
    #[error("requested access to the resource is denied")]
    Denied,
    #[error("{0}")]
    BadRequest(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl RegistryError {
    fn parts(&self) -> (StatusCode, &'static str) {
        use StatusCode as S;
        match self {
            RegistryError::Store(e) => match e {
                StoreError::NameInvalid(_) => (S::BAD_REQUEST, "NAME_INVALID"),
                StoreError::TagInvalid(_) => (S::BAD_REQUEST, "MANIFEST_INVALID"),
                StoreError::NameUnknown(_) => (S::NOT_FOUND, "NAME_UNKNOWN"),
                StoreError::BlobUnknown(_) => (S::NOT_FOUND, "BLOB_UNKNOWN"),
                StoreError::UploadUnknown(_) => (S::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN"),
                // A retry will succeed once the other request ends (often
                // the same client's request that died with its process), so
                // say "try again" the way every client understands: 429 and
                // Retry-After (distribution-spec code TOOMANYREQUESTS).
                StoreError::UploadBusy(_) => (S::TOO_MANY_REQUESTS, "TOOMANYREQUESTS"),
                StoreError::UploadOutOfOrder { .. } => {
                    (S::RANGE_NOT_SATISFIABLE, "BLOB_UPLOAD_INVALID")
                }
                StoreError::DigestMismatch { .. } => (S::BAD_REQUEST, "DIGEST_INVALID"),
                StoreError::SizeMismatch { .. } => (S::BAD_REQUEST, "SIZE_INVALID"),
                StoreError::ManifestUnknown(_) => (S::NOT_FOUND, "MANIFEST_UNKNOWN"),
                StoreError::ManifestInvalid(_) => (S::BAD_REQUEST, "MANIFEST_INVALID"),
                StoreError::ManifestBlobUnknown(_) => (S::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN"),
                StoreError::ManifestTooLarge { .. } => (S::PAYLOAD_TOO_LARGE, "SIZE_INVALID"),
                StoreError::NotAManifest(_) => (S::BAD_REQUEST, "MANIFEST_INVALID"),
                StoreError::Io { source, .. }
                    if source.kind() == std::io::ErrorKind::StorageFull =>
                {
                    (S::INSUFFICIENT_STORAGE, "UNKNOWN")
                }
                StoreError::Io { .. } => (S::INTERNAL_SERVER_ERROR, "UNKNOWN"),
            },
            RegistryError::DigestInvalid(_) => (S::BAD_REQUEST, "DIGEST_INVALID"),
            RegistryError::UploadInvalid(_) => (S::BAD_REQUEST, "BLOB_UPLOAD_INVALID"),
            RegistryError::RangeNotSatisfiable { .. } => {
                (S::RANGE_NOT_SATISFIABLE, "BLOB_UPLOAD_INVALID")
            }
            RegistryError::ManifestInvalid(_) => (S::BAD_REQUEST, "MANIFEST_INVALID"),
            RegistryError::NotFound => (S::NOT_FOUND, "NOT_FOUND"),
            RegistryError::Unsupported => (S::METHOD_NOT_ALLOWED, "UNSUPPORTED"),
            RegistryError::Unauthorized { .. } => (S::UNAUTHORIZED, "UNAUTHORIZED"),
            RegistryError::Denied => (S::FORBIDDEN, "DENIED"),
            RegistryError::BadRequest(_) => (S::BAD_REQUEST, "UNSUPPORTED"),
            RegistryError::Internal(_) => (S::INTERNAL_SERVER_ERROR, "UNKNOWN"),
        }
    }

    /// A 401 with the challenge a client needs to authenticate for `action`
    /// on `repository`.
    pub fn unauthorized(challenge: String) -> Self {
        RegistryError::Unauthorized { challenge }
    }
}

impl IntoResponse for RegistryError {
    fn into_response(self) -> Response {
        let (status, code) = self.parts();
        let message = if status == StatusCode::INSUFFICIENT_STORAGE {
            tracing::error!(error = %self, "the disk is full");
            "the registry's disk is full; nothing was stored".to_string()
        } else if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
            "internal server error".to_string()
        } else {
            self.to_string()
        };
        let body = serde_json::json!({
            "errors": [{"code": code, "message": message, "detail": serde_json::Value::Null}]
        });
        let mut response = (status, axum::Json(body)).into_response();
        let headers = response.headers_mut();
        match &self {
            RegistryError::Unauthorized { challenge } => {
                if let Ok(v) = HeaderValue::from_str(challenge) {
                    headers.insert(header::WWW_AUTHENTICATE, v);
                }
            }
            // What a client needs to resume (distribution-spec "Pushing a
            // blob in chunks": the upload's location and what it holds).
            RegistryError::RangeNotSatisfiable { offset, location } => {
                let end = offset.saturating_sub(1);
                if let Ok(v) = HeaderValue::from_str(&format!("0-{end}")) {
                    headers.insert(header::RANGE, v);
                }
                if let Ok(v) = HeaderValue::from_str(location) {
                    headers.insert(header::LOCATION, v);
                }
            }
            RegistryError::Store(StoreError::UploadBusy(_)) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            _ => {}
        }
        response
    }
}

pub type Result<T, E = RegistryError> = std::result::Result<T, E>;
