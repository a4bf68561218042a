//! Applying one OCI layer (an uncompressed tar stream) to a [`Rootfs`],
//! following the image spec's "Image Layer Filesystem Changeset"
//! (opencontainers/image-spec, layer.md):
//!
//! - entries are applied in order; a file replaces what was at its path,
//!   a directory over a directory only updates its metadata;
//! - `.wh.<name>` deletes `<name>` from the layers below, and the opaque
//!   marker `.wh..wh..opq` deletes everything the layers below put in its
//!   directory. A whiteout "MUST only apply to resources in lower/parent
//!   layers", so what this same layer adds survives it, whatever order the
//!   tar lists them in;
//! - hard links (to anything but a directory, as layer.md allows; one to
//!   a symlink becomes a symlink of its own, see [`Rootfs::hard_link`]),
//!   symlinks (mode `0777`, as Linux shows every symlink), device nodes
//!   and FIFOs are kept; owners, modes (setuid, setgid, sticky included),
//!   mtimes and xattrs (PAX `SCHILY.xattr.*`, so `security.capability`
//!   survives) are recorded as data in the tree.
//!
//! The integration test `layers` checks all of this against
//! `umoci raw unpack` on a layout holding every case.
//!
//! Entry names with `..` that climb out of the root, and entries that
//! would be written through a symlink leading out of it, are refused
//! with [`LayerError::Path`]: the layer is hostile or broken.

use std::collections::{BTreeMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};

use tar::EntryType;

use super::tree::{self, Kind, Meta, normalize};
use super::{Rootfs, RootfsError};

/// Prefix of a whiteout file name.
const WHITEOUT: &str = ".wh.";
/// Name of the opaque-directory marker.
const OPAQUE: &str = ".wh..wh..opq";

#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    #[error("{layer}: entry {entry}: {source}")]
    Path {
        layer: String,
        entry: String,
        #[source]
        source: RootfsError,
    },
    #[error("{layer}: reading the tar stream: {source}")]
    Read {
        layer: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{layer}: entry {entry}: unsupported tar entry type {kind:?}")]
    Unsupported {
        layer: String,
        entry: String,
        kind: char,
    },
}

/// What one layer did, for progress and the build report.
#[derive(Debug, Default, Clone, Copy)]
pub struct LayerStats {
    pub entries: u64,
    pub whiteouts: u64,
    pub file_bytes: u64,
}

/// Applies the tar stream `tar` (named `layer` in errors) to `rootfs`.
/// Directories missing from the layer are created `0755`, root-owned,
/// dated `default_mtime`.
pub fn apply(
    rootfs: &mut Rootfs,
    tar: impl Read,
    layer: &str,
    default_mtime: i64,
) -> Result<LayerStats, LayerError> {
    let mut archive = tar::Archive::new(tar);
    let read_err = |source| LayerError::Read {
        layer: layer.to_string(),
        source,
    };
    let mut added: HashSet<PathBuf> = HashSet::new();
    let mut stats = LayerStats::default();
    for entry in archive.entries().map_err(read_err)? {
        let mut entry = entry.map_err(read_err)?;
        let raw_name = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw_name).into_owned();
        let path_err = |source: RootfsError| LayerError::Path {
            layer: layer.to_string(),
            entry: shown.clone(),
            source,
        };
        let kind = entry.header().entry_type();
        if matches!(
            kind,
            EntryType::XGlobalHeader | EntryType::XHeader | EntryType::GNULongName
        ) {
            continue;
        }
        let path = normalize(&raw_name).map_err(|e| path_err(e.into()))?;
        stats.entries += 1;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name == OPAQUE {
            stats.whiteouts += 1;
            let dir = path.parent().unwrap_or(Path::new(""));
            let dir = rootfs
                .tree()
                .resolve_all(dir)
                .map_err(|e| path_err(e.into()))?;
            remove_lower(rootfs, &dir, true, &added).map_err(path_err)?;
            continue;
        }
        if let Some(hidden) = name.strip_prefix(WHITEOUT) {
            stats.whiteouts += 1;
            let target = path.with_file_name(hidden);
            let target = rootfs
                .tree()
                .resolve_parent(&target)
                .map_err(|e| path_err(e.into()))?;
            remove_lower(rootfs, &target, false, &added).map_err(path_err)?;
            continue;
        }
        let meta = meta_of(&mut entry, default_mtime).map_err(read_err)?;
        let resolved = rootfs
            .ensure_parents(&path, default_mtime)
            .map_err(path_err)?;
        match kind {
            EntryType::Directory => rootfs.dir(&resolved, meta),
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                let id = rootfs.file(&resolved, meta, &mut entry);
                if let Some(tree::Inode {
                    kind: Kind::File { size },
                    ..
                }) = rootfs.tree().get(&resolved)
                {
                    stats.file_bytes += size;
                }
                id.map(drop)
            }
            EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .map(|t| PathBuf::from(std::ffi::OsStr::from_bytes(&t)))
                    .unwrap_or_default();
                rootfs.symlink(&resolved, &target, meta)
            }
            EntryType::Link => {
                let target = entry.link_name_bytes().unwrap_or_default();
                let target = normalize(&target).map_err(|e| path_err(e.into()))?;
                rootfs.hard_link(&resolved, &target)
            }
            EntryType::Char | EntryType::Block => {
                let major = entry.header().device_major().ok().flatten().unwrap_or(0);
                let minor = entry.header().device_minor().ok().flatten().unwrap_or(0);
                let kind = if kind == EntryType::Char {
                    Kind::CharDevice { major, minor }
                } else {
                    Kind::BlockDevice { major, minor }
                };
                rootfs.special(&resolved, kind, meta)
            }
            EntryType::Fifo => rootfs.special(&resolved, Kind::Fifo, meta),
            other => {
                return Err(LayerError::Unsupported {
                    layer: layer.to_string(),
                    entry: shown,
                    kind: other.as_byte() as char,
                });
            }
        }
        .map_err(path_err)?;
        for ancestor in resolved.ancestors() {
            if !added.insert(ancestor.to_path_buf()) {
                break;
            }
        }
    }
    Ok(stats)
}

/// Removes `path` (or, for an opaque directory, only its entries) as
/// far as it comes from lower layers: what this layer added, and the
/// directories holding it, stay. `kept` holds every path this layer
/// added and all their ancestors.
fn remove_lower(
    rootfs: &mut Rootfs,
    path: &Path,
    only_entries: bool,
    kept: &HashSet<PathBuf>,
) -> Result<(), RootfsError> {
    if !only_entries && !kept.contains(path) {
        return rootfs.remove(path);
    }
    let below: Vec<PathBuf> = rootfs
        .tree()
        .descendants(path)
        .map(|(p, _)| p.to_path_buf())
        .collect();
    for p in below {
        // Gone already when an ancestor was removed just before.
        if !kept.contains(&p) && rootfs.tree().get(&p).is_some() {
            rootfs.remove(&p)?;
        }
    }
    Ok(())
}

/// Owner, mode, mtime and xattrs of a tar entry, PAX records first.
fn meta_of<R: Read>(entry: &mut tar::Entry<'_, R>, default_mtime: i64) -> std::io::Result<Meta> {
    let header = entry.header();
    let mut meta = Meta {
        mode: header.mode().unwrap_or(0o644) & 0o7777,
        uid: header.uid().unwrap_or(0) as u32,
        gid: header.gid().unwrap_or(0) as u32,
        mtime: header.mtime().map(|m| m as i64).unwrap_or(default_mtime),
        xattrs: BTreeMap::new(),
    };
    if let Some(extensions) = entry.pax_extensions()? {
        for extension in extensions {
            let extension = extension?;
            let Ok(key) = extension.key() else { continue };
            let value = extension.value_bytes();
            let number = || std::str::from_utf8(value).ok();
            match key {
                "uid" => meta.uid = number().and_then(|v| v.parse().ok()).unwrap_or(meta.uid),
                "gid" => meta.gid = number().and_then(|v| v.parse().ok()).unwrap_or(meta.gid),
                // PAX times are decimal seconds, possibly with a fraction.
                "mtime" => {
                    if let Some(secs) = number()
                        .and_then(|v| v.split('.').next())
                        .and_then(|v| v.parse().ok())
                    {
                        meta.mtime = secs;
                    }
                }
                _ => {
                    if let Some(name) = key.strip_prefix("SCHILY.xattr.") {
                        meta.xattrs.insert(name.to_string(), value.to_vec());
                    }
                }
            }
        }
    }
    Ok(meta)
}

use std::os::unix::ffi::OsStrExt;
