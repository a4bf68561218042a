//! `docker-archive:FILE[:REF]`: the tar `docker save` (or `skopeo copy
//! ... docker-archive:`) writes, turned into an OCI image in the cache.
//!
//! The archive's `manifest.json` lists, per image, its config file, its
//! `RepoTags` and its layer files, in order (legacy `<id>/layer.tar` or
//! Docker 25+ `blobs/sha256/<hex>`; links are followed). The image becomes
//! an OCI image manifest whose config is the archive's config byte for
//! byte (so the image ID, the config digest, is unchanged). Layers that
//! are gzip or zstd already are kept as they are; uncompressed ones are
//! compressed (zstd level 3 by default, gzip if asked; see docs/bundle.md
//! for why) while their uncompressed digest is checked against the
//! config's `rootfs.diff_ids`. The compressed result is remembered in the
//! cache by diff ID, so making the bundle again does not compress again
//! and gives the same bytes.

use std::io::{self, BufReader, Read};
use std::path::Path;

use ferry_oci::{Descriptor, Digest, Hasher, media_type};
use serde::{Deserialize, Serialize};

use crate::cache::ContentCache;
use crate::sources::tarfs::TarFs;
use ferry_oci::progress::Progress;

use crate::sources::{ProgressReader, RootManifest, SourceError};
use crate::spec::Compression;

const ZSTD_LEVEL: i32 = 3;
const CONFIG_LIMIT: u64 = 16 * 1024 * 1024;
const MEMO_KIND: &str = "docker-layer";

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ArchiveImage {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

#[derive(Deserialize)]
struct RootFs {
    #[serde(default)]
    diff_ids: Vec<Digest>,
}

#[derive(Deserialize)]
struct ImageConfig {
    rootfs: RootFs,
}

/// What an uncompressed layer became.
#[derive(Serialize, Deserialize)]
struct LayerMemo {
    digest: Digest,
    size: u64,
    media_type: String,
}

/// A converted image: its manifest in the cache, and the reference the
/// archive tagged it with.
pub struct Converted {
    pub manifest: RootManifest,
    pub repo_tag: Option<String>,
}

/// Converts the image `name` (one of the archive's `RepoTags`; `None`:
/// its only image) into the cache. Blocking; each layer that has to be
/// read is a progress task.
pub fn convert(
    file: &Path,
    name: Option<&str>,
    compression: Compression,
    cache: &ContentCache,
    progress: &dyn Progress,
) -> Result<Converted, SourceError> {
    let source_name = format!("docker-archive:{}", file.display());
    let invalid = |message: String| SourceError::Invalid {
        source_name: source_name.clone(),
        message,
    };
    let io_err = |source| SourceError::Io {
        path: file.to_path_buf(),
        source,
    };
    let tar = TarFs::open(file).map_err(io_err)?;
    let manifest = tar
        .read_member("manifest.json", CONFIG_LIMIT)
        .map_err(io_err)?
        .ok_or_else(|| invalid("no manifest.json: not a docker save archive".into()))?;
    let images: Vec<ArchiveImage> =
        serde_json::from_slice(&manifest).map_err(|e| invalid(format!("manifest.json: {e}")))?;
    let image = pick(&images, name).map_err(invalid)?;

    let config = tar
        .read_member(&image.config, CONFIG_LIMIT)
        .map_err(io_err)?
        .ok_or_else(|| invalid(format!("config {} is missing", image.config)))?;
    let parsed: ImageConfig = serde_json::from_slice(&config)
        .map_err(|e| invalid(format!("config {}: {e}", image.config)))?;
    if parsed.rootfs.diff_ids.len() != image.layers.len() {
        return Err(invalid(format!(
            "config lists {} layers (rootfs.diff_ids) but manifest.json {}",
            parsed.rootfs.diff_ids.len(),
            image.layers.len()
        )));
    }
    let config_digest = cache.put_bytes(&config)?;

    let mut layers = Vec::new();
    for (path, diff_id) in image.layers.iter().zip(&parsed.rootfs.diff_ids) {
        let memo_key = format!("{diff_id}/{compression:?}");
        if let Some(memo) = cache.memo::<LayerMemo>(MEMO_KIND, &memo_key)
            && cache.size(&memo.digest)? == Some(memo.size)
        {
            layers.push(Descriptor::new(memo.media_type, memo.digest, memo.size));
            continue;
        }
        let (reader, size) = tar
            .open_member(path)
            .map_err(io_err)?
            .ok_or_else(|| invalid(format!("layer {path} is missing")))?;
        let id = format!("{source_name}:{path}");
        progress.start(&id, &format!("compress {}", diff_id.short()), Some(size));
        let reader = ProgressReader {
            inner: reader,
            progress,
            id: id.clone(),
        };
        let layer = store_layer(reader, diff_id, compression, cache);
        progress.finish(&id, if layer.is_ok() { "stored" } else { "failed" });
        let layer = layer.map_err(|e| match e {
            LayerError::Source(source) => io_err(source),
            LayerError::Cache(e) => e.into(),
            LayerError::DiffId(actual) => invalid(format!(
                "layer {path} is corrupt: its content hashes to {actual}, the config says {diff_id}"
            )),
        })?;
        cache.set_memo(
            MEMO_KIND,
            &memo_key,
            &LayerMemo {
                digest: layer.digest.clone(),
                size: layer.size,
                media_type: layer.media_type.clone(),
            },
        );
        layers.push(layer);
    }

    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_MANIFEST,
        "config": Descriptor::new(media_type::OCI_CONFIG, config_digest, config.len() as u64),
        "layers": layers,
    });
    let bytes = serde_json::to_vec(&manifest).expect("manifest serializes");
    let digest = cache.put_bytes(&bytes)?;
    Ok(Converted {
        manifest: RootManifest::new(digest, bytes, &source_name)?,
        repo_tag: image.repo_tags.as_ref().and_then(|t| t.first()).cloned(),
    })
}

fn pick<'a>(images: &'a [ArchiveImage], name: Option<&str>) -> Result<&'a ArchiveImage, String> {
    let tags = || {
        let all: Vec<&str> = images
            .iter()
            .flat_map(|i| i.repo_tags.iter().flatten())
            .map(String::as_str)
            .collect();
        if all.is_empty() {
            "none".to_string()
        } else {
            all.join(", ")
        }
    };
    match name {
        None if images.len() == 1 => Ok(&images[0]),
        None => Err(format!(
            "holds {} images; name one with docker-archive:FILE:REF (its tags: {})",
            images.len(),
            tags()
        )),
        Some(wanted) => {
            // `nginx:1.27` and `docker.io/library/nginx:1.27` name the same image.
            let normalized = |s: &str| s.parse::<ferry_oci::Reference>().ok();
            images
                .iter()
                .find(|i| {
                    i.repo_tags.iter().flatten().any(|t| {
                        t == wanted
                            || (normalized(t).is_some() && normalized(t) == normalized(wanted))
                    })
                })
                .ok_or_else(|| format!("no image tagged {wanted:?} (its tags: {})", tags()))
        }
    }
}

enum LayerError {
    Source(io::Error),
    Cache(crate::cache::CacheError),
    DiffId(Digest),
}

/// Stores one layer: as it is if already compressed, else compressed
/// while its uncompressed digest is computed.
fn store_layer<R: Read>(
    reader: R,
    diff_id: &Digest,
    compression: Compression,
    cache: &ContentCache,
) -> Result<Descriptor, LayerError> {
    let mut reader = BufReader::with_capacity(1024 * 1024, reader);
    let head = {
        use std::io::BufRead;
        reader.fill_buf().map_err(LayerError::Source)?.to_vec()
    };
    let kept = if head.starts_with(&[0x1f, 0x8b]) {
        Some(media_type::OCI_LAYER_GZIP)
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Some(media_type::OCI_LAYER_ZSTD)
    } else {
        None
    };
    if let Some(kept) = kept {
        let (digest, size) = cache.put_new(&mut reader).map_err(LayerError::Cache)?;
        return Ok(Descriptor::new(kept, digest, size));
    }
    let hashing = HashingReader {
        inner: reader,
        hasher: Hasher::new(diff_id.algorithm()),
        error: None,
    };
    let (media, mut encoder): (&str, Encoder<_>) = match compression {
        Compression::Zstd => {
            let mut e = zstd::stream::read::Encoder::new(hashing, ZSTD_LEVEL)
                .map_err(LayerError::Source)?;
            e.include_checksum(true).map_err(LayerError::Source)?;
            (media_type::OCI_LAYER_ZSTD, Encoder::Zstd(e))
        }
        Compression::Gzip => (
            media_type::OCI_LAYER_GZIP,
            Encoder::Gzip(flate2::read::GzEncoder::new(
                hashing,
                flate2::Compression::default(),
            )),
        ),
    };
    let stored = cache.put_new(&mut encoder);
    let hashing = encoder.into_inner();
    if let Some(e) = hashing.error {
        return Err(LayerError::Source(e));
    }
    let (digest, size) = stored.map_err(LayerError::Cache)?;
    let actual = hashing.hasher.finish();
    if &actual != diff_id {
        return Err(LayerError::DiffId(actual));
    }
    Ok(Descriptor::new(media, digest, size))
}

/// Hashes what passes through; keeps the source's own error (the
/// encoders would otherwise report it as theirs).
struct HashingReader<R> {
    inner: R,
    hasher: Hasher,
    error: Option<io::Error>,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.inner.read(buf) {
            Ok(n) => {
                self.hasher.update(&buf[..n]);
                Ok(n)
            }
            Err(e) => {
                let copy = io::Error::new(e.kind(), e.to_string());
                self.error = Some(e);
                Err(copy)
            }
        }
    }
}

enum Encoder<R: Read> {
    Zstd(zstd::stream::read::Encoder<'static, BufReader<R>>),
    Gzip(flate2::read::GzEncoder<R>),
}

impl<R: Read> Encoder<R> {
    fn into_inner(self) -> R {
        match self {
            Encoder::Zstd(e) => e.finish().into_inner(),
            Encoder::Gzip(e) => e.into_inner(),
        }
    }
}

impl<R: Read> Read for Encoder<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Encoder::Zstd(e) => e.read(buf),
            Encoder::Gzip(e) => e.read(buf),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_oci::Algorithm;

    #[test]
    fn compression_is_deterministic_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ContentCache::open(dir.path()).unwrap();
        let layer: Vec<u8> = (0..300_000u32).map(|i| (i % 97) as u8).collect();
        let diff_id = Digest::of(Algorithm::Sha256, &layer);
        for compression in [Compression::Zstd, Compression::Gzip] {
            let a = store_layer(&layer[..], &diff_id, compression, &cache)
                .ok()
                .unwrap();
            let b = store_layer(&layer[..], &diff_id, compression, &cache)
                .ok()
                .unwrap();
            assert_eq!(a, b);
            assert!(a.size < layer.len() as u64 / 10);
        }
        let wrong = Digest::sha256(b"other");
        assert!(matches!(
            store_layer(&layer[..], &wrong, Compression::Zstd, &cache),
            Err(LayerError::DiffId(_))
        ));
    }
}
