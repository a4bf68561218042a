//! Files of an OCI artifact in ferry's store (what a bundle pushed).
//!
//! ferry stores files as ORAS-style artifacts: one layer per file, named by
//! its `org.opencontainers.image.title` annotation (see DESIGN.md,
//! "Everything is an OCI artifact"). A layer is a blob, served straight
//! from the store. An index picks the child for the profile's
//! architecture (linux). Layers without a title (the tar layers of a
//! container image) are not files and are skipped: an image's files are
//! inside compressed tarballs, which cannot be served by byte range in
//! place; turn the image into an OS artifact with `ferry image build`.

use ferry_oci::media_type::ANNOTATION_TITLE;
use ferry_oci::{Descriptor, Digest, ParsedManifest};
use ferry_store::{ManifestRef, Store};

use crate::artifact::{Backing, ServedFile, SourceTree, components, origin};
use crate::config::Arch;
use crate::error::ArtifactError;

pub struct OciTree {
    profile: String,
    store: Store,
    repository: String,
    reference: String,
    /// (title, layer)
    layers: Vec<(String, Descriptor)>,
}

impl OciTree {
    /// Opens `repository:tag` or `repository@digest`.
    pub fn open(
        profile: &str,
        store: &Store,
        reference: &str,
        arch: Arch,
    ) -> Result<OciTree, ArtifactError> {
        let err = |message: String| ArtifactError::Oci {
            profile: profile.to_string(),
            message,
        };
        let store_err = |source| ArtifactError::Store {
            profile: profile.to_string(),
            source,
        };
        let (repository, wanted) = split_reference(reference).ok_or_else(|| {
            err(format!(
                "`{reference}` is not repository:tag or repository@digest"
            ))
        })?;
        let wanted = ManifestRef::parse(wanted).map_err(|e| err(format!("`{reference}`: {e}")))?;
        let manifest = store
            .get_manifest(repository, &wanted)
            .map_err(store_err)?
            .ok_or_else(|| ArtifactError::NotInRegistry {
                profile: profile.to_string(),
                what: reference.to_string(),
            })?;
        let mut parsed = ParsedManifest::parse(&manifest.body, Some(&manifest.media_type))
            .map_err(|e| err(format!("{reference}: {e}")))?;
        if parsed.is_index() {
            let child = pick_platform(&parsed.manifests, arch).ok_or_else(|| {
                err(format!(
                    "{reference} is an index with no linux/{} manifest",
                    arch.as_str()
                ))
            })?;
            let child = store
                .get_manifest(repository, &ManifestRef::Digest(child))
                .map_err(store_err)?
                .ok_or_else(|| err(format!("{reference}: platform manifest missing")))?;
            parsed = ParsedManifest::parse(&child.body, Some(&child.media_type))
                .map_err(|e| err(format!("{reference}: {e}")))?;
        }
        let layers = parsed
            .layers
            .into_iter()
            .filter_map(|l| {
                l.annotation(ANNOTATION_TITLE)
                    .map(|t| (t.to_string(), l.clone()))
            })
            .collect();
        Ok(OciTree {
            profile: profile.to_string(),
            store: store.clone(),
            repository: repository.to_string(),
            reference: reference.to_string(),
            layers,
        })
    }

    /// The layer titled exactly `path`.
    fn find_exact(&self, path: &str) -> Option<&Descriptor> {
        let clean = components(path)?.join("/");
        self.layers
            .iter()
            .find(|(t, _)| title_of(t) == clean)
            .map(|(_, d)| d)
    }

    /// The layer titled `path`; else the only layer whose title has the
    /// same last component (titles are often bare file names while layouts
    /// name `boot/kernel`).
    fn find(&self, path: &str) -> Option<&Descriptor> {
        if let Some(d) = self.find_exact(path) {
            return Some(d);
        }
        let clean = components(path)?.join("/");
        let base = clean.rsplit('/').next()?;
        let mut same_base = self
            .layers
            .iter()
            .filter(|(t, _)| title_of(t).rsplit('/').next() == Some(base));
        match (same_base.next(), same_base.next()) {
            (Some((_, d)), None) => Some(d),
            _ => None,
        }
    }
}

/// A title as a path: without a leading `./` or `/`.
fn title_of(title: &str) -> String {
    title
        .trim_start_matches("./")
        .trim_start_matches('/')
        .to_string()
}

impl SourceTree for OciTree {
    fn names_exactly(&mut self, path: &str) -> Result<bool, ArtifactError> {
        Ok(self.find_exact(path).is_some())
    }

    fn lookup(&mut self, path: &str) -> Result<Option<ServedFile>, ArtifactError> {
        let Some(layer) = self.find(path).cloned() else {
            return Ok(None);
        };
        let Some((file, _)) = self
            .store
            .open_blob(&self.repository, &layer.digest)
            .map_err(|source| ArtifactError::Store {
                profile: self.profile.clone(),
                source,
            })?
        else {
            // Listed by the manifest but gone (deleted, quarantined):
            // pushing the artifact again brings it back.
            return Err(ArtifactError::NotInRegistry {
                profile: self.profile.clone(),
                what: format!("{} of {} ({})", path, self.reference, layer.digest),
            });
        };
        let meta = file.metadata().map_err(|source| ArtifactError::Open {
            profile: self.profile.clone(),
            path: format!("{}@{}", self.repository, layer.digest).into(),
            source,
        })?;
        let backing = Backing::Blob {
            store: self.store.clone(),
            repository: self.repository.clone(),
            digest: layer.digest.clone(),
        };
        // the digest is the strongest validator there is
        let etag = format!("\"{}\"", layer.digest);
        Ok(Some(ServedFile::whole(
            backing,
            &meta,
            etag,
            origin(path, &self.describe()),
        )))
    }

    fn describe(&self) -> String {
        format!("OCI artifact {}", self.reference)
    }
}

/// `repo:tag` → (repo, tag); `repo@sha256:..` → (repo, digest). A `:` in
/// a registry host (`host:5000/repo`) is not a tag separator.
fn split_reference(reference: &str) -> Option<(&str, &str)> {
    if let Some((repo, digest)) = reference.split_once('@') {
        return Some((repo, digest));
    }
    let slash = reference.rfind('/').map_or(0, |i| i + 1);
    let colon = reference[slash..].rfind(':')? + slash;
    Some((&reference[..colon], &reference[colon + 1..]))
}

fn pick_platform(children: &[Descriptor], arch: Arch) -> Option<Digest> {
    children
        .iter()
        .find(|d| {
            d.platform
                .as_ref()
                .is_some_and(|p| p.os == "linux" && p.architecture == arch.as_str())
        })
        .map(|d| d.digest.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_references() {
        assert_eq!(split_reference("os/kairos:v1"), Some(("os/kairos", "v1")));
        assert_eq!(
            split_reference("os/kairos@sha256:abc"),
            Some(("os/kairos", "sha256:abc"))
        );
        assert_eq!(split_reference("os/kairos"), None);
    }
}
