//! Crash-safe file writes: the one way every ferry crate writes a file
//! that must never be seen half-written (store metadata, resume state, the
//! hosts inventory, signing keys, the site CA), and the durable removal
//! that goes with it.
//!
//! The content goes to a temporary file in the same filesystem
//! (`tempfile::NamedTempFile`, created with the final permissions, so a key
//! is never readable by others even for an instant), is fsynced, then
//! renamed over the target (`persist`, atomic by rename(2)) or linked to a
//! name that must not exist yet (`persist_noclobber`); finally the
//! directory is fsynced so that the new entry survives a power cut. A
//! crash at any point leaves the old file or the new one, never a torn
//! one; at worst a temporary file (`.tmp*`) stays behind, which nothing
//! reads.
//!
//! It lives here, in the crate every other ferry crate depends on, so that
//! there is one implementation of these steps rather than one per crate.

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

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
        let file = self.written(path, contents)?;
        file.persist(path).map_err(|e| e.error)?;
        sync_dir(parent_of(path))
    }

    /// Creates `path` with `contents`; fails with
    /// [`io::ErrorKind::AlreadyExists`] (and changes nothing) if it exists.
    pub fn create_new(&self, path: &Path, contents: &[u8]) -> io::Result<()> {
        let file = self.written(path, contents)?;
        file.persist_noclobber(path).map_err(|e| e.error)?;
        sync_dir(parent_of(path))
    }

    /// The temporary file, holding `contents`, durable.
    fn written(&self, path: &Path, contents: &[u8]) -> io::Result<tempfile::NamedTempFile> {
        let dir = self.temp_dir.unwrap_or_else(|| parent_of(path));
        let mut file = tempfile::Builder::new()
            .prefix(".tmp")
            .permissions(std::fs::Permissions::from_mode(self.mode))
            .tempfile_in(dir)?;
        file.write_all(contents)?;
        file.as_file().sync_all()?;
        Ok(file)
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
}
