//! Output files that appear whole or not at all: each is written under a
//! hidden temporary name in its final directory, flushed to the disk, and
//! only then renamed into place (a rename within one directory is atomic
//! on POSIX file systems). An error or a crash leaves no half-written
//! artifact under the real name; dropping an uncommitted file removes it.

use std::fs::{File, Permissions};
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// A file being written to `target`; see the module docs.
pub struct AtomicFile {
    temp: tempfile::NamedTempFile,
    target: PathBuf,
}

impl AtomicFile {
    /// Starts writing `target` (its directory must exist).
    pub fn create(target: &Path) -> io::Result<AtomicFile> {
        let dir = parent(target);
        let name = target
            .file_name()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?;
        // Artifacts are for sharing: 0644 (less the umask), not
        // tempfile's private 0600.
        let temp = tempfile::Builder::new()
            .prefix(&format!(".{}.", name.to_string_lossy()))
            .suffix(".partial")
            .permissions(Permissions::from_mode(0o644))
            .tempfile_in(dir)?;
        Ok(AtomicFile {
            temp,
            target: target.to_owned(),
        })
    }

    pub fn file(&self) -> &File {
        self.temp.as_file()
    }

    /// Where the bytes are until [`AtomicFile::commit`].
    pub fn temp_path(&self) -> &Path {
        self.temp.path()
    }

    /// Flushes the file, renames it to its target and flushes the
    /// directory, so the new name survives a power loss.
    pub fn commit(self) -> io::Result<()> {
        self.temp.as_file().sync_all()?;
        self.temp.persist(&self.target).map_err(|e| e.error)?;
        File::open(parent(&self.target))?.sync_all()
    }
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn the_target_appears_only_on_commit() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.bin");
        let out = AtomicFile::create(&target).unwrap();
        out.file().write_all(b"data").unwrap();
        assert!(!target.exists());
        out.commit().unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"data");

        let abandoned = AtomicFile::create(&dir.path().join("gone.bin")).unwrap();
        abandoned.file().write_all(b"half").unwrap();
        drop(abandoned);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec!["out.bin"]);
    }
}
