//! Bundles end to end with the real binary and real peers: skopeo reads
//! them, ferry pushes them into Debian's docker-registry and into ferry
//! serve, the self-extracting form runs with no ferry installed, pushes
//! survive kill -9, and damaged or hostile bundles are refused.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use ferry_bundle::format::{Entry, EntryKind};
use ferry_bundle::writer::{Plan, WriteOptions, write_bundle};
use ferry_oci::progress::NoProgress;
use ferry_oci::{Descriptor, Digest};
use ferry_store::{Limits, Store};

use crate::images::{Layout, bytes, standard};
use crate::slow_link::SlowLink;
use crate::{Server, ferry, jitter, kill_when, largest_upload, ok, run};

/// Writes a bundle of `tags` from the OCI layout at `layout`.
pub fn bundle_from_layout(
    layout: &Path,
    tags: &[&str],
    out: &Path,
    options: WriteOptions,
) -> Vec<Entry> {
    let cache = Store::open(out.with_extension("cache"), Limits::default()).unwrap();
    for entry in std::fs::read_dir(layout.join("blobs/sha256")).unwrap() {
        let entry = entry.unwrap();
        let digest = Digest::new(
            ferry_oci::Algorithm::Sha256,
            entry.file_name().to_str().unwrap(),
        )
        .unwrap();
        let mut file = std::fs::File::open(entry.path()).unwrap();
        cache.put_blob("cache", &digest, None, &mut file).unwrap();
    }
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let mut entries = Vec::new();
    for tag in tags {
        let desc = index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["annotations"][ferry_oci::media_type::ANNOTATION_REF_NAME] == *tag)
            .unwrap();
        let mut descriptor: Descriptor = serde_json::from_value(desc.clone()).unwrap();
        descriptor.annotations = None;
        entries.push(Entry {
            kind: EntryKind::Image,
            source: format!("registry.example/team/{tag}:v1"),
            repository: format!("team/{tag}"),
            tag: Some("v1".into()),
            descriptor,
            platforms: vec![],
        });
    }
    let plan = Plan {
        entries: entries.clone(),
        spec: serde_json::json!({}),
        created: Some(1_700_000_000),
        base: None,
    };
    write_bundle(&plan, &cache, out, &options, &NoProgress).unwrap();
    entries
}

fn skopeo() -> Command {
    let mut c = Command::new("skopeo");
    c.env("XDG_RUNTIME_DIR", std::env::temp_dir());
    c
}

/// Debian's docker-registry (CNCF Distribution 2.8.2) on a free loopback port.
pub struct Distribution {
    child: std::process::Child,
    pub addr: String,
    dir: tempfile::TempDir,
}

impl Distribution {
    pub fn start() -> Distribution {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog: {{level: warn}}\nstorage:\n  filesystem: {{rootdirectory: {}}}\n  delete: {{enabled: true}}\nhttp: {{addr: \"127.0.0.1:{port}\"}}\n",
                dir.path().join("root").display()
            ),
        )
        .unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry (Debian package docker-registry) runs");
        let addr = format!("127.0.0.1:{port}");
        for _ in 0..100 {
            if std::net::TcpStream::connect(&addr).is_ok() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Distribution { child, addr, dir }
    }
}

impl Distribution {
    /// Its storage root (`rootdirectory`), where it keeps blobs under
    /// `docker/registry/v2/blobs/`.
    pub fn storage(&self) -> PathBuf {
        self.dir.path().join("root")
    }
}

impl Drop for Distribution {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `DIR/split.ferry.000`, `.001`, ... (at least three 1 MiB parts) of one
/// image `team/chunky:v1` with a 3 MiB layer; returns `DIR/split.ferry`.
pub fn split_bundle(dir: &Path) -> PathBuf {
    let chunky = dir.join("chunky");
    let mut layout = Layout::new(&chunky);
    let layer = layout.blob(
        ferry_oci::media_type::OCI_LAYER_GZIP,
        &bytes(5, 3 * 1024 * 1024),
    );
    let config = layout.blob(ferry_oci::media_type::OCI_CONFIG, b"{}");
    let manifest = serde_json::json!({"schemaVersion": 2, "mediaType": ferry_oci::media_type::OCI_MANIFEST, "config": config, "layers": [layer]});
    let m = layout.blob(
        ferry_oci::media_type::OCI_MANIFEST,
        &serde_json::to_vec(&manifest).unwrap(),
    );
    layout.tag("chunky", m);
    let split = dir.join("split.ferry");
    bundle_from_layout(
        &chunky,
        &["chunky"],
        &split,
        WriteOptions {
            split: Some(1024 * 1024),
            ..WriteOptions::default()
        },
    );
    assert!(dir.join("split.ferry.002").exists(), "three parts at least");
    split
}

fn index_digests(layout: &Path) -> Vec<String> {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let mut d: Vec<String> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["digest"].as_str().unwrap().to_string())
        .collect();
    d.sort();
    d
}

#[test]
fn skopeo_reads_the_bundle_as_an_oci_archive() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    standard(&src);
    let site = tmp.path().join("site.ferry");
    bundle_from_layout(&src, &["multi", "many"], &site, WriteOptions::default());
    let out = tmp.path().join("out");
    for tag in ["multi", "many"] {
        ok(skopeo()
            .args(["copy", "--all", "--preserve-digests"])
            .arg(format!(
                "oci-archive:{}:registry.example/team/{tag}:v1",
                site.display()
            ))
            .arg(format!("oci:{}:{tag}", out.display())));
    }
    crate::images::assert_blobs_identical(&out, &src);
    assert_eq!(index_digests(&out), index_digests(&src));
}

fn push_and_pull_back(registry: &str, site: &Path, src: &Path, tmp: &Path, label: &str) {
    let state = tmp.join(format!("state-{label}"));
    let report = ok(ferry()
        .args([
            "bundle",
            "push",
            "--insecure",
            "--json",
            "--to",
            &format!("{registry}/site"),
        ])
        .arg(site)
        .arg("--state")
        .arg(&state)
        .arg("--out")
        .arg(tmp.join(format!("site-files-{label}"))));
    let report: serde_json::Value = serde_json::from_str(&report).unwrap();
    assert_eq!(
        report["push"]["tags"].as_array().unwrap().len(),
        2,
        "{report}"
    );
    let back = tmp.join(format!("back-{label}"));
    for tag in ["multi", "many"] {
        ok(skopeo()
            .args([
                "copy",
                "--all",
                "--preserve-digests",
                "--src-tls-verify=false",
            ])
            .arg(format!("docker://{registry}/site/team/{tag}:v1"))
            .arg(format!("oci:{}:{tag}", back.display())));
    }
    crate::images::assert_blobs_identical(&back, src);
    assert_eq!(index_digests(&back), index_digests(src));
    assert!(
        tmp.join(format!("site-files-{label}/registries.yaml"))
            .exists()
    );
    // Pushing again sends no blob bytes.
    let again = ok(ferry()
        .current_dir(tmp)
        .args([
            "bundle",
            "push",
            "--insecure",
            "--json",
            "--to",
            &format!("{registry}/site"),
        ])
        .arg(site)
        .arg("--state")
        .arg(&state));
    let again: serde_json::Value = serde_json::from_str(&again).unwrap();
    assert_eq!(again["push"]["bytes_sent"], 0, "{again}");
}

#[test]
fn push_into_distribution_and_ferry_and_pull_back_identical() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    standard(&src);
    let site = tmp.path().join("site.ferry");
    bundle_from_layout(&src, &["multi", "many"], &site, WriteOptions::default());
    let distribution = Distribution::start();
    push_and_pull_back(&distribution.addr, &site, &src, tmp.path(), "distribution");
    let server = Server::start(&tmp.path().join("ferry-state"), &[]);
    push_and_pull_back(&server.addr, &site, &src, tmp.path(), "ferry");
}

#[test]
fn self_extracting_bundle_runs_without_ferry_installed() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    standard(&src);
    let built = tmp.path().join("site.run");
    let options = WriteOptions {
        self_extracting: Some(PathBuf::from(env!("CARGO_BIN_EXE_ferry"))),
        ..WriteOptions::default()
    };
    bundle_from_layout(&src, &["multi", "many"], &built, options);
    // A clean directory, no ferry on PATH.
    let clean = tmp.path().join("clean");
    std::fs::create_dir(&clean).unwrap();
    std::fs::copy(&built, clean.join("site.run")).unwrap();
    let site_run = || {
        let mut c = Command::new("./site.run");
        c.current_dir(&clean)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("HOME", &clean);
        c
    };
    let usage = ok(&mut site_run());
    assert!(usage.contains("push REGISTRY"), "{usage}");
    let listing = ok(site_run().arg("inspect"));
    assert!(
        listing.contains("registry.example/team/multi:v1"),
        "{listing}"
    );
    ok(site_run().arg("verify"));
    let server = Server::start(&tmp.path().join("ferry-state"), &[]);
    ok(site_run().args(["push", &server.addr, "--insecure", "--state", "state"]));
    assert!(
        clean.join("site-site/registries.yaml").exists(),
        "site files next to the bundle's name"
    );
    let inspect = ok(skopeo().args([
        "inspect",
        "--tls-verify=false",
        "--raw",
        &format!("docker://{}/team/multi:v1", server.addr),
    ]));
    assert!(inspect.contains("arm64"), "{inspect}");
}

#[test]
fn push_survives_kill_9_and_resends_only_what_was_missing() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let mut layout = Layout::new(&src);
    // One large incompressible layer, so a push takes a while.
    let big = bytes(77, 160 * 1024 * 1024);
    let layer = layout.blob(ferry_oci::media_type::OCI_LAYER_GZIP, &big);
    let config = layout.blob(
        ferry_oci::media_type::OCI_CONFIG,
        br#"{"architecture":"amd64","os":"linux"}"#,
    );
    let manifest = serde_json::json!({"schemaVersion": 2, "mediaType": ferry_oci::media_type::OCI_MANIFEST, "config": config, "layers": [layer]});
    let m = layout.blob(
        ferry_oci::media_type::OCI_MANIFEST,
        &serde_json::to_vec(&manifest).unwrap(),
    );
    layout.tag("big", m);
    drop(big);
    let site = tmp.path().join("site.ferry");
    bundle_from_layout(&src, &["big"], &site, WriteOptions::default());
    let server = Server::start(&tmp.path().join("ferry-state"), &[]);
    // 40 MB/s between ferry and the registry: each quarter of the layer takes
    // about a second, so the kills land mid-upload on a machine of any speed.
    let link = SlowLink::start(&server.addr, 40_000_000);
    let state = tmp.path().join("push-state");
    let push = || {
        let mut c = ferry();
        c.current_dir(tmp.path());
        c.args([
            "bundle",
            "push",
            "-q",
            "--insecure",
            "--json",
            "--to",
            &link.addr,
        ])
        .arg(&site)
        .arg("--state")
        .arg(&state);
        c
    };
    // Bytes of the layer the registry holds in its upload session so far.
    let uploads = server.state.join("registry/uploads");
    let received = || largest_upload(&uploads);
    // Kill it three times, each time once the upload has gone further, at a
    // point that differs from run to run.
    let size = 160 * 1024 * 1024u64;
    let jitter = jitter();
    for k in 1..=3u64 {
        let kill_at = k * size / 4 + (jitter * k) % (size / 8);
        kill_when(&mut push(), kill_at, received);
    }
    let at_kill = received();
    let out = run(&mut push());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let sent = report["push"]["bytes_sent"].as_u64().unwrap();
    let resumed = report["push"]["bytes_resumed_from"].as_u64().unwrap();
    // The last run sent what was missing (plus the small config), not the
    // whole layer again. It may also have sent what fits in the sockets'
    // buffers before the registry turned its first request away with 429
    // because the killed run's last request was still draining.
    let in_flight = 16 * 1024 * 1024;
    assert!(
        resumed >= at_kill && resumed > 0,
        "resumed at {resumed}, {at_kill} were there: {report}"
    );
    assert!(
        sent <= size - resumed + in_flight,
        "sent {sent} with {resumed} already there: {report}"
    );
    let fsck = ok(ferry()
        .args(["registry", "fsck", "--json", "--state"])
        .arg(&server.state));
    let fsck: serde_json::Value = serde_json::from_str(&fsck).unwrap();
    assert!(
        fsck["corrupt_blobs"].as_array().unwrap().is_empty()
            && fsck["problems"].as_array().unwrap().is_empty(),
        "{fsck}"
    );
    ok(skopeo().args([
        "inspect",
        "--tls-verify=false",
        &format!("docker://{}/team/big:v1", server.addr),
    ]));
}

#[test]
fn damaged_and_hostile_bundles_are_refused_with_nothing_pushed() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    standard(&src);
    let site = tmp.path().join("site.ferry");
    bundle_from_layout(&src, &["many"], &site, WriteOptions::default());
    let good = std::fs::read(&site).unwrap();
    let server = Server::start(&tmp.path().join("ferry-state"), &[]);
    let push = |path: &Path| {
        run(ferry()
            .current_dir(tmp.path())
            .args(["bundle", "push", "--insecure", "--to", &server.addr])
            .arg(path)
            .arg("--state")
            .arg(tmp.path().join("s")))
    };
    let nothing_pushed = || {
        let store = Store::open(server.state.join("registry"), Limits::default()).unwrap();
        assert!(
            store.repositories().unwrap().is_empty(),
            "something was pushed"
        );
    };

    // Truncated.
    let truncated = tmp.path().join("truncated.ferry");
    std::fs::write(&truncated, &good[..good.len() * 2 / 3]).unwrap();
    let out = push(&truncated);
    assert_eq!(out.status.code(), Some(1), "damaged: exit 1");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("truncated") || stderr.contains("incomplete"),
        "{stderr}"
    );
    nothing_pushed();

    // A flipped byte inside a layer: verify says which blob, push commits nothing.
    let flipped = tmp.path().join("flipped.ferry");
    let bundle = ferry_bundle::Bundle::open(&site).unwrap();
    let victim = bundle
        .manifest
        .blobs
        .iter()
        .max_by_key(|b| b.size)
        .unwrap()
        .clone();
    let member = bundle.blob(&victim.digest).unwrap();
    let mut bad = good.clone();
    bad[(member.offset + member.size / 3) as usize] ^= 0x01;
    std::fs::write(&flipped, &bad).unwrap();
    let out = run(ferry().args(["bundle", "verify"]).arg(&flipped));
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains(&victim.digest.to_string()));
    let out = push(&flipped);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains(&victim.digest.to_string()));
    let store = Store::open(server.state.join("registry"), Limits::default()).unwrap();
    assert_eq!(store.blob_size(&victim.digest).unwrap(), None);
    assert!(
        store
            .tags("team/many")
            .unwrap()
            .unwrap_or_default()
            .is_empty()
    );

    // Members that escape.
    for (name, kind) in [
        ("../../etc/x", tar::EntryType::Regular),
        ("/etc/x", tar::EntryType::Regular),
        ("blobs/evil", tar::EntryType::Symlink),
    ] {
        let mut tar = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(0);
        h.set_mode(0o644);
        if kind == tar::EntryType::Symlink {
            h.set_link_name("../../../etc/passwd").unwrap();
        }
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_cksum();
        tar.append(&h, std::io::empty()).unwrap();
        let evil = tmp.path().join("evil.ferry");
        std::fs::write(&evil, tar.into_inner().unwrap()).unwrap();
        let out = push(&evil);
        assert_eq!(out.status.code(), Some(1), "{name}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("unsafe member"),
            "{name}"
        );
    }

    // A split bundle with a part missing.
    let split = split_bundle(tmp.path());
    std::fs::remove_file(tmp.path().join("split.ferry.001")).unwrap();
    let out = push(&split);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("part 001 is not there"), "{stderr}");
    let store = Store::open(server.state.join("registry"), Limits::default()).unwrap();
    assert!(
        !store
            .repositories()
            .unwrap()
            .contains(&"team/chunky".to_string()),
        "nothing of it pushed"
    );
}
