//! Walking the content graph of an entry: an index names manifests, a
//! manifest names a config and layers. Used to list every blob an entry
//! needs, when writing a bundle and when checking one.

use std::collections::BTreeSet;

use ferry_oci::{Descriptor, Digest, ParsedManifest, media_type};

/// Something that can hand out a manifest's bytes by digest.
pub trait ManifestSource {
    fn manifest_bytes(&self, digest: &Digest) -> std::io::Result<Option<Vec<u8>>>;
}

#[derive(Debug, thiserror::Error)]
pub enum GraphError {
    #[error("manifest {0} is not available")]
    Missing(Digest),
    #[error("manifest {digest} is invalid: {source}")]
    Invalid {
        digest: Digest,
        source: ferry_oci::ManifestError,
    },
    #[error("reading manifest {digest}: {source}")]
    Io {
        digest: Digest,
        source: std::io::Error,
    },
}

/// Every blob reachable from `root` (the root included), in a stable order.
pub fn reachable(
    source: &dyn ManifestSource,
    root: &Descriptor,
) -> Result<BTreeSet<Digest>, GraphError> {
    let mut seen = BTreeSet::new();
    let mut stack = vec![root.clone()];
    while let Some(desc) = stack.pop() {
        if !seen.insert(desc.digest.clone()) {
            continue;
        }
        if !media_type::is_manifest(&desc.media_type) {
            continue;
        }
        let bytes = source
            .manifest_bytes(&desc.digest)
            .map_err(|source| GraphError::Io {
                digest: desc.digest.clone(),
                source,
            })?
            .ok_or_else(|| GraphError::Missing(desc.digest.clone()))?;
        let parsed = ParsedManifest::parse(&bytes, Some(&desc.media_type)).map_err(|source| {
            GraphError::Invalid {
                digest: desc.digest.clone(),
                source,
            }
        })?;
        stack.extend(parsed.manifests.iter().cloned());
        for blob in parsed.blob_references() {
            seen.insert(blob.digest.clone());
        }
    }
    Ok(seen)
}
