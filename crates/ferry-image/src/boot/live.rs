//! Booting into the squashfs: which of the two live initramfs the image
//! carries, and the kernel arguments that make it find the squashfs on a
//! medium (the live ISO) or over HTTP (the netboot set).
//!
//! - Debian and Ubuntu: live-boot (initramfs-tools), `boot=live`; it
//!   finds `/live/filesystem.squashfs` on any medium, or downloads it with
//!   `fetch=URL`.
//! - The RHEL family and Fedora: dracut's dmsquash-live,
//!   `root=live:CDLABEL=...` or `root=live:URL` (dracut.cmdline(7),
//!   "Booting live images"). It must be in the image's initramfs:
//!   ferry does not rebuild the initramfs (that would run the image's
//!   dracut).

use std::path::Path;

use crate::rootfs::Tree;

/// The initramfs-tools hook live-boot installs.
const LIVE_BOOT_HOOK: &str = "usr/share/initramfs-tools/scripts/live";
/// dracut's live module (`dracut-live`).
const DRACUT_LIVE_MODULE: &str = "usr/lib/dracut/modules.d/90dmsquash-live";

/// The consoles every command line starts with, so boot messages reach
/// the serial console and the screen.
pub const CONSOLES: &str = "console=tty0 console=ttyS0,115200n8";

#[derive(Debug, thiserror::Error)]
#[error(
    "the image's initramfs cannot boot a squashfs root: add live-boot (Debian, Ubuntu; found by /{LIVE_BOOT_HOOK}) \
     or dracut-live (RHEL, Rocky, Alma, Fedora; its initramfs must include the dmsquash-live module, \
     /{DRACUT_LIVE_MODULE}) to the image"
)]
pub struct NoLiveInitramfs;

/// Which initramfs boots the live system.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LiveInitramfs {
    LiveBoot,
    Dracut,
}

impl LiveInitramfs {
    /// What the image has.
    pub fn detect(tree: &Tree) -> Result<LiveInitramfs, NoLiveInitramfs> {
        let exists = |p: &str| {
            tree.resolve_all(Path::new(p))
                .ok()
                .is_some_and(|r| tree.get(&r).is_some())
        };
        if exists(LIVE_BOOT_HOOK) {
            Ok(LiveInitramfs::LiveBoot)
        } else if exists(DRACUT_LIVE_MODULE) {
            Ok(LiveInitramfs::Dracut)
        } else {
            Err(NoLiveInitramfs)
        }
    }

    /// The command line that boots the squashfs at
    /// `/live/filesystem.squashfs` of the medium labelled `label`.
    pub fn medium_cmdline(self, label: &str, extra: &str) -> String {
        let live = match self {
            LiveInitramfs::LiveBoot => "boot=live".to_string(),
            LiveInitramfs::Dracut => format!(
                "root=live:CDLABEL={label} rd.live.image rd.live.dir=live \
                 rd.live.squashimg=filesystem.squashfs rd.live.overlay.overlayfs=1"
            ),
        };
        join(&live, extra)
    }

    /// The command line that downloads the squashfs from `url` (DHCP on
    /// the boot interface first).
    pub fn network_cmdline(self, url: &str, extra: &str) -> String {
        let live = match self {
            LiveInitramfs::LiveBoot => format!("boot=live fetch={url} ip=dhcp"),
            LiveInitramfs::Dracut => format!(
                "root=live:{url} rd.live.image rd.neednet=1 ip=dhcp rd.live.overlay.overlayfs=1"
            ),
        };
        join(&live, extra)
    }
}

fn join(live: &str, extra: &str) -> String {
    let mut line = format!("{live} {CONSOLES}");
    if !extra.trim().is_empty() {
        line.push(' ');
        line.push_str(extra.trim());
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_initramfs_decides_the_command_line() {
        let debian = Tree::with_files(&[LIVE_BOOT_HOOK]);
        let kind = LiveInitramfs::detect(&debian).unwrap();
        assert_eq!(kind, LiveInitramfs::LiveBoot);
        assert_eq!(
            kind.medium_cmdline("LIVE", " quiet "),
            "boot=live console=tty0 console=ttyS0,115200n8 quiet"
        );
        assert_eq!(
            kind.network_cmdline("http://s/r.squashfs", ""),
            "boot=live fetch=http://s/r.squashfs ip=dhcp console=tty0 console=ttyS0,115200n8"
        );
        let rocky = Tree::with_files(&[&format!("{DRACUT_LIVE_MODULE}/module-setup.sh")]);
        let kind = LiveInitramfs::detect(&rocky).unwrap();
        assert_eq!(kind, LiveInitramfs::Dracut);
        assert_eq!(
            kind.medium_cmdline("ROCKY_9", ""),
            "root=live:CDLABEL=ROCKY_9 rd.live.image rd.live.dir=live \
             rd.live.squashimg=filesystem.squashfs rd.live.overlay.overlayfs=1 \
             console=tty0 console=ttyS0,115200n8"
        );
        let err = LiveInitramfs::detect(&Tree::with_files(&["etc/os-release"])).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("add live-boot (Debian, Ubuntu"), "{text}");
        assert!(text.contains("dracut-live (RHEL"), "{text}");
        assert!(text.contains("dmsquash-live module"), "{text}");
    }
}
