//! Retries against ferry's registry behind a fault-injecting layer: 503s
//! and 429s, connections closed unanswered, a chunk cut mid-body, a
//! download cut short.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use axum::http::{Method, StatusCode};
use bytes::Bytes;
use ferry_client::{ClientError, MemorySource, PushOptions, PushOutcome};
use ferry_oci::progress::NoProgress;
use ferry_oci::{Descriptor, Digest, media_type};
use ferry_registry::auth::Auth;

use crate::support::faults::{DroppingListener, Fault, Faults};
use crate::support::ferry::FerryRegistry;
use crate::support::image::{TestImage, random_bytes};
use crate::support::{RecordingProgress, plain_client};

async fn faulty_registry() -> (FerryRegistry, Arc<Faults>) {
    let faults = Arc::new(Faults::default());
    let layer = faults.clone();
    let registry = FerryRegistry::start_wrapped(Auth::none(), move |r| layer.layer(r)).await;
    (registry, faults)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_statuses_are_retried() {
    let (registry, faults) = faulty_registry().await;
    let host = registry.host();
    faults.add(
        Method::POST,
        "/blobs/uploads/",
        0,
        2,
        Fault::Status(StatusCode::SERVICE_UNAVAILABLE),
    );
    faults.add(
        Method::HEAD,
        "/blobs/",
        0,
        1,
        Fault::Status(StatusCode::TOO_MANY_REQUESTS),
    );
    faults.add(
        Method::PUT,
        "/manifests/",
        0,
        1,
        Fault::Status(StatusCode::BAD_GATEWAY),
    );
    faults.add(
        Method::GET,
        "/manifests/",
        0,
        3,
        Fault::Status(StatusCode::GATEWAY_TIMEOUT),
    );

    let client = plain_client(&host);
    let repo = client.repository(&host, "retry/app").unwrap();
    let image = TestImage::new(40, &[300_000, 5000], "linux", "amd64");
    image.push(&repo, Some("v1")).await.unwrap();
    let manifest = repo.get_manifest("v1").await.unwrap();
    assert_eq!(manifest.bytes, image.manifest);

    let seen = faults.seen();
    let count = |method: Method, path: &str, status: u16| {
        seen.iter()
            .filter(|s| s.method == method && s.uri.contains(path) && s.status == status)
            .count()
    };
    assert_eq!(count(Method::POST, "/blobs/uploads/", 503), 2);
    assert_eq!(count(Method::HEAD, "/blobs/", 429), 1);
    assert_eq!(count(Method::PUT, "/manifests/", 502), 1);
    assert_eq!(count(Method::GET, "/manifests/v1", 504), 3);
    assert_eq!(count(Method::GET, "/manifests/v1", 200), 1);
    // Every blob made it, verified by digest on the way back.
    for blob in image.blobs() {
        let d = Descriptor::new("x", Digest::sha256(blob), blob.len() as u64);
        let mut out = Vec::new();
        repo.fetch_blob(&d, &mut out, &NoProgress).await.unwrap();
        assert_eq!(&out[..], &blob[..]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_are_bounded() {
    let (registry, faults) = faulty_registry().await;
    let host = registry.host();
    faults.add(
        Method::GET,
        "/manifests/",
        0,
        100,
        Fault::Status(StatusCode::SERVICE_UNAVAILABLE),
    );
    let client = plain_client(&host);
    let repo = client.repository(&host, "retry/app").unwrap();
    let err = repo.get_manifest("v1").await.unwrap_err();
    assert_eq!(err.status(), Some(StatusCode::SERVICE_UNAVAILABLE));
    assert!(err.is_transient());
    let attempts = client.options().retry.max_retries as usize + 1;
    assert_eq!(faults.seen().len(), attempts);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_closed_unanswered_are_retried() {
    let dropped = Arc::new(AtomicU32::new(0));
    let listener = DroppingListener {
        inner: tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        drop_first: 3,
        dropped: dropped.clone(),
    };
    let registry = FerryRegistry::serve_on(listener, Auth::none(), |r| r).await;
    let host = registry.host();
    let client = plain_client(&host);
    client.ping(&host).await.unwrap();
    assert_eq!(dropped.load(Ordering::Relaxed), 3);
    let repo = client.repository(&host, "retry/app").unwrap();
    let data = Bytes::from(random_bytes(41, 100_000));
    let report = repo
        .push_blob(
            &Digest::sha256(&data),
            &MemorySource::new(data.clone()),
            &PushOptions::default(),
            &NoProgress,
        )
        .await
        .unwrap();
    assert_eq!(report.outcome, PushOutcome::Uploaded);
}

/// A chunk cut mid-body (the registry keeps what arrived): the client asks
/// where the upload stands and sends only the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_chunk_resumes_from_the_registry_offset() {
    let (registry, faults) = faulty_registry().await;
    let host = registry.host();
    const CHUNK: u64 = 1 << 20;
    const CUT_AFTER: u64 = 300_000;
    let data = Bytes::from(random_bytes(42, 5 * CHUNK as usize + 999));
    let digest = Digest::sha256(&data);
    // The third PATCH reaches the registry only in part.
    faults.add(
        Method::PATCH,
        "/blobs/uploads/",
        2,
        1,
        Fault::CutRequestBody(CUT_AFTER),
    );

    let client = plain_client(&host);
    let repo = client.repository(&host, "retry/chunks").unwrap();
    let options = PushOptions {
        monolithic_max: CHUNK,
        chunk_size: CHUNK,
        ..Default::default()
    };
    let progress = RecordingProgress::default();
    let report = repo
        .push_blob(
            &digest,
            &MemorySource::new(data.clone()),
            &options,
            &progress,
        )
        .await
        .unwrap();
    let resumed = 2 * CHUNK + CUT_AFTER;
    assert_eq!(report.outcome, PushOutcome::Uploaded);
    assert_eq!(report.resumed_at, Some(resumed));
    assert_eq!(report.restarts, 0);
    assert!(
        progress
            .events()
            .contains(&format!("reset {digest} {resumed}"))
    );
    assert_eq!(progress.done(&digest.to_string()), data.len() as u64);
    // The registry received every byte exactly once.
    assert_eq!(
        faults.body_bytes_in.load(Ordering::Relaxed),
        data.len() as u64
    );
    let patches: Vec<_> = faults
        .seen()
        .into_iter()
        .filter(|s| s.method == Method::PATCH)
        .collect();
    let ranges: Vec<String> = patches
        .iter()
        .map(|s| s.content_range.clone().unwrap())
        .collect();
    assert_eq!(ranges[2], format!("{}-{}", 2 * CHUNK, 3 * CHUNK - 1));
    assert_eq!(ranges[3], format!("{resumed}-{}", resumed + CHUNK - 1));
    for p in &patches {
        // A declared length, not chunked transfer encoding (ECR and
        // others insist).
        assert!(
            p.content_length.is_some() && p.transfer_encoding.is_none(),
            "{p:?}"
        );
    }
    assert_eq!(
        repo.blob_exists(&digest).await.unwrap(),
        Some(data.len() as u64)
    );
}

/// A download cut short continues with `Range` from the next byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_download_resumes_with_range() {
    let (registry, faults) = faulty_registry().await;
    let host = registry.host();
    let client = plain_client(&host);
    let repo = client.repository(&host, "retry/pull").unwrap();
    let data = Bytes::from(random_bytes(43, 3 << 20));
    let digest = Digest::sha256(&data);
    repo.push_blob(
        &digest,
        &MemorySource::new(data.clone()),
        &PushOptions::default(),
        &NoProgress,
    )
    .await
    .unwrap();
    const CUT: u64 = 1_000_000;
    faults.add(
        Method::GET,
        "/blobs/sha256:",
        0,
        2,
        Fault::TruncateResponse(CUT),
    );
    let mut out = Vec::new();
    let d = Descriptor::new(media_type::OCI_LAYER_TAR, digest.clone(), data.len() as u64);
    repo.fetch_blob(&d, &mut out, &NoProgress).await.unwrap();
    assert_eq!(out, data);
    let ranges: Vec<Option<String>> = faults
        .seen()
        .into_iter()
        .filter(|s| s.method == Method::GET && s.uri.contains("/blobs/sha256:"))
        .map(|s| s.range)
        .collect();
    // The fault layer cuts each response at a frame boundary at or below
    // CUT bytes; every retry must ask for exactly the bytes still missing.
    assert_eq!(ranges.len(), 3, "{ranges:?}");
    assert_eq!(ranges[0], None);
    let starts: Vec<u64> = ranges[1..]
        .iter()
        .map(|r| {
            let r = r.as_deref().expect("a resumed GET carries Range");
            r.strip_prefix("bytes=")
                .and_then(|v| v.strip_suffix('-'))
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    assert!(starts[0] > 0 && starts[0] <= CUT, "{ranges:?}");
    assert!(
        starts[1] > starts[0] && starts[1] - starts[0] <= CUT,
        "{ranges:?}"
    );
}

/// Errors carry the registry's status and codes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_errors_are_typed() {
    let (registry, _faults) = faulty_registry().await;
    let host = registry.host();
    let client = plain_client(&host);
    let repo = client.repository(&host, "retry/errors").unwrap();
    let err = repo.get_manifest("missing").await.unwrap_err();
    assert_eq!(err.status(), Some(StatusCode::NOT_FOUND));
    assert!(err.has_code("MANIFEST_UNKNOWN"), "{err}");
    let bad = repo
        .put_manifest(
            "v1",
            media_type::OCI_MANIFEST,
            Bytes::from_static(b"{not json"),
        )
        .await
        .unwrap_err();
    assert!(matches!(bad, ClientError::Registry { .. }));
    assert!(bad.has_code("MANIFEST_INVALID"), "{bad}");
    assert!(!bad.is_transient());
}

/// A full registry (507) is not retried, and it stops every push in
/// flight: the others would only meet it too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_registry_stops_every_push_at_once() {
    let (registry, faults) = faulty_registry().await;
    let host = registry.host();
    faults.add(
        Method::POST,
        "/blobs/uploads/",
        0,
        1000,
        Fault::Status(StatusCode::INSUFFICIENT_STORAGE),
    );
    let client = plain_client(&host);
    let repo = client.repository(&host, "retry/full").unwrap();
    let pushes: Vec<ferry_client::BlobPush> = (0..20u8)
        .map(|i| {
            let data = Bytes::from(vec![i; 1000]);
            ferry_client::BlobPush {
                repository: repo.clone(),
                digest: Digest::sha256(&data),
                source: Arc::new(MemorySource::new(data)),
                options: PushOptions::default(),
            }
        })
        .collect();
    let err = ferry_client::push_blobs(pushes, 2, Arc::new(NoProgress))
        .await
        .unwrap_err();
    assert_eq!(
        err.status(),
        Some(StatusCode::INSUFFICIENT_STORAGE),
        "{err}"
    );
    assert!(err.is_registry_wide() && !err.is_transient());
    // Each push that started asked once; the others never started.
    let refused = faults.seen().iter().filter(|s| s.status == 507).count();
    assert!((1..=2).contains(&refused), "{refused} refusals");
}

/// A request the client's own loop retried to the end is not retried
/// again around it by the upload loop (retries do not multiply).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_do_not_nest() {
    let (registry, faults) = faulty_registry().await;
    let host = registry.host();
    faults.add(
        Method::POST,
        "/blobs/uploads/",
        0,
        1000,
        Fault::Status(StatusCode::SERVICE_UNAVAILABLE),
    );
    let client = plain_client(&host);
    let repo = client.repository(&host, "retry/nested").unwrap();
    let data = Bytes::from(vec![7u8; 1000]);
    let err = repo
        .push_blob(
            &Digest::sha256(&data),
            &MemorySource::new(data),
            &PushOptions::default(),
            &NoProgress,
        )
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(StatusCode::SERVICE_UNAVAILABLE));
    let posts = faults
        .seen()
        .iter()
        .filter(|s| s.method == Method::POST)
        .count();
    assert_eq!(posts, client.options().retry.max_retries as usize + 1);
}
