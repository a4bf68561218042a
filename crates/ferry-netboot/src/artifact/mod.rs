//! Boot artifacts: the kernel, initrds and other files a profile serves,
//! read in place from where they already are.
//!
//! A profile's [`Source`](crate::config::Source) is opened as a
//! [`SourceTree`] ([`iso`], [`dir`] or [`oci`]) and each needed path is
//! resolved once to a [`ServedFile`]: a backing file on local disk and the
//! byte ranges ([`Segment`]s) of that file which make up the artifact, in
//! order. An ISO's file is one range of the image (several for an ISO 9660
//! multi-extent file); a directory's file or an OCI blob is the whole
//! backing file. Serving a byte range of the artifact is then positioned
//! reads of the backing file (see [`ServedFile::read_at`]); nothing is
//! extracted, mounted or buffered whole.
//!
//! Which paths a profile needs comes from the profile (`kernel`, `initrd`,
//! `files`) or, when it names none, from the first [`layout`] whose kernel
//! and initrd exist in the source.
//!
//! A backing file can be replaced while ferry runs (a new ISO copied over
//! the old). [`ServedFile::open`] compares the file it opens with the one
//! that was resolved (inode, size, mtime) and fails with
//! [`Stale`], upon which [`ArtifactStore`] resolves the profile again, so a
//! client never gets bytes from the wrong offsets of a new image.

pub mod dir;
pub mod iso;
pub mod layout;
pub mod oci;

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::config::{Profile, Source};
use crate::error::ArtifactError;

/// What a profile's source is, to the resolver.
pub trait SourceTree {
    /// The file at `path` (relative, `/`-separated), if it exists and is
    /// a regular file.
    fn lookup(&mut self, path: &str) -> Result<Option<ServedFile>, ArtifactError>;
    /// Whether `path` names a file exactly, not only through a looser
    /// match `lookup` allows (an OCI artifact's bare `vmlinuz` title
    /// answers `lookup("live/vmlinuz")`). Layout detection prefers exact
    /// names, so a set titled for one layout is not taken for another.
    fn names_exactly(&mut self, path: &str) -> Result<bool, ArtifactError> {
        Ok(self.lookup(path)?.is_some())
    }
    /// For messages: "ISO /srv/kairos.iso".
    fn describe(&self) -> String;
}

/// A run of bytes of the backing file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// Offset in the backing file; `None` for a range that reads as zeros.
    pub offset: Option<u64>,
    pub len: u64,
}

/// Identity of one version of a backing file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint {
    pub dev: u64,
    pub inode: u64,
    pub len: u64,
    pub mtime_ns: i128,
}

impl Fingerprint {
    pub fn of(meta: &std::fs::Metadata) -> Fingerprint {
        Fingerprint {
            dev: meta.dev(),
            inode: meta.ino(),
            len: meta.len(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
        }
    }

    pub fn modified(&self) -> SystemTime {
        let secs = self.mtime_ns.div_euclid(1_000_000_000);
        let nanos = self.mtime_ns.rem_euclid(1_000_000_000);
        u64::try_from(secs)
            .map(|s| UNIX_EPOCH + Duration::new(s, nanos as u32))
            .unwrap_or(UNIX_EPOCH)
    }
}

/// The file on disk that holds an artifact's bytes.
#[derive(Clone)]
pub enum Backing {
    /// A file by path (an ISO image, a file in a directory); checked
    /// against its fingerprint on every open.
    Path(PathBuf),
    /// A blob in ferry's store, opened through the store (which checks the
    /// repository links it). Content-addressed, so it never changes.
    Blob {
        store: ferry_store::Store,
        repository: String,
        digest: ferry_oci::Digest,
    },
}

impl std::fmt::Debug for Backing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl Backing {
    pub fn describe(&self) -> String {
        match self {
            Backing::Path(p) => p.display().to_string(),
            Backing::Blob {
                repository, digest, ..
            } => format!("{repository}@{digest}"),
        }
    }
}

/// One file as served: where its bytes are and how to describe it to
/// HTTP caches.
#[derive(Debug, Clone)]
pub struct ServedFile {
    /// Where the bytes are.
    pub backing: Backing,
    pub fingerprint: Fingerprint,
    /// The artifact's bytes, in order.
    pub segments: Vec<Segment>,
    pub size: u64,
    /// Strong validator, quoted (RFC 9110 §8.8.3).
    pub etag: String,
    pub modified: SystemTime,
    /// "boot/kernel in ISO /srv/kairos.iso", for logs.
    pub origin: String,
}

/// The backing file changed since the artifact was resolved.
#[derive(Debug, thiserror::Error)]
#[error("{0} changed since it was read")]
pub struct Stale(pub String);

impl ServedFile {
    /// A file that is all of `backing` (a directory entry or a blob).
    pub fn whole(backing: Backing, meta: &std::fs::Metadata, etag: String, origin: String) -> Self {
        let fingerprint = Fingerprint::of(meta);
        ServedFile {
            backing,
            segments: vec![Segment {
                offset: Some(0),
                len: meta.len(),
            }],
            size: meta.len(),
            etag,
            modified: fingerprint.modified(),
            fingerprint,
            origin,
        }
    }

    /// Opens the backing file, checking it is still the resolved version.
    pub fn open(&self) -> io::Result<File> {
        match &self.backing {
            Backing::Path(path) => {
                let file = File::open(path)?;
                if Fingerprint::of(&file.metadata()?) != self.fingerprint {
                    return Err(io::Error::other(Stale(self.backing.describe())));
                }
                Ok(file)
            }
            Backing::Blob {
                store,
                repository,
                digest,
            } => match store.open_blob(repository, digest) {
                Ok(Some((file, _))) => Ok(file),
                Ok(None) => Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("blob {digest} is no longer in {repository}"),
                )),
                Err(e) => Err(io::Error::other(e.to_string())),
            },
        }
    }

    /// Where artifact byte `pos` is: the segment's backing offset for
    /// that byte (`None` in a zero-filled segment) and how many bytes of
    /// the segment follow it. `None` past the end.
    pub fn locate(&self, pos: u64) -> Option<(Option<u64>, u64)> {
        let mut start = 0u64;
        for seg in &self.segments {
            let end = start + seg.len;
            if pos < end {
                let within = pos - start;
                return Some((seg.offset.map(|o| o + within), seg.len - within));
            }
            start = end;
        }
        None
    }
}

/// What a file is for, which decides its URL name and how its fetch
/// shows in the inventory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Kernel,
    Initrd,
    Other,
}

/// The resolved files of one profile, by URL name.
#[derive(Debug, Clone)]
pub struct ProfileFiles {
    /// Layout that was recognized, if any.
    pub layout: Option<&'static str>,
    /// URL names of the initrds, in order (`initrd`, `initrd1`, ...).
    pub initrds: Vec<String>,
    pub files: BTreeMap<String, (Role, ServedFile)>,
    pub source: String,
}

impl ProfileFiles {
    /// Resolves every file the profile needs.
    pub fn resolve(
        profile_name: &str,
        profile: &Profile,
        store: Option<&ferry_store::Store>,
    ) -> Result<ProfileFiles, ArtifactError> {
        let mut tree: Box<dyn SourceTree> = match &profile.source {
            Source::Iso(path) => Box::new(iso::IsoTree::open(profile_name, path)?),
            Source::Dir(path) => Box::new(dir::DirTree::open(profile_name, path)?),
            Source::Oci(reference) => {
                let store = store.ok_or_else(|| ArtifactError::Oci {
                    profile: profile_name.to_string(),
                    message: "an oci source needs ferry's registry store".into(),
                })?;
                Box::new(oci::OciTree::open(
                    profile_name,
                    store,
                    reference,
                    profile.arch,
                )?)
            }
        };
        let source = tree.describe();
        let missing = |what: &str, file: &str| ArtifactError::Missing {
            profile: profile_name.to_string(),
            what: what.to_string(),
            file: file.to_string(),
            source_desc: source.clone(),
        };

        let mut files = BTreeMap::new();
        let mut layout_name = None;
        let (kernel_path, initrd_paths, rootfs_path) = match (&profile.kernel, &profile.initrd) {
            (Some(k), Some(i)) => (k.clone(), i.clone(), None),
            _ => {
                let found =
                    layout::detect(tree.as_mut())?.ok_or_else(|| ArtifactError::NoLayout {
                        profile: profile_name.to_string(),
                        source_desc: source.clone(),
                        tried: layout::describe_all(),
                    })?;
                layout_name = Some(found.name);
                (
                    profile.kernel.clone().unwrap_or(found.kernel),
                    profile.initrd.clone().unwrap_or_else(|| vec![found.initrd]),
                    found.rootfs,
                )
            }
        };
        let kernel = tree
            .lookup(&kernel_path)?
            .ok_or_else(|| missing("kernel", &kernel_path))?;
        files.insert("kernel".to_string(), (Role::Kernel, kernel));
        let mut initrds = Vec::new();
        for (i, path) in initrd_paths.iter().enumerate() {
            let file = tree.lookup(path)?.ok_or_else(|| missing("initrd", path))?;
            let name = if i == 0 {
                "initrd".to_string()
            } else {
                format!("initrd{i}")
            };
            files.insert(name.clone(), (Role::Initrd, file));
            initrds.push(name);
        }
        if let Some(path) = rootfs_path
            && !profile.files.contains_key("rootfs")
            && let Some(file) = tree.lookup(&path)?
        {
            files.insert("rootfs".to_string(), (Role::Other, file));
        }
        for (name, path) in &profile.files {
            let file = tree.lookup(path)?.ok_or_else(|| missing(name, path))?;
            files.insert(name.clone(), (Role::Other, file));
        }
        Ok(ProfileFiles {
            layout: layout_name,
            initrds,
            files,
            source,
        })
    }
}

/// Every profile's files, re-resolved when a backing file changes.
///
/// A profile whose `oci:` artifact is not in ferry's registry yet (or has
/// lost a blob) is not ready: it waits, with the reason, instead of
/// stopping the server, because the artifact is typically pushed into the
/// very registry this process serves. A waiting profile is resolved again
/// whenever it is asked for (a host boots) and by
/// [`ArtifactStore::retry_waiting`], so pushing the artifact is all it
/// takes.
pub struct ArtifactStore {
    profiles: BTreeMap<String, Profile>,
    store: Option<ferry_store::Store>,
    resolved: RwLock<BTreeMap<String, Arc<ProfileFiles>>>,
    /// Profiles that are not ready, with why.
    waiting: Mutex<BTreeMap<String, String>>,
}

impl ArtifactStore {
    /// Resolves every profile now, so that a missing file is a start-up
    /// error rather than a failed boot; only an artifact that is not in
    /// ferry's registry yet makes its profile wait.
    pub fn new(
        profiles: &BTreeMap<String, Profile>,
        store: Option<ferry_store::Store>,
    ) -> Result<ArtifactStore, ArtifactError> {
        let mut resolved = BTreeMap::new();
        let mut waiting = BTreeMap::new();
        for (name, profile) in profiles {
            match ProfileFiles::resolve(name, profile, store.as_ref()) {
                Ok(files) => {
                    resolved.insert(name.clone(), Arc::new(files));
                }
                Err(e @ ArtifactError::NotInRegistry { .. }) => {
                    waiting.insert(name.clone(), not_ready_reason(&e));
                }
                Err(e) => return Err(e),
            }
        }
        Ok(ArtifactStore {
            profiles: profiles.clone(),
            store,
            resolved: RwLock::new(resolved),
            waiting: Mutex::new(waiting),
        })
    }

    /// The profile's files; a waiting profile is resolved again first.
    /// Blocking.
    pub fn profile(&self, name: &str) -> Option<Arc<ProfileFiles>> {
        if let Some(files) = self.resolved.read().expect("artifacts lock").get(name) {
            return Some(files.clone());
        }
        if self.not_ready(name).is_some() {
            return self.resolve_waiting(name);
        }
        None
    }

    /// Why profile `name` is not ready, if it waits.
    pub fn not_ready(&self, name: &str) -> Option<String> {
        self.waiting
            .lock()
            .expect("waiting lock")
            .get(name)
            .cloned()
    }

    /// Every profile that waits, with why.
    pub fn waiting(&self) -> BTreeMap<String, String> {
        self.waiting.lock().expect("waiting lock").clone()
    }

    /// Resolves every waiting profile again; returns how many still wait.
    /// Blocking.
    pub fn retry_waiting(&self) -> usize {
        for name in self.waiting().keys() {
            self.resolve_waiting(name);
        }
        self.waiting.lock().expect("waiting lock").len()
    }

    /// The URL names of a profile's files; for a profile that waits, the
    /// names its configuration promises (kernel, initrds, its `files`, and
    /// `rootfs` when a layout may provide one), so that its templates can
    /// be checked before its artifact is there.
    pub fn file_names(&self, name: &str) -> Vec<String> {
        if let Some(files) = self.profile(name) {
            return files.files.keys().cloned().collect();
        }
        let Some(profile) = self.profiles.get(name) else {
            return Vec::new();
        };
        let mut names = vec!["kernel".to_string()];
        let initrds = profile.initrd.as_ref().map_or(1, Vec::len);
        names.extend((0..initrds).map(|i| match i {
            0 => "initrd".to_string(),
            i => format!("initrd{i}"),
        }));
        if profile.kernel.is_none() || profile.initrd.is_none() {
            names.push("rootfs".to_string());
        }
        names.extend(profile.files.keys().cloned());
        names
    }

    fn resolve_waiting(&self, name: &str) -> Option<Arc<ProfileFiles>> {
        let profile = self.profiles.get(name)?;
        match ProfileFiles::resolve(name, profile, self.store.as_ref()) {
            Ok(files) => {
                let files = Arc::new(files);
                self.resolved
                    .write()
                    .expect("artifacts lock")
                    .insert(name.to_string(), files.clone());
                if self
                    .waiting
                    .lock()
                    .expect("waiting lock")
                    .remove(name)
                    .is_some()
                {
                    tracing::info!("profile {name} is ready: {}", files.source);
                }
                Some(files)
            }
            Err(e) => {
                self.wait(name, &e);
                None
            }
        }
    }

    /// Marks profile `name` not ready because of `e`, saying so when the
    /// reason is new.
    fn wait(&self, name: &str, e: &ArtifactError) {
        let reason = not_ready_reason(e);
        let mut waiting = self.waiting.lock().expect("waiting lock");
        if waiting.get(name) != Some(&reason) {
            tracing::warn!("profile {name} is not ready: {reason}");
        }
        waiting.insert(name.to_string(), reason);
    }

    /// Opens a profile's file for reading, resolving the profile again if
    /// its backing file changed (or a blob went). Blocking.
    pub fn open(
        &self,
        profile: &str,
        name: &str,
    ) -> Result<Option<(Role, ServedFile, File)>, ArtifactError> {
        for attempt in 0..2 {
            let Some(files) = self.profile(profile) else {
                return Ok(None);
            };
            let Some((role, file)) = files.files.get(name) else {
                return Ok(None);
            };
            match file.open() {
                Ok(handle) => return Ok(Some((*role, file.clone(), handle))),
                Err(e) if attempt == 0 && (is_stale(&e) || is_gone_blob(file, &e)) => {
                    tracing::warn!(profile, file = %file.backing.describe(), "boot artifact changed; reading its layout again");
                    self.reresolve(profile)?;
                }
                Err(source) => {
                    return Err(ArtifactError::Open {
                        profile: profile.to_string(),
                        path: PathBuf::from(file.backing.describe()),
                        source,
                    });
                }
            }
        }
        Ok(None)
    }

    fn reresolve(&self, name: &str) -> Result<(), ArtifactError> {
        let Some(profile) = self.profiles.get(name) else {
            return Ok(());
        };
        match ProfileFiles::resolve(name, profile, self.store.as_ref()) {
            Ok(files) => {
                self.resolved
                    .write()
                    .expect("artifacts lock")
                    .insert(name.to_string(), Arc::new(files));
                Ok(())
            }
            Err(e @ ArtifactError::NotInRegistry { .. }) => {
                self.resolved.write().expect("artifacts lock").remove(name);
                self.wait(name, &e);
                Ok(())
            }
            Err(e) => Err(e),
        }
    }
}

/// Why a profile waits, without the "profile `x`:" its error starts with.
fn not_ready_reason(e: &ArtifactError) -> String {
    match e {
        ArtifactError::NotInRegistry { what, .. } => format!("{what} is not in ferry's registry"),
        other => other.to_string(),
    }
}

/// A registry blob that is no longer there (deleted, quarantined).
fn is_gone_blob(file: &ServedFile, e: &io::Error) -> bool {
    matches!(file.backing, Backing::Blob { .. }) && e.kind() == io::ErrorKind::NotFound
}

fn is_stale(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<Stale>())
}

/// `origin` text for a path inside a source.
pub(crate) fn origin(path: &str, source: &str) -> String {
    format!("{path} in {source}")
}

/// Splits a source-relative path into safe components: no empty, `.` or
/// `..` parts, so a profile path cannot leave its directory.
pub(crate) fn components(path: &str) -> Option<Vec<&str>> {
    let parts: Vec<&str> = path
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    if parts.is_empty() || parts.contains(&"..") {
        None
    } else {
        Some(parts)
    }
}

pub(crate) fn file_etag(fp: &Fingerprint, extra: &str) -> String {
    format!("\"{:x}-{:x}-{:x}{extra}\"", fp.inode, fp.len, fp.mtime_ns)
}

pub(crate) fn open_meta(profile: &str, path: &Path) -> Result<std::fs::Metadata, ArtifactError> {
    std::fs::metadata(path).map_err(|source| ArtifactError::Open {
        profile: profile.to_string(),
        path: path.to_path_buf(),
        source,
    })
}
