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

use crate::source::{Platform, SourceError};

/// Why a base could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The image is not for the platform being built (told as an image
    /// build tells it, not as a bundle spec entry would).
    #[error(transparent)]
    Platform(SourceError),
    #[error(transparent)]
    Create(#[from] CreateError),
}

impl FetchError {
    fn of(reference: &str, error: CreateError) -> FetchError {
        use ferry_bundle::sources::SourceError as S;
        match &error {
            CreateError::Source { source, .. } if matches!(**source, S::Platform { .. }) => {
                let S::Platform { message, .. } = &**source else {
                    unreachable!("matched above")
                };
                // The resolver's advice (`platforms: [all]` on a bundle
                // entry) does not apply to an image build: left out.
                FetchError::Platform(SourceError::PlatformMismatch {
                    reference: reference.to_string(),
                    message: message.split("; set").next().unwrap_or(message).to_string(),
                })
            }
            _ => FetchError::Create(error),
        }
    }
}

/// Fetches `reference` (for `platform`) into `cache`; returns the digest of
/// its root manifest or filtered index, now in the cache.
pub async fn fetch(
    reference: &str,
    hosts: &BTreeMap<String, HostSpec>,
    platform: &Platform,
    spec_dir: &Path,
    cache: &ContentCache,
    progress: &dyn Progress,
) -> Result<Digest, FetchError> {
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
    let resolution = create::resolve(&spec, spec_dir, &CreateOptions::default(), cache, progress)
        .await
        .map_err(|e| FetchError::of(reference, e))?;
    resolution
        .fetch(4, progress)
        .await
        .map_err(|e| FetchError::of(reference, e))?;
    let entry = resolution
        .entries
        .first()
        .expect("one image in, one entry out");
    Ok(entry.entry.descriptor.digest.clone())
}
