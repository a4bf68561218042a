//! Whole bundles as other tools see them: skopeo reads one as an
//! `oci-archive`, minisign checks its signature; delta bundles leave out
//! (and do not download) what their base carries; split and
//! self-extracting output opens like a single file.

use std::collections::BTreeSet;
use std::process::Command;

use ferry_bundle::Bundle;
use ferry_bundle::create::CreateOptions;
use ferry_bundle::sign::{self, SecretKey, SignError};
use ferry_bundle::writer::WriteOptions;
use ferry_oci::{Digest, media_type};

use crate::support::{
    Site, TestImage, TestRegistry, index, layer_tar, random_bytes, run, run_async,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skopeo_reads_the_bundle_as_an_oci_archive() {
    let registry = TestRegistry::start().await;
    let repo = registry.repository("library/app");
    let amd = TestImage::new(40, &[30_000], "linux", "amd64");
    let arm = TestImage::new(41, &[20_000], "linux", "arm64");
    amd.push(&repo, None).await;
    arm.push(&repo, None).await;
    let idx = index(&[&amd, &arm]);
    repo.put_manifest("1.0", media_type::OCI_INDEX, idx.clone())
        .await
        .unwrap();
    let solo = TestImage::new(42, &[10_000], "linux", "amd64");
    solo.push(&registry.repository("tools/solo"), Some("2"))
        .await;

    let site = Site::new();
    let spec = format!(
        "{}images:\n  - {h}/library/app:1.0\n  - {h}/tools/solo:2\n",
        registry.hosts_yaml(),
        h = registry.host
    );
    site.create(&spec, "site.ferry").await.unwrap();
    let host = registry.host.clone();
    drop(registry);
    let bundle = site.path("site.ferry");
    let out = site.path("out");
    for (source, digest) in [
        (format!("{host}/library/app:1.0"), Digest::sha256(&idx)),
        (format!("{host}/tools/solo:2"), solo.digest.clone()),
    ] {
        let raw = run_async(
            "skopeo",
            &[
                "inspect",
                "--raw",
                &format!("oci-archive:{}:{source}", bundle.display()),
            ],
        )
        .await;
        assert_eq!(Digest::sha256(raw.as_bytes()), digest, "{source}");
        run_async(
            "skopeo",
            &[
                "copy",
                "--all",
                "--preserve-digests",
                &format!("oci-archive:{}:{source}", bundle.display()),
                &format!("oci:{}:copied", out.display()),
            ],
        )
        .await;
        let index: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join("index.json")).unwrap()).unwrap();
        let copied = index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == "copied")
            .unwrap();
        assert_eq!(copied["digest"], digest.to_string());
    }
    // Every blob of the multi-arch image made it across.
    for blob in amd.blobs().chain(arm.blobs()) {
        assert!(
            out.join("blobs/sha256")
                .join(Digest::sha256(blob).hex())
                .exists()
        );
    }
}

#[tokio::test]
async fn delta_bundles_leave_out_and_do_not_fetch_what_the_base_has() {
    let registry = TestRegistry::start().await;
    let shared = layer_tar("shared", &random_bytes(50, 80_000));
    let a = TestImage::with_shared(
        51,
        std::slice::from_ref(&shared),
        &[20_000],
        "linux",
        "amd64",
    );
    let b = TestImage::with_shared(
        52,
        std::slice::from_ref(&shared),
        &[15_000],
        "linux",
        "amd64",
    );
    let c = TestImage::new(53, &[5_000], "linux", "amd64");
    a.push(&registry.repository("apps/a"), Some("1")).await;
    b.push(&registry.repository("apps/b"), Some("1")).await;
    c.push(&registry.repository("apps/c"), Some("1")).await;
    let h = registry.host.clone();
    let site = Site::new();
    let base_spec = format!("{}images:\n  - {h}/apps/a:1\n", registry.hosts_yaml());
    site.create(&base_spec, "base.ferry").await.unwrap();
    let base = Bundle::open(&site.path("base.ferry")).unwrap();

    // The delta is made elsewhere, from an empty cache and the base file.
    let elsewhere = Site::new();
    std::fs::copy(site.path("base.ferry"), elsewhere.path("base.ferry")).unwrap();
    registry.log.take();
    let delta_spec = format!(
        "{}images:\n  - {h}/apps/a:1\n  - {h}/apps/b:1\n",
        registry.hosts_yaml()
    );
    let options = CreateOptions {
        since: Some(elsewhere.path("base.ferry")),
        ..CreateOptions::default()
    };
    let report = elsewhere
        .create_with(&delta_spec, "delta.ferry", options, WriteOptions::default())
        .await
        .unwrap();
    let fetched: BTreeSet<String> = registry
        .log
        .take()
        .iter()
        .filter(|s| s.method == "GET" && s.path.contains("/blobs/"))
        .map(|s| s.path.rsplit('/').next().unwrap().to_string())
        .collect();
    let digests = |img: &TestImage| -> BTreeSet<String> {
        img.blobs().map(|b| Digest::sha256(b).to_string()).collect()
    };
    assert!(
        fetched.is_disjoint(&digests(&a)),
        "fetched a blob the base has: {fetched:?}"
    );
    assert_eq!(
        fetched,
        digests(&b).difference(&digests(&a)).cloned().collect()
    );
    assert_eq!(report.fetch.blobs_in_base, 3);

    let delta = Bundle::open(&elsewhere.path("delta.ferry")).unwrap();
    let recorded = delta.manifest.base.as_ref().unwrap();
    assert_eq!(
        recorded.manifest_digest,
        Digest::sha256(&base.manifest_bytes)
    );
    assert_eq!(recorded.name, "base.ferry");
    assert_eq!(delta.manifest.entries.len(), 2);
    let in_delta: BTreeSet<String> = delta
        .manifest
        .blobs
        .iter()
        .map(|b| b.digest.to_string())
        .collect();
    let in_base: BTreeSet<String> = delta
        .manifest
        .base_blobs
        .iter()
        .map(|b| b.digest.to_string())
        .collect();
    // a's config and layers (the shared one included) are left out; its
    // manifest stays, so the delta can be walked on its own.
    assert_eq!(in_base, digests(&a));
    let mut expected = digests(&b)
        .difference(&digests(&a))
        .cloned()
        .collect::<BTreeSet<_>>();
    expected.insert(b.digest.to_string());
    expected.insert(a.digest.to_string());
    assert_eq!(in_delta, expected);
    for record in &delta.manifest.base_blobs {
        assert!(delta.blob(&record.digest).is_none());
    }

    // A delta of the delta also omits what the first base carried.
    let options = CreateOptions {
        since: Some(elsewhere.path("delta.ferry")),
        ..CreateOptions::default()
    };
    let spec = format!(
        "{}images:\n  - {h}/apps/a:1\n  - {h}/apps/b:1\n  - {h}/apps/c:1\n",
        registry.hosts_yaml()
    );
    elsewhere
        .create_with(&spec, "delta2.ferry", options, WriteOptions::default())
        .await
        .unwrap();
    let delta2 = Bundle::open(&elsewhere.path("delta2.ferry")).unwrap();
    let blobs: BTreeSet<String> = delta2
        .manifest
        .blobs
        .iter()
        .map(|b| b.digest.to_string())
        .collect();
    let mut expected = digests(&c);
    expected.extend([
        a.digest.to_string(),
        b.digest.to_string(),
        c.digest.to_string(),
    ]);
    assert_eq!(blobs, expected);
    // All of the first delta's blobs but the two manifests it repeats.
    assert_eq!(
        delta2.manifest.base_blobs.len(),
        in_base.len() + in_delta.len() - 2
    );

    let err = site
        .create_with(
            &delta_spec,
            "x.ferry",
            CreateOptions {
                since: Some(site.path("nope.ferry")),
                ..CreateOptions::default()
            },
            WriteOptions::default(),
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("--since") && err.contains("nope.ferry"),
        "{err}"
    );
}

#[tokio::test]
async fn signed_bundles_verify_with_ferry_and_minisign() {
    let registry = TestRegistry::start().await;
    let image = TestImage::new(60, &[12_000], "linux", "amd64");
    image
        .push(&registry.repository("apps/signed"), Some("1"))
        .await;
    let site = Site::new();
    let key = sign::keygen(&site.path("site")).unwrap();
    let spec = format!(
        "{}images:\n  - {}/apps/signed:1\n",
        registry.hosts_yaml(),
        registry.host
    );
    let signed = |out: &'static str| {
        let key = SecretKey::load(&key.secret).unwrap();
        let site = &site;
        let spec = spec.clone();
        async move {
            let write = WriteOptions {
                signer: Some(sign::signer(key)),
                ..WriteOptions::default()
            };
            site.create_with(&spec, out, CreateOptions::default(), write)
                .await
                .unwrap();
        }
    };
    signed("signed.ferry").await;
    signed("again.ferry").await;
    assert_eq!(
        std::fs::read(site.path("signed.ferry")).unwrap(),
        std::fs::read(site.path("again.ferry")).unwrap(),
        "signatures are deterministic"
    );
    let bundle = Bundle::open(&site.path("signed.ferry")).unwrap();
    let signature = bundle.signature.clone().expect("ferry/signature");
    let public = key.public.to_str().unwrap();
    let verified = sign::verify_signature(public, &bundle.manifest_bytes, &signature).unwrap();
    assert_eq!(verified.key_id, key.key_id);

    // Debian's minisign agrees, straight from `tar xf`.
    let x = site.path("x");
    std::fs::create_dir(&x).unwrap();
    run(Command::new("tar")
        .arg("xf")
        .arg(site.path("signed.ferry"))
        .args([
            "-C",
            x.to_str().unwrap(),
            "ferry/bundle.json",
            "ferry/signature",
        ]));
    let minisign = |pubkey: &str| {
        Command::new("minisign")
            .current_dir(&x)
            .args([
                "-Vm",
                "ferry/bundle.json",
                "-x",
                "ferry/signature",
                "-p",
                pubkey,
            ])
            .output()
            .expect("minisign runs (Debian package minisign)")
    };
    let out = minisign(public);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("digest:sha256:"));

    // A key made by minisign itself (-W: no password) signs for ferry.
    let mkey = site.path("m.key");
    let mpub = site.path("m.pub");
    run(Command::new("minisign").args([
        "-G",
        "-W",
        "-s",
        mkey.to_str().unwrap(),
        "-p",
        mpub.to_str().unwrap(),
    ]));
    let theirs = SecretKey::load(&mkey).unwrap();
    let sig = theirs.sign(
        &bundle.manifest_bytes,
        &sign::trusted_comment(&bundle.manifest_bytes),
    );
    sign::verify_signature(mpub.to_str().unwrap(), &bundle.manifest_bytes, &sig).unwrap();

    // Another key, an altered manifest: refused by both.
    assert!(matches!(
        sign::verify_signature(mpub.to_str().unwrap(), &bundle.manifest_bytes, &signature),
        Err(SignError::WrongKey { .. })
    ));
    assert!(!minisign(mpub.to_str().unwrap()).status.success());
    let mut altered = bundle.manifest_bytes.clone();
    let at = altered.iter().position(|&b| b == b'1').unwrap();
    altered[at] = b'2';
    assert!(matches!(
        sign::verify_signature(public, &altered, &signature),
        Err(SignError::BadSignature)
    ));
    std::fs::write(x.join("ferry/bundle.json"), &altered).unwrap();
    assert!(!minisign(public).status.success());

    // A password-protected key is refused with a message saying so.
    let text = std::fs::read_to_string(&key.secret).unwrap();
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let line = text.lines().nth(1).unwrap();
    let mut raw = b64.decode(line).unwrap();
    raw[2..4].copy_from_slice(b"Sc");
    let locked = site.write(
        "locked.key",
        format!("untrusted comment: x\n{}\n", b64.encode(&raw)),
    );
    let err = SecretKey::load(&locked).err().unwrap().to_string();
    assert!(err.contains("password") && err.contains("-W"), "{err}");
}

#[tokio::test]
async fn split_and_self_extracting_output_open_like_one_file() {
    let site = Site::new();
    let big = random_bytes(70, 3 * 1024 * 1024);
    site.write("files/big.bin", &big);
    let spec = "files:\n  - files/big.bin\n";
    site.create(spec, "whole.ferry").await.unwrap();
    let split = WriteOptions {
        split: Some(1024 * 1024),
        ..WriteOptions::default()
    };
    let report = site
        .create_with(spec, "split.ferry", CreateOptions::default(), split)
        .await
        .unwrap();
    assert_eq!(report.write.files.len(), 4);
    let mut joined = Vec::new();
    for f in &report.write.files {
        joined.extend(std::fs::read(f).unwrap());
    }
    assert_eq!(joined, std::fs::read(site.path("whole.ferry")).unwrap());
    let bundle = Bundle::open(&site.path("split.ferry")).unwrap();
    assert_eq!(bundle.manifest.entries.len(), 1);

    let runner = WriteOptions {
        self_extracting: Some(std::env::current_exe().unwrap()),
        ..WriteOptions::default()
    };
    site.create_with(spec, "site.run", CreateOptions::default(), runner)
        .await
        .unwrap();
    let bundle = Bundle::open(&site.path("site.run")).unwrap();
    let whole = Bundle::open(&site.path("whole.ferry")).unwrap();
    assert_eq!(bundle.manifest_bytes, whole.manifest_bytes);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(site.path("site.run"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o111, 0o111, "self-extracting output is executable");
}
