//! `GET /v2/<name>/referrers/<digest>[?artifactType=...]`
//! (distribution-spec 1.1 "Listing Referrers"): an image index of the
//! manifests whose `subject` is the digest; an unknown subject has an
//! empty list, not a 404.

use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use ferry_oci::media_type;

use super::{param, parse_digest, query};
use crate::error::Result;
use crate::{Registry, blocking};

pub async fn list(
    registry: Registry,
    name: &str,
    digest: &str,
    request: Request,
) -> Result<Response> {
    let subject = parse_digest(digest)?;
    let params = query(request.uri());
    // An empty `artifactType=` asks for no filter.
    let artifact_type = param(&params, "artifactType")
        .filter(|t| !t.is_empty())
        .map(str::to_string);
    let store = registry.store.clone();
    let repo = name.to_string();
    let filter = artifact_type.clone();
    let manifests = blocking(move || store.referrers(&repo, &subject, filter.as_deref())).await?;
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_INDEX,
        "manifests": manifests,
    });
    let mut response = (
        StatusCode::OK,
        [(header::CONTENT_TYPE, media_type::OCI_INDEX)],
        serde_json::to_vec(&index).expect("index serializes"),
    )
        .into_response();
    if artifact_type.is_some() {
        response.headers_mut().insert(
            "OCI-Filters-Applied",
            header::HeaderValue::from_static("artifactType"),
        );
    }
    Ok(response)
}
