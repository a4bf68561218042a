//! `ferry serve --netboot` whose `oci:` boot source is not in the registry
//! yet: the registry stays up (so the artifact can be pushed into it), the
//! profile is reported not ready, a host that boots meanwhile is told to
//! retry, and once the artifact is pushed its files are served. No QEMU:
//! the host is played by HTTP requests to netboot's iPXE endpoints.

use ferry_oci::{Digest, media_type};

use crate::Server;

const MAC: &str = "52-54-00-12-34-56";

struct Http {
    rt: tokio::runtime::Runtime,
    client: reqwest::Client,
}

impl Http {
    fn new() -> Http {
        let _ = rustls::crypto::ring::default_provider().install_default();
        Http {
            rt: tokio::runtime::Runtime::new().unwrap(),
            client: reqwest::Client::new(),
        }
    }

    fn send(&self, request: reqwest::RequestBuilder) -> (u16, Vec<u8>) {
        self.rt.block_on(async {
            let reply = request.send().await.unwrap();
            (
                reply.status().as_u16(),
                reply.bytes().await.unwrap().to_vec(),
            )
        })
    }

    fn get(&self, url: &str) -> (u16, String) {
        let (status, body) = self.send(self.client.get(url));
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    /// Pushes `data` as a blob of `repo`; returns its descriptor.
    fn blob(&self, registry: &str, repo: &str, media: &str, data: &[u8]) -> serde_json::Value {
        let digest = Digest::sha256(data);
        let url = format!("http://{registry}/v2/{repo}/blobs/uploads/?digest={digest}");
        let (status, body) = self.send(self.client.post(url).body(data.to_vec()));
        assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
        serde_json::json!({"mediaType": media, "digest": digest.to_string(), "size": data.len()})
    }
}

/// The URL a boot script fetches `name` from.
fn file_url(script: &str, name: &str) -> String {
    script
        .split_whitespace()
        .find(|w| w.starts_with("http://") && w.ends_with(&format!("/files/{name}")))
        .unwrap_or_else(|| panic!("no {name} URL in:\n{script}"))
        .to_string()
}

#[test]
fn a_missing_oci_boot_source_keeps_the_registry_up_and_is_served_once_pushed() {
    let tmp = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = tmp.path().join("netboot.yaml");
    std::fs::write(
        &config,
        format!(
            "server:
  address: 127.0.0.1
  http_port: {port}
dhcp:
  mode: off
default_profile: tiny
profiles:
  tiny:
    source: {{oci: os/tiny:v1}}
    kernel: boot/kernel
    initrd: [boot/initrd]
    files:
      rootfs: rootfs.squashfs
    cmdline: console=ttyS0 root=live:{{{{ files.rootfs }}}}
"
        ),
    )
    .unwrap();
    let server = Server::start(
        &tmp.path().join("state"),
        &["--netboot", config.to_str().unwrap()],
    );
    let http = Http::new();
    let netboot = format!("http://127.0.0.1:{port}");
    let log = || std::fs::read_to_string(server.state.join("server.log")).unwrap();

    // Both servers answer; the profile is reported as waiting.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let script = loop {
        let reply = http.rt.block_on(async {
            http.client
                .get(format!("{netboot}/boot/{MAC}.ipxe"))
                .send()
                .await
        });
        if let Ok(reply) = reply {
            break http.rt.block_on(reply.text()).unwrap();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "netboot never answered:\n{}",
            log()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let (status, _) = http.get(&format!("http://{}/v2/", server.addr));
    assert_eq!(status, 200, "the registry is down:\n{}", log());
    assert!(
        log().contains("profile tiny is not ready: os/tiny:v1 is not in ferry's registry"),
        "{}",
        log()
    );
    // A host booting now is told why, and to try again.
    assert!(script.contains("not ready"), "{script}");
    assert!(script.contains("chain"), "{script}");
    let check = |expect: i32| {
        let out = crate::run(
            crate::ferry()
                .args(["netboot", "check", "-c"])
                .arg(&config)
                .arg("--state")
                .arg(&server.state),
        );
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert_eq!(
            out.status.code(),
            Some(expect),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    };
    assert!(check(1).contains("profile tiny: not ready: os/tiny:v1 is not in ferry's registry"));

    // Push the artifact: one titled layer per file.
    let registry = &server.addr;
    let kernel = crate::images::bytes(1, 300_000);
    let initrd = crate::images::bytes(2, 200_000);
    let rootfs = crate::images::bytes(3, 100_000);
    let config_blob = http.blob(registry, "os/tiny", media_type::OCI_EMPTY, b"{}");
    let layers: Vec<serde_json::Value> = [
        ("boot/kernel", &kernel),
        ("boot/initrd", &initrd),
        ("rootfs.squashfs", &rootfs),
    ]
    .into_iter()
    .map(|(title, data)| {
        let mut d = http.blob(registry, "os/tiny", "application/octet-stream", data);
        d["annotations"] = serde_json::json!({media_type::ANNOTATION_TITLE: title});
        d
    })
    .collect();
    let manifest = serde_json::json!({
        "schemaVersion": 2, "mediaType": media_type::OCI_MANIFEST,
        "artifactType": "application/vnd.ferry.os.v1",
        "config": config_blob, "layers": layers,
    });
    let (status, body) = http.send(
        http.client
            .put(format!("http://{registry}/v2/os/tiny/manifests/v1"))
            .header("content-type", media_type::OCI_MANIFEST)
            .body(serde_json::to_vec(&manifest).unwrap()),
    );
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));

    // The next boot gets the profile, and its files come from the registry.
    let (status, script) = http.get(&format!("{netboot}/boot/{MAC}.ipxe"));
    assert_eq!(status, 200);
    assert!(script.contains("boots profile tiny"), "{script}");
    assert!(script.contains("root=live:http://"), "{script}");
    let (status, got) = http.send(http.client.get(file_url(&script, "kernel")));
    assert_eq!(status, 200);
    assert!(got == kernel, "the kernel differs");
    let (status, got) = http.send(
        http.client.get(
            script
                .split_whitespace()
                .find(|w| w.starts_with("root=live:"))
                .unwrap()
                .trim_start_matches("root=live:"),
        ),
    );
    assert_eq!(status, 200);
    assert!(got == rootfs, "the rootfs differs");
    assert!(log().contains("profile tiny is ready"), "{}", log());
    assert!(check(0).contains("OK"));
}
