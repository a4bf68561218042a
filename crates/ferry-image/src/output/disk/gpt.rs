//! The partition table: a GPT behind a protective MBR, laid out and
//! written (both copies, CRCs) by `hadris-part`, then read back the same
//! way. Partitions start on 1 MiB boundaries:
//!
//! 1. BIOS boot (1 MiB, `21686148-6449-6E6F-744E-656564454649`): GRUB's
//!    `core.img`, which `boot.img` in the MBR loads;
//! 2. EFI system (128 MiB FAT32);
//! 3. root (ext4), typed as the Discoverable Partitions Specification's
//!    x86-64 root, so systemd's tools recognize it.

use std::fs::File;

use hadris_part::gpt::types;
use hadris_part::{Alignment, Disk, DiskLayout, Guid, PartitionSpec, PartitionTable, Size};
use hadris_storage::BlockSize;
use hadris_storage::host::FileDevice;

pub const SECTOR: u64 = 512;
const MIB: u64 = 1 << 20;
pub const BIOS_BOOT_BYTES: u64 = MIB;
pub const ESP_BYTES: u64 = 128 * MIB;
/// Room before the first partition (protective MBR, primary GPT, up to
/// the 1 MiB boundary) and after the last (backup GPT).
const HEAD_BYTES: u64 = MIB;
const TAIL_BYTES: u64 = MIB;
/// Disk bytes that are not the root partition.
pub const OVERHEAD_BYTES: u64 = HEAD_BYTES + BIOS_BOOT_BYTES + ESP_BYTES + TAIL_BYTES;

/// Partition slots in the table.
pub const BIOS_BOOT: usize = 0;
pub const ESP: usize = 1;
pub const ROOT: usize = 2;

#[derive(Debug, thiserror::Error)]
pub enum GptError {
    #[error("laying out the partitions: {0}")]
    Layout(String),
    #[error("writing the partition table: {0}")]
    Write(String),
    #[error("the partition table read back: {0}")]
    Check(String),
}

/// The GUIDs of the disk and its partitions.
#[derive(Debug, Clone, Copy)]
pub struct Guids {
    pub disk: [u8; 16],
    pub bios_boot: [u8; 16],
    pub esp: [u8; 16],
    pub root: [u8; 16],
}

/// The table of a disk of `disk_bytes` whose root partition is
/// `root_bytes` (both multiples of 1 MiB).
pub fn layout(disk_bytes: u64, root_bytes: u64, guids: &Guids) -> Result<Disk, GptError> {
    let spec = |kind, bytes, name, guid: [u8; 16]| {
        PartitionSpec::new(kind, Size::Bytes(bytes))
            .with_name(name)
            .with_unique_guid(Guid::from_bytes(guid))
    };
    DiskLayout::gpt(Guid::from_bytes(guids.disk))
        .with_alignment(Alignment::MiB1)
        .partition(spec(
            types::BIOS_BOOT,
            BIOS_BOOT_BYTES,
            "BIOS boot",
            guids.bios_boot,
        ))
        .partition(spec(types::EFI_SYSTEM, ESP_BYTES, "EFI System", guids.esp))
        .partition(spec(
            types::LINUX_ROOT_X86_64,
            root_bytes,
            "root",
            guids.root,
        ))
        .build(disk_bytes / SECTOR, sector_size())
        .map_err(|e| GptError::Layout(e.to_string()))
}

fn sector_size() -> BlockSize {
    BlockSize::new(SECTOR as u32).expect("512 is a block size")
}

/// Byte offset and length of partition `slot`.
pub fn extent(disk: &Disk, slot: usize) -> (u64, u64) {
    let p = disk
        .partition(slot)
        .expect("the layout has three partitions");
    (p.start() * SECTOR, p.len() * SECTOR)
}

fn device(file: &File) -> std::io::Result<FileDevice> {
    FileDevice::with_block_size(file.try_clone()?, sector_size())
}

/// Writes the protective MBR (with `disk`'s boot code) and both GPT
/// copies.
pub fn write(file: &File, disk: &Disk) -> Result<(), GptError> {
    let mut dev = device(file).map_err(|e| GptError::Write(e.to_string()))?;
    hadris_part::sync::write(&mut dev, disk).map_err(|e| GptError::Write(e.to_string()))
}

/// Reads the table back: both GPT copies must be intact (headers and
/// entry arrays with their CRCs) and say what `expected` says, boot code
/// included.
pub fn check(file: &File, expected: &Disk) -> Result<(), GptError> {
    let fail = |e: &dyn std::fmt::Display| GptError::Check(e.to_string());
    let mut dev = device(file).map_err(|e| fail(&e))?;
    let read = hadris_part::sync::read(&mut dev).map_err(|e| fail(&e))?;
    let PartitionTable::Gpt(gpt) = read.table() else {
        return Err(GptError::Check("not a GPT behind a protective MBR".into()));
    };
    if let Some(copy) = gpt.damaged_copy() {
        return Err(GptError::Check(format!("the {copy:?} GPT copy is damaged")));
    }
    if &read != expected {
        return Err(GptError::Check(
            "the partitions or the boot code differ from what was written".into(),
        ));
    }
    Ok(())
}
