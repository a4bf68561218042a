//! Shared machinery for the creation tests: real peers on loopback
//! (ferry's registry router, a chart/file HTTP server), test images and
//! charts, and running `ferry bundle create`'s library entry point.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use ferry_bundle::cache::ContentCache;
use ferry_bundle::create::{CreateError, CreateOptions, CreateReport, create};
use ferry_bundle::spec::Spec;
use ferry_bundle::writer::WriteOptions;
use ferry_client::{Client, ClientOptions, HostConfig, MemorySource, PushOptions, Repository};
use ferry_oci::progress::NoProgress;
use ferry_oci::{Digest, media_type};
use serde_json::json;

/// Deterministic pseudo-random bytes (xorshift64*): incompressible like
/// real layers, reproducible from the seed.
pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

/// A tar holding one file, the way a layer holds a filesystem.
pub fn layer_tar(name: &str, data: &[u8]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    builder.append_data(&mut h, name, data).unwrap();
    builder.into_inner().unwrap()
}

pub fn descriptor(media_type: &str, data: &[u8]) -> serde_json::Value {
    json!({"mediaType": media_type, "digest": Digest::sha256(data).to_string(), "size": data.len()})
}

/// An image: gzip layers (each a tar), a config with their diff IDs, an
/// OCI manifest. `shared` layers are the same bytes in every image.
#[derive(Clone)]
pub struct TestImage {
    pub config: Bytes,
    pub layers: Vec<Bytes>,
    pub manifest: Bytes,
    pub digest: Digest,
    pub platform: (String, String),
}

impl TestImage {
    pub fn new(seed: u64, layer_sizes: &[usize], os: &str, arch: &str) -> Self {
        Self::with_shared(seed, &[], layer_sizes, os, arch)
    }

    pub fn with_shared(
        seed: u64,
        shared: &[Vec<u8>],
        sizes: &[usize],
        os: &str,
        arch: &str,
    ) -> Self {
        let mut tars: Vec<Vec<u8>> = shared.to_vec();
        tars.extend(
            sizes.iter().enumerate().map(|(i, &n)| {
                layer_tar(&format!("f{i}"), &random_bytes(seed * 1000 + i as u64, n))
            }),
        );
        let diff_ids: Vec<String> = tars.iter().map(|l| Digest::sha256(l).to_string()).collect();
        let layers: Vec<Bytes> = tars.iter().map(|l| Bytes::from(gzip(l))).collect();
        let config = Bytes::from(
            serde_json::to_vec(&json!({
                "architecture": arch,
                "os": os,
                "created": "2024-01-01T00:00:00Z",
                "config": {"Env": [format!("SEED={seed}")]},
                "rootfs": {"type": "layers", "diff_ids": diff_ids},
            }))
            .unwrap(),
        );
        let manifest = Bytes::from(
            serde_json::to_vec_pretty(&json!({
                "schemaVersion": 2,
                "mediaType": media_type::OCI_MANIFEST,
                "config": descriptor(media_type::OCI_CONFIG, &config),
                "layers": layers.iter().map(|l| descriptor(media_type::OCI_LAYER_GZIP, l)).collect::<Vec<_>>(),
            }))
            .unwrap(),
        );
        TestImage {
            digest: Digest::sha256(&manifest),
            config,
            layers,
            manifest,
            platform: (os.to_string(), arch.to_string()),
        }
    }

    pub fn blobs(&self) -> impl Iterator<Item = &Bytes> {
        std::iter::once(&self.config).chain(self.layers.iter())
    }

    pub async fn push(&self, repo: &Repository, tag: Option<&str>) {
        for blob in self.blobs() {
            repo.push_blob(
                &Digest::sha256(blob),
                &MemorySource::new(blob.clone()),
                &PushOptions::default(),
                &NoProgress,
            )
            .await
            .unwrap();
        }
        repo.put_manifest(
            &self.digest.to_string(),
            media_type::OCI_MANIFEST,
            self.manifest.clone(),
        )
        .await
        .unwrap();
        if let Some(tag) = tag {
            repo.put_manifest(tag, media_type::OCI_MANIFEST, self.manifest.clone())
                .await
                .unwrap();
        }
    }
}

/// An OCI index over `images`, with their platforms.
pub fn index(images: &[&TestImage]) -> Bytes {
    let manifests: Vec<serde_json::Value> = images
        .iter()
        .map(|i| {
            let mut d = descriptor(media_type::OCI_MANIFEST, &i.manifest);
            d["platform"] = json!({"os": i.platform.0, "architecture": i.platform.1});
            d
        })
        .collect();
    Bytes::from(
        serde_json::to_vec_pretty(&json!({
            "schemaVersion": 2,
            "mediaType": media_type::OCI_INDEX,
            "annotations": {"org.opencontainers.image.source": "test"},
            "manifests": manifests,
        }))
        .unwrap(),
    )
}

/// One request as a server saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub status: u16,
}

#[derive(Clone, Default)]
pub struct Log(Arc<Mutex<Vec<Seen>>>);

impl Log {
    pub fn take(&self) -> Vec<Seen> {
        std::mem::take(&mut self.0.lock().unwrap())
    }

    async fn record(State(log): State<Log>, request: Request, next: Next) -> Response {
        let method = request.method().to_string();
        let path = request.uri().path().to_string();
        let response = next.run(request).await;
        log.0.lock().unwrap().push(Seen {
            method,
            path,
            status: response.status().as_u16(),
        });
        response
    }
}

/// ferry's own registry (crate ferry-registry), served on a loopback
/// port, every request logged.
pub struct TestRegistry {
    _dir: tempfile::TempDir,
    pub host: String,
    pub log: Log,
    task: tokio::task::JoinHandle<()>,
}

impl TestRegistry {
    pub async fn start() -> TestRegistry {
        let dir = tempfile::tempdir().unwrap();
        let store =
            ferry_store::Store::open(dir.path().join("store"), ferry_store::Limits::default())
                .unwrap();
        let log = Log::default();
        let router = ferry_registry::Registry::new(store, ferry_registry::auth::Auth::none())
            .router()
            .layer(axum::middleware::from_fn_with_state(
                log.clone(),
                Log::record,
            ));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let host = format!("127.0.0.1:{}", listener.local_addr().unwrap().port());
        let task = tokio::spawn(async move {
            axum::serve(listener, router).await.unwrap();
        });
        TestRegistry {
            _dir: dir,
            host,
            log,
            task,
        }
    }

    pub fn repository(&self, name: &str) -> Repository {
        let client =
            Client::new(ClientOptions::default().host(&self.host, HostConfig::plain_http()))
                .unwrap();
        client.repository(&self.host, name).unwrap()
    }

    /// `hosts:` for the spec: this registry speaks plain HTTP.
    pub fn hosts_yaml(&self) -> String {
        format!("hosts:\n  \"{}\":\n    plain_http: true\n", self.host)
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A static HTTP server for chart repositories and files: `ETag` and
/// `If-None-Match` (304), `Range: bytes=N-` (206), every request logged.
/// Paths in `cut_once` have their first response cut after that many
/// bytes (the connection drops), to exercise resumption.
pub struct FileServer {
    pub base: String,
    pub log: Log,
    files: Arc<Mutex<HashMap<String, Bytes>>>,
    cut_once: Arc<Mutex<HashMap<String, usize>>>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Clone)]
struct FileState {
    files: Arc<Mutex<HashMap<String, Bytes>>>,
    cut_once: Arc<Mutex<HashMap<String, usize>>>,
}

async fn serve_file(
    State(state): State<FileState>,
    headers: HeaderMap,
    request: Request,
) -> Response {
    let path = request.uri().path().to_string();
    let Some(data) = state.files.lock().unwrap().get(&path).cloned() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let etag = format!("\"{}\"", Digest::sha256(&data).hex());
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        == Some(&etag)
    {
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response();
    }
    let start = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("bytes="))
        .and_then(|v| v.strip_suffix('-'))
        .and_then(|v| v.parse::<usize>().ok());
    let (status, body, range) = match start {
        Some(s) if s < data.len() => (
            StatusCode::PARTIAL_CONTENT,
            data.slice(s..),
            Some(format!("bytes {s}-{}/{}", data.len() - 1, data.len())),
        ),
        _ => (StatusCode::OK, data.clone(), None),
    };
    let len = body.len();
    let cut = state.cut_once.lock().unwrap().remove(&path);
    let body = match cut {
        Some(n) => {
            let first = body.slice(..n);
            let stream = futures_util::stream::iter(vec![
                Ok::<Bytes, std::io::Error>(first),
                Err(std::io::Error::other("connection dropped by the test")),
            ]);
            Body::from_stream(stream)
        }
        None => Body::from(body),
    };
    let mut response = Response::builder()
        .status(status)
        .header(header::ETAG, etag)
        .header(header::CONTENT_LENGTH, len)
        .header(header::ACCEPT_RANGES, "bytes");
    if let Some(r) = range {
        response = response.header(header::CONTENT_RANGE, r);
    }
    response.body(body).unwrap()
}

impl FileServer {
    pub async fn start() -> FileServer {
        let log = Log::default();
        let state = FileState {
            files: Arc::default(),
            cut_once: Arc::default(),
        };
        let router = Router::new()
            .fallback(serve_file)
            .with_state(state.clone())
            .layer(axum::middleware::from_fn_with_state(
                log.clone(),
                Log::record,
            ));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
        let task = tokio::spawn(async move {
            axum::serve(listener, router).await.unwrap();
        });
        FileServer {
            base,
            log,
            files: state.files,
            cut_once: state.cut_once,
            task,
        }
    }

    pub fn put(&self, path: &str, data: impl Into<Bytes>) {
        self.files
            .lock()
            .unwrap()
            .insert(path.to_string(), data.into());
    }

    pub fn cut_once(&self, path: &str, after: usize) {
        self.cut_once
            .lock()
            .unwrap()
            .insert(path.to_string(), after);
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

impl Drop for FileServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A packaged Helm chart (`helm package` layout: `NAME/Chart.yaml`,
/// values, a template), built with tar + flate2.
pub fn chart_tgz(name: &str, version: &str, app_version: &str) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut add = |path: String, data: String| {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        builder.append_data(&mut h, path, data.as_bytes()).unwrap();
    };
    add(
        format!("{name}/Chart.yaml"),
        format!(
            "apiVersion: v2\nname: {name}\ndescription: A test chart\ntype: application\nversion: {version}\nappVersion: {app_version}\nkeywords: [test]\n"
        ),
    );
    add(format!("{name}/values.yaml"), "replicas: 1\n".into());
    add(
        format!("{name}/templates/configmap.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}\n".into(),
    );
    gzip(&builder.into_inner().unwrap())
}

/// A test directory with a spec file and a cache.
pub struct Site {
    pub dir: tempfile::TempDir,
}

impl Site {
    pub fn new() -> Site {
        Site {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn write(&self, name: &str, data: impl AsRef<[u8]>) -> PathBuf {
        let path = self.path(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, data).unwrap();
        path
    }

    pub fn cache(&self) -> ContentCache {
        ContentCache::open(&self.path("state/cache")).unwrap()
    }

    /// Writes `spec` as ferry.yaml and creates `out` from it.
    pub async fn create(&self, spec: &str, out: &str) -> Result<CreateReport, CreateError> {
        self.create_with(spec, out, CreateOptions::default(), WriteOptions::default())
            .await
    }

    pub async fn create_with(
        &self,
        spec: &str,
        out: &str,
        options: CreateOptions,
        write: WriteOptions,
    ) -> Result<CreateReport, CreateError> {
        let spec_path = self.write("ferry.yaml", spec);
        let spec = Spec::load(&spec_path)?;
        create(
            &spec,
            self.dir.path(),
            &options,
            &self.cache(),
            &self.path(out),
            write,
            &NoProgress,
        )
        .await
    }
}

/// Runs a command, panicking with its stderr if it fails.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?} does not run (is its Debian package installed?): {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The requests of `log` whose path contains `part`, as `METHOD path`.
pub fn requests(seen: &[Seen], part: &str) -> Vec<String> {
    seen.iter()
        .filter(|s| s.path.contains(part))
        .map(|s| format!("{} {}", s.method, s.path))
        .collect()
}

/// Runs a command on a blocking thread (skopeo may talk to a registry
/// served by this very runtime), panicking with its stderr if it fails.
pub async fn run_async(program: &str, args: &[&str]) -> String {
    let mut cmd = Command::new(program);
    cmd.args(args);
    tokio::task::spawn_blocking(move || run(&mut cmd))
        .await
        .unwrap()
}

/// Records the tasks libraries report (`start` labels).
#[derive(Default)]
pub struct RecordingProgress {
    pub started: Mutex<Vec<String>>,
}

impl ferry_oci::progress::Progress for RecordingProgress {
    fn start(&self, _id: &str, label: &str, _total: Option<u64>) {
        self.started.lock().unwrap().push(label.to_string());
    }
}
