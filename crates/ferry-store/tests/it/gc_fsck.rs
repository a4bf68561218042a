use std::time::Duration;

use ferry_oci::Digest;
use ferry_store::{GcOptions, ManifestRef};

use crate::{open, push_image, put};

fn no_grace() -> GcOptions {
    GcOptions {
        grace: Duration::ZERO,
        dry_run: false,
    }
}

#[test]
fn gc_keeps_referenced_and_removes_orphans() {
    let (_d, store) = open();
    let kept = push_image(&store, "r", "v1", b"cfg", &[b"shared", b"only-v1"]);
    let gone = push_image(&store, "r", "v2", b"cfg2", &[b"shared", b"only-v2"]);
    store.delete_manifest("r", &gone).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    let report = store.gc(&no_grace()).unwrap();
    let deleted = &report.blobs_deleted;
    for d in [Digest::sha256(b"cfg2"), Digest::sha256(b"only-v2"), gone] {
        assert!(deleted.contains(&d), "{d} should be collected");
        assert_eq!(store.blob_size(&d).unwrap(), None);
    }
    for d in [
        Digest::sha256(b"cfg"),
        Digest::sha256(b"shared"),
        Digest::sha256(b"only-v1"),
        kept.clone(),
    ] {
        assert!(store.blob_size(&d).unwrap().is_some(), "{d} must stay");
    }
    assert!(report.links_removed >= 2);
    assert!(
        store
            .get_manifest("r", &ManifestRef::Tag("v1".into()))
            .unwrap()
            .is_some()
    );
    assert!(store.fsck(&|_| {}).unwrap().is_clean());
}

#[test]
fn gc_grace_period_keeps_fresh_uploads() {
    let (_d, store) = open();
    let orphan = put(&store, "r", b"uploaded, manifest not pushed yet");
    let report = store.gc(&GcOptions::default()).unwrap();
    assert!(report.blobs_deleted.is_empty());
    assert_eq!(report.blobs_kept_recent, 1);
    assert!(store.blob_size(&orphan).unwrap().is_some());
}

#[test]
fn gc_never_takes_an_open_upload() {
    let (_d, store) = open();
    let id = store.start_upload("r").unwrap();
    let mut w = store.open_upload("r", &id).unwrap();
    w.write(b"partial").unwrap();
    let report = store.gc(&no_grace()).unwrap();
    assert_eq!(report.uploads_purged, 0);
    w.write(b" and the rest").unwrap();
    let digest = Digest::sha256(b"partial and the rest");
    w.commit(&digest, None).unwrap();
    assert!(store.blob_size(&digest).unwrap().is_some());
}

#[test]
fn gc_concurrent_with_pushes_loses_nothing() {
    let (_d, store) = open();
    // Orphans old enough to collect; pushes re-use some of them while GC runs.
    let shared: Vec<Vec<u8>> = (0..200).map(|i| format!("old-{i}").into_bytes()).collect();
    for s in &shared {
        put(&store, "old", s);
    }
    std::thread::sleep(Duration::from_millis(20));
    let pusher = {
        let store = store.clone();
        let shared = shared.clone();
        std::thread::spawn(move || {
            let mut pushed = Vec::new();
            for (i, s) in shared.iter().enumerate() {
                let tag = format!("t{i}");
                // The client's view: HEAD, upload if missing, then the manifest.
                let d = Digest::sha256(s);
                if store.repo_blob_size("new", &d).unwrap().is_none() {
                    put(&store, "new", s);
                }
                put(&store, "new", b"cfg");
                let body = crate::manifest_json(b"cfg", &[s], None);
                match store.put_manifest("new", &ManifestRef::Tag(tag.clone()), &body, None) {
                    Ok(_) => pushed.push(d),
                    // The blob was swept between HEAD and PUT: the client
                    // would upload again; it must never be silently lost.
                    Err(ferry_store::StoreError::ManifestBlobUnknown(_)) => {
                        put(&store, "new", s);
                        store
                            .put_manifest("new", &ManifestRef::Tag(tag), &body, None)
                            .unwrap();
                        pushed.push(d);
                    }
                    Err(e) => panic!("{e}"),
                }
            }
            pushed
        })
    };
    for _ in 0..5 {
        store.gc(&no_grace()).unwrap();
    }
    let pushed = pusher.join().unwrap();
    for d in pushed {
        assert!(
            store.repo_blob_size("new", &d).unwrap().is_some(),
            "{d} lost"
        );
    }
    let report = store.fsck(&|_| {}).unwrap();
    assert!(report.is_clean(), "{report:?}");
}

#[test]
fn fsck_finds_corruption_and_dangling_references() {
    let (_d, store) = open();
    push_image(&store, "r", "v1", b"cfg", &[b"layer"]);
    assert!(store.fsck(&|_| {}).unwrap().is_clean());
    let layer = Digest::sha256(b"layer");
    let hex = layer.hex();
    let path = store.root().join("blobs/sha256").join(&hex[..2]).join(hex);
    std::fs::write(&path, b"LAYER").unwrap();
    let report = store.fsck(&|_| {}).unwrap();
    assert_eq!(report.corrupt_blobs.len(), 1);
    assert_eq!(report.corrupt_blobs[0].digest, layer);
    std::fs::remove_file(&path).unwrap();
    let report = store.fsck(&|_| {}).unwrap();
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.what.contains("missing blob")),
        "{report:?}"
    );
}

/// Sets a file's or directory's mtime `ago` in the past.
fn age(path: &std::path::Path, ago: Duration) {
    std::fs::File::open(path)
        .unwrap()
        .set_modified(std::time::SystemTime::now() - ago)
        .unwrap();
}

#[test]
fn gc_removes_abandoned_sessions_and_crash_leftovers() {
    let (dir, store) = open();
    let root = dir.path().join("store");
    let two_hours = Duration::from_secs(7200);
    let abandoned = store.start_upload("r").unwrap();
    store
        .open_upload("r", &abandoned)
        .unwrap()
        .write(b"sent, then the client vanished")
        .unwrap();
    age(
        &root.join("uploads").join(&abandoned).join("data"),
        two_hours,
    );
    let fresh = store.start_upload("r").unwrap();
    // A session directory without files, as a crash (or an older ferry
    // on a full disk) left it.
    let empty = root.join("uploads/0123456789abcdef0123456789abcdef");
    std::fs::create_dir(&empty).unwrap();
    age(&empty, two_hours);
    let old_temp = root.join("tmp/.tmpleftover");
    std::fs::write(&old_temp, b"half").unwrap();
    age(&old_temp, two_hours);
    let new_temp = root.join("tmp/.tmpinflight");
    std::fs::write(&new_temp, b"being written").unwrap();

    let report = store.gc(&GcOptions::default()).unwrap();
    assert_eq!(report.uploads_purged, 2);
    assert_eq!(report.temp_files_removed, 1);
    assert!(store.upload_offset("r", &abandoned).is_err());
    assert_eq!(store.upload_offset("r", &fresh).unwrap(), 0);
    assert!(!empty.exists() && !old_temp.exists() && new_temp.exists());
    // The client that comes back learns its session is gone.
    assert!(matches!(
        store.open_upload("r", &abandoned),
        Err(ferry_store::StoreError::UploadUnknown(_))
    ));
}

/// A byte flipped in a stored blob: `recheck_blob` finds it and takes it
/// out of service, so that `put_blob` (what an import does) stores the
/// right bytes again; an intact blob is left alone.
#[test]
fn a_corrupt_blob_is_quarantined_and_stored_again() {
    let (dir, store) = open();
    let image = push_image(&store, "r", "v1", b"cfg", &[b"layer one", b"layer two"]);
    let layer = Digest::sha256(b"layer two");
    let path = dir
        .path()
        .join("store/blobs/sha256")
        .join(&layer.hex()[..2])
        .join(layer.hex());
    std::fs::write(&path, b"layer twO").unwrap();
    assert_eq!(
        store.recheck_blob(&Digest::sha256(b"layer one")).unwrap(),
        ferry_store::BlobCheck::Intact { size: 9 }
    );
    let check = store.recheck_blob(&layer).unwrap();
    let ferry_store::BlobCheck::Corrupt {
        actual,
        quarantined,
    } = check
    else {
        panic!("{check:?}");
    };
    assert_eq!(actual, Digest::sha256(b"layer twO"));
    assert_eq!(std::fs::read(&quarantined).unwrap(), b"layer twO");
    assert_eq!(store.blob_size(&layer).unwrap(), None);
    assert!(store.open_blob("r", &layer).unwrap().is_none());
    assert_eq!(
        store.recheck_blob(&layer).unwrap(),
        ferry_store::BlobCheck::Missing
    );
    let report = store.fsck(&|_| {}).unwrap();
    assert!(report.corrupt_blobs.is_empty());
    // The blob link and the manifest both miss it until it is stored again.
    assert_eq!(report.problems.len(), 2, "{:?}", report.problems);

    put(&store, "r", b"layer two");
    assert_eq!(std::fs::read(&path).unwrap(), b"layer two");
    assert!(store.fsck(&|_| {}).unwrap().is_clean());
    assert!(
        store
            .get_manifest("r", &ManifestRef::Digest(image))
            .unwrap()
            .is_some()
    );
}

#[test]
fn fsck_and_repair_quarantines_what_fsck_reports() {
    let (dir, store) = open();
    push_image(&store, "r", "v1", b"cfg", &[b"good", b"bad"]);
    let bad = Digest::sha256(b"bad");
    let path = dir
        .path()
        .join("store/blobs/sha256")
        .join(&bad.hex()[..2])
        .join(bad.hex());
    std::fs::write(&path, b"BAD").unwrap();
    let report = store.fsck(&|_| {}).unwrap();
    assert_eq!(report.corrupt_blobs.len(), 1);
    assert!(report.corrupt_blobs[0].quarantined.is_none());
    assert!(path.exists(), "fsck alone changes nothing");
    let report = store.fsck_and_repair(&|_| {}).unwrap();
    assert_eq!(report.corrupt_blobs[0].digest, bad);
    assert!(report.corrupt_blobs[0].quarantined.is_some());
    assert!(!path.exists());
    let manifest = store
        .resolve_manifest("r", &ManifestRef::Tag("v1".into()))
        .unwrap()
        .unwrap();
    let wanted = format!("manifest {manifest} references missing blob {bad}");
    assert!(
        report.problems.iter().any(|p| p.what == wanted),
        "{:?}",
        report.problems
    );
}

/// `put_blob` is one call to its caller: garbage collection with no grace
/// period, running all the while, never takes the session it writes
/// through (it did, between the session's creation and its writer).
#[test]
fn gc_without_grace_never_takes_a_put_blob_session() {
    let (_d, store) = open();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let collector = {
        let store = store.clone();
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                store.gc(&no_grace()).unwrap();
            }
        })
    };
    for i in 0..300 {
        let data = format!("blob {i}").into_bytes();
        let digest = Digest::sha256(&data);
        if let Err(e) = store.put_blob("r", &digest, Some(data.len() as u64), &mut &data[..]) {
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            panic!("put_blob {i}: {e}");
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    collector.join().unwrap();
}
