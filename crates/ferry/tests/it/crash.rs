//! SIGKILL `ferry serve` while 20 clients upload in chunks: after a
//! restart fsck finds nothing corrupt or dangling, and every client
//! completes by resuming its session from the offset the server reports.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use ferry_oci::Digest;

use crate::images::bytes;
use crate::{Server, ferry, run};

const CLIENTS: usize = 20;
const BLOB: usize = 6 * 1024 * 1024;
const CHUNK: usize = 128 * 1024;

fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder().build().unwrap()
}

/// Uploads `data` in chunks into session `location` from the server's
/// current offset, then commits. Counts PATCHes in `patches`.
async fn upload_from_offset(
    http: &reqwest::Client,
    base: &str,
    location: &str,
    data: &[u8],
    patches: &AtomicUsize,
) -> Result<(), String> {
    let url = format!("{base}{location}");
    let status = http.get(&url).send().await.map_err(|e| e.to_string())?;
    if status.status().as_u16() != 204 {
        return Err(format!("status {}", status.status()));
    }
    let range = status.headers()["range"].to_str().unwrap().to_string();
    let end: usize = range.split('-').nth(1).unwrap().parse().unwrap();
    // "0-0" is ambiguous (nothing, or one byte): a chunk from 0 answers with 416 if wrong.
    let mut offset = if end == 0 { 0 } else { end + 1 };
    while offset < data.len() {
        let stop = (offset + CHUNK).min(data.len());
        let reply = http
            .patch(&url)
            .header("content-range", format!("{}-{}", offset, stop - 1))
            .header("content-type", "application/octet-stream")
            .body(data[offset..stop].to_vec())
            .send()
            .await
            .map_err(|e| e.to_string())?;
        match reply.status().as_u16() {
            202 => offset = stop,
            416 if offset == 0 => offset = 1,
            s => return Err(format!("PATCH got {s}")),
        }
        patches.fetch_add(1, Ordering::SeqCst);
    }
    let digest = Digest::sha256(data);
    let reply = http
        .put(format!("{url}?digest={digest}"))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if reply.status().as_u16() == 201 {
        Ok(())
    } else {
        Err(format!("PUT got {}", reply.status()))
    }
}

fn fsck_is_clean(state: &std::path::Path) {
    let out = run(ferry()
        .args(["registry", "fsck", "--json", "--state"])
        .arg(state));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "fsck failed: {text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert!(
        report["corrupt_blobs"].as_array().unwrap().is_empty(),
        "{text}"
    );
    assert!(report["problems"].as_array().unwrap().is_empty(), "{text}");
}

#[test]
fn sigkill_during_concurrent_chunked_uploads() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let mut server = Server::start(&state, &[]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let blobs: Vec<Arc<Vec<u8>>> = (0..CLIENTS)
        .map(|i| Arc::new(bytes(100 + i as u64, BLOB)))
        .collect();
    let patches = Arc::new(AtomicUsize::new(0));
    let http = client();

    let locations: Vec<String> = rt.block_on(async {
        let mut locations = Vec::new();
        for i in 0..CLIENTS {
            let reply = http
                .post(format!(
                    "http://{}/v2/crash/c{i}/blobs/uploads/",
                    server.addr
                ))
                .send()
                .await
                .unwrap();
            assert_eq!(reply.status().as_u16(), 202);
            locations.push(reply.headers()["location"].to_str().unwrap().to_string());
        }
        locations
    });
    let base = format!("http://{}", server.addr);
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let (http, base, location) = (http.clone(), base.clone(), locations[i].clone());
            let (data, patches) = (blobs[i].clone(), patches.clone());
            rt.spawn(
                async move { upload_from_offset(&http, &base, &location, &data, &patches).await },
            )
        })
        .collect();
    // Kill once every client is well under way, and none can have finished.
    rt.block_on(async {
        while patches.load(Ordering::SeqCst) < CLIENTS * 4 {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    });
    server.kill();
    let first_run: Vec<Result<(), String>> = rt.block_on(async {
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    });
    assert!(
        first_run.iter().any(|r| r.is_err()),
        "the kill interrupted uploads"
    );

    let server = Server::start(&state, &[]);
    fsck_is_clean(&state);
    let base = format!("http://{}", server.addr);
    rt.block_on(async {
        for i in 0..CLIENTS {
            let digest = Digest::sha256(&blobs[i]);
            let blob_url = format!("{base}/v2/crash/c{i}/blobs/{digest}");
            if http.head(&blob_url).send().await.unwrap().status().as_u16() != 200 {
                upload_from_offset(&http, &base, &locations[i], &blobs[i], &patches)
                    .await
                    .unwrap_or_else(|e| panic!("client {i} could not resume: {e}"));
            }
            let got = http
                .get(&blob_url)
                .send()
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap();
            assert!(got[..] == blobs[i][..], "client {i}: content differs");
        }
    });
    fsck_is_clean(&state);
}
