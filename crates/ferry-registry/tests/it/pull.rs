use axum::body::Body;
use axum::http::{Method, StatusCode};
use ferry_oci::{Digest, media_type};

use crate::{TestRegistry, descriptor};

#[tokio::test]
async fn base_endpoint_and_api_version_header() {
    let r = TestRegistry::new();
    for uri in ["/v2/", "/v2"] {
        let reply = r.get(uri).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(
            reply.header("docker-distribution-api-version"),
            Some("registry/2.0")
        );
    }
}

#[tokio::test]
async fn manifests_by_tag_and_digest_get_and_head() {
    let r = TestRegistry::new();
    let (digest, body) = r.push_image("a/b/c/d/e", "v1", &[b"layer"]).await;
    for reference in ["v1".to_string(), digest.to_string()] {
        let uri = format!("/v2/a/b/c/d/e/manifests/{reference}");
        let get = r.get(&uri).await;
        assert_eq!(get.status, StatusCode::OK);
        assert_eq!(get.body, body);
        assert_eq!(get.header("content-type"), Some(media_type::OCI_MANIFEST));
        assert_eq!(
            get.header("docker-content-digest"),
            Some(digest.to_string().as_str())
        );
        let head = r.send(Method::HEAD, &uri, &[], Body::empty()).await;
        assert_eq!(head.status, StatusCode::OK);
        assert!(head.body.is_empty());
        assert_eq!(
            head.header("content-length"),
            Some(body.len().to_string().as_str())
        );
        assert_eq!(
            head.header("docker-content-digest"),
            Some(digest.to_string().as_str())
        );
    }
    let etag = format!("\"{digest}\"");
    let cached = r
        .send(
            Method::GET,
            "/v2/a/b/c/d/e/manifests/v1",
            &[("if-none-match", &etag)],
            Body::empty(),
        )
        .await;
    assert_eq!(cached.status, StatusCode::NOT_MODIFIED);
    let missing = r.get("/v2/a/b/c/d/e/manifests/v2").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.code(), "MANIFEST_UNKNOWN");
    let missing = r
        .get(&format!("/v2/a/b/c/d/e/manifests/{}", Digest::sha256(b"x")))
        .await;
    assert_eq!(missing.code(), "MANIFEST_UNKNOWN");
    let other_repo = r.get(&format!("/v2/other/manifests/{digest}")).await;
    assert_eq!(other_repo.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn index_served_as_is_or_platform_image_for_old_clients() {
    let r = TestRegistry::new();
    let (amd, amd_body) = r.push_image("multi", "amd64", &[b"amd layer"]).await;
    let (arm, arm_body) = r.push_image("multi", "arm64", &[b"arm layer"]).await;
    let mut amd_desc = descriptor(media_type::OCI_MANIFEST, &amd_body);
    amd_desc["platform"] = serde_json::json!({"architecture": "amd64", "os": "linux"});
    let mut arm_desc = descriptor(media_type::OCI_MANIFEST, &arm_body);
    arm_desc["platform"] =
        serde_json::json!({"architecture": "arm64", "os": "linux", "variant": "v8"});
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": media_type::OCI_INDEX, "manifests": [amd_desc, arm_desc]
    }))
    .unwrap();
    let put = r
        .send(
            Method::PUT,
            "/v2/multi/manifests/latest",
            &[("content-type", media_type::OCI_INDEX)],
            index.clone(),
        )
        .await;
    assert_eq!(put.status, StatusCode::CREATED, "{}", put.text());
    let accept_all = format!("{}, {}", media_type::OCI_INDEX, media_type::OCI_MANIFEST);
    let got = r
        .send(
            Method::GET,
            "/v2/multi/manifests/latest",
            &[("accept", &accept_all)],
            Body::empty(),
        )
        .await;
    assert_eq!(got.body, index);
    assert_eq!(got.header("content-type"), Some(media_type::OCI_INDEX));
    let no_accept = r.get("/v2/multi/manifests/latest").await;
    assert_eq!(no_accept.body, index);
    let old = r
        .send(
            Method::GET,
            "/v2/multi/manifests/latest",
            &[("accept", media_type::OCI_MANIFEST)],
            Body::empty(),
        )
        .await;
    assert_eq!(
        old.header("docker-content-digest"),
        Some(amd.to_string().as_str())
    );
    assert_eq!(old.body, amd_body);
    assert_ne!(amd, arm);
}

#[tokio::test]
async fn blobs_get_head_and_ranges() {
    let r = TestRegistry::new();
    let data: Vec<u8> = (0..2_000_000u32).map(|i| (i % 253) as u8).collect();
    let digest = r.push_blob("repo", &data).await;
    let uri = format!("/v2/repo/blobs/{digest}");
    let full = r.get(&uri).await;
    assert_eq!(full.status, StatusCode::OK);
    assert_eq!(full.body, data);
    assert_eq!(
        full.header("docker-content-digest"),
        Some(digest.to_string().as_str())
    );
    assert_eq!(full.header("accept-ranges"), Some("bytes"));
    let head = r.send(Method::HEAD, &uri, &[], Body::empty()).await;
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(head.header("content-length"), Some("2000000"));
    assert!(head.body.is_empty());

    let part = r
        .send(
            Method::GET,
            &uri,
            &[("range", "bytes=1000-1999")],
            Body::empty(),
        )
        .await;
    assert_eq!(part.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(part.body, &data[1000..2000]);
    assert_eq!(
        part.header("content-range"),
        Some("bytes 1000-1999/2000000")
    );
    let tail = r
        .send(
            Method::GET,
            &uri,
            &[("range", "bytes=1999990-")],
            Body::empty(),
        )
        .await;
    assert_eq!(tail.body, &data[1_999_990..]);
    let suffix = r
        .send(Method::GET, &uri, &[("range", "bytes=-5")], Body::empty())
        .await;
    assert_eq!(suffix.body, &data[1_999_995..]);
    let past = r
        .send(
            Method::GET,
            &uri,
            &[("range", "bytes=2000000-")],
            Body::empty(),
        )
        .await;
    assert_eq!(past.status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(past.header("content-range"), Some("bytes */2000000"));

    let unknown = r
        .get(&format!("/v2/repo/blobs/{}", Digest::sha256(b"nope")))
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(unknown.code(), "BLOB_UNKNOWN");
    // Another repository cannot read it by digest.
    let elsewhere = r.get(&format!("/v2/elsewhere/blobs/{digest}")).await;
    assert_eq!(elsewhere.code(), "BLOB_UNKNOWN");
}

/// `Range` edge cases, the same table as ferry-netboot's file GETs: one
/// range is served (a suffix longer than the blob is the whole blob), a
/// reversed or zero-length one and one past the end get 416 with
/// `Content-Range: bytes */LEN`, several ranges or a malformed header the
/// whole blob (RFC 9110 §14.2 lets a server ignore them).
#[tokio::test]
async fn blob_range_edge_cases() {
    let r = TestRegistry::new();
    let data: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    let digest = r.push_blob("repo", &data).await;
    let uri = format!("/v2/repo/blobs/{digest}");
    for (range, status, content_range) in [
        ("bytes=0-4", 206, "bytes 0-4/1000000"),
        ("bytes=999995-", 206, "bytes 999995-999999/1000000"),
        ("bytes=999995-2000000", 206, "bytes 999995-999999/1000000"),
        ("bytes=-3", 206, "bytes 999997-999999/1000000"),
        ("bytes=-2000000", 206, "bytes 0-999999/1000000"),
        ("BYTES=1-1", 206, "bytes 1-1/1000000"),
        ("bytes=-0", 416, "bytes */1000000"),
        ("bytes=1000000-", 416, "bytes */1000000"),
        ("bytes=4-2", 416, "bytes */1000000"),
        ("bytes=0-1,3-4", 200, ""),
        ("bytes=0-5,3-4", 200, ""),
        ("items=0-1", 200, ""),
        ("bytes=x-1", 200, ""),
        ("bytes=", 200, ""),
    ] {
        let reply = r
            .send(Method::GET, &uri, &[("range", range)], Body::empty())
            .await;
        assert_eq!(
            (
                reply.status.as_u16(),
                reply.header("content-range").unwrap_or("")
            ),
            (status, content_range),
            "{range}"
        );
        if status == 200 {
            assert_eq!(reply.body, data, "{range}");
        }
    }
}
