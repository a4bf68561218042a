//! Crash-safe file writes: the one way every ferry crate writes a file
//! that must never be seen half-written (store metadata, resume state, the
//! hosts inventory, signing keys, the site CA, every `ferry image build`
//! output), and the durable removal that goes with it.
//!
//! The content goes to a temporary file in the same filesystem
//! (`tempfile::NamedTempFile`, created with the final permissions, so a key
//! is never readable by others even for an instant), is fsynced, then
//! renamed over the target (`persist`, atomic by rename(2)) or linked to a
//! name that must not exist yet (`persist_noclobber`); finally the
//! directory is fsynced so that the new entry survives a power cut. A
//! crash at any point leaves the old file or the new one, never a torn
//! one; at worst a hidden temporary file (`.NAME.*.partial`) stays behind,
//! which nothing reads.
//!
//! Whole byte strings are written with [`AtomicWrite::replace`] and
//! [`AtomicWrite::create_new`]; a file too large for memory, or one that is
//! read back or handed to another tool before it gets its name (the
//! image writers' disks and archives), is streamed into the
//! [`AtomicFile`] that [`AtomicWrite::open`] returns. Dropping an
//! `AtomicFile` without committing it removes the temporary file.
//!
//! It lives here, in the crate every other ferry crate depends on, so that
//! there is one implementation of these steps rather than one per crate.

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Options of a crash-safe write; see the module documentation.
#[derive(Debug, Clone, Copy)]
pub struct AtomicWrite<'a> {
    temp_dir: Option<&'a Path>,
    mode: u32,
}

impl Default for AtomicWrite<'_> {
    fn default() -> Self {
        AtomicWrite::new()
    }
}

impl<'a> AtomicWrite<'a> {
    /// A write whose file gets the usual permissions (0666 less the umask).
    pub fn new() -> Self {
        AtomicWrite {
            temp_dir: None,
            mode: 0o666,
        }
    }

    /// The file is readable and writable by its owner only (0600): keys.
    pub fn private(mut self) -> Self {
        self.mode = 0o600;
        self
    }

    /// The file gets `mode` (less the umask).
    pub fn mode(mut self, mode: u32) -> Self {
        self.mode = mode;
        self
    }

    /// Where the temporary file goes; it must be on the target's
    /// filesystem. The default is the target's own directory.
    pub fn temp_dir(mut self, dir: &'a Path) -> Self {
        self.temp_dir = Some(dir);
        self
    }

    /// Writes `contents` to `path`, replacing what is there.
    pub fn replace(&self, path: &Path, contents: &[u8]) -> io::Result<()> {
        let mut file = self.open(path)?;
        file.write_all(contents)?;
        file.commit()
    }

    /// Creates `path` with `contents`; fails with
    /// [`io::ErrorKind::AlreadyExists`] (and changes nothing) if it exists.
    pub fn create_new(&self, path: &Path, contents: &[u8]) -> io::Result<()> {
        let mut file = self.open(path)?;
        file.write_all(contents)?;
        file.commit_new()
    }

    /// Starts writing `path` as a stream: nothing appears under `path`
    /// until [`AtomicFile::commit`].
    pub fn open(&self, path: &Path) -> io::Result<AtomicFile> {
        let dir = self.temp_dir.unwrap_or_else(|| parent_of(path));
        // Named after the target, so a leftover says what it was; short
        // enough to stay under NAME_MAX whatever the target's name.
        let name: String = path
            .file_name()
            .map(|n| n.to_string_lossy().chars().take(128).collect())
            .unwrap_or_default();
        let temp = tempfile::Builder::new()
            .prefix(&format!(".{name}."))
            .suffix(".partial")
            .permissions(std::fs::Permissions::from_mode(self.mode))
            .tempfile_in(dir)?;
        Ok(AtomicFile {
            temp,
            target: path.to_path_buf(),
        })
    }
}

/// A file being written under a temporary name, from
/// [`AtomicWrite::open`]; see the module documentation.
///
/// Write through it (it is [`Write`]) or through [`AtomicFile::file`]
/// (positioned writes, reads for a read-back); a tool that takes a path
/// (`mke2fs -d`) writes [`AtomicFile::temp_path`].
#[derive(Debug)]
pub struct AtomicFile {
    temp: tempfile::NamedTempFile,
    target: PathBuf,
}

impl AtomicFile {
    /// The open temporary file, readable and writable.
    pub fn file(&self) -> &File {
        self.temp.as_file()
    }

    /// Where the bytes are until they are committed.
    pub fn temp_path(&self) -> &Path {
        self.temp.path()
    }

    /// The name the file gets on commit.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// fsyncs the file, renames it over its target and fsyncs the
    /// directory, so the new name survives a power cut.
    pub fn commit(self) -> io::Result<()> {
        self.temp.as_file().sync_all()?;
        self.temp.persist(&self.target).map_err(|e| e.error)?;
        sync_dir(parent_of(&self.target))
    }

    /// As [`AtomicFile::commit`], but fails with
    /// [`io::ErrorKind::AlreadyExists`] (removing the temporary file) if
    /// the target exists.
    pub fn commit_new(self) -> io::Result<()> {
        self.temp.as_file().sync_all()?;
        self.temp
            .persist_noclobber(&self.target)
            .map_err(|e| e.error)?;
        sync_dir(parent_of(&self.target))
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.temp.as_file().write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.temp.as_file().flush()
    }
}

/// fsyncs a directory so that entries created, renamed or removed in it
/// are durable (fsync(2): syncing a file does not sync its directory entry).
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Removes a file and fsyncs its directory, so the removal is durable; a
/// missing file is not an error. Returns whether something was removed.
pub fn remove(path: &Path) -> io::Result<bool> {
    match std::fs::remove_file(path) {
        Ok(()) => {
            sync_dir(parent_of(path))?;
            Ok(true)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// `path`'s directory; the current one for a bare file name.
fn parent_of(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn replaces_creates_new_and_keeps_keys_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        AtomicWrite::new().replace(&path, b"one").unwrap();
        AtomicWrite::new().replace(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");

        let err = AtomicWrite::new().create_new(&path, b"three").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&path).unwrap(), b"two");

        let key = dir.path().join("key");
        AtomicWrite::new()
            .private()
            .create_new(&key, b"secret")
            .unwrap();
        assert_eq!(std::fs::metadata(&key).unwrap().mode() & 0o777, 0o600);
        // Nothing but the two files: no temporary file is left.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
    }

    #[test]
    fn a_temp_dir_elsewhere_on_the_same_filesystem() {
        let dir = tempfile::tempdir().unwrap();
        let tmp = dir.path().join("tmp");
        std::fs::create_dir(&tmp).unwrap();
        let path = dir.path().join("f");
        AtomicWrite::new()
            .temp_dir(&tmp)
            .replace(&path, b"x")
            .unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"x");
        assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0);
    }

    #[test]
    fn a_streamed_file_appears_only_on_commit_and_an_abandoned_one_goes() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("disk.raw");
        let mut out = AtomicWrite::new().mode(0o644).open(&target).unwrap();
        out.write_all(b"head ").unwrap();
        std::os::unix::fs::FileExt::write_all_at(out.file(), b"tail", 5).unwrap();
        // A read-back (or another tool) sees the bytes under the
        // temporary name only.
        assert_eq!(std::fs::read(out.temp_path()).unwrap(), b"head tail");
        assert!(!target.exists());
        out.commit().unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"head tail");
        assert_eq!(std::fs::metadata(&target).unwrap().mode() & 0o777, 0o644);

        let abandoned = AtomicWrite::new().open(&dir.path().join("gone")).unwrap();
        abandoned.file().write_all(b"half").unwrap();
        drop(abandoned);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["disk.raw"]);

        let out = AtomicWrite::new().open(&target).unwrap();
        let err = out.commit_new().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
