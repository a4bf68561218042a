//! A full disk: the registry answers 507 and stores nothing half-written;
//! `bundle create` fails with the reason and leaves no partial file.
//! Uses a small tmpfs mounted by the test (the suite runs as root).

use std::path::{Path, PathBuf};
use std::process::Command;

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
