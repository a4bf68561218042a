//! `ferry image build` as a whole, on the real Debian OS: the fixture's
//! rootfs tarball imported into a store (`ferry image import`'s code path),
//! every format built from it twice with the test overlay, the two builds
//! byte-identical output by output, and the formats no other test boots
//! booted here: the qcow2 under OVMF and the OVA's stream-optimized VMDK
//! (QEMU reads VMDK) under SeaBIOS. The OVA set is checked as its
//! consumers read it: the descriptor against docs/ovf.rng, the manifest
//! against the files and the tar's members, the VMDK against the raw disk.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use ferry_image::build::{self, BuildReport, BuildRequest};
use ferry_image::spec::{Format, ImageSpec};
use ferry_oci::digest::{Algorithm, Hasher};
use ferry_oci::progress::NoProgress;

use crate::fixture::{NoArtifacts, OVERLAY, debian_base};
use crate::qemu::{Firmware, Medium, boot_until};
use crate::util::{run, schema_check, sha256};

const MTIME: i64 = 1_700_000_000;

/// Two full builds of the fixture, kept for the whole test binary.
struct Built {
    dir: PathBuf,
    first: BuildReport,
    second: BuildReport,
}

fn built() -> &'static Built {
    static BUILT: OnceLock<Built> = OnceLock::new();
    BUILT.get_or_init(|| {
        let dir = crate::util::run_dir("build");
        let base = debian_base(&dir, MTIME);
        let spec = ImageSpec::parse(
            &format!("name: debian-e2e\nversion: \"1.0\"\n{OVERLAY}"),
            Path::new("image.yaml"),
        )
        .unwrap();
        // Both builds write to the same path (the netboot profile names
        // its directory), then move aside.
        let build_into = |kept: &str| {
            let out = dir.join("out");
            let request = BuildRequest {
                spec: &spec,
                spec_dir: &dir,
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
            std::fs::rename(&out, dir.join(kept)).unwrap();
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
    let manifest = |d: &str| std::fs::read(b.dir.join(d).join("manifest.json")).unwrap();
    assert_eq!(manifest("one"), manifest("two"), "manifest.json differs");
    // Nothing but the outputs and the manifest: the scratch directory is gone.
    let listed: BTreeSet<String> = std::fs::read_dir(b.dir.join("one"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!listed.contains(".ferry-build"), "{listed:?}");
    assert!(listed.contains("manifest.json"), "{listed:?}");
    for o in &b.first.outputs {
        let path = b.dir.join("one").join(&o.path);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), o.size, "{path:?}");
    }
    assert_eq!(b.first.kernel.version, "6.1.0-50-amd64");
    assert_eq!(b.first.source_date_epoch, MTIME);
}

#[test]
fn the_qcow2_boots_under_ovmf() {
    let b = built();
    let work = b.dir.join("boot-qcow2");
    boot_until(
        Firmware::Ovmf,
        &Medium::Disk {
            path: b.dir.join("one/debian-e2e.qcow2"),
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
    let work = b.dir.join("boot-vmdk");
    boot_until(
        Firmware::SeaBios,
        &Medium::Disk {
            path: b.dir.join("one/debian-e2e-disk-0.vmdk"),
            format: "vmdk",
        },
        "FERRY-IMAGE-OK disk bios",
        Duration::from_secs(300),
        &work,
    );
}

/// The OVA of a real build, read as vSphere and image-builder's
/// consumers read it: the descriptor passes the schema in docs/ovf.rng
/// and carries the image's distribution, the cloud-init VMware
/// datasource's keys for the user to fill and the guestinfo transport;
/// every `.mf` line is the sha256 of the loose file and of the `.ova`
/// member of that name; `.ova.sha256` is the `.ova`'s; the VMDK holds
/// exactly the raw disk.
#[test]
fn the_ova_passes_the_documented_schema_and_its_manifest_and_disk_check_out() {
    let b = built();
    let one = b.dir.join("one");
    let ovf = one.join("debian-e2e.ovf");
    schema_check(&ovf).unwrap_or_else(|report| panic!("{report}"));

    let xpath = |expr: &str| {
        run(Command::new("xmllint").args(["--xpath", expr]).arg(&ovf))
            .trim()
            .to_string()
    };
    let property = |key: &str, attribute: &str| {
        xpath(&format!(
            "string(//*[local-name()='Property'][@*[local-name()='key']='{key}']/@*[local-name()='{attribute}'])"
        ))
    };
    for key in [
        "guestinfo.userdata",
        "guestinfo.userdata.encoding",
        "guestinfo.metadata",
        "guestinfo.metadata.encoding",
    ] {
        assert_eq!(property(key, "userConfigurable"), "true", "{key}");
        assert_eq!(property(key, "type"), "string", "{key}");
    }
    // From the fixture's own /etc/os-release.
    assert_eq!(property("DISTRO_NAME", "value"), "debian");
    assert_eq!(property("DISTRO_VERSION", "value"), "12");
    assert_eq!(property("DISTRO_NAME", "userConfigurable"), "false");
    assert_eq!(property("BUILD_TIMESTAMP", "value"), MTIME.to_string());
    assert_eq!(
        xpath("string(//*[local-name()='VirtualHardwareSection']/@*[local-name()='transport'])"),
        "com.vmware.guestInfo"
    );

    let manifest = std::fs::read_to_string(one.join("debian-e2e.mf")).unwrap();
    let lines: BTreeMap<String, String> = manifest
        .lines()
        .map(|line| {
            let (name, hex) = line
                .strip_prefix("SHA256(")
                .and_then(|rest| rest.split_once(")= "))
                .unwrap_or_else(|| panic!("manifest line {line:?}"));
            (name.to_string(), hex.to_string())
        })
        .collect();
    assert_eq!(
        lines.keys().map(String::as_str).collect::<Vec<_>>(),
        ["debian-e2e-disk-0.vmdk", "debian-e2e.ovf"]
    );
    for (name, hex) in &lines {
        assert_eq!(&sha256(&one.join(name)).hex(), hex, "loose {name}");
    }
    let ova = one.join("debian-e2e.ova");
    let mut members = Vec::new();
    let mut archive = tar::Archive::new(std::fs::File::open(&ova).unwrap());
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().display().to_string();
        let mut hasher = Hasher::new(Algorithm::Sha256);
        std::io::copy(&mut entry, &mut hasher).unwrap();
        let digest = hasher.finish();
        if let Some(hex) = lines.get(&name) {
            assert_eq!(&digest.hex(), hex, "member {name}");
        }
        members.push(name);
    }
    assert_eq!(
        members,
        ["debian-e2e.ovf", "debian-e2e-disk-0.vmdk", "debian-e2e.mf"]
    );
    assert_eq!(
        std::fs::read_to_string(one.join("debian-e2e.ova.sha256")).unwrap(),
        sha256(&ova).hex()
    );

    let compare = run(Command::new("qemu-img")
        .args(["compare", "-f", "raw", "-F", "vmdk"])
        .arg(one.join("debian-e2e.raw"))
        .arg(one.join("debian-e2e-disk-0.vmdk")));
    assert!(compare.contains("Images are identical"), "{compare}");
}
