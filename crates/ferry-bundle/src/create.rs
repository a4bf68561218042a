//! `ferry bundle create`: from a [`Spec`] to a bundle file.
//!
//! 1. [`resolve`]: every entry of the spec, concurrently (bounded), becomes
//!    an [`Entry`] whose manifests are in the cache: registry manifests are
//!    fetched (by tag after a `HEAD` tells whether the cache has it),
//!    layouts read, docker archives converted, charts, files and
//!    manifests packed into OCI form. The blobs still missing are listed.
//! 2. [`Resolution::fetch`]: the missing blobs, each once however many
//!    entries share it, are streamed into the cache concurrently
//!    (bounded), verified. Blobs a `--since` base bundle carries are not
//!    fetched.
//! 3. [`Resolution::plan`] + [`crate::writer::write_bundle`]: the bundle,
//!    deterministic, from the cache.
//!
//! [`create`] runs all three.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ferry_client::{
    Client, ClientError, ClientOptions, CredentialStore, Credentials, HostConfig, HostSecurity,
    RetryPolicy,
};
use ferry_oci::progress::Progress;
use ferry_oci::{Descriptor, Digest, Reference, media_type};
use futures_util::{StreamExt, TryStreamExt};

use crate::cache::{CacheError, ContentCache};
use crate::format::{BaseBundle, Entry, EntryKind};
use crate::reader::{Bundle, BundleError};
use crate::sources::artifact::{self, FileLayer};
use crate::sources::chart::{self, RepoIndex};
use crate::sources::http::{HttpHost, HttpSource};
use crate::sources::layout::OciLayout;
use crate::sources::referrers;
use crate::sources::resolve::{Resolved, resolve as resolve_graph};
use crate::sources::{
    ImageSource, MANIFEST_LIMIT, Origin, ProgressReader, RootManifest, SourceError, blocking,
    docker_archive,
};
use crate::spec::{self, Compression, PlatformFilter, Spec, SpecError};
use crate::writer::{Plan, WriteError, WriteOptions, WriteReport, write_bundle};

#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// An entry's source failed (unreachable, not found, corrupt, ...).
    #[error("{entry}: {source}")]
    Source {
        entry: String,
        #[source]
        source: Box<SourceError>,
    },
    /// An entry cannot be placed (its target name is unusable).
    #[error("{entry}: {message}")]
    Entry { entry: String, message: String },
    #[error(
        "{first} and {second} both go to {target}; give one of them another `repository` or `tag`"
    )]
    DuplicateTarget {
        target: String,
        first: String,
        second: String,
    },
    #[error(
        "{0} is listed twice; list each source once (the bundle's index.json names entries by their source)"
    )]
    DuplicateSource(String),
    #[error("hosts.{host}: {message}")]
    Host { host: String, message: String },
    #[error("--since {}: {source}", path.display())]
    Base {
        path: PathBuf,
        #[source]
        source: BundleError,
    },
    #[error("setting up the registry client: {0}")]
    Client(#[source] ClientError),
    #[error(transparent)]
    Cache(#[from] CacheError),
    #[error(transparent)]
    Write(#[from] WriteError),
}

/// Settings for one source host given on the command line; they win over
/// the spec's `hosts`.
#[derive(Debug, Clone, Default)]
pub struct HostOverride {
    pub insecure: bool,
    pub plain_http: bool,
    pub ca_files: Vec<PathBuf>,
    /// User and password.
    pub credentials: Option<(String, String)>,
}

/// Everything besides the spec.
#[derive(Debug, Clone)]
pub struct CreateOptions {
    /// Replaces the spec's `platforms` (entries' own lists still win).
    pub platforms: Option<Vec<PlatformFilter>>,
    pub hosts: BTreeMap<String, HostOverride>,
    /// Auth files (Docker's config.json format) to use instead of the
    /// usual `docker login` / `podman login` ones.
    pub auth_files: Vec<PathBuf>,
    /// Parallel downloads and entries resolved at once.
    pub concurrency: usize,
    /// Retries of registry requests (default: ferry-client's).
    pub retry: Option<RetryPolicy>,
    /// Make a delta against this bundle.
    pub since: Option<PathBuf>,
    /// Seconds since the epoch recorded as the creation time.
    pub created: Option<i64>,
}

impl Default for CreateOptions {
    fn default() -> Self {
        CreateOptions {
            platforms: None,
            hosts: BTreeMap::new(),
            auth_files: Vec::new(),
            concurrency: 4,
            retry: None,
            since: None,
            created: None,
        }
    }
}

/// One resolved entry.
pub struct ResolvedEntry {
    pub entry: Entry,
    pub resolved: Resolved,
}

/// The spec, resolved: entries with their manifests in the cache.
pub struct Resolution {
    pub entries: Vec<ResolvedEntry>,
    spec: serde_json::Value,
    created: Option<i64>,
    base: Option<(BaseBundle, HashMap<Digest, u64>)>,
    cache: ContentCache,
}

/// What [`Resolution::fetch`] did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct FetchReport {
    pub blobs_fetched: usize,
    pub bytes_fetched: u64,
    /// Blobs the cache had already (or that were read from local files).
    pub blobs_cached: usize,
    pub bytes_cached: u64,
    /// Blobs left out because the base bundle carries them.
    pub blobs_in_base: usize,
}

/// What [`create`] did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CreateReport {
    pub entries: usize,
    pub fetch: FetchReport,
    pub write: WriteReport,
}

/// Resolves `spec` (read from `spec_dir`'s file: relative paths start
/// there), then fetches, then writes `out`.
pub async fn create(
    spec: &Spec,
    spec_dir: &Path,
    options: &CreateOptions,
    cache: &ContentCache,
    out: &Path,
    write_options: WriteOptions,
    progress: &dyn Progress,
) -> Result<CreateReport, CreateError> {
    let resolution = resolve(spec, spec_dir, options, cache, progress).await?;
    let fetch = resolution.fetch(options.concurrency, progress).await?;
    let plan = resolution.plan();
    let store = cache.store().clone();
    let out = out.to_path_buf();
    let write = blocking_write(plan, store, out, write_options, progress).await?;
    Ok(CreateReport {
        entries: resolution.entries.len(),
        fetch,
        write,
    })
}

/// [`write_bundle`] on a blocking thread, with progress forwarded.
pub async fn blocking_write(
    plan: Plan,
    store: ferry_store::Store,
    out: PathBuf,
    write_options: WriteOptions,
    progress: &dyn Progress,
) -> Result<WriteReport, CreateError> {
    let written = blocking(progress, move |progress| {
        Ok(write_bundle(&plan, &store, &out, &write_options, progress))
    })
    .await
    .expect("write errors are returned inside");
    Ok(written?)
}

/// Resolves every entry of `spec` (see the module documentation).
pub async fn resolve(
    spec: &Spec,
    spec_dir: &Path,
    options: &CreateOptions,
    cache: &ContentCache,
    progress: &dyn Progress,
) -> Result<Resolution, CreateError> {
    let (client_options, http_hosts) = source_settings(spec, spec_dir, options)?;
    let client = Client::new(client_options).map_err(CreateError::Client)?;
    let base = match &options.since {
        Some(path) => Some(open_base(path)?),
        None => None,
    };
    let ctx = Ctx {
        cache: cache.clone(),
        client,
        http: HttpSource::new(http_hosts),
        dir: spec_dir.to_path_buf(),
        platforms: options
            .platforms
            .clone()
            .unwrap_or_else(|| spec.platforms.clone()),
        progress,
    };
    let jobs = plan_jobs(spec);
    let resolved: Vec<Vec<ResolvedEntry>> = futures_util::stream::iter(jobs.iter())
        .map(|job| ctx.resolve_job(job))
        .buffered(options.concurrency.max(1))
        .try_collect()
        .await?;
    // Two entries of one image share its referrers: each is carried once
    // per target repository.
    let mut referrers = HashSet::new();
    let entries: Vec<ResolvedEntry> = resolved
        .into_iter()
        .flatten()
        .filter(|e| {
            e.entry.kind != EntryKind::Referrer
                || referrers.insert((
                    e.entry.repository.clone(),
                    e.entry.descriptor.digest.clone(),
                    e.entry.tag.clone(),
                ))
        })
        .collect();
    check_unique(&entries)?;
    Ok(Resolution {
        entries,
        spec: spec.to_json(),
        created: options.created,
        base,
        cache: cache.clone(),
    })
}

fn open_base(path: &Path) -> Result<(BaseBundle, HashMap<Digest, u64>), CreateError> {
    let bundle = Bundle::open(path).map_err(|source| CreateError::Base {
        path: path.to_path_buf(),
        source,
    })?;
    let blobs = bundle
        .manifest
        .blobs
        .iter()
        .chain(&bundle.manifest.base_blobs)
        .map(|b| (b.digest.clone(), b.size))
        .collect();
    let base = BaseBundle {
        manifest_digest: Digest::sha256(&bundle.manifest_bytes),
        name: path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.display().to_string()),
    };
    Ok((base, blobs))
}

fn check_unique(entries: &[ResolvedEntry]) -> Result<(), CreateError> {
    let mut sources = HashSet::new();
    let mut targets: HashMap<String, &str> = HashMap::new();
    for e in entries {
        let entry = &e.entry;
        // The same signature may go to two target repositories.
        if entry.kind != EntryKind::Referrer && !sources.insert(entry.source.as_str()) {
            return Err(CreateError::DuplicateSource(entry.source.clone()));
        }
        if let Some(tag) = &entry.tag {
            let target = format!("{}:{tag}", entry.repository);
            if let Some(first) = targets.insert(target.clone(), &entry.source) {
                return Err(CreateError::DuplicateTarget {
                    target,
                    first: first.to_string(),
                    second: entry.source.clone(),
                });
            }
        }
    }
    Ok(())
}

impl Resolution {
    /// Every blob the bundle needs (manifests included), each once.
    pub fn unique_blobs(&self) -> BTreeMap<&Digest, u64> {
        self.entries
            .iter()
            .flat_map(|e| e.resolved.reachable.iter())
            .map(|(d, s)| (d, *s))
            .collect()
    }

    /// Bytes the bundle will hold in blobs (those of the base excluded).
    pub fn bundle_bytes(&self) -> u64 {
        self.unique_blobs()
            .into_iter()
            .filter(|(d, _)| !self.in_base(d))
            .map(|(_, s)| s)
            .sum()
    }

    fn in_base(&self, digest: &Digest) -> bool {
        self.base
            .as_ref()
            .is_some_and(|(_, b)| b.contains_key(digest))
    }

    /// The blobs still to fetch: not in the cache, not in the base.
    pub fn missing(&self) -> Result<Vec<(Descriptor, Origin)>, CreateError> {
        let mut missing = BTreeMap::new();
        for e in &self.entries {
            for blob in &e.resolved.blobs {
                if missing.contains_key(&blob.digest) || self.in_base(&blob.digest) {
                    continue;
                }
                if self.cache.size(&blob.digest)?.is_none() {
                    missing.insert(
                        blob.digest.clone(),
                        (blob.clone(), e.resolved.origin.clone()),
                    );
                }
            }
        }
        Ok(missing.into_values().collect())
    }

    /// Fetches what is missing into the cache (see the module documentation).
    pub async fn fetch(
        &self,
        concurrency: usize,
        progress: &dyn Progress,
    ) -> Result<FetchReport, CreateError> {
        let missing = self.missing()?;
        let mut report = FetchReport::default();
        let all: BTreeMap<&Digest, u64> = self
            .entries
            .iter()
            .flat_map(|e| e.resolved.blobs.iter())
            .map(|b| (&b.digest, b.size))
            .collect();
        let fetching: HashSet<&Digest> = missing.iter().map(|(d, _)| &d.digest).collect();
        for (digest, size) in &all {
            if fetching.contains(digest) {
                report.blobs_fetched += 1;
                report.bytes_fetched += size;
            } else if self.in_base(digest) && self.cache.size(digest)?.is_none() {
                report.blobs_in_base += 1;
            } else {
                report.blobs_cached += 1;
                report.bytes_cached += size;
            }
        }
        futures_util::stream::iter(missing.iter())
            .map(|(descriptor, origin)| async move {
                origin
                    .fetch_blob(descriptor, &self.cache, progress)
                    .await
                    .map_err(|source| CreateError::Source {
                        entry: origin.describe(),
                        source: Box::new(source),
                    })
            })
            .buffer_unordered(concurrency.max(1))
            .try_collect::<Vec<()>>()
            .await?;
        Ok(report)
    }

    /// What to write.
    pub fn plan(&self) -> Plan {
        Plan {
            entries: self.entries.iter().map(|e| e.entry.clone()).collect(),
            spec: self.spec.clone(),
            created: self.created,
            base: self.base.clone(),
        }
    }
}

/// Client and HTTP settings: the spec's `hosts`, then the command line's.
fn source_settings(
    spec: &Spec,
    spec_dir: &Path,
    options: &CreateOptions,
) -> Result<(ClientOptions, HashMap<String, HttpHost>), CreateError> {
    let mut client = ClientOptions::from_environment();
    if !options.auth_files.is_empty() {
        client.credential_store = Arc::new(CredentialStore::from_files(&options.auth_files));
    }
    if let Some(retry) = &options.retry {
        client.retry = retry.clone();
    }
    let mut merged: BTreeMap<String, HostOverride> = BTreeMap::new();
    for (host, h) in &spec.hosts {
        let credentials = match (&h.username, &h.password_env) {
            (Some(user), Some(var)) => {
                let password = std::env::var(var).map_err(|_| CreateError::Host {
                    host: host.clone(),
                    message: format!("the environment variable {var} (password_env) is not set"),
                })?;
                Some((user.clone(), password))
            }
            (None, None) => None,
            _ => {
                return Err(CreateError::Host {
                    host: host.clone(),
                    message: "give both username and password_env, or neither".into(),
                });
            }
        };
        merged.insert(
            host.clone(),
            HostOverride {
                insecure: h.insecure,
                plain_http: h.plain_http,
                ca_files: h.ca_file.iter().map(|f| spec_dir.join(f)).collect(),
                credentials,
            },
        );
    }
    for (host, o) in &options.hosts {
        let m = merged.entry(host.clone()).or_default();
        m.insecure |= o.insecure;
        m.plain_http |= o.plain_http;
        m.ca_files.extend(o.ca_files.iter().cloned());
        if o.credentials.is_some() {
            m.credentials = o.credentials.clone();
        }
    }
    let mut http = HashMap::new();
    for (host, m) in merged {
        let security = if m.plain_http {
            HostSecurity::PlainHttp
        } else if m.insecure {
            HostSecurity::InsecureSkipVerify
        } else {
            HostSecurity::Verified
        };
        client.hosts.insert(
            host.clone(),
            HostConfig {
                security,
                ca_files: m.ca_files.clone(),
                credentials: m
                    .credentials
                    .as_ref()
                    .map(|(u, p)| Credentials::basic(u.clone(), p.clone())),
            },
        );
        http.insert(
            host,
            HttpHost {
                insecure: m.insecure,
                ca_files: m.ca_files,
                basic: m.credentials,
            },
        );
    }
    Ok((client, http))
}

/// One spec entry to resolve, with its place in the spec for messages.
enum Job<'a> {
    Image {
        at: String,
        kind: EntryKind,
        reference: &'a str,
        platforms: Option<&'a [PlatformFilter]>,
        repository: Option<&'a str>,
        tag: Option<&'a str>,
        compression: Option<Compression>,
        /// Also carry its signatures, SBOMs and attestations.
        referrers: bool,
    },
    Chart {
        at: String,
        chart: &'a spec::ChartSpec,
    },
    File {
        at: String,
        kind: EntryKind,
        file: FileJob<'a>,
    },
    Manifests {
        at: String,
        spec: &'a spec::ManifestsSpec,
    },
}

struct FileJob<'a> {
    path: Option<&'a Path>,
    url: Option<&'a str>,
    sha256: Option<&'a str>,
    name: Option<&'a str>,
    media_type: Option<String>,
    artifact_type: &'a str,
    default_prefix: &'a str,
    repository: Option<&'a str>,
    tag: Option<&'a str>,
}

fn plan_jobs(spec: &Spec) -> Vec<Job<'_>> {
    let mut jobs = Vec::new();
    for (i, img) in spec.images.iter().enumerate() {
        jobs.push(Job::Image {
            at: format!("images[{i}] ({})", img.reference),
            kind: EntryKind::Image,
            reference: &img.reference,
            platforms: (!img.platforms.is_empty()).then_some(img.platforms.as_slice()),
            repository: img.repository.as_deref(),
            tag: img.tag.as_deref(),
            compression: img.compression,
            referrers: img.referrers.unwrap_or(spec.referrers),
        });
    }
    for (i, a) in spec.artifacts.iter().enumerate() {
        jobs.push(Job::Image {
            at: format!("artifacts[{i}] ({})", a.reference),
            kind: EntryKind::Artifact,
            reference: &a.reference,
            platforms: Some(&[]),
            repository: a.repository.as_deref(),
            tag: a.tag.as_deref(),
            compression: None,
            referrers: false,
        });
    }
    for (i, chart) in spec.charts.iter().enumerate() {
        let what = chart
            .oci
            .clone()
            .or_else(|| chart.name.clone())
            .or_else(|| chart.path.as_ref().map(|p| p.display().to_string()))
            .unwrap_or_default();
        jobs.push(Job::Chart {
            at: format!("charts[{i}] ({what})"),
            chart,
        });
    }
    for (i, f) in spec.files.iter().enumerate() {
        jobs.push(Job::File {
            at: format!(
                "files[{i}] ({})",
                file_source(f.path.as_deref(), f.url.as_deref())
            ),
            kind: EntryKind::File,
            file: FileJob {
                path: f.path.as_deref(),
                url: f.url.as_deref(),
                sha256: f.sha256.as_deref(),
                name: f.name.as_deref(),
                media_type: f.media_type.clone(),
                artifact_type: f
                    .artifact_type
                    .as_deref()
                    .unwrap_or(spec::FILE_ARTIFACT_TYPE),
                default_prefix: "files",
                repository: f.repository.as_deref(),
                tag: f.tag.as_deref(),
            },
        });
    }
    for (i, m) in spec.manifests.iter().enumerate() {
        jobs.push(Job::Manifests {
            at: format!("manifests[{i}] ({})", m.path.display()),
            spec: m,
        });
    }
    for (i, os) in spec.os_images.iter().enumerate() {
        match &os.reference {
            Some(reference) => jobs.push(Job::Image {
                at: format!("os_images[{i}] ({reference})"),
                kind: EntryKind::OsImage,
                reference,
                platforms: (!os.platforms.is_empty()).then_some(os.platforms.as_slice()),
                repository: os.repository.as_deref(),
                tag: os.tag.as_deref(),
                compression: None,
                referrers: false,
            }),
            None => jobs.push(Job::File {
                at: format!(
                    "os_images[{i}] ({})",
                    file_source(os.path.as_deref(), os.url.as_deref())
                ),
                kind: EntryKind::OsImage,
                file: FileJob {
                    path: os.path.as_deref(),
                    url: os.url.as_deref(),
                    sha256: os.sha256.as_deref(),
                    name: os.name.as_deref(),
                    media_type: os.media_type.clone(),
                    artifact_type: spec::OS_IMAGE_ARTIFACT_TYPE,
                    default_prefix: "os",
                    repository: os.repository.as_deref(),
                    tag: os.tag.as_deref(),
                },
            }),
        }
    }
    jobs
}

fn file_source(path: Option<&Path>, url: Option<&str>) -> String {
    match (path, url) {
        (Some(p), _) => p.display().to_string(),
        (None, Some(u)) => u.to_string(),
        (None, None) => String::new(),
    }
}

/// What resolving needs, shared by all entries.
struct Ctx<'p> {
    cache: ContentCache,
    client: Client,
    http: HttpSource,
    dir: PathBuf,
    platforms: Vec<PlatformFilter>,
    progress: &'p dyn Progress,
}

impl Ctx<'_> {
    /// The job's entry, followed by its referrers' entries if it asks for them.
    async fn resolve_job(&self, job: &Job<'_>) -> Result<Vec<ResolvedEntry>, CreateError> {
        let entry = match job {
            Job::Image {
                at,
                kind,
                reference,
                platforms,
                repository,
                tag,
                compression,
                referrers,
            } => {
                let filter = platforms.unwrap_or(&self.platforms);
                let image = self
                    .image(
                        at,
                        *kind,
                        reference,
                        filter,
                        *repository,
                        *tag,
                        *compression,
                    )
                    .await?;
                if *referrers {
                    let mut entries = self.referrers(at, &image).await?;
                    entries.insert(0, image);
                    return Ok(entries);
                }
                image
            }
            Job::Chart { at, chart } => self.chart(at, chart).await?,
            Job::File { at, kind, file } => self.file(at, *kind, file).await?,
            Job::Manifests { at, spec } => self.manifests(at, spec).await?,
        };
        Ok(vec![entry])
    }

    /// Entries for what refers to `image` in its registry (signatures,
    /// SBOMs, attestations): pushed into the same repository after it.
    async fn referrers(
        &self,
        at: &str,
        image: &ResolvedEntry,
    ) -> Result<Vec<ResolvedEntry>, CreateError> {
        let source_err = |source| CreateError::Source {
            entry: at.to_string(),
            source: Box::new(source),
        };
        let Origin::Registry(repo) = &image.resolved.origin else {
            return Ok(Vec::new());
        };
        let layers: HashSet<&Digest> = image.resolved.blobs.iter().map(|b| &b.digest).collect();
        let manifests: std::collections::BTreeSet<Digest> = image
            .resolved
            .reachable
            .keys()
            .filter(|d| !layers.contains(d))
            .cloned()
            .collect();
        let root = &image.entry.descriptor.digest;
        let found = referrers::find(repo, root, &manifests, &self.cache)
            .await
            .map_err(source_err)?;
        let mut entries = Vec::new();
        for f in found {
            let digest = f.manifest.descriptor.digest.clone();
            let source = match &f.tag {
                Some(tag) => format!("{}/{}:{tag}", repo.registry(), repo.name()),
                None => format!("{}/{}@{digest}", repo.registry(), repo.name()),
            };
            let resolved =
                resolve_graph(image.resolved.origin.clone(), f.manifest, &[], &self.cache)
                    .await
                    .map_err(source_err)?;
            let target = Target {
                repository: Some(image.entry.repository.clone()),
                tag: f.tag,
            };
            entries.push(self.entry(at, EntryKind::Referrer, source, target, resolved)?);
        }
        Ok(entries)
    }

    #[allow(clippy::too_many_arguments)]
    async fn image(
        &self,
        at: &str,
        kind: EntryKind,
        reference: &str,
        filter: &[PlatformFilter],
        repository: Option<&str>,
        tag: Option<&str>,
        compression: Option<Compression>,
    ) -> Result<ResolvedEntry, CreateError> {
        let source_err = |source| CreateError::Source {
            entry: at.to_string(),
            source: Box::new(source),
        };
        let source = ImageSource::parse(reference, &self.dir).map_err(source_err)?;
        let (origin, root, default_target) = match source {
            ImageSource::Registry(r) => {
                let (origin, root) = self.registry_root(&r).await.map_err(source_err)?;
                (origin, root, Target::of_reference(&r))
            }
            ImageSource::Layout { dir, name } => {
                let layout = blocking_open(self.progress, move || OciLayout::open_dir(&dir))
                    .await
                    .map_err(source_err)?;
                self.layout_root(layout, name).await.map_err(source_err)?
            }
            ImageSource::OciArchive { file, name } => {
                let layout = blocking_open(self.progress, move || OciLayout::open_archive(&file))
                    .await
                    .map_err(source_err)?;
                self.layout_root(layout, name).await.map_err(source_err)?
            }
            ImageSource::DockerArchive { file, name } => {
                let cache = self.cache.clone();
                let compression = compression.unwrap_or_default();
                let stem = file_stem(&file);
                let wanted = name.clone();
                let converted = blocking(self.progress, move |progress| {
                    docker_archive::convert(&file, wanted.as_deref(), compression, &cache, progress)
                })
                .await
                .map_err(source_err)?;
                let target = match name.or(converted.repo_tag) {
                    Some(n) => Target::of_name(&n, &stem),
                    None => Target {
                        repository: Some(stem),
                        tag: None,
                    },
                };
                (Origin::Cache, converted.manifest, target)
            }
        };
        let resolved = resolve_graph(origin, root, filter, &self.cache)
            .await
            .map_err(source_err)?;
        let target = default_target.with_overrides(repository, tag);
        self.entry(at, kind, reference.to_string(), target, resolved)
    }

    async fn registry_root(
        &self,
        reference: &Reference,
    ) -> Result<(Origin, RootManifest), SourceError> {
        let what = reference.to_string();
        let repo =
            self.client
                .repository_of(reference)
                .map_err(|source| SourceError::Registry {
                    what: what.clone(),
                    source,
                })?;
        let registry_err = |source| SourceError::Registry {
            what: format!("fetching manifest {}", reference.tag_or_digest()),
            source,
        };
        let cached = |digest: &Digest| -> Result<Option<RootManifest>, SourceError> {
            match self.cache.read(digest, MANIFEST_LIMIT)? {
                Some(bytes) => RootManifest::new(digest.clone(), bytes, &what).map(Some),
                None => Ok(None),
            }
        };
        let root = if let Some(digest) = &reference.digest {
            match cached(digest)? {
                Some(root) => root,
                None => {
                    let m = repo
                        .get_manifest(&digest.to_string())
                        .await
                        .map_err(registry_err)?;
                    RootManifest::new(m.digest, m.bytes.to_vec(), &what)?
                }
            }
        } else {
            let tag = reference.tag_or_digest();
            // A HEAD says which manifest the tag names now; if the cache
            // has it, nothing is downloaded. Anything unusable (an error, a
            // registry that omits the digest) falls through to the GET,
            // whose error is the one worth reporting.
            let known = match repo.head_manifest(&tag).await {
                Ok(Some(info)) => match &info.digest {
                    Some(d) => cached(d)?,
                    None => None,
                },
                _ => None,
            };
            match known {
                Some(root) => root,
                None => {
                    let m = repo.get_manifest(&tag).await.map_err(registry_err)?;
                    RootManifest::new(m.digest, m.bytes.to_vec(), &what)?
                }
            }
        };
        self.cache.put(
            &root.descriptor.digest,
            Some(root.bytes.len() as u64),
            &mut &root.bytes[..],
        )?;
        Ok((Origin::Registry(repo), root))
    }

    async fn layout_root(
        &self,
        layout: OciLayout,
        name: Option<String>,
    ) -> Result<(Origin, RootManifest, Target), SourceError> {
        let descriptor = layout.find(name.as_deref())?;
        let stem = layout_stem(&layout.name);
        let layout = Arc::new(layout);
        let origin = Origin::Layout(layout.clone());
        let bytes = origin.manifest(&descriptor, &self.cache).await?;
        let root = RootManifest::new(descriptor.digest.clone(), bytes, &layout.name)?;
        let target = match name.or_else(|| {
            descriptor
                .annotation(media_type::ANNOTATION_REF_NAME)
                .map(str::to_string)
        }) {
            Some(n) => Target::of_name(&n, &stem),
            None => Target {
                repository: Some(stem),
                tag: None,
            },
        };
        Ok((origin, root, target))
    }

    async fn chart(&self, at: &str, chart: &spec::ChartSpec) -> Result<ResolvedEntry, CreateError> {
        let source_err = |source| CreateError::Source {
            entry: at.to_string(),
            source: Box::new(source),
        };
        if let Some(oci) = &chart.oci {
            let rest = oci.trim_start_matches("oci://");
            let text = match &chart.version {
                Some(v) => format!("{rest}:{}", chart::version_tag(v)),
                None => rest.to_string(),
            };
            let reference: Reference = text.parse().map_err(|e: ferry_oci::ReferenceError| {
                source_err(SourceError::InvalidReference {
                    reference: oci.clone(),
                    reason: e.to_string(),
                })
            })?;
            if reference.tag.is_none() && reference.digest.is_none() {
                return Err(CreateError::Entry {
                    entry: at.to_string(),
                    message: "give the chart's `version` (or oci://...:VERSION)".into(),
                });
            }
            let (origin, root) = self.registry_root(&reference).await.map_err(source_err)?;
            let parsed = ferry_oci::ParsedManifest::parse(&root.bytes, None).ok();
            if parsed
                .as_ref()
                .and_then(|p| p.config.as_ref())
                .is_none_or(|c| c.media_type != media_type::HELM_CONFIG)
            {
                return Err(source_err(SourceError::Invalid {
                    source_name: oci.clone(),
                    message: format!(
                        "is not a Helm chart (its config is not {}); list it under `artifacts` to copy it as it is",
                        media_type::HELM_CONFIG
                    ),
                }));
            }
            let resolved = resolve_graph(origin, root, &[], &self.cache)
                .await
                .map_err(source_err)?;
            let target =
                Target::of_reference(&reference).with_overrides(chart.repository.as_deref(), None);
            return self.entry(
                at,
                EntryKind::Chart,
                text_source(oci, chart.version.as_deref()),
                target,
                resolved,
            );
        }

        let (source, tgz, size) = if let Some(repo) = &chart.repo {
            let name = chart.name.as_deref().expect("checked by the spec");
            let version = chart.version.as_deref().expect("checked by the spec");
            let base = format!("{}/", repo.trim_end_matches('/'));
            let index_url = format!("{base}index.yaml");
            let (index_digest, _, _) = self
                .http
                .fetch(&index_url, None, &self.cache, self.progress)
                .await
                .map_err(source_err)?;
            let cache = self.cache.clone();
            let what = index_url.clone();
            let index = blocking_open(self.progress, move || {
                let bytes = cache
                    .read(&index_digest, chart::INDEX_LIMIT)?
                    .unwrap_or_default();
                RepoIndex::parse(&bytes, &what)
            })
            .await
            .map_err(source_err)?;
            let found = index.find(name, version, &index_url).map_err(source_err)?;
            let url = found.urls.first().ok_or_else(|| {
                source_err(SourceError::Invalid {
                    source_name: index_url.clone(),
                    message: format!("{name} {version} lists no download URL"),
                })
            })?;
            let url = url::Url::parse(&base)
                .and_then(|b| b.join(url))
                .map_err(|e| {
                    source_err(SourceError::Invalid {
                        source_name: index_url.clone(),
                        message: format!("{name} {version}: bad URL {url:?}: {e}"),
                    })
                })?;
            let expected = found.digest.as_deref().and_then(|d| {
                Digest::new(
                    ferry_oci::Algorithm::Sha256,
                    d.trim_start_matches("sha256:"),
                )
                .ok()
            });
            let (digest, size, _) = self
                .http
                .fetch(url.as_str(), expected.as_ref(), &self.cache, self.progress)
                .await
                .map_err(source_err)?;
            (format!("{base}index.yaml#{name}@{version}"), digest, size)
        } else {
            let path = chart.path.as_ref().expect("checked by the spec");
            let (digest, size) = self
                .local_file(&self.dir.join(path), None)
                .await
                .map_err(source_err)?;
            (path.display().to_string(), digest, size)
        };
        let cache = self.cache.clone();
        let what = source.clone();
        let blob = tgz.clone();
        let meta = blocking_open(self.progress, move || {
            chart::read_meta(&cache, &blob, &what)
        })
        .await
        .map_err(source_err)?;
        if let Some(wanted) = &chart.version
            && wanted.trim_start_matches('v') != meta.version.trim_start_matches('v')
        {
            return Err(source_err(SourceError::Invalid {
                source_name: source.clone(),
                message: format!("is version {} of {}, not {wanted}", meta.version, meta.name),
            }));
        }
        if let Some(name) = &chart.name
            && name != &meta.name
        {
            return Err(source_err(SourceError::Invalid {
                source_name: source.clone(),
                message: format!("holds chart {:?}, not {name:?}", meta.name),
            }));
        }
        let root =
            chart::helm_manifest(&self.cache, &meta, &tgz, size, &source).map_err(source_err)?;
        let resolved = resolve_graph(Origin::Cache, root, &[], &self.cache)
            .await
            .map_err(source_err)?;
        let target = Target {
            repository: Some(format!("charts/{}", sanitize(&meta.name))),
            tag: Some(chart::version_tag(&meta.version)),
        }
        .with_overrides(chart.repository.as_deref(), None);
        self.entry(at, EntryKind::Chart, source, target, resolved)
    }

    async fn file(
        &self,
        at: &str,
        kind: EntryKind,
        file: &FileJob<'_>,
    ) -> Result<ResolvedEntry, CreateError> {
        let source_err = |source| CreateError::Source {
            entry: at.to_string(),
            source: Box::new(source),
        };
        let expected = file.sha256.map(|s| {
            Digest::new(
                ferry_oci::Algorithm::Sha256,
                s.trim_start_matches("sha256:"),
            )
            .expect("checked by the spec")
        });
        let (source, digest, size, default_name) = match (file.path, file.url) {
            (Some(path), _) => {
                let (digest, size) = self
                    .local_file(&self.dir.join(path), expected.as_ref())
                    .await
                    .map_err(source_err)?;
                let name = path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                (path.display().to_string(), digest, size, name)
            }
            (None, Some(url)) => {
                let (digest, size, _) = self
                    .http
                    .fetch(url, expected.as_ref(), &self.cache, self.progress)
                    .await
                    .map_err(source_err)?;
                let name = url::Url::parse(url)
                    .ok()
                    .and_then(|u| {
                        u.path_segments()
                            .and_then(|mut s| s.next_back().map(str::to_string))
                    })
                    .map(|s| {
                        percent_encoding::percent_decode_str(&s)
                            .decode_utf8_lossy()
                            .into_owned()
                    })
                    .filter(|s| !s.is_empty())
                    .unwrap_or_else(|| "download".to_string());
                (url.to_string(), digest, size, name)
            }
            (None, None) => unreachable!("checked by the spec"),
        };
        let title = file.name.map(str::to_string).unwrap_or(default_name);
        let media = file.media_type.clone().unwrap_or_else(|| {
            if kind == EntryKind::OsImage {
                artifact::os_image_media_type(&title).to_string()
            } else {
                "application/octet-stream".to_string()
            }
        });
        let root = artifact::file_artifact(
            &self.cache,
            file.artifact_type,
            &[FileLayer {
                title: title.clone(),
                media_type: media,
                digest,
                size,
            }],
            &source,
        )
        .map_err(source_err)?;
        let resolved = resolve_graph(Origin::Cache, root, &[], &self.cache)
            .await
            .map_err(source_err)?;
        let target = Target {
            repository: Some(format!("{}/{}", file.default_prefix, sanitize(&title))),
            tag: Some("latest".into()),
        }
        .with_overrides(file.repository, file.tag);
        self.entry(at, kind, source, target, resolved)
    }

    async fn manifests(
        &self,
        at: &str,
        spec: &spec::ManifestsSpec,
    ) -> Result<ResolvedEntry, CreateError> {
        let source_err = |source| CreateError::Source {
            entry: at.to_string(),
            source: Box::new(source),
        };
        let root_path = self.dir.join(&spec.path);
        let found = blocking_open(self.progress, {
            let root_path = root_path.clone();
            move || find_manifest_files(&root_path)
        })
        .await
        .map_err(source_err)?;
        let mut layers = Vec::new();
        for (title, path) in found {
            let (digest, size) = self.local_file(&path, None).await.map_err(source_err)?;
            let media = if title.ends_with(".json") {
                "application/json"
            } else {
                "application/yaml"
            };
            layers.push(FileLayer {
                title,
                media_type: media.to_string(),
                digest,
                size,
            });
        }
        let source = spec.path.display().to_string();
        let root =
            artifact::file_artifact(&self.cache, spec::MANIFESTS_ARTIFACT_TYPE, &layers, &source)
                .map_err(source_err)?;
        let resolved = resolve_graph(Origin::Cache, root, &[], &self.cache)
            .await
            .map_err(source_err)?;
        let name = spec.name.clone().unwrap_or_else(|| {
            let stem = root_path
                .file_stem()
                .or_else(|| root_path.file_name())
                .map(|s| s.to_string_lossy().into_owned());
            stem.unwrap_or_else(|| "manifests".into())
        });
        let target = Target {
            repository: Some(format!("manifests/{}", sanitize(&name))),
            tag: Some("latest".into()),
        }
        .with_overrides(spec.repository.as_deref(), spec.tag.as_deref());
        self.entry(at, EntryKind::Manifests, source, target, resolved)
    }

    /// Stores a local file (blocking, with progress); with `expected`,
    /// a cached copy is used without reading the file, and a different
    /// file is refused.
    async fn local_file(
        &self,
        path: &Path,
        expected: Option<&Digest>,
    ) -> Result<(Digest, u64), SourceError> {
        if let Some(d) = expected
            && let Some(size) = self.cache.size(d)?
        {
            return Ok((d.clone(), size));
        }
        let cache = self.cache.clone();
        let path = path.to_path_buf();
        let expected = expected.cloned();
        blocking(self.progress, move |progress| {
            let io_err = |source| SourceError::Io {
                path: path.clone(),
                source,
            };
            let file = std::fs::File::open(&path).map_err(io_err)?;
            let size = file.metadata().map_err(io_err)?.len();
            let id = path.display().to_string();
            progress.start(&id, &file_stem(&path), Some(size));
            let mut reader = ProgressReader {
                inner: file,
                progress,
                id: id.clone(),
            };
            let stored = cache.put_new(&mut reader);
            progress.finish(&id, if stored.is_ok() { "stored" } else { "failed" });
            let (digest, size) = stored?;
            if let Some(expected) = expected
                && expected != digest
            {
                return Err(SourceError::Checksum {
                    what: path.display().to_string(),
                    expected,
                    actual: digest,
                });
            }
            Ok((digest, size))
        })
        .await
    }

    fn entry(
        &self,
        at: &str,
        kind: EntryKind,
        source: String,
        target: Target,
        resolved: Resolved,
    ) -> Result<ResolvedEntry, CreateError> {
        let entry_err = |message: String| CreateError::Entry {
            entry: at.to_string(),
            message,
        };
        let repository = target
            .repository
            .ok_or_else(|| entry_err("set `repository`: the source does not name one".into()))?;
        if !ferry_oci::name::is_valid_repository(&repository) {
            return Err(entry_err(format!(
                "{repository:?} is not a valid repository name (lowercase letters, digits, `.`, `_`, `-`, separated by `/`); set `repository`"
            )));
        }
        if let Some(tag) = &target.tag
            && !ferry_oci::name::is_valid_tag(tag)
        {
            return Err(entry_err(format!("{tag:?} is not a valid tag; set `tag`")));
        }
        Ok(ResolvedEntry {
            entry: Entry {
                kind,
                source,
                repository,
                tag: target.tag,
                descriptor: resolved.root.clone(),
                platforms: resolved.platforms.clone(),
            },
            resolved,
        })
    }
}

fn text_source(oci: &str, version: Option<&str>) -> String {
    match version {
        Some(v) => format!("{oci}:{}", chart::version_tag(v)),
        None => oci.to_string(),
    }
}

/// Opens something on a blocking thread (local files can be slow).
async fn blocking_open<T: Send + 'static>(
    progress: &dyn Progress,
    work: impl FnOnce() -> Result<T, SourceError> + Send + 'static,
) -> Result<T, SourceError> {
    blocking(progress, move |_| work()).await
}

/// Where an entry lands.
struct Target {
    repository: Option<String>,
    tag: Option<String>,
}

impl Target {
    /// `docker.io/library/nginx:1.27` -> `library/nginx`, `1.27`; an
    /// image pinned by digest alone has no tag.
    fn of_reference(r: &Reference) -> Target {
        Target {
            repository: Some(r.repository.clone()),
            tag: r.tag.clone(),
        }
    }

    /// A name from a layout or archive: a reference if it has a `/`, `:`
    /// or `@`, else a tag of a repository named after the file.
    fn of_name(name: &str, stem: &str) -> Target {
        if name.contains(['/', ':', '@'])
            && let Ok(r) = name.parse::<Reference>()
        {
            return Target::of_reference(&r);
        }
        Target {
            repository: Some(stem.to_string()),
            tag: Some(name.to_string()),
        }
    }

    fn with_overrides(mut self, repository: Option<&str>, tag: Option<&str>) -> Target {
        if let Some(r) = repository {
            self.repository = Some(r.to_string());
        }
        if let Some(t) = tag {
            self.tag = Some(t.to_string());
        }
        self
    }
}

/// A file name as a repository path component: lowercase, other
/// characters as `-`, no separator at either end or doubled.
fn sanitize(name: &str) -> String {
    let mut out = String::new();
    for c in name.to_lowercase().chars() {
        let c = if c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-') {
            c
        } else {
            '-'
        };
        let separator = matches!(c, '.' | '_' | '-');
        if separator && (out.is_empty() || out.ends_with(['.', '_', '-'])) {
            continue;
        }
        out.push(c);
    }
    out.trim_end_matches(['.', '_', '-']).to_string()
}

fn file_stem(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = name
        .strip_suffix(".tar")
        .or_else(|| name.strip_suffix(".tgz"))
        .unwrap_or(&name);
    sanitize(stem)
}

/// `oci:DIR` / `oci-archive:FILE` -> a repository name from the path.
fn layout_stem(name: &str) -> String {
    let path = name.split_once(':').map_or(name, |(_, p)| p);
    file_stem(Path::new(path.trim_end_matches('/')))
}

/// The manifest files under `root` (or `root` itself), with their titles
/// (paths relative to `root`, `/`-separated), sorted.
fn find_manifest_files(root: &Path) -> Result<Vec<(String, PathBuf)>, SourceError> {
    let io_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| SourceError::Io { path, source }
    };
    let meta = std::fs::metadata(root).map_err(io_err(root))?;
    if meta.is_file() {
        let title = root
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        return Ok(vec![(title, root.to_path_buf())]);
    }
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).map_err(io_err(&dir))? {
            let entry = entry.map_err(io_err(&dir))?;
            let path = entry.path();
            let meta = std::fs::metadata(&path).map_err(io_err(&path))?;
            if meta.is_dir() {
                stack.push(path);
            } else if path
                .extension()
                .is_some_and(|e| e == "yaml" || e == "yml" || e == "json")
            {
                let rel = path.strip_prefix(root).expect("under root");
                let title = rel
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join("/");
                found.push((title, path));
            }
        }
    }
    found.sort();
    if found.is_empty() {
        return Err(SourceError::NotFound {
            source_name: root.display().to_string(),
            message: "holds no *.yaml, *.yml or *.json file".into(),
        });
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(sanitize("k9s_Linux_amd64.tar.gz"), "k9s_linux_amd64.tar.gz");
        assert_eq!(sanitize("My File (1).iso"), "my-file-1-iso");
        assert_eq!(sanitize("--x--"), "x");
        assert_eq!(file_stem(Path::new("/a/legacy.tar")), "legacy");
        assert_eq!(layout_stem("oci:/x/layouts/app/"), "app");
        let t = Target::of_name("app:1.0", "stem");
        assert_eq!(t.repository.as_deref(), Some("library/app"));
        assert_eq!(t.tag.as_deref(), Some("1.0"));
        let t = Target::of_name("1.0", "stem");
        assert_eq!(
            (t.repository.as_deref(), t.tag.as_deref()),
            (Some("stem"), Some("1.0"))
        );
    }
}
