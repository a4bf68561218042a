//! How a node finds an image through the site files `ferry bundle push`
//! writes, following the documented semantics (there is no containerd or
//! k3s on the test machine), so a test can resolve every image of a bundle
//! through the written rules and ask the real target registry for it:
//!
//! - containerd with `config_path` (containerd docs/hosts.md): the
//!   `hosts.toml` in `certs.d/<registry>/` (else `_default/`); its
//!   `[host."URL"]` tables are tried in the order the file lists them, a
//!   404 falls through to the next one, and `server` (the upstream) comes
//!   last; with `override_path = true` the URL's path is the API root,
//!   otherwise `/v2` is appended; a mirror gets `?ns=<registry>`; a
//!   relative `ca` path is relative to the `hosts.toml`.
//! - k3s / RKE2 `registries.yaml` (docs.k3s.io, "Private Registry
//!   Configuration"): `mirrors.<registry>.endpoint` in order, each with the
//!   repository rewritten by the mirror's `rewrite` patterns (Go RE2, and
//!   a map: k3s applies them in no fixed order, so more than one pattern
//!   matching a repository is treated as a failure here), then the
//!   upstream without rewrites. TLS settings come from
//!   `configs.<endpoint host>.tls`; `ca_file` is the absolute path on a
//!   node, which the site directory holds under the same file name.
//!
//! Falling through to the upstream counts as a failure: in the air gap
//! the upstream cannot be reached.

use std::path::Path;

use ferry_oci::{Reference, media_type};

/// What a manifest request through the rules is sent with.
const ACCEPT: &[&str] = &[
    media_type::OCI_INDEX,
    media_type::OCI_MANIFEST,
    media_type::DOCKER_MANIFEST_LIST,
    media_type::DOCKER_MANIFEST,
];

/// One place a node would ask: the manifest URL and how to reach it.
struct Attempt {
    url: String,
    ca: Option<Vec<u8>>,
    skip_verify: bool,
}

/// Resolves `reference` through `certs_d` (a containerd `config_path`) and
/// returns the URL that answered 200.
pub fn containerd(certs_d: &Path, reference: &str) -> Result<String, String> {
    let r: Reference = reference.parse().map_err(|e| format!("{e}"))?;
    let dir = [certs_d.join(&r.registry), certs_d.join("_default")]
        .into_iter()
        .find(|d| d.join("hosts.toml").exists())
        .ok_or_else(|| {
            format!(
                "no hosts.toml for {} under {}",
                r.registry,
                certs_d.display()
            )
        })?;
    let text = std::fs::read_to_string(dir.join("hosts.toml")).unwrap();
    let toml: toml::Table = text
        .parse()
        .map_err(|e| format!("{}: not TOML: {e}", dir.join("hosts.toml").display()))?;
    let mut attempts = Vec::new();
    let hosts = toml.get("host").and_then(|h| h.as_table());
    for (url, host) in hosts.into_iter().flatten() {
        let capabilities: Vec<&str> = host
            .get("capabilities")
            .and_then(|c| c.as_array())
            .map(|c| c.iter().filter_map(|v| v.as_str()).collect())
            .unwrap_or_else(|| vec!["pull", "resolve"]);
        // Resolving a tag needs a host trusted to resolve; a digest only pull.
        let needed = if r.digest.is_some() {
            "pull"
        } else {
            "resolve"
        };
        if !capabilities.contains(&needed) {
            continue;
        }
        let url = url.trim_end_matches('/');
        let root = if host.get("override_path").and_then(|o| o.as_bool()) == Some(true) {
            url.to_string()
        } else {
            format!("{url}/v2")
        };
        let ca = host.get("ca").and_then(|c| c.as_str()).map(|c| {
            std::fs::read(dir.join(c)).unwrap_or_else(|e| panic!("hosts.toml's ca {c}: {e}"))
        });
        attempts.push(Attempt {
            url: format!(
                "{root}/{}/manifests/{}?ns={}",
                r.repository,
                r.tag_or_digest(),
                r.registry
            ),
            ca,
            skip_verify: host.get("skip_verify").and_then(|s| s.as_bool()) == Some(true),
        });
    }
    first_found(&attempts).ok_or_else(|| {
        format!(
            "{reference}: no host of {} has it; containerd would fall through to the upstream {:?}",
            dir.join("hosts.toml").display(),
            toml.get("server").and_then(|s| s.as_str())
        )
    })
}

/// Resolves `reference` through `<site>/registries.yaml` as k3s would and
/// returns the URL that answered 200.
pub fn k3s(site: &Path, reference: &str) -> Result<String, String> {
    let r: Reference = reference.parse().map_err(|e| format!("{e}"))?;
    let text = std::fs::read_to_string(site.join("registries.yaml")).unwrap();
    let yaml: serde_json::Value =
        serde_saphyr::from_str(&text).map_err(|e| format!("registries.yaml: not YAML: {e}"))?;
    let mirror = &yaml["mirrors"][&r.registry];
    if mirror.is_null() {
        return Err(format!("{reference}: no mirror for {}", r.registry));
    }
    let mut repository = r.repository.clone();
    let mut matched = Vec::new();
    for (pattern, replacement) in mirror["rewrite"].as_object().into_iter().flatten() {
        let re = regex::Regex::new(pattern).map_err(|e| format!("rewrite {pattern:?}: {e}"))?;
        if re.is_match(&r.repository) {
            matched.push(pattern.clone());
            repository = re
                .replace(&r.repository, replacement.as_str().unwrap())
                .into_owned();
        }
    }
    if matched.len() > 1 {
        return Err(format!(
            "{reference}: rewrites {matched:?} all match {}; k3s applies one of them, in no fixed order",
            r.repository
        ));
    }
    let mut attempts = Vec::new();
    for endpoint in mirror["endpoint"].as_array().into_iter().flatten() {
        let endpoint = endpoint.as_str().unwrap().trim_end_matches('/');
        let host = endpoint.split("://").nth(1).unwrap_or(endpoint);
        let tls = &yaml["configs"][host]["tls"];
        let ca = tls["ca_file"].as_str().map(|node_path| {
            let name = Path::new(node_path).file_name().unwrap();
            std::fs::read(site.join(name))
                .unwrap_or_else(|e| panic!("ca_file {node_path} is not in the site directory: {e}"))
        });
        attempts.push(Attempt {
            url: format!("{endpoint}/v2/{repository}/manifests/{}", r.tag_or_digest()),
            ca,
            skip_verify: tls["insecure_skip_verify"].as_bool() == Some(true),
        });
    }
    first_found(&attempts).ok_or_else(|| {
        format!("{reference}: no endpoint has it (as {repository}); k3s would fall through to the upstream")
    })
}

/// Asks the reference's own registry over plain HTTP (what containerd
/// does for a registry without a `hosts.toml`, with `--plain-http`).
pub fn direct(reference: &str) -> Result<String, String> {
    let r: Reference = reference.parse().map_err(|e| format!("{e}"))?;
    let attempt = Attempt {
        url: format!(
            "http://{}/v2/{}/manifests/{}",
            r.registry,
            r.repository,
            r.tag_or_digest()
        ),
        ca: None,
        skip_verify: false,
    };
    first_found(&[attempt]).ok_or_else(|| format!("{reference}: not on its registry"))
}

/// The first attempt answering 200; 404 falls through, anything else is a
/// failure of the test.
fn first_found(attempts: &[Attempt]) -> Option<String> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    for attempt in attempts {
        let mut client =
            reqwest::Client::builder().danger_accept_invalid_certs(attempt.skip_verify);
        if let Some(pem) = &attempt.ca {
            for cert in reqwest::Certificate::from_pem_bundle(pem).unwrap() {
                client = client.add_root_certificate(cert);
            }
        }
        let client = client.build().unwrap();
        let status = runtime.block_on(async {
            client
                .head(&attempt.url)
                .header("accept", ACCEPT.join(", "))
                .send()
                .await
                .unwrap_or_else(|e| panic!("HEAD {}: {e}", attempt.url))
                .status()
        });
        match status.as_u16() {
            200 => return Some(attempt.url.clone()),
            404 => continue,
            other => panic!("HEAD {}: {other}", attempt.url),
        }
    }
    None
}
