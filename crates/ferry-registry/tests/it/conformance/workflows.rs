//! The Ginkgo workflows of the suite's v1.1 releases (`01_pull_test.go`,
//! `02_push_test.go`, `03_discovery_test.go`, `04_management_test.go` over
//! the data of `setup.go`), run as `go test` runs them: in that order,
//! against one registry and one repository (`OCI_NAMESPACE`), each
//! workflow's teardown leaving what the next one finds.
//!
//! The push workflow includes the checks added on the suite's main branch
//! (empty JSON blob setup, manifests with a custom config media type or
//! `artifactType`, an image index, a nested index, a dangling subject),
//! and the cross-mount checks that run with `OCI_AUTOMATIC_CROSSMOUNT=1`,
//! since ferry mounts a blob it holds when `from` is absent.

use std::collections::HashMap;

use axum::http::Method;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ferry_oci::{Digest, media_type};
use serde_json::{Value, json};

use super::{
    OCTET, expect_2xx, expect_header, expect_status, random_bytes, random_text, request, with_param,
};
use crate::{Reply, TestRegistry};

const NAME: &str = "conformance/workflows";
const CROSSMOUNT: &str = "conformance-crossmount";
const TEST_TAG: &str = "tagtest0";
const EMPTY_LAYER_TAG: &str = "emptylayer";
const NONEXISTENT_MANIFEST: &str = ".INVALID_MANIFEST_NAME";
const ANNOTATION: &str = "org.opencontainers.conformance.test";
const TYPE_A: &str = "application/vnd.ferry.conformance.a";
const TYPE_B: &str = "application/vnd.ferry.conformance.b";
const TYPE_INDEX: &str = "application/vnd.ferry.conformance.index";
const OCI_MANIFEST: &str = media_type::OCI_MANIFEST;
const OCI_INDEX: &str = media_type::OCI_INDEX;

/// Every code of the spec's error table; an error body must use one.
const ERROR_CODES: [&str; 15] = [
    "BLOB_UNKNOWN",
    "BLOB_UPLOAD_INVALID",
    "BLOB_UPLOAD_UNKNOWN",
    "DIGEST_INVALID",
    "MANIFEST_BLOB_UNKNOWN",
    "MANIFEST_INVALID",
    "MANIFEST_UNKNOWN",
    "MANIFEST_UNVERIFIED",
    "NAME_INVALID",
    "NAME_UNKNOWN",
    "SIZE_INVALID",
    "TAG_INVALID",
    "UNAUTHORIZED",
    "DENIED",
    "UNSUPPORTED",
];

/// The suite's test content (`setup.go`).
struct Fixture {
    /// One image config per workflow, unique by a random author.
    configs: Vec<Vec<u8>>,
    layer: Vec<u8>,
    /// `manifests[i]` is config `i` plus the layer; its config descriptor
    /// carries `data` and a field unknown to the image-spec.
    manifests: Vec<Vec<u8>>,
    /// No `mediaType` field and no layers.
    empty_layer_manifest: Vec<u8>,
    blob_a: Vec<u8>,
    blob_b: Vec<u8>,
    /// A digest nothing has: sha256 of "hello world".
    dummy: Digest,
    empty_json: Vec<u8>,
    ref_blob_a: Vec<u8>,
    ref_blob_b: Vec<u8>,
    /// Referrers of `manifests[4]`: artifact type from the config media
    /// type (`*_config`) or from `artifactType` (`*_layer`), and an index.
    refs_a_config: Vec<u8>,
    refs_b_config: Vec<u8>,
    refs_a_layer: Vec<u8>,
    refs_b_layer: Vec<u8>,
    refs_index: Vec<u8>,
    /// A referrer of `manifests[3]`, which is never pushed before it.
    refs_c_layer: Vec<u8>,
    /// Annotation value of each referrer, by digest.
    annotations: HashMap<Digest, String>,
}

fn sha(data: &[u8]) -> Digest {
    Digest::sha256(data)
}

fn desc(media_type: &str, data: &[u8]) -> Value {
    json!({"mediaType": media_type, "digest": sha(data).to_string(), "size": data.len()})
}

fn pretty(v: &Value) -> Vec<u8> {
    serde_json::to_vec_pretty(v).unwrap()
}

impl Fixture {
    fn new() -> Self {
        let configs: Vec<Vec<u8>> = (0..5)
            .map(|_| {
                pretty(&json!({
                    "author": random_text(),
                    "architecture": "amd64",
                    "os": "linux",
                    "rootfs": {"type": "layers", "diff_ids": []},
                }))
            })
            .collect();
        let layer = random_bytes(147);
        let config_desc = |config: &[u8]| {
            let mut d = desc(media_type::OCI_CONFIG, config);
            d["data"] = json!(STANDARD.encode(config));
            d["newUnspecifiedField"] = json!(STANDARD.encode("hello world"));
            d
        };
        let mut layer_desc = desc(media_type::OCI_LAYER_GZIP, &layer);
        layer_desc["newUnspecifiedField"] = Value::Null;
        let manifests: Vec<Vec<u8>> = configs
            .iter()
            .map(|c| {
                pretty(&json!({
                    "schemaVersion": 2,
                    "mediaType": OCI_MANIFEST,
                    "config": config_desc(c),
                    "layers": [layer_desc],
                }))
            })
            .collect();
        let empty_layer_manifest = pretty(&json!({
            "schemaVersion": 2,
            "config": config_desc(&configs[1]),
            "layers": [],
        }));
        let empty_json = b"{}".to_vec();
        let ref_blob_a = b"ferry conformance referrer blob A".to_vec();
        let ref_blob_b = b"ferry conformance referrer blob B".to_vec();
        let subject = |m: &[u8]| desc(OCI_MANIFEST, m);
        let mut annotations = HashMap::new();
        let mut annotated = |v: Value, note: &str| {
            let mut v = v;
            v["annotations"] = json!({ ANNOTATION: note });
            let body = pretty(&v);
            annotations.insert(sha(&body), note.to_string());
            body
        };
        let config_artifact = |artifact_type: &str, blob: &[u8]| {
            json!({
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": desc(artifact_type, blob),
                "subject": subject(&manifests[4]),
                "layers": [desc(media_type::OCI_EMPTY, &empty_json)],
            })
        };
        let layer_artifact = |artifact_type: &str, blob: &[u8], subject_of: &[u8]| {
            json!({
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "artifactType": artifact_type,
                "config": desc(media_type::OCI_EMPTY, &empty_json),
                "subject": subject(subject_of),
                "layers": [desc(artifact_type, blob)],
            })
        };
        let refs_a_config = annotated(config_artifact(TYPE_A, &ref_blob_a), "test config a");
        let refs_b_config = annotated(config_artifact(TYPE_B, &ref_blob_b), "test config b");
        let refs_a_layer = annotated(
            layer_artifact(TYPE_A, &ref_blob_a, &manifests[4]),
            "test layer a",
        );
        let refs_b_layer = annotated(
            layer_artifact(TYPE_B, &ref_blob_b, &manifests[4]),
            "test layer b",
        );
        // Its layer is blob A, which both the push and the discovery
        // workflows push before it.
        let refs_c_layer = pretty(&layer_artifact(TYPE_B, &ref_blob_a, &manifests[3]));
        let refs_index = annotated(
            json!({
                "schemaVersion": 2,
                "mediaType": OCI_INDEX,
                "artifactType": TYPE_INDEX,
                "manifests": [desc(OCI_MANIFEST, &refs_a_config), desc(OCI_MANIFEST, &refs_a_layer)],
                "subject": subject(&manifests[4]),
            }),
            "test index",
        );
        Fixture {
            configs,
            layer,
            manifests,
            empty_layer_manifest,
            blob_a: random_bytes(42),
            blob_b: random_bytes(42),
            dummy: sha(b"hello world"),
            empty_json,
            ref_blob_a,
            ref_blob_b,
            refs_a_config,
            refs_b_config,
            refs_a_layer,
            refs_b_layer,
            refs_index,
            refs_c_layer,
            annotations,
        }
    }
}

fn blob_uri(name: &str, digest: &Digest) -> String {
    format!("/v2/{name}/blobs/{digest}")
}

fn manifest_uri(name: &str, reference: &str) -> String {
    format!("/v2/{name}/manifests/{reference}")
}

fn uploads_uri(name: &str) -> String {
    format!("/v2/{name}/blobs/uploads/")
}

/// What the suite does to "populate the registry with a blob": POST for a
/// session, then PUT the whole blob to its Location.
async fn post_then_put(r: &TestRegistry, name: &str, data: &[u8]) -> Reply {
    let post = request(r, Method::POST, &uploads_uri(name), &[], b"").await;
    let location = expect_header(&post, "location", "POST for an upload session").to_string();
    let length = data.len().to_string();
    request(
        r,
        Method::PUT,
        &with_param(&location, "digest", &sha(data).to_string()),
        &[("content-type", OCTET), ("content-length", &length)],
        data,
    )
    .await
}

async fn put_manifest(r: &TestRegistry, reference: &str, content_type: &str, body: &[u8]) -> Reply {
    request(
        r,
        Method::PUT,
        &manifest_uri(NAME, reference),
        &[("content-type", content_type)],
        body,
    )
    .await
}

async fn delete(r: &TestRegistry, uri: &str) -> Reply {
    request(r, Method::DELETE, uri, &[], b"").await
}

/// `Docker-Content-Digest`, when present, must be the content's digest.
#[track_caller]
fn digest_header_is(reply: &Reply, digest: &Digest, what: &str) {
    if let Some(h) = reply.header("docker-content-digest") {
        assert_eq!(h, digest.to_string(), "{what}: Docker-Content-Digest");
    }
}

/// The `manifests` of a referrers response, checked to be an OCI index.
#[track_caller]
fn referrers_of(reply: &Reply, what: &str) -> Vec<Value> {
    expect_status(reply, &[200], what);
    assert_eq!(reply.header("content-type"), Some(OCI_INDEX), "{what}");
    reply.json()["manifests"].as_array().cloned().unwrap()
}

const TWO_XX_OR_405: &[u16] = &[200, 201, 202, 204, 405];
const DELETE_ANY: &[u16] = &[200, 201, 202, 204, 404, 405];

both_transports!(suite_workflows_in_order, workflows_in_order);

async fn workflows_in_order(r: &TestRegistry) {
    let f = Fixture::new();
    pull(r, &f).await;
    push(r, &f).await;
    content_discovery(r, &f).await;
    content_management(r, &f).await;
}

async fn pull(r: &TestRegistry, f: &Fixture) {
    // Setup
    for blob in [&f.configs[0], &f.configs[1], &f.layer] {
        expect_2xx(&post_then_put(r, NAME, blob).await, "pull setup: blob");
    }
    let reply = put_manifest(r, TEST_TAG, OCI_MANIFEST, &f.manifests[0]).await;
    expect_2xx(&reply, "pull setup: manifest[0] by tag");
    let m1 = sha(&f.manifests[1]).to_string();
    let reply = put_manifest(r, &m1, OCI_MANIFEST, &f.manifests[1]).await;
    expect_2xx(&reply, "pull setup: manifest[1] by digest");

    // Pull blobs
    let reply = request(r, Method::HEAD, &blob_uri(NAME, &f.dummy), &[], b"").await;
    expect_status(&reply, &[404], "HEAD nonexistent blob");
    let config0 = sha(&f.configs[0]);
    let reply = request(r, Method::HEAD, &blob_uri(NAME, &config0), &[], b"").await;
    expect_status(&reply, &[200], "HEAD existing blob");
    digest_header_is(&reply, &config0, "HEAD existing blob");
    let reply = r.get(&blob_uri(NAME, &f.dummy)).await;
    expect_status(&reply, &[404], "GET nonexistent blob");
    let reply = r.get(&blob_uri(NAME, &config0)).await;
    expect_status(&reply, &[200], "GET existing blob");

    // Pull manifests
    let accept = [("accept", OCI_MANIFEST)];
    let reply = request(
        r,
        Method::HEAD,
        &manifest_uri(NAME, NONEXISTENT_MANIFEST),
        &[],
        b"",
    )
    .await;
    expect_status(&reply, &[404], "HEAD nonexistent manifest");
    for (reference, digest) in [
        (sha(&f.manifests[0]).to_string(), sha(&f.manifests[0])),
        (m1.clone(), sha(&f.manifests[1])),
        (TEST_TAG.to_string(), sha(&f.manifests[0])),
    ] {
        let uri = manifest_uri(NAME, &reference);
        let reply = request(r, Method::HEAD, &uri, &accept, b"").await;
        expect_status(&reply, &[200], "HEAD manifest");
        digest_header_is(&reply, &digest, "HEAD manifest");
    }
    let reply = r.get(&manifest_uri(NAME, NONEXISTENT_MANIFEST)).await;
    expect_status(&reply, &[404], "GET nonexistent manifest");
    for reference in [
        sha(&f.manifests[0]).to_string(),
        m1.clone(),
        TEST_TAG.into(),
    ] {
        let reply = request(
            r,
            Method::GET,
            &manifest_uri(NAME, &reference),
            &accept,
            b"",
        )
        .await;
        expect_status(&reply, &[200], "GET manifest");
    }

    // Error codes: a GET with a malformed digest (and a stray body).
    let reply = request(
        r,
        Method::GET,
        &manifest_uri(NAME, "sha256:totallywrong"),
        &[("content-type", OCI_MANIFEST)],
        b"blablabla",
    )
    .await;
    expect_status(&reply, &[400, 404], "GET manifest with a malformed digest");
    if reply.status == 400 {
        assert!(
            ERROR_CODES.contains(&reply.code().as_str()),
            "{}",
            reply.text()
        );
    }

    // Teardown (OCI_DELETE_MANIFEST_BEFORE_BLOBS defaults to true).
    for m in [&f.manifests[0], &f.manifests[1]] {
        let reply = delete(r, &manifest_uri(NAME, &sha(m).to_string())).await;
        expect_status(&reply, TWO_XX_OR_405, "pull teardown: manifest");
    }
    for blob in [&f.configs[0], &f.configs[1], &f.layer] {
        let reply = delete(r, &blob_uri(NAME, &sha(blob))).await;
        expect_status(&reply, DELETE_ANY, "pull teardown: blob");
    }
}

async fn push(r: &TestRegistry, f: &Fixture) {
    // Setup
    for blob in [&f.empty_json, &f.ref_blob_a] {
        expect_2xx(&post_then_put(r, NAME, blob).await, "push setup: blob");
    }

    // Blob upload streamed: a PATCH without Content-Range, then an empty PUT.
    let post = request(r, Method::POST, &uploads_uri(NAME), &[], b"").await;
    let location = expect_header(&post, "location", "POST").to_string();
    let patch = request(
        r,
        Method::PATCH,
        &location,
        &[("content-type", OCTET)],
        &f.blob_a,
    )
    .await;
    expect_status(&patch, &[202], "PATCH with the blob in the body");
    let location = expect_header(&patch, "location", "PATCH").to_string();
    let put = request(
        r,
        Method::PUT,
        &with_param(&location, "digest", &sha(&f.blob_a).to_string()),
        &[("content-type", OCTET), ("content-length", "0")],
        b"",
    )
    .await;
    expect_status(&put, &[201], "PUT to the session URL with digest");
    expect_header(&put, "location", "PUT closing a streamed upload");

    // Blob upload monolithic
    let reply = r.get(&blob_uri(NAME, &f.dummy)).await;
    expect_status(&reply, &[404], "GET nonexistent blob");
    let config1 = sha(&f.configs[1]);
    let length = f.configs[1].len().to_string();
    let post = request(
        r,
        Method::POST,
        &with_param(&uploads_uri(NAME), "digest", &config1.to_string()),
        &[("content-length", &length), ("content-type", OCTET)],
        &f.configs[1],
    )
    .await;
    expect_header(&post, "location", "POST with digest and blob");
    expect_status(&post, &[201, 202], "POST with digest and blob");
    let reply = r.get(&blob_uri(NAME, &config1)).await;
    let expected = if post.status == 202 { 404 } else { 200 };
    expect_status(&reply, &[expected], "GET the blob of the POST");
    let post = request(r, Method::POST, &uploads_uri(NAME), &[], b"").await;
    expect_status(&post, &[202], "POST should yield a session ID");
    let location = expect_header(&post, "location", "POST").to_string();
    let put = request(
        r,
        Method::PUT,
        &with_param(&location, "digest", &config1.to_string()),
        &[("content-length", &length), ("content-type", OCTET)],
        &f.configs[1],
    )
    .await;
    expect_header(&put, "location", "PUT upload of a blob");
    expect_status(&put, &[201], "PUT upload of a blob");
    let reply = r.get(&blob_uri(NAME, &config1)).await;
    expect_status(&reply, &[200], "GET the uploaded blob");
    let put = post_then_put(r, NAME, &f.layer).await;
    expect_header(&put, "location", "PUT upload of a layer");
    expect_status(&put, &[201], "PUT upload of a layer");
    let reply = r.get(&blob_uri(NAME, &sha(&f.layer))).await;
    expect_status(&reply, &[200], "GET the uploaded layer");

    chunked_upload(r, f).await;
    cross_repository_mount(r, f).await;
    manifest_upload(r, f).await;

    // Teardown
    let delete_manifest = |m: &[u8]| manifest_uri(NAME, &sha(m).to_string());
    for m in [
        &f.manifests[1],
        &config_type_artifact(f),
        &artifact_type_artifact(f),
        &f.empty_layer_manifest,
    ] {
        let reply = delete(r, &delete_manifest(m)).await;
        expect_status(&reply, TWO_XX_OR_405, "push teardown: manifest");
    }
    for blob in [&f.configs[1], &f.layer, &f.empty_json] {
        let reply = delete(r, &blob_uri(NAME, &sha(blob))).await;
        expect_status(&reply, DELETE_ANY, "push teardown: blob");
    }
}

async fn chunked_upload(r: &TestRegistry, f: &Fixture) {
    // Out of order: the second chunk first.
    let post = request(
        r,
        Method::POST,
        &uploads_uri(NAME),
        &[("content-length", "0")],
        b"",
    )
    .await;
    let location = expect_header(&post, "location", "POST for a chunked upload").to_string();
    // The suite grows its blob to twice a stated minimum chunk length.
    let blob_b = match post.header("oci-chunk-min-length") {
        Some(min) => {
            let min: usize = min.parse().expect("OCI-Chunk-Min-Length is a number");
            if min > f.blob_b.len() / 2 + 1 {
                random_bytes(min * 2 - 2)
            } else {
                f.blob_b.clone()
            }
        }
        None => f.blob_b.clone(),
    };
    let split = blob_b.len() / 2 + 1;
    let (chunk1, chunk2) = blob_b.split_at(split);
    let range1 = format!("0-{}", split - 1);
    let range2 = format!("{split}-{}", blob_b.len() - 1);
    let (len1, len2) = (chunk1.len().to_string(), chunk2.len().to_string());
    let reply = request(
        r,
        Method::PATCH,
        &location,
        &[
            ("content-type", OCTET),
            ("content-length", &len2),
            ("content-range", &range2),
        ],
        chunk2,
    )
    .await;
    expect_status(&reply, &[416], "out-of-order blob upload");

    // In order, with a retry and a status check in between.
    let post = request(
        r,
        Method::POST,
        &uploads_uri(NAME),
        &[("content-length", "0")],
        b"",
    )
    .await;
    let first_location = expect_header(&post, "location", "POST").to_string();
    let reply = request(
        r,
        Method::PATCH,
        &first_location,
        &[
            ("content-type", OCTET),
            ("content-length", &len1),
            ("content-range", &range1),
        ],
        chunk1,
    )
    .await;
    expect_status(&reply, &[202], "PATCH with the first chunk");
    assert_eq!(reply.header("range"), Some(range1.as_str()));
    let reply = request(
        r,
        Method::PATCH,
        &first_location,
        &[
            ("content-type", OCTET),
            ("content-length", &len1),
            ("content-range", &range1),
        ],
        chunk1,
    )
    .await;
    expect_status(&reply, &[416], "retry of the previous chunk");
    let status = r.get(&first_location).await;
    expect_status(&status, &[204], "GET on a stale upload");
    let location = expect_header(&status, "location", "GET on a stale upload").to_string();
    assert_eq!(status.header("range"), Some(range1.as_str()));
    let reply = request(
        r,
        Method::PATCH,
        &location,
        &[
            ("content-length", &len2),
            ("content-range", &range2),
            ("content-type", OCTET),
        ],
        chunk2,
    )
    .await;
    expect_status(&reply, &[202], "PATCH with the second chunk");
    assert_eq!(
        reply.header("range"),
        Some(format!("0-{}", blob_b.len() - 1).as_str())
    );
    let location = expect_header(&reply, "location", "PATCH with the second chunk").to_string();
    let reply = request(
        r,
        Method::PUT,
        &with_param(&location, "digest", &sha(&blob_b).to_string()),
        &[("content-length", "0"), ("content-type", OCTET)],
        b"",
    )
    .await;
    expect_status(&reply, &[201], "PUT closing a chunked upload");
    expect_header(&reply, "location", "PUT closing a chunked upload");
}

async fn cross_repository_mount(r: &TestRegistry, f: &Fixture) {
    let uri = with_param(&uploads_uri(CROSSMOUNT), "mount", &f.dummy.to_string());
    let reply = request(r, Method::POST, &uri, &[], b"").await;
    expect_status(&reply, &[202], "mount without from of a blob nobody has");
    expect_header(&reply, "location", "mount without from");

    let blob_a = sha(&f.blob_a);
    let uri = with_param(
        &with_param(&uploads_uri(CROSSMOUNT), "mount", &blob_a.to_string()),
        "from",
        NAME,
    );
    let mount = request(r, Method::POST, &uri, &[], b"").await;
    expect_status(&mount, &[201, 202], "mount of another repository's blob");
    let location = expect_header(&mount, "location", "mount").to_string();
    if mount.status == 201 {
        assert_eq!(location, blob_uri(CROSSMOUNT, &blob_a));
        let reply = r.get(&location).await;
        expect_status(&reply, &[200], "GET the mounted blob");
        // As with OCI_AUTOMATIC_CROSSMOUNT=1: without `from`, a blob the
        // registry has is mounted too.
        let uri = with_param(&uploads_uri(CROSSMOUNT), "mount", &blob_a.to_string());
        let reply = request(r, Method::POST, &uri, &[], b"").await;
        expect_status(
            &reply,
            &[201],
            "mount without from of a blob the registry has",
        );
    } else {
        assert!(location.starts_with(&format!("/v2/{CROSSMOUNT}/blobs/uploads/")));
    }
}

/// A manifest whose artifact type is its config's media type.
fn config_type_artifact(f: &Fixture) -> Vec<u8> {
    pretty(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": desc(TYPE_A, &f.ref_blob_a),
        "layers": [desc(media_type::OCI_EMPTY, &f.empty_json)],
    }))
}

/// A manifest with an `artifactType` and the empty config.
fn artifact_type_artifact(f: &Fixture) -> Vec<u8> {
    pretty(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": TYPE_A,
        "config": desc(media_type::OCI_EMPTY, &f.empty_json),
        "layers": [desc(TYPE_A, &f.ref_blob_a)],
    }))
}

async fn manifest_upload(r: &TestRegistry, f: &Fixture) {
    let reply = r.get(&manifest_uri(NAME, NONEXISTENT_MANIFEST)).await;
    expect_status(&reply, &[404], "GET nonexistent manifest");
    for i in 0..4 {
        let reply = put_manifest(r, &format!("test{i}"), OCI_MANIFEST, &f.manifests[1]).await;
        expect_header(&reply, "location", "PUT manifest by tag");
        expect_status(&reply, &[201], "PUT manifest by tag");
    }
    // The suite only warns when this one is refused; ferry accepts it.
    let reply = put_manifest(r, EMPTY_LAYER_TAG, OCI_MANIFEST, &f.empty_layer_manifest).await;
    expect_status(&reply, &[201], "PUT manifest with no layers");
    expect_header(&reply, "location", "PUT manifest with no layers");
    let reply = request(
        r,
        Method::GET,
        &manifest_uri(NAME, &sha(&f.manifests[1]).to_string()),
        &[("accept", OCI_MANIFEST)],
        b"",
    )
    .await;
    expect_status(&reply, &[200], "GET manifest by digest");

    for body in [config_type_artifact(f), artifact_type_artifact(f)] {
        let reply = put_manifest(r, &sha(&body).to_string(), OCI_MANIFEST, &body).await;
        expect_2xx(&reply, "PUT artifact manifest");
    }

    // An image index over manifest[0] (whose config the pull teardown
    // deleted, so the suite pushes it again first).
    expect_2xx(
        &post_then_put(r, NAME, &f.configs[0]).await,
        "index: config blob",
    );
    let reply = put_manifest(r, TEST_TAG, OCI_MANIFEST, &f.manifests[0]).await;
    expect_2xx(&reply, "index: manifest[0]");
    let index = pretty(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "artifactType": TYPE_INDEX,
        "manifests": [desc(OCI_MANIFEST, &f.manifests[0])],
        "annotations": {ANNOTATION: "test index"},
    }));
    let reply = put_manifest(r, &sha(&index).to_string(), OCI_INDEX, &index).await;
    expect_2xx(&reply, "PUT image index");
    let nested = pretty(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "artifactType": TYPE_INDEX,
        "manifests": [desc(OCI_INDEX, &index)],
        "annotations": {ANNOTATION: "test index"},
    }));
    let reply = put_manifest(r, &sha(&nested).to_string(), OCI_INDEX, &nested).await;
    expect_2xx(&reply, "PUT nested image index");

    // A dangling subject: manifest[3] is not in the repository.
    let body = &f.refs_c_layer;
    let reply = put_manifest(r, &sha(body).to_string(), OCI_MANIFEST, body).await;
    expect_2xx(&reply, "PUT manifest with a dangling subject");
    // The suite matches the header against ^[a-f0-9]+:[a-f0-9]+$, which no
    // digest naming its algorithm ("sha256:...") can match; the spec asks
    // for the subject's digest, so that is what is checked.
    let subject = expect_header(&reply, "oci-subject", "dangling subject");
    assert_eq!(subject, sha(&f.manifests[3]).to_string());
}

async fn content_discovery(r: &TestRegistry, f: &Fixture) {
    // Setup
    for blob in [&f.configs[2], &f.layer] {
        expect_2xx(&post_then_put(r, NAME, blob).await, "discovery setup: blob");
    }
    for i in 0..4 {
        let reply = put_manifest(r, &format!("test{i}"), OCI_MANIFEST, &f.manifests[2]).await;
        expect_2xx(&reply, "discovery setup: tag");
    }
    assert_eq!(
        sha(&f.empty_json).to_string(),
        "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
    );
    let subject4 = sha(&f.manifests[4]).to_string();
    expect_2xx(
        &post_then_put(r, NAME, &f.empty_json).await,
        "empty JSON blob",
    );
    expect_2xx(
        &post_then_put(r, NAME, &f.ref_blob_a).await,
        "referrer blob A",
    );
    // Referrers pushed before their subject.
    for (body, content_type) in [
        (&f.refs_a_config, OCI_MANIFEST),
        (&f.refs_a_layer, OCI_MANIFEST),
        (&f.refs_index, OCI_INDEX),
    ] {
        let reply = put_manifest(r, &sha(body).to_string(), content_type, body).await;
        expect_2xx(&reply, "referrer before its subject");
        assert_eq!(reply.header("oci-subject"), Some(subject4.as_str()));
    }
    for blob in [&f.configs[4], &f.layer] {
        expect_2xx(&post_then_put(r, NAME, blob).await, "discovery setup: blob");
    }
    let reply = put_manifest(r, TEST_TAG, OCI_MANIFEST, &f.manifests[4]).await;
    expect_2xx(&reply, "the subject");
    // Referrers pushed after their subject.
    expect_2xx(
        &post_then_put(r, NAME, &f.ref_blob_b).await,
        "referrer blob B",
    );
    for body in [&f.refs_b_config, &f.refs_b_layer] {
        let reply = put_manifest(r, &sha(body).to_string(), OCI_MANIFEST, body).await;
        expect_2xx(&reply, "referrer after its subject");
        assert_eq!(reply.header("oci-subject"), Some(subject4.as_str()));
    }
    let body = &f.refs_c_layer;
    let reply = put_manifest(r, &sha(body).to_string(), OCI_MANIFEST, body).await;
    expect_2xx(&reply, "referrer of a subject that does not exist");
    assert_eq!(
        reply.header("oci-subject"),
        Some(sha(&f.manifests[3]).to_string().as_str())
    );

    // Listing tags
    let tags_uri = format!("/v2/{NAME}/tags/list");
    let reply = r.get(&tags_uri).await;
    expect_status(&reply, &[200], "GET tags list");
    let tags = tag_list(&reply);
    let num_tags = tags.len();
    assert!(num_tags >= 2, "{tags:?}");
    let half = num_tags / 2;
    let reply = r.get(&with_param(&tags_uri, "n", &half.to_string())).await;
    expect_status(&reply, &[200], "GET tags list with n");
    let first_page = tag_list(&reply);
    assert_eq!(first_page.len(), half, "n limits the tags");
    let last = first_page[half - 1].clone();
    let uri = with_param(
        &with_param(&tags_uri, "n", &half.to_string()),
        "last",
        &last,
    );
    let reply = r.get(&uri).await;
    expect_status(&reply, &[200], "GET tags list with n and last");
    let second_page = tag_list(&reply);
    assert!(second_page.len() <= half);
    assert!(!second_page.contains(&last), "last is not repeated");
    assert!(second_page.iter().all(|t| *t > last), "{second_page:?}");

    // Listing referrers
    let referrers = |digest: &str| format!("/v2/{NAME}/referrers/{digest}");
    let reply = r.get(&referrers(&f.dummy.to_string())).await;
    assert!(referrers_of(&reply, "referrers of nothing").is_empty());
    let reply = r.get(&referrers(&subject4)).await;
    let all = referrers_of(&reply, "referrers of manifest[4]");
    assert_eq!(all.len(), 5, "{all:?}");
    assert_ne!(all[0]["digest"], all[1]["digest"]);
    for d in &all {
        let digest: Digest = d["digest"].as_str().unwrap().parse().unwrap();
        let annotations = d["annotations"].as_object().expect("annotations copied");
        assert_eq!(annotations.len(), 1);
        assert_eq!(
            annotations[ANNOTATION].as_str(),
            f.annotations.get(&digest).map(String::as_str)
        );
    }
    let reply = r
        .get(&with_param(&referrers(&subject4), "artifactType", TYPE_A))
        .await;
    let filtered = referrers_of(&reply, "referrers filtered by artifactType");
    assert_eq!(reply.header("oci-filters-applied"), Some("artifactType"));
    assert_eq!(filtered.len(), 2, "{filtered:?}");
    for d in &filtered {
        let digest: Digest = d["digest"].as_str().unwrap().parse().unwrap();
        assert_eq!(d["annotations"].as_object().unwrap().len(), 1);
        assert_eq!(
            d["annotations"][ANNOTATION].as_str(),
            f.annotations.get(&digest).map(String::as_str)
        );
    }
    let reply = r.get(&referrers(&sha(&f.manifests[3]).to_string())).await;
    let dangling = referrers_of(&reply, "referrers of a missing manifest");
    assert_eq!(dangling.len(), 1);
    assert_eq!(
        dangling[0]["digest"],
        json!(sha(&f.refs_c_layer).to_string())
    );

    // Teardown
    let references = [
        sha(&f.refs_index).to_string(),
        sha(&f.manifests[2]).to_string(),
        subject4.clone(),
        sha(&f.refs_a_config).to_string(),
        sha(&f.refs_a_layer).to_string(),
        TEST_TAG.to_string(),
        sha(&f.refs_b_config).to_string(),
        sha(&f.refs_b_layer).to_string(),
        sha(&f.refs_c_layer).to_string(),
    ];
    for reference in &references {
        let reply = delete(r, &manifest_uri(NAME, reference)).await;
        expect_status(&reply, DELETE_ANY, "discovery teardown: manifest");
    }
    for blob in [&f.configs[2], &f.layer] {
        let reply = delete(r, &blob_uri(NAME, &sha(blob))).await;
        expect_status(&reply, TWO_XX_OR_405, "discovery teardown: blob");
    }
    for reference in &references[..5] {
        let reply = delete(r, &manifest_uri(NAME, reference)).await;
        expect_status(&reply, DELETE_ANY, "references teardown: manifest");
    }
    for blob in [&f.configs[4], &f.ref_blob_a, &f.ref_blob_b, &f.empty_json] {
        let reply = delete(r, &blob_uri(NAME, &sha(blob))).await;
        expect_status(&reply, DELETE_ANY, "references teardown: blob");
    }
}

fn tag_list(reply: &Reply) -> Vec<String> {
    serde_json::from_value(reply.json()["tags"].clone()).unwrap_or_default()
}

async fn content_management(r: &TestRegistry, f: &Fixture) {
    // Setup
    for blob in [&f.configs[3], &f.layer] {
        expect_2xx(
            &post_then_put(r, NAME, blob).await,
            "management setup: blob",
        );
    }
    let reply = put_manifest(r, TEST_TAG, OCI_MANIFEST, &f.manifests[3]).await;
    expect_2xx(&reply, "management setup: tag");
    let tags_uri = format!("/v2/{NAME}/tags/list");
    let reply = r.get(&tags_uri).await;
    expect_status(&reply, &[200], "tags before deletion");
    let num_tags = tag_list(&reply).len();

    // Manifest delete
    let reply = delete(r, &manifest_uri(NAME, TEST_TAG)).await;
    expect_status(&reply, &[202, 400, 405], "DELETE a tag");
    if reply.status == 400 {
        assert_eq!(reply.code(), "UNSUPPORTED");
    }
    let m3 = manifest_uri(NAME, &sha(&f.manifests[3]).to_string());
    let reply = delete(r, &m3).await;
    expect_status(&reply, &[202, 404], "DELETE a manifest by digest");
    let reply = r.get(&m3).await;
    expect_status(&reply, &[404, 200], "GET a deleted manifest");
    let reply = r.get(&tags_uri).await;
    expect_status(&reply, &[200], "tags after deletion");
    assert!(tag_list(&reply).len() < num_tags, "{}", reply.text());

    // Blob delete
    let config3 = sha(&f.configs[3]);
    let reply = delete(r, &blob_uri(NAME, &config3)).await;
    expect_status(&reply, &[202, 404, 405], "DELETE config blob");
    let reply = delete(r, &blob_uri(NAME, &sha(&f.layer))).await;
    expect_status(&reply, &[202, 404, 405], "DELETE layer blob");
    if reply.status != 405 {
        let reply = r.get(&blob_uri(NAME, &config3)).await;
        expect_status(&reply, &[404], "GET a deleted blob");
    }
}
