//! File artifacts named by the spec (`artifact: tools/helm:3.15` or
//! `bundle:site.ferry:tools/helm:3.15`): ORAS-style artifacts, one file per
//! layer titled with `org.opencontainers.image.title`, as `ferry bundle
//! create` stores `files:` entries. Read from ferry's store or straight
//! from a bundle file, digest-checked.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use ferry_oci::{Digest, ParsedManifest, media_type};

use crate::customize::{ArtifactFile, ArtifactFiles, ArtifactInfo};
use crate::source::{BaseRef, Blobs, BundleBlobs};

/// Largest manifest read.
const MANIFEST_LIMIT: u64 = 4 * 1024 * 1024;

/// Resolves artifact references against ferry's store and bundle files.
pub struct Artifacts {
    store: Option<ferry_store::Store>,
    spec_dir: PathBuf,
    bundles: Mutex<HashMap<PathBuf, Arc<ferry_bundle::Bundle>>>,
}

impl Artifacts {
    /// `store` is ferry's registry store, if there is one.
    pub fn new(store: Option<ferry_store::Store>, spec_dir: &Path) -> Artifacts {
        Artifacts {
            store,
            spec_dir: spec_dir.to_path_buf(),
            bundles: Mutex::default(),
        }
    }

    fn bundle(&self, file: &Path) -> Result<Arc<ferry_bundle::Bundle>, String> {
        let mut open = self.bundles.lock().expect("not poisoned");
        if let Some(b) = open.get(file) {
            return Ok(b.clone());
        }
        let bundle = Arc::new(
            ferry_bundle::Bundle::open(file).map_err(|e| format!("{}: {e}", file.display()))?,
        );
        open.insert(file.to_path_buf(), bundle.clone());
        Ok(bundle)
    }

    /// The root manifest digest of `reference` and the blobs it is in.
    fn locate(&self, reference: &str) -> Result<(Digest, Arc<dyn Blobs>), String> {
        match BaseRef::parse(reference, &self.spec_dir).map_err(|e| e.to_string())? {
            BaseRef::Store {
                repository,
                reference: tag,
            } => {
                let store = self
                    .store
                    .clone()
                    .ok_or("ferry's store is not available for artifacts")?;
                let r = ferry_store::ManifestRef::parse(&tag).map_err(|e| e.to_string())?;
                let digest = store
                    .resolve_manifest(&repository, &r)
                    .map_err(|e| e.to_string())?
                    .ok_or_else(|| {
                        format!(
                            "{repository}:{tag} is not in ferry's store ({}); import the bundle that carries it first",
                            store.root().display()
                        )
                    })?;
                Ok((digest, Arc::new(store)))
            }
            BaseRef::Bundle { file, name } => {
                let bundle = self.bundle(&file)?;
                let entry = find_entry(&bundle, name.as_deref())?;
                Ok((entry, Arc::new(BundleBlobs(bundle))))
            }
            BaseRef::Fetched(_) => Err(format!(
                "{reference}: artifacts are read from ferry's store or a bundle (store:REPO:TAG, bundle:FILE:REF); put it in a bundle first"
            )),
        }
    }
}

/// The root digest of bundle entry `name` (its source, or
/// `repository:tag`), or of the only entry when `name` is absent.
pub fn find_entry(bundle: &ferry_bundle::Bundle, name: Option<&str>) -> Result<Digest, String> {
    let entries = &bundle.manifest.entries;
    let found: Vec<_> = match name {
        Some(n) => entries
            .iter()
            .filter(|e| {
                e.source == n
                    || e.tag
                        .as_ref()
                        .is_some_and(|t| format!("{}:{t}", e.repository) == n)
            })
            .collect(),
        None => entries.iter().collect(),
    };
    match found.as_slice() {
        [one] => Ok(one.descriptor.digest.clone()),
        [] => Err(format!(
            "{} has no entry {} (entries: {})",
            bundle.name(),
            name.unwrap_or("?"),
            entries
                .iter()
                .map(|e| e.source.clone())
                .collect::<Vec<_>>()
                .join(", ")
        )),
        _ => Err(format!(
            "{} has {} entries: name one (bundle:FILE:REF)",
            bundle.name(),
            found.len()
        )),
    }
}

fn read_verified(blobs: &dyn Blobs, digest: &Digest, limit: u64) -> Result<Vec<u8>, String> {
    let (reader, size) = blobs
        .open(digest)
        .map_err(|e| format!("{}: {e}", blobs.describe()))?
        .ok_or_else(|| format!("{}: blob {digest} is missing", blobs.describe()))?;
    if size > limit {
        return Err(format!("blob {digest} is {size} bytes, more than {limit}"));
    }
    let mut bytes = Vec::with_capacity(size as usize);
    reader
        .take(limit)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("reading blob {digest}: {e}"))?;
    let actual = Digest::of(digest.algorithm(), &bytes);
    if &actual != digest {
        return Err(format!(
            "blob {digest} is corrupt: its content hashes to {actual}"
        ));
    }
    Ok(bytes)
}

impl ArtifactFiles for Artifacts {
    fn describe(&self, reference: &str) -> Result<ArtifactInfo, String> {
        let (root, blobs) = self.locate(reference)?;
        let bytes = read_verified(blobs.as_ref(), &root, MANIFEST_LIMIT)?;
        let manifest = ParsedManifest::parse(&bytes, None).map_err(|e| e.to_string())?;
        if manifest.is_index() {
            return Err(format!(
                "{reference} is an image index, not a file artifact"
            ));
        }
        Ok(ArtifactInfo {
            digest: root,
            annotations: manifest.annotations.clone().unwrap_or_default(),
            files: manifest
                .layers
                .iter()
                .filter_map(|l| {
                    l.annotation(media_type::ANNOTATION_TITLE)
                        .map(|t| ArtifactFile {
                            title: t.to_string(),
                            digest: l.digest.clone(),
                            size: l.size,
                        })
                })
                .collect(),
        })
    }

    fn open(&self, reference: &str, file: &ArtifactFile) -> Result<Box<dyn Read + Send>, String> {
        let (_, blobs) = self.locate(reference)?;
        let (reader, _) = blobs
            .open(&file.digest)
            .map_err(|e| format!("{}: {e}", blobs.describe()))?
            .ok_or_else(|| format!("{}: blob {} is missing", blobs.describe(), file.digest))?;
        Ok(Box::new(crate::source::verifying(
            reader,
            file.digest.clone(),
            format!("{reference}: {}", file.title),
        )))
    }
}
