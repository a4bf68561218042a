//! `ferry bundle create` and `ferry bundle keygen` as users run them:
//! from `ferry serve` filled with `ferry copy`, a local file and
//! manifests; signed, checked by `ferry bundle verify --json` and
//! `inspect`; made again without a download; a download (registry blob or
//! URL) cut by kill -9 resumed where it stopped; bad specs and unreachable sources exit 2 with
//! a message that says what to do.

use std::path::Path;
use std::process::Command;

use crate::images::{Layout, bytes, standard};
use crate::slow_link::SlowLink;
use crate::{Server, ferry, jitter, kill_when, largest_upload, ok, run};

/// `ferry bundle create` (wired as a hidden top-level command until it
/// joins `ferry bundle`; then this becomes `["bundle", "create"]`).
const CREATE: &[&str] = &["bundle", "create"];
const KEYGEN: &[&str] = &["bundle", "keygen"];

/// `oras pull` with oras-py: HOST REFERENCE OUTDIR.
const ORAS_PULL: &str = "
import sys
try:
    import oras.client
except ImportError:
    sys.exit('oras-py is missing: scripts/test.sh installs it (pip install oras)')
client = oras.client.OrasClient(hostname=sys.argv[1], insecure=True)
client.pull(target=sys.argv[2], outdir=sys.argv[3])
";

fn create(dir: &Path) -> Command {
    let mut c = ferry();
    c.current_dir(dir)
        .args(CREATE)
        .args(["--state", "state"])
        .env_remove("SOURCE_DATE_EPOCH");
    c
}

#[test]
fn create_sign_verify_and_create_again_without_downloading() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let server = Server::start(&dir.join("server-state"), &[]);
    standard(&dir.join("src"));
    for name in ["multi", "many"] {
        ok(ferry()
            .args(["copy", "--insecure", "--state"])
            .arg(dir.join("copy-state"))
            .arg(format!("oci:{}:{name}", dir.join("src").display()))
            .arg(format!("docker://{}/team/{name}:v1", server.addr)));
    }
    std::fs::write(dir.join("tool.bin"), crate::images::bytes(9, 200_000)).unwrap();
    std::fs::create_dir(dir.join("k8s")).unwrap();
    std::fs::write(
        dir.join("k8s/app.yaml"),
        "apiVersion: apps/v1\nkind: Deployment\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("ferry.yaml"),
        format!(
            "name: test-site\nimages:\n  - {a}/team/multi:v1\n  - ref: {a}/team/many:v1\n    repository: apps/many\nfiles:\n  - tool.bin\nmanifests:\n  - k8s\n",
            a = server.addr
        ),
    )
    .unwrap();
    let keygen = ok(ferry().current_dir(dir).args(KEYGEN).args(["-o", "site"]));
    assert!(
        keygen.contains("site.key") && keygen.contains("key id"),
        "{keygen}"
    );
    let again = run(ferry().current_dir(dir).args(KEYGEN).args(["-o", "site"]));
    assert_eq!(
        again.status.code(),
        Some(2),
        "keygen never overwrites a key"
    );

    let summary = ok(create(dir).args([
        "-o",
        "site.ferry",
        "--plain-http",
        &server.addr,
        "--sign",
        "site.key",
        "--platform",
        "linux/arm64",
        "--platform",
        "linux/amd64",
    ]));
    assert!(summary.contains("wrote site.ferry"), "{summary}");
    assert!(
        summary.contains("4 entries: 1 file, 2 images, 1 manifests"),
        "{summary}"
    );
    assert!(summary.contains("signed with key"), "{summary}");

    let verify = ok(ferry()
        .current_dir(dir)
        .args(["bundle", "verify", "site.ferry", "--json"]));
    let verify: serde_json::Value = serde_json::from_str(&verify).unwrap();
    assert_eq!(verify["problems"], serde_json::json!([]), "{verify}");
    let inspect = ok(ferry()
        .current_dir(dir)
        .args(["bundle", "inspect", "site.ferry"]));
    assert!(inspect.contains("signed   yes"), "{inspect}");
    assert!(inspect.contains("apps/many:v1"), "{inspect}");
    assert!(inspect.contains("linux/amd64,linux/arm64/v8"), "{inspect}");

    // Signatures: the right key passes; a bundle whose index was changed
    // and re-signed with another key is refused before anything is sent.
    ok(ferry()
        .current_dir(dir)
        .args(["bundle", "verify", "site.ferry", "--key", "site.pub"]));
    ok(ferry()
        .current_dir(dir)
        .args(KEYGEN)
        .args(["-o", "mallory"]));
    std::fs::write(
        dir.join("tampered.yaml"),
        format!(
            "images:\n  - ref: {a}/team/multi:v1\n    repository: apps/many\n    tag: v1\n",
            a = server.addr
        ),
    )
    .unwrap();
    ok(ferry().current_dir(dir).args(CREATE).args([
        "--state",
        "state",
        "-f",
        "tampered.yaml",
        "-o",
        "tampered.ferry",
        "--plain-http",
        &server.addr,
        "--sign",
        "mallory.key",
    ]));
    let out = run(ferry().current_dir(dir).args([
        "bundle",
        "verify",
        "tampered.ferry",
        "--key",
        "site.pub",
    ]));
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let target = Server::start(&dir.join("target-state"), &[]);
    let out = run(ferry().current_dir(dir).args([
        "bundle",
        "push",
        "tampered.ferry",
        "--insecure",
        "--key",
        "site.pub",
        "--to",
        &target.addr,
        "--state",
        "push-state",
    ]));
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing was pushed"));
    let store = ferry_store::Store::open(
        target.state.join("registry"),
        ferry_store::Limits::default(),
    )
    .unwrap();
    assert!(store.repositories().unwrap().is_empty(), "not a byte sent");
    let pushed = ok(ferry().current_dir(dir).args([
        "bundle",
        "push",
        "site.ferry",
        "--insecure",
        "--key",
        "site.pub",
        "--to",
        &target.addr,
        "--state",
        "push-state",
    ]));
    assert!(pushed.contains("signed by key"), "{pushed}");
    assert!(
        pushed.ends_with("registries.yaml) under site-site\n"),
        "{pushed}"
    );
    // A third-party ORAS client (oras-py) pulls the file as it went in.
    let pulled = dir.join("oras-pull");
    ok(Command::new(crate::test_python())
        .args([
            "-c",
            ORAS_PULL,
            &target.addr,
            &format!("{}/files/tool.bin:latest", target.addr),
        ])
        .arg(&pulled));
    assert_eq!(
        std::fs::read(pulled.join("tool.bin")).unwrap(),
        std::fs::read(dir.join("tool.bin")).unwrap()
    );

    // Again, to another file, as JSON: nothing downloaded, same bytes.
    let report = ok(create(dir).args([
        "-o",
        "again.ferry",
        "--plain-http",
        &server.addr,
        "--sign",
        "site.key",
        "--platform",
        "linux/arm64",
        "--platform",
        "linux/amd64",
        "--json",
    ]));
    let report: serde_json::Value = serde_json::from_str(&report).unwrap();
    assert_eq!(report["fetch"]["blobs_fetched"], 0, "{report}");
    assert_eq!(report["entries"], 4);
    assert_eq!(
        std::fs::read(dir.join("site.ferry")).unwrap(),
        std::fs::read(dir.join("again.ferry")).unwrap()
    );

    // A creation time from SOURCE_DATE_EPOCH, and split parts.
    ok(create(dir).env("SOURCE_DATE_EPOCH", "1700000000").args([
        "-o",
        "dated.ferry",
        "--plain-http",
        &server.addr,
        "--split",
        "1M",
    ]));
    assert!(dir.join("dated.ferry.000").exists() && dir.join("dated.ferry.001").exists());
    let inspect = ok(ferry()
        .current_dir(dir)
        .args(["bundle", "inspect", "dated.ferry", "--json"]));
    let inspect: serde_json::Value = serde_json::from_str(&inspect).unwrap();
    assert_eq!(inspect["created"], "2023-11-14T22:13:20Z", "{inspect}");

    // A self-extracting bundle runs on its own.
    ok(create(dir).args([
        "-o",
        "site.run",
        "--plain-http",
        &server.addr,
        "--self-extracting",
    ]));
    let listing = ok(Command::new("./site.run")
        .current_dir(dir)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .arg("inspect"));
    assert!(listing.contains("team/multi:v1"), "{listing}");
}

#[test]
fn bad_specs_and_unreachable_sources_fail_with_what_to_do() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(
        dir.join("typo.yaml"),
        "images:\n  - ref: nginx\n    platfroms: [linux/amd64]\n",
    )
    .unwrap();
    let out = run(create(dir).args(["-f", "typo.yaml", "-o", "x.ferry"]));
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("typo.yaml: line 3 column 5: unknown field `platfroms`"),
        "{stderr}"
    );

    std::fs::write(
        dir.join("gone.yaml"),
        "images:\n  - 127.0.0.1:1/team/app:1\n",
    )
    .unwrap();
    let out = run(create(dir).args([
        "-f",
        "gone.yaml",
        "-o",
        "x.ferry",
        "--plain-http",
        "127.0.0.1:1",
    ]));
    assert_eq!(out.status.code(), Some(69), "unreachable");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("images[0] (127.0.0.1:1/team/app:1)"),
        "{stderr}"
    );
    assert!(stderr.contains("Connection refused"), "{stderr}");
    assert!(stderr.contains("hint:"), "{stderr}");
    assert!(!dir.join("x.ferry").exists());

    let out = run(create(dir).args(["-f", "gone.yaml", "-o", "x.ferry", "--sign", "nope.key"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("ferry bundle keygen"));
    let out = run(create(dir).args(["-f", "gone.yaml", "-o", "x.ferry", "--split", "4X"]));
    assert_eq!(out.status.code(), Some(2));
}

/// A registry with a private CA and a password (`ferry serve --tls auto
/// --htpasswd`): reached with the spec's `hosts` (ca_file, username,
/// password_env), and refused with a clear message without them.
#[test]
fn private_ca_and_credentials_from_the_spec() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let htpasswd = ok(Command::new("htpasswd").args(["-Bbn", "site", "s3cret"]));
    std::fs::write(dir.join("htpasswd"), htpasswd).unwrap();
    let server = Server::start(
        &dir.join("server-state"),
        &[
            "--tls",
            "auto",
            "--htpasswd",
            dir.join("htpasswd").to_str().unwrap(),
        ],
    );
    let ca = server
        .banner
        .lines()
        .find_map(|l| l.strip_prefix("created a site CA: "))
        .expect("ferry serve --tls auto names its CA")
        .to_string();
    standard(&dir.join("src"));
    ok(Command::new("skopeo")
        .env("XDG_RUNTIME_DIR", dir)
        .args([
            "copy",
            "--dest-tls-verify=false",
            "--dest-creds",
            "site:s3cret",
        ])
        .arg(format!("oci:{}:many", dir.join("src").display()))
        .arg(format!("docker://{}/team/many:v1", server.addr)));
    let spec = |hosts: &str| {
        format!(
            "hosts:\n  \"{}\":\n{hosts}images:\n  - {}/team/many:v1\n",
            server.addr, server.addr
        )
    };
    let full =
        format!("    ca_file: {ca}\n    username: site\n    password_env: REGISTRY_PASSWORD\n");
    std::fs::write(dir.join("ferry.yaml"), spec(&full)).unwrap();
    let summary = ok(create(dir)
        .env("REGISTRY_PASSWORD", "s3cret")
        .args(["-o", "site.ferry"]));
    assert!(summary.contains("1 entries: 1 image"), "{summary}");

    let out = run(create(dir)
        .env_remove("REGISTRY_PASSWORD")
        .args(["-o", "x.ferry"]));
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("REGISTRY_PASSWORD (password_env) is not set"),
        "{stderr}"
    );

    std::fs::write(
        dir.join("ferry.yaml"),
        spec("    username: site\n    password_env: REGISTRY_PASSWORD\n"),
    )
    .unwrap();
    let out = run(create(dir)
        .env("REGISTRY_PASSWORD", "s3cret")
        .args(["-o", "x.ferry"]));
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.to_lowercase().contains("certificate"), "{stderr}");
    assert!(stderr.contains("hint:"), "{stderr}");

    std::fs::write(dir.join("ferry.yaml"), spec(&full)).unwrap();
    let out = run(create(dir)
        .env("REGISTRY_PASSWORD", "wrong")
        .args(["-o", "x.ferry"]));
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("401"), "{stderr}");
}

#[test]
fn create_resumes_a_download_cut_by_kill_9() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let server = Server::start(&dir.join("server-state"), &[]);
    let mut layout = Layout::new(&dir.join("src"));
    let size = 96 * 1024 * 1024u64;
    let big = bytes(31, size as usize);
    let layer = layout.blob(ferry_oci::media_type::OCI_LAYER_GZIP, &big);
    let layer_digest = layer["digest"].as_str().unwrap().to_string();
    drop(big);
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
    ok(ferry()
        .args(["copy", "-q", "--insecure", "--state"])
        .arg(dir.join("copy-state"))
        .arg(format!("oci:{}:big", dir.join("src").display()))
        .arg(format!("docker://{}/team/big:v1", server.addr)));
    // 40 MB/s from the registry to ferry: the download takes over two
    // seconds, so the kill lands mid-blob on a machine of any speed.
    let link = SlowLink::start_downloads(&server.addr, 40_000_000);
    std::fs::write(
        dir.join("ferry.yaml"),
        format!("images:\n  - {}/team/big:v1\n", link.addr),
    )
    .unwrap();
    let create = || {
        let mut c = create(dir);
        // Not -q: the summary says what was written.
        c.args(["-o", "site.ferry", "--plain-http", &link.addr]);
        c
    };
    // Bytes of the layer the cache holds in its download session so far.
    let uploads = dir.join("state/cache/uploads");
    let received = || largest_upload(&uploads);
    let kill_at = size / 3 + jitter() % (size / 3);
    let kill_mid_download = || {
        kill_when(&mut create(), kill_at, received);
        let kept = received();
        assert!(kept >= kill_at, "{kept} bytes kept, killed after {kill_at}");
        assert!(
            !dir.join("site.ferry").exists(),
            "no bundle from a killed run"
        );
        kept
    };
    let kept = kill_mid_download();

    let before = link.downloaded();
    let summary = ok(&mut create());
    assert!(summary.contains("wrote site.ferry"), "{summary}");
    // The re-run asked only for the rest (plus manifests and HTTP headers).
    let fetched = link.downloaded() - before;
    let overhead = 256 * 1024;
    assert!(
        fetched <= size - kept + overhead,
        "fetched {fetched} bytes again with {kept} of {size} kept"
    );
    let verify = || {
        let verify =
            ok(ferry()
                .current_dir(dir)
                .args(["bundle", "verify", "site.ferry", "--json"]));
        let verify: serde_json::Value = serde_json::from_str(&verify).unwrap();
        assert_eq!(verify["problems"], serde_json::json!([]), "{verify}");
    };
    verify();

    // Kept bytes that went bad (a crash can leave a damaged tail) fail the
    // digest at the end; the download starts over once and the bundle is right.
    std::fs::remove_dir_all(dir.join("state/cache")).unwrap();
    std::fs::remove_file(dir.join("site.ferry")).unwrap();
    kill_mid_download();
    let session = std::fs::read_dir(&uploads)
        .unwrap()
        .flatten()
        .next()
        .unwrap();
    let data = session.path().join("data");
    let mut damaged = std::fs::read(&data).unwrap();
    damaged[1000] ^= 0xff;
    std::fs::write(&data, damaged).unwrap();
    let summary = ok(&mut create());
    assert!(summary.contains("wrote site.ferry"), "{summary}");
    verify();

    // A file by URL with a sha256 resumes the same way (the registry's blob
    // URL stands in for any HTTP server that answers ranges).
    std::fs::write(
        dir.join("ferry.yaml"),
        format!(
            "files:\n  - url: http://{}/v2/team/big/blobs/{layer_digest}\n    sha256: {}\n    name: big.bin\n",
            link.addr,
            layer_digest.strip_prefix("sha256:").unwrap()
        ),
    )
    .unwrap();
    std::fs::remove_dir_all(dir.join("state/cache")).unwrap();
    std::fs::remove_file(dir.join("site.ferry")).unwrap();
    let kept = kill_mid_download();
    let before = link.downloaded();
    let summary = ok(&mut create());
    assert!(summary.contains("1 file"), "{summary}");
    let fetched = link.downloaded() - before;
    assert!(
        fetched <= size - kept + overhead,
        "fetched {fetched} bytes of the URL again with {kept} of {size} kept"
    );
    verify();
}

#[test]
fn ctrl_c_while_writing_leaves_no_partial_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // A large file (sparse: quick to make, still hashed and copied in full),
    // so that writing the bundle takes a while.
    let big = std::fs::File::create(dir.join("big.bin")).unwrap();
    big.set_len(512 * 1024 * 1024).unwrap();
    std::fs::write(dir.join("ferry.yaml"), "files:\n  - big.bin\n").unwrap();
    let partial = dir.join("site.ferry.partial");
    let mut child = create(dir)
        .args(["-q", "-o", "site.ferry"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    while std::fs::metadata(&partial).map_or(0, |m| m.len()) < 64 * 1024 * 1024 {
        assert!(
            child.try_wait().unwrap().is_none(),
            "create ended before it could be interrupted"
        );
        assert!(
            std::time::Instant::now() < deadline,
            "no partial file appeared"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    ok(Command::new("kill").args(["-INT", &child.id().to_string()]));
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !partial.exists(),
        "{} is left behind: {stderr}",
        partial.display()
    );
    assert!(!dir.join("site.ferry").exists());
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    insta::assert_snapshot!(stderr);
}

#[test]
fn a_creation_time_the_bundle_cannot_hold_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(dir.join("tool.bin"), b"tool").unwrap();
    std::fs::write(dir.join("ferry.yaml"), "files:\n  - tool.bin\n").unwrap();
    let mut said = String::new();
    for epoch in ["99999999999999", "-1"] {
        let out = run(create(dir)
            .env("SOURCE_DATE_EPOCH", epoch)
            .args(["-q", "-o", "site.ferry"]));
        said.push_str(&format!(
            "SOURCE_DATE_EPOCH={epoch}: exit {}\n{}",
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr)
        ));
        assert!(!dir.join("site.ferry").exists(), "{said}");
    }
    // The last second a tar header holds, and the epoch itself, work.
    for (epoch, date) in [
        ("8589934591", "2242-03-16T12:56:31Z"),
        ("0", "1970-01-01T00:00:00Z"),
    ] {
        ok(create(dir)
            .env("SOURCE_DATE_EPOCH", epoch)
            .args(["-q", "-o", "site.ferry"]));
        let bundle = ferry_bundle::Bundle::open(&dir.join("site.ferry")).unwrap();
        assert_eq!(bundle.manifest.created.as_deref(), Some(date));
    }
    insta::assert_snapshot!(said);
}
