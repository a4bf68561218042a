use ferry_oci::{Algorithm, Digest, media_type};
use ferry_store::{Limits, ManifestRef, Store, StoreError};

use crate::{manifest_json, open, push_image, put};

#[test]
fn blob_round_trip_and_repository_scoping() {
    let (_d, store) = open();
    let digest = put(&store, "a/b/c", b"hello");
    assert_eq!(store.repo_blob_size("a/b/c", &digest).unwrap(), Some(5));
    assert_eq!(
        store.read_blob("a/b/c", &digest).unwrap().unwrap(),
        b"hello"
    );
    // Another repository does not see it until it is mounted.
    assert_eq!(store.repo_blob_size("other", &digest).unwrap(), None);
    assert_eq!(
        store.mount_blob("other", "a/b/c", &digest).unwrap(),
        Some(5)
    );
    assert_eq!(store.repo_blob_size("other", &digest).unwrap(), Some(5));
    // Mount from a repository that lacks it is refused.
    let missing = Digest::sha256(b"nope");
    assert_eq!(store.mount_blob("x", "a/b/c", &missing).unwrap(), None);
    assert!(store.delete_blob("other", &digest).unwrap());
    assert_eq!(store.repo_blob_size("other", &digest).unwrap(), None);
    assert_eq!(store.repositories().unwrap(), vec!["a/b/c", "other"]);
}

#[test]
fn wrong_digest_or_size_leaves_nothing_visible() {
    let (_d, store) = open();
    let wrong = Digest::sha256(b"something else");
    let err = store
        .put_blob("r", &wrong, None, &mut &b"data"[..])
        .unwrap_err();
    assert!(matches!(err, StoreError::DigestMismatch { .. }), "{err}");
    assert_eq!(store.blob_size(&wrong).unwrap(), None);
    assert_eq!(store.blob_size(&Digest::sha256(b"data")).unwrap(), None);
    let right = Digest::sha256(b"data");
    let err = store
        .put_blob("r", &right, Some(99), &mut &b"data"[..])
        .unwrap_err();
    assert!(matches!(err, StoreError::SizeMismatch { .. }), "{err}");
    assert_eq!(store.blob_size(&right).unwrap(), None);
    // No session is left behind.
    assert_eq!(
        std::fs::read_dir(store.root().join("uploads"))
            .unwrap()
            .count(),
        0
    );
}

#[test]
fn chunked_upload_resumes_after_restart() {
    let (dir, store) = open();
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let id = store.start_upload("repo").unwrap();
    {
        let mut w = store.open_upload("repo", &id).unwrap();
        w.write(&data[..1_000_000]).unwrap();
    }
    // Busy sessions refuse a second writer.
    let w = store.open_upload("repo", &id).unwrap();
    assert!(matches!(
        store.open_upload("repo", &id),
        Err(StoreError::UploadBusy(_))
    ));
    drop(w);
    // The upload belongs to its repository only.
    assert!(matches!(
        store.open_upload("elsewhere", &id),
        Err(StoreError::UploadUnknown(_))
    ));
    drop(store);
    // A new process: the hash state is rebuilt from disk.
    let store = Store::open(dir.path().join("store"), Limits::default()).unwrap();
    assert_eq!(store.upload_offset("repo", &id).unwrap(), 1_000_000);
    let mut w = store.open_upload("repo", &id).unwrap();
    assert_eq!(w.offset(), 1_000_000);
    w.write(&data[1_000_000..]).unwrap();
    let digest = Digest::sha256(&data);
    assert_eq!(
        w.commit(&digest, Some(data.len() as u64)).unwrap(),
        3_000_000
    );
    assert_eq!(
        store.repo_blob_size("repo", &digest).unwrap(),
        Some(3_000_000)
    );
}

#[test]
fn sha512_blobs_and_manifests() {
    let (_d, store) = open();
    let digest = Digest::of(Algorithm::Sha512, b"five12");
    store
        .put_blob("r", &digest, None, &mut &b"five12"[..])
        .unwrap();
    assert_eq!(store.repo_blob_size("r", &digest).unwrap(), Some(6));
    put(&store, "r", b"{}");
    let body = manifest_json(b"{}", &[], None);
    let by = Digest::of(Algorithm::Sha512, &body);
    let out = store
        .put_manifest("r", &ManifestRef::Digest(by.clone()), &body, None)
        .unwrap();
    assert_eq!(out.digest, by);
    assert_eq!(
        store
            .get_manifest("r", &ManifestRef::Digest(by))
            .unwrap()
            .unwrap()
            .body,
        body
    );
}

#[test]
fn manifests_tags_and_deletes() {
    let (_d, store) = open();
    let digest = push_image(&store, "app", "v1", b"{\"c\":1}", &[b"layer1", b"layer2"]);
    let got = store
        .get_manifest("app", &ManifestRef::Tag("v1".into()))
        .unwrap()
        .unwrap();
    assert_eq!(got.digest, digest);
    assert_eq!(got.media_type, media_type::OCI_MANIFEST);
    store
        .put_manifest("app", &ManifestRef::Tag("v2".into()), &got.body, None)
        .unwrap();
    assert_eq!(store.tags("app").unwrap().unwrap(), vec!["v1", "v2"]);
    assert_eq!(store.tags("nope").unwrap(), None);
    assert!(store.delete_tag("app", "v2").unwrap());
    assert_eq!(store.tags("app").unwrap().unwrap(), vec!["v1"]);
    assert!(store.delete_manifest("app", &digest).unwrap());
    assert!(store.tags("app").unwrap().unwrap().is_empty());
    assert!(
        store
            .get_manifest("app", &ManifestRef::Digest(digest))
            .unwrap()
            .is_none()
    );
}

#[test]
fn manifest_validation() {
    let (_d, store) = open();
    put(&store, "r", b"cfg");
    let body = manifest_json(b"cfg", &[b"missing layer"], None);
    let err = store
        .put_manifest("r", &ManifestRef::Tag("t".into()), &body, None)
        .unwrap_err();
    assert!(matches!(err, StoreError::ManifestBlobUnknown(_)), "{err}");
    let ok = manifest_json(b"cfg", &[], None);
    let wrong = Digest::sha256(b"x");
    let err = store
        .put_manifest("r", &ManifestRef::Digest(wrong), &ok, None)
        .unwrap_err();
    assert!(matches!(err, StoreError::DigestMismatch { .. }));
    let err = store
        .put_manifest("r", &ManifestRef::Tag("t".into()), b"{garbage", None)
        .unwrap_err();
    assert!(matches!(err, StoreError::ManifestInvalid(_)));
    let small = Store::open(
        store.root().join("small"),
        Limits {
            max_manifest_size: 10,
        },
    )
    .unwrap();
    let err = small
        .put_manifest("r", &ManifestRef::Tag("t".into()), &ok, None)
        .unwrap_err();
    assert!(matches!(err, StoreError::ManifestTooLarge { .. }));
    assert!(store.tags("r").unwrap().unwrap().is_empty());
    // An index whose children are not in the repository is refused.
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": media_type::OCI_INDEX,
        "manifests": [{"mediaType": media_type::OCI_MANIFEST, "digest": Digest::sha256(&ok).to_string(), "size": ok.len()}]
    })).unwrap();
    assert!(matches!(
        store.put_manifest("r", &ManifestRef::Tag("i".into()), &index, None),
        Err(StoreError::ManifestBlobUnknown(_))
    ));
    store
        .put_manifest("r", &ManifestRef::Tag("t".into()), &ok, None)
        .unwrap();
    store
        .put_manifest("r", &ManifestRef::Tag("i".into()), &index, None)
        .unwrap();
}

#[test]
fn referrers_index() {
    let (_d, store) = open();
    let subject = push_image(&store, "r", "v1", b"cfg", &[b"l"]);
    put(&store, "r", b"sigcfg");
    let sig = manifest_json(b"sigcfg", &[], Some((&subject, 100)));
    let out = store
        .put_manifest("r", &ManifestRef::Digest(Digest::sha256(&sig)), &sig, None)
        .unwrap();
    assert_eq!(out.subject.as_ref(), Some(&subject));
    let all = store.referrers("r", &subject, None).unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(
        all[0].artifact_type.as_deref(),
        Some("application/vnd.example.sig")
    );
    assert!(
        store
            .referrers("r", &subject, Some("other/type"))
            .unwrap()
            .is_empty()
    );
    assert!(store.delete_manifest("r", &out.digest).unwrap());
    assert!(store.referrers("r", &subject, None).unwrap().is_empty());
}

#[test]
fn a_named_upload_is_found_again_after_a_restart() {
    let (dir, store) = open();
    let id = "0123456789abcdef0123456789abcdef";
    let data = b"the first half, then the second half";
    let mut upload = store.resume_or_start_upload("cache", id).unwrap();
    assert_eq!(upload.offset(), 0);
    upload.write(&data[..15]).unwrap();
    drop(upload);
    drop(store);
    // A new process: the session and its bytes are still there, and the
    // hash handed out covers them.
    let store = Store::open(dir.path().join("store"), Limits::default()).unwrap();
    let mut upload = store.resume_or_start_upload("cache", id).unwrap();
    assert_eq!(upload.offset(), 15);
    assert_eq!(upload.hasher().bytes(), 15);
    upload.write(&data[15..]).unwrap();
    let digest = Digest::sha256(data);
    upload.commit(&digest, Some(data.len() as u64)).unwrap();
    assert_eq!(store.blob_size(&digest).unwrap(), Some(data.len() as u64));
    // Committed: the name starts a new, empty session.
    assert_eq!(
        store.resume_or_start_upload("cache", id).unwrap().offset(),
        0
    );
    // Names that are not session ids could point anywhere: refused.
    for bad in ["../../etc", "0123456789ABCDEF0123456789ABCDEF", "abc"] {
        assert!(matches!(
            store.resume_or_start_upload("cache", bad),
            Err(StoreError::UploadUnknown(_))
        ));
    }
}
