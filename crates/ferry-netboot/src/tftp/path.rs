//! Turning a TFTP file name into a path that stays inside the root.
//!
//! A client's name is untrusted: `../../etc/shadow`, `/etc/shadow` or
//! `..\..\etc\shadow` must not leave the TFTP root. Names are taken
//! relative to the root (a leading `/` is dropped, as many PXE ROMs send
//! one), `\` counts as a separator (Windows-born boot loaders send it), and
//! any `..` component, control character or NUL refuses the name outright
//! rather than being "cleaned", so nothing is guessed. Symbolic links
//! inside the root are followed: they are the operator's (Debian's `ipxe`
//! package links `ipxe.efi` to `/boot/ipxe.efi`), and a read-only server
//! gives clients no way to create one.

use std::path::{Path, PathBuf};

/// Longest file name accepted.
pub const MAX_NAME: usize = 255;

/// The path under `root` for `requested`, or `None` if the name is not
/// acceptable.
pub fn resolve(root: &Path, requested: &str) -> Option<PathBuf> {
    if requested.is_empty()
        || requested.len() > MAX_NAME
        || requested.chars().any(|c| c.is_control())
    {
        return None;
    }
    let normalized = requested.replace('\\', "/");
    let mut path = root.to_path_buf();
    let mut any = false;
    for part in normalized.split('/') {
        match part {
            "" | "." => continue,
            ".." => return None,
            name => {
                path.push(name);
                any = true;
            }
        }
    }
    any.then_some(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stays_inside_the_root() {
        let root = Path::new("/srv/tftp");
        assert_eq!(
            resolve(root, "undionly.kpxe"),
            Some(PathBuf::from("/srv/tftp/undionly.kpxe"))
        );
        assert_eq!(
            resolve(root, "/efi/./snponly.efi"),
            Some(PathBuf::from("/srv/tftp/efi/snponly.efi"))
        );
        assert_eq!(
            resolve(root, "\\boot\\x.efi"),
            Some(PathBuf::from("/srv/tftp/boot/x.efi"))
        );
        for bad in [
            "",
            "/",
            "..",
            "../etc/passwd",
            "/../etc/passwd",
            "a/../../etc/passwd",
            "..\\..\\etc\\passwd",
            "a/..",
            "x\0y",
            "x\ny",
        ] {
            assert_eq!(resolve(root, bad), None, "{bad:?}");
        }
        assert_eq!(resolve(root, &"a".repeat(MAX_NAME + 1)), None);
    }
}
