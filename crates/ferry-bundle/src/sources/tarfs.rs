//! A tar file read in place: its headers are walked once (seeking over the
//! data) to learn where each member's bytes are, then members are read by
//! offset. Used for `oci-archive:` and `docker-archive:` sources, which can
//! be many GB: nothing is extracted, nothing is held in memory.
//!
//! Links are followed inside the archive (`docker save` writes legacy
//! layer paths as symlinks to the blob they share); a link that leaves the
//! archive's namespace, loops, or names something absent is "not found".

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Component, Path, PathBuf};

#[derive(Debug, Clone)]
enum Member {
    File {
        offset: u64,
        size: u64,
    },
    /// A symlink (target relative to the link's directory) or hard link
    /// (target relative to the archive root).
    Link {
        target: String,
        hard: bool,
    },
}

/// An indexed tar file.
#[derive(Debug)]
pub struct TarFs {
    path: PathBuf,
    members: HashMap<String, Member>,
}

impl TarFs {
    pub fn open(path: &Path) -> io::Result<TarFs> {
        let file = File::open(path)?;
        let mut archive = tar::Archive::new(file);
        let mut members = HashMap::new();
        for entry in archive.entries_with_seek()? {
            let entry = entry?;
            let Some(name) = normalize(&String::from_utf8_lossy(&entry.path_bytes())) else {
                continue;
            };
            let kind = entry.header().entry_type();
            let member = if kind.is_file() {
                Member::File {
                    offset: entry.raw_file_position(),
                    size: entry.size(),
                }
            } else if kind.is_symlink() || kind.is_hard_link() {
                let Some(target) = entry.link_name_bytes() else {
                    continue;
                };
                Member::Link {
                    target: String::from_utf8_lossy(&target).into_owned(),
                    hard: kind.is_hard_link(),
                }
            } else {
                continue;
            };
            members.insert(name, member);
        }
        Ok(TarFs {
            path: path.to_path_buf(),
            members,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where `name`'s bytes are, following links.
    fn locate(&self, name: &str) -> Option<(u64, u64)> {
        let mut name = normalize(name)?;
        for _ in 0..16 {
            match self.members.get(&name)? {
                Member::File { offset, size } => return Some((*offset, *size)),
                Member::Link { target, hard: true } => name = normalize(target)?,
                Member::Link {
                    target,
                    hard: false,
                } => {
                    let dir = Path::new(&name).parent().unwrap_or(Path::new(""));
                    name = normalize(&dir.join(target).to_string_lossy())?;
                }
            }
        }
        None
    }

    /// Opens member `name`; `None` if the archive has no such file.
    pub fn open_member(&self, name: &str) -> io::Result<Option<(io::Take<File>, u64)>> {
        let Some((offset, size)) = self.locate(name) else {
            return Ok(None);
        };
        let mut file = File::open(&self.path)?;
        file.seek(SeekFrom::Start(offset))?;
        let end = file.metadata()?.len();
        if offset + size > end {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{} is truncated inside member {name}", self.path.display()),
            ));
        }
        Ok(Some((file.take(size), size)))
    }

    /// Reads a small member whole, refusing one larger than `limit`.
    pub fn read_member(&self, name: &str, limit: u64) -> io::Result<Option<Vec<u8>>> {
        let Some((mut reader, size)) = self.open_member(name)? else {
            return Ok(None);
        };
        if size > limit {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("member {name} is larger than {limit} bytes"),
            ));
        }
        let mut data = Vec::with_capacity(size as usize);
        reader.read_to_end(&mut data)?;
        Ok(Some(data))
    }
}

/// `./a/b/../c` -> `a/c`; `None` for a path that leaves the archive.
fn normalize(name: &str) -> Option<String> {
    let mut parts: Vec<String> = Vec::new();
    for component in Path::new(name).components() {
        match component {
            Component::Normal(p) => parts.push(p.to_string_lossy().into_owned()),
            Component::CurDir => {}
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_and_links() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.tar");
        let mut builder = tar::Builder::new(File::create(&path).unwrap());
        let mut add = |name: &str, data: &[u8]| {
            let mut h = tar::Header::new_ustar();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            builder.append_data(&mut h, name, data).unwrap();
        };
        add("./blobs/sha256/abc", b"layer bytes");
        add("manifest.json", b"[]");
        let mut link = |name: &str, target: &str, kind: tar::EntryType| {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(kind);
            h.set_size(0);
            builder.append_link(&mut h, name, target).unwrap();
        };
        link(
            "x/layer.tar",
            "../blobs/sha256/abc",
            tar::EntryType::Symlink,
        );
        link("hard", "blobs/sha256/abc", tar::EntryType::Link);
        link("escape", "../../etc/passwd", tar::EntryType::Symlink);
        link("loop", "loop", tar::EntryType::Symlink);
        builder.into_inner().unwrap();

        let fs = TarFs::open(&path).unwrap();
        let read = |name: &str| fs.read_member(name, 100).unwrap();
        assert_eq!(read("blobs/sha256/abc").unwrap(), b"layer bytes");
        assert_eq!(read("x/layer.tar").unwrap(), b"layer bytes");
        assert_eq!(read("hard").unwrap(), b"layer bytes");
        assert_eq!(read("./manifest.json").unwrap(), b"[]");
        assert!(read("escape").is_none());
        assert!(read("loop").is_none());
        assert!(read("missing").is_none());
        assert!(fs.read_member("blobs/sha256/abc", 3).is_err());
    }
}
