//! Sysprep: what makes a machine itself is removed so every clone of the
//! image boots as a new machine (the list follows virt-sysprep's default
//! operations that apply to a fresh OS image):
//!
//! - `/etc/machine-id` emptied (not removed: systemd then generates a new
//!   id at first boot and treats the boot as a first boot,
//!   machine-id(5)); `/var/lib/dbus/machine-id` removed unless it is the
//!   usual symlink to it;
//! - SSH host keys (`/etc/ssh/ssh_host_*`) removed, and, when the image
//!   has `ssh-keygen`, a first-boot unit enabled that makes new ones
//!   ([`SSH_HOST_KEYS_UNIT`]): not every distribution regenerates them by
//!   itself (Debian makes them only in openssh-server's postinst, and its
//!   `ssh.service` then fails its `sshd -t` check; cloud-init makes them
//!   only where cloud-init is installed and runs);
//! - `/var/lib/systemd/random-seed` removed;
//! - logs: files under `/var/log` removed, directories kept;
//! - package caches and lists: apt's and dnf/yum's;
//! - `/tmp` and `/var/tmp` emptied.

use std::path::{Path, PathBuf};

use super::{Context, CustomizeError, systemd};
use crate::rootfs::{Kind, Rootfs};

/// The first-boot unit that makes the SSH host keys sysprep removed.
pub const SSH_HOST_KEYS_UNIT: &str = "ferry-ssh-host-keys.service";
/// The program the unit runs; no unit without it.
const SSH_KEYGEN: &str = "usr/bin/ssh-keygen";
/// The unit, as Arch's `sshdgenkeys.service` does it: it runs when any
/// host key is missing (`|` makes the conditions triggering: one true is
/// enough) and `ssh-keygen -A` makes only the missing ones (rsa, ecdsa,
/// ed25519; ssh-keygen(1)), so a clone whose keys were provided some
/// other way keeps them. Fedora's `sshd-keygen@.service` does the same
/// per key type. Ordered before the SSH server, whichever name its unit
/// has (Debian's `ssh.service`, the RHEL family's and Arch's
/// `sshd.service`); not before `ssh.socket`, which `sockets.target`
/// starts before this unit's default `After=basic.target` (a cycle).
const SSH_HOST_KEYS_UNIT_TEXT: &str = "\
[Unit]
Description=Generate the SSH host keys of this machine (the image has none)
Documentation=man:ssh-keygen(1)
ConditionPathExists=|!/etc/ssh/ssh_host_ecdsa_key
ConditionPathExists=|!/etc/ssh/ssh_host_ecdsa_key.pub
ConditionPathExists=|!/etc/ssh/ssh_host_ed25519_key
ConditionPathExists=|!/etc/ssh/ssh_host_ed25519_key.pub
ConditionPathExists=|!/etc/ssh/ssh_host_rsa_key
ConditionPathExists=|!/etc/ssh/ssh_host_rsa_key.pub
Before=ssh.service sshd.service

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -A
RemainAfterExit=yes

[Install]
WantedBy=multi-user.target
";

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
    if has_file(rootfs, SSH_KEYGEN) {
        // In the local administrator's unit directory (systemd.unit(5)):
        // ferry is the image's administrator here.
        super::write_file(
            rootfs,
            cx,
            &format!("etc/systemd/system/{SSH_HOST_KEYS_UNIT}"),
            SSH_HOST_KEYS_UNIT_TEXT.as_bytes(),
            0o644,
        )?;
        systemd::enable_unit(rootfs, cx, SSH_HOST_KEYS_UNIT)?;
    }
    Ok(removed)
}

/// Whether image path `path` is (or links to) a regular file.
fn has_file(rootfs: &Rootfs, path: &str) -> bool {
    let tree = rootfs.tree();
    tree.resolve_all(Path::new(path))
        .ok()
        .and_then(|resolved| tree.get(&resolved))
        .is_some_and(|inode| matches!(inode.kind, Kind::File { .. }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::customize::{ArtifactFile, ArtifactFiles, ArtifactInfo};
    use crate::rootfs::Meta;

    struct NoArtifacts;

    impl ArtifactFiles for NoArtifacts {
        fn describe(&self, reference: &str) -> Result<ArtifactInfo, String> {
            Err(format!("no artifacts here ({reference})"))
        }

        fn open(
            &self,
            reference: &str,
            _: &ArtifactFile,
        ) -> Result<Box<dyn std::io::Read + Send>, String> {
            Err(format!("no artifacts here ({reference})"))
        }
    }

    /// A rootfs holding `files` (with their directories), in `dir`.
    fn rootfs_with(dir: &Path, files: &[&str]) -> Rootfs {
        let mut rootfs = Rootfs::new(dir.join("stage"), 0).unwrap();
        for file in files {
            let path = rootfs.ensure_parents(Path::new(file), 0).unwrap();
            rootfs
                .file(&path, Meta::root_owned(0o755, 0), &mut &b"x"[..])
                .unwrap();
        }
        rootfs
    }

    fn sysprep(rootfs: &mut Rootfs) {
        let cx = Context {
            spec_dir: Path::new("."),
            mtime: 1_700_000_000,
            artifacts: &NoArtifacts,
            kubernetes: &Default::default(),
        };
        apply(rootfs, &cx).unwrap();
    }

    #[test]
    fn an_image_with_ssh_keygen_makes_new_host_keys_at_first_boot() {
        let dir = tempfile::tempdir().unwrap();
        let mut rootfs = rootfs_with(
            dir.path(),
            &[
                "usr/bin/ssh-keygen",
                "etc/ssh/ssh_host_ed25519_key",
                "etc/ssh/ssh_host_ed25519_key.pub",
                "etc/ssh/sshd_config",
            ],
        );
        sysprep(&mut rootfs);
        let tree = rootfs.tree();
        assert!(
            tree.get(Path::new("etc/ssh/ssh_host_ed25519_key"))
                .is_none()
        );
        assert!(tree.get(Path::new("etc/ssh/sshd_config")).is_some());

        let unit = rootfs
            .read(Path::new("etc/systemd/system/ferry-ssh-host-keys.service"))
            .unwrap()
            .expect("the unit file");
        let unit = String::from_utf8(unit).unwrap();
        let lines: Vec<&str> = unit.lines().collect();
        for line in [
            "Type=oneshot",
            "ExecStart=/usr/bin/ssh-keygen -A",
            "Before=ssh.service sshd.service",
            "ConditionPathExists=|!/etc/ssh/ssh_host_ed25519_key",
            "ConditionPathExists=|!/etc/ssh/ssh_host_rsa_key",
            "ConditionPathExists=|!/etc/ssh/ssh_host_ecdsa_key",
            "WantedBy=multi-user.target",
        ] {
            assert!(lines.contains(&line), "{line:?} missing from:\n{unit}");
        }
        let meta = &tree
            .get(Path::new("etc/systemd/system/ferry-ssh-host-keys.service"))
            .unwrap()
            .meta;
        assert_eq!((meta.mode, meta.uid, meta.mtime), (0o644, 0, 1_700_000_000));
        // Enabled as `systemctl enable` does it.
        match &tree
            .get(Path::new(
                "etc/systemd/system/multi-user.target.wants/ferry-ssh-host-keys.service",
            ))
            .expect("the .wants link")
            .kind
        {
            Kind::Symlink { target } => assert_eq!(
                target,
                Path::new("/etc/systemd/system/ferry-ssh-host-keys.service")
            ),
            other => panic!("the .wants entry is a {}", other.name()),
        }
    }

    #[test]
    fn an_image_without_ssh_keygen_gets_no_unit() {
        let dir = tempfile::tempdir().unwrap();
        let mut rootfs = rootfs_with(dir.path(), &["etc/ssh/ssh_host_rsa_key", "bin/sh"]);
        sysprep(&mut rootfs);
        let tree = rootfs.tree();
        assert!(tree.get(Path::new("etc/ssh/ssh_host_rsa_key")).is_none());
        assert!(tree.get(Path::new("etc/systemd")).is_none());
    }
}
