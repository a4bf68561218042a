//! Local sources: an OCI layout directory written here, and archives
//! written by Debian's skopeo: `oci-archive` and `docker-archive` (the
//! `docker save` format, converted to an OCI image with zstd or gzip
//! layers).

use std::io::Read;

use ferry_bundle::Bundle;
use ferry_bundle::cache::ContentCache;
use ferry_bundle::create::{CreateOptions, resolve};
use ferry_bundle::spec::Spec;
use ferry_oci::{Digest, ParsedManifest, media_type};
use serde_json::json;

use crate::support::{
    RecordingProgress, Site, TestImage, TestRegistry, descriptor, index, run_async,
};

/// Writes an OCI layout holding `images` under the given ref names.
fn write_layout(dir: &std::path::Path, images: &[(&TestImage, &str)]) {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let mut manifests = Vec::new();
    for (image, name) in images {
        for blob in image.blobs().chain(std::iter::once(&image.manifest)) {
            std::fs::write(blobs.join(Digest::sha256(blob).hex()), blob).unwrap();
        }
        let mut d = descriptor(media_type::OCI_MANIFEST, &image.manifest);
        d["annotations"] = json!({"org.opencontainers.image.ref.name": name});
        manifests.push(d);
    }
    let index = json!({"schemaVersion": 2, "manifests": manifests});
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
}

#[tokio::test]
async fn oci_layout_directories() {
    let site = Site::new();
    let one = TestImage::new(20, &[9_000], "linux", "amd64");
    let two = TestImage::new(21, &[8_000], "linux", "amd64");
    write_layout(
        &site.path("layouts/app"),
        &[(&one, "1.0"), (&two, "registry.example/team/tool:2.1")],
    );
    write_layout(&site.path("layouts/single"), &[(&one, "whatever")]);
    let spec = "images:\n  - oci:layouts/app:1.0\n  - oci:layouts/app:registry.example/team/tool:2.1\n  - ref: oci:layouts/single\n    repository: apps/single\n";
    site.create(spec, "local.ferry").await.unwrap();
    let bundle = Bundle::open(&site.path("local.ferry")).unwrap();
    let e = &bundle.manifest.entries;
    assert_eq!(
        (e[0].repository.as_str(), e[0].tag.as_deref()),
        ("app", Some("1.0"))
    );
    assert_eq!(e[0].descriptor.digest, one.digest);
    assert_eq!(
        (e[1].repository.as_str(), e[1].tag.as_deref()),
        ("team/tool", Some("2.1"))
    );
    assert_eq!(e[1].descriptor.digest, two.digest);
    assert_eq!(
        (e[2].repository.as_str(), e[2].tag.as_deref()),
        ("apps/single", Some("whatever"))
    );
    assert_eq!(e[0].source, "oci:layouts/app:1.0");

    let err = site
        .create("images:\n  - oci:layouts/app\n", "x.ferry")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("2 images match") && err.contains("registry.example/team/tool:2.1"),
        "{err}"
    );
    let err = site
        .create("images:\n  - oci:layouts/app:3.0\n", "x.ferry")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("no image named \"3.0\""), "{err}");
    // A blob missing from the layout is named.
    std::fs::remove_file(site.path(&format!(
        "layouts/single/blobs/sha256/{}",
        Digest::sha256(&one.layers[0]).hex()
    )))
    .unwrap();
    let fresh = Site::new();
    std::fs::rename(site.path("layouts"), fresh.path("layouts")).unwrap();
    let err = fresh
        .create("images:\n  - oci:layouts/single\n", "x.ferry")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&Digest::sha256(&one.layers[0]).to_string()) && err.contains("missing"),
        "{err}"
    );
}

async fn registry_with_multi_arch() -> (TestRegistry, TestImage, TestImage, bytes::Bytes) {
    let registry = TestRegistry::start().await;
    let repo = registry.repository("library/app");
    let amd = TestImage::new(30, &[50_000, 2_000], "linux", "amd64");
    let arm = TestImage::new(31, &[45_000], "linux", "arm64");
    amd.push(&repo, None).await;
    arm.push(&repo, None).await;
    let idx = index(&[&amd, &arm]);
    repo.put_manifest("1.0", media_type::OCI_INDEX, idx.clone())
        .await
        .unwrap();
    (registry, amd, arm, idx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oci_archives_from_skopeo() {
    let (registry, _amd, arm, idx) = registry_with_multi_arch().await;
    let site = Site::new();
    let archive = site.path("app.tar");
    run_async(
        "skopeo",
        &[
            "copy",
            "--all",
            "--src-tls-verify=false",
            &format!("docker://{}/library/app:1.0", registry.host),
            &format!("oci-archive:{}:app:1.0", archive.display()),
        ],
    )
    .await;
    drop(registry);
    let spec = "images:\n  - oci-archive:app.tar:app:1.0\n  - ref: oci-archive:./app.tar:app:1.0\n    platforms: [linux/arm64]\n    tag: arm-only\n";
    site.create(spec, "site.ferry").await.unwrap();
    let bundle = Bundle::open(&site.path("site.ferry")).unwrap();
    let e = &bundle.manifest.entries;
    // skopeo kept the index byte for byte; so does ferry.
    assert_eq!(e[0].descriptor.digest, Digest::sha256(&idx));
    assert_eq!(
        (e[0].repository.as_str(), e[0].tag.as_deref()),
        ("library/app", Some("1.0"))
    );
    assert_eq!(e[1].platforms, vec!["linux/arm64"]);
    let filtered = bundle.read_blob(&e[1].descriptor.digest).unwrap().unwrap();
    let parsed = ParsedManifest::parse(&filtered, None).unwrap();
    assert_eq!(parsed.manifests.len(), 1);
    assert_eq!(parsed.manifests[0].digest, arm.digest);
}

/// Decompresses a zstd or gzip layer.
fn decompress(media: &str, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match media {
        media_type::OCI_LAYER_ZSTD => {
            zstd_decode(data, &mut out);
        }
        media_type::OCI_LAYER_GZIP => {
            flate2::read::GzDecoder::new(data)
                .read_to_end(&mut out)
                .unwrap();
        }
        other => panic!("unexpected layer type {other}"),
    }
    out
}

/// zstd decoding with the reference tool (Debian's zstd), so the check
/// does not trust the library that encoded.
fn zstd_decode(data: &[u8], out: &mut Vec<u8>) {
    use std::io::Write;
    let mut child = std::process::Command::new("zstd")
        .args(["-d", "-c", "-q"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("zstd runs (Debian package zstd)");
    let mut stdin = child.stdin.take().unwrap();
    let input = data.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input).unwrap());
    child.stdout.take().unwrap().read_to_end(out).unwrap();
    writer.join().unwrap();
    assert!(child.wait().unwrap().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_archives_become_oci_images() {
    let (registry, amd, _arm, _) = registry_with_multi_arch().await;
    let site = Site::new();
    let archive = site.path("saved.tar");
    run_async(
        "skopeo",
        &[
            "copy",
            "--src-tls-verify=false",
            "--override-arch=amd64",
            &format!("docker://{}/library/app:1.0", registry.host),
            &format!(
                "docker-archive:{}:example.com/legacy/app:1.0",
                archive.display()
            ),
        ],
    )
    .await;
    drop(registry);
    let spec = "images:\n  - docker-archive:saved.tar\n  - ref: docker-archive:saved.tar:example.com/legacy/app:1.0\n    compression: gzip\n    repository: legacy/app-gzip\n";
    let progress = RecordingProgress::default();
    let options = CreateOptions::default();
    let cache = site.cache();
    run_create(&site, spec, "saved.ferry", &options, &cache, &progress).await;
    let compressed = progress
        .started
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.starts_with("compress"))
        .count();
    assert_eq!(
        compressed,
        2 * amd.layers.len(),
        "each layer compressed once per compression"
    );

    let bundle = Bundle::open(&site.path("saved.ferry")).unwrap();
    let e = &bundle.manifest.entries;
    assert_eq!(
        (e[0].repository.as_str(), e[0].tag.as_deref()),
        ("legacy/app", Some("1.0"))
    );
    for (entry, media) in [
        (&e[0], media_type::OCI_LAYER_ZSTD),
        (&e[1], media_type::OCI_LAYER_GZIP),
    ] {
        assert_eq!(entry.descriptor.media_type, media_type::OCI_MANIFEST);
        let manifest = bundle.read_blob(&entry.descriptor.digest).unwrap().unwrap();
        let parsed = ParsedManifest::parse(&manifest, None).unwrap();
        // The config is the image's own: same image ID.
        assert_eq!(
            parsed.config.as_ref().unwrap().digest,
            Digest::sha256(&amd.config)
        );
        assert_eq!(parsed.layers.len(), amd.layers.len());
        for (layer, original) in parsed.layers.iter().zip(&amd.layers) {
            assert_eq!(layer.media_type, media);
            let data = bundle.read_blob(&layer.digest).unwrap().unwrap();
            let mut tar = Vec::new();
            flate2::read::GzDecoder::new(&original[..])
                .read_to_end(&mut tar)
                .unwrap();
            assert_eq!(decompress(media, &data), tar);
        }
    }

    // Again: the conversions are remembered, nothing is compressed, and
    // the bundle is the same.
    let again = RecordingProgress::default();
    run_create(&site, spec, "again.ferry", &options, &cache, &again).await;
    assert!(
        again
            .started
            .lock()
            .unwrap()
            .iter()
            .all(|l| !l.starts_with("compress"))
    );
    assert_eq!(
        std::fs::read(site.path("saved.ferry")).unwrap(),
        std::fs::read(site.path("again.ferry")).unwrap()
    );

    // An archive whose layer does not match its config is refused.
    let fresh = Site::new();
    let bytes = std::fs::read(&archive).unwrap();
    let layer_tar_start = find(&bytes, b"f0\0").expect("a layer's first file");
    let mut corrupt = bytes.clone();
    let at = layer_tar_start + 600; // inside that file's data
    corrupt[at] ^= 0xff;
    fresh.write("saved.tar", &corrupt);
    let err = fresh
        .create("images:\n  - docker-archive:saved.tar\n", "x.ferry")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("is corrupt") && err.contains("the config says"),
        "{err}"
    );
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

async fn run_create(
    site: &Site,
    spec: &str,
    out: &str,
    options: &CreateOptions,
    cache: &ContentCache,
    progress: &RecordingProgress,
) {
    let path = site.write("ferry.yaml", spec);
    let spec = Spec::load(&path).unwrap();
    let resolution = resolve(&spec, site.dir.path(), options, cache, progress)
        .await
        .unwrap();
    resolution.fetch(4, progress).await.unwrap();
    ferry_bundle::create::blocking_write(
        resolution.plan(),
        cache.store().clone(),
        site.path(out),
        Default::default(),
        progress,
    )
    .await
    .unwrap();
}
