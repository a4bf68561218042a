//! Shared fixtures: a temporary site with boot files, a [`Netboot`] over
//! it, and in-process HTTP requests.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use axum::body::Body;
use ferry_netboot::{Config, Netboot};
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;

pub const MAC: &str = "52:54:00:12:34:56";
pub const OTHER_MAC: &str = "52:54:00:aa:bb:cc";

/// Deterministic pseudo-random bytes (xorshift), so failures reproduce.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

pub struct Site {
    pub dir: tempfile::TempDir,
}

impl Site {
    /// A directory with `boot/` files for a Kairos-layout profile.
    pub fn new() -> Site {
        let dir = tempfile::tempdir().unwrap();
        let boot = dir.path().join("media/boot");
        std::fs::create_dir_all(&boot).unwrap();
        std::fs::write(boot.join("kernel"), pattern(300_000, 1)).unwrap();
        std::fs::write(boot.join("initrd"), pattern(120_000, 2)).unwrap();
        std::fs::write(
            dir.path().join("media/rootfs.squashfs"),
            pattern(1_000_000, 3),
        )
        .unwrap();
        let tftp = dir.path().join("tftp");
        std::fs::create_dir_all(&tftp).unwrap();
        std::fs::write(tftp.join("undionly.kpxe"), pattern(70_001, 4)).unwrap();
        std::fs::write(tftp.join("snponly.efi"), pattern(5_000, 5)).unwrap();
        Site { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// Writes `netboot.yaml` and starts a [`Netboot`] on it.
    pub fn netboot(&self, yaml: &str) -> Arc<Netboot> {
        let path = self.dir.path().join("netboot.yaml");
        std::fs::write(&path, yaml).unwrap();
        let config = Config::load(&path).unwrap();
        Arc::new(Netboot::new(config, &self.state(), None).unwrap())
    }
}

/// A config with one known host (MAC) on profile `k` from `media/`.
pub fn basic_yaml(extra: &str) -> String {
    format!(
        "server: {{address: 127.0.0.1, http_port: 8080}}
tftp: {{root: tftp}}
vars: {{site: lab}}
profiles:
  k:
    source: {{dir: media}}
    cmdline: console=ttyS0 config_url={{{{ config_url }}}} events_url={{{{ events_url }}}}
    user_data: |
      #cloud-config
      hostname: {{{{ host.name }}}}
      site: {{{{ site.site }}}}
hosts:
  - mac: {MAC}
    name: node1
    profile: k
  - mac: {OTHER_MAC}
    name: node2
    profile: k
{extra}"
    )
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

pub async fn request(
    nb: &Arc<Netboot>,
    method: Method,
    uri: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Reply {
    let mut req = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Body::from(body.to_vec())).unwrap();
    let resp = ferry_netboot::http::router(nb.clone())
        .oneshot(req)
        .await
        .unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    Reply {
        status,
        headers,
        body,
    }
}

pub async fn get(nb: &Arc<Netboot>, uri: &str) -> Reply {
    request(nb, Method::GET, uri, &[], b"").await
}

/// Serves the host's script and returns its token (from the inventory).
pub async fn boot_script(nb: &Arc<Netboot>, mac: &str) -> (Reply, String) {
    let reply = get(
        nb,
        &format!(
            "/boot/{}.ipxe?arch=x86_64&platform=efi",
            mac.replace(':', "-")
        ),
    )
    .await;
    let record = nb.inventory.get(&mac.parse().unwrap()).unwrap().unwrap();
    (reply, record.token)
}

/// Runs a command, panicking with its stderr if it fails.
pub fn run(cmd: &mut Command) -> std::process::Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Builds an ISO of `tree` with xorriso; `args` select the extensions.
pub fn xorriso(tree: &Path, iso: &Path, args: &[&str]) {
    let mut cmd = Command::new("xorriso");
    cmd.arg("-outdev")
        .arg(iso)
        .args(args)
        .arg("-map")
        .arg(tree)
        .arg("/");
    run(&mut cmd);
}
