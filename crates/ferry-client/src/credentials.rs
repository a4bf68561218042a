//! Registry credentials: given explicitly, or read from the files
//! `docker login` and `podman login` write.
//!
//! Files, in the order podman consults them (containers-auth.json(5)),
//! the first that has an entry winning:
//! `$REGISTRY_AUTH_FILE`, `$XDG_RUNTIME_DIR/containers/auth.json`,
//! `~/.config/containers/auth.json`, then Docker's
//! `$DOCKER_CONFIG/config.json` (or `~/.docker/config.json`).
//!
//! An entry of `auths` holds `auth` (base64 of `user:password`), or
//! `username` and `password`, or `identitytoken` (an OAuth2 refresh token,
//! exchanged at the token service), or `registrytoken` (a bearer token
//! used as is). Keys are a host (`reg.example:5000`), a legacy URL
//! (`https://index.docker.io/v1/`) or, as podman allows, a host with a
//! repository path (`quay.io/org`); the most specific key wins.
//! Credential helpers (`credHelpers`, `credsStore`) run external programs,
//! which ferry does not do: a host that needs one gets a clear error
//! instead of a silent anonymous attempt.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::Deserialize;

use crate::error::{ClientError, Result};

/// Credentials for one registry.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    Basic {
        username: String,
        password: String,
    },
    /// An OAuth2 refresh token (`identitytoken` in config.json), exchanged
    /// for access tokens at the registry's token service.
    IdentityToken(String),
    /// A bearer token sent as is (`registrytoken` in config.json).
    RegistryToken(String),
}

impl Credentials {
    pub fn basic(username: impl Into<String>, password: impl Into<String>) -> Self {
        Credentials::Basic {
            username: username.into(),
            password: password.into(),
        }
    }

    /// The `Authorization: Basic` value, for Basic credentials.
    pub(crate) fn basic_header(&self) -> Option<String> {
        match self {
            Credentials::Basic { username, password } => Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"))
            )),
            _ => None,
        }
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print secrets, not even in debug logs.
        match self {
            Credentials::Basic { username, .. } => write!(f, "Basic({username}, ***)"),
            Credentials::IdentityToken(_) => f.write_str("IdentityToken(***)"),
            Credentials::RegistryToken(_) => f.write_str("RegistryToken(***)"),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AuthFile {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
    #[serde(default)]
    cred_helpers: BTreeMap<String, String>,
    #[serde(default)]
    creds_store: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    identitytoken: Option<String>,
    #[serde(default)]
    registrytoken: Option<String>,
}

/// Credentials found in auth files, looked up per registry and repository.
#[derive(Debug, Default)]
pub struct CredentialStore {
    files: Vec<(PathBuf, std::result::Result<AuthFile, String>)>,
}

impl CredentialStore {
    /// No files: every registry is contacted anonymously unless explicit
    /// credentials are given.
    pub fn empty() -> Self {
        CredentialStore::default()
    }

    /// The files podman and Docker use, found from the environment.
    pub fn from_environment() -> Self {
        let env = |k: &str| {
            std::env::var_os(k)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        let mut files = Vec::new();
        if let Some(f) = env("REGISTRY_AUTH_FILE") {
            files.push(f);
        }
        if let Some(d) = env("XDG_RUNTIME_DIR") {
            files.push(d.join("containers/auth.json"));
        }
        let home = env("HOME");
        if let Some(h) = &home {
            files.push(h.join(".config/containers/auth.json"));
        }
        match (env("DOCKER_CONFIG"), &home) {
            (Some(d), _) => files.push(d.join("config.json")),
            (None, Some(h)) => files.push(h.join(".docker/config.json")),
            (None, None) => {}
        }
        Self::from_files(&files)
    }

    /// Reads the given files; missing ones are skipped, malformed ones are
    /// reported when a lookup reaches them.
    pub fn from_files(paths: &[PathBuf]) -> Self {
        let files = paths
            .iter()
            .filter_map(|path| match std::fs::read(path) {
                Ok(data) => Some((
                    path.clone(),
                    serde_json::from_slice::<AuthFile>(&data).map_err(|e| e.to_string()),
                )),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => Some((path.clone(), Err(e.to_string()))),
            })
            .collect();
        CredentialStore { files }
    }

    /// The credentials for `repository` on `registry` (as written in image
    /// references: `docker.io`, `reg.local:5000`), if any file has some.
    pub fn lookup(&self, registry: &str, repository: &str) -> Result<Option<Credentials>> {
        for (path, file) in &self.files {
            let file = file.as_ref().map_err(|e| {
                ClientError::Credentials(format!(
                    "{} is not a valid auth file: {e}",
                    path.display()
                ))
            })?;
            if let Some(found) = lookup_in(file, path, registry, repository)? {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }
}

/// Registry names that mean the same host (Docker Hub has several).
fn host_aliases(registry: &str) -> Vec<&str> {
    match registry {
        "docker.io" | "index.docker.io" | "registry-1.docker.io" => {
            vec!["docker.io", "index.docker.io", "registry-1.docker.io"]
        }
        other => vec![other],
    }
}

/// A key of `auths` reduced to `host[/path]`: legacy keys are URLs
/// (`https://index.docker.io/v1/`) whose `/v1/` or `/v2/` is not a
/// repository path.
fn normalize_key(key: &str) -> String {
    let rest = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let rest = rest.trim_end_matches('/');
    match rest.split_once('/') {
        Some((host, "v1" | "v2")) => host.to_string(),
        _ => rest.to_string(),
    }
}

fn lookup_in(
    file: &AuthFile,
    path: &Path,
    registry: &str,
    repository: &str,
) -> Result<Option<Credentials>> {
    let hosts = host_aliases(registry);
    if let Some((host, helper)) = file
        .cred_helpers
        .iter()
        .find(|(k, _)| hosts.contains(&normalize_key(k).as_str()))
    {
        return Err(ClientError::Credentials(format!(
            "{} names credential helper docker-credential-{helper} for {host}; ferry does not \
             run credential helpers: pass the username and password explicitly, or log in with \
             `podman login --authfile` to write them into an auth file",
            path.display()
        )));
    }
    // Candidates from most to least specific: host/a/b, host/a, host.
    let segments: Vec<&str> = repository.split('/').filter(|s| !s.is_empty()).collect();
    let normalized: Vec<(String, &AuthEntry)> = file
        .auths
        .iter()
        .map(|(k, v)| (normalize_key(k), v))
        .collect();
    for host in &hosts {
        for depth in (0..=segments.len()).rev() {
            let candidate = if depth == 0 {
                host.to_string()
            } else {
                format!("{host}/{}", segments[..depth].join("/"))
            };
            if let Some((_, entry)) = normalized.iter().find(|(k, _)| *k == candidate) {
                return entry_credentials(entry, path, &candidate, file.creds_store.as_deref());
            }
        }
    }
    Ok(None)
}

fn entry_credentials(
    entry: &AuthEntry,
    path: &Path,
    key: &str,
    creds_store: Option<&str>,
) -> Result<Option<Credentials>> {
    let bad = |reason: &str| {
        ClientError::Credentials(format!("{}: entry {key:?}: {reason}", path.display()))
    };
    if let Some(token) = entry.identitytoken.as_deref().filter(|t| !t.is_empty()) {
        return Ok(Some(Credentials::IdentityToken(token.to_string())));
    }
    if let Some(token) = entry.registrytoken.as_deref().filter(|t| !t.is_empty()) {
        return Ok(Some(Credentials::RegistryToken(token.to_string())));
    }
    if let Some(auth) = entry.auth.as_deref().filter(|a| !a.is_empty()) {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .map_err(|_| bad("`auth` is not base64"))?;
        let decoded = String::from_utf8(decoded).map_err(|_| bad("`auth` is not UTF-8"))?;
        let (user, pass) = decoded
            .split_once(':')
            .ok_or_else(|| bad("`auth` is not base64 of user:password"))?;
        return Ok(Some(Credentials::basic(user, pass)));
    }
    if let (Some(user), Some(pass)) = (&entry.username, &entry.password) {
        return Ok(Some(Credentials::basic(user.clone(), pass.clone())));
    }
    match creds_store {
        // Docker writes an empty entry per host when a store holds the secret.
        Some(store) => Err(bad(&format!(
            "the secret is in credential store docker-credential-{store}, which ferry does not \
             run: pass the username and password explicitly"
        ))),
        None => Err(bad("has no auth, username/password or identitytoken")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(json: &str) -> (tempfile::TempDir, CredentialStore) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(&path, json).unwrap();
        let store = CredentialStore::from_files(&[path]);
        (dir, store)
    }

    #[test]
    fn docker_config_entries() {
        let (_d, s) = store(
            r#"{"auths":{
                "https://index.docker.io/v1/":{"auth":"aHViOnNlY3JldA=="},
                "reg.local:5000":{"username":"u","password":"p:w"},
                "quay.io/org":{"auth":"b3JnOm9yZ3Bhc3M="},
                "quay.io":{"auth":"YW55OmFueXBhc3M="},
                "acr.example":{"auth":"MDAwMDAwMDAtMDAwMDo=","identitytoken":"refresh"}
            }}"#,
        );
        assert_eq!(
            s.lookup("docker.io", "library/nginx").unwrap(),
            Some(Credentials::basic("hub", "secret"))
        );
        assert_eq!(
            s.lookup("reg.local:5000", "a").unwrap(),
            Some(Credentials::basic("u", "p:w"))
        );
        assert_eq!(
            s.lookup("quay.io", "org/app").unwrap(),
            Some(Credentials::basic("org", "orgpass"))
        );
        assert_eq!(
            s.lookup("quay.io", "other/app").unwrap(),
            Some(Credentials::basic("any", "anypass"))
        );
        assert_eq!(
            s.lookup("acr.example", "x").unwrap(),
            Some(Credentials::IdentityToken("refresh".into()))
        );
        assert_eq!(s.lookup("unknown.example", "x").unwrap(), None);
    }

    #[test]
    fn helpers_and_garbage_are_clear_errors() {
        let (_d, s) = store(
            r#"{"auths":{"a.example":{}},"credsStore":"desktop","credHelpers":{"b.example":"ecr-login"}}"#,
        );
        let e = s.lookup("a.example", "x").unwrap_err().to_string();
        assert!(e.contains("docker-credential-desktop"), "{e}");
        let e = s.lookup("b.example", "x").unwrap_err().to_string();
        assert!(e.contains("docker-credential-ecr-login"), "{e}");
        assert_eq!(s.lookup("c.example", "x").unwrap(), None);

        let (_d, s) = store("{not json");
        let e = s.lookup("a.example", "x").unwrap_err().to_string();
        assert!(e.contains("config.json is not a valid auth file"), "{e}");
        let (_d, s) = store(r#"{"auths":{"a.example":{"auth":"!!!"}}}"#);
        assert!(s.lookup("a.example", "x").is_err());
    }

    #[test]
    fn debug_hides_secrets() {
        let c = Credentials::basic("user", "hunter2");
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
