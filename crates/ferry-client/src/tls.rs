//! The rustls configuration of one registry host.
//!
//! reqwest is built without a TLS provider (`rustls-no-provider`), so ferry
//! builds the `ClientConfig` itself with rustls' `ring` provider (the
//! project's one crypto stack) and hands it over. Trust is the system's
//! roots (rustls-native-certs: `/etc/ssl/certs` and `SSL_CERT_FILE` /
//! `SSL_CERT_DIR`), plus the PEM CA files given for the host, plus the
//! `*.crt` files in the host's directory under `certs.d` (the layout
//! Docker and podman use: `/etc/docker/certs.d/HOST:PORT/ca.crt`), so a
//! site CA installed for those tools works for ferry too.
//!
//! Skipping verification is a separate, explicit mode
//! ([`crate::HostSecurity::InsecureSkipVerify`]): handshake signatures are
//! still checked, but the certificate chain and name are not.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::error::{ClientError, Result};

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The system's trust anchors, loaded once per process (reading
/// `/etc/ssl/certs` costs milliseconds; registries are contacted often).
fn system_roots() -> &'static [CertificateDer<'static>] {
    static ROOTS: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let result = rustls_native_certs::load_native_certs();
        for e in &result.errors {
            tracing::debug!("loading system CA certificates: {e}");
        }
        result.certs
    })
}

/// Reads every certificate of a PEM file.
pub fn read_pem_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let tls_error = |reason: String| ClientError::Tls(format!("{}: {reason}", path.display()));
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| tls_error(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_error(e.to_string()))?;
    if certs.is_empty() {
        return Err(tls_error("no PEM certificate in the file".into()));
    }
    Ok(certs)
}

/// CA files for `host` in Docker/podman `certs.d` directories.
pub fn certs_d_files(certs_dirs: &[PathBuf], host: &str) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for dir in certs_dirs {
        let Ok(entries) = std::fs::read_dir(dir.join(host)) else {
            continue;
        };
        let mut found: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "crt"))
            .collect();
        found.sort();
        files.extend(found);
    }
    files
}

/// A verifying configuration trusting the system roots plus `ca_files`.
pub fn verifying_config(ca_files: &[PathBuf]) -> Result<ClientConfig> {
    let mut roots = RootCertStore::empty();
    let (_, ignored) = roots.add_parsable_certificates(system_roots().iter().cloned());
    if ignored > 0 {
        tracing::debug!("{ignored} system CA certificates could not be parsed");
    }
    for file in ca_files {
        for cert in read_pem_certificates(file)? {
            roots.add(cert).map_err(|e| {
                ClientError::Tls(format!("{}: unusable CA certificate: {e}", file.display()))
            })?;
        }
    }
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(with_alpn(config))
}

/// A configuration that accepts any certificate (handshake signatures are
/// still verified, so the peer must hold the key of what it presents).
pub fn insecure_config() -> Result<ClientConfig> {
    let provider = provider();
    let config = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientError::Tls(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate { provider }))
        .with_no_client_auth();
    Ok(with_alpn(config))
}

/// HTTP/1.1 only: concurrent blob uploads then use one TCP connection
/// each, instead of sharing one HTTP/2 connection's flow-control window.
fn with_alpn(mut config: ClientConfig) -> ClientConfig {
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config
}

#[derive(Debug)]
struct AcceptAnyCertificate {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_ca_files_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let err = verifying_config(std::slice::from_ref(&empty))
            .unwrap_err()
            .to_string();
        assert!(err.contains("empty.pem") && err.contains("no PEM"), "{err}");
        let missing = dir.path().join("missing.pem");
        assert!(verifying_config(&[missing]).is_err());
        assert!(verifying_config(&[]).is_ok());
        assert!(insecure_config().is_ok());
    }

    #[test]
    fn certs_d_lookup() {
        let dir = tempfile::tempdir().unwrap();
        let host = dir.path().join("reg.local:5000");
        std::fs::create_dir(&host).unwrap();
        std::fs::write(host.join("ca.crt"), "x").unwrap();
        std::fs::write(host.join("client.key"), "x").unwrap();
        let files = certs_d_files(&[dir.path().to_path_buf()], "reg.local:5000");
        assert_eq!(files, vec![host.join("ca.crt")]);
        assert!(certs_d_files(&[dir.path().to_path_buf()], "other").is_empty());
    }
}
