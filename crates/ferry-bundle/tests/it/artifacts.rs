//! Charts (a chart repository's index.yaml served over HTTP, an OCI
//! registry, a local .tgz) in Helm's OCI form, and files, Kubernetes
//! manifests and OS images as ORAS-style artifacts; downloads revalidated
//! and resumed.

use ferry_bundle::Bundle;
use ferry_bundle::create::CreateError;
use ferry_bundle::format::EntryKind;
use ferry_bundle::sources::SourceError;
use ferry_client::{MemorySource, PushOptions};
use ferry_oci::progress::NoProgress;
use ferry_oci::{Digest, ParsedManifest, media_type};
use serde_json::json;

use crate::support::{
    FileServer, Site, TestRegistry, chart_tgz, descriptor, random_bytes, requests,
};

fn manifest_of(bundle: &Bundle, index: usize) -> (ParsedManifest, serde_json::Value) {
    let entry = &bundle.manifest.entries[index];
    let bytes = bundle.read_blob(&entry.descriptor.digest).unwrap().unwrap();
    (
        ParsedManifest::parse(&bytes, Some(&entry.descriptor.media_type)).unwrap(),
        serde_json::from_slice(&bytes).unwrap(),
    )
}

fn blob_json(bundle: &Bundle, digest: &Digest) -> serde_json::Value {
    serde_json::from_slice(&bundle.read_blob(digest).unwrap().unwrap()).unwrap()
}

/// Pushes `tgz` to the registry as Helm would (`helm push`).
async fn push_oci_chart(registry: &TestRegistry, repo: &str, tgz: &[u8], version: &str) -> Digest {
    let repo = registry.repository(repo);
    let config =
        serde_json::to_vec(&json!({"apiVersion": "v2", "name": "db", "version": version})).unwrap();
    for blob in [&config[..], tgz] {
        repo.push_blob(
            &Digest::sha256(blob),
            &MemorySource::new(blob.to_vec()),
            &PushOptions::default(),
            &NoProgress,
        )
        .await
        .unwrap();
    }
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "config": descriptor(media_type::HELM_CONFIG, &config),
        "layers": [descriptor(media_type::HELM_CHART, tgz)],
    }))
    .unwrap();
    repo.put_manifest(version, media_type::OCI_MANIFEST, manifest.clone().into())
        .await
        .unwrap();
    Digest::sha256(&manifest)
}

#[tokio::test]
async fn charts_from_a_repository_a_registry_and_a_file() {
    let server = FileServer::start().await;
    let web_old = chart_tgz("web", "1.0.0", "1.0");
    let web = chart_tgz("web", "1.2.0+build.7", "1.0");
    server.put("/charts/web-1.0.0.tgz", web_old.clone());
    server.put("/charts/pkgs/web-1.2.0.tgz", web.clone());
    let index = format!(
        "apiVersion: v1\nentries:\n  web:\n    - name: web\n      version: 1.2.0+build.7\n      urls: [pkgs/web-1.2.0.tgz]\n      digest: {}\n    - name: web\n      version: 1.0.0\n      urls: [{}]\n      digest: {}\n",
        Digest::sha256(&web).hex(),
        server.url("/charts/web-1.0.0.tgz"),
        Digest::sha256(&web_old).hex()
    );
    server.put("/charts/index.yaml", index);

    let registry = TestRegistry::start().await;
    let db = chart_tgz("db", "0.5.0", "15");
    let db_manifest = push_oci_chart(&registry, "charts/db", &db, "0.5.0").await;

    let site = Site::new();
    let local = chart_tgz("local", "0.1.0", "2.3.4");
    site.write("charts/local-0.1.0.tgz", &local);
    let spec = format!(
        "{}charts:\n  - repo: {}/charts\n    name: web\n    version: 1.2.0+build.7\n  - oci: oci://{}/charts/db\n    version: 0.5.0\n  - path: charts/local-0.1.0.tgz\n    repository: platform/local\n",
        registry.hosts_yaml(),
        server.base,
        registry.host
    );
    site.create(&spec, "charts.ferry").await.unwrap();
    let bundle = Bundle::open(&site.path("charts.ferry")).unwrap();
    let e = &bundle.manifest.entries;
    assert!(e.iter().all(|e| e.kind == EntryKind::Chart));
    assert_eq!(
        (e[0].repository.as_str(), e[0].tag.as_deref()),
        ("charts/web", Some("1.2.0_build.7"))
    );
    assert_eq!(
        e[0].source,
        format!("{}/charts/index.yaml#web@1.2.0+build.7", server.base)
    );
    assert_eq!(
        (e[1].repository.as_str(), e[1].tag.as_deref()),
        ("charts/db", Some("0.5.0"))
    );
    assert_eq!(
        e[1].descriptor.digest, db_manifest,
        "an OCI chart is copied as it is"
    );
    assert_eq!(
        (e[2].repository.as_str(), e[2].tag.as_deref()),
        ("platform/local", Some("0.1.0"))
    );

    for (i, tgz, name, version, app) in [
        (0, &web, "web", "1.2.0+build.7", "1.0"),
        (2, &local, "local", "0.1.0", "2.3.4"),
    ] {
        let (parsed, raw) = manifest_of(&bundle, i);
        let config = parsed.config.unwrap();
        assert_eq!(config.media_type, media_type::HELM_CONFIG);
        let chart = blob_json(&bundle, &config.digest);
        assert_eq!(chart["name"], name);
        assert_eq!(chart["version"], version);
        // `appVersion: 1.0` is a number in YAML and a string for Helm.
        assert_eq!(chart["appVersion"], app);
        assert_eq!(chart["apiVersion"], "v2");
        assert_eq!(chart["keywords"], json!(["test"]));
        assert_eq!(parsed.layers.len(), 1);
        assert_eq!(parsed.layers[0].media_type, media_type::HELM_CHART);
        assert_eq!(parsed.layers[0].digest, Digest::sha256(tgz));
        assert_eq!(
            raw["annotations"]["org.opencontainers.image.version"],
            version
        );
    }

    // Again: index.yaml is revalidated (304), the chart is not fetched.
    server.log.take();
    registry.log.take();
    site.create(&spec, "again.ferry").await.unwrap();
    let seen = server.log.take();
    let summary: Vec<String> = seen
        .iter()
        .map(|s| format!("{} {} {}", s.method, s.path, s.status))
        .collect();
    assert_eq!(summary, vec!["GET /charts/index.yaml 304"], "{summary:?}");
    assert!(registry.log.take().iter().all(|s| s.method == "HEAD"));
    assert_eq!(
        std::fs::read(site.path("charts.ferry")).unwrap(),
        std::fs::read(site.path("again.ferry")).unwrap()
    );

    // A version the repository does not have; a chart that is not what
    // index.yaml says.
    let spec = format!(
        "charts:\n  - repo: {}/charts\n    name: web\n    version: 9.9.9\n",
        server.base
    );
    let err = site.create(&spec, "x.ferry").await.unwrap_err().to_string();
    assert!(
        err.contains("no version 9.9.9 of web") && err.contains("1.2.0+build.7, 1.0.0"),
        "{err}"
    );
    server.put(
        "/charts/web-1.0.0.tgz",
        chart_tgz("web", "1.0.0", "tampered"),
    );
    let fresh = Site::new();
    let spec = format!(
        "charts:\n  - repo: {}/charts\n    name: web\n    version: 1.0.0\n",
        server.base
    );
    let err = fresh.create(&spec, "x.ferry").await.unwrap_err();
    assert!(
        matches!(&err, CreateError::Source { source, .. } if matches!(**source, SourceError::Checksum { .. })),
        "{err}"
    );
    // A local file that is not a chart.
    site.write("charts/bogus.tgz", b"not a chart");
    let err = site
        .create("charts:\n  - path: charts/bogus.tgz\n", "x.ferry")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("not a packaged chart"), "{err}");
}

#[tokio::test]
async fn files_manifests_and_os_images_are_artifacts() {
    let server = FileServer::start().await;
    let tool = random_bytes(5, 300_000);
    let notes = b"release notes\n".to_vec();
    server.put("/dl/v1.2%2B3/tool", tool.clone());
    server.put("/dl/notes.txt", notes.clone());
    let site = Site::new();
    let bin = random_bytes(6, 10_000);
    site.write("tools/helper.bin", &bin);
    site.write(
        "k8s/a.yaml",
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n",
    );
    site.write(
        "k8s/sub/b.yml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\n",
    );
    site.write("k8s/c.json", "{\"apiVersion\":\"v1\",\"kind\":\"Secret\"}");
    site.write("k8s/README.md", "not a manifest");
    let iso = random_bytes(7, 70_000);
    site.write("isos/Rocky-9.iso", &iso);
    let spec = format!(
        "files:\n  - tools/helper.bin\n  - url: {}\n    sha256: {}\n    repository: files/tool\n    tag: v1.2\n  - url: {}\n    media_type: text/plain\nmanifests:\n  - k8s\nos_images:\n  - path: isos/Rocky-9.iso\n    sha256: {}\n",
        server.url("/dl/v1.2%2B3/tool"),
        Digest::sha256(&tool).hex(),
        server.url("/dl/notes.txt"),
        Digest::sha256(&iso).hex(),
    );
    site.create(&spec, "files.ferry").await.unwrap();
    let bundle = Bundle::open(&site.path("files.ferry")).unwrap();
    let e = &bundle.manifest.entries;
    let expect = [
        (
            EntryKind::File,
            "files/helper.bin",
            "latest",
            "helper.bin",
            "application/octet-stream",
            &bin,
        ),
        (
            EntryKind::File,
            "files/tool",
            "v1.2",
            "tool",
            "application/octet-stream",
            &tool,
        ),
        (
            EntryKind::File,
            "files/notes.txt",
            "latest",
            "notes.txt",
            "text/plain",
            &notes,
        ),
        (
            EntryKind::OsImage,
            "os/rocky-9.iso",
            "latest",
            "Rocky-9.iso",
            "application/x-iso9660-image",
            &iso,
        ),
    ];
    let order = [0, 1, 2, 4];
    for ((kind, repo, tag, title, media, data), i) in expect.iter().zip(order) {
        let entry = &e[i];
        assert_eq!(
            (entry.kind, entry.repository.as_str(), entry.tag.as_deref()),
            (*kind, *repo, Some(*tag))
        );
        let (parsed, raw) = manifest_of(&bundle, i);
        let artifact_type = if *kind == EntryKind::OsImage {
            "application/vnd.ferry.os-image.v1"
        } else {
            "application/vnd.ferry.file.v1"
        };
        assert_eq!(raw["artifactType"], artifact_type);
        assert_eq!(
            entry.descriptor.artifact_type.as_deref(),
            Some(artifact_type)
        );
        let config = parsed.config.unwrap();
        assert_eq!(config.media_type, media_type::OCI_EMPTY);
        assert_eq!(bundle.read_blob(&config.digest).unwrap().unwrap(), b"{}");
        assert_eq!(parsed.layers.len(), 1);
        let layer = &parsed.layers[0];
        assert_eq!(layer.annotation(media_type::ANNOTATION_TITLE), Some(*title));
        assert_eq!(layer.media_type, *media);
        assert_eq!(&bundle.read_blob(&layer.digest).unwrap().unwrap(), *data);
    }
    let manifests = &e[3];
    assert_eq!(
        (manifests.kind, manifests.repository.as_str()),
        (EntryKind::Manifests, "manifests/k8s")
    );
    let (parsed, raw) = manifest_of(&bundle, 3);
    assert_eq!(raw["artifactType"], "application/vnd.ferry.manifests.v1");
    let layers: Vec<(&str, &str)> = parsed
        .layers
        .iter()
        .map(|l| {
            (
                l.annotation(media_type::ANNOTATION_TITLE).unwrap(),
                l.media_type.as_str(),
            )
        })
        .collect();
    assert_eq!(
        layers,
        vec![
            ("a.yaml", "application/yaml"),
            ("c.json", "application/json"),
            ("sub/b.yml", "application/yaml")
        ]
    );

    // Again: the file with a sha256 is not requested at all; the other
    // is revalidated.
    server.log.take();
    site.create(&spec, "again.ferry").await.unwrap();
    let summary: Vec<String> = server
        .log
        .take()
        .iter()
        .map(|s| format!("{} {} {}", s.method, s.path, s.status))
        .collect();
    assert_eq!(summary, vec!["GET /dl/notes.txt 304"]);

    // Content that is not what the spec says is refused.
    let fresh = Site::new();
    let spec = format!(
        "files:\n  - url: {}\n    sha256: {}\n",
        server.url("/dl/notes.txt"),
        Digest::sha256(b"something else").hex()
    );
    let err = fresh
        .create(&spec, "x.ferry")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&Digest::sha256(b"something else").to_string())
            && err.contains(&Digest::sha256(&notes).to_string()),
        "{err}"
    );
    let err = fresh
        .create(
            &format!("files:\n  - {}\n", server.url("/dl/missing")),
            "x.ferry",
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("404") && err.contains("check the URL"),
        "{err}"
    );
    let err = fresh
        .create("manifests:\n  - path: k8s\n", "x.ferry")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("k8s") && err.contains("No such file"), "{err}");
}

#[tokio::test]
async fn a_cut_download_resumes_where_it_stopped() {
    let server = FileServer::start().await;
    let big = random_bytes(9, 3 * 1024 * 1024);
    server.put("/big.img", big.clone());
    server.cut_once("/big.img", 1024 * 1024 + 17);
    let site = Site::new();
    let spec = format!("files:\n  - {}\n", server.url("/big.img"));
    site.create(&spec, "big.ferry").await.unwrap();
    let seen = server.log.take();
    let summary: Vec<String> = requests(&seen, "/big.img")
        .into_iter()
        .zip(&seen)
        .map(|(r, s)| format!("{r} {}", s.status))
        .collect();
    assert_eq!(
        summary,
        vec!["GET /big.img 200", "GET /big.img 206"],
        "{summary:?}"
    );
    let bundle = Bundle::open(&site.path("big.ferry")).unwrap();
    let (parsed, _) = manifest_of(&bundle, 0);
    assert_eq!(
        bundle.read_blob(&parsed.layers[0].digest).unwrap().unwrap(),
        big
    );
}
