//! Reading an image back: [`verify`] parses it as the kernel would and
//! compares it with the tree it was built from, so a build never reports
//! success for an image that would not boot or that lost something.
//!
//! The reader is written here, as the inverse of the writer, rather than
//! taken from the `backhand` crate: it checks the layout rules the
//! kernel's `squashfs_fill_super` enforces (table order and bounds) that
//! a lenient reader skips, and it needs no second copy of the format
//! logic in another crate's types.
//!
//! Checked: the superblock and the table layout; every path of the tree
//! is in the image and nothing else is; each one's kind, mode (with
//! setuid, setgid, sticky), owner, mtime, link count, symlink target,
//! device number and storable xattrs; hard links share one inode; the
//! export table points at every inode; and every regular file's bytes,
//! decompressed, equal the staged file's bytes (compared directly, which
//! is stronger than comparing hashes and reads each side once), on one
//! thread per CPU.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::File;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::compress::{Codec, GZIP_DEFAULT_LEVEL, XZ_ID, ZLIB_ID, ZSTD_DEFAULT_LEVEL, ZSTD_ID};
use super::format::*;
use super::tables::{StoredXattr, basic_type, squashfs_time, storable_xattr};
use super::{Compression, SquashfsError};
use crate::rootfs::tree::display;
use crate::rootfs::{InodeId, Kind, Rootfs};

/// Reads the image at `path` back and checks it against `rootfs` (see
/// the module docs); the first difference is the error.
pub fn verify(path: &Path, rootfs: &Rootfs) -> Result<(), SquashfsError> {
    let image = Image::open(path)?;
    let files = image.check_tree(rootfs)?;
    image.check_contents(rootfs, &files)
}

/// A parsed inode.
#[derive(Debug)]
struct Inode {
    kind: u16,
    mode: u16,
    uid: u32,
    gid: u32,
    mtime: u32,
    number: u32,
    nlink: u32,
    xattr: u32,
    body: Body,
}

#[derive(Debug)]
enum Body {
    Dir {
        start_block: u32,
        offset: u16,
        file_size: u32,
        /// Directory index: (listing offset, directory-table block, name).
        index: Vec<(u32, u32, Vec<u8>)>,
    },
    File(FileData),
    Symlink(Vec<u8>),
    Device(u32),
    Fifo,
}

#[derive(Debug, Clone)]
struct FileData {
    start: u64,
    size: u64,
    fragment: u32,
    fragment_offset: u32,
    blocks: Vec<u32>,
}

/// A directory entry.
struct Entry {
    name: Vec<u8>,
    reference: u64,
    number: u32,
    /// The basic inode type.
    kind: u16,
}

/// A metadata table decompressed whole, with where each of its blocks
/// starts in the decompressed bytes (keyed by the block's offset from
/// the table's start on disk).
struct Table {
    bytes: Vec<u8>,
    blocks: HashMap<u64, usize>,
}

struct Image {
    name: String,
    file: File,
    sb: Superblock,
    compression: Compression,
    inodes: Table,
    dirs: Table,
    ids: Vec<u32>,
    fragments: Vec<(u64, u32)>,
    export: Vec<u64>,
    xattrs: Vec<Vec<StoredXattr>>,
}

impl Image {
    fn corrupt(&self, what: impl Into<String>) -> SquashfsError {
        corrupt(&self.name, what)
    }

    fn open(path: &Path) -> Result<Image, SquashfsError> {
        let name = path.display().to_string();
        let read_err = |source| SquashfsError::Read {
            path: name.clone(),
            source,
        };
        let file = File::open(path).map_err(read_err)?;
        let len = file.metadata().map_err(read_err)?.len();
        let mut raw = [0u8; SUPERBLOCK_SIZE];
        file.read_exact_at(&mut raw, 0)
            .map_err(|_| corrupt(&name, "shorter than a superblock"))?;
        let sb = Superblock::decode(&raw).map_err(|e| corrupt(&name, e))?;
        if sb.bytes_used > len {
            return Err(corrupt(
                &name,
                format!("truncated: {len} bytes, superblock says {}", sb.bytes_used),
            ));
        }
        if !sb.block_size.is_power_of_two() || 1u32 << sb.block_log != sb.block_size {
            return Err(corrupt(&name, "block size and block log disagree"));
        }
        let mut compression = match sb.compression {
            ZSTD_ID => Compression::Zstd {
                level: ZSTD_DEFAULT_LEVEL,
            },
            XZ_ID => Compression::Xz,
            ZLIB_ID => Compression::Gzip {
                level: GZIP_DEFAULT_LEVEL,
            },
            id => return Err(corrupt(&name, format!("unsupported compressor id {id}"))),
        };
        if sb.flags & FLAG_COMP_OPT != 0 {
            // The level is informative (decompression does not need it).
            let mut codec = Codec::new(compression, sb.block_size);
            let (options, _) = metadata_block(&file, &name, &mut codec, SUPERBLOCK_SIZE as u64)?;
            let level = Le::new(&options).u32();
            match &mut compression {
                Compression::Zstd { level: l } => *l = level as i32,
                Compression::Gzip { level: l } => *l = level,
                Compression::Xz => {}
            }
        }
        let mut image = Image {
            name,
            file,
            sb,
            compression,
            inodes: Table {
                bytes: Vec::new(),
                blocks: HashMap::new(),
            },
            dirs: Table {
                bytes: Vec::new(),
                blocks: HashMap::new(),
            },
            ids: Vec::new(),
            fragments: Vec::new(),
            export: Vec::new(),
            xattrs: Vec::new(),
        };
        image.read_tables()?;
        Ok(image)
    }

    fn codec(&self) -> Codec {
        Codec::new(self.compression, self.sb.block_size)
    }

    /// The lookup tables, checked as squashfs_fill_super checks them:
    /// from the end of the image back, each table's index must end at or
    /// before where the next table's data begins.
    fn read_tables(&mut self) -> Result<(), SquashfsError> {
        let sb = self.sb.clone();
        let mut codec = self.codec();
        let mut next = sb.bytes_used;
        if sb.xattr_table != INVALID_TABLE {
            let mut header = [0u8; 16];
            self.file
                .read_exact_at(&mut header, sb.xattr_table)
                .map_err(|_| self.corrupt("xattr table header out of the image"))?;
            let mut h = Le::new(&header);
            let (pairs_start, count) = (h.u64(), h.u32());
            let index_len = (count as u64 * 16).div_ceil(METADATA_SIZE as u64) * 8;
            if count == 0 || sb.xattr_table + 16 + index_len != sb.bytes_used {
                return Err(self.corrupt("the xattr id index does not end the image"));
            }
            let ids =
                self.lookup_table(&mut codec, sb.xattr_table + 16, count as usize * 16, next)?;
            next = pairs_start;
            let pairs = self.decompress_run(&mut codec, pairs_start, sb.xattr_table)?;
            let mut r = Le::new(&ids);
            for _ in 0..count {
                let (reference, n) = (r.u64(), r.u32());
                r.u32();
                let at = pairs
                    .blocks
                    .get(&(reference >> 16))
                    .ok_or_else(|| self.corrupt("xattr reference to no block"))?
                    + (reference & 0xffff) as usize;
                let mut p = Le::new(pairs.bytes.get(at..).unwrap_or_default());
                let mut set = Vec::new();
                for _ in 0..n {
                    let (prefix, len) = (p.u16(), p.u16());
                    let name = p.take(len as usize).to_vec();
                    let vlen = p.u32();
                    set.push((prefix, name, p.take(vlen as usize).to_vec()));
                }
                if p.short {
                    return Err(self.corrupt("xattr entries run past the table"));
                }
                self.xattrs.push(set);
            }
        }
        let ids = self.lookup_table(&mut codec, sb.id_table, sb.ids as usize * 4, next)?;
        self.ids = ids
            .chunks(4)
            .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        next = self.first_block(sb.id_table)?;
        if sb.export_table != INVALID_TABLE {
            let refs =
                self.lookup_table(&mut codec, sb.export_table, sb.inodes as usize * 8, next)?;
            self.export = refs
                .chunks(8)
                .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
                .collect();
            next = self.first_block(sb.export_table)?;
        }
        if sb.fragments > 0 {
            let entries = self.lookup_table(
                &mut codec,
                sb.fragment_table,
                sb.fragments as usize * 16,
                next,
            )?;
            let mut r = Le::new(&entries);
            for _ in 0..sb.fragments {
                let (start, size) = (r.u64(), r.u32());
                r.u32();
                self.fragments.push((start, size));
            }
            next = self.first_block(sb.fragment_table)?;
        }
        if sb.directory_table > next || sb.inode_table >= sb.directory_table {
            return Err(self.corrupt("inode and directory tables out of order"));
        }
        self.inodes = self.decompress_run(&mut codec, sb.inode_table, sb.directory_table)?;
        self.dirs = self.decompress_run(&mut codec, sb.directory_table, next)?;
        Ok(())
    }

    fn first_block(&self, index_at: u64) -> Result<u64, SquashfsError> {
        let mut b = [0u8; 8];
        self.file
            .read_exact_at(&mut b, index_at)
            .map_err(|_| self.corrupt("table index out of the image"))?;
        Ok(u64::from_le_bytes(b))
    }

    /// A lookup table of `len` bytes whose block index is at `index_at`
    /// and must end by `next`.
    fn lookup_table(
        &self,
        codec: &mut Codec,
        index_at: u64,
        len: usize,
        next: u64,
    ) -> Result<Vec<u8>, SquashfsError> {
        let blocks = len.div_ceil(METADATA_SIZE);
        if blocks == 0 {
            return Err(self.corrupt("an empty lookup table"));
        }
        // Checked before allocating: a corrupt count must not exhaust memory.
        if index_at.saturating_add(blocks as u64 * 8) > next {
            return Err(self.corrupt("a table index overlaps the next table"));
        }
        let mut index = vec![0u8; blocks * 8];
        self.file
            .read_exact_at(&mut index, index_at)
            .map_err(|_| self.corrupt("table index out of the image"))?;
        let starts: Vec<u64> = index
            .chunks(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
            .collect();
        let mut out = Vec::new();
        for (i, start) in starts.iter().enumerate() {
            let end = starts.get(i + 1).copied().unwrap_or(index_at);
            if *start >= end || end - start > METADATA_SIZE as u64 + 2 {
                return Err(self.corrupt("table blocks out of order"));
            }
            let (block, _) = metadata_block(&self.file, &self.name, codec, *start)?;
            out.extend_from_slice(&block);
        }
        if out.len() < len {
            return Err(self.corrupt("a lookup table is short"));
        }
        out.truncate(len);
        Ok(out)
    }

    /// Every metadata block from `start` up to `end`.
    fn decompress_run(
        &self,
        codec: &mut Codec,
        start: u64,
        end: u64,
    ) -> Result<Table, SquashfsError> {
        let mut table = Table {
            bytes: Vec::new(),
            blocks: HashMap::new(),
        };
        let mut at = start;
        while at < end {
            let (block, next) = metadata_block(&self.file, &self.name, codec, at)?;
            table.blocks.insert(at - start, table.bytes.len());
            table.bytes.extend_from_slice(&block);
            at = next;
        }
        if at != end {
            return Err(self.corrupt("a metadata table overruns the next one"));
        }
        Ok(table)
    }

    fn position(&self, table: &Table, block: u64, offset: u16) -> Result<usize, SquashfsError> {
        table
            .blocks
            .get(&block)
            .map(|at| at + offset as usize)
            .ok_or_else(|| self.corrupt(format!("reference to no metadata block ({block})")))
    }

    fn inode(&self, reference: u64) -> Result<Inode, SquashfsError> {
        let at = self.position(&self.inodes, reference >> 16, (reference & 0xffff) as u16)?;
        let mut r = Le::new(self.inodes.bytes.get(at..).unwrap_or_default());
        let kind = r.u16();
        let mode = r.u16();
        let (uid, gid) = (r.u16(), r.u16());
        let id = |i: u16| {
            self.ids
                .get(i as usize)
                .copied()
                .ok_or_else(|| self.corrupt(format!("owner index {i} past the id table")))
        };
        let (uid, gid) = (id(uid)?, id(gid)?);
        let mtime = r.u32();
        let number = r.u32();
        let mut nlink = 1;
        let mut xattr = INVALID_XATTR;
        let body = match kind {
            DIR => {
                let start_block = r.u32();
                nlink = r.u32();
                let file_size = u32::from(r.u16());
                let offset = r.u16();
                r.u32();
                Body::Dir {
                    start_block,
                    offset,
                    file_size,
                    index: Vec::new(),
                }
            }
            k if k == DIR + EXTENDED => {
                nlink = r.u32();
                let file_size = r.u32();
                let start_block = r.u32();
                r.u32();
                let count = r.u16();
                let offset = r.u16();
                xattr = r.u32();
                let index = (0..count)
                    .map(|_| {
                        let (at, block, len) = (r.u32(), r.u32(), r.u32() as usize + 1);
                        (at, block, r.take(len).to_vec())
                    })
                    .collect();
                Body::Dir {
                    start_block,
                    offset,
                    file_size,
                    index,
                }
            }
            FILE => {
                let (start, fragment, fragment_offset, size) = (r.u32(), r.u32(), r.u32(), r.u32());
                self.file_body(
                    &mut r,
                    u64::from(start),
                    u64::from(size),
                    fragment,
                    fragment_offset,
                )
            }
            k if k == FILE + EXTENDED => {
                let (start, size) = (r.u64(), r.u64());
                r.u64();
                nlink = r.u32();
                let (fragment, fragment_offset) = (r.u32(), r.u32());
                xattr = r.u32();
                self.file_body(&mut r, start, size, fragment, fragment_offset)
            }
            k if k == SYMLINK || k == SYMLINK + EXTENDED => {
                nlink = r.u32();
                let len = r.u32() as usize;
                Body::Symlink(r.take(len).to_vec())
            }
            k if [
                BLOCK_DEV,
                CHAR_DEV,
                BLOCK_DEV + EXTENDED,
                CHAR_DEV + EXTENDED,
            ]
            .contains(&k) =>
            {
                nlink = r.u32();
                Body::Device(r.u32())
            }
            k if k == FIFO || k == FIFO + EXTENDED => {
                nlink = r.u32();
                Body::Fifo
            }
            other => return Err(self.corrupt(format!("inode type {other} unsupported"))),
        };
        if kind > EXTENDED && !matches!(body, Body::Dir { .. } | Body::File(_)) {
            xattr = r.u32();
        }
        if r.short {
            return Err(self.corrupt("an inode runs past the inode table"));
        }
        Ok(Inode {
            kind: if kind > EXTENDED {
                kind - EXTENDED
            } else {
                kind
            },
            mode,
            uid,
            gid,
            mtime,
            number,
            nlink,
            xattr,
            body,
        })
    }

    fn file_body(
        &self,
        r: &mut Le,
        start: u64,
        size: u64,
        fragment: u32,
        fragment_offset: u32,
    ) -> Body {
        let bs = u64::from(self.sb.block_size);
        let count = if fragment == INVALID_FRAGMENT {
            size.div_ceil(bs)
        } else {
            size / bs
        };
        // A corrupt size cannot make this read past the table.
        let count = count.min(r.remaining() as u64 / 4 + 1);
        let blocks = (0..count).map(|_| r.u32()).collect();
        Body::File(FileData {
            start,
            size,
            fragment,
            fragment_offset,
            blocks,
        })
    }

    /// A directory's entries: (name, inode reference, inode number,
    /// type). Its index entries must each name a header of the listing
    /// and the block holding it, as the kernel's lookup
    /// (get_dir_index_using_name) jumps there without checking.
    fn listing(
        &self,
        start_block: u32,
        offset: u16,
        file_size: u32,
        index: &[(u32, u32, Vec<u8>)],
    ) -> Result<Vec<Entry>, SquashfsError> {
        let at = self.position(&self.dirs, u64::from(start_block), offset)?;
        let len = (file_size as usize)
            .checked_sub(3)
            .ok_or_else(|| self.corrupt("directory size under 3"))?;
        let bytes = self
            .dirs
            .bytes
            .get(at..at + len)
            .ok_or_else(|| self.corrupt("directory listing past the table"))?;
        let mut r = Le::new(bytes);
        let mut out = Vec::new();
        let mut headers: HashMap<usize, usize> = HashMap::new(); // listing offset -> entry
        while r.at < bytes.len() {
            headers.insert(r.at, out.len());
            let (count, block, base) = (r.u32() + 1, r.u32(), r.u32());
            if count as usize > DIR_HEADER_MAX {
                return Err(self.corrupt("directory header over 256 entries"));
            }
            for _ in 0..count {
                let offset = r.u16();
                let delta = r.u16() as i16;
                let kind = r.u16();
                let len = r.u16() as usize + 1;
                let name = r.take(len).to_vec();
                let number = (i64::from(base) + i64::from(delta)) as u32;
                out.push(Entry {
                    name,
                    reference: u64::from(block) << 16 | u64::from(offset),
                    number,
                    kind,
                });
            }
            if r.short {
                return Err(self.corrupt("directory entries run past the listing"));
            }
        }
        let mut last = 0;
        for (listing_at, block, name) in index {
            let header = headers
                .get(&(*listing_at as usize))
                .and_then(|e| out.get(*e));
            // Every block but a table's last holds METADATA_SIZE bytes.
            let block_start = (at + *listing_at as usize) / METADATA_SIZE * METADATA_SIZE;
            if *listing_at <= last
                || header.is_none_or(|h| h.name != *name)
                || self.dirs.blocks.get(&u64::from(*block)) != Some(&block_start)
            {
                return Err(self.corrupt(format!(
                    "directory index entry {:?} does not point at its header",
                    String::from_utf8_lossy(name)
                )));
            }
            last = *listing_at;
        }
        Ok(out)
    }

    /// Walks the image from the root and compares it with the tree;
    /// returns the regular files to compare byte for byte.
    fn check_tree(&self, rootfs: &Rootfs) -> Result<Vec<(PathBuf, FileData)>, SquashfsError> {
        let tree = rootfs.tree();
        let mut children: HashMap<&Path, Vec<(&OsStr, InodeId)>> = HashMap::new();
        for (path, id, _) in tree.iter() {
            if let (Some(parent), Some(name)) = (path.parent(), path.file_name()) {
                children.entry(parent).or_default().push((name, id));
            }
        }
        if self.sb.inodes as usize != tree.inode_count() {
            return Err(self.corrupt(format!(
                "{} inodes, the tree has {}",
                self.sb.inodes,
                tree.inode_count()
            )));
        }
        let mut number_of: HashMap<InodeId, u32> = HashMap::new();
        let mut id_of: HashMap<u32, InodeId> = HashMap::new();
        let mut files = Vec::new();
        let mut paths = 0usize;
        let root_id = tree.id(Path::new("")).expect("root");
        let mut todo = vec![(PathBuf::new(), root_id, self.sb.root_inode, None)];
        while let Some((path, id, reference, listed)) = todo.pop() {
            paths += 1;
            let inode = self.inode(reference)?;
            let mismatch = |what: String| SquashfsError::Mismatch {
                image: self.name.clone(),
                path: display(&path),
                what,
            };
            if let Some((number, kind)) = listed
                && (number != inode.number || kind != inode.kind)
            {
                return Err(mismatch("its directory entry and inode disagree".into()));
            }
            match (
                number_of.insert(id, inode.number),
                id_of.insert(inode.number, id),
            ) {
                (None, None) => {}
                (Some(n), Some(i)) if n == inode.number && i == id => continue, // another hard link
                _ => return Err(mismatch("hard links do not share one inode".into())),
            }
            let expected = tree.inode(id);
            self.check_inode(&inode, expected, tree, &children, &path)
                .map_err(mismatch)?;
            if let Some(r) = (inode.number as usize)
                .checked_sub(1)
                .and_then(|i| self.export.get(i))
                && *r != reference
            {
                return Err(mismatch("the export table points elsewhere".into()));
            }
            match inode.body {
                Body::Dir {
                    start_block,
                    offset,
                    file_size,
                    index,
                } => {
                    let listed = self.listing(start_block, offset, file_size, &index)?;
                    let want = children
                        .get(path.as_path())
                        .map(Vec::as_slice)
                        .unwrap_or_default();
                    let names: Vec<&[u8]> = listed.iter().map(|e| e.name.as_slice()).collect();
                    let wanted: Vec<&[u8]> = want.iter().map(|(n, _)| n.as_bytes()).collect();
                    if names != wanted {
                        return Err(mismatch(format!(
                            "entries {:?}, the tree has {:?}",
                            lossy(&names),
                            lossy(&wanted)
                        )));
                    }
                    for (e, (_, child)) in listed.into_iter().zip(want) {
                        todo.push((
                            path.join(OsStr::from_bytes(&e.name)),
                            *child,
                            e.reference,
                            Some((e.number, e.kind)),
                        ));
                    }
                }
                Body::File(data) => files.push((path, data)),
                _ => {}
            }
        }
        if paths != tree.len() {
            return Err(self.corrupt(format!("{paths} paths, the tree has {}", tree.len())));
        }
        Ok(files)
    }

    fn check_inode(
        &self,
        inode: &Inode,
        expected: &crate::rootfs::tree::Inode,
        tree: &crate::rootfs::Tree,
        children: &HashMap<&Path, Vec<(&OsStr, InodeId)>>,
        path: &Path,
    ) -> Result<(), String> {
        let meta = &expected.meta;
        if inode.kind != basic_type(&expected.kind) {
            return Err(format!(
                "inode type {}, expected a {}",
                inode.kind,
                expected.kind.name()
            ));
        }
        if u32::from(inode.mode) & 0o7777 != expected.meta.mode & 0o7777 {
            return Err(format!(
                "mode {:o}, expected {:o}",
                inode.mode & 0o7777,
                expected.meta.mode & 0o7777
            ));
        }
        if (inode.uid, inode.gid) != (meta.uid, meta.gid) {
            return Err(format!(
                "owner {}:{}, expected {}:{}",
                inode.uid, inode.gid, meta.uid, meta.gid
            ));
        }
        if inode.mtime != squashfs_time(meta.mtime) {
            return Err(format!("mtime {}, expected {}", inode.mtime, meta.mtime));
        }
        let nlink = match expected.kind {
            Kind::Directory => {
                let subdirs = children
                    .get(path)
                    .map(|c| {
                        c.iter()
                            .filter(|(_, id)| tree.inode(*id).kind.is_dir())
                            .count()
                    })
                    .unwrap_or(0);
                2 + subdirs as u32
            }
            _ => expected.links().len() as u32,
        };
        if inode.nlink != nlink {
            return Err(format!("link count {}, expected {nlink}", inode.nlink));
        }
        let stored: Vec<StoredXattr> = meta
            .xattrs
            .iter()
            .filter_map(|(name, value)| {
                storable_xattr(name).map(|(p, rest)| (p, rest.as_bytes().to_vec(), value.clone()))
            })
            .collect();
        let found: &[StoredXattr] = match inode.xattr {
            INVALID_XATTR => &[],
            i => self
                .xattrs
                .get(i as usize)
                .ok_or_else(|| format!("xattr id {i} past the xattr table"))?,
        };
        if found != stored.as_slice() {
            return Err("xattrs differ from the tree's".into());
        }
        match (&inode.body, &expected.kind) {
            (Body::Symlink(t), Kind::Symlink { target })
                if t.as_slice() != target.as_os_str().as_bytes() =>
            {
                Err(format!(
                    "symlink to {:?}, expected {target:?}",
                    String::from_utf8_lossy(t)
                ))
            }
            (
                Body::Device(rdev),
                Kind::CharDevice { major, minor } | Kind::BlockDevice { major, minor },
            ) if decode_dev(*rdev) != (*major, *minor) => Err(format!(
                "device {:?}, expected {major}:{minor}",
                decode_dev(*rdev)
            )),
            (Body::File(data), Kind::File { size }) if data.size != *size => {
                Err(format!("size {}, expected {size}", data.size))
            }
            _ => Ok(()),
        }
    }

    /// Every file's bytes against the stage, on one thread per CPU, each
    /// taking a run of files in image order (so a fragment block is
    /// decompressed once for the run of small files sharing it).
    fn check_contents(
        &self,
        rootfs: &Rootfs,
        files: &[(PathBuf, FileData)],
    ) -> Result<(), SquashfsError> {
        let mut files: Vec<&(PathBuf, FileData)> = files.iter().collect();
        files.sort_by_key(|(_, d)| (d.fragment, d.start));
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
        // Runs of about equal bytes (by count, one thread would get all
        // the big files, which sort last).
        let total: u64 = files.iter().map(|(_, d)| d.size + 1).sum();
        let mut runs: Vec<&[&(PathBuf, FileData)]> = Vec::new();
        let (mut from, mut sum) = (0, 0u64);
        for (i, (_, d)) in files.iter().enumerate() {
            sum += d.size + 1;
            if sum * threads >= total * (runs.len() as u64 + 1) {
                runs.push(&files[from..=i]);
                from = i + 1;
            }
        }
        runs.push(&files[from..]);
        std::thread::scope(|scope| {
            let workers: Vec<_> = runs
                .into_iter()
                .map(|run| {
                    scope.spawn(move || {
                        let mut checker = ContentChecker {
                            image: self,
                            codec: self.codec(),
                            fragment: None,
                        };
                        run.iter()
                            .try_for_each(|(path, data)| checker.check(rootfs, path, data))
                    })
                })
                .collect();
            workers
                .into_iter()
                .try_for_each(|w| w.join().expect("checker threads do not panic"))
        })
    }
}

fn lossy(names: &[&[u8]]) -> Vec<String> {
    names
        .iter()
        .map(|n| String::from_utf8_lossy(n).into_owned())
        .collect()
}

fn corrupt(image: &str, what: impl Into<String>) -> SquashfsError {
    SquashfsError::Corrupt {
        image: image.to_string(),
        what: what.into(),
    }
}

/// The metadata block at `at` and the offset just past it.
fn metadata_block(
    file: &File,
    name: &str,
    codec: &mut Codec,
    at: u64,
) -> Result<(Vec<u8>, u64), SquashfsError> {
    let mut header = [0u8; 2];
    file.read_exact_at(&mut header, at)
        .map_err(|_| corrupt(name, format!("metadata block at {at} out of the image")))?;
    let header = u16::from_le_bytes(header);
    let len = (header & !METADATA_UNCOMPRESSED) as usize;
    let mut stored = vec![0u8; len];
    file.read_exact_at(&mut stored, at + 2)
        .map_err(|_| corrupt(name, format!("metadata block at {at} out of the image")))?;
    let next = at + 2 + len as u64;
    if header & METADATA_UNCOMPRESSED != 0 {
        return Ok((stored, next));
    }
    let mut out = Vec::new();
    codec
        .decompress(&stored, &mut out, METADATA_SIZE)
        .map_err(|e| corrupt(name, format!("metadata block at {at}: {e}")))?;
    Ok((out, next))
}

/// One thread's comparison of image file data with the stage.
struct ContentChecker<'a> {
    image: &'a Image,
    codec: Codec,
    /// The last fragment block decompressed: (index, bytes).
    fragment: Option<(u32, Vec<u8>)>,
}

impl ContentChecker<'_> {
    fn check(
        &mut self,
        rootfs: &Rootfs,
        path: &Path,
        data: &FileData,
    ) -> Result<(), SquashfsError> {
        let image = self.image;
        let mismatch = |what: String| SquashfsError::Mismatch {
            image: image.name.clone(),
            path: display(path),
            what,
        };
        let stage_err = |source| SquashfsError::Stage {
            path: display(path),
            source,
        };
        let mut staged = rootfs.stage().open(path).map_err(stage_err)?;
        let bs = u64::from(image.sb.block_size);
        let mut at = data.start;
        let mut left = data.size;
        let mut expected = Vec::with_capacity(bs as usize);
        let mut block = Vec::with_capacity(bs as usize);
        for (i, size) in data.blocks.iter().enumerate() {
            let want = left.min(bs);
            expected.clear();
            (&mut staged)
                .take(want)
                .read_to_end(&mut expected)
                .map_err(stage_err)?;
            let stored = u64::from(size & !DATA_UNCOMPRESSED);
            if stored > bs {
                return Err(mismatch(format!("block {i} stored larger than a block")));
            }
            if stored == 0 {
                block.clear();
                block.resize(want as usize, 0);
            } else {
                let mut raw = vec![0u8; stored as usize];
                image
                    .file
                    .read_exact_at(&mut raw, at)
                    .map_err(|_| mismatch(format!("block {i} out of the image")))?;
                if size & DATA_UNCOMPRESSED != 0 {
                    block = raw;
                } else {
                    self.codec
                        .decompress(&raw, &mut block, bs as usize)
                        .map_err(|e| mismatch(format!("block {i}: {e}")))?;
                }
            }
            if block != expected {
                return Err(mismatch(format!("block {i} differs from the staged file")));
            }
            at += stored;
            left -= want;
        }
        if data.fragment != INVALID_FRAGMENT {
            expected.clear();
            (&mut staged)
                .take(left)
                .read_to_end(&mut expected)
                .map_err(stage_err)?;
            let fragment = self.fragment(data.fragment).map_err(mismatch)?;
            let start = data.fragment_offset as usize;
            if fragment.get(start..start + left as usize) != Some(expected.as_slice()) {
                return Err(mismatch(
                    "its tail in the fragment block differs from the staged file".into(),
                ));
            }
            left = 0;
        }
        let mut extra = [0u8; 1];
        if left != 0 || staged.read(&mut extra).map_err(stage_err)? != 0 {
            return Err(mismatch(
                "the image holds fewer bytes than the staged file".into(),
            ));
        }
        Ok(())
    }

    fn fragment(&mut self, index: u32) -> Result<&[u8], String> {
        if self.fragment.as_ref().is_none_or(|(i, _)| *i != index) {
            let (start, size) = *self
                .image
                .fragments
                .get(index as usize)
                .ok_or_else(|| format!("fragment {index} past the fragment table"))?;
            let stored = size & !DATA_UNCOMPRESSED;
            if stored > self.image.sb.block_size {
                return Err(format!("fragment {index} stored larger than a block"));
            }
            let mut raw = vec![0u8; stored as usize];
            self.image
                .file
                .read_exact_at(&mut raw, start)
                .map_err(|_| format!("fragment {index} out of the image"))?;
            let bytes = if size & DATA_UNCOMPRESSED != 0 {
                raw
            } else {
                let mut out = Vec::new();
                self.codec
                    .decompress(&raw, &mut out, self.image.sb.block_size as usize)
                    .map_err(|e| format!("fragment {index}: {e}"))?;
                out
            };
            self.fragment = Some((index, bytes));
        }
        Ok(&self.fragment.as_ref().expect("just set").1)
    }
}
