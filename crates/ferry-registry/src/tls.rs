//! TLS for the registry with rustls (ring provider).
//!
//! Either the operator's certificate and key ([`load`]), or `--tls auto`
//! ([`auto`]): ferry creates a site CA once, keeps it in the state
//! directory, and issues a server certificate for the names the server is
//! reached by. Clients trust the CA once (the binary prints how), and the
//! server certificate can be re-issued for new names without touching the
//! clients. The CA is re-created from its key and fixed subject name, so
//! no certificate parser is needed to sign with it again.
//!
//! Every file is written crash-safely ([`ferry_oci::atomic`]; keys with
//! mode 0600 from their first byte), and in an order that makes a set
//! complete only when its last file is there: `ca.crt` after `ca.key` and
//! `ca.name`, `server.names` after `server.crt` and `server.key`; a set
//! being replaced loses that last file first. A crash half-way leaves an
//! incomplete set, which the next start creates again.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ferry_oci::atomic::{self, AtomicWrite};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {message}")]
    Read { path: String, message: String },
    #[error("{path} holds no PEM certificate")]
    NoCertificate { path: String },
    #[error("the certificate and key do not make a valid TLS configuration: {0}")]
    Config(#[from] rustls::Error),
    #[error("cannot generate a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
}

/// A server configuration from PEM files.
pub fn load(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    let read_err = |path: &Path, e: &dyn std::fmt::Display| TlsError::Read {
        path: path.display().to_string(),
        message: e.to_string(),
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| read_err(cert, &e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| read_err(cert, &e))?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: cert.display().to_string(),
        });
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| read_err(key, &e))?;
    config(chain, key)
}

fn config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The outcome of `--tls auto`.
pub struct AutoTls {
    pub config: Arc<ServerConfig>,
    /// The site CA certificate clients must trust.
    pub ca_cert: PathBuf,
    /// Whether the CA was created just now.
    pub created_ca: bool,
    /// The names the server certificate is valid for.
    pub names: Vec<String>,
}

/// Loads or creates the site CA in `dir` and a server certificate for
/// `names` (DNS names or IP addresses).
pub fn auto(dir: &Path, names: &[String]) -> Result<AutoTls, TlsError> {
    let write_err = |path: &Path| {
        let path = path.display().to_string();
        move |source| TlsError::Write { path, source }
    };
    std::fs::create_dir_all(dir).map_err(write_err(dir))?;
    let ca_cert = dir.join("ca.crt");
    let ca_key_path = dir.join("ca.key");
    let ca_name_path = dir.join("ca.name");

    let created_ca = !ca_key_path.exists() || !ca_cert.exists() || !ca_name_path.exists();
    let (ca_key, ca_name) = if created_ca {
        let key = KeyPair::generate()?;
        let name = format!(
            "ferry site CA {}",
            &ferry_oci::Digest::sha256(key.public_key_pem().as_bytes()).hex()[..8]
        );
        let cert = ca_params(&name).self_signed(&key)?;
        // The certificate goes last, and first away: its presence says
        // that the key and name beside it are whole and belong to it.
        atomic::remove(&ca_cert).map_err(write_err(&ca_cert))?;
        AtomicWrite::new()
            .private()
            .replace(&ca_key_path, key.serialize_pem().as_bytes())
            .map_err(write_err(&ca_key_path))?;
        AtomicWrite::new()
            .replace(&ca_name_path, name.as_bytes())
            .map_err(write_err(&ca_name_path))?;
        AtomicWrite::new()
            .replace(&ca_cert, cert.pem().as_bytes())
            .map_err(write_err(&ca_cert))?;
        (key, name)
    } else {
        let read = |p: &Path| {
            std::fs::read_to_string(p).map_err(|e| TlsError::Read {
                path: p.display().to_string(),
                message: e.to_string(),
            })
        };
        (
            KeyPair::from_pem(&read(&ca_key_path)?)?,
            read(&ca_name_path)?,
        )
    };

    let server_cert = dir.join("server.crt");
    let server_key = dir.join("server.key");
    let names_path = dir.join("server.names");
    let mut wanted: Vec<String> = names.to_vec();
    wanted.sort();
    wanted.dedup();
    let current = std::fs::read_to_string(&names_path).unwrap_or_default();
    if created_ca || current != wanted.join("\n") || !server_cert.exists() || !server_key.exists() {
        let issuer = Issuer::new(ca_params(&ca_name), &ca_key);
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(wanted.clone())?;
        let mut dn = DistinguishedName::new();
        dn.push(
            DnType::CommonName,
            wanted.first().cloned().unwrap_or_else(|| "ferry".into()),
        );
        params.distinguished_name = dn;
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.not_before = rcgen::date_time_ymd(2024, 1, 1);
        params.not_after = rcgen::date_time_ymd(2034, 1, 1);
        let cert = params.signed_by(&key, &issuer)?;
        let ca_pem = std::fs::read_to_string(&ca_cert).map_err(|e| TlsError::Read {
            path: ca_cert.display().to_string(),
            message: e.to_string(),
        })?;
        // The names go last, and first away: they say that the
        // certificate and key beside them are a pair.
        atomic::remove(&names_path).map_err(write_err(&names_path))?;
        // The chain: server certificate, then the CA.
        AtomicWrite::new()
            .replace(&server_cert, format!("{}{}", cert.pem(), ca_pem).as_bytes())
            .map_err(write_err(&server_cert))?;
        AtomicWrite::new()
            .private()
            .replace(&server_key, key.serialize_pem().as_bytes())
            .map_err(write_err(&server_key))?;
        AtomicWrite::new()
            .replace(&names_path, wanted.join("\n").as_bytes())
            .map_err(write_err(&names_path))?;
    }
    Ok(AutoTls {
        config: load(&server_cert, &server_key)?,
        ca_cert,
        created_ca,
        names: wanted,
    })
}

fn ca_params(name: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params.not_after = rcgen::date_time_ymd(2044, 1, 1);
    params
}
