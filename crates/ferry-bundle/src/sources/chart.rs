//! Helm charts in Helm's OCI form (helm.sh/docs/topics/registries, and
//! Helm's `pkg/registry`): a manifest whose config
//! (`application/vnd.cncf.helm.config.v1+json`) is the chart's
//! `Chart.yaml` as JSON and whose one layer
//! (`application/vnd.cncf.helm.chart.content.v1.tar+gzip`) is the packaged
//! chart, tagged with the chart version (`+` written `_`, as Helm does),
//! so that `helm pull oci://HOST/REPO --version V` works at the site.
//!
//! Charts come from an OCI registry (already in that form: pulled like an
//! artifact), a classic chart repository (`index.yaml` lists each version's
//! URLs and sha256), or a local `.tgz`. The `.tgz` is stored unchanged;
//! `Chart.yaml` is read from it in place (gzip + tar streamed from the
//! cache).

use std::collections::BTreeMap;
use std::io::Read;

use ferry_oci::{Descriptor, Digest, media_type};
use serde::Deserialize;

use crate::cache::ContentCache;
use crate::sources::artifact::put_manifest;
use crate::sources::{RootManifest, SourceError};

/// Largest Chart.yaml read.
const CHART_YAML_LIMIT: u64 = 1024 * 1024;
/// Largest index.yaml read (large public repositories are tens of MB).
pub const INDEX_LIMIT: u64 = 256 * 1024 * 1024;

/// Chart.yaml fields Helm's `chart.Metadata` has (its JSON form is the
/// OCI config); the string ones are written as strings even when YAML
/// read them as numbers (`appVersion: 1.0`), as Helm does.
const STRING_FIELDS: &[&str] = &[
    "name",
    "home",
    "version",
    "description",
    "icon",
    "apiVersion",
    "condition",
    "tags",
    "appVersion",
    "kubeVersion",
    "type",
];
const OTHER_FIELDS: &[&str] = &[
    "sources",
    "keywords",
    "maintainers",
    "deprecated",
    "annotations",
    "dependencies",
];

/// A chart's identity and its OCI config.
#[derive(Debug, Clone)]
pub struct ChartMeta {
    pub name: String,
    pub version: String,
    pub description: Option<String>,
    /// Chart.yaml as JSON.
    pub config: Vec<u8>,
}

/// Reads Chart.yaml from the packaged chart `tgz` in the cache. Blocking.
pub fn read_meta(cache: &ContentCache, tgz: &Digest, what: &str) -> Result<ChartMeta, SourceError> {
    let invalid = |message: String| SourceError::Invalid {
        source_name: what.to_string(),
        message,
    };
    let (file, _) = cache
        .open_blob(tgz)?
        .ok_or_else(|| invalid(format!("chart {tgz} is not in the cache")))?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let not_chart = |e: std::io::Error| invalid(format!("not a packaged chart (.tgz): {e}"));
    let mut yaml = None;
    for entry in archive.entries().map_err(not_chart)? {
        let entry = entry.map_err(not_chart)?;
        let path = entry.path().map_err(not_chart)?.into_owned();
        let parts: Vec<_> = path.components().collect();
        if parts.len() == 2 && parts[1].as_os_str() == "Chart.yaml" {
            let mut text = String::new();
            entry
                .take(CHART_YAML_LIMIT)
                .read_to_string(&mut text)
                .map_err(not_chart)?;
            yaml = Some(text);
            break;
        }
    }
    let yaml =
        yaml.ok_or_else(|| invalid("no <chart>/Chart.yaml inside: not a Helm chart".into()))?;
    let value: serde_json::Value =
        serde_saphyr::from_str(&yaml).map_err(|e| invalid(format!("Chart.yaml: {e}")))?;
    let map = value
        .as_object()
        .ok_or_else(|| invalid("Chart.yaml is not a map".into()))?;
    let mut config = serde_json::Map::new();
    for (key, value) in map {
        if STRING_FIELDS.contains(&key.as_str()) {
            let text = match value {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Null => continue,
                other => other.to_string(),
            };
            config.insert(key.clone(), serde_json::Value::String(text));
        } else if OTHER_FIELDS.contains(&key.as_str()) {
            config.insert(key.clone(), value.clone());
        }
    }
    let field = |k: &str| config.get(k).and_then(|v| v.as_str()).map(str::to_string);
    let name = field("name").ok_or_else(|| invalid("Chart.yaml has no name".into()))?;
    let version = field("version").ok_or_else(|| invalid("Chart.yaml has no version".into()))?;
    Ok(ChartMeta {
        description: field("description"),
        name,
        version,
        config: serde_json::to_vec(&config).expect("config serializes"),
    })
}

/// Writes the Helm OCI manifest of the chart `tgz` into the cache.
pub fn helm_manifest(
    cache: &ContentCache,
    meta: &ChartMeta,
    tgz: &Digest,
    tgz_size: u64,
    what: &str,
) -> Result<RootManifest, SourceError> {
    let config = cache.put_bytes(&meta.config)?;
    let mut annotations = BTreeMap::from([
        (media_type::ANNOTATION_TITLE.to_string(), meta.name.clone()),
        (
            "org.opencontainers.image.version".to_string(),
            meta.version.clone(),
        ),
    ]);
    if let Some(d) = &meta.description {
        annotations.insert("org.opencontainers.image.description".into(), d.clone());
    }
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_MANIFEST,
        "config": Descriptor::new(media_type::HELM_CONFIG, config, meta.config.len() as u64),
        "layers": [Descriptor::new(media_type::HELM_CHART, tgz.clone(), tgz_size)],
        "annotations": annotations,
    });
    put_manifest(cache, &manifest, what)
}

/// The tag Helm pushes a chart version under (OCI tags cannot hold `+`).
pub fn version_tag(version: &str) -> String {
    version.replace('+', "_")
}

/// The parts of a chart repository's `index.yaml` ferry needs.
#[derive(Debug, Deserialize)]
pub struct RepoIndex {
    #[serde(default)]
    pub entries: BTreeMap<String, Vec<RepoChart>>,
}

#[derive(Debug, Deserialize)]
pub struct RepoChart {
    #[serde(deserialize_with = "string_like")]
    pub version: String,
    #[serde(default)]
    pub urls: Vec<String>,
    /// sha256 of the .tgz (hex).
    #[serde(default)]
    pub digest: Option<String>,
}

fn string_like<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let v = serde_json::Value::deserialize(d)?;
    Ok(match v {
        serde_json::Value::String(s) => s,
        other => other.to_string(),
    })
}

impl RepoIndex {
    pub fn parse(text: &[u8], what: &str) -> Result<RepoIndex, SourceError> {
        let text = std::str::from_utf8(text).map_err(|e| SourceError::Invalid {
            source_name: what.to_string(),
            message: format!("index.yaml is not UTF-8: {e}"),
        })?;
        // Public repositories list tens of thousands of versions: far
        // more nodes than the defaults meant for configuration files allow.
        let mut budget = serde_saphyr::Budget::default();
        budget.max_events = 100_000_000;
        budget.max_nodes = 50_000_000;
        budget.max_total_scalar_bytes = INDEX_LIMIT as usize;
        budget.max_reader_input_bytes = Some(INDEX_LIMIT as usize);
        let mut options = serde_saphyr::Options::default();
        options.budget = Some(budget);
        serde_saphyr::from_str_with_options(text, options).map_err(|e| SourceError::Invalid {
            source_name: what.to_string(),
            message: format!("index.yaml: {e}"),
        })
    }

    /// The entry for `name` at `version` (a leading `v` is optional on
    /// either side, as Helm allows).
    pub fn find(&self, name: &str, version: &str, what: &str) -> Result<&RepoChart, SourceError> {
        let versions = self
            .entries
            .get(name)
            .ok_or_else(|| SourceError::NotFound {
                source_name: what.to_string(),
                message: format!(
                    "has no chart named {name:?} ({} charts: {})",
                    self.entries.len(),
                    self.entries
                        .keys()
                        .take(20)
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            })?;
        let bare = |v: &str| v.strip_prefix('v').unwrap_or(v).to_string();
        versions
            .iter()
            .find(|c| c.version == version)
            .or_else(|| versions.iter().find(|c| bare(&c.version) == bare(version)))
            .ok_or_else(|| SourceError::NotFound {
                source_name: what.to_string(),
                message: format!(
                    "has no version {version} of {name} (it has {})",
                    versions
                        .iter()
                        .take(20)
                        .map(|c| c.version.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            })
    }
}
