//! The data-driven runner on the suite's main branch (`run.go`, `api.go`,
//! `testdata.go`), with its defaults for distribution-spec 1.1: blob
//! deletes, anonymous mounts, referrers, empty blobs, sha512, data fields,
//! non-distributable layers, custom fields, images without layers and
//! missing subjects are all tested; upload cancel, the `tag` parameter on
//! manifest PUTs and sparse indexes are not (they are off for 1.1).
//!
//! Where the runner merely records an optional API as unsupported (a 202
//! instead of a mount, a 405 on delete, a full 200 instead of a range),
//! these tests insist on the supported answer, since ferry implements them.

use std::collections::{BTreeMap, HashMap, HashSet};

use axum::http::Method;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ferry_oci::{Algorithm, Digest, media_type};
use serde_json::{Value, json};

use super::{OCTET, expect_header, expect_status, random_bytes, random_text, request, with_param};
use crate::{Reply, TestRegistry};

const REPO: &str = "conformance/repo1";
const REPO2: &str = "conformance/repo2";
/// The runner's smallest chunk (`chunkMin`).
const CHUNK_MIN: usize = 1024;
const CONF1: &str = "application/vnd.example.oci.conformance.v1";
const CONF2: &str = "application/vnd.example.oci.conformance.v2";
const OCI_MANIFEST: &str = media_type::OCI_MANIFEST;
const OCI_INDEX: &str = media_type::OCI_INDEX;
const LAYER_PREFIX: &str = "application/vnd.oci.image.layer.v1.";
const ND_LAYER: &str = "application/vnd.oci.image.layer.nondistributable.v1.tar";
const ND_LAYER_GZIP: &str = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip";

fn blob_uri(repo: &str, digest: &Digest) -> String {
    format!("/v2/{repo}/blobs/{digest}")
}

fn manifest_uri(repo: &str, reference: &str) -> String {
    format!("/v2/{repo}/manifests/{reference}")
}

fn uploads_uri(repo: &str) -> String {
    format!("/v2/{repo}/blobs/uploads/")
}

/// `Docker-Content-Digest` must name the content (ferry always sends it).
#[track_caller]
fn digest_header_is(reply: &Reply, digest: &Digest, what: &str) {
    assert_eq!(
        reply.header("docker-content-digest"),
        Some(digest.to_string().as_str()),
        "{what}: Docker-Content-Digest"
    );
}

/// GET of a Location returned for a blob: 200 with the blob.
async fn verify_blob_location(r: &TestRegistry, location: &str, data: &[u8], what: &str) {
    let reply = r.get(location).await;
    expect_status(&reply, &[200], what);
    assert_eq!(reply.body, data, "{what}: body at the returned location");
}

/// How a blob upload ends: created, or refused for its digest.
#[derive(Clone, Copy, PartialEq)]
enum Expect {
    Created,
    BadDigest,
}

impl Expect {
    fn put_status(self) -> u16 {
        match self {
            Expect::Created => 201,
            Expect::BadDigest => 400,
        }
    }
}

/// `BlobPostPut`: POST for a session, PUT the whole blob.
async fn post_put(r: &TestRegistry, repo: &str, digest: &Digest, data: &[u8], expect: Expect) {
    let post = request(r, Method::POST, &uploads_uri(repo), &[], b"").await;
    expect_status(&post, &[202], "post+put: POST");
    let location = expect_header(&post, "location", "post+put: POST").to_string();
    let length = data.len().to_string();
    let put = request(
        r,
        Method::PUT,
        &with_param(&location, "digest", &digest.to_string()),
        &[("content-length", &length), ("content-type", OCTET)],
        data,
    )
    .await;
    expect_status(&put, &[expect.put_status()], "post+put: PUT");
    if expect == Expect::Created {
        digest_header_is(&put, digest, "post+put");
        let location = expect_header(&put, "location", "post+put: PUT");
        verify_blob_location(r, location, data, "post+put").await;
    }
}

/// `BlobPostOnly`: one POST with `?digest=` and the blob.
async fn post_only(r: &TestRegistry, repo: &str, digest: &Digest, data: &[u8], expect: Expect) {
    let length = data.len().to_string();
    let post = request(
        r,
        Method::POST,
        &with_param(&uploads_uri(repo), "digest", &digest.to_string()),
        &[("content-length", &length), ("content-type", OCTET)],
        data,
    )
    .await;
    match expect {
        // The runner takes 202 (then a PUT) as "unsupported": ferry
        // supports it, so 201.
        Expect::Created => {
            expect_status(&post, &[201], "post only");
            digest_header_is(&post, digest, "post only");
            let location = expect_header(&post, "location", "post only");
            verify_blob_location(r, location, data, "post only").await;
        }
        Expect::BadDigest => expect_status(&post, &[400], "post only with a bad digest"),
    }
}

/// `BlobPatchStream`: POST, one PATCH without `Content-Range` (and, as Go
/// sends an unsized body, without `Content-Length`), then an empty PUT.
async fn patch_stream(r: &TestRegistry, repo: &str, digest: &Digest, data: &[u8], expect: Expect) {
    let post = request(
        r,
        Method::POST,
        &uploads_uri(repo),
        &[("content-length", "0")],
        b"",
    )
    .await;
    expect_status(&post, &[202], "stream: POST");
    let location = expect_header(&post, "location", "stream: POST").to_string();
    let patch = request(
        r,
        Method::PATCH,
        &location,
        &[("content-type", OCTET)],
        data,
    )
    .await;
    expect_status(&patch, &[202], "stream: PATCH");
    let location = expect_header(&patch, "location", "stream: PATCH").to_string();
    let put = request(
        r,
        Method::PUT,
        &with_param(&location, "digest", &digest.to_string()),
        &[("content-length", "0"), ("content-type", OCTET)],
        b"",
    )
    .await;
    expect_status(&put, &[expect.put_status()], "stream: PUT");
    if expect == Expect::Created {
        digest_header_is(&put, digest, "stream");
        let location = expect_header(&put, "location", "stream: PUT");
        verify_blob_location(r, location, data, "stream").await;
    }
}

#[derive(Clone, Copy, Default)]
struct Chunked {
    /// Send the last chunk in the closing PUT.
    put_last_chunk: bool,
    /// Before each chunk, send a wrong one (ahead, or back at 0) and
    /// recover with a status GET.
    out_of_order: bool,
}

/// `BlobPatchChunked`: POST, PATCHes of a third of the blob (at least
/// `CHUNK_MIN`, or the registry's stated minimum) with `Content-Range`,
/// then the closing PUT. Returns the `OCI-Chunk-Min-Length` the POST stated.
async fn patch_chunked(
    r: &TestRegistry,
    repo: &str,
    digest: &Digest,
    data: &[u8],
    how: Chunked,
    expect: Expect,
) -> Option<usize> {
    let post = request(
        r,
        Method::POST,
        &uploads_uri(repo),
        &[("content-length", "0")],
        b"",
    )
    .await;
    expect_status(&post, &[202], "chunked: POST");
    let min = post.header("oci-chunk-min-length").map(|m| {
        m.parse::<usize>()
            .expect("OCI-Chunk-Min-Length is a number")
    });
    let mut location = expect_header(&post, "location", "chunked: POST").to_string();
    let len = data.len();
    let chunk_size = (len / 3 + 1).max(min.unwrap_or(0)).max(CHUNK_MIN).min(len);
    let digest_param = |loc: &str| with_param(loc, "digest", &digest.to_string());
    let mut last_byte: i64 = -1;
    while last_byte < len as i64 - 1 {
        if how.out_of_order {
            let mut bad_start = (last_byte + 1) as usize + chunk_size;
            if bad_start >= len {
                bad_start = 0;
            }
            let bad_last = (bad_start + chunk_size - 1).min(len - 1);
            let (method, uri) = if how.put_last_chunk && bad_last == len - 1 {
                (Method::PUT, digest_param(&location))
            } else {
                (Method::PATCH, location.clone())
            };
            let length = (bad_last - bad_start + 1).to_string();
            let range = format!("{bad_start}-{bad_last}");
            let reply = request(
                r,
                method,
                &uri,
                &[
                    ("content-length", &length),
                    ("content-type", OCTET),
                    ("content-range", &range),
                ],
                &data[bad_start..=bad_last],
            )
            .await;
            expect_status(&reply, &[416], "chunked: out-of-order chunk");
            // ferry says where to resume (the runner tolerates its absence).
            let session = expect_header(&reply, "location", "chunked: 416").to_string();
            let status = r.get(&session).await;
            expect_status(&status, &[204], "chunked: status after a 416");
            location = expect_header(&status, "location", "chunked: status").to_string();
            let range = expect_header(&status, "range", "chunked: status");
            let end: i64 = range
                .strip_prefix("0-")
                .and_then(|e| e.parse().ok())
                .unwrap_or_else(|| panic!("Range {range:?} is not 0-<end>"));
            if last_byte >= 0 {
                assert_eq!(end, last_byte, "chunked: Range after a 416");
            }
        }
        let start = (last_byte + 1) as usize;
        let end = (start + chunk_size - 1).min(len - 1);
        last_byte = end as i64;
        let length = (end - start + 1).to_string();
        let range = format!("{start}-{end}");
        let headers = [
            ("content-length", length.as_str()),
            ("content-type", OCTET),
            ("content-range", range.as_str()),
        ];
        let chunk = &data[start..=end];
        if how.put_last_chunk && end == len - 1 {
            let put = request(r, Method::PUT, &digest_param(&location), &headers, chunk).await;
            expect_status(
                &put,
                &[expect.put_status()],
                "chunked: PUT with the last chunk",
            );
            if expect == Expect::Created {
                digest_header_is(&put, digest, "chunked");
                location = expect_header(&put, "location", "chunked: PUT").to_string();
            }
        } else {
            let patch = request(r, Method::PATCH, &location, &headers, chunk).await;
            expect_status(&patch, &[202], "chunked: PATCH");
            assert_eq!(patch.header("range"), Some(format!("0-{end}").as_str()));
            location = expect_header(&patch, "location", "chunked: PATCH").to_string();
        }
    }
    if !how.put_last_chunk {
        let put = request(
            r,
            Method::PUT,
            &digest_param(&location),
            &[("content-length", "0"), ("content-type", OCTET)],
            b"",
        )
        .await;
        expect_status(&put, &[expect.put_status()], "chunked: closing PUT");
        if expect == Expect::Created {
            digest_header_is(&put, digest, "chunked");
            location = expect_header(&put, "location", "chunked: PUT").to_string();
        }
    }
    if expect == Expect::Created {
        verify_blob_location(r, &location, data, "chunked").await;
    }
    min
}

/// `BlobMount`: POST `?mount=` (and `&from=`); on a 202 the runner falls
/// back to a PUT. Returns the POST's status.
async fn mount(
    r: &TestRegistry,
    repo: &str,
    from: Option<&str>,
    digest: &Digest,
    data: &[u8],
) -> u16 {
    let mut uri = with_param(&uploads_uri(repo), "mount", &digest.to_string());
    if let Some(from) = from {
        uri = with_param(&uri, "from", from);
    }
    let post = request(r, Method::POST, &uri, &[], b"").await;
    expect_status(&post, &[201, 202], "mount: POST");
    let mut location = expect_header(&post, "location", "mount: POST").to_string();
    if post.status == 202 {
        let length = data.len().to_string();
        let put = request(
            r,
            Method::PUT,
            &with_param(&location, "digest", &digest.to_string()),
            &[("content-length", &length), ("content-type", OCTET)],
            data,
        )
        .await;
        expect_status(&put, &[201], "mount: fallback PUT");
        location = expect_header(&put, "location", "mount: fallback PUT").to_string();
    } else {
        digest_header_is(&post, digest, "mount");
    }
    verify_blob_location(r, &location, data, "mount").await;
    post.status.as_u16()
}

/// `BlobHeadExists`: 200, no body, the size and the digest.
async fn head_blob(r: &TestRegistry, repo: &str, digest: &Digest, data: &[u8]) {
    let reply = request(r, Method::HEAD, &blob_uri(repo, digest), &[], b"").await;
    expect_status(&reply, &[200], "blob HEAD");
    assert!(reply.body.is_empty(), "blob HEAD has no body");
    assert_eq!(
        reply.header("content-length"),
        Some(data.len().to_string().as_str())
    );
    digest_header_is(&reply, digest, "blob HEAD");
}

/// `BlobGetExistsFull`: 200 with the blob, its size and digest.
async fn get_blob(r: &TestRegistry, repo: &str, digest: &Digest, data: &[u8]) {
    let reply = r.get(&blob_uri(repo, digest)).await;
    expect_status(&reply, &[200], "blob GET");
    assert_eq!(reply.body, data, "blob GET body");
    assert_eq!(
        reply.header("content-length"),
        Some(data.len().to_string().as_str())
    );
    digest_header_is(&reply, digest, "blob GET");
}

/// `TestDeleteBlob`: 202 (or 404 when it was never there), then a HEAD
/// finds nothing at once.
async fn delete_blob(r: &TestRegistry, repo: &str, digest: &Digest) {
    let uri = blob_uri(repo, digest);
    let reply = request(r, Method::DELETE, &uri, &[], b"").await;
    expect_status(&reply, &[202, 404], "blob DELETE");
    let reply = request(r, Method::HEAD, &uri, &[], b"").await;
    expect_status(&reply, &[404], "blob HEAD after DELETE");
}

both_transports!(ping_and_empty_repository, ping_and_empty);

async fn ping_and_empty(r: &TestRegistry) {
    let reply = r.get("/v2/").await;
    expect_status(&reply, &[200], "ping");
    let reply = r.get(&format!("/v2/{REPO}/tags/list")).await;
    expect_status(&reply, &[200, 404], "tag list of an empty repository");
    let subject = Digest::sha256(&random_bytes(32));
    let reply = r.get(&format!("/v2/{REPO}/referrers/{subject}")).await;
    let index = referrers(&reply, "referrers in an empty repository");
    assert!(index.is_empty());
}

both_transports!(blob_apis_sha256, sha256_blobs);
both_transports!(blob_apis_sha512, sha512_blobs);

async fn sha256_blobs(r: &TestRegistry) {
    blob_apis(r, Algorithm::Sha256).await;
}

async fn sha512_blobs(r: &TestRegistry) {
    blob_apis(r, Algorithm::Sha512).await;
}

/// `TestBlobAPIs` for one digest algorithm.
async fn blob_apis(r: &TestRegistry, algorithm: Algorithm) {
    let gen_blob = |size: usize| {
        let data = random_bytes(size);
        (Digest::of(algorithm, &data), data)
    };
    let (missing, _) = gen_blob(512);
    let reply = r.get(&blob_uri(REPO, &missing)).await;
    expect_status(&reply, &[404], "GET a blob never pushed");

    // Each upload method, then HEAD, GET and DELETE of what it stored.
    let mut min_chunk = CHUNK_MIN;
    let methods = [
        "post only",
        "post+put",
        "chunked single",
        "stream",
        "mount",
        "mount anonymous",
        "mount missing",
        "post cancel",
        "chunked multi",
        "chunked multi and put chunk",
        "chunked out-of-order",
        "chunked out-of-order and put chunk",
    ];
    for method in methods {
        let size = if method.starts_with("chunked") && method != "chunked single" {
            min_chunk * 3 - 5
        } else {
            512
        };
        let (digest, data) = gen_blob(size);
        let ok = Expect::Created;
        match method {
            "post only" => post_only(r, REPO, &digest, &data, ok).await,
            "post+put" => post_put(r, REPO, &digest, &data, ok).await,
            "chunked single" => {
                let stated = patch_chunked(r, REPO, &digest, &data, Chunked::default(), ok).await;
                min_chunk = min_chunk.max(stated.unwrap_or(0));
            }
            "stream" => patch_stream(r, REPO, &digest, &data, ok).await,
            "mount" => {
                post_put(r, REPO2, &digest, &data, ok).await;
                let status = mount(r, REPO, Some(REPO2), &digest, &data).await;
                assert_eq!(status, 201, "mount from a repository that has the blob");
            }
            "mount anonymous" => {
                post_put(r, REPO2, &digest, &data, ok).await;
                let status = mount(r, REPO, None, &digest, &data).await;
                assert_eq!(status, 201, "mount without from of a blob the registry has");
            }
            "mount missing" => {
                let status = mount(r, REPO, Some(REPO2), &digest, &data).await;
                assert_eq!(status, 202, "mount of a blob the source does not have");
            }
            "post cancel" => {
                let post = request(r, Method::POST, &uploads_uri(REPO), &[], b"").await;
                expect_status(&post, &[202], "cancel: POST");
                let location = expect_header(&post, "location", "cancel: POST").to_string();
                let reply = request(
                    r,
                    Method::DELETE,
                    &location,
                    &[("content-length", "0")],
                    b"",
                )
                .await;
                expect_status(&reply, &[204], "cancel: DELETE");
                let reply = r.get(&location).await;
                expect_status(&reply, &[404], "status of a cancelled upload");
            }
            "chunked multi" => {
                patch_chunked(r, REPO, &digest, &data, Chunked::default(), ok).await;
            }
            "chunked multi and put chunk" => {
                let how = Chunked {
                    put_last_chunk: true,
                    ..Chunked::default()
                };
                patch_chunked(r, REPO, &digest, &data, how, ok).await;
            }
            "chunked out-of-order" => {
                let how = Chunked {
                    out_of_order: true,
                    ..Chunked::default()
                };
                patch_chunked(r, REPO, &digest, &data, how, ok).await;
            }
            "chunked out-of-order and put chunk" => {
                let how = Chunked {
                    put_last_chunk: true,
                    out_of_order: true,
                };
                patch_chunked(r, REPO, &digest, &data, how, ok).await;
            }
            other => unreachable!("{other}"),
        }
        if method != "post cancel" {
            head_blob(r, REPO, &digest, &data).await;
            get_blob(r, REPO, &digest, &data).await;
        }
        delete_blob(r, REPO, &digest).await;
        if method.starts_with("mount") && method != "mount missing" {
            delete_blob(r, REPO2, &digest).await;
        }
    }

    range_requests(r, algorithm).await;

    // Well-known contents: the empty blob and the empty JSON object.
    for data in [&b""[..], &b"{}"[..]] {
        let digest = Digest::of(algorithm, data);
        post_put(r, REPO, &digest, data, Expect::Created).await;
        head_blob(r, REPO, &digest, data).await;
        get_blob(r, REPO, &digest, data).await;
        delete_blob(r, REPO, &digest).await;
    }

    // Each upload method with bytes that do not match the digest.
    for method in ["post only", "post+put", "chunked", "stream"] {
        let (digest, mut data) = gen_blob(min_chunk * 3 - 5);
        data.extend_from_slice(b"oh no");
        let bad = Expect::BadDigest;
        match method {
            "post only" => post_only(r, REPO, &digest, &data, bad).await,
            "post+put" => post_put(r, REPO, &digest, &data, bad).await,
            "chunked" => {
                patch_chunked(r, REPO, &digest, &data, Chunked::default(), bad).await;
            }
            "stream" => patch_stream(r, REPO, &digest, &data, bad).await,
            other => unreachable!("{other}"),
        }
        let reply = request(r, Method::HEAD, &blob_uri(REPO, &digest), &[], b"").await;
        expect_status(&reply, &[404], "nothing stored under a bad digest");
    }
}

/// The runner's range requests on a 2048-byte blob. It accepts a full 200
/// only as "unsupported"; ferry answers each range.
async fn range_requests(r: &TestRegistry, algorithm: Algorithm) {
    let data = random_bytes(2048);
    let digest = Digest::of(algorithm, &data);
    post_put(r, REPO, &digest, &data, Expect::Created).await;
    let partial = |range: &'static str, start: usize, end: usize| (range, Some((start, end)));
    for (range, expected) in [
        partial("bytes=500-1499", 500, 1499),
        partial("bytes=500-", 500, 2047),
        partial("bytes=-500", 1548, 2047),
        partial("bytes=2000-5000", 2000, 2047),
        ("bytes=500-0", None),
        ("bytes=5000-10000", None),
    ] {
        let reply = request(
            r,
            Method::GET,
            &blob_uri(REPO, &digest),
            &[("range", range)],
            b"",
        )
        .await;
        match expected {
            Some((start, end)) => {
                expect_status(&reply, &[206], range);
                assert_eq!(reply.body, &data[start..=end], "{range}");
                assert_eq!(
                    reply.header("content-length"),
                    Some((end - start + 1).to_string().as_str()),
                    "{range}"
                );
                let content_range = reply.header("content-range").unwrap_or_default();
                assert!(
                    content_range == format!("bytes {start}-{end}/2048")
                        || content_range == format!("bytes {start}-{end}/*"),
                    "{range}: Content-Range {content_range:?}"
                );
            }
            None => expect_status(&reply, &[416], range),
        }
    }
    delete_blob(r, REPO, &digest).await;
}

/// The `GET .../referrers/<digest>` answer, checked to be an OCI index.
#[track_caller]
fn referrers(reply: &Reply, what: &str) -> Vec<Value> {
    expect_status(reply, &[200], what);
    assert_eq!(reply.header("content-type"), Some(OCI_INDEX), "{what}");
    let index = reply.json();
    assert_eq!(index["mediaType"], json!(OCI_INDEX), "{what}");
    assert_eq!(index["schemaVersion"], json!(2), "{what}");
    index["manifests"].as_array().cloned().unwrap_or_default()
}

/// How to generate one piece of content (`genOptS`).
#[derive(Clone)]
struct Gen {
    algorithm: Algorithm,
    annotations: Option<BTreeMap<String, String>>,
    unique_annotation: bool,
    artifact_type: Option<&'static str>,
    gzip: bool,
    config_bytes: Option<Vec<u8>>,
    config_media_type: Option<&'static str>,
    extra_field: bool,
    layer_bytes: Option<Vec<u8>>,
    layer_count: usize,
    layer_media_type: Option<&'static str>,
    platform: Value,
    platforms: Vec<Option<Value>>,
    set_data: bool,
    subject: Option<Value>,
    tag: Option<&'static str>,
}

impl Default for Gen {
    fn default() -> Self {
        Gen {
            algorithm: Algorithm::Sha256,
            annotations: None,
            unique_annotation: false,
            artifact_type: None,
            gzip: true,
            config_bytes: None,
            config_media_type: None,
            extra_field: false,
            layer_bytes: None,
            layer_count: 2,
            layer_media_type: None,
            platform: platform("amd64"),
            platforms: vec![Some(platform("amd64")), Some(platform("arm64"))],
            set_data: false,
            subject: None,
            tag: None,
        }
    }
}

fn platform(architecture: &str) -> Value {
    json!({"architecture": architecture, "os": "linux"})
}

fn conformance_annotation() -> Option<BTreeMap<String, String>> {
    Some(BTreeMap::from([(
        "org.opencontainers.conformance".to_string(),
        "hello conformance test".to_string(),
    )]))
}

/// One kind of content and what the registry must say about it
/// (`testData`).
#[derive(Default)]
struct Data {
    name: &'static str,
    tags: BTreeMap<String, Digest>,
    desc: HashMap<Digest, Value>,
    blobs: BTreeMap<Digest, Vec<u8>>,
    manifests: HashMap<Digest, Vec<u8>>,
    /// Push order: children before the indexes that list them.
    order: Vec<Digest>,
    /// The referrers each subject must list.
    referrers: BTreeMap<Digest, Vec<Value>>,
    /// Manifests whose push must fail for their digest (and are not pulled).
    bad_digest: HashSet<Digest>,
}

impl Data {
    fn new(name: &'static str) -> Self {
        Data {
            name,
            ..Data::default()
        }
    }

    fn descriptor(&self, digest: &Digest) -> Value {
        self.desc[digest].clone()
    }

    fn add_blob(&mut self, data: Vec<u8>, media_type: &str, g: &Gen) -> Digest {
        let digest = Digest::of(g.algorithm, &data);
        let mut d =
            json!({"mediaType": media_type, "digest": digest.to_string(), "size": data.len()});
        if g.set_data {
            d["data"] = json!(STANDARD.encode(&data));
        }
        self.desc.insert(digest.clone(), d);
        self.blobs.insert(digest.clone(), data);
        digest
    }

    /// A layer and the digest of its uncompressed form (for the config).
    fn layer(&mut self, g: &Gen) -> (Digest, Digest) {
        let uncompressed = random_bytes(300);
        let uncompressed_digest = Digest::of(g.algorithm, &uncompressed);
        if g.gzip {
            let compressed = random_bytes(200);
            (
                self.add_blob(compressed, media_type::OCI_LAYER_GZIP, g),
                uncompressed_digest,
            )
        } else {
            (
                self.add_blob(uncompressed, media_type::OCI_LAYER_TAR, g),
                uncompressed_digest,
            )
        }
    }

    fn config(&mut self, platform: &Value, diff_ids: &[Digest], g: &Gen) -> Digest {
        let mut config = json!({
            "author": "OCI Conformance Test",
            "architecture": platform["architecture"],
            "os": platform["os"],
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        });
        if g.extra_field {
            add_custom_field(&mut config);
        }
        self.add_blob(
            serde_json::to_vec(&config).unwrap(),
            media_type::OCI_CONFIG,
            g,
        )
    }

    fn manifest(&mut self, config: Value, layers: Vec<Value>, g: &Gen) -> Digest {
        let mut m = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": config,
            "layers": layers,
        });
        let artifact_type = g
            .artifact_type
            .map(str::to_string)
            .unwrap_or_else(|| m["config"]["mediaType"].as_str().unwrap().to_string());
        if let Some(t) = g.artifact_type {
            m["artifactType"] = json!(t);
        }
        self.finish(m, Some(artifact_type), g)
    }

    fn index(&mut self, platforms: &[Option<Value>], children: &[Digest], g: &Gen) -> Digest {
        let manifests: Vec<Value> = children
            .iter()
            .zip(platforms)
            .map(|(child, p)| {
                let mut d = self.descriptor(child);
                if let Some(p) = p {
                    d["platform"] = p.clone();
                }
                d
            })
            .collect();
        let mut m = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests});
        if let Some(t) = g.artifact_type {
            m["artifactType"] = json!(t);
        }
        self.finish(m, g.artifact_type.map(str::to_string), g)
    }

    /// Adds subject, annotations and extra fields, records the manifest,
    /// its descriptor, its tag and the referrer entry its subject expects.
    fn finish(&mut self, mut m: Value, artifact_type: Option<String>, g: &Gen) -> Digest {
        if let Some(s) = &g.subject {
            m["subject"] = s.clone();
        }
        let mut annotations = g.annotations.clone();
        if g.unique_annotation {
            annotations
                .get_or_insert_with(BTreeMap::new)
                .insert(format!("org.example.{}", random_text()), random_text());
        }
        if let Some(a) = &annotations {
            m["annotations"] = json!(a);
        }
        if g.extra_field {
            add_custom_field(&mut m);
        }
        let body = serde_json::to_vec(&m).unwrap();
        let digest = Digest::of(g.algorithm, &body);
        let media_type = m["mediaType"].clone();
        let mut d =
            json!({"mediaType": media_type, "digest": digest.to_string(), "size": body.len()});
        if g.set_data {
            d["data"] = json!(STANDARD.encode(&body));
        }
        self.desc.insert(digest.clone(), d);
        if let Some(subject) = &g.subject {
            let subject: Digest = subject["digest"].as_str().unwrap().parse().unwrap();
            self.referrers.entry(subject).or_default().push(json!({
                "mediaType": media_type,
                "artifactType": artifact_type.unwrap_or_default(),
                "digest": digest.to_string(),
                "size": body.len(),
                "annotations": annotations.unwrap_or_default(),
            }));
        }
        if let Some(tag) = g.tag {
            self.tags.insert(tag.to_string(), digest.clone());
        }
        self.manifests.insert(digest.clone(), body);
        self.order.push(digest.clone());
        digest
    }

    /// An image: layers (or artifact blobs), a config, the manifest.
    fn manifest_full(&mut self, g: &Gen) -> Digest {
        let mut layers = Vec::new();
        let mut diff_ids = Vec::new();
        for _ in 0..g.layer_count {
            match g.layer_media_type {
                Some(t) if !t.starts_with(LAYER_PREFIX) => {
                    let data = g.layer_bytes.clone().unwrap_or_else(|| random_bytes(2048));
                    let digest = self.add_blob(data, t, g);
                    diff_ids.push(digest.clone());
                    layers.push(self.descriptor(&digest));
                }
                _ => {
                    let (layer, uncompressed) = self.layer(g);
                    diff_ids.push(uncompressed);
                    layers.push(self.descriptor(&layer));
                }
            }
        }
        let config = match g.config_media_type {
            Some(t) if t != media_type::OCI_CONFIG => {
                let data = g.config_bytes.clone().unwrap_or_default();
                self.add_blob(data, t, g)
            }
            _ => self.config(&g.platform.clone(), &diff_ids, g),
        };
        let config = self.descriptor(&config);
        self.manifest(config, layers, g)
    }

    /// An index of one image per platform.
    fn index_full(&mut self, g: &Gen) -> Digest {
        let mut children = Vec::new();
        for p in g.platforms.clone() {
            let child = Gen {
                platform: p.clone().expect("index_full platforms are set"),
                ..g.clone()
            };
            children.push(self.manifest_full(&child));
        }
        self.index(&g.platforms, &children, g)
    }
}

/// A top-level field no spec defines (`genAddJSONFields`).
fn add_custom_field(v: &mut Value) {
    v[format!("org.{}", random_text())] = json!(random_text());
}

/// The kinds of content of `GenerateData`, in its order.
fn data_sets() -> Vec<Data> {
    let mut sets = Vec::new();
    let tagged = |tag| Gen {
        tag: Some(tag),
        ..Gen::default()
    };

    let mut d = Data::new("image");
    d.manifest_full(&tagged("image"));
    sets.push(d);

    let mut d = Data::new("image-uncompressed");
    d.manifest_full(&Gen {
        gzip: false,
        ..tagged("image-uncompressed")
    });
    sets.push(d);

    let mut d = Data::new("large-manifest");
    let large: BTreeMap<String, String> = (0..390)
        .map(|i| (format!("large-annotation-{i}"), "A".repeat(10_000)))
        .collect();
    d.manifest_full(&Gen {
        annotations: Some(large),
        ..tagged("large-manifest")
    });
    sets.push(d);

    let mut d = Data::new("index");
    d.index_full(&tagged("index"));
    sets.push(d);

    let mut d = Data::new("nested-index");
    let first = d.index_full(&Gen::default());
    let second = d.index_full(&Gen::default());
    d.index(&[None, None], &[first, second], &tagged("index-of-index"));
    sets.push(d);

    let mut d = Data::new("empty-index");
    d.index_full(&Gen {
        platforms: Vec::new(),
        ..tagged("index")
    });
    sets.push(d);

    let artifact = |tag| Gen {
        artifact_type: Some(CONF1),
        config_media_type: Some(media_type::OCI_EMPTY),
        config_bytes: Some(b"{}".to_vec()),
        layer_count: 1,
        layer_media_type: Some(CONF1),
        ..tagged(tag)
    };
    let mut d = Data::new("artifact");
    d.manifest_full(&artifact("artifact"));
    sets.push(d);

    let mut d = Data::new("artifact-index");
    d.index_full(&artifact("artifact-index"));
    sets.push(d);

    let mut d = Data::new("artifact-without-layers");
    d.manifest_full(&Gen {
        layer_bytes: Some(b"{}".to_vec()),
        layer_media_type: Some(media_type::OCI_EMPTY),
        ..artifact("artifact-without-layers")
    });
    sets.push(d);

    let referrer = |artifact_type, layer_media_type, subject: &Value, tag| Gen {
        artifact_type: Some(artifact_type),
        annotations: conformance_annotation(),
        unique_annotation: true,
        config_media_type: Some(media_type::OCI_EMPTY),
        config_bytes: Some(b"{}".to_vec()),
        layer_count: 1,
        layer_media_type: Some(layer_media_type),
        subject: Some(subject.clone()),
        ..tagged(tag)
    };
    let mut d = Data::new("artifacts-with-subject");
    let subject = d.manifest_full(&tagged("image"));
    let subject = d.descriptor(&subject);
    d.manifest_full(&Gen {
        subject: Some(subject.clone()),
        ..Gen::default()
    });
    d.manifest_full(&referrer(CONF1, CONF1, &subject, "tagged-artifact1"));
    d.manifest_full(&referrer(CONF2, OCTET, &subject, "tagged-artifact2"));
    sets.push(d);

    let mut d = Data::new("index-with-subject");
    let subject = d.index_full(&tagged("index"));
    let subject = d.descriptor(&subject);
    d.index_full(&referrer(CONF1, CONF1, &subject, "tagged-artifact"));
    sets.push(d);

    let mut d = Data::new("missing-subject");
    let subject = json!({
        "mediaType": OCI_MANIFEST,
        "size": 123,
        "digest": Digest::sha256(b"missing content").to_string(),
    });
    d.manifest_full(&referrer(CONF1, CONF1, &subject, "tagged-artifact"));
    sets.push(d);

    let mut d = Data::new("data-field");
    d.manifest_full(&Gen {
        set_data: true,
        ..tagged("data-field")
    });
    sets.push(d);

    sets.push(non_distributable());

    let mut d = Data::new("custom-fields");
    d.index_full(&Gen {
        extra_field: true,
        ..tagged("custom-fields")
    });
    sets.push(d);

    let mut d = Data::new("no-layers");
    d.manifest_full(&Gen {
        layer_count: 0,
        ..tagged("no-layers")
    });
    sets.push(d);

    // Non-canonical digests can only be pushed by digest.
    let mut d = Data::new("sha512");
    d.index_full(&Gen {
        algorithm: Algorithm::Sha512,
        ..Gen::default()
    });
    sets.push(d);

    let mut d = Data::new("bad-digest-image");
    let digest = d.manifest_full(&Gen::default());
    d.manifests
        .get_mut(&digest)
        .unwrap()
        .extend_from_slice(b"  ");
    d.bad_digest.insert(digest);
    sets.push(d);

    sets
}

/// An image whose first two layers are non-distributable, live at their
/// `urls`, and are never pushed.
fn non_distributable() -> Data {
    let mut d = Data::new("non-distributable-layers");
    let g = Gen::default();
    let foreign = |media_type: &str, size: u64| {
        let digest = Digest::sha256(&random_bytes(256));
        json!({
            "mediaType": media_type,
            "digest": digest.to_string(),
            "size": size,
            "urls": [format!("https://store.example.com/blobs/sha256/{}", digest.hex())],
        })
    };
    let first = foreign(ND_LAYER_GZIP, 123_456);
    let second = foreign(ND_LAYER, 12_345);
    let (layer, uncompressed) = d.layer(&g);
    let diff_ids: Vec<Digest> = [&first, &second]
        .iter()
        .map(|l| l["digest"].as_str().unwrap().parse().unwrap())
        .chain([uncompressed])
        .collect();
    let config = d.config(&platform("amd64"), &diff_ids, &g);
    let (config, layer) = (d.descriptor(&config), d.descriptor(&layer));
    d.manifest(
        config,
        vec![first, second, layer],
        &Gen {
            tag: Some("non-distributable-image"),
            ..g
        },
    );
    d
}

/// The media type the runner expects back (`detectMediaType`).
fn media_type_of(body: &[u8]) -> String {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v["mediaType"].as_str().map(str::to_string))
        .unwrap_or_else(|| OCI_MANIFEST.to_string())
}

fn subject_of(body: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(body).ok()?;
    v["subject"]["digest"].as_str().map(str::to_string)
}

/// `ManifestPut` by `reference`, then a GET of the returned Location.
async fn put_manifest(r: &TestRegistry, d: &Data, reference: &str, digest: &Digest) {
    let body = &d.manifests[digest];
    let media_type = media_type_of(body);
    let reply = request(
        r,
        Method::PUT,
        &manifest_uri(REPO, reference),
        &[("content-type", &media_type)],
        body,
    )
    .await;
    let what = format!("{}: manifest PUT {reference}", d.name);
    if d.bad_digest.contains(digest) {
        expect_status(&reply, &[400], &what);
        return;
    }
    expect_status(&reply, &[201], &what);
    if let Some(subject) = subject_of(body) {
        assert_eq!(
            reply.header("oci-subject"),
            Some(subject.as_str()),
            "{what}"
        );
    }
    digest_header_is(&reply, digest, &what);
    let location = expect_header(&reply, "location", &what).to_string();
    let reply = request(
        r,
        Method::GET,
        &location,
        &[("accept", OCI_INDEX), ("accept", OCI_MANIFEST)],
        b"",
    )
    .await;
    expect_status(&reply, &[200], &what);
    assert_eq!(
        reply.header("content-type"),
        Some(media_type.as_str()),
        "{what}"
    );
    assert_eq!(
        reply.header("content-length"),
        Some(body.len().to_string().as_str())
    );
    assert_eq!(&reply.body, body, "{what}: body at the returned location");
}

/// `ManifestHeadExists` / `ManifestGetExists`.
async fn fetch_manifest(
    r: &TestRegistry,
    d: &Data,
    reference: &str,
    digest: &Digest,
    method: Method,
) {
    let body = &d.manifests[digest];
    let what = format!("{}: manifest {method} {reference}", d.name);
    let head = method == Method::HEAD;
    let reply = request(
        r,
        method,
        &manifest_uri(REPO, reference),
        &[("accept", OCI_INDEX), ("accept", OCI_MANIFEST)],
        b"",
    )
    .await;
    expect_status(&reply, &[200], &what);
    assert_eq!(
        reply.header("content-type"),
        Some(media_type_of(body).as_str()),
        "{what}"
    );
    assert_eq!(
        reply.header("content-length"),
        Some(body.len().to_string().as_str()),
        "{what}"
    );
    if head {
        assert!(reply.body.is_empty(), "{what}: no body");
    } else {
        assert_eq!(&reply.body, body, "{what}");
    }
    digest_header_is(&reply, digest, &what);
}

/// Whether a referrers entry matches an expected one: same digest, media
/// type, size and artifact type, and at least the expected annotations.
fn same_referrer(got: &Value, goal: &Value) -> bool {
    let annotations_hold = goal["annotations"]
        .as_object()
        .unwrap()
        .iter()
        .all(|(k, v)| &got["annotations"][k] == v);
    got["digest"] == goal["digest"]
        && got["mediaType"] == goal["mediaType"]
        && got["size"] == goal["size"]
        && got["artifactType"].as_str().unwrap_or_default() == goal["artifactType"]
        && annotations_hold
}

/// `TestReferrers`: every expected entry is listed; filtered by each
/// artifact type, the filter is applied and announced.
async fn check_referrers(r: &TestRegistry, d: &Data) {
    for (subject, goals) in &d.referrers {
        let uri = format!("/v2/{REPO}/referrers/{subject}");
        let reply = r.get(&uri).await;
        let listed = referrers(&reply, d.name);
        for goal in goals {
            assert!(
                listed.iter().any(|got| same_referrer(got, goal)),
                "{}: {goal} missing from {listed:?}",
                d.name
            );
        }
        let types: HashSet<&str> = goals
            .iter()
            .map(|g| g["artifactType"].as_str().unwrap())
            .collect();
        for artifact_type in types {
            let reply = r
                .get(&with_param(&uri, "artifactType", artifact_type))
                .await;
            let listed = referrers(&reply, d.name);
            assert!(
                reply
                    .header("oci-filters-applied")
                    .is_some_and(|h| h.contains("artifactType")),
                "{}: OCI-Filters-Applied missing",
                d.name
            );
            for goal in goals.iter().filter(|g| g["artifactType"] == artifact_type) {
                assert!(
                    listed.iter().any(|got| same_referrer(got, goal)),
                    "{}: {goal} missing from the {artifact_type} list",
                    d.name
                );
            }
            for got in &listed {
                assert_eq!(got["artifactType"], artifact_type, "{}: filter", d.name);
            }
        }
    }
}

/// Push, list, head, pull, query and delete one kind of content
/// (`TestAll`'s loop body).
async fn cycle(r: &TestRegistry, d: &Data) {
    // Push
    for (digest, data) in &d.blobs {
        post_put(r, REPO, digest, data, Expect::Created).await;
    }
    for digest in &d.order {
        put_manifest(r, d, &digest.to_string(), digest).await;
    }
    for (tag, digest) in &d.tags {
        put_manifest(r, d, tag, digest).await;
    }

    // List: every tag, and `last` starts after the middle one.
    let tags_uri = format!("/v2/{REPO}/tags/list");
    let reply = r.get(&tags_uri).await;
    expect_status(&reply, &[200], d.name);
    let listed: Vec<String> = serde_json::from_value(reply.json()["tags"].clone()).unwrap();
    for tag in d.tags.keys() {
        assert!(listed.contains(tag), "{}: tag {tag} not listed", d.name);
    }
    if listed.len() >= 2 {
        let mut sorted = listed.clone();
        sorted.sort();
        let end = sorted.len() / 2;
        let reply = r
            .get(&with_param(&tags_uri, "last", &sorted[end - 1]))
            .await;
        expect_status(&reply, &[200], d.name);
        let partial: Vec<String> = serde_json::from_value(reply.json()["tags"].clone()).unwrap();
        assert_eq!(partial, sorted[end..], "{}: tags after last", d.name);
    }

    // Head and pull
    let pulled = |digest: &Digest| !d.bad_digest.contains(digest);
    for method in [Method::HEAD, Method::GET] {
        for (tag, digest) in d.tags.iter().filter(|(_, dg)| pulled(dg)) {
            fetch_manifest(r, d, tag, digest, method.clone()).await;
        }
        for digest in d.order.iter().filter(|dg| pulled(dg)) {
            fetch_manifest(r, d, &digest.to_string(), digest, method.clone()).await;
        }
    }
    for (digest, data) in &d.blobs {
        head_blob(r, REPO, digest, data).await;
        get_blob(r, REPO, digest, data).await;
    }

    check_referrers(r, d).await;

    // Delete: tags, manifests (last pushed first), blobs; each gone at once.
    for tag in d.tags.keys() {
        let uri = manifest_uri(REPO, tag);
        let reply = request(r, Method::DELETE, &uri, &[], b"").await;
        expect_status(&reply, &[202, 404], d.name);
        let reply = request(r, Method::HEAD, &uri, &[], b"").await;
        expect_status(&reply, &[404], d.name);
    }
    for digest in d.order.iter().rev() {
        let uri = manifest_uri(REPO, &digest.to_string());
        let reply = request(r, Method::DELETE, &uri, &[], b"").await;
        expect_status(&reply, &[202, 404], d.name);
        let reply = request(r, Method::HEAD, &uri, &[], b"").await;
        expect_status(&reply, &[404], d.name);
    }
    for digest in d.blobs.keys() {
        delete_blob(r, REPO, digest).await;
    }
}

both_transports!(every_kind_of_content, each_data_set);
both_transports!(manifest_errors, errors);

async fn each_data_set(r: &TestRegistry) {
    for d in data_sets() {
        cycle(r, &d).await;
    }
}

async fn errors(r: &TestRegistry) {
    let missing = Digest::sha256(&random_bytes(1024));
    let reply = r.get(&manifest_uri(REPO, &missing.to_string())).await;
    expect_status(&reply, &[404], "missing manifest by digest");
    let reply = r
        .get(&manifest_uri(REPO, &format!("missing-{}", random_text())))
        .await;
    expect_status(&reply, &[404], "missing manifest by tag");

    // A malformed digest as the reference.
    let mut d = Data::new("invalid-manifest-digest");
    let digest = d.manifest_full(&Gen {
        layer_count: 1,
        ..Gen::default()
    });
    for (blob, data) in &d.blobs {
        post_put(r, REPO, blob, data, Expect::Created).await;
    }
    let body = &d.manifests[&digest];
    let reply = request(
        r,
        Method::PUT,
        &manifest_uri(REPO, "sha256:baddigeststring"),
        &[("content-type", OCI_MANIFEST)],
        body,
    )
    .await;
    expect_status(&reply, &[400], "manifest PUT to a malformed digest");
    // The suite's older generation also reads the error body's code.
    assert_eq!(reply.code(), "DIGEST_INVALID");
    let reply = r.get(&manifest_uri(REPO, "sha256:baddigeststring")).await;
    expect_status(&reply, &[404, 400], "manifest GET of a malformed digest");
    let reply = request(
        r,
        Method::DELETE,
        &manifest_uri(REPO, &digest.to_string()),
        &[],
        b"",
    )
    .await;
    expect_status(&reply, &[202, 404], "cleanup: manifest");
    for blob in d.blobs.keys() {
        delete_blob(r, REPO, blob).await;
    }
}
