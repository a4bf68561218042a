//! The EFI system partition: a FAT32 volume written by `hadris-fat` from
//! a tree in memory (two small files), with a serial and timestamps
//! derived from the build's inputs, so the same inputs give the same
//! bytes. `EFI/BOOT/BOOTX64.EFI` is the removable-media path every UEFI
//! firmware boots without an NVRAM entry; `EFI/BOOT/grub.cfg` beside it
//! holds the same search-and-hand-over as the configuration embedded in
//! the GRUB image, for firmware menus and tools that look for it.

use std::fs::File;

use hadris_fat::sync::FatFs;
use hadris_fat::{FatKind, FatOptions, VolumeLabel};
use hadris_fs::{Content, DateTime, MountOptions, Name, Node, Tree};
use hadris_storage::Partition;
use hadris_storage::host::FileDevice;

pub const BOOTX64: [&str; 3] = ["EFI", "BOOT", "BOOTX64.EFI"];
pub const GRUB_CFG: [&str; 3] = ["EFI", "BOOT", "grub.cfg"];

/// FAT timestamps start in 1980 (and end in 2107).
const FAT_EPOCH: i64 = 315_532_800;
const FAT_END: i64 = 4_354_819_199;

#[derive(Debug, thiserror::Error)]
pub enum EspError {
    #[error("writing the EFI system partition: {0}")]
    Write(String),
    #[error("the EFI system partition read back: {0}")]
    Check(String),
}

/// The files of the ESP.
#[derive(Debug, Clone)]
pub struct EspFiles {
    pub bootx64: Vec<u8>,
    pub grub_cfg: Vec<u8>,
}

impl EspFiles {
    fn each(&self) -> [(&[&str; 3], &[u8]); 2] {
        [(&BOOTX64, &self.bootx64), (&GRUB_CFG, &self.grub_cfg)]
    }
}

fn partition(file: &File, offset: u64, len: u64) -> std::io::Result<Partition<FileDevice>> {
    Ok(Partition::new(
        FileDevice::new(file.try_clone()?)?,
        offset,
        len,
    ))
}

/// Formats the `len` bytes at `offset` of `file` as FAT32 holding `files`.
pub fn write(
    file: &File,
    offset: u64,
    len: u64,
    files: &EspFiles,
    serial: u32,
    mtime: i64,
) -> Result<(), EspError> {
    let fail = |e: &dyn std::fmt::Display| EspError::Write(e.to_string());
    let mut tree = Tree::new();
    for (path, bytes) in files.each() {
        tree.insert(path.join("/"), Node::file(Content::bytes(bytes.to_vec())))
            .map_err(|e| fail(&e))?;
    }
    let time = DateTime::new(mtime.clamp(FAT_EPOCH, FAT_END), 0).map_err(|e| fail(&e))?;
    let options = FatOptions::new()
        .with_kind(FatKind::Fat32)
        .with_label(VolumeLabel::new("EFI").map_err(|e| fail(&e))?)
        .with_serial(serial)
        .with_time(time);
    let device = partition(file, offset, len).map_err(|e| fail(&e))?;
    hadris_fat::sync::write(device, &tree, &options).map_err(|e| fail(&e))?;
    Ok(())
}

/// Checks the volume (`hadris-fat`'s fsck finds nothing) and reads every
/// file back, byte for byte.
pub fn check(file: &File, offset: u64, len: u64, files: &EspFiles) -> Result<(), EspError> {
    let fail = |e: &dyn std::fmt::Display| EspError::Check(e.to_string());
    let mut device = partition(file, offset, len).map_err(|e| fail(&e))?;
    let mut scratch = vec![0u8; 64 * 1024];
    let mut findings = Vec::new();
    hadris_fat::sync::check(&mut device, &mut scratch, |f| {
        findings.push(f.to_string());
    })
    .map_err(|e| fail(&e))?;
    if !findings.is_empty() {
        return Err(EspError::Check(findings.join("; ")));
    }
    let mut fs = FatFs::mount(device, MountOptions::new().read_only()).map_err(|e| fail(&e))?;
    for (path, want) in files.each() {
        let shown = path.join("/");
        let mut node = fs.root();
        for part in path {
            node = fs
                .lookup(node, Name::new(part))
                .map_err(|e| EspError::Check(format!("{shown}: {e}")))?;
        }
        let mut got = Vec::with_capacity(want.len());
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = fs
                .read(node, got.len() as u64, &mut buf)
                .map_err(|e| EspError::Check(format!("{shown}: {e}")))?;
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        if got != want {
            return Err(EspError::Check(format!(
                "{shown}: {} bytes read back, {} written, or different bytes",
                got.len(),
                want.len()
            )));
        }
    }
    Ok(())
}
