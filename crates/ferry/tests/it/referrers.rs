//! Signatures, SBOMs and attestations travel with their image: a source
//! registry holds a multi-arch image with an OCI 1.1 referrer on its index,
//! another on one platform's manifest, and a cosign-style `.sig` tag;
//! `referrers: true` carries all three; `bundle serve` and `bundle import`
//! list them, and the push makes them findable in ferry's registry
//! (referrers API) and in Distribution 2.8 (no API: the referrers tag
//! schema's index).

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use ferry_oci::{Digest, media_type};

use crate::bundle::Distribution;
use crate::images::standard;
use crate::{Server, ferry, ok};

const SIGNATURE_TYPE: &str = "application/vnd.example.signature.v1";
const SBOM_TYPE: &str = "application/spdx+json";

/// Plain HTTP to a registry on loopback, as a test client.
struct Registry {
    base: String,
    http: reqwest::Client,
    runtime: tokio::runtime::Runtime,
}

impl Registry {
    fn new(addr: &str) -> Registry {
        let _ = rustls::crypto::ring::default_provider().install_default();
        Registry {
            base: format!("http://{addr}"),
            http: reqwest::Client::new(),
            runtime: tokio::runtime::Runtime::new().unwrap(),
        }
    }

    /// Uploads a blob (monolithic POST) and returns its descriptor.
    fn blob(&self, repo: &str, media: &str, data: &[u8]) -> serde_json::Value {
        let digest = Digest::sha256(data);
        let url = format!("{}/v2/{repo}/blobs/uploads/?digest={digest}", self.base);
        let status = self.runtime.block_on(async {
            self.http
                .post(url)
                .header("content-type", "application/octet-stream")
                .body(data.to_vec())
                .send()
                .await
                .unwrap()
                .status()
        });
        assert_eq!(status.as_u16(), 201);
        serde_json::json!({"mediaType": media, "digest": digest.to_string(), "size": data.len()})
    }

    /// PUTs a manifest under `reference` and returns its digest.
    fn put_manifest(&self, repo: &str, reference: &str, manifest: &serde_json::Value) -> Digest {
        let body = serde_json::to_vec(manifest).unwrap();
        let url = format!("{}/v2/{repo}/manifests/{reference}", self.base);
        let status = self.runtime.block_on(async {
            self.http
                .put(url)
                .header("content-type", media_type::OCI_MANIFEST)
                .body(body.clone())
                .send()
                .await
                .unwrap()
                .status()
        });
        assert_eq!(status.as_u16(), 201, "PUT {repo}:{reference}");
        Digest::sha256(&body)
    }

    /// GETs `path` under `/v2/`: status and body.
    fn get(&self, path: &str, accept: &str) -> (u16, Vec<u8>) {
        let url = format!("{}/v2/{path}", self.base);
        self.runtime.block_on(async {
            let r = self
                .http
                .get(url)
                .header("accept", accept)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.bytes().await.unwrap().to_vec())
        })
    }

    /// The manifest a reference resolves to: its digest and bytes.
    fn manifest(&self, repo: &str, reference: &str) -> Option<(Digest, Vec<u8>)> {
        let accept = format!("{}, {}", media_type::OCI_MANIFEST, media_type::OCI_INDEX);
        let (status, body) = self.get(&format!("{repo}/manifests/{reference}"), &accept);
        (status == 200).then(|| (Digest::sha256(&body), body))
    }

    /// Digests listed by the referrers API for `subject`.
    fn referrers(&self, repo: &str, subject: &Digest) -> Vec<String> {
        let (status, body) = self.get(
            &format!("{repo}/referrers/{subject}"),
            media_type::OCI_INDEX,
        );
        assert_eq!(status, 200);
        listed(&body)
    }
}

fn listed(index: &[u8]) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_slice(index).unwrap();
    v["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["digest"].as_str().unwrap().to_string())
        .collect()
}

/// An OCI 1.1 artifact manifest about `subject`.
fn referrer(reg: &Registry, repo: &str, kind: &str, subject: &serde_json::Value) -> Digest {
    let empty = reg.blob(repo, "application/vnd.oci.empty.v1+json", b"{}");
    let layer = reg.blob(
        repo,
        kind,
        format!("{kind} of {}", subject["digest"]).as_bytes(),
    );
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_MANIFEST,
        "artifactType": kind,
        "config": empty,
        "layers": [layer],
        "subject": subject,
    });
    let digest = Digest::sha256(&serde_json::to_vec(&manifest).unwrap());
    reg.put_manifest(repo, &digest.to_string(), &manifest)
}

#[test]
fn signatures_and_sboms_travel_with_their_image() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let source = Server::start(&dir.join("source-state"), &[]);
    standard(&dir.join("src"));
    ok(ferry()
        .args(["copy", "-q", "--insecure", "--state"])
        .arg(dir.join("copy-state"))
        .arg(format!("oci:{}:multi", dir.join("src").display()))
        .arg(format!("docker://{}/team/app:v1", source.addr)));
    let src = Registry::new(&source.addr);
    let (index_digest, index) = src.manifest("team/app", "v1").unwrap();
    let index_json: serde_json::Value = serde_json::from_slice(&index).unwrap();
    let child = index_json["manifests"][0].clone();
    let child_digest: Digest = child["digest"].as_str().unwrap().parse().unwrap();
    let subject = serde_json::json!({"mediaType": media_type::OCI_INDEX, "digest": index_digest.to_string(), "size": index.len()});
    let signature = referrer(&src, "team/app", SIGNATURE_TYPE, &subject);
    let sbom = referrer(&src, "team/app", SBOM_TYPE, &child);
    // cosign's own convention: a tag named after the signed digest.
    let cosign_tag = format!("sha256-{}.sig", index_digest.hex());
    let payload = src.blob(
        "team/app",
        "application/vnd.dev.cosign.simplesigning.v1+json",
        b"{\"critical\":{}}",
    );
    let empty_config = src.blob("team/app", media_type::OCI_CONFIG, b"{}");
    let cosign = src.put_manifest(
        "team/app",
        &cosign_tag,
        &serde_json::json!({"schemaVersion": 2, "mediaType": media_type::OCI_MANIFEST, "config": empty_config, "layers": [payload]}),
    );
    assert_eq!(
        src.referrers("team/app", &index_digest),
        vec![signature.to_string()]
    );

    std::fs::write(
        dir.join("ferry.yaml"),
        format!(
            "referrers: true\nimages:\n  - {}/team/app:v1\n",
            source.addr
        ),
    )
    .unwrap();
    ok(ferry().current_dir(dir).args([
        "bundle",
        "create",
        "-q",
        "--state",
        "state",
        "-o",
        "site.ferry",
        "--plain-http",
        &source.addr,
    ]));
    let inspect: serde_json::Value = serde_json::from_str(&ok(ferry().current_dir(dir).args([
        "bundle",
        "inspect",
        "--json",
        "site.ferry",
    ])))
    .unwrap();
    let kinds: Vec<&str> = inspect["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["image", "referrer", "referrer", "referrer"],
        "{inspect}"
    );
    ok(ferry()
        .current_dir(dir)
        .args(["bundle", "verify", "site.ferry"]));

    // Served straight from the bundle: the referrers API answers too.
    let mut serve = ferry()
        .current_dir(dir)
        .args(["bundle", "serve", "--listen", "127.0.0.1:0", "site.ferry"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut banner = String::new();
    let mut stdout = BufReader::new(serve.stdout.take().unwrap());
    stdout.read_line(&mut banner).unwrap();
    // Keep reading: the server prints its entries after the banner.
    std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
    let addr = banner
        .strip_prefix("ferry registry on http://")
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("unexpected banner {banner:?}"))
        .to_string();
    let served = Registry::new(&addr);
    assert_eq!(
        served.referrers("team/app", &index_digest),
        vec![signature.to_string()]
    );
    let (status, body) = served.get(
        &format!("team/app/referrers/{child_digest}?artifactType={SIGNATURE_TYPE}"),
        media_type::OCI_INDEX,
    );
    assert_eq!((status, listed(&body)), (200, vec![]), "filtered out");
    let _ = serve.kill();
    let _ = serve.wait();

    // `ferry bundle push site.ferry --to ADDR/site`.
    let push_to = |addr: &str| {
        ok(ferry().current_dir(dir).args([
            "bundle",
            "push",
            "-q",
            "--insecure",
            "--state",
            "push-state",
            "--to",
            &format!("{addr}/site"),
            "site.ferry",
        ]));
    };

    // Into ferry's registry: the referrers API lists them.
    let target = Server::start(&dir.join("target-state"), &[]);
    push_to(&target.addr);
    let t = Registry::new(&target.addr);
    assert_eq!(
        t.referrers("site/team/app", &index_digest),
        vec![signature.to_string()]
    );
    assert_eq!(
        t.referrers("site/team/app", &child_digest),
        vec![sbom.to_string()]
    );
    assert_eq!(t.manifest("site/team/app", &cosign_tag).unwrap().0, cosign);

    // Imported into ferry's store without HTTP: the same answers.
    ok(ferry().current_dir(dir).args([
        "bundle",
        "import",
        "-q",
        "--state",
        "imported",
        "site.ferry",
    ]));
    let imported = Server::start(&dir.join("imported"), &[]);
    let i = Registry::new(&imported.addr);
    assert_eq!(
        i.referrers("team/app", &index_digest),
        vec![signature.to_string()]
    );
    assert_eq!(i.manifest("team/app", &cosign_tag).unwrap().0, cosign);

    // Into Distribution 2.8 (no referrers API): the tag schema's index.
    let distribution = Distribution::start();
    push_to(&distribution.addr);
    let d = Registry::new(&distribution.addr);
    let fallback = |subject: &Digest| {
        let (_, body) = d
            .manifest("site/team/app", &format!("sha256-{}", subject.hex()))
            .unwrap_or_else(|| panic!("no referrers tag for {subject}"));
        listed(&body)
    };
    assert_eq!(fallback(&index_digest), vec![signature.to_string()]);
    assert_eq!(fallback(&child_digest), vec![sbom.to_string()]);
    assert_eq!(d.manifest("site/team/app", &cosign_tag).unwrap().0, cosign);
}
