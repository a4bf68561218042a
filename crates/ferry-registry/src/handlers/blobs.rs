//! `GET`/`HEAD`/`DELETE /v2/<name>/blobs/<digest>` (distribution-spec
//! "Pulling blobs", "Deleting blobs"). GETs honour a single `Range`.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ferry_store::StoreError;

use super::{header_str, if_none_match, parse_digest, value};
use crate::error::{RegistryError, Result};
use crate::range::{self, RangeAnswer};
use crate::{Registry, blocking, body};

pub async fn get(
    registry: Registry,
    name: &str,
    digest: &str,
    request: Request,
) -> Result<Response> {
    let digest = parse_digest(digest)?;
    let store = registry.store.clone();
    let (repo, d) = (name.to_string(), digest.clone());
    let Some((file, size)) = blocking(move || store.open_blob(&repo, &d)).await? else {
        return Err(StoreError::BlobUnknown(digest).into());
    };
    let etag = format!("\"{digest}\"");
    let mut builder = Response::builder()
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header("Docker-Content-Digest", value(&digest.to_string()))
        .header(header::ETAG, value(&etag))
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::CACHE_CONTROL, "max-age=31536000, immutable");
    if if_none_match(request.headers(), &etag) {
        return Ok(builder
            .status(StatusCode::NOT_MODIFIED)
            .body(Body::empty())
            .expect("valid response"));
    }
    let head = request.method() == Method::HEAD;
    let (status, start, len) = match range::answer(header_str(request.headers(), "range"), size) {
        RangeAnswer::Full => (StatusCode::OK, 0, size),
        RangeAnswer::Partial { start, end } => {
            builder = builder.header(
                header::CONTENT_RANGE,
                value(&format!("bytes {start}-{end}/{size}")),
            );
            (StatusCode::PARTIAL_CONTENT, start, end - start + 1)
        }
        RangeAnswer::Unsatisfiable => {
            return Ok((
                StatusCode::RANGE_NOT_SATISFIABLE,
                [(header::CONTENT_RANGE, value(&format!("bytes */{size}")))],
            )
                .into_response());
        }
    };
    let body = if head {
        Body::empty()
    } else {
        body::file_body(file, start, len)
    };
    Ok(builder
        .status(status)
        .header(header::CONTENT_LENGTH, len)
        .body(body)
        .expect("valid response"))
}

pub async fn delete(registry: Registry, name: &str, digest: &str) -> Result<Response> {
    let digest = parse_digest(digest)?;
    let store = registry.store.clone();
    let (repo, d) = (name.to_string(), digest.clone());
    if blocking(move || store.delete_blob(&repo, &d)).await? {
        Ok(StatusCode::ACCEPTED.into_response())
    } else {
        Err(RegistryError::Store(StoreError::BlobUnknown(digest)))
    }
}
