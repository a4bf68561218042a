//! Crash-safe file operations.
//!
//! Every change to the store is one of: create an empty link file, write a
//! small file atomically ([`ferry_oci::atomic`]), rename a verified blob
//! into place, or remove a file. Each is followed by an fsync of the
//! directory that holds it, so that once a request is acknowledged its
//! effect survives a crash, and a crash in the middle leaves either the old
//! state or the new one, never a partial file (POSIX rename is atomic; see
//! rename(2)).

use std::fs::{self, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use ferry_oci::atomic::AtomicWrite;
pub use ferry_oci::atomic::{remove, sync_dir};

/// Creates `dir` and any missing parents, fsyncing each parent whose
/// entries changed.
pub fn ensure_dir(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut missing = Vec::new();
    let mut cursor = Some(dir);
    while let Some(d) = cursor {
        if d.is_dir() {
            break;
        }
        missing.push(d.to_path_buf());
        cursor = parent_dir(d);
    }
    for d in missing.iter().rev() {
        match fs::create_dir(d) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
        sync_dir(parent_dir(d).unwrap_or(Path::new(".")))?;
    }
    Ok(())
}

/// Creates an empty marker file if missing; the file's existence is the
/// whole of its meaning, so no rename is needed to make it atomic.
pub fn create_marker(path: &Path) -> io::Result<bool> {
    let parent = parent_of(path);
    ensure_dir(parent)?;
    match OpenOptions::new().write(true).create_new(true).open(path) {
        Ok(_) => {
            sync_dir(parent)?;
            Ok(true)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e),
    }
}

/// Writes `contents` to `path` atomically (creating its directory if
/// needed), with the temporary file in the store's `tmp_dir`.
pub fn write_atomic(tmp_dir: &Path, path: &Path, contents: &[u8]) -> io::Result<()> {
    ensure_dir(parent_of(path))?;
    AtomicWrite::new().temp_dir(tmp_dir).replace(path, contents)
}

/// A fresh, unguessable name in `tmp_dir`.
pub fn temp_path(tmp_dir: &Path) -> PathBuf {
    tmp_dir.join(format!("tmp-{}", random_hex(16)))
}

/// `bytes` random bytes as lowercase hex, from the OS's CSPRNG.
pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).expect("the OS random source is available");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

fn parent_of(path: &Path) -> &Path {
    parent_dir(path).unwrap_or(Path::new("."))
}

/// `path`'s parent directory, `None` at the top. A relative path's first
/// component has the empty path as its parent (`"state".parent() == Some("")`),
/// which names no directory: it is the current one, so the walk stops there.
fn parent_dir(path: &Path) -> Option<&Path> {
    path.parent().filter(|p| !p.as_os_str().is_empty())
}

/// Reads a small file, mapping "not found" to `None`.
pub fn read_optional(path: &Path) -> io::Result<Option<Vec<u8>>> {
    match fs::read(path) {
        Ok(data) => Ok(Some(data)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Lists a directory's entry names, mapping "not found" to an empty list.
pub fn list_names(dir: &Path) -> io::Result<Vec<String>> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut names = Vec::new();
    for entry in entries {
        if let Ok(name) = entry?.file_name().into_string() {
            names.push(name);
        }
    }
    Ok(names)
}

/// Hashes a whole file with `algorithm`, reading through `buf`; returns
/// the digest and the size.
pub fn hash_file(
    path: &Path,
    algorithm: ferry_oci::Algorithm,
    buf: &mut [u8],
) -> io::Result<(ferry_oci::Digest, u64)> {
    use std::io::Read;
    let mut file = fs::File::open(path)?;
    let mut hasher = ferry_oci::Hasher::new(algorithm);
    loop {
        let n = file.read(buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    let size = hasher.bytes();
    Ok((hasher.finish(), size))
}
