//! The live ISO: one hybrid image that boots under BIOS and UEFI, both as
//! a CD and written raw to a USB stick, into the squashfs root filesystem.
//!
//! Layout (Debian live-boot's, which dracut's dmsquash-live reads too when
//! told where to look):
//!
//! ```text
//! /live/vmlinuz, /live/initrd.img       the image's kernel and initramfs
//! /live/filesystem.squashfs             the root filesystem
//! /boot/grub/grub.cfg                   the menu (boot at once, serial + screen)
//! /boot/grub/i386-pc/eltorito.img       BIOS El Torito image: cdboot.img + GRUB core
//! /.ferry-<16 hex>                      marker GRUB finds this medium by
//! (appended, in no directory)           FAT EFI system partition: EFI/BOOT/BOOTX64.EFI
//!                                       and EFI/BOOT/grub.cfg
//! ```
//!
//! The image is written by hadris-iso (ISO 9660 level 3 with Rock Ridge
//! and Joliet) with four ways in:
//!
//! - **BIOS, CD**: the El Torito default entry (no emulation, 4 sectors)
//!   loads `eltorito.img`; its boot information table and the GRUB 2
//!   patch at byte 2548 (`xorriso --grub2-boot-info`) tell GRUB where the
//!   rest of its core image is.
//! - **UEFI, CD**: the second El Torito entry is the FAT ESP, from which
//!   the firmware runs `\EFI\BOOT\BOOTX64.EFI`.
//! - **UEFI, USB**: a GPT lists the same ESP (stored once), so the
//!   firmware finds it as on any disk.
//! - **BIOS, USB**: the MBR boot code is the image's GRUB
//!   `boot_hybrid.img`, patched as `xorriso --grub2-mbr` does (xorrisofs(1):
//!   "the content start address of the first boot image is converted to a
//!   count of 512 byte blocks, and an offset of 4 is added. The result is
//!   written as 64 bit little-endian number to byte address 0x1b0"): it
//!   loads the sector after `cdboot.img`, the start of the same core image
//!   the CD boots. hadris-iso writes isohybrid's address there instead
//!   (`isohdpfx.bin` wants the image's own start), so the address is
//!   rewritten after the image is. The MBR is a hybrid one mirroring the
//!   ISO data (marked active, which some BIOSes want before they boot a
//!   stick) and the ESP.
//!
//! Both GRUB core images come from the image's own GRUB with every module
//! the menu needs built in ([`crate::boot::grub`]); their early
//! configuration finds this medium by its marker file (a name derived from
//! the build's identity, so another ferry ISO or an installed disk is never
//! taken for it) and makes its `/boot/grub` the prefix, so normal mode
//! loads `/boot/grub/grub.cfg` from there: on a USB stick booted by UEFI,
//! GRUB starts on the ESP, not on the ISO data. The ESP carries the same
//! search as `EFI/BOOT/grub.cfg` (with a `configfile` to the menu): a GRUB
//! that looks for its configuration beside itself, as signed distribution
//! builds do, finds it, and firmware that checks for it (Kairos ISOs
//! failed on strict UEFI firmware without it) is satisfied.
//!
//! The kernel command line is the one the image's initramfs understands:
//! Debian/Ubuntu live-boot (`boot=live`; it searches every block device
//! for `/live/filesystem.squashfs`), or dracut's dmsquash-live on the RHEL
//! family (`root=live:CDLABEL=<label> rd.live.image`, pointed at the same
//! file with `rd.live.dir`/`rd.live.squashimg`, with an overlayfs upper
//! layer since the squashfs holds the root directly). live-config's
//! `components` is left out on purpose: it would replace the hostname
//! and users ferry's customization set.
//!
//! Reproducible: the marker, the FAT serial and the GPT GUIDs derive from
//! the build's identity, label and `SOURCE_DATE_EPOCH`
//! ([`crate::output::seed`]); every date is
//! `SOURCE_DATE_EPOCH`; GRUB images depend only on their inputs. The ISO
//! is written under a temporary name ([`ferry_oci::atomic`]), read back
//! ([`verify`]) and only then renamed to `out`.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use ferry_oci::atomic::AtomicWrite;
use ferry_oci::progress::Progress;
use hadris_fat::{FatOptions, VolumeLabel};
use hadris_fs::sync::FileSystem;
use hadris_fs::{Content, DateTime, MountOptions, Node, Resolve, Tree};
use hadris_iso::{
    AppendedPartition, BootEntry, BootInfo, ElTorito, Emulation, Hybrid, IsoId, IsoLevel, Platform,
};
use hadris_part::{PartitionFlags, PartitionKind, PartitionTable};
use hadris_storage::host::FileDevice;
use hadris_storage::sync::BlockDevice;
use hadris_storage::{BlockIndex, BlockSize};

use crate::boot::grub::{self, Grub, GrubError, Target};
use crate::boot::kernel::Kernel;
use crate::boot::live::{LiveInitramfs, NoLiveInitramfs};
use crate::output::FileError;
use crate::output::seed::Seed;
use crate::rootfs::Rootfs;

/// ISO paths (no leading slash, as hadris trees take them).
pub const KERNEL: &str = "live/vmlinuz";
pub const INITRD: &str = "live/initrd.img";
pub const SQUASHFS: &str = "live/filesystem.squashfs";
pub const GRUB_CFG: &str = "boot/grub/grub.cfg";
pub const BIOS_IMAGE: &str = "boot/grub/i386-pc/eltorito.img";
/// ESP paths.
pub const ESP_LOADER: &str = "EFI/BOOT/BOOTX64.EFI";
pub const ESP_GRUB_CFG: &str = "EFI/BOOT/grub.cfg";

/// ISO 9660 logical block (ECMA-119 §6.1.2).
const ISO_BLOCK: u64 = 2048;
/// Where `boot_hybrid.img` reads the 512-byte sector it loads (GRUB's
/// `boot.S`, `kernel_sector` under `HYBRID_BOOT`).
const MBR_CORE_ADDRESS: usize = 0x1b0;
/// The MBR boot code area before the disk signature; the rest of the
/// first 446 bytes of `boot_hybrid.img` (signature, reserved) is copied
/// too, as xorriso does.
const MBR_CODE: usize = 446;
/// Where `--grub2-boot-info` puts the core image's address in
/// `eltorito.img` (the block list of `diskboot.img`, 500 bytes into the
/// sector after the 2048-byte `cdboot.img`).
const GRUB2_BOOT_INFO: u64 = 2548;
/// `cdboot.img` is 2048 bytes: 4 sectors of 512, what BIOS El Torito
/// loads (the `-boot-load-size 4` of every GRUB ISO).
const BIOS_LOAD_SECTORS: u16 = 4;

/// What the build asks of the ISO.
#[derive(Debug, Clone)]
pub struct IsoOptions {
    /// The ISO 9660 volume identifier, which dracut finds the medium by
    /// (`CDLABEL=`): 1 to 32 of `A-Z 0-9 _` (ECMA-119 d-characters).
    pub label: String,
    /// The boot menu entry's title.
    pub title: String,
    /// Added to the kernel command line after what the live boot needs and
    /// the consoles (the spec's `kernel.cmdline`).
    pub cmdline_extra: String,
    /// What names this build (the image name and the base image's
    /// digest): with the label and `mtime` it seeds the marker file name,
    /// the FAT serial and the GPT GUIDs.
    pub identity: String,
    /// `SOURCE_DATE_EPOCH`: every date in the image.
    pub mtime: i64,
}

/// A file the read-back must find, with its size and, for the small
/// files ferry writes itself, its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedFile {
    /// Path without a leading slash.
    pub path: String,
    pub size: u64,
    pub content: Option<Vec<u8>>,
}

/// What [`write`] put into the ISO, as [`verify`] checks it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsoLayout {
    pub label: String,
    /// Files of the ISO 9660 tree.
    pub files: Vec<ExpectedFile>,
    /// Files of the EFI system partition.
    pub esp_files: Vec<ExpectedFile>,
    /// The MBR's first 446 bytes as `boot_hybrid.img` has them (bytes
    /// 0x1b0..0x1b8 are the patched address and are checked apart).
    pub mbr_code: Vec<u8>,
}

/// What the ISO is, for the build's manifest and the user.
#[derive(Debug, Clone)]
pub struct IsoReport {
    pub size: u64,
    /// The marker file's path (`.ferry-<16 hex>`).
    pub marker: String,
    pub initramfs: LiveInitramfs,
    pub cmdline: String,
    pub layout: IsoLayout,
}

#[derive(Debug, thiserror::Error)]
pub enum IsoError {
    #[error(
        "ISO volume label {label:?} is not usable: {why} (use 1 to 32 of A-Z, 0-9 and _, e.g. {suggestion:?})"
    )]
    Label {
        label: String,
        why: &'static str,
        suggestion: String,
    },
    #[error(transparent)]
    Live(#[from] NoLiveInitramfs),
    #[error(transparent)]
    Grub(#[from] GrubError),
    #[error(transparent)]
    File(#[from] FileError),
    #[error("writing the EFI system partition image {path}: {message}")]
    Esp { path: PathBuf, message: String },
    #[error("writing the ISO {path}: {message}")]
    Write { path: PathBuf, message: String },
}

/// Checks a volume label (ECMA-119 §7.4.1 d-characters, §8.4.6 32 bytes).
pub fn check_label(label: &str) -> Result<(), IsoError> {
    let why = if label.is_empty() {
        Some("it is empty")
    } else if label.len() > 32 {
        Some("it is longer than 32 characters")
    } else if !label
        .bytes()
        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
    {
        Some("it holds characters other than A-Z, 0-9 and _")
    } else {
        None
    };
    match why {
        None => Ok(()),
        Some(why) => {
            let suggestion = label_for(label);
            Err(IsoError::Label {
                label: label.to_string(),
                why,
                suggestion,
            })
        }
    }
}

/// Values derived from the build's inputs, never from a clock or a
/// random source.
struct Seeds {
    /// 16 hex digits naming the marker file.
    marker: String,
    fat_serial: u32,
    gpt_seed: u64,
}

fn seeds(options: &IsoOptions) -> Seeds {
    let seed = Seed::new(
        &format!("live ISO {}", options.label),
        &options.identity,
        options.mtime,
    );
    Seeds {
        marker: seed.hex("marker", 16),
        fat_serial: seed.u32("fat-serial"),
        gpt_seed: seed.u64("gpt"),
    }
}

/// GRUB's first configuration, embedded in both core images: find this
/// medium and make its `/boot/grub` the prefix, whose `grub.cfg` normal
/// mode then loads. GRUB runs an embedded configuration with its rescue
/// parser (`grub_parser_execute`), before normal mode: one plain command
/// a line, no `if`, no comments.
fn early_config(marker: &str) -> String {
    format!(
        "search --no-floppy --set=root --file /{marker}\n\
         set prefix=($root)/boot/grub\n"
    )
}

/// `EFI/BOOT/grub.cfg` on the ESP, for a GRUB that reads the
/// configuration beside itself (normal mode, so it hands over with
/// `configfile`).
fn esp_config(marker: &str) -> String {
    format!(
        "# Written by ferry image build: find this live ISO by its marker file, load its menu.\n\
         {}\
         configfile $prefix/grub.cfg\n",
        early_config(marker)
    )
}

/// Builds the live ISO of `rootfs` (kernel `kernel`, root filesystem
/// `squashfs`) at `out`; `work` is a scratch directory of the build.
pub fn write(
    rootfs: &Rootfs,
    kernel: &Kernel,
    squashfs: &Path,
    options: &IsoOptions,
    out: &Path,
    work: &Path,
    progress: &dyn Progress,
) -> Result<IsoReport, IsoError> {
    check_label(&options.label)?;
    let initramfs = LiveInitramfs::detect(rootfs.tree())?;
    let grub = Grub::find(rootfs)?;
    grub.supports(rootfs, grub::Platform::Bios)?;
    grub.supports(rootfs, grub::Platform::Efi)?;
    let seeds = seeds(options);
    let marker = format!(".ferry-{}", seeds.marker);
    let early = early_config(&marker);

    std::fs::create_dir_all(work).map_err(FileError::io(work))?;
    let bios_image = work.join("eltorito.img");
    grub.mkimage(
        rootfs,
        Target::BiosCdrom,
        &early,
        "/boot/grub",
        &bios_image,
        work,
    )?;
    let efi_loader = work.join("BOOTX64.EFI");
    grub.mkimage(rootfs, Target::Efi, &early, "/boot/grub", &efi_loader, work)?;
    let boot_hybrid = grub.bios_file(rootfs, "boot_hybrid.img")?;
    if boot_hybrid.len() < MBR_CODE {
        return Err(IsoError::Grub(GrubError::Io {
            path: "/usr/lib/grub/i386-pc/boot_hybrid.img".into(),
            source: io::Error::new(io::ErrorKind::InvalidData, "shorter than 446 bytes"),
        }));
    }

    let cmdline = initramfs.medium_cmdline(&options.label, &options.cmdline_extra);
    let menu = grub::menu(
        &options.title,
        &format!("/{KERNEL}"),
        &format!("/{INITRD}"),
        &cmdline,
    );
    let marker_text = format!(
        "ferry live ISO {}: GRUB finds this medium by this file.\n{}\n",
        options.label, options.identity
    );
    let stage = |p: &Path| rootfs.stage().host_path(p);
    let parts = Parts {
        kernel: stage(&kernel.kernel),
        initrd: stage(&kernel.initrd),
        squashfs: squashfs.to_owned(),
        bios_image,
        efi_loader,
        mbr_code: boot_hybrid[..MBR_CODE].to_vec(),
        menu,
        esp_config: esp_config(&marker),
        marker: marker.clone(),
        marker_text,
    };
    let layout = assemble(&parts, options, &seeds, out, work, progress)?;
    let size = std::fs::metadata(out).map_err(FileError::io(out))?.len();
    Ok(IsoReport {
        size,
        marker,
        initramfs,
        cmdline,
        layout,
    })
}

/// The inputs of the ISO, on the host.
struct Parts {
    kernel: PathBuf,
    initrd: PathBuf,
    squashfs: PathBuf,
    bios_image: PathBuf,
    efi_loader: PathBuf,
    mbr_code: Vec<u8>,
    menu: String,
    esp_config: String,
    marker: String,
    marker_text: String,
}

fn host_file(path: &Path) -> Result<Content, IsoError> {
    hadris_fs::host::file(path)
        .map_err(|e| FileError::io(path)(io::Error::other(e.to_string())).into())
}

fn date(mtime: i64) -> DateTime {
    DateTime::new(mtime, 0).unwrap_or(DateTime::UNIX_EPOCH)
}

/// Writes the ESP image, verifies nothing yet (the ISO's read-back
/// checks it in place), and returns its path and expected files.
fn write_esp(
    parts: &Parts,
    options: &IsoOptions,
    seeds: &Seeds,
    work: &Path,
) -> Result<(PathBuf, Vec<ExpectedFile>), IsoError> {
    let path = work.join("esp.img");
    let esp_error = |message: String| IsoError::Esp {
        path: path.clone(),
        message,
    };
    let loader = host_file(&parts.efi_loader)?;
    let files = vec![
        ExpectedFile {
            path: ESP_LOADER.into(),
            size: loader.len(),
            content: None,
        },
        ExpectedFile {
            path: ESP_GRUB_CFG.into(),
            size: parts.esp_config.len() as u64,
            content: Some(parts.esp_config.as_bytes().to_vec()),
        },
    ];
    let mut tree = Tree::new();
    tree.insert(ESP_LOADER, Node::file(loader))
        .and_then(|()| {
            tree.insert(
                ESP_GRUB_CFG,
                Node::file(Content::bytes(parts.esp_config.as_bytes())),
            )
        })
        .map_err(|e| esp_error(e.to_string()))?;
    // The files, a tenth more for FAT's own structures and a MiB of room,
    // in whole MiB.
    let content: u64 = files.iter().map(|f| f.size).sum();
    let size = (content + content / 10 + (1 << 20)).div_ceil(1 << 20) << 20;
    let fat = FatOptions::new()
        .with_size(size)
        .with_label(VolumeLabel::new("FERRY_ESP").expect("a valid label"))
        .with_serial(seeds.fat_serial)
        .with_time(date(options.mtime));
    let file = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .map_err(FileError::io(&path))?;
    let device = FileDevice::new(file).map_err(FileError::io(&path))?;
    hadris_fat::sync::write(device, &tree, &fat).map_err(|e| esp_error(e.to_string()))?;
    Ok((path, files))
}

/// Writes the ESP, lays the parts out as the ISO and has
/// [`write_verified`] write it, reporting progress.
fn assemble(
    parts: &Parts,
    options: &IsoOptions,
    seeds: &Seeds,
    out: &Path,
    work: &Path,
    progress: &dyn Progress,
) -> Result<IsoLayout, IsoError> {
    let (esp, esp_files) = write_esp(parts, options, seeds, work)?;
    let write_error = |message: String| IsoError::Write {
        path: out.to_owned(),
        message,
    };
    let mut tree = Tree::new();
    let mut files = Vec::new();
    for (path, content, small) in [
        (KERNEL, host_file(&parts.kernel)?, None),
        (INITRD, host_file(&parts.initrd)?, None),
        (SQUASHFS, host_file(&parts.squashfs)?, None),
        (BIOS_IMAGE, host_file(&parts.bios_image)?, None),
        (
            GRUB_CFG,
            Content::bytes(parts.menu.as_bytes()),
            Some(&parts.menu),
        ),
        (
            parts.marker.as_str(),
            Content::bytes(parts.marker_text.as_bytes()),
            Some(&parts.marker_text),
        ),
    ] {
        files.push(ExpectedFile {
            path: path.to_string(),
            size: content.len(),
            content: small.map(|s| s.as_bytes().to_vec()),
        });
        tree.insert(path, Node::file(content))
            .map_err(|e| write_error(e.to_string()))?;
    }
    let iso_options = hadris_iso::IsoOptions::new()
        .with_id(IsoId::Volume, &options.label)
        .with_id(IsoId::Application, "FERRY IMAGE BUILD")
        .with_level(IsoLevel::L3)
        .with_joliet()
        .with_rock_ridge()
        .with_time(date(options.mtime))
        .with_seed(seeds.gpt_seed)
        .with_el_torito(
            ElTorito::new()
                .with_entry(
                    BootEntry::bios(BIOS_IMAGE)
                        .with_load_size(BIOS_LOAD_SECTORS)
                        .with_boot_info(BootInfo::Grub2),
                )
                .with_entry(BootEntry::uefi_appended(0)),
        )
        .with_hybrid(
            Hybrid::gpt_hybrid_mbr()
                .with_bootstrap(&parts.mbr_code)
                .with_appended(AppendedPartition::esp(host_file(&esp)?)),
        );
    let planned = hadris_iso::plan(&tree, &iso_options).map_err(|e| write_error(e.to_string()))?;
    let layout = IsoLayout {
        label: options.label.clone(),
        files,
        esp_files,
        mbr_code: parts.mbr_code.clone(),
    };
    let id = "iso";
    progress.start(id, "live ISO", Some(planned.size()));
    let device_progress = DeviceProgress { progress, id };
    let result = write_verified(&tree, &iso_options, &layout, out, device_progress);
    progress.finish(id, if result.is_ok() { "verified" } else { "failed" });
    result.map(|()| layout)
}

/// Writes the ISO under a temporary name, patches the MBR's GRUB core
/// address, reads it back and renames it to `out`.
fn write_verified(
    tree: &Tree,
    iso_options: &hadris_iso::IsoOptions,
    layout: &IsoLayout,
    out: &Path,
    progress: DeviceProgress<'_>,
) -> Result<(), IsoError> {
    let write_error = |message: String| IsoError::Write {
        path: out.to_owned(),
        message,
    };
    let target = AtomicWrite::new().open(out).map_err(FileError::io(out))?;
    let (file, partial) = (target.file(), target.temp_path());
    let device = Counted {
        inner: FileDevice::new(file.try_clone().map_err(FileError::io(partial))?)
            .map_err(FileError::io(partial))?,
        progress,
    };
    let written = hadris_iso::sync::write(device, tree, iso_options)
        .map_err(|e| write_error(e.to_string()))?;
    for warning in written.warnings() {
        tracing::warn!("{}: {warning}", out.display());
    }
    let bios_block = written
        .extents(format!("/{BIOS_IMAGE}"))
        .and_then(|e| e.first())
        .map(|e| e.offset() / ISO_BLOCK)
        .ok_or_else(|| write_error("hadris-iso placed no BIOS boot image".into()))?;
    // `xorriso --grub2-mbr`: the address of the core image's first sector
    // (after the 4 sectors of cdboot.img), for boot_hybrid.img.
    file.write_all_at(&(bios_block * 4 + 4).to_le_bytes(), MBR_CORE_ADDRESS as u64)
        .map_err(FileError::io(partial))?;

    verify(partial, layout).map_err(|e| match e {
        IsoError::File(FileError::Verify { what, .. }) => FileError::verify(out)(what).into(),
        other => other,
    })?;
    target.commit().map_err(FileError::io(out))?;
    Ok(())
}

/// Where [`Counted`] reports.
#[derive(Clone, Copy)]
struct DeviceProgress<'p> {
    progress: &'p dyn Progress,
    id: &'p str,
}

/// A block device that reports every write as progress.
struct Counted<'p, D> {
    inner: D,
    progress: DeviceProgress<'p>,
}

impl<D: hadris_io::ErrorType> hadris_io::ErrorType for Counted<'_, D> {
    type Error = D::Error;
}

impl<D: BlockDevice> BlockDevice for Counted<'_, D> {
    fn block_size(&self) -> BlockSize {
        self.inner.block_size()
    }

    fn block_count(&self) -> u64 {
        self.inner.block_count()
    }

    fn max_block_count(&self) -> u64 {
        self.inner.max_block_count()
    }

    fn writable(&self) -> bool {
        self.inner.writable()
    }

    fn read_blocks(
        &mut self,
        first: BlockIndex,
        buf: &mut [u8],
    ) -> Result<(), hadris_io::Error<D::Error>> {
        self.inner.read_blocks(first, buf)
    }

    fn write_blocks(
        &mut self,
        first: BlockIndex,
        buf: &[u8],
    ) -> Result<(), hadris_io::Error<D::Error>> {
        self.inner.write_blocks(first, buf)?;
        self.progress
            .progress
            .advance(self.progress.id, buf.len() as u64);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), hadris_io::Error<D::Error>> {
        self.inner.flush()
    }
}

/// Reads the ISO at `iso` back and checks it against `layout`: the
/// volume label, every file and its size (and the bytes of the small
/// ones), the El Torito catalog (a BIOS entry on the GRUB image with its
/// boot information, a UEFI entry on the ESP), the MBR boot code and its
/// core address, the GPT (CRCs, an EFI system partition where the UEFI
/// entry points) and the ESP's files.
pub fn verify(iso: &Path, layout: &IsoLayout) -> Result<(), IsoError> {
    let fail = |what: String| IsoError::from(FileError::verify(iso)(what));
    let device = FileDevice::open(iso).map_err(FileError::io(iso))?;
    let mut fs = hadris_iso::sync::IsoFs::mount(device, MountOptions::new())
        .map_err(|e| fail(format!("not an ISO 9660 image ({e})")))?;
    let volume = fs.info().id(IsoId::Volume);
    if volume != layout.label.as_bytes() {
        return Err(fail(format!(
            "volume label {:?}, expected {:?}",
            String::from_utf8_lossy(volume),
            layout.label
        )));
    }
    for file in &layout.files {
        check_file(&mut fs, file).map_err(|what| fail(format!("/{}: {what}", file.path)))?;
    }

    // El Torito.
    let bios_node = fs
        .resolve(format!("/{BIOS_IMAGE}").as_bytes(), Resolve::Follow)
        .map_err(|e| fail(format!("/{BIOS_IMAGE}: {e}")))?;
    let mut extent = [hadris_fs::Extent::new(0, 0)];
    let bios_offset = match fs.extents(bios_node, 0, &mut extent) {
        Ok(1) => extent[0].offset(),
        other => return Err(fail(format!("/{BIOS_IMAGE} has no extent ({other:?})"))),
    };
    let bios_block = bios_offset / ISO_BLOCK;
    let mut catalog_buf = [0u8; ISO_BLOCK as usize];
    let catalog = fs
        .boot_catalog(&mut catalog_buf)
        .map_err(|e| fail(format!("the El Torito catalog: {e}")))?
        .ok_or_else(|| fail("no El Torito boot record".into()))?;
    let entries: Vec<_> = catalog.entries().collect();
    let [bios, uefi] = entries.as_slice() else {
        return Err(fail(format!(
            "the El Torito catalog has {} entries, not a BIOS and a UEFI one",
            entries.len()
        )));
    };
    if bios.platform() != Platform::X86
        || bios.emulation() != Some(Emulation::NoEmulation)
        || !bios.is_bootable()
        || u64::from(bios.load_block()) != bios_block
        || bios.sector_count() != BIOS_LOAD_SECTORS
    {
        return Err(fail(format!(
            "the default El Torito entry is not a bootable no-emulation BIOS entry loading {BIOS_LOAD_SECTORS} sectors of /{BIOS_IMAGE} at block {bios_block}: {bios:?}"
        )));
    }
    if uefi.platform() != Platform::Efi || !uefi.is_bootable() {
        return Err(fail(format!(
            "the second El Torito entry is not a bootable UEFI entry: {uefi:?}"
        )));
    }
    let esp_offset = u64::from(uefi.load_block()) * ISO_BLOCK;
    let mut grub2 = [0u8; 8];
    fs.read_raw(bios_offset + GRUB2_BOOT_INFO, &mut grub2)
        .map_err(|e| fail(format!("reading /{BIOS_IMAGE}: {e}")))?;
    if u64::from_le_bytes(grub2) != bios_block * 4 + 5 {
        return Err(fail(format!(
            "/{BIOS_IMAGE} lacks its GRUB 2 boot information at byte {GRUB2_BOOT_INFO}"
        )));
    }

    // MBR: boot_hybrid.img with the core image's address.
    let mut mbr = [0u8; 512];
    fs.read_raw(0, &mut mbr)
        .map_err(|e| fail(format!("reading the MBR: {e}")))?;
    let code = &layout.mbr_code;
    if mbr[..MBR_CORE_ADDRESS] != code[..MBR_CORE_ADDRESS]
        || mbr[MBR_CORE_ADDRESS + 8..MBR_CODE] != code[MBR_CORE_ADDRESS + 8..MBR_CODE]
    {
        return Err(fail(
            "the MBR boot code is not the image's GRUB boot_hybrid.img".into(),
        ));
    }
    let address = u64::from_le_bytes(
        mbr[MBR_CORE_ADDRESS..MBR_CORE_ADDRESS + 8]
            .try_into()
            .expect("8 bytes"),
    );
    if address != bios_block * 4 + 4 {
        return Err(fail(format!(
            "the MBR loads sector {address}, not the GRUB core image at sector {}",
            bios_block * 4 + 4
        )));
    }
    drop(fs);

    // The partition tables and the ESP.
    let mut disk = FileDevice::open_with_block_size(iso, BlockSize::new(512).expect("512"))
        .map_err(FileError::io(iso))?;
    let table = hadris_part::sync::read(&mut disk)
        .map_err(|e| fail(format!("the partition table: {e}")))?;
    let PartitionTable::Hybrid(hybrid) = table.table() else {
        return Err(fail(format!(
            "a {:?} partition table, not a GPT with a hybrid MBR",
            table.table().kind()
        )));
    };
    if !hybrid
        .mbr_partitions()
        .any(|p| p.flags().contains(PartitionFlags::BOOTABLE))
    {
        return Err(fail("no MBR partition is marked active".into()));
    }
    let esp = table
        .partitions()
        .find(|p| p.kind() == PartitionKind::Gpt(hadris_part::gpt::types::EFI_SYSTEM))
        .ok_or_else(|| fail("the GPT has no EFI system partition".into()))?;
    if esp.start() * 512 != esp_offset {
        return Err(fail(format!(
            "the GPT's EFI system partition starts at byte {}, the UEFI El Torito image at {esp_offset}",
            esp.start() * 512
        )));
    }
    let esp_device = hadris_part::sync::open(&mut disk, &esp)
        .map_err(|e| fail(format!("the EFI system partition: {e}")))?;
    let mut fat = hadris_fat::sync::FatFs::mount(esp_device, MountOptions::new().read_only())
        .map_err(|e| fail(format!("the EFI system partition is not FAT ({e})")))?;
    for file in &layout.esp_files {
        check_file(&mut fat, file).map_err(|what| fail(format!("ESP {}: {what}", file.path)))?;
    }
    Ok(())
}

/// Checks one file of a mounted volume against what was written.
fn check_file<F: FileSystem>(fs: &mut F, file: &ExpectedFile) -> Result<(), String> {
    let node = fs
        .resolve(format!("/{}", file.path).as_bytes(), Resolve::Follow)
        .map_err(|e| format!("missing ({e})"))?;
    let size = fs.stat(node).map_err(|e| e.to_string())?.len();
    if size != file.size {
        return Err(format!("{size} bytes, expected {}", file.size));
    }
    if let Some(expected) = &file.content {
        let mut buf = vec![0u8; expected.len()];
        let mut at = 0;
        while at < buf.len() {
            match fs.read(node, at as u64, &mut buf[at..]) {
                Ok(0) => break,
                Ok(n) => at += n,
                Err(e) => return Err(e.to_string()),
            }
        }
        if &buf[..at] != expected.as_slice() {
            return Err("its bytes differ from what was written".into());
        }
    }
    Ok(())
}

/// `NAME.iso` as an output of `ferry image build`.
pub struct IsoOutput;

impl super::Writer for IsoOutput {
    fn format(&self) -> crate::spec::Format {
        crate::spec::Format::Iso
    }

    fn write(&self, job: &mut super::Job<'_>) -> Result<(), super::OutputError> {
        let squashfs = job.squashfs()?;
        let options = IsoOptions {
            label: label_for(job.name),
            title: job.name.to_string(),
            cmdline_extra: job.cmdline_extra(),
            identity: job.identity.clone(),
            mtime: job.mtime,
        };
        let path = job.out.join(format!("{}.iso", job.name));
        write(
            job.rootfs,
            job.kernel,
            &squashfs,
            &options,
            &path,
            job.work,
            job.progress,
        )?;
        job.record(crate::spec::Format::Iso, &path)
    }
}

/// A volume label from an image name: upper case, `A-Z 0-9 _` only, at
/// most 32 characters (ECMA-119 d-characters).
pub fn label_for(name: &str) -> String {
    let label: String = name
        .chars()
        .map(|c| match c.to_ascii_uppercase() {
            c @ ('A'..='Z' | '0'..='9') => c,
            _ => '_',
        })
        .take(32)
        .collect();
    if label.is_empty() {
        "FERRY".into()
    } else {
        label
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_d_characters() {
        check_label("DEBIAN_12").unwrap();
        let err = check_label("debian 12").unwrap_err();
        assert_eq!(
            err.to_string(),
            "ISO volume label \"debian 12\" is not usable: it holds characters other than A-Z, 0-9 and _ \
             (use 1 to 32 of A-Z, 0-9 and _, e.g. \"DEBIAN_12\")"
        );
        assert!(check_label("").is_err());
        assert!(check_label(&"A".repeat(33)).is_err());
    }

    fn options() -> IsoOptions {
        IsoOptions {
            label: "SYNTH_LIVE".into(),
            title: "synthetic".into(),
            cmdline_extra: String::new(),
            identity: "synthetic parts".into(),
            mtime: 1_700_000_000,
        }
    }

    /// Stand-ins for the GRUB images and the OS files: enough for the
    /// layout and its read-back, which never run them.
    fn synthetic_parts(dir: &Path) -> Parts {
        let file = |name: &str, len: usize, seed: u8| {
            let path = dir.join(name);
            let bytes: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(seed)).collect();
            std::fs::write(&path, bytes).unwrap();
            path
        };
        let marker = ".ferry-0123456789abcdef".to_string();
        Parts {
            kernel: file("vmlinuz", 300_000, 3),
            initrd: file("initrd.img", 200_001, 5),
            squashfs: file("root.sqfs", 1_000_003, 7),
            bios_image: file("eltorito.img", 30_000, 11),
            efi_loader: file("BOOTX64.EFI", 400_000, 13),
            mbr_code: (0..MBR_CODE).map(|i| (i % 251) as u8).collect(),
            menu: grub::menu("t", "/live/vmlinuz", "/live/initrd.img", "boot=live"),
            esp_config: esp_config(&marker),
            marker,
            marker_text: "synthetic\n".into(),
        }
    }

    fn patch(path: &Path, at: u64, bytes: &[u8]) {
        let file = File::options().write(true).open(path).unwrap();
        file.write_all_at(bytes, at).unwrap();
    }

    /// The progress events of one task: total, bytes advanced, outcome.
    #[derive(Default)]
    struct Recorder(std::sync::Mutex<(Option<u64>, u64, String)>);

    impl Progress for Recorder {
        fn start(&self, _: &str, _: &str, total: Option<u64>) {
            self.0.lock().unwrap().0 = total;
        }
        fn advance(&self, _: &str, bytes: u64) {
            self.0.lock().unwrap().1 += bytes;
        }
        fn finish(&self, _: &str, outcome: &str) {
            self.0.lock().unwrap().2 = outcome.to_string();
        }
    }

    /// No temporary file is left in `dir`.
    fn assert_no_partial(dir: &Path) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let name = entry.unwrap().file_name();
            assert!(!name.to_string_lossy().ends_with(".partial"), "{name:?}");
        }
    }

    #[test]
    fn the_read_back_finds_what_was_written_and_catches_damage() {
        let dir = tempfile::tempdir().unwrap();
        let parts = synthetic_parts(dir.path());
        let work = dir.path().join("work");
        std::fs::create_dir(&work).unwrap();
        let out = dir.path().join("live.iso");
        let options = options();
        let progress = Recorder::default();
        let layout = assemble(&parts, &options, &seeds(&options), &out, &work, &progress).unwrap();
        assert_no_partial(dir.path());
        let size = std::fs::metadata(&out).unwrap().len();
        assert_eq!(
            *progress.0.lock().unwrap(),
            (Some(size), size, "verified".to_string())
        );
        verify(&out, &layout).unwrap();
        assert_eq!(layout.files.len(), 6);

        // The GRUB core address boot_hybrid.img reads.
        let mut mbr = [0u8; 512];
        File::open(&out)
            .unwrap()
            .read_exact_at(&mut mbr, 0)
            .unwrap();
        let address = u64::from_le_bytes(mbr[0x1b0..0x1b8].try_into().unwrap());
        assert_eq!(address % 4, 0, "a 2048-byte block, +4 sectors");
        let good = std::fs::read(&out).unwrap();
        patch(&out, 0x1b0, &(address - 4).to_le_bytes());
        let err = verify(&out, &layout).unwrap_err().to_string();
        assert!(
            err.contains(&format!("the MBR loads sector {}", address - 4)),
            "{err}"
        );

        // A byte of the ESP's BOOTX64.EFI... is not checked byte for byte,
        // but a grub.cfg on the ESP that differs is.
        std::fs::write(&out, &good).unwrap();
        let cfg_at = good
            .windows(parts.esp_config.len())
            .position(|w| w == parts.esp_config.as_bytes())
            .unwrap();
        patch(&out, cfg_at as u64 + 2, b"#");
        let err = verify(&out, &layout).unwrap_err().to_string();
        assert!(
            err.contains("ESP EFI/BOOT/grub.cfg: its bytes differ"),
            "{err}"
        );

        // A file that lost its tail.
        std::fs::write(&out, &good).unwrap();
        let mut shorter = layout.clone();
        shorter.files[2].size += 1;
        let err = verify(&out, &shorter).unwrap_err().to_string();
        assert!(
            err.contains("/live/filesystem.squashfs: 1000003 bytes, expected 1000004"),
            "{err}"
        );
    }

    #[test]
    fn a_failed_build_leaves_the_previous_output_alone() {
        let dir = tempfile::tempdir().unwrap();
        let mut parts = synthetic_parts(dir.path());
        parts.squashfs = dir.path().join("missing.sqfs");
        let work = dir.path().join("work");
        std::fs::create_dir(&work).unwrap();
        let out = dir.path().join("live.iso");
        std::fs::write(&out, b"the last good ISO").unwrap();
        let options = options();
        let err = assemble(
            &parts,
            &options,
            &seeds(&options),
            &out,
            &work,
            &ferry_oci::progress::NoProgress,
        )
        .unwrap_err();
        assert!(err.to_string().contains("missing.sqfs"), "{err}");
        assert_eq!(std::fs::read(&out).unwrap(), b"the last good ISO");
        assert_no_partial(dir.path());
    }

    #[test]
    fn seeds_follow_the_inputs_only() {
        let options = |identity: &str, mtime| IsoOptions {
            label: "LIVE".into(),
            title: "t".into(),
            cmdline_extra: String::new(),
            identity: identity.into(),
            mtime,
        };
        let a = seeds(&options("debian-12@sha256:aa", 1));
        let b = seeds(&options("debian-12@sha256:aa", 1));
        let c = seeds(&options("debian-12@sha256:ab", 1));
        let d = seeds(&options("debian-12@sha256:aa", 2));
        assert_eq!(
            (a.marker.clone(), a.fat_serial, a.gpt_seed),
            (b.marker, b.fat_serial, b.gpt_seed)
        );
        assert_ne!(a.marker, c.marker);
        assert_ne!(a.marker, d.marker);
        assert_eq!(a.marker.len(), 16);
    }
}
