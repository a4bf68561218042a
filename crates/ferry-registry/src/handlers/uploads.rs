//! Blob uploads (distribution-spec "Pushing blobs"): `POST` starts a
//! session (or uploads monolithically with `?digest=`, or mounts with
//! `?mount=&from=`, or with `?mount=` alone from wherever the store holds
//! the blob), `PATCH` appends a chunk whose `Content-Range` must
//! start where the session ends (else 416), `PUT ?digest=` appends an
//! optional last chunk and commits, `GET` reports progress so a client
//! can resume, `DELETE` cancels.

use std::time::Duration;

use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::{header_str, param, parse_digest, query, value};
use crate::body::{Finish, stream_into_upload};
use crate::error::{RegistryError, Result};
use crate::range::parse_content_range;
use crate::{Registry, blocking};

pub async fn start(registry: Registry, name: &str, request: Request) -> Result<Response> {
    let params = query(request.uri());
    if let Some(mount) = param(&params, "mount") {
        let digest = parse_digest(mount)?;
        let from = param(&params, "from")
            .filter(|f| !f.is_empty())
            .map(str::to_string);
        let store = registry.store.clone();
        let (to, d) = (name.to_string(), digest.clone());
        let mounted = blocking(move || match from {
            // A source that is not a valid name is simply not mountable.
            Some(from) => match ferry_store::check_repository(&from) {
                Ok(()) => store.mount_blob(&to, &from, &d),
                Err(_) => Ok(None),
            },
            // "The registry MAY treat the from parameter as optional, and
            // it MAY cross-mount the blob if it can be found"
            // (distribution-spec "Mounting a blob from another repository").
            None => store.mount_stored_blob(&to, &d),
        })
        .await?;
        if mounted.is_some() {
            return Ok(blob_created(name, &digest));
        }
    }
    let store = registry.store.clone();
    let repo = name.to_string();
    let id = blocking(move || store.start_upload(&repo)).await?;

    if let Some(raw) = param(&params, "digest") {
        let digest = parse_digest(raw)?;
        let result = stream_into_upload(
            registry.store.clone(),
            name.to_string(),
            id.clone(),
            request.into_body(),
            Some(0),
            Finish::Commit(digest.clone()),
        )
        .await;
        return match result {
            Ok(_) => Ok(blob_created(name, &digest)),
            Err(e) => {
                // A one-shot upload leaves no session behind.
                let store = registry.store.clone();
                let repo = name.to_string();
                let _ = blocking(move || store.cancel_upload(&repo, &id)).await;
                Err(e)
            }
        };
    }
    Ok(session_response(StatusCode::ACCEPTED, name, &id, 0))
}

pub async fn patch(registry: Registry, name: &str, id: &str, request: Request) -> Result<Response> {
    let start = chunk_start(&request)?;
    let offset = stream_into_upload(
        registry.store.clone(),
        name.to_string(),
        id.to_string(),
        request.into_body(),
        start,
        Finish::Keep,
    )
    .await
    .map_err(|e| out_of_order_as_416(e, name, id))?;
    Ok(session_response(StatusCode::ACCEPTED, name, id, offset))
}

pub async fn put(registry: Registry, name: &str, id: &str, request: Request) -> Result<Response> {
    let params = query(request.uri());
    let raw = param(&params, "digest").ok_or_else(|| {
        RegistryError::DigestInvalid("the digest query parameter is required".into())
    })?;
    let digest = parse_digest(raw)?;
    let start = chunk_start(&request)?;
    stream_into_upload(
        registry.store.clone(),
        name.to_string(),
        id.to_string(),
        request.into_body(),
        start,
        Finish::Commit(digest.clone()),
    )
    .await
    .map_err(|e| out_of_order_as_416(e, name, id))?;
    Ok(blob_created(name, &digest))
}

/// How long a status request waits for a request that is still writing to
/// the session. A client that resumes after losing its connection asks for
/// the status while the server may still be draining its last request;
/// answering before that request ends would give an offset that moves
/// right after, and the resumed chunk would be refused.
const STATUS_SETTLE: Duration = Duration::from_secs(5);

pub async fn status(registry: Registry, name: &str, id: &str) -> Result<Response> {
    let store = registry.store.clone();
    let settled_by = tokio::time::Instant::now() + STATUS_SETTLE;
    while store.upload_is_busy(id) && tokio::time::Instant::now() < settled_by {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (repo, upload) = (name.to_string(), id.to_string());
    let offset = blocking(move || store.upload_offset(&repo, &upload)).await?;
    Ok(session_response(StatusCode::NO_CONTENT, name, id, offset))
}

pub async fn cancel(registry: Registry, name: &str, id: &str) -> Result<Response> {
    let store = registry.store.clone();
    let (repo, upload) = (name.to_string(), id.to_string());
    blocking(move || store.cancel_upload(&repo, &upload)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Where a chunk must start, from `Content-Range`; also checks that
/// `Content-Length`, when given, matches the range.
fn chunk_start(request: &Request) -> Result<Option<u64>> {
    let Some(raw) = header_str(request.headers(), "content-range") else {
        return Ok(None);
    };
    let (start, end) = parse_content_range(raw)
        .ok_or_else(|| RegistryError::UploadInvalid(format!("malformed Content-Range {raw:?}")))?;
    if let Some(length) =
        header_str(request.headers(), "content-length").and_then(|l| l.parse::<u64>().ok())
        && length != end - start + 1
    {
        return Err(RegistryError::UploadInvalid(format!(
            "Content-Range {start}-{end} does not match Content-Length {length}"
        )));
    }
    Ok(Some(start))
}

/// An out-of-order chunk is a 416 whose `Range` and `Location` tell the
/// client where the session really ends; the session stays open.
fn out_of_order_as_416(e: RegistryError, name: &str, id: &str) -> RegistryError {
    match e {
        RegistryError::Store(ferry_store::StoreError::UploadOutOfOrder { expected, .. }) => {
            RegistryError::RangeNotSatisfiable {
                offset: expected,
                location: upload_location(name, id),
            }
        }
        other => other,
    }
}

fn upload_location(name: &str, id: &str) -> String {
    format!("/v2/{name}/blobs/uploads/{id}")
}

fn session_response(status: StatusCode, name: &str, id: &str, offset: u64) -> Response {
    // Inclusive end of what was received; "0-0" when nothing was, as
    // Distribution answers.
    let end = offset.saturating_sub(1);
    (
        status,
        [
            (header::LOCATION, value(&upload_location(name, id))),
            (header::RANGE, value(&format!("0-{end}"))),
            (
                header::HeaderName::from_static("docker-upload-uuid"),
                value(id),
            ),
            (header::CONTENT_LENGTH, value("0")),
        ],
    )
        .into_response()
}

fn blob_created(name: &str, digest: &ferry_oci::Digest) -> Response {
    (
        StatusCode::CREATED,
        [
            (
                header::LOCATION,
                value(&format!("/v2/{name}/blobs/{digest}")),
            ),
            (
                header::HeaderName::from_static("docker-content-digest"),
                value(&digest.to_string()),
            ),
            (header::CONTENT_LENGTH, value("0")),
        ],
    )
        .into_response()
}
