//! Reading an OCI image layout directory (image-spec "Image Layout"):
//! `oci-layout`, `index.json` and `blobs/<alg>/<hex>`. Blob paths are
//! built from validated digests only, so nothing outside the layout is
//! ever read.

use std::path::{Path, PathBuf};

use crate::Digest;
use crate::manifest::Descriptor;
use crate::media_type::ANNOTATION_REF_NAME;

#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    #[error("{path} is not an OCI image layout (no oci-layout file)")]
    NotALayout { path: String },
    #[error("reading {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is invalid: {message}")]
    Invalid { path: String, message: String },
}

#[derive(Debug, serde::Deserialize)]
struct Index {
    #[serde(default)]
    manifests: Vec<Descriptor>,
}

/// An opened layout.
#[derive(Debug, Clone)]
pub struct OciLayout {
    root: PathBuf,
    /// The descriptors of `index.json`, in order.
    pub manifests: Vec<Descriptor>,
}

impl OciLayout {
    pub fn open(root: &Path) -> Result<OciLayout, LayoutError> {
        if !root.join("oci-layout").is_file() {
            return Err(LayoutError::NotALayout {
                path: root.display().to_string(),
            });
        }
        let index_path = root.join("index.json");
        let raw = std::fs::read(&index_path).map_err(|source| LayoutError::Io {
            path: index_path.display().to_string(),
            source,
        })?;
        let index: Index = serde_json::from_slice(&raw).map_err(|e| LayoutError::Invalid {
            path: index_path.display().to_string(),
            message: e.to_string(),
        })?;
        Ok(OciLayout {
            root: root.to_path_buf(),
            manifests: index.manifests,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root
            .join("blobs")
            .join(digest.algorithm().as_str())
            .join(digest.hex())
    }

    /// A whole blob, `None` if the layout lacks it.
    pub fn read_blob(&self, digest: &Digest) -> std::io::Result<Option<Vec<u8>>> {
        match std::fs::read(self.blob_path(digest)) {
            Ok(data) => Ok(Some(data)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The descriptor named `name` (`org.opencontainers.image.ref.name`).
    pub fn find(&self, name: &str) -> Option<&Descriptor> {
        self.manifests
            .iter()
            .find(|d| d.annotation(ANNOTATION_REF_NAME) == Some(name))
    }

    /// Every named descriptor, with its name.
    pub fn named(&self) -> impl Iterator<Item = (&str, &Descriptor)> {
        self.manifests
            .iter()
            .filter_map(|d| d.annotation(ANNOTATION_REF_NAME).map(|n| (n, d)))
    }
}
