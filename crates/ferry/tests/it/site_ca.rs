//! The `--tls auto` site CA is never left half-written: `ferry serve` is
//! killed in the middle of writing each of its files, and every file
//! there is then whole (or absent), and the next start serves TLS that
//! clients trusting the CA accept.
//!
//! The kill lands exactly at a write: the server runs under
//! `prlimit --fsize=N`, so the write that would take a file past N bytes
//! gets SIGXFSZ, whose default action ends the process on the spot, like
//! SIGKILL (no destructor, no cleanup). Each N stops it in a different
//! file: `ca.key` (241 bytes), `ca.crt` (~550), `server.crt` (~1100).

use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};

use crate::{Server, run};

/// "File size limit exceeded" (signal(7), Linux).
const SIGXFSZ: i32 = 25;

#[test]
fn a_crash_while_writing_the_site_ca_never_leaves_a_torn_file() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    for limit in [64, 400, 800] {
        let tmp = tempfile::tempdir().unwrap();
        let state = tmp.path().join("state");
        let out = run(Command::new("prlimit")
            .arg(format!("--fsize={limit}"))
            .arg(env!("CARGO_BIN_EXE_ferry"))
            .args([
                "serve",
                "--tls",
                "auto",
                "--listen",
                "127.0.0.1:0",
                "--state",
            ])
            .arg(&state)
            .stdin(Stdio::null()));
        assert_eq!(
            out.status.signal(),
            Some(SIGXFSZ),
            "with files limited to {limit} bytes, ferry serve should have died at a write: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let tls = state.join("tls");
        for entry in std::fs::read_dir(&tls).unwrap().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue; // a temporary file the crash left, never read
            }
            let text = std::fs::read_to_string(entry.path()).unwrap();
            if name.ends_with(".key") || name.ends_with(".crt") {
                assert!(
                    text.trim_end().ends_with("-----") && text.ends_with('\n'),
                    "limit {limit}: {name} is torn ({} bytes):\n{text}",
                    text.len()
                );
            }
        }
        // The next start completes the CA and serves what it says.
        let server = Server::start(&state, &["--tls", "auto"]);
        let config = ferry_client::tls::verifying_config(&[tls.join("ca.crt")]).unwrap();
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(config)
            .build()
            .unwrap();
        let rt = tokio::runtime::Runtime::new().unwrap();
        let status = rt.block_on(async {
            client
                .get(format!("https://{}/v2/", server.addr))
                .send()
                .await
                .unwrap()
                .status()
        });
        assert_eq!(status, 200, "limit {limit}");
        drop(server);
    }
}
