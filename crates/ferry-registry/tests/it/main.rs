//! Tests of the registry Router: every endpoint and error path of the
//! distribution-spec, in process through `tower::ServiceExt::oneshot`, and
//! (for the conformance replay) also over real HTTP/1.1 on a loopback
//! socket served by `ferry_registry::server`, where hyper's framing
//! (HEAD lengths, unread request bodies, kept-alive connections) counts.

mod auth;
mod conformance;
mod errors;
mod listing;
mod pull;
mod push;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use ferry_oci::{Digest, media_type};
use ferry_registry::Registry;
use ferry_registry::auth::Auth;
use ferry_store::{Limits, Store};
use http_body_util::BodyExt;
use tower::ServiceExt;

pub struct TestRegistry {
    pub dir: tempfile::TempDir,
    pub store: Store,
    pub router: Router,
    transport: Transport,
}

/// How requests reach the Router.
enum Transport {
    InProcess,
    /// The Router served on a loopback port; dropping `_stop` shuts the
    /// server down.
    Http {
        base: String,
        client: reqwest::Client,
        _stop: tokio::sync::oneshot::Sender<()>,
    },
}

impl Default for TestRegistry {
    fn default() -> Self {
        Self::new()
    }
}

impl TestRegistry {
    pub fn new() -> Self {
        Self::with_auth(Auth::none())
    }

    pub fn with_auth(auth: Auth) -> Self {
        Self::build(
            auth,
            Limits {
                max_manifest_size: 64 * 1024,
            },
        )
    }

    /// A registry with the store limits `ferry serve` uses by default.
    pub fn with_default_limits() -> Self {
        Self::build(Auth::none(), Limits::default())
    }

    /// Like [`Self::with_default_limits`], but every request goes over
    /// HTTP/1.1 to the Router served on a loopback port.
    pub async fn served_with_default_limits() -> Self {
        let mut registry = Self::with_default_limits();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(ferry_registry::server::serve(
            listener,
            registry.router.clone(),
            None,
            async move {
                let _ = stopped.await;
            },
            std::time::Duration::from_secs(1),
        ));
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        registry.transport = Transport::Http {
            base,
            client,
            _stop: stop,
        };
        registry
    }

    fn build(auth: Auth, limits: Limits) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("store"), limits).unwrap();
        let router = Registry::new(store.clone(), auth).router();
        TestRegistry {
            dir,
            store,
            router,
            transport: Transport::InProcess,
        }
    }

    /// The same store served by a fresh Router, as after a restart.
    pub fn restarted(self) -> Self {
        let store = Store::open(
            self.dir.path().join("store"),
            Limits {
                max_manifest_size: 64 * 1024,
            },
        )
        .unwrap();
        let router = Registry::new(store.clone(), Auth::none()).router();
        TestRegistry {
            dir: self.dir,
            store,
            router,
            transport: Transport::InProcess,
        }
    }

    pub async fn send(
        &self,
        method: Method,
        uri: &str,
        headers: &[(&str, &str)],
        body: impl Into<Body>,
    ) -> Reply {
        let (status, headers, body) = match &self.transport {
            Transport::InProcess => {
                let mut req = Request::builder().method(method).uri(uri);
                for (k, v) in headers {
                    req = req.header(*k, *v);
                }
                let resp = self
                    .router
                    .clone()
                    .oneshot(req.body(body.into()).unwrap())
                    .await
                    .unwrap();
                let status = resp.status();
                let headers = resp.headers().clone();
                let body = resp.into_body().collect().await.unwrap().to_bytes();
                (status, headers, body.to_vec())
            }
            Transport::Http { base, client, .. } => {
                let body = body.into().collect().await.unwrap().to_bytes();
                let mut req = client.request(method, format!("{base}{uri}"));
                for (k, v) in headers {
                    req = req.header(*k, *v);
                }
                let resp = req.body(body).send().await.unwrap();
                let status = resp.status();
                let headers = resp.headers().clone();
                let body = resp.bytes().await.unwrap();
                (status, headers, body.to_vec())
            }
        };
        assert!(
            status.as_u16() < 500,
            "{uri}: server error {status}: {}",
            String::from_utf8_lossy(&body)
        );
        Reply {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&self, uri: &str) -> Reply {
        self.send(Method::GET, uri, &[], Body::empty()).await
    }

    /// Pushes a blob monolithically and returns its digest.
    pub async fn push_blob(&self, repo: &str, data: &[u8]) -> Digest {
        let digest = Digest::sha256(data);
        let r = self
            .send(
                Method::POST,
                &format!("/v2/{repo}/blobs/uploads/?digest={digest}"),
                &[],
                data.to_vec(),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
        digest
    }

    /// Pushes config + layers + manifest under `tag`; returns the manifest digest and body.
    pub async fn push_image(&self, repo: &str, tag: &str, layers: &[&[u8]]) -> (Digest, Vec<u8>) {
        let config = format!("{{\"tag\":\"{tag}\"}}").into_bytes();
        self.push_blob(repo, &config).await;
        for l in layers {
            self.push_blob(repo, l).await;
        }
        let body = manifest(&config, layers, None);
        let r = self
            .send(
                Method::PUT,
                &format!("/v2/{repo}/manifests/{tag}"),
                &[("content-type", media_type::OCI_MANIFEST)],
                body.clone(),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
        (Digest::sha256(&body), body)
    }
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.text()))
    }

    /// The spec error code of an error reply.
    pub fn code(&self) -> String {
        self.json()["errors"][0]["code"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

pub fn descriptor(mt: &str, data: &[u8]) -> serde_json::Value {
    serde_json::json!({"mediaType": mt, "digest": Digest::sha256(data).to_string(), "size": data.len()})
}

pub fn manifest(
    config: &[u8],
    layers: &[&[u8]],
    subject: Option<(&Digest, usize, &str)>,
) -> Vec<u8> {
    let mut m = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_MANIFEST,
        "config": descriptor(media_type::OCI_CONFIG, config),
        "layers": layers.iter().map(|l| descriptor(media_type::OCI_LAYER_GZIP, l)).collect::<Vec<_>>(),
    });
    if let Some((d, size, artifact_type)) = subject {
        m["subject"] = serde_json::json!({"mediaType": media_type::OCI_MANIFEST, "digest": d.to_string(), "size": size});
        m["artifactType"] = serde_json::json!(artifact_type);
        m["annotations"] = serde_json::json!({"org.example.kind": artifact_type});
    }
    serde_json::to_vec(&m).unwrap()
}
