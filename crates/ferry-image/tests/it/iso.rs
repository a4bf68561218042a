//! The live ISO (`output::iso`) of the real Debian OS: its El Torito
//! catalog and system area as xorriso reads them, its GPT as sgdisk
//! checks it, its MBR boot code against the one xorriso writes for
//! GRUB (`--grub2-mbr`), byte-identical rebuilds, and boots in QEMU from
//! a CD and from a USB stick under SeaBIOS and OVMF. The squashfs inside
//! is ferry's own (`output::squashfs`), as a build makes it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use ferry_image::boot::kernel::{self, Kernel};
use ferry_image::boot::live::LiveInitramfs;
use ferry_image::output::iso::{self, IsoOptions, IsoReport};
use ferry_image::output::squashfs::{self, SquashfsOptions};
use ferry_image::rootfs::Rootfs;
use ferry_oci::progress::NoProgress;

use crate::fixture;
use crate::qemu::{self, Firmware, Medium};
use crate::util::{run, sha256};

const MTIME: i64 = 1_700_000_000;
/// A boot under TCG takes a minute or two; this bounds a hung one.
const BOOT_TIMEOUT: Duration = Duration::from_secs(420);

fn options() -> IsoOptions {
    IsoOptions {
        label: "FERRY_TEST_LIVE".into(),
        title: "ferry test live".into(),
        cmdline_extra: String::new(),
        identity: "debian-12 test fixture".into(),
        mtime: MTIME,
    }
}

/// One build shared by the tests of this module.
struct Built {
    dir: PathBuf,
    rootfs: Rootfs,
    kernel: Kernel,
    squashfs: PathBuf,
    iso: PathBuf,
    report: IsoReport,
}

fn built() -> &'static Built {
    static BUILT: OnceLock<Built> = OnceLock::new();
    BUILT.get_or_init(|| {
        let dir = crate::util::run_dir("iso");
        let rootfs = fixture::debian_rootfs(&dir.join("stage"), MTIME);
        let kernel = kernel::find(rootfs.tree()).unwrap();
        let squashfs = dir.join("filesystem.squashfs");
        let squashfs_options = SquashfsOptions {
            mkfs_time: MTIME,
            ..SquashfsOptions::default()
        };
        squashfs::write(&rootfs, &squashfs, &squashfs_options, &NoProgress).unwrap();
        squashfs::verify(&squashfs, &rootfs).unwrap();
        let (iso, report) = write_iso(&rootfs, &kernel, &squashfs, &dir);
        Built {
            dir,
            rootfs,
            kernel,
            squashfs,
            iso,
            report,
        }
    })
}

/// The live ISO `DIR/live.iso` of `rootfs`, its scratch in `DIR/work`.
fn write_iso(
    rootfs: &Rootfs,
    kernel: &Kernel,
    squashfs: &Path,
    dir: &Path,
) -> (PathBuf, IsoReport) {
    let iso = dir.join("live.iso");
    let report = iso::write(
        rootfs,
        kernel,
        squashfs,
        &options(),
        &iso,
        &dir.join("work"),
        &NoProgress,
    )
    .unwrap();
    (iso, report)
}

/// `xorriso -report_el_torito plain -report_system_area plain` of `iso`.
fn xorriso_report(iso: &Path) -> String {
    run(Command::new("xorriso").arg("-indev").arg(iso).args([
        "-report_el_torito",
        "plain",
        "-report_system_area",
        "plain",
    ]))
}

/// The fields after `prefix` on each report line starting with it.
fn fields<'a>(report: &'a str, prefix: &str) -> Vec<Vec<&'a str>> {
    report
        .lines()
        .filter_map(|l| l.strip_prefix(prefix))
        .map(|rest| rest.split_whitespace().collect())
        .collect()
}

#[test]
fn xorriso_sees_a_bios_and_a_uefi_entry_and_grub2_boot_data() {
    let b = built();
    assert_eq!(b.report.initramfs, LiveInitramfs::LiveBoot);
    assert_eq!(
        b.report.cmdline,
        "boot=live console=tty0 console=ttyS0,115200n8"
    );
    let report = xorriso_report(&b.iso);
    let entries: Vec<Vec<&str>> = fields(&report, "El Torito boot img :")
        .into_iter()
        .map(|f| f[..4].to_vec())
        .collect();
    assert_eq!(
        entries,
        [["1", "BIOS", "y", "none"], ["2", "UEFI", "y", "none"]],
        "{report}"
    );
    assert_eq!(
        fields(&report, "El Torito img path :"),
        [["1", "/boot/grub/i386-pc/eltorito.img"]],
        "{report}"
    );
    // xorriso recognises the GRUB 2 patches by their values: the boot
    // image's and the MBR's.
    assert_eq!(
        fields(&report, "El Torito img opts :"),
        [["1", "boot-info-table", "grub2-boot-info"]],
        "{report}"
    );
    let summary = fields(&report, "System area summary:").concat();
    assert!(summary.contains(&"grub2-mbr"), "{report}");
    assert!(summary.contains(&"GPT"), "{report}");
    assert_eq!(
        fields(&report, "Volume id    :"),
        [["'FERRY_TEST_LIVE'"]],
        "{report}"
    );
}

#[test]
fn sgdisk_finds_no_problem_in_the_gpt() {
    let b = built();
    let text = run(Command::new("sgdisk").arg("-v").arg(&b.iso));
    assert!(text.contains("No problems found"), "{text}");
    let text = run(Command::new("sgdisk").arg("-p").arg(&b.iso));
    assert!(text.contains("EF00"), "an EFI system partition:\n{text}");
}

/// The MBR and El Torito image patches are the ones xorriso makes for
/// the same GRUB files (`grub-mkrescue`'s options): identical boot code,
/// and each image's addresses pointing at its own core image.
#[test]
fn the_system_area_matches_what_xorriso_writes_for_grub() {
    let b = built();
    let dir = b.dir.join("xorriso");
    let _ = std::fs::remove_dir_all(&dir);
    let tree = dir.join("tree");
    std::fs::create_dir_all(&tree).unwrap();
    run(Command::new("xorriso")
        .args(["-osirrox", "on", "-indev"])
        .arg(&b.iso)
        .args(["-extract", "/boot"])
        .arg(tree.join("boot")));
    let boot_hybrid = b
        .rootfs
        .stage()
        .host_path(Path::new("usr/lib/grub/i386-pc/boot_hybrid.img"));
    let reference = dir.join("reference.iso");
    run(Command::new("xorriso")
        .args(["-as", "mkisofs", "-quiet", "-R"])
        .args(["-b", "boot/grub/i386-pc/eltorito.img", "-no-emul-boot"])
        .args([
            "-boot-load-size",
            "4",
            "-boot-info-table",
            "--grub2-boot-info",
        ])
        .arg("--grub2-mbr")
        .arg(&boot_hybrid)
        .arg("-o")
        .arg(&reference)
        .arg(&tree));

    let bios_lba = |iso: &Path| -> u64 {
        let report = xorriso_report(iso);
        let entries = fields(&report, "El Torito boot img :");
        entries[0].last().unwrap().parse().unwrap()
    };
    let read = |iso: &Path, at: u64, len: usize| {
        use std::os::unix::fs::FileExt;
        let mut buf = vec![0u8; len];
        std::fs::File::open(iso)
            .unwrap()
            .read_exact_at(&mut buf, at)
            .unwrap();
        buf
    };
    let u64_at = |iso: &Path, at: u64| u64::from_le_bytes(read(iso, at, 8).try_into().unwrap());
    let ours = read(&b.iso, 0, 446);
    let theirs = read(&reference, 0, 446);
    assert_eq!(ours[..0x1b0], theirs[..0x1b0], "boot code");
    assert_eq!(ours[0x1b8..], theirs[0x1b8..], "after the core address");
    for iso in [&b.iso, &reference] {
        let lba = bios_lba(iso);
        assert_eq!(u64_at(iso, 0x1b0), lba * 4 + 4, "{}", iso.display());
        assert_eq!(
            u64_at(iso, lba * 2048 + 2548),
            lba * 4 + 5,
            "{}",
            iso.display()
        );
    }
}

#[test]
fn two_builds_are_byte_identical() {
    let b = built();
    // Staged again elsewhere, so no path of the first build can leak in.
    let dir = b.dir.join("again");
    let _ = std::fs::remove_dir_all(&dir);
    let rootfs = fixture::debian_rootfs(&dir.join("stage"), MTIME);
    let (iso, _) = write_iso(&rootfs, &b.kernel, &b.squashfs, &dir);
    assert_eq!(sha256(&iso), sha256(&b.iso));
    std::fs::remove_dir_all(&dir).unwrap();
}

fn boots(firmware: Firmware, usb: bool, marker: &str, name: &str) {
    let b = built();
    let medium = if usb {
        Medium::Usb(b.iso.clone())
    } else {
        Medium::Cdrom(b.iso.clone())
    };
    let log = qemu::boot_until(firmware, &medium, marker, BOOT_TIMEOUT, &b.dir.join(name));
    assert!(log.contains(marker));
}

#[test]
fn boots_as_a_cd_under_seabios() {
    boots(
        Firmware::SeaBios,
        false,
        "FERRY-IMAGE-OK live bios",
        "cd-bios",
    );
}

#[test]
fn boots_as_a_cd_under_ovmf() {
    boots(Firmware::Ovmf, false, "FERRY-IMAGE-OK live efi", "cd-efi");
}

#[test]
fn boots_as_a_usb_stick_under_seabios() {
    boots(
        Firmware::SeaBios,
        true,
        "FERRY-IMAGE-OK live bios",
        "usb-bios",
    );
}

#[test]
fn boots_as_a_usb_stick_under_ovmf() {
    boots(Firmware::Ovmf, true, "FERRY-IMAGE-OK live efi", "usb-efi");
}
