//! A file system as data to compare: every path's kind, mode (setuid,
//! setgid and sticky included), owner, mtime, symlink target, device
//! numbers, xattrs, content hash and hard-link identity, read either
//! from a host directory a reference tool extracted (as root, so owners,
//! devices and `security.*` xattrs are real) or from a [`Rootfs`] (the
//! tree, and the stage for the bytes). Two snapshots compare with
//! [`assert_same`], which lists only the paths that differ.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use ferry_image::rootfs::{Kind, Rootfs};

use crate::util;

/// One path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// `dir`, `file sha256:...`, `symlink -> TARGET`, `char MAJOR,MINOR`,
    /// `block MAJOR,MINOR` or `fifo`.
    pub kind: String,
    /// Permission bits with setuid, setgid and sticky.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: i64,
    /// The first path, in tree order, of this path's inode: the same for
    /// every name of a hard-linked file, the path itself otherwise.
    pub inode: PathBuf,
    pub xattrs: BTreeMap<String, Vec<u8>>,
}

/// Every path, relative to the root (the root itself is the empty path).
pub type Snapshot = BTreeMap<PathBuf, Node>;

/// Extended attributes of `path` (not following a symlink).
pub fn xattrs_of(path: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut names = vec![0u8; 65536];
    let n = rustix::fs::llistxattr(path, &mut names).unwrap();
    names[..n]
        .split(|b| *b == 0)
        .filter(|n| !n.is_empty())
        .map(|name| {
            let name = std::ffi::CString::new(name).unwrap();
            let mut value = vec![0u8; 65536];
            let len = rustix::fs::lgetxattr(path, name.as_c_str(), &mut value).unwrap();
            value.truncate(len);
            (name.into_string().unwrap(), value)
        })
        .collect()
}

/// The host directory `root`, walked without following symlinks.
pub fn of_dir(root: &Path) -> Snapshot {
    let mut found: Vec<(PathBuf, fs::Metadata)> = Vec::new();
    let mut pending = vec![PathBuf::new()];
    while let Some(rel) = pending.pop() {
        let host = root.join(&rel);
        let st = fs::symlink_metadata(&host).unwrap_or_else(|e| panic!("{host:?}: {e}"));
        if st.is_dir() {
            for entry in fs::read_dir(&host).unwrap() {
                pending.push(rel.join(entry.unwrap().file_name()));
            }
        }
        found.push((rel, st));
    }
    found.sort_by(|a, b| a.0.cmp(&b.0));
    // The first path of each hard-linked inode, in tree order.
    let mut first: HashMap<(u64, u64), PathBuf> = HashMap::new();
    for (rel, st) in &found {
        if !st.is_dir() {
            first
                .entry((st.dev(), st.ino()))
                .or_insert_with(|| rel.clone());
        }
    }
    found
        .into_iter()
        .map(|(rel, st)| {
            let host = root.join(&rel);
            let ft = st.file_type();
            let device = || {
                let rdev = st.rdev();
                format!("{},{}", rustix::fs::major(rdev), rustix::fs::minor(rdev))
            };
            let kind = if ft.is_dir() {
                "dir".to_string()
            } else if ft.is_file() {
                format!("file {}", util::sha256(&host))
            } else if ft.is_symlink() {
                format!("symlink -> {}", fs::read_link(&host).unwrap().display())
            } else if ft.is_char_device() {
                format!("char {}", device())
            } else if ft.is_block_device() {
                format!("block {}", device())
            } else if ft.is_fifo() {
                "fifo".to_string()
            } else {
                panic!("{host:?}: a socket or another unexpected kind of file")
            };
            let inode = if ft.is_dir() {
                rel.clone()
            } else {
                first[&(st.dev(), st.ino())].clone()
            };
            let node = Node {
                kind,
                mode: st.mode() & 0o7777,
                uid: st.uid(),
                gid: st.gid(),
                mtime: st.mtime(),
                inode,
                xattrs: xattrs_of(&host),
            };
            (rel, node)
        })
        .collect()
}

/// What `rootfs` says: metadata from the tree, bytes from the stage.
pub fn of_rootfs(rootfs: &Rootfs) -> Snapshot {
    rootfs
        .tree()
        .iter()
        .map(|(path, _, inode)| {
            let kind = match &inode.kind {
                Kind::Directory => "dir".to_string(),
                Kind::File { .. } => format!(
                    "file {}",
                    util::sha256(&rootfs.stage().host_path(inode.first_link()))
                ),
                Kind::Symlink { target } => format!("symlink -> {}", target.display()),
                Kind::CharDevice { major, minor } => format!("char {major},{minor}"),
                Kind::BlockDevice { major, minor } => format!("block {major},{minor}"),
                Kind::Fifo => "fifo".to_string(),
            };
            let m = &inode.meta;
            let node = Node {
                kind,
                mode: m.mode,
                uid: m.uid,
                gid: m.gid,
                mtime: m.mtime,
                inode: inode.first_link().to_path_buf(),
                xattrs: m.xattrs.clone(),
            };
            (path.to_path_buf(), node)
        })
        .collect()
}

/// Asserts both snapshots hold the same paths with the same nodes,
/// listing every difference (`found_by` and `expected_by` name the two
/// sides).
pub fn assert_same(found: &Snapshot, found_by: &str, expected: &Snapshot, expected_by: &str) {
    let paths: BTreeSet<&PathBuf> = found.keys().chain(expected.keys()).collect();
    let diff: Vec<String> = paths
        .into_iter()
        .filter(|p| found.get(*p) != expected.get(*p))
        .map(|p| {
            format!(
                "/{}:\n  {found_by}: {:?}\n  {expected_by}: {:?}",
                p.display(),
                found.get(p),
                expected.get(p)
            )
        })
        .collect();
    assert!(
        diff.is_empty(),
        "{} paths differ between {found_by} and {expected_by}:\n{}",
        diff.len(),
        diff.join("\n")
    );
}
