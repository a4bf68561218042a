//! Authentication: what to put in `Authorization` for a request.
//!
//! A host starts unknown and is contacted anonymously. Its first `401`
//! carries a challenge that fixes its scheme for the client's lifetime:
//!
//! - `Basic` (ECR, Artifactory in some modes, htpasswd Distribution):
//!   the credentials go with every request;
//! - `Bearer realm=..,service=..` (Docker Hub, Harbor, Distribution with
//!   `auth: token`, ferry): the Docker token flow ("Token Authentication
//!   Specification", distribution docs): GET the realm with `service` and
//!   one `scope` per resource (`repository:proj/app:pull,push`), with Basic
//!   credentials or anonymously, or POST an OAuth2 refresh-token grant when
//!   the credentials are an identity token; the answer's `token` (or
//!   `access_token`) is sent as `Bearer`. Tokens are cached per host and
//!   set of scopes until shortly before `expires_in` (60 s when absent, as
//!   the spec says), and dropped on a `401`.
//!
//! Path-prefixed registries (a Harbor project, an Artifactory repository
//! key) need nothing special: the prefix is part of the repository name,
//! hence of the scope.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::{HeaderMap, StatusCode};
use serde::Deserialize;
use url::Url;

use crate::challenge::{self, Challenge};
use crate::credentials::Credentials;
use crate::error::{ClientError, ErrorList, Result, parse_error_body, read_limited};
use crate::retry::{RetryPolicy, is_transient_status};

/// A token scope: `repository:NAME:ACTIONS` or `registry:catalog:*`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Scope(String);

impl Scope {
    pub fn pull(repository: &str) -> Self {
        Scope(format!("repository:{repository}:pull"))
    }

    pub fn push(repository: &str) -> Self {
        Scope(format!("repository:{repository}:pull,push"))
    }

    pub fn catalog() -> Self {
        Scope("registry:catalog:*".to_string())
    }

    pub(crate) fn raw(s: &str) -> Self {
        Scope(s.to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The repository this scope is about, if it is a repository scope.
    pub fn repository(&self) -> Option<&str> {
        let rest = self.0.strip_prefix("repository:")?;
        rest.rsplit_once(':').map(|(name, _)| name)
    }
}

/// What a host asked for in its challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
enum HostScheme {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
    },
}

struct Token {
    value: String,
    valid_until: Instant,
}

type TokenSlot = Arc<tokio::sync::Mutex<Option<Token>>>;

/// Learned challenges and cached tokens; shared by all clones of a client.
#[derive(Default)]
pub(crate) struct Authenticator {
    schemes: Mutex<HashMap<String, HostScheme>>,
    tokens: Mutex<HashMap<String, TokenSlot>>,
}

fn token_key(host: &str, scopes: &[Scope]) -> String {
    let mut names: Vec<&str> = scopes.iter().map(Scope::as_str).collect();
    names.sort_unstable();
    names.dedup();
    format!("{host} {}", names.join(" "))
}

#[derive(Deserialize)]
struct TokenResponse {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
}

impl Authenticator {
    /// Records the challenge of a `401` from `host`. Returns false if the
    /// response had no usable challenge (so retrying cannot help).
    pub fn learn(&self, host: &str, headers: &HeaderMap, scopes: &[Scope]) -> bool {
        let challenges: Vec<Challenge> = headers
            .get_all(http::header::WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(challenge::parse)
            .collect();
        let bearer = challenges.iter().find(|c| c.scheme == "bearer");
        let scheme = match bearer {
            Some(c) => match c.param("realm") {
                Some(realm) => HostScheme::Bearer {
                    realm: realm.to_string(),
                    service: c.param("service").map(str::to_string),
                },
                None => return false,
            },
            None if challenges.iter().any(|c| c.scheme == "basic") => HostScheme::Basic,
            None => return false,
        };
        self.schemes
            .lock()
            .expect("auth lock")
            .insert(host.to_string(), scheme);
        // A token for these scopes was refused (expired or too narrow).
        self.tokens
            .lock()
            .expect("auth lock")
            .remove(&token_key(host, scopes));
        true
    }

    /// True once the host has sent a challenge.
    pub fn challenged(&self, host: &str) -> bool {
        self.schemes.lock().expect("auth lock").contains_key(host)
    }

    /// The `Authorization` value for a request to `host` needing `scopes`.
    pub async fn header(
        &self,
        http: &reqwest::Client,
        policy: &RetryPolicy,
        host: &str,
        scopes: &[Scope],
        credentials: Option<&Credentials>,
    ) -> Result<Option<String>> {
        if let Some(Credentials::RegistryToken(token)) = credentials {
            return Ok(Some(format!("Bearer {token}")));
        }
        let scheme = self.schemes.lock().expect("auth lock").get(host).cloned();
        match scheme {
            None => Ok(None),
            Some(HostScheme::Basic) => Ok(credentials.and_then(Credentials::basic_header)),
            Some(HostScheme::Bearer { realm, service }) => {
                let slot = self
                    .tokens
                    .lock()
                    .expect("auth lock")
                    .entry(token_key(host, scopes))
                    .or_default()
                    .clone();
                // One fetch per key at a time: parallel blob pushes to one
                // repository share the token instead of each asking for one.
                let mut token = slot.lock().await;
                if let Some(t) = token.as_ref()
                    && t.valid_until > Instant::now()
                {
                    return Ok(Some(format!("Bearer {}", t.value)));
                }
                let fetched = fetch_token(
                    http,
                    policy,
                    &realm,
                    service.as_deref(),
                    scopes,
                    credentials,
                )
                .await?;
                let header = format!("Bearer {}", fetched.value);
                *token = Some(fetched);
                Ok(Some(header))
            }
        }
    }
}

/// Asks the token service for a token covering `scopes`.
async fn fetch_token(
    http: &reqwest::Client,
    policy: &RetryPolicy,
    realm: &str,
    service: Option<&str>,
    scopes: &[Scope],
    credentials: Option<&Credentials>,
) -> Result<Token> {
    let auth_error = |status: Option<StatusCode>, reason: String| ClientError::Auth {
        realm: realm.to_string(),
        status,
        reason,
    };
    let mut url =
        Url::parse(realm).map_err(|e| auth_error(None, format!("invalid realm URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(auth_error(None, "realm is not an http(s) URL".into()));
    }
    let request = match credentials {
        Some(Credentials::IdentityToken(refresh)) => {
            // OAuth2 refresh-token grant (RFC 6749 §6), as `docker login`
            // does with identity tokens.
            let mut form = url::form_urlencoded::Serializer::new(String::new());
            form.append_pair("grant_type", "refresh_token")
                .append_pair("refresh_token", refresh)
                .append_pair("client_id", "ferry");
            if let Some(s) = service {
                form.append_pair("service", s);
            }
            let joined: Vec<&str> = scopes.iter().map(Scope::as_str).collect();
            if !joined.is_empty() {
                form.append_pair("scope", &joined.join(" "));
            }
            http.post(url.clone())
                .header(
                    http::header::CONTENT_TYPE,
                    "application/x-www-form-urlencoded",
                )
                .body(form.finish())
        }
        other => {
            {
                let mut q = url.query_pairs_mut();
                if let Some(s) = service {
                    q.append_pair("service", s);
                }
                for scope in scopes {
                    q.append_pair("scope", scope.as_str());
                }
                if let Some(Credentials::Basic { username, .. }) = other {
                    q.append_pair("account", username);
                }
            }
            let mut request = http.get(url.clone());
            if let Some(basic) = other.and_then(Credentials::basic_header) {
                request = request.header(http::header::AUTHORIZATION, basic);
            }
            request
        }
    };
    // The token service fails like any server: retry what may pass.
    let mut attempt = 0;
    let (status, body) = loop {
        let outcome = match request
            .try_clone()
            .expect("token requests have no stream body")
            .send()
            .await
        {
            Ok(response) => {
                let status = response.status();
                let transient = is_transient_status(status);
                match read_limited(response, 1024 * 1024).await {
                    Ok(body) if !transient => Ok((status, body)),
                    Ok(_) => Err((Some(status), format!("token service answered {status}"))),
                    Err(Some(e)) => Err((Some(status), format!("token response cut short: {e}"))),
                    Err(None) => {
                        return Err(auth_error(
                            Some(status),
                            "token response larger than 1 MiB".into(),
                        ));
                    }
                }
            }
            Err(e) => Err((None, format!("token request failed: {e}"))),
        };
        match outcome {
            Ok(answer) => break answer,
            Err((status, reason)) if attempt >= policy.max_retries => {
                return Err(auth_error(status, reason));
            }
            Err((_, reason)) => {
                tracing::debug!("{realm}: {reason}; retrying");
                tokio::time::sleep(policy.delay(attempt, None)).await;
                attempt += 1;
            }
        }
    };
    if !status.is_success() {
        // A distribution-spec error body reads as the registry's errors
        // do; anything else is shown as text, cut short.
        let errors = parse_error_body(&body);
        let said = if errors.is_empty() {
            let text = String::from_utf8_lossy(&body);
            let text: String = text.trim().chars().take(300).collect();
            if text.is_empty() {
                text
            } else {
                format!(": {text}")
            }
        } else {
            ErrorList(&errors).to_string()
        };
        return Err(auth_error(
            Some(status),
            format!("token service answered {status}{said}"),
        ));
    }
    let parsed: TokenResponse = serde_json::from_slice(&body)
        .map_err(|e| auth_error(Some(status), format!("token response is not JSON: {e}")))?;
    let value = parsed
        .token
        .or(parsed.access_token)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            auth_error(
                Some(status),
                "token response has neither token nor access_token".into(),
            )
        })?;
    let lifetime = Duration::from_secs(parsed.expires_in.unwrap_or(60).max(1));
    // Renew a little early so a request never leaves with a token that
    // expires in flight.
    let margin = (lifetime / 10).min(Duration::from_secs(30));
    Ok(Token {
        value,
        valid_until: Instant::now() + lifetime - margin,
    })
}

/// The scope a challenge names, when it asks for one the request did not
/// carry (Harbor and Docker Hub say which scope was missing).
pub(crate) fn challenged_scope(headers: &HeaderMap) -> Option<Scope> {
    headers
        .get_all(http::header::WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(challenge::parse)
        .find(|c| c.scheme == "bearer")
        .and_then(|c| c.param("scope").map(Scope::raw))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes() {
        assert_eq!(
            Scope::push("proj/app").as_str(),
            "repository:proj/app:pull,push"
        );
        assert_eq!(Scope::push("proj/app").repository(), Some("proj/app"));
        assert_eq!(Scope::catalog().repository(), None);
        assert_eq!(
            token_key("h", &[Scope::push("b"), Scope::pull("a"), Scope::pull("a")]),
            "h repository:a:pull repository:b:pull,push"
        );
    }

    #[test]
    fn learns_schemes() {
        let auth = Authenticator::default();
        let mut h = HeaderMap::new();
        assert!(!auth.learn("r", &h, &[]));
        h.insert(
            http::header::WWW_AUTHENTICATE,
            r#"Bearer realm="http://127.0.0.1/token",service="reg""#
                .parse()
                .unwrap(),
        );
        assert!(auth.learn("r", &h, &[]));
        let scheme = |auth: &Authenticator| auth.schemes.lock().unwrap().get("r").cloned();
        assert!(matches!(scheme(&auth), Some(HostScheme::Bearer { .. })));
        h.insert(
            http::header::WWW_AUTHENTICATE,
            "Basic realm=ecr".parse().unwrap(),
        );
        assert!(auth.learn("r", &h, &[]));
        assert_eq!(scheme(&auth), Some(HostScheme::Basic));
    }
}
