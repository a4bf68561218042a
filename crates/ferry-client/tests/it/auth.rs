//! Authentication against real registries: Distribution with htpasswd
//! (Basic), Distribution with `auth: token` in front of an in-process
//! token service (Docker token flow with JWTs Distribution verifies), and
//! ferry's registry in token mode. Credentials given explicitly or read
//! from Docker / podman auth files.

use std::sync::Arc;

use axum::http::{Method, StatusCode};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ferry_client::{
    Client, ClientError, ClientOptions, CredentialStore, Credentials, HostConfig, Repository,
};
use ferry_oci::Descriptor;
use ferry_oci::progress::NoProgress;
use ferry_registry::auth::htpasswd::Htpasswd;
use ferry_registry::auth::{Auth, Mode};

use crate::support::distribution::{Config, Distribution, TokenAuth, htpasswd_file};
use crate::support::faults::Faults;
use crate::support::ferry::FerryRegistry;
use crate::support::image::TestImage;
use crate::support::token_server::{IDENTITY_TOKEN, ISSUER, SERVICE, TokenServer};
use crate::support::{fast_retries, plain_client, plain_client_with};

fn with_credentials(host: &str, user: &str, password: &str) -> Client {
    plain_client_with(
        host,
        HostConfig::plain_http().with_credentials(Credentials::basic(user, password)),
    )
}

fn assert_unauthorized(result: Result<impl std::fmt::Debug, ClientError>) {
    match result {
        Err(e) => assert_eq!(e.status(), Some(StatusCode::UNAUTHORIZED), "{e}"),
        Ok(v) => panic!("expected 401, got {v:?}"),
    }
}

/// Pulls the image back whole and compares.
async fn pull_back(repo: &Repository, image: &TestImage) {
    let manifest = repo.get_manifest("v1").await.unwrap();
    assert_eq!(manifest.bytes, image.manifest);
    for d in manifest.parse().unwrap().blob_references() {
        let mut out = Vec::new();
        repo.fetch_blob(d, &mut out, &NoProgress).await.unwrap();
        assert_eq!(ferry_oci::Digest::sha256(&out), d.digest);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distribution_htpasswd_basic_auth() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Distribution::start_with(Config {
        htpasswd: Some(htpasswd_file(dir.path(), "alice", "s3cret")),
        ..Default::default()
    });
    let host = registry.host();
    let image = TestImage::new(70, &[200_000, 1000], "linux", "amd64");

    // Without credentials, and with a wrong password: refused, nothing stored.
    let anonymous = plain_client(&host);
    assert_unauthorized(anonymous.ping(&host).await);
    let repo = anonymous.repository(&host, "auth/app").unwrap();
    assert_unauthorized(image.push(&repo, Some("v1")).await);
    let wrong = with_credentials(&host, "alice", "wrong");
    assert_unauthorized(wrong.ping(&host).await);

    let alice = with_credentials(&host, "alice", "s3cret");
    let ping = alice.ping(&host).await.unwrap();
    assert!(ping.authenticated);
    assert_eq!(ping.api_version.as_deref(), Some("registry/2.0"));
    let repo = alice.repository(&host, "auth/app").unwrap();
    assert_eq!(repo.head_manifest("v1").await.unwrap(), None);
    image.push(&repo, Some("v1")).await.unwrap();
    pull_back(&repo, &image).await;

    // The same credentials from a Docker config.json, and podman's
    // per-repository keys (the most specific key wins).
    let encoded = |user: &str, pass: &str| STANDARD.encode(format!("{user}:{pass}"));
    let config = dir.path().join("config.json");
    std::fs::write(
        &config,
        serde_json::json!({"auths": {
            format!("http://{host}"): {"auth": encoded("alice", "s3cret")},
            format!("{host}/auth/locked"): {"auth": encoded("alice", "wrong")},
        }})
        .to_string(),
    )
    .unwrap();
    let from_file = Client::new(ClientOptions {
        credential_store: Arc::new(CredentialStore::from_files(&[config])),
        retry: fast_retries(),
        ..ClientOptions::default().host(&host, HostConfig::plain_http())
    })
    .unwrap();
    pull_back(&from_file.repository(&host, "auth/app").unwrap(), &image).await;
    assert_unauthorized(
        from_file
            .repository(&host, "auth/locked/x")
            .unwrap()
            .get_manifest("v1")
            .await,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distribution_token_auth() {
    // The first token the service issues grants nothing: the registry
    // refuses it and the client must fetch another.
    let tokens = TokenServer::start("bob", "pw", 1).await;
    let registry = Distribution::start_with(Config {
        token: Some(TokenAuth {
            realm: tokens.realm.clone(),
            service: SERVICE.to_string(),
            issuer: ISSUER.to_string(),
            root_cert_bundle: tokens.cert_pem.clone(),
        }),
        ..Default::default()
    });
    let host = registry.host();
    let bob = with_credentials(&host, "bob", "pw");
    let repo = bob.repository(&host, "tok/app").unwrap();
    let image = TestImage::new(71, &[300_000, 2000], "linux", "arm64");
    image.push(&repo, Some("v1")).await.unwrap();

    let requests = tokens.requests();
    let scopes: Vec<Vec<String>> = requests.iter().map(|r| r.scopes.clone()).collect();
    let pull = vec!["repository:tok/app:pull".to_string()];
    let push = vec!["repository:tok/app:pull,push".to_string()];
    assert_eq!(scopes, vec![pull.clone(), pull, push], "{}", registry.log());
    assert!(requests.iter().all(|r| r.user.as_deref() == Some("bob")));

    // Everything else reuses the cached tokens.
    pull_back(&repo, &image).await;
    image.push(&repo, Some("v2")).await.unwrap();
    assert_eq!(tokens.requests().len(), 3);

    // Anonymous: the service grants nothing, the registry refuses.
    let anonymous = plain_client(&host);
    assert_unauthorized(
        anonymous
            .repository(&host, "tok/app")
            .unwrap()
            .get_manifest("v1")
            .await,
    );
    // An identity token (config.json `identitytoken`) is exchanged with
    // the OAuth2 refresh-token grant.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.json");
    std::fs::write(
        &config,
        serde_json::json!({"auths": {&host: {"auth": STANDARD.encode("<token>:"), "identitytoken": IDENTITY_TOKEN}}})
            .to_string(),
    )
    .unwrap();
    let oauth = Client::new(ClientOptions {
        credential_store: Arc::new(CredentialStore::from_files(&[config])),
        retry: fast_retries(),
        ..ClientOptions::default().host(&host, HostConfig::plain_http())
    })
    .unwrap();
    pull_back(&oauth.repository(&host, "tok/app").unwrap(), &image).await;

    // A wrong password is refused by the token service itself.
    let wrong = with_credentials(&host, "bob", "nope");
    let err = wrong
        .repository(&host, "tok/app")
        .unwrap()
        .get_manifest("v1")
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Auth { .. }), "{err}");
    assert!(err.to_string().contains("401"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ferry_registry_token_auth() {
    let dir = tempfile::tempdir().unwrap();
    let file = htpasswd_file(dir.path(), "carol", "pa55");
    let users = Htpasswd::load(&file).unwrap();
    let faults = Arc::new(Faults::default());
    let layer = faults.clone();
    let registry = FerryRegistry::start_wrapped(
        Auth::with_users(Mode::Token, users, false, false),
        move |r| layer.layer(r),
    )
    .await;
    let host = registry.host();
    let image = TestImage::new(72, &[100_000, 3000], "linux", "amd64");

    // Anonymous callers get no token at all here.
    let anonymous = plain_client(&host);
    let repo = anonymous.repository(&host, "team/app").unwrap();
    let err = image.push(&repo, Some("v1")).await.unwrap_err();
    assert!(matches!(err, ClientError::Auth { .. }), "{err}");

    let carol = with_credentials(&host, "carol", "pa55");
    let repo = carol.repository(&host, "team/app").unwrap();
    image.push(&repo, Some("v1")).await.unwrap();
    pull_back(&repo, &image).await;
    let token_requests = || {
        faults
            .seen()
            .iter()
            .filter(|s| s.method == Method::GET && s.uri.starts_with("/token"))
            .count()
    };
    let after_first = token_requests();
    assert!(after_first >= 1);
    // A second image into the same repository: cached tokens only.
    TestImage::new(73, &[5000], "linux", "amd64")
        .push(&repo, Some("v2"))
        .await
        .unwrap();
    assert_eq!(token_requests(), after_first);
    // A cross-repository mount asks for both repositories in one token.
    let layer = &image.layers[0];
    let other = carol.repository(&host, "team/other").unwrap();
    assert!(
        other
            .mount_blob(&ferry_oci::Digest::sha256(layer), "team/app")
            .await
            .unwrap()
    );
    let mount_token = faults
        .seen()
        .into_iter()
        .rfind(|s| s.uri.starts_with("/token"))
        .unwrap();
    assert!(
        mount_token.uri.contains("repository%3Ateam%2Fapp%3Apull")
            && mount_token
                .uri
                .contains("repository%3Ateam%2Fother%3Apull%2Cpush"),
        "{mount_token:?}"
    );
    let d = Descriptor::new("x", ferry_oci::Digest::sha256(layer), layer.len() as u64);
    let mut out = Vec::new();
    other.fetch_blob(&d, &mut out, &NoProgress).await.unwrap();
    assert_eq!(&out[..], &layer[..]);
}
