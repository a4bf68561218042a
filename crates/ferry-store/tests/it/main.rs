//! Integration tests of the store on a real directory.

mod gc_fsck;
mod store;

use ferry_oci::{Digest, media_type};
use ferry_store::{Limits, ManifestRef, Store};

pub fn open() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store"), Limits::default()).unwrap();
    (dir, store)
}

pub fn put(store: &Store, repo: &str, data: &[u8]) -> Digest {
    let digest = Digest::sha256(data);
    store
        .put_blob(repo, &digest, Some(data.len() as u64), &mut &data[..])
        .unwrap();
    digest
}

/// An image manifest over a config and layers already in `repo`.
pub fn manifest_json(config: &[u8], layers: &[&[u8]], subject: Option<(&Digest, u64)>) -> Vec<u8> {
    let desc = |mt: &str, d: &[u8]| serde_json::json!({"mediaType": mt, "digest": Digest::sha256(d).to_string(), "size": d.len()});
    let mut m = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_MANIFEST,
        "config": desc(media_type::OCI_CONFIG, config),
        "layers": layers.iter().map(|l| desc(media_type::OCI_LAYER_GZIP, l)).collect::<Vec<_>>(),
    });
    if let Some((d, size)) = subject {
        m["subject"] = serde_json::json!({"mediaType": media_type::OCI_MANIFEST, "digest": d.to_string(), "size": size});
        m["artifactType"] = serde_json::json!("application/vnd.example.sig");
    }
    serde_json::to_vec(&m).unwrap()
}

pub fn push_image(store: &Store, repo: &str, tag: &str, config: &[u8], layers: &[&[u8]]) -> Digest {
    put(store, repo, config);
    for l in layers {
        put(store, repo, l);
    }
    let body = manifest_json(config, layers, None);
    store
        .put_manifest(
            repo,
            &ManifestRef::Tag(tag.into()),
            &body,
            Some(media_type::OCI_MANIFEST),
        )
        .unwrap()
        .digest
}
