//! Resolving an entry: from its root manifest or index, every manifest
//! is read (from the cache, else the origin, and kept in the cache), the
//! platform filter is applied, and the blobs the entry needs are listed
//! for fetching.
//!
//! Platform filtering (image-spec "Image Index"): when every child of an
//! index passes, the index is kept byte for byte, so its digest is the
//! upstream one. Otherwise a new index is written holding only the
//! children that pass, in the source's order, with every other field of
//! the index and of each kept descriptor unchanged. Docker's attestation
//! manifests (`unknown/unknown`, annotated `vnd.docker.reference.type:
//! attestation-manifest`) go with the image they describe. A
//! single-platform image is checked against the filter through its config.

use std::collections::{BTreeMap, HashSet};

use ferry_oci::progress::NoProgress;
use ferry_oci::{Descriptor, Digest, ParsedManifest, media_type};

use crate::cache::ContentCache;
use crate::sources::{MANIFEST_LIMIT, Origin, RootManifest, SourceError};
use crate::spec::PlatformFilter;

const ATTESTATION_TYPE: &str = "vnd.docker.reference.type";
const ATTESTATION_DIGEST: &str = "vnd.docker.reference.digest";

/// An entry whose manifests are all in the cache.
#[derive(Clone)]
pub struct Resolved {
    /// The root to record (the source's, or a filtered index).
    pub root: Descriptor,
    /// Platforms kept, for a multi-platform root.
    pub platforms: Vec<String>,
    /// Every blob the entry needs, manifests included, with its size.
    pub reachable: BTreeMap<Digest, u64>,
    /// The non-manifest blobs (configs, layers), which may still have to
    /// be fetched from `origin`.
    pub blobs: Vec<Descriptor>,
    pub origin: Origin,
}

/// Resolves the graph under `root`, keeping the platforms `filter` lets
/// through (empty: all).
pub async fn resolve(
    origin: Origin,
    root: RootManifest,
    filter: &[PlatformFilter],
    cache: &ContentCache,
) -> Result<Resolved, SourceError> {
    let what = origin.describe();
    let invalid = |digest: &Digest, e: ferry_oci::ManifestError| SourceError::Invalid {
        source_name: what.clone(),
        message: format!("manifest {digest} is invalid: {e}"),
    };
    let filtering = !filter.is_empty() && !filter.iter().any(|f| f.all);
    let digest = root.descriptor.digest.clone();
    cache.put(&digest, Some(root.bytes.len() as u64), &mut &root.bytes[..])?;
    let parsed = ParsedManifest::parse(&root.bytes, Some(&root.descriptor.media_type))
        .map_err(|e| invalid(&digest, e))?;

    let mut resolved = Resolved {
        root: root.descriptor.clone(),
        platforms: Vec::new(),
        reachable: BTreeMap::new(),
        blobs: Vec::new(),
        origin: origin.clone(),
    };
    let mut stack: Vec<Descriptor> = Vec::new();
    if parsed.is_index() {
        let keep = if filtering {
            kept_children(&parsed.manifests, filter).ok_or_else(|| SourceError::Platform {
                source_name: what.clone(),
                message: format!(
                    "has no manifest for {} (it has {})",
                    join(filter),
                    join(&available(&parsed.manifests))
                ),
            })?
        } else {
            vec![true; parsed.manifests.len()]
        };
        if keep.iter().all(|k| *k) {
            resolved.reachable.insert(digest, root.descriptor.size);
        } else {
            let bytes = filtered_index(&root.bytes, &keep).map_err(|e| SourceError::Invalid {
                source_name: what.clone(),
                message: format!("index {digest}: {e}"),
            })?;
            let new_digest = cache.put_bytes(&bytes)?;
            resolved.root = Descriptor::new(
                root.descriptor.media_type.clone(),
                new_digest.clone(),
                bytes.len() as u64,
            );
            resolved.root.artifact_type = root.descriptor.artifact_type.clone();
            resolved.reachable.insert(new_digest, bytes.len() as u64);
        }
        let kept: Vec<&Descriptor> = parsed
            .manifests
            .iter()
            .zip(&keep)
            .filter(|(_, k)| **k)
            .map(|(d, _)| d)
            .collect();
        for child in &kept {
            if let Some(p) = child.platform.as_ref().filter(|p| !is_unknown(p)) {
                let name = p.to_string();
                if !resolved.platforms.contains(&name) {
                    resolved.platforms.push(name);
                }
            }
        }
        stack.extend(kept.into_iter().cloned());
    } else {
        resolved
            .reachable
            .insert(digest.clone(), root.descriptor.size);
        collect_blobs(&parsed, &mut resolved);
        if filtering {
            check_single_platform(&origin, &parsed, filter, cache).await?;
        }
    }

    let mut seen = HashSet::new();
    while let Some(descriptor) = stack.pop() {
        if !seen.insert(descriptor.digest.clone()) {
            continue;
        }
        if !media_type::is_manifest(&descriptor.media_type) {
            resolved
                .reachable
                .insert(descriptor.digest.clone(), descriptor.size);
            resolved.blobs.push(descriptor);
            continue;
        }
        let bytes = origin.manifest(&descriptor, cache).await?;
        resolved
            .reachable
            .insert(descriptor.digest.clone(), bytes.len() as u64);
        let parsed = ParsedManifest::parse(&bytes, Some(&descriptor.media_type))
            .map_err(|e| invalid(&descriptor.digest, e))?;
        stack.extend(parsed.manifests.iter().cloned());
        collect_blobs(&parsed, &mut resolved);
    }
    Ok(resolved)
}

fn collect_blobs(parsed: &ParsedManifest, resolved: &mut Resolved) {
    for blob in parsed.blob_references() {
        if resolved
            .reachable
            .insert(blob.digest.clone(), blob.size)
            .is_none()
        {
            resolved.blobs.push(blob.clone());
        }
    }
}

fn is_unknown(p: &ferry_oci::manifest::Platform) -> bool {
    p.os == "unknown" && p.architecture == "unknown"
}

/// Which children of an index to keep; `None` if no image passes.
fn kept_children(children: &[Descriptor], filter: &[PlatformFilter]) -> Option<Vec<bool>> {
    let mut keep: Vec<bool> = children
        .iter()
        .map(|c| {
            c.platform
                .as_ref()
                .is_some_and(|p| !is_unknown(p) && filter.iter().any(|f| f.matches(p)))
        })
        .collect();
    if !keep.iter().any(|k| *k) {
        return None;
    }
    let kept: HashSet<String> = children
        .iter()
        .zip(&keep)
        .filter(|(_, k)| **k)
        .map(|(c, _)| c.digest.to_string())
        .collect();
    for (child, k) in children.iter().zip(keep.iter_mut()) {
        if child.annotation(ATTESTATION_TYPE) == Some("attestation-manifest")
            && child
                .annotation(ATTESTATION_DIGEST)
                .is_some_and(|d| kept.contains(d))
        {
            *k = true;
        }
    }
    Some(keep)
}

/// The index `bytes` with only the kept children; everything else as it was.
fn filtered_index(bytes: &[u8], keep: &[bool]) -> Result<Vec<u8>, String> {
    let mut value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    let manifests = value
        .get_mut("manifests")
        .and_then(|m| m.as_array_mut())
        .ok_or("no manifests array")?;
    if manifests.len() != keep.len() {
        return Err("manifests changed while filtering".into());
    }
    let mut k = keep.iter();
    manifests.retain(|_| *k.next().expect("same length"));
    Ok(serde_json::to_vec(&value).expect("index serializes"))
}

fn available(children: &[Descriptor]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for p in children.iter().filter_map(|c| c.platform.as_ref()) {
        if !is_unknown(p) && !out.contains(&p.to_string()) {
            out.push(p.to_string());
        }
    }
    out
}

fn join<T: ToString>(items: &[T]) -> String {
    if items.is_empty() {
        return "no platform".into();
    }
    items
        .iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The platform a single image is for, from its config, must pass.
async fn check_single_platform(
    origin: &Origin,
    parsed: &ParsedManifest,
    filter: &[PlatformFilter],
    cache: &ContentCache,
) -> Result<(), SourceError> {
    let Some(config) = parsed.config.as_ref().filter(|c| {
        c.media_type == media_type::OCI_CONFIG || c.media_type == media_type::DOCKER_CONFIG
    }) else {
        return Ok(()); // an artifact: no platform to check
    };
    if cache.size(&config.digest)?.is_none() {
        origin.fetch_blob(config, cache, &NoProgress).await?;
    }
    let bytes = cache
        .read(&config.digest, MANIFEST_LIMIT)?
        .unwrap_or_default();
    #[derive(serde::Deserialize)]
    struct ImageConfig {
        #[serde(default)]
        os: String,
        #[serde(default)]
        architecture: String,
        #[serde(default)]
        variant: Option<String>,
    }
    let c: ImageConfig = serde_json::from_slice(&bytes).map_err(|e| SourceError::Invalid {
        source_name: origin.describe(),
        message: format!("image config {}: {e}", config.digest),
    })?;
    let platform = ferry_oci::manifest::Platform {
        architecture: c.architecture,
        os: c.os,
        variant: c.variant,
        os_version: None,
        os_features: None,
    };
    if filter.iter().any(|f| f.matches(&platform)) {
        Ok(())
    } else {
        Err(SourceError::Platform {
            source_name: origin.describe(),
            message: format!(
                "is a single-platform image for {platform}, not {}; set `platforms: [all]` on the entry to take it anyway",
                join(filter)
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn child(arch: &str, digest_byte: u8) -> Descriptor {
        let mut d = Descriptor::new(media_type::OCI_MANIFEST, Digest::sha256(&[digest_byte]), 10);
        d.platform = Some(ferry_oci::manifest::Platform {
            architecture: arch.into(),
            os: if arch == "unknown" {
                "unknown"
            } else {
                "linux"
            }
            .into(),
            variant: None,
            os_version: None,
            os_features: None,
        });
        d
    }

    #[test]
    fn attestations_follow_their_image() {
        let amd = child("amd64", 1);
        let arm = child("arm64", 2);
        let mut att = child("unknown", 3);
        att.annotations = Some(
            [
                (
                    ATTESTATION_TYPE.to_string(),
                    "attestation-manifest".to_string(),
                ),
                (ATTESTATION_DIGEST.to_string(), arm.digest.to_string()),
            ]
            .into(),
        );
        let children = [amd, arm, att];
        let f: Vec<PlatformFilter> = vec!["linux/arm64".parse().unwrap()];
        assert_eq!(kept_children(&children, &f), Some(vec![false, true, true]));
        let f: Vec<PlatformFilter> = vec!["linux/amd64".parse().unwrap()];
        assert_eq!(kept_children(&children, &f), Some(vec![true, false, false]));
        let f: Vec<PlatformFilter> = vec!["linux/s390x".parse().unwrap()];
        assert_eq!(kept_children(&children, &f), None);
    }

    #[test]
    fn filtered_index_keeps_other_fields() {
        let index = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","annotations":{"a":"b"},"manifests":[{"x":1},{"x":2,"extra":true},{"x":3}]}"#;
        let out = filtered_index(index, &[false, true, true]).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            v["manifests"],
            serde_json::json!([{"x":2,"extra":true},{"x":3}])
        );
        assert_eq!(v["annotations"]["a"], "b");
        assert_eq!(v["schemaVersion"], 2);
    }
}
