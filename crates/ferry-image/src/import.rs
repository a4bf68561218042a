//! `ferry image import rootfs.tar --tag os/name:tag`: any distribution's
//! root filesystem tarball (mmdebstrap, debootstrap + tar, `dnf
//! --installroot` + tar) becomes a single-layer OCI image in ferry's store,
//! ready for `ferry image build`.
//!
//! The tarball may be compressed (gzip, zstd or xz, recognised by their
//! magic bytes, as mmdebstrap writes `rootfs.tar.zst`); the layer holds the
//! uncompressed tar. It is streamed once: parsed as it passes (so a file
//! that is not a tar, or a truncated one, is refused before anything is
//! tagged),
//! hashed uncompressed (the config's `diff_id`), compressed and hashed
//! again (the layer's digest) straight into a store upload. The layer is
//! kept byte for byte as the tarball has it: owners, modes, devices and
//! xattrs stay exactly what the tool that made it wrote.

use std::io::{self, Read, Write};

use ferry_oci::digest::{Algorithm, Hasher};
use ferry_oci::progress::Progress;
use ferry_oci::{Descriptor, Digest, media_type};
use ferry_store::{ManifestRef, Store, StoreError};
use serde::Serialize;

use crate::source::Platform;

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{tag:?} is not a valid REPOSITORY:TAG for the store")]
    BadTag { tag: String },
    #[error(
        "{name} is not a tar archive (plain, or compressed with gzip, zstd or xz){}",
        reason(error)
    )]
    NotATar { name: String, error: io::Error },
    #[error("{name} holds no files")]
    Empty { name: String },
    #[error("storing the image in ferry's store: {0}")]
    Store(#[from] StoreError),
    #[error("compressing the layer: {0}")]
    Compress(#[source] io::Error),
}

/// How the layer is compressed in the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LayerCompression {
    /// zstd: fast both ways (the default).
    #[default]
    Zstd,
    /// gzip: what every client reads, slower to write.
    Gzip,
}

#[derive(Debug, Clone, Serialize)]
pub struct ImportReport {
    pub reference: String,
    pub manifest_digest: Digest,
    pub layer_digest: Digest,
    pub layer_bytes: u64,
    pub tar_bytes: u64,
    pub entries: u64,
}

/// Imports the rootfs tar read from `tar` (named `name` in messages) as
/// `repository:tag` in `store`, for `platform`, dated `created` (seconds;
/// SOURCE_DATE_EPOCH for reproducible imports).
#[allow(clippy::too_many_arguments)]
pub fn import(
    store: &Store,
    tar: &mut dyn Read,
    name: &str,
    reference: &str,
    platform: &Platform,
    compression: LayerCompression,
    created: i64,
    progress: &dyn Progress,
) -> Result<ImportReport, ImportError> {
    let (repository, tag) = reference
        .rsplit_once(':')
        .filter(|(r, t)| {
            !r.is_empty()
                && !t.contains('/')
                && ferry_oci::name::is_valid_repository(r)
                && ferry_oci::name::is_valid_tag(t)
        })
        .ok_or_else(|| ImportError::BadTag {
            tag: reference.to_string(),
        })?;
    progress.start("import", &format!("import {name}"), None);
    let mut tar = decompressed(tar).map_err(|error| ImportError::NotATar {
        name: name.to_string(),
        error,
    })?;
    let id = store.start_upload(repository)?;
    let mut upload = store.open_upload(repository, &id)?;
    let result = stream_layer(&mut tar, &mut upload, compression, progress);
    let (diff_id, tar_bytes, entries, layer_digest, layer_bytes) = match result {
        Ok(done) => done,
        Err(e) => {
            upload.abandon();
            return Err(match e {
                StreamError::Tar(error) => ImportError::NotATar {
                    name: name.to_string(),
                    error,
                },
                StreamError::Compress(e) => ImportError::Compress(e),
                StreamError::Store(e) => ImportError::Store(e),
            });
        }
    };
    if entries == 0 {
        upload.abandon();
        return Err(ImportError::Empty {
            name: name.to_string(),
        });
    }
    upload.commit(&layer_digest, Some(layer_bytes))?;
    let created_text = time_text(created);
    let config = serde_json::json!({
        "created": created_text,
        "architecture": platform.architecture,
        "os": platform.os,
        "variant": platform.variant,
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": [diff_id.to_string()]},
        "history": [{"created": created_text, "created_by": format!("ferry image import {name}")}],
    });
    let mut config = config;
    if platform.variant.is_none() {
        config.as_object_mut().expect("object").remove("variant");
    }
    let config_bytes = serde_json::to_vec(&config).expect("serializable");
    let config_digest = Digest::sha256(&config_bytes);
    store.put_blob(
        repository,
        &config_digest,
        Some(config_bytes.len() as u64),
        &mut &config_bytes[..],
    )?;
    let layer_type = match compression {
        LayerCompression::Zstd => media_type::OCI_LAYER_ZSTD,
        LayerCompression::Gzip => media_type::OCI_LAYER_GZIP,
    };
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_MANIFEST,
        "config": Descriptor::new(media_type::OCI_CONFIG, config_digest, config_bytes.len() as u64),
        "layers": [Descriptor::new(layer_type, layer_digest.clone(), layer_bytes)],
        "annotations": {"org.opencontainers.image.created": created_text},
    });
    let manifest_bytes = serde_json::to_vec_pretty(&manifest).expect("serializable");
    let manifest_digest = store
        .put_manifest(
            repository,
            &ManifestRef::Tag(tag.to_string()),
            &manifest_bytes,
            Some(media_type::OCI_MANIFEST),
        )?
        .digest;
    progress.finish("import", "imported");
    Ok(ImportReport {
        reference: reference.to_string(),
        manifest_digest,
        layer_digest,
        layer_bytes,
        tar_bytes,
        entries,
    })
}

enum StreamError {
    Tar(io::Error),
    Compress(io::Error),
    Store(StoreError),
}

/// Parses the tar as it streams, hashing it and writing it compressed into
/// `upload`. Returns (diff_id, tar bytes, entries, layer digest, layer bytes).
fn stream_layer(
    tar: &mut dyn Read,
    upload: &mut ferry_store::UploadWriter,
    compression: LayerCompression,
    progress: &dyn Progress,
) -> Result<(Digest, u64, u64, Digest, u64), StreamError> {
    let sink = HashingSink {
        upload,
        hasher: Hasher::new(Algorithm::Sha256),
        error: None,
    };
    let mut encoder = match compression {
        LayerCompression::Zstd => {
            Compressor::Zstd(zstd::Encoder::new(sink, 3).map_err(StreamError::Compress)?)
        }
        LayerCompression::Gzip => Compressor::Gzip(flate2::write::GzEncoder::new(
            sink,
            flate2::Compression::default(),
        )),
    };
    let mut tee = Tee {
        inner: tar,
        hasher: Hasher::new(Algorithm::Sha256),
        out: &mut encoder,
        progress,
        failed: None,
    };
    let mut entries = 0u64;
    {
        let mut archive = tar::Archive::new(&mut tee);
        for entry in archive.entries().map_err(StreamError::Tar)? {
            entry.map_err(StreamError::Tar)?;
            entries += 1;
        }
    }
    // Whatever follows the end-of-archive blocks is part of the layer too.
    io::copy(&mut tee, &mut io::sink()).map_err(StreamError::Tar)?;
    if let Some(e) = tee.failed.take() {
        return Err(e);
    }
    let tar_bytes = tee.hasher.bytes();
    let diff_id = tee.hasher.finish();
    let sink = encoder.finish().map_err(StreamError::Compress)?;
    if let Some(e) = sink.error {
        return Err(StreamError::Store(e));
    }
    let layer_bytes = sink.hasher.bytes();
    Ok((
        diff_id,
        tar_bytes,
        entries,
        sink.hasher.finish(),
        layer_bytes,
    ))
}

/// Reads from `inner`, hashing and forwarding every byte to `out`.
struct Tee<'a> {
    inner: &'a mut dyn Read,
    hasher: Hasher,
    out: &'a mut dyn Write,
    progress: &'a dyn Progress,
    failed: Option<StreamError>,
}

impl Read for Tee<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        if let Err(e) = self.out.write_all(&buf[..n]) {
            self.failed = Some(StreamError::Compress(io::Error::new(
                e.kind(),
                e.to_string(),
            )));
            return Err(e);
        }
        self.progress.advance("import", n as u64);
        Ok(n)
    }
}

/// Hashes the compressed layer and writes it into the store upload.
struct HashingSink<'a> {
    upload: &'a mut ferry_store::UploadWriter,
    hasher: Hasher,
    error: Option<StoreError>,
}

impl Write for HashingSink<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Err(e) = self.upload.write(buf) {
            let message = e.to_string();
            self.error = Some(e);
            return Err(io::Error::other(message));
        }
        self.hasher.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The layer's compressor.
enum Compressor<'a> {
    Zstd(zstd::Encoder<'static, HashingSink<'a>>),
    Gzip(flate2::write::GzEncoder<HashingSink<'a>>),
}

impl<'a> Compressor<'a> {
    fn finish(self) -> io::Result<HashingSink<'a>> {
        match self {
            Compressor::Zstd(e) => e.finish(),
            Compressor::Gzip(e) => e.finish(),
        }
    }
}

impl Write for Compressor<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Compressor::Zstd(e) => e.write(buf),
            Compressor::Gzip(e) => e.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Compressor::Zstd(e) => e.flush(),
            Compressor::Gzip(e) => e.flush(),
        }
    }
}

/// `input`, decompressed when its first bytes are the magic number of
/// gzip (RFC 1952), zstd (RFC 8878) or xz (the .xz file format spec).
fn decompressed<'a>(input: &'a mut dyn Read) -> io::Result<Box<dyn Read + 'a>> {
    let mut magic = [0u8; 6];
    let mut filled = 0;
    while filled < magic.len() {
        match input.read(&mut magic[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    let head = &magic[..filled];
    let whole = io::Cursor::new(head.to_vec()).chain(input);
    Ok(if head.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::MultiGzDecoder::new(whole))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Box::new(zstd::Decoder::new(whole)?)
    } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        Box::new(liblzma::read::XzDecoder::new(whole))
    } else {
        Box::new(whole)
    })
}

/// What the tar reader said, when it is one short line (its messages on a
/// file that is no tar at all quote the file's bytes).
fn reason(error: &io::Error) -> String {
    let text = error.to_string();
    if text.contains('\n') || text.len() > 120 || text.chars().any(|c| c.is_control()) {
        String::new()
    } else {
        format!(": {text}")
    }
}

/// RFC 3339 UTC for `seconds` since the epoch.
pub(crate) fn time_text(seconds: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(seconds)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".into())
}
