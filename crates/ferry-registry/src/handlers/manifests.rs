//! `GET`/`HEAD`/`PUT`/`DELETE /v2/<name>/manifests/<reference>`
//! (distribution-spec "Pulling manifests", "Pushing Manifests",
//! "Deleting Manifests", and "Pushing Manifests with Subject").

use axum::body::Body;
use axum::extract::Request;
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ferry_oci::{ParsedManifest, media_type};
use ferry_store::{ManifestRef, StoreError, StoredManifest};

use super::{header_str, if_none_match, value};
use crate::error::{RegistryError, Result};
use crate::{Registry, blocking, body};

pub async fn get(
    registry: Registry,
    name: &str,
    reference: &str,
    request: Request,
) -> Result<Response> {
    let reference = ManifestRef::parse(reference).map_err(not_found_on_read)?;
    let store = registry.store.clone();
    let repo = name.to_string();
    let r = reference.clone();
    let Some(mut manifest) = blocking(move || store.get_manifest(&repo, &r)).await? else {
        return Err(unknown(&reference));
    };
    let accept = accepted_types(request.headers());
    if let Some(child) = platform_fallback(&manifest, &accept) {
        // An old client that cannot read indexes: give it the linux/amd64
        // image, as Distribution does.
        let store = registry.store.clone();
        let repo = name.to_string();
        match blocking(move || store.get_manifest(&repo, &ManifestRef::Digest(child))).await? {
            Some(m) => manifest = m,
            None => return Err(unknown(&reference)),
        }
    }
    let etag = format!("\"{}\"", manifest.digest);
    let builder = Response::builder()
        .header(header::CONTENT_TYPE, value(&manifest.media_type))
        .header("Docker-Content-Digest", value(&manifest.digest.to_string()))
        .header(header::ETAG, value(&etag))
        .header(header::CONTENT_LENGTH, manifest.body.len());
    if if_none_match(request.headers(), &etag) {
        return Ok(builder
            .status(StatusCode::NOT_MODIFIED)
            .body(Body::empty())
            .expect("valid response"));
    }
    let body = if request.method() == Method::HEAD {
        Body::empty()
    } else {
        Body::from(manifest.body)
    };
    Ok(builder
        .status(StatusCode::OK)
        .body(body)
        .expect("valid response"))
}

pub async fn put(
    registry: Registry,
    name: &str,
    reference: &str,
    request: Request,
) -> Result<Response> {
    let reference = ManifestRef::parse(reference).map_err(|e| match e {
        StoreError::ManifestUnknown(r) => RegistryError::DigestInvalid(r),
        other => other.into(),
    })?;
    let content_type = header_str(request.headers(), "content-type").map(str::to_string);
    let limit = registry.store.limits().max_manifest_size;
    let body = body::read_limited(request.into_body(), limit).await?;
    let store = registry.store.clone();
    let repo = name.to_string();
    let r = reference.clone();
    let put =
        blocking(move || store.put_manifest(&repo, &r, &body, content_type.as_deref())).await?;
    let location = format!("/v2/{name}/manifests/{}", put.digest);
    let mut response = (
        StatusCode::CREATED,
        [
            (header::LOCATION, value(&location)),
            (
                header::HeaderName::from_static("docker-content-digest"),
                value(&put.digest.to_string()),
            ),
        ],
    )
        .into_response();
    if let Some(subject) = put.subject {
        response
            .headers_mut()
            .insert("OCI-Subject", value(&subject.to_string()));
    }
    Ok(response)
}

pub async fn delete(registry: Registry, name: &str, reference: &str) -> Result<Response> {
    let reference = ManifestRef::parse(reference).map_err(not_found_on_read)?;
    let store = registry.store.clone();
    let repo = name.to_string();
    let r = reference.clone();
    let existed = blocking(move || match &r {
        ManifestRef::Digest(d) => store.delete_manifest(&repo, d),
        ManifestRef::Tag(t) => store.delete_tag(&repo, t),
    })
    .await?;
    if existed {
        Ok(StatusCode::ACCEPTED.into_response())
    } else {
        Err(unknown(&reference))
    }
}

fn unknown(reference: &ManifestRef) -> RegistryError {
    let text = match reference {
        ManifestRef::Tag(t) => t.clone(),
        ManifestRef::Digest(d) => d.to_string(),
    };
    RegistryError::Store(StoreError::ManifestUnknown(text))
}

/// A reference that cannot exist is simply unknown when reading.
fn not_found_on_read(e: StoreError) -> RegistryError {
    match e {
        StoreError::TagInvalid(t) => RegistryError::Store(StoreError::ManifestUnknown(t)),
        other => other.into(),
    }
}

/// The media types listed in `Accept` headers (parameters dropped).
fn accepted_types(headers: &axum::http::HeaderMap) -> Vec<String> {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.split(';').next().unwrap_or("").trim().to_string())
        .filter(|t| !t.is_empty())
        .collect()
}

/// If the stored manifest is an index and the client says it accepts only
/// image manifests, the digest of the linux/amd64 child to serve instead.
fn platform_fallback(manifest: &StoredManifest, accept: &[String]) -> Option<ferry_oci::Digest> {
    if !media_type::is_index(&manifest.media_type) || accept.is_empty() {
        return None;
    }
    let takes = |t: &str| accept.iter().any(|a| a == t || a == "*/*");
    if takes(&manifest.media_type) || !accept.iter().any(|a| media_type::is_image_manifest(a)) {
        return None;
    }
    let parsed = ParsedManifest::parse(&manifest.body, Some(&manifest.media_type)).ok()?;
    parsed
        .manifests
        .iter()
        .find(|m| {
            m.platform
                .as_ref()
                .is_some_and(|p| p.os == "linux" && p.architecture == "amd64")
                && takes(&m.media_type)
        })
        .map(|m| m.digest.clone())
}
