//! What refers to an image in its registry: signatures, SBOMs and
//! attestations, so that they travel with it into the site.
//!
//! Two conventions are in use and both are looked at:
//! - OCI 1.1 referrers (distribution-spec "Listing Referrers"): manifests
//!   whose `subject` is one of the image's manifests, listed by the
//!   referrers API or, on registries without it, by the referrers tag
//!   schema's index (ferry-client's [`Repository::referrers`] does both);
//! - cosign's tags, still its default: `sha256-<hex>.sig`, `.att` and
//!   `.sbom` next to the image, naming the root manifest's digest.
//!
//! Every manifest found is returned with the tag it was found under
//! (cosign's), if any, in a fixed order: the same registry content gives
//! the same bundle.

use std::collections::BTreeSet;

use ferry_client::Repository;
use ferry_oci::Digest;

use crate::cache::ContentCache;
use crate::sources::{MANIFEST_LIMIT, RootManifest, SourceError};

/// cosign's tag suffixes: signatures, attestations, SBOMs.
const COSIGN_SUFFIXES: [&str; 3] = ["sig", "att", "sbom"];

/// A manifest that refers to an image.
pub struct Found {
    pub manifest: RootManifest,
    /// The tag it is stored under (cosign's), `None` for OCI referrers.
    pub tag: Option<String>,
}

/// Finds what refers to `manifests` (every manifest of one image, its root
/// `root` among them) in `repo`; manifests the cache has are not fetched.
pub async fn find(
    repo: &Repository,
    root: &Digest,
    manifests: &BTreeSet<Digest>,
    cache: &ContentCache,
) -> Result<Vec<Found>, SourceError> {
    let what = format!("{}/{}", repo.registry(), repo.name());
    let registry_err = |doing: String| {
        move |source| SourceError::Registry {
            what: doing,
            source,
        }
    };
    let mut referrers: BTreeSet<Digest> = BTreeSet::new();
    for subject in manifests {
        let listed = repo
            .referrers(subject, None)
            .await
            .map_err(registry_err(format!("listing the referrers of {subject}")))?;
        referrers.extend(listed.descriptors.into_iter().map(|d| d.digest));
    }
    let mut found = Vec::new();
    for digest in referrers {
        found.push(Found {
            manifest: fetch(repo, &digest.to_string(), &what, cache).await?,
            tag: None,
        });
    }
    let hex = root.hex();
    for suffix in COSIGN_SUFFIXES {
        let tag = format!("{}-{hex}.{suffix}", root.algorithm());
        let head = repo
            .head_manifest(&tag)
            .await
            .map_err(registry_err(format!("looking for {tag}")))?;
        if let Some(info) = head {
            // By digest when the registry says it: the cache may have it.
            let reference = info.digest.map_or_else(|| tag.clone(), |d| d.to_string());
            found.push(Found {
                manifest: fetch(repo, &reference, &what, cache).await?,
                tag: Some(tag),
            });
        }
    }
    Ok(found)
}

/// A manifest by tag or digest, from the cache when it has it by digest.
/// (What is fetched enters the cache when the caller resolves it.)
async fn fetch(
    repo: &Repository,
    reference: &str,
    what: &str,
    cache: &ContentCache,
) -> Result<RootManifest, SourceError> {
    if let Ok(digest) = reference.parse::<Digest>()
        && let Some(bytes) = cache.read(&digest, MANIFEST_LIMIT)?
    {
        return RootManifest::new(digest, bytes, what);
    }
    let m = repo
        .get_manifest(reference)
        .await
        .map_err(|source| SourceError::Registry {
            what: format!("fetching {reference}"),
            source,
        })?;
    RootManifest::new(m.digest, m.bytes.to_vec(), what)
}
