//! skopeo (Debian) reads back what ferry's client pushed to Distribution:
//! the index and image manifests byte for byte, and every blob when it
//! copies the whole multi-arch image into an OCI layout.

use std::path::Path;
use std::process::Command;

use ferry_oci::{Digest, media_type};

use crate::support::distribution::Distribution;
use crate::support::image::{TestImage, index};
use crate::support::plain_client;

fn skopeo(args: &[&str]) -> Vec<u8> {
    let out = Command::new("skopeo")
        .args(args)
        .output()
        .expect("skopeo runs (Debian package skopeo)");
    assert!(
        out.status.success(),
        "skopeo {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn layout_blob(layout: &Path, digest: &Digest) -> Vec<u8> {
    std::fs::read(layout.join("blobs/sha256").join(digest.hex())).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skopeo_reads_what_was_pushed() {
    let registry = Distribution::start();
    let host = registry.host();
    let client = plain_client(&host);
    let repo = client.repository(&host, "skopeo/app").unwrap();
    let amd = TestImage::new(90, &[400_000, 30_000, 7], "linux", "amd64");
    let arm = TestImage::new(91, &[350_000], "linux", "arm64");
    amd.push(&repo, Some("amd64")).await.unwrap();
    arm.push(&repo, None).await.unwrap();
    let index = index(&[&amd, &arm]);
    repo.put_manifest("multi", media_type::OCI_INDEX, index.clone())
        .await
        .unwrap();

    let reference = |tag: &str| format!("docker://{host}/skopeo/app:{tag}");
    let raw = skopeo(&[
        "inspect",
        "--tls-verify=false",
        "--raw",
        &reference("multi"),
    ]);
    assert_eq!(raw, index);
    let raw = skopeo(&[
        "inspect",
        "--tls-verify=false",
        "--raw",
        &reference("amd64"),
    ]);
    assert_eq!(raw, amd.manifest);
    let inspected: serde_json::Value = serde_json::from_slice(&skopeo(&[
        "inspect",
        "--tls-verify=false",
        &reference("amd64"),
    ]))
    .unwrap();
    assert_eq!(inspected["Digest"], amd.digest.to_string());
    assert_eq!(inspected["Architecture"], "amd64");
    assert_eq!(inspected["Layers"].as_array().unwrap().len(), 3);

    let dir = tempfile::tempdir().unwrap();
    // The test layers are real gzip streams (tools sniff the magic).
    let layer = dir.path().join("layer.gz");
    std::fs::write(&layer, &amd.layers[2]).unwrap();
    let out = Command::new("gzip")
        .arg("-dc")
        .arg(&layer)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        out.stdout,
        crate::support::image::random_bytes(90 * 1000 + 2, 7)
    );

    let layout = dir.path().join("layout");
    let destination = format!("oci:{}:multi", layout.display());
    skopeo(&[
        "copy",
        "--all",
        "--preserve-digests",
        "--src-tls-verify=false",
        &reference("multi"),
        &destination,
    ]);
    let layout_index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    assert_eq!(
        layout_index["manifests"][0]["digest"],
        Digest::sha256(&index).to_string()
    );
    assert_eq!(layout_blob(&layout, &Digest::sha256(&index)), index);
    for image in [&amd, &arm] {
        assert_eq!(layout_blob(&layout, &image.digest), image.manifest);
        for blob in image.blobs() {
            assert_eq!(layout_blob(&layout, &Digest::sha256(blob)), &blob[..]);
        }
    }
}
