//! The raw disk: the ext4 fix-up on a small synthetic tree (every file
//! kind, owners, setuid, capabilities, ACLs, devices; checked with
//! e2fsprogs' own `e2fsck` and `debugfs`), and on the real Debian OS:
//! `sgdisk -v`, `fsck.fat`, `e2fsck`, owners and modes as `debugfs` reads
//! them, two builds byte for byte, a size too small, and boots under
//! SeaBIOS and OVMF to the marker.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use ferry_image::boot::kernel;
use ferry_image::output::disk::ext4::{self, Ext4Error, Params};
use ferry_image::output::disk::{self, DiskError, DiskOptions, DiskReport};
use ferry_image::rootfs::{Kind, Rootfs};
use ferry_oci::progress::NoProgress;

use crate::fixture;
use crate::qemu::{self, Firmware, Medium};
use crate::util::{CAP_NET_RAW, meta, run, sha256};

const MTIME: i64 = 1_700_000_000;
/// When the synthetic tree's files were made.
const T: i64 = MTIME - 3600;
const MIB: u64 = 1 << 20;

/// `debugfs -R request` on the ext4 filesystem at `offset` of `image`.
fn debugfs(image: &Path, offset: u64, request: &str) -> String {
    run(Command::new("debugfs")
        .arg("-R")
        .arg(request)
        .arg(format!("{}?offset={offset}", image.display())))
}

fn e2fsck(image: &Path, offset: u64) {
    run(Command::new("e2fsck")
        .arg("-fn")
        .arg(format!("{}?offset={offset}", image.display())));
}

/// A kernel-format POSIX ACL: `user::rwx group::r-x other::---` plus
/// `user:1000:rwx` and its mask.
fn acl() -> Vec<u8> {
    let mut v = 2u32.to_le_bytes().to_vec();
    for (tag, perm, id) in [
        (1u16, 7u16, u32::MAX),
        (2, 7, 1000),
        (4, 5, u32::MAX),
        (0x10, 7, u32::MAX),
        (0x20, 0, u32::MAX),
    ] {
        v.extend_from_slice(&tag.to_le_bytes());
        v.extend_from_slice(&perm.to_le_bytes());
        v.extend_from_slice(&id.to_le_bytes());
    }
    v
}

/// Every kind of file, with what an unprivileged stage cannot hold;
/// `reverse` creates the big directory's entries in the other order.
fn synthetic(stage: &Path, reverse: bool) -> Rootfs {
    let mut r = Rootfs::new(stage.to_path_buf(), MTIME).unwrap();
    let p = Path::new;
    for (dir, mode) in [
        ("bin", 0o755),
        ("dev", 0o755),
        ("tmp", 0o1777),
        ("home", 0o755),
        ("big", 0o755),
    ] {
        r.dir(p(dir), meta(mode, 0, 0, T)).unwrap();
    }
    r.dir(p("home/alice"), meta(0o700, 1000, 1000, T)).unwrap();
    r.file(p("bin/su"), meta(0o4755, 0, 0, T), &mut &b"#!/bin/sh\n"[..])
        .unwrap();
    let mut ping = meta(0o755, 0, 0, T);
    ping.xattrs
        .insert("security.capability".into(), CAP_NET_RAW.to_vec());
    ping.xattrs.insert("user.note".into(), b"ferry".to_vec());
    r.file(p("bin/ping"), ping, &mut &b"\x7fELF"[..]).unwrap();
    let mut journal = meta(0o2755, 0, 101, T);
    journal
        .xattrs
        .insert("system.posix_acl_access".into(), acl());
    journal
        .xattrs
        .insert("system.posix_acl_default".into(), acl());
    r.dir(p("journal"), journal).unwrap();
    r.file(
        p("home/alice/big-uid"),
        meta(0o640, 70000, 80000, T),
        &mut &b"x"[..],
    )
    .unwrap();
    r.hard_link(p("bin/su-again"), p("bin/su")).unwrap();
    // Several extents' worth and more than one compared chunk.
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    r.file(p("bin/busybox"), meta(0o755, 0, 0, T), &mut &data[..])
        .unwrap();
    r.symlink(p("bin/sh"), p("busybox"), meta(0o777, 0, 0, T))
        .unwrap();
    let long = "/usr/lib/x86_64-linux-gnu/a-target-longer-than-sixty-bytes/libsomething.so.1";
    r.symlink(p("bin/long"), p(long), meta(0o777, 0, 0, T))
        .unwrap();
    for (name, kind) in [
        ("dev/null", Kind::CharDevice { major: 1, minor: 3 }),
        ("dev/sda", Kind::BlockDevice { major: 8, minor: 0 }),
        (
            "dev/nvme-big",
            Kind::CharDevice {
                major: 259,
                minor: 300,
            },
        ),
        ("dev/initctl", Kind::Fifo),
    ] {
        r.special(p(name), kind, meta(0o620, 0, 5, T)).unwrap();
    }
    // Hard links to a device, a FIFO and a symlink (the last one becomes
    // a symlink of its own).
    r.hard_link(p("dev/null-too"), p("dev/null")).unwrap();
    r.hard_link(p("dev/initctl-too"), p("dev/initctl")).unwrap();
    r.hard_link(p("bin/sh-too"), p("bin/sh")).unwrap();
    let mut names: Vec<String> = (0..600)
        .map(|i| format!("entry-with-a-longish-name-{i:04}"))
        .collect();
    if reverse {
        names.reverse();
    }
    for name in names {
        r.file(&p("big").join(name), meta(0o600, 2, 3, T), &mut &b""[..])
            .unwrap();
    }
    r
}

/// The synthetic tree in an ext4 filesystem at 1 MiB of a new file.
fn make_fs(rootfs: &Rootfs, image: &Path, work: &Path) -> (File, Params) {
    let params = Params {
        uuid: [0x11; 16],
        hash_seed: [0x22; 16],
        offset: MIB,
        bytes: 32 * MIB,
        inode_size: ext4::inode_size(rootfs.tree()).unwrap(),
        inodes: 2048,
        journal_mib: 4,
        mtime: MTIME,
    };
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(image)
        .unwrap();
    file.set_len(34 * MIB).unwrap();
    ext4::mke2fs(rootfs.stage().root(), image, work, &params).unwrap();
    (file, params)
}

#[test]
fn ext4_fixup_sets_what_the_stage_cannot_hold() {
    let dir = tempfile::tempdir().unwrap();
    let rootfs = synthetic(&dir.path().join("stage"), false);
    let image = dir.path().join("fs.img");
    let (file, params) = make_fs(&rootfs, &image, dir.path());
    let tree = rootfs.tree();

    // What mke2fs alone made is not the image: the read-back says so.
    let err = ext4::check(&file, params.offset, &rootfs, &NoProgress, "t").unwrap_err();
    assert!(matches!(err, Ext4Error::Differs { .. }), "{err}");

    let stats = ext4::fix_up(&file, params.offset, tree, &NoProgress, "t").unwrap();
    assert_eq!(stats.devices, 3);
    assert_eq!(stats.acls, 2);
    assert!(
        stats.skipped_xattrs.is_empty(),
        "{:?}",
        stats.skipped_xattrs
    );
    ext4::check(&file, params.offset, &rootfs, &NoProgress, "t").unwrap();
    drop(file);
    e2fsck(&image, MIB);

    let stat = |path: &str| debugfs(&image, MIB, &format!("stat {path}"));
    let su = stat("/bin/su");
    assert!(su.contains("Mode:  04755"), "{su}");
    assert!(su.contains("Links: 2"), "{su}");
    assert!(su.contains("mtime: 0x6553e2f0"), "{su}");
    assert!(su.contains("crtime: 0x6553e2f0"), "{su}");
    let big_uid = stat("/home/alice/big-uid");
    assert!(big_uid.contains("User: 70000   Group: 80000"), "{big_uid}");
    let alice = stat("/home/alice");
    assert!(
        alice.contains("Mode:  0700") && alice.contains("User:  1000"),
        "{alice}"
    );
    assert!(stat("/tmp").contains("Mode:  01777"));
    let null = stat("/dev/null");
    assert!(null.contains("Type: character special"), "{null}");
    assert!(null.contains("Device major/minor number: 01:03"), "{null}");
    assert!(
        null.contains("Mode:  0620") && null.contains("Group:     5"),
        "{null}"
    );
    let big = stat("/dev/nvme-big");
    assert!(big.contains("Device major/minor number: 259:300"), "{big}");
    assert!(stat("/dev/sda").contains("Type: block special"));
    assert!(stat("/dev/initctl").contains("Type: FIFO"));
    for linked in ["/dev/null-too", "/dev/initctl-too"] {
        let st = stat(linked);
        assert!(
            st.contains("Links: 2") && st.contains("Mode:  0620"),
            "{st}"
        );
    }
    assert!(stat("/dev/null-too").contains("Device major/minor number: 01:03"));
    assert!(stat("/bin/sh-too").contains("Links: 1"));
    assert!(stat("/bin/long").contains("Type: symlink"));
    let ls = debugfs(&image, MIB, "ls -l /dev");
    assert!(ls.contains("null"), "{ls}");

    let ping = debugfs(&image, MIB, "ea_list /bin/ping");
    assert!(ping.contains("security.capability (20)"), "{ping}");
    assert!(ping.contains("user.note (5) = \"ferry\""), "{ping}");
    let journal = debugfs(&image, MIB, "ea_list /journal");
    // debugfs shows ext4's ACL format converted back to the kernel's.
    assert!(journal.contains("system.posix_acl_access"), "{journal}");
    assert!(journal.contains("system.posix_acl_default"), "{journal}");
    assert!(stat("/journal").contains("Mode:  02755"));

    // The reader walks htree-indexed directories too: e2fsck -D indexes
    // the big one (mke2fs -d leaves it linear), and the read-back still
    // finds every entry with its checksums right.
    let indexed = dir.path().join("indexed.img");
    std::fs::copy(&image, &indexed).unwrap();
    let status = Command::new("e2fsck")
        .arg("-fyD")
        .arg(format!("{}?offset={MIB}", indexed.display()))
        .output()
        .unwrap()
        .status;
    // 1: the filesystem was changed (its directories rewritten).
    assert!(matches!(status.code(), Some(0 | 1)), "{status}");
    let big = debugfs(&indexed, MIB, "stat /big");
    assert!(big.contains("Flags: 0x81000"), "not indexed: {big}");
    let file = File::open(&indexed).unwrap();
    ext4::check(&file, MIB, &rootfs, &NoProgress, "t").unwrap();

    // A byte of a file's content changed: the read-back names the file
    // and the byte.
    let bmap = debugfs(&indexed, MIB, "bmap /bin/busybox 500");
    let block: u64 = bmap.lines().find_map(|l| l.trim().parse().ok()).unwrap();
    flip_byte(&indexed, MIB + block * 4096 + 17);
    let file = File::open(&indexed).unwrap();
    let err = ext4::check(&file, MIB, &rootfs, &NoProgress, "t").unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "/bin/busybox: the ext4 filesystem read back differs from the image: content differs from the staged copy at byte {}",
            500 * 4096 + 17
        )
    );

    // The same tree made in another order, staged elsewhere: same bytes.
    let dir2 = tempfile::tempdir().unwrap();
    let rootfs2 = synthetic(&dir2.path().join("other-stage"), true);
    let image2 = dir2.path().join("fs.img");
    let (file2, _) = make_fs(&rootfs2, &image2, dir2.path());
    ext4::fix_up(&file2, MIB, rootfs2.tree(), &NoProgress, "t").unwrap();
    drop(file2);
    assert_eq!(sha256(&image), sha256(&image2));
}

/// The Debian disk, built once for the tests that read it.
struct Built {
    disk: PathBuf,
    report: DiskReport,
    /// What the disk holds (the boot files added).
    rootfs: Rootfs,
}

fn options(size: Option<u64>) -> DiskOptions {
    DiskOptions {
        size,
        free: 64 * MIB,
        cmdline_extra: String::new(),
        identity: "debian-12-test".into(),
        mtime: MTIME,
    }
}

fn build_debian(dir: &Path, size: Option<u64>) -> Result<(PathBuf, DiskReport, Rootfs), DiskError> {
    let mut rootfs = fixture::debian_rootfs(&dir.join("stage"), MTIME);
    let kernel = kernel::find(rootfs.tree()).unwrap();
    let work = dir.join("work");
    std::fs::create_dir_all(&work).unwrap();
    let out = dir.join("debian.raw");
    let report = disk::write(
        &mut rootfs,
        &kernel,
        &options(size),
        &out,
        &work,
        &NoProgress,
    )?;
    Ok((out, report, rootfs))
}

fn debian_disk() -> &'static Built {
    static BUILT: OnceLock<Built> = OnceLock::new();
    BUILT.get_or_init(|| {
        let dir = crate::util::run_dir("disk");
        let (disk, report, rootfs) = build_debian(&dir, None).unwrap();
        Built {
            disk,
            report,
            rootfs,
        }
    })
}

fn extract(disk: &Path, offset: u64, len: u64, out: &Path) {
    let mut from = File::open(disk).unwrap();
    from.seek(SeekFrom::Start(offset)).unwrap();
    let mut to = File::create(out).unwrap();
    std::io::copy(&mut from.take(len), &mut to).unwrap();
    to.flush().unwrap();
}

#[test]
fn debian_disk_passes_sgdisk_fsck_fat_and_e2fsck() {
    let built = debian_disk();
    let disk = &built.disk;
    let verify = run(Command::new("sgdisk").arg("-v").arg(disk));
    assert!(verify.contains("No problems found"), "{verify}");
    let table = run(Command::new("sgdisk").arg("-p").arg(disk));
    assert!(
        table.contains("EF02") && table.contains("EF00") && table.contains("8304"),
        "{table}"
    );
    assert!(
        table.contains(&built.report.disk_guid.to_uppercase()),
        "{table}\n{}",
        built.report.disk_guid
    );
    // The file is sparse: far less is allocated than its size.
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(disk).unwrap();
    assert!(
        meta.blocks() * 512 < meta.len() * 3 / 4,
        "{} of {}",
        meta.blocks() * 512,
        meta.len()
    );

    let dir = tempfile::tempdir().unwrap();
    let esp = dir.path().join("esp.img");
    extract(disk, 2 * MIB, 128 * MIB, &esp);
    run(Command::new("fsck.fat").arg("-n").arg(&esp));
    let root = 130 * MIB;
    e2fsck(disk, root);

    let stat = |path: &str| debugfs(disk, root, &format!("stat {path}"));
    let chfn = stat("/usr/bin/chfn");
    assert!(
        chfn.contains("Mode:  04755") && chfn.contains("User:     0"),
        "{chfn}"
    );
    let shadow = stat("/etc/shadow");
    assert!(
        shadow.contains("Mode:  0640") && shadow.contains("Group:    42"),
        "{shadow}"
    );
    let null = stat("/dev/null");
    assert!(null.contains("Device major/minor number: 01:03"), "{null}");
    let ping = debugfs(disk, root, "ea_list /usr/bin/ping");
    assert!(ping.contains("security.capability (20)"), "{ping}");
    let journal = debugfs(disk, root, "ea_list /var/log/journal");
    assert!(journal.contains("system.posix_acl_default"), "{journal}");
    let fstab = debugfs(disk, root, "cat /etc/fstab");
    assert!(
        fstab.contains(&format!(
            "UUID={} / ext4 defaults 0 1",
            built.report.root_uuid
        )),
        "{fstab}"
    );
    assert!(fstab.contains(&format!(
        "UUID={} /boot/efi vfat umask=0077",
        built.report.esp_uuid
    )));
    let cfg = debugfs(disk, root, "cat /boot/grub/grub.cfg");
    assert!(
        cfg.contains(&format!("root=UUID={} ro", built.report.root_uuid)),
        "{cfg}"
    );
}

/// `disk::verify` on a copy of the Debian disk with one thing changed.
fn verify_altered(alter: impl FnOnce(&Path)) -> DiskError {
    let built = debian_disk();
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("altered.raw");
    std::fs::copy(&built.disk, &copy).unwrap();
    disk::verify(&copy, &built.rootfs, &built.report, &NoProgress).unwrap();
    alter(&copy);
    disk::verify(&copy, &built.rootfs, &built.report, &NoProgress).unwrap_err()
}

fn flip_byte(path: &Path, offset: u64) {
    use std::os::unix::fs::FileExt;
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut b = [0u8];
    file.read_exact_at(&mut b, offset).unwrap();
    file.write_all_at(&[b[0] ^ 0x40], offset).unwrap();
}

#[test]
fn the_read_back_catches_a_damaged_gpt_core_img_inode_or_file() {
    let size = debian_disk().report.size;
    // A byte of the backup GPT header (the disk's last sector).
    let err = verify_altered(|p| flip_byte(p, size - 512 + 20));
    assert!(
        err.to_string().contains("Backup GPT copy is damaged"),
        "{err}"
    );
    // A byte of core.img past its first sector.
    let err = verify_altered(|p| flip_byte(p, MIB + 1000));
    assert!(matches!(err, DiskError::BiosCheck(_)), "{err}");
    // /etc/shadow made world-readable behind ferry's back.
    let err = verify_altered(|p| {
        run(Command::new("debugfs")
            .arg("-w")
            .arg("-R")
            .arg("set_inode_field /etc/shadow mode 0100644")
            .arg(format!("{}?offset={}", p.display(), 130 * MIB)));
    });
    assert_eq!(
        err.to_string(),
        "/etc/shadow: the ext4 filesystem read back differs from the image: mode 100644, expected 100640"
    );
    // A byte of /etc/passwd's content.
    let err = verify_altered(|p| {
        let root = 130 * MIB;
        let bmap = debugfs(p, root, "bmap /etc/passwd 0");
        let block: u64 = bmap.lines().find_map(|l| l.trim().parse().ok()).unwrap();
        flip_byte(p, root + block * 4096 + 5);
    });
    assert_eq!(
        err.to_string(),
        "/etc/passwd: the ext4 filesystem read back differs from the image: content differs from the staged copy at byte 5"
    );
}

#[test]
fn debian_disk_is_reproducible() {
    let built = debian_disk();
    let dir = tempfile::tempdir().unwrap();
    let (again, report, _) = build_debian(dir.path(), None).unwrap();
    assert_eq!(report.root_uuid, built.report.root_uuid);
    assert_eq!(sha256(&again), sha256(&built.disk));
}

#[test]
fn a_disk_too_small_is_refused_naming_both_sizes() {
    let dir = tempfile::tempdir().unwrap();
    let err = build_debian(dir.path(), Some(300 * MIB)).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, DiskError::TooSmall { .. }), "{text}");
    assert!(
        text.starts_with(
            "disk too small: 300 MiB (314572800 bytes) given, the image needs at least "
        ),
        "{text}"
    );
    // Nothing is left behind, under its name or a temporary one.
    let mut left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    left.sort();
    assert_eq!(left, ["stage", "work"]);
}

fn boot(firmware: Firmware, marker: &str) {
    let built = debian_disk();
    let work = tempfile::tempdir().unwrap();
    let log = qemu::boot_until(
        firmware,
        &Medium::Disk {
            path: built.disk.clone(),
            format: "raw",
        },
        marker,
        Duration::from_secs(300),
        work.path(),
    );
    assert!(log.contains(marker));
}

#[test]
fn debian_disk_boots_under_seabios() {
    boot(Firmware::SeaBios, "FERRY-IMAGE-OK disk bios");
}

#[test]
fn debian_disk_boots_under_ovmf() {
    boot(Firmware::Ovmf, "FERRY-IMAGE-OK disk efi");
}
