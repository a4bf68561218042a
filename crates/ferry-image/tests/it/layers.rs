//! Rootfs assembly against umoci 0.4.7 (Debian's `umoci`), an independent
//! implementation of the image spec's layer changesets (layer.md). The
//! test builds an OCI image layout by hand: three layers (gzip, zstd and
//! plain tar) with every kind of file, odd modes (setuid, setgid,
//! sticky), owners other than root, relative and absolute symlinks, hard
//! links (one to a file of a lower layer), devices, a FIFO,
//! `security.capability` and `user.*` xattrs as PAX `SCHILY.xattr`
//! records, whiteouts of a lower file and a lower directory, opaque
//! directories (the marker before and after the layer's own entries), a
//! file replaced by a directory and the reverse, writes through a symlink
//! inside the root, names longer than 100 bytes and directories the layer
//! only implies. `umoci raw unpack` (as root, so owners, devices and
//! xattrs are real) and ferry (`BaseImage::load` + `assemble`) must agree
//! on every path: kind, mode, owner, mtime, link target, hard-link
//! identity, device numbers, xattrs and content hash.
//!
//! umoci 0.4.7 reads plain and gzip layers only, so it unpacks a second
//! manifest of the same image in which the zstd layer is stored plain:
//! the same config, the same diff_ids, the same changesets.
//!
//! Where they differ on purpose:
//! - directories a layer implies without listing them: both make them
//!   `0755` and root-owned (umoci: `0777` less the umask, 022 here), but
//!   umoci dates them "now", ferry SOURCE_DATE_EPOCH, for reproducible
//!   builds;
//! - an entry named with `..` above the root, or written through a
//!   symlink that leads out of it: umoci clamps it into the root
//!   (filepath-securejoin), ferry refuses the layer and names the entry,
//!   since only a broken or hostile layer holds one.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use ferry_image::assemble::{self, AssembleError};
use ferry_image::rootfs::layer::LayerError;
use ferry_image::rootfs::{PathError, Rootfs, RootfsError};
use ferry_image::source::{BaseImage, Blobs, Platform, SourceError};
use ferry_image::spec::ImageSpec;
use ferry_oci::progress::NoProgress;
use ferry_oci::{Digest, media_type};
use serde_json::json;
use tar::{EntryType, Header};

use crate::fixture::NoArtifacts;
use crate::snapshot::{self, Snapshot};
use crate::util::{CAP_NET_RAW, noise};

/// SOURCE_DATE_EPOCH of the build; entries are dated after it.
const EPOCH: i64 = 1_600_000_000;

/// One layer's tar, written entry by entry; every entry is dated a
/// minute after the previous one.
struct LayerTar {
    tar: tar::Builder<Vec<u8>>,
    mtime: u64,
    /// PAX `SCHILY.xattr.*` records for the next entry.
    xattrs: Vec<(String, Vec<u8>)>,
}

impl LayerTar {
    fn new(first_mtime: i64) -> LayerTar {
        LayerTar {
            tar: tar::Builder::new(Vec::new()),
            mtime: first_mtime as u64,
            xattrs: Vec::new(),
        }
    }

    fn header(&mut self, kind: EntryType, mode: u32, owner: (u64, u64)) -> Header {
        self.mtime += 60;
        let mut h = Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(owner.0);
        h.set_gid(owner.1);
        h.set_mtime(self.mtime);
        h.set_size(0);
        h
    }

    /// The next entry carries these xattrs.
    fn xattrs(&mut self, xattrs: &[(&str, &[u8])]) -> &mut Self {
        self.xattrs = xattrs
            .iter()
            .map(|(k, v)| (format!("SCHILY.xattr.{k}"), v.to_vec()))
            .collect();
        self
    }

    /// The pending PAX extended header (typeflag `x`), if any: records
    /// `"LEN KEY=VALUE\n"`, LEN counting the whole record (POSIX pax(1)).
    fn flush_pax(&mut self) {
        if self.xattrs.is_empty() {
            return;
        }
        let mut data = Vec::new();
        for (key, value) in std::mem::take(&mut self.xattrs) {
            let body = key.len() + value.len() + 3;
            let mut len = body + 1;
            while len != body + len.to_string().len() {
                len = body + len.to_string().len();
            }
            data.extend(format!("{len} {key}=").as_bytes());
            data.extend(&value);
            data.push(b'\n');
        }
        let mut h = Header::new_ustar();
        h.set_entry_type(EntryType::XHeader);
        h.set_path("PaxHeaders/entry").unwrap();
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        h.set_cksum();
        self.tar.append(&h, &data[..]).unwrap();
    }

    fn entry(&mut self, mut h: Header, path: &str, data: &[u8]) -> &mut Self {
        self.flush_pax();
        h.set_size(data.len() as u64);
        self.tar.append_data(&mut h, path, data).unwrap();
        self
    }

    /// An entry whose name is written as is (`./`, `../x`), which the
    /// tar crate's path setters refuse.
    fn raw_name(&mut self, mut h: Header, name: &[u8], data: &[u8]) -> &mut Self {
        self.flush_pax();
        h.set_size(data.len() as u64);
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        h.set_cksum();
        self.tar.append(&h, data).unwrap();
        self
    }

    fn root(&mut self, mode: u32) -> &mut Self {
        let h = self.header(EntryType::Directory, mode, (0, 0));
        self.raw_name(h, b"./", b"")
    }

    fn dir(&mut self, path: &str, mode: u32, owner: (u64, u64)) -> &mut Self {
        let h = self.header(EntryType::Directory, mode, owner);
        self.entry(h, path, b"")
    }

    fn file(&mut self, path: &str, mode: u32, owner: (u64, u64), data: &[u8]) -> &mut Self {
        let h = self.header(EntryType::Regular, mode, owner);
        self.entry(h, path, data)
    }

    fn symlink(&mut self, path: &str, target: &str) -> &mut Self {
        self.symlink_mode(path, target, 0o777)
    }

    fn symlink_mode(&mut self, path: &str, target: &str, mode: u32) -> &mut Self {
        self.flush_pax();
        let mut h = self.header(EntryType::Symlink, mode, (0, 0));
        self.tar.append_link(&mut h, path, target).unwrap();
        self
    }

    fn hard_link(&mut self, path: &str, target: &str) -> &mut Self {
        self.flush_pax();
        let mut h = self.header(EntryType::Link, 0o644, (0, 0));
        self.tar.append_link(&mut h, path, target).unwrap();
        self
    }

    fn device(
        &mut self,
        path: &str,
        kind: EntryType,
        (major, minor): (u32, u32),
        mode: u32,
        gid: u64,
    ) -> &mut Self {
        let mut h = self.header(kind, mode, (0, gid));
        h.set_device_major(major).unwrap();
        h.set_device_minor(minor).unwrap();
        self.entry(h, path, b"")
    }

    fn fifo(&mut self, path: &str, mode: u32) -> &mut Self {
        let h = self.header(EntryType::Fifo, mode, (0, 0));
        self.entry(h, path, b"")
    }

    /// `.wh.NAME`: NAME of the layers below is deleted.
    fn whiteout(&mut self, path: &str) -> &mut Self {
        let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
        let marker = if dir.is_empty() {
            format!(".wh.{name}")
        } else {
            format!("{dir}/.wh.{name}")
        };
        self.file(&marker, 0o644, (0, 0), b"")
    }

    /// `DIR/.wh..wh..opq`: what the layers below put in DIR is deleted.
    fn opaque(&mut self, dir: &str) -> &mut Self {
        self.file(&format!("{dir}/.wh..wh..opq"), 0o644, (0, 0), b"")
    }

    fn finish(&mut self) -> Vec<u8> {
        let tar = std::mem::replace(&mut self.tar, tar::Builder::new(Vec::new()));
        tar.into_inner().unwrap()
    }
}

/// How a layer blob is stored.
#[derive(Debug, Clone, Copy)]
enum Stored {
    Plain,
    Gzip,
    Zstd,
}

/// A layer blob: its media type, bytes and the digest of its tar.
#[derive(Clone)]
struct LayerBlob {
    media_type: String,
    bytes: Vec<u8>,
    diff_id: Digest,
}

fn layer_blob(tar: &[u8], stored: Stored) -> LayerBlob {
    let (media_type, bytes) = match stored {
        Stored::Plain => (media_type::OCI_LAYER_TAR, tar.to_vec()),
        Stored::Gzip => {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(tar).unwrap();
            (media_type::OCI_LAYER_GZIP, gz.finish().unwrap())
        }
        Stored::Zstd => (
            media_type::OCI_LAYER_ZSTD,
            zstd::encode_all(tar, 3).unwrap(),
        ),
    };
    LayerBlob {
        media_type: media_type.to_string(),
        bytes,
        diff_id: Digest::sha256(tar),
    }
}

fn put_blob(layout: &Path, bytes: &[u8]) -> (Digest, u64) {
    let digest = Digest::sha256(bytes);
    let dir = layout.join("blobs/sha256");
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join(digest.hex()), bytes).unwrap();
    (digest, bytes.len() as u64)
}

fn descriptor(media_type: &str, (digest, size): (Digest, u64)) -> serde_json::Value {
    json!({"mediaType": media_type, "digest": digest.to_string(), "size": size})
}

/// Writes an OCI image layout at `layout` holding one linux/amd64 image
/// per `(tag, layers)`; returns their manifest digests.
fn write_layout(layout: &Path, images: &[(&str, &[LayerBlob])]) -> Vec<Digest> {
    fs::create_dir_all(layout).unwrap();
    fs::write(
        layout.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    let mut index = Vec::new();
    let mut digests = Vec::new();
    for (tag, layers) in images {
        let config = json!({
            "architecture": "amd64",
            "os": "linux",
            "config": {},
            "rootfs": {
                "type": "layers",
                "diff_ids": layers.iter().map(|l| l.diff_id.to_string()).collect::<Vec<_>>(),
            },
        });
        let config = put_blob(layout, &serde_json::to_vec(&config).unwrap());
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": media_type::OCI_MANIFEST,
            "config": descriptor(media_type::OCI_CONFIG, config),
            "layers": layers
                .iter()
                .map(|l| descriptor(&l.media_type, put_blob(layout, &l.bytes)))
                .collect::<Vec<_>>(),
        });
        let manifest = put_blob(layout, &serde_json::to_vec(&manifest).unwrap());
        digests.push(manifest.0.clone());
        let mut entry = descriptor(media_type::OCI_MANIFEST, manifest);
        entry["annotations"] = json!({ media_type::ANNOTATION_REF_NAME: tag });
        index.push(entry);
    }
    let index = json!({"schemaVersion": 2, "manifests": index});
    fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&index).unwrap(),
    )
    .unwrap();
    digests
}

/// The blobs of an OCI image layout directory.
struct LayoutBlobs(PathBuf);

impl Blobs for LayoutBlobs {
    fn open(&self, digest: &Digest) -> std::io::Result<Option<(Box<dyn Read + Send>, u64)>> {
        let path = self
            .0
            .join("blobs")
            .join(digest.algorithm().as_str())
            .join(digest.hex());
        match fs::File::open(&path) {
            Ok(file) => {
                let size = file.metadata()?.len();
                Ok(Some((Box::new(file), size)))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn describe(&self) -> String {
        self.0.display().to_string()
    }
}

fn load(layout: &Path, manifest: &Digest) -> Result<BaseImage, SourceError> {
    BaseImage::load(
        &format!("oci:{}", layout.display()),
        Arc::new(LayoutBlobs(layout.to_path_buf())),
        manifest,
        &Platform::linux_amd64(),
    )
}

/// ferry's assembly of image `manifest` of `layout`, staged in `stage`,
/// with no customization and no sysprep: the layers alone.
fn assemble(layout: &Path, manifest: &Digest, stage: &Path) -> Result<Rootfs, AssembleError> {
    let base = load(layout, manifest)?;
    let mut spec = ImageSpec::default();
    spec.sysprep.enabled = false;
    let cx = ferry_image::customize::Context {
        spec_dir: Path::new("."),
        mtime: EPOCH,
        artifacts: &NoArtifacts,
        kubernetes: &Default::default(),
    };
    let (rootfs, _) = assemble::assemble(&base, &spec, &cx, stage, &NoProgress)?;
    Ok(rootfs)
}

const LONG_DIR: &str = "usr/share/a-directory-whose-name-is-long-enough-to-need-a-gnu-long-name";

fn long_file() -> String {
    format!("{LONG_DIR}/{}", "and-a-file-name-as-long".repeat(4))
}

/// Layer 1: the base, every kind of file.
fn base_layer() -> Vec<u8> {
    let mut l = LayerTar::new(EPOCH);
    let root = (0, 0);
    let user = (1000, 1000);
    l.root(0o755)
        .dir("etc", 0o755, root)
        .file(
            "etc/passwd",
            0o644,
            root,
            b"root:x:0:0:root:/root:/bin/sh\n",
        )
        .file("etc/shadow", 0o640, (0, 42), b"root:*:19000:0:99999:7:::\n")
        .file("etc/gone", 0o644, root, b"whited out by layer 2\n")
        .file("etc/alias-a", 0o644, root, b"two names, one inode\n")
        .hard_link("etc/alias-b", "etc/alias-a")
        .symlink("etc/localtime", "/usr/share/zoneinfo/UTC")
        .symlink_mode("etc/odd-mode-link", "passwd", 0o640)
        .hard_link("etc/localtime-too", "etc/localtime")
        .dir("usr", 0o755, root)
        .dir("usr/bin", 0o755, root)
        .xattrs(&[
            ("security.capability", CAP_NET_RAW),
            ("user.origin", b"layer 1"),
        ])
        .file("usr/bin/ping", 0o4755, root, &noise(20_000, 1))
        .file("usr/bin/wall", 0o2755, (0, 5), &noise(3_000, 2))
        .file("usr/bin/sg", 0o6711, (0, 42), &noise(1_000, 3))
        .file("usr/bin/big", 0o755, root, &noise(300_000, 4))
        .file("usr/bin/linked", 0o755, root, b"one inode, two names\n")
        .symlink("usr/bin/sh", "dash")
        .hard_link("usr/bin/sh-too", "usr/bin/sh")
        .hard_link("usr/bin/linked-too", "usr/bin/linked")
        .dir("usr/lib", 0o755, root)
        .file("usr/lib/libc.so.6", 0o755, root, &noise(5_000, 5))
        .file(
            "usr/lib/libgone.so",
            0o644,
            root,
            b"whited out through lib/\n",
        )
        .symlink("lib", "usr/lib")
        .dir("usr/share", 0o755, root)
        .dir(LONG_DIR, 0o755, root)
        .file(&long_file(), 0o644, root, b"a long name\n")
        .dir("tmp", 0o1777, root)
        .dir("srv", 0o2775, user)
        .file("srv/data", 0o600, user, b"lower data\n")
        .dir("home", 0o755, root)
        .dir("home/user", 0o700, user)
        .file("home/user/.profile", 0o644, user, b"PATH=/usr/bin\n")
        .dir("dev", 0o755, root)
        .device("dev/null", EntryType::Char, (1, 3), 0o666, 0)
        .device("dev/sda", EntryType::Block, (8, 0), 0o660, 6)
        .dir("run", 0o755, root)
        .fifo("run/initctl", 0o600)
        .hard_link("run/initctl-too", "run/initctl")
        .hard_link("dev/null-too", "dev/null")
        .dir("var", 0o755, root)
        .dir("var/cache", 0o755, root)
        .file("var/cache/a", 0o644, root, b"a\n")
        .dir("var/cache/sub", 0o750, root)
        .file("var/cache/sub/b", 0o644, root, b"b\n")
        .symlink("var/run", "../run")
        .dir("opt", 0o755, root)
        .dir("opt/app", 0o755, root)
        .file("opt/app/old", 0o644, root, b"old\n")
        .dir("opt/app/old-dir", 0o755, root)
        .file("opt/app/old-dir/x", 0o644, root, b"x\n")
        .file("opt/app/kept-name", 0o644, root, b"lower\n")
        .dir("data", 0o755, root)
        .file("data/was-file", 0o644, root, b"becomes a directory\n")
        .dir("data/was-dir", 0o755, root)
        .file(
            "data/was-dir/inner",
            0o644,
            root,
            b"goes with its directory\n",
        )
        // No entries for `implicit` and `implicit/parents`.
        .file("implicit/parents/file", 0o644, root, b"implied parents\n");
    l.finish()
}

/// Layer 2: whiteouts, an opaque directory with its marker after the
/// layer's own entry, replacements, a hard link to a lower file.
fn middle_layer() -> Vec<u8> {
    let mut l = LayerTar::new(EPOCH + 100_000);
    let root = (0, 0);
    l.whiteout("etc/gone")
        .whiteout("var/cache")
        .dir("opt/app", 0o750, root)
        .file(
            "opt/app/new",
            0o644,
            root,
            b"same layer, before the marker\n",
        )
        .opaque("opt/app")
        .file("opt/app/kept-name", 0o644, root, b"upper\n")
        .dir("usr/sbin", 0o755, root)
        .hard_link("usr/sbin/ping", "usr/bin/ping")
        .dir("data/was-file", 0o710, (0, 42))
        .file("data/was-file/child", 0o644, root, b"child\n")
        .file("data/was-dir", 0o600, root, b"was a directory\n")
        .xattrs(&[("user.layer", b"2")])
        .file("etc/passwd", 0o600, root, b"root:x:0:0::/root:/bin/bash\n")
        .dir("usr/bin", 0o711, root)
        .device("dev/tty", EntryType::Char, (5, 0), 0o666, 5)
        .device("dev/nvme0n1p1", EntryType::Block, (259, 70_000), 0o660, 6);
    l.finish()
}

/// Layer 3: writes and whiteouts through a symlink inside the root, an
/// opaque directory with its marker first, a symlink replaced by a
/// directory and by a file, a hard link's name replaced and another
/// whited out.
fn top_layer() -> Vec<u8> {
    let mut l = LayerTar::new(EPOCH + 200_000);
    let root = (0, 0);
    let user = (1000, 1000);
    l.file("usr/bin/linked", 0o755, root, b"a new inode\n")
        .whiteout("etc/alias-a")
        .file(
            "lib/libnew.so",
            0o755,
            root,
            b"written through lib -> usr/lib\n",
        )
        .whiteout("lib/libgone.so")
        .dir("var/run", 0o755, root)
        .dir("var/run/lock", 0o1777, root)
        .opaque("srv")
        .file("srv/new", 0o640, user, b"upper data\n")
        .file("etc/localtime", 0o644, root, b"UTC0\n");
    l.finish()
}

/// The image three ways (gzip, zstd, plain) for ferry and with the zstd
/// layer plain for umoci; returns the layout and both manifests.
fn test_image(dir: &Path) -> (PathBuf, Digest, Digest) {
    let tars = [base_layer(), middle_layer(), top_layer()];
    let ferry = [
        layer_blob(&tars[0], Stored::Gzip),
        layer_blob(&tars[1], Stored::Zstd),
        layer_blob(&tars[2], Stored::Plain),
    ];
    let umoci = [
        ferry[0].clone(),
        layer_blob(&tars[1], Stored::Plain),
        ferry[2].clone(),
    ];
    let layout = dir.join("layout");
    let digests = write_layout(&layout, &[("ferry", &ferry), ("umoci", &umoci)]);
    (layout, digests[0].clone(), digests[1].clone())
}

fn umoci_unpack(layout: &Path, tag: &str, rootfs: &Path) {
    // Directories a layer implies are made 0777 less the umask: fix it.
    let out = Command::new("sh")
        .args([
            "-c",
            "umask 022 && exec umoci raw unpack --image \"$1\" \"$2\"",
        ])
        .arg("sh")
        .arg(format!("{}:{tag}", layout.display()))
        .arg(rootfs)
        .output()
        .expect("run umoci");
    assert!(
        out.status.success(),
        "umoci raw unpack: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn assembly_matches_umoci_raw_unpack() {
    assert!(
        std::os::unix::fs::MetadataExt::uid(&fs::metadata("/proc/self").unwrap()) == 0,
        "this test runs umoci as root (owners, devices, security.* xattrs)"
    );
    let dir = tempfile::tempdir().unwrap();
    let (layout, ferry_manifest, umoci_manifest) = test_image(dir.path());
    let umoci_root = dir.path().join("umoci");
    umoci_unpack(&layout, "umoci", &umoci_root);
    let rootfs = assemble(&layout, &ferry_manifest, &dir.path().join("stage")).unwrap();
    let mut found: Snapshot = snapshot::of_rootfs(&rootfs);
    let mut reference = snapshot::of_dir(&umoci_root);

    // The differences the module documents, checked on ferry's side and
    // set aside. Implied directories: umoci dates them, and the directory
    // holding them (here the root), at the time of the unpack.
    for implied in ["implicit", "implicit/parents", ""] {
        let path = Path::new(implied);
        let ferry_dir = found.get_mut(path).unwrap();
        let listed = if implied.is_empty() {
            EPOCH + 60
        } else {
            EPOCH
        };
        assert_eq!(
            (
                ferry_dir.mode,
                ferry_dir.uid,
                ferry_dir.gid,
                ferry_dir.mtime
            ),
            (0o755, 0, 0, listed),
            "/{implied}"
        );
        ferry_dir.mtime = 0;
        reference.get_mut(path).unwrap().mtime = 0;
    }
    // A hard link to a symlink: a symlink of its own in ferry.
    let sh_too = Path::new("usr/bin/sh-too");
    assert_eq!(found[sh_too].inode, sh_too);
    assert_eq!(reference[sh_too].inode, Path::new("usr/bin/sh"));
    reference.get_mut(sh_too).unwrap().inode = sh_too.to_path_buf();
    snapshot::assert_same(&found, "ferry", &reference, "umoci");

    // The same image with its zstd layer, as ferry reads it, and the
    // plain copy umoci read, assemble alike.
    let plain = assemble(&layout, &umoci_manifest, &dir.path().join("stage2")).unwrap();
    found = snapshot::of_rootfs(&rootfs);
    snapshot::assert_same(&found, "zstd", &snapshot::of_rootfs(&plain), "plain");

    // What the comparison rests on, spelled out: a few of the cases it
    // covers are really in the image.
    let node = |p: &str| &reference[Path::new(p)];
    assert_eq!(node("usr/sbin/ping").inode, Path::new("usr/bin/ping"));
    assert_eq!(
        node("usr/bin/ping").xattrs["security.capability"],
        CAP_NET_RAW
    );
    assert_eq!(node("usr/bin/sg").mode, 0o6711);
    assert_eq!(node("tmp").mode, 0o1777);
    assert!(node("usr/lib/libnew.so").kind.starts_with("file"));
    assert!(!reference.contains_key(Path::new("usr/lib/libgone.so")));
    assert!(!reference.contains_key(Path::new("var/cache")));
    assert!(!reference.contains_key(Path::new("opt/app/old-dir")));
    assert!(reference.contains_key(Path::new("opt/app/new")));
    assert_eq!(node("dev/nvme0n1p1").kind, "block 259,70000");
    assert_eq!(node("data/was-file").kind, "dir");
    assert_eq!(node("etc/alias-b").inode, Path::new("etc/alias-b"));
    assert_ne!(node("usr/bin/linked").kind, node("usr/bin/linked-too").kind);
    assert_eq!(node("srv").uid, 1000);
    assert!(!reference.contains_key(Path::new("srv/data")));
    assert!(reference.contains_key(Path::new(&long_file())));
}

/// A one-layer image of `tar` stored plain, assembled by ferry.
fn assemble_one(dir: &Path, tar: &[u8]) -> Result<Rootfs, AssembleError> {
    let layout = dir.join("layout");
    let digests = write_layout(&layout, &[("x", &[layer_blob(tar, Stored::Plain)])]);
    assemble(&layout, &digests[0], &dir.join("stage"))
}

/// The entry an assembly error names, and its path error.
fn path_error(err: AssembleError) -> (String, PathError) {
    match err {
        AssembleError::Layer(LayerError::Path {
            entry,
            source: RootfsError::Path(source),
            ..
        }) => (entry, source),
        other => panic!("expected a path error, got {other:?}"),
    }
}

#[test]
fn a_name_climbing_out_of_the_root_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut l = LayerTar::new(EPOCH);
    l.dir("etc", 0o755, (0, 0));
    let h = l.header(EntryType::Regular, 0o644, (0, 0));
    let tar = l.raw_name(h, b"etc/../../escaped", b"pwned\n").finish();
    let err = assemble_one(dir.path(), &tar).unwrap_err();
    let message = err.to_string();
    let (entry, source) = path_error(err);
    assert_eq!(entry, "etc/../../escaped");
    assert!(matches!(source, PathError::Traversal { .. }), "{source:?}");
    assert!(message.contains("etc/../../escaped"), "{message}");
    assert!(!dir.path().join("escaped").exists());
}

#[test]
fn a_write_through_a_symlink_leaving_the_root_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let outside = dir.path().join("outside");
    fs::create_dir(&outside).unwrap();
    let tar = LayerTar::new(EPOCH)
        .symlink("up", "../../../../../../../..")
        .file("up/pwned", 0o644, (0, 0), b"pwned\n")
        .finish();
    let err = assemble_one(dir.path(), &tar).unwrap_err();
    let message = err.to_string();
    let (entry, source) = path_error(err);
    assert_eq!(entry, "up/pwned");
    assert!(
        matches!(&source, PathError::SymlinkEscape { link, .. } if link == "/up"),
        "{source:?}"
    );
    assert!(message.contains("up/pwned") && message.contains("leaves the image root"));
    assert!(!Path::new("/pwned").exists());
}

#[test]
fn an_unknown_layer_media_type_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let tar = LayerTar::new(EPOCH)
        .file("a", 0o644, (0, 0), b"a\n")
        .finish();
    let mut blob = layer_blob(&tar, Stored::Plain);
    blob.media_type = "application/vnd.example.layer.v1.tar+lz4".into();
    let layout = dir.path().join("layout");
    let digests = write_layout(&layout, &[("x", std::slice::from_ref(&blob))]);
    let err = load(&layout, &digests[0]).err().expect("refused");
    assert!(
        matches!(&err, SourceError::UnsupportedLayer { media_type, digest, .. }
            if media_type == &blob.media_type && digest == &Digest::sha256(&blob.bytes)),
        "{err:?}"
    );
    assert!(err.to_string().contains("tar+lz4"), "{err}");
}

#[test]
fn a_layer_whose_bytes_do_not_match_its_digest_is_corrupt() {
    // One byte changed in a file's content (the tar still reads) and in
    // the middle of a gzip stream (the tar does not): both are reported
    // as the blob's digest mismatch, not as a tar error.
    for stored in [Stored::Plain, Stored::Gzip] {
        let dir = tempfile::tempdir().unwrap();
        let tar = LayerTar::new(EPOCH)
            .file("big", 0o644, (0, 0), &noise(100_000, 9))
            .finish();
        let blob = layer_blob(&tar, stored);
        let layout = dir.path().join("layout");
        let digests = write_layout(&layout, &[("x", std::slice::from_ref(&blob))]);
        let digest = Digest::sha256(&blob.bytes);
        let path = layout.join("blobs/sha256").join(digest.hex());
        let mut bytes = fs::read(&path).unwrap();
        bytes[50_000] ^= 0x40;
        fs::write(&path, &bytes).unwrap();
        let err = assemble(&layout, &digests[0], &dir.path().join("stage")).expect_err("refused");
        match &err {
            AssembleError::Source(SourceError::Digest {
                expected, actual, ..
            }) => {
                assert_eq!(expected, &digest, "{stored:?}");
                assert_eq!(actual, &Digest::sha256(&bytes), "{stored:?}");
            }
            other => panic!("{stored:?}: expected a digest error, got {other:?}"),
        }
        let message = err.to_string();
        assert!(
            message.contains("layer 1") && message.contains("is corrupt"),
            "{message}"
        );
    }
}
