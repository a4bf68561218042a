//! Walking the content graph of an entry: an index names manifests, a
//! manifest names a config and layers. Used to list every blob an entry
//! needs (writing, verifying) and to push manifests children first.

use std::collections::{BTreeSet, HashSet};

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

/// An entry's content.
#[derive(Debug, Clone, Default)]
pub struct Graph {
    /// Manifests and indexes, children before the parents that name them
    /// (the order a registry accepts them in); the root is last.
    pub manifests: Vec<(Descriptor, Vec<u8>)>,
    /// Configs and layers, each once.
    pub blobs: Vec<Descriptor>,
}

impl Graph {
    /// Every digest in the graph.
    pub fn digests(&self) -> BTreeSet<Digest> {
        self.manifests
            .iter()
            .map(|(d, _)| d.digest.clone())
            .chain(self.blobs.iter().map(|d| d.digest.clone()))
            .collect()
    }
}

/// Walks the graph under `root`.
pub fn walk(source: &dyn ManifestSource, root: &Descriptor) -> Result<Graph, GraphError> {
    let mut graph = Graph::default();
    let mut seen = HashSet::new();
    visit(source, root, &mut seen, &mut graph)?;
    Ok(graph)
}

fn visit(
    source: &dyn ManifestSource,
    desc: &Descriptor,
    seen: &mut HashSet<Digest>,
    graph: &mut Graph,
) -> Result<(), GraphError> {
    if !seen.insert(desc.digest.clone()) {
        return Ok(());
    }
    if !media_type::is_manifest(&desc.media_type) {
        graph.blobs.push(desc.clone());
        return Ok(());
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
    for child in &parsed.manifests {
        visit(source, child, seen, graph)?;
    }
    for blob in parsed.blob_references() {
        if seen.insert(blob.digest.clone()) {
            graph.blobs.push(blob.clone());
        }
    }
    graph.manifests.push((desc.clone(), bytes));
    Ok(())
}

/// Every blob reachable from `root` (the root included).
pub fn reachable(
    source: &dyn ManifestSource,
    root: &Descriptor,
) -> Result<BTreeSet<Digest>, GraphError> {
    Ok(walk(source, root)?.digests())
}
