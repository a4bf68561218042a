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

/// `ferry serve` with an htpasswd file that has no users starts (pulls may
/// be anonymous) but says that nobody can log in.
#[test]
fn an_empty_htpasswd_file_is_warned_about() {
    let tmp = tempfile::tempdir().unwrap();
    let users = tmp.path().join("users");
    std::fs::write(&users, "# nobody yet\n").unwrap();
    let server = crate::Server::start(
        &tmp.path().join("state"),
        &["--htpasswd", users.to_str().unwrap()],
    );
    let log = std::fs::read_to_string(server.state.join("server.log")).unwrap();
    let warning = log
        .lines()
        .find(|l| l.contains("WARN"))
        .unwrap_or_else(|| panic!("no warning in:\n{log}"));
    let warning =
        warning[warning.find("WARN").unwrap()..].replace(users.to_str().unwrap(), "USERS");
    insta::assert_snapshot!(warning);
}

/// A state directory that cannot be written is the user's to fix: exit 2
/// and a hint naming `--state`, for the server and for the maintenance
/// commands. (Root writes anywhere, so the directory is a read-only mount.)
#[test]
fn an_unwritable_state_directory_is_a_user_error_with_a_hint() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("ro");
    std::fs::create_dir(&state).unwrap();
    crate::ok(
        std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "ro,size=1m", "tmpfs"])
            .arg(&state),
    );
    let outputs = [
        run(ferry()
            .args(["serve", "--listen", "127.0.0.1:0", "--state"])
            .arg(&state)),
        run(ferry().args(["registry", "fsck", "--state"]).arg(&state)),
    ];
    let _ = std::process::Command::new("umount")
        .arg("-l")
        .arg(&state)
        .status();
    for out in outputs {
        assert_eq!(out.status.code(), Some(2));
        let stderr = String::from_utf8_lossy(&out.stderr).replace(state.to_str().unwrap(), "STATE");
        insta::assert_snapshot!("unwritable_state", stderr);
    }
}

/// Looking at the hosts of a state directory that has none changes nothing
/// on disk, nor does resetting an unknown host.
#[test]
fn hosts_on_an_empty_state_creates_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let out = run(ferry().args(["hosts", "--state"]).arg(&state));
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "no hosts have network-booted yet\n"
    );
    let out = run(ferry()
        .args(["hosts", "reset", "52:54:00:12:34:56", "--state"])
        .arg(&state));
    assert_eq!(out.status.code(), Some(2));
    assert!(
        !state.exists(),
        "created {:?}",
        std::fs::read_dir(&state).map(|d| d.flatten().map(|e| e.path()).collect::<Vec<_>>())
    );
}

/// The `--tls auto` banner's trust commands name the directory for the
/// address the server is really reached at, not a literal HOST:PORT.
#[test]
fn the_tls_banner_names_the_real_address() {
    let tmp = tempfile::tempdir().unwrap();
    let server = crate::Server::start(&tmp.path().join("state"), &["--tls", "auto"]);
    assert!(!server.banner.contains("HOST:PORT"), "{}", server.banner);
    let port = server.addr.rsplit(':').next().unwrap();
    let banner = server
        .banner
        .replace(tmp.path().to_str().unwrap(), "TMP")
        .replace(port, "PORT");
    insta::with_settings!({filters => vec![
        (r"ferry site CA [0-9a-f]{8}", "ferry site CA XXXXXXXX"),
        (r"TLS certificate for: .*", "TLS certificate for: NAMES"),
    ]}, {
        insta::assert_snapshot!(banner);
    });
}
