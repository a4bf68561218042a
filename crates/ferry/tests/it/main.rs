//! Tests of the `ferry` binary as users run it, against real clients
//! (skopeo, podman from Debian) and with real process crashes.

mod bundle;
mod bundle_create;
mod bundle_messages;
mod cli;
mod containerd;
mod crash;
mod disk_full;
mod exit_codes;
mod fsck_repair;
mod image;
mod images;
mod kubernetes;
mod mirror_resolver;
mod netboot;
mod netboot_config;
mod referrers;
mod registry_clients;
mod release;
mod repair;
mod reports;
mod serve_netboot;
mod site_ca;
mod site_files;
mod slow_link;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

/// The binary under test.
pub fn ferry() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ferry"))
}

/// The Python with the tests' Python packages: `FERRY_TEST_PYTHON` (set by
/// scripts/test.sh), else the venv scripts/test.sh made in `target/`, else
/// `python3`.
pub fn test_python() -> PathBuf {
    if let Some(python) = std::env::var_os("FERRY_TEST_PYTHON") {
        return python.into();
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/test-venv/bin/python");
    if venv.exists() {
        venv
    } else {
        "python3".into()
    }
}

/// Bytes held by the largest upload session under a store's `uploads/`
/// directory (0 if there is none): how far a transfer into it has come.
pub fn largest_upload(uploads: &Path) -> u64 {
    std::fs::read_dir(uploads)
        .map(|d| {
            d.flatten()
                .filter_map(|e| std::fs::metadata(e.path().join("data")).ok())
                .map(|m| m.len())
                .max()
                .unwrap_or(0)
        })
        .unwrap_or(0)
}

/// A number that differs from run to run, for kill points.
pub fn jitter() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64
}

/// Starts `cmd`, and SIGKILLs it as soon as `progress()` reaches `at`;
/// panics if it ends by itself first (the kill would test nothing).
pub fn kill_when(cmd: &mut Command, at: u64, progress: impl Fn() -> u64) {
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while progress() < at
        && child.try_wait().unwrap().is_none()
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    if child.try_wait().unwrap().is_some() {
        let out = child.wait_with_output().unwrap();
        panic!(
            "{cmd:?} ended before it could be killed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    child.kill().unwrap();
    let _ = child.wait();
}

/// Runs a command to completion, panicking with its output if it cannot start.
pub fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// Runs a command that must succeed; returns its stdout.
pub fn ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A `ferry serve` process on a loopback port of its own choosing.
pub struct Server {
    child: Child,
    /// `127.0.0.1:PORT`
    pub addr: String,
    pub state: PathBuf,
    /// Everything the server printed before it was ready.
    pub banner: String,
}

impl Server {
    pub fn start(state: &Path, extra: &[&str]) -> Server {
        std::fs::create_dir_all(state).unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(state.join("server.log"))
            .unwrap();
        let mut child = ferry()
            .args(["serve", "--listen", "127.0.0.1:0", "--state"])
            .arg(state)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("ferry serve starts");
        let mut banner = String::new();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let addr = loop {
            let line = lines
                .next()
                .unwrap_or_else(|| panic!("ferry serve exited before listening:\n{banner}"))
                .unwrap();
            banner.push_str(&line);
            banner.push('\n');
            if let Some(rest) = line.strip_prefix("ferry registry on ") {
                let url = rest.split_whitespace().next().unwrap();
                break url.split("://").nth(1).unwrap().to_string();
            }
        };
        // Keep draining stdout so the server never blocks on it.
        std::thread::spawn(move || for _ in lines {});
        Server {
            child,
            addr,
            state: state.to_path_buf(),
            banner,
        }
    }

    /// SIGKILL, as a power cut would stop it (minus the page cache).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}
