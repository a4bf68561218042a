//! Customization and sysprep: the spec's changes applied to the assembled
//! tree, without running anything from the image.
//!
//! Each step edits the [`Rootfs`] the way the distribution's own tool
//! would leave the files (`useradd` → `/etc/passwd`, `/etc/shadow`, ...;
//! `systemctl enable` → `.wants/` symlinks; `update-ca-certificates` → the
//! trust bundle), so nothing depends on executing the image's binaries
//! on the build host. The order is fixed: accounts first (files may name
//! their owners), then files, directories and symlinks, CA certificates,
//! hostname, systemd, cloud-init, registry mirrors, the Kubernetes node
//! ([`crate::kubernetes`]), and sysprep last so
//! nothing a step writes survives as machine identity.

pub mod accounts;
pub mod certs;
pub mod cloud_init;
pub mod files;
pub mod mirrors;
pub mod sysprep;
pub mod systemd;

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::rootfs::{Meta, Rootfs, RootfsError, tree};
use crate::spec::ImageSpec;

#[derive(Debug, thiserror::Error)]
pub enum CustomizeError {
    #[error(transparent)]
    Rootfs(#[from] RootfsError),
    #[error("{what}: {message}")]
    Invalid { what: String, message: String },
    #[error(transparent)]
    Kubernetes(Box<crate::kubernetes::KubernetesError>),
    #[error("{path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl From<crate::kubernetes::KubernetesError> for CustomizeError {
    fn from(e: crate::kubernetes::KubernetesError) -> Self {
        CustomizeError::Kubernetes(Box::new(e))
    }
}

impl CustomizeError {
    pub(crate) fn invalid(what: impl Into<String>, message: impl Into<String>) -> Self {
        CustomizeError::Invalid {
            what: what.into(),
            message: message.into(),
        }
    }
}

/// Where file content named by the spec comes from besides inline text
/// and local files: file artifacts in ferry's store or a bundle.
pub trait ArtifactFiles {
    /// The files artifact `reference` holds and what its manifest says.
    fn describe(&self, reference: &str) -> Result<ArtifactInfo, String>;
    /// The bytes of `file` (one of [`ArtifactFiles::describe`]'s), checked
    /// against its digest as they stream: a mismatch fails the last read.
    fn open(&self, reference: &str, file: &ArtifactFile) -> Result<Box<dyn Read + Send>, String>;

    /// The bytes of file `file` (its title; `None`: the artifact's only
    /// file) of artifact `reference`, read whole: for small files.
    fn read(&self, reference: &str, file: Option<&str>) -> Result<Vec<u8>, String> {
        let info = self.describe(reference)?;
        let found = match file {
            Some(name) => info
                .files
                .iter()
                .find(|f| f.title == name || f.title.rsplit('/').next() == Some(name)),
            None if info.files.len() == 1 => info.files.first(),
            None => None,
        }
        .ok_or_else(|| {
            format!(
                "{reference} holds the files {}: name one with artifact_file",
                info.files
                    .iter()
                    .map(|f| f.title.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })?;
        let mut bytes = Vec::new();
        self.open(reference, found)?
            .read_to_end(&mut bytes)
            .map_err(|e| format!("{reference}: {}: {e}", found.title))?;
        Ok(bytes)
    }
}

/// A file artifact's manifest, as [`ArtifactFiles::describe`] reads it.
#[derive(Debug, Clone)]
pub struct ArtifactInfo {
    /// The digest of its manifest.
    pub digest: ferry_oci::Digest,
    /// The manifest's annotations (`org.opencontainers.image.version`).
    pub annotations: std::collections::BTreeMap<String, String>,
    /// Its files, one per titled layer, in the manifest's order.
    pub files: Vec<ArtifactFile>,
}

/// One file of an artifact: a layer titled `org.opencontainers.image.title`.
#[derive(Debug, Clone)]
pub struct ArtifactFile {
    pub title: String,
    pub digest: ferry_oci::Digest,
    pub size: u64,
}

/// What the steps need besides the spec.
pub struct Context<'a> {
    /// Relative paths in the spec start here.
    pub spec_dir: &'a Path,
    /// Modification time of everything ferry writes (SOURCE_DATE_EPOCH).
    pub mtime: i64,
    pub artifacts: &'a dyn ArtifactFiles,
    /// What a `kubernetes:` section needs besides the spec.
    pub kubernetes: &'a crate::kubernetes::Inputs,
}

impl Context<'_> {
    pub(crate) fn local(&self, path: &Path) -> PathBuf {
        self.spec_dir.join(path)
    }

    pub(crate) fn read_local(&self, path: &Path) -> Result<Vec<u8>, CustomizeError> {
        let full = self.local(path);
        std::fs::read(&full).map_err(|source| CustomizeError::Read {
            path: full.display().to_string(),
            source,
        })
    }

    /// Root-owned metadata dated like every other file ferry writes.
    pub(crate) fn meta(&self, mode: u32) -> Meta {
        Meta::root_owned(mode, self.mtime)
    }
}

/// What customization did, for the build report.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct CustomizeReport {
    pub files_written: usize,
    pub users: Vec<String>,
    pub units_enabled: Vec<String>,
    pub ca_certificates: usize,
    pub sysprep_removed: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kubernetes: Option<crate::kubernetes::KubernetesReport>,
}

/// Applies every step of `spec` to `rootfs`.
pub fn apply(
    spec: &ImageSpec,
    rootfs: &mut Rootfs,
    cx: &Context<'_>,
) -> Result<CustomizeReport, CustomizeError> {
    let mut report = CustomizeReport::default();
    accounts::apply(spec, rootfs, cx, &mut report)?;
    files::apply(spec, rootfs, cx, &mut report)?;
    certs::apply(&spec.ca_certificates, rootfs, cx, &mut report)?;
    if let Some(hostname) = &spec.hostname {
        set_hostname(rootfs, cx, hostname)?;
    }
    systemd::apply(&spec.systemd, rootfs, cx, &mut report)?;
    if let Some(seed) = &spec.cloud_init {
        cloud_init::apply(seed, spec.name.as_deref(), rootfs, cx)?;
    }
    if let Some(mirrors) = &spec.registry_mirrors {
        let node_registries = match &spec.kubernetes {
            Some(k) => crate::kubernetes::upstreams(k, &cx.kubernetes.matrix)?,
            None => Default::default(),
        };
        mirrors::apply(mirrors, &node_registries, rootfs, cx, &mut report)?;
    }
    if let Some(k) = &spec.kubernetes {
        report.kubernetes = Some(crate::kubernetes::apply(
            spec,
            k,
            cx.kubernetes,
            rootfs,
            cx,
        )?);
    }
    if spec.sysprep.enabled {
        report.sysprep_removed = sysprep::apply(rootfs, cx)?;
    }
    Ok(report)
}

/// `/etc/hostname`, and the `127.0.1.1` line of `/etc/hosts` Debian's
/// installer writes so the name resolves without DNS.
fn set_hostname(
    rootfs: &mut Rootfs,
    cx: &Context<'_>,
    hostname: &str,
) -> Result<(), CustomizeError> {
    let valid = !hostname.is_empty()
        && hostname.len() <= 63
        && hostname
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !hostname.starts_with('-');
    if !valid {
        return Err(CustomizeError::invalid(
            "hostname",
            format!("{hostname:?} is not a host name (a-z, 0-9 and -, at most 63)"),
        ));
    }
    write_file(
        rootfs,
        cx,
        "etc/hostname",
        format!("{hostname}\n").as_bytes(),
        0o644,
    )?;
    let hosts = rootfs
        .read(Path::new("etc/hosts"))?
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_else(|| "127.0.0.1\tlocalhost\n".into());
    let mut lines: Vec<String> = hosts
        .lines()
        .filter(|l| !l.starts_with("127.0.1.1"))
        .map(String::from)
        .collect();
    let at = lines
        .iter()
        .position(|l| l.starts_with("127.0.0.1"))
        .map_or(0, |i| i + 1);
    lines.insert(at, format!("127.0.1.1\t{hostname}"));
    write_file(
        rootfs,
        cx,
        "etc/hosts",
        (lines.join("\n") + "\n").as_bytes(),
        0o644,
    )
}

/// Writes `content` at image path `path` (relative), creating missing
/// directories, keeping the mode and owner of a file it replaces.
pub(crate) fn write_file(
    rootfs: &mut Rootfs,
    cx: &Context<'_>,
    path: &str,
    content: &[u8],
    default_mode: u32,
) -> Result<(), CustomizeError> {
    let image_path = tree::normalize(path.as_bytes()).map_err(RootfsError::from)?;
    let resolved = rootfs.ensure_parents(&image_path, cx.mtime)?;
    let meta = match rootfs.tree().get(&resolved) {
        Some(existing) => Meta {
            mtime: cx.mtime,
            xattrs: Default::default(),
            ..existing.meta.clone()
        },
        None => cx.meta(default_mode),
    };
    rootfs.file(&resolved, meta, &mut &content[..])?;
    Ok(())
}

/// An octal mode from the spec (`"0644"`, `"755"`).
pub(crate) fn parse_mode(what: &str, text: &str) -> Result<u32, CustomizeError> {
    u32::from_str_radix(text.trim_start_matches("0o"), 8)
        .ok()
        .filter(|m| *m <= 0o7777)
        .ok_or_else(|| CustomizeError::invalid(what, format!("mode {text:?} is not octal (0644)")))
}
