//! Reading the raw disk image (the GPT disk the disk writer produced) as
//! the fixed-size clusters that hold data, in order, for the virtual-disk
//! writers ([`super::qcow2`], [`super::vmdk`]).
//!
//! The raw file is usually sparse: holes are found with
//! `lseek(SEEK_DATA/SEEK_HOLE)` and never read, and clusters of the data
//! extents that are all zeros are skipped too, so neither costs a byte
//! of output. Only one block of [`BLOCK_CLUSTERS`] clusters is held at a
//! time.
//!
//! [`convert`] is the frame both writers run in: a new file under a
//! temporary name, read back, then renamed into place.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use ferry_oci::Digest;
use ferry_oci::atomic::{AtomicFile, AtomicWrite};
use ferry_oci::progress::Progress;
use rustix::fs::SeekFrom;
use rustix::io::Errno;

use super::FileError;

/// The sector size of the disks ferry builds (GPT's logical block).
pub const SECTOR: u64 = 512;

/// How many clusters are read with one `pread`: big enough to amortise
/// the syscall, small enough to stay in the CPU cache.
const BLOCK_CLUSTERS: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum RawError {
    #[error("opening the raw disk {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("reading the raw disk {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "the raw disk {path} is {size} bytes, not a whole number of {SECTOR}-byte sectors \
         (and not empty); build the disk image again"
    )]
    Size { path: PathBuf, size: u64 },
}

/// An open raw disk image.
pub struct RawDisk {
    file: File,
    path: PathBuf,
    size: u64,
}

impl RawDisk {
    /// Opens `path`, which must be a non-empty whole number of sectors.
    pub fn open(path: &Path) -> Result<RawDisk, RawError> {
        let open_err = |source| RawError::Open {
            path: path.to_owned(),
            source,
        };
        let file = File::open(path).map_err(open_err)?;
        let size = file.metadata().map_err(open_err)?.len();
        if size == 0 || !size.is_multiple_of(SECTOR) {
            return Err(RawError::Size {
                path: path.to_owned(),
                size,
            });
        }
        Ok(RawDisk {
            file,
            path: path.to_owned(),
            size,
        })
    }

    /// The disk's size in bytes (its virtual size in every output format).
    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn read_err(&self, source: io::Error) -> RawError {
        RawError::Read {
            path: self.path.clone(),
            source,
        }
    }

    /// The next data extent `[start, end)` at or after `from`, or `None`
    /// past the last one. A file system without `SEEK_DATA` reports the
    /// whole rest of the file as data, which is still correct.
    fn next_extent(&self, from: u64) -> Result<Option<(u64, u64)>, RawError> {
        let start = match rustix::fs::seek(&self.file, SeekFrom::Data(from)) {
            Ok(start) => start,
            Err(Errno::NXIO) => return Ok(None),
            Err(Errno::INVAL | Errno::OPNOTSUPP) => return Ok(Some((from, self.size))),
            Err(e) => return Err(self.read_err(e.into())),
        };
        let end = match rustix::fs::seek(&self.file, SeekFrom::Hole(start)) {
            Ok(end) => end,
            Err(Errno::INVAL | Errno::OPNOTSUPP) => self.size,
            Err(e) => return Err(self.read_err(e.into())),
        };
        Ok(Some((start, end.min(self.size))))
    }

    /// Calls `each(index, bytes)` for every cluster of `cluster_size`
    /// bytes that holds a non-zero byte, in increasing `index` order.
    /// `bytes` is `cluster_size` long except for a last, partial cluster,
    /// which is only as long as the disk. Reports every byte of the disk,
    /// holes included, as done to `progress` under `task`.
    pub fn for_each_data_cluster<E: From<RawError>>(
        &self,
        cluster_size: usize,
        progress: &dyn Progress,
        task: &str,
        mut each: impl FnMut(u64, &[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        let cluster = cluster_size as u64;
        let mut block = vec![0u8; cluster_size * BLOCK_CLUSTERS];
        // Everything before `done` has been looked at.
        let mut done = 0u64;
        while done < self.size {
            let Some((start, end)) = self.next_extent(done)? else {
                break;
            };
            // Whole clusters covering the extent; a cluster shared with the
            // previous extent was already looked at.
            let first = (start / cluster * cluster).max(done);
            let last = end.div_ceil(cluster) * cluster;
            progress.advance(task, first - done);
            let mut at = first;
            while at < last.min(self.size) {
                let len = (block.len() as u64).min(last - at).min(self.size - at) as usize;
                let buf = &mut block[..len];
                self.file
                    .read_exact_at(buf, at)
                    .map_err(|e| self.read_err(e))?;
                for (i, bytes) in buf.chunks(cluster_size).enumerate() {
                    if !is_zero(bytes) {
                        each(at / cluster + i as u64, bytes)?;
                    }
                }
                progress.advance(task, len as u64);
                at += len as u64;
            }
            done = at;
        }
        progress.advance(task, self.size.saturating_sub(done));
        Ok(())
    }
}

/// What stops a conversion's writer: the raw disk, the new file, or a
/// reason of the format's own (`F`).
pub enum WriteError<F = std::convert::Infallible> {
    Raw(RawError),
    Io(io::Error),
    Format(F),
}

impl<F> From<RawError> for WriteError<F> {
    fn from(e: RawError) -> Self {
        WriteError::Raw(e)
    }
}

impl<F> From<io::Error> for WriteError<F> {
    fn from(e: io::Error) -> Self {
        WriteError::Io(e)
    }
}

/// Converts the raw disk `raw` into the file `out`: `write` fills a new
/// file under a temporary name, `verify` reads it back and returns its
/// sha256 (or what is wrong), and only then the file gets its name.
/// `format_err` turns the format's own write errors into `E`. Progress
/// counts the raw disk's bytes under task `out`, labelled `label`, and
/// ends "written" or "failed". Returns the disk, what `write` returned
/// and the sha256.
pub fn convert<W, F, E>(
    raw: &Path,
    out: &Path,
    label: &str,
    progress: &dyn Progress,
    write: impl FnOnce(&RawDisk, &File, &str) -> Result<W, WriteError<F>>,
    verify: impl FnOnce(&AtomicFile, &W) -> Result<Digest, String>,
    format_err: impl FnOnce(F) -> E,
) -> Result<(RawDisk, W, Digest), E>
where
    E: From<RawError> + From<FileError>,
{
    let disk = RawDisk::open(raw)?;
    let task = out.display().to_string();
    let target = AtomicWrite::new().open(out).map_err(FileError::io(out))?;
    progress.start(&task, label, Some(disk.size()));
    let written = write(&disk, target.file(), &task).map_err(|e| match e {
        WriteError::Raw(e) => E::from(e),
        WriteError::Io(e) => FileError::io(out)(e).into(),
        WriteError::Format(e) => format_err(e),
    });
    let result = written.and_then(|written| {
        let sha256 = verify(&target, &written).map_err(FileError::verify(out))?;
        target.commit().map_err(FileError::io(out))?;
        Ok((written, sha256))
    });
    progress.finish(&task, if result.is_ok() { "written" } else { "failed" });
    let (written, sha256) = result?;
    Ok((disk, written, sha256))
}

/// Whether every byte is zero; written so the compiler vectorises it.
pub fn is_zero(bytes: &[u8]) -> bool {
    let mut chunks = bytes.chunks_exact(64);
    let whole = chunks
        .by_ref()
        .all(|c| c.iter().fold(0u8, |acc, &b| acc | b) == 0);
    whole && chunks.remainder().iter().all(|&b| b == 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_oci::progress::NoProgress;
    use std::io::Write;

    fn clusters(path: &Path, cluster: usize) -> Vec<(u64, Vec<u8>)> {
        let disk = RawDisk::open(path).unwrap();
        let mut seen = Vec::new();
        disk.for_each_data_cluster::<RawError>(cluster, &NoProgress, "t", |i, b| {
            seen.push((i, b.to_vec()));
            Ok(())
        })
        .unwrap();
        seen
    }

    #[test]
    fn skips_holes_and_zero_clusters_and_keeps_a_partial_last_cluster() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("disk.raw");
        let file = File::create(&path).unwrap();
        // 10 MiB + 1 sector: a hole, data at 4 MiB + 100, zeros written
        // explicitly at 6 MiB, data in the last partial cluster.
        file.set_len(10 << 20 | 512).unwrap();
        file.write_all_at(b"hello", (4 << 20) + 100).unwrap();
        file.write_all_at(&[0u8; 65536], 6 << 20).unwrap();
        file.write_all_at(b"end", 10 << 20).unwrap();
        (&file).flush().unwrap();
        let seen = clusters(&path, 65536);
        let indexes: Vec<u64> = seen.iter().map(|(i, _)| *i).collect();
        assert_eq!(indexes, vec![64, 160]);
        assert_eq!(&seen[0].1[100..105], b"hello");
        assert_eq!(seen[0].1.len(), 65536);
        assert_eq!(seen[1].1.len(), 512);
        assert_eq!(&seen[1].1[..3], b"end");
    }

    #[test]
    fn refuses_a_disk_that_is_not_whole_sectors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("disk.raw");
        File::create(&path).unwrap().set_len(1000).unwrap();
        let err = RawDisk::open(&path).err().unwrap();
        assert!(err.to_string().contains("not a whole number"), "{err}");
    }
}
