//! `ferry.yaml`: what a bundle carries, as the operator writes it
//! (docs/bundle.md, "The spec file").
//!
//! Sections: `images`, `artifacts`, `charts`, `files`, `manifests` and
//! `os_images` list entries; `platforms` is the default platform filter of
//! images; `hosts` says how to reach source registries and HTTP servers
//! (CA files, insecure, credentials by environment variable, never
//! inline: the spec is echoed into the bundle).
//!
//! Parsing is serde-saphyr (the YAML crate the netboot config uses too;
//! serde_yaml is unmaintained), which reports line and column. Every
//! struct refuses unknown fields, so a typo is an error naming the field
//! and its line, not a silently ignored setting. Checks that need more
//! than one field (exactly one of `path`/`url`, a valid sha256) run inside
//! deserialization (`try_from`), so their errors carry a line too.
//! Entries that are just a reference or a path may be written as a plain
//! string (`- nginx:1.27`).
//!
//! The JSON schema ([`Spec::json_schema`]) is generated from these types
//! and committed as `docs/ferry.schema.json`.

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::de::{self, DeserializeOwned, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

/// Artifact type of a plain file (ORAS-style artifact, one layer per file).
pub const FILE_ARTIFACT_TYPE: &str = "application/vnd.ferry.file.v1";
/// Artifact type of an OS image or ISO stored as a file.
pub const OS_IMAGE_ARTIFACT_TYPE: &str = "application/vnd.ferry.os-image.v1";
/// Artifact type of a set of Kubernetes manifests.
pub const MANIFESTS_ARTIFACT_TYPE: &str = "application/vnd.ferry.manifests.v1";

/// A spec file (`ferry.yaml`, and `image.yaml` of ferry-image) that
/// cannot be read or parsed.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("cannot read the spec file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
}

/// The text of spec file `path`.
pub fn read_spec(path: &Path) -> Result<String, SpecError> {
    std::fs::read_to_string(path).map_err(|source| SpecError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Parses the YAML spec `text` into `T`; `path` names the file in errors.
pub fn from_yaml<T: serde::de::DeserializeOwned>(text: &str, path: &Path) -> Result<T, SpecError> {
    serde_saphyr::from_str(text).map_err(|e| {
        // The message starts "error: line N column M: ...", and its
        // snippet calls the file `<input>`: name it.
        let message = e.to_string();
        let message = message.strip_prefix("error: ").unwrap_or(&message);
        SpecError::Parse {
            path: path.to_path_buf(),
            message: message.replace("<input>", &path.display().to_string()),
        }
    })
}

/// The whole spec file.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// A name for the bundle, shown by `ferry bundle inspect`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Platforms kept from multi-platform images and OS images, unless an
    /// entry lists its own (`linux/amd64`, `linux/arm64/v8`). Empty or
    /// absent: all platforms. `ferry bundle create --platform` replaces it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub platforms: Vec<PlatformFilter>,
    /// How to reach source hosts, by `host[:port]` as written in
    /// references and URLs.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub hosts: BTreeMap<String, HostSpec>,
    /// Also carry what refers to each image from a registry: signatures,
    /// SBOMs and attestations, found with the OCI referrers API (or its tag
    /// fallback) and under cosign's `sha256-<hex>.sig|.att|.sbom` tags.
    /// An image's own `referrers` overrides it. Default: no.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub referrers: bool,
    /// Container images.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "entries"
    )]
    #[schemars(schema_with = "entries_schema::<ImageSpec>")]
    pub images: Vec<ImageSpec>,
    /// Any OCI artifact (a pack, a signature, an SBOM), copied as it is.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "entries"
    )]
    #[schemars(schema_with = "entries_schema::<ArtifactSpec>")]
    pub artifacts: Vec<ArtifactSpec>,
    /// Helm charts, stored with Helm's OCI media types.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "entries"
    )]
    #[schemars(schema_with = "entries_schema::<ChartSpec>")]
    pub charts: Vec<ChartSpec>,
    /// Plain files, stored as ORAS-style artifacts.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "entries"
    )]
    #[schemars(schema_with = "entries_schema::<FileSpec>")]
    pub files: Vec<FileSpec>,
    /// Kubernetes manifests (YAML), relocated to the site registry at push.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "entries"
    )]
    #[schemars(schema_with = "entries_schema::<ManifestsSpec>")]
    pub manifests: Vec<ManifestsSpec>,
    /// OS images and ISOs: an OCI image, or a file.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "entries"
    )]
    #[schemars(schema_with = "entries_schema::<OsImageSpec>")]
    pub os_images: Vec<OsImageSpec>,
}

/// How to reach one source host.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HostSpec {
    /// Accept any TLS certificate (registries: and fall back to plain
    /// HTTP). Only for hosts you trust on a network you trust.
    #[serde(default, skip_serializing_if = "is_false")]
    pub insecure: bool,
    /// The registry speaks plain HTTP only.
    #[serde(default, skip_serializing_if = "is_false")]
    pub plain_http: bool,
    /// PEM file of CA certificates trusted for this host, on top of the
    /// system's (relative to the spec file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// User name for this host (registries and HTTP servers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Name of the environment variable holding the password or token.
    /// Credentials otherwise come from `docker login` / `podman login`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_env: Option<String>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// A platform filter: `os/architecture[/variant]`, or `all`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(try_from = "String", into = "String")]
#[schemars(with = "String")]
pub struct PlatformFilter {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
    /// `all`: keep every platform.
    pub all: bool,
}

impl PlatformFilter {
    pub fn all() -> Self {
        PlatformFilter {
            os: String::new(),
            architecture: String::new(),
            variant: None,
            all: true,
        }
    }

    /// Does `platform` pass this filter? The variant is compared only if
    /// the filter names one; `arm64` and `arm64/v8` are the same thing
    /// (image-spec "Platform Variants").
    pub fn matches(&self, platform: &ferry_oci::manifest::Platform) -> bool {
        if self.all {
            return true;
        }
        if platform.os != self.os || platform.architecture != self.architecture {
            return false;
        }
        let normalize = |v: Option<&str>| match (self.architecture.as_str(), v) {
            ("arm64", None) => Some("v8".to_string()),
            (_, v) => v.map(str::to_string),
        };
        match &self.variant {
            None => true,
            Some(v) => normalize(Some(v)) == normalize(platform.variant.as_deref()),
        }
    }
}

impl TryFrom<String> for PlatformFilter {
    type Error = String;

    fn try_from(value: String) -> Result<Self, String> {
        if value == "all" {
            return Ok(PlatformFilter::all());
        }
        let parts: Vec<&str> = value.split('/').collect();
        let valid = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
        };
        match parts.as_slice() {
            [os, arch] | [os, arch, _] if valid(os) && valid(arch) => {
                let variant = parts.get(2).map(|v| v.to_string());
                if variant.as_deref().is_some_and(|v| !valid(v)) {
                    return Err(format!("invalid platform {value:?}"));
                }
                Ok(PlatformFilter {
                    os: os.to_string(),
                    architecture: arch.to_string(),
                    variant,
                    all: false,
                })
            }
            _ => Err(format!(
                "invalid platform {value:?}: expected os/architecture[/variant] (linux/amd64, linux/arm/v7) or all"
            )),
        }
    }
}

impl From<PlatformFilter> for String {
    fn from(p: PlatformFilter) -> String {
        p.to_string()
    }
}

impl std::str::FromStr for PlatformFilter {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        PlatformFilter::try_from(s.to_string())
    }
}

impl fmt::Display for PlatformFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.all {
            return f.write_str("all");
        }
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// How a docker-archive's uncompressed layers are stored in the bundle.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// zstd level 3 (the default): about gzip's size at several times
    /// its speed; pulled by containerd >= 1.5, Docker >= 23, CRI-O, podman.
    #[default]
    Zstd,
    /// gzip: for old runtimes that cannot pull zstd layers.
    Gzip,
}

/// A container image.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ImageSpec {
    /// Where it comes from: a registry reference (`nginx:1.27`,
    /// `registry.example/app@sha256:...`), `oci:DIR[:REF]` (an OCI layout
    /// directory), `oci-archive:FILE[:REF]` (a tar of one) or
    /// `docker-archive:FILE[:REF]` (`docker save` output). Paths are
    /// relative to the spec file.
    #[serde(rename = "ref")]
    pub reference: String,
    /// Platforms to keep, overriding the spec's `platforms`; `[all]` keeps
    /// every platform.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub platforms: Vec<PlatformFilter>,
    /// Repository at the target (default: the source's path without the
    /// registry, `docker.io/library/nginx` -> `library/nginx`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    /// Tag at the target (default: the source's tag; none for an image
    /// pinned by digest only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// docker-archive only: how its uncompressed layers are compressed
    /// (`zstd`, the default, or `gzip`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compression: Option<Compression>,
    /// Registry sources only: also carry the image's signatures, SBOMs and
    /// attestations (see the spec's `referrers`, which this overrides).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub referrers: Option<bool>,
}

/// An OCI artifact copied as it is (every manifest of an index, every blob).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ArtifactSpec {
    /// Registry reference, `oci:DIR[:REF]` or `oci-archive:FILE[:REF]`.
    #[serde(rename = "ref")]
    pub reference: String,
    /// Repository at the target (default: the source's path).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    /// Tag at the target (default: the source's tag).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
}

/// A Helm chart: exactly one of `oci`, `repo` (with `name` and `version`)
/// or `path`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChartSpec {
    /// A chart in an OCI registry: `oci://host/path/name` (with `version`)
    /// or `oci://host/path/name:version`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oci: Option<String>,
    /// A classic chart repository: the URL under which `index.yaml` is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo: Option<String>,
    /// The chart's name in `repo`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// A packaged chart (`helm package` output), relative to the spec file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// The chart version: required with `repo`, and with `oci` unless the
    /// reference carries it; checked against Chart.yaml with `path`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Repository at the target (default `charts/<name>`; for `oci`, the
    /// source's path).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
}

/// A plain file: exactly one of `path` or `url`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileSpec {
    /// A local file, relative to the spec file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// An HTTP(S) URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Expected SHA-256 of the content (64 hex digits, as `sha256sum`
    /// prints); a different file is refused. Lets a re-run skip the
    /// download.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// The file's name in the artifact (`org.opencontainers.image.title`;
    /// default: the last component of `path` or `url`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Media type of the file's layer (default `application/octet-stream`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// The artifact's `artifactType` (default `application/vnd.ferry.file.v1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// Repository at the target (default `files/<name>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    /// Tag at the target (default `latest`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
}

/// Kubernetes manifests: a YAML file or a directory of them.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ManifestsSpec {
    /// A file, or a directory searched (recursively) for `*.yaml`, `*.yml`
    /// and `*.json`; relative to the spec file.
    pub path: PathBuf,
    /// A name for the set (default: the last component of `path`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Repository at the target (default `manifests/<name>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    /// Tag at the target (default `latest`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
}

/// An OS image or ISO: an OCI image (`ref`), or a file (`path` or `url`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OsImageSpec {
    /// An OS image in OCI form, referenced like an image's `ref`.
    #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// Platforms to keep (with `ref`), overriding the spec's `platforms`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub platforms: Vec<PlatformFilter>,
    /// A local ISO or disk image, relative to the spec file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// An HTTP(S) URL of an ISO or disk image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Expected SHA-256 of the file (64 hex digits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// The file's name in the artifact (default: from `path` or `url`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Media type of the file's layer (default: `application/x-iso9660-image`
    /// for `.iso`, else `application/octet-stream`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// Repository at the target (default: the source's path for `ref`,
    /// `os/<name>` for files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    /// Tag at the target (default: the source's tag; `latest` for files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
}

/// What every entry type tells the list deserializer: whether it may be
/// written as a plain string, and the checks that span several fields.
pub trait SpecEntry: DeserializeOwned + JsonSchema {
    /// What a plain string means, for the schema (`None`: maps only).
    const SHORTHAND: Option<&'static str> = None;

    fn from_shorthand(_value: String) -> Option<Self> {
        None
    }

    fn check(&self) -> Result<(), String> {
        Ok(())
    }
}

impl SpecEntry for ImageSpec {
    const SHORTHAND: Option<&'static str> = Some("the image's `ref`");

    fn from_shorthand(reference: String) -> Option<Self> {
        Some(ImageSpec {
            reference,
            platforms: Vec::new(),
            repository: None,
            tag: None,
            compression: None,
            referrers: None,
        })
    }

    fn check(&self) -> Result<(), String> {
        if self.compression.is_some() && !self.reference.starts_with("docker-archive:") {
            return Err("`compression` applies to docker-archive: sources only (other layers are stored as they are)".into());
        }
        let local = ["oci:", "oci-archive:", "docker-archive:"]
            .iter()
            .any(|p| self.reference.starts_with(p));
        if self.referrers == Some(true) && local {
            return Err("`referrers` applies to registry sources only".into());
        }
        Ok(())
    }
}

impl SpecEntry for ArtifactSpec {
    const SHORTHAND: Option<&'static str> = Some("the artifact's `ref`");

    fn from_shorthand(reference: String) -> Option<Self> {
        Some(ArtifactSpec {
            reference,
            repository: None,
            tag: None,
        })
    }

    fn check(&self) -> Result<(), String> {
        if self.reference.starts_with("docker-archive:") {
            return Err("a docker-archive holds images: list it under `images`".into());
        }
        Ok(())
    }
}

impl SpecEntry for ChartSpec {
    fn check(&self) -> Result<(), String> {
        let given = [self.oci.is_some(), self.repo.is_some(), self.path.is_some()];
        if given.iter().filter(|g| **g).count() != 1 {
            return Err("a chart needs exactly one of `oci`, `repo` or `path`".into());
        }
        if self.repo.is_some() && (self.name.is_none() || self.version.is_none()) {
            return Err("a chart from `repo` needs `name` and `version`".into());
        }
        if self.repo.is_none() && self.name.is_some() {
            return Err("`name` goes with `repo` (the chart's name in that repository)".into());
        }
        if let Some(oci) = &self.oci
            && !oci.starts_with("oci://")
        {
            return Err(format!("`oci` must start with oci:// (got {oci:?})"));
        }
        if let Some(repo) = &self.repo {
            check_http_url(repo)?;
        }
        Ok(())
    }
}

impl SpecEntry for FileSpec {
    const SHORTHAND: Option<&'static str> = Some("a local path or an http(s):// URL");

    fn from_shorthand(source: String) -> Option<Self> {
        let mut file = FileSpec::default();
        if source.starts_with("http://") || source.starts_with("https://") {
            file.url = Some(source);
        } else {
            file.path = Some(PathBuf::from(source));
        }
        Some(file)
    }

    fn check(&self) -> Result<(), String> {
        check_file_source(self.path.is_some(), self.url.as_deref(), "a file")?;
        self.sha256.as_deref().map_or(Ok(()), check_sha256)
    }
}

impl SpecEntry for ManifestsSpec {
    const SHORTHAND: Option<&'static str> = Some("the `path`");

    fn from_shorthand(path: String) -> Option<Self> {
        Some(ManifestsSpec {
            path: PathBuf::from(path),
            name: None,
            repository: None,
            tag: None,
        })
    }
}

impl SpecEntry for OsImageSpec {
    fn check(&self) -> Result<(), String> {
        let is_file = self.path.is_some() || self.url.is_some();
        if self.reference.is_some() == is_file {
            return Err("an OS image needs exactly one of `ref`, `path` or `url`".into());
        }
        if is_file {
            check_file_source(self.path.is_some(), self.url.as_deref(), "an OS image")?;
            if !self.platforms.is_empty() {
                return Err("`platforms` applies to OS images given by `ref`".into());
            }
        } else if self.sha256.is_some() || self.name.is_some() || self.media_type.is_some() {
            return Err(
                "`sha256`, `name` and `media_type` apply to OS images given by `path` or `url`"
                    .into(),
            );
        }
        self.sha256.as_deref().map_or(Ok(()), check_sha256)
    }
}

fn check_file_source(has_path: bool, url: Option<&str>, what: &str) -> Result<(), String> {
    if has_path == url.is_some() {
        return Err(format!("{what} needs exactly one of `path` or `url`"));
    }
    url.map_or(Ok(()), check_http_url)
}

fn check_http_url(url: &str) -> Result<(), String> {
    match url::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => Ok(()),
        _ => Err(format!("{url:?} is not an http:// or https:// URL")),
    }
}

fn check_sha256(sha: &str) -> Result<(), String> {
    let hex = sha.strip_prefix("sha256:").unwrap_or(sha);
    if hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        Ok(())
    } else {
        Err(format!(
            "sha256 {sha:?} is not 64 lowercase hex digits (as sha256sum prints)"
        ))
    }
}

/// Deserializes a list of entries: each a map (the derived `Deserialize`,
/// which refuses unknown fields) or, where allowed, a plain string; then
/// [`SpecEntry::check`]. Errors raised here carry the entry's line.
fn entries<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: SpecEntry,
{
    struct Element<T>(T);

    impl<'de, T: SpecEntry> Deserialize<'de> for Element<T> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_any(ElementVisitor(PhantomData))
        }
    }

    struct ElementVisitor<T>(PhantomData<T>);

    impl<'de, T: SpecEntry> Visitor<'de> for ElementVisitor<T> {
        type Value = Element<T>;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            match T::SHORTHAND {
                Some(s) => write!(f, "a map, or a string ({s})"),
                None => f.write_str("a map"),
            }
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Element<T>, E> {
            match T::from_shorthand(v.to_string()) {
                Some(entry) => entry.check().map(|()| Element(entry)).map_err(E::custom),
                None => Err(E::invalid_type(de::Unexpected::Str(v), &self)),
            }
        }

        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Element<T>, A::Error> {
            let entry = T::deserialize(de::value::MapAccessDeserializer::new(map))?;
            entry.check().map_err(de::Error::custom)?;
            Ok(Element(entry))
        }
    }

    let list: Vec<Element<T>> = Vec::deserialize(deserializer)?;
    Ok(list.into_iter().map(|e| e.0).collect())
}

/// Schema of an entry list: items are maps, or strings where allowed.
fn entries_schema<T: SpecEntry>(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let map = generator.subschema_for::<T>();
    match T::SHORTHAND {
        Some(what) => schemars::json_schema!({
            "type": "array",
            "items": {"anyOf": [{"type": "string", "description": what}, map]}
        }),
        None => schemars::json_schema!({"type": "array", "items": map}),
    }
}

impl Spec {
    /// JSON schema of the file, for editors and `docs/ferry.schema.json`.
    pub fn json_schema() -> serde_json::Value {
        serde_json::to_value(schemars::schema_for!(Spec)).expect("schema serializes")
    }

    /// Reads and parses `path`.
    pub fn load(path: &Path) -> Result<Spec, SpecError> {
        Spec::parse(&read_spec(path)?, path)
    }

    /// Parses `text`; `path` names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Spec, SpecError> {
        let spec: Spec = from_yaml(text, path)?;
        if spec.is_empty() {
            return Err(SpecError::Parse {
                path: path.to_path_buf(),
                message: "the spec lists nothing to carry: add images, artifacts, charts, files, manifests or os_images".into(),
            });
        }
        Ok(spec)
    }

    fn is_empty(&self) -> bool {
        self.images.is_empty()
            && self.artifacts.is_empty()
            && self.charts.is_empty()
            && self.files.is_empty()
            && self.manifests.is_empty()
            && self.os_images.is_empty()
    }

    /// The spec as JSON, for `ferry/bundle.json`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("spec serializes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_oci::manifest::Platform;

    fn platform(os: &str, arch: &str, variant: Option<&str>) -> Platform {
        Platform {
            architecture: arch.into(),
            os: os.into(),
            variant: variant.map(str::to_string),
            os_version: None,
            os_features: None,
        }
    }

    #[test]
    fn platform_filters() {
        let f: PlatformFilter = "linux/arm64".parse().unwrap();
        assert!(f.matches(&platform("linux", "arm64", Some("v8"))));
        assert!(f.matches(&platform("linux", "arm64", None)));
        assert!(!f.matches(&platform("linux", "amd64", None)));
        let v8: PlatformFilter = "linux/arm64/v8".parse().unwrap();
        assert!(v8.matches(&platform("linux", "arm64", None)));
        let v7: PlatformFilter = "linux/arm/v7".parse().unwrap();
        assert!(v7.matches(&platform("linux", "arm", Some("v7"))));
        assert!(!v7.matches(&platform("linux", "arm", Some("v6"))));
        assert!(
            "all"
                .parse::<PlatformFilter>()
                .unwrap()
                .matches(&platform("windows", "amd64", None))
        );
        for bad in ["linux", "linux/", "/amd64", "a/b/c/d", "linux/amd 64"] {
            assert!(bad.parse::<PlatformFilter>().is_err(), "{bad}");
        }
        assert_eq!(v7.to_string(), "linux/arm/v7");
    }
}
