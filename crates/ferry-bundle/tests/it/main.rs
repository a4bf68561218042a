//! ferry-bundle's tests against real peers: the bundle format on real
//! files, the spec file, and creation from every kind of source (ferry's
//! registry and an HTTP server on loopback, layouts and archives made by
//! skopeo, charts built with tar + flate2), read back by skopeo and
//! checked by minisign.

mod artifacts;
mod bundle;
mod format;
mod local;
mod push;
mod registry;
mod spec;
mod support;

use ferry_bundle::format::{Entry, EntryKind};
use ferry_oci::{Descriptor, Digest, media_type};
use ferry_store::{Limits, Store};

/// A content cache holding one small image; returns the cache and its entry.
pub fn cache_with_image(dir: &std::path::Path, seed: u8) -> (Store, Entry) {
    let store = Store::open(dir.join("cache"), Limits::default()).unwrap();
    let put = |data: &[u8]| {
        let d = Digest::sha256(data);
        store.put_blob("cache", &d, None, &mut &data[..]).unwrap();
        d
    };
    let layer: Vec<u8> = (0..200_000u32)
        .map(|i| (i as u8).wrapping_mul(seed))
        .collect();
    let config =
        format!("{{\"architecture\":\"amd64\",\"os\":\"linux\",\"seed\":{seed}}}").into_bytes();
    let (l, c) = (put(&layer), put(&config));
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": media_type::OCI_MANIFEST,
        "config": {"mediaType": media_type::OCI_CONFIG, "digest": c.to_string(), "size": config.len()},
        "layers": [{"mediaType": media_type::OCI_LAYER_GZIP, "digest": l.to_string(), "size": layer.len()}],
    }))
    .unwrap();
    let m = put(&manifest);
    let entry = Entry {
        kind: EntryKind::Image,
        source: format!("registry.example/app{seed}:1.0"),
        repository: format!("app{seed}"),
        tag: Some("1.0".into()),
        descriptor: Descriptor::new(media_type::OCI_MANIFEST, m, manifest.len() as u64),
        platforms: vec![],
    };
    (store, entry)
}
