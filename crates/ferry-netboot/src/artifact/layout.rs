//! Where installer and live media keep their kernel, initrd and root
//! filesystem, so that a profile can name just the ISO.
//!
//! The first layout whose kernel and initrd both exist wins; its root
//! filesystem is served as `rootfs` when present. The paths are the ones
//! these distributions' images use:
//! Kairos/CanvOS (`boot/kernel`, `boot/initrd`, `rootfs.squashfs`),
//! Debian live-build (`live/`), Ubuntu casper, Fedora/RHEL/Rocky
//! (`images/pxeboot/`, `LiveOS/squashfs.img`), the Debian installer
//! (`install.amd/`, `install.a64/`), and a bare `vmlinuz` + `initrd.img`
//! pair (a directory made from `/boot`).

use crate::artifact::SourceTree;
use crate::error::ArtifactError;

/// One known layout.
pub struct Layout {
    pub name: &'static str,
    pub kernel: &'static [&'static str],
    pub initrd: &'static [&'static str],
    pub rootfs: &'static [&'static str],
}

pub const LAYOUTS: &[Layout] = &[
    Layout {
        name: "kairos",
        kernel: &["boot/kernel"],
        initrd: &["boot/initrd"],
        rootfs: &["rootfs.squashfs"],
    },
    Layout {
        name: "debian-live",
        kernel: &["live/vmlinuz"],
        initrd: &["live/initrd.img"],
        rootfs: &["live/filesystem.squashfs"],
    },
    Layout {
        name: "ubuntu-casper",
        kernel: &["casper/vmlinuz", "casper/hwe-vmlinuz"],
        initrd: &["casper/initrd", "casper/initrd.gz", "casper/initrd.lz"],
        rootfs: &[
            "casper/filesystem.squashfs",
            "casper/minimal.squashfs",
            "casper/ubuntu-server-minimal.squashfs",
        ],
    },
    Layout {
        name: "fedora",
        kernel: &["images/pxeboot/vmlinuz"],
        initrd: &["images/pxeboot/initrd.img"],
        rootfs: &["LiveOS/squashfs.img", "images/install.img"],
    },
    Layout {
        name: "debian-installer",
        kernel: &[
            "install.amd/vmlinuz",
            "install.a64/vmlinuz",
            "install/vmlinuz",
        ],
        initrd: &[
            "install.amd/initrd.gz",
            "install.a64/initrd.gz",
            "install/initrd.gz",
        ],
        rootfs: &[],
    },
    Layout {
        name: "plain",
        kernel: &["vmlinuz", "boot/vmlinuz"],
        initrd: &["initrd.img", "boot/initrd.img"],
        rootfs: &["rootfs.squashfs", "filesystem.squashfs"],
    },
];

/// The paths a recognized layout found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub name: &'static str,
    pub kernel: String,
    pub initrd: String,
    pub rootfs: Option<String>,
}

/// The first layout whose kernel and initrd exist in `tree`, preferring
/// one whose every file the tree names exactly (an OCI artifact titled
/// `vmlinuz`, `initrd.img`, `rootfs.squashfs` is the plain layout, though
/// its titles also answer debian-live's `live/vmlinuz` loosely).
pub fn detect(tree: &mut dyn SourceTree) -> Result<Option<Found>, ArtifactError> {
    for layout in LAYOUTS {
        let exact = |paths: &[&str], tree: &mut dyn SourceTree| -> Result<bool, ArtifactError> {
            for path in paths {
                if tree.names_exactly(path)? {
                    return Ok(true);
                }
            }
            Ok(false)
        };
        if exact(layout.kernel, tree)? && exact(layout.initrd, tree)? && exact(layout.rootfs, tree)?
        {
            return found(tree, layout);
        }
    }
    for layout in LAYOUTS {
        let Some(kernel) = first_present(tree, layout.kernel)? else {
            continue;
        };
        let Some(initrd) = first_present(tree, layout.initrd)? else {
            continue;
        };
        let rootfs = first_present(tree, layout.rootfs)?;
        return Ok(Some(Found {
            name: layout.name,
            kernel,
            initrd,
            rootfs,
        }));
    }
    Ok(None)
}

fn found(tree: &mut dyn SourceTree, layout: &Layout) -> Result<Option<Found>, ArtifactError> {
    let present =
        |paths: &[&str], tree: &mut dyn SourceTree| -> Result<Option<String>, ArtifactError> {
            for path in paths {
                if tree.names_exactly(path)? {
                    return Ok(Some((*path).to_string()));
                }
            }
            Ok(None)
        };
    Ok(Some(Found {
        name: layout.name,
        kernel: present(layout.kernel, tree)?.expect("checked"),
        initrd: present(layout.initrd, tree)?.expect("checked"),
        rootfs: present(layout.rootfs, tree)?,
    }))
}

fn first_present(
    tree: &mut dyn SourceTree,
    candidates: &[&str],
) -> Result<Option<String>, ArtifactError> {
    for path in candidates {
        if tree.lookup(path)?.is_some() {
            return Ok(Some((*path).to_string()));
        }
    }
    Ok(None)
}

/// "kairos (boot/kernel), debian-live (live/vmlinuz), ..." for messages.
pub fn describe_all() -> String {
    LAYOUTS
        .iter()
        .map(|l| format!("{} ({})", l.name, l.kernel[0]))
        .collect::<Vec<_>>()
        .join(", ")
}
