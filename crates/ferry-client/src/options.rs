//! How the client reaches registries: per-host transport security, CA
//! files and credentials, plus timeouts, retries and limits.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::credentials::{CredentialStore, Credentials};
use crate::retry::RetryPolicy;

/// How to talk to one registry host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum HostSecurity {
    /// HTTPS with certificate verification (the default).
    #[default]
    Verified,
    /// HTTPS without certificate verification, falling back to plain HTTP
    /// when the host does not speak TLS at all: what skopeo and podman do
    /// with `--tls-verify=false`, and Docker for `insecure-registries`.
    InsecureSkipVerify,
    /// Plain HTTP only.
    PlainHttp,
}

/// Settings for one registry host (`host[:port]` as written in references).
#[derive(Debug, Clone, Default)]
pub struct HostConfig {
    pub security: HostSecurity,
    /// Extra CA certificates (PEM) trusted for this host, on top of the
    /// system roots and the host's `certs.d` directory.
    pub ca_files: Vec<PathBuf>,
    /// Credentials that override the auth files.
    pub credentials: Option<Credentials>,
}

impl HostConfig {
    pub fn insecure() -> Self {
        HostConfig {
            security: HostSecurity::InsecureSkipVerify,
            ..Default::default()
        }
    }

    pub fn plain_http() -> Self {
        HostConfig {
            security: HostSecurity::PlainHttp,
            ..Default::default()
        }
    }

    pub fn with_credentials(mut self, credentials: Credentials) -> Self {
        self.credentials = Some(credentials);
        self
    }

    pub fn with_ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_files.push(path.into());
        self
    }
}

/// Everything a [`crate::Client`] is configured with.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Per-host settings; hosts not listed get [`ClientOptions::default_host`].
    pub hosts: HashMap<String, HostConfig>,
    pub default_host: HostConfig,
    /// Credentials from auth files, used when a host has none set.
    pub credential_store: Arc<CredentialStore>,
    /// `certs.d` directories searched for `HOST[:PORT]/*.crt` CA files.
    pub certs_dirs: Vec<PathBuf>,
    pub retry: RetryPolicy,
    pub user_agent: String,
    pub connect_timeout: Duration,
    /// Longest silence on a connection before it counts as failed (not a
    /// limit on the whole transfer: a multi-GB blob may take hours).
    pub read_timeout: Duration,
    /// Manifests larger than this are refused (Distribution's limit is
    /// 4 MiB; large multi-arch indexes stay far below it).
    pub max_manifest_size: u64,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            hosts: HashMap::new(),
            default_host: HostConfig::default(),
            credential_store: Arc::new(CredentialStore::empty()),
            certs_dirs: vec![
                PathBuf::from("/etc/containers/certs.d"),
                PathBuf::from("/etc/docker/certs.d"),
            ],
            retry: RetryPolicy::default(),
            user_agent: format!("ferry/{}", env!("CARGO_PKG_VERSION")),
            connect_timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(300),
            max_manifest_size: 4 * 1024 * 1024,
        }
    }
}

impl ClientOptions {
    /// Defaults plus the credentials of `docker login` / `podman login`.
    pub fn from_environment() -> Self {
        ClientOptions {
            credential_store: Arc::new(CredentialStore::from_environment()),
            ..Default::default()
        }
    }

    /// Sets the configuration of one host.
    pub fn host(mut self, host: impl Into<String>, config: HostConfig) -> Self {
        self.hosts.insert(host.into(), config);
        self
    }

    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    pub(crate) fn host_config(&self, host: &str) -> &HostConfig {
        self.hosts.get(host).unwrap_or(&self.default_host)
    }
}
