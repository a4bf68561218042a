//! TLS against Distribution serving a certificate from a site CA made
//! with rcgen: refused without the CA, accepted with it (as a CA file or
//! in a certs.d directory), accepted unverified only in insecure mode;
//! insecure mode falls back to plain HTTP for a host without TLS, and
//! verified mode names such a host as plain HTTP.

use std::path::Path;

use ferry_client::{Client, ClientError, ClientOptions, HostConfig, HostSecurity, TransportKind};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};

use crate::support::distribution::{Config, Distribution};
use crate::support::fast_retries;
use crate::support::image::TestImage;

/// Writes `ca.pem`, `server.pem` and `server.key` (for 127.0.0.1) into `dir`.
fn site_ca(dir: &Path) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "ferry test site CA");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let server_key = KeyPair::generate().unwrap();
    let server_cert =
        CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .unwrap()
            .signed_by(&server_key, &issuer)
            .unwrap();
    std::fs::write(dir.join("ca.pem"), ca_cert.pem()).unwrap();
    std::fs::write(dir.join("server.pem"), server_cert.pem()).unwrap();
    std::fs::write(dir.join("server.key"), server_key.serialize_pem()).unwrap();
}

fn client(host: &str, config: HostConfig, certs_dirs: Vec<std::path::PathBuf>) -> Client {
    Client::new(ClientOptions {
        certs_dirs,
        retry: fast_retries(),
        ..ClientOptions::default().host(host, config)
    })
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn site_ca_certificates() {
    let dir = tempfile::tempdir().unwrap();
    site_ca(dir.path());
    let registry = Distribution::start_with(Config {
        tls: Some((dir.path().join("server.pem"), dir.path().join("server.key"))),
        ..Default::default()
    });
    let host = registry.host();

    // The system roots do not know the site CA: said so, not retried.
    let err = client(&host, HostConfig::default(), Vec::new())
        .ping(&host)
        .await
        .unwrap_err();
    assert_eq!(
        err.transport_kind(),
        Some(TransportKind::UntrustedCertificate),
        "{err}"
    );
    assert!(
        !err.is_transient() && err.to_string().contains("not trusted"),
        "{err}"
    );

    // With the CA file: verified HTTPS, push and pull.
    let verified = client(
        &host,
        HostConfig::default().with_ca_file(dir.path().join("ca.pem")),
        Vec::new(),
    );
    let ping = verified.ping(&host).await.unwrap();
    assert!(ping.base_url.starts_with("https://"), "{ping:?}");
    let repo = verified.repository(&host, "tls/app").unwrap();
    let image = TestImage::new(80, &[150_000], "linux", "amd64");
    image.push(&repo, Some("v1")).await.unwrap();
    assert_eq!(repo.get_manifest("v1").await.unwrap().bytes, image.manifest);

    // With the CA in a certs.d directory, as Docker and podman keep it.
    let certs_d = dir.path().join("certs.d");
    std::fs::create_dir_all(certs_d.join(&host)).unwrap();
    std::fs::copy(
        dir.path().join("ca.pem"),
        certs_d.join(&host).join("ca.crt"),
    )
    .unwrap();
    let from_certs_d = client(&host, HostConfig::default(), vec![certs_d]);
    from_certs_d.ping(&host).await.unwrap();

    // Insecure mode: HTTPS without verification.
    let insecure = client(&host, HostConfig::insecure(), Vec::new());
    let ping = insecure.ping(&host).await.unwrap();
    assert!(ping.base_url.starts_with("https://"), "{ping:?}");
    let repo = insecure.repository(&host, "tls/app").unwrap();
    assert_eq!(repo.get_manifest("v1").await.unwrap().bytes, image.manifest);

    // A CA file that is not one is refused up front.
    let bogus = dir.path().join("server.key");
    let err = Client::new(ClientOptions::default().host(
        &host,
        HostConfig {
            security: HostSecurity::Verified,
            ca_files: vec![bogus],
            credentials: None,
        },
    ))
    .err()
    .unwrap();
    assert!(matches!(err, ClientError::Tls(_)), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insecure_mode_falls_back_to_plain_http() {
    let registry = Distribution::start();
    let host = registry.host();
    let ping = client(&host, HostConfig::insecure(), Vec::new())
        .ping(&host)
        .await
        .unwrap();
    assert!(ping.base_url.starts_with("http://"), "{ping:?}");
    // Verified mode never falls back; it names the plain-HTTP registry
    // for what it is, at once.
    let err = client(&host, HostConfig::default(), Vec::new())
        .ping(&host)
        .await
        .unwrap_err();
    assert_eq!(
        err.transport_kind(),
        Some(TransportKind::PlainHttp),
        "{err}"
    );
    assert!(!err.is_transient(), "{err}");
    assert!(err.to_string().contains("speaks plain HTTP"), "{err}");
}
