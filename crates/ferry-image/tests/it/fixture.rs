//! The real OS for the tests: `scripts/test-os.sh` builds a Debian 12
//! rootfs with mmdebstrap (kernel, systemd, live-boot, GRUB for BIOS and
//! UEFI), cached under `~/.cache/ferry-tests` (minutes the first time).
//! [`debian_rootfs`] lays it out as a [`Rootfs`] with the test overlay:
//! a unit that prints `FERRY-IMAGE-OK <how it booted>` on the serial
//! console and powers off, enabled as the default target's only job so
//! a boot under TCG stays short.

#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use ferry_image::customize::{self, ArtifactFile, ArtifactFiles, ArtifactInfo};
use ferry_image::import::{self, LayerCompression};
use ferry_image::rootfs::{Rootfs, layer};
use ferry_image::source::{BaseImage, Platform};
use ferry_image::spec::ImageSpec;
use ferry_oci::progress::NoProgress;

/// The test overlay (tests/data/marker-overlay.yaml): a unit printing
/// `FERRY-IMAGE-OK <live|disk|netboot> <bios|efi>` on the serial console,
/// then powering off.
pub const OVERLAY: &str = include_str!("../data/marker-overlay.yaml");

/// The cached Debian rootfs tarball, built on first use.
pub fn debian_tar() -> PathBuf {
    static TAR: OnceLock<PathBuf> = OnceLock::new();
    TAR.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/test-os.sh");
        let out = std::process::Command::new(&script)
            .output()
            .expect("run scripts/test-os.sh");
        assert!(
            out.status.success(),
            "scripts/test-os.sh failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
    })
    .clone()
}

/// The Debian rootfs imported as `os/debian:12` into a store under `dir`
/// (`ferry image import`'s code path, the layer dated `mtime`), as the
/// base of a build.
pub fn debian_base(dir: &Path, mtime: i64) -> BaseImage {
    let store = ferry_store::Store::open(dir.join("store"), Default::default()).unwrap();
    let mut tar = std::fs::File::open(debian_tar()).unwrap();
    let imported = import::import(
        &store,
        &mut tar,
        "rootfs.tar",
        "os/debian:12",
        &Platform::linux_amd64(),
        LayerCompression::Zstd,
        mtime,
        &NoProgress,
    )
    .unwrap();
    BaseImage::load(
        "os/debian:12",
        Arc::new(store),
        &imported.manifest_digest,
        &Platform::linux_amd64(),
    )
    .unwrap()
}

/// No file artifacts: a spec that names one fails.
pub struct NoArtifacts;

impl ArtifactFiles for NoArtifacts {
    fn describe(&self, reference: &str) -> Result<ArtifactInfo, String> {
        Err(format!("no artifacts in this test ({reference})"))
    }

    fn open(&self, reference: &str, _: &ArtifactFile) -> Result<Box<dyn Read + Send>, String> {
        Err(format!("no artifacts in this test ({reference})"))
    }
}

/// The Debian rootfs staged in `stage`, with the test overlay applied.
pub fn debian_rootfs(stage: &Path, mtime: i64) -> Rootfs {
    let mut rootfs = Rootfs::new(stage.to_path_buf(), mtime).unwrap();
    let tar = std::fs::File::open(debian_tar()).unwrap();
    layer::apply(
        &mut rootfs,
        std::io::BufReader::new(tar),
        "rootfs.tar",
        mtime,
    )
    .unwrap();
    let spec = ImageSpec::parse(OVERLAY, Path::new("overlay.yaml")).unwrap();
    let cx = customize::Context {
        spec_dir: Path::new("."),
        mtime,
        artifacts: &NoArtifacts,
        kubernetes: &Default::default(),
    };
    customize::apply(&spec, &mut rootfs, &cx).unwrap();
    rootfs
}
