//! Files inside an ISO 9660 image, located without mounting it.
//!
//! hadris-iso reads the volume descriptors and directories (primary tree,
//! Rock Ridge names and symlinks over it, or the Joliet tree, whichever is
//! the most capable the image has) and maps a file to its extents on the
//! image (ECMA-119 §9.1: one extent per directory record; a file over
//! 4 GiB has several records, the "multi-extent" flag). ferry keeps only
//! those extents and serves the file with positioned reads of the image,
//! so a 2 GiB squashfs inside an ISO costs no copy and no memory.

use std::path::{Path, PathBuf};

use hadris_fs::sync::FileSystem;
use hadris_fs::{ErrorKind, Extent, FileType, MountOptions, Resolve};
use hadris_iso::sync::IsoFs;
use hadris_storage::host::FileDevice;

use crate::artifact::{
    Backing, Fingerprint, Segment, ServedFile, SourceTree, components, file_etag, open_meta, origin,
};
use crate::error::ArtifactError;

/// An opened ISO image.
pub struct IsoTree {
    profile: String,
    path: PathBuf,
    fingerprint: Fingerprint,
    fs: IsoFs<FileDevice>,
}

impl IsoTree {
    pub fn open(profile: &str, path: &Path) -> Result<IsoTree, ArtifactError> {
        let meta = open_meta(profile, path)?;
        let device = FileDevice::open(path).map_err(|source| ArtifactError::Open {
            profile: profile.to_string(),
            path: path.to_path_buf(),
            source,
        })?;
        let fs = IsoFs::mount(device, MountOptions::new()).map_err(|e| ArtifactError::NotIso {
            profile: profile.to_string(),
            path: path.to_path_buf(),
            message: format!("{e:?}"),
        })?;
        Ok(IsoTree {
            profile: profile.to_string(),
            path: path.to_path_buf(),
            fingerprint: Fingerprint::of(&meta),
            fs,
        })
    }

    fn corrupt(&self, what: &str, e: impl std::fmt::Display) -> ArtifactError {
        ArtifactError::NotIso {
            profile: self.profile.clone(),
            path: self.path.clone(),
            message: format!("{what}: {e}"),
        }
    }
}

impl SourceTree for IsoTree {
    fn lookup(&mut self, path: &str) -> Result<Option<ServedFile>, ArtifactError> {
        let Some(parts) = components(path) else {
            return Ok(None);
        };
        let absolute = format!("/{}", parts.join("/"));
        let node = match self.fs.resolve(absolute.as_bytes(), Resolve::Follow) {
            Ok(node) => node,
            Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory) => {
                return Ok(None);
            }
            Err(e) => return Err(self.corrupt(&absolute, e)),
        };
        let meta = self.fs.stat(node).map_err(|e| self.corrupt(&absolute, e))?;
        if meta.file_type() != FileType::File {
            return Ok(None);
        }
        let mut segments = Vec::new();
        let mut from = 0u64;
        let mut batch = [Extent::new(0, 0); 16];
        loop {
            let n = self
                .fs
                .extents(node, from, &mut batch)
                .map_err(|e| self.corrupt(&absolute, e))?;
            if n == 0 {
                break;
            }
            for extent in &batch[..n] {
                segments.push(Segment {
                    offset: (!extent.is_unwritten()).then_some(extent.offset()),
                    len: extent.len(),
                });
                from = extent.file_offset() + extent.len();
            }
        }
        let size: u64 = segments.iter().map(|s| s.len).sum();
        if size != meta.len() {
            return Err(self.corrupt(
                &absolute,
                format!("extents hold {size} bytes, directory says {}", meta.len()),
            ));
        }
        if segments.iter().any(|s| {
            s.offset
                .is_some_and(|o| o.saturating_add(s.len) > self.fingerprint.len)
        }) {
            return Err(self.corrupt(&absolute, "extent past the end of the image (truncated?)"));
        }
        let first = segments.first().and_then(|s| s.offset).unwrap_or(0);
        Ok(Some(ServedFile {
            backing: Backing::Path(self.path.clone()),
            fingerprint: self.fingerprint,
            size,
            etag: file_etag(&self.fingerprint, &format!("-{first:x}")),
            modified: self.fingerprint.modified(),
            origin: origin(path, &self.describe()),
            segments,
        }))
    }

    fn describe(&self) -> String {
        format!("ISO {}", self.path.display())
    }
}
