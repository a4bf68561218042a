//! Mirror rules that send a node's pulls of upstream names to the target:
//! a containerd `hosts.toml` per upstream registry (the `config_path`
//! layout of containerd's docs/hosts.md) and a k3s / RKE2
//! `registries.yaml`, one mirror per upstream the bundle has images from.
//!
//! An image lands at `PREFIX/<its upstream path>` unless `--map` or the
//! spec's `repository:` put it elsewhere. The two formats express that
//! differently:
//!
//! - containerd cannot rename a repository. Its hosts are tried in order
//!   and a 404 falls through to the next, and with `override_path = true`
//!   the host URL's path replaces `/v2` with the repository appended. So
//!   the default is one host `BASE/v2/PREFIX`; an image at
//!   `PREFIX/apps/web/backend` from upstream `web/backend` (a map that adds
//!   a path in front, `--map web=apps/web`) gets a host `BASE/v2/PREFIX/apps`
//!   listed before it. A map that renames (`--map web=site`) cannot be
//!   expressed: it is named in a warning.
//! - k3s's `rewrite` (regex -> replacement, Go RE2) renames anything, but
//!   it is a map k3s applies in no fixed order, so overlapping patterns
//!   would be a gamble: without maps one `^(.*)$` rule adds the prefix;
//!   with any, one exact pattern per repository of the bundle. Only one
//!   upstream repository pushed to two places (by two entries) cannot be
//!   expressed, and is warned about.
//!
//! Strings are written as JSON string literals, which are valid TOML basic
//! strings and YAML double-quoted scalars.

use std::collections::{BTreeMap, BTreeSet};

use super::Warning;
use super::catalog::{Catalog, Placed};
use crate::push::Target;

/// Where the CA the push trusted is written, beside each `hosts.toml` (a
/// relative `ca` is relative to the `hosts.toml`).
pub(crate) const CONTAINERD_CA: &str = "ca.crt";
/// Where the CA is written in the site directory, for k3s / RKE2: copied
/// beside `registries.yaml`, which needs its absolute path on the node.
pub const K3S_CA: &str = "ferry-registry-ca.crt";
/// Where `registries.yaml` expects that CA on a node.
pub const K3S_CA_ON_NODE: &str = "/etc/rancher/k3s/ferry-registry-ca.crt";

/// How nodes reach the target.
pub struct Access {
    /// `https://host:port/` or `http://host:port/`, as the push found it.
    pub base_url: String,
    /// The push skipped TLS verification (`--insecure` on HTTPS).
    pub skip_verify: bool,
    /// The CA certificates (PEM) the push was given to trust the target
    /// (`--ca-file`); written into the site files.
    pub ca_pem: Option<Vec<u8>>,
}

/// The mirror files, as paths relative to the site directory.
pub(crate) struct MirrorFiles {
    pub files: Vec<(String, Vec<u8>)>,
    pub warnings: Vec<Warning>,
}

/// The mirror rules for every upstream in `catalog`; `spec` is the
/// bundle's spec echo, whose `hosts` say which upstreams speak plain HTTP.
pub(crate) fn mirror_files(
    catalog: &Catalog,
    target: &Target,
    access: &Access,
    spec: &serde_json::Value,
) -> MirrorFiles {
    rules_for(catalog, &catalog.upstreams(), target, access, spec)
}

/// The mirror files for `upstreams` when no bundle says what is where:
/// every repository of each upstream sits at `PREFIX/<its path>` on the
/// target (`ferry image build`'s `registry_mirrors`). Paths are relative
/// to a site directory, as [`mirror_files`] gives them.
pub fn prefix_mirror_files(
    upstreams: &BTreeSet<String>,
    target: &Target,
    access: &Access,
    spec: &serde_json::Value,
) -> Vec<(String, Vec<u8>)> {
    let catalog = Catalog {
        registry: target.registry.clone(),
        placed: Vec::new(),
    };
    let upstreams: BTreeSet<&str> = upstreams.iter().map(String::as_str).collect();
    rules_for(&catalog, &upstreams, target, access, spec).files
}

fn rules_for(
    catalog: &Catalog,
    upstreams: &BTreeSet<&str>,
    target: &Target,
    access: &Access,
    spec: &serde_json::Value,
) -> MirrorFiles {
    let mut files = Vec::new();
    let mut warnings = Vec::new();
    for upstream in upstreams {
        let images: Vec<&Placed> = catalog.images_from(upstream).collect();
        let dir = format!("containerd/certs.d/{upstream}");
        let (toml, unreachable) = hosts_toml(upstream, &images, target, access, spec);
        for p in unreachable {
            warnings.push(Warning::general(format!(
                "{upstream}/{} is pushed to {}: containerd's hosts.toml can only add a path in front of a repository, not rename it, so a node pulling {upstream}/{} through it will not find it; use the relocated manifests, or a --map or repository: that only adds a path in front (FROM=PATH/FROM)",
                p.source.repository, p.repository, p.source.repository
            )));
        }
        files.push((format!("{dir}/hosts.toml"), toml.into_bytes()));
        if let Some(pem) = &access.ca_pem {
            files.push((format!("{dir}/{CONTAINERD_CA}"), pem.clone()));
        }
        for p in &images {
            if let Some(source_tag) = &p.source.tag
                && p.tag.as_ref() != Some(source_tag)
            {
                warnings.push(Warning::general(format!(
                    "{} is pushed as {}: a node pulling it by its tag {source_tag} through the mirror will not find it; use the relocated manifests",
                    p.source,
                    match &p.tag {
                        Some(tag) => format!("tag {tag}"),
                        None => "a digest only".into(),
                    }
                )));
            }
        }
    }
    if !upstreams.is_empty() {
        let (yaml, ambiguous) = registries_yaml(catalog, upstreams, target, access);
        for (name, places) in ambiguous {
            warnings.push(Warning::general(format!(
                "{name} is pushed to {}: a k3s rewrite sends a repository to one place, so registries.yaml sends it to {}; pull the others by their relocated name",
                places.join(" and "),
                places[0]
            )));
        }
        files.push(("registries.yaml".into(), yaml.into_bytes()));
        if let Some(pem) = &access.ca_pem {
            files.push((K3S_CA.into(), pem.clone()));
        }
    }
    MirrorFiles { files, warnings }
}

/// `PREFIX/path`, or `path` without a prefix.
fn under(prefix: &str, path: &str) -> String {
    if prefix.is_empty() {
        path.to_string()
    } else {
        format!("{prefix}/{path}")
    }
}

/// A TOML basic string / YAML double-quoted scalar.
fn quoted(s: &str) -> String {
    serde_json::to_string(s).expect("a string serializes")
}

/// The upstream as containerd would reach it: Docker Hub's API host, and
/// the scheme the spec's `hosts` gave it.
fn server_url(upstream: &str, spec: &serde_json::Value) -> String {
    if upstream == ferry_oci::reference::DOCKER_HUB {
        return "https://registry-1.docker.io".into();
    }
    let plain_http = spec["hosts"][upstream]["plain_http"].as_bool() == Some(true);
    let scheme = if plain_http { "http" } else { "https" };
    format!("{scheme}://{upstream}")
}

/// The `hosts.toml` for `upstream`, and the images it cannot reach.
fn hosts_toml<'a>(
    upstream: &str,
    images: &[&'a Placed],
    target: &Target,
    access: &Access,
    spec: &serde_json::Value,
) -> (String, Vec<&'a Placed>) {
    let base = access.base_url.trim_end_matches('/');
    // Paths an image's repository sits under besides the prefix, deepest
    // first so that the most specific host is asked first.
    let mut extra: BTreeSet<(std::cmp::Reverse<usize>, String)> = BTreeSet::new();
    let mut unreachable = Vec::new();
    for p in images {
        let upstream_path = &p.source.repository;
        if p.repository == under(&target.prefix, upstream_path) {
            continue;
        }
        match p.repository.strip_suffix(upstream_path.as_str()) {
            Some(root) if root.ends_with('/') => {
                let root = root.trim_end_matches('/').to_string();
                extra.insert((std::cmp::Reverse(root.matches('/').count()), root));
            }
            _ => unreachable.push(*p),
        }
    }
    let mut toml = format!(
        "# Written by ferry bundle push: pull {upstream} images from {}.\nserver = {}\n",
        target.registry,
        quoted(&server_url(upstream, spec))
    );
    let mut host = |url: String, override_path: bool, why: &str| {
        toml.push_str(&format!(
            "\n# {why}\n[host.{}]\n  capabilities = [\"pull\", \"resolve\"]\n",
            quoted(&url)
        ));
        if override_path {
            toml.push_str("  override_path = true\n");
        }
        if access.ca_pem.is_some() {
            toml.push_str(&format!("  ca = {}\n", quoted(CONTAINERD_CA)));
        }
        if access.skip_verify {
            toml.push_str("  skip_verify = true\n");
        }
    };
    for (_, root) in &extra {
        host(
            format!("{base}/v2/{root}"),
            true,
            &format!("images --map or a spec's repository: put under {root}"),
        );
    }
    if target.prefix.is_empty() {
        host(base.to_string(), false, "every other image");
    } else {
        host(
            format!("{base}/v2/{}", target.prefix),
            true,
            &format!("every other image, under {}", target.prefix),
        );
    }
    (toml, unreachable)
}

/// The k3s / RKE2 `registries.yaml`, and each upstream repository pushed
/// to more than one place (with those places).
fn registries_yaml(
    catalog: &Catalog,
    upstreams: &BTreeSet<&str>,
    target: &Target,
    access: &Access,
) -> (String, Vec<(String, Vec<String>)>) {
    let base = access.base_url.trim_end_matches('/');
    let mut ambiguous = Vec::new();
    let mut yaml = format!(
        "# Written by ferry bundle push: k3s / RKE2 mirrors to {}.\nmirrors:\n",
        target.registry
    );
    for upstream in upstreams {
        yaml.push_str(&format!(
            "  {}:\n    endpoint:\n      - {}\n",
            quoted(upstream),
            quoted(base)
        ));
        let mut places: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for p in catalog.images_from(upstream) {
            let at = places.entry(&p.source.repository).or_default();
            if !at.contains(&p.repository) {
                at.push(p.repository.clone());
            }
        }
        let by_prefix = places
            .iter()
            .all(|(path, at)| at.iter().all(|r| *r == under(&target.prefix, path)));
        let rules: Vec<(String, String)> = if by_prefix {
            if target.prefix.is_empty() {
                Vec::new()
            } else {
                vec![("^(.*)$".into(), format!("{}/$1", target.prefix))]
            }
        } else {
            places
                .iter()
                .map(|(path, at)| {
                    if at.len() > 1 {
                        ambiguous.push((format!("{upstream}/{path}"), at.clone()));
                    }
                    // Repository names hold only [a-z0-9._/-]; `.` is the
                    // one RE2 metacharacter among them.
                    (format!("^{}$", path.replace('.', "\\.")), at[0].clone())
                })
                .collect()
        };
        if !rules.is_empty() {
            yaml.push_str("    rewrite:\n");
            for (pattern, replacement) in rules {
                yaml.push_str(&format!(
                    "      {}: {}\n",
                    quoted(&pattern),
                    quoted(&replacement)
                ));
            }
        }
    }
    if access.skip_verify || access.ca_pem.is_some() {
        yaml.push_str(&format!(
            "configs:\n  {}:\n    tls:\n",
            quoted(&target.registry)
        ));
        if access.ca_pem.is_some() {
            yaml.push_str(&format!("      ca_file: {}\n", quoted(K3S_CA_ON_NODE)));
        }
        if access.skip_verify {
            yaml.push_str("      insecure_skip_verify: true\n");
        }
    }
    (yaml, ambiguous)
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn catalog(placed: &[(&str, &str)]) -> Catalog {
        Catalog {
            registry: "reg.site:5000".into(),
            placed: placed
                .iter()
                .map(|(source, repository)| Placed {
                    source: source.parse().unwrap(),
                    repository: repository.to_string(),
                    tag: Some("1".into()),
                    root: D.parse().unwrap(),
                    manifests: [D.parse().unwrap()].into(),
                })
                .collect(),
        }
    }

    fn access() -> Access {
        Access {
            base_url: "http://reg.site:5000/".into(),
            skip_verify: false,
            ca_pem: None,
        }
    }

    fn files(c: &Catalog, target: &str) -> (BTreeMap<String, String>, Vec<String>) {
        let m = mirror_files(
            c,
            &target.parse().unwrap(),
            &access(),
            &serde_json::json!({"hosts": {"src.example:5000": {"plain_http": true}}}),
        );
        (
            m.files
                .into_iter()
                .map(|(p, b)| (p, String::from_utf8(b).unwrap()))
                .collect(),
            m.warnings.iter().map(|w| w.to_string()).collect(),
        )
    }

    #[test]
    fn one_rule_per_upstream_without_maps() {
        let c = catalog(&[
            ("nginx:1", "mirror/library/nginx"),
            ("src.example:5000/a/b:1", "mirror/a/b"),
        ]);
        let (files, warnings) = files(&c, "reg.site:5000/mirror");
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(
            files["containerd/certs.d/docker.io/hosts.toml"],
            "# Written by ferry bundle push: pull docker.io images from reg.site:5000.\nserver = \"https://registry-1.docker.io\"\n\n# every other image, under mirror\n[host.\"http://reg.site:5000/v2/mirror\"]\n  capabilities = [\"pull\", \"resolve\"]\n  override_path = true\n"
        );
        assert!(
            files["containerd/certs.d/src.example:5000/hosts.toml"]
                .contains("server = \"http://src.example:5000\"")
        );
        assert_eq!(
            files["registries.yaml"],
            "# Written by ferry bundle push: k3s / RKE2 mirrors to reg.site:5000.\nmirrors:\n  \"docker.io\":\n    endpoint:\n      - \"http://reg.site:5000\"\n    rewrite:\n      \"^(.*)$\": \"mirror/$1\"\n  \"src.example:5000\":\n    endpoint:\n      - \"http://reg.site:5000\"\n    rewrite:\n      \"^(.*)$\": \"mirror/$1\"\n"
        );
    }

    #[test]
    fn maps_become_hosts_and_exact_rewrites() {
        let c = catalog(&[
            ("nginx:1", "mapped/library/nginx"),
            ("web/backend:1", "mapped/apps/web/backend"),
            ("org/my.app:1", "mapped/deep/er/org/my.app"),
            ("renamed/y:1", "mapped/other"),
        ]);
        let (files, warnings) = files(&c, "reg.site:5000/mapped");
        let toml = &files["containerd/certs.d/docker.io/hosts.toml"];
        let hosts: Vec<&str> = toml.lines().filter(|l| l.starts_with("[host.")).collect();
        assert_eq!(
            hosts,
            [
                "[host.\"http://reg.site:5000/v2/mapped/deep/er\"]",
                "[host.\"http://reg.site:5000/v2/mapped/apps\"]",
                "[host.\"http://reg.site:5000/v2/mapped\"]",
            ]
        );
        assert!(
            files["registries.yaml"].contains(
                "    rewrite:\n      \"^library/nginx$\": \"mapped/library/nginx\"\n      \"^org/my\\\\.app$\": \"mapped/deep/er/org/my.app\"\n      \"^renamed/y$\": \"mapped/other\"\n      \"^web/backend$\": \"mapped/apps/web/backend\"\n"
            ),
            "{}",
            files["registries.yaml"]
        );
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].starts_with("docker.io/renamed/y is pushed to mapped/other: containerd"),
            "{warnings:?}"
        );
    }
}
