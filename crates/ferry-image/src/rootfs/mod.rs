//! The root filesystem of the image being built: [`tree::Tree`] (what
//! every file is: kind, owner, mode, xattrs, as data) kept in step with
//! [`stage::Stage`] (the files' bytes on the build host's disk).
//!
//! [`layer::apply`] lays OCI layers onto it; customization and sysprep
//! change it through the same [`Rootfs`] operations; the output writers
//! read it. Every change goes through [`Rootfs`], so the tree and the
//! stage never disagree.

pub mod layer;
pub mod stage;
pub mod tree;

use std::io::{self, Read};
use std::path::{Path, PathBuf};

pub use stage::Stage;
pub use tree::{InodeId, Kind, Meta, PathError, Tree};

#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error(transparent)]
    Path(#[from] PathError),
    #[error("staging {path}: {source}")]
    Stage {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("{path}: hard link to {target}, which is {why}")]
    BadHardLink {
        path: String,
        target: String,
        why: &'static str,
    },
}

/// The tree and its stage; see the module docs.
#[derive(Debug)]
pub struct Rootfs {
    tree: Tree,
    stage: Stage,
}

impl Rootfs {
    /// An empty root directory (`0755`, root-owned, dated `mtime`) staged
    /// in `stage_dir`.
    pub fn new(stage_dir: PathBuf, mtime: i64) -> Result<Rootfs, RootfsError> {
        let stage = Stage::create(stage_dir.clone()).map_err(|source| RootfsError::Stage {
            path: stage_dir.display().to_string(),
            source,
        })?;
        Ok(Rootfs {
            tree: Tree::new(Meta::root_owned(0o755, mtime)),
            stage,
        })
    }

    pub fn tree(&self) -> &Tree {
        &self.tree
    }

    pub fn stage(&self) -> &Stage {
        &self.stage
    }

    fn staging<T>(path: &Path, result: io::Result<T>) -> Result<T, RootfsError> {
        result.map_err(|source| RootfsError::Stage {
            path: tree::display(path),
            source,
        })
    }

    /// Removes `path` (recursively) from the tree and the stage.
    pub fn remove(&mut self, path: &Path) -> Result<(), RootfsError> {
        if self.tree.get(path).is_none() {
            return Ok(());
        }
        // A hard link's other names keep the staged bytes: `remove` only
        // unlinks this name on disk too.
        self.tree.remove(path);
        Self::staging(path, self.stage.remove(path))
    }

    /// Removes everything inside directory `path`.
    pub fn clear_dir(&mut self, path: &Path) -> Result<(), RootfsError> {
        self.tree.clear_dir(path);
        Self::staging(path, self.stage.clear_dir(path))
    }

    /// Makes room for a new entry at `path` (already resolved): a
    /// directory stays when `keep_dir` (a directory is replacing it, so
    /// its entries survive, as tar extraction does); anything else goes.
    fn make_room(&mut self, path: &Path, keep_dir: bool) -> Result<bool, RootfsError> {
        match self.tree.get(path) {
            None => Ok(false),
            Some(inode) if keep_dir && inode.kind.is_dir() => Ok(true),
            Some(_) => self.remove(path).map(|()| false),
        }
    }

    /// Creates or updates directory `path` with `meta`.
    pub fn dir(&mut self, path: &Path, meta: Meta) -> Result<(), RootfsError> {
        let path = self.tree.resolve_parent(path)?;
        if path.as_os_str().is_empty() {
            self.tree.get_mut(&path).expect("root").meta = meta;
            return Ok(());
        }
        if self.make_room(&path, true)? {
            self.tree.get_mut(&path).expect("kept").meta = meta;
            return Ok(());
        }
        self.tree.insert(&path, Kind::Directory, meta)?;
        Self::staging(&path, self.stage.create_dir(&path))
    }

    /// Creates every missing directory of `path` (`0755`, root-owned,
    /// dated `mtime`), as tar extraction does for a file whose directory
    /// the layer does not list. Returns the resolved path.
    pub fn ensure_parents(&mut self, path: &Path, mtime: i64) -> Result<PathBuf, RootfsError> {
        let resolved = self.tree.resolve_parent(path)?;
        let mut at = PathBuf::new();
        let parents: Vec<_> = resolved
            .parent()
            .map(|p| p.components().collect())
            .unwrap_or_default();
        for component in parents {
            at.push(component);
            if self.tree.get(&at).is_none() {
                self.tree
                    .insert(&at, Kind::Directory, Meta::root_owned(0o755, mtime))?;
                Self::staging(&at, self.stage.create_dir(&at))?;
            }
        }
        Ok(resolved)
    }

    /// Creates regular file `path` from `content`, replacing what was there.
    pub fn file(
        &mut self,
        path: &Path,
        meta: Meta,
        content: &mut dyn Read,
    ) -> Result<InodeId, RootfsError> {
        let path = self.tree.resolve_parent(path)?;
        self.make_room(&path, false)?;
        // Checked before staging, so a missing parent is a path error.
        let id = self.tree.insert(&path, Kind::File { size: 0 }, meta)?;
        let size = Self::staging(&path, self.stage.write_file(&path, content))?;
        if let Some(inode) = self.tree.get_mut(&path) {
            inode.kind = Kind::File { size };
        }
        Ok(id)
    }

    /// Creates symlink `path` -> `target`. Its mode is always `0777`
    /// whatever `meta` says: Linux has no symlink permissions ("the
    /// permissions are always 0777", symlink(7)), so that is what any
    /// extraction of the layer shows, even of a tar made on a system
    /// that records other modes (macOS: `0755`).
    pub fn symlink(
        &mut self,
        path: &Path,
        target: &Path,
        mut meta: Meta,
    ) -> Result<(), RootfsError> {
        meta.mode = 0o777;
        let path = self.tree.resolve_parent(path)?;
        self.make_room(&path, false)?;
        self.tree.insert(
            &path,
            Kind::Symlink {
                target: target.to_path_buf(),
            },
            meta,
        )?;
        Self::staging(&path, self.stage.symlink(&path, target))
    }

    /// A FIFO or device node.
    pub fn special(&mut self, path: &Path, kind: Kind, meta: Meta) -> Result<(), RootfsError> {
        let path = self.tree.resolve_parent(path)?;
        self.make_room(&path, false)?;
        let fifo = kind == Kind::Fifo;
        self.tree.insert(&path, kind, meta)?;
        let staged = if fifo {
            self.stage.fifo(&path)
        } else {
            self.stage.placeholder(&path)
        };
        Self::staging(&path, staged)
    }

    /// Hard link `path` to `target` (both image paths), which may be
    /// anything but a directory: "Hardlinks are possible with all file
    /// types except directories" (image-spec layer.md, "Hardlinks").
    ///
    /// A hard link to a symlink becomes a second symlink with the same
    /// target and metadata: `mke2fs -d`, which writes the ext4 root,
    /// gives each name of a hard-linked symlink an inode of its own, so
    /// every output does the same; nothing but `st_ino` and `st_nlink`
    /// tells the two apart.
    pub fn hard_link(&mut self, path: &Path, target: &Path) -> Result<(), RootfsError> {
        let path = self.tree.resolve_parent(path)?;
        let target = self.tree.resolve_parent(target)?;
        let bad = |why| RootfsError::BadHardLink {
            path: tree::display(&path),
            target: tree::display(&target),
            why,
        };
        let id = match self.tree.get(&target) {
            None => return Err(bad("not in the image")),
            Some(inode) if inode.kind.is_dir() => return Err(bad("a directory")),
            Some(_) => self.tree.id(&target).expect("found"),
        };
        if path == target {
            return Ok(());
        }
        if let Inode {
            kind: Kind::Symlink { target: points_to },
            meta,
            ..
        } = self.tree.inode(id)
        {
            let (points_to, meta) = (points_to.clone(), meta.clone());
            return self.symlink(&path, &points_to, meta);
        }
        self.make_room(&path, false)?;
        self.tree.link(&path, id)?;
        Self::staging(&path, self.stage.hard_link(&path, &target))
    }

    /// Changes the metadata of an existing path (following no symlink in
    /// its last component).
    pub fn set_meta(&mut self, path: &Path, meta: Meta) -> Result<(), RootfsError> {
        let path = self.tree.resolve_parent(path)?;
        match self.tree.get_mut(&path) {
            Some(inode) => {
                inode.meta = meta;
                Ok(())
            }
            None => Err(PathError::MissingParent {
                path: tree::display(&path),
                parent: tree::display(path.parent().unwrap_or(Path::new(""))),
            }
            .into()),
        }
    }

    /// Reads a staged regular file, whole (for small files the
    /// customization edits: `/etc/passwd` and the like).
    pub fn read(&self, path: &Path) -> Result<Option<Vec<u8>>, RootfsError> {
        let path = self.tree.resolve_all(path)?;
        match self.tree.get(&path) {
            Some(Inode {
                kind: Kind::File { .. },
                ..
            }) => {
                let mut buf = Vec::new();
                let staged = self
                    .stage
                    .open(&path)
                    .and_then(|mut f| f.read_to_end(&mut buf));
                Self::staging(&path, staged)?;
                Ok(Some(buf))
            }
            _ => Ok(None),
        }
    }
}

use tree::Inode;
