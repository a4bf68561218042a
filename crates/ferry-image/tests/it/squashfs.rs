//! The squashfs writer against squashfs-tools 4.5.1 (Debian's
//! `squashfs-tools`), the reference reader: a synthetic tree with every
//! kind of file is written, listed with `unsquashfs -lln`, extracted
//! with `unsquashfs -d` (as root, so owners, devices and xattrs are
//! restored) and compared with the tree and the stage.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use ferry_image::output::squashfs::{
    self, Compression, SquashfsError, SquashfsOptions, SquashfsReport,
};
use ferry_image::rootfs::{Kind, Meta, Rootfs};
use ferry_oci::progress::NoProgress;

use crate::snapshot;
use crate::util::{CAP_NET_RAW, meta, noise, run, with_xattrs};

const BS: usize = 4096;
const T0: i64 = 1_700_000_000;

/// Every kind of file, hard links, special modes, xattrs (one squashfs
/// cannot store), block-boundary sizes, zeros, duplicates, long names
/// and a directory of more than one metadata block of entries.
fn synthetic(stage: PathBuf) -> Rootfs {
    let mut r = Rootfs::new(stage, T0).unwrap();
    let mut t = T0;
    let mut next = || {
        t += 61;
        t
    };
    let p = Path::new;
    for (dir, mode, uid, gid) in [
        ("etc", 0o755, 0, 0),
        ("tmp", 0o1777, 0, 0),
        ("srv", 0o2775, 1000, 1000),
        ("usr", 0o755, 0, 0),
        ("usr/bin", 0o755, 0, 0),
        ("data", 0o700, 65534, 65534),
        ("dev", 0o755, 0, 0),
        ("run", 0o755, 0, 0),
        ("many", 0o755, 0, 0),
        ("empty-dir", 0o555, 0, 0),
    ] {
        r.dir(p(dir), meta(mode, uid, gid, next())).unwrap();
    }
    r.set_meta(
        p("srv"),
        with_xattrs(
            meta(0o2775, 1000, 1000, next()),
            &[("trusted.overlay.opaque", b"y")],
        ),
    )
    .unwrap();
    let mut file = |path: &str, m: Meta, content: &[u8]| {
        r.file(p(path), m, &mut &content[..]).unwrap();
    };
    file(
        "usr/bin/ping",
        with_xattrs(
            meta(0o4755, 0, 0, next()),
            &[("security.capability", CAP_NET_RAW)],
        ),
        &noise(10_000, 1),
    );
    file("usr/bin/wall", meta(0o2755, 0, 5, next()), &noise(300, 2));
    file(
        "etc/acl",
        with_xattrs(
            meta(0o640, 0, 42, next()),
            &[
                ("user.note", b"kept"),
                ("system.posix_acl_access", b"\x02\0\0\0"),
            ],
        ),
        b"acl\n",
    );
    file("etc/empty", meta(0o644, 0, 0, next()), b"");
    file(
        "data/one-block",
        meta(0o600, 1000, 1000, next()),
        &noise(BS, 3),
    );
    file(
        "data/one-block-plus-one",
        meta(0o644, 0, 0, next()),
        &noise(BS + 1, 4),
    );
    file(
        "data/zeros",
        meta(0o644, 0, 0, next()),
        &vec![0; 3 * BS + 100],
    );
    let mut holey = noise(BS, 5);
    holey.extend(vec![0; BS]);
    holey.extend(noise(BS / 2, 6));
    file("data/holey", meta(0o644, 0, 0, next()), &holey);
    let big_twin = noise(2 * BS + 500, 7);
    file("data/twin-a", meta(0o644, 0, 0, next()), &big_twin);
    file("srv/twin-b", meta(0o600, 1000, 1000, next()), &big_twin);
    file(
        "etc/small-twin-a",
        meta(0o644, 0, 0, next()),
        b"same small bytes\n",
    );
    file(
        "srv/small-twin-b",
        meta(0o644, 0, 0, next()),
        b"same small bytes\n",
    );
    file("data/linked", meta(0o755, 0, 0, next()), &noise(BS + 7, 8));
    let long = "n".repeat(255);
    file(
        &format!("etc/{long}"),
        meta(0o644, 0, 0, next()),
        b"long name\n",
    );
    r.hard_link(p("usr/linked-2"), p("data/linked")).unwrap();
    r.hard_link(p("etc/linked-3"), p("data/linked")).unwrap();
    let link = |r: &mut Rootfs, path: &str, target: &str, t: i64| {
        r.symlink(p(path), p(target), meta(0o777, 0, 0, t)).unwrap();
    };
    link(&mut r, "lib", "usr/lib", next());
    link(&mut r, "etc/abs", "/usr/bin/ping", next());
    link(&mut r, "etc/long-target", &"../".repeat(150), next());
    for (path, kind, mode, gid) in [
        (
            "dev/null",
            Kind::CharDevice { major: 1, minor: 3 },
            0o666,
            0,
        ),
        (
            "dev/sda1",
            Kind::BlockDevice { major: 8, minor: 1 },
            0o660,
            6,
        ),
        (
            "dev/nvme-big-minor",
            Kind::BlockDevice {
                major: 259,
                minor: 70_000,
            },
            0o660,
            6,
        ),
        ("run/initctl", Kind::Fifo, 0o600, 0),
    ] {
        r.special(p(path), kind, meta(mode, 0, gid, next()))
            .unwrap();
    }
    r.hard_link(p("dev/null-too"), p("dev/null")).unwrap();
    r.hard_link(p("run/initctl-too"), p("run/initctl")).unwrap();
    // 700 entries of ~55-byte names: over 256 entries per header and
    // several metadata blocks of listing, so directory index entries.
    for i in 0..700 {
        let name = format!("many/entry-{i:04}-{}", "x".repeat(40));
        if i % 100 == 0 {
            r.dir(p(&name), meta(0o755, 0, 0, T0)).unwrap();
        } else {
            let t = T0 + i;
            r.file(p(&name), meta(0o644, 0, 0, t), &mut &name.as_bytes()[..])
                .unwrap();
        }
    }
    r
}

fn options(compression: Compression, processors: usize) -> SquashfsOptions {
    SquashfsOptions {
        compression,
        block_size: BS as u32,
        processors,
        mkfs_time: T0 + 12345,
    }
}

/// `rootfs` as a squashfs image at `image` (zstd level 3, two threads),
/// read back by ferry's verifier.
fn write_verified(rootfs: &Rootfs, image: &Path) -> SquashfsReport {
    let options = options(Compression::Zstd { level: 3 }, 2);
    let report = squashfs::write(rootfs, image, &options, &NoProgress).unwrap();
    squashfs::verify(image, rootfs).unwrap();
    report
}

/// `ls -l`'s mode string.
fn mode_string(kind: &Kind, mode: u32) -> String {
    let mut s = String::from(match kind {
        Kind::Directory => 'd',
        Kind::File { .. } => '-',
        Kind::Symlink { .. } => 'l',
        Kind::CharDevice { .. } => 'c',
        Kind::BlockDevice { .. } => 'b',
        Kind::Fifo => 'p',
    });
    for (shift, special, set, unset) in [
        (6, 0o4000, 's', 'S'),
        (3, 0o2000, 's', 'S'),
        (0, 0o1000, 't', 'T'),
    ] {
        let bits = (mode >> shift) & 7;
        s.push(if bits & 4 != 0 { 'r' } else { '-' });
        s.push(if bits & 2 != 0 { 'w' } else { '-' });
        s.push(match (bits & 1 != 0, mode & special != 0) {
            (true, true) => set,
            (false, true) => unset,
            (true, false) => 'x',
            (false, false) => '-',
        });
    }
    s
}

fn minute(t: i64) -> String {
    let d = time::OffsetDateTime::from_unix_timestamp(t).unwrap();
    d.format(time::macros::format_description!(
        "[year]-[month]-[day] [hour]:[minute]"
    ))
    .unwrap()
}

/// `unsquashfs -lln -UTC` as (path, [mode, owner, size, time, target]),
/// directory sizes left out (squashfs-internal).
fn listing(image: &Path) -> BTreeMap<String, Vec<String>> {
    let out = run(Command::new("unsquashfs").args(["-lln", "-UTC"]).arg(image));
    out.lines()
        .map(|line| {
            let mut f: Vec<String> = line.split_whitespace().map(String::from).collect();
            if f[2].ends_with(',') {
                // A device's "8,  1": major and minor as two fields.
                let minor = f.remove(3);
                f[2].push_str(&minor);
            }
            assert!(f.len() >= 6, "unexpected unsquashfs line: {line:?}");
            let path = f[5]
                .strip_prefix("squashfs-root")
                .unwrap()
                .trim_start_matches('/');
            let size = if f[0].starts_with('d') { "-" } else { &f[2] };
            let target = f.get(7).map_or("", String::as_str);
            let when = format!("{} {}", f[3], f[4]);
            (
                path.to_string(),
                vec![f[0].clone(), f[1].clone(), size.into(), when, target.into()],
            )
        })
        .collect()
}

fn expected_listing(rootfs: &Rootfs) -> BTreeMap<String, Vec<String>> {
    rootfs
        .tree()
        .iter()
        .map(|(path, _, inode)| {
            let (size, target) = match &inode.kind {
                Kind::Directory => ("-".to_string(), String::new()),
                Kind::File { size } => (size.to_string(), String::new()),
                Kind::Symlink { target } => {
                    let t = target.display().to_string();
                    (t.len().to_string(), t)
                }
                Kind::CharDevice { major, minor } | Kind::BlockDevice { major, minor } => {
                    // unsquashfs 4.5.1 lists the 32-bit rdev as `rdev >> 8,
                    // rdev & 0xff` (it extracts it right, as the kernel reads
                    // it): the same as major,minor for minors under 256.
                    let rdev = (minor & 0xff) | (major << 8) | ((minor & !0xff) << 12);
                    (format!("{},{}", rdev >> 8, rdev & 0xff), String::new())
                }
                Kind::Fifo => ("0".into(), String::new()),
            };
            let m = &inode.meta;
            (
                path.display().to_string(),
                vec![
                    mode_string(&inode.kind, m.mode),
                    format!("{}/{}", m.uid, m.gid),
                    size,
                    minute(m.mtime),
                    target,
                ],
            )
        })
        .collect()
}

/// Only the differing entries, so a failure stays readable.
fn assert_same_listing(
    found: &BTreeMap<String, Vec<String>>,
    expected: &BTreeMap<String, Vec<String>>,
) {
    let diff: Vec<String> = expected
        .keys()
        .chain(found.keys())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .filter(|k| found.get(*k) != expected.get(*k))
        .map(|k| {
            format!(
                "{k}: unsquashfs {:?}, tree {:?}",
                found.get(k),
                expected.get(k)
            )
        })
        .collect();
    assert!(
        diff.is_empty(),
        "unsquashfs -lln differs:\n{}",
        diff.join("\n")
    );
}

/// Extracts `image` with `unsquashfs -d` and compares every path with
/// the tree and the stage ([`snapshot`]): kind, mode, owner, mtime,
/// device, link target, bytes, hard links, xattrs.
fn assert_extracts_like_the_tree(image: &Path, rootfs: &Rootfs, scratch: &Path) {
    assert!(
        fs::metadata("/proc/self").unwrap().uid() == 0,
        "these tests extract as root (owners, devices, security.* xattrs)"
    );
    let dest = scratch.join("extracted");
    let _ = fs::remove_dir_all(&dest);
    run(Command::new("unsquashfs")
        .args(["-no-progress", "-d"])
        .arg(&dest)
        .arg(image));
    let mut expected = snapshot::of_rootfs(rootfs);
    let mut found = snapshot::of_dir(&dest);
    for (path, node) in expected.iter_mut() {
        // squashfs stores no system.* xattrs (POSIX ACLs): the writer
        // reports them skipped.
        node.xattrs.retain(|name, _| !name.starts_with("system."));
        // unsquashfs 4.5.1 leaves a symlink's own mtime alone.
        if node.kind.starts_with("symlink")
            && let Some(extracted) = found.get_mut(path)
        {
            extracted.mtime = node.mtime;
        }
    }
    snapshot::assert_same(&found, "unsquashfs", &expected, "tree");
}

#[test]
fn unsquashfs_lists_and_extracts_exactly_the_tree() {
    let dir = tempfile::tempdir().unwrap();
    let rootfs = synthetic(dir.path().join("stage"));
    let image = dir.path().join("root.squashfs");
    let report = write_verified(&rootfs, &image);
    assert_eq!(report.duplicate_files, 2, "{report:?}");
    assert_eq!(
        report.skipped_xattrs,
        BTreeMap::from([("system.posix_acl_access".to_string(), 1)])
    );
    // zeros: 3 full blocks + a 100-byte zero tail; holey: 1.
    assert_eq!(report.sparse_blocks, 5, "{report:?}");
    assert_eq!(report.bytes % 4096, 0);
    assert_eq!(report.bytes, fs::metadata(&image).unwrap().len());

    assert_same_listing(&listing(&image), &expected_listing(&rootfs));
    let stat = run(Command::new("unsquashfs").arg("-s").arg(&image));
    assert!(stat.contains("Compression zstd"), "{stat}");
    assert!(stat.contains("Block size 4096"), "{stat}");
    assert!(stat.contains("Filesystem is exportable via NFS"), "{stat}");
    let mkfs = run(Command::new("unsquashfs").arg("-mkfs-time").arg(&image));
    assert_eq!(mkfs.trim(), (T0 + 12345).to_string());
    assert_extracts_like_the_tree(&image, &rootfs, dir.path());
}

/// Sums what the writer reports.
#[derive(Default)]
struct Counted {
    total: std::sync::Mutex<Option<u64>>,
    advanced: std::sync::atomic::AtomicU64,
    outcome: std::sync::Mutex<String>,
}

impl ferry_oci::progress::Progress for Counted {
    fn start(&self, _id: &str, _label: &str, total: Option<u64>) {
        *self.total.lock().unwrap() = total;
    }
    fn advance(&self, _id: &str, bytes: u64) {
        self.advanced
            .fetch_add(bytes, std::sync::atomic::Ordering::Relaxed);
    }
    fn finish(&self, _id: &str, outcome: &str) {
        *self.outcome.lock().unwrap() = outcome.to_string();
    }
}

#[test]
fn progress_counts_every_file_byte_once() {
    let dir = tempfile::tempdir().unwrap();
    let rootfs = synthetic(dir.path().join("stage"));
    let progress = Counted::default();
    let report = squashfs::write(
        &rootfs,
        &dir.path().join("root.squashfs"),
        &options(Compression::Zstd { level: 3 }, 2),
        &progress,
    )
    .unwrap();
    assert_eq!(*progress.total.lock().unwrap(), Some(report.file_bytes));
    assert_eq!(
        progress.advanced.load(std::sync::atomic::Ordering::Relaxed),
        report.file_bytes,
        "duplicates included"
    );
    assert_eq!(*progress.outcome.lock().unwrap(), "written");
}

#[test]
fn xz_and_gzip_images_extract_like_the_tree() {
    let dir = tempfile::tempdir().unwrap();
    let rootfs = synthetic(dir.path().join("stage"));
    for (compression, name) in [
        (Compression::Xz, "xz"),
        // Not gzip's default level: a compression-options block.
        (Compression::Gzip { level: 6 }, "gzip"),
        (Compression::Zstd { level: 19 }, "zstd"),
    ] {
        let image = dir.path().join(format!("{name}.squashfs"));
        squashfs::write(&rootfs, &image, &options(compression, 2), &NoProgress).unwrap();
        squashfs::verify(&image, &rootfs).unwrap();
        let stat = run(Command::new("unsquashfs").arg("-s").arg(&image));
        assert!(stat.contains(&format!("Compression {name}")), "{stat}");
        assert_extracts_like_the_tree(&image, &rootfs, dir.path());
    }
}

#[test]
fn the_image_is_the_same_whatever_the_thread_count() {
    let dir = tempfile::tempdir().unwrap();
    let rootfs = synthetic(dir.path().join("stage"));
    let mut images = Vec::new();
    for threads in [1, 4] {
        let image = dir.path().join(format!("{threads}.squashfs"));
        squashfs::write(
            &rootfs,
            &image,
            &options(Compression::Zstd { level: 3 }, threads),
            &NoProgress,
        )
        .unwrap();
        images.push(fs::read(&image).unwrap());
    }
    use sha2::Digest;
    assert_eq!(
        sha2::Sha256::digest(&images[0]),
        sha2::Sha256::digest(&images[1]),
        "1 and 4 threads differ"
    );
}

#[test]
fn verify_catches_a_flipped_byte_and_a_tree_the_image_does_not_match() {
    let dir = tempfile::tempdir().unwrap();
    let mut rootfs = synthetic(dir.path().join("stage"));
    let image = dir.path().join("root.squashfs");
    write_verified(&rootfs, &image);
    let good = fs::read(&image).unwrap();

    // The data starts right after the 96-byte superblock.
    let mut bad = good.clone();
    bad[200] ^= 0x40;
    fs::write(&image, &bad).unwrap();
    let err = squashfs::verify(&image, &rootfs).unwrap_err();
    assert!(matches!(err, SquashfsError::Mismatch { .. }), "{err}");

    fs::write(&image, &good).unwrap();
    let path = Path::new("usr/bin/ping");
    let mut m = rootfs.tree().get(path).unwrap().meta.clone();
    m.xattrs.clear();
    rootfs.set_meta(path, m).unwrap();
    let err = squashfs::verify(&image, &rootfs).unwrap_err();
    assert!(
        matches!(&err, SquashfsError::Mismatch { path, what, .. } if path == "/usr/bin/ping" && what.contains("xattrs")),
        "{err}"
    );
}

#[test]
fn a_stage_that_changed_fails_the_write_and_leaves_no_image() {
    let dir = tempfile::tempdir().unwrap();
    let rootfs = synthetic(dir.path().join("stage"));
    let staged = rootfs
        .stage()
        .host_path(Path::new("data/one-block-plus-one"));
    fs::OpenOptions::new()
        .append(true)
        .open(&staged)
        .unwrap()
        .write_all(b"more")
        .unwrap();
    let out = dir.path().join("out");
    fs::create_dir(&out).unwrap();
    let image = out.join("root.squashfs");
    let err = squashfs::write(
        &rootfs,
        &image,
        &options(Compression::Zstd { level: 3 }, 2),
        &NoProgress,
    )
    .unwrap_err();
    assert!(
        matches!(&err, SquashfsError::StageChanged { path, expected, found } if path == "/data/one-block-plus-one" && *expected == BS as u64 + 1 && *found > *expected),
        "{err}"
    );
    assert_eq!(
        fs::read_dir(&out).unwrap().count(),
        0,
        "something was left in {out:?}"
    );
}

#[test]
fn bad_options_are_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let rootfs = synthetic(dir.path().join("stage"));
    let image = dir.path().join("root.squashfs");
    let mut o = options(Compression::Zstd { level: 3 }, 1);
    o.block_size = 3000;
    assert!(matches!(
        squashfs::write(&rootfs, &image, &o, &NoProgress),
        Err(SquashfsError::BlockSize(3000))
    ));
    o.block_size = 1 << 21;
    assert!(squashfs::write(&rootfs, &image, &o, &NoProgress).is_err());
    o.block_size = 4096;
    o.mkfs_time = -1;
    assert!(matches!(
        squashfs::write(&rootfs, &image, &o, &NoProgress),
        Err(SquashfsError::MkfsTime(-1))
    ));
    assert!(!image.exists());
}

#[test]
fn verify_reports_corruption_anywhere_as_an_error_never_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let rootfs = synthetic(dir.path().join("stage"));
    let image = dir.path().join("root.squashfs");
    write_verified(&rootfs, &image);
    let good = fs::read(&image).unwrap();
    let used = u64::from_le_bytes(good[40..48].try_into().unwrap()) as usize;
    let (mut flips, mut caught) = (0, 0);
    for at in (0..used).step_by(used / 400) {
        let mut bad = good.clone();
        bad[at] ^= 0x5a;
        fs::write(&image, &bad).unwrap();
        let verified = std::panic::catch_unwind(|| squashfs::verify(&image, &rootfs));
        let verified = verified.unwrap_or_else(|_| panic!("verify panicked on a flip at {at}"));
        flips += 1;
        caught += usize::from(verified.is_err());
    }
    // What a flip may leave unnoticed: fields no reader uses (a fragment
    // entry's `unused`, the root's parent number, ...).
    assert!(
        caught * 100 >= flips * 95,
        "{caught} of {flips} flips caught"
    );
}
