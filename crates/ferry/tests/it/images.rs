//! Test images written as an OCI image layout: real gzip-compressed tar
//! layers with matching diff_ids, so that podman (which checks them) and
//! skopeo accept them.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use ferry_oci::{Digest, media_type};

/// Deterministic pseudo-random bytes (xorshift), so test content is
/// reproducible without a random source.
pub fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

pub struct Layout {
    root: std::path::PathBuf,
    refs: BTreeMap<String, serde_json::Value>,
}

impl Layout {
    pub fn new(root: &Path) -> Layout {
        std::fs::create_dir_all(root.join("blobs/sha256")).unwrap();
        std::fs::write(root.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        Layout {
            root: root.to_path_buf(),
            refs: BTreeMap::new(),
        }
    }

    pub fn blob(&self, media_type: &str, data: &[u8]) -> serde_json::Value {
        let digest = Digest::sha256(data);
        std::fs::write(self.root.join("blobs/sha256").join(digest.hex()), data).unwrap();
        serde_json::json!({"mediaType": media_type, "digest": digest.to_string(), "size": data.len()})
    }

    /// A gzip tar layer holding one file; returns (descriptor, diff_id).
    fn layer(&self, seed: u64, size: usize) -> (serde_json::Value, String) {
        let mut tar = tar::Builder::new(Vec::new());
        let content = bytes(seed, size);
        let mut header = tar::Header::new_ustar();
        header.set_size(content.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(1_700_000_000);
        header.set_cksum();
        tar.append_data(&mut header, format!("data/file-{seed}.bin"), &content[..])
            .unwrap();
        let tar = tar.into_inner().unwrap();
        let diff_id = Digest::sha256(&tar).to_string();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar).unwrap();
        (
            self.blob(media_type::OCI_LAYER_GZIP, &gz.finish().unwrap()),
            diff_id,
        )
    }

    /// An image manifest with `layers` layers of `size` bytes each.
    pub fn image(
        &self,
        seed: u64,
        layers: usize,
        size: usize,
        arch: &str,
        variant: Option<&str>,
    ) -> serde_json::Value {
        let (descs, diff_ids): (Vec<_>, Vec<_>) = (0..layers)
            .map(|i| self.layer(seed * 1000 + i as u64, size))
            .unzip();
        let mut config = serde_json::json!({
            "architecture": arch, "os": "linux",
            "config": {"Cmd": ["/bin/true"]},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        });
        if let Some(v) = variant {
            config["variant"] = serde_json::json!(v);
        }
        let config = self.blob(
            media_type::OCI_CONFIG,
            &serde_json::to_vec(&config).unwrap(),
        );
        let manifest = serde_json::json!({
            "schemaVersion": 2, "mediaType": media_type::OCI_MANIFEST, "config": config, "layers": descs,
        });
        let mut desc = self.blob(
            media_type::OCI_MANIFEST,
            &serde_json::to_vec(&manifest).unwrap(),
        );
        let mut platform = serde_json::json!({"architecture": arch, "os": "linux"});
        if let Some(v) = variant {
            platform["variant"] = serde_json::json!(v);
        }
        desc["platform"] = platform;
        desc
    }

    pub fn index(&self, children: Vec<serde_json::Value>) -> serde_json::Value {
        let index = serde_json::json!({"schemaVersion": 2, "mediaType": media_type::OCI_INDEX, "manifests": children});
        self.blob(media_type::OCI_INDEX, &serde_json::to_vec(&index).unwrap())
    }

    pub fn tag(&mut self, name: &str, mut desc: serde_json::Value) {
        desc.as_object_mut().unwrap().remove("platform");
        desc["annotations"] = serde_json::json!({media_type::ANNOTATION_REF_NAME: name});
        self.refs.insert(name.to_string(), desc);
        let index = serde_json::json!({"schemaVersion": 2, "manifests": self.refs.values().collect::<Vec<_>>()});
        std::fs::write(
            self.root.join("index.json"),
            serde_json::to_vec(&index).unwrap(),
        )
        .unwrap();
    }
}

/// A layout with `many` (40 layers) and `multi` (an index for amd64 and arm64/v8).
pub fn standard(root: &Path) -> Layout {
    let mut layout = Layout::new(root);
    let many = layout.image(1, 40, 20_000, "amd64", None);
    layout.tag("many", many);
    let amd = layout.image(2, 2, 300_000, "amd64", None);
    let arm = layout.image(3, 2, 300_000, "arm64", Some("v8"));
    let multi = layout.index(vec![amd, arm]);
    layout.tag("multi", multi);
    layout
}

/// Every blob file under `a` is in `b` with identical bytes.
pub fn assert_blobs_identical(a: &Path, b: &Path) -> usize {
    let mut n = 0;
    for entry in std::fs::read_dir(a.join("blobs/sha256")).unwrap() {
        let entry = entry.unwrap();
        let other = b.join("blobs/sha256").join(entry.file_name());
        let (x, y) = (
            std::fs::read(entry.path()).unwrap(),
            std::fs::read(&other).unwrap_or_default(),
        );
        assert!(x == y, "blob {:?} differs or is missing", entry.file_name());
        n += 1;
    }
    n
}
