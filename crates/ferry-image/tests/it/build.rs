//! `ferry image build` as a whole, on the real Debian OS: the fixture's
//! rootfs tarball imported into a store (`ferry image import`'s code path),
//! every format built from it twice with the test overlay, the two builds
//! byte-identical output by output, and the formats no other test boots
//! booted here: the qcow2 under OVMF and the OVA's stream-optimized VMDK
//! (QEMU reads VMDK) under SeaBIOS.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use ferry_image::build::{self, BuildReport, BuildRequest};
use ferry_image::import::{self, LayerCompression};
use ferry_image::source::{BaseImage, Platform};
use ferry_image::spec::{Format, ImageSpec};
use ferry_oci::progress::NoProgress;

use crate::fixture::{NoArtifacts, OVERLAY, debian_tar};
use crate::qemu::{Firmware, Medium, boot_until};

const MTIME: i64 = 1_700_000_000;

/// Two full builds of the fixture, kept for the whole test binary.
struct Built {
    dir: tempfile::TempDir,
    first: BuildReport,
    second: BuildReport,
}

fn built() -> &'static Built {
    static BUILT: OnceLock<Built> = OnceLock::new();
    BUILT.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let store = ferry_store::Store::open(dir.path().join("store"), Default::default()).unwrap();
        let mut tar = std::fs::File::open(debian_tar()).unwrap();
        let imported = import::import(
            &store,
            &mut tar,
            "rootfs.tar",
            "os/debian:12",
            &Platform::linux_amd64(),
            LayerCompression::Zstd,
            MTIME,
            &NoProgress,
        )
        .unwrap();
        let base = BaseImage::load(
            "os/debian:12",
            Arc::new(store),
            &imported.manifest_digest,
            &Platform::linux_amd64(),
        )
        .unwrap();
        let spec = ImageSpec::parse(
            &format!("name: debian-e2e\nversion: \"1.0\"\n{OVERLAY}"),
            Path::new("image.yaml"),
        )
        .unwrap();
        // Both builds write to the same path (the netboot profile names
        // its directory), then move aside.
        let build_into = |kept: &str| {
            let out = dir.path().join("out");
            let request = BuildRequest {
                spec: &spec,
                spec_dir: dir.path(),
                name: "debian-e2e".into(),
                formats: Format::ALL.into_iter().collect::<BTreeSet<_>>(),
                out: out.clone(),
                mtime: MTIME,
                processors: 2,
                push: None,
                keep_work: false,
                kubernetes: Default::default(),
            };
            let report = build::build(&base, &NoArtifacts, &request, &NoProgress).unwrap();
            std::fs::rename(&out, dir.path().join(kept)).unwrap();
            report
        };
        let first = build_into("one");
        let second = build_into("two");
        Built { dir, first, second }
    })
}

#[test]
fn every_format_is_built_and_two_builds_are_byte_identical() {
    let b = built();
    let formats: BTreeSet<Format> = b.first.outputs.iter().map(|o| o.format).collect();
    assert_eq!(formats, Format::ALL.into_iter().collect());
    let sums = |r: &BuildReport| -> Vec<(String, String)> {
        r.outputs
            .iter()
            .map(|o| (o.path.display().to_string(), o.sha256.to_string()))
            .collect()
    };
    assert_eq!(sums(&b.first), sums(&b.second));
    let manifest = |d: &str| std::fs::read(b.dir.path().join(d).join("manifest.json")).unwrap();
    assert_eq!(manifest("one"), manifest("two"), "manifest.json differs");
    // Nothing but the outputs and the manifest: the scratch directory is gone.
    let listed: BTreeSet<String> = std::fs::read_dir(b.dir.path().join("one"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!listed.contains(".ferry-build"), "{listed:?}");
    assert!(listed.contains("manifest.json"), "{listed:?}");
    for o in &b.first.outputs {
        let path = b.dir.path().join("one").join(&o.path);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), o.size, "{path:?}");
    }
    assert_eq!(b.first.kernel.version, "6.1.0-50-amd64");
    assert_eq!(b.first.source_date_epoch, MTIME);
}

#[test]
fn the_qcow2_boots_under_ovmf() {
    let b = built();
    let work = b.dir.path().join("boot-qcow2");
    boot_until(
        Firmware::Ovmf,
        &Medium::Disk {
            path: b.dir.path().join("one/debian-e2e.qcow2"),
            format: "qcow2",
        },
        "FERRY-IMAGE-OK disk efi",
        Duration::from_secs(300),
        &work,
    );
}

#[test]
fn the_ovas_vmdk_boots_under_seabios() {
    let b = built();
    let work = b.dir.path().join("boot-vmdk");
    boot_until(
        Firmware::SeaBios,
        &Medium::Disk {
            path: b.dir.path().join("one/debian-e2e-disk-0.vmdk"),
            format: "vmdk",
        },
        "FERRY-IMAGE-OK disk bios",
        Duration::from_secs(300),
        &work,
    );
}
