//! `ferry bundle inspect`: what a bundle carries, read from its manifest
//! and manifests only (no blob is read), so it is instant on any size.

use std::collections::BTreeMap;

use ferry_oci::Digest;
use serde::Serialize;

use crate::format::EntryKind;
use crate::graph;
use crate::reader::Bundle;

#[derive(Debug, Clone, Serialize)]
pub struct Inspection {
    pub bundle: String,
    /// The spec's `name`, if it had one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub tool: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    pub signed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base: Option<String>,
    pub entries: Vec<EntrySummary>,
    /// Bytes of the bundle file(s).
    pub file_bytes: u64,
    /// Unique blobs stored, and their bytes.
    pub blobs: usize,
    pub blob_bytes: u64,
    /// What the stored blobs would take if each entry carried its own
    /// copy of the ones it shares with others.
    pub bytes_without_dedup: u64,
    /// Blobs the entries need from the base bundle (left out of this one),
    /// and their bytes.
    pub base_blobs: usize,
    pub base_bytes: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct EntrySummary {
    pub kind: EntryKind,
    pub source: String,
    pub target: String,
    pub digest: Digest,
    pub media_type: String,
    pub platforms: Vec<String>,
    /// Bytes of everything the entry needs.
    pub bytes: u64,
    pub blobs: usize,
}

pub fn inspect(bundle: &Bundle) -> Result<Inspection, graph::GraphError> {
    let stored: BTreeMap<&Digest, u64> = bundle
        .manifest
        .blobs
        .iter()
        .map(|b| (&b.digest, b.size))
        .collect();
    let in_base: BTreeMap<&Digest, u64> = bundle
        .manifest
        .base_blobs
        .iter()
        .map(|b| (&b.digest, b.size))
        .collect();
    let mut entries = Vec::new();
    let mut without_dedup = 0;
    for entry in &bundle.manifest.entries {
        let digests = graph::reachable(bundle, &entry.descriptor)?;
        let stored_bytes: u64 = digests.iter().filter_map(|d| stored.get(d)).sum();
        let bytes = stored_bytes + digests.iter().filter_map(|d| in_base.get(d)).sum::<u64>();
        without_dedup += stored_bytes;
        let target = match &entry.tag {
            Some(tag) => format!("{}:{tag}", entry.repository),
            None => format!("{}@{}", entry.repository, entry.descriptor.digest),
        };
        entries.push(EntrySummary {
            kind: entry.kind,
            source: entry.source.clone(),
            target,
            digest: entry.descriptor.digest.clone(),
            media_type: entry.descriptor.media_type.clone(),
            platforms: entry.platforms.clone(),
            bytes,
            blobs: digests.len(),
        });
    }
    Ok(Inspection {
        bundle: bundle.name().to_string(),
        name: bundle
            .manifest
            .spec
            .get("name")
            .and_then(|n| n.as_str())
            .map(str::to_string),
        tool: bundle.manifest.tool.clone(),
        created: bundle.manifest.created.clone(),
        signed: bundle.signature.is_some(),
        base: bundle
            .manifest
            .base
            .as_ref()
            .map(|b| format!("{} ({})", b.name, b.manifest_digest)),
        entries,
        file_bytes: bundle.container().len(),
        blobs: bundle.manifest.blobs.len(),
        blob_bytes: bundle.manifest.blobs.iter().map(|b| b.size).sum(),
        bytes_without_dedup: without_dedup,
        base_blobs: bundle.manifest.base_blobs.len(),
        base_bytes: in_base.values().sum(),
    })
}
