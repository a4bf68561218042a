//! Where the base OS image comes from, and reading its layers verified.
//!
//! A base reference is one of:
//!
//! | written as | read from |
//! | --- | --- |
//! | `os/debian:12`, `store:os/debian:12` | ferry's own registry store (`<state>/registry`): an imported bundle or `ferry image import` is usable at once |
//! | `bundle:site.ferry[:REF]` | an entry of a bundle file, read in place (REF: its source or `repository:tag`; optional when the bundle has one image) |
//! | `registry.example:5000/os/rocky:9`, `docker://...` | a registry, through ferry's content cache (auth, CA and plain HTTP as in `bundle create`) |
//! | `oci:DIR[:REF]`, `oci-archive:FILE[:REF]`, `docker-archive:FILE[:REF]` | an OCI layout or archive, through the content cache |
//!
//! A reference without a registry host (no `.` or `:` in its first
//! component, not `localhost`) means ferry's store: in a disconnected site
//! that is where the OS already is.
//!
//! Whatever the source, [`BaseImage`] is the single-platform image: its
//! manifest, config and layers, and a [`Blobs`] to read them from.
//! [`BaseImage::open_layer`] decompresses a layer (gzip, zstd or none)
//! while checking both the blob's digest and the config's `diff_id` of
//! what comes out; a mismatch is [`SourceError::Digest`], reported when
//! the stream ends (the caller drains it: see [`VerifiedLayer::finish`]).

use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ferry_oci::digest::{Algorithm, Hasher};
use ferry_oci::{Descriptor, Digest, ParsedManifest, media_type};
use serde::Deserialize;

/// Largest manifest or config read.
const METADATA_LIMIT: u64 = 4 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{reference:?} is not a valid base image reference: {reason}")]
    InvalidReference { reference: String, reason: String },
    #[error(
        "{reference} is not in ferry's store ({store}); import it first (ferry bundle import, ferry image import)"
    )]
    NotInStore { reference: String, store: String },
    #[error("{what}: {message}")]
    Invalid { what: String, message: String },
    #[error("{what}: blob {digest} is missing")]
    MissingBlob { what: String, digest: Digest },
    #[error(
        "{reference} is an image for {found}, not {wanted}: build on a {found} machine or choose the {wanted} image"
    )]
    WrongPlatform {
        reference: String,
        found: String,
        wanted: String,
    },
    /// From a fetched source: what the resolver said of its platforms.
    #[error("{reference} {message}")]
    PlatformMismatch { reference: String, message: String },
    #[error("{reference} has no image for {wanted} (it has {available})")]
    NoPlatform {
        reference: String,
        wanted: String,
        available: String,
    },
    #[error(
        "{reference}: layer {digest} has media type {media_type}, which is not a filesystem layer ferry can read (tar, tar+gzip, tar+zstd)"
    )]
    UnsupportedLayer {
        reference: String,
        digest: Digest,
        media_type: String,
    },
    #[error("{what} is corrupt: expected {expected}, its content hashes to {actual}")]
    Digest {
        what: String,
        expected: Digest,
        actual: Digest,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
}

/// Content-addressed blobs of one source.
pub trait Blobs: Send + Sync {
    /// Opens blob `digest` for reading, with its size; `None` if absent.
    fn open(&self, digest: &Digest) -> io::Result<Option<(Box<dyn Read + Send>, u64)>>;
    /// Names the source in messages.
    fn describe(&self) -> String;
}

impl Blobs for ferry_store::Store {
    fn open(&self, digest: &Digest) -> io::Result<Option<(Box<dyn Read + Send>, u64)>> {
        match self.open_content(digest) {
            Ok(found) => Ok(found.map(|(f, size)| (Box::new(f) as Box<dyn Read + Send>, size))),
            Err(e) => Err(io::Error::other(e)),
        }
    }

    fn describe(&self) -> String {
        self.root().display().to_string()
    }
}

/// The blobs of a bundle file, read in place by offset.
pub struct BundleBlobs(pub Arc<ferry_bundle::Bundle>);

impl Blobs for BundleBlobs {
    fn open(&self, digest: &Digest) -> io::Result<Option<(Box<dyn Read + Send>, u64)>> {
        let Some(member) = self.0.blob(digest) else {
            return Ok(None);
        };
        let mut reader = self.0.container().reader();
        reader.seek(SeekFrom::Start(member.offset))?;
        Ok(Some((Box::new(reader.take(member.size)), member.size)))
    }

    fn describe(&self) -> String {
        self.0.name().to_string()
    }
}

/// What a base reference names; see the module docs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BaseRef {
    /// A repository and tag (or `@digest`) in ferry's store.
    Store {
        repository: String,
        reference: String,
    },
    /// An entry of a bundle file.
    Bundle { file: PathBuf, name: Option<String> },
    /// Anything `bundle create` reads (registry, layout, archive), as
    /// written.
    Fetched(String),
}

impl BaseRef {
    /// Parses `text`; relative paths are taken from `base_dir`.
    pub fn parse(text: &str, base_dir: &Path) -> Result<BaseRef, SourceError> {
        let invalid = |reason: &str| SourceError::InvalidReference {
            reference: text.to_string(),
            reason: reason.to_string(),
        };
        if let Some(rest) = text.strip_prefix("bundle:") {
            let (file, name) = match rest.split_once(':') {
                Some((f, n)) => (f, Some(n.to_string()).filter(|n| !n.is_empty())),
                None => (rest, None),
            };
            if file.is_empty() {
                return Err(invalid("no file after bundle:"));
            }
            return Ok(BaseRef::Bundle {
                file: base_dir.join(file),
                name,
            });
        }
        for transport in ["oci:", "oci-archive:", "docker-archive:", "docker://"] {
            if text.starts_with(transport) {
                return Ok(BaseRef::Fetched(text.to_string()));
            }
        }
        let explicit_store = text.strip_prefix("store:");
        let plain = explicit_store.unwrap_or(text);
        let first = plain.split('/').next().unwrap_or_default();
        let names_host = plain.contains('/')
            && (first.contains('.') || first.contains(':') || first == "localhost");
        if names_host && explicit_store.is_none() {
            return Ok(BaseRef::Fetched(text.to_string()));
        }
        let (repository, reference) = split_reference(plain).ok_or_else(|| {
            invalid("expected REPOSITORY:TAG or REPOSITORY@sha256:... (e.g. os/debian:12)")
        })?;
        if !ferry_oci::name::is_valid_repository(&repository) {
            return Err(invalid(
                "not a valid repository name (lowercase, a-z0-9 and ._-/)",
            ));
        }
        Ok(BaseRef::Store {
            repository,
            reference,
        })
    }
}

/// `repo:tag` or `repo@digest` into its two parts; a bare repository
/// means `latest`.
fn split_reference(text: &str) -> Option<(String, String)> {
    if let Some((repo, digest)) = text.split_once('@') {
        return Some((repo.to_string(), digest.to_string()));
    }
    let last = text.rsplit('/').next()?;
    match last.rsplit_once(':') {
        Some((_, tag)) if !tag.is_empty() => {
            let repo = &text[..text.len() - tag.len() - 1];
            Some((repo.to_string(), tag.to_string()))
        }
        Some(_) => None,
        None => Some((text.to_string(), "latest".to_string())),
    }
}

/// `os/arch[/variant]` wanted from a multi-platform base.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl Platform {
    pub fn linux_amd64() -> Platform {
        Platform {
            os: "linux".into(),
            architecture: "amd64".into(),
            variant: None,
        }
    }

    pub(crate) fn matches(&self, os: &str, architecture: &str, variant: Option<&str>) -> bool {
        self.os == os
            && self.architecture == architecture
            && (self.variant.is_none() || self.variant.as_deref() == variant)
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Platform {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut parts = s.split('/');
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(os), Some(arch), variant, None) if !os.is_empty() && !arch.is_empty() => {
                Ok(Platform {
                    os: os.into(),
                    architecture: arch.into(),
                    variant: variant.map(String::from),
                })
            }
            _ => Err(format!(
                "{s:?}: expected OS/ARCH[/VARIANT], e.g. linux/amd64"
            )),
        }
    }
}

/// The parts of an image config ferry reads (image-spec "config.md").
#[derive(Debug, Clone, Deserialize)]
pub struct ImageConfig {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub variant: Option<String>,
    pub rootfs: RootFs,
    #[serde(default)]
    pub config: Option<RuntimeConfig>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RootFs {
    #[serde(default)]
    pub diff_ids: Vec<Digest>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RuntimeConfig {
    #[serde(default)]
    pub labels: Option<std::collections::BTreeMap<String, String>>,
}

/// One layer: its descriptor and the digest of its uncompressed tar.
#[derive(Debug, Clone)]
pub struct Layer {
    pub descriptor: Descriptor,
    pub diff_id: Digest,
}

/// The single-platform base image; see the module docs.
pub struct BaseImage {
    /// As the user wrote it.
    pub reference: String,
    /// Digest of the manifest or index the reference named.
    pub root_digest: Digest,
    /// Digest of the platform's image manifest.
    pub manifest_digest: Digest,
    pub config_digest: Digest,
    pub config: ImageConfig,
    pub layers: Vec<Layer>,
    blobs: Arc<dyn Blobs>,
}

impl BaseImage {
    /// Reads the image rooted at manifest or index `root` from `blobs`,
    /// picking `platform` from an index and checking every layer can be
    /// read.
    pub fn load(
        reference: &str,
        blobs: Arc<dyn Blobs>,
        root: &Digest,
        platform: &Platform,
    ) -> Result<BaseImage, SourceError> {
        let what = |d: &Digest| format!("{reference}: manifest {d}");
        let bytes = read_small(blobs.as_ref(), root, reference)?;
        let parsed = ParsedManifest::parse(&bytes, None).map_err(|e| SourceError::Invalid {
            what: what(root),
            message: e.to_string(),
        })?;
        let (manifest_digest, manifest) = if parsed.is_index() {
            let child = parsed
                .manifests
                .iter()
                .find(|d| {
                    d.platform.as_ref().is_some_and(|p| {
                        platform.matches(&p.os, &p.architecture, p.variant.as_deref())
                    })
                })
                .ok_or_else(|| SourceError::NoPlatform {
                    reference: reference.to_string(),
                    wanted: platform.to_string(),
                    available: parsed
                        .manifests
                        .iter()
                        .filter_map(|d| d.platform.as_ref().map(|p| p.to_string()))
                        .collect::<Vec<_>>()
                        .join(", "),
                })?;
            let bytes = read_small(blobs.as_ref(), &child.digest, reference)?;
            let parsed = ParsedManifest::parse(&bytes, None).map_err(|e| SourceError::Invalid {
                what: what(&child.digest),
                message: e.to_string(),
            })?;
            (child.digest.clone(), parsed)
        } else {
            (root.clone(), parsed)
        };
        let config_descriptor = manifest
            .config
            .clone()
            .ok_or_else(|| SourceError::Invalid {
                what: what(&manifest_digest),
                message: "not an image manifest (no config)".into(),
            })?;
        let config_bytes = read_small(blobs.as_ref(), &config_descriptor.digest, reference)?;
        let config: ImageConfig =
            serde_json::from_slice(&config_bytes).map_err(|e| SourceError::Invalid {
                what: format!("{reference}: config {}", config_descriptor.digest),
                message: e.to_string(),
            })?;
        if !platform.matches(&config.os, &config.architecture, config.variant.as_deref()) {
            return Err(SourceError::WrongPlatform {
                reference: reference.to_string(),
                found: format!("{}/{}", config.os, config.architecture),
                wanted: platform.to_string(),
            });
        }
        if config.rootfs.diff_ids.len() != manifest.layers.len() {
            return Err(SourceError::Invalid {
                what: format!("{reference}: config {}", config_descriptor.digest),
                message: format!(
                    "lists {} diff_ids for {} layers",
                    config.rootfs.diff_ids.len(),
                    manifest.layers.len()
                ),
            });
        }
        let layers = manifest
            .layers
            .iter()
            .zip(&config.rootfs.diff_ids)
            .map(|(descriptor, diff_id)| {
                Compression::of(&descriptor.media_type).ok_or_else(|| {
                    SourceError::UnsupportedLayer {
                        reference: reference.to_string(),
                        digest: descriptor.digest.clone(),
                        media_type: descriptor.media_type.clone(),
                    }
                })?;
                Ok(Layer {
                    descriptor: descriptor.clone(),
                    diff_id: diff_id.clone(),
                })
            })
            .collect::<Result<Vec<_>, SourceError>>()?;
        Ok(BaseImage {
            reference: reference.to_string(),
            root_digest: root.clone(),
            manifest_digest,
            config_digest: config_descriptor.digest,
            config,
            layers,
            blobs,
        })
    }

    /// The uncompressed tar of layer `index`, verified as it is read.
    pub fn open_layer(&self, index: usize) -> Result<VerifiedLayer, SourceError> {
        let layer = &self.layers[index];
        let (reader, size, what) = self.open_layer_blob(index)?;
        if size != layer.descriptor.size {
            return Err(SourceError::Invalid {
                what,
                message: format!(
                    "is {size} bytes, its descriptor says {}",
                    layer.descriptor.size
                ),
            });
        }
        let compressed = Verify::new(reader, layer.descriptor.digest.clone(), what.clone());
        let compressed_check = compressed.check.clone();
        let decompressed: Box<dyn Read + Send> =
            match Compression::of(&layer.descriptor.media_type).expect("checked at load") {
                Compression::None => Box::new(compressed),
                Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(compressed)),
                Compression::Zstd => Box::new(zstd::Decoder::new(compressed).map_err(
                    |source| SourceError::Io {
                        what: what.clone(),
                        source,
                    },
                )?),
            };
        let tar = Verify::new(
            decompressed,
            layer.diff_id.clone(),
            format!("{what}, uncompressed (diff_id)"),
        );
        let tar_check = tar.check.clone();
        Ok(VerifiedLayer {
            reader: tar,
            checks: [compressed_check, tar_check],
        })
    }

    /// Layer `index`'s blob as stored, its size, and how messages name it.
    fn open_layer_blob(
        &self,
        index: usize,
    ) -> Result<(Box<dyn Read + Send>, u64, String), SourceError> {
        let digest = &self.layers[index].descriptor.digest;
        let what = format!("{}: layer {} ({digest})", self.reference, index + 1);
        let (reader, size) = open_blob(self.blobs.as_ref(), digest, &self.reference, &what)?;
        Ok((reader, size, what))
    }

    /// Hashes layer `index`'s blob whole against its digest.
    pub fn verify_layer_blob(&self, index: usize) -> Result<(), SourceError> {
        let layer = &self.layers[index];
        let (reader, _, what) = self.open_layer_blob(index)?;
        let mut verify = Verify::new(reader, layer.descriptor.digest.clone(), what.clone());
        let check = verify.check.clone();
        let copied = io::copy(&mut verify, &mut io::sink());
        if let Some(Err(e)) = check.lock().expect("not poisoned").take() {
            return Err(e);
        }
        copied
            .map(drop)
            .map_err(|source| SourceError::Io { what, source })
    }
}

/// Opens blob `digest` of the image `reference` with its size; `what`
/// names it in an I/O error.
fn open_blob(
    blobs: &dyn Blobs,
    digest: &Digest,
    reference: &str,
    what: &str,
) -> Result<(Box<dyn Read + Send>, u64), SourceError> {
    blobs
        .open(digest)
        .map_err(|source| SourceError::Io {
            what: what.to_string(),
            source,
        })?
        .ok_or_else(|| SourceError::MissingBlob {
            what: reference.to_string(),
            digest: digest.clone(),
        })
}

/// Reads a small blob (manifest, config) whole, verified.
fn read_small(blobs: &dyn Blobs, digest: &Digest, reference: &str) -> Result<Vec<u8>, SourceError> {
    let what = format!("{reference}: blob {digest}");
    let (reader, size) = open_blob(blobs, digest, reference, &what)?;
    if size > METADATA_LIMIT {
        return Err(SourceError::Invalid {
            what,
            message: format!("{size} bytes is too large for a manifest or config"),
        });
    }
    let mut bytes = Vec::with_capacity(size as usize);
    reader
        .take(METADATA_LIMIT)
        .read_to_end(&mut bytes)
        .map_err(|source| SourceError::Io {
            what: what.clone(),
            source,
        })?;
    let actual = Digest::of(digest.algorithm(), &bytes);
    if &actual != digest {
        return Err(SourceError::Digest {
            what,
            expected: digest.clone(),
            actual,
        });
    }
    Ok(bytes)
}

/// How a layer is compressed, from its media type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    pub fn of(media_type: &str) -> Option<Compression> {
        // Non-distributable (foreign) layers are tars too; Docker's
        // rootfs.diff media types are gzip.
        let base = media_type.replace(".nondistributable", "");
        match base.as_str() {
            media_type::OCI_LAYER_TAR => Some(Compression::None),
            media_type::OCI_LAYER_GZIP
            | media_type::DOCKER_LAYER_GZIP
            | media_type::DOCKER_FOREIGN_LAYER => Some(Compression::Gzip),
            media_type::OCI_LAYER_ZSTD => Some(Compression::Zstd),
            _ => None,
        }
    }
}

/// The verdict of a [`Verify`] reader once it reached the end.
type Check = Arc<std::sync::Mutex<Option<Result<(), SourceError>>>>;

/// Hashes what passes through; at the end of the stream compares with
/// `expected` and fails the read on a mismatch.
struct Verify<R> {
    inner: R,
    hasher: Option<Hasher>,
    expected: Digest,
    what: String,
    check: Check,
}

impl<R> Verify<R> {
    fn new(inner: R, expected: Digest, what: String) -> Self {
        let algorithm: Algorithm = expected.algorithm();
        Verify {
            inner,
            hasher: Some(Hasher::new(algorithm)),
            expected,
            what,
            check: Arc::default(),
        }
    }
}

impl<R: Read> Read for Verify<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n > 0 {
            if let Some(h) = self.hasher.as_mut() {
                h.update(&buf[..n]);
            }
            return Ok(n);
        }
        if let Some(hasher) = self.hasher.take() {
            let actual = hasher.finish();
            let verdict = if actual == self.expected {
                Ok(())
            } else {
                Err(SourceError::Digest {
                    what: self.what.clone(),
                    expected: self.expected.clone(),
                    actual,
                })
            };
            let failed = verdict.is_err();
            *self.check.lock().expect("not poisoned") = Some(verdict);
            if failed {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{} does not match its digest", self.what),
                ));
            }
        }
        Ok(0)
    }
}

/// `inner`, checked against `expected` as it streams: the read that reaches
/// the end fails with [`io::ErrorKind::InvalidData`] on a mismatch.
pub fn verifying<R: Read + Send>(inner: R, expected: Digest, what: String) -> impl Read + Send {
    Verify::new(inner, expected, what)
}

/// A layer's tar stream, checked against its blob digest and diff_id.
pub struct VerifiedLayer {
    reader: Verify<Box<dyn Read + Send>>,
    checks: [Check; 2],
}

impl Read for VerifiedLayer {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.reader.read(buf)
    }
}

impl VerifiedLayer {
    /// Reads whatever the tar reader left (padding after the end of the
    /// archive) and returns the verdict of both digests. Call it also
    /// when applying the layer failed: a digest error then explains the
    /// broken tar better than the tar error does.
    pub fn finish(mut self) -> Result<(), SourceError> {
        let drained = io::copy(&mut self.reader, &mut io::sink());
        for check in &self.checks {
            if let Some(Err(e)) = check.lock().expect("not poisoned").take() {
                return Err(e);
            }
        }
        drained.map(drop).map_err(|source| SourceError::Io {
            what: self.reader.what.clone(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_without_a_host_name_the_store() {
        let base = Path::new("/spec");
        assert_eq!(
            BaseRef::parse("os/debian:12", base).unwrap(),
            BaseRef::Store {
                repository: "os/debian".into(),
                reference: "12".into()
            }
        );
        assert_eq!(
            BaseRef::parse("store:reg.x/os:1", base).unwrap(),
            BaseRef::Store {
                repository: "reg.x/os".into(),
                reference: "1".into()
            }
        );
        assert_eq!(
            BaseRef::parse("registry.site:5000/os/rocky:9", base).unwrap(),
            BaseRef::Fetched("registry.site:5000/os/rocky:9".into())
        );
        assert_eq!(
            BaseRef::parse("oci:dir:os", base).unwrap(),
            BaseRef::Fetched("oci:dir:os".into())
        );
        assert_eq!(
            BaseRef::parse("bundle:site.ferry:os/debian:12", base).unwrap(),
            BaseRef::Bundle {
                file: "/spec/site.ferry".into(),
                name: Some("os/debian:12".into())
            }
        );
        assert!(BaseRef::parse("Bad/Name:1", base).is_err());
    }

    #[test]
    fn a_corrupt_stream_is_caught_at_its_end() {
        let data = b"hello".to_vec();
        let good = Digest::sha256(&data);
        let mut v = Verify::new(&data[..], good, "x".into());
        io::copy(&mut v, &mut io::sink()).unwrap();
        let mut v = Verify::new(&b"hellO"[..], Digest::sha256(&data), "x".into());
        assert!(io::copy(&mut v, &mut io::sink()).is_err());
        assert!(matches!(
            v.check.lock().unwrap().take(),
            Some(Err(SourceError::Digest { .. }))
        ));
    }
}
