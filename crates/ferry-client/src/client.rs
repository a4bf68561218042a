//! [`Client`]: one per process, shared by every operation. It owns an
//! HTTP connection pool per registry host (each host may have its own TLS
//! settings), the authenticator, and the request loop that every call goes
//! through: attach `Authorization`, send, answer a `401` challenge once,
//! retry transient failures with backoff. A failed request is typed by
//! [`TransportKind`]; an HTTPS request whose handshake got no TLS back is
//! checked with one plain-HTTP request, so that a plain-HTTP registry is
//! named as such at once instead of retried as a broken network.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};
use url::Url;

use crate::auth::{Authenticator, Scope, challenged_scope};
use crate::credentials::Credentials;
use crate::error::{ClientError, Result, TransportKind, answered_without_tls};
use crate::options::{ClientOptions, HostConfig, HostSecurity};
use crate::repository::Repository;
use crate::retry::is_transient_status;
use crate::tls;

/// A registry client. Cheap to clone; clones share connections, learned
/// challenges and tokens.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    options: ClientOptions,
    hosts: Mutex<HashMap<String, Arc<tokio::sync::OnceCell<Arc<Host>>>>>,
    auth: Authenticator,
}

/// A resolved registry host: where its API lives and how to reach it.
pub(crate) struct Host {
    /// The name as written in references (`docker.io`, `reg.local:5000`).
    pub name: String,
    /// `scheme://api-host[:port]/`.
    pub base: Url,
    pub http: reqwest::Client,
    pub config: HostConfig,
}

/// A request whose body (if any) can be sent again on retry.
pub(crate) struct Request {
    pub method: Method,
    pub url: Url,
    pub headers: HeaderMap,
    pub body: Option<Bytes>,
    pub scopes: Vec<Scope>,
}

impl Request {
    pub fn new(method: Method, url: Url, scopes: Vec<Scope>) -> Self {
        Request {
            method,
            url,
            headers: HeaderMap::new(),
            body: None,
            scopes,
        }
    }

    pub fn header(mut self, name: http::header::HeaderName, value: &str) -> Result<Self> {
        let value = http::HeaderValue::from_str(value)
            .map_err(|_| ClientError::InvalidArgument(format!("invalid {name} value {value:?}")))?;
        self.headers.insert(name, value);
        Ok(self)
    }

    pub fn body(mut self, body: Bytes) -> Self {
        self.body = Some(body);
        self
    }
}

/// What `/v2/` said.
#[derive(Debug, Clone)]
pub struct PingInfo {
    /// Where the registry's API was found (`https://host/`), after the
    /// HTTPS-to-HTTP fallback of insecure hosts.
    pub base_url: String,
    /// `Docker-Distribution-API-Version`, if sent.
    pub api_version: Option<String>,
    /// True if the registry demanded authentication (and it succeeded).
    pub authenticated: bool,
}

impl Client {
    pub fn new(options: ClientOptions) -> Result<Self> {
        // Fail early on unusable CA files rather than at first contact.
        for config in options.hosts.values().chain([&options.default_host]) {
            if config.security != HostSecurity::PlainHttp {
                tls::verifying_config(&config.ca_files)?;
            }
        }
        Ok(Client {
            inner: Arc::new(Inner {
                options,
                hosts: Mutex::new(HashMap::new()),
                auth: Authenticator::default(),
            }),
        })
    }

    pub fn options(&self) -> &ClientOptions {
        &self.inner.options
    }

    /// The repository an image reference names (`nginx` is
    /// `docker.io/library/nginx`, served by `registry-1.docker.io`).
    pub fn repository_of(&self, reference: &ferry_oci::Reference) -> Result<Repository> {
        self.repository(&reference.registry, &reference.repository)
    }

    /// A handle on repository `name` of `registry` (`host[:port]`, as in
    /// references). Nothing is contacted yet.
    pub fn repository(&self, registry: &str, name: &str) -> Result<Repository> {
        if !ferry_oci::name::is_valid_repository(name) {
            return Err(ClientError::InvalidArgument(format!(
                "invalid repository name {name:?}"
            )));
        }
        validate_host(registry)?;
        Ok(Repository::new(self.clone(), registry, name))
    }

    /// Checks that `registry` speaks the distribution API and that the
    /// credentials (if any) are accepted.
    pub async fn ping(&self, registry: &str) -> Result<PingInfo> {
        let host = self.host(registry).await?;
        let url = host.base.join("v2/").expect("static path");
        let response = self
            .send(&host, Request::new(Method::GET, url, Vec::new()))
            .await?;
        if response.status() != StatusCode::OK {
            return Err(ClientError::from_response(&Method::GET, response).await);
        }
        let api_version = response
            .headers()
            .get("docker-distribution-api-version")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        Ok(PingInfo {
            base_url: host.base.to_string(),
            api_version,
            authenticated: self.inner.auth.challenged(&host.name),
        })
    }

    /// The resolved host for `registry`, created on first use.
    pub(crate) async fn host(&self, registry: &str) -> Result<Arc<Host>> {
        let cell = self
            .inner
            .hosts
            .lock()
            .expect("hosts lock")
            .entry(registry.to_string())
            .or_default()
            .clone();
        cell.get_or_try_init(|| self.resolve_host(registry))
            .await
            .cloned()
    }

    async fn resolve_host(&self, registry: &str) -> Result<Arc<Host>> {
        validate_host(registry)?;
        let options = &self.inner.options;
        let config = options.host_config(registry).clone();
        let api_host = match registry {
            "docker.io" | "index.docker.io" => "registry-1.docker.io",
            other => other,
        };
        let tls_config = match config.security {
            HostSecurity::InsecureSkipVerify => tls::insecure_config()?,
            // A plain-HTTP host still gets a TLS config: redirects (to
            // blob storage) may lead to HTTPS.
            HostSecurity::Verified | HostSecurity::PlainHttp => {
                let mut ca_files = config.ca_files.clone();
                ca_files.extend(tls::certs_d_files(&options.certs_dirs, registry));
                tls::verifying_config(&ca_files)?
            }
        };
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls_config)
            .http1_only()
            .user_agent(options.user_agent.clone())
            .connect_timeout(options.connect_timeout)
            .read_timeout(options.read_timeout)
            .tcp_nodelay(true)
            .build()
            .map_err(|e| ClientError::Tls(format!("building the HTTP client: {e}")))?;
        let base = |scheme: &str| {
            Url::parse(&format!("{scheme}://{api_host}/")).map_err(|e| {
                ClientError::InvalidArgument(format!("invalid registry {registry:?}: {e}"))
            })
        };
        let base = match config.security {
            HostSecurity::Verified => base("https")?,
            HostSecurity::PlainHttp => base("http")?,
            HostSecurity::InsecureSkipVerify => {
                // Like skopeo's --tls-verify=false: HTTPS if the host
                // speaks it (unverified), else plain HTTP.
                let https = base("https")?;
                match http.get(https.join("v2/").expect("static")).send().await {
                    Ok(_) => https,
                    Err(e) => {
                        tracing::debug!("{registry}: HTTPS failed ({e}); using plain HTTP");
                        base("http")?
                    }
                }
            }
        };
        Ok(Arc::new(Host {
            name: registry.to_string(),
            base,
            http,
            config,
        }))
    }

    fn credentials(&self, host: &Host, scopes: &[Scope]) -> Result<Option<Credentials>> {
        if let Some(c) = &host.config.credentials {
            return Ok(Some(c.clone()));
        }
        let repository = scopes.iter().find_map(Scope::repository).unwrap_or("");
        self.inner
            .options
            .credential_store
            .lookup(&host.name, repository)
    }

    async fn authorization(&self, host: &Host, scopes: &[Scope]) -> Result<Option<String>> {
        let credentials = self.credentials(host, scopes)?;
        self.inner
            .auth
            .header(
                &host.http,
                &self.inner.options.retry,
                &host.name,
                scopes,
                credentials.as_ref(),
            )
            .await
    }

    /// Sends a request with a replayable body, answering `401` challenges
    /// and retrying transport errors and transient statuses per the retry
    /// policy. Returns the final response whatever its status.
    ///
    /// Two `401`s are answered: the first teaches the host's scheme (the
    /// request went out anonymously), the second replaces a token the
    /// registry refused (expired, revoked, or too narrow); a third means
    /// the credentials do not grant the access.
    pub(crate) async fn send(
        &self,
        host: &Host,
        mut request: Request,
    ) -> Result<reqwest::Response> {
        let policy = &self.inner.options.retry;
        let mut attempt = 0;
        let mut challenges = 0;
        loop {
            let authorization = self.authorization(host, &request.scopes).await?;
            let mut builder = host
                .http
                .request(request.method.clone(), request.url.clone())
                .headers(request.headers.clone());
            if let Some(value) = authorization {
                builder = builder.header(http::header::AUTHORIZATION, value);
            }
            if let Some(body) = &request.body {
                builder = builder.body(body.clone());
            }
            match builder.send().await {
                Err(e) => {
                    let error = self
                        .transport_error(host, &request.method, &request.url, e)
                        .await;
                    if !error.is_transient() || attempt >= policy.max_retries {
                        return Err(error);
                    }
                    let delay = policy.delay(attempt, None);
                    // A warning, not debug: a registry that is down or
                    // restarting otherwise looks like a hung command.
                    tracing::warn!(
                        "{error}; retry {} of {} in {:.1} s",
                        attempt + 1,
                        policy.max_retries,
                        delay.as_secs_f64()
                    );
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                Ok(response) if response.status() == StatusCode::UNAUTHORIZED && challenges < 2 => {
                    challenges += 1;
                    if !self
                        .inner
                        .auth
                        .learn(&host.name, response.headers(), &request.scopes)
                    {
                        return Ok(response);
                    }
                    if let Some(scope) = challenged_scope(response.headers())
                        && !request.scopes.contains(&scope)
                    {
                        request.scopes.push(scope);
                    }
                }
                Ok(response)
                    if is_transient_status(response.status()) && attempt < policy.max_retries =>
                {
                    let delay = policy.delay(attempt, Some(response.headers()));
                    tracing::warn!(
                        "{} {}: {}; retry {} of {} in {:.1} s",
                        request.method,
                        request.url,
                        response.status(),
                        attempt + 1,
                        policy.max_retries,
                        delay.as_secs_f64()
                    );
                    drop(response);
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                Ok(response) => return Ok(response),
            }
        }
    }

    /// Sends a request with a streaming body, once (the stream cannot be
    /// replayed; upload code retries by resuming). A `401` invalidates the
    /// token so that the next attempt fetches a fresh one.
    pub(crate) async fn send_streaming(
        &self,
        host: &Host,
        request: Request,
        body: reqwest::Body,
    ) -> Result<reqwest::Response> {
        let authorization = self.authorization(host, &request.scopes).await?;
        let mut builder = host
            .http
            .request(request.method.clone(), request.url.clone())
            .headers(request.headers)
            .body(body);
        if let Some(value) = authorization {
            builder = builder.header(http::header::AUTHORIZATION, value);
        }
        let response = match builder.send().await {
            Ok(response) => response,
            Err(e) => {
                return Err(self
                    .transport_error(host, &request.method, &request.url, e)
                    .await);
            }
        };
        if response.status() == StatusCode::UNAUTHORIZED {
            self.inner
                .auth
                .learn(&host.name, response.headers(), &request.scopes);
        }
        Ok(response)
    }

    /// The error for a request that got no answer. A handshake answered
    /// with something other than TLS is tried once more in plain HTTP on
    /// the same host and port: an HTTP answer there means the registry
    /// speaks plain HTTP ([`TransportKind::PlainHttp`]).
    async fn transport_error(
        &self,
        host: &Host,
        method: &Method,
        url: &Url,
        error: reqwest::Error,
    ) -> ClientError {
        let without_tls = url.scheme() == "https" && answered_without_tls(&error);
        let mut failure = ClientError::transport(method, url.as_str(), error);
        if let ClientError::Transport { kind, .. } = &mut failure
            && without_tls
            && speaks_plain_http(&host.http, url).await
        {
            *kind = TransportKind::PlainHttp;
        }
        failure
    }

    /// Makes sure a token for `scopes` is at hand before a streaming
    /// request, whose body could not be resent after a `401`.
    pub(crate) async fn prepare_auth(&self, host: &Host, scopes: &[Scope]) -> Result<()> {
        self.authorization(host, scopes).await.map(drop)
    }
}

/// A registry is `host[:port]`; anything with a scheme or a path is a
/// caller mistake worth a clear message.
fn validate_host(registry: &str) -> Result<()> {
    let bad = |why: &str| {
        Err(ClientError::InvalidArgument(format!(
            "invalid registry {registry:?}: {why}"
        )))
    };
    if registry.is_empty() {
        return bad("empty");
    }
    if registry.contains("://") {
        return bad("give host[:port] without a scheme");
    }
    if registry.contains('/')
        || registry
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
    {
        return bad("give host[:port] only (a path prefix belongs to the repository name)");
    }
    Ok(())
}

/// True if `url`'s host and port answer `GET /v2/` in plain HTTP (with
/// any status: what matters is that HTTP came back).
async fn speaks_plain_http(http: &reqwest::Client, url: &Url) -> bool {
    let mut plain = url.clone();
    if plain.set_scheme("http").is_err() {
        return false;
    }
    plain.set_path("/v2/");
    plain.set_query(None);
    http.get(plain)
        .timeout(std::time::Duration::from_secs(10))
        .send()
        .await
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_validated() {
        let client = Client::new(ClientOptions::default()).unwrap();
        assert!(client.repository("reg.local:5000", "a/b/c").is_ok());
        assert!(client.repository("https://reg", "a").is_err());
        assert!(client.repository("reg/prefix", "a").is_err());
        assert!(client.repository("", "a").is_err());
        assert!(client.repository("reg", "UPPER").is_err());
    }
}
