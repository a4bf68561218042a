//! Bad input: the right 4xx and spec code, and nothing stored.

use axum::body::Body;
use axum::http::{Method, StatusCode};
use ferry_oci::{Digest, media_type};

use crate::{TestRegistry, manifest};

#[tokio::test]
async fn wrong_and_malformed_digests() {
    let r = TestRegistry::new();
    let wrong = Digest::sha256(b"other");
    let reply = r
        .send(
            Method::POST,
            &format!("/v2/repo/blobs/uploads/?digest={wrong}"),
            &[],
            b"data".to_vec(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.code(), "DIGEST_INVALID");
    for bad in [
        "sha256:xyz",
        "md5:d41d8cd98f00b204e9800998ecf8427e",
        "nocolon",
        "sha256:",
    ] {
        let reply = r
            .send(
                Method::POST,
                &format!("/v2/repo/blobs/uploads/?digest={bad}"),
                &[],
                b"data".to_vec(),
            )
            .await;
        assert_eq!(reply.code(), "DIGEST_INVALID", "{bad}");
        let reply = r.get(&format!("/v2/repo/blobs/{bad}")).await;
        assert_eq!(reply.code(), "DIGEST_INVALID", "{bad}");
        let reply = r.get(&format!("/v2/repo/referrers/{bad}")).await;
        assert_eq!(reply.code(), "DIGEST_INVALID", "{bad}");
    }
    // PUT without a digest, and with a wrong one: the session is gone, nothing stored.
    let start = r
        .send(Method::POST, "/v2/repo/blobs/uploads/", &[], Body::empty())
        .await;
    let location = start.header("location").unwrap().to_string();
    let reply = r.send(Method::PUT, &location, &[], b"data".to_vec()).await;
    assert_eq!(reply.code(), "DIGEST_INVALID");
    let reply = r
        .send(
            Method::PUT,
            &format!("{location}?digest={wrong}"),
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(reply.code(), "DIGEST_INVALID");
    assert_eq!(r.store.blob_size(&Digest::sha256(b"data")).unwrap(), None);
    assert!(r.store.repositories().unwrap().is_empty(), "nothing stored");
}

#[tokio::test]
async fn manifests_that_reference_missing_blobs_or_are_garbage() {
    let r = TestRegistry::new();
    r.push_blob("repo", b"cfg").await;
    let missing_layer = manifest(b"cfg", &[b"never pushed"], None);
    let reply = r
        .send(
            Method::PUT,
            "/v2/repo/manifests/v1",
            &[("content-type", media_type::OCI_MANIFEST)],
            missing_layer,
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.code(), "MANIFEST_BLOB_UNKNOWN");
    for garbage in [
        &b"{not json"[..],
        b"[]",
        b"{\"schemaVersion\":1}",
        b"",
        b"{\"schemaVersion\":2,\"mediaType\":\"text/plain\"}",
    ] {
        let reply = r
            .send(Method::PUT, "/v2/repo/manifests/v1", &[], garbage.to_vec())
            .await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{}",
            String::from_utf8_lossy(garbage)
        );
        assert_eq!(reply.code(), "MANIFEST_INVALID");
    }
    let ok = manifest(b"cfg", &[], None);
    let reply = r
        .send(
            Method::PUT,
            "/v2/repo/manifests/v1",
            &[("content-type", media_type::DOCKER_MANIFEST)],
            ok.clone(),
        )
        .await;
    assert_eq!(reply.code(), "MANIFEST_INVALID", "media type mismatch");
    let wrong = Digest::sha256(b"not the manifest");
    let reply = r
        .send(
            Method::PUT,
            &format!("/v2/repo/manifests/{wrong}"),
            &[],
            ok.clone(),
        )
        .await;
    assert_eq!(reply.code(), "DIGEST_INVALID");
    let big = vec![b' '; 65 * 1024];
    let reply = r
        .send(Method::PUT, "/v2/repo/manifests/big", &[], big)
        .await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(
        r.get("/v2/repo/tags/list").await.json()["tags"]
            .as_array()
            .is_none_or(|t| t.is_empty())
    );
}

#[tokio::test]
async fn invalid_names_and_tags() {
    let r = TestRegistry::new();
    for name in ["UPPER", "a//b", "-a", "a__-b", "a/_ferry"] {
        let reply = r
            .send(
                Method::POST,
                &format!("/v2/{name}/blobs/uploads/"),
                &[],
                Body::empty(),
            )
            .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{name}");
        assert_eq!(reply.code(), "NAME_INVALID", "{name}");
    }
    let long = "a".repeat(300);
    assert_eq!(
        r.get(&format!("/v2/{long}/tags/list")).await.code(),
        "NAME_INVALID"
    );
    r.push_blob("repo", b"cfg").await;
    let body = manifest(b"cfg", &[], None);
    for tag in [".hidden", "-dash", &"t".repeat(129)] {
        let reply = r
            .send(
                Method::PUT,
                &format!("/v2/repo/manifests/{tag}"),
                &[],
                body.clone(),
            )
            .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{tag}");
        let reply = r.get(&format!("/v2/repo/manifests/{tag}")).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{tag}");
    }
    let path_escape = r.get("/v2/../../etc/passwd/manifests/latest").await;
    assert!(path_escape.status.is_client_error());
}

#[tokio::test]
async fn unknown_endpoints_and_methods() {
    let r = TestRegistry::new();
    assert_eq!(r.get("/v2/just-a-name").await.status, StatusCode::NOT_FOUND);
    let reply = r
        .send(Method::POST, "/v2/repo/manifests/v1", &[], Body::empty())
        .await;
    assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(reply.code(), "UNSUPPORTED");
    let reply = r
        .send(Method::PUT, "/v2/repo/blobs/uploads/", &[], Body::empty())
        .await;
    assert_eq!(reply.code(), "UNSUPPORTED");
    let reply = r
        .send(Method::PATCH, "/v2/repo/tags/list", &[], Body::empty())
        .await;
    assert_eq!(reply.code(), "UNSUPPORTED");
}

#[tokio::test]
async fn malformed_chunk_headers() {
    let r = TestRegistry::new();
    let start = r
        .send(Method::POST, "/v2/repo/blobs/uploads/", &[], Body::empty())
        .await;
    let location = start.header("location").unwrap().to_string();
    let reply = r
        .send(
            Method::PATCH,
            &location,
            &[("content-range", "garbage")],
            b"x".to_vec(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.code(), "BLOB_UPLOAD_INVALID");
    let reply = r
        .send(
            Method::PATCH,
            &location,
            &[("content-range", "0-9"), ("content-length", "3")],
            b"abc".to_vec(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.code(), "BLOB_UPLOAD_INVALID");
    assert_eq!(r.get(&location).await.header("range"), Some("0-0"));
}

#[tokio::test]
async fn truncated_body_is_never_committed() {
    use futures_util::stream;
    let r = TestRegistry::new();
    let data = b"complete content".to_vec();
    let digest = Digest::sha256(&data);
    // The body fails half-way, as when a client disconnects.
    let chunks: Vec<Result<bytes::Bytes, std::io::Error>> = vec![
        Ok(bytes::Bytes::from_static(b"complete ")),
        Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "gone",
        )),
    ];
    let body = Body::from_stream(stream::iter(chunks));
    let reply = r
        .send(
            Method::POST,
            &format!("/v2/repo/blobs/uploads/?digest={digest}"),
            &[],
            body,
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.store.blob_size(&digest).unwrap(), None);
    // A chunk cut short keeps what arrived, for a resume.
    let start = r
        .send(Method::POST, "/v2/repo/blobs/uploads/", &[], Body::empty())
        .await;
    let location = start.header("location").unwrap().to_string();
    let chunks: Vec<Result<bytes::Bytes, std::io::Error>> = vec![
        Ok(bytes::Bytes::from_static(b"complete ")),
        Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "gone",
        )),
    ];
    r.send(
        Method::PATCH,
        &location,
        &[],
        Body::from_stream(stream::iter(chunks)),
    )
    .await;
    assert_eq!(r.get(&location).await.header("range"), Some("0-8"));
    r.send(
        Method::PATCH,
        &location,
        &[("content-range", "9-15")],
        b"content".to_vec(),
    )
    .await;
    let put = r
        .send(
            Method::PUT,
            &format!("{location}?digest={digest}"),
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(put.status, StatusCode::CREATED, "{}", put.text());
}
