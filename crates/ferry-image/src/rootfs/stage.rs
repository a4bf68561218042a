//! [`Stage`]: the image's files on the build host's disk, without root.
//!
//! The stage is a plain directory that mirrors the [`super::tree::Tree`]:
//! directories, regular files with their content, symlinks, hard links
//! and FIFOs are real; device nodes (which only root may create) are
//! empty placeholder files. Owners, modes and xattrs are *not* applied
//! here (the build user could not set most of them): the tree holds them
//! and each output writer takes them from there. Staged directories are
//! `0755` and files `0644` so the build user can always read and replace
//! them. Content is streamed to disk, so memory does not grow with the
//! size of the image.
//!
//! Every path handed to the stage has been resolved in the tree first, so
//! no directory on the way is a symlink; the last component is created
//! with `O_NOFOLLOW | O_EXCL` anyway, so a staged symlink is never
//! followed out of the stage.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rustix::fs::{CWD, FileType, Mode, mknodat};

const DIR_MODE: u32 = 0o755;
const FILE_MODE: u32 = 0o644;

/// The staged files of one build, under `root`.
#[derive(Debug)]
pub struct Stage {
    root: PathBuf,
}

impl Stage {
    /// A stage in `root`, which must be an empty or absent directory.
    pub fn create(root: PathBuf) -> io::Result<Stage> {
        fs::create_dir_all(&root)?;
        if fs::read_dir(&root)?.next().is_some() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} is not empty", root.display()),
            ));
        }
        Ok(Stage { root })
    }

    /// The directory `mke2fs -d` and the writers read.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where image path `path` is staged.
    pub fn host_path(&self, path: &Path) -> PathBuf {
        self.root.join(path)
    }

    pub fn create_dir(&self, path: &Path) -> io::Result<()> {
        let host = self.host_path(path);
        match fs::create_dir(&host) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && host.is_dir() => return Ok(()),
            Err(e) => return Err(e),
        }
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&host, fs::Permissions::from_mode(DIR_MODE))
    }

    /// Writes a regular file from `content`; returns its size.
    pub fn write_file(&self, path: &Path, content: &mut dyn Read) -> io::Result<u64> {
        let mut file = self.new_file(path)?;
        let size = io::copy(content, &mut file)?;
        file.flush()?;
        Ok(size)
    }

    /// Creates an empty regular file, refusing to follow or reuse
    /// anything already at `path`.
    pub fn new_file(&self, path: &Path) -> io::Result<File> {
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(FILE_MODE)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(self.host_path(path))
    }

    /// Opens a staged regular file for reading.
    pub fn open(&self, path: &Path) -> io::Result<File> {
        OpenOptions::new()
            .read(true)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(self.host_path(path))
    }

    pub fn symlink(&self, path: &Path, target: &Path) -> io::Result<()> {
        std::os::unix::fs::symlink(target, self.host_path(path))
    }

    pub fn hard_link(&self, path: &Path, existing: &Path) -> io::Result<()> {
        fs::hard_link(self.host_path(existing), self.host_path(path))
    }

    pub fn fifo(&self, path: &Path) -> io::Result<()> {
        mknodat(
            CWD,
            self.host_path(path),
            FileType::Fifo,
            Mode::from_raw_mode(FILE_MODE),
            0,
        )
        .map_err(io::Error::from)
    }

    /// An empty file standing for a device node: the tree says what it is.
    pub fn placeholder(&self, path: &Path) -> io::Result<()> {
        self.new_file(path).map(drop)
    }

    /// Removes whatever is at `path` (recursively for a directory),
    /// without following a symlink.
    pub fn remove(&self, path: &Path) -> io::Result<()> {
        let host = self.host_path(path);
        let result = match fs::symlink_metadata(&host) {
            Ok(m) if m.is_dir() => fs::remove_dir_all(&host),
            Ok(_) => fs::remove_file(&host),
            Err(e) => Err(e),
        };
        match result {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }

    /// Removes everything inside directory `path`, keeping it.
    pub fn clear_dir(&self, path: &Path) -> io::Result<()> {
        for entry in fs::read_dir(self.host_path(path))? {
            let entry = entry?;
            self.remove(&path.join(entry.file_name()))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_follows_a_staged_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        let stage = Stage::create(dir.path().join("stage")).unwrap();
        stage.symlink(Path::new("evil"), &outside).unwrap();
        let err = stage
            .write_file(Path::new("evil"), &mut &b"x"[..])
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert!(!outside.exists());
        stage.remove(Path::new("evil")).unwrap();
        assert_eq!(
            stage
                .write_file(Path::new("evil"), &mut &b"xy"[..])
                .unwrap(),
            2
        );
        stage.fifo(Path::new("pipe")).unwrap();
        assert!(
            fs::symlink_metadata(stage.host_path(Path::new("pipe")))
                .unwrap()
                .file_type()
                .is_fifo()
        );
    }

    use std::os::unix::fs::FileTypeExt;
}
