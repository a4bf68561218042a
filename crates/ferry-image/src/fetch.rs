//! Bringing a base image that is not in ferry's store or a bundle (a
//! registry, an OCI layout or archive, a `docker save` archive) into
//! ferry's content cache, with the same machinery and settings as `ferry
//! bundle create`: `hosts:` for CA files, plain HTTP and credentials,
//! resumed downloads, digest-verified blobs, the platform filter.

use std::collections::BTreeMap;
use std::path::Path;

use ferry_bundle::cache::ContentCache;
use ferry_bundle::create::{self, CreateError, CreateOptions};
use ferry_bundle::spec::{HostSpec, PlatformFilter, Spec};
use ferry_oci::Digest;
use ferry_oci::progress::Progress;

use crate::source::Platform;

/// Fetches `reference` (for `platform`) into `cache`; returns the digest of
/// its root manifest or filtered index, now in the cache.
pub async fn fetch(
    reference: &str,
    hosts: &BTreeMap<String, HostSpec>,
    platform: &Platform,
    spec_dir: &Path,
    cache: &ContentCache,
    progress: &dyn Progress,
) -> Result<Digest, CreateError> {
    let filter: PlatformFilter = platform
        .to_string()
        .parse()
        .expect("a Platform prints as a valid filter");
    let spec = Spec {
        hosts: hosts.clone(),
        images: vec![ferry_bundle::spec::ImageSpec {
            reference: reference.to_string(),
            platforms: vec![filter],
            repository: None,
            tag: None,
            compression: None,
            referrers: Some(false),
        }],
        ..Spec::default()
    };
    let resolution =
        create::resolve(&spec, spec_dir, &CreateOptions::default(), cache, progress).await?;
    resolution.fetch(4, progress).await?;
    let entry = resolution
        .entries
        .first()
        .expect("one image in, one entry out");
    Ok(entry.entry.descriptor.digest.clone())
}
