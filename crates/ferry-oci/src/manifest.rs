//! Reading a manifest or index once to learn what it points at.
//!
//! A registry must store manifest bytes exactly as pushed (their digest is
//! their identity), so ferry never re-serializes them. It parses them into
//! [`ParsedManifest`], a flavour-neutral view (OCI image manifest, OCI
//! index, Docker schema 2 manifest or manifest list) that lists the
//! descriptors the manifest references and its `subject` (for the
//! referrers API, distribution-spec 1.1 "Listing Referrers").

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::media_type;

/// An OCI content descriptor (image-spec "Descriptors").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
}

impl Descriptor {
    pub fn new(media_type: impl Into<String>, digest: Digest, size: u64) -> Self {
        Descriptor {
            media_type: media_type.into(),
            digest,
            size,
            artifact_type: None,
            urls: Vec::new(),
            annotations: None,
            platform: None,
        }
    }

    /// The value of one annotation, if set.
    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.annotations.as_ref()?.get(key).map(String::as_str)
    }
}

/// The platform a manifest in an index is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(
        default,
        rename = "os.version",
        skip_serializing_if = "Option::is_none"
    )]
    pub os_version: Option<String>,
    #[serde(
        default,
        rename = "os.features",
        skip_serializing_if = "Option::is_none"
    )]
    pub os_features: Option<Vec<String>>,
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// Why a manifest body was refused.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("manifest is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("manifest schemaVersion must be 2, found {0}")]
    SchemaVersion(i64),
    #[error("manifest mediaType {body:?} does not match Content-Type {header:?}")]
    MediaTypeMismatch { body: String, header: String },
    #[error("unsupported manifest media type {0:?}")]
    UnsupportedMediaType(String),
    #[error("image manifest has no config descriptor")]
    MissingConfig,
}

/// What the registry and the bundle need to know about a manifest.
#[derive(Debug, Clone)]
pub struct ParsedManifest {
    /// The effective media type: the body's `mediaType`, else the
    /// Content-Type it was pushed with, else inferred from its shape.
    pub media_type: String,
    pub artifact_type: Option<String>,
    pub config: Option<Descriptor>,
    pub layers: Vec<Descriptor>,
    /// Child manifests of an index.
    pub manifests: Vec<Descriptor>,
    pub subject: Option<Descriptor>,
    pub annotations: Option<BTreeMap<String, String>>,
}

/// The fields shared by every manifest flavour; unknown ones are ignored,
/// as the image-spec requires of consumers.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawManifest {
    schema_version: Option<i64>,
    media_type: Option<String>,
    artifact_type: Option<String>,
    config: Option<Descriptor>,
    layers: Option<Vec<Descriptor>>,
    manifests: Option<Vec<Descriptor>>,
    subject: Option<Descriptor>,
    annotations: Option<BTreeMap<String, String>>,
}

impl ParsedManifest {
    /// Parses `body`, pushed with Content-Type `content_type` (if any).
    pub fn parse(body: &[u8], content_type: Option<&str>) -> Result<Self, ManifestError> {
        let raw: RawManifest = serde_json::from_slice(body)?;
        match raw.schema_version {
            Some(2) => {}
            Some(v) => return Err(ManifestError::SchemaVersion(v)),
            None => return Err(ManifestError::SchemaVersion(0)),
        }
        // Content-Type may carry parameters; only the type itself matters.
        let header = content_type
            .map(|ct| ct.split(';').next().unwrap_or("").trim())
            .filter(|ct| media_type::is_manifest(ct));
        let media_type = match (&raw.media_type, header) {
            (Some(body), Some(header)) if body != header => {
                return Err(ManifestError::MediaTypeMismatch {
                    body: body.clone(),
                    header: header.to_string(),
                });
            }
            (Some(body), _) => body.clone(),
            (None, Some(header)) => header.to_string(),
            (None, None) if raw.manifests.is_some() => media_type::OCI_INDEX.to_string(),
            (None, None) => media_type::OCI_MANIFEST.to_string(),
        };
        if !media_type::is_manifest(&media_type) {
            return Err(ManifestError::UnsupportedMediaType(media_type));
        }
        let is_index = media_type::is_index(&media_type);
        if !is_index && raw.config.is_none() {
            return Err(ManifestError::MissingConfig);
        }
        Ok(ParsedManifest {
            media_type,
            artifact_type: raw.artifact_type,
            config: if is_index { None } else { raw.config },
            layers: if is_index {
                Vec::new()
            } else {
                raw.layers.unwrap_or_default()
            },
            manifests: if is_index {
                raw.manifests.unwrap_or_default()
            } else {
                Vec::new()
            },
            subject: raw.subject,
            annotations: raw.annotations,
        })
    }

    pub fn is_index(&self) -> bool {
        media_type::is_index(&self.media_type)
    }

    /// The artifact type the referrers API reports: `artifactType`, else
    /// the config's media type (distribution-spec 1.1).
    pub fn effective_artifact_type(&self) -> Option<&str> {
        self.artifact_type
            .as_deref()
            .or(self.config.as_ref().map(|c| c.media_type.as_str()))
    }

    /// How the referrers API lists this manifest (distribution-spec 1.1
    /// "Listing Referrers"): its media type, digest and size, its effective
    /// artifact type and its annotations.
    pub fn referrer_descriptor(&self, digest: Digest, size: u64) -> Descriptor {
        Descriptor {
            artifact_type: self.effective_artifact_type().map(str::to_string),
            annotations: self.annotations.clone(),
            ..Descriptor::new(self.media_type.clone(), digest, size)
        }
    }

    /// Blobs this manifest needs in the same repository: config and layers,
    /// except foreign layers that live at their `urls`.
    pub fn blob_references(&self) -> impl Iterator<Item = &Descriptor> {
        self.config
            .iter()
            .chain(self.layers.iter().filter(|l| l.urls.is_empty()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn oci_manifest() {
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"{}","digest":"{D}","size":0}},"layers":[{{"mediaType":"{}","digest":"{D}","size":0}}],"subject":{{"mediaType":"{}","digest":"{D}","size":2}}}}"#,
            media_type::OCI_MANIFEST,
            media_type::OCI_CONFIG,
            media_type::OCI_LAYER_GZIP,
            media_type::OCI_MANIFEST
        );
        let m = ParsedManifest::parse(body.as_bytes(), Some(media_type::OCI_MANIFEST)).unwrap();
        assert_eq!(m.blob_references().count(), 2);
        assert!(m.subject.is_some());
        assert_eq!(m.effective_artifact_type(), Some(media_type::OCI_CONFIG));
    }

    #[test]
    fn index_inferred_and_mismatch_refused() {
        let body = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{}","digest":"{D}","size":1,"platform":{{"architecture":"arm64","os":"linux","variant":"v8"}}}}]}}"#,
            media_type::OCI_MANIFEST
        );
        let m = ParsedManifest::parse(body.as_bytes(), None).unwrap();
        assert!(m.is_index());
        assert_eq!(
            m.manifests[0].platform.as_ref().unwrap().to_string(),
            "linux/arm64/v8"
        );
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","manifests":[]}}"#,
            media_type::OCI_INDEX
        );
        assert!(matches!(
            ParsedManifest::parse(body.as_bytes(), Some(media_type::DOCKER_MANIFEST)),
            Err(ManifestError::MediaTypeMismatch { .. })
        ));
    }

    #[test]
    fn garbage_refused() {
        assert!(ParsedManifest::parse(b"{not json", None).is_err());
        assert!(ParsedManifest::parse(b"{\"schemaVersion\":1}", None).is_err());
        assert!(ParsedManifest::parse(b"{\"schemaVersion\":2}", None).is_err());
        let bad_digest = r#"{"schemaVersion":2,"config":{"mediaType":"x","digest":"sha256:zz","size":1},"layers":[]}"#;
        assert!(ParsedManifest::parse(bad_digest.as_bytes(), None).is_err());
    }
}
