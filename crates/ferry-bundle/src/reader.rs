//! Opening a bundle: find its bytes ([`Container`]), walk the tar headers
//! once (seeking over the data, so opening a 50 GB bundle reads a few
//! hundred KB), refuse anything that is not a plain file or directory with
//! a safe relative name, and read `index.json` and `ferry/bundle.json`.
//! Blobs are then read in place by offset: [`Bundle::blob_source`] hands
//! the registry client a source that streams straight from the file(s).

use std::collections::BTreeMap;
use std::io;
use std::path::{Component, Path};

use ferry_client::source::OpenFuture;
use ferry_client::{BlobSource, ChunkStream, FileRange};
use ferry_oci::Digest;
use futures_util::StreamExt;

use crate::container::{Container, ContainerError};
use crate::format::{self, BundleManifest};

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error(transparent)]
    Container(#[from] ContainerError),
    #[error("{bundle} is not a readable tar: {source}")]
    Tar { bundle: String, source: io::Error },
    #[error("{bundle} is not a ferry bundle: {why}")]
    NotABundle { bundle: String, why: String },
    #[error("{bundle} is damaged: the tar header after member {after} is unreadable")]
    BadHeader { bundle: String, after: String },
    #[error(
        "{bundle} is incomplete: it ends early, and its parts are all the same size, so the part after them, {part}, is missing"
    )]
    MissingLastPart { bundle: String, part: String },
    #[error("{bundle} holds an unsafe member {name:?}: {why}; refusing to read it")]
    UnsafeMember {
        bundle: String,
        name: String,
        why: &'static str,
    },
    #[error(
        "{bundle} is truncated: member {name} needs {needed} bytes but the bundle has {actual}"
    )]
    Truncated {
        bundle: String,
        name: String,
        needed: u64,
        actual: u64,
    },
    #[error(
        "{bundle} is incomplete (truncated, or a part is missing): {missing} of its {total} blobs are not in it, e.g. {example}"
    )]
    Incomplete {
        bundle: String,
        missing: usize,
        total: usize,
        example: Digest,
    },
    #[error("{bundle}: {name} is invalid: {message}")]
    Invalid {
        bundle: String,
        name: String,
        message: String,
    },
    #[error("{bundle}: index.json does not match the digest ferry/bundle.json records")]
    IndexMismatch { bundle: String },
}

/// Where a member's data is in the bundle's logical stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Member {
    pub offset: u64,
    pub size: u64,
}

/// An opened bundle.
pub struct Bundle {
    container: Container,
    members: BTreeMap<String, Member>,
    pub manifest: BundleManifest,
    /// The exact bytes of `ferry/bundle.json` (what a signature covers).
    pub manifest_bytes: Vec<u8>,
    /// The exact bytes of `index.json`.
    pub index_bytes: Vec<u8>,
    pub signature: Option<Vec<u8>>,
}

impl Bundle {
    pub fn open(path: &Path) -> Result<Bundle, BundleError> {
        let container = Container::open(path)?;
        let next_part = container.next_part_if_all_full();
        Self::from_container(container).map_err(|e| match (e, next_part) {
            // A split bundle cut short where a part ends: say which part.
            (
                BundleError::Truncated { bundle, .. } | BundleError::Incomplete { bundle, .. },
                Some(part),
            ) => BundleError::MissingLastPart {
                bundle,
                part: part.display().to_string(),
            },
            (other, _) => other,
        })
    }

    fn from_container(container: Container) -> Result<Bundle, BundleError> {
        let name = container.description.clone();
        if container.is_empty() {
            return Err(BundleError::NotABundle {
                bundle: name,
                why: "the file is empty".into(),
            });
        }
        let members = scan(&container)?;
        let read = |member: &'static str| -> Result<Vec<u8>, BundleError> {
            let m = members.get(member).ok_or_else(|| BundleError::NotABundle {
                bundle: name.clone(),
                why: format!("it is a tar file, but it has no {member}"),
            })?;
            container
                .read_range(m.offset, m.size)
                .map_err(|source| BundleError::Tar {
                    bundle: name.clone(),
                    source,
                })
        };
        let manifest_bytes = read(format::MANIFEST)?;
        let index_bytes = read(format::INDEX)?;
        let manifest: BundleManifest =
            serde_json::from_slice(&manifest_bytes).map_err(|e| BundleError::Invalid {
                bundle: name.clone(),
                name: format::MANIFEST.into(),
                message: e.to_string(),
            })?;
        if manifest.schema_version != format::SCHEMA_VERSION {
            return Err(BundleError::Invalid {
                bundle: name,
                name: format::MANIFEST.into(),
                message: format!(
                    "schema version {} is not {} (made by a newer ferry?)",
                    manifest.schema_version,
                    format::SCHEMA_VERSION
                ),
            });
        }
        let index_digest = Digest::of(manifest.index.digest.algorithm(), &index_bytes);
        if index_digest != manifest.index.digest || index_bytes.len() as u64 != manifest.index.size
        {
            return Err(BundleError::IndexMismatch { bundle: name });
        }
        let missing: Vec<&Digest> = manifest
            .blobs
            .iter()
            .filter(|b| !members.contains_key(&format::blob_member(&b.digest)))
            .map(|b| &b.digest)
            .collect();
        if let Some(example) = missing.first() {
            return Err(BundleError::Incomplete {
                bundle: name,
                missing: missing.len(),
                total: manifest.blobs.len(),
                example: (*example).clone(),
            });
        }
        let signature = match members.get(format::SIGNATURE) {
            Some(_) => Some(read(format::SIGNATURE)?),
            None => None,
        };
        Ok(Bundle {
            container,
            members,
            manifest,
            manifest_bytes,
            index_bytes,
            signature,
        })
    }

    pub fn container(&self) -> &Container {
        &self.container
    }

    pub fn name(&self) -> &str {
        &self.container.description
    }

    /// Where a blob's bytes are, if the bundle holds it.
    pub fn blob(&self, digest: &Digest) -> Option<Member> {
        self.members.get(&format::blob_member(digest)).copied()
    }

    /// Reads a whole blob (for manifests and configs).
    pub fn read_blob(&self, digest: &Digest) -> io::Result<Option<Vec<u8>>> {
        match self.blob(digest) {
            Some(m) => self.container.read_range(m.offset, m.size).map(Some),
            None => Ok(None),
        }
    }

    /// A source streaming the blob in place, for pushing.
    pub fn blob_source(&self, digest: &Digest) -> Option<BundleBlob> {
        let member = self.blob(digest)?;
        let pieces = self
            .container
            .locate(member.offset, member.size)
            .into_iter()
            .map(|s| FileRange::new(s.path, s.file_offset, s.len))
            .collect();
        Some(BundleBlob {
            pieces,
            len: member.size,
            name: format!("{} in {}", digest.short(), self.name()),
        })
    }
}

/// Walks the tar headers, refusing unsafe members.
fn scan(container: &Container) -> Result<BTreeMap<String, Member>, BundleError> {
    let bundle = container.description.clone();
    let tar_err = |source: io::Error| BundleError::Tar {
        bundle: bundle.clone(),
        source,
    };
    let mut archive = tar::Archive::new(container.reader());
    let mut members = BTreeMap::new();
    let mut last: Option<String> = None;
    for entry in archive.entries_with_seek().map_err(tar_err)? {
        // The tar crate says a header is not one with an `Other` error whose
        // text quotes the header's raw bytes: not for the user's screen.
        let entry = entry.map_err(|source| match (source.kind(), &last) {
            (io::ErrorKind::Other, None) => BundleError::NotABundle {
                bundle: bundle.clone(),
                why: "it is not a tar file (a bundle is one; see docs/bundle.md)".into(),
            },
            (io::ErrorKind::Other, Some(after)) => BundleError::BadHeader {
                bundle: bundle.clone(),
                after: after.clone(),
            },
            _ => tar_err(source),
        })?;
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        last = Some(name.clone());
        let unsafe_member = |why| BundleError::UnsafeMember {
            bundle: bundle.clone(),
            name: name.clone(),
            why,
        };
        let path = Path::new(&name);
        if path.is_absolute() {
            return Err(unsafe_member("absolute path"));
        }
        if path
            .components()
            .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
        {
            return Err(unsafe_member("path escapes the bundle"));
        }
        let kind = entry.header().entry_type();
        if kind.is_dir() {
            continue;
        }
        if !kind.is_file() {
            return Err(unsafe_member(
                "not a regular file (links and devices are not allowed)",
            ));
        }
        let member = Member {
            offset: entry.raw_file_position(),
            size: entry.size(),
        };
        if member.offset + member.size > container.len() {
            return Err(BundleError::Truncated {
                bundle: bundle.clone(),
                name,
                needed: member.offset + member.size,
                actual: container.len(),
            });
        }
        let normalized = name.trim_start_matches("./").to_string();
        if members.insert(normalized, member).is_some() {
            return Err(unsafe_member("appears twice"));
        }
    }
    Ok(members)
}

/// A blob inside a bundle, possibly spanning split parts.
#[derive(Debug, Clone)]
pub struct BundleBlob {
    pieces: Vec<FileRange>,
    len: u64,
    name: String,
}

impl BlobSource for BundleBlob {
    fn len(&self) -> u64 {
        self.len
    }

    fn open(&self, offset: u64, len: u64) -> OpenFuture<'_> {
        Box::pin(async move {
            let end = (offset + len).min(self.len);
            let mut streams: Vec<ChunkStream> = Vec::new();
            let mut piece_start = 0;
            for piece in &self.pieces {
                let piece_end = piece_start + piece.len();
                if offset < piece_end && piece_start < end {
                    let from = offset.max(piece_start) - piece_start;
                    let to = end.min(piece_end) - piece_start;
                    streams.push(piece.open(from, to - from).await?);
                }
                piece_start = piece_end;
            }
            Ok(Box::pin(futures_util::stream::iter(streams).flatten()) as ChunkStream)
        })
    }

    fn describe(&self) -> String {
        self.name.clone()
    }
}

impl crate::graph::ManifestSource for Bundle {
    fn manifest_bytes(&self, digest: &Digest) -> io::Result<Option<Vec<u8>>> {
        self.read_blob(digest)
    }
}
