//! CA certificates added to the image's trust store, as the
//! distribution's tool would leave it, without running that tool:
//!
//! - Debian, Ubuntu (`update-ca-certificates`): the certificate under
//!   `/usr/local/share/ca-certificates/` (so a later run of the tool keeps
//!   it) and appended to `/etc/ssl/certs/ca-certificates.crt`;
//! - RHEL, Rocky, Alma, Fedora (`update-ca-trust`): under
//!   `/etc/pki/ca-trust/source/anchors/` and appended to
//!   `/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem` (which
//!   `/etc/pki/tls/certs/ca-bundle.crt` links to).
//!
//! OpenSSL's hashed-name links in `/etc/ssl/certs` are not made: the
//! bundle file is what TLS clients (curl, Go, containerd) read.

use std::path::Path;

use super::{Context, CustomizeError, CustomizeReport, write_file};
use crate::rootfs::Rootfs;

struct Store {
    anchors: &'static str,
    bundle: &'static str,
}

const STORES: [Store; 2] = [
    Store {
        anchors: "usr/local/share/ca-certificates",
        bundle: "etc/ssl/certs/ca-certificates.crt",
    },
    Store {
        anchors: "etc/pki/ca-trust/source/anchors",
        bundle: "etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
    },
];

pub fn apply(
    certificates: &[std::path::PathBuf],
    rootfs: &mut Rootfs,
    cx: &Context<'_>,
    report: &mut CustomizeReport,
) -> Result<(), CustomizeError> {
    for (i, file) in certificates.iter().enumerate() {
        let pem = cx.read_local(file)?;
        add(
            rootfs,
            cx,
            &format!("ferry-{}", i + 1),
            &pem,
            &file.display().to_string(),
        )?;
        report.ca_certificates += 1;
    }
    Ok(())
}

/// Adds one PEM certificate (named `name` in the anchors directory).
pub fn add(
    rootfs: &mut Rootfs,
    cx: &Context<'_>,
    name: &str,
    pem: &[u8],
    what: &str,
) -> Result<(), CustomizeError> {
    let text = String::from_utf8_lossy(pem);
    if !text.contains("-----BEGIN CERTIFICATE-----") {
        return Err(CustomizeError::invalid(
            format!("ca_certificates: {what}"),
            "not a PEM certificate (no BEGIN CERTIFICATE line)",
        ));
    }
    let tree = rootfs.tree();
    let present: Vec<&Store> = STORES
        .iter()
        .filter(|s| {
            tree.resolve_all(Path::new(s.bundle))
                .ok()
                .is_some_and(|p| tree.get(&p).is_some())
        })
        .collect();
    if present.is_empty() {
        return Err(CustomizeError::invalid(
            format!("ca_certificates: {what}"),
            "the image has no CA trust store (/etc/ssl/certs/ca-certificates.crt or /etc/pki/ca-trust): add the ca-certificates package",
        ));
    }
    let mut pem_text = text.trim_end().to_string();
    pem_text.push('\n');
    for store in present {
        write_file(
            rootfs,
            cx,
            &format!("{}/{name}.crt", store.anchors),
            pem_text.as_bytes(),
            0o644,
        )?;
        let mut bundle = rootfs
            .read(Path::new(store.bundle))?
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        if !bundle.contains(pem_text.trim()) {
            if !bundle.is_empty() && !bundle.ends_with('\n') {
                bundle.push('\n');
            }
            bundle.push_str(&pem_text);
        }
        let bundle_path = rootfs
            .tree()
            .resolve_all(Path::new(store.bundle))
            .map_err(crate::rootfs::RootfsError::from)?;
        write_file(
            rootfs,
            cx,
            &bundle_path.display().to_string(),
            bundle.as_bytes(),
            0o644,
        )?;
    }
    Ok(())
}
