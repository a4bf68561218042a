//! A full disk: the registry answers 507 and stores nothing half-written,
//! releases what the refused upload had received, creates no session it
//! has no room for, and recovers by itself once space is freed; abandoned
//! upload sessions expire. `bundle create` fails with the reason and
//! leaves no partial file. Uses a small tmpfs mounted by the test (the
//! suite runs as root).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::images::Layout;
use crate::registry_clients::copy;
use crate::{Server, ferry, ok, run};

/// A tmpfs of `megabytes` at `dir`, unmounted on drop.
pub struct SmallDisk(pub PathBuf);

impl SmallDisk {
    pub fn mount(dir: &Path, megabytes: u32) -> SmallDisk {
        std::fs::create_dir_all(dir).unwrap();
        ok(Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={megabytes}m"), "tmpfs"])
            .arg(dir));
        SmallDisk(dir.to_path_buf())
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn full_disk_is_a_clear_error_and_nothing_is_half_written() {
    let tmp = tempfile::tempdir().unwrap();
    let disk = SmallDisk::mount(&tmp.path().join("small"), 8);
    let server = Server::start(&disk.0.join("state"), &[]);
    let data = crate::images::bytes(3, 20 * 1024 * 1024);
    let digest = ferry_oci::Digest::sha256(&data);
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (status, body) = rt.block_on(async {
        let reply = reqwest::Client::new()
            .post(format!(
                "http://{}/v2/big/blobs/uploads/?digest={digest}",
                server.addr
            ))
            .body(data.clone())
            .send()
            .await
            .unwrap();
        (reply.status().as_u16(), reply.text().await.unwrap())
    });
    assert_eq!(status, 507, "{body}");
    assert!(body.contains("disk is full"), "{body}");
    let store = ferry_store::Store::open(
        disk.0.join("state/registry"),
        ferry_store::Limits::default(),
    )
    .unwrap();
    assert_eq!(store.blob_size(&digest).unwrap(), None);
    let fsck = ok(ferry()
        .args(["registry", "fsck", "--json", "--state"])
        .arg(&server.state));
    assert!(fsck.contains("\"corrupt_blobs\": []"), "{fsck}");
    drop(server);

    // bundle create with its cache elsewhere and its output on the small disk.
    std::fs::write(tmp.path().join("big.bin"), &data).unwrap();
    std::fs::write(tmp.path().join("ferry.yaml"), "files:\n  - big.bin\n").unwrap();
    let out = run(ferry()
        .current_dir(tmp.path())
        .args([
            "bundle",
            "create",
            "-f",
            "ferry.yaml",
            "--state",
            "state",
            "-o",
        ])
        .arg(disk.0.join("site.ferry")));
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("No space left on device"), "{stderr}");
    let left: Vec<_> = std::fs::read_dir(&disk.0)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| n.to_string_lossy().starts_with("site.ferry"))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

/// What a store's `uploads/` (or `tmp/`) directory holds.
fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

fn http(
    rt: &tokio::runtime::Runtime,
    method: reqwest::Method,
    url: &str,
    body: Vec<u8>,
) -> (u16, String) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    rt.block_on(async {
        let reply = reqwest::Client::new()
            .request(method, url)
            .body(body)
            .send()
            .await
            .unwrap();
        (
            reply.status().as_u16(),
            reply.text().await.unwrap_or_default(),
        )
    })
}

/// skopeo pushes a layer larger than the disk: 507, and the partial layer
/// is released at once, so the next (small) push succeeds.
#[test]
fn a_refused_upload_releases_its_data() {
    let tmp = tempfile::tempdir().unwrap();
    let disk = SmallDisk::mount(&tmp.path().join("small"), 64);
    let server = Server::start(&disk.0.join("state"), &[]);
    let addr = &server.addr;
    let mut layout = Layout::new(&tmp.path().join("src"));
    let big = layout.image(7, 1, 80 * 1024 * 1024, "amd64", None);
    layout.tag("big", big);
    let small = layout.image(8, 3, 100_000, "amd64", None);
    layout.tag("small", small);
    let src = tmp.path().join("src");

    let out = copy(
        &format!("oci:{}:big", src.display()),
        &format!("docker://{addr}/site/big:v1"),
        &[],
    );
    assert!(!out.status.success(), "the big layer cannot fit");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("disk is full") || stderr.contains("507"),
        "{stderr}"
    );
    let uploads = server.state.join("registry/uploads");
    assert_eq!(
        entries(&uploads),
        Vec::<String>::new(),
        "a refused upload left its session"
    );

    let out = copy(
        &format!("oci:{}:small", src.display()),
        &format!("docker://{addr}/site/small:v1"),
        &[],
    );
    assert!(
        out.status.success(),
        "the disk has room again: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(entries(&uploads), Vec::<String>::new());
    let fsck = ok(ferry()
        .args(["registry", "fsck", "--json", "--state"])
        .arg(&server.state));
    let fsck: serde_json::Value = serde_json::from_str(&fsck).unwrap();
    assert!(
        fsck["corrupt_blobs"].as_array().unwrap().is_empty(),
        "{fsck}"
    );
    assert!(fsck["problems"].as_array().unwrap().is_empty(), "{fsck}");
}

/// With the disk full to the last byte, starting an upload is refused
/// with 507 and leaves no session behind; once space is freed the same
/// server takes pushes again, without a restart.
#[test]
fn a_full_disk_creates_no_sessions_and_recovers_once_space_is_freed() {
    let tmp = tempfile::tempdir().unwrap();
    let disk = SmallDisk::mount(&tmp.path().join("small"), 16);
    let server = Server::start(&disk.0.join("state"), &[]);
    let addr = &server.addr;
    let src = tmp.path().join("src");
    let mut layout = Layout::new(&src);
    let small = layout.image(9, 3, 100_000, "amd64", None);
    layout.tag("small", small);

    // Fill the disk.
    let filler = disk.0.join("filler");
    let mut file = std::fs::File::create(&filler).unwrap();
    let chunk = vec![0x5a; 1024 * 1024];
    loop {
        use std::io::Write;
        if let Err(e) = file.write_all(&chunk).and_then(|()| file.flush()) {
            assert_eq!(e.kind(), std::io::ErrorKind::StorageFull, "{e}");
            break;
        }
    }
    drop(file);

    let rt = tokio::runtime::Runtime::new().unwrap();
    for _ in 0..5 {
        let (status, body) = http(
            &rt,
            reqwest::Method::POST,
            &format!("http://{addr}/v2/site/app/blobs/uploads/"),
            Vec::new(),
        );
        assert_eq!(status, 507, "{body}");
        assert!(body.contains("disk is full"), "{body}");
    }
    let registry = server.state.join("registry");
    assert_eq!(entries(&registry.join("uploads")), Vec::<String>::new());
    assert_eq!(entries(&registry.join("tmp")), Vec::<String>::new());
    let out = copy(
        &format!("oci:{}:small", src.display()),
        &format!("docker://{addr}/site/small:v1"),
        &[],
    );
    assert!(!out.status.success(), "the disk is full");
    assert_eq!(entries(&registry.join("uploads")), Vec::<String>::new());

    std::fs::remove_file(&filler).unwrap();
    let out = copy(
        &format!("oci:{}:small", src.display()),
        &format!("docker://{addr}/site/small:v1"),
        &[],
    );
    assert!(
        out.status.success(),
        "space was freed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(entries(&registry.join("uploads")), Vec::<String>::new());
}

/// A client that vanishes mid-upload leaves a session holding its bytes:
/// `ferry serve` expires it after `--upload-expiry`, and `registry gc`
/// removes sessions idle for longer than `--grace` (with `--grace 0`,
/// every session nobody is writing to), including the empty session
/// directories older versions left.
#[test]
fn abandoned_upload_sessions_expire_and_gc_removes_them() {
    let tmp = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let abandon = |addr: &str| -> String {
        let url = format!("http://{addr}/v2/site/app/blobs/uploads/");
        rt.block_on(async {
            let _ = rustls::crypto::ring::default_provider().install_default();
            let http = reqwest::Client::new();
            let started = http.post(&url).send().await.unwrap();
            assert_eq!(started.status().as_u16(), 202);
            let location = started.headers()["location"].to_str().unwrap().to_string();
            let patched = http
                .patch(format!("http://{addr}{location}"))
                .body(vec![1u8; 1024 * 1024])
                .send()
                .await
                .unwrap();
            assert_eq!(patched.status().as_u16(), 202);
            location
        })
    };

    // The server's own expiry.
    let server = Server::start(&tmp.path().join("expiring"), &["--upload-expiry", "1"]);
    let location = abandon(&server.addr);
    let uploads = server.state.join("registry/uploads");
    assert_eq!(entries(&uploads).len(), 1);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !entries(&uploads).is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(
        entries(&uploads),
        Vec::<String>::new(),
        "the session never expired"
    );
    let (status, _) = http(
        &rt,
        reqwest::Method::GET,
        &format!("http://{}{location}", server.addr),
        Vec::new(),
    );
    assert_eq!(status, 404);
    drop(server);

    // gc, through a server that keeps sessions for the default hour.
    let server = Server::start(&tmp.path().join("kept"), &[]);
    abandon(&server.addr);
    let uploads = server.state.join("registry/uploads");
    std::fs::create_dir(uploads.join("0123456789abcdef0123456789abcdef")).unwrap();
    let report = ok(ferry()
        .args(["registry", "gc", "--json", "--state"])
        .arg(&server.state));
    let report: serde_json::Value = serde_json::from_str(&report).unwrap();
    assert_eq!(report["uploads_purged"], 0, "{report}");
    assert_eq!(entries(&uploads).len(), 2);
    let report = ok(ferry()
        .args(["registry", "gc", "--grace", "0", "--state"])
        .arg(&server.state));
    assert!(report.contains("2 stale uploads"), "{report}");
    assert_eq!(entries(&uploads), Vec::<String>::new());
}
