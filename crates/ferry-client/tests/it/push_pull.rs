//! Push and pull round trips against real registries: Distribution 2.8.2
//! (Debian's docker-registry) and ferry's own registry.

use std::sync::Arc;

use bytes::Bytes;
use ferry_client::{
    BlobPush, Client, ClientError, MemorySource, PushOptions, PushOutcome, push_blobs,
};
use ferry_oci::progress::NoProgress;
use ferry_oci::{Digest, media_type};
use ferry_registry::auth::Auth;
use futures_util::TryStreamExt;

use crate::support::distribution::Distribution;
use crate::support::ferry::FerryRegistry;
use crate::support::image::{TestImage, index, random_bytes};
use crate::support::{RecordingProgress, plain_client};

/// A multi-layer image and a two-platform index: pushed with the client,
/// read back byte for byte, digests verified.
async fn image_and_index_round_trip(client: &Client, host: &str) {
    let repo = client.repository(host, "proj/app").unwrap();
    assert!(client.ping(host).await.is_ok());

    // A multi-layer image, layers pushed in parallel.
    let image = TestImage::new(1, &[1 << 20, 3 << 20, 200_000, 17, 0], "linux", "amd64");
    let progress = Arc::new(RecordingProgress::default());
    let pushes: Vec<BlobPush> = image
        .blobs()
        .map(|b| BlobPush {
            repository: repo.clone(),
            digest: Digest::sha256(b),
            source: Arc::new(MemorySource::new(b.clone())),
            options: PushOptions::default(),
        })
        .collect();
    let reports = push_blobs(pushes, 3, progress.clone()).await.unwrap();
    for report in &reports {
        let report = report.as_ref().unwrap();
        assert_eq!(report.outcome, PushOutcome::Uploaded);
        assert_eq!(report.bytes_sent, report.size);
        assert_eq!(progress.done(&report.digest.to_string()), report.size);
    }
    let pushed = repo
        .put_manifest("v1", media_type::OCI_MANIFEST, image.manifest.clone())
        .await
        .unwrap();
    assert_eq!(pushed, image.digest);

    let manifest = repo.get_manifest("v1").await.unwrap();
    assert_eq!(manifest.bytes, image.manifest);
    assert_eq!(manifest.digest, image.digest);
    assert_eq!(manifest.media_type, media_type::OCI_MANIFEST);
    let parsed = manifest.parse().unwrap();
    assert_eq!(parsed.layers.len(), 5);
    for (descriptor, expected) in parsed.blob_references().zip(image.blobs()) {
        let mut out = Vec::new();
        let n = repo
            .fetch_blob(descriptor, &mut out, &NoProgress)
            .await
            .unwrap();
        assert_eq!(n, expected.len() as u64);
        assert_eq!(&out[..], &expected[..]);
    }
    let head = repo.head_manifest("v1").await.unwrap().unwrap();
    assert_eq!(head.digest.as_ref(), Some(&image.digest));
    assert_eq!(head.size, Some(image.manifest.len() as u64));
    assert_eq!(repo.head_manifest("nope").await.unwrap(), None);

    // A multi-arch index over two more images, children by digest only.
    let amd = TestImage::new(2, &[100_000, 50_000], "linux", "amd64");
    let arm = TestImage::new(3, &[120_000], "linux", "arm64");
    amd.push(&repo, None).await.unwrap();
    arm.push(&repo, None).await.unwrap();
    let index = index(&[&amd, &arm]);
    let index_digest = repo
        .put_manifest("multi", media_type::OCI_INDEX, index.clone())
        .await
        .unwrap();
    assert_eq!(index_digest, Digest::sha256(&index));
    let fetched = repo.get_manifest("multi").await.unwrap();
    assert_eq!(fetched.bytes, index);
    assert_eq!(fetched.media_type, media_type::OCI_INDEX);
    let children = fetched.parse().unwrap().manifests;
    assert_eq!(children.len(), 2);
    for (child, image) in children.iter().zip([&amd, &arm]) {
        let m = repo.get_manifest(&child.digest.to_string()).await.unwrap();
        assert_eq!(m.bytes, image.manifest);
        assert_eq!(
            child.platform.as_ref().unwrap().architecture,
            image.platform.1
        );
    }
    let by_digest = repo.get_manifest(&index_digest.to_string()).await.unwrap();
    assert_eq!(by_digest.bytes, index);

    let mut tags = repo.tags().await.unwrap();
    tags.sort();
    assert_eq!(tags, vec!["multi", "v1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distribution_image_and_index_round_trip() {
    let registry = Distribution::start();
    let client = plain_client(&registry.host());
    image_and_index_round_trip(&client, &registry.host()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ferry_registry_image_and_index_round_trip() {
    let registry = FerryRegistry::start(Auth::none()).await;
    let client = plain_client(&registry.host());
    image_and_index_round_trip(&client, &registry.host()).await;
}

/// HEAD-skip, cross-repository mount, mount fallback, one-request
/// uploads both ways, chunked uploads.
async fn push_paths(client: &Client, host: &str) {
    let a = client.repository(host, "site/a").unwrap();
    let b = a.sibling("site/b").unwrap();
    let c = a.sibling("site/c").unwrap();
    let data = Bytes::from(random_bytes(7, 5 << 20));
    let digest = Digest::sha256(&data);
    let source = MemorySource::new(data.clone());

    let first = a
        .push_blob(&digest, &source, &PushOptions::default(), &NoProgress)
        .await
        .unwrap();
    assert_eq!(first.outcome, PushOutcome::Uploaded);
    assert_eq!(first.bytes_sent, data.len() as u64);

    // Present: HEAD says so, nothing is sent.
    let again = a
        .push_blob(&digest, &source, &PushOptions::default(), &NoProgress)
        .await
        .unwrap();
    assert_eq!(again.outcome, PushOutcome::Exists);
    assert_eq!(again.bytes_sent, 0);

    // Another repository mounts it from the first, after a candidate
    // that does not have it (the registry declines that one with 202).
    let mount = PushOptions {
        mount_from: vec!["site/nothing-here".into(), "site/a".into()],
        ..Default::default()
    };
    let mounted = b
        .push_blob(&digest, &source, &mount, &NoProgress)
        .await
        .unwrap();
    assert_eq!(
        mounted.outcome,
        PushOutcome::Mounted {
            from: "site/a".into()
        }
    );
    assert_eq!(mounted.bytes_sent, 0);
    assert_eq!(
        b.blob_exists(&digest).await.unwrap(),
        Some(data.len() as u64)
    );
    // No candidate has it: uploaded into the session the 202 opened.
    let nowhere = PushOptions {
        mount_from: vec!["site/nothing-here".into()],
        ..Default::default()
    };
    let uploaded = c
        .push_blob(&digest, &source, &nowhere, &NoProgress)
        .await
        .unwrap();
    assert_eq!(uploaded.outcome, PushOutcome::Uploaded);
    assert_eq!(uploaded.bytes_sent, data.len() as u64);
    let other = Digest::sha256(b"not anywhere");
    assert!(!c.mount_blob(&other, "site/a").await.unwrap());

    // One-request uploads: POST + PUT, and a single POST with the digest;
    // chunked uploads of a blob over the threshold.
    for (seed, options) in [
        (11, PushOptions::default()),
        (
            12,
            PushOptions {
                single_post: true,
                ..Default::default()
            },
        ),
        (
            13,
            PushOptions {
                monolithic_max: 1 << 20,
                chunk_size: 1 << 20,
                ..Default::default()
            },
        ),
    ] {
        let data = Bytes::from(random_bytes(seed, 3 << 20 | 12345));
        let digest = Digest::sha256(&data);
        let progress = RecordingProgress::default();
        let report = a
            .push_blob(
                &digest,
                &MemorySource::new(data.clone()),
                &options,
                &progress,
            )
            .await
            .unwrap();
        assert_eq!(report.outcome, PushOutcome::Uploaded, "{options:?}");
        if options.single_post {
            // Distribution 2.8 ignores a one-request POST's body and opens
            // a session, which then gets the blob again.
            assert!(report.bytes_sent >= data.len() as u64);
        } else {
            assert_eq!(report.bytes_sent, data.len() as u64);
        }
        assert_eq!(progress.done(&digest.to_string()), data.len() as u64);
        assert!(progress.events().last().unwrap().ends_with(" pushed"));
        let reader = a.get_blob(&digest, Some(data.len() as u64)).await.unwrap();
        let chunks: Vec<Bytes> = reader.into_stream().try_collect().await.unwrap();
        assert_eq!(chunks.concat(), data);
    }

    // A blob that is not there.
    let missing = a.get_blob(&other, None).await;
    assert!(matches!(
        missing,
        Err(ClientError::Registry { status, .. }) if status == 404
    ));
    assert_eq!(a.blob_exists(&other).await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distribution_push_paths() {
    let registry = Distribution::start();
    push_paths(&plain_client(&registry.host()), &registry.host()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ferry_registry_push_paths() {
    let registry = FerryRegistry::start(Auth::none()).await;
    push_paths(&plain_client(&registry.host()), &registry.host()).await;
}

/// Tags and catalog across pages (`Link: <...>; rel="next"`), referrers
/// through the API (ferry) and the tag-schema fallback (Distribution 2.8
/// has no referrers API).
async fn listings(client: &Client, host: &str, registry_has_referrers_api: bool) {
    let repo = client.repository(host, "lists/app").unwrap();
    let image = TestImage::new(20, &[1000], "linux", "amd64");
    image.push(&repo, None).await.unwrap();
    let mut expected = Vec::new();
    for i in 0..7 {
        let tag = format!("t{i}");
        repo.put_manifest(&tag, media_type::OCI_MANIFEST, image.manifest.clone())
            .await
            .unwrap();
        expected.push(tag);
    }
    let mut paged = repo.tags_paged(Some(2)).await.unwrap();
    paged.sort();
    assert_eq!(paged, expected);
    assert!(
        client
            .repository(host, "lists/none")
            .unwrap()
            .tags()
            .await
            .unwrap()
            .is_empty()
    );
    for name in ["lists/b", "lists/c"] {
        image
            .push(&client.repository(host, name).unwrap(), Some("x"))
            .await
            .unwrap();
    }
    let catalog = client.catalog(host, Some(1)).await.unwrap();
    assert_eq!(catalog, vec!["lists/app", "lists/b", "lists/c"]);

    // A signature-like artifact whose subject is the image.
    let empty = Bytes::from_static(b"{}");
    let payload = Bytes::from_static(b"signature bytes");
    for blob in [&empty, &payload] {
        repo.push_blob(
            &Digest::sha256(blob),
            &MemorySource::new(blob.clone()),
            &PushOptions::default(),
            &NoProgress,
        )
        .await
        .unwrap();
    }
    let artifact = Bytes::from(
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": media_type::OCI_MANIFEST,
            "artifactType": "application/vnd.example.sig",
            "config": crate::support::image::descriptor(media_type::OCI_EMPTY, &empty),
            "layers": [crate::support::image::descriptor("application/octet-stream", &payload)],
            "subject": crate::support::image::descriptor(media_type::OCI_MANIFEST, &image.manifest),
        }))
        .unwrap(),
    );
    let artifact_digest = Digest::sha256(&artifact);
    repo.put_manifest(
        &artifact_digest.to_string(),
        media_type::OCI_MANIFEST,
        artifact.clone(),
    )
    .await
    .unwrap();
    if !registry_has_referrers_api {
        // The client side of the tag schema: an index under sha256-<hex>.
        let mut d = crate::support::image::descriptor(media_type::OCI_MANIFEST, &artifact);
        d["artifactType"] = "application/vnd.example.sig".into();
        let fallback = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": media_type::OCI_INDEX,
            "manifests": [d],
        }))
        .unwrap();
        repo.put_manifest(
            &format!("sha256-{}", image.digest.hex()),
            media_type::OCI_INDEX,
            fallback.into(),
        )
        .await
        .unwrap();
    }
    let referrers = repo.referrers(&image.digest, None).await.unwrap();
    assert_eq!(referrers.from_tag_schema, !registry_has_referrers_api);
    assert_eq!(referrers.descriptors.len(), 1);
    assert_eq!(referrers.descriptors[0].digest, artifact_digest);
    let filtered = repo
        .referrers(&image.digest, Some("application/vnd.example.sig"))
        .await
        .unwrap();
    assert_eq!(filtered.descriptors.len(), 1);
    let none = repo
        .referrers(&image.digest, Some("application/other"))
        .await
        .unwrap();
    assert!(none.descriptors.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distribution_listings() {
    let registry = Distribution::start();
    listings(&plain_client(&registry.host()), &registry.host(), false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ferry_registry_listings() {
    let registry = FerryRegistry::start(Auth::none()).await;
    listings(&plain_client(&registry.host()), &registry.host(), true).await;
}
