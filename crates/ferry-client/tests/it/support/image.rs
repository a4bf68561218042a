//! Test images: random layers, a config, an OCI manifest over them, and
//! multi-platform indexes, as exact bytes with their digests.

use bytes::Bytes;
use ferry_client::{ClientError, MemorySource, PushOptions, Repository};
use ferry_oci::progress::NoProgress;
use ferry_oci::{Digest, media_type};
use serde_json::json;

/// Deterministic pseudo-random bytes (xorshift64*): incompressible like
/// real layers, reproducible from the seed.
pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// `data` gzip-compressed: real gzip layers, the way tools detect them
/// by their magic.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

pub struct TestImage {
    pub config: Bytes,
    pub layers: Vec<Bytes>,
    pub manifest: Bytes,
    pub digest: Digest,
    pub platform: (String, String),
}

impl TestImage {
    pub fn new(seed: u64, layer_sizes: &[usize], os: &str, arch: &str) -> Self {
        let uncompressed: Vec<Vec<u8>> = layer_sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| random_bytes(seed * 1000 + i as u64, n))
            .collect();
        let diff_ids: Vec<String> = uncompressed
            .iter()
            .map(|l| Digest::sha256(l).to_string())
            .collect();
        let layers: Vec<Bytes> = uncompressed.iter().map(|l| Bytes::from(gzip(l))).collect();
        let config = Bytes::from(
            serde_json::to_vec(&json!({
                "architecture": arch,
                "os": os,
                "created": "2024-01-01T00:00:00Z",
                "config": {"Env": [format!("SEED={seed}")]},
                "rootfs": {"type": "layers", "diff_ids": diff_ids},
            }))
            .unwrap(),
        );
        let manifest = Bytes::from(
            serde_json::to_vec_pretty(&json!({
                "schemaVersion": 2,
                "mediaType": media_type::OCI_MANIFEST,
                "config": descriptor(media_type::OCI_CONFIG, &config),
                "layers": layers.iter().map(|l| descriptor(media_type::OCI_LAYER_GZIP, l)).collect::<Vec<_>>(),
            }))
            .unwrap(),
        );
        TestImage {
            digest: Digest::sha256(&manifest),
            config,
            layers,
            manifest,
            platform: (os.to_string(), arch.to_string()),
        }
    }

    /// Config and layers.
    pub fn blobs(&self) -> impl Iterator<Item = &Bytes> {
        std::iter::once(&self.config).chain(self.layers.iter())
    }

    /// Pushes blobs, then the manifest by digest and, if given, by tag.
    pub async fn push(&self, repo: &Repository, tag: Option<&str>) -> Result<(), ClientError> {
        for blob in self.blobs() {
            repo.push_blob(
                &Digest::sha256(blob),
                &MemorySource::new(blob.clone()),
                &PushOptions::default(),
                &NoProgress,
            )
            .await?;
        }
        repo.put_manifest(
            &self.digest.to_string(),
            media_type::OCI_MANIFEST,
            self.manifest.clone(),
        )
        .await?;
        if let Some(tag) = tag {
            repo.put_manifest(tag, media_type::OCI_MANIFEST, self.manifest.clone())
                .await?;
        }
        Ok(())
    }
}

pub fn descriptor(media_type: &str, data: &[u8]) -> serde_json::Value {
    json!({"mediaType": media_type, "digest": Digest::sha256(data).to_string(), "size": data.len()})
}

/// An OCI index over `images`, with their platforms.
pub fn index(images: &[&TestImage]) -> Bytes {
    let manifests: Vec<serde_json::Value> = images
        .iter()
        .map(|i| {
            let mut d = descriptor(media_type::OCI_MANIFEST, &i.manifest);
            d["platform"] = json!({"os": i.platform.0, "architecture": i.platform.1});
            d
        })
        .collect();
    Bytes::from(
        serde_json::to_vec_pretty(&json!({
            "schemaVersion": 2,
            "mediaType": media_type::OCI_INDEX,
            "manifests": manifests,
        }))
        .unwrap(),
    )
}
