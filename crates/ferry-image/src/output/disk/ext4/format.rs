//! The ext4 on-disk structures ferry reads and patches, as the kernel's
//! `Documentation/filesystems/ext4/` describes them (`super.rst`,
//! `group_descr.rst`, `inodes.rst`, `ifork.rst` for extents,
//! `directory.rst`, `attributes.rst`, `checksums.rst`): the superblock,
//! group descriptors, inodes, extent trees and directory blocks, read from
//! (and written to) the partition inside the disk file with positioned
//! I/O. Only what the fix-up and the read-back need is here.

use std::fs::File;
use std::os::unix::fs::FileExt;

/// `s_magic`.
const MAGIC: u16 = 0xEF53;
/// The superblock is 1024 bytes at byte 1024 of the filesystem.
const SUPERBLOCK_OFFSET: u64 = 1024;

/// `s_feature_incompat` bits.
pub const INCOMPAT_FILETYPE: u32 = 0x2;
pub const INCOMPAT_META_BG: u32 = 0x10;
pub const INCOMPAT_EXTENTS: u32 = 0x40;
pub const INCOMPAT_64BIT: u32 = 0x80;
pub const INCOMPAT_CSUM_SEED: u32 = 0x2000;
pub const INCOMPAT_INLINE_DATA: u32 = 0x8000;
/// `s_feature_ro_compat`: `metadata_csum`.
pub const RO_COMPAT_METADATA_CSUM: u32 = 0x400;

/// `i_flags` bits.
pub const EXTENTS_FL: u32 = 0x80000;
pub const INLINE_DATA_FL: u32 = 0x1000_0000;

/// The first 128 bytes of an inode are the same in every revision; the
/// "extra" fields follow, `i_extra_isize` of them.
pub const GOOD_OLD_INODE_SIZE: usize = 128;

/// Inode field offsets (`struct ext4_inode`).
pub mod inode {
    pub const MODE: usize = 0x0;
    pub const UID: usize = 0x2;
    pub const SIZE_LO: usize = 0x4;
    pub const ATIME: usize = 0x8;
    pub const CTIME: usize = 0xC;
    pub const MTIME: usize = 0x10;
    pub const GID: usize = 0x18;
    pub const BLOCKS_LO: usize = 0x1C;
    pub const FLAGS: usize = 0x20;
    pub const BLOCK: usize = 0x28;
    pub const BLOCK_LEN: usize = 60;
    pub const GENERATION: usize = 0x64;
    pub const FILE_ACL_LO: usize = 0x68;
    pub const SIZE_HIGH: usize = 0x6C;
    pub const BLOCKS_HIGH: usize = 0x74;
    pub const FILE_ACL_HIGH: usize = 0x76;
    pub const UID_HIGH: usize = 0x78;
    pub const GID_HIGH: usize = 0x7A;
    pub const CHECKSUM_LO: usize = 0x7C;
    pub const EXTRA_ISIZE: usize = 0x80;
    pub const CHECKSUM_HI: usize = 0x82;
    pub const CTIME_EXTRA: usize = 0x84;
    pub const MTIME_EXTRA: usize = 0x88;
    pub const ATIME_EXTRA: usize = 0x8C;
    pub const CRTIME: usize = 0x90;
    pub const CRTIME_EXTRA: usize = 0x94;
}

/// Directory entry file types (`ext4_dir_entry_2.file_type`).
pub mod file_type {
    pub const REGULAR: u8 = 1;
    pub const DIRECTORY: u8 = 2;
    pub const CHAR_DEVICE: u8 = 3;
    pub const BLOCK_DEVICE: u8 = 4;
    pub const FIFO: u8 = 5;
    pub const SYMLINK: u8 = 7;
    /// The fake entry holding a leaf block's checksum (`det_reserved_ft`).
    pub const CHECKSUM_TAIL: u8 = 0xDE;
}

/// Size of the fake directory entry at the end of a checksummed leaf
/// block (`struct ext4_dir_entry_tail`).
pub const DIR_TAIL_LEN: usize = 12;

#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("reading the ext4 filesystem: {0}")]
    Io(#[from] std::io::Error),
    #[error("not an ext4 filesystem (superblock magic {0:#06x})")]
    NotExt4(u16),
    #[error("the ext4 filesystem uses {0}, which ferry's fix-up does not read")]
    Unsupported(&'static str),
    #[error("corrupt ext4 {what} (inode {ino})")]
    Corrupt { what: &'static str, ino: u32 },
}

pub fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

pub fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

pub fn put16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_le_bytes());
}

pub fn put32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

/// The Linux kernel's `crc32c(seed, data)`: CRC32C without the final
/// inversion, as ext4 chains it (`ext4_chksum`).
pub fn crc32c_raw(seed: u32, data: &[u8]) -> u32 {
    !crc32c::crc32c_append(!seed, data)
}

/// An ext4 filesystem at byte `base` of `file`.
#[derive(Debug)]
pub struct Ext4<'f> {
    file: &'f File,
    base: u64,
    pub block_size: u64,
    pub blocks_count: u64,
    pub inodes_count: u32,
    inodes_per_group: u32,
    pub inode_size: usize,
    pub uuid: [u8; 16],
    pub incompat: u32,
    pub ro_compat: u32,
    /// Each group's inode table, as a block number.
    inode_tables: Vec<u64>,
    /// The checksum seed of `metadata_csum` (`s_csum_seed` in the
    /// kernel), or `None` when metadata is not checksummed.
    csum_seed: Option<u32>,
}

impl<'f> Ext4<'f> {
    /// Reads the superblock and group descriptors.
    pub fn open(file: &'f File, base: u64) -> Result<Ext4<'f>, FormatError> {
        let mut sb = [0u8; 1024];
        file.read_exact_at(&mut sb, base + SUPERBLOCK_OFFSET)?;
        let magic = le16(&sb, 0x38);
        if magic != MAGIC {
            return Err(FormatError::NotExt4(magic));
        }
        let block_size = 1024u64 << le32(&sb, 0x18);
        let incompat = le32(&sb, 0x60);
        let ro_compat = le32(&sb, 0x64);
        for (bit, name) in [
            (INCOMPAT_META_BG, "meta_bg"),
            (INCOMPAT_INLINE_DATA, "inline_data"),
        ] {
            if incompat & bit != 0 {
                return Err(FormatError::Unsupported(name));
            }
        }
        if incompat & INCOMPAT_EXTENTS == 0 {
            return Err(FormatError::Unsupported("block maps instead of extents"));
        }
        let is_64bit = incompat & INCOMPAT_64BIT != 0;
        let blocks_count = u64::from(le32(&sb, 0x4))
            | if is_64bit {
                u64::from(le32(&sb, 0x150)) << 32
            } else {
                0
            };
        let first_data_block = u64::from(le32(&sb, 0x14));
        let blocks_per_group = u64::from(le32(&sb, 0x20));
        let inodes_per_group = le32(&sb, 0x28);
        let inode_size = usize::from(le16(&sb, 0x58));
        let desc_size = if is_64bit {
            usize::from(le16(&sb, 0xFE))
        } else {
            32
        };
        let mut uuid = [0u8; 16];
        uuid.copy_from_slice(&sb[0x68..0x78]);
        let csum_seed = (ro_compat & RO_COMPAT_METADATA_CSUM != 0).then(|| {
            if incompat & INCOMPAT_CSUM_SEED != 0 {
                le32(&sb, 0x270)
            } else {
                crc32c_raw(!0, &uuid)
            }
        });
        let groups = blocks_count
            .saturating_sub(first_data_block)
            .div_ceil(blocks_per_group);
        let mut descriptors = vec![0u8; groups as usize * desc_size];
        file.read_exact_at(&mut descriptors, base + (first_data_block + 1) * block_size)?;
        let inode_tables = descriptors
            .chunks(desc_size)
            .map(|d| {
                u64::from(le32(d, 0x8))
                    | if desc_size >= 64 {
                        u64::from(le32(d, 0x28)) << 32
                    } else {
                        0
                    }
            })
            .collect();
        Ok(Ext4 {
            file,
            base,
            block_size,
            blocks_count,
            inodes_count: le32(&sb, 0x0),
            inodes_per_group,
            inode_size,
            uuid,
            incompat,
            ro_compat,
            inode_tables,
            csum_seed,
        })
    }

    fn inode_offset(&self, ino: u32) -> Result<u64, FormatError> {
        if ino == 0 || ino > self.inodes_count {
            return Err(FormatError::Corrupt {
                what: "inode number",
                ino,
            });
        }
        let index = ino - 1;
        let table = self.inode_tables[(index / self.inodes_per_group) as usize];
        Ok(self.base
            + table * self.block_size
            + u64::from(index % self.inodes_per_group) * self.inode_size as u64)
    }

    pub fn read_inode(&self, ino: u32) -> Result<Vec<u8>, FormatError> {
        let mut raw = vec![0u8; self.inode_size];
        self.file.read_exact_at(&mut raw, self.inode_offset(ino)?)?;
        Ok(raw)
    }

    pub fn write_inode(&self, ino: u32, raw: &[u8]) -> Result<(), FormatError> {
        self.file.write_all_at(raw, self.inode_offset(ino)?)?;
        Ok(())
    }

    /// The usable size of an inode's extra fields (`i_extra_isize`).
    pub fn extra_isize(&self, raw: &[u8]) -> usize {
        if self.inode_size > GOOD_OLD_INODE_SIZE {
            usize::from(le16(raw, inode::EXTRA_ISIZE))
        } else {
            0
        }
    }

    /// The seed of inode `ino`'s checksums: `crc32c(csum_seed, ino,
    /// generation)` (checksums.rst).
    fn inode_seed(&self, ino: u32, raw: &[u8]) -> Option<u32> {
        self.csum_seed.map(|seed| {
            let seed = crc32c_raw(seed, &ino.to_le_bytes());
            crc32c_raw(seed, &raw[inode::GENERATION..inode::GENERATION + 4])
        })
    }

    /// Recomputes inode `ino`'s checksum (the whole inode with both
    /// checksum fields taken as zero; the high half only when the extra
    /// fields reach it).
    pub fn seal_inode(&self, ino: u32, raw: &mut [u8]) {
        let Some(seed) = self.inode_seed(ino, raw) else {
            return;
        };
        let has_hi = self.extra_isize(raw) >= inode::CHECKSUM_HI + 2 - GOOD_OLD_INODE_SIZE;
        put16(raw, inode::CHECKSUM_LO, 0);
        if has_hi {
            put16(raw, inode::CHECKSUM_HI, 0);
        }
        let csum = crc32c_raw(seed, raw);
        put16(raw, inode::CHECKSUM_LO, csum as u16);
        if has_hi {
            put16(raw, inode::CHECKSUM_HI, (csum >> 16) as u16);
        }
    }

    /// The extents of an extent-mapped inode, in logical order.
    pub fn extents(&self, ino: u32, raw: &[u8]) -> Result<Vec<Extent>, FormatError> {
        let flags = le32(raw, inode::FLAGS);
        if flags & EXTENTS_FL == 0 {
            return Err(FormatError::Corrupt {
                what: "inode without extents",
                ino,
            });
        }
        let mut out = Vec::new();
        self.extent_node(
            ino,
            &raw[inode::BLOCK..inode::BLOCK + inode::BLOCK_LEN],
            &mut out,
            0,
        )?;
        out.sort_by_key(|e| e.logical);
        Ok(out)
    }

    /// Walks one extent tree node (`ifork.rst`): a 12-byte header, then
    /// leaf extents (depth 0) or index entries pointing at child nodes.
    fn extent_node(
        &self,
        ino: u32,
        node: &[u8],
        out: &mut Vec<Extent>,
        level: u32,
    ) -> Result<(), FormatError> {
        let corrupt = || FormatError::Corrupt {
            what: "extent tree",
            ino,
        };
        if node.len() < 12 || le16(node, 0) != 0xF30A || level > 5 {
            return Err(corrupt());
        }
        let entries = usize::from(le16(node, 2));
        let depth = le16(node, 6);
        if 12 + entries * 12 > node.len() {
            return Err(corrupt());
        }
        for e in node[12..12 + entries * 12].chunks(12) {
            if depth == 0 {
                let raw_len = u64::from(le16(e, 4));
                // Above 32768 the extent is preallocated and unwritten
                // (it reads as zeros).
                let (len, unwritten) = if raw_len > 32768 {
                    (raw_len - 32768, true)
                } else {
                    (raw_len, false)
                };
                let physical = (u64::from(le16(e, 6)) << 32) | u64::from(le32(e, 8));
                if physical + len > self.blocks_count {
                    return Err(corrupt());
                }
                out.push(Extent {
                    logical: u64::from(le32(e, 0)),
                    physical,
                    len,
                    unwritten,
                });
            } else {
                let leaf = (u64::from(le16(e, 8)) << 32) | u64::from(le32(e, 4));
                if leaf >= self.blocks_count {
                    return Err(corrupt());
                }
                let child = self.read_block(leaf)?;
                self.extent_node(ino, &child, out, level + 1)?;
            }
        }
        Ok(())
    }

    /// Reads `buf.len()` bytes from byte `offset` of block `block` on.
    pub fn read_at(&self, block: u64, offset: u64, buf: &mut [u8]) -> Result<(), FormatError> {
        self.file
            .read_exact_at(buf, self.base + block * self.block_size + offset)?;
        Ok(())
    }

    pub fn read_block(&self, block: u64) -> Result<Vec<u8>, FormatError> {
        let mut buf = vec![0u8; self.block_size as usize];
        self.file
            .read_exact_at(&mut buf, self.base + block * self.block_size)?;
        Ok(buf)
    }

    pub fn write_block(&self, block: u64, data: &[u8]) -> Result<(), FormatError> {
        self.file
            .write_all_at(data, self.base + block * self.block_size)?;
        Ok(())
    }

    /// Whether directory leaf `block` ends with a checksum tail.
    pub fn has_dir_tail(&self, block: &[u8]) -> bool {
        let at = block.len() - DIR_TAIL_LEN;
        self.csum_seed.is_some()
            && le32(block, at) == 0
            && usize::from(le16(block, at + 4)) == DIR_TAIL_LEN
            && block[at + 6] == 0
            && block[at + 7] == file_type::CHECKSUM_TAIL
    }

    /// Recomputes the checksum tail of a leaf block of directory `ino`
    /// (`raw` is the directory's inode).
    pub fn seal_dir_block(&self, ino: u32, raw: &[u8], block: &mut [u8]) {
        if !self.has_dir_tail(block) {
            return;
        }
        if let Some(seed) = self.inode_seed(ino, raw) {
            let at = block.len() - DIR_TAIL_LEN;
            let csum = crc32c_raw(seed, &block[..at]);
            put32(block, at + 8, csum);
        }
    }
}

/// A run of an inode's blocks (`struct ext4_extent`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    /// First logical block of the file it maps.
    pub logical: u64,
    pub physical: u64,
    pub len: u64,
    /// Allocated but never written: reads as zeros.
    pub unwritten: bool,
}

/// One name in a directory block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirEntry {
    pub ino: u32,
    pub file_type: u8,
    /// Index of the block in the directory's block list.
    pub block: usize,
    /// Byte offset of the entry in its block.
    pub offset: usize,
}

/// Calls `f(name, entry)` for every live entry of directory block
/// `data` (number `index` of its directory), `.` and `..` included. An
/// htree directory's index blocks read as one empty entry spanning the
/// block (or, for the root, `.` and a `..` spanning the rest), so the
/// same walk covers linear and indexed directories.
pub fn dir_entries(
    ino: u32,
    index: usize,
    data: &[u8],
    mut f: impl FnMut(&[u8], DirEntry),
) -> Result<(), FormatError> {
    let corrupt = || FormatError::Corrupt {
        what: "directory block",
        ino,
    };
    let mut at = 0;
    while at + 8 <= data.len() {
        let entry_ino = le32(data, at);
        let rec_len = usize::from(le16(data, at + 4));
        let name_len = usize::from(data[at + 6]);
        if rec_len < 8 || at + rec_len > data.len() || 8 + name_len > rec_len {
            return Err(corrupt());
        }
        if entry_ino != 0 {
            f(
                &data[at + 8..at + 8 + name_len],
                DirEntry {
                    ino: entry_ino,
                    file_type: data[at + 7],
                    block: index,
                    offset: at,
                },
            );
        }
        at += rec_len;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_crc32c_matches_the_kernels_convention() {
        // The standard CRC32C check value of "123456789" is 0xE3069283;
        // the kernel's crc32c(~0, ...) leaves out the final inversion.
        assert_eq!(crc32c_raw(!0, b"123456789"), !0xE306_9283);
        // Chaining two calls equals one call over both parts.
        let one = crc32c_raw(7, b"hello world");
        let two = crc32c_raw(crc32c_raw(7, b"hello "), b"world");
        assert_eq!(one, two);
    }
}
