//! Debian's `docker-registry` (CNCF Distribution 2.8.2), started on a free
//! loopback port with a fresh root, killed when dropped.

use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Token authentication settings (`auth: token:` in the config).
pub struct TokenAuth {
    pub realm: String,
    pub service: String,
    pub issuer: String,
    pub root_cert_bundle: PathBuf,
}

#[derive(Default)]
pub struct Config {
    /// `auth: htpasswd:` with this file.
    pub htpasswd: Option<PathBuf>,
    pub token: Option<TokenAuth>,
    /// `http: tls:` certificate and key files.
    pub tls: Option<(PathBuf, PathBuf)>,
}

pub struct Distribution {
    pub dir: tempfile::TempDir,
    child: Child,
    pub port: u16,
    log: PathBuf,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Distribution {
    pub fn start() -> Self {
        Self::start_with(Config::default())
    }

    pub fn start_with(config: Config) -> Self {
        // The free port may be taken between probing and binding; try again.
        let mut last_log = String::new();
        for _ in 0..5 {
            match Self::try_start(&config) {
                Ok(registry) => return registry,
                Err(log) => last_log = log,
            }
        }
        panic!("docker-registry did not start:\n{last_log}");
    }

    fn try_start(config: &Config) -> Result<Self, String> {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut yml = format!(
            "version: 0.1\n\
             log:\n  level: info\n  accesslog:\n    disabled: true\n\
             storage:\n  filesystem:\n    rootdirectory: {root}\n  delete:\n    enabled: true\n  \
             maintenance:\n    uploadpurging:\n      enabled: false\n\
             http:\n  addr: 127.0.0.1:{port}\n  secret: ferry-client-tests\n",
            root = dir.path().join("root").display()
        );
        if let Some((cert, key)) = &config.tls {
            yml += &format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                cert.display(),
                key.display()
            );
        }
        if let Some(file) = &config.htpasswd {
            yml += &format!(
                "auth:\n  htpasswd:\n    realm: ferry-test\n    path: {}\n",
                file.display()
            );
        }
        if let Some(token) = &config.token {
            yml += &format!(
                "auth:\n  token:\n    realm: {}\n    service: {}\n    issuer: {}\n    rootcertbundle: {}\n",
                token.realm,
                token.service,
                token.issuer,
                token.root_cert_bundle.display()
            );
        }
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, yml).unwrap();
        let log = dir.path().join("registry.log");
        let log_file = std::fs::File::create(&log).unwrap();
        let child = Command::new("/usr/bin/docker-registry")
            .arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file)
            .spawn()
            .expect("docker-registry runs (Debian package docker-registry)");
        let mut registry = Distribution {
            dir,
            child,
            port,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = registry.child.try_wait() {
                return Err(format!("exited with {status}:\n{}", registry.log()));
            }
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(registry);
            }
            if Instant::now() > deadline {
                return Err(format!("not listening after 20 s:\n{}", registry.log()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `127.0.0.1:PORT`, as written in references.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Distribution {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An htpasswd file with one bcrypt user, made by apache2-utils' htpasswd.
pub fn htpasswd_file(dir: &Path, user: &str, password: &str) -> PathBuf {
    let out = Command::new("htpasswd")
        .args(["-Bbn", user, password])
        .output()
        .expect("htpasswd runs (Debian package apache2-utils)");
    assert!(
        out.status.success(),
        "htpasswd failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let path = dir.join("htpasswd");
    let mut f = std::fs::File::create(&path).unwrap();
    f.write_all(&out.stdout).unwrap();
    path
}
