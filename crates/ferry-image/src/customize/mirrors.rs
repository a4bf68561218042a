//! The container runtimes of the image pull from the site registry: the
//! same containerd `certs.d/<upstream>/hosts.toml` and k3s/RKE2
//! `registries.yaml` that `ferry bundle push` writes into its site files
//! (ferry_bundle::relocate), placed where the runtimes read them:
//!
//! - `/etc/containerd/certs.d/<upstream>/hosts.toml` (containerd's
//!   `config_path` layout, docs/hosts.md), with the CA beside it;
//! - `/etc/rancher/k3s/registries.yaml` and `/etc/rancher/rke2/registries.yaml`,
//!   with the CA where they name it.
//!
//! Every repository of each upstream is expected at `PREFIX/<its path>` on
//! the site registry, where `ferry bundle push --to HOST/PREFIX` put it.
//! The CA also goes into the trust store.

use std::collections::BTreeSet;

use ferry_bundle::push::Target;
use ferry_bundle::relocate::{Access, K3S_CA, K3S_CA_ON_NODE, prefix_mirror_files};

use super::{Context, CustomizeError, CustomizeReport, certs, write_file};
use crate::rootfs::Rootfs;
use crate::spec::MirrorSpec;

/// `node_registries`: the registries a Kubernetes node's images name, the
/// upstreams when the spec lists none.
pub fn apply(
    spec: &MirrorSpec,
    node_registries: &BTreeSet<String>,
    rootfs: &mut Rootfs,
    cx: &Context<'_>,
    report: &mut CustomizeReport,
) -> Result<(), CustomizeError> {
    let what = "registry_mirrors";
    let target: Target = spec
        .registry
        .parse()
        .map_err(|e: String| CustomizeError::invalid(what, e))?;
    let upstreams: BTreeSet<String> = if spec.upstreams.is_empty() {
        node_registries.clone()
    } else {
        spec.upstreams.iter().cloned().collect()
    };
    if upstreams.is_empty() {
        return Err(CustomizeError::invalid(
            what,
            "name the upstream registries to mirror (upstreams: [docker.io, registry.k8s.io])",
        ));
    }
    let ca_pem = match &spec.ca_file {
        Some(path) => Some(cx.read_local(path)?),
        None => None,
    };
    if let Some(pem) = &ca_pem {
        certs::add(
            rootfs,
            cx,
            "ferry-site-registry",
            pem,
            "registry_mirrors.ca_file",
        )?;
        report.ca_certificates += 1;
    }
    let scheme = if spec.plain_http { "http" } else { "https" };
    let access = Access {
        base_url: format!("{scheme}://{}/", target.registry),
        skip_verify: spec.insecure && !spec.plain_http,
        ca_pem,
    };
    for (path, bytes) in prefix_mirror_files(&upstreams, &target, &access, &serde_json::json!({})) {
        if let Some(rest) = path.strip_prefix("containerd/") {
            write_file(rootfs, cx, &format!("etc/containerd/{rest}"), &bytes, 0o644)?;
        } else if path == "registries.yaml" {
            for distribution in ["k3s", "rke2"] {
                write_file(
                    rootfs,
                    cx,
                    &format!("etc/rancher/{distribution}/registries.yaml"),
                    &bytes,
                    0o600,
                )?;
            }
        } else if path == K3S_CA {
            write_file(
                rootfs,
                cx,
                K3S_CA_ON_NODE.trim_start_matches('/'),
                &bytes,
                0o644,
            )?;
        }
        report.files_written += 1;
    }
    if !upstreams.contains(&target.registry) {
        site_registry(&target.registry, &access, rootfs, cx)?;
        report.files_written += 1;
    }
    Ok(())
}

/// `certs.d/<site registry>/hosts.toml`: how containerd reaches the site
/// registry by its own name (the sandbox image is pinned there), over
/// plain HTTP or with its CA, as the upstreams' mirrors do.
fn site_registry(
    registry: &str,
    access: &Access,
    rootfs: &mut Rootfs,
    cx: &Context<'_>,
) -> Result<(), CustomizeError> {
    let url = access.base_url.trim_end_matches('/');
    let mut toml = format!(
        "# Written by ferry image build: the site registry itself.\nserver = \"{url}\"\n\n[host.\"{url}\"]\n  capabilities = [\"pull\", \"resolve\"]\n"
    );
    let dir = format!("etc/containerd/certs.d/{registry}");
    if let Some(pem) = &access.ca_pem {
        toml.push_str("  ca = \"ca.crt\"\n");
        write_file(rootfs, cx, &format!("{dir}/ca.crt"), pem, 0o644)?;
    }
    if access.skip_verify {
        toml.push_str("  skip_verify = true\n");
    }
    write_file(
        rootfs,
        cx,
        &format!("{dir}/hosts.toml"),
        toml.as_bytes(),
        0o644,
    )
}
