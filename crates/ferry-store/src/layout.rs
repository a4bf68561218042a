//! Where everything lives under the store's root.
//!
//! ```text
//! blobs/<alg>/<hex[0..2]>/<hex>        blob data, only ever verified content
//! uploads/<id>/data                    an upload in progress
//! uploads/<id>/repository              the repository it belongs to
//! repositories/<name>/_ferry/          one repository (name may have many '/')
//!     tags/<tag>                       the tagged manifest's digest
//!     manifests/<alg>/<hex>            link: the manifest's media type
//!     blobs/<alg>/<hex>                link: empty; the blob is in this repository
//!     referrers/<alg>-<hex>/<alg>-<hex>  descriptor JSON of a referrer of the subject
//! tmp/                                 temporary files, renamed into place
//! quarantine/<alg>-<hex>.<random>      corrupt blob data taken out of service
//! ```
//!
//! Repository names and tags are validated before they reach a path (see
//! `ferry_oci::name`): components start with `[a-z0-9]` and tags with
//! `[A-Za-z0-9_]`, so neither can be `..` nor collide with `_ferry`.

use std::path::{Path, PathBuf};

use ferry_oci::{Algorithm, Digest};

/// The directory inside a repository's path that holds its metadata.
pub const REPO_MARKER: &str = "_ferry";

#[derive(Debug, Clone)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    pub fn new(root: PathBuf) -> Self {
        Layout { root }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn tmp(&self) -> PathBuf {
        self.root.join("tmp")
    }

    pub fn blobs(&self) -> PathBuf {
        self.root.join("blobs")
    }

    pub fn blob(&self, digest: &Digest) -> PathBuf {
        let hex = digest.hex();
        self.blobs()
            .join(digest.algorithm().as_str())
            .join(&hex[..2])
            .join(hex)
    }

    pub fn quarantine(&self) -> PathBuf {
        self.root.join("quarantine")
    }

    pub fn uploads(&self) -> PathBuf {
        self.root.join("uploads")
    }

    pub fn upload(&self, id: &str) -> PathBuf {
        self.uploads().join(id)
    }

    pub fn repositories(&self) -> PathBuf {
        self.root.join("repositories")
    }

    pub fn repository(&self, name: &str) -> PathBuf {
        let mut path = self.repositories();
        for component in name.split('/') {
            path.push(component);
        }
        path.join(REPO_MARKER)
    }

    pub fn tags(&self, repo: &str) -> PathBuf {
        self.repository(repo).join("tags")
    }

    pub fn tag(&self, repo: &str, tag: &str) -> PathBuf {
        self.tags(repo).join(tag)
    }

    pub fn manifest_links(&self, repo: &str) -> PathBuf {
        self.repository(repo).join("manifests")
    }

    pub fn manifest_link(&self, repo: &str, digest: &Digest) -> PathBuf {
        link_path(&self.manifest_links(repo), digest)
    }

    pub fn blob_links(&self, repo: &str) -> PathBuf {
        self.repository(repo).join("blobs")
    }

    pub fn blob_link(&self, repo: &str, digest: &Digest) -> PathBuf {
        link_path(&self.blob_links(repo), digest)
    }

    pub fn referrers(&self, repo: &str, subject: &Digest) -> PathBuf {
        self.repository(repo)
            .join("referrers")
            .join(flat_name(subject))
    }

    pub fn referrer(&self, repo: &str, subject: &Digest, referrer: &Digest) -> PathBuf {
        self.referrers(repo, subject).join(flat_name(referrer))
    }
}

fn link_path(dir: &Path, digest: &Digest) -> PathBuf {
    dir.join(digest.algorithm().as_str()).join(digest.hex())
}

/// `sha256-<hex>`: a digest as one file name.
pub fn flat_name(digest: &Digest) -> String {
    format!("{}-{}", digest.algorithm(), digest.hex())
}

/// Parses a [`flat_name`] back.
pub fn parse_flat_name(name: &str) -> Option<Digest> {
    let (alg, hex) = name.split_once('-')?;
    Digest::new(alg.parse().ok()?, hex).ok()
}

/// Lists the digests linked under a `manifests/` or `blobs/` link directory.
pub fn list_links(dir: &Path) -> std::io::Result<Vec<Digest>> {
    let mut out = Vec::new();
    for alg in Algorithm::ALL {
        for hex in crate::fsutil::list_names(&dir.join(alg.as_str()))? {
            if let Ok(d) = Digest::new(alg, &hex) {
                out.push(d);
            }
        }
    }
    Ok(out)
}
