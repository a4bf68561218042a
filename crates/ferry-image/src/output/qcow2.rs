//! The raw disk as a qcow2 image (QEMU's format, version 3, per
//! `docs/interop/qcow2.txt` in QEMU's tree), for KVM, OpenStack, Proxmox
//! and the like.
//!
//! One pass over the raw disk, streamed: clusters (64 KiB) that hold data
//! are appended right after the header cluster in disk order; all-zero
//! clusters and holes are left unallocated (an unallocated cluster reads
//! as zeros when there is no backing file). Only the L2 entries are kept
//! in memory (8 bytes per 64 KiB of disk: 12.5 MiB for 100 GiB), and the
//! metadata goes after the data:
//!
//! ```text
//! cluster 0            header (+ end of header extensions)
//! 1 ..= D              data clusters, in guest order
//! then                 L2 tables (only those with an allocated entry)
//! then                 L1 table
//! then                 refcount blocks, then the refcount table
//! ```
//!
//! Every cluster of the file is used exactly once, so every refcount is
//! 1 and every L1/L2 entry carries QCOW_OFLAG_COPIED (what `qemu-img
//! check` expects of an image without snapshots). Nothing depends on the
//! time or the thread count: the same raw disk gives the same bytes.
//!
//! Before the file gets its name, [`verify`] reads it back from disk:
//! header, tables, refcounts, and each data cluster's CRC-32 against the
//! one taken from the raw disk.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

use ferry_oci::progress::Progress;
use ferry_oci::{Algorithm, Digest, Hasher};

use super::FileError;
use super::raw::{self, RawDisk, RawError, WriteError};

const MAGIC: u32 = 0x5146_49fb; // "QFI\xfb"
const VERSION: u32 = 3;
const CLUSTER_BITS: u32 = 16;
const CLUSTER: u64 = 1 << CLUSTER_BITS;
/// 16-bit refcounts (`refcount_order` 4), QEMU's default.
const REFCOUNT_ORDER: u32 = 4;
/// The v3 header with the compression type byte, padded to 8 bytes.
const HEADER_LENGTH: u32 = 112;
/// Entries per L2 table and per refcount table cluster (8 bytes each).
const L2_ENTRIES: u64 = CLUSTER / 8;
/// Refcounts per refcount block (2 bytes each).
const REFCOUNTS_PER_BLOCK: u64 = CLUSTER / 2;
/// "The cluster is used exactly once": set on L1 and L2 entries.
const OFLAG_COPIED: u64 = 1 << 63;
const OFLAG_COMPRESSED: u64 = 1 << 62;
/// Bits 9..=55 of an L1/L2 entry hold the host offset.
const OFFSET_MASK: u64 = 0x00ff_ffff_ffff_fe00;

#[derive(Debug, thiserror::Error)]
pub enum Qcow2Error {
    #[error(transparent)]
    Raw(#[from] RawError),
    #[error(transparent)]
    File(#[from] FileError),
}

/// What [`write`] produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Qcow2Report {
    /// The disk's size as the guest sees it (the raw disk's size).
    pub virtual_size: u64,
    /// 64 KiB clusters that hold data (the others are unallocated).
    pub data_clusters: u64,
    /// The qcow2 file's size.
    pub file_size: u64,
    pub sha256: Digest,
}

/// Writes the raw disk `raw` as the qcow2 image `out`, reporting the raw
/// disk's bytes to `progress` (task id: `out`'s path).
pub fn write(raw: &Path, out: &Path, progress: &dyn Progress) -> Result<Qcow2Report, Qcow2Error> {
    let (disk, written, sha256) = raw::convert(
        raw,
        out,
        "qcow2",
        progress,
        |disk, file, task| write_to(disk, file, progress, task),
        |target, written| verify(target.file(), written),
        |never| -> Qcow2Error { match never {} },
    )?;
    Ok(Qcow2Report {
        virtual_size: disk.size(),
        data_clusters: written.data.len() as u64,
        file_size: written.file_size,
        sha256,
    })
}

/// What the writer knows that the file must show when read back.
struct Written {
    virtual_size: u64,
    file_size: u64,
    /// (guest cluster index, CRC-32 of its bytes, zero-padded), in order.
    data: Vec<(u64, u32)>,
}

/// Where the metadata goes, derived from the data cluster count alone.
struct Layout {
    l1_entries: u64,
    /// Host cluster index of the first L2 table / the L1 table / the
    /// first refcount block / the refcount table.
    l2_start: u64,
    l1_start: u64,
    l1_clusters: u64,
    refblock_start: u64,
    refblocks: u64,
    reftable_start: u64,
    reftable_clusters: u64,
    total_clusters: u64,
}

impl Layout {
    fn new(virtual_size: u64, data_clusters: u64, l2_tables: u64) -> Layout {
        let guest_clusters = virtual_size.div_ceil(CLUSTER);
        let l1_entries = guest_clusters.div_ceil(L2_ENTRIES);
        let l1_clusters = (l1_entries * 8).div_ceil(CLUSTER);
        let l2_start = 1 + data_clusters;
        let l1_start = l2_start + l2_tables;
        let before_refcounts = l1_start + l1_clusters;
        // The refcount structures count themselves: grow until they cover
        // every cluster including their own.
        let (mut refblocks, mut reftable_clusters) = (0, 0);
        loop {
            let total = before_refcounts + refblocks + reftable_clusters;
            let blocks = total.div_ceil(REFCOUNTS_PER_BLOCK);
            let table = (blocks * 8).div_ceil(CLUSTER);
            if (blocks, table) == (refblocks, reftable_clusters) {
                break;
            }
            (refblocks, reftable_clusters) = (blocks, table);
        }
        Layout {
            l1_entries,
            l2_start,
            l1_start,
            l1_clusters,
            refblock_start: before_refcounts,
            refblocks,
            reftable_start: before_refcounts + refblocks,
            reftable_clusters,
            total_clusters: before_refcounts + refblocks + reftable_clusters,
        }
    }
}

fn write_to(
    disk: &RawDisk,
    file: &File,
    progress: &dyn Progress,
    task: &str,
) -> Result<Written, WriteError> {
    let virtual_size = disk.size();
    let guest_clusters = virtual_size.div_ceil(CLUSTER);
    let mut out = BufWriter::with_capacity(1 << 20, file);
    // The header is written last, once the offsets are known.
    out.write_all(&[0u8; CLUSTER as usize])?;
    let mut l2 = vec![0u64; guest_clusters as usize];
    let mut data = Vec::new();
    let mut padded = vec![0u8; CLUSTER as usize];
    disk.for_each_data_cluster::<WriteError>(CLUSTER as usize, progress, task, |index, bytes| {
        let host = 1 + data.len() as u64;
        let cluster = if bytes.len() == CLUSTER as usize {
            bytes
        } else {
            padded.fill(0);
            padded[..bytes.len()].copy_from_slice(bytes);
            &padded
        };
        out.write_all(cluster)?;
        l2[index as usize] = (host * CLUSTER) | OFLAG_COPIED;
        data.push((index, crc32(cluster)));
        Ok(())
    })?;

    let tables: Vec<&[u64]> = l2.chunks(L2_ENTRIES as usize).collect();
    let used_tables = tables.iter().filter(|t| t.iter().any(|&e| e != 0)).count();
    let layout = Layout::new(virtual_size, data.len() as u64, used_tables as u64);

    let mut l1 = Vec::with_capacity(layout.l1_entries as usize);
    let mut next_l2 = layout.l2_start;
    let mut table_bytes = vec![0u8; CLUSTER as usize];
    for table in &tables {
        if table.iter().all(|&e| e == 0) {
            l1.push(0);
            continue;
        }
        table_bytes.fill(0);
        for (slot, entry) in table_bytes.chunks_exact_mut(8).zip(table.iter()) {
            slot.copy_from_slice(&entry.to_be_bytes());
        }
        out.write_all(&table_bytes)?;
        l1.push((next_l2 * CLUSTER) | OFLAG_COPIED);
        next_l2 += 1;
    }
    write_be_table(&mut out, &l1, layout.l1_clusters)?;

    let mut refblock = vec![0u8; CLUSTER as usize];
    let mut reftable = Vec::with_capacity(layout.refblocks as usize);
    for block in 0..layout.refblocks {
        let first = block * REFCOUNTS_PER_BLOCK;
        let used = layout
            .total_clusters
            .saturating_sub(first)
            .min(REFCOUNTS_PER_BLOCK);
        refblock.fill(0);
        for slot in refblock.chunks_exact_mut(2).take(used as usize) {
            slot.copy_from_slice(&1u16.to_be_bytes());
        }
        out.write_all(&refblock)?;
        reftable.push((layout.refblock_start + block) * CLUSTER);
    }
    write_be_table(&mut out, &reftable, layout.reftable_clusters)?;
    out.flush()?;
    drop(out);

    file.write_all_at(&header(virtual_size, &layout), 0)?;
    Ok(Written {
        virtual_size,
        file_size: layout.total_clusters * CLUSTER,
        data,
    })
}

/// Writes big-endian `entries` padded with zeros to `clusters` clusters.
fn write_be_table(out: &mut impl Write, entries: &[u64], clusters: u64) -> io::Result<()> {
    let mut bytes = vec![0u8; (clusters * CLUSTER) as usize];
    for (slot, entry) in bytes.chunks_exact_mut(8).zip(entries) {
        slot.copy_from_slice(&entry.to_be_bytes());
    }
    out.write_all(&bytes)
}

fn header(virtual_size: u64, layout: &Layout) -> Vec<u8> {
    let mut h = Vec::with_capacity(HEADER_LENGTH as usize + 8);
    h.extend_from_slice(&MAGIC.to_be_bytes());
    h.extend_from_slice(&VERSION.to_be_bytes());
    h.extend_from_slice(&0u64.to_be_bytes()); // backing_file_offset
    h.extend_from_slice(&0u32.to_be_bytes()); // backing_file_size
    h.extend_from_slice(&CLUSTER_BITS.to_be_bytes());
    h.extend_from_slice(&virtual_size.to_be_bytes());
    h.extend_from_slice(&0u32.to_be_bytes()); // crypt_method: none
    h.extend_from_slice(&(layout.l1_entries as u32).to_be_bytes());
    h.extend_from_slice(&(layout.l1_start * CLUSTER).to_be_bytes());
    h.extend_from_slice(&(layout.reftable_start * CLUSTER).to_be_bytes());
    h.extend_from_slice(&(layout.reftable_clusters as u32).to_be_bytes());
    h.extend_from_slice(&0u32.to_be_bytes()); // nb_snapshots
    h.extend_from_slice(&0u64.to_be_bytes()); // snapshots_offset
    h.extend_from_slice(&0u64.to_be_bytes()); // incompatible_features
    h.extend_from_slice(&0u64.to_be_bytes()); // compatible_features
    h.extend_from_slice(&0u64.to_be_bytes()); // autoclear_features
    h.extend_from_slice(&REFCOUNT_ORDER.to_be_bytes());
    h.extend_from_slice(&HEADER_LENGTH.to_be_bytes());
    h.push(0); // compression_type: zlib (unused: nothing is compressed)
    h.resize(HEADER_LENGTH as usize, 0);
    // End of the header extension area: type 0, length 0.
    h.extend_from_slice(&[0u8; 8]);
    h
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = flate2::Crc::new();
    crc.update(bytes);
    crc.sum()
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn be64(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// Reads the written image back as a qcow2 reader would and checks it
/// against what was written; returns the file's sha256.
fn verify(file: &File, written: &Written) -> Result<Digest, String> {
    let io = |e: io::Error| format!("reading it: {e}");
    let file_size = file.metadata().map_err(io)?.len();
    if file_size != written.file_size {
        return Err(format!("{file_size} bytes, {} expected", written.file_size));
    }
    let clusters = file_size / CLUSTER;
    let read = |at: u64, len: u64| -> Result<Vec<u8>, String> {
        // A corrupt table size cannot ask for more than the file.
        if at.checked_add(len).is_none_or(|end| end > file_size) {
            return Err(format!("{len} bytes at {at} are past the end of the file"));
        }
        let mut buf = vec![0u8; len as usize];
        file.read_exact_at(&mut buf, at).map_err(io)?;
        Ok(buf)
    };
    let h = read(0, HEADER_LENGTH as u64)?;
    let field_ok = be32(&h, 0) == MAGIC
        && be32(&h, 4) == VERSION
        && be32(&h, 20) == CLUSTER_BITS
        && be64(&h, 24) == written.virtual_size
        && be32(&h, 96) == REFCOUNT_ORDER;
    if !field_ok {
        return Err("the header is not the one written".into());
    }
    // How often each host cluster is referenced, and which guest cluster
    // each data cluster holds.
    let mut refs = vec![0u16; clusters as usize];
    let mut guest_of = vec![u64::MAX; clusters as usize];
    let mut reference = |offset: u64, what: &str| -> Result<u64, String> {
        let index = offset / CLUSTER;
        if !offset.is_multiple_of(CLUSTER) || index >= clusters {
            return Err(format!("{what} at {offset} is outside the file"));
        }
        refs[index as usize] += 1;
        Ok(index)
    };
    reference(0, "the header")?;
    let l1_size = be32(&h, 36) as u64;
    let l1_offset = be64(&h, 40);
    for c in 0..(l1_size * 8).div_ceil(CLUSTER) {
        reference(l1_offset + c * CLUSTER, "the L1 table")?;
    }
    let l1 = read(l1_offset, l1_size * 8)?;
    for (t, entry) in l1.chunks_exact(8).enumerate() {
        let entry = be64(entry, 0);
        if entry == 0 {
            continue;
        }
        if entry & OFLAG_COPIED == 0 {
            return Err(format!("L1 entry {t} lacks the COPIED flag"));
        }
        let l2_offset = entry & OFFSET_MASK;
        reference(l2_offset, "an L2 table")?;
        let l2 = read(l2_offset, CLUSTER)?;
        for (i, e) in l2.chunks_exact(8).enumerate() {
            let e = be64(e, 0);
            if e == 0 {
                continue;
            }
            if e & OFLAG_COPIED == 0 || e & OFLAG_COMPRESSED != 0 {
                return Err(format!("L2 entry {i} of table {t} has the wrong flags"));
            }
            let host = reference(e & OFFSET_MASK, "a data cluster")?;
            guest_of[host as usize] = t as u64 * L2_ENTRIES + i as u64;
        }
    }
    let reftable_offset = be64(&h, 48);
    let reftable_clusters = be32(&h, 56) as u64;
    for c in 0..reftable_clusters {
        reference(reftable_offset + c * CLUSTER, "the refcount table")?;
    }
    let reftable = read(reftable_offset, reftable_clusters * CLUSTER)?;
    let mut refcounts = vec![0u16; clusters as usize];
    for (b, entry) in reftable.chunks_exact(8).enumerate() {
        let offset = be64(entry, 0);
        if offset == 0 {
            continue;
        }
        reference(offset, "a refcount block")?;
        let block = read(offset, CLUSTER)?;
        for (i, count) in block.chunks_exact(2).enumerate() {
            let cluster = b as u64 * REFCOUNTS_PER_BLOCK + i as u64;
            let count = u16::from_be_bytes([count[0], count[1]]);
            match refcounts.get_mut(cluster as usize) {
                Some(slot) => *slot = count,
                None if count != 0 => {
                    return Err(format!("a refcount for cluster {cluster}, past the end"));
                }
                None => {}
            }
        }
    }
    if let Some(c) = (0..clusters as usize).find(|&c| refs[c] != 1 || refcounts[c] != 1) {
        return Err(format!(
            "cluster {c} is referenced {} times with refcount {}",
            refs[c], refcounts[c]
        ));
    }

    // One sequential pass: the file's digest and each data cluster's CRC.
    let mut hasher = Hasher::new(Algorithm::Sha256);
    let mut block = vec![0u8; 16 * CLUSTER as usize];
    let mut matched = 0usize;
    for (first, guests) in guest_of.chunks(16).enumerate() {
        let block = &mut block[..guests.len() * CLUSTER as usize];
        file.read_exact_at(block, first as u64 * 16 * CLUSTER)
            .map_err(io)?;
        hasher.update(block);
        for (i, (&guest, cluster)) in guests
            .iter()
            .zip(block.chunks(CLUSTER as usize))
            .enumerate()
        {
            let host = first * 16 + i;
            if guest == u64::MAX {
                continue;
            }
            let expected = written
                .data
                .binary_search_by_key(&guest, |&(g, _)| g)
                .map(|i| written.data[i].1);
            if expected != Ok(crc32(cluster)) {
                return Err(format!(
                    "host cluster {host} (guest cluster {guest}) differs from the raw disk"
                ));
            }
            matched += 1;
        }
    }
    if matched != written.data.len() {
        return Err(format!(
            "{matched} data clusters found, {} written",
            written.data.len()
        ));
    }
    Ok(hasher.finish())
}

/// `NAME.qcow2` as an output of `ferry image build`.
pub struct Qcow2Output;

impl super::Writer for Qcow2Output {
    fn format(&self) -> crate::spec::Format {
        crate::spec::Format::Qcow2
    }

    fn write(&self, job: &mut super::Job<'_>) -> Result<(), super::OutputError> {
        let raw = job.raw_disk()?;
        let path = job.out.join(format!("{}.qcow2", job.name));
        write(&raw, &path, job.progress)?;
        job.record(crate::spec::Format::Qcow2, &path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_oci::progress::NoProgress;

    #[test]
    fn read_back_catches_a_corrupted_data_cluster_and_a_wrong_refcount() {
        let dir = tempfile::tempdir().unwrap();
        let raw_path = dir.path().join("disk.raw");
        let raw = File::create(&raw_path).unwrap();
        raw.set_len(8 << 20).unwrap();
        raw.write_all_at(&[7u8; 200_000], 1 << 20).unwrap();
        let disk = RawDisk::open(&raw_path).unwrap();
        let out = tempfile::tempfile_in(dir.path()).unwrap();
        let Ok(written) = write_to(&disk, &out, &NoProgress, "t") else {
            panic!("write failed");
        };
        verify(&out, &written).unwrap();

        out.write_all_at(&[1], CLUSTER + 10).unwrap();
        let err = verify(&out, &written).unwrap_err();
        assert!(err.contains("differs from the raw disk"), "{err}");
        out.write_all_at(&[7], CLUSTER + 10).unwrap();
        verify(&out, &written).unwrap();

        // The first refcount block's entry for the header cluster.
        let h = {
            let mut h = vec![0u8; HEADER_LENGTH as usize];
            out.read_exact_at(&mut h, 0).unwrap();
            h
        };
        let mut entry = [0u8; 8];
        out.read_exact_at(&mut entry, be64(&h, 48)).unwrap();
        out.write_all_at(&2u16.to_be_bytes(), u64::from_be_bytes(entry))
            .unwrap();
        let err = verify(&out, &written).unwrap_err();
        assert!(err.contains("refcount 2"), "{err}");
    }

    #[test]
    fn refcount_structures_cover_themselves() {
        // 2 GiB of data clusters: exactly one refcount block's worth
        // before the refcount structures are added.
        let layout = Layout::new(4 << 30, REFCOUNTS_PER_BLOCK - 3, 4);
        assert!(layout.refblocks * REFCOUNTS_PER_BLOCK >= layout.total_clusters);
        assert!(layout.reftable_clusters * L2_ENTRIES >= layout.refblocks);
        assert_eq!(layout.refblocks, 2);
        assert_eq!(layout.reftable_start, layout.refblock_start + 2);
    }
}
