//! The Docker registry token flow ("Token Authentication Specification",
//! distribution/docs/spec/auth/token.md): a 401 with
//! `WWW-Authenticate: Bearer realm=...,service=...,scope=...` sends the
//! client to [`PATH`] with Basic credentials (or none, for anonymous pull);
//! it gets a short-lived token granting the scopes it may have.
//!
//! Tokens are self-contained: `base64url(claims) "." base64url(HMAC-SHA256)`
//! with a key drawn at start-up. ferry is both the token server and the
//! registry, so nothing but ferry needs to verify them; a JWT library and
//! certificate pair would add weight without adding safety here. After a
//! restart old tokens fail and clients fetch new ones on the 401.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::hmac;
use serde::{Deserialize, Serialize};

use super::{Identity, Mode};
use crate::Registry;
use crate::error::RegistryError;
use crate::handlers::query;

pub const PATH: &str = "/token";
pub const LIFETIME: Duration = Duration::from_secs(300);

/// One granted scope: `repository:<name>:pull,push`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Access {
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    pub actions: Vec<String>,
}

impl Access {
    /// Parses `type:name:actions`; the name may itself hold ':' (a port).
    pub fn parse_scope(scope: &str) -> Option<Access> {
        let (rest, actions) = scope.rsplit_once(':')?;
        let (kind, name) = rest.split_once(':')?;
        Some(Access {
            kind: kind.to_string(),
            name: name.to_string(),
            actions: actions
                .split(',')
                .filter(|a| !a.is_empty())
                .map(str::to_string)
                .collect(),
        })
    }

    pub fn allows(&self, kind: &str, name: &str, action: &str) -> bool {
        self.kind == kind
            && self.name == name
            && self.actions.iter().any(|a| a == action || a == "*")
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub exp: u64,
    pub access: Vec<Access>,
}

pub struct TokenKey {
    key: hmac::Key,
}

impl TokenKey {
    pub fn generate() -> TokenKey {
        let rng = ring::rand::SystemRandom::new();
        TokenKey {
            key: hmac::Key::generate(hmac::HMAC_SHA256, &rng)
                .expect("the OS random source is available"),
        }
    }

    pub fn sign(&self, claims: &Claims) -> String {
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).expect("claims serialize"));
        let tag = hmac::sign(&self.key, payload.as_bytes());
        format!("{payload}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
    }

    /// The claims of a token this key signed that has not expired.
    pub fn verify(&self, token: &str) -> Option<Claims> {
        let (payload, tag) = token.split_once('.')?;
        let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
        hmac::verify(&self.key, payload.as_bytes(), &tag).ok()?;
        let claims: Claims = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
        (claims.exp > now_secs()).then_some(claims)
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `GET /token?service=...&scope=...`: issues a token for the scopes the
/// caller may have. Anonymous callers get pull scopes only, and only if
/// anonymous reads are allowed.
pub async fn issue(State(registry): State<Registry>, request: Request) -> Response {
    let auth = registry.auth.clone();
    if auth.mode != Mode::Token {
        return RegistryError::NotFound.into_response();
    }
    let identity = match auth.identify(request.headers()).await {
        Ok(Identity::User(user)) => Some(user),
        Ok(Identity::Anonymous) if auth.anonymous_read => None,
        Ok(_) | Err(_) => {
            return RegistryError::unauthorized("Basic realm=\"ferry\"".into()).into_response();
        }
    };
    let params = query(request.uri());
    let mut access = Vec::new();
    for (key, value) in &params {
        if key != "scope" {
            continue;
        }
        // Several scopes may share one parameter, space-separated.
        for scope in value.split(' ') {
            let Some(mut requested) = Access::parse_scope(scope) else {
                continue;
            };
            if identity.is_none() {
                requested.actions.retain(|a| a == "pull");
            }
            if !requested.actions.is_empty() {
                access.push(requested);
            }
        }
    }
    let claims = Claims {
        sub: identity.clone().unwrap_or_default(),
        exp: now_secs() + LIFETIME.as_secs(),
        access,
    };
    let token = auth.tokens.sign(&claims);
    // RFC 3339, as the token spec requires (Docker and containers/image parse it).
    let issued_at = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    tracing::debug!(
        user = identity.as_deref().unwrap_or("anonymous"),
        "token issued"
    );
    (
        StatusCode::OK,
        axum::Json(serde_json::json!({
            "token": token,
            "access_token": token,
            "expires_in": LIFETIME.as_secs(),
            "issued_at": issued_at,
        })),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes() {
        let a = Access::parse_scope("repository:a/b:pull,push").unwrap();
        assert!(a.allows("repository", "a/b", "push"));
        assert!(!a.allows("repository", "a/b", "delete"));
        assert!(!a.allows("repository", "a", "pull"));
        let c = Access::parse_scope("registry:catalog:*").unwrap();
        assert!(c.allows("registry", "catalog", "*"));
        assert!(Access::parse_scope("nonsense").is_none());
    }

    #[test]
    fn tokens_are_tamper_proof() {
        let key = TokenKey::generate();
        let claims = Claims {
            sub: "alice".into(),
            exp: now_secs() + 60,
            access: vec![],
        };
        let token = key.sign(&claims);
        assert_eq!(key.verify(&token).unwrap().sub, "alice");
        let (payload, tag) = token.split_once('.').unwrap();
        let forged = URL_SAFE_NO_PAD.encode(br#"{"sub":"mallory","exp":99999999999,"access":[]}"#);
        assert!(key.verify(&format!("{forged}.{tag}")).is_none());
        assert!(TokenKey::generate().verify(&token).is_none());
        assert!(key.verify(payload).is_none());
        let expired = key.sign(&Claims { exp: 1, ..claims });
        assert!(key.verify(&expired).is_none());
    }
}
