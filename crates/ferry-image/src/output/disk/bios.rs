//! BIOS boot, as `grub-bios-setup` installs it (GRUB's `util/setup.c`),
//! without running it: the image's `boot.img` goes into the MBR's boot
//! code area and the image's `core.img` (i386-pc) into the GPT's BIOS
//! boot partition.
//!
//! `boot.img` (`grub-core/boot/i386/pc/boot.S`) loads one sector, the
//! first of `core.img`, from the LBA at `kernel_sector` (0x5c). It takes
//! the drive from `%dl` when `boot_drive` (0x64) is 0xff, and
//! `grub-bios-setup` turns the jump at `boot_drive_check` (0x66) into two
//! NOPs for hard disks, so that a BIOS passing a floppy number is
//! corrected to 0x80. The first sector of `core.img` (`diskboot.S`) then
//! loads the rest from its block list, which grows down from the end of
//! that sector: `{start LBA u64, sectors u16, segment u16}` entries, the
//! first at 0x1f4, ended by one of length 0. `core.img` lies contiguous
//! in the partition, so one entry covers it: the sectors after the first,
//! loaded at segment 0x820 (GRUB's kernel segment 0x800 plus the first
//! sector's 0x20 paragraphs). Only the first 440 bytes of `boot.img` are
//! taken: the disk signature and the partition table stay.

pub const SECTOR: usize = 512;
/// Bytes of boot code in the MBR, before the disk signature.
pub const BOOT_CODE_LEN: usize = 440;
const KERNEL_SECTOR: usize = 0x5c;
const BOOT_DRIVE: usize = 0x64;
const DRIVE_CHECK: usize = 0x66;
/// `struct grub_pc_bios_boot_blocklist` at the end of `diskboot.img`.
const BLOCKLIST: usize = SECTOR - 12;
const CORE_SEGMENT: u16 = 0x820;

#[derive(Debug, thiserror::Error)]
pub enum BiosError {
    #[error("the image's boot.img is {0} bytes, not one 512-byte sector ending in 55 aa")]
    BadBootImg(usize),
    #[error("the image's core.img is {len} bytes; the BIOS boot partition holds {room}")]
    CoreTooLarge { len: usize, room: usize },
}

/// The MBR boot code: `boot.img` patched to load `core.img` from
/// `core_lba`.
pub fn boot_code(boot_img: &[u8], core_lba: u64) -> Result<[u8; BOOT_CODE_LEN], BiosError> {
    if boot_img.len() != SECTOR || boot_img[510..] != [0x55, 0xaa] {
        return Err(BiosError::BadBootImg(boot_img.len()));
    }
    let mut code = [0u8; BOOT_CODE_LEN];
    code.copy_from_slice(&boot_img[..BOOT_CODE_LEN]);
    code[KERNEL_SECTOR..KERNEL_SECTOR + 8].copy_from_slice(&core_lba.to_le_bytes());
    code[BOOT_DRIVE] = 0xff;
    code[DRIVE_CHECK] = 0x90;
    code[DRIVE_CHECK + 1] = 0x90;
    Ok(code)
}

/// `core.img` padded to whole sectors, with its block list pointing at
/// its own sectors from `core_lba`; `room` is the partition's size.
pub fn place_core(core_img: &[u8], core_lba: u64, room: usize) -> Result<Vec<u8>, BiosError> {
    let sectors = core_img.len().div_ceil(SECTOR);
    if sectors < 2 || sectors * SECTOR > room || sectors - 1 > usize::from(u16::MAX) {
        return Err(BiosError::CoreTooLarge {
            len: core_img.len(),
            room,
        });
    }
    let mut core = core_img.to_vec();
    core.resize(sectors * SECTOR, 0);
    core[BLOCKLIST..BLOCKLIST + 8].copy_from_slice(&(core_lba + 1).to_le_bytes());
    core[BLOCKLIST + 8..BLOCKLIST + 10].copy_from_slice(&((sectors - 1) as u16).to_le_bytes());
    core[BLOCKLIST + 10..BLOCKLIST + 12].copy_from_slice(&CORE_SEGMENT.to_le_bytes());
    Ok(core)
}

/// The LBA `boot_code` loads from, read back from an MBR.
pub fn kernel_sector(mbr: &[u8]) -> u64 {
    u64::from_le_bytes(
        mbr[KERNEL_SECTOR..KERNEL_SECTOR + 8]
            .try_into()
            .expect("8 bytes"),
    )
}

/// The block list of a placed `core.img`: (start LBA, sectors, segment).
pub fn blocklist(core: &[u8]) -> (u64, u16, u16) {
    let b = &core[BLOCKLIST..BLOCKLIST + 12];
    (
        u64::from_le_bytes(b[..8].try_into().expect("8 bytes")),
        u16::from_le_bytes([b[8], b[9]]),
        u16::from_le_bytes([b[10], b[11]]),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_code_and_block_list_are_patched_as_grub_bios_setup_does() {
        let mut boot = vec![0xeb; SECTOR];
        boot[510] = 0x55;
        boot[511] = 0xaa;
        let code = boot_code(&boot, 2048).unwrap();
        assert_eq!(kernel_sector(&code), 2048);
        assert_eq!(code[BOOT_DRIVE], 0xff);
        assert_eq!(&code[DRIVE_CHECK..DRIVE_CHECK + 2], &[0x90, 0x90]);
        assert!(boot_code(&boot[..500], 1).is_err());

        let core = place_core(&vec![1u8; 3 * SECTOR + 7], 2048, 1 << 20).unwrap();
        assert_eq!(core.len(), 4 * SECTOR);
        assert_eq!(blocklist(&core), (2049, 3, 0x820));
        assert!(place_core(&vec![1u8; 3000], 2048, 1024).is_err());
    }
}
