//! [`Tree`]: the assembled root filesystem as metadata.
//!
//! Every path of the image maps to an inode; hard links are several paths
//! on one inode. An inode holds what the image says about the file: its
//! kind, mode (permission bits and setuid/setgid/sticky), owner, mtime
//! and extended attributes. Owners, devices and capabilities are data
//! here, never applied to a host file, which is what lets a build run
//! without root. File contents live in the [`super::stage::Stage`].
//!
//! Paths are relative to the image root, normalized (no `.`, `..` or
//! empty components; the root is the empty path) and kept in a
//! `BTreeMap`: `PathBuf` orders component by component, so iterating
//! gives every directory before its children and each directory's
//! entries in byte order of their names, the order squashfs and ext4
//! directory writers want.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// Index of an inode in a [`Tree`].
pub type InodeId = usize;

/// Symlinks followed while resolving one path before giving up, as
/// Linux's `MAXSYMLINKS`.
const MAX_SYMLINKS: usize = 40;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Directory,
    /// A regular file of `size` bytes (its content is staged).
    File {
        size: u64,
    },
    Symlink {
        target: PathBuf,
    },
    CharDevice {
        major: u32,
        minor: u32,
    },
    BlockDevice {
        major: u32,
        minor: u32,
    },
    Fifo,
}

impl Kind {
    pub fn is_dir(&self) -> bool {
        matches!(self, Kind::Directory)
    }

    /// The file-type bits of `st_mode` (`S_IFDIR`, ...).
    pub fn type_bits(&self) -> u32 {
        match self {
            Kind::Directory => 0o040000,
            Kind::File { .. } => 0o100000,
            Kind::Symlink { .. } => 0o120000,
            Kind::CharDevice { .. } => 0o020000,
            Kind::BlockDevice { .. } => 0o060000,
            Kind::Fifo => 0o010000,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Kind::Directory => "directory",
            Kind::File { .. } => "file",
            Kind::Symlink { .. } => "symlink",
            Kind::CharDevice { .. } => "character device",
            Kind::BlockDevice { .. } => "block device",
            Kind::Fifo => "fifo",
        }
    }
}

/// What the image says about a file besides its kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    /// Permission bits with setuid (0o4000), setgid (0o2000) and sticky
    /// (0o1000); no file-type bits.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Seconds since the epoch.
    pub mtime: i64,
    /// Extended attributes by full name (`security.capability`,
    /// `user.x`, ...).
    pub xattrs: BTreeMap<String, Vec<u8>>,
}

impl Meta {
    /// Owned by root, with `mode` and `mtime`, no xattrs.
    pub fn root_owned(mode: u32, mtime: i64) -> Meta {
        Meta {
            mode,
            uid: 0,
            gid: 0,
            mtime,
            xattrs: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Inode {
    pub kind: Kind,
    pub meta: Meta,
    /// The paths of this inode: one, or several for hard-linked files.
    links: BTreeSet<PathBuf>,
}

impl Inode {
    pub fn links(&self) -> &BTreeSet<PathBuf> {
        &self.links
    }

    /// The `st_mode` value: type bits and permission bits.
    pub fn st_mode(&self) -> u32 {
        self.kind.type_bits() | (self.meta.mode & 0o7777)
    }

    /// One of its paths (the first in order), where its content is staged.
    pub fn first_link(&self) -> &Path {
        self.links.first().expect("a live inode has a path")
    }
}

/// Why a path cannot be placed in the tree.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("{path:?} climbs out of the image root (`..`)")]
    Traversal { path: String },
    #[error(
        "{path:?} goes through the symlink {link:?} -> {target:?}, which leaves the image root"
    )]
    SymlinkEscape {
        path: String,
        link: String,
        target: String,
    },
    #[error("{path:?}: too many levels of symbolic links")]
    SymlinkLoop { path: String },
    #[error("{path:?}: {parent:?} is a {kind}, not a directory")]
    NotADirectory {
        path: String,
        parent: String,
        kind: &'static str,
    },
    #[error("{path:?}: its directory {parent:?} does not exist")]
    MissingParent { path: String, parent: String },
}

/// The image's files as metadata; see the module docs.
#[derive(Debug, Clone)]
pub struct Tree {
    paths: BTreeMap<PathBuf, InodeId>,
    inodes: Vec<Option<Inode>>,
}

impl Tree {
    /// A tree holding only its root directory, with `root` as its metadata.
    pub fn new(root: Meta) -> Tree {
        let mut tree = Tree {
            paths: BTreeMap::new(),
            inodes: Vec::new(),
        };
        tree.add_inode(PathBuf::new(), Kind::Directory, root);
        tree
    }

    fn add_inode(&mut self, path: PathBuf, kind: Kind, meta: Meta) -> InodeId {
        let id = self.inodes.len();
        self.inodes.push(Some(Inode {
            kind,
            meta,
            links: BTreeSet::from([path.clone()]),
        }));
        self.paths.insert(path, id);
        id
    }

    pub fn get(&self, path: &Path) -> Option<&Inode> {
        self.paths.get(path).map(|id| self.inode(*id))
    }

    pub fn get_mut(&mut self, path: &Path) -> Option<&mut Inode> {
        let id = *self.paths.get(path)?;
        self.inodes[id].as_mut()
    }

    pub fn id(&self, path: &Path) -> Option<InodeId> {
        self.paths.get(path).copied()
    }

    pub fn inode(&self, id: InodeId) -> &Inode {
        self.inodes[id]
            .as_ref()
            .expect("inode ids in paths are live")
    }

    pub fn root(&self) -> &Inode {
        self.get(Path::new("")).expect("the root always exists")
    }

    /// Every path and its inode, directories before their entries, each
    /// directory's entries in byte order of their names.
    pub fn iter(&self) -> impl Iterator<Item = (&Path, InodeId, &Inode)> {
        self.paths
            .iter()
            .map(|(path, id)| (path.as_path(), *id, self.inode(*id)))
    }

    /// The entries directly in directory `dir`, in byte order of names.
    pub fn children<'a>(&'a self, dir: &'a Path) -> impl Iterator<Item = (&'a Path, InodeId)> {
        self.descendants(dir)
            .filter(move |(p, _)| p.parent() == Some(dir))
    }

    /// Every path below `dir` (not `dir` itself), in tree order.
    pub fn descendants<'a>(&'a self, dir: &'a Path) -> impl Iterator<Item = (&'a Path, InodeId)> {
        use std::ops::Bound;
        self.paths
            .range::<Path, _>((Bound::Excluded(dir), Bound::Unbounded))
            .take_while(move |(p, _)| p.starts_with(dir) && p.as_path() != dir)
            .map(|(p, id)| (p.as_path(), *id))
    }

    /// Number of paths, the root included.
    pub fn len(&self) -> usize {
        self.paths.len()
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    /// Live inodes (hard links counted once).
    pub fn inode_count(&self) -> usize {
        self.inodes.iter().filter(|i| i.is_some()).count()
    }

    /// Total size of regular files, each inode counted once.
    pub fn file_bytes(&self) -> u64 {
        self.inodes
            .iter()
            .flatten()
            .map(|i| match i.kind {
                Kind::File { size } => size,
                _ => 0,
            })
            .sum()
    }

    /// Adds `path` as a new inode. Its parent must exist and be a
    /// directory, and `path` itself must not exist (remove it first).
    pub fn insert(&mut self, path: &Path, kind: Kind, meta: Meta) -> Result<InodeId, PathError> {
        self.check_parent(path)?;
        assert!(
            !self.paths.contains_key(path),
            "{path:?} exists; remove it first"
        );
        Ok(self.add_inode(path.to_path_buf(), kind, meta))
    }

    /// Adds `path` as one more name of inode `id` (a hard link).
    pub fn link(&mut self, path: &Path, id: InodeId) -> Result<(), PathError> {
        self.check_parent(path)?;
        assert!(
            !self.paths.contains_key(path),
            "{path:?} exists; remove it first"
        );
        self.inodes[id]
            .as_mut()
            .expect("linking a live inode")
            .links
            .insert(path.to_path_buf());
        self.paths.insert(path.to_path_buf(), id);
        Ok(())
    }

    fn check_parent(&self, path: &Path) -> Result<(), PathError> {
        let parent = path.parent().expect("the root is never inserted");
        match self.get(parent) {
            Some(inode) if inode.kind.is_dir() => Ok(()),
            Some(inode) => Err(PathError::NotADirectory {
                path: display(path),
                parent: display(parent),
                kind: inode.kind.name(),
            }),
            None => Err(PathError::MissingParent {
                path: display(path),
                parent: display(parent),
            }),
        }
    }

    /// Removes `path` and, for a directory, everything below it. Returns
    /// the removed paths whose inode lost its last name (the caller drops
    /// their staged content); the root cannot be removed.
    pub fn remove(&mut self, path: &Path) -> Vec<PathBuf> {
        if path.as_os_str().is_empty() {
            return self.clear_dir(path);
        }
        let Some(&id) = self.paths.get(path) else {
            return Vec::new();
        };
        let mut removed: Vec<PathBuf> = Vec::new();
        if self.inode(id).kind.is_dir() {
            let below: Vec<PathBuf> = self
                .descendants(path)
                .map(|(p, _)| p.to_path_buf())
                .collect();
            for p in below {
                self.unlink(&p, &mut removed);
            }
        }
        self.unlink(path, &mut removed);
        removed
    }

    /// Removes everything below directory `dir`, keeping `dir`.
    pub fn clear_dir(&mut self, dir: &Path) -> Vec<PathBuf> {
        let below: Vec<PathBuf> = self
            .descendants(dir)
            .map(|(p, _)| p.to_path_buf())
            .collect();
        let mut removed = Vec::new();
        for p in below {
            self.unlink(&p, &mut removed);
        }
        removed
    }

    fn unlink(&mut self, path: &Path, removed: &mut Vec<PathBuf>) {
        let Some(id) = self.paths.remove(path) else {
            return;
        };
        let inode = self.inodes[id].as_mut().expect("live");
        inode.links.remove(path);
        if inode.links.is_empty() {
            self.inodes[id] = None;
            removed.push(path.to_path_buf());
        }
    }

    /// Resolves the directories of `path` inside the image, following
    /// symlinks as if the image root were `/` (a chroot): returns the path
    /// with every directory component real. The last component is not
    /// followed. A `..` above the root or a symlink that climbs out of it
    /// is refused: a layer must not place files outside the image, and
    /// following such a link on the build host could write anywhere.
    pub fn resolve_parent(&self, path: &Path) -> Result<PathBuf, PathError> {
        let Some(name) = path.file_name() else {
            return Ok(path.to_path_buf());
        };
        let parent = path.parent().unwrap_or(Path::new(""));
        let mut resolved = self.resolve(parent, path, &mut 0)?;
        resolved.push(name);
        Ok(resolved)
    }

    /// Resolves every component of `path`, the last one included.
    pub fn resolve_all(&self, path: &Path) -> Result<PathBuf, PathError> {
        self.resolve(path, path, &mut 0)
    }

    fn resolve(&self, path: &Path, whole: &Path, hops: &mut usize) -> Result<PathBuf, PathError> {
        let mut out = PathBuf::new();
        for component in path.components() {
            let Component::Normal(name) = component else {
                continue;
            };
            out.push(name);
            let Some(Inode {
                kind: Kind::Symlink { target },
                ..
            }) = self.get(&out)
            else {
                continue;
            };
            *hops += 1;
            if *hops > MAX_SYMLINKS {
                return Err(PathError::SymlinkLoop {
                    path: display(whole),
                });
            }
            let base = out.parent().unwrap_or(Path::new("")).to_path_buf();
            let joined = if target.is_absolute() {
                normalize(target.as_os_str().as_bytes())
            } else {
                normalize(base.join(target).as_os_str().as_bytes())
            };
            let escape = || PathError::SymlinkEscape {
                path: display(whole),
                link: display(&out),
                target: display(target),
            };
            let joined = joined.map_err(|_| escape())?;
            out = self.resolve(&joined, whole, hops)?;
        }
        Ok(out)
    }
}

#[cfg(test)]
impl Tree {
    /// For unit tests: regular files `files` (one byte each) and the
    /// directories holding them, all root-owned `0755`.
    pub(crate) fn with_files(files: &[&str]) -> Tree {
        let meta = || Meta::root_owned(0o755, 0);
        let mut tree = Tree::new(meta());
        for file in files {
            let path = Path::new(file);
            let dirs: Vec<&Path> = path.ancestors().skip(1).collect();
            for dir in dirs.into_iter().rev().skip(1) {
                if tree.get(dir).is_none() {
                    tree.insert(dir, Kind::Directory, meta()).unwrap();
                }
            }
            tree.insert(path, Kind::File { size: 1 }, meta()).unwrap();
        }
        tree
    }
}

/// Normalizes a path from a layer or a spec: leading `/` and `./` are
/// dropped, `.` and empty components skipped, `..` applied; a `..` that
/// would climb above the root is refused.
pub fn normalize(raw: &[u8]) -> Result<PathBuf, PathError> {
    let mut parts: Vec<&[u8]> = Vec::new();
    for part in raw.split(|b| *b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => {
                if parts.pop().is_none() {
                    return Err(PathError::Traversal {
                        path: String::from_utf8_lossy(raw).into_owned(),
                    });
                }
            }
            name => parts.push(name),
        }
    }
    let mut path = PathBuf::new();
    for part in parts {
        path.push(OsStr::from_bytes(part));
    }
    Ok(path)
}

/// A path for messages: `/`-rooted, as users see it in the image.
pub fn display(path: &Path) -> String {
    format!("/{}", path.display())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> Meta {
        Meta::root_owned(0o755, 0)
    }

    fn tree() -> Tree {
        let mut t = Tree::new(meta());
        for d in ["usr", "usr/lib", "etc"] {
            t.insert(Path::new(d), Kind::Directory, meta()).unwrap();
        }
        t.insert(
            Path::new("lib"),
            Kind::Symlink {
                target: "usr/lib".into(),
            },
            meta(),
        )
        .unwrap();
        t.insert(
            Path::new("etc/abs"),
            Kind::Symlink {
                target: "/usr/lib".into(),
            },
            meta(),
        )
        .unwrap();
        t.insert(
            Path::new("etc/out"),
            Kind::Symlink {
                target: "../../..".into(),
            },
            meta(),
        )
        .unwrap();
        t
    }

    #[test]
    fn normalize_refuses_climbing_out() {
        assert_eq!(normalize(b"./a//b/./c").unwrap(), PathBuf::from("a/b/c"));
        assert_eq!(normalize(b"/a/b/../c").unwrap(), PathBuf::from("a/c"));
        assert!(matches!(
            normalize(b"a/../../etc/passwd"),
            Err(PathError::Traversal { .. })
        ));
    }

    #[test]
    fn parents_resolve_through_symlinks_inside_the_root_only() {
        let t = tree();
        assert_eq!(
            t.resolve_parent(Path::new("lib/x.so")).unwrap(),
            PathBuf::from("usr/lib/x.so")
        );
        assert_eq!(
            t.resolve_parent(Path::new("etc/abs/y")).unwrap(),
            PathBuf::from("usr/lib/y")
        );
        assert!(matches!(
            t.resolve_parent(Path::new("etc/out/etc/passwd")),
            Err(PathError::SymlinkEscape { .. })
        ));
        // The last component is not followed.
        assert_eq!(
            t.resolve_parent(Path::new("lib")).unwrap(),
            PathBuf::from("lib")
        );
    }

    #[test]
    fn order_is_directory_then_entries_by_name() {
        let mut t = Tree::new(meta());
        for p in ["a-b", "a", "a/c", "a/b", "a.b"] {
            let kind = if p == "a" {
                Kind::Directory
            } else {
                Kind::Fifo
            };
            t.insert(Path::new(p), kind, meta()).unwrap();
        }
        let order: Vec<String> = t.iter().map(|(p, _, _)| p.display().to_string()).collect();
        assert_eq!(order, ["", "a", "a/b", "a/c", "a-b", "a.b"]);
        let kids: Vec<&Path> = t.children(Path::new("a")).map(|(p, _)| p).collect();
        assert_eq!(kids, [Path::new("a/b"), Path::new("a/c")]);
    }

    #[test]
    fn hard_links_share_an_inode_until_the_last_name_goes() {
        let mut t = Tree::new(meta());
        let id = t
            .insert(Path::new("a"), Kind::File { size: 3 }, meta())
            .unwrap();
        t.link(Path::new("b"), id).unwrap();
        assert!(t.remove(Path::new("a")).is_empty());
        assert_eq!(t.get(Path::new("b")).unwrap().first_link(), Path::new("b"));
        assert_eq!(t.remove(Path::new("b")), [PathBuf::from("b")]);
        assert_eq!(t.inode_count(), 1);
    }
}
