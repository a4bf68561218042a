//! File data: every regular file's blocks and the fragment blocks,
//! compressed on `processors` threads and written in one fixed order, so
//! the image is byte-identical whatever the thread count.
//!
//! Three stages, as mksquashfs has (reader, deflators, writer):
//!
//! - this thread reads the stage file by file, in tree order, and numbers
//!   every block it hands on (`seq`): a file's full blocks (its last,
//!   partial one too when the file is a block or larger) go to the
//!   compressors; an all-zero block is not stored at all (a sparse block,
//!   size 0 in the block list, which the kernel reads back as zeros);
//!   a file smaller than a block is packed into the current fragment
//!   block with other small files (tail packing), which goes to the
//!   compressors once the next file would not fit;
//! - the compressor threads compress blocks in any order;
//! - the writer thread puts them back in `seq` order, appends each to the
//!   image and records where it went.
//!
//! Memory is bounded by a window of tokens: a block needs one to enter
//! the pipeline and gives it back once written, so at most `window`
//! blocks are in flight whatever the rootfs size.
//!
//! Duplicate files (same size and SHA-256) are stored once: later copies
//! point at the first one's blocks or fragment (mksquashfs's duplicate
//! detection). Only files whose size another file shares are hashed.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::mpsc::{Receiver, SyncSender, channel, sync_channel};
use std::sync::{Arc, Mutex};

use ferry_oci::progress::Progress;
use sha2::{Digest, Sha256};

use super::compress::Codec;
use super::format::{DATA_UNCOMPRESSED, INVALID_FRAGMENT};
use super::{SquashfsError, SquashfsOptions, TASK};
use crate::rootfs::{InodeId, Kind, Rootfs};

/// Where one regular file's data went.
#[derive(Debug, Clone)]
pub(super) struct FileLayout {
    /// Image offset of its first block (blocks follow each other).
    pub start: u64,
    /// Each block's stored size, [`DATA_UNCOMPRESSED`] flagged; 0 is a
    /// sparse (all-zero) block.
    pub blocks: Vec<u32>,
    /// Its fragment block and offset in it, for a file smaller than a
    /// block ([`INVALID_FRAGMENT`] otherwise).
    pub fragment: u32,
    pub fragment_offset: u32,
    /// Bytes stored as sparse blocks.
    pub sparse: u64,
}

impl Default for FileLayout {
    fn default() -> Self {
        FileLayout {
            start: 0,
            blocks: Vec::new(),
            fragment: INVALID_FRAGMENT,
            fragment_offset: 0,
            sparse: 0,
        }
    }
}

/// What the data stage produced.
pub(super) struct Data {
    /// One per entry of the `files` it was given.
    pub files: Vec<FileLayout>,
    /// Each fragment block's image offset and stored size.
    pub fragments: Vec<(u64, u32)>,
    /// Image offset just past the data.
    pub end: u64,
    pub duplicate_files: u64,
    pub sparse_blocks: u64,
}

enum Tag {
    Block { file: usize, first: bool },
    Fragment { index: u32 },
}

struct Job {
    seq: u64,
    tag: Tag,
    data: Vec<u8>,
}

enum Stored {
    Packed(Vec<u8>),
    Raw(Vec<u8>),
    /// An all-zero block of this many bytes.
    Sparse(u64),
}

struct Done {
    seq: u64,
    tag: Tag,
    stored: Result<Stored, SquashfsError>,
}

/// Writes the data of `files` (regular-file inodes, in image order) to
/// `out` from offset `start`.
pub(super) fn write(
    rootfs: &Rootfs,
    files: &[InodeId],
    out: &File,
    start: u64,
    options: &SquashfsOptions,
    progress: &dyn Progress,
) -> Result<Data, SquashfsError> {
    let processors = options.processors.max(1);
    let window = (processors * 4).max(8);
    let (job_tx, job_rx) = channel::<Job>();
    let job_rx = Arc::new(Mutex::new(job_rx));
    let (done_tx, done_rx) = channel::<Done>();
    let (token_tx, token_rx) = sync_channel::<()>(window);
    for _ in 0..window {
        token_tx.send(()).expect("room for every token");
    }
    std::thread::scope(|scope| {
        for _ in 0..processors {
            let job_rx = Arc::clone(&job_rx);
            let done_tx = done_tx.clone();
            let mut codec = Codec::new(options.compression, options.block_size);
            scope.spawn(move || compress_jobs(&job_rx, &done_tx, &mut codec));
        }
        drop(job_rx);
        let writer =
            scope.spawn(move || write_in_order(out, start, files.len(), done_rx, token_tx));
        let mut reader = Reader {
            rootfs,
            block_size: options.block_size as usize,
            jobs: job_tx,
            done: done_tx,
            tokens: token_rx,
            seq: 0,
            progress,
        };
        let read = reader.read_all(files);
        drop(reader);
        let written = writer.join().expect("the writer thread does not panic");
        // A failed write stops the pipeline, which the reader then sees
        // as a closed channel: the writer's error is the one to report.
        let mut data = written?;
        let read = read?;
        for (i, (fragment, offset)) in read.in_fragments {
            data.files[i].fragment = fragment;
            data.files[i].fragment_offset = offset;
        }
        // After the fragments: a duplicate may be of a small file.
        for (i, original) in read.duplicates {
            data.files[i] = data.files[original].clone();
        }
        data.duplicate_files = read.duplicate_count;
        Ok(data)
    })
}

fn compress_jobs(
    jobs: &Mutex<Receiver<Job>>,
    done: &std::sync::mpsc::Sender<Done>,
    codec: &mut Codec,
) {
    loop {
        let job = match jobs.lock().expect("no panics holding the lock").recv() {
            Ok(job) => job,
            Err(_) => return,
        };
        let stored = codec.compress(&job.data).map(|packed| match packed {
            Some(p) => Stored::Packed(p),
            None => Stored::Raw(job.data),
        });
        let done_msg = Done {
            seq: job.seq,
            tag: job.tag,
            stored,
        };
        if done.send(done_msg).is_err() {
            return;
        }
    }
}

/// The writer stage: appends blocks in `seq` order.
fn write_in_order(
    out: &File,
    start: u64,
    files: usize,
    done: Receiver<Done>,
    tokens: SyncSender<()>,
) -> Result<Data, SquashfsError> {
    let mut file = out;
    file.seek(SeekFrom::Start(start))
        .map_err(SquashfsError::Write)?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    let mut data = Data {
        files: vec![FileLayout::default(); files],
        fragments: Vec::new(),
        end: start,
        duplicate_files: 0,
        sparse_blocks: 0,
    };
    let mut waiting: BTreeMap<u64, Done> = BTreeMap::new();
    let mut next = 0u64;
    while let Ok(d) = done.recv() {
        waiting.insert(d.seq, d);
        while let Some(d) = waiting.remove(&next) {
            next += 1;
            let size = match d.stored? {
                Stored::Packed(b) => {
                    w.write_all(&b).map_err(SquashfsError::Write)?;
                    b.len() as u32
                }
                Stored::Raw(b) => {
                    w.write_all(&b).map_err(SquashfsError::Write)?;
                    b.len() as u32 | DATA_UNCOMPRESSED
                }
                Stored::Sparse(len) => {
                    data.sparse_blocks += 1;
                    if let Tag::Block { file, .. } = d.tag {
                        data.files[file].sparse += len;
                    }
                    0
                }
            };
            match d.tag {
                Tag::Block { file, first } => {
                    let layout = &mut data.files[file];
                    if first {
                        layout.start = data.end;
                    }
                    layout.blocks.push(size);
                }
                Tag::Fragment { index } => {
                    debug_assert_eq!(index as usize, data.fragments.len());
                    data.fragments.push((data.end, size));
                }
            }
            data.end += u64::from(size & !DATA_UNCOMPRESSED);
            // The reader may be gone already (it failed): nothing to free.
            let _ = tokens.send(());
        }
    }
    w.flush().map_err(SquashfsError::Write)?;
    Ok(data)
}

/// What the reader decided besides the blocks.
#[derive(Default)]
struct Decisions {
    /// (file, the earlier file with the same content)
    duplicates: Vec<(usize, usize)>,
    duplicate_count: u64,
    /// (file, (fragment block, offset in it))
    in_fragments: Vec<(usize, (u32, u32))>,
}

impl Decisions {
    /// Whether file `i`, of (size, sha256) `key`, repeats an earlier file
    /// of `seen` (then recorded as its duplicate); if not, `seen` learns
    /// it.
    fn is_duplicate(
        &mut self,
        seen: &mut HashMap<(u64, [u8; 32]), usize>,
        key: (u64, [u8; 32]),
        i: usize,
    ) -> bool {
        match seen.get(&key) {
            Some(&original) => {
                self.duplicates.push((i, original));
                self.duplicate_count += 1;
                true
            }
            None => {
                seen.insert(key, i);
                false
            }
        }
    }
}

struct Reader<'a> {
    rootfs: &'a Rootfs,
    block_size: usize,
    jobs: std::sync::mpsc::Sender<Job>,
    done: std::sync::mpsc::Sender<Done>,
    tokens: Receiver<()>,
    seq: u64,
    progress: &'a dyn Progress,
}

impl Reader<'_> {
    fn read_all(&mut self, files: &[InodeId]) -> Result<Decisions, SquashfsError> {
        let tree = self.rootfs.tree();
        let size_of = |id: InodeId| match tree.inode(id).kind {
            Kind::File { size } => size,
            _ => unreachable!("only regular files have data"),
        };
        let mut same_size: HashMap<u64, u32> = HashMap::new();
        for &id in files {
            *same_size.entry(size_of(id)).or_default() += 1;
        }
        let mut seen: HashMap<(u64, [u8; 32]), usize> = HashMap::new();
        let mut read = Decisions::default();
        let mut fragment: Vec<u8> = Vec::with_capacity(self.block_size);
        let mut fragment_index = 0u32;
        for (i, &id) in files.iter().enumerate() {
            let size = size_of(id);
            if size == 0 {
                continue;
            }
            let path = tree.inode(id).first_link();
            let may_repeat = same_size[&size] > 1;
            if size < self.block_size as u64 {
                let bytes = self.read_small(path, size)?;
                if may_repeat
                    && read.is_duplicate(&mut seen, (size, Sha256::digest(&bytes).into()), i)
                {
                    self.progress.advance(TASK, size);
                    continue;
                }
                if fragment.len() + bytes.len() > self.block_size {
                    self.send_fragment(&mut fragment, &mut fragment_index)?;
                }
                read.in_fragments
                    .push((i, (fragment_index, fragment.len() as u32)));
                fragment.extend_from_slice(&bytes);
                self.progress.advance(TASK, size);
                continue;
            }
            if may_repeat && read.is_duplicate(&mut seen, (size, self.hash(path, size)?), i) {
                self.progress.advance(TASK, size);
                continue;
            }
            self.send_blocks(i, path, size)?;
        }
        if !fragment.is_empty() {
            self.send_fragment(&mut fragment, &mut fragment_index)?;
        }
        Ok(read)
    }

    fn stage_err(path: &Path) -> impl Fn(std::io::Error) -> SquashfsError + '_ {
        move |source| SquashfsError::Stage {
            path: crate::rootfs::tree::display(path),
            source,
        }
    }

    fn open(&self, path: &Path) -> Result<File, SquashfsError> {
        self.rootfs
            .stage()
            .open(path)
            .map_err(Self::stage_err(path))
    }

    fn read_small(&self, path: &Path, size: u64) -> Result<Vec<u8>, SquashfsError> {
        let mut bytes = Vec::with_capacity(size as usize);
        self.open(path)?
            .take(size + 1)
            .read_to_end(&mut bytes)
            .map_err(Self::stage_err(path))?;
        check_size(path, size, bytes.len() as u64)?;
        Ok(bytes)
    }

    fn hash(&self, path: &Path, size: u64) -> Result<[u8; 32], SquashfsError> {
        let mut hasher = Sha256::new();
        let mut staged = self.open(path)?;
        let mut buf = vec![0u8; 1 << 16];
        let mut copied = 0u64;
        loop {
            let n = staged.read(&mut buf).map_err(Self::stage_err(path))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            copied += n as u64;
        }
        check_size(path, size, copied)?;
        Ok(hasher.finalize().into())
    }

    fn send_blocks(&mut self, file: usize, path: &Path, size: u64) -> Result<(), SquashfsError> {
        let mut staged = self.open(path)?.take(size + 1);
        let mut total = 0u64;
        let mut first = true;
        loop {
            let mut block = Vec::with_capacity(self.block_size);
            (&mut staged)
                .take(self.block_size as u64)
                .read_to_end(&mut block)
                .map_err(Self::stage_err(path))?;
            if block.is_empty() {
                break;
            }
            total += block.len() as u64;
            if total > size {
                // Grew while being read: reported before anything else.
                return check_size(path, size, total);
            }
            self.progress.advance(TASK, block.len() as u64);
            let tag = Tag::Block { file, first };
            first = false;
            if block.iter().all(|b| *b == 0) {
                self.send_sparse(tag, block.len() as u64)?;
            } else {
                self.send(tag, block)?;
            }
        }
        check_size(path, size, total)
    }

    fn send_fragment(
        &mut self,
        fragment: &mut Vec<u8>,
        index: &mut u32,
    ) -> Result<(), SquashfsError> {
        let full = std::mem::replace(fragment, Vec::with_capacity(self.block_size));
        self.send(Tag::Fragment { index: *index }, full)?;
        *index += 1;
        Ok(())
    }

    /// Waits for a token (room in the window) and numbers the block.
    fn next_seq(&mut self) -> Result<u64, SquashfsError> {
        self.tokens.recv().map_err(|_| SquashfsError::Pipeline)?;
        self.seq += 1;
        Ok(self.seq - 1)
    }

    fn send(&mut self, tag: Tag, data: Vec<u8>) -> Result<(), SquashfsError> {
        let seq = self.next_seq()?;
        self.jobs
            .send(Job { seq, tag, data })
            .map_err(|_| SquashfsError::Pipeline)
    }

    fn send_sparse(&mut self, tag: Tag, len: u64) -> Result<(), SquashfsError> {
        let seq = self.next_seq()?;
        self.done
            .send(Done {
                seq,
                tag,
                stored: Ok(Stored::Sparse(len)),
            })
            .map_err(|_| SquashfsError::Pipeline)
    }
}

fn check_size(path: &Path, expected: u64, found: u64) -> Result<(), SquashfsError> {
    if expected == found {
        Ok(())
    } else {
        Err(SquashfsError::StageChanged {
            path: crate::rootfs::tree::display(path),
            expected,
            found,
        })
    }
}
