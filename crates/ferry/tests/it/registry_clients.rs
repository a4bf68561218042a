//! `ferry serve` with Debian's skopeo and podman.

use std::path::Path;
use std::process::Command;

use crate::images::{assert_blobs_identical, standard};
use crate::{Server, ok, run};

pub fn skopeo() -> Command {
    let mut c = Command::new("skopeo");
    // No host-wide blob-info cache: every copy sees only this test's registry.
    c.env("XDG_RUNTIME_DIR", std::env::temp_dir());
    c
}

/// `skopeo copy` without TLS verification, plus `extra` options.
pub fn copy(src: &str, dst: &str, extra: &[&str]) -> std::process::Output {
    run(skopeo()
        .args(["copy", "--src-tls-verify=false", "--dest-tls-verify=false"])
        .args(extra)
        .args([src, dst]))
}

#[test]
fn skopeo_round_trip_is_byte_identical() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    standard(&src);
    let server = Server::start(&tmp.path().join("state"), &[]);
    let addr = &server.addr;
    let pairs = [
        ("multi", "team/platform/multi:v1"),
        ("many", "a/b/c/d/many:v1"),
    ];
    for (tag, target) in pairs {
        let out = copy(
            &format!("oci:{}:{tag}", src.display()),
            &format!("docker://{addr}/{target}"),
            &["--all", "--preserve-digests"],
        );
        assert!(
            out.status.success(),
            "push {tag}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let back = tmp.path().join("back");
    for (tag, target) in pairs {
        let out = copy(
            &format!("docker://{addr}/{target}"),
            &format!("oci:{}:{tag}", back.display()),
            &["--all", "--preserve-digests"],
        );
        assert!(
            out.status.success(),
            "pull {tag}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Every blob and manifest came back with the same bytes, index included.
    let n = assert_blobs_identical(&src, &back);
    assert_eq!(n, assert_blobs_identical(&back, &src));
    let digests = |p: &Path| -> Vec<String> {
        let index: serde_json::Value =
            serde_json::from_slice(&std::fs::read(p.join("index.json")).unwrap()).unwrap();
        let mut d: Vec<String> = index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["digest"].as_str().unwrap().to_string())
            .collect();
        d.sort();
        d
    };
    assert_eq!(digests(&src), digests(&back));
    // Tags, catalog and fsck agree.
    let tags = ok(skopeo().args([
        "list-tags",
        "--tls-verify=false",
        &format!("docker://{addr}/team/platform/multi"),
    ]));
    assert!(tags.contains("\"v1\""), "{tags}");
    let fsck = ok(crate::ferry()
        .args(["registry", "fsck", "--json", "--state"])
        .arg(&server.state));
    let report: serde_json::Value = serde_json::from_str(&fsck).unwrap();
    assert_eq!(report["blobs_checked"].as_u64().unwrap() as usize, n);
    assert!(report["corrupt_blobs"].as_array().unwrap().is_empty());
}

#[test]
fn podman_pull_and_push() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    standard(&src);
    let server = Server::start(&tmp.path().join("state"), &[]);
    let addr = &server.addr;
    let out = copy(
        &format!("oci:{}:many", src.display()),
        &format!("docker://{addr}/apps/many:v1"),
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let podman = |args: &[&str]| {
        let mut c = Command::new("podman");
        c.arg("--root").arg(tmp.path().join("podman-root"));
        c.arg("--runroot").arg(tmp.path().join("podman-run"));
        c.args([
            "--storage-driver",
            "vfs",
            "--cgroup-manager",
            "cgroupfs",
            "--events-backend",
            "none",
        ]);
        c.args(args);
        c
    };
    ok(&mut podman(&[
        "pull",
        "--tls-verify=false",
        &format!("{addr}/apps/many:v1"),
    ]));
    ok(&mut podman(&[
        "tag",
        &format!("{addr}/apps/many:v1"),
        &format!("{addr}/pushed/by/podman:v2"),
    ]));
    ok(&mut podman(&[
        "push",
        "--tls-verify=false",
        &format!("{addr}/pushed/by/podman:v2"),
    ]));
    let inspect = ok(skopeo().args([
        "inspect",
        "--tls-verify=false",
        &format!("docker://{addr}/pushed/by/podman:v2"),
    ]));
    let inspect: serde_json::Value = serde_json::from_str(&inspect).unwrap();
    assert_eq!(inspect["Layers"].as_array().unwrap().len(), 40);
}

fn htpasswd(dir: &Path) -> std::path::PathBuf {
    let out = ok(Command::new("htpasswd").args(["-Bbn", "alice", "s3cret"]));
    let path = dir.join("users");
    std::fs::write(&path, out).unwrap();
    path
}

fn login_and_push(auth: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    standard(&src);
    let users = htpasswd(tmp.path());
    let server = Server::start(
        &tmp.path().join("state"),
        &["--htpasswd", users.to_str().unwrap(), "--auth", auth],
    );
    let addr = &server.addr;
    let authfile = tmp.path().join("auth.json");
    let image = format!("oci:{}:many", src.display());
    // No credentials: refused, nothing stored.
    let out = copy(
        &image,
        &format!("docker://{addr}/secure/app:v1"),
        &["--dest-authfile", authfile.to_str().unwrap()],
    );
    assert!(!out.status.success(), "push without credentials must fail");
    let stderr = String::from_utf8_lossy(&out.stderr).to_lowercase();
    assert!(
        stderr.contains("unauthorized") || stderr.contains("authentication required"),
        "{stderr}"
    );
    // Wrong password: login fails.
    let bad = run(skopeo().args([
        "login",
        "--tls-verify=false",
        "-u",
        "alice",
        "-p",
        "wrong",
        "--authfile",
        authfile.to_str().unwrap(),
        addr,
    ]));
    assert!(!bad.status.success());
    ok(skopeo().args([
        "login",
        "--tls-verify=false",
        "-u",
        "alice",
        "-p",
        "s3cret",
        "--authfile",
        authfile.to_str().unwrap(),
        addr,
    ]));
    let out = copy(
        &image,
        &format!("docker://{addr}/secure/app:v1"),
        &["--dest-authfile", authfile.to_str().unwrap()],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // podman login writes the same kind of auth file.
    let podman_auth = tmp.path().join("podman-auth.json");
    ok(Command::new("podman").args([
        "login",
        "--tls-verify=false",
        "-u",
        "alice",
        "-p",
        "s3cret",
        "--authfile",
        podman_auth.to_str().unwrap(),
        addr,
    ]));
    let out = copy(
        &format!("docker://{addr}/secure/app:v1"),
        &format!("oci:{}:x", tmp.path().join("back").display()),
        &["--src-authfile", podman_auth.to_str().unwrap()],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop(server);
}

#[test]
fn login_with_token_auth() {
    login_and_push("token");
}

#[test]
fn login_with_basic_auth() {
    login_and_push("basic");
}

#[test]
fn tls_auto_with_the_printed_ca() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    standard(&src);
    let server = Server::start(&tmp.path().join("state"), &["--tls", "auto"]);
    let ca = tmp.path().join("state/tls/ca.crt");
    assert!(
        server.banner.contains(ca.to_str().unwrap()),
        "{}",
        server.banner
    );
    // Trust only the site CA: a certs directory as containers/image reads it.
    let certs = tmp.path().join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    std::fs::copy(&ca, certs.join("ca.crt")).unwrap();
    let out = run(skopeo().args([
        "copy",
        "--dest-cert-dir",
        certs.to_str().unwrap(),
        &format!("oci:{}:many", src.display()),
        &format!("docker://{}/tls/app:v1", server.addr),
    ]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Without the CA the certificate is not trusted.
    let out = run(skopeo().args(["inspect", &format!("docker://{}/tls/app:v1", server.addr)]));
    assert!(!out.status.success());
}

#[test]
fn gc_runs_online_through_the_server() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    standard(&src);
    let server = Server::start(&tmp.path().join("state"), &[]);
    let addr = &server.addr;
    for (tag, repo) in [("many", "keep/many:v1"), ("multi", "drop/multi:v1")] {
        let out = copy(
            &format!("oci:{}:{tag}", src.display()),
            &format!("docker://{addr}/{repo}"),
            &["--all"],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    ok(skopeo().args([
        "delete",
        "--tls-verify=false",
        &format!("docker://{addr}/drop/multi:v1"),
    ]));
    let report = ok(crate::ferry()
        .args(["registry", "gc", "--grace", "0", "--json", "--state"])
        .arg(&server.state));
    let report: serde_json::Value = serde_json::from_str(&report).unwrap();
    // The index goes (its children stay linked as manifests of their own).
    assert!(
        !report["blobs_deleted"].as_array().unwrap().is_empty(),
        "{report}"
    );
    // The server kept serving and kept what is referenced.
    let back = tmp.path().join("back");
    let out = copy(
        &format!("docker://{addr}/keep/many:v1"),
        &format!("oci:{}:x", back.display()),
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let fsck = ok(crate::ferry()
        .args(["registry", "fsck", "--json", "--state"])
        .arg(&server.state));
    let fsck: serde_json::Value = serde_json::from_str(&fsck).unwrap();
    assert!(fsck["problems"].as_array().unwrap().is_empty(), "{fsck}");
}

/// `--anonymous-read` lets skopeo pull without credentials. After the
/// Basic challenge of `/v2/`, containers/image sends `Authorization: Basic
/// Og==` (an empty user and password) on every request: that is anonymous,
/// not a failed login.
#[test]
fn anonymous_pull_with_skopeo() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    standard(&src);
    let users = htpasswd(tmp.path());
    for auth in ["basic", "token"] {
        let server = Server::start(
            &tmp.path().join(format!("state-{auth}")),
            &[
                "--htpasswd",
                users.to_str().unwrap(),
                "--auth",
                auth,
                "--anonymous-read",
            ],
        );
        let addr = &server.addr;
        let out = copy(
            &format!("oci:{}:many", src.display()),
            &format!("docker://{addr}/open/app:v1"),
            &["--dest-creds", "alice:s3cret"],
        );
        assert!(
            out.status.success(),
            "push with --auth {auth}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = copy(
            &format!("docker://{addr}/open/app:v1"),
            &format!(
                "oci:{}:x",
                tmp.path().join(format!("back-{auth}")).display()
            ),
            &["--src-no-creds"],
        );
        assert!(
            out.status.success(),
            "anonymous pull with --auth {auth}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // Pushing still needs a user.
        let out = copy(
            &format!("oci:{}:many", src.display()),
            &format!("docker://{addr}/open/other:v1"),
            &["--dest-no-creds"],
        );
        assert!(!out.status.success(), "anonymous push with --auth {auth}");
    }
}
