//! Sysprep: what makes a machine itself is removed so every clone of the
//! image boots as a new machine (the list follows virt-sysprep's default
//! operations that apply to a fresh OS image):
//!
//! - `/etc/machine-id` emptied (not removed: systemd then generates a new
//!   id at first boot and treats the boot as a first boot,
//!   machine-id(5)); `/var/lib/dbus/machine-id` removed unless it is the
//!   usual symlink to it;
//! - SSH host keys (`/etc/ssh/ssh_host_*`) removed: sshd's unit (or
//!   cloud-init) makes new ones at first boot;
//! - `/var/lib/systemd/random-seed` removed;
//! - logs: files under `/var/log` removed, directories kept;
//! - package caches and lists: apt's and dnf/yum's;
//! - `/tmp` and `/var/tmp` emptied.

use std::path::{Path, PathBuf};

use super::{Context, CustomizeError};
use crate::rootfs::{Kind, Rootfs};

/// Directories whose contents go, with the files directly in them only
/// (`false`) or everything below (`true`).
const CLEARED: &[(&str, bool)] = &[
    ("tmp", true),
    ("var/tmp", true),
    ("var/cache/apt/archives", false),
    ("var/lib/apt/lists", false),
    ("var/cache/dnf", true),
    ("var/cache/yum", true),
];

pub fn apply(rootfs: &mut Rootfs, cx: &Context<'_>) -> Result<usize, CustomizeError> {
    let mut removed = 0;
    let tree = rootfs.tree();
    let mut doomed: Vec<PathBuf> = Vec::new();
    let files_under = |dir: &str, deep: bool| -> Vec<PathBuf> {
        let dir = Path::new(dir);
        tree.descendants(dir)
            .filter(|(p, id)| {
                (deep && p.parent() == Some(dir))
                    || (!deep && p.parent() == Some(dir) && !tree.inode(*id).kind.is_dir())
            })
            .map(|(p, _)| p.to_path_buf())
            .collect()
    };
    for (dir, deep) in CLEARED {
        doomed.extend(files_under(dir, *deep));
    }
    doomed.extend(
        tree.descendants(Path::new("var/log"))
            .filter(|(_, id)| !tree.inode(*id).kind.is_dir())
            .map(|(p, _)| p.to_path_buf()),
    );
    doomed.extend(
        tree.children(Path::new("etc/ssh"))
            .filter(|(p, _)| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("ssh_host_"))
            })
            .map(|(p, _)| p.to_path_buf()),
    );
    doomed.push(PathBuf::from("var/lib/systemd/random-seed"));
    // apt's own cache files in /var/cache/apt (pkgcache.bin, ...).
    doomed.extend(
        tree.children(Path::new("var/cache/apt"))
            .filter(|(p, _)| p.extension().is_some_and(|e| e == "bin"))
            .map(|(p, _)| p.to_path_buf()),
    );
    let dbus_id = Path::new("var/lib/dbus/machine-id");
    if let Some(inode) = tree.get(dbus_id)
        && !matches!(inode.kind, Kind::Symlink { .. })
    {
        doomed.push(dbus_id.to_path_buf());
    }
    // apt keeps lock files and partial/ where it expects them.
    doomed.retain(|p| !p.ends_with("lock") && !p.ends_with("partial") && !p.ends_with("auxfiles"));
    for path in doomed {
        if rootfs.tree().get(&path).is_some() {
            rootfs.remove(&path)?;
            removed += 1;
        }
    }
    if rootfs.tree().get(Path::new("etc")).is_some() {
        let meta = match rootfs.tree().get(Path::new("etc/machine-id")) {
            Some(existing) => crate::rootfs::Meta {
                mtime: cx.mtime,
                ..existing.meta.clone()
            },
            None => cx.meta(0o444),
        };
        rootfs.file(Path::new("etc/machine-id"), meta, &mut &b""[..])?;
    }
    Ok(removed)
}
