//! Images from a registry (ferry's own, served on loopback): multi-arch
//! indexes kept byte for byte or filtered, the cache (nothing downloaded
//! twice, counted at the registry), identical output, clear errors.

use std::time::Duration;

use ferry_bundle::Bundle;
use ferry_bundle::create::{CreateError, CreateOptions};
use ferry_bundle::writer::WriteOptions;
use ferry_client::RetryPolicy;
use ferry_oci::{Digest, ParsedManifest, media_type};

use crate::support::{Site, TestImage, TestRegistry, index, layer_tar, random_bytes, requests};

/// Pushes a two-platform image as `library/app:1.0`; returns the images
/// and the index bytes.
async fn push_multi_arch(registry: &TestRegistry) -> (TestImage, TestImage, bytes::Bytes) {
    let repo = registry.repository("library/app");
    let amd = TestImage::new(1, &[40_000, 3_000], "linux", "amd64");
    let arm = TestImage::new(2, &[35_000], "linux", "arm64");
    amd.push(&repo, None).await;
    arm.push(&repo, None).await;
    let idx = index(&[&amd, &arm]);
    repo.put_manifest("1.0", media_type::OCI_INDEX, idx.clone())
        .await
        .unwrap();
    (amd, arm, idx)
}

fn blob_digests(bundle: &Bundle) -> Vec<Digest> {
    bundle
        .manifest
        .blobs
        .iter()
        .map(|b| b.digest.clone())
        .collect()
}

#[tokio::test]
async fn all_platforms_keep_the_index_digest() {
    let registry = TestRegistry::start().await;
    let (amd, arm, idx) = push_multi_arch(&registry).await;
    let site = Site::new();
    let spec = format!(
        "{}images:\n  - {}/library/app:1.0\n",
        registry.hosts_yaml(),
        registry.host
    );
    let report = site.create(&spec, "site.ferry").await.unwrap();
    assert_eq!(report.entries, 1);
    let bundle = Bundle::open(&site.path("site.ferry")).unwrap();
    let entry = &bundle.manifest.entries[0];
    assert_eq!(entry.descriptor.digest, Digest::sha256(&idx));
    assert_eq!(entry.descriptor.media_type, media_type::OCI_INDEX);
    assert_eq!(entry.repository, "library/app");
    assert_eq!(entry.tag.as_deref(), Some("1.0"));
    assert_eq!(entry.platforms, vec!["linux/amd64", "linux/arm64"]);
    // The index is stored byte for byte, and every blob of both images.
    assert_eq!(
        bundle.read_blob(&Digest::sha256(&idx)).unwrap().unwrap(),
        idx
    );
    let blobs = blob_digests(&bundle);
    for image in [&amd, &arm] {
        assert!(blobs.contains(&image.digest));
        for b in image.blobs() {
            assert!(blobs.contains(&Digest::sha256(b)));
        }
    }
    // The index, two manifests, two configs, three layers.
    assert_eq!(blobs.len(), 1 + 2 + 2 + 3);
}

#[tokio::test]
async fn a_platform_filter_writes_an_index_of_the_kept_platforms() {
    let registry = TestRegistry::start().await;
    let (amd, arm, idx) = push_multi_arch(&registry).await;
    let site = Site::new();
    let spec = format!(
        "{}platforms: [linux/arm64]\nimages:\n  - {}/library/app:1.0\n",
        registry.hosts_yaml(),
        registry.host
    );
    site.create(&spec, "arm.ferry").await.unwrap();
    let bundle = Bundle::open(&site.path("arm.ferry")).unwrap();
    let entry = &bundle.manifest.entries[0];
    assert_ne!(entry.descriptor.digest, Digest::sha256(&idx));
    assert_eq!(entry.platforms, vec!["linux/arm64"]);
    let new_index = bundle.read_blob(&entry.descriptor.digest).unwrap().unwrap();
    let parsed = ParsedManifest::parse(&new_index, Some(media_type::OCI_INDEX)).unwrap();
    assert_eq!(parsed.manifests.len(), 1);
    assert_eq!(parsed.manifests[0].digest, arm.digest);
    // The index's other fields are kept.
    let v: serde_json::Value = serde_json::from_slice(&new_index).unwrap();
    assert_eq!(v["annotations"]["org.opencontainers.image.source"], "test");
    let blobs = blob_digests(&bundle);
    assert!(!blobs.contains(&amd.digest));
    for b in amd.layers.iter() {
        assert!(!blobs.contains(&Digest::sha256(b)));
    }
    assert_eq!(blobs.len(), 1 + 1 + 2);

    // --platform on the command line replaces the spec's list; an entry's
    // own list wins over both.
    let options = CreateOptions {
        platforms: Some(vec!["linux/amd64".parse().unwrap()]),
        ..CreateOptions::default()
    };
    let spec = format!(
        "{}platforms: [linux/arm64]\nimages:\n  - {h}/library/app:1.0\n  - ref: {h}/library/app@{}\n    platforms: [all]\n    tag: everything\n",
        registry.hosts_yaml(),
        Digest::sha256(&idx),
        h = registry.host
    );
    site.create_with(&spec, "amd.ferry", options, WriteOptions::default())
        .await
        .unwrap();
    let bundle = Bundle::open(&site.path("amd.ferry")).unwrap();
    assert_eq!(bundle.manifest.entries[0].platforms, vec!["linux/amd64"]);
    assert_eq!(
        bundle.manifest.entries[1].descriptor.digest,
        Digest::sha256(&idx)
    );
    assert_eq!(
        bundle.manifest.entries[1].tag.as_deref(),
        Some("everything")
    );
}

#[tokio::test]
async fn platforms_that_are_not_there_are_an_error() {
    let registry = TestRegistry::start().await;
    push_multi_arch(&registry).await;
    let solo = TestImage::new(3, &[1000], "linux", "amd64");
    solo.push(&registry.repository("library/solo"), Some("1"))
        .await;
    let site = Site::new();
    let spec = format!(
        "{}platforms: [linux/s390x]\nimages:\n  - {}/library/app:1.0\n",
        registry.hosts_yaml(),
        registry.host
    );
    let err = site.create(&spec, "x.ferry").await.unwrap_err().to_string();
    assert!(
        err.contains("no manifest for linux/s390x") && err.contains("linux/amd64, linux/arm64"),
        "{err}"
    );
    let spec = format!(
        "{}platforms: [linux/arm64]\nimages:\n  - {}/library/solo:1\n",
        registry.hosts_yaml(),
        registry.host
    );
    let err = site.create(&spec, "x.ferry").await.unwrap_err().to_string();
    assert!(
        err.contains("single-platform image for linux/amd64"),
        "{err}"
    );
    assert!(!site.path("x.ferry").exists());
}

/// Two images sharing a layer, one also pinned by digest.
async fn push_sharing(registry: &TestRegistry) -> (TestImage, TestImage) {
    let shared = layer_tar("shared", &random_bytes(77, 60_000));
    let a = TestImage::with_shared(
        10,
        std::slice::from_ref(&shared),
        &[5_000],
        "linux",
        "amd64",
    );
    let b = TestImage::with_shared(11, &[shared], &[7_000], "linux", "amd64");
    a.push(&registry.repository("team/a"), Some("v1")).await;
    b.push(&registry.repository("team/b"), Some("v1")).await;
    (a, b)
}

#[tokio::test]
async fn the_cache_means_nothing_is_downloaded_twice() {
    let registry = TestRegistry::start().await;
    let (a, b) = push_sharing(&registry).await;
    registry.log.take();
    let site = Site::new();
    let spec = format!(
        "{}images:\n  - {h}/team/a:v1\n  - {h}/team/b:v1\n  - ref: {h}/team/a@{}\n    repository: team/a-pinned\n",
        registry.hosts_yaml(),
        a.digest,
        h = registry.host
    );
    let first = site.create(&spec, "one.ferry").await.unwrap();
    let seen = registry.log.take();
    // Every blob was fetched exactly once, the shared layer too.
    let blob_gets: Vec<String> = requests(&seen, "/blobs/")
        .into_iter()
        .filter(|r| r.starts_with("GET"))
        .collect();
    let unique: std::collections::BTreeSet<&String> = blob_gets.iter().collect();
    assert_eq!(
        blob_gets.len(),
        unique.len(),
        "a blob was fetched twice: {blob_gets:?}"
    );
    assert_eq!(
        blob_gets.len(),
        2 + 3,
        "config a, config b, shared, a's, b's: {blob_gets:?}"
    );
    assert_eq!(first.fetch.blobs_fetched, 5);
    assert_eq!(first.write.blobs, 7);
    assert!(first.write.bytes_before_dedup > first.write.blob_bytes);

    // Again with the same cache: only HEADs of the tags, no downloads.
    let second = site.create(&spec, "two.ferry").await.unwrap();
    let seen = registry.log.take();
    let gets: Vec<String> = seen
        .iter()
        .filter(|s| s.method == "GET")
        .map(|s| s.path.clone())
        .collect();
    assert!(gets.is_empty(), "downloaded again: {gets:?}");
    let heads = requests(&seen, "/manifests/");
    assert_eq!(heads.len(), 2, "{heads:?}");
    assert!(
        heads
            .iter()
            .all(|h| h.starts_with("HEAD") && h.ends_with("/v1")),
        "{heads:?}"
    );
    assert_eq!(second.fetch.blobs_fetched, 0);
    assert_eq!(second.fetch.blobs_cached, 5);
    // Same inputs, same bytes.
    assert_eq!(
        std::fs::read(site.path("one.ferry")).unwrap(),
        std::fs::read(site.path("two.ferry")).unwrap()
    );
    // And from an empty cache, too.
    let fresh = Site::new();
    fresh.create(&spec, "three.ferry").await.unwrap();
    assert_eq!(
        std::fs::read(site.path("one.ferry")).unwrap(),
        std::fs::read(fresh.path("three.ferry")).unwrap()
    );
    let bundle = Bundle::open(&site.path("one.ferry")).unwrap();
    assert_eq!(bundle.manifest.entries[2].tag, None);
    assert_eq!(bundle.manifest.entries[2].descriptor.digest, a.digest);
    let _ = b;
}

fn fast_retries() -> RetryPolicy {
    RetryPolicy {
        max_retries: 1,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(20),
        max_retry_after: Duration::from_millis(20),
    }
}

#[tokio::test]
async fn unreachable_or_missing_sources_are_clear_errors() {
    let site = Site::new();
    let options = || CreateOptions {
        retry: Some(fast_retries()),
        ..CreateOptions::default()
    };
    // Nothing listens on port 1.
    let spec = "hosts:\n  \"127.0.0.1:1\":\n    plain_http: true\nimages:\n  - 127.0.0.1:1/library/app:1.0\n";
    let err = site
        .create_with(spec, "x.ferry", options(), WriteOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, CreateError::Source { .. }), "{err:?}");
    let text = error_chain(&err);
    assert!(
        text.contains("images[0] (127.0.0.1:1/library/app:1.0)"),
        "{text}"
    );
    assert!(text.to_lowercase().contains("connect"), "{text}");

    let registry = TestRegistry::start().await;
    let spec = format!(
        "{}images:\n  - {}/library/nothing:1.0\n",
        registry.hosts_yaml(),
        registry.host
    );
    let err = site
        .create_with(&spec, "x.ferry", options(), WriteOptions::default())
        .await
        .unwrap_err();
    let text = error_chain(&err);
    assert!(
        text.contains("404") || text.contains("MANIFEST_UNKNOWN") || text.contains("NAME_UNKNOWN"),
        "{text}"
    );
    let names: Vec<String> = std::fs::read_dir(site.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.starts_with("x.ferry")), "{names:?}");
}

pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(" | ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
