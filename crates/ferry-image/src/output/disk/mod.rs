//! The raw disk output: a sparse disk image that boots under BIOS and
//! UEFI, made without root, a loop device or a mount.
//!
//! Layout ([`gpt`]): a GPT behind a protective MBR with a BIOS boot
//! partition holding GRUB's `core.img` ([`bios`]), an EFI system
//! partition (FAT32: `EFI/BOOT/BOOTX64.EFI` and a `grub.cfg`, [`esp`])
//! and the ext4 root ([`ext4`]: `mke2fs -d`, then a fix-up in Rust for
//! what an unprivileged stage cannot hold). Both GRUB images come from
//! the OS image ([`crate::boot::grub`]) and embed the same early
//! configuration: find the root filesystem by its UUID and read
//! `/boot/grub/grub.cfg` there, which boots the kernel with
//! `root=UUID=...`. The disk-only files (that `grub.cfg`, `/etc/fstab`
//! naming the root and the ESP, the `/boot/efi` mount point) are added
//! to the rootfs first; the build writes the squashfs-based outputs
//! before the disk, so they see none of this.
//!
//! Sizes: the root partition is what the tree needs (data, directory
//! and symlink blocks, inode tables, journal, group metadata) plus
//! `free`, in whole MiB, unless a size is given; a size below what the
//! tree needs is refused, naming both. The file is sparse: only what
//! holds data is written.
//!
//! Every identifier (disk and partition GUIDs, filesystem UUID, ext4
//! hash seed, FAT serial) is derived from the image's identity and
//! SOURCE_DATE_EPOCH ([`crate::output::seed`]), so two builds of the same
//! inputs give the same bytes. The disk is written under a temporary name
//! ([`ferry_oci::atomic`]), read back in full ([`verify`]) and only then
//! renamed to `out`.

pub mod bios;
pub mod esp;
pub mod ext4;
pub mod gpt;

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::Path;

use ferry_oci::atomic::AtomicWrite;
use ferry_oci::progress::Progress;
use hadris_part::{Disk, Guid};

use crate::boot::grub::{self, Grub, GrubError, Platform, Target};
use crate::boot::kernel::Kernel;
use crate::output::FileError;
use crate::output::seed::Seed;
use crate::rootfs::{Meta, Rootfs, RootfsError};
use bios::BiosError;
use esp::{EspError, EspFiles};
use ext4::{Ext4Error, FixupStats};
use gpt::GptError;

const MIB: u64 = 1 << 20;

/// What the disk is made of, besides the rootfs and kernel.
#[derive(Debug, Clone)]
pub struct DiskOptions {
    /// Size of the disk in bytes (rounded down to whole MiB); `None`
    /// sizes it from the tree and `free`.
    pub size: Option<u64>,
    /// Free space left in the root filesystem when the size is automatic.
    pub free: u64,
    /// Added to the kernel command line, after `root=UUID=... ro` and
    /// the consoles.
    pub cmdline_extra: String,
    /// What the image is (its name, its base's digest): with `mtime`, the
    /// seed of every UUID, GUID and serial of the disk.
    pub identity: String,
    /// SOURCE_DATE_EPOCH: the times ferry writes.
    pub mtime: i64,
}

/// What was written, and what [`verify`] checks a disk file against.
#[derive(Debug, Clone)]
pub struct DiskReport {
    /// Bytes of the disk.
    pub size: u64,
    /// Bytes of the ext4 root partition.
    pub root_size: u64,
    /// The root filesystem's UUID (`root=UUID=`).
    pub root_uuid: String,
    /// The ESP's FAT serial as fstab names it (`ABCD-1234`).
    pub esp_uuid: String,
    pub disk_guid: String,
    pub inode_size: u16,
    pub fixup: FixupStats,
    table: Disk,
    core: Vec<u8>,
    esp: EspFiles,
}

#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    #[error(
        "disk too small: {} given, the image needs at least {} (raise disk.size, or leave it out to size the disk automatically)",
        mib(*size), mib(*needed)
    )]
    TooSmall { size: u64, needed: u64 },
    #[error(transparent)]
    Grub(#[from] GrubError),
    #[error(transparent)]
    Rootfs(#[from] RootfsError),
    #[error(transparent)]
    Ext4(#[from] Ext4Error),
    #[error(transparent)]
    Gpt(#[from] GptError),
    #[error(transparent)]
    Esp(#[from] EspError),
    #[error(transparent)]
    Bios(#[from] BiosError),
    #[error("the BIOS boot code read back: {0}")]
    BiosCheck(String),
    #[error(transparent)]
    File(#[from] FileError),
}

fn mib(bytes: u64) -> String {
    format!("{} MiB ({bytes} bytes)", bytes.div_ceil(MIB))
}

/// The disk's identifiers, derived from the image's identity.
struct Ids {
    guids: gpt::Guids,
    root_uuid: [u8; 16],
    hash_seed: [u8; 16],
    esp_serial: u32,
}

impl Ids {
    fn derive(identity: &str, mtime: i64) -> Ids {
        let seed = Seed::new("disk", identity, mtime);
        Ids {
            guids: gpt::Guids {
                disk: seed.guid("gpt-disk"),
                bios_boot: seed.guid("gpt-bios-boot"),
                esp: seed.guid("gpt-esp"),
                root: seed.guid("gpt-root"),
            },
            root_uuid: seed.uuid("ext4-root"),
            hash_seed: seed.uuid("ext4-hash-seed"),
            esp_serial: seed.u32("esp-serial"),
        }
    }

    /// The FAT volume serial as Linux shows it (`blkid`, `fstab`).
    fn esp_uuid(&self) -> String {
        format!(
            "{:04X}-{:04X}",
            self.esp_serial >> 16,
            self.esp_serial & 0xffff
        )
    }
}

/// Sizes of the disk and its root filesystem.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Plan {
    disk_bytes: u64,
    root_bytes: u64,
    inodes: u64,
    journal_mib: u64,
}

fn round_mib(bytes: u64) -> u64 {
    bytes.div_ceil(MIB) * MIB
}

/// Sizes the disk: the smallest root partition (whole MiB) that holds
/// `content` plus `free` and the filesystem's own metadata, or the given
/// size if it is at least that.
fn plan(
    content: u64,
    inode_count: u64,
    inode_size: u16,
    size: Option<u64>,
    free: u64,
) -> Result<Plan, DiskError> {
    // One inode per 16 KiB (mke2fs's default ratio), and never fewer than
    // the tree's inodes and a tenth more.
    let inodes = |root: u64| (root / 16384).max(inode_count + inode_count / 10 + 64);
    // The journal grows with the filesystem, as mke2fs's default does.
    let journal_mib = |root: u64| (root / 64 / MIB).clamp(16, 128);
    // Inode tables, journal, and a 1/32 for bitmaps, group descriptors,
    // their reserved growth room and backups, and directory slack.
    let metadata = |root: u64| {
        inodes(root) * u64::from(inode_size) + journal_mib(root) * MIB + root / 32 + 4 * MIB
    };
    let fixed_point = |payload: u64| {
        let mut root = round_mib(payload);
        loop {
            let next = round_mib(payload + metadata(root));
            if next <= root {
                return root;
            }
            root = next;
        }
    };
    let needed_root = fixed_point(content);
    let root_bytes = match size {
        Some(size) => {
            let root = (size / MIB * MIB).saturating_sub(gpt::OVERHEAD_BYTES);
            if root < needed_root {
                return Err(DiskError::TooSmall {
                    size,
                    needed: needed_root + gpt::OVERHEAD_BYTES,
                });
            }
            root
        }
        None => fixed_point(content + free),
    };
    Ok(Plan {
        disk_bytes: root_bytes + gpt::OVERHEAD_BYTES,
        root_bytes,
        inodes: inodes(root_bytes),
        journal_mib: journal_mib(root_bytes),
    })
}

/// The configuration embedded in both GRUB images (and copied to the
/// ESP): find the root filesystem, read its `grub.cfg`.
fn early_config(root_uuid: &str) -> String {
    format!(
        "search --no-floppy --fs-uuid --set=root {root_uuid}\n\
         set prefix=($root)/boot/grub\n\
         configfile ($root)/boot/grub/grub.cfg\n"
    )
}

/// Adds the disk-only files to the rootfs: `/etc/fstab`,
/// `/boot/grub/grub.cfg` and the `/boot/efi` mount point.
fn add_boot_files(
    rootfs: &mut Rootfs,
    kernel: &Kernel,
    options: &DiskOptions,
    root_uuid: &str,
    esp_uuid: &str,
) -> Result<(), DiskError> {
    let mtime = options.mtime;
    let fstab = format!(
        "# Written by ferry image build: the disk's root filesystem and EFI system partition.\n\
         UUID={root_uuid} / ext4 defaults 0 1\n\
         UUID={esp_uuid} /boot/efi vfat umask=0077 0 2\n"
    );
    let cmdline = format!(
        "root=UUID={root_uuid} ro console=tty0 console=ttyS0,115200n8 {}",
        options.cmdline_extra
    );
    let menu = grub::menu(
        &format!("Linux {}", kernel.version),
        &format!("/{}", kernel.kernel.display()),
        &format!("/{}", kernel.initrd.display()),
        cmdline.trim_end(),
    );
    for (path, content) in [("etc/fstab", fstab), ("boot/grub/grub.cfg", menu)] {
        let path = rootfs.ensure_parents(Path::new(path), mtime)?;
        // An existing file keeps its owner and mode.
        let meta = match rootfs.tree().get(&path) {
            Some(inode) if matches!(inode.kind, crate::rootfs::Kind::File { .. }) => Meta {
                mtime,
                ..inode.meta.clone()
            },
            _ => Meta::root_owned(0o644, mtime),
        };
        rootfs.file(&path, meta, &mut content.as_bytes())?;
    }
    let efi = rootfs.ensure_parents(Path::new("boot/efi"), mtime)?;
    if !rootfs.tree().get(&efi).is_some_and(|i| i.kind.is_dir()) {
        rootfs.dir(&efi, Meta::root_owned(0o755, mtime))?;
    }
    Ok(())
}

fn read_work_file(path: &Path) -> Result<Vec<u8>, DiskError> {
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(FileError::io(path))?;
    Ok(bytes)
}

/// Writes the raw disk of `rootfs` to `out` (see the module docs);
/// `work` is a scratch directory of the build.
pub fn write(
    rootfs: &mut Rootfs,
    kernel: &Kernel,
    options: &DiskOptions,
    out: &Path,
    work: &Path,
    progress: &dyn Progress,
) -> Result<DiskReport, DiskError> {
    let ids = Ids::derive(&options.identity, options.mtime);
    let root_uuid = ext4::uuid_string(&ids.root_uuid);
    let esp_uuid = ids.esp_uuid();
    let grub = Grub::find(rootfs)?;
    grub.supports(rootfs, Platform::Bios)?;
    grub.supports(rootfs, Platform::Efi)?;
    add_boot_files(rootfs, kernel, options, &root_uuid, &esp_uuid)?;

    let early = early_config(&root_uuid);
    let core_path = work.join("core.img");
    let efi_path = work.join("BOOTX64.EFI");
    grub.mkimage(
        rootfs,
        Target::BiosDisk,
        &early,
        "/boot/grub",
        &core_path,
        work,
    )?;
    grub.mkimage(rootfs, Target::Efi, &early, "/boot/grub", &efi_path, work)?;
    let boot_img = grub.bios_file(rootfs, "boot.img")?;
    let esp_files = EspFiles {
        bootx64: read_work_file(&efi_path)?,
        grub_cfg: early.into_bytes(),
    };

    let tree = rootfs.tree();
    let inode_size = ext4::inode_size(tree)?;
    let content = ext4::content_bytes(tree);
    let plan = plan(
        content,
        tree.inode_count() as u64,
        inode_size,
        options.size,
        options.free,
    )?;
    let mut table = gpt::layout(plan.disk_bytes, plan.root_bytes, &ids.guids)?;
    let (root_offset, root_len) = gpt::extent(&table, gpt::ROOT);
    let (bios_offset, bios_len) = gpt::extent(&table, gpt::BIOS_BOOT);
    let (esp_offset, esp_len) = gpt::extent(&table, gpt::ESP);

    let target = AtomicWrite::new().open(out).map_err(FileError::io(out))?;
    let (file, partial) = (target.file(), target.temp_path());
    // A hole: mke2fs may take the partition as zeros.
    file.set_len(plan.disk_bytes)
        .map_err(FileError::io(partial))?;

    let task = "disk:ext4";
    progress.start(task, "disk: ext4 root", Some(tree.len() as u64));
    let params = ext4::Params {
        uuid: ids.root_uuid,
        hash_seed: ids.hash_seed,
        offset: root_offset,
        bytes: root_len / ext4::BLOCK_SIZE * ext4::BLOCK_SIZE,
        inode_size,
        inodes: plan.inodes,
        journal_mib: plan.journal_mib,
        mtime: options.mtime,
    };
    match ext4::mke2fs(rootfs.stage().root(), partial, work, &params) {
        // The estimate fell short of what mke2fs allocated (it errs on
        // the large side, so this is rare): ask for a tenth more content.
        Err(Ext4Error::NoSpace { .. }) => {
            progress.finish(task, "failed");
            return Err(DiskError::TooSmall {
                size: plan.disk_bytes,
                needed: plan.disk_bytes + content / 10,
            });
        }
        other => other?,
    }
    let fixup = ext4::fix_up(file, root_offset, tree, progress, task)?;
    progress.finish(task, "written");

    let core_lba = bios_offset / gpt::SECTOR;
    let core_img = read_work_file(&core_path)?;
    let core = bios::place_core(&core_img, core_lba, bios_len as usize)?;
    file.write_all_at(&core, bios_offset)
        .map_err(FileError::io(partial))?;
    table
        .set_bootstrap(&bios::boot_code(&boot_img, core_lba)?)
        .map_err(|e| GptError::Write(e.to_string()))?;
    gpt::write(file, &table)?;
    esp::write(
        file,
        esp_offset,
        esp_len,
        &esp_files,
        ids.esp_serial,
        options.mtime,
    )?;
    let report = DiskReport {
        size: plan.disk_bytes,
        root_size: root_len,
        root_uuid,
        esp_uuid,
        disk_guid: Guid::from_bytes(ids.guids.disk).to_string(),
        inode_size,
        fixup,
        table,
        core,
        esp: esp_files,
    };
    verify(partial, rootfs, &report, progress)?;
    target.commit().map_err(FileError::io(out))?;
    Ok(report)
}

/// Reads disk file `path` back against what [`write`] reported: both GPT
/// copies and the protective MBR with its boot code, `core.img` in the
/// BIOS boot partition with its block list, the ESP (checked, every file
/// read back), and every path of the rootfs in the ext4 root with its
/// kind, mode, owner, times, device, xattrs and content.
pub fn verify(
    path: &Path,
    rootfs: &Rootfs,
    report: &DiskReport,
    progress: &dyn Progress,
) -> Result<(), DiskError> {
    let file = File::open(path).map_err(FileError::io(path))?;
    let len = file.metadata().map_err(FileError::io(path))?.len();
    if len != report.size {
        return Err(
            FileError::verify(path)(format!("{len} bytes, {} were written", report.size)).into(),
        );
    }
    gpt::check(&file, &report.table)?;

    let (bios_offset, _) = gpt::extent(&report.table, gpt::BIOS_BOOT);
    let mut mbr = [0u8; bios::SECTOR];
    file.read_exact_at(&mut mbr, 0)
        .map_err(FileError::io(path))?;
    let core_lba = bios_offset / gpt::SECTOR;
    if bios::kernel_sector(&mbr) != core_lba {
        return Err(DiskError::BiosCheck(format!(
            "boot.img loads sector {}, core.img is at {core_lba}",
            bios::kernel_sector(&mbr)
        )));
    }
    let mut core = vec![0u8; report.core.len()];
    file.read_exact_at(&mut core, bios_offset)
        .map_err(FileError::io(path))?;
    let (start, sectors, _) = bios::blocklist(&core);
    if core != report.core
        || start != core_lba + 1
        || (usize::from(sectors) + 1) * bios::SECTOR != core.len()
    {
        return Err(DiskError::BiosCheck(
            "core.img in the BIOS boot partition differs from the one built".into(),
        ));
    }

    let (esp_offset, esp_len) = gpt::extent(&report.table, gpt::ESP);
    esp::check(&file, esp_offset, esp_len, &report.esp)?;

    let (root_offset, _) = gpt::extent(&report.table, gpt::ROOT);
    let task = "disk:verify";
    progress.start(task, "disk: reading back", Some(rootfs.tree().len() as u64));
    let checked = ext4::check(&file, root_offset, rootfs, progress, task);
    progress.finish(
        task,
        if checked.is_ok() {
            "verified"
        } else {
            "failed"
        },
    );
    checked?;
    Ok(())
}

/// `NAME.raw` as an output of `ferry image build`.
pub struct RawOutput;

impl super::Writer for RawOutput {
    fn format(&self) -> crate::spec::Format {
        crate::spec::Format::Raw
    }

    fn write(&self, job: &mut super::Job<'_>) -> Result<(), super::OutputError> {
        job.raw_disk().map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_size_below_what_the_tree_needs_names_both() {
        let auto = plan(700 * MIB, 30_000, 256, None, 1 << 30).unwrap();
        assert!(auto.root_bytes >= 1700 * MIB, "{auto:?}");
        assert_eq!(auto.disk_bytes % MIB, 0);
        let needed = plan(700 * MIB, 30_000, 256, None, 0).unwrap().disk_bytes;
        let exact = plan(700 * MIB, 30_000, 256, Some(needed), 0).unwrap();
        assert_eq!(exact.disk_bytes, needed);
        let err = plan(700 * MIB, 30_000, 256, Some(needed - MIB), 0).unwrap_err();
        match &err {
            DiskError::TooSmall { size, needed: n } => {
                assert_eq!((*size, *n), (needed - MIB, needed));
            }
            other => panic!("{other}"),
        }
        assert!(err.to_string().starts_with("disk too small: "), "{err}");
    }

    #[test]
    fn ids_are_derived_from_the_inputs_only() {
        let a = Ids::derive("debian-12", 1_700_000_000);
        let b = Ids::derive("debian-12", 1_700_000_000);
        let c = Ids::derive("debian-12", 1_700_000_001);
        assert_eq!(a.root_uuid, b.root_uuid);
        assert_ne!(a.root_uuid, c.root_uuid);
        assert_ne!(a.guids.disk, a.guids.root);
        let shown = ext4::uuid_string(&a.root_uuid);
        assert_eq!(&shown[14..15], "4", "{shown}");
        assert!(Guid::from_bytes(a.guids.disk).to_string().as_bytes()[14] == b'4');
        assert_eq!(a.esp_uuid().len(), 9);
    }
}
