//! What users see from the command line.

use crate::{ferry, run};

#[test]
fn help_lists_the_commands() {
    let out = run(ferry().arg("--help"));
    assert!(out.status.success());
    insta::assert_snapshot!(String::from_utf8_lossy(&out.stdout));
}

#[test]
fn version() {
    let out = run(ferry().arg("--version"));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("ferry {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn usage_errors_exit_2() {
    let out = run(ferry().arg("no-such-command"));
    assert_eq!(out.status.code(), Some(2));
    let out = run(ferry().args(["serve", "--listen", "not-an-address"]));
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn busy_port_is_a_user_error_with_a_hint() {
    let tmp = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let out = run(ferry()
        .args(["serve", "--state"])
        .arg(tmp.path())
        .args(["--listen", &format!("127.0.0.1:{port}")]));
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr).replace(&port.to_string(), "PORT");
    insta::assert_snapshot!(stderr);
}

#[test]
fn one_server_per_store() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let _first = crate::Server::start(&state, &[]);
    let out = run(ferry()
        .args(["serve", "--listen", "127.0.0.1:0", "--state"])
        .arg(&state));
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("another ferry serve is using the store")
    );
}

#[test]
fn fsck_reports_corruption_with_exit_1() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let store =
        ferry_store::Store::open(state.join("registry"), ferry_store::Limits::default()).unwrap();
    let digest = ferry_oci::Digest::sha256(b"content");
    store
        .put_blob("r", &digest, None, &mut &b"content"[..])
        .unwrap();
    let path = state
        .join("registry/blobs/sha256")
        .join(&digest.hex()[..2])
        .join(digest.hex());
    std::fs::write(&path, b"CONTENT").unwrap();
    let out = run(ferry().args(["registry", "fsck", "--state"]).arg(&state));
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("corrupt blob {digest}")));
}

#[test]
fn a_relative_state_directory_is_created() {
    let tmp = tempfile::tempdir().unwrap();
    let out = run(ferry()
        .current_dir(tmp.path())
        .args(["registry", "fsck", "--state", "state"]));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(tmp.path().join("state/registry").is_dir());
}
