//! OCI artifact sources: files pushed into ferry's store as ORAS-style
//! artifacts (one titled layer per file), found by layout, served from the
//! blobs; an index picks the profile's architecture.

use std::path::Path;

use ferry_netboot::artifact::ProfileFiles;
use ferry_netboot::config::{Config, Profile};
use ferry_oci::{Algorithm, Digest};
use ferry_store::{Limits, ManifestRef, Store};

use crate::util::pattern;

const ARTIFACT: &str = "application/vnd.oci.image.manifest.v1+json";

fn put(store: &Store, repo: &str, data: &[u8]) -> Digest {
    let digest = Digest::of(Algorithm::Sha256, data);
    store
        .put_blob(repo, &digest, Some(data.len() as u64), &mut &data[..])
        .unwrap();
    digest
}

/// Pushes files as an artifact manifest; returns the manifest's digest.
fn push_artifact(
    store: &Store,
    repo: &str,
    files: &[(&str, Vec<u8>)],
    tag: Option<&str>,
) -> Digest {
    let config = put(store, repo, b"{}");
    let layers: Vec<serde_json::Value> = files
        .iter()
        .map(|(title, data)| {
            let d = put(store, repo, data);
            serde_json::json!({
                "mediaType": "application/octet-stream",
                "digest": d.to_string(),
                "size": data.len(),
                "annotations": {"org.opencontainers.image.title": title}
            })
        })
        .collect();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": ARTIFACT,
        "artifactType": "application/vnd.ferry.os.v1",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": config.to_string(), "size": 2},
        "layers": layers,
    });
    let body = serde_json::to_vec(&manifest).unwrap();
    let digest = Digest::of(Algorithm::Sha256, &body);
    let reference = match tag {
        Some(t) => ManifestRef::Tag(t.to_string()),
        None => ManifestRef::Digest(digest.clone()),
    };
    store
        .put_manifest(repo, &reference, &body, Some(ARTIFACT))
        .unwrap();
    digest
}

fn profile(source: &str, arch: &str) -> Profile {
    let yaml = format!(
        "server: {{address: 10.0.0.2}}\nprofiles:\n  p:\n    source: {{oci: \"{source}\"}}\n    arch: {arch}\n    cmdline: x\n"
    );
    Config::parse(&yaml, Path::new("t.yaml"), Path::new("/"))
        .unwrap()
        .config
        .profiles["p"]
        .clone()
}

fn read(files: &ProfileFiles, name: &str) -> Vec<u8> {
    use std::io::Read;
    let (_, f) = &files.files[name];
    let mut out = Vec::new();
    f.open().unwrap().read_to_end(&mut out).unwrap();
    assert_eq!(out.len() as u64, f.size);
    out
}

#[test]
fn artifact_files_by_title_and_index_by_architecture() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Limits::default()).unwrap();
    let repo = "os/kairos";
    // bare titles; the Kairos layout's boot/kernel matches by last component
    push_artifact(
        &store,
        repo,
        &[
            ("kernel", pattern(5000, 1)),
            ("initrd", pattern(3000, 2)),
            ("rootfs.squashfs", pattern(9000, 3)),
        ],
        Some("v1"),
    );
    let files =
        ProfileFiles::resolve("p", &profile("os/kairos:v1", "amd64"), Some(&store)).unwrap();
    assert_eq!(files.layout, Some("kairos"));
    assert_eq!(read(&files, "kernel"), pattern(5000, 1));
    assert_eq!(read(&files, "rootfs"), pattern(9000, 3));
    let (_, k) = &files.files["kernel"];
    assert_eq!(
        k.etag,
        format!("\"{}\"", Digest::of(Algorithm::Sha256, &pattern(5000, 1)))
    );

    // an index with amd64 and arm64 children
    let amd = push_artifact(
        &store,
        repo,
        &[
            ("boot/kernel", pattern(100, 4)),
            ("boot/initrd", pattern(100, 5)),
        ],
        None,
    );
    let arm = push_artifact(
        &store,
        repo,
        &[
            ("boot/kernel", pattern(200, 6)),
            ("boot/initrd", pattern(200, 7)),
        ],
        None,
    );
    let child = |d: &Digest, arch: &str| {
        serde_json::json!({
            "mediaType": ARTIFACT, "digest": d.to_string(), "size": 1,
            "platform": {"os": "linux", "architecture": arch}
        })
    };
    // the index needs the children's real sizes
    let size = |d: &Digest| {
        store
            .get_manifest(repo, &ManifestRef::Digest(d.clone()))
            .unwrap()
            .unwrap()
            .body
            .len()
    };
    let mut a = child(&amd, "amd64");
    a["size"] = size(&amd).into();
    let mut b = child(&arm, "arm64");
    b["size"] = size(&arm).into();
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [a, b]
    }))
    .unwrap();
    store
        .put_manifest(
            repo,
            &ManifestRef::Tag("multi".into()),
            &index,
            Some("application/vnd.oci.image.index.v1+json"),
        )
        .unwrap();
    let arm_files =
        ProfileFiles::resolve("p", &profile("os/kairos:multi", "arm64"), Some(&store)).unwrap();
    assert_eq!(read(&arm_files, "kernel"), pattern(200, 6));
    let by_digest = ProfileFiles::resolve(
        "p",
        &profile(&format!("os/kairos@{amd}"), "amd64"),
        Some(&store),
    )
    .unwrap();
    assert_eq!(read(&by_digest, "initrd"), pattern(100, 5));

    for (source, needle) in [
        ("os/kairos:nope", "is not in ferry's registry"),
        ("os/other:v1", "is not in ferry's registry"),
        ("os/kairos", "is not repository:tag"),
    ] {
        let e = ProfileFiles::resolve("p", &profile(source, "amd64"), Some(&store)).unwrap_err();
        assert!(e.to_string().contains(needle), "{source}: {e}");
    }
}

/// A profile whose artifact is not in the registry yet waits instead of
/// failing, and is ready as soon as the artifact is pushed.
/// Titles that name one layout exactly win over a layout they only match
/// by last component: `ferry image build --push` titles its set
/// `vmlinuz`, `initrd.img`, `rootfs.squashfs` (the plain layout), which
/// debian-live's `live/vmlinuz` would also take loosely, without a rootfs.
#[test]
fn titles_that_name_a_layout_exactly_pick_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Limits::default()).unwrap();
    push_artifact(
        &store,
        "os/debian-netboot",
        &[
            ("vmlinuz", pattern(500, 1)),
            ("initrd.img", pattern(300, 2)),
            ("rootfs.squashfs", pattern(900, 3)),
        ],
        Some("12"),
    );
    let files = ProfileFiles::resolve("p", &profile("os/debian-netboot:12", "amd64"), Some(&store))
        .unwrap();
    assert_eq!(files.layout, Some("plain"));
    assert_eq!(read(&files, "rootfs"), pattern(900, 3));
}

#[test]
fn a_profile_waits_for_its_artifact() {
    use ferry_netboot::artifact::ArtifactStore;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Limits::default()).unwrap();
    let profiles = [("p".to_string(), profile("os/later:v1", "amd64"))].into();
    let artifacts = ArtifactStore::new(&profiles, Some(store.clone())).unwrap();
    assert_eq!(
        artifacts.not_ready("p").as_deref(),
        Some("os/later:v1 is not in ferry's registry")
    );
    assert!(artifacts.profile("p").is_none());
    assert_eq!(artifacts.file_names("p"), ["kernel", "initrd", "rootfs"]);
    assert_eq!(artifacts.retry_waiting(), 1);
    push_artifact(
        &store,
        "os/later",
        &[
            ("boot/kernel", pattern(100, 1)),
            ("boot/initrd", pattern(100, 2)),
        ],
        Some("v1"),
    );
    assert_eq!(artifacts.retry_waiting(), 0);
    assert!(artifacts.not_ready("p").is_none());
    assert_eq!(
        read(&artifacts.profile("p").unwrap(), "kernel"),
        pattern(100, 1)
    );
    // A malformed reference is still a start-up error.
    let bad = [("p".to_string(), profile("os/later", "amd64"))].into();
    assert!(ArtifactStore::new(&bad, Some(store)).is_err());
}
