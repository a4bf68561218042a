//! `ferry bundle serve`: a read-only OCI registry served straight from the
//! bundle file, for a site that only needs to pull (or to look before
//! loading). Repositories are the entries' target repositories; tags are
//! their tags; every manifest and blob of an entry is readable by digest
//! in its repository; the referrers API lists the bundle's `referrer`
//! entries by their subject. Writes are refused with `UNSUPPORTED`.
//!
//! Paths are parsed, ranges answered and errors shaped by the same code as
//! the embedded registry (`ferry_registry::{route, range, error}`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use ferry_client::BlobSource;
use ferry_oci::{Descriptor, Digest, ParsedManifest, media_type};
use ferry_registry::error::RegistryError;
use ferry_registry::range::{self, RangeAnswer};
use ferry_registry::route::Route;
use ferry_store::StoreError;

use crate::format::EntryKind;
use crate::graph::{self, GraphError};
use crate::reader::Bundle;

/// What each repository of the bundle holds.
#[derive(Default)]
struct Repo {
    tags: BTreeMap<String, Digest>,
    /// Manifest digests and their media types.
    manifests: BTreeMap<Digest, String>,
    blobs: BTreeSet<Digest>,
    /// Referrer entries by subject, as the referrers API lists them.
    referrers: BTreeMap<Digest, Vec<Descriptor>>,
}

struct Served {
    bundle: Arc<Bundle>,
    repos: BTreeMap<String, Repo>,
}

/// The read-only registry Router over `bundle`.
pub fn router(bundle: Arc<Bundle>) -> Result<Router, GraphError> {
    let mut repos: BTreeMap<String, Repo> = BTreeMap::new();
    for entry in &bundle.manifest.entries {
        let graph = graph::walk(bundle.as_ref(), &entry.descriptor)?;
        let repo = repos.entry(entry.repository.clone()).or_default();
        if let Some(tag) = &entry.tag {
            repo.tags
                .insert(tag.clone(), entry.descriptor.digest.clone());
        }
        for (desc, _) in &graph.manifests {
            repo.manifests
                .insert(desc.digest.clone(), desc.media_type.clone());
        }
        repo.blobs
            .extend(graph.blobs.iter().map(|b| b.digest.clone()));
        if entry.kind == EntryKind::Referrer
            && let Some((desc, bytes)) = graph.manifests.last()
            && let Ok(parsed) = ParsedManifest::parse(bytes, Some(&desc.media_type))
            && let Some(subject) = &parsed.subject
        {
            let listed = parsed.referrer_descriptor(desc.digest.clone(), desc.size);
            repo.referrers
                .entry(subject.digest.clone())
                .or_default()
                .push(listed);
        }
    }
    let state = Arc::new(Served { bundle, repos });
    Ok(Router::new()
        .route("/v2", any(handle))
        .route("/v2/", any(handle))
        .route("/v2/{*rest}", any(handle))
        .with_state(state))
}

async fn handle(State(served): State<Arc<Served>>, request: Request) -> Response {
    // Only these parts are needed; the body is never read.
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let range = request
        .headers()
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let artifact_type = request.uri().query().and_then(artifact_type_filter);
    let asked = Asked {
        method: &method,
        path: &path,
        range: range.as_deref(),
        artifact_type: artifact_type.as_deref(),
    };
    let mut response = match answer(&served, &asked).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    response.headers_mut().insert(
        "Docker-Distribution-API-Version",
        HeaderValue::from_static("registry/2.0"),
    );
    response
}

/// The parts of a request an answer depends on.
struct Asked<'a> {
    method: &'a Method,
    path: &'a str,
    range: Option<&'a str>,
    /// The referrers API's `artifactType` filter (empty asks for none).
    artifact_type: Option<&'a str>,
}

fn artifact_type_filter(query: &str) -> Option<String> {
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "artifactType")
        .map(|(_, v)| v.into_owned())
        .filter(|v| !v.is_empty())
}

async fn answer(served: &Served, asked: &Asked<'_>) -> Result<Response, RegistryError> {
    let (method, path, range_header) = (asked.method, asked.path, asked.range);
    let rest = path.strip_prefix("/v2").unwrap_or_default();
    let route = Route::parse(rest.strip_prefix('/').unwrap_or(rest))?;
    if method != Method::GET && method != Method::HEAD {
        return Err(RegistryError::Unsupported);
    }
    let head = method == Method::HEAD;
    let unknown_repo = |name: &str| RegistryError::Store(StoreError::NameUnknown(name.to_string()));
    match route {
        Route::Base => Ok(axum::Json(serde_json::json!({})).into_response()),
        Route::Catalog => {
            let names: Vec<&String> = served.repos.keys().collect();
            Ok(axum::Json(serde_json::json!({ "repositories": names })).into_response())
        }
        Route::Tags { name } => {
            let repo = served.repos.get(&name).ok_or_else(|| unknown_repo(&name))?;
            let tags: Vec<&String> = repo.tags.keys().collect();
            Ok(axum::Json(serde_json::json!({ "name": name, "tags": tags })).into_response())
        }
        Route::Manifest { name, reference } => {
            let not_found = || RegistryError::Store(StoreError::ManifestUnknown(reference.clone()));
            let repo = served.repos.get(&name).ok_or_else(not_found)?;
            let digest = match reference.parse::<Digest>() {
                Ok(d) => d,
                Err(_) => repo.tags.get(&reference).cloned().ok_or_else(not_found)?,
            };
            let media_type = repo.manifests.get(&digest).ok_or_else(not_found)?;
            let bytes = read(served, &digest).await?;
            let response = Response::builder()
                .header(header::CONTENT_TYPE, media_type.as_str())
                .header("Docker-Content-Digest", digest.to_string())
                .header(header::CONTENT_LENGTH, bytes.len());
            let body = if head {
                Body::empty()
            } else {
                Body::from(bytes)
            };
            Ok(response.body(body).expect("valid response"))
        }
        Route::Blob { name, digest } => {
            let digest: Digest = digest
                .parse()
                .map_err(|e: ferry_oci::DigestError| RegistryError::DigestInvalid(e.to_string()))?;
            let unknown = || RegistryError::Store(StoreError::BlobUnknown(digest.clone()));
            let repo = served.repos.get(&name).ok_or_else(unknown)?;
            if !repo.blobs.contains(&digest) && !repo.manifests.contains_key(&digest) {
                return Err(unknown());
            }
            let source = served.bundle.blob_source(&digest).ok_or_else(unknown)?;
            let size = source.len();
            let mut response = Response::builder()
                .header(header::CONTENT_TYPE, "application/octet-stream")
                .header("Docker-Content-Digest", digest.to_string())
                .header(header::ACCEPT_RANGES, "bytes");
            let (status, start, len) = match range::answer(range_header, size) {
                RangeAnswer::Full => (StatusCode::OK, 0, size),
                RangeAnswer::Partial { start, end } => {
                    response = response
                        .header(header::CONTENT_RANGE, format!("bytes {start}-{end}/{size}"));
                    (StatusCode::PARTIAL_CONTENT, start, end - start + 1)
                }
                RangeAnswer::Unsatisfiable => {
                    return Ok((
                        StatusCode::RANGE_NOT_SATISFIABLE,
                        [(header::CONTENT_RANGE, format!("bytes */{size}"))],
                    )
                        .into_response());
                }
            };
            let body = if head {
                Body::empty()
            } else {
                let stream = source.open(start, len).await.map_err(|e| {
                    RegistryError::Internal(format!("reading {digest} from the bundle: {e}"))
                })?;
                Body::from_stream(stream)
            };
            Ok(response
                .status(status)
                .header(header::CONTENT_LENGTH, len)
                .body(body)
                .expect("valid response"))
        }
        Route::Referrers { name, digest } => {
            let subject: Digest = digest
                .parse()
                .map_err(|e: ferry_oci::DigestError| RegistryError::DigestInvalid(e.to_string()))?;
            let listed: Vec<&Descriptor> = served
                .repos
                .get(&name)
                .and_then(|repo| repo.referrers.get(&subject))
                .into_iter()
                .flatten()
                .filter(|d| {
                    asked
                        .artifact_type
                        .is_none_or(|t| d.artifact_type.as_deref() == Some(t))
                })
                .collect();
            let index = serde_json::json!({
                "schemaVersion": 2,
                "mediaType": media_type::OCI_INDEX,
                "manifests": listed,
            });
            let mut response = (
                [(header::CONTENT_TYPE, media_type::OCI_INDEX)],
                serde_json::to_vec(&index).expect("index serializes"),
            )
                .into_response();
            if asked.artifact_type.is_some() {
                response.headers_mut().insert(
                    "OCI-Filters-Applied",
                    HeaderValue::from_static("artifactType"),
                );
            }
            Ok(response)
        }
        Route::Upload { .. } => Err(RegistryError::Unsupported),
    }
}

async fn read(served: &Served, digest: &Digest) -> Result<Vec<u8>, RegistryError> {
    served
        .bundle
        .read_blob(digest)
        .map_err(|e| RegistryError::Internal(format!("reading {digest} from the bundle: {e}")))?
        .ok_or_else(|| RegistryError::Store(StoreError::ManifestUnknown(digest.to_string())))
}
