//! The squashfs 4.0 on-disk layout (Linux fs/squashfs/squashfs_fs.h,
//! squashfs-tools' squashfs_fs.h): constants, the superblock, and
//! metadata blocks. Everything is little-endian.

use super::SquashfsError;
use super::compress::Codec;

pub(super) const MAGIC: u32 = 0x7371_7368;
pub(super) const SUPERBLOCK_SIZE: usize = 96;
/// Uncompressed size of a metadata block (inodes, directories, tables).
pub(super) const METADATA_SIZE: usize = 8192;
/// Bit 15 of a metadata block's 2-byte header: stored uncompressed.
pub(super) const METADATA_UNCOMPRESSED: u16 = 1 << 15;
/// Bit 24 of a data or fragment block's size: stored uncompressed.
pub(super) const DATA_UNCOMPRESSED: u32 = 1 << 24;
/// "No fragment", "no xattrs", "no table".
pub(super) const INVALID_FRAGMENT: u32 = u32::MAX;
pub(super) const INVALID_XATTR: u32 = u32::MAX;
pub(super) const INVALID_TABLE: u64 = u64::MAX;
/// Longest name a directory entry holds.
pub(super) const NAME_MAX: usize = 256;
/// Most entries one directory header may cover.
pub(super) const DIR_HEADER_MAX: usize = 256;
/// The image is padded to a multiple of this (mksquashfs's default), so
/// it can be used as a block device.
pub(super) const PAD: u64 = 4096;

/// Superblock flags (squashfs_fs.h bit numbers).
pub(super) const FLAG_DUPLICATES: u16 = 1 << 6;
pub(super) const FLAG_EXPORTABLE: u16 = 1 << 7;
pub(super) const FLAG_COMP_OPT: u16 = 1 << 10;

/// Inode types; `+ EXTENDED` gives the extended form. Directory entries
/// always carry the basic type.
pub(super) const DIR: u16 = 1;
pub(super) const FILE: u16 = 2;
pub(super) const SYMLINK: u16 = 3;
pub(super) const BLOCK_DEV: u16 = 4;
pub(super) const CHAR_DEV: u16 = 5;
pub(super) const FIFO: u16 = 6;
pub(super) const EXTENDED: u16 = 7;

/// Xattr name prefixes squashfs stores (by index); others cannot be.
pub(super) const XATTR_PREFIXES: [&str; 3] = ["user.", "trusted.", "security."];

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Superblock {
    pub inodes: u32,
    pub mkfs_time: u32,
    pub block_size: u32,
    pub fragments: u32,
    pub compression: u16,
    pub block_log: u16,
    pub flags: u16,
    pub ids: u16,
    pub root_inode: u64,
    pub bytes_used: u64,
    pub id_table: u64,
    pub xattr_table: u64,
    pub inode_table: u64,
    pub directory_table: u64,
    pub fragment_table: u64,
    pub export_table: u64,
}

impl Superblock {
    pub(super) fn encode(&self) -> [u8; SUPERBLOCK_SIZE] {
        let mut b = Vec::with_capacity(SUPERBLOCK_SIZE);
        for v in [
            MAGIC,
            self.inodes,
            self.mkfs_time,
            self.block_size,
            self.fragments,
        ] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        for v in [self.compression, self.block_log, self.flags, self.ids, 4, 0] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        for v in [
            self.root_inode,
            self.bytes_used,
            self.id_table,
            self.xattr_table,
            self.inode_table,
            self.directory_table,
            self.fragment_table,
            self.export_table,
        ] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b.try_into().expect("96 bytes")
    }

    pub(super) fn decode(b: &[u8]) -> Result<Superblock, String> {
        let mut r = Le::new(b);
        if b.len() < SUPERBLOCK_SIZE || r.u32() != MAGIC {
            return Err("no squashfs superblock (bad magic)".into());
        }
        let mut s = Superblock {
            inodes: r.u32(),
            mkfs_time: r.u32(),
            block_size: r.u32(),
            fragments: r.u32(),
            compression: r.u16(),
            block_log: r.u16(),
            flags: r.u16(),
            ids: r.u16(),
            ..Superblock::default()
        };
        let (major, minor) = (r.u16(), r.u16());
        if (major, minor) != (4, 0) {
            return Err(format!("squashfs version {major}.{minor}, not 4.0"));
        }
        s.root_inode = r.u64();
        s.bytes_used = r.u64();
        s.id_table = r.u64();
        s.xattr_table = r.u64();
        s.inode_table = r.u64();
        s.directory_table = r.u64();
        s.fragment_table = r.u64();
        s.export_table = r.u64();
        Ok(s)
    }
}

/// A little-endian cursor over a byte slice; reads past the end yield
/// zeros and set `short`, which the reader turns into one error.
pub(super) struct Le<'a> {
    bytes: &'a [u8],
    pub at: usize,
    pub short: bool,
}

impl<'a> Le<'a> {
    pub(super) fn new(bytes: &'a [u8]) -> Le<'a> {
        Le {
            bytes,
            at: 0,
            short: false,
        }
    }

    pub(super) fn take(&mut self, n: usize) -> &'a [u8] {
        match self.bytes.get(self.at..self.at + n) {
            Some(s) => {
                self.at += n;
                s
            }
            None => {
                self.short = true;
                self.at = self.bytes.len();
                &[]
            }
        }
    }

    pub(super) fn remaining(&self) -> usize {
        self.bytes.len() - self.at
    }

    fn array<const N: usize>(&mut self) -> [u8; N] {
        self.take(N).try_into().unwrap_or([0; N])
    }

    pub(super) fn u16(&mut self) -> u16 {
        u16::from_le_bytes(self.array())
    }

    pub(super) fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.array())
    }

    pub(super) fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.array())
    }
}

/// Appends little-endian values to a byte vector.
pub(super) trait PutLe {
    fn put16(&mut self, v: u16);
    fn put32(&mut self, v: u32);
    fn put64(&mut self, v: u64);
}

impl PutLe for Vec<u8> {
    fn put16(&mut self, v: u16) {
        self.extend_from_slice(&v.to_le_bytes());
    }
    fn put32(&mut self, v: u32) {
        self.extend_from_slice(&v.to_le_bytes());
    }
    fn put64(&mut self, v: u64) {
        self.extend_from_slice(&v.to_le_bytes());
    }
}

/// A stream cut into 8 KiB metadata blocks, each compressed on its own
/// (or stored raw when that is not smaller) behind a 2-byte header. A
/// position in it is (offset of the block's header from the stream's
/// start, offset in the uncompressed block): an inode reference is
/// `block << 16 | offset`.
pub(super) struct MetadataWriter {
    pub blocks: Vec<u8>,
    pending: Vec<u8>,
}

impl MetadataWriter {
    pub(super) fn new() -> MetadataWriter {
        MetadataWriter {
            blocks: Vec::new(),
            pending: Vec::with_capacity(METADATA_SIZE * 2),
        }
    }

    /// Where the next byte written will be.
    pub(super) fn position(&self) -> (u64, u16) {
        (self.blocks.len() as u64, self.pending.len() as u16)
    }

    pub(super) fn reference(&self) -> u64 {
        let (block, offset) = self.position();
        block << 16 | u64::from(offset)
    }

    pub(super) fn write(&mut self, codec: &mut Codec, bytes: &[u8]) -> Result<(), SquashfsError> {
        self.pending.extend_from_slice(bytes);
        while self.pending.len() >= METADATA_SIZE {
            let rest = self.pending.split_off(METADATA_SIZE);
            self.flush(codec)?;
            self.pending = rest;
        }
        Ok(())
    }

    fn flush(&mut self, codec: &mut Codec) -> Result<(), SquashfsError> {
        match codec.compress(&self.pending)? {
            Some(packed) => {
                self.blocks.put16(packed.len() as u16);
                self.blocks.extend_from_slice(&packed);
            }
            None => {
                self.blocks
                    .put16(self.pending.len() as u16 | METADATA_UNCOMPRESSED);
                self.blocks.extend_from_slice(&self.pending);
            }
        }
        self.pending.clear();
        Ok(())
    }

    /// The blocks, the last (partial) one included.
    pub(super) fn finish(mut self, codec: &mut Codec) -> Result<Vec<u8>, SquashfsError> {
        if !self.pending.is_empty() {
            self.flush(codec)?;
        }
        Ok(self.blocks)
    }
}

/// A device number as the kernel's `new_encode_dev` packs it (the inode's
/// `rdev`; squashfs_read_inode decodes it with `new_decode_dev`).
pub(super) fn encode_dev(major: u32, minor: u32) -> u32 {
    (minor & 0xff) | (major << 8) | ((minor & !0xff) << 12)
}

pub(super) fn decode_dev(rdev: u32) -> (u32, u32) {
    (
        (rdev & 0xfff00) >> 8,
        (rdev & 0xff) | ((rdev >> 12) & 0xfff00),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_numbers_round_trip_like_the_kernel() {
        for (major, minor) in [(1, 3), (8, 1), (259, 0x12345), (4095, 255)] {
            assert_eq!(decode_dev(encode_dev(major, minor)), (major, minor));
        }
        // new_encode_dev(MKDEV(8, 1)) == 0x801
        assert_eq!(encode_dev(8, 1), 0x801);
    }

    #[test]
    fn superblock_round_trips() {
        let s = Superblock {
            inodes: 7,
            block_size: 131072,
            block_log: 17,
            root_inode: 0x1234_0056,
            bytes_used: 999,
            xattr_table: INVALID_TABLE,
            ..Superblock::default()
        };
        assert_eq!(Superblock::decode(&s.encode()).unwrap(), s);
    }
}
