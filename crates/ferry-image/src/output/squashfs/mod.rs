//! The squashfs writer of `ferry image build`: a squashfs 4.0 image of
//! the whole [`Rootfs`], in the format the Linux kernel reads
//! (fs/squashfs/squashfs_fs.h), laid out as squashfs-tools' mksquashfs
//! lays it out (its defaults: fragments for files smaller than a block,
//! duplicate files stored once, sparse blocks, an NFS export table,
//! padding to 4 KiB), so live-boot, dracut's dmsquash-live and the
//! kernel mount it like any mksquashfs image.
//!
//! ferry writes squashfs itself rather than through the `backhand`
//! crate because backhand's writer stores no xattrs (the image would
//! lose `security.capability`, so `ping` and friends stop working) and
//! compresses on one thread; mksquashfs is not an option either (no host
//! tools at build time, and it would need root to read the owners,
//! devices and xattrs that the rootless build keeps as data in the
//! [`crate::rootfs::Tree`]).
//!
//! [`write`] streams every file from the stage through
//! `options.processors` compressor threads (see [`data`]), writes the
//! tables ([`tables`]) and gives the image its name only when it is
//! whole ([`ferry_oci::atomic`]); the output is byte-identical for the same tree, options and
//! `mkfs_time`, whatever the thread count. [`verify`] reads it back
//! ([`read`]).

mod compress;
mod data;
mod format;
mod read;
mod tables;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Seek, SeekFrom, Write};
use std::path::Path;

use ferry_oci::atomic::AtomicWrite;
use ferry_oci::progress::Progress;

pub use compress::{GZIP_DEFAULT_LEVEL, ZSTD_DEFAULT_LEVEL};
pub use read::verify;

use crate::rootfs::Rootfs;
use format::*;

/// Progress task id of the writer and of [`verify`].
const TASK: &str = "squashfs";

/// The block compressor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// zstd at `level` (1..=22); mksquashfs's default level is
    /// [`ZSTD_DEFAULT_LEVEL`].
    Zstd { level: i32 },
    /// xz (LZMA2, preset 6, dictionary = block size), as mksquashfs
    /// `-comp xz`.
    Xz,
    /// zlib at `level` (1..=9), as mksquashfs `-comp gzip`.
    Gzip { level: u32 },
}

#[derive(Debug, Clone)]
pub struct SquashfsOptions {
    pub compression: Compression,
    /// Data block size: a power of two from 4 KiB to 1 MiB.
    pub block_size: u32,
    /// Compressor threads.
    pub processors: usize,
    /// The superblock's creation time (SOURCE_DATE_EPOCH), seconds.
    pub mkfs_time: i64,
}

impl Default for SquashfsOptions {
    /// mksquashfs `-comp zstd` with its defaults: level 15, 128 KiB
    /// blocks, one thread per CPU.
    fn default() -> Self {
        SquashfsOptions {
            compression: Compression::Zstd {
                level: ZSTD_DEFAULT_LEVEL,
            },
            block_size: 128 * 1024,
            processors: std::thread::available_parallelism().map_or(1, |n| n.get()),
            mkfs_time: 0,
        }
    }
}

/// What went into the image, for the build report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SquashfsReport {
    /// Size of the image file (padded to 4 KiB).
    pub bytes: u64,
    pub inodes: u32,
    /// Regular files (inodes) and their total size.
    pub files: u64,
    pub file_bytes: u64,
    /// Files stored as a pointer to an identical earlier one.
    pub duplicate_files: u64,
    pub fragments: u32,
    /// All-zero blocks not stored.
    pub sparse_blocks: u64,
    /// Xattrs squashfs has no namespace for (`system.posix_acl_*`, ...),
    /// by name, with how many inodes lost each.
    pub skipped_xattrs: BTreeMap<String, u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum SquashfsError {
    #[error(
        "squashfs block size {0} is not a power of two from 4096 to 1048576; use 131072 (128 KiB, the default) or another power of two in that range"
    )]
    BlockSize(u32),
    #[error("{0:?}: compression level out of range (zstd 1..=22, gzip 1..=9)")]
    Level(Compression),
    #[error(
        "SOURCE_DATE_EPOCH {0} does not fit squashfs's unsigned 32-bit time (1970..2106); set it within that range"
    )]
    MkfsTime(i64),
    #[error("{path}: name longer than squashfs's 256 bytes; rename or remove it in the image")]
    NameTooLong { path: String },
    #[error("more than 65536 distinct owners (uids and gids): squashfs cannot store them")]
    TooManyIds,
    #[error("reading {path} from the build stage: {source}")]
    Stage {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error(
        "{path}: the build stage holds {found} bytes but the tree says {expected}; the stage changed during the build, rerun it"
    )]
    StageChanged {
        path: String,
        expected: u64,
        found: u64,
    },
    #[error("compressing: {0}")]
    Compress(String),
    #[error("writing the squashfs image: {0} (is the output disk full?)")]
    Write(#[source] io::Error),
    #[error("squashfs writer: a pipeline thread stopped early")]
    Pipeline,
    #[error("reading back {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("reading back {image}: not a valid squashfs image: {what}")]
    Corrupt { image: String, what: String },
    #[error("reading back {image}: {path}: {what}")]
    Mismatch {
        image: String,
        path: String,
        what: String,
    },
}

impl SquashfsOptions {
    fn check(&self) -> Result<u32, SquashfsError> {
        let b = self.block_size;
        if !b.is_power_of_two() || !(4096..=1 << 20).contains(&b) {
            return Err(SquashfsError::BlockSize(b));
        }
        self.compression.check()?;
        u32::try_from(self.mkfs_time).map_err(|_| SquashfsError::MkfsTime(self.mkfs_time))
    }
}

/// Writes `rootfs` as a squashfs image to `out` (see the module docs).
/// The image appears at `out` only once complete; call [`verify`] before
/// reporting it built (or use [`write_to`] to read it back before it gets
/// its name).
pub fn write(
    rootfs: &Rootfs,
    out: &Path,
    options: &SquashfsOptions,
    progress: &dyn Progress,
) -> Result<SquashfsReport, SquashfsError> {
    let target = AtomicWrite::new().open(out).map_err(SquashfsError::Write)?;
    let report = write_to(rootfs, target.file(), options, progress)?;
    target.commit().map_err(SquashfsError::Write)?;
    Ok(report)
}

/// Writes `rootfs` as a squashfs image into `file`, from its start.
pub fn write_to(
    rootfs: &Rootfs,
    file: &File,
    options: &SquashfsOptions,
    progress: &dyn Progress,
) -> Result<SquashfsReport, SquashfsError> {
    let mkfs_time = options.check()?;
    let file_bytes = rootfs.tree().file_bytes();
    progress.start(TASK, "squashfs: compressing files", Some(file_bytes));
    let written = write_image(rootfs, file, options, mkfs_time, progress);
    progress.finish(TASK, if written.is_ok() { "written" } else { "failed" });
    written
}

fn write_image(
    rootfs: &Rootfs,
    file: &File,
    options: &SquashfsOptions,
    mkfs_time: u32,
    progress: &dyn Progress,
) -> Result<SquashfsReport, SquashfsError> {
    let plan = tables::Plan::new(rootfs.tree())?;
    let options_block = options.compression.options_block();
    let mut start = SUPERBLOCK_SIZE as u64;
    if let Some(b) = &options_block {
        let mut block = Vec::with_capacity(2 + b.len());
        block.put16(b.len() as u16 | METADATA_UNCOMPRESSED);
        block.extend_from_slice(b);
        write_at(file, start, &block)?;
        start += block.len() as u64;
    }
    let data = data::write(rootfs, &plan.files, file, start, options, progress)?;
    let mut codec = compress::Codec::new(options.compression, options.block_size);
    let tables = tables::write(&plan, &data, &mut codec)?;
    write_at(file, data.end, &tables.bytes)?;
    let bytes_used = data.end + tables.bytes.len() as u64;
    let padded = bytes_used.div_ceil(PAD) * PAD;
    file.set_len(padded).map_err(SquashfsError::Write)?;
    let mut flags = FLAG_DUPLICATES | FLAG_EXPORTABLE;
    if options_block.is_some() {
        flags |= FLAG_COMP_OPT;
    }
    let superblock = Superblock {
        inodes: plan.inode_count(),
        mkfs_time,
        block_size: options.block_size,
        fragments: data.fragments.len() as u32,
        compression: options.compression.id(),
        block_log: options.block_size.trailing_zeros() as u16,
        flags,
        ids: plan.ids.len() as u16,
        root_inode: tables.root_inode,
        bytes_used,
        id_table: tables.id_table,
        xattr_table: tables.xattr_table.unwrap_or(INVALID_TABLE),
        inode_table: tables.inode_table,
        directory_table: tables.directory_table,
        fragment_table: tables.fragment_table,
        export_table: tables.export_table,
    };
    write_at(file, 0, &superblock.encode())?;
    Ok(SquashfsReport {
        bytes: padded,
        inodes: plan.inode_count(),
        files: plan.files.len() as u64,
        file_bytes: rootfs.tree().file_bytes(),
        duplicate_files: data.duplicate_files,
        fragments: data.fragments.len() as u32,
        sparse_blocks: data.sparse_blocks,
        skipped_xattrs: plan.skipped_xattrs,
    })
}

fn write_at(mut file: &File, at: u64, bytes: &[u8]) -> Result<(), SquashfsError> {
    file.seek(SeekFrom::Start(at))
        .and_then(|_| file.write_all(bytes))
        .map_err(SquashfsError::Write)
}

/// `rootfs.squashfs` as an output of `ferry image build`.
pub struct SquashfsOutput;

impl super::Writer for SquashfsOutput {
    fn format(&self) -> crate::spec::Format {
        crate::spec::Format::Squashfs
    }

    fn write(&self, job: &mut super::Job<'_>) -> Result<(), super::OutputError> {
        job.squashfs().map(drop)
    }
}

/// The writer's options from the spec's `squashfs:` section.
pub fn options(
    spec: &crate::spec::ImageSpec,
    processors: usize,
    mkfs_time: i64,
) -> Result<SquashfsOptions, super::OutputError> {
    use crate::spec::SquashfsCompression as C;
    let s = &spec.squashfs;
    let compression = match s.compression.unwrap_or(C::Zstd) {
        C::Zstd => Compression::Zstd {
            level: s.level.map_or(ZSTD_DEFAULT_LEVEL, |l| l as i32),
        },
        C::Xz => Compression::Xz,
        C::Gzip => Compression::Gzip {
            level: s.level.unwrap_or(9),
        },
    };
    let block_size = match s.block_size {
        Some(size) => u32::try_from(size.0).map_err(|_| super::OutputError::Spec {
            what: "squashfs.block_size".into(),
            message: format!("{} bytes is larger than 1M", size.0),
        })?,
        None => 128 * 1024,
    };
    Ok(SquashfsOptions {
        compression,
        block_size,
        processors: processors.max(1),
        mkfs_time,
    })
}
