//! `ferry image import|build` from the command line: what a user sees when
//! the input is wrong (exit code, message, nothing half-made left in the
//! output directory), and a real build's report. Bad inputs are small
//! images the tests make (tarballs, OCI layouts written by hand); the
//! disk-size check and the report use the real Debian OS of
//! scripts/test-os.sh (cached in ~/.cache/ferry-tests).

use std::path::{Path, PathBuf};
use std::process::Output;

use ferry_oci::{Digest, media_type};

use crate::{ferry, run};

/// The test OS tarball (built once, cached).
pub fn debian_tar() -> PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/test-os.sh");
    let out = std::process::Command::new(&script).output().unwrap();
    assert!(
        out.status.success(),
        "scripts/test-os.sh: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

/// The test overlay (a marker unit) shared with ferry-image's tests.
pub const OVERLAY: &str = include_str!("../../../ferry-image/tests/data/marker-overlay.yaml");

/// A tar of `entries` (path, bytes), with a directory entry for `etc`.
fn tar_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut dir = tar::Header::new_gnu();
    dir.set_entry_type(tar::EntryType::Directory);
    dir.set_mode(0o755);
    dir.set_size(0);
    builder.append_data(&mut dir, "etc/", &[][..]).unwrap();
    for (path, data) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        builder.append_data(&mut h, path, *data).unwrap();
    }
    builder.into_inner().unwrap()
}

/// An OCI layout at `dir` with one linux/amd64 image `os:1` of `layers`
/// (media type, uncompressed tar).
fn layout(dir: &Path, layers: &[(&str, Vec<u8>)]) {
    layout_for(dir, "amd64", layers)
}

/// [`layout`] for an image of `architecture`.
fn layout_for(dir: &Path, architecture: &str, layers: &[(&str, Vec<u8>)]) {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |data: &[u8]| {
        let d = Digest::sha256(data);
        std::fs::write(blobs.join(d.hex()), data).unwrap();
        d
    };
    let mut descriptors = Vec::new();
    let mut diff_ids = Vec::new();
    for (media, tar) in layers {
        diff_ids.push(Digest::sha256(tar).to_string());
        let d = put(tar);
        descriptors.push(
            serde_json::json!({"mediaType": media, "digest": d.to_string(), "size": tar.len()}),
        );
    }
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": architecture, "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .unwrap();
    let c = put(&config);
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": media_type::OCI_MANIFEST,
        "config": {"mediaType": media_type::OCI_CONFIG, "digest": c.to_string(), "size": config.len()},
        "layers": descriptors,
    }))
    .unwrap();
    let m = put(&manifest);
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    std::fs::write(
        dir.join("index.json"),
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "manifests": [{"mediaType": media_type::OCI_MANIFEST, "digest": m.to_string(), "size": manifest.len(),
                "annotations": {media_type::ANNOTATION_REF_NAME: "os:1"}}],
        }))
        .unwrap(),
    )
    .unwrap();
}

/// Imports `os/tiny:1`, a rootfs without a kernel, into state `state` of
/// `dir`. Incompressible bytes make its layer the store's largest blob.
fn import_tiny(dir: &Path, state: &str) {
    let noise = crate::images::bytes(5, 64 * 1024);
    std::fs::write(
        dir.join("tiny.tar"),
        tar_of(&[("etc/os-release", b"ID=tiny\n"), ("etc/noise", &noise)]),
    )
    .unwrap();
    let imported = run(ferry().current_dir(dir).args([
        "--state",
        state,
        "image",
        "import",
        "tiny.tar",
        "--tag",
        "os/tiny:1",
    ]));
    assert!(imported.status.success(), "{}", said(dir, &imported));
}

/// `ferry image build` in `dir` with its state there; the output `out`.
fn build(dir: &Path, args: &[&str]) -> Output {
    run(ferry()
        .current_dir(dir)
        .args(["--state", "state", "image", "build", "-o", "out"])
        .args(args))
}

/// Exit code and stderr, with the temporary directory and digests masked.
fn said(dir: &Path, out: &Output) -> String {
    let text = String::from_utf8_lossy(&out.stderr)
        .replace(&dir.display().to_string(), "DIR")
        .to_string();
    let digests = regex::Regex::new("sha256:[0-9a-f]{64}").unwrap();
    format!(
        "exit {}: {}",
        out.status.code().unwrap_or(-1),
        digests.replace_all(&text, "sha256:…")
    )
}

/// The output directory holds nothing that looks like an output.
fn assert_no_output(dir: &Path) {
    let out = dir.join("out");
    let left: Vec<String> = std::fs::read_dir(&out)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    assert!(left.is_empty(), "left in {}: {left:?}", out.display());
}

#[test]
fn bad_input_is_a_clear_error_and_leaves_no_output() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut seen = Vec::new();

    // A tarball that is not one, and a rootfs without a kernel.
    std::fs::write(dir.join("notes.tar"), "not a tar at all\n".repeat(100)).unwrap();
    let imported = run(ferry().current_dir(dir).args([
        "--state",
        "state",
        "image",
        "import",
        "notes.tar",
        "--tag",
        "os/notes:1",
    ]));
    seen.push(said(dir, &imported));
    import_tiny(dir, "state");
    let no_kernel = build(dir, &["os/tiny:1", "--format", "iso"]);
    seen.push(said(dir, &no_kernel));
    assert_no_output(dir);

    // An image that is not in the store.
    seen.push(said(dir, &build(dir, &["os/absent:1"])));

    // A layer whose bytes were damaged in the store.
    let store_blobs = dir.join("state/registry/blobs");
    let tiny_layer = walk_files(&store_blobs)
        .into_iter()
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap();
    let mut bytes = std::fs::read(&tiny_layer).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x20;
    std::fs::write(&tiny_layer, bytes).unwrap();
    seen.push(said(dir, &build(dir, &["os/tiny:1"])));
    assert_no_output(dir);

    // Hostile layers, and a layer ferry cannot read, from OCI layouts.
    let traversal = {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(4);
        h.set_mode(0o644);
        // The tar crate refuses to write `..`; set the name bytes by hand.
        h.as_gnu_mut().unwrap().name[..13].copy_from_slice(b"../etc/passwd");
        h.set_cksum();
        b.append(&h, &b"evil"[..]).unwrap();
        b.into_inner().unwrap()
    };
    layout(
        &dir.join("traversal"),
        &[(media_type::OCI_LAYER_TAR, traversal)],
    );
    seen.push(said(dir, &build(dir, &["oci:traversal:os:1"])));
    let escape = {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        h.set_mode(0o777);
        b.append_link(&mut h, "up", "../../../..").unwrap();
        let mut f = tar::Header::new_gnu();
        f.set_size(4);
        f.set_mode(0o644);
        b.append_data(&mut f, "up/etc/passwd", &b"evil"[..])
            .unwrap();
        b.into_inner().unwrap()
    };
    layout(&dir.join("escape"), &[(media_type::OCI_LAYER_TAR, escape)]);
    seen.push(said(dir, &build(dir, &["oci:escape:os:1"])));
    layout(
        &dir.join("foreign"),
        &[("application/vnd.example.diskimage", tar_of(&[]))],
    );
    seen.push(said(dir, &build(dir, &["oci:foreign:os:1"])));
    assert_no_output(dir);

    // An output directory that holds something already.
    std::fs::create_dir_all(dir.join("out")).unwrap();
    std::fs::write(dir.join("out/keep.txt"), "mine").unwrap();
    seen.push(said(dir, &build(dir, &["os/tiny:1"])));
    assert_eq!(
        std::fs::read_to_string(dir.join("out/keep.txt")).unwrap(),
        "mine"
    );
    std::fs::remove_dir_all(dir.join("out")).unwrap();

    // A spec with a typo.
    std::fs::write(dir.join("typo.yaml"), "base: os/tiny:1\nhostnme: x\n").unwrap();
    seen.push(said(dir, &build(dir, &["-f", "typo.yaml"])));

    insta::assert_snapshot!(seen.join("---\n"));
}

fn walk_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk_files(&path));
        } else {
            files.push(path);
        }
    }
    files
}

/// The real OS: a disk smaller than the tree is refused naming both sizes;
/// a build's `--json` report names every output with its sha256.
#[test]
fn a_real_build_reports_its_outputs_and_refuses_a_disk_too_small() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let imported = run(ferry()
        .current_dir(dir)
        .args(["--state", "state", "image", "import"])
        .arg(debian_tar())
        .args(["--tag", "os/debian:12"]));
    assert!(imported.status.success(), "{}", said(dir, &imported));
    std::fs::write(
        dir.join("small.yaml"),
        "base: os/debian:12\ndisk:\n  size: 200M\n",
    )
    .unwrap();
    let small = build(dir, &["-f", "small.yaml", "--format", "raw"]);
    let text = said(dir, &small);
    assert!(
        text.starts_with("exit 2: error: disk too small: 200 MiB"),
        "{text}"
    );
    assert!(text.contains("the image needs at least"), "{text}");
    assert_no_output(dir);

    std::fs::write(
        dir.join("image.yaml"),
        format!("name: debian-report\n{OVERLAY}"),
    )
    .unwrap();
    let built = build(
        dir,
        &[
            "os/debian:12",
            "-f",
            "image.yaml",
            "--format",
            "squashfs,netboot",
            "--json",
        ],
    );
    assert!(built.status.success(), "{}", said(dir, &built));
    let mut report: serde_json::Value = serde_json::from_slice(&built.stdout).unwrap();
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("out/manifest.json")).unwrap()).unwrap();
    // --json is manifest.json plus where the time went, step by step.
    let steps: Vec<String> = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(steps, ["layers", "customize", "squashfs", "netboot"]);
    report.as_object_mut().unwrap().remove("steps");
    assert_eq!(report, manifest);
    let outputs: Vec<&str> = report["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        outputs,
        [
            "netboot/initrd.img",
            "netboot/netboot.yaml",
            "netboot/rootfs.squashfs",
            "netboot/vmlinuz",
            "rootfs.squashfs"
        ]
    );
    assert_eq!(report["kernel"]["version"], "6.1.0-50-amd64");
    assert_eq!(report["base"]["reference"], "os/debian:12");
    for o in report["outputs"].as_array().unwrap() {
        let path = dir.join("out").join(o["path"].as_str().unwrap());
        let sha = Digest::sha256(&std::fs::read(&path).unwrap());
        assert_eq!(o["sha256"], sha.to_string(), "{}", path.display());
    }
}

/// Every kind of base source is read, layers and all: a small image without
/// a kernel, from ferry's store, a registry (`ferry serve`, plain HTTP by
/// the spec's `hosts:`), a bundle file read in place, an OCI archive and an
/// OCI layout, each build stopping where the kernel is looked for. An image
/// of another architecture is refused by name.
#[test]
fn every_base_source_is_read_to_its_layers() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    import_tiny(dir, "served");
    let server = crate::Server::start(&dir.join("served"), &[]);
    let registry_ref = format!("{}/os/tiny:1", server.addr);
    let hosts = format!("hosts:\n  \"{}\":\n    plain_http: true\n", server.addr);
    std::fs::write(
        dir.join("from-registry.yaml"),
        format!("base: {registry_ref}\n{hosts}"),
    )
    .unwrap();
    std::fs::write(
        dir.join("bundle.yaml"),
        format!("{hosts}images:\n  - {registry_ref}\n"),
    )
    .unwrap();
    let bundled = run(ferry().current_dir(dir).args([
        "--state",
        "state",
        "bundle",
        "create",
        "-f",
        "bundle.yaml",
        "-o",
        "site.ferry",
    ]));
    assert!(bundled.status.success(), "{}", said(dir, &bundled));
    let copied = run(std::process::Command::new("skopeo")
        .env("XDG_RUNTIME_DIR", std::env::temp_dir())
        .current_dir(dir)
        .args(["copy", "--src-tls-verify=false"])
        .arg(format!("docker://{registry_ref}"))
        .args(["oci-archive:tiny-archive.tar:os:1"]));
    assert!(copied.status.success(), "{}", said(dir, &copied));
    layout(
        &dir.join("layout"),
        &[(
            media_type::OCI_LAYER_TAR,
            tar_of(&[("etc/os-release", b"ID=tiny\n")]),
        )],
    );
    let no_kernel = "no kernel found in the image";
    for args in [
        vec!["--state", "served", "image", "build", "os/tiny:1"],
        vec![
            "--state",
            "state",
            "image",
            "build",
            "-f",
            "from-registry.yaml",
        ],
        vec![
            "--state",
            "state",
            "image",
            "build",
            &format!("bundle:site.ferry:{registry_ref}"),
        ],
        vec![
            "--state",
            "state",
            "image",
            "build",
            "oci-archive:tiny-archive.tar:os:1",
        ],
        vec!["--state", "state", "image", "build", "oci:layout:os:1"],
    ] {
        let out = run(ferry().current_dir(dir).args(&args).args(["-o", "out"]));
        let text = said(dir, &out);
        assert!(
            text.starts_with(&format!("exit 2: error: {no_kernel}")),
            "{args:?}: {text}"
        );
        assert_no_output(dir);
    }
    drop(server);

    // An image of another architecture.
    layout_for(
        &dir.join("arm"),
        "arm64",
        &[(media_type::OCI_LAYER_TAR, tar_of(&[]))],
    );
    let out = run(ferry().current_dir(dir).args([
        "--state",
        "state",
        "image",
        "build",
        "oci:arm:os:1",
        "-o",
        "out",
    ]));
    let text = said(dir, &out);
    assert!(
        text.contains("oci:arm:os:1 is a single-platform image for linux/arm64, not linux/amd64"),
        "{text}"
    );
    assert!(text.starts_with("exit 2"), "{text}");
}
