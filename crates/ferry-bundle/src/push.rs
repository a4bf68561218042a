//! `ferry bundle push`: a bundle into any OCI registry, straight out of the
//! bundle file by offset (no extraction, no temporary copy). The same
//! engine pushes an OCI image layout directory (`ferry copy`): both are
//! [`Content`].
//!
//! Order of work, so that nothing half-pushed is ever referenced:
//!
//! 1. For a delta bundle, check that everything it takes from its base is
//!    on the target already; stop with the list of what is missing if not.
//! 2. Blobs, `concurrency` at a time: each distinct blob is uploaded once,
//!    into the first repository that needs it (HEAD first: what exists is
//!    skipped; interrupted uploads resume from the registry's offset via
//!    the resume store). Every other repository that needs it then mounts
//!    it from there. The client hashes every byte it sends and completes
//!    an upload only if the digest matches, so a corrupt blob is never
//!    committed; it is named in the error.
//! 3. Manifests, children before the indexes that name them, exact bytes,
//!    so digests (and multi-arch indexes) arrive intact; the tag last,
//!    according to `--on-existing-tag`.
//!
//! Before all that, each entry's tag (or, untagged, its digest) is looked
//! up on the target. An entry already there with the same digest is done:
//! a registry refuses a manifest whose blobs or child manifests it lacks
//! (distribution-spec `MANIFEST_BLOB_UNKNOWN`), so that one answer vouches
//! for the whole tree, and a re-push of an unchanged bundle costs one
//! request per entry instead of one per blob (skopeo sync takes the same
//! shortcut). Its blobs still serve as mount sources for the other entries.
//!
//! That shortcut trusts the target's storage. A registry whose blob was
//! lost or damaged after the manifest went in (a disk fault, a hand-edited
//! storage directory, a layer deleted behind its back) still answers the
//! tag, and a plain re-push would leave it broken. With
//! [`PushOptions::verify_target`] nothing is taken on trust: every blob is
//! looked up with its own `HEAD` and whatever is missing is uploaded
//! again, and every manifest of the entry is looked up by digest. The
//! report says which way each blob counted as already there
//! ([`PushReport::blobs_unchecked`]).

use std::collections::{BTreeMap, HashSet};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use ferry_client::{
    BlobPush, BlobSource, Client, ClientError, ManifestInfo, PushOptions as BlobOptions,
    PushOutcome, ResumeStore, push_blobs,
};
use ferry_oci::progress::Progress;
use ferry_oci::{Descriptor, Digest, name};
use futures_util::StreamExt;
use serde::Serialize;

use crate::format::{Entry, EntryKind};
use crate::graph::{self, Graph, GraphError};
use crate::reader::Bundle;

/// `HOST[:PORT][/PREFIX]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub registry: String,
    pub prefix: String,
}

impl FromStr for Target {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.contains("://") {
            return Err(format!(
                "{s:?}: give the registry as HOST[:PORT][/PREFIX], without a scheme (use --insecure for plain HTTP)"
            ));
        }
        let s = s.trim_end_matches('/');
        let (registry, prefix) = s.split_once('/').unwrap_or((s, ""));
        if registry.is_empty() {
            return Err("the registry host is empty".into());
        }
        if !prefix.is_empty() && !name::is_valid_repository(prefix) {
            return Err(format!(
                "{prefix:?} is not a valid repository path prefix (lowercase, a-z0-9 and ._-)"
            ));
        }
        Ok(Target {
            registry: registry.to_string(),
            prefix: prefix.to_string(),
        })
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.prefix.is_empty() {
            f.write_str(&self.registry)
        } else {
            write!(f, "{}/{}", self.registry, self.prefix)
        }
    }
}

/// What to do when a tag already points at other content on the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnExistingTag {
    Skip,
    Overwrite,
    Fail,
}

pub struct PushOptions {
    pub concurrency: usize,
    pub on_existing_tag: OnExistingTag,
    /// Rewrites of repository path prefixes, first match wins:
    /// (`docker.io/library` style source paths are already reduced to
    /// `library/...` in the bundle) e.g. `("library", "mirror")`.
    pub repository_map: Vec<(String, String)>,
    pub resume: Option<ResumeStore>,
    pub chunk_size: u64,
    /// Check every blob and manifest on the target (`HEAD`) even for
    /// entries whose tag already points at the same content, and upload
    /// what is missing: repairs a target that lost blobs.
    pub verify_target: bool,
}

impl Default for PushOptions {
    fn default() -> Self {
        PushOptions {
            concurrency: 4,
            on_existing_tag: OnExistingTag::Overwrite,
            repository_map: Vec::new(),
            resume: None,
            chunk_size: 64 * 1024 * 1024,
            verify_target: false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("{0}")]
    Graph(#[from] GraphError),
    #[error("{0}")]
    Mapping(String),
    #[error(
        "this is a delta bundle on top of {base}, and {missing} of the blobs it takes from there are not on {target} (e.g. {example} in {repository}): push {base} first"
    )]
    BaseMissing {
        base: String,
        target: String,
        missing: usize,
        example: Digest,
        repository: String,
    },
    #[error("checking {what} on the target: {source}")]
    Check {
        what: String,
        source: Box<ClientError>,
    },
    /// Each failed blob, and the first failure as the typed cause.
    #[error("{} blob(s) could not be pushed; nothing references them on the target:\n{}", failed.len(), failed.join("\n"))]
    BlobsFailed {
        failed: Vec<String>,
        #[source]
        first: Box<ClientError>,
    },
    /// A failure every other blob would meet too (the registry's disk is
    /// full, it is gone, it refuses the credentials or the TLS): the push
    /// stopped there.
    #[error("pushing blobs to {registry}: {source}")]
    Stopped {
        registry: String,
        source: Box<ClientError>,
    },
    #[error("pushing manifest {digest} to {repository}: {source}")]
    Manifest {
        repository: String,
        digest: Digest,
        source: Box<ClientError>,
    },
    #[error("tag {reference} exists with {existing}, not {new}; --on-existing-tag=fail")]
    TagExists {
        reference: String,
        existing: String,
        new: Digest,
    },
    /// The push stopped at one entry after others were complete: what is
    /// on the target now.
    #[error(
        "the push stopped after {} of {total} entries; on the target: {}",
        done.len(),
        done.iter().map(|t| format!("{} ({})", t.reference, t.outcome)).collect::<Vec<_>>().join(", ")
    )]
    Partly {
        done: Vec<TagOutcome>,
        total: usize,
        #[source]
        source: Box<PushError>,
    },
}

impl PushError {
    /// The error that stopped the push, inside [`PushError::Partly`].
    pub fn stopped_by(&self) -> &PushError {
        match self {
            PushError::Partly { source, .. } => source,
            other => other,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct PushReport {
    pub target: String,
    pub blobs_uploaded: usize,
    /// Blobs not sent because the target has them already.
    pub blobs_skipped: usize,
    /// Of `blobs_skipped`, those taken as there without a request because
    /// their entry's tag already pointed at the same content (0 with
    /// `verify_target`); the others were found by a `HEAD`.
    pub blobs_unchecked: usize,
    pub blobs_mounted: usize,
    /// Distinct blobs a delta bundle's base provides, found on the target
    /// (not pushed; the same count as `base_blobs` of `bundle create`).
    pub blobs_in_base: usize,
    pub bytes_sent: u64,
    /// Uploads that continued an earlier, interrupted one.
    pub blobs_resumed: usize,
    /// Bytes those uploads found already on the registry (not sent again).
    pub bytes_resumed_from: u64,
    pub manifests_pushed: usize,
    pub manifests_skipped: usize,
    pub tags: Vec<TagOutcome>,
    pub seconds: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct TagOutcome {
    pub reference: String,
    pub digest: Digest,
    /// `created`, `unchanged`, `overwritten`, `kept` (skip policy), `by-digest`.
    pub outcome: &'static str,
}

/// What a push reads: entries, their manifests, and their blobs as
/// re-openable sources.
pub trait Content: graph::ManifestSource + Send + Sync {
    fn entries(&self) -> &[Entry];
    fn blob_source(&self, digest: &Digest) -> Option<Arc<dyn BlobSource>>;
    /// Blobs the entries need that a base bundle provides: they must be
    /// on the target already.
    fn base_blobs(&self) -> HashSet<Digest> {
        HashSet::new()
    }
    /// The base bundle's name, for messages.
    fn base_name(&self) -> Option<String> {
        None
    }
}

impl Content for Bundle {
    fn entries(&self) -> &[Entry] {
        &self.manifest.entries
    }
    fn blob_source(&self, digest: &Digest) -> Option<Arc<dyn BlobSource>> {
        Bundle::blob_source(self, digest).map(|s| Arc::new(s) as Arc<dyn BlobSource>)
    }
    fn base_blobs(&self) -> HashSet<Digest> {
        self.manifest
            .base_blobs
            .iter()
            .map(|b| b.digest.clone())
            .collect()
    }
    fn base_name(&self) -> Option<String> {
        self.manifest.base.as_ref().map(|b| b.name.clone())
    }
}

/// One entry with where it goes and what it holds.
struct Planned<'a> {
    entry: &'a Entry,
    repository: String,
    graph: Graph,
}

impl Planned<'_> {
    /// Whether `found` (the target's answer at this entry's tag, or at its
    /// root digest when untagged) means the entry is there already.
    fn is_on_target(&self, found: Option<&ManifestInfo>) -> bool {
        match (&self.entry.tag, found) {
            (_, None) => false,
            // Found by its own digest.
            (None, Some(_)) => true,
            (Some(_), Some(info)) => info.digest.as_ref() == Some(&self.entry.descriptor.digest),
        }
    }

    /// `REGISTRY/REPOSITORY:TAG`, or `@DIGEST` for an untagged entry.
    fn reference(&self, registry: &str) -> String {
        match &self.entry.tag {
            Some(tag) => format!("{registry}/{}:{tag}", self.repository),
            None => format!(
                "{registry}/{}@{}",
                self.repository, self.entry.descriptor.digest
            ),
        }
    }
}

/// The repository `entry` lands in on `target`.
pub fn target_repository(
    entry: &Entry,
    target: &Target,
    map: &[(String, String)],
) -> Result<String, String> {
    let mut repo = entry.repository.clone();
    for (from, to) in map {
        if repo == *from || repo.starts_with(&format!("{from}/")) {
            repo = format!("{to}{}", &repo[from.len()..]);
            break;
        }
    }
    let full = if target.prefix.is_empty() {
        repo
    } else {
        format!("{}/{repo}", target.prefix)
    };
    if name::is_valid_repository(&full) {
        Ok(full)
    } else {
        Err(format!(
            "{} maps to {full:?}, which is not a valid repository name",
            entry.source
        ))
    }
}

pub async fn push(
    content: Arc<dyn Content>,
    client: &Client,
    target: &Target,
    options: &PushOptions,
    progress: Arc<dyn Progress>,
) -> Result<PushReport, PushError> {
    let started = Instant::now();
    let mut report = PushReport {
        target: target.to_string(),
        ..PushReport::default()
    };
    let mut planned = Vec::new();
    for entry in content.entries() {
        let repository = target_repository(entry, target, &options.repository_map)
            .map_err(PushError::Mapping)?;
        planned.push(Planned {
            entry,
            graph: graph::walk(content.as_ref(), &entry.descriptor)?,
            repository,
        });
    }
    let base_blobs = content.base_blobs();
    let from_base: HashSet<&Digest> = base_blobs.iter().collect();
    report.blobs_in_base =
        check_base(content.as_ref(), client, target, &planned, &from_base).await?;
    let found = look_up_roots(client, &target.registry, &planned, options.concurrency).await?;
    let present: Vec<bool> = planned
        .iter()
        .zip(&found)
        .map(|(plan, found)| plan.is_on_target(found.as_ref()))
        .collect();
    // Entries whose blobs are taken as there without looking.
    let trusted: Vec<bool> = present
        .iter()
        .map(|p| *p && !options.verify_target)
        .collect();
    let cx = Context {
        content: &content,
        client,
        registry: &target.registry,
        options,
    };
    push_all_blobs(&cx, &planned, &trusted, &from_base, progress, &mut report).await?;
    for ((plan, present), found) in planned.iter().zip(&present).zip(&found) {
        if *present {
            if options.verify_target {
                restore_child_manifests(client, &target.registry, plan, &from_base, &mut report)
                    .await?;
            } else {
                report.manifests_skipped += plan.graph.manifests.len();
            }
            report.tags.push(TagOutcome {
                reference: plan.reference(&target.registry),
                digest: plan.entry.descriptor.digest.clone(),
                outcome: if plan.entry.tag.is_some() {
                    "unchanged"
                } else {
                    "by-digest"
                },
            });
            continue;
        }
        push_manifests(
            client,
            &target.registry,
            plan,
            found.as_ref(),
            &from_base,
            options,
            &mut report,
        )
        .await
        .map_err(|e| {
            if report.tags.is_empty() {
                e
            } else {
                PushError::Partly {
                    done: report.tags.clone(),
                    total: planned.len(),
                    source: Box::new(e),
                }
            }
        })?;
    }
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// For each planned entry, what the target holds at its tag (or, untagged,
/// at its root digest) before anything is pushed. Looked up once: it decides
/// whether the entry is already there, and later what to do with the tag.
async fn look_up_roots(
    client: &Client,
    registry: &str,
    planned: &[Planned<'_>],
    concurrency: usize,
) -> Result<Vec<Option<ManifestInfo>>, PushError> {
    let lookups = planned.iter().map(|plan| async move {
        let root = &plan.entry.descriptor.digest;
        let repo = repository(client, registry, &plan.repository)?;
        let reference = plan.entry.tag.clone().unwrap_or_else(|| root.to_string());
        repo.head_manifest(&reference)
            .await
            .map_err(|source| PushError::Check {
                what: match &plan.entry.tag {
                    Some(tag) => format!("{}:{tag}", plan.repository),
                    None => format!("{}@{root}", plan.repository),
                },
                source: Box::new(source),
            })
    });
    futures_util::stream::iter(lookups)
        .buffered(concurrency.max(1))
        .collect::<Vec<Result<Option<ManifestInfo>, PushError>>>()
        .await
        .into_iter()
        .collect()
}

/// Checks that what a delta takes from its base is on the target; returns
/// how many distinct blobs that is.
async fn check_base(
    content: &dyn Content,
    client: &Client,
    target: &Target,
    planned: &[Planned<'_>],
    from_base: &HashSet<&Digest>,
) -> Result<usize, PushError> {
    let Some(base) = content.base_name() else {
        return Ok(0);
    };
    let mut missing: Vec<(Digest, String)> = Vec::new();
    let mut distinct: HashSet<Digest> = HashSet::new();
    for plan in planned {
        let repo = repository(client, &target.registry, &plan.repository)?;
        let manifests: HashSet<&Digest> = plan
            .graph
            .manifests
            .iter()
            .map(|(d, _)| &d.digest)
            .collect();
        for digest in plan
            .graph
            .digests()
            .into_iter()
            .filter(|d| from_base.contains(d))
        {
            if !manifests.contains(&digest) {
                distinct.insert(digest.clone());
            }
            let present = if manifests.contains(&digest) {
                repo.head_manifest(&digest.to_string())
                    .await
                    .map(|m| m.is_some())
            } else {
                repo.blob_exists(&digest).await.map(|b| b.is_some())
            }
            .map_err(|source| PushError::Check {
                what: format!("{digest} in {}", plan.repository),
                source: Box::new(source),
            })?;
            if !present {
                missing.push((digest, plan.repository.clone()));
            }
        }
    }
    match missing.first() {
        None => Ok(distinct.len()),
        Some((example, repository)) => Err(PushError::BaseMissing {
            base,
            target: target.to_string(),
            missing: missing.len(),
            example: example.clone(),
            repository: repository.clone(),
        }),
    }
}

fn repository(
    client: &Client,
    registry: &str,
    name: &str,
) -> Result<ferry_client::Repository, PushError> {
    client
        .repository(registry, name)
        .map_err(|source| PushError::Check {
            what: format!("repository {name}"),
            source: Box::new(source),
        })
}

/// What every step of one push shares.
struct Context<'a> {
    content: &'a Arc<dyn Content>,
    client: &'a Client,
    registry: &'a str,
    options: &'a PushOptions,
}

/// Pushes the blobs of every entry not in `trusted` (those taken as on the
/// target already, counted as skipped without a request).
async fn push_all_blobs(
    cx: &Context<'_>,
    planned: &[Planned<'_>],
    trusted: &[bool],
    from_base: &HashSet<&Digest>,
    progress: Arc<dyn Progress>,
    report: &mut PushReport,
) -> Result<(), PushError> {
    let Context {
        content,
        client,
        registry,
        options,
    } = *cx;
    // The first repository that needs a blob uploads it; the others mount.
    // Entries already on the target are homes from the start.
    let mut home: BTreeMap<Digest, String> = BTreeMap::new();
    let mut there: HashSet<(&str, &Digest)> = HashSet::new();
    for (plan, _) in planned.iter().zip(trusted).filter(|(_, t)| **t) {
        // The base's blobs were looked up already (`blobs_in_base`).
        for blob in plan
            .graph
            .blobs
            .iter()
            .filter(|b| !from_base.contains(&b.digest))
        {
            home.entry(blob.digest.clone())
                .or_insert_with(|| plan.repository.clone());
            if there.insert((&plan.repository, &blob.digest)) {
                report.blobs_skipped += 1;
                report.blobs_unchecked += 1;
            }
        }
    }
    let mut first_wave = Vec::new();
    let mut second_wave = Vec::new();
    for (plan, _) in planned.iter().zip(trusted).filter(|(_, t)| !**t) {
        for blob in &plan.graph.blobs {
            if from_base.contains(&blob.digest) {
                continue;
            }
            let repo = repository(client, registry, &plan.repository)?;
            let source = content.blob_source(&blob.digest).ok_or_else(|| {
                let reason = "not in the content being pushed".to_string();
                PushError::BlobsFailed {
                    failed: vec![format!("  {}: {reason}", blob.digest)],
                    first: Box::new(ClientError::SourceInvalid {
                        source_name: blob.digest.to_string(),
                        reason,
                    }),
                }
            })?;
            let mut blob_options = BlobOptions {
                resume: options.resume.clone(),
                chunk_size: options.chunk_size,
                ..BlobOptions::default()
            };
            match home.get(&blob.digest) {
                None => {
                    home.insert(blob.digest.clone(), plan.repository.clone());
                    first_wave.push(BlobPush {
                        repository: repo,
                        digest: blob.digest.clone(),
                        source,
                        options: blob_options,
                    });
                }
                Some(home_repo) if *home_repo == plan.repository => {}
                Some(home_repo) => {
                    blob_options.mount_from = vec![home_repo.clone()];
                    second_wave.push(BlobPush {
                        repository: repo,
                        digest: blob.digest.clone(),
                        source,
                        options: blob_options,
                    });
                }
            }
        }
    }
    let total: u64 = first_wave.iter().map(|b| b.source.len()).sum();
    progress.start("push", "push", Some(total));
    let mut failed = Vec::new();
    let mut first = None;
    for wave in [first_wave, second_wave] {
        let names: Vec<(String, Digest)> = wave
            .iter()
            .map(|b| (b.repository.name().to_string(), b.digest.clone()))
            .collect();
        let results = match push_blobs(wave, options.concurrency, progress.clone()).await {
            Ok(results) => results,
            Err(e) => {
                progress.finish("push", "failed");
                return Err(PushError::Stopped {
                    registry: registry.to_string(),
                    source: Box::new(e),
                });
            }
        };
        for ((repo, digest), result) in names.into_iter().zip(results) {
            match result {
                Ok(r) => {
                    match r.outcome {
                        PushOutcome::Exists => report.blobs_skipped += 1,
                        PushOutcome::Mounted { .. } => report.blobs_mounted += 1,
                        PushOutcome::Uploaded => report.blobs_uploaded += 1,
                    }
                    report.blobs_resumed += usize::from(r.resumed_at.is_some());
                    report.bytes_resumed_from += r.resumed_at.unwrap_or(0);
                    report.bytes_sent += r.bytes_sent;
                }
                Err(e) => {
                    failed.push(format!("  {digest} into {repo}: {e}"));
                    first.get_or_insert(e);
                }
            }
        }
        if let Some(first) = first {
            progress.finish("push", "failed");
            return Err(PushError::BlobsFailed {
                failed,
                first: Box::new(first),
            });
        }
    }
    progress.finish("push", "pushed");
    Ok(())
}

/// For an entry whose tag already points at its root (`verify_target`):
/// looks up every manifest under the root by digest and puts back any the
/// target lost. The root itself answered the tag lookup.
async fn restore_child_manifests(
    client: &Client,
    registry: &str,
    plan: &Planned<'_>,
    from_base: &HashSet<&Digest>,
    report: &mut PushReport,
) -> Result<(), PushError> {
    let repo = repository(client, registry, &plan.repository)?;
    let root = &plan.entry.descriptor.digest;
    for (desc, bytes) in &plan.graph.manifests {
        if from_base.contains(&desc.digest) || &desc.digest == root {
            report.manifests_skipped += 1;
            continue;
        }
        put_if_missing(&repo, desc, bytes, report)
            .await
            .map_err(|source| PushError::Manifest {
                repository: plan.repository.clone(),
                digest: desc.digest.clone(),
                source: Box::new(source),
            })?;
    }
    Ok(())
}

/// Pushes an entry that is not on the target yet; `found` is what the
/// target held at its tag before the push (nothing, or other content).
async fn push_manifests(
    client: &Client,
    registry: &str,
    plan: &Planned<'_>,
    found: Option<&ManifestInfo>,
    from_base: &HashSet<&Digest>,
    options: &PushOptions,
    report: &mut PushReport,
) -> Result<(), PushError> {
    let repo = repository(client, registry, &plan.repository)?;
    let root = &plan.entry.descriptor.digest;
    let failed = |digest: &Digest| {
        let (repository, digest) = (plan.repository.clone(), digest.clone());
        move |source| PushError::Manifest {
            repository,
            digest,
            source: Box::new(source),
        }
    };
    for (desc, bytes) in &plan.graph.manifests {
        if from_base.contains(&desc.digest) || &desc.digest == root {
            continue;
        }
        put_if_missing(&repo, desc, bytes, report)
            .await
            .map_err(failed(&desc.digest))?;
    }
    let (root_desc, root_bytes) = plan
        .graph
        .manifests
        .last()
        .expect("the root is in its graph");
    let Some(tag) = &plan.entry.tag else {
        // Untagged and not found by its digest: it is missing.
        let bytes = Bytes::copy_from_slice(root_bytes);
        if plan.entry.kind == EntryKind::Referrer {
            // Findable by its subject also on registries without the
            // referrers API.
            repo.put_referrer(&root_desc.media_type, bytes).await
        } else {
            repo.put_manifest(&root.to_string(), &root_desc.media_type, bytes)
                .await
        }
        .map_err(failed(root))?;
        report.manifests_pushed += 1;
        report.tags.push(TagOutcome {
            reference: plan.reference(registry),
            digest: root.clone(),
            outcome: "by-digest",
        });
        return Ok(());
    };
    let reference = plan.reference(registry);
    // The tag holds nothing, or other content (the same content made the
    // entry count as already there, and it never came here).
    let outcome = match found.map(|m| &m.digest) {
        None => "created",
        Some(other) => match options.on_existing_tag {
            OnExistingTag::Skip => {
                report.tags.push(TagOutcome {
                    reference,
                    digest: root.clone(),
                    outcome: "kept",
                });
                return Ok(());
            }
            OnExistingTag::Fail => {
                return Err(PushError::TagExists {
                    reference,
                    existing: other
                        .as_ref()
                        .map_or_else(|| "other content".to_string(), |d| d.to_string()),
                    new: root.clone(),
                });
            }
            OnExistingTag::Overwrite => "overwritten",
        },
    };
    repo.put_manifest(
        tag,
        &root_desc.media_type,
        Bytes::copy_from_slice(root_bytes),
    )
    .await
    .map_err(failed(root))?;
    report.manifests_pushed += 1;
    report.tags.push(TagOutcome {
        reference,
        digest: root.clone(),
        outcome,
    });
    Ok(())
}

async fn put_if_missing(
    repo: &ferry_client::Repository,
    desc: &Descriptor,
    bytes: &[u8],
    report: &mut PushReport,
) -> Result<(), ClientError> {
    let reference = desc.digest.to_string();
    if repo.head_manifest(&reference).await?.is_some() {
        report.manifests_skipped += 1;
        return Ok(());
    }
    repo.put_manifest(&reference, &desc.media_type, Bytes::copy_from_slice(bytes))
        .await?;
    report.manifests_pushed += 1;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        let t: Target = "reg.local:5000/site/mirror".parse().unwrap();
        assert_eq!(t.registry, "reg.local:5000");
        assert_eq!(t.prefix, "site/mirror");
        let t: Target = "10.0.0.1".parse().unwrap();
        assert_eq!(t.prefix, "");
        assert!("https://x".parse::<Target>().is_err());
        assert!("reg/UPPER".parse::<Target>().is_err());
    }
}
