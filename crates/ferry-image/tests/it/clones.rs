//! Sysprep on the real Debian OS: two VMs cloned from one qcow2 are two
//! machines. The qcow2 is built once from the fixture with an overlay
//! (tests/data/identity-overlay.yaml) whose unit prints the machine-id and
//! the ed25519 SSH host key's fingerprint after sysprep's
//! `ferry-ssh-host-keys.service` ran; each VM boots its own qcow2 overlay
//! on the image (`qemu-img create -b`, as a clone would), so the image
//! itself stays as built.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use ferry_image::build::{self, BuildRequest};
use ferry_image::spec::{Format, ImageSpec};
use ferry_oci::progress::NoProgress;

use crate::fixture::{NoArtifacts, debian_base};
use crate::qemu::{Firmware, Medium, boot_until};
use crate::util::{run, sha256};

const IDENTITY_OVERLAY: &str = include_str!("../data/identity-overlay.yaml");

/// What a booted clone said about itself.
#[derive(Debug)]
struct Identity {
    machine_id: String,
    ssh_ed25519: String,
}

/// Boots a new qcow2 overlay on `image` and reads the identity line.
fn boot_clone(image: &Path, work: &Path) -> Identity {
    std::fs::create_dir_all(work).unwrap();
    let clone: PathBuf = work.join("clone.qcow2");
    run(Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2", "-F", "qcow2", "-b"])
        .arg(image)
        .arg(&clone));
    let log = boot_until(
        Firmware::SeaBios,
        &Medium::Disk {
            path: clone,
            format: "qcow2",
        },
        "FERRY-IDENTITY-DONE",
        Duration::from_secs(300),
        work,
    );
    let line = log
        .lines()
        .find_map(|l| l.split_once("FERRY-IDENTITY ").map(|(_, rest)| rest))
        .unwrap_or_else(|| panic!("no identity line:\n{log}"));
    let field = |name: &str| {
        line.split_whitespace()
            .find_map(|word| word.strip_prefix(name)?.strip_prefix('='))
            .unwrap_or_else(|| panic!("no {name} in {line:?}"))
            .to_string()
    };
    Identity {
        machine_id: field("machine-id"),
        ssh_ed25519: field("ssh-ed25519"),
    }
}

#[test]
fn two_vms_from_one_qcow2_get_their_own_machine_id_and_ssh_host_keys() {
    let dir = tempfile::tempdir().unwrap();
    let mtime = 1_700_000_000;
    let base = debian_base(dir.path(), mtime);
    let spec = ImageSpec::parse(IDENTITY_OVERLAY, Path::new("identity-overlay.yaml")).unwrap();
    let out = dir.path().join("out");
    let report = build::build(
        &base,
        &NoArtifacts,
        &BuildRequest {
            spec: &spec,
            spec_dir: dir.path(),
            name: "node".into(),
            formats: BTreeSet::from([Format::Qcow2]),
            out: out.clone(),
            mtime,
            processors: 2,
            push: None,
            keep_work: false,
            kubernetes: Default::default(),
        },
        &NoProgress,
    )
    .unwrap();
    let image = out.join("node.qcow2");

    let (first, second) = std::thread::scope(|s| {
        let first = s.spawn(|| boot_clone(&image, &dir.path().join("vm1")));
        let second = s.spawn(|| boot_clone(&image, &dir.path().join("vm2")));
        (first.join().unwrap(), second.join().unwrap())
    });
    for identity in [&first, &second] {
        let id = &identity.machine_id;
        assert!(
            id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()),
            "machine-id {id:?} is not 32 hex digits ({identity:?})"
        );
        assert!(
            identity.ssh_ed25519.starts_with("SHA256:"),
            "no ed25519 host key was made: {identity:?}"
        );
    }
    assert_ne!(first.machine_id, second.machine_id, "one machine-id twice");
    assert_ne!(
        first.ssh_ed25519, second.ssh_ed25519,
        "one SSH host key twice"
    );
    // The clones wrote to their overlays only.
    let built = report
        .outputs
        .iter()
        .find(|o| o.format == Format::Qcow2)
        .unwrap();
    assert_eq!(sha256(&image), built.sha256, "the image changed");
}
