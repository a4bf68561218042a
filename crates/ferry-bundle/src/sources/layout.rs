//! OCI image layouts (image-spec "Image Layout"): a directory
//! (`oci:DIR[:REF]`) or a tar of one (`oci-archive:FILE[:REF]`, read in
//! place through [`TarFs`]).
//!
//! `REF` is matched exactly against the `org.opencontainers.image.ref.name`
//! annotation of `index.json`'s descriptors, as skopeo does (skopeo writes
//! `oci:DIR:1.0` as `1.0`, `oci:DIR:app:1.0` as `app:1.0`). Without `REF`
//! the layout must hold exactly one descriptor.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use ferry_oci::{Descriptor, Digest, media_type};

use crate::sources::SourceError;
use crate::sources::tarfs::TarFs;

/// Largest `index.json` read (it lists descriptors, not content).
const INDEX_LIMIT: u64 = 64 * 1024 * 1024;

/// A file of the layout, open, and its size.
pub type OpenedFile = (Box<dyn Read + Send>, u64);

/// Where a layout's files are.
#[derive(Debug)]
enum Files {
    Dir(PathBuf),
    Tar(TarFs),
}

/// An opened layout.
#[derive(Debug)]
pub struct OciLayout {
    files: Files,
    /// For messages: `oci:DIR` or `oci-archive:FILE`.
    pub name: String,
    index: Vec<Descriptor>,
}

#[derive(serde::Deserialize)]
struct Index {
    #[serde(default)]
    manifests: Vec<Descriptor>,
}

impl OciLayout {
    /// Opens the layout directory `dir`.
    pub fn open_dir(dir: &Path) -> Result<OciLayout, SourceError> {
        Self::open(
            Files::Dir(dir.to_path_buf()),
            format!("oci:{}", dir.display()),
        )
    }

    /// Opens the tar `file` holding a layout.
    pub fn open_archive(file: &Path) -> Result<OciLayout, SourceError> {
        let tar = TarFs::open(file).map_err(|source| SourceError::Io {
            path: file.to_path_buf(),
            source,
        })?;
        Self::open(Files::Tar(tar), format!("oci-archive:{}", file.display()))
    }

    fn open(files: Files, name: String) -> Result<OciLayout, SourceError> {
        let mut layout = OciLayout {
            files,
            name,
            index: Vec::new(),
        };
        let invalid = |message: String| SourceError::Invalid {
            source_name: layout.name.clone(),
            message,
        };
        let version = layout
            .read_file("oci-layout", 4096)?
            .ok_or_else(|| invalid("no oci-layout file: not an OCI image layout".into()))?;
        let version: serde_json::Value =
            serde_json::from_slice(&version).map_err(|e| invalid(format!("oci-layout: {e}")))?;
        if version["imageLayoutVersion"] != "1.0.0" {
            return Err(invalid(format!(
                "unsupported imageLayoutVersion {}",
                version["imageLayoutVersion"]
            )));
        }
        let index = layout
            .read_file("index.json", INDEX_LIMIT)?
            .ok_or_else(|| invalid("no index.json".into()))?;
        let index: Index =
            serde_json::from_slice(&index).map_err(|e| invalid(format!("index.json: {e}")))?;
        layout.index = index.manifests;
        Ok(layout)
    }

    fn open_file(&self, name: &str) -> Result<Option<OpenedFile>, SourceError> {
        let io_err = |source| SourceError::Io {
            path: PathBuf::from(format!("{}/{name}", self.name)),
            source,
        };
        match &self.files {
            Files::Dir(dir) => match File::open(dir.join(name)) {
                Ok(f) => {
                    let len = f.metadata().map_err(io_err)?.len();
                    Ok(Some((Box::new(f), len)))
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(io_err(e)),
            },
            Files::Tar(tar) => Ok(tar
                .open_member(name)
                .map_err(io_err)?
                .map(|(r, len)| (Box::new(r) as Box<dyn Read + Send>, len))),
        }
    }

    fn read_file(&self, name: &str, limit: u64) -> Result<Option<Vec<u8>>, SourceError> {
        let Some((reader, len)) = self.open_file(name)? else {
            return Ok(None);
        };
        if len > limit {
            return Err(SourceError::Invalid {
                source_name: self.name.clone(),
                message: format!("{name} is larger than {limit} bytes"),
            });
        }
        let mut data = Vec::with_capacity(len as usize);
        reader
            .take(limit)
            .read_to_end(&mut data)
            .map_err(|source| SourceError::Io {
                path: PathBuf::from(format!("{}/{name}", self.name)),
                source,
            })?;
        Ok(Some(data))
    }

    /// The descriptor `reference` names, or the only one.
    pub fn find(&self, reference: Option<&str>) -> Result<Descriptor, SourceError> {
        let names: Vec<&str> = self
            .index
            .iter()
            .filter_map(|d| d.annotation(media_type::ANNOTATION_REF_NAME))
            .collect();
        let found: Vec<&Descriptor> = match reference {
            Some(wanted) => self
                .index
                .iter()
                .filter(|d| d.annotation(media_type::ANNOTATION_REF_NAME) == Some(wanted))
                .collect(),
            None => self.index.iter().collect(),
        };
        match (found.as_slice(), reference) {
            ([one], _) => Ok((*one).clone()),
            ([], Some(wanted)) => Err(SourceError::NotFound {
                source_name: self.name.clone(),
                message: format!(
                    "no image named {wanted:?} (index.json names: {})",
                    list(&names)
                ),
            }),
            ([], None) => Err(SourceError::NotFound {
                source_name: self.name.clone(),
                message: "index.json lists no image".into(),
            }),
            (_, _) => Err(SourceError::NotFound {
                source_name: self.name.clone(),
                message: format!(
                    "{} images match; name one with {}:REF (index.json names: {})",
                    found.len(),
                    self.name,
                    list(&names)
                ),
            }),
        }
    }

    /// Opens a blob.
    pub fn open_blob(&self, digest: &Digest) -> Result<Option<OpenedFile>, SourceError> {
        self.open_file(&format!("blobs/{}/{}", digest.algorithm(), digest.hex()))
    }

    /// Reads a small blob (a manifest) whole.
    pub fn read_blob(&self, digest: &Digest, limit: u64) -> Result<Option<Vec<u8>>, SourceError> {
        self.read_file(
            &format!("blobs/{}/{}", digest.algorithm(), digest.hex()),
            limit,
        )
    }
}

fn list(names: &[&str]) -> String {
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}
