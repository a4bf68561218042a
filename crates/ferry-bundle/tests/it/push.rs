//! Pushing bundles into ferry's registry served on loopback.

use std::sync::Arc;

use ferry_bundle::Bundle;
use ferry_bundle::push::{OnExistingTag, PushError, PushOptions, PushReport, Target, push};
use ferry_bundle::writer::{Plan, WriteOptions, write_bundle};
use ferry_client::{Client, ClientOptions, HostConfig};
use ferry_oci::progress::NoProgress;
use ferry_registry::Registry;
use ferry_registry::auth::Auth;
use ferry_store::{Limits, Store};

use crate::cache_with_image;

struct Served {
    host: String,
    store: Store,
    _dir: tempfile::TempDir,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Served {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Served {
    /// Pushes `bundle` into this registry with the default options.
    async fn push_defaults(
        &self,
        bundle: Arc<Bundle>,
        target: &Target,
    ) -> Result<PushReport, PushError> {
        let options = PushOptions::default();
        push(
            bundle,
            &client(&self.host),
            target,
            &options,
            Arc::new(NoProgress),
        )
        .await
    }
}

async fn registry() -> Served {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store"), Limits::default()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host = format!("127.0.0.1:{}", listener.local_addr().unwrap().port());
    let router = Registry::new(store.clone(), Auth::none()).router();
    let task = tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    Served {
        host,
        store,
        _dir: dir,
        task,
    }
}

fn client(host: &str) -> Client {
    Client::new(ClientOptions::default().host(host, HostConfig::plain_http())).unwrap()
}

fn bundle_of(dir: &std::path::Path, seeds: &[u8]) -> Arc<Bundle> {
    let mut entries = Vec::new();
    let mut cache = None;
    for &seed in seeds {
        let (c, e) = cache_with_image(dir, seed);
        entries.push(e);
        cache = Some(c);
    }
    let out = dir.join("site.ferry");
    let plan = Plan {
        entries,
        spec: serde_json::json!({}),
        created: None,
        base: None,
    };
    write_bundle(
        &plan,
        cache.as_ref().unwrap(),
        &out,
        &WriteOptions::default(),
        &NoProgress,
    )
    .unwrap();
    Arc::new(Bundle::open(&out).unwrap())
}

#[tokio::test]
async fn push_lands_every_entry_with_its_digests_and_repush_sends_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = bundle_of(dir.path(), &[1, 2]);
    let reg = registry().await;
    let target: Target = format!("{}/site", reg.host).parse().unwrap();
    let report = reg.push_defaults(bundle.clone(), &target).await.unwrap();
    assert_eq!(report.blobs_uploaded, 4, "{report:?}");
    assert_eq!(report.manifests_pushed, 2);
    for entry in &bundle.manifest.entries {
        let repo = format!("site/{}", entry.repository);
        let got = reg
            .store
            .get_manifest(
                &repo,
                &ferry_store::ManifestRef::Tag(entry.tag.clone().unwrap()),
            )
            .unwrap()
            .expect("tag pushed");
        assert_eq!(got.digest, entry.descriptor.digest);
    }
    let again = reg.push_defaults(bundle, &target).await.unwrap();
    assert_eq!(again.blobs_uploaded, 0);
    assert_eq!(again.bytes_sent, 0);
    assert_eq!(again.blobs_skipped, 4);
    assert!(
        again.tags.iter().all(|t| t.outcome == "unchanged"),
        "{again:?}"
    );
}

#[tokio::test]
async fn a_corrupt_blob_is_never_committed_and_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = bundle_of(dir.path(), &[3]);
    // Flip one byte inside the layer, in the file.
    let layer = bundle
        .manifest
        .blobs
        .iter()
        .max_by_key(|b| b.size)
        .unwrap()
        .clone();
    let member = bundle.blob(&layer.digest).unwrap();
    let path = dir.path().join("site.ferry");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[(member.offset + member.size / 2) as usize] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();
    let bundle = Arc::new(Bundle::open(&path).unwrap());
    let reg = registry().await;
    let target: Target = reg.host.parse().unwrap();
    let err = reg
        .push_defaults(bundle.clone(), &target)
        .await
        .unwrap_err();
    assert!(matches!(err, PushError::BlobsFailed { .. }), "{err}");
    assert!(err.to_string().contains(&layer.digest.to_string()), "{err}");
    assert_eq!(
        reg.store.blob_size(&layer.digest).unwrap(),
        None,
        "never committed"
    );
    let repo = &bundle.manifest.entries[0].repository;
    assert!(
        reg.store.tags(repo).unwrap().unwrap_or_default().is_empty(),
        "no manifest references it"
    );
}

#[tokio::test]
async fn existing_tags_follow_the_policy() {
    let dir = tempfile::tempdir().unwrap();
    let first = bundle_of(&dir.path().join("a"), &[4]);
    let reg = registry().await;
    let target: Target = reg.host.parse().unwrap();
    reg.push_defaults(first.clone(), &target).await.unwrap();
    // Same repository and tag, other content.
    let other_dir = dir.path().join("b");
    let (cache, mut entry) = cache_with_image(&other_dir, 9);
    entry.repository = first.manifest.entries[0].repository.clone();
    let out = other_dir.join("other.ferry");
    let plan = Plan {
        entries: vec![entry],
        spec: serde_json::json!({}),
        created: None,
        base: None,
    };
    write_bundle(&plan, &cache, &out, &WriteOptions::default(), &NoProgress).unwrap();
    let other = Arc::new(Bundle::open(&out).unwrap());
    let fail = PushOptions {
        on_existing_tag: OnExistingTag::Fail,
        ..PushOptions::default()
    };
    let err = push(
        other.clone(),
        &client(&reg.host),
        &target,
        &fail,
        Arc::new(NoProgress),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, PushError::TagExists { .. }), "{err}");
    let skip = PushOptions {
        on_existing_tag: OnExistingTag::Skip,
        ..PushOptions::default()
    };
    let report = push(
        other.clone(),
        &client(&reg.host),
        &target,
        &skip,
        Arc::new(NoProgress),
    )
    .await
    .unwrap();
    assert_eq!(report.tags[0].outcome, "kept");
    let report = reg.push_defaults(other, &target).await.unwrap();
    assert_eq!(report.tags[0].outcome, "overwritten");
}

#[tokio::test]
async fn delta_bundle_needs_its_base_on_the_target() {
    let dir = tempfile::tempdir().unwrap();
    let (cache, entry) = cache_with_image(dir.path(), 6);
    let base_out = dir.path().join("base.ferry");
    let plan = Plan {
        entries: vec![entry.clone()],
        spec: serde_json::json!({}),
        created: None,
        base: None,
    };
    write_bundle(
        &plan,
        &cache,
        &base_out,
        &WriteOptions::default(),
        &NoProgress,
    )
    .unwrap();
    let base = Bundle::open(&base_out).unwrap();
    let base_blobs = base
        .manifest
        .blobs
        .iter()
        .map(|b| (b.digest.clone(), b.size))
        .collect();
    let delta_out = dir.path().join("delta.ferry");
    let plan = Plan {
        entries: vec![entry],
        spec: serde_json::json!({}),
        created: None,
        base: Some((
            ferry_bundle::format::BaseBundle {
                manifest_digest: ferry_oci::Digest::sha256(&base.manifest_bytes),
                name: "base.ferry".into(),
            },
            base_blobs,
        )),
    };
    write_bundle(
        &plan,
        &cache,
        &delta_out,
        &WriteOptions::default(),
        &NoProgress,
    )
    .unwrap();
    let delta = Arc::new(Bundle::open(&delta_out).unwrap());
    assert_eq!(delta.manifest.blobs.len(), 1, "only the manifest");
    let reg = registry().await;
    let target: Target = reg.host.parse().unwrap();
    let err = reg.push_defaults(delta.clone(), &target).await.unwrap_err();
    assert!(
        matches!(err, PushError::BaseMissing { missing: 2, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("push base.ferry first"), "{err}");
    reg.push_defaults(Arc::new(base), &target).await.unwrap();
    reg.push_defaults(delta, &target).await.unwrap();
}

#[tokio::test]
async fn an_entry_already_there_costs_one_lookup_and_lends_its_blobs_for_mounts() {
    let dir = tempfile::tempdir().unwrap();
    let reg = registry().await;
    let target: Target = reg.host.parse().unwrap();
    let first = bundle_of(&dir.path().join("a"), &[5]);
    reg.push_defaults(first.clone(), &target).await.unwrap();
    // The same image again, plus a copy of it bound for another repository.
    let second_dir = dir.path().join("b");
    let (cache, entry) = cache_with_image(&second_dir, 5);
    let mut copy = entry.clone();
    copy.repository = format!("{}-copy", entry.repository);
    let out = second_dir.join("second.ferry");
    let plan = Plan {
        entries: vec![entry, copy],
        spec: serde_json::json!({}),
        created: None,
        base: None,
    };
    write_bundle(&plan, &cache, &out, &WriteOptions::default(), &NoProgress).unwrap();
    let second = Arc::new(Bundle::open(&out).unwrap());
    let report = reg.push_defaults(second, &target).await.unwrap();
    // The bundle's blobs less its one manifest: the config and the layer.
    let blobs = first.manifest.blobs.len() - 1;
    assert_eq!(report.bytes_sent, 0, "{report:?}");
    assert_eq!(report.blobs_uploaded, 0, "{report:?}");
    assert_eq!(report.blobs_skipped, blobs, "{report:?}");
    assert_eq!(report.blobs_mounted, blobs, "{report:?}");
    let outcomes: Vec<&str> = report.tags.iter().map(|t| t.outcome).collect();
    assert_eq!(outcomes, ["unchanged", "created"]);
}
