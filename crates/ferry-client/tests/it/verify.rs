//! Nothing unverified gets through: a source whose bytes do not hash to
//! the digest is never committed on the registry (every upload path), and
//! content a registry serves corrupted is refused on the way in.

use std::sync::Arc;

use axum::http::Method;
use bytes::Bytes;
use ferry_client::{Client, ClientError, FileRange, MemorySource, PushOptions, ResumeStore};
use ferry_oci::progress::NoProgress;
use ferry_oci::{Descriptor, Digest, media_type};
use ferry_registry::auth::Auth;

use crate::support::distribution::Distribution;
use crate::support::faults::Faults;
use crate::support::ferry::FerryRegistry;
use crate::support::image::{TestImage, random_bytes};
use crate::support::{RecordingProgress, plain_client};

async fn wrong_digest_never_committed(client: &Client, host: &str) {
    let repo = client.repository(host, "verify/app").unwrap();
    let resume = tempfile::tempdir().unwrap();
    let paths = [
        ("post+put", PushOptions::default()),
        (
            "single post",
            PushOptions {
                single_post: true,
                ..Default::default()
            },
        ),
        (
            "chunked",
            PushOptions {
                monolithic_max: 1 << 20,
                chunk_size: 1 << 20,
                resume: Some(ResumeStore::open(resume.path()).unwrap()),
                ..Default::default()
            },
        ),
    ];
    for (seed, (name, options)) in paths.into_iter().enumerate() {
        let data = Bytes::from(random_bytes(50 + seed as u64, 3 << 20));
        // The digest the caller believes in: the data with one bit flipped
        // in the last byte, so everything but the very end matches.
        let mut expected = data.to_vec();
        *expected.last_mut().unwrap() ^= 1;
        let claimed = Digest::sha256(&expected);
        let progress = RecordingProgress::default();
        let err = repo
            .push_blob(
                &claimed,
                &MemorySource::new(data.clone()),
                &options,
                &progress,
            )
            .await
            .unwrap_err();
        assert!(
            matches!(&err, ClientError::SourceMismatch { expected, .. } if expected == &claimed),
            "{name}: {err}"
        );
        assert!(err.to_string().contains("does not match"), "{err}");
        assert_eq!(
            progress.events().last().unwrap(),
            &format!("finish {claimed} failed")
        );
        // Committed under neither digest.
        assert_eq!(repo.blob_exists(&claimed).await.unwrap(), None, "{name}");
        assert_eq!(
            repo.blob_exists(&Digest::sha256(&data)).await.unwrap(),
            None,
            "{name}"
        );
    }
    assert!(
        ResumeStore::open(resume.path())
            .unwrap()
            .list()
            .unwrap()
            .is_empty(),
        "a failed source leaves no state to resume"
    );

    // A file shorter than the blob it should hold.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("short");
    let data = random_bytes(60, 100_000);
    std::fs::write(&path, &data).unwrap();
    let err = repo
        .push_blob(
            &Digest::sha256(b"whatever"),
            &FileRange::new(&path, 0, 200_000),
            &PushOptions::default(),
            &NoProgress,
        )
        .await
        .unwrap_err();
    assert!(err.is_source_error(), "{err}");
    assert_eq!(
        repo.blob_exists(&Digest::sha256(&data)).await.unwrap(),
        None
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distribution_never_commits_a_wrong_digest() {
    let registry = Distribution::start();
    wrong_digest_never_committed(&plain_client(&registry.host()), &registry.host()).await;
}

/// Behind an observing layer: the request that would commit (the one
/// carrying `digest=`) never reaches the registry with its whole body,
/// and the chunked upload never sends it at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ferry_registry_never_commits_a_wrong_digest() {
    let faults = Arc::new(Faults::default());
    let layer = faults.clone();
    let registry = FerryRegistry::start_wrapped(Auth::none(), move |r| layer.layer(r)).await;
    wrong_digest_never_committed(&plain_client(&registry.host()), &registry.host()).await;
    let seen = faults.seen();
    let committing: Vec<_> = seen.iter().filter(|s| s.uri.contains("digest=")).collect();
    // The PUT of POST+PUT and the single POST carried data (the short
    // file's PUT failed before sending any, and may not have reached the
    // registry at all); the chunked upload sent none.
    let with_data = committing.iter().filter(|s| s.body_received > 0).count();
    assert_eq!(with_data, 2, "{committing:#?}");
    for s in committing {
        let declared: u64 = s.content_length.as_deref().unwrap().parse().unwrap();
        assert!(s.body_received < declared, "{s:?}");
        assert_ne!(s.status, 201, "{s:?}");
    }
    // The chunked upload's session was cancelled.
    assert!(
        seen.iter()
            .any(|s| s.method == Method::DELETE && s.status == 204)
    );
}

/// Alters the stored bytes of a blob in Distribution's storage, which
/// serves them without checking.
fn corrupt(registry: &Distribution, digest: &Digest, alter: impl FnOnce(&mut Vec<u8>)) {
    let data = registry
        .dir
        .path()
        .join("root/docker/registry/v2/blobs/sha256")
        .join(&digest.hex()[..2])
        .join(digest.hex())
        .join("data");
    let mut bytes = std::fs::read(&data).unwrap();
    alter(&mut bytes);
    std::fs::write(&data, bytes).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupted_content_is_refused_on_pull() {
    let registry = Distribution::start();
    let host = registry.host();
    let client = plain_client(&host);
    let repo = client.repository(&host, "verify/pull").unwrap();
    let image = TestImage::new(61, &[500_000], "linux", "amd64");
    image.push(&repo, Some("v1")).await.unwrap();

    let layer = &image.layers[0];
    let layer_digest = Digest::sha256(layer);
    corrupt(&registry, &layer_digest, |b| b[10] ^= 0xff);
    let d = Descriptor::new(
        media_type::OCI_LAYER_TAR,
        layer_digest.clone(),
        layer.len() as u64,
    );
    let err = repo
        .fetch_blob(&d, &mut Vec::new(), &NoProgress)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ClientError::DigestMismatch { expected, .. } if expected == &layer_digest),
        "{err}"
    );

    // A manifest by tag is checked against Docker-Content-Digest, which
    // Distribution takes from where the bytes are stored, not from them.
    // One hex digit of the config digest changes: still a valid manifest.
    let config_hex = Digest::sha256(&image.config).hex().to_string();
    corrupt(&registry, &image.digest, |b| {
        let at = b
            .windows(config_hex.len())
            .position(|w| w == config_hex.as_bytes())
            .unwrap();
        b[at] = if b[at] == b'0' { b'1' } else { b'0' };
    });
    let err = repo.get_manifest("v1").await.unwrap_err();
    assert!(matches!(err, ClientError::DigestMismatch { .. }), "{err}");
    let err = repo
        .get_manifest(&image.digest.to_string())
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::DigestMismatch { .. }), "{err}");
}
