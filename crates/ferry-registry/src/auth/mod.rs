//! Who may do what.
//!
//! Three modes: [`Mode::None`] (everyone may do everything: the default
//! for a quick start on a trusted network), [`Mode::Basic`] (HTTP Basic
//! against an htpasswd file) and [`Mode::Token`] (the Docker token flow,
//! see [`token`]; Basic credentials are accepted on API requests too, so
//! `curl -u` works). Optionally anyone may pull without credentials.
//!
//! Every authenticated user may pull, push and delete everywhere: htpasswd
//! has no groups, and a disconnected site's registry has few writers.
//! Without credentials, nothing but (optionally) pulls succeeds.

pub mod htpasswd;
pub mod token;

use axum::http::{HeaderMap, Method, Uri, header};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::error::RegistryError;
use crate::route::{Action, Route};
use htpasswd::Htpasswd;
use token::{Claims, TokenKey};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    None,
    Basic,
    Token,
}

pub struct Auth {
    mode: Mode,
    users: Option<std::sync::Arc<Htpasswd>>,
    anonymous_read: bool,
    tokens: TokenKey,
    /// Token realm URL; derived from the request's authority when unset.
    realm: Option<String>,
    /// Whether the server speaks TLS (for a derived realm URL).
    tls: bool,
}

/// Who a request comes from.
pub enum Identity {
    Anonymous,
    User(String),
    Token(Claims),
}

impl Auth {
    /// No authentication.
    pub fn none() -> Auth {
        Auth {
            mode: Mode::None,
            users: None,
            anonymous_read: true,
            tokens: TokenKey::generate(),
            realm: None,
            tls: false,
        }
    }

    /// Authentication against `users` in `mode` (Basic or Token).
    pub fn with_users(mode: Mode, users: Htpasswd, anonymous_read: bool, tls: bool) -> Auth {
        Auth {
            mode,
            users: Some(std::sync::Arc::new(users)),
            anonymous_read,
            tokens: TokenKey::generate(),
            realm: None,
            tls,
        }
    }

    /// Sets the token realm URL clients are sent to.
    pub fn with_realm(mut self, realm: String) -> Auth {
        self.realm = Some(realm);
        self
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Who sent these headers; `Err` for credentials that do not verify.
    pub async fn identify(&self, headers: &HeaderMap) -> Result<Identity, ()> {
        let Some(value) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
        else {
            return Ok(Identity::Anonymous);
        };
        let (scheme, credentials) = value.split_once(' ').ok_or(())?;
        if scheme.eq_ignore_ascii_case("basic") {
            let decoded = STANDARD.decode(credentials.trim()).map_err(|_| ())?;
            let decoded = String::from_utf8(decoded).map_err(|_| ())?;
            let (user, password) = decoded.split_once(':').ok_or(())?;
            // containers/image (skopeo, podman) answers a Basic challenge
            // with `Basic Og==`, an empty user and password, when it has no
            // credentials: that is an anonymous caller, not a failed login.
            if user.is_empty() && password.is_empty() {
                return Ok(Identity::Anonymous);
            }
            let users = self.users.clone().ok_or(())?;
            let (u, p) = (user.to_string(), password.to_string());
            let ok = tokio::task::spawn_blocking(move || users.verify(&u, &p))
                .await
                .unwrap_or(false);
            return if ok {
                Ok(Identity::User(user.to_string()))
            } else {
                Err(())
            };
        }
        if scheme.eq_ignore_ascii_case("bearer") && self.mode == Mode::Token {
            return self
                .tokens
                .verify(credentials.trim())
                .map(Identity::Token)
                .ok_or(());
        }
        Err(())
    }

    /// Allows the request, or explains with a 401 (and the challenge that
    /// tells the client how to authenticate) or a 403.
    pub async fn authorize(
        &self,
        route: &Route,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
    ) -> Result<(), RegistryError> {
        if self.mode == Mode::None {
            return Ok(());
        }
        let action = route.action(method);
        let challenge = || RegistryError::unauthorized(self.challenge(route, action, uri, headers));
        let identity = self.identify(headers).await.map_err(|()| challenge())?;
        match identity {
            Identity::User(_) => Ok(()),
            Identity::Anonymous => {
                let read_only_ok =
                    self.anonymous_read && action == Action::Pull && *route != Route::Base;
                if read_only_ok {
                    Ok(())
                } else {
                    Err(challenge())
                }
            }
            Identity::Token(claims) => {
                let granted = match route {
                    Route::Base => true,
                    Route::Catalog => claims
                        .access
                        .iter()
                        .any(|a| a.allows("registry", "catalog", "*")),
                    _ => {
                        let repo = route.repository().unwrap_or_default();
                        claims
                            .access
                            .iter()
                            .any(|a| a.allows("repository", repo, action.as_str()))
                    }
                };
                // A token without this scope gets the challenge naming the
                // scope, so the client asks the token endpoint for it.
                if granted { Ok(()) } else { Err(challenge()) }
            }
        }
    }

    fn challenge(&self, route: &Route, action: Action, uri: &Uri, headers: &HeaderMap) -> String {
        match self.mode {
            Mode::None | Mode::Basic => "Basic realm=\"ferry\"".to_string(),
            Mode::Token => {
                let realm = self.realm.clone().unwrap_or_else(|| {
                    let host = request_authority(uri, headers).unwrap_or("localhost");
                    let scheme = if self.tls { "https" } else { "http" };
                    format!("{scheme}://{host}{}", token::PATH)
                });
                let scope = match route {
                    Route::Base => None,
                    Route::Catalog => Some("registry:catalog:*".to_string()),
                    _ => {
                        let actions = match action {
                            Action::Pull => "pull",
                            Action::Push => "pull,push",
                            Action::Delete => "delete",
                        };
                        route
                            .repository()
                            .map(|repo| format!("repository:{repo}:{actions}"))
                    }
                };
                let mut c = format!("Bearer realm=\"{realm}\",service=\"ferry\"");
                if let Some(scope) = scope {
                    c.push_str(&format!(",scope=\"{scope}\""));
                }
                c
            }
        }
    }
}

/// The host and port the client addressed: the request target's authority
/// (HTTP/2's `:authority` pseudo-header, which replaces `Host` there, RFC
/// 9113 §8.3.1; or an HTTP/1.1 absolute-form target), else the `Host`
/// header (RFC 9110 §7.2).
fn request_authority<'a>(uri: &'a Uri, headers: &'a HeaderMap) -> Option<&'a str> {
    uri.authority()
        .map(|a| a.as_str())
        .or_else(|| headers.get(header::HOST).and_then(|h| h.to_str().ok()))
}
