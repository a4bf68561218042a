use axum::body::Body;
use axum::http::{Method, StatusCode};
use ferry_oci::{Algorithm, Digest, media_type};

use crate::{TestRegistry, manifest};

async fn start(r: &TestRegistry, repo: &str) -> String {
    let reply = r
        .send(
            Method::POST,
            &format!("/v2/{repo}/blobs/uploads/"),
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::ACCEPTED);
    assert!(reply.header("docker-upload-uuid").is_some());
    reply.header("location").unwrap().to_string()
}

#[tokio::test]
async fn post_then_put_monolithic() {
    let r = TestRegistry::new();
    let location = start(&r, "repo").await;
    assert!(location.starts_with("/v2/repo/blobs/uploads/"));
    let digest = Digest::sha256(b"monolithic");
    let put = r
        .send(
            Method::PUT,
            &format!("{location}?digest={digest}"),
            &[("content-type", "application/octet-stream")],
            b"monolithic".to_vec(),
        )
        .await;
    assert_eq!(put.status, StatusCode::CREATED);
    assert_eq!(
        put.header("location"),
        Some(format!("/v2/repo/blobs/{digest}").as_str())
    );
    assert_eq!(
        put.header("docker-content-digest"),
        Some(digest.to_string().as_str())
    );
    assert_eq!(
        r.get(&format!("/v2/repo/blobs/{digest}")).await.body,
        b"monolithic"
    );
    // The session is gone.
    assert_eq!(r.get(&location).await.code(), "BLOB_UPLOAD_UNKNOWN");
}

#[tokio::test]
async fn chunked_upload_with_status_and_order_checks() {
    let r = TestRegistry::new();
    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 31 % 256) as u8).collect();
    let location = start(&r, "a/b").await;
    let chunks = [&data[..100_000], &data[100_000..250_000], &data[250_000..]];
    let mut offset = 0usize;
    for chunk in &chunks[..2] {
        let range = format!("{}-{}", offset, offset + chunk.len() - 1);
        let len = chunk.len().to_string();
        let reply = r
            .send(
                Method::PATCH,
                &location,
                &[
                    ("content-range", &range),
                    ("content-length", &len),
                    ("content-type", "application/octet-stream"),
                ],
                chunk.to_vec(),
            )
            .await;
        assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.text());
        offset += chunk.len();
        assert_eq!(
            reply.header("range"),
            Some(format!("0-{}", offset - 1).as_str())
        );
    }
    let status = r.get(&location).await;
    assert_eq!(status.status, StatusCode::NO_CONTENT);
    assert_eq!(status.header("range"), Some("0-249999"));
    // Out of order and overlapping chunks are refused with 416 and the real range.
    for bad in ["100000-100009", "260000-260009", "0-9"] {
        let reply = r
            .send(
                Method::PATCH,
                &location,
                &[("content-range", bad), ("content-length", "10")],
                vec![0u8; 10],
            )
            .await;
        assert_eq!(reply.status, StatusCode::RANGE_NOT_SATISFIABLE, "{bad}");
        assert_eq!(reply.header("range"), Some("0-249999"));
    }
    let digest = Digest::sha256(&data);
    let range = format!("250000-{}", data.len() - 1);
    let put = r
        .send(
            Method::PUT,
            &format!("{location}?digest={digest}"),
            &[("content-range", &range)],
            chunks[2].to_vec(),
        )
        .await;
    assert_eq!(put.status, StatusCode::CREATED, "{}", put.text());
    assert_eq!(r.get(&format!("/v2/a/b/blobs/{digest}")).await.body, data);
}

#[tokio::test]
async fn streamed_patch_without_content_range_and_resume_after_restart() {
    let r = TestRegistry::new();
    let location = start(&r, "repo").await;
    let reply = r
        .send(Method::PATCH, &location, &[], b"first half, ".to_vec())
        .await;
    assert_eq!(reply.status, StatusCode::ACCEPTED);
    let r = r.restarted();
    let status = r.get(&location).await;
    assert_eq!(status.header("range"), Some("0-11"));
    let reply = r
        .send(
            Method::PATCH,
            &location,
            &[("content-range", "12-22")],
            b"second half".to_vec(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.text());
    let digest = Digest::sha256(b"first half, second half");
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

#[tokio::test]
async fn cancel_upload() {
    let r = TestRegistry::new();
    let location = start(&r, "repo").await;
    r.send(Method::PATCH, &location, &[], b"abc".to_vec()).await;
    let del = r.send(Method::DELETE, &location, &[], Body::empty()).await;
    assert_eq!(del.status, StatusCode::NO_CONTENT);
    assert_eq!(r.get(&location).await.code(), "BLOB_UPLOAD_UNKNOWN");
    let again = r.send(Method::DELETE, &location, &[], Body::empty()).await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn upload_sessions_belong_to_their_repository() {
    let r = TestRegistry::new();
    let location = start(&r, "mine").await;
    let id = location.rsplit('/').next().unwrap();
    let reply = r
        .send(
            Method::PATCH,
            &format!("/v2/theirs/blobs/uploads/{id}"),
            &[],
            b"x".to_vec(),
        )
        .await;
    assert_eq!(reply.code(), "BLOB_UPLOAD_UNKNOWN");
    let guessed = r
        .get("/v2/mine/blobs/uploads/00000000000000000000000000000000")
        .await;
    assert_eq!(guessed.code(), "BLOB_UPLOAD_UNKNOWN");
}

#[tokio::test]
async fn cross_repository_mount_and_fallback() {
    let r = TestRegistry::new();
    let digest = r.push_blob("source", b"shared layer").await;
    let mount = r
        .send(
            Method::POST,
            &format!("/v2/target/blobs/uploads/?mount={digest}&from=source"),
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(mount.status, StatusCode::CREATED);
    assert_eq!(
        mount.header("location"),
        Some(format!("/v2/target/blobs/{digest}").as_str())
    );
    assert_eq!(
        r.get(&format!("/v2/target/blobs/{digest}")).await.body,
        b"shared layer"
    );
    // Not in the source repository: an ordinary upload session instead.
    for from in ["nowhere", "INVALID"] {
        let fallback = r
            .send(
                Method::POST,
                &format!("/v2/t2/blobs/uploads/?mount={digest}&from={from}"),
                &[],
                Body::empty(),
            )
            .await;
        assert_eq!(fallback.status, StatusCode::ACCEPTED);
        assert!(
            fallback
                .header("location")
                .unwrap()
                .starts_with("/v2/t2/blobs/uploads/")
        );
    }
    // Without `from`, a blob the registry holds is mounted from wherever
    // it is; one it does not hold gets an upload session.
    let no_from = r
        .send(
            Method::POST,
            &format!("/v2/t3/blobs/uploads/?mount={digest}"),
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(no_from.status, StatusCode::CREATED);
    assert_eq!(
        r.get(&format!("/v2/t3/blobs/{digest}")).await.body,
        b"shared layer"
    );
    let unknown = Digest::sha256(b"nobody pushed this");
    let no_from = r
        .send(
            Method::POST,
            &format!("/v2/t3/blobs/uploads/?mount={unknown}"),
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(no_from.status, StatusCode::ACCEPTED);
    assert!(
        no_from
            .header("location")
            .unwrap()
            .starts_with("/v2/t3/blobs/uploads/")
    );
}

#[tokio::test]
async fn sha512_everywhere() {
    let r = TestRegistry::new();
    let data = b"sha512 content";
    let digest = Digest::of(Algorithm::Sha512, data);
    let post = r
        .send(
            Method::POST,
            &format!("/v2/s/blobs/uploads/?digest={digest}"),
            &[],
            data.to_vec(),
        )
        .await;
    assert_eq!(post.status, StatusCode::CREATED, "{}", post.text());
    assert_eq!(r.get(&format!("/v2/s/blobs/{digest}")).await.body, data);
    // Chunked, with the digest only at the end.
    let location = start(&r, "s").await;
    r.send(Method::PATCH, &location, &[], b"chunk".to_vec())
        .await;
    let d2 = Digest::of(Algorithm::Sha512, b"chunk");
    let put = r
        .send(
            Method::PUT,
            &format!("{location}?digest={d2}"),
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(put.status, StatusCode::CREATED, "{}", put.text());
    // Manifests by sha512 digest.
    r.push_blob("s", b"{}").await;
    let body = manifest(b"{}", &[], None);
    let md = Digest::of(Algorithm::Sha512, &body);
    let put = r
        .send(
            Method::PUT,
            &format!("/v2/s/manifests/{md}"),
            &[("content-type", media_type::OCI_MANIFEST)],
            body.clone(),
        )
        .await;
    assert_eq!(put.status, StatusCode::CREATED, "{}", put.text());
    assert_eq!(
        put.header("docker-content-digest"),
        Some(md.to_string().as_str())
    );
    assert_eq!(r.get(&format!("/v2/s/manifests/{md}")).await.body, body);
}

#[tokio::test]
async fn docker_media_types() {
    let r = TestRegistry::new();
    let config = b"{\"architecture\":\"amd64\"}";
    r.push_blob("d", config).await;
    r.push_blob("d", b"docker layer").await;
    let body = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media_type::DOCKER_MANIFEST,
        "config": crate::descriptor(media_type::DOCKER_CONFIG, config),
        "layers": [crate::descriptor(media_type::DOCKER_LAYER_GZIP, b"docker layer")],
    }))
    .unwrap();
    let put = r
        .send(
            Method::PUT,
            "/v2/d/manifests/v1",
            &[("content-type", media_type::DOCKER_MANIFEST)],
            body.clone(),
        )
        .await;
    assert_eq!(put.status, StatusCode::CREATED, "{}", put.text());
    let get = r
        .send(
            Method::GET,
            "/v2/d/manifests/v1",
            &[("accept", media_type::DOCKER_MANIFEST)],
            Body::empty(),
        )
        .await;
    assert_eq!(
        get.header("content-type"),
        Some(media_type::DOCKER_MANIFEST)
    );
    assert_eq!(get.body, body);
}

#[tokio::test]
async fn subject_header_and_referrers() {
    let r = TestRegistry::new();
    let (subject, subject_body) = r.push_image("app", "v1", &[b"l"]).await;
    r.push_blob("app", b"{}").await;
    for kind in [
        "application/vnd.example.sbom",
        "application/vnd.example.sig",
    ] {
        let body = manifest(b"{}", &[], Some((&subject, subject_body.len(), kind)));
        let d = Digest::sha256(&body);
        let put = r
            .send(
                Method::PUT,
                &format!("/v2/app/manifests/{d}"),
                &[("content-type", media_type::OCI_MANIFEST)],
                body,
            )
            .await;
        assert_eq!(put.status, StatusCode::CREATED);
        assert_eq!(
            put.header("oci-subject"),
            Some(subject.to_string().as_str())
        );
    }
    let all = r.get(&format!("/v2/app/referrers/{subject}")).await;
    assert_eq!(all.status, StatusCode::OK);
    assert_eq!(all.header("content-type"), Some(media_type::OCI_INDEX));
    let index = all.json();
    assert_eq!(index["manifests"].as_array().unwrap().len(), 2);
    assert!(all.header("oci-filters-applied").is_none());
    let sig = r
        .get(&format!(
            "/v2/app/referrers/{subject}?artifactType=application/vnd.example.sig"
        ))
        .await;
    assert_eq!(sig.header("oci-filters-applied"), Some("artifactType"));
    let list = sig.json();
    let list = list["manifests"].as_array().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["artifactType"], "application/vnd.example.sig");
    assert_eq!(
        list[0]["annotations"]["org.example.kind"],
        "application/vnd.example.sig"
    );
    // A subject nobody refers to has an empty list.
    let none = r
        .get(&format!("/v2/app/referrers/{}", Digest::sha256(b"z")))
        .await;
    assert_eq!(none.status, StatusCode::OK);
    assert_eq!(none.json()["manifests"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn busy_upload_asks_the_second_writer_to_retry() {
    let r = TestRegistry::new();
    let location = start(&r, "repo").await;
    // A PATCH whose client has gone quiet: its body is still open.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(1);
    tx.send(Ok(b"held ".to_vec())).await.unwrap();
    let body = Body::from_stream(tokio_stream_from(rx));
    let held = {
        let router = r.router.clone();
        let location = location.clone();
        tokio::spawn(async move {
            use tower::ServiceExt;
            let req = axum::http::Request::patch(location).body(body).unwrap();
            router.oneshot(req).await.unwrap().status()
        })
    };
    // Wait until the first request holds the session.
    let mut busy = None;
    for _ in 0..200 {
        let reply = r
            .send(
                Method::PATCH,
                &location,
                &[("content-range", "5-9")],
                b"other".to_vec(),
            )
            .await;
        if reply.status == StatusCode::TOO_MANY_REQUESTS {
            busy = Some(reply);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let busy = busy.expect("the second writer was never refused");
    assert_eq!(busy.code(), "TOOMANYREQUESTS");
    assert_eq!(busy.header("retry-after"), Some("1"));
    // A status request meanwhile waits for the first request to end, so the
    // offset it reports already holds that request's bytes.
    let status = {
        let router = r.router.clone();
        let location = location.clone();
        tokio::spawn(async move {
            use tower::ServiceExt;
            let req = axum::http::Request::get(location)
                .body(Body::empty())
                .unwrap();
            let response = router.oneshot(req).await.unwrap();
            response
                .headers()
                .get("range")
                .map(|v| v.to_str().unwrap().to_string())
        })
    };
    // Let it start while the first request still holds the session.
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    // The first request ends; the retry then resumes where it stopped.
    drop(tx);
    assert_eq!(held.await.unwrap(), StatusCode::ACCEPTED);
    assert_eq!(status.await.unwrap().as_deref(), Some("0-4"));
    assert_eq!(r.get(&location).await.header("range"), Some("0-4"));
    let reply = r
        .send(
            Method::PATCH,
            &location,
            &[("content-range", "5-9")],
            b"other".to_vec(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.text());
}

/// The receiving half of a channel as a body stream.
fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<Result<Vec<u8>, std::io::Error>>,
) -> impl futures_util::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}
