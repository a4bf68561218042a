//! Content ferry packs into OCI form itself: plain files, Kubernetes
//! manifests and OS images as ORAS-style artifacts (DESIGN.md "Everything
//! is an OCI artifact"; image-spec 1.1 "Guidelines for Artifact Usage":
//! `artifactType` set, the empty config `{}`, one layer per file titled
//! with `org.opencontainers.image.title`), so `oras pull` gets the files
//! back under their names.

use std::collections::BTreeMap;

use ferry_oci::{Descriptor, Digest, media_type};

use crate::cache::ContentCache;
use crate::sources::{RootManifest, SourceError};

/// The empty JSON object, the config of an artifact without one.
pub const EMPTY_CONFIG: &[u8] = b"{}";

/// One file of an artifact.
#[derive(Debug, Clone)]
pub struct FileLayer {
    pub title: String,
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
}

/// Writes the manifest of an artifact holding `files` into the cache.
pub fn file_artifact(
    cache: &ContentCache,
    artifact_type: &str,
    files: &[FileLayer],
    what: &str,
) -> Result<RootManifest, SourceError> {
    let empty = cache.put_bytes(EMPTY_CONFIG)?;
    let layers: Vec<Descriptor> = files
        .iter()
        .map(|f| {
            let mut d = Descriptor::new(f.media_type.clone(), f.digest.clone(), f.size);
            d.annotations = Some(BTreeMap::from([(
                media_type::ANNOTATION_TITLE.to_string(),
                f.title.clone(),
            )]));
            d
        })
        .collect();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": {
            "mediaType": media_type::OCI_EMPTY,
            "digest": empty,
            "size": EMPTY_CONFIG.len(),
            "data": "e30=",
        },
        "layers": layers,
    });
    put_manifest(cache, &manifest, what)
}

/// Stores a manifest built as JSON and returns it as a root.
pub fn put_manifest(
    cache: &ContentCache,
    manifest: &serde_json::Value,
    what: &str,
) -> Result<RootManifest, SourceError> {
    let bytes = serde_json::to_vec(manifest).expect("manifest serializes");
    let digest = cache.put_bytes(&bytes)?;
    RootManifest::new(digest, bytes, what)
}

/// The media type of a file's layer, from its name, for OS images.
pub fn os_image_media_type(name: &str) -> &'static str {
    let lower = name.to_ascii_lowercase();
    if lower.ends_with(".iso") {
        "application/x-iso9660-image"
    } else {
        "application/octet-stream"
    }
}
