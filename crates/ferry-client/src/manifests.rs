//! Manifests: HEAD, GET and PUT (distribution-spec "Pulling manifests",
//! "Pushing Manifests").
//!
//! A manifest's digest is the digest of its exact bytes, so they are
//! returned and sent untouched. A fetched body is checked against the
//! digest it was asked by and against `Docker-Content-Digest`; a pushed
//! one against the digest the registry reports.

use bytes::Bytes;
use ferry_oci::{Algorithm, Descriptor, Digest, ManifestError, ParsedManifest, media_type};
use http::{Method, StatusCode};

use crate::client::Request;
use crate::error::{ClientError, Result, read_limited};
use crate::listing::referrers_tag;
use crate::repository::{Repository, content_digest, expect_status, header_str};

/// Every manifest type ferry handles, for `Accept`.
const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
    application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, \
    application/vnd.docker.distribution.manifest.v2+json";

/// A manifest or index as the registry stores it.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// The exact bytes; their digest is [`Manifest::digest`].
    pub bytes: Bytes,
    pub media_type: String,
    pub digest: Digest,
}

impl Manifest {
    /// The flavour-neutral view of what it references.
    pub fn parse(&self) -> Result<ParsedManifest, ManifestError> {
        ParsedManifest::parse(&self.bytes, Some(&self.media_type))
    }

    /// A descriptor pointing at this manifest.
    pub fn descriptor(&self) -> Descriptor {
        Descriptor::new(
            self.media_type.clone(),
            self.digest.clone(),
            self.bytes.len() as u64,
        )
    }
}

/// What a `HEAD` on a manifest tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestInfo {
    /// `Docker-Content-Digest` (some registries omit it on HEAD).
    pub digest: Option<Digest>,
    pub media_type: Option<String>,
    pub size: Option<u64>,
}

/// A manifest reference is a tag or a digest.
fn check_reference(reference: &str) -> Result<Option<Digest>> {
    if reference.contains(':') {
        return reference
            .parse::<Digest>()
            .map(Some)
            .map_err(|e| ClientError::InvalidArgument(e.to_string()));
    }
    if ferry_oci::name::is_valid_tag(reference) {
        Ok(None)
    } else {
        Err(ClientError::InvalidArgument(format!(
            "invalid tag {reference:?}"
        )))
    }
}

fn media_type_header(response: &reqwest::Response) -> Option<String> {
    header_str(response, "content-type")
        .map(|ct| ct.split(';').next().unwrap_or("").trim().to_string())
        .filter(|ct| !ct.is_empty())
}

impl Repository {
    /// `HEAD` of a manifest by tag or digest; `None` if it does not exist.
    pub async fn head_manifest(&self, reference: &str) -> Result<Option<ManifestInfo>> {
        check_reference(reference)?;
        let host = self.host().await?;
        let url = self.url(&host, &format!("manifests/{reference}"));
        let request = Request::new(Method::HEAD, url, self.pull_scopes())
            .header(http::header::ACCEPT, ACCEPT)?;
        let response = self.client().send(&host, request).await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let response = expect_status(&Method::HEAD, response, &[StatusCode::OK]).await?;
        Ok(Some(ManifestInfo {
            digest: content_digest(&response),
            media_type: media_type_header(&response),
            size: header_str(&response, "content-length").and_then(|v| v.parse().ok()),
        }))
    }

    /// Fetches a manifest by tag or digest, verified.
    pub async fn get_manifest(&self, reference: &str) -> Result<Manifest> {
        let requested = check_reference(reference)?;
        let host = self.host().await?;
        let url = self.url(&host, &format!("manifests/{reference}"));
        let request = Request::new(Method::GET, url.clone(), self.pull_scopes())
            .header(http::header::ACCEPT, ACCEPT)?;
        let response = self.client().send(&host, request).await?;
        let response = expect_status(&Method::GET, response, &[StatusCode::OK]).await?;
        let announced = content_digest(&response);
        let header_type = media_type_header(&response);
        let limit = self.client().options().max_manifest_size;
        let bytes = match read_limited(response, limit).await {
            Ok(bytes) => Bytes::from(bytes),
            Err(Some(e)) => return Err(ClientError::transport(&Method::GET, url.as_str(), e)),
            Err(None) => {
                return Err(ClientError::ManifestTooLarge {
                    url: url.to_string(),
                    limit,
                });
            }
        };
        let what = || format!("manifest {}/{}:{reference}", self.registry(), self.name());
        for expected in requested.iter().chain(announced.iter()) {
            let actual = Digest::of(expected.algorithm(), &bytes);
            if &actual != expected {
                return Err(ClientError::DigestMismatch {
                    what: what(),
                    expected: expected.clone(),
                    actual,
                });
            }
        }
        let digest = requested
            .or(announced)
            .unwrap_or_else(|| Digest::of(Algorithm::Sha256, &bytes));
        let media_type = match header_type.filter(|t| media_type::is_manifest(t)) {
            Some(t) => t,
            None => {
                ParsedManifest::parse(&bytes, None)
                    .map_err(|e| ClientError::protocol(&url, format!("{}: {e}", what())))?
                    .media_type
            }
        };
        Ok(Manifest {
            bytes,
            media_type,
            digest,
        })
    }

    /// Pushes manifest `bytes` exactly, under a tag or its digest. Returns
    /// its digest (sha256, or the algorithm of the digest pushed by).
    pub async fn put_manifest(
        &self,
        reference: &str,
        media_type: &str,
        bytes: Bytes,
    ) -> Result<Digest> {
        self.put_manifest_answer(reference, media_type, bytes)
            .await
            .map(|(digest, _)| digest)
    }

    /// Pushes a manifest that has a `subject` (a signature, an SBOM) by its
    /// digest, so that it can be found as a referrer of that subject
    /// (distribution-spec "Pushing Manifests with Subject"): a registry
    /// with the referrers API says it indexed it with `OCI-Subject`; on one
    /// without it, the referrers tag schema's index (tag `<alg>-<hex>` of the
    /// subject) gets a descriptor of it, as clients that read the fallback
    /// (cosign, oras, notation, ferry) expect.
    pub async fn put_referrer(&self, media_type: &str, bytes: Bytes) -> Result<Digest> {
        let parsed = ParsedManifest::parse(&bytes, Some(media_type))
            .map_err(|e| ClientError::InvalidArgument(format!("referrer manifest: {e}")))?;
        let Some(subject) = parsed.subject.as_ref() else {
            return Err(ClientError::InvalidArgument(
                "a referrer manifest names its subject".into(),
            ));
        };
        let size = bytes.len() as u64;
        let digest = Digest::sha256(&bytes);
        let (digest, indexed) = self
            .put_manifest_answer(&digest.to_string(), media_type, bytes)
            .await?;
        if indexed {
            return Ok(digest);
        }
        let tag = referrers_tag(&subject.digest);
        let mut index = match self.get_manifest(&tag).await {
            Ok(index) => serde_json::from_slice::<serde_json::Value>(&index.bytes)
                .ok()
                .filter(|v| v["manifests"].is_array())
                .ok_or_else(|| {
                    ClientError::InvalidArgument(format!(
                        "tag {tag} holds something other than a referrers index; not touching it"
                    ))
                })?,
            Err(e) if e.status() == Some(StatusCode::NOT_FOUND) => serde_json::json!({
                "schemaVersion": 2,
                "mediaType": media_type::OCI_INDEX,
                "manifests": [],
            }),
            Err(e) => return Err(e),
        };
        let listed = index["manifests"]
            .as_array()
            .expect("checked above")
            .iter()
            .any(|d| d["digest"] == digest.to_string());
        if !listed {
            let descriptor = parsed.referrer_descriptor(digest.clone(), size);
            index["manifests"]
                .as_array_mut()
                .expect("checked above")
                .push(serde_json::to_value(descriptor).expect("descriptor serializes"));
            let body = serde_json::to_vec(&index).expect("index serializes");
            self.put_manifest(&tag, media_type::OCI_INDEX, Bytes::from(body))
                .await?;
        }
        Ok(digest)
    }

    /// PUTs a manifest; returns its digest and whether the registry
    /// answered with `OCI-Subject` (it indexed the manifest's subject).
    async fn put_manifest_answer(
        &self,
        reference: &str,
        media_type: &str,
        bytes: Bytes,
    ) -> Result<(Digest, bool)> {
        let by_digest = check_reference(reference)?;
        let algorithm = by_digest
            .as_ref()
            .map_or(Algorithm::Sha256, Digest::algorithm);
        let digest = Digest::of(algorithm, &bytes);
        if let Some(expected) = &by_digest
            && expected != &digest
        {
            return Err(ClientError::InvalidArgument(format!(
                "manifest bytes hash to {digest}, not to the digest {expected} they are pushed by"
            )));
        }
        let host = self.host().await?;
        let url = self.url(&host, &format!("manifests/{reference}"));
        let request = Request::new(Method::PUT, url.clone(), self.push_scopes())
            .header(http::header::CONTENT_TYPE, media_type)?
            .body(bytes);
        let response = self.client().send(&host, request).await?;
        let response = expect_status(&Method::PUT, response, &[StatusCode::CREATED]).await?;
        if let Some(reported) = content_digest(&response)
            && reported.algorithm() == algorithm
            && reported != digest
        {
            return Err(ClientError::DigestMismatch {
                what: format!("manifest pushed to {url}"),
                expected: digest,
                actual: reported,
            });
        }
        let indexed = response.headers().contains_key("oci-subject");
        Ok((digest, indexed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references() {
        assert_eq!(check_reference("v1.0").unwrap(), None);
        let d = Digest::sha256(b"x");
        assert_eq!(check_reference(&d.to_string()).unwrap(), Some(d));
        assert!(check_reference("sha256:short").is_err());
        assert!(check_reference("bad tag").is_err());
        assert!(check_reference("").is_err());
    }
}
