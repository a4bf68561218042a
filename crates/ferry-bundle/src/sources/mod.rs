//! Where a bundle's content comes from, and how it gets into the cache.
//!
//! - [`ImageSource`]: what an image or artifact `ref` names: a registry
//!   reference, an OCI layout directory, an `oci-archive` tar or a
//!   `docker-archive` tar.
//! - [`Origin`]: where the manifests and blobs of one entry are read from
//!   (a registry repository through ferry-client, a layout, or the cache
//!   itself for content ferry built: converted docker archives, charts,
//!   files). Every byte goes into the [`ContentCache`] verified.
//! - [`resolve`]: walks an entry's graph from its root (index -> manifests
//!   -> config and layers), applies the platform filter, and lists the
//!   blobs still to fetch.
//! - [`referrers`]: the signatures, SBOMs and attestations of an image.
//! - [`docker_archive`], [`chart`], [`artifact`], [`http`]: the sources
//!   that need converting or building into OCI form.

pub mod artifact;
pub mod chart;
pub mod docker_archive;
pub mod http;
pub mod layout;
pub mod referrers;
pub mod resolve;
pub mod tarfs;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ferry_client::{ClientError, Repository};
use ferry_oci::progress::Progress;
use ferry_oci::{Descriptor, Digest, ParsedManifest, Reference};

use crate::cache::{CacheError, ContentCache};
use layout::OciLayout;

/// Largest manifest read (Distribution's limit).
pub const MANIFEST_LIMIT: u64 = 4 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{reference:?} is not a valid source: {reason}")]
    InvalidReference { reference: String, reason: String },
    #[error("{what}: {source}")]
    Registry {
        what: String,
        #[source]
        source: ClientError,
    },
    #[error("{url}: {message}")]
    Http { url: String, message: String },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{source_name}: {message}")]
    Invalid {
        source_name: String,
        message: String,
    },
    #[error("{source_name}: {message}")]
    NotFound {
        source_name: String,
        message: String,
    },
    #[error("{source_name}: {message}")]
    Platform {
        source_name: String,
        message: String,
    },
    #[error("{what}: expected sha256 {expected}, got {actual}")]
    Checksum {
        what: String,
        expected: Digest,
        actual: Digest,
    },
    #[error(transparent)]
    Cache(#[from] CacheError),
}

/// What an image or artifact `ref` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageSource {
    Registry(Reference),
    /// `oci:DIR[:REF]`
    Layout {
        dir: PathBuf,
        name: Option<String>,
    },
    /// `oci-archive:FILE[:REF]`
    OciArchive {
        file: PathBuf,
        name: Option<String>,
    },
    /// `docker-archive:FILE[:REF]`
    DockerArchive {
        file: PathBuf,
        name: Option<String>,
    },
}

impl ImageSource {
    /// Parses `source`; relative paths are taken from `base`. As skopeo
    /// does, the path ends at the first `:` after the transport.
    pub fn parse(source: &str, base: &Path) -> Result<ImageSource, SourceError> {
        let local = |rest: &str| -> Result<(PathBuf, Option<String>), SourceError> {
            let (path, name) = match rest.split_once(':') {
                Some((p, n)) => (p, Some(n.to_string()).filter(|n| !n.is_empty())),
                None => (rest, None),
            };
            if path.is_empty() {
                return Err(SourceError::InvalidReference {
                    reference: source.to_string(),
                    reason: "no path after the transport".into(),
                });
            }
            Ok((base.join(path), name))
        };
        if let Some(rest) = source.strip_prefix("oci:") {
            let (dir, name) = local(rest)?;
            return Ok(ImageSource::Layout { dir, name });
        }
        if let Some(rest) = source.strip_prefix("oci-archive:") {
            let (file, name) = local(rest)?;
            return Ok(ImageSource::OciArchive { file, name });
        }
        if let Some(rest) = source.strip_prefix("docker-archive:") {
            let (file, name) = local(rest)?;
            return Ok(ImageSource::DockerArchive { file, name });
        }
        let trimmed = source.strip_prefix("docker://").unwrap_or(source);
        trimmed
            .parse::<Reference>()
            .map(ImageSource::Registry)
            .map_err(|e| SourceError::InvalidReference {
                reference: source.to_string(),
                reason: e.to_string(),
            })
    }
}

/// A manifest: its descriptor (media type from the body) and exact bytes.
#[derive(Debug, Clone)]
pub struct RootManifest {
    pub descriptor: Descriptor,
    pub bytes: Vec<u8>,
}

impl RootManifest {
    /// The descriptor of `bytes` as addressed by `digest`; the media type
    /// comes from the body, so that a cached and a fetched copy give the
    /// same descriptor.
    pub fn new(digest: Digest, bytes: Vec<u8>, what: &str) -> Result<RootManifest, SourceError> {
        let parsed = ParsedManifest::parse(&bytes, None).map_err(|e| SourceError::Invalid {
            source_name: what.to_string(),
            message: format!("manifest {digest} is invalid: {e}"),
        })?;
        let mut descriptor = Descriptor::new(parsed.media_type.clone(), digest, bytes.len() as u64);
        descriptor.artifact_type = parsed.artifact_type.clone();
        Ok(RootManifest { descriptor, bytes })
    }
}

/// Where one entry's content is read from.
#[derive(Clone)]
pub enum Origin {
    Registry(Repository),
    Layout(Arc<OciLayout>),
    /// Everything is in the cache already (content ferry built).
    Cache,
}

impl Origin {
    pub fn describe(&self) -> String {
        match self {
            Origin::Registry(r) => format!("{}/{}", r.registry(), r.name()),
            Origin::Layout(l) => l.name.clone(),
            Origin::Cache => "the content cache".into(),
        }
    }

    /// A manifest by digest: from the cache if there, else from the
    /// origin, verified and stored in the cache.
    pub async fn manifest(
        &self,
        descriptor: &Descriptor,
        cache: &ContentCache,
    ) -> Result<Vec<u8>, SourceError> {
        let digest = &descriptor.digest;
        if let Some(bytes) = cache.read(digest, MANIFEST_LIMIT)? {
            return Ok(bytes);
        }
        let bytes = match self {
            Origin::Registry(repo) => repo
                .get_manifest(&digest.to_string())
                .await
                .map_err(|source| SourceError::Registry {
                    what: format!("manifest {digest} of {}", self.describe()),
                    source,
                })?
                .bytes
                .to_vec(),
            Origin::Layout(layout) => {
                let layout = layout.clone();
                let d = digest.clone();
                tokio::task::spawn_blocking(move || layout.read_blob(&d, MANIFEST_LIMIT))
                    .await
                    .expect("layout read does not panic")?
                    .ok_or_else(|| self.missing(digest))?
            }
            Origin::Cache => return Err(self.missing(digest)),
        };
        let actual = Digest::of(digest.algorithm(), &bytes);
        if &actual != digest {
            return Err(SourceError::Checksum {
                what: format!("manifest {digest} of {}", self.describe()),
                expected: digest.clone(),
                actual,
            });
        }
        cache.put(digest, Some(bytes.len() as u64), &mut &bytes[..])?;
        Ok(bytes)
    }

    fn missing(&self, digest: &Digest) -> SourceError {
        SourceError::NotFound {
            source_name: self.describe(),
            message: format!("blob {digest} is missing"),
        }
    }

    /// Copies a blob into the cache, verified, reporting progress under
    /// its digest.
    pub async fn fetch_blob(
        &self,
        descriptor: &Descriptor,
        cache: &ContentCache,
        progress: &dyn Progress,
    ) -> Result<(), SourceError> {
        match self {
            Origin::Registry(repo) => loop {
                let mut download = cache
                    .download(&descriptor.digest, Some(descriptor.size))
                    .await?;
                let resumed_at = download.resumed.bytes();
                let fetched = repo
                    .fetch_blob_after(
                        descriptor,
                        download.resumed.clone(),
                        &mut download.writer,
                        progress,
                    )
                    .await;
                let source = match fetched {
                    Ok(_) => {
                        download.finish().await?;
                        return Ok(());
                    }
                    Err(source) => source,
                };
                let wrong_content = matches!(
                    source,
                    ClientError::DigestMismatch { .. } | ClientError::SizeMismatch { .. }
                );
                let stored = if wrong_content {
                    download.discard().await
                } else {
                    download.keep().await
                };
                if wrong_content && resumed_at > 0 {
                    // The bytes kept from an earlier run may be what is
                    // wrong (a crash can leave a damaged tail): once more
                    // from the first byte.
                    tracing::warn!(
                        "{}: resumed download did not verify; downloading it again",
                        descriptor.digest
                    );
                    continue;
                }
                // A store failure closes the pipe and shows up here as a
                // write error; report the store's reason.
                return match (stored, &source) {
                    (Err(e), ClientError::Io { .. }) => Err(e.into()),
                    _ => Err(SourceError::Registry {
                        what: format!("blob {} of {}", descriptor.digest, self.describe()),
                        source,
                    }),
                };
            },
            Origin::Layout(layout) => {
                let layout = layout.clone();
                let cache = cache.clone();
                let digest = descriptor.digest.clone();
                let size = descriptor.size;
                let missing = self.missing(&digest);
                blocking(progress, move |progress| {
                    let id = digest.to_string();
                    progress.start(&id, &digest.short(), Some(size));
                    let result = (|| {
                        let (reader, _) = layout.open_blob(&digest)?.ok_or(missing)?;
                        let mut reader = ProgressReader {
                            inner: reader,
                            progress,
                            id: id.clone(),
                        };
                        cache.put(&digest, Some(size), &mut reader)?;
                        Ok(())
                    })();
                    progress.finish(&id, if result.is_ok() { "copied" } else { "failed" });
                    result
                })
                .await
            }
            Origin::Cache => match cache.size(&descriptor.digest)? {
                Some(_) => Ok(()),
                None => Err(self.missing(&descriptor.digest)),
            },
        }
    }
}

/// Runs blocking `work` on a blocking thread, handing it a [`Progress`]
/// whose events reach `progress` (which need not be `'static` or live on
/// that thread) from this task.
pub(crate) async fn blocking<T: Send + 'static>(
    progress: &dyn Progress,
    work: impl FnOnce(&dyn Progress) -> Result<T, SourceError> + Send + 'static,
) -> Result<T, SourceError> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Event>();
    let task = tokio::task::spawn_blocking(move || work(&Forward(tx)));
    while let Some(event) = rx.recv().await {
        match event {
            Event::Start(id, label, total) => progress.start(&id, &label, total),
            Event::Advance(id, n) => progress.advance(&id, n),
            Event::Finish(id, outcome) => progress.finish(&id, &outcome),
            Event::Message(text) => progress.message(&text),
        }
    }
    task.await.expect("blocking source work does not panic")
}

enum Event {
    Start(String, String, Option<u64>),
    Advance(String, u64),
    Finish(String, String),
    Message(String),
}

/// The [`Progress`] a blocking thread reports to.
struct Forward(tokio::sync::mpsc::UnboundedSender<Event>);

impl Progress for Forward {
    fn start(&self, id: &str, label: &str, total: Option<u64>) {
        let _ = self.0.send(Event::Start(id.into(), label.into(), total));
    }
    fn advance(&self, id: &str, bytes: u64) {
        let _ = self.0.send(Event::Advance(id.into(), bytes));
    }
    fn finish(&self, id: &str, outcome: &str) {
        let _ = self.0.send(Event::Finish(id.into(), outcome.into()));
    }
    fn message(&self, text: &str) {
        let _ = self.0.send(Event::Message(text.into()));
    }
}

/// A reader that reports what it reads as progress of task `id`.
pub(crate) struct ProgressReader<'a, R> {
    pub inner: R,
    pub progress: &'a dyn Progress,
    pub id: String,
}

impl<R: std::io::Read> std::io::Read for ProgressReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress.advance(&self.id, n as u64);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_strings() {
        let base = Path::new("/spec");
        assert_eq!(
            ImageSource::parse("nginx:1.27", base).unwrap(),
            ImageSource::Registry("docker.io/library/nginx:1.27".parse().unwrap())
        );
        assert_eq!(
            ImageSource::parse("oci:layouts/app:1.0", base).unwrap(),
            ImageSource::Layout {
                dir: "/spec/layouts/app".into(),
                name: Some("1.0".into())
            }
        );
        assert_eq!(
            ImageSource::parse("oci-archive:/abs/a.tar", base).unwrap(),
            ImageSource::OciArchive {
                file: "/abs/a.tar".into(),
                name: None
            }
        );
        assert_eq!(
            ImageSource::parse("docker-archive:s.tar:app/x:2", base).unwrap(),
            ImageSource::DockerArchive {
                file: "/spec/s.tar".into(),
                name: Some("app/x:2".into())
            }
        );
        assert!(ImageSource::parse("oci:", base).is_err());
        assert!(ImageSource::parse("Not A Ref", base).is_err());
    }
}
