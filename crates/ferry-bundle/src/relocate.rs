//! What a site needs after a push to use what was pushed:
//!
//! - the bundle's Kubernetes manifests with every `image:` pointing at the
//!   target registry (`manifests/`);
//! - a containerd mirror configuration per upstream registry
//!   (`containerd/certs.d/<upstream>/hosts.toml`, the `config_path` layout
//!   of containerd's docs/hosts.md);
//! - a k3s / RKE2 `registries.yaml` with the same mirrors.
//!
//! Images land at `TARGET/PREFIX/<path without registry>`, so one mirror
//! rule per upstream registry (`docker.io`, `quay.io`, ...) maps it: the
//! containerd host gets `override_path` with `/v2/PREFIX`, k3s a rewrite.
//!
//! Image references in YAML are found line by line (`image: ref`, also as
//! a list item), not by parsing YAML: a manifest set may hold templates and
//! several documents per file, and the rewrite must keep every other byte,
//! comment and anchor as the vendor wrote it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use ferry_oci::{Reference, media_type};

use crate::format::{Entry, EntryKind};
use crate::graph;
use crate::push::Target;
use crate::reader::Bundle;

#[derive(Debug, thiserror::Error)]
pub enum RelocateError {
    #[error("{0}")]
    Graph(#[from] graph::GraphError),
    #[error("writing {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("reading {what} from the bundle: {source}")]
    Read {
        what: String,
        source: std::io::Error,
    },
}

/// How the site reaches the target.
pub struct Access {
    /// `https://host:port/` or `http://host:port/`, as the push found it.
    pub base_url: String,
    pub skip_verify: bool,
}

/// Writes the site files for `bundle` pushed to `target` under `out`;
/// `repository_of` says where the push put an entry (prefix included).
/// Returns the files written.
pub fn write_site_files(
    bundle: &Bundle,
    target: &Target,
    repository_of: &dyn Fn(&Entry) -> String,
    access: &Access,
    out: &Path,
) -> Result<Vec<PathBuf>, RelocateError> {
    let mut written = Vec::new();
    let images: BTreeMap<String, String> = bundle
        .manifest
        .entries
        .iter()
        .filter(|e| {
            matches!(
                e.kind,
                EntryKind::Image | EntryKind::OsImage | EntryKind::Artifact
            )
        })
        .filter_map(|e| {
            let source: Reference = e.source.parse().ok()?;
            Some((source.name(), repository_of(e)))
        })
        .collect();
    for entry in bundle
        .manifest
        .entries
        .iter()
        .filter(|e| e.kind == EntryKind::Manifests)
    {
        let graph = graph::walk(bundle, &entry.descriptor)?;
        for layer in &graph.blobs {
            let Some(title) = layer.annotation(media_type::ANNOTATION_TITLE) else {
                continue;
            };
            let bytes = bundle
                .read_blob(&layer.digest)
                .map_err(|source| RelocateError::Read {
                    what: title.to_string(),
                    source,
                })?
                .unwrap_or_default();
            let text = String::from_utf8_lossy(&bytes);
            let relocated = relocate_yaml(&text, target, &images);
            // The title is a file name from the bundle: keep only its last
            // component so it cannot write outside `out`.
            let name = Path::new(title)
                .file_name()
                .map_or_else(|| "manifest.yaml".into(), |n| n.to_os_string());
            let path = out.join("manifests").join(name);
            write(&path, relocated.as_bytes())?;
            written.push(path);
        }
    }
    let upstreams: BTreeSet<String> = bundle
        .manifest
        .entries
        .iter()
        .filter_map(|e| e.source.parse::<Reference>().ok())
        .map(|r| r.registry)
        .collect();
    for upstream in &upstreams {
        let path = out
            .join("containerd/certs.d")
            .join(upstream)
            .join("hosts.toml");
        write(&path, hosts_toml(upstream, target, access).as_bytes())?;
        written.push(path);
    }
    if !upstreams.is_empty() {
        let path = out.join("registries.yaml");
        write(
            &path,
            registries_yaml(&upstreams, target, access).as_bytes(),
        )?;
        written.push(path);
    }
    Ok(written)
}

fn write(path: &Path, data: &[u8]) -> Result<(), RelocateError> {
    let err = |source| RelocateError::Write {
        path: path.display().to_string(),
        source,
    };
    std::fs::create_dir_all(path.parent().expect("has a parent")).map_err(err)?;
    std::fs::write(path, data).map_err(err)
}

/// Rewrites `image:` references to the target; other lines are unchanged.
pub fn relocate_yaml(text: &str, target: &Target, images: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        out.push_str(&relocate_line(line, target, images).unwrap_or_else(|| line.to_string()));
    }
    out
}

fn relocate_line(line: &str, target: &Target, images: &BTreeMap<String, String>) -> Option<String> {
    let trimmed = line.trim_start();
    let indent = &line[..line.len() - trimmed.len()];
    let (dash, rest) = match trimmed.strip_prefix("- ") {
        Some(r) => ("- ", r.trim_start()),
        None => ("", trimmed),
    };
    let value = rest.strip_prefix("image:")?;
    let (value, comment) = match value.find(" #") {
        Some(i) => (&value[..i], &value[i..]),
        None => (value, ""),
    };
    let eol = if value.ends_with('\n') || comment.ends_with('\n') {
        "\n"
    } else {
        ""
    };
    let raw = value.trim();
    let quote = raw.chars().next().filter(|c| *c == '"' || *c == '\'');
    let unquoted = match quote {
        Some(q) => raw.strip_prefix(q)?.strip_suffix(q)?,
        None => raw,
    };
    // Templates ({{ .Values.image }}) and empty values stay as written.
    if unquoted.contains("{{") || unquoted.is_empty() {
        return None;
    }
    let reference: Reference = unquoted.parse().ok()?;
    // Images in the bundle go where the push put them; others where the
    // default mapping would.
    let path = match images.get(&reference.name()) {
        Some(pushed_to) => pushed_to.clone(),
        None if target.prefix.is_empty() => reference.repository.clone(),
        None => format!("{}/{}", target.prefix, reference.repository),
    };
    let relocated = reference.relocated(&target.registry, &path).to_string();
    let q = quote.map(String::from).unwrap_or_default();
    Some(format!(
        "{indent}{dash}image: {q}{relocated}{q}{}{eol}",
        comment.trim_end_matches('\n')
    ))
}

fn hosts_toml(upstream: &str, target: &Target, access: &Access) -> String {
    let server = if upstream == ferry_oci::reference::DOCKER_HUB {
        "https://registry-1.docker.io".to_string()
    } else {
        format!("https://{upstream}")
    };
    let base = access.base_url.trim_end_matches('/');
    let (host, override_path) = if target.prefix.is_empty() {
        (base.to_string(), false)
    } else {
        (format!("{base}/v2/{}", target.prefix), true)
    };
    let mut toml = format!(
        "# Written by ferry: pull {upstream} images from the site registry.\nserver = \"{server}\"\n\n[host.\"{host}\"]\n  capabilities = [\"pull\", \"resolve\"]\n"
    );
    if override_path {
        toml.push_str("  override_path = true\n");
    }
    if access.skip_verify {
        toml.push_str("  skip_verify = true\n");
    }
    toml
}

fn registries_yaml(upstreams: &BTreeSet<String>, target: &Target, access: &Access) -> String {
    let base = access.base_url.trim_end_matches('/');
    let mut yaml =
        String::from("# Written by ferry: k3s / RKE2 mirrors to the site registry.\nmirrors:\n");
    for upstream in upstreams {
        yaml.push_str(&format!(
            "  \"{upstream}\":\n    endpoint:\n      - \"{base}\"\n"
        ));
        if !target.prefix.is_empty() {
            yaml.push_str(&format!(
                "    rewrite:\n      \"^(.*)$\": \"{}/$1\"\n",
                target.prefix
            ));
        }
    }
    if access.skip_verify {
        yaml.push_str(&format!(
            "configs:\n  \"{}\":\n    tls:\n      insecure_skip_verify: true\n",
            target.registry
        ));
    }
    yaml
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_lines_are_relocated_and_nothing_else() {
        let target: Target = "reg.site:5000/mirror".parse().unwrap();
        let mut images = BTreeMap::new();
        images.insert(
            "docker.io/library/nginx".to_string(),
            "mirror/web/nginx".to_string(),
        );
        let yaml = "apiVersion: v1\nkind: Pod\nspec:\n  containers:\n  - name: web\n    image: nginx:1.27 # pinned\n  - image: \"quay.io/org/app@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\"\n    imagePullPolicy: IfNotPresent\n  - image: {{ .Values.image }}\n";
        let out = relocate_yaml(yaml, &target, &images);
        assert!(
            out.contains("    image: reg.site:5000/mirror/web/nginx:1.27 # pinned\n"),
            "{out}"
        );
        assert!(
            out.contains("  - image: \"reg.site:5000/mirror/org/app@sha256:e3b0"),
            "{out}"
        );
        assert!(out.contains("imagePullPolicy: IfNotPresent\n"));
        assert!(out.contains("image: {{ .Values.image }}"));
        assert_eq!(out.lines().count(), yaml.lines().count());
    }

    #[test]
    fn mirror_files() {
        let target: Target = "reg.site:5000/mirror".parse().unwrap();
        let access = Access {
            base_url: "http://reg.site:5000/".into(),
            skip_verify: false,
        };
        let toml = hosts_toml("docker.io", &target, &access);
        assert!(toml.contains("server = \"https://registry-1.docker.io\""));
        assert!(toml.contains("[host.\"http://reg.site:5000/v2/mirror\"]"));
        assert!(toml.contains("override_path = true"));
        let yaml = registries_yaml(&["docker.io".to_string()].into(), &target, &access);
        assert!(yaml.contains("\"^(.*)$\": \"mirror/$1\""), "{yaml}");
    }
}
