//! The bytes of a bundle, wherever they are: one `.ferry` file, split
//! parts (`site.ferry.000`, `.001`, ... that concatenate back to the tar),
//! or the tail of a self-extracting executable. [`Container`] presents them
//! as one seekable byte stream and maps a range of it back to files, so a
//! blob can be read in place, even across a part boundary.
//!
//! A self-extracting file ends with a trailer: the tar's offset and length
//! in the file, then [`TRAILER_MAGIC`] (24 bytes in all), written after the
//! tar that follows ferry's own executable.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

pub const TRAILER_MAGIC: &[u8; 8] = b"FERRYBDL";
pub const TRAILER_LEN: u64 = 24;

#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    #[error("cannot open {path}: {source}")]
    Open { path: String, source: io::Error },
    #[error(
        "{path} is missing: the bundle is split into parts {first}..{last} and part {missing:03} is not there"
    )]
    MissingPart {
        path: String,
        first: String,
        last: String,
        missing: usize,
    },
    #[error("self-extracting trailer of {path} points past the end of the file")]
    BadTrailer { path: String },
    #[error("{path} is a directory, not a bundle file")]
    Directory { path: String },
}

/// One contiguous piece of the logical stream.
#[derive(Debug, Clone)]
pub struct Segment {
    pub path: PathBuf,
    /// Where the piece starts in its file.
    pub file_offset: u64,
    pub len: u64,
}

/// A bundle's bytes as one logical stream over one or more files.
#[derive(Debug, Clone)]
pub struct Container {
    segments: Vec<Segment>,
    len: u64,
    /// How the bundle was found, for messages.
    pub description: String,
}

impl Container {
    /// Opens `path`: a bundle file, a self-extracting executable, the
    /// first part of a split bundle, or the name of a split bundle whose
    /// parts are `path.000`, `path.001`, ...
    pub fn open(path: &Path) -> Result<Container, ContainerError> {
        if let Some(base) = split_base(path)
            && (base.with_extension_suffix("000").exists() || !is_first_part(path))
        {
            return Self::open_parts(&base);
        }
        // `site.ferry` of a split bundle: its parts, even when the first one
        // is the part that went missing.
        if !path.exists() && highest_part(path).is_some() {
            return Self::open_parts(path);
        }
        if path.is_dir() {
            return Err(ContainerError::Directory {
                path: path.display().to_string(),
            });
        }
        let file = File::open(path).map_err(|source| ContainerError::Open {
            path: path.display().to_string(),
            source,
        })?;
        let size = file
            .metadata()
            .map_err(|source| ContainerError::Open {
                path: path.display().to_string(),
                source,
            })?
            .len();
        if let Some((offset, len)) = read_trailer(&file, size) {
            if offset
                .checked_add(len)
                .is_none_or(|end| end > size - TRAILER_LEN)
            {
                return Err(ContainerError::BadTrailer {
                    path: path.display().to_string(),
                });
            }
            return Ok(Container {
                segments: vec![Segment {
                    path: path.to_path_buf(),
                    file_offset: offset,
                    len,
                }],
                len,
                description: format!("{} (self-extracting)", path.display()),
            });
        }
        Ok(Container {
            segments: vec![Segment {
                path: path.to_path_buf(),
                file_offset: 0,
                len: size,
            }],
            len: size,
            description: path.display().to_string(),
        })
    }

    fn open_parts(base: &Path) -> Result<Container, ContainerError> {
        let mut segments = Vec::new();
        let mut len = 0;
        for i in 0.. {
            let part = base.with_extension_suffix(&format!("{i:03}"));
            match std::fs::metadata(&part) {
                Ok(m) => {
                    segments.push(Segment {
                        path: part,
                        file_offset: 0,
                        len: m.len(),
                    });
                    len += m.len();
                }
                Err(_) => break,
            }
        }
        // A gap (000, 001, 003) means a part went missing in transit.
        let highest = highest_part(base).unwrap_or(0);
        if highest >= segments.len() {
            return Err(ContainerError::MissingPart {
                path: base
                    .with_extension_suffix(&format!("{:03}", segments.len()))
                    .display()
                    .to_string(),
                first: format!("{}.000", base.display()),
                last: format!("{}.{highest:03}", base.display()),
                missing: segments.len(),
            });
        }
        Ok(Container {
            description: format!("{} ({} parts)", base.display(), segments.len()),
            segments,
            len,
        })
    }

    /// For a split bundle whose parts are all the same size, the part that
    /// would come next: the writer fills every part but the last, so when
    /// such a bundle turns out to be cut short, that part is missing.
    pub fn next_part_if_all_full(&self) -> Option<PathBuf> {
        let first = self.segments.first()?;
        let base = split_base(&first.path)?;
        let full = self.segments.iter().all(|s| s.len == first.len);
        full.then(|| base.with_extension_suffix(&format!("{:03}", self.segments.len())))
    }

    /// Length of the logical stream (the tar).
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// The file pieces that hold logical bytes `offset..offset+len`.
    pub fn locate(&self, offset: u64, len: u64) -> Vec<Segment> {
        let mut out = Vec::new();
        let (mut start, end) = (offset, offset + len);
        let mut seg_start = 0;
        for seg in &self.segments {
            let seg_end = seg_start + seg.len;
            if start < seg_end && start < end {
                let take = seg_end.min(end) - start;
                out.push(Segment {
                    path: seg.path.clone(),
                    file_offset: seg.file_offset + (start - seg_start),
                    len: take,
                });
                start += take;
            }
            seg_start = seg_end;
        }
        out
    }

    /// A reader of the logical stream.
    pub fn reader(&self) -> ContainerReader {
        ContainerReader {
            container: self.clone(),
            position: 0,
            open: None,
        }
    }

    /// Reads logical bytes `offset..offset+len` fully.
    pub fn read_range(&self, offset: u64, len: u64) -> io::Result<Vec<u8>> {
        let mut reader = self.reader();
        reader.seek(SeekFrom::Start(offset))?;
        let mut buf = Vec::with_capacity(len as usize);
        (&mut reader).take(len).read_to_end(&mut buf)?;
        if (buf.len() as u64) < len {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "bundle ends early",
            ));
        }
        Ok(buf)
    }
}

/// Read + Seek over a [`Container`].
pub struct ContainerReader {
    container: Container,
    position: u64,
    /// The open file: (segment index, file).
    open: Option<(usize, File)>,
}

impl Read for ContainerReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() || self.position >= self.container.len {
            return Ok(0);
        }
        let want = (buf.len() as u64).min(self.container.len - self.position);
        let piece = self
            .container
            .locate(self.position, want)
            .into_iter()
            .next()
            .expect("in range");
        let index = self
            .container
            .segments
            .iter()
            .position(|s| s.path == piece.path)
            .expect("segment of this container");
        if self.open.as_ref().is_none_or(|(i, _)| *i != index) {
            self.open = Some((index, File::open(&piece.path)?));
        }
        let file = &mut self.open.as_mut().expect("opened").1;
        file.seek(SeekFrom::Start(piece.file_offset))?;
        let n = file.read(&mut buf[..piece.len as usize])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{} is shorter than it was", piece.path.display()),
            ));
        }
        self.position += n as u64;
        Ok(n)
    }
}

impl Seek for ContainerReader {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        let target = match pos {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.container.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.position.checked_add_signed(d),
        };
        let target = target
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before start"))?;
        self.position = target;
        Ok(target)
    }
}

/// Whether `path` is a self-extracting file (an executable with a bundle
/// and trailer appended).
pub fn is_self_extracting(path: &Path) -> bool {
    let Ok(file) = File::open(path) else {
        return false;
    };
    file.metadata()
        .is_ok_and(|m| read_trailer(&file, m.len()).is_some())
}

fn read_trailer(file: &File, size: u64) -> Option<(u64, u64)> {
    use std::os::unix::fs::FileExt;
    if size < TRAILER_LEN {
        return None;
    }
    let mut trailer = [0u8; TRAILER_LEN as usize];
    file.read_exact_at(&mut trailer, size - TRAILER_LEN).ok()?;
    if &trailer[16..] != TRAILER_MAGIC {
        return None;
    }
    let offset = u64::from_le_bytes(trailer[..8].try_into().expect("8 bytes"));
    let len = u64::from_le_bytes(trailer[8..16].try_into().expect("8 bytes"));
    Some((offset, len))
}

/// The trailer to append after a tar of `len` bytes written at `offset`.
pub fn trailer(offset: u64, len: u64) -> [u8; TRAILER_LEN as usize] {
    let mut out = [0u8; TRAILER_LEN as usize];
    out[..8].copy_from_slice(&offset.to_le_bytes());
    out[8..16].copy_from_slice(&len.to_le_bytes());
    out[16..].copy_from_slice(TRAILER_MAGIC);
    out
}

/// The highest `NNN` of the `base.NNN` files next to `base`.
fn highest_part(base: &Path) -> Option<usize> {
    let dir = match base.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let stem = base.file_name()?.to_string_lossy().into_owned();
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let suffix = name.strip_prefix(&format!("{stem}."))?;
            (suffix.len() == 3 && suffix.bytes().all(|b| b.is_ascii_digit()))
                .then(|| suffix.parse::<usize>().ok())
                .flatten()
        })
        .max()
}

fn is_first_part(path: &Path) -> bool {
    path.to_string_lossy().ends_with(".000")
}

/// `site.ferry.000` -> `site.ferry`.
pub fn split_base(path: &Path) -> Option<PathBuf> {
    let name = path.file_name()?.to_str()?;
    let (base, suffix) = name.rsplit_once('.')?;
    (suffix.len() == 3 && suffix.bytes().all(|b| b.is_ascii_digit()))
        .then(|| path.with_file_name(base))
}

trait SuffixExt {
    fn with_extension_suffix(&self, suffix: &str) -> PathBuf;
}

impl SuffixExt for Path {
    /// `site.ferry` + `000` -> `site.ferry.000` (unlike `with_extension`,
    /// which would replace `.ferry`).
    fn with_extension_suffix(&self, suffix: &str) -> PathBuf {
        let mut name = self.as_os_str().to_owned();
        name.push(".");
        name.push(suffix);
        PathBuf::from(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_parts_read_as_one_stream() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        for (i, chunk) in data.chunks(3000).enumerate() {
            std::fs::write(dir.path().join(format!("b.ferry.{i:03}")), chunk).unwrap();
        }
        let c = Container::open(&dir.path().join("b.ferry")).unwrap();
        assert_eq!(c.len(), 10_000);
        assert_eq!(c.read_range(2990, 20).unwrap(), &data[2990..3010]);
        assert_eq!(c.locate(2990, 20).len(), 2);
        let c0 = Container::open(&dir.path().join("b.ferry.000")).unwrap();
        assert_eq!(c0.len(), 10_000);
        std::fs::remove_file(dir.path().join("b.ferry.002")).unwrap();
        let err = Container::open(&dir.path().join("b.ferry")).unwrap_err();
        assert!(
            matches!(err, ContainerError::MissingPart { missing: 2, .. }),
            "{err}"
        );
    }

    #[test]
    fn self_extracting_trailer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("site.run");
        let mut file = b"#!fake executable\n".to_vec();
        let offset = file.len() as u64;
        file.extend_from_slice(b"TARDATA");
        file.extend_from_slice(&trailer(offset, 7));
        std::fs::write(&path, &file).unwrap();
        let c = Container::open(&path).unwrap();
        assert_eq!(c.len(), 7);
        assert_eq!(c.read_range(0, 7).unwrap(), b"TARDATA");
        let mut bad = file.clone();
        let n = bad.len();
        bad[n - 16..n - 8].copy_from_slice(&1000u64.to_le_bytes());
        std::fs::write(&path, &bad).unwrap();
        assert!(matches!(
            Container::open(&path),
            Err(ContainerError::BadTrailer { .. })
        ));
    }
}
