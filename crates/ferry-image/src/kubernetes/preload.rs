//! Preloaded images: containerd has them before kubelet starts, under
//! their original names, so `kubeadm init` and the manifests pull nothing.
//!
//! Each image goes into the image as an OCI archive (an OCI image layout
//! in a tar, image-layout.md) in `/var/lib/ferry/preload/`, holding the
//! root manifest or index byte for byte (its digest is the one the bundle
//! carried) and the blobs of the build's platform. The index names it
//! with `io.containerd.image.name`, the annotation `ctr images import`
//! takes the image name from (containerd `images/archive/importer.go`);
//! the sandbox image pinned to the site registry gets that name too.
//!
//! A first-boot unit, ordered after containerd and before kubelet,
//! imports them into the `k8s.io` namespace (the one the CRI plugin
//! serves) and removes each archive once imported. Writing containerd's
//! content store and bolt metadata directly was the alternative; its
//! format is internal to containerd and changes between versions, the
//! archive import is its public interface.
//!
//! The archive is generated as it is written into the tree ([`Archive`]
//! reads blob after blob, each checked against its digest), so nothing is
//! staged twice or held in memory.

use std::collections::{BTreeMap, VecDeque};
use std::io::{self, Cursor, Read};
use std::sync::Arc;

use ferry_oci::{Descriptor, Digest, ParsedManifest, media_type};

use super::KubernetesError;
use crate::customize::{Context, systemd, write_file};
use crate::rootfs::{Meta, Rootfs};
use crate::source::{Blobs, Platform};

/// Where the archives go in the image.
pub const PRELOAD_DIR: &str = "/var/lib/ferry/preload";
/// The first-boot unit that imports them.
pub const UNIT: &str = "ferry-preload-images.service";
/// Largest manifest or index read.
const MANIFEST_LIMIT: u64 = 4 * 1024 * 1024;

/// An image to preload, found by the caller.
pub struct PreloadSource {
    /// The name containerd gives it.
    pub name: String,
    /// Where it was read (a store, bundle or registry reference).
    pub from: String,
    pub blobs: Arc<dyn Blobs>,
    /// Its manifest or index.
    pub root: Digest,
}

/// One preloaded image, for `manifest.json`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Preloaded {
    pub name: String,
    /// More names it has on the node (the sandbox image on the site registry).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub also_named: Vec<String>,
    pub from: String,
    /// The root manifest or index digest, as `ctr images ls` shows it.
    pub digest: Digest,
    pub archive: String,
    pub size: u64,
}

/// Writes every image of `images` as an archive, and the unit importing
/// them with `ctr` at `ctr`.
pub fn write(
    images: &[PreloadSource],
    also_named: &BTreeMap<String, Vec<String>>,
    platform: &Platform,
    ctr: &str,
    rootfs: &mut Rootfs,
    cx: &Context<'_>,
) -> Result<Vec<Preloaded>, KubernetesError> {
    let mut preloaded = Vec::new();
    for (index, image) in images.iter().enumerate() {
        let error = |message: String| KubernetesError::Preload {
            image: image.name.clone(),
            from: image.from.clone(),
            message,
        };
        let names: Vec<String> = std::iter::once(image.name.clone())
            .chain(also_named.get(&image.name).into_iter().flatten().cloned())
            .collect();
        let mut archive = Archive::new(image, &names, platform, cx.mtime).map_err(error)?;
        let path = format!(
            "{PRELOAD_DIR}/{:02}-{}.tar",
            index + 1,
            file_name_of(&image.name)
        );
        let image_path = crate::rootfs::tree::normalize(path.as_bytes())
            .map_err(crate::rootfs::RootfsError::from)?;
        let resolved = rootfs.ensure_parents(&image_path, cx.mtime)?;
        rootfs
            .file(&resolved, Meta::root_owned(0o600, cx.mtime), &mut archive)
            .map_err(|e| error(e.to_string()))?;
        preloaded.push(Preloaded {
            name: image.name.clone(),
            also_named: names[1..].to_vec(),
            from: image.from.clone(),
            digest: image.root.clone(),
            archive: path,
            size: archive.written,
        });
    }
    if !preloaded.is_empty() {
        let unit = UNIT_TEXT
            .replace("{ctr}", ctr)
            .replace("{dir}", PRELOAD_DIR);
        write_file(
            rootfs,
            cx,
            &format!("{}/{UNIT}", super::node::UNIT_DIR),
            unit.as_bytes(),
            0o644,
        )?;
        systemd::enable_unit(rootfs, cx, UNIT)?;
    }
    Ok(preloaded)
}

/// `registry.k8s.io/coredns/coredns:v1.11.1` -> `registry.k8s.io_coredns_coredns_v1.11.1`.
fn file_name_of(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

const UNIT_TEXT: &str = "\
# Written by ferry image build: imports the images preloaded into this
# image into containerd's k8s.io namespace before kubelet starts, then
# removes each archive.
[Unit]
Description=Import the images preloaded by ferry into containerd
Requires=containerd.service
After=containerd.service
Before=kubelet.service
ConditionDirectoryNotEmpty={dir}

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/sh -ec 'for archive in {dir}/*.tar; do {ctr} --namespace k8s.io images import \"$archive\"; rm -f \"$archive\"; done'

[Install]
WantedBy=multi-user.target
";

/// One tar member: its header, then its bytes.
enum Content {
    Bytes(Vec<u8>),
    Blob { digest: Digest, size: u64 },
}

/// The OCI archive of one image, generated as it is read.
struct Archive<'a> {
    blobs: &'a dyn Blobs,
    members: VecDeque<(String, Content)>,
    mtime: u64,
    current: Option<Box<dyn Read + Send + 'a>>,
    ended: bool,
    written: u64,
}

impl<'a> Archive<'a> {
    fn new(
        image: &'a PreloadSource,
        names: &[String],
        platform: &Platform,
        mtime: i64,
    ) -> Result<Archive<'a>, String> {
        let blobs = image.blobs.as_ref();
        let root_bytes = read_small(blobs, &image.root)?;
        let root = ParsedManifest::parse(&root_bytes, None).map_err(|e| e.to_string())?;
        let mut members: Vec<(String, Content)> = Vec::new();
        let manifest = if root.is_index() {
            let child = root
                .manifests
                .iter()
                .find(|d| {
                    d.platform.as_ref().is_some_and(|p| {
                        platform.matches(&p.os, &p.architecture, p.variant.as_deref())
                    })
                })
                .ok_or_else(|| format!("it has no image for {platform}"))?;
            let bytes = read_small(blobs, &child.digest)?;
            let parsed = ParsedManifest::parse(&bytes, None).map_err(|e| e.to_string())?;
            members.push((blob_path(&child.digest), Content::Bytes(bytes)));
            parsed
        } else {
            root
        };
        let config = manifest
            .config
            .clone()
            .ok_or("its manifest has no config: not a container image")?;
        let root_descriptor = Descriptor::new(
            manifest_media_type(&root_bytes)?,
            image.root.clone(),
            root_bytes.len() as u64,
        );
        let index = index_json(&root_descriptor, names);
        members.insert(0, (blob_path(&image.root), Content::Bytes(root_bytes)));
        for blob in std::iter::once(&config).chain(&manifest.layers) {
            let path = blob_path(&blob.digest);
            if !members.iter().any(|(p, _)| *p == path) {
                members.push((
                    path,
                    Content::Blob {
                        digest: blob.digest.clone(),
                        size: blob.size,
                    },
                ));
            }
        }
        let mut all = VecDeque::from([
            (
                "oci-layout".to_string(),
                Content::Bytes(br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec()),
            ),
            ("index.json".to_string(), Content::Bytes(index)),
        ]);
        all.extend(members);
        Ok(Archive {
            blobs,
            members: all,
            mtime: mtime.max(0) as u64,
            current: None,
            ended: false,
            written: 0,
        })
    }

    /// The reader of the next member: header, content, padding.
    fn next_member(&mut self) -> io::Result<Option<Box<dyn Read + Send + 'a>>> {
        let Some((path, content)) = self.members.pop_front() else {
            return Ok(None);
        };
        let (size, body): (u64, Box<dyn Read + Send + 'a>) = match content {
            Content::Bytes(bytes) => (bytes.len() as u64, Box::new(Cursor::new(bytes))),
            Content::Blob { digest, size } => {
                let (reader, _) = self.blobs.open(&digest)?.ok_or_else(|| {
                    io::Error::other(format!(
                        "{}: blob {digest} is missing",
                        self.blobs.describe()
                    ))
                })?;
                let what = format!("blob {digest}");
                (
                    size,
                    Box::new(crate::source::verifying(reader.take(size), digest, what)),
                )
            }
        };
        let mut header = tar::Header::new_ustar();
        header.set_path(&path)?;
        header.set_size(size);
        header.set_mode(0o644);
        header.set_mtime(self.mtime);
        header.set_entry_type(tar::EntryType::Regular);
        header.set_cksum();
        let padding = (512 - size % 512) % 512;
        Ok(Some(Box::new(
            Cursor::new(header.as_bytes().to_vec())
                .chain(body)
                .chain(io::repeat(0).take(padding)),
        )))
    }
}

impl Read for Archive<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if let Some(current) = self.current.as_mut() {
                let n = current.read(buf)?;
                if n > 0 {
                    self.written += n as u64;
                    return Ok(n);
                }
                self.current = None;
            }
            match self.next_member()? {
                Some(member) => self.current = Some(member),
                None if !self.ended => {
                    // Two zero blocks end a tar (POSIX ustar).
                    self.ended = true;
                    self.current = Some(Box::new(io::repeat(0).take(1024)));
                }
                None => return Ok(0),
            }
        }
    }
}

fn blob_path(digest: &Digest) -> String {
    format!("blobs/{}/{}", digest.algorithm(), digest.hex())
}

/// The media type a manifest or index declares of itself.
fn manifest_media_type(bytes: &[u8]) -> Result<String, String> {
    #[derive(serde::Deserialize)]
    struct Head {
        #[serde(rename = "mediaType")]
        media_type: Option<String>,
        manifests: Option<serde_json::Value>,
    }
    let head: Head = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    Ok(head.media_type.unwrap_or_else(|| {
        if head.manifests.is_some() {
            media_type::OCI_INDEX.to_string()
        } else {
            media_type::OCI_MANIFEST.to_string()
        }
    }))
}

/// The layout's `index.json`: the root once per name.
fn index_json(root: &Descriptor, names: &[String]) -> Vec<u8> {
    let manifests: Vec<serde_json::Value> = names
        .iter()
        .map(|name| {
            let tag = name
                .rsplit('/')
                .next()
                .and_then(|last| last.split_once(':'))
                .map_or("latest", |(_, t)| t);
            serde_json::json!({
                "mediaType": root.media_type,
                "digest": root.digest.to_string(),
                "size": root.size,
                "annotations": {
                    "io.containerd.image.name": name,
                    "org.opencontainers.image.ref.name": tag,
                },
            })
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_INDEX,
        "manifests": manifests,
    }))
    .expect("index.json serializes")
}

fn read_small(blobs: &dyn Blobs, digest: &Digest) -> Result<Vec<u8>, String> {
    let (reader, size) = blobs
        .open(digest)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("{}: blob {digest} is missing", blobs.describe()))?;
    if size > MANIFEST_LIMIT {
        return Err(format!(
            "manifest {digest} is {size} bytes, more than {MANIFEST_LIMIT}"
        ));
    }
    let mut bytes = Vec::new();
    crate::source::verifying(reader, digest.clone(), format!("manifest {digest}"))
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_file_names_are_plain() {
        assert_eq!(
            file_name_of("registry.k8s.io/coredns/coredns:v1.11.1"),
            "registry.k8s.io_coredns_coredns_v1.11.1"
        );
    }
}
