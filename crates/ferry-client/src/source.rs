//! Where the bytes of a blob being pushed come from.
//!
//! An upload may have to start again from any offset (a retry, a resume
//! after the process was killed), so a source is not a one-shot reader
//! but something that can be [opened at an offset](BlobSource::open)
//! any number of times. ferry's sources are a byte range of a file (a blob
//! inside a bundle tar, read in place by offset: no extraction, no copy)
//! and bytes in memory (manifests' configs, tests).

use std::fs::File;
use std::future::Future;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures_util::Stream;

/// A stream of the source's bytes from some offset to its end.
pub type ChunkStream = Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>>;

/// The future [`BlobSource::open`] returns.
pub type OpenFuture<'a> = Pin<Box<dyn Future<Output = io::Result<ChunkStream>> + Send + 'a>>;

/// A blob's content, readable from any offset, any number of times.
pub trait BlobSource: Send + Sync {
    /// The content's length in bytes.
    fn len(&self) -> u64;

    /// True for an empty blob.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Streams the `len` bytes from `offset` (within [`BlobSource::len`]).
    /// Chunks may be of any size; a stream that ends early is an error the
    /// upload reports, and bytes past `len` are ignored.
    fn open(&self, offset: u64, len: u64) -> OpenFuture<'_>;

    /// Names the source in errors (`site.ferry[1024+5000]`).
    fn describe(&self) -> String;
}

/// Size of the reads from files. Large enough that per-read overhead
/// (a blocking-pool hop) vanishes, small enough that memory stays flat.
const READ_CHUNK: usize = 1024 * 1024;

/// `len` bytes of a file starting at `offset`: a whole blob file, or a
/// blob inside a tar read in place.
#[derive(Debug, Clone)]
pub struct FileRange {
    path: PathBuf,
    offset: u64,
    len: u64,
}

impl FileRange {
    pub fn new(path: impl Into<PathBuf>, offset: u64, len: u64) -> Self {
        FileRange {
            path: path.into(),
            offset,
            len,
        }
    }

    /// A whole file (its current length).
    pub fn whole(path: impl Into<PathBuf>) -> io::Result<Self> {
        let path = path.into();
        let len = std::fs::metadata(&path)?.len();
        Ok(FileRange::new(path, 0, len))
    }
}

impl BlobSource for FileRange {
    fn len(&self) -> u64 {
        self.len
    }

    fn open(&self, offset: u64, len: u64) -> OpenFuture<'_> {
        let path = self.path.clone();
        let start = self.offset + offset.min(self.len);
        let end = start + len.min(self.len - offset.min(self.len));
        Box::pin(async move {
            let file = tokio::task::spawn_blocking(move || File::open(path))
                .await
                .map_err(io::Error::other)??;
            let file = Arc::new(file);
            let stream = futures_util::stream::try_unfold(start, move |position| {
                let file = file.clone();
                async move {
                    if position >= end {
                        return Ok(None);
                    }
                    let want = (end - position).min(READ_CHUNK as u64) as usize;
                    // Positioned reads on the blocking pool: the file is
                    // shared, and each read says where it reads.
                    let chunk = tokio::task::spawn_blocking(move || {
                        let mut buf = BytesMut::zeroed(want);
                        let n = file.read_at(&mut buf, position)?;
                        buf.truncate(n);
                        Ok::<_, io::Error>(buf.freeze())
                    })
                    .await
                    .map_err(io::Error::other)??;
                    if chunk.is_empty() {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            format!("file ends at byte {position}, before byte {end}"),
                        ));
                    }
                    let next = position + chunk.len() as u64;
                    Ok(Some((chunk, next)))
                }
            });
            Ok(Box::pin(stream) as ChunkStream)
        })
    }

    fn describe(&self) -> String {
        if self.offset == 0 {
            self.path.display().to_string()
        } else {
            format!("{}[{}+{}]", self.path.display(), self.offset, self.len)
        }
    }
}

/// Bytes in memory.
#[derive(Debug, Clone)]
pub struct MemorySource {
    bytes: Bytes,
}

impl MemorySource {
    pub fn new(bytes: impl Into<Bytes>) -> Self {
        MemorySource {
            bytes: bytes.into(),
        }
    }
}

impl BlobSource for MemorySource {
    fn len(&self) -> u64 {
        self.bytes.len() as u64
    }

    fn open(&self, offset: u64, len: u64) -> OpenFuture<'_> {
        let start = (offset as usize).min(self.bytes.len());
        let end = start + (len as usize).min(self.bytes.len() - start);
        let rest = self.bytes.slice(start..end);
        // Handed out in read-sized pieces, like a file, so that progress
        // and chunk boundaries behave the same.
        let pieces: Vec<io::Result<Bytes>> = (0..rest.len())
            .step_by(READ_CHUNK)
            .map(|i| Ok(rest.slice(i..(i + READ_CHUNK).min(rest.len()))))
            .collect();
        Box::pin(async move { Ok(Box::pin(futures_util::stream::iter(pieces)) as ChunkStream) })
    }

    fn describe(&self) -> String {
        format!("({} bytes in memory)", self.bytes.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::TryStreamExt;

    async fn read_all(source: &dyn BlobSource, offset: u64) -> io::Result<Vec<u8>> {
        let len = source.len().saturating_sub(offset);
        let chunks: Vec<Bytes> = source.open(offset, len).await?.try_collect().await?;
        Ok(chunks.concat())
    }

    #[tokio::test]
    async fn file_range_reads_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let range = FileRange::new(&path, 100, 2_500_000);
        assert_eq!(read_all(&range, 0).await.unwrap(), &data[100..2_500_100]);
        assert_eq!(
            read_all(&range, 1_234_567).await.unwrap(),
            &data[1_234_667..2_500_100]
        );
        assert!(read_all(&range, 2_500_000).await.unwrap().is_empty());
        let past_end = FileRange::new(&path, 2_999_000, 2000);
        let err = read_all(&past_end, 0).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        assert!(
            FileRange::new(dir.path().join("missing"), 0, 1)
                .open(0, 1)
                .await
                .is_err()
        );
        let middle: Vec<Bytes> = range
            .open(10, 20)
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        assert_eq!(middle.concat(), &data[110..130]);
        assert_eq!(FileRange::whole(&path).unwrap().len(), 3_000_000);
    }

    #[tokio::test]
    async fn memory_source() {
        let data: Vec<u8> = (0..2_500_000u32).map(|i| i as u8).collect();
        let source = MemorySource::new(data.clone());
        assert_eq!(read_all(&source, 0).await.unwrap(), data);
        assert_eq!(
            read_all(&source, 2_000_000).await.unwrap(),
            &data[2_000_000..]
        );
        assert!(read_all(&source, 9_999_999).await.unwrap().is_empty());
    }
}
