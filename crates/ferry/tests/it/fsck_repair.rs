//! A byte flipped in a blob of `ferry serve`'s store: fsck finds it, a
//! re-push alone cannot fix it (the registry says the blob is there), and
//! `ferry registry fsck --repair` quarantines it so that the next push
//! stores it again and pulls get the right bytes.

use std::path::Path;

use crate::images::{assert_blobs_identical, standard};
use crate::registry_clients::copy;
use crate::{Server, ferry, ok, run};

/// The path of a layer blob of `image` in the store under `state`.
fn stored_layer(src: &Path, state: &Path, tag: &str) -> (String, std::path::PathBuf) {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(src.join("index.json")).unwrap()).unwrap();
    let manifest = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let hex = manifest.strip_prefix("sha256:").unwrap();
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(src.join("blobs/sha256").join(hex)).unwrap())
            .unwrap();
    let layer = manifest["layers"][3]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let hex = layer.strip_prefix("sha256:").unwrap().to_string();
    let path = state
        .join("registry/blobs/sha256")
        .join(&hex[..2])
        .join(&hex);
    (layer, path)
}

#[test]
fn fsck_repair_quarantines_a_corrupt_blob_and_a_push_restores_it() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    standard(&src);
    let server = Server::start(&tmp.path().join("state"), &[]);
    let addr = &server.addr;
    let image = format!("oci:{}:many", src.display());
    let target = format!("docker://{addr}/site/app:v1");
    let pull = |n: u32| {
        copy(
            &target,
            &format!("oci:{}:x", tmp.path().join(format!("back{n}")).display()),
            &[],
        )
    };
    let out = copy(&image, &target, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let (layer, path) = stored_layer(&src, &server.state, "many");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[100] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();

    let fsck = run(ferry()
        .args(["registry", "fsck", "--state"])
        .arg(&server.state));
    assert_eq!(fsck.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&fsck.stdout);
    assert!(
        stdout.contains(&format!("corrupt blob {layer}")),
        "{stdout}"
    );
    // A re-push does not help: the registry has "the blob".
    let out = copy(&image, &target, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = pull(1);
    assert!(!out.status.success(), "the corrupt layer was served");

    let repair = run(ferry()
        .args(["registry", "fsck", "--repair", "--state"])
        .arg(&server.state));
    let stdout = String::from_utf8_lossy(&repair.stdout);
    assert_eq!(repair.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("quarantined"), "{stdout}");
    assert!(
        stdout.contains(&format!("manifest references missing blob {layer}"))
            || stdout.contains(&format!("missing blob {layer}")),
        "{stdout}"
    );
    assert!(!path.exists());
    let quarantined: Vec<_> = std::fs::read_dir(server.state.join("registry/quarantine"))
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(quarantined.len(), 1);
    assert_eq!(std::fs::read(quarantined[0].path()).unwrap(), bytes);

    // Not served any more: a pull fails cleanly (404), and a push stores it again.
    let out = copy(&image, &target, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = pull(2);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_blobs_identical(&tmp.path().join("back2"), &src);
    ok(ferry()
        .args(["registry", "fsck", "--state"])
        .arg(&server.state));
}
