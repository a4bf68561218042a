//! Everything after the data: the inode and directory tables and the
//! lookup tables (fragments, export, ids, xattrs), laid out in the order
//! the kernel's `squashfs_fill_super` checks them in (each table ends
//! where the next begins; the xattr index ends the image).
//!
//! [`Plan`] numbers the inodes and collects owners and xattrs from the
//! tree before any data is written; [`write`] then encodes the tables
//! once the data stage has said where every file's blocks are.
//!
//! Inode numbers go directory by directory (the root is 1, then the
//! entries of each directory in tree order), so a directory's entries
//! have neighbouring numbers and share few directory headers. Inodes are
//! written children first, as mksquashfs does: a directory's listing
//! needs its entries' inode references, and its inode needs the
//! listing's place.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::SquashfsError;
use super::compress::Codec;
use super::data::{Data, FileLayout};
use super::format::*;
use crate::rootfs::tree::{Tree, display};
use crate::rootfs::{InodeId, Kind};

struct DirPlan<'t> {
    id: InodeId,
    parent: Option<usize>,
    entries: Vec<(&'t OsStr, InodeId)>,
    subdirs: u32,
}

/// One xattr as squashfs stores it: prefix index, name without the
/// prefix, value.
pub(super) type StoredXattr = (u16, Vec<u8>, Vec<u8>);

/// The tree's inodes numbered, and its owners and xattrs as tables.
pub(super) struct Plan<'t> {
    tree: &'t Tree,
    dirs: Vec<DirPlan<'t>>,
    numbers: HashMap<InodeId, u32>,
    /// Regular-file inodes in data order.
    pub files: Vec<InodeId>,
    file_index: HashMap<InodeId, usize>,
    pub ids: Vec<u32>,
    id_index: HashMap<u32, u16>,
    pub xattr_sets: Vec<Vec<StoredXattr>>,
    xattr_of: HashMap<InodeId, u32>,
    /// Xattrs squashfs cannot hold (not `user.`, `trusted.` or
    /// `security.`), by name, with how many inodes had each.
    pub skipped_xattrs: std::collections::BTreeMap<String, u64>,
}

/// Splits a full xattr name into what squashfs stores, or `None` for a
/// namespace it has no prefix for (`system.posix_acl_access`, ...).
pub(super) fn storable_xattr(name: &str) -> Option<(u16, &str)> {
    XATTR_PREFIXES
        .iter()
        .enumerate()
        .find_map(|(i, prefix)| name.strip_prefix(prefix).map(|rest| (i as u16, rest)))
}

impl<'t> Plan<'t> {
    pub(super) fn new(tree: &'t Tree) -> Result<Plan<'t>, SquashfsError> {
        let mut plan = Plan {
            tree,
            dirs: Vec::new(),
            numbers: HashMap::new(),
            files: Vec::new(),
            file_index: HashMap::new(),
            ids: Vec::new(),
            id_index: HashMap::new(),
            xattr_sets: Vec::new(),
            xattr_of: HashMap::new(),
            skipped_xattrs: Default::default(),
        };
        let mut dir_of: HashMap<&Path, usize> = HashMap::new();
        let mut xattr_set_index: HashMap<Vec<StoredXattr>, u32> = HashMap::new();
        for (path, id, inode) in tree.iter() {
            let first_sight = inode.first_link() == path;
            if let Some(name) = path.file_name() {
                if name.len() > NAME_MAX {
                    return Err(SquashfsError::NameTooLong {
                        path: display(path),
                    });
                }
                let parent = dir_of[path.parent().expect("a named path has a parent")];
                plan.dirs[parent].entries.push((name, id));
                if inode.kind.is_dir() {
                    plan.dirs[parent].subdirs += 1;
                }
            }
            if inode.kind.is_dir() {
                dir_of.insert(path, plan.dirs.len());
                plan.dirs.push(DirPlan {
                    id,
                    parent: path.parent().map(|p| dir_of[p]),
                    entries: Vec::new(),
                    subdirs: 0,
                });
            }
            if !first_sight {
                continue;
            }
            if matches!(inode.kind, Kind::File { .. }) {
                plan.file_index.insert(id, plan.files.len());
                plan.files.push(id);
            }
            for owner in [inode.meta.uid, inode.meta.gid] {
                if !plan.id_index.contains_key(&owner) {
                    let index =
                        u16::try_from(plan.ids.len()).map_err(|_| SquashfsError::TooManyIds)?;
                    plan.id_index.insert(owner, index);
                    plan.ids.push(owner);
                }
            }
            let mut set = Vec::new();
            for (name, value) in &inode.meta.xattrs {
                match storable_xattr(name) {
                    Some((prefix, rest)) => {
                        set.push((prefix, rest.as_bytes().to_vec(), value.clone()))
                    }
                    None => *plan.skipped_xattrs.entry(name.clone()).or_default() += 1,
                }
            }
            if !set.is_empty() {
                let next = plan.xattr_sets.len() as u32;
                let index = *xattr_set_index.entry(set.clone()).or_insert(next);
                if index == next {
                    plan.xattr_sets.push(set);
                }
                plan.xattr_of.insert(id, index);
            }
        }
        let mut next = 1u32;
        plan.numbers.insert(plan.dirs[0].id, next);
        for dir in &plan.dirs {
            for (_, id) in &dir.entries {
                plan.numbers.entry(*id).or_insert_with(|| {
                    next += 1;
                    next
                });
            }
        }
        Ok(plan)
    }

    pub(super) fn inode_count(&self) -> u32 {
        self.numbers.len() as u32
    }

    /// The common inode header.
    fn header(&self, b: &mut Vec<u8>, kind: u16, id: InodeId) {
        let inode = self.tree.inode(id);
        b.put16(kind);
        // Permission bits only, as mksquashfs stores them (SQUASHFS_MODE);
        // the kernel adds the type bits from the inode type.
        b.put16((inode.meta.mode & 0o7777) as u16);
        b.put16(self.id_index[&inode.meta.uid]);
        b.put16(self.id_index[&inode.meta.gid]);
        b.put32(squashfs_time(inode.meta.mtime));
        b.put32(self.numbers[&id]);
    }

    /// A non-directory inode.
    fn inode(&self, id: InodeId, files: &[FileLayout]) -> Vec<u8> {
        let inode = self.tree.inode(id);
        let xattr = self.xattr_of.get(&id).copied();
        let nlink = inode.links().len() as u32;
        let ext = |basic: u16| {
            if xattr.is_some() {
                basic + EXTENDED
            } else {
                basic
            }
        };
        let mut b = Vec::with_capacity(64);
        match &inode.kind {
            Kind::File { size } => {
                let layout = &files[self.file_index[&id]];
                let basic = nlink == 1
                    && xattr.is_none()
                    && layout.sparse == 0
                    && layout.start <= u64::from(u32::MAX)
                    && *size <= u64::from(u32::MAX);
                if basic {
                    self.header(&mut b, FILE, id);
                    b.put32(layout.start as u32);
                    b.put32(layout.fragment);
                    b.put32(layout.fragment_offset);
                    b.put32(*size as u32);
                } else {
                    self.header(&mut b, FILE + EXTENDED, id);
                    b.put64(layout.start);
                    b.put64(*size);
                    b.put64(layout.sparse);
                    b.put32(nlink);
                    b.put32(layout.fragment);
                    b.put32(layout.fragment_offset);
                    b.put32(xattr.unwrap_or(INVALID_XATTR));
                }
                for size in &layout.blocks {
                    b.put32(*size);
                }
            }
            Kind::Symlink { target } => {
                let target = target.as_os_str().as_bytes();
                self.header(&mut b, ext(SYMLINK), id);
                b.put32(nlink);
                b.put32(target.len() as u32);
                b.extend_from_slice(target);
            }
            Kind::CharDevice { major, minor } | Kind::BlockDevice { major, minor } => {
                let kind = if matches!(inode.kind, Kind::CharDevice { .. }) {
                    CHAR_DEV
                } else {
                    BLOCK_DEV
                };
                self.header(&mut b, ext(kind), id);
                b.put32(nlink);
                b.put32(encode_dev(*major, *minor));
            }
            Kind::Fifo => {
                self.header(&mut b, ext(FIFO), id);
                b.put32(nlink);
            }
            Kind::Directory => unreachable!("directories are written by write_dir"),
        }
        if let (Some(x), false) = (xattr, matches!(inode.kind, Kind::File { .. })) {
            b.put32(x);
        }
        b
    }
}

/// Seconds as squashfs stores them: unsigned 32-bit (1970 to 2106).
pub(super) fn squashfs_time(t: i64) -> u32 {
    t.clamp(0, i64::from(u32::MAX)) as u32
}

/// The basic inode type of a kind, as directory entries carry it.
pub(super) fn basic_type(kind: &Kind) -> u16 {
    match kind {
        Kind::Directory => DIR,
        Kind::File { .. } => FILE,
        Kind::Symlink { .. } => SYMLINK,
        Kind::BlockDevice { .. } => BLOCK_DEV,
        Kind::CharDevice { .. } => CHAR_DEV,
        Kind::Fifo => FIFO,
    }
}

/// The encoded tables, to be written at the end of the data, and the
/// image offsets the superblock points at.
pub(super) struct Tables {
    pub bytes: Vec<u8>,
    pub root_inode: u64,
    pub inode_table: u64,
    pub directory_table: u64,
    pub fragment_table: u64,
    pub export_table: u64,
    pub id_table: u64,
    /// `None` without xattrs.
    pub xattr_table: Option<u64>,
}

/// One directory entry about to be listed.
struct Listed<'a> {
    name: &'a [u8],
    reference: u64,
    number: u32,
    kind: u16,
}

pub(super) fn write(plan: &Plan, data: &Data, codec: &mut Codec) -> Result<Tables, SquashfsError> {
    let mut inodes = MetadataWriter::new();
    let mut dirs = MetadataWriter::new();
    let mut refs: HashMap<InodeId, u64> = HashMap::new();
    for dir in plan.dirs.iter().rev() {
        let mut listed = Vec::with_capacity(dir.entries.len());
        for (name, id) in &dir.entries {
            let reference = match refs.get(id) {
                Some(r) => *r,
                None => {
                    // Subdirectories were written before (children first).
                    let r = inodes.reference();
                    inodes.write(codec, &plan.inode(*id, &data.files))?;
                    refs.insert(*id, r);
                    r
                }
            };
            listed.push(Listed {
                name: name.as_bytes(),
                reference,
                number: plan.numbers[id],
                kind: basic_type(&plan.tree.inode(*id).kind),
            });
        }
        let listing = write_listing(&mut dirs, codec, &listed)?;
        let parent = match dir.parent {
            Some(p) => plan.numbers[&plan.dirs[p].id],
            // mksquashfs gives the root's ".." the number after the last.
            None => plan.inode_count() + 1,
        };
        let r = inodes.reference();
        let bytes = dir_inode(plan, dir, &listing, parent);
        inodes.write(codec, &bytes)?;
        refs.insert(dir.id, r);
    }
    let root_inode = refs[&plan.dirs[0].id];
    let mut export = vec![0u64; plan.inode_count() as usize];
    for (id, number) in &plan.numbers {
        export[*number as usize - 1] = refs[id];
    }

    let base = data.end;
    let mut out = inodes.finish(codec)?;
    let directory_table = base + out.len() as u64;
    out.extend_from_slice(&dirs.finish(codec)?);
    let mut fragments = Vec::with_capacity(data.fragments.len() * 16);
    for (start, size) in &data.fragments {
        fragments.put64(*start);
        fragments.put32(*size);
        fragments.put32(0);
    }
    let fragment_table = lookup_table(&mut out, base, codec, &fragments, &[])?;
    let export_bytes: Vec<u8> = export.iter().flat_map(|r| r.to_le_bytes()).collect();
    let export_table = lookup_table(&mut out, base, codec, &export_bytes, &[])?;
    let ids: Vec<u8> = plan.ids.iter().flat_map(|i| i.to_le_bytes()).collect();
    let id_table = lookup_table(&mut out, base, codec, &ids, &[])?;
    let xattr_table = if plan.xattr_sets.is_empty() {
        None
    } else {
        Some(xattr_tables(&mut out, base, codec, &plan.xattr_sets)?)
    };
    Ok(Tables {
        bytes: out,
        root_inode,
        inode_table: base,
        directory_table,
        fragment_table,
        export_table,
        id_table,
        xattr_table,
    })
}

/// Where a directory's listing went.
struct Listing {
    start_block: u32,
    offset: u16,
    size: u32,
    /// (offset in the listing, directory-table block there, first name)
    index: Vec<(u32, u32, Vec<u8>)>,
}

/// Writes a directory's entries: runs of up to 256 entries behind a
/// header naming their inodes' metadata block and base inode number
/// (each entry holds its offset in that block and a signed 16-bit number
/// difference). As mksquashfs does, a new run also starts once the
/// listing has grown by more than a metadata block since the last index
/// point, and each such run gets a directory index entry, which lets
/// the kernel's lookup skip to the right block of a big directory.
fn write_listing(
    dirs: &mut MetadataWriter,
    codec: &mut Codec,
    entries: &[Listed],
) -> Result<Listing, SquashfsError> {
    let (start_block, offset) = dirs.position();
    let mut buf: Vec<u8> = Vec::new();
    let mut index_points: Vec<(usize, &[u8])> = Vec::new();
    let mut header: Option<(usize, u32, u32)> = None; // (at, block, base number)
    let mut count = 0u32;
    let mut since_index = 0usize;
    for e in entries {
        let entry_len = 8 + e.name.len();
        let block = (e.reference >> 16) as u32;
        let delta = i64::from(e.number) - header.map_or(0, |(_, _, base)| i64::from(base));
        let grown = buf.len() + entry_len - since_index > METADATA_SIZE;
        let new_run = match header {
            None => true,
            Some((_, b, _)) => {
                count as usize == DIR_HEADER_MAX
                    || b != block
                    || i16::try_from(delta).is_err()
                    || grown
            }
        };
        if new_run {
            if let Some((at, _, _)) = header {
                buf[at..at + 4].copy_from_slice(&(count - 1).to_le_bytes());
                if grown {
                    index_points.push((buf.len(), e.name));
                    since_index = buf.len();
                }
            }
            header = Some((buf.len(), block, e.number));
            buf.put32(0);
            buf.put32(block);
            buf.put32(e.number);
            count = 0;
        }
        let base = header.expect("set above").2;
        buf.put16((e.reference & 0xffff) as u16);
        buf.put16((i64::from(e.number) - i64::from(base)) as i16 as u16);
        buf.put16(e.kind);
        buf.put16((e.name.len() - 1) as u16);
        buf.extend_from_slice(e.name);
        count += 1;
    }
    if let Some((at, _, _)) = header {
        buf[at..at + 4].copy_from_slice(&(count - 1).to_le_bytes());
    }
    // Written in pieces so each index point's block is known.
    let mut index = Vec::with_capacity(index_points.len());
    let mut written = 0;
    for (at, name) in index_points {
        dirs.write(codec, &buf[written..at])?;
        written = at;
        index.push((at as u32, dirs.position().0 as u32, name.to_vec()));
    }
    dirs.write(codec, &buf[written..])?;
    Ok(Listing {
        start_block: start_block as u32,
        offset,
        size: buf.len() as u32,
        index,
    })
}

fn dir_inode(plan: &Plan, dir: &DirPlan, listing: &Listing, parent: u32) -> Vec<u8> {
    let xattr = plan.xattr_of.get(&dir.id).copied();
    // The listing's size plus 3, for the "." and ".." squashfs does not store.
    let file_size = listing.size + 3;
    let nlink = 2 + dir.subdirs;
    let mut b = Vec::with_capacity(40);
    if listing.index.is_empty() && file_size <= u32::from(u16::MAX) && xattr.is_none() {
        plan.header(&mut b, DIR, dir.id);
        b.put32(listing.start_block);
        b.put32(nlink);
        b.put16(file_size as u16);
        b.put16(listing.offset);
        b.put32(parent);
    } else {
        plan.header(&mut b, DIR + EXTENDED, dir.id);
        b.put32(nlink);
        b.put32(file_size);
        b.put32(listing.start_block);
        b.put32(parent);
        b.put16(listing.index.len() as u16);
        b.put16(listing.offset);
        b.put32(xattr.unwrap_or(INVALID_XATTR));
        for (at, block, name) in &listing.index {
            b.put32(*at);
            b.put32(*block);
            b.put32(name.len() as u32 - 1);
            b.extend_from_slice(name);
        }
    }
    b
}

/// Appends a lookup table (its metadata blocks, then `header`, then the
/// image offsets of the blocks) to `out`, which starts at image offset
/// `base`; returns the image offset of `header` (or of the offsets), the
/// superblock's pointer to the table.
fn lookup_table(
    out: &mut Vec<u8>,
    base: u64,
    codec: &mut Codec,
    entries: &[u8],
    header: &[u8],
) -> Result<u64, SquashfsError> {
    let start = base + out.len() as u64;
    let mut w = MetadataWriter::new();
    let mut blocks = Vec::new();
    for chunk in entries.chunks(METADATA_SIZE) {
        blocks.push(start + w.position().0);
        w.write(codec, chunk)?;
    }
    out.extend_from_slice(&w.finish(codec)?);
    let table = base + out.len() as u64;
    out.extend_from_slice(header);
    for b in blocks {
        out.put64(b);
    }
    Ok(table)
}

/// The xattr name/value pairs (each set once, whole), then the xattr id
/// table pointing at each set, then its header: squashfs-tools'
/// write_xattrs layout, which the kernel's squashfs_read_xattr_id_table
/// expects to end the image.
fn xattr_tables(
    out: &mut Vec<u8>,
    base: u64,
    codec: &mut Codec,
    sets: &[Vec<StoredXattr>],
) -> Result<u64, SquashfsError> {
    let pairs_start = base + out.len() as u64;
    let mut pairs = MetadataWriter::new();
    let mut ids = Vec::with_capacity(sets.len() * 16);
    for set in sets {
        ids.put64(pairs.reference());
        ids.put32(set.len() as u32);
        // listxattr's size: full names with their NUL, and values.
        let size: usize = set
            .iter()
            .map(|(prefix, name, value)| {
                XATTR_PREFIXES[*prefix as usize].len() + name.len() + 1 + value.len()
            })
            .sum();
        ids.put32(size as u32);
        for (prefix, name, value) in set {
            let mut b = Vec::with_capacity(8 + name.len() + value.len());
            b.put16(*prefix);
            b.put16(name.len() as u16);
            b.extend_from_slice(name);
            b.put32(value.len() as u32);
            b.extend_from_slice(value);
            pairs.write(codec, &b)?;
        }
    }
    out.extend_from_slice(&pairs.finish(codec)?);
    let mut header = Vec::with_capacity(16);
    header.put64(pairs_start);
    header.put32(sets.len() as u32);
    header.put32(0);
    lookup_table(out, base, codec, &ids, &header)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::squashfs::Compression;

    /// A metadata stream decompressed: its bytes and each block's offset
    /// in the stream on disk.
    fn unpack(blocks: &[u8], codec: &mut Codec) -> (Vec<u8>, Vec<u64>) {
        let (mut bytes, mut starts) = (Vec::new(), Vec::new());
        let mut at = 0;
        while at < blocks.len() {
            starts.push(at as u64);
            let header = u16::from_le_bytes([blocks[at], blocks[at + 1]]);
            let len = (header & !METADATA_UNCOMPRESSED) as usize;
            let stored = &blocks[at + 2..at + 2 + len];
            if header & METADATA_UNCOMPRESSED != 0 {
                bytes.extend_from_slice(stored);
            } else {
                let mut out = Vec::new();
                codec.decompress(stored, &mut out, METADATA_SIZE).unwrap();
                bytes.extend_from_slice(&out);
            }
            at += 2 + len;
        }
        (bytes, starts)
    }

    /// The headers of a listing: (offset, entries, inode block, base
    /// number, first name).
    fn headers(listing: &[u8]) -> Vec<(usize, u32, u32, u32, Vec<u8>)> {
        let mut r = Le::new(listing);
        let mut found = Vec::new();
        while r.at < listing.len() {
            let at = r.at;
            let (count, block, base) = (r.u32() + 1, r.u32(), r.u32());
            let mut first = None;
            for _ in 0..count {
                r.take(6);
                let len = r.u16() as usize + 1;
                first.get_or_insert(r.take(len).to_vec());
            }
            found.push((at, count, block, base, first.unwrap()));
        }
        found
    }

    fn files<'a>(
        names: &'a [Vec<u8>],
        reference: impl Fn(usize) -> u64,
        number: impl Fn(usize) -> u32,
    ) -> Vec<Listed<'a>> {
        names
            .iter()
            .enumerate()
            .map(|(i, name)| Listed {
                name,
                reference: reference(i),
                number: number(i),
                kind: FILE,
            })
            .collect()
    }

    #[test]
    fn a_listing_starts_a_new_header_at_256_entries_a_new_inode_block_and_a_number_gap() {
        let mut codec = Codec::new(Compression::Zstd { level: 3 }, 4096);
        let names: Vec<Vec<u8>> = (0..600).map(|i| format!("f{i:04}").into_bytes()).collect();
        let listed = files(
            &names,
            // Inodes in block 0 up to entry 300, then in the block at 5000.
            |i| {
                if i < 300 {
                    i as u64 * 20
                } else {
                    (5000 << 16) | ((i as u64 - 300) * 20)
                }
            },
            // More than i16::MAX between entries 499 and 500.
            |i| {
                if i < 500 {
                    10 + i as u32
                } else {
                    100_000 + i as u32
                }
            },
        );
        let mut w = MetadataWriter::new();
        let listing = write_listing(&mut w, &mut codec, &listed).unwrap();
        assert!(listing.index.is_empty(), "under 8 KiB: no index");
        let (bytes, _) = unpack(&w.finish(&mut codec).unwrap(), &mut codec);
        let runs: Vec<(u32, u32, u32)> = headers(&bytes).iter().map(|h| (h.1, h.2, h.3)).collect();
        assert_eq!(
            runs,
            [
                (256, 0, 10),
                (44, 0, 266),
                (200, 5000, 310),
                (100, 5000, 100_500)
            ]
        );
    }

    #[test]
    fn each_index_entry_names_a_header_and_the_block_holding_it() {
        let mut codec = Codec::new(Compression::Zstd { level: 3 }, 4096);
        let names: Vec<Vec<u8>> = (0..600)
            .map(|i| format!("{i:04}{}", "x".repeat(96)).into_bytes())
            .collect();
        let listed = files(&names, |i| i as u64 * 8, |i| 2 + i as u32);
        let mut w = MetadataWriter::new();
        // Start mid-block, as a directory usually does.
        let before = 3000;
        w.write(&mut codec, &[0; 3000]).unwrap();
        let listing = write_listing(&mut w, &mut codec, &listed).unwrap();
        let (bytes, starts) = unpack(&w.finish(&mut codec).unwrap(), &mut codec);
        let headers = headers(&bytes[before..]);
        // 600 entries of 108 bytes, about 64 KiB: one index entry per 8 KiB.
        assert_eq!(listing.index.len(), 7);
        let mut last = 0;
        for (at, block, name) in &listing.index {
            let at = *at as usize;
            assert!(at > last && at - last <= METADATA_SIZE, "{at} after {last}");
            assert!(
                headers.iter().any(|h| h.0 == at && h.4 == *name),
                "no header at {at} starting with its name"
            );
            // As the kernel's get_dir_index_using_name reads it.
            assert_eq!(u64::from(*block), starts[(before + at) / METADATA_SIZE]);
            last = at;
        }
    }
}
