//! Verifying the store: every blob's content against its name, and every
//! repository's manifests, tags and referrers against the blobs.

use std::fs;
use std::path::PathBuf;
use std::sync::Mutex;

use ferry_oci::{Algorithm, Digest, ParsedManifest};

use crate::error::{IoContext, Result};
use crate::layout::{self, list_links};
use crate::manifests::ManifestRef;
use crate::{Store, fsutil};

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct FsckReport {
    pub blobs_checked: usize,
    pub bytes_checked: u64,
    pub manifests_checked: usize,
    /// Blobs whose content does not hash to their name.
    pub corrupt_blobs: Vec<CorruptBlob>,
    /// Problems in repository metadata: a link, tag or reference to
    /// something that is not there.
    pub problems: Vec<Problem>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct CorruptBlob {
    pub digest: Digest,
    pub actual: String,
    /// Where a repair moved it (see [`crate::quarantine`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quarantined: Option<String>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Problem {
    pub repository: String,
    pub what: String,
}

impl FsckReport {
    pub fn is_clean(&self) -> bool {
        self.corrupt_blobs.is_empty() && self.problems.is_empty()
    }
}

impl Store {
    /// Checks everything. `on_blob` is called after each blob is hashed
    /// (with its size), for progress.
    pub fn fsck(&self, on_blob: &(dyn Fn(u64) + Sync)) -> Result<FsckReport> {
        self.check(false, on_blob)
    }

    /// Checks everything like [`Store::fsck`], and quarantines every
    /// corrupt blob (see [`crate::quarantine`]) before the repositories
    /// are checked, so the report then lists what needs pushing again.
    pub fn fsck_and_repair(&self, on_blob: &(dyn Fn(u64) + Sync)) -> Result<FsckReport> {
        self.check(true, on_blob)
    }

    fn check(&self, repair: bool, on_blob: &(dyn Fn(u64) + Sync)) -> Result<FsckReport> {
        let mut report = FsckReport::default();
        self.check_blobs(on_blob, &mut report)?;
        if repair {
            for corrupt in &mut report.corrupt_blobs {
                corrupt.quarantined = self
                    .quarantine_blob(&corrupt.digest)?
                    .map(|p| p.display().to_string());
            }
        }
        for repo in self.repositories()? {
            self.check_repository(&repo, &mut report)?;
        }
        Ok(report)
    }

    fn check_blobs(&self, on_blob: &(dyn Fn(u64) + Sync), report: &mut FsckReport) -> Result<()> {
        let mut work: Vec<(Digest, PathBuf)> = Vec::new();
        for algorithm in Algorithm::ALL {
            let alg_dir = self.layout().blobs().join(algorithm.as_str());
            for prefix in fsutil::list_names(&alg_dir).at(&alg_dir)? {
                let dir = alg_dir.join(&prefix);
                for hex in fsutil::list_names(&dir).at(&dir)? {
                    match Digest::new(algorithm, &hex) {
                        Ok(d) => work.push((d, dir.join(&hex))),
                        Err(_) => report.problems.push(Problem {
                            repository: String::new(),
                            what: format!("stray file {}", dir.join(&hex).display()),
                        }),
                    }
                }
            }
        }
        let queue = Mutex::new(work.into_iter());
        let results = Mutex::new(Vec::new());
        let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
        std::thread::scope(|scope| {
            for _ in 0..workers {
                scope.spawn(|| {
                    let mut buf = vec![0u8; 1024 * 1024];
                    loop {
                        let next = queue.lock().expect("fsck queue").next();
                        let Some((digest, path)) = next else { break };
                        let outcome = fsutil::hash_file(&path, digest.algorithm(), &mut buf);
                        if let Ok((_, size)) = &outcome {
                            on_blob(*size);
                        }
                        results
                            .lock()
                            .expect("fsck results")
                            .push((digest, path, outcome));
                    }
                });
            }
        });
        for (digest, path, outcome) in results.into_inner().expect("fsck results") {
            let (actual, size) = outcome.at(&path)?;
            report.blobs_checked += 1;
            report.bytes_checked += size;
            if actual != digest {
                report.corrupt_blobs.push(CorruptBlob {
                    digest,
                    actual: actual.to_string(),
                    quarantined: None,
                });
            }
        }
        report.corrupt_blobs.sort_by(|a, b| a.digest.cmp(&b.digest));
        Ok(())
    }

    fn check_repository(&self, repo: &str, report: &mut FsckReport) -> Result<()> {
        let mut problem = |what: String| {
            report.problems.push(Problem {
                repository: repo.to_string(),
                what,
            })
        };
        let links_dir = self.layout().blob_links(repo);
        for digest in list_links(&links_dir).at(&links_dir)? {
            if !self.layout().blob(&digest).exists() {
                problem(format!("blob link {digest} has no blob"));
            }
        }
        let mut manifests_checked = 0;
        for digest in self.manifest_digests(repo)? {
            manifests_checked += 1;
            let Some(stored) = self.get_manifest(repo, &ManifestRef::Digest(digest.clone()))?
            else {
                problem(format!(
                    "manifest {digest} is linked but its blob is missing"
                ));
                continue;
            };
            let parsed = match ParsedManifest::parse(&stored.body, Some(&stored.media_type)) {
                Ok(p) => p,
                Err(e) => {
                    problem(format!("manifest {digest} does not parse: {e}"));
                    continue;
                }
            };
            for blob in parsed.blob_references() {
                if self.repo_blob_size(repo, &blob.digest)?.is_none() {
                    problem(format!(
                        "manifest {digest} references missing blob {}",
                        blob.digest
                    ));
                }
            }
            for child in &parsed.manifests {
                if self
                    .resolve_manifest(repo, &ManifestRef::Digest(child.digest.clone()))?
                    .is_none()
                {
                    problem(format!(
                        "index {digest} references missing manifest {}",
                        child.digest
                    ));
                }
            }
        }
        for tag in self.tags(repo)?.unwrap_or_default() {
            if self
                .resolve_manifest(repo, &ManifestRef::Tag(tag.clone()))?
                .is_none()
            {
                problem(format!("tag {tag} points at a missing manifest"));
            }
        }
        let referrers_dir = self.layout().repository(repo).join("referrers");
        for subject in fsutil::list_names(&referrers_dir).at(&referrers_dir)? {
            let dir = referrers_dir.join(&subject);
            for name in fsutil::list_names(&dir).at(&dir)? {
                let ok = layout::parse_flat_name(&name).is_some_and(|d| {
                    self.layout().manifest_link(repo, &d).exists()
                        && fs::read(dir.join(&name))
                            .ok()
                            .and_then(|raw| {
                                serde_json::from_slice::<ferry_oci::Descriptor>(&raw).ok()
                            })
                            .is_some()
                });
                if !ok {
                    problem(format!(
                        "referrer record {subject}/{name} is stale or unreadable"
                    ));
                }
            }
        }
        report.manifests_checked += manifests_checked;
        Ok(())
    }
}
