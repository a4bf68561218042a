//! Repairing a damaged target from a bundle: a registry that lost a layer
//! (Distribution's storage directory, ferry's store) gets it back from
//! `bundle push --verify-target`, and a blob whose bytes went bad in
//! ferry's store is replaced by `bundle import --repair`.

use std::path::{Path, PathBuf};
use std::process::Command;

use ferry_bundle::writer::WriteOptions;
use ferry_oci::Digest;

use crate::bundle::{Distribution, bundle_from_layout};
use crate::images::standard;
use crate::{Server, ferry, ok, run};

fn skopeo() -> Command {
    let mut c = Command::new("skopeo");
    c.env("XDG_RUNTIME_DIR", std::env::temp_dir());
    c
}

/// The largest blob of the bundle (a layer).
fn largest_layer(site: &Path) -> Digest {
    let bundle = ferry_bundle::Bundle::open(site).unwrap();
    bundle
        .manifest
        .blobs
        .iter()
        .max_by_key(|b| b.size)
        .unwrap()
        .digest
        .clone()
}

/// Whether skopeo can copy `team/multi:v1` (every platform) out of `registry`.
fn skopeo_pulls(registry: &str, into: &Path) -> Result<(), String> {
    let _ = std::fs::remove_dir_all(into);
    let out = run(skopeo()
        .args(["copy", "--all", "--src-tls-verify=false"])
        .arg(format!("docker://{registry}/team/multi:v1"))
        .arg(format!("oci:{}:multi", into.display())));
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// The push summary line, with what changes from run to run taken out.
fn summary(stdout: &str, registry: &str) -> String {
    let line = stdout
        .lines()
        .find(|l| l.starts_with("pushed to"))
        .unwrap_or_else(|| panic!("no summary in {stdout}"));
    let line = line.replace(registry, "REGISTRY");
    let (head, tail) = line.split_once(" in ").unwrap();
    let (_, rest) = tail.split_once("s: ").unwrap();
    // uploaded bytes differ with the random layer's compressed size
    let rest = match rest.split_once(" (") {
        Some((count, after)) => {
            let (_, after) = after.split_once(')').unwrap();
            format!("{count} (BYTES){after}")
        }
        None => rest.to_string(),
    };
    format!("{head} in Ts: {rest}")
}

#[test]
fn push_verify_target_puts_back_a_layer_the_registry_lost() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    standard(&src);
    let site = tmp.path().join("site.ferry");
    bundle_from_layout(&src, &["multi"], &site, WriteOptions::default());
    let lost = largest_layer(&site);
    let distribution = Distribution::start();
    let server = Server::start(&tmp.path().join("ferry-state"), &[]);
    // Where each target keeps the layer's bytes.
    let targets: [(&str, PathBuf); 2] = [
        (
            &distribution.addr,
            distribution
                .storage()
                .join("docker/registry/v2/blobs/sha256")
                .join(&lost.hex()[..2])
                .join(lost.hex()),
        ),
        (
            &server.addr,
            server
                .state
                .join("registry/blobs/sha256")
                .join(&lost.hex()[..2])
                .join(lost.hex()),
        ),
    ];
    let mut lines = Vec::new();
    for (registry, layer_file) in targets {
        let push = |extra: &[&str]| {
            ok(ferry()
                .current_dir(tmp.path())
                .args(["bundle", "push", "--insecure", "--to", registry])
                .args(extra)
                .arg(&site)
                .arg("--state")
                .arg(tmp.path().join("push-state")))
        };
        push(&[]);
        assert!(
            layer_file.exists(),
            "{} holds the layer",
            layer_file.display()
        );
        if layer_file.is_dir() {
            std::fs::remove_dir_all(&layer_file).unwrap();
        } else {
            std::fs::remove_file(&layer_file).unwrap();
        }
        let pulled = tmp.path().join("pulled");
        let broken = skopeo_pulls(registry, &pulled).unwrap_err();
        assert!(
            broken.contains(lost.hex()) || broken.contains("unknown"),
            "{broken}"
        );

        // A plain push trusts the tag and says so.
        let again = push(&[]);
        lines.push(summary(&again, registry));
        assert!(skopeo_pulls(registry, &pulled).is_err(), "still broken");

        let repaired = push(&["--verify-target"]);
        lines.push(summary(&repaired, registry));
        skopeo_pulls(registry, &pulled).unwrap();
        crate::images::assert_blobs_identical(&pulled, &src);
    }
    insta::assert_snapshot!(lines.join("\n"));
}

#[test]
fn import_repair_replaces_a_blob_damaged_in_the_store() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    standard(&src);
    let site = tmp.path().join("site.ferry");
    bundle_from_layout(&src, &["multi"], &site, WriteOptions::default());
    let state = tmp.path().join("state");
    let import = |extra: &[&str]| {
        let out = ok(ferry()
            .args(["bundle", "import"])
            .args(extra)
            .arg(&site)
            .arg("--state")
            .arg(&state));
        out.lines().last().unwrap().to_string()
    };
    let fsck = || run(ferry().args(["registry", "fsck", "--state"]).arg(&state));
    import(&[]);
    assert_eq!(fsck().status.code(), Some(0));

    // One bit of a layer flips on disk.
    let damaged = largest_layer(&site);
    let path = state
        .join("registry/blobs/sha256")
        .join(&damaged.hex()[..2])
        .join(damaged.hex());
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[1000] ^= 0x10;
    std::fs::write(&path, &bytes).unwrap();
    let out = fsck();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("corrupt blob {damaged}")));

    let mut lines = vec![import(&[])];
    assert_eq!(
        fsck().status.code(),
        Some(1),
        "a plain import keeps the bad copy"
    );
    lines.push(import(&["--repair"]));
    let out = fsck();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    lines.push(import(&["--repair"]));
    // The byte counts depend on the random layers' compressed sizes.
    let lines: Vec<String> = lines
        .iter()
        .map(|l| {
            let (head, rest) = l.split_once("imported (").unwrap();
            let (_, tail) = rest.split_once(')').unwrap();
            format!("{head}imported (BYTES){tail}")
        })
        .collect();
    insta::assert_snapshot!(lines.join("\n"));
}
