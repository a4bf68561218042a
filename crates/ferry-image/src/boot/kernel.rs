//! Finding the image's kernel and initramfs.
//!
//! Two layouts cover the distributions ferry builds from:
//!
//! - `/usr/lib/modules/<version>/vmlinuz` with `initramfs.img` beside it:
//!   bootc and image-mode Fedora/RHEL images, where the kernel lives with
//!   its modules so that `/boot` can be empty in the container;
//! - `/boot/vmlinuz-<version>` with `/boot/initrd.img-<version>` (Debian,
//!   Ubuntu) or `/boot/initramfs-<version>.img` (Fedora, RHEL, Rocky,
//!   Alma).
//!
//! The highest version wins (compared piece by piece, numbers as numbers).
//! A kernel without an initramfs is an error: the images boot from a
//! squashfs or an ext4 root that only an initramfs can mount.

use std::cmp::Ordering;
use std::path::{Path, PathBuf};

use crate::rootfs::{Kind, Tree};

/// Where the kernel search looks, for the error message.
pub const SEARCHED: &str = "/usr/lib/modules/*/vmlinuz, /boot/vmlinuz-*";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kernel {
    /// `6.1.0-50-amd64`.
    pub version: String,
    /// Image paths (resolved: regular files).
    pub kernel: PathBuf,
    pub initrd: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error("no kernel found in the image (looked at {SEARCHED})")]
    NoKernel,
    #[error("kernel {kernel} has no initramfs (looked at {looked})")]
    NoInitrd { kernel: String, looked: String },
}

/// Finds the newest kernel of the image and its initramfs.
pub fn find(tree: &Tree) -> Result<Kernel, KernelError> {
    let mut candidates: Vec<(String, PathBuf, Vec<PathBuf>)> = Vec::new();
    for (path, _) in tree.children(Path::new("usr/lib/modules")) {
        let version = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        candidates.push((
            version,
            path.join("vmlinuz"),
            vec![path.join("initramfs.img")],
        ));
    }
    for (path, _) in tree.children(Path::new("boot")) {
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        if let Some(version) = name.strip_prefix("vmlinuz-") {
            candidates.push((
                version.to_string(),
                path.to_path_buf(),
                vec![
                    PathBuf::from(format!("boot/initrd.img-{version}")),
                    PathBuf::from(format!("boot/initramfs-{version}.img")),
                    // bootc images may keep the initramfs with the modules.
                    PathBuf::from(format!("usr/lib/modules/{version}/initramfs.img")),
                ],
            ));
        }
    }
    let is_file = |p: &Path| {
        tree.resolve_all(p)
            .ok()
            .and_then(|r| tree.get(&r).map(|i| matches!(i.kind, Kind::File { .. })))
            .unwrap_or(false)
    };
    candidates.retain(|(_, kernel, _)| is_file(kernel));
    candidates.sort_by(|a, b| compare_versions(&b.0, &a.0));
    let (version, kernel, initrds) = candidates.into_iter().next().ok_or(KernelError::NoKernel)?;
    let initrd = initrds
        .iter()
        .find(|p| is_file(p))
        .cloned()
        .ok_or_else(|| KernelError::NoInitrd {
            kernel: format!("/{}", kernel.display()),
            looked: initrds
                .iter()
                .map(|p| format!("/{}", p.display()))
                .collect::<Vec<_>>()
                .join(", "),
        })?;
    Ok(Kernel {
        version,
        kernel: tree.resolve_all(&kernel).unwrap_or(kernel),
        initrd: tree.resolve_all(&initrd).unwrap_or(initrd),
    })
}

/// Compares kernel versions piece by piece: runs of digits as numbers,
/// everything else as text (`6.10.0` > `6.9.12`).
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    fn pieces(s: &str) -> Vec<(bool, &str)> {
        let mut out = Vec::new();
        let mut start = 0;
        let bytes = s.as_bytes();
        for i in 1..=bytes.len() {
            if i == bytes.len() || bytes[i].is_ascii_digit() != bytes[start].is_ascii_digit() {
                out.push((bytes[start].is_ascii_digit(), &s[start..i]));
                start = i;
            }
        }
        out
    }
    let (pa, pb) = (pieces(a), pieces(b));
    for (x, y) in pa.iter().zip(&pb) {
        let ord = match (x, y) {
            ((true, x), (true, y)) => x
                .trim_start_matches('0')
                .len()
                .cmp(&y.trim_start_matches('0').len())
                .then_with(|| x.trim_start_matches('0').cmp(y.trim_start_matches('0'))),
            ((_, x), (_, y)) => x.cmp(y),
        };
        if ord != Ordering::Equal {
            return ord;
        }
    }
    pa.len().cmp(&pb.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_as_numbers() {
        assert_eq!(compare_versions("6.10.0", "6.9.12"), Ordering::Greater);
        assert_eq!(
            compare_versions("6.1.0-50-amd64", "6.1.0-9-amd64"),
            Ordering::Greater
        );
        assert_eq!(
            compare_versions("5.14.0-427.el9", "5.14.0-427.el9"),
            Ordering::Equal
        );
    }

    #[test]
    fn newest_kernel_with_its_initramfs() {
        let t = Tree::with_files(&[
            "boot/vmlinuz-6.1.0-9-amd64",
            "boot/initrd.img-6.1.0-9-amd64",
            "boot/vmlinuz-6.1.0-50-amd64",
            "boot/initrd.img-6.1.0-50-amd64",
        ]);
        let k = find(&t).unwrap();
        assert_eq!(k.version, "6.1.0-50-amd64");
        assert_eq!(k.initrd, PathBuf::from("boot/initrd.img-6.1.0-50-amd64"));
        let t = Tree::with_files(&[
            "usr/lib/modules/5.14.0-427.el9.x86_64/vmlinuz",
            "usr/lib/modules/5.14.0-427.el9.x86_64/initramfs.img",
        ]);
        assert_eq!(find(&t).unwrap().version, "5.14.0-427.el9.x86_64");
    }

    #[test]
    fn errors_say_where_they_looked() {
        let err = find(&Tree::with_files(&["etc/os-release"])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "no kernel found in the image (looked at /usr/lib/modules/*/vmlinuz, /boot/vmlinuz-*)"
        );
        let err = find(&Tree::with_files(&["boot/vmlinuz-6.1"])).unwrap_err();
        assert!(err.to_string().contains("/boot/initrd.img-6.1"), "{err}");
    }
}
