//! Manifests, tags and the referrers index.
//!
//! A manifest's bytes are stored as a blob (content-addressed, exactly as
//! pushed); the repository links it under `manifests/`, with its media
//! type as the link's content, so a GET needs no parsing. A tag is a file
//! holding a digest. A manifest with a `subject` adds its descriptor to the
//! subject's referrers directory (distribution-spec 1.1 "Listing
//! Referrers"), whether or not the subject exists yet.

use std::fs;

use ferry_oci::{Algorithm, Descriptor, Digest, ParsedManifest};

use crate::error::{IoContext, Result, StoreError};
use crate::layout::{self, list_links};
use crate::{Store, check_repository, check_tag, fsutil};

/// How a manifest is addressed in a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManifestRef {
    Tag(String),
    Digest(Digest),
}

impl ManifestRef {
    /// Parses the `<reference>` path segment: a digest if it has a ':'.
    pub fn parse(reference: &str) -> Result<ManifestRef> {
        if reference.contains(':') {
            reference
                .parse()
                .map(ManifestRef::Digest)
                .map_err(|_| StoreError::ManifestUnknown(reference.to_string()))
        } else {
            check_tag(reference)?;
            Ok(ManifestRef::Tag(reference.to_string()))
        }
    }
}

/// A manifest as stored.
#[derive(Debug, Clone)]
pub struct StoredManifest {
    pub digest: Digest,
    pub media_type: String,
    pub body: Vec<u8>,
}

/// What a successful manifest PUT did.
#[derive(Debug, Clone)]
pub struct PutManifest {
    pub digest: Digest,
    /// The subject, if the manifest has one (the registry echoes it in
    /// the `OCI-Subject` header).
    pub subject: Option<Digest>,
}

impl Store {
    /// Stores a manifest under `reference` (a tag or its own digest).
    /// Every blob it references must already be in the repository, and
    /// every child of an index must be a manifest in the repository.
    pub fn put_manifest(
        &self,
        repo: &str,
        reference: &ManifestRef,
        body: &[u8],
        content_type: Option<&str>,
    ) -> Result<PutManifest> {
        check_repository(repo)?;
        let limit = self.limits().max_manifest_size;
        if body.len() as u64 > limit {
            return Err(StoreError::ManifestTooLarge {
                size: body.len() as u64,
                limit,
            });
        }
        let digest = match reference {
            ManifestRef::Digest(expected) => {
                let actual = Digest::of(expected.algorithm(), body);
                if &actual != expected {
                    return Err(StoreError::DigestMismatch {
                        expected: expected.clone(),
                        actual,
                    });
                }
                actual
            }
            ManifestRef::Tag(_) => Digest::of(Algorithm::Sha256, body),
        };
        let parsed = ParsedManifest::parse(body, content_type)?;
        let _gc_barrier = self.inner.gc_barrier.read().expect("gc barrier");
        for blob in parsed.blob_references() {
            if self.repo_blob_size(repo, &blob.digest)?.is_none() {
                return Err(StoreError::ManifestBlobUnknown(blob.digest.clone()));
            }
        }
        for child in &parsed.manifests {
            let linked = self.layout().manifest_link(repo, &child.digest).exists();
            if !linked || self.blob_size(&child.digest)?.is_none() {
                return Err(StoreError::ManifestBlobUnknown(child.digest.clone()));
            }
        }

        self.write_manifest_blob(&digest, body)?;
        let link = self.layout().manifest_link(repo, &digest);
        fsutil::write_atomic(&self.layout().tmp(), &link, parsed.media_type.as_bytes())
            .at(&link)?;
        if let ManifestRef::Tag(tag) = reference {
            let tag_path = self.layout().tag(repo, tag);
            fsutil::write_atomic(
                &self.layout().tmp(),
                &tag_path,
                digest.to_string().as_bytes(),
            )
            .at(&tag_path)?;
        }
        let subject = parsed.subject.as_ref().map(|s| s.digest.clone());
        if let Some(subject) = &subject {
            let descriptor = parsed.referrer_descriptor(digest.clone(), body.len() as u64);
            let path = self.layout().referrer(repo, subject, &digest);
            let json = serde_json::to_vec(&descriptor).expect("descriptor serializes");
            fsutil::write_atomic(&self.layout().tmp(), &path, &json).at(&path)?;
        }
        Ok(PutManifest { digest, subject })
    }

    fn write_manifest_blob(&self, digest: &Digest, body: &[u8]) -> Result<()> {
        self.pin(digest);
        let path = self.layout().blob(digest);
        if path.exists() {
            return Ok(());
        }
        fsutil::write_atomic(&self.layout().tmp(), &path, body).at(&path)
    }

    /// Resolves a tag or digest to the manifest's digest, if `repo` has it.
    pub fn resolve_manifest(&self, repo: &str, reference: &ManifestRef) -> Result<Option<Digest>> {
        check_repository(repo)?;
        let digest = match reference {
            ManifestRef::Digest(d) => d.clone(),
            ManifestRef::Tag(tag) => {
                let path = self.layout().tag(repo, tag);
                let Some(raw) = fsutil::read_optional(&path).at(&path)? else {
                    return Ok(None);
                };
                match std::str::from_utf8(&raw)
                    .ok()
                    .and_then(|s| s.trim().parse().ok())
                {
                    Some(d) => d,
                    None => {
                        tracing::error!(path = %path.display(), "tag file holds no digest");
                        return Ok(None);
                    }
                }
            }
        };
        if self.layout().manifest_link(repo, &digest).exists() {
            Ok(Some(digest))
        } else {
            Ok(None)
        }
    }

    /// Reads a manifest by tag or digest.
    pub fn get_manifest(
        &self,
        repo: &str,
        reference: &ManifestRef,
    ) -> Result<Option<StoredManifest>> {
        let Some(digest) = self.resolve_manifest(repo, reference)? else {
            return Ok(None);
        };
        let link = self.layout().manifest_link(repo, &digest);
        let Some(media_type) = fsutil::read_optional(&link).at(&link)? else {
            return Ok(None);
        };
        self.pin(&digest);
        let path = self.layout().blob(&digest);
        let Some(body) = fsutil::read_optional(&path).at(&path)? else {
            return Ok(None);
        };
        Ok(Some(StoredManifest {
            digest,
            media_type: String::from_utf8_lossy(&media_type).into_owned(),
            body,
        }))
    }

    /// Deletes a manifest by digest: its link, every tag that points at
    /// it, and its entry in its subject's referrers. Returns whether it
    /// existed.
    pub fn delete_manifest(&self, repo: &str, digest: &Digest) -> Result<bool> {
        let Some(stored) = self.get_manifest(repo, &ManifestRef::Digest(digest.clone()))? else {
            return Ok(false);
        };
        for tag in self.tags(repo)?.unwrap_or_default() {
            if self.resolve_tag_raw(repo, &tag)? == Some(digest.clone()) {
                let path = self.layout().tag(repo, &tag);
                fsutil::remove(&path).at(&path)?;
            }
        }
        if let Ok(parsed) = ParsedManifest::parse(&stored.body, Some(&stored.media_type))
            && let Some(subject) = parsed.subject
        {
            let path = self.layout().referrer(repo, &subject.digest, digest);
            fsutil::remove(&path).at(&path)?;
        }
        let link = self.layout().manifest_link(repo, digest);
        fsutil::remove(&link).at(&link)
    }

    /// Deletes a tag (not the manifest). Returns whether it existed.
    pub fn delete_tag(&self, repo: &str, tag: &str) -> Result<bool> {
        check_repository(repo)?;
        check_tag(tag)?;
        let path = self.layout().tag(repo, tag);
        fsutil::remove(&path).at(&path)
    }

    fn resolve_tag_raw(&self, repo: &str, tag: &str) -> Result<Option<Digest>> {
        let path = self.layout().tag(repo, tag);
        let raw = fsutil::read_optional(&path).at(&path)?;
        Ok(raw.and_then(|r| String::from_utf8(r).ok()?.trim().parse().ok()))
    }

    /// Manifests that name `subject` as their subject, optionally only
    /// those of one artifact type.
    pub fn referrers(
        &self,
        repo: &str,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Descriptor>> {
        check_repository(repo)?;
        let dir = self.layout().referrers(repo, subject);
        let mut out = Vec::new();
        let mut names = fsutil::list_names(&dir).at(&dir)?;
        names.sort();
        for name in names {
            let Some(digest) = layout::parse_flat_name(&name) else {
                continue;
            };
            if !self.layout().manifest_link(repo, &digest).exists() {
                continue;
            }
            let path = dir.join(&name);
            let Some(raw) = fsutil::read_optional(&path).at(&path)? else {
                continue;
            };
            let Ok(descriptor) = serde_json::from_slice::<Descriptor>(&raw) else {
                tracing::error!(path = %path.display(), "unreadable referrer record");
                continue;
            };
            if artifact_type.is_none_or(|t| descriptor.artifact_type.as_deref() == Some(t)) {
                out.push(descriptor);
            }
        }
        Ok(out)
    }

    /// Digests of every manifest `repo` links.
    pub fn manifest_digests(&self, repo: &str) -> Result<Vec<Digest>> {
        check_repository(repo)?;
        let dir = self.layout().manifest_links(repo);
        list_links(&dir).at(&dir)
    }

    /// Digests of every blob `repo` links (not counting manifests).
    pub fn blob_digests(&self, repo: &str) -> Result<Vec<Digest>> {
        check_repository(repo)?;
        let dir = self.layout().blob_links(repo);
        list_links(&dir).at(&dir)
    }

    /// Removes everything `repo` holds (links, tags, referrers). Blob data
    /// stays for GC.
    pub fn delete_repository(&self, repo: &str) -> Result<bool> {
        check_repository(repo)?;
        let dir = self.layout().repository(repo);
        if !dir.exists() {
            return Ok(false);
        }
        // Rename first so the repository disappears atomically.
        let doomed = fsutil::temp_path(&self.layout().tmp());
        fs::rename(&dir, &doomed).at(&dir)?;
        fs::remove_dir_all(&doomed).at(&doomed)?;
        Ok(true)
    }
}
