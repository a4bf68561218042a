use axum::body::Body;
use axum::http::{Method, StatusCode};
use ferry_oci::Digest;

use crate::TestRegistry;

#[tokio::test]
async fn tags_list_with_pagination() {
    let r = TestRegistry::new();
    let (_, body) = r.push_image("repo", "a", &[]).await;
    for tag in ["d", "b", "c", "e"] {
        let reply = r
            .send(
                Method::PUT,
                &format!("/v2/repo/manifests/{tag}"),
                &[],
                body.clone(),
            )
            .await;
        assert_eq!(reply.status, StatusCode::CREATED);
    }
    let all = r.get("/v2/repo/tags/list").await;
    assert_eq!(
        all.json(),
        serde_json::json!({"name": "repo", "tags": ["a", "b", "c", "d", "e"]})
    );
    assert!(all.header("link").is_none());
    let page = r.get("/v2/repo/tags/list?n=2").await;
    assert_eq!(page.json()["tags"], serde_json::json!(["a", "b"]));
    assert_eq!(
        page.header("link"),
        Some("</v2/repo/tags/list?n=2&last=b>; rel=\"next\"")
    );
    let next = r.get("/v2/repo/tags/list?n=2&last=b").await;
    assert_eq!(next.json()["tags"], serde_json::json!(["c", "d"]));
    let last = r.get("/v2/repo/tags/list?n=2&last=d").await;
    assert_eq!(last.json()["tags"], serde_json::json!(["e"]));
    assert!(last.header("link").is_none());
    let zero = r.get("/v2/repo/tags/list?n=0").await;
    assert_eq!(zero.json()["tags"], serde_json::json!([]));
    let unknown = r.get("/v2/nope/tags/list").await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(unknown.code(), "NAME_UNKNOWN");
}

#[tokio::test]
async fn catalog_with_pagination() {
    let r = TestRegistry::new();
    for repo in ["zeta", "alpha/one", "alpha/one/two", "beta"] {
        r.push_blob(repo, repo.as_bytes()).await;
    }
    let all = r.get("/v2/_catalog").await;
    assert_eq!(
        all.json()["repositories"],
        serde_json::json!(["alpha/one", "alpha/one/two", "beta", "zeta"])
    );
    let page = r.get("/v2/_catalog?n=3").await;
    assert_eq!(
        page.json()["repositories"],
        serde_json::json!(["alpha/one", "alpha/one/two", "beta"])
    );
    assert_eq!(
        page.header("link"),
        Some("</v2/_catalog?n=3&last=beta>; rel=\"next\"")
    );
    let rest = r.get("/v2/_catalog?n=3&last=beta").await;
    assert_eq!(rest.json()["repositories"], serde_json::json!(["zeta"]));
}

#[tokio::test]
async fn deletes() {
    let r = TestRegistry::new();
    let (digest, body) = r.push_image("repo", "v1", &[b"layer"]).await;
    r.send(Method::PUT, "/v2/repo/manifests/v2", &[], body.clone())
        .await;
    // Deleting a tag leaves the manifest and its other tags.
    let del_tag = r
        .send(Method::DELETE, "/v2/repo/manifests/v2", &[], Body::empty())
        .await;
    assert_eq!(del_tag.status, StatusCode::ACCEPTED);
    assert_eq!(
        r.get("/v2/repo/manifests/v2").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(r.get("/v2/repo/manifests/v1").await.status, StatusCode::OK);
    // Deleting by digest removes it and its tags.
    let del = r
        .send(
            Method::DELETE,
            &format!("/v2/repo/manifests/{digest}"),
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(del.status, StatusCode::ACCEPTED);
    assert_eq!(
        r.get(&format!("/v2/repo/manifests/{digest}")).await.code(),
        "MANIFEST_UNKNOWN"
    );
    assert_eq!(
        r.get("/v2/repo/tags/list").await.json()["tags"],
        serde_json::json!([])
    );
    let again = r
        .send(
            Method::DELETE,
            &format!("/v2/repo/manifests/{digest}"),
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(again.code(), "MANIFEST_UNKNOWN");
    // Blobs.
    let layer = Digest::sha256(b"layer");
    let del_blob = r
        .send(
            Method::DELETE,
            &format!("/v2/repo/blobs/{layer}"),
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(del_blob.status, StatusCode::ACCEPTED);
    assert_eq!(
        r.get(&format!("/v2/repo/blobs/{layer}")).await.code(),
        "BLOB_UNKNOWN"
    );
    let again = r
        .send(
            Method::DELETE,
            &format!("/v2/repo/blobs/{layer}"),
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(again.code(), "BLOB_UNKNOWN");
}
