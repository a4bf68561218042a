use std::io::Write;

use ferry_bundle::Bundle;
use ferry_bundle::reader::BundleError;
use ferry_bundle::writer::{Plan, WriteOptions, write_bundle};
use ferry_oci::progress::NoProgress;

use crate::cache_with_image;

fn plan(entries: Vec<ferry_bundle::Entry>) -> Plan {
    Plan {
        entries,
        spec: serde_json::json!({}),
        created: Some(1_700_000_000),
        base: None,
    }
}

#[test]
fn write_then_read_back_identically() {
    let dir = tempfile::tempdir().unwrap();
    let (cache, entry) = cache_with_image(dir.path(), 3);
    let out = dir.path().join("site.ferry");
    let report = write_bundle(
        &plan(vec![entry.clone()]),
        &cache,
        &out,
        &WriteOptions::default(),
        &NoProgress,
    )
    .unwrap();
    assert_eq!(report.blobs, 3);
    let bundle = Bundle::open(&out).unwrap();
    assert_eq!(bundle.manifest.entries, vec![entry.clone()]);
    for record in &bundle.manifest.blobs {
        let data = bundle.read_blob(&record.digest).unwrap().unwrap();
        assert_eq!(ferry_oci::Digest::sha256(&data), record.digest);
    }
    // Same inputs, same bytes.
    let again = dir.path().join("again.ferry");
    write_bundle(
        &plan(vec![entry]),
        &cache,
        &again,
        &WriteOptions::default(),
        &NoProgress,
    )
    .unwrap();
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&again).unwrap());
}

#[test]
fn split_parts_concatenate_to_the_tar() {
    let dir = tempfile::tempdir().unwrap();
    let (cache, entry) = cache_with_image(dir.path(), 5);
    let whole = dir.path().join("whole.ferry");
    write_bundle(
        &plan(vec![entry.clone()]),
        &cache,
        &whole,
        &WriteOptions::default(),
        &NoProgress,
    )
    .unwrap();
    // A big image so that it needs several 1 MiB parts.
    let big: Vec<u8> = (0..3_500_000u32).map(|i| (i * 7 % 256) as u8).collect();
    let d = ferry_oci::Digest::sha256(&big);
    cache.put_blob("cache", &d, None, &mut &big[..]).unwrap();
    let split = dir.path().join("split.ferry");
    let options = WriteOptions {
        split: Some(1024 * 1024),
        ..WriteOptions::default()
    };
    let report = write_bundle(&plan(vec![entry]), &cache, &split, &options, &NoProgress).unwrap();
    let mut joined = Vec::new();
    for f in &report.files {
        joined.extend(std::fs::read(f).unwrap());
    }
    assert_eq!(joined, std::fs::read(&whole).unwrap());
    assert!(Bundle::open(&split).is_ok());
}

#[test]
fn truncated_bundle_is_reported_as_such() {
    let dir = tempfile::tempdir().unwrap();
    let (cache, entry) = cache_with_image(dir.path(), 7);
    let out = dir.path().join("site.ferry");
    write_bundle(
        &plan(vec![entry]),
        &cache,
        &out,
        &WriteOptions::default(),
        &NoProgress,
    )
    .unwrap();
    let bytes = std::fs::read(&out).unwrap();
    for cut in [bytes.len() / 2, bytes.len() - 2048, 5000] {
        std::fs::write(&out, &bytes[..cut]).unwrap();
        match Bundle::open(&out) {
            Err(
                BundleError::Truncated { .. }
                | BundleError::Incomplete { .. }
                | BundleError::Tar { .. },
            ) => {}
            Err(e) => panic!("cut at {cut}: unexpected {e}"),
            Ok(_) => panic!("cut at {cut}: a truncated bundle opened"),
        }
    }
}

fn hostile_tar(name: &str, kind: tar::EntryType, link: Option<&str>) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_size(if kind.is_file() { 4 } else { 0 });
    h.set_mode(0o644);
    if let Some(l) = link {
        h.set_link_name(l).unwrap();
    }
    // Write the name bytes directly: the builder itself refuses "..".
    let raw = &mut h.as_old_mut().name;
    raw[..name.len()].copy_from_slice(name.as_bytes());
    h.set_cksum();
    tar.append(
        &h,
        if kind.is_file() {
            &b"evil"[..]
        } else {
            &b""[..]
        },
    )
    .unwrap();
    tar.into_inner().unwrap()
}

#[test]
fn unsafe_members_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("../../etc/x", tar::EntryType::Regular, None),
        ("/etc/x", tar::EntryType::Regular, None),
        ("blobs/link", tar::EntryType::Symlink, Some("/etc/passwd")),
        ("blobs/hard", tar::EntryType::Link, Some("../../etc/passwd")),
    ];
    for (name, kind, link) in cases {
        let path = dir.path().join("evil.ferry");
        let mut f = std::fs::File::create(&path).unwrap();
        f.write_all(&hostile_tar(name, kind, link)).unwrap();
        match Bundle::open(&path) {
            Err(BundleError::UnsafeMember { .. }) => {}
            other => panic!("{name}: expected UnsafeMember, got {:?}", other.err()),
        }
    }
    assert!(!dir.path().join("etc").exists());
}
