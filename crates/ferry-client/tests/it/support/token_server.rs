//! A Docker token service for Distribution's `auth: token` mode, in
//! process: checks Basic credentials and issues ES256 JWTs signed by a
//! key whose certificate (in the `x5c` header) Distribution trusts via
//! `rootcertbundle` ("Token Authentication Implementation", distribution
//! docs). Records every request; can hand out useless tokens first, to
//! exercise the client's refresh on 401.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use tokio::task::JoinHandle;

pub const SERVICE: &str = "ferry-test";
pub const ISSUER: &str = "ferry-test-issuer";
/// The identity (refresh) token the service accepts, standing for the user.
pub const IDENTITY_TOKEN: &str = "refresh-secret";

/// One request to the token endpoint.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    pub user: Option<String>,
    pub scopes: Vec<String>,
}

struct Inner {
    user: String,
    password: String,
    key: EcdsaKeyPair,
    cert_der: Vec<u8>,
    requests: Mutex<Vec<TokenRequest>>,
    useless_first: AtomicU32,
}

pub struct TokenServer {
    pub realm: String,
    /// PEM of the signing certificate, for Distribution's rootcertbundle.
    pub cert_pem: PathBuf,
    inner: Arc<Inner>,
    task: JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl TokenServer {
    /// Issues tokens to `user`/`password`; the first `useless_first`
    /// tokens grant nothing.
    pub async fn start(user: &str, password: &str, useless_first: u32) -> Self {
        let signing = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["ferry-token-signer".to_string()])
            .unwrap()
            .self_signed(&signing)
            .unwrap();
        let key = EcdsaKeyPair::from_pkcs8(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            &signing.serialize_der(),
            &ring::rand::SystemRandom::new(),
        )
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let cert_pem = dir.path().join("token-signer.pem");
        std::fs::write(&cert_pem, cert.pem()).unwrap();
        let inner = Arc::new(Inner {
            user: user.to_string(),
            password: password.to_string(),
            key,
            cert_der: cert.der().to_vec(),
            requests: Mutex::new(Vec::new()),
            useless_first: AtomicU32::new(useless_first),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let realm = format!("http://{}/token", listener.local_addr().unwrap());
        let router = Router::new()
            .route("/token", get(issue).post(issue_oauth))
            .with_state(inner.clone());
        let task = tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        TokenServer {
            realm,
            cert_pem,
            inner,
            task,
            _dir: dir,
        }
    }

    pub fn requests(&self) -> Vec<TokenRequest> {
        self.inner.requests.lock().unwrap().clone()
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

async fn issue(State(inner): State<Arc<Inner>>, request: Request) -> Response {
    let query = request.uri().query().unwrap_or("");
    let scopes: Vec<String> = url::form_urlencoded::parse(query.as_bytes())
        .filter(|(k, _)| k == "scope")
        .map(|(_, v)| v.into_owned())
        .collect();
    let user = match request
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
    {
        None => None,
        Some(value) => {
            let decoded = value
                .strip_prefix("Basic ")
                .and_then(|b| STANDARD.decode(b).ok())
                .and_then(|b| String::from_utf8(b).ok());
            match decoded.as_deref().and_then(|d| d.split_once(':')) {
                Some((u, p)) if u == inner.user && p == inner.password => Some(u.to_string()),
                _ => return (StatusCode::UNAUTHORIZED, "bad credentials").into_response(),
            }
        }
    };
    respond(&inner, user, scopes, false)
}

/// `POST /token` with `grant_type=refresh_token` (RFC 6749 §6).
async fn issue_oauth(State(inner): State<Arc<Inner>>, body: String) -> Response {
    let form: Vec<(String, String)> = url::form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    let field = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    if field("grant_type") != Some("refresh_token")
        || field("refresh_token") != Some(IDENTITY_TOKEN)
    {
        return (StatusCode::UNAUTHORIZED, "bad refresh token").into_response();
    }
    let scopes = field("scope")
        .map(|s| s.split(' ').map(str::to_string).collect())
        .unwrap_or_default();
    respond(&inner, Some(inner.user.clone()), scopes, true)
}

fn respond(inner: &Inner, user: Option<String>, scopes: Vec<String>, oauth: bool) -> Response {
    inner.requests.lock().unwrap().push(TokenRequest {
        user: user.clone(),
        scopes: scopes.clone(),
    });
    let useless = inner
        .useless_first
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    // Users get what they ask for; anonymous callers and useless tokens
    // get nothing.
    let access: Vec<serde_json::Value> = if user.is_none() || useless {
        Vec::new()
    } else {
        scopes
            .iter()
            .filter_map(|s| {
                let mut parts = s.splitn(2, ':');
                let kind = parts.next()?;
                let (name, actions) = parts.next()?.rsplit_once(':')?;
                Some(serde_json::json!({
                    "type": kind, "name": name, "actions": actions.split(',').collect::<Vec<_>>()
                }))
            })
            .collect()
    };
    let header = serde_json::json!({
        "typ": "JWT", "alg": "ES256", "x5c": [STANDARD.encode(&inner.cert_der)],
    });
    let claims = serde_json::json!({
        "iss": ISSUER, "sub": user.clone().unwrap_or_default(), "aud": SERVICE,
        "exp": now() + 300, "nbf": now() - 10, "iat": now(),
        "jti": format!("{}", now()), "access": access,
    });
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature = inner
        .key
        .sign(&ring::rand::SystemRandom::new(), signing_input.as_bytes())
        .unwrap();
    let token = format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature));
    // OAuth2 answers carry access_token; the Docker flow alternates the
    // field name, since clients must accept both.
    let n = inner.requests.lock().unwrap().len();
    let body = if oauth || n.is_multiple_of(2) {
        serde_json::json!({"access_token": token, "expires_in": 300})
    } else {
        serde_json::json!({"token": token, "expires_in": 300})
    };
    axum::Json(body).into_response()
}
