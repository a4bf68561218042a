//! The store's errors. Each client-caused variant maps to one
//! distribution-spec error code in ferry-registry; `Io` is the only
//! server-side failure.

use ferry_oci::{Digest, ManifestError};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("invalid repository name {0:?}")]
    NameInvalid(String),
    #[error("invalid tag {0:?}")]
    TagInvalid(String),
    #[error("repository {0:?} is not known")]
    NameUnknown(String),
    #[error("blob {0} is not known")]
    BlobUnknown(Digest),
    #[error("upload {0:?} is not known")]
    UploadUnknown(String),
    #[error("upload {0:?} is busy with another request")]
    UploadBusy(String),
    #[error("chunk starts at byte {given}, but the upload has {expected} bytes")]
    UploadOutOfOrder { expected: u64, given: u64 },
    #[error("content digest is {actual}, not the {expected} that was given")]
    DigestMismatch { expected: Digest, actual: Digest },
    #[error("content is {actual} bytes, not the {expected} that were given")]
    SizeMismatch { expected: u64, actual: u64 },
    #[error("manifest {0} is not known")]
    ManifestUnknown(String),
    #[error("manifest is invalid: {0}")]
    ManifestInvalid(#[from] ManifestError),
    #[error("manifest references {0}, which is not in the repository")]
    ManifestBlobUnknown(Digest),
    #[error("manifest is {size} bytes, over the {limit}-byte limit")]
    ManifestTooLarge { size: u64, limit: u64 },
    #[error("{0} is not a manifest digest (it is a blob)")]
    NotAManifest(Digest),
    #[error("I/O error on {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Attaches the path to an I/O error: `.at(&path)?`.
pub trait IoContext<T> {
    fn at(self, path: &std::path::Path) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, path: &std::path::Path) -> Result<T> {
        self.map_err(|source| StoreError::Io {
            path: path.display().to_string(),
            source,
        })
    }
}
