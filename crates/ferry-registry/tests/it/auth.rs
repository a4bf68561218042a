use axum::body::Body;
use axum::http::{Method, StatusCode};
use base64::Engine;
use ferry_registry::auth::htpasswd::Htpasswd;
use ferry_registry::auth::{Auth, Mode};
use rustls_pki_types::pem::PemObject;

use crate::TestRegistry;

fn users() -> Htpasswd {
    let hash = bcrypt::hash("s3cret", 4).unwrap();
    Htpasswd::parse(&format!("alice:{hash}\n"), "test").unwrap()
}

fn basic(user: &str, pass: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
    )
}

#[tokio::test]
async fn basic_auth_guards_everything() {
    let r = TestRegistry::with_auth(Auth::with_users(Mode::Basic, users(), false, false));
    let anon = r.get("/v2/").await;
    assert_eq!(anon.status, StatusCode::UNAUTHORIZED);
    assert_eq!(anon.code(), "UNAUTHORIZED");
    assert_eq!(
        anon.header("www-authenticate"),
        Some("Basic realm=\"ferry\"")
    );
    let wrong = r
        .send(
            Method::GET,
            "/v2/",
            &[("authorization", &basic("alice", "nope"))],
            Body::empty(),
        )
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    let ok = r
        .send(
            Method::GET,
            "/v2/",
            &[("authorization", &basic("alice", "s3cret"))],
            Body::empty(),
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK);
    let push = r
        .send(Method::POST, "/v2/repo/blobs/uploads/", &[], Body::empty())
        .await;
    assert_eq!(push.status, StatusCode::UNAUTHORIZED);
    let pull = r.get("/v2/repo/tags/list").await;
    assert_eq!(pull.status, StatusCode::UNAUTHORIZED);
    let push = r
        .send(
            Method::POST,
            "/v2/repo/blobs/uploads/",
            &[("authorization", &basic("alice", "s3cret"))],
            Body::empty(),
        )
        .await;
    assert_eq!(push.status, StatusCode::ACCEPTED);
    assert!(r.store.repositories().unwrap().is_empty());
}

#[tokio::test]
async fn token_flow_and_anonymous_read() {
    let r = TestRegistry::with_auth(Auth::with_users(Mode::Token, users(), true, false));
    let anon = r
        .send(
            Method::GET,
            "/v2/",
            &[("host", "reg.local:5000")],
            Body::empty(),
        )
        .await;
    assert_eq!(anon.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        anon.header("www-authenticate"),
        Some("Bearer realm=\"http://reg.local:5000/token\",service=\"ferry\"")
    );
    let push = r
        .send(
            Method::POST,
            "/v2/app/blobs/uploads/",
            &[("host", "h")],
            Body::empty(),
        )
        .await;
    assert_eq!(push.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        push.header("www-authenticate"),
        Some(
            "Bearer realm=\"http://h/token\",service=\"ferry\",scope=\"repository:app:pull,push\""
        )
    );
    // A user's token carries what it asked for.
    let token = r
        .send(
            Method::GET,
            "/token?service=ferry&scope=repository:app:pull,push",
            &[("authorization", &basic("alice", "s3cret"))],
            Body::empty(),
        )
        .await;
    assert_eq!(token.status, StatusCode::OK);
    let tok = token.json()["token"].as_str().unwrap().to_string();
    assert_eq!(token.json()["access_token"].as_str(), Some(tok.as_str()));
    let bearer = format!("Bearer {tok}");
    let push = r
        .send(
            Method::POST,
            "/v2/app/blobs/uploads/",
            &[("authorization", &bearer)],
            Body::empty(),
        )
        .await;
    assert_eq!(push.status, StatusCode::ACCEPTED);
    // ...and nothing else.
    let other = r
        .send(
            Method::POST,
            "/v2/other/blobs/uploads/",
            &[("authorization", &bearer)],
            Body::empty(),
        )
        .await;
    assert_eq!(other.status, StatusCode::UNAUTHORIZED);
    // Bad credentials get no token; a tampered token is refused.
    let bad = r
        .send(
            Method::GET,
            "/token?scope=repository:app:push",
            &[("authorization", &basic("alice", "x"))],
            Body::empty(),
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNAUTHORIZED);
    let forged = format!("Bearer {}x", tok);
    let reply = r
        .send(
            Method::GET,
            "/v2/",
            &[("authorization", &forged)],
            Body::empty(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    // Anonymous: pull without any token, and a token that grants pull only.
    assert_eq!(
        r.get("/v2/app/tags/list").await.status,
        StatusCode::NOT_FOUND
    );
    let anon_token = r.get("/token?scope=repository:app:pull,push").await;
    assert_eq!(anon_token.status, StatusCode::OK);
    let anon_bearer = format!("Bearer {}", anon_token.json()["token"].as_str().unwrap());
    let denied = r
        .send(
            Method::POST,
            "/v2/app/blobs/uploads/",
            &[("authorization", &anon_bearer)],
            Body::empty(),
        )
        .await;
    assert_eq!(denied.status, StatusCode::UNAUTHORIZED);
    let head = r
        .send(
            Method::GET,
            "/v2/app/tags/list",
            &[("authorization", &anon_bearer)],
            Body::empty(),
        )
        .await;
    assert_eq!(head.status, StatusCode::NOT_FOUND, "allowed to look");
    // Basic credentials work directly too (curl -u).
    let direct = r
        .send(
            Method::POST,
            "/v2/app/blobs/uploads/",
            &[("authorization", &basic("alice", "s3cret"))],
            Body::empty(),
        )
        .await;
    assert_eq!(direct.status, StatusCode::ACCEPTED);
}

#[tokio::test]
async fn without_anonymous_read_the_token_endpoint_wants_credentials() {
    let r = TestRegistry::with_auth(Auth::with_users(Mode::Token, users(), false, false));
    assert_eq!(
        r.get("/token?scope=repository:app:pull").await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        r.get("/v2/app/tags/list").await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn gc_endpoint_is_for_loopback_or_users_only() {
    // In-process requests carry no peer address: not known to be loopback.
    let open = TestRegistry::new();
    let reply = open
        .send(Method::POST, "/ferry/v1/gc?grace=0", &[], Body::empty())
        .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(reply.code(), "DENIED");
    let r = TestRegistry::with_auth(Auth::with_users(Mode::Basic, users(), true, false));
    let anon = r
        .send(Method::POST, "/ferry/v1/gc", &[], Body::empty())
        .await;
    assert_eq!(anon.status, StatusCode::FORBIDDEN);
    let user = r
        .send(
            Method::POST,
            "/ferry/v1/gc?grace=0&dry_run=true",
            &[("authorization", &basic("alice", "s3cret"))],
            Body::empty(),
        )
        .await;
    assert_eq!(user.status, StatusCode::OK, "{}", user.text());
    assert_eq!(user.json()["dry_run"], true);
}

/// The token realm names the address the client used, whether it came in
/// `Host` (HTTP/1.1) or in the `:authority` pseudo-header (HTTP/2, which
/// has no `Host`; RFC 9113 §8.3.1), over a real TLS socket where ALPN
/// picks the protocol.
#[tokio::test]
async fn token_realm_is_the_request_authority_over_http1_and_http2() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let tls = ferry_registry::tls::auto(&dir.path().join("tls"), &["127.0.0.1".into()]).unwrap();
    let store =
        ferry_store::Store::open(dir.path().join("store"), ferry_store::Limits::default()).unwrap();
    let auth = Auth::with_users(Mode::Token, users(), false, true);
    let router = ferry_registry::Registry::new(store, auth).router();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(ferry_registry::server::serve(
        listener,
        router,
        Some(tls.config),
        async move {
            let _ = stopped.await;
        },
        std::time::Duration::from_secs(1),
    ));
    let ca = std::fs::read(&tls.ca_cert).unwrap();
    for (alpn, version) in [
        (&b"h2"[..], reqwest::Version::HTTP_2),
        (&b"http/1.1"[..], reqwest::Version::HTTP_11),
    ] {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(rustls_pki_types::CertificateDer::from_pem_slice(&ca).unwrap())
            .unwrap();
        let mut config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        config.alpn_protocols = vec![alpn.to_vec()];
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(config)
            .build()
            .unwrap();
        let reply = client
            .get(format!("https://{addr}/v2/"))
            .send()
            .await
            .unwrap();
        assert_eq!(reply.version(), version);
        assert_eq!(reply.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            reply.headers()["www-authenticate"].to_str().unwrap(),
            format!("Bearer realm=\"https://{addr}/token\",service=\"ferry\""),
            "over {version:?}"
        );
    }
    drop(stop);
}

/// `Basic Og==` (empty user and password, what containers/image sends
/// when it has no credentials) is an anonymous caller: it may pull with
/// `--anonymous-read`, and nothing more.
#[tokio::test]
async fn empty_basic_credentials_are_anonymous() {
    let empty = basic("", "");
    assert_eq!(empty, "Basic Og==");
    for (anonymous_read, pull) in [
        (true, StatusCode::NOT_FOUND),
        (false, StatusCode::UNAUTHORIZED),
    ] {
        let r = TestRegistry::with_auth(Auth::with_users(
            Mode::Basic,
            users(),
            anonymous_read,
            false,
        ));
        let reply = r
            .send(
                Method::GET,
                "/v2/app/tags/list",
                &[("authorization", &empty)],
                Body::empty(),
            )
            .await;
        assert_eq!(reply.status, pull, "anonymous_read={anonymous_read}");
        let push = r
            .send(
                Method::POST,
                "/v2/app/blobs/uploads/",
                &[("authorization", &empty)],
                Body::empty(),
            )
            .await;
        assert_eq!(push.status, StatusCode::UNAUTHORIZED);
    }
}
