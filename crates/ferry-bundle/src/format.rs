//! The bundle format (../shared/DESIGN.md, "Bundle file"): a POSIX tar
//! holding an OCI image layout plus ferry's own manifest.
//!
//! ```text
//! oci-layout
//! index.json            one descriptor per entry, ref.name = source reference
//! ferry/bundle.json     BundleManifest: spec echo, tool, entries, blobs, base
//! ferry/signature       optional minisign signature of ferry/bundle.json
//! blobs/<alg>/<hex>     every blob once
//! ```
//!
//! `ferry/bundle.json` names the digest of `index.json` and the digest and
//! size of every blob, so a signature over it covers the whole bundle.
//! Members come in this order, blobs sorted by digest, with fixed
//! metadata, so the same inputs give the same bytes.

use ferry_oci::{Descriptor, Digest};
use serde::{Deserialize, Serialize};

pub const OCI_LAYOUT: &str = "oci-layout";
pub const OCI_LAYOUT_CONTENT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;
pub const INDEX: &str = "index.json";
pub const MANIFEST: &str = "ferry/bundle.json";
pub const SIGNATURE: &str = "ferry/signature";
pub const SCHEMA_VERSION: u32 = 1;

/// The tar member holding a blob.
pub fn blob_member(digest: &Digest) -> String {
    format!("blobs/{}/{}", digest.algorithm(), digest.hex())
}

/// `ferry/bundle.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BundleManifest {
    pub schema_version: u32,
    /// `ferry <version>` that wrote it.
    pub tool: String,
    /// RFC 3339; only when the creator fixed it (`SOURCE_DATE_EPOCH` or
    /// `--created`), so that identical inputs give identical bundles.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// The spec file the bundle was made from, as JSON.
    #[serde(default)]
    pub spec: serde_json::Value,
    /// Digest and size of `index.json`.
    pub index: BlobRecord,
    /// For a delta bundle: the bundle it builds on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<BaseBundle>,
    pub entries: Vec<Entry>,
    /// Every blob stored in this bundle, sorted by digest.
    pub blobs: Vec<BlobRecord>,
    /// Blobs the entries need that only the base bundle carries.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub base_blobs: Vec<BlobRecord>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlobRecord {
    pub digest: Digest,
    pub size: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BaseBundle {
    /// Digest of the base bundle's `ferry/bundle.json`.
    pub manifest_digest: Digest,
    /// The base bundle's file name when this one was made, for messages.
    pub name: String,
}

/// What an entry is; decides how it is pushed and shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EntryKind {
    Image,
    Artifact,
    Chart,
    File,
    Manifests,
    OsImage,
    /// A manifest whose `subject` is one of another entry's manifests (a
    /// signature, an SBOM, an attestation), or one of cosign's
    /// `sha256-<hex>.sig|.att|.sbom` tags: pushed into its subject's
    /// repository after it.
    Referrer,
}

impl EntryKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::Image => "image",
            EntryKind::Artifact => "artifact",
            EntryKind::Chart => "chart",
            EntryKind::File => "file",
            EntryKind::Manifests => "manifests",
            EntryKind::OsImage => "os-image",
            EntryKind::Referrer => "referrer",
        }
    }
}

/// One thing the bundle carries: an image (or index), chart, file,
/// manifests or artifact, rooted at one manifest or index.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Entry {
    pub kind: EntryKind,
    /// Where it came from, as the spec named it (`docker.io/library/nginx:1.27`,
    /// `https://charts.example/index.yaml#app@1.2.3`, `./files/tool.tgz`).
    pub source: String,
    /// Repository path it is pushed to under the target's prefix
    /// (`library/nginx`).
    pub repository: String,
    /// Tag it is pushed with; entries pinned by digest only have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// The root manifest or index.
    pub descriptor: Descriptor,
    /// Platforms kept (`linux/amd64`, ...), empty for single-platform content.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub platforms: Vec<String>,
}

impl Entry {
    /// The reference written as `org.opencontainers.image.ref.name` in
    /// `index.json`: the source reference.
    pub fn ref_name(&self) -> &str {
        &self.source
    }
}
