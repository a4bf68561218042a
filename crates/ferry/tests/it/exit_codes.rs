//! Failures as the user meets them, one test per class of the exit-code
//! table (README "Exit codes", `crates/ferry/src/exit.rs`), each against
//! the real thing: a closed port, a plain-HTTP `ferry serve` reached
//! without `--insecure`, wrong credentials on `ferry serve --htpasswd`, a
//! TLS server whose CA is not trusted, a registry on a full tmpfs, a
//! truncated bundle. Each checks the exit code and what stderr says
//! (snapshots, with ports, paths and digests filtered out). Also: a
//! closed stdout, `--json` and `-q` on failure, `--listen :PORT`, and the
//! self-extracting form's `push --help`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use ferry_bundle::writer::WriteOptions;

use crate::bundle::bundle_from_layout;
use crate::disk_full::SmallDisk;
use crate::images::Layout;
use crate::{Server, ferry, ok, run};

/// A bundle `site.ferry` in `dir` with one small image, `team/app:v1`.
fn small_bundle(dir: &Path) -> PathBuf {
    let mut layout = Layout::new(&dir.join("src"));
    let image = layout.image(7, 2, 10_000, "amd64", None);
    layout.tag("app", image);
    let site = dir.join("site.ferry");
    bundle_from_layout(&dir.join("src"), &["app"], &site, WriteOptions::default());
    site
}

/// `ferry bundle push SITE --to TARGET ...` with its own state directory.
fn push(dir: &Path, site: &Path, target: &str, extra: &[&str]) -> Output {
    run(ferry()
        .current_dir(dir)
        .args(["bundle", "push"])
        .arg(site)
        .args(["--to", target, "--state", "push-state"])
        .args(extra))
}

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Snapshots `text` with what differs from run to run filtered out.
/// Only the error report (from `error:` on), without log lines before it.
fn snapshot(name: &str, text: &str, dir: &Path) {
    let text = &text[text.find("error:").unwrap_or(0)..];
    let dir = dir.display().to_string();
    let mut settings = insta::Settings::clone_current();
    settings.add_filter(&regex_escape(&dir), "[DIR]");
    settings.add_filter(r"127\.0\.0\.1:\d+", "127.0.0.1:[PORT]");
    settings.add_filter(r"sha256:[0-9a-f]{64}", "sha256:[DIGEST]");
    settings.add_filter(r"sha256/[0-9a-f]{64}", "sha256/[HEX]");
    // Which upload request meets a full disk first depends on timing.
    settings.add_filter(r"(POST|PATCH|PUT) (\S+/blobs/uploads/)", "[REQUEST] $2");
    settings.add_filter(r"/blobs/uploads/[^\s:;,)]+", "/blobs/uploads/[UPLOAD]");
    settings.bind(|| insta::assert_snapshot!(name, text));
}

fn regex_escape(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            let special = "\\.+*?()|[]{}^$".contains(c);
            special.then_some('\\').into_iter().chain([c])
        })
        .collect()
}

/// Asserts that no request was retried: the failure is final at once.
fn assert_no_retries(text: &str) {
    assert!(!text.contains("retry"), "retried:\n{text}");
}

#[test]
fn unreachable_registry_exits_69_for_push_and_for_create() {
    let tmp = tempfile::tempdir().unwrap();
    let site = small_bundle(tmp.path());
    let target = format!("127.0.0.1:{}", closed_port());
    let out = push(tmp.path(), &site, &target, &["-q"]);
    assert_eq!(out.status.code(), Some(69), "{}", stderr(&out));
    snapshot("unreachable_push", &stderr(&out), tmp.path());

    std::fs::write(
        tmp.path().join("ferry.yaml"),
        format!("images:\n  - {target}/team/app:v1\n"),
    )
    .unwrap();
    let out = run(ferry().current_dir(tmp.path()).args([
        "bundle",
        "create",
        "-q",
        "-o",
        "x.ferry",
        "--state",
        "create-state",
        "--plain-http",
        &target,
    ]));
    assert_eq!(out.status.code(), Some(69), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("hint: nothing answers at"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn plain_http_registry_without_insecure_is_named_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let site = small_bundle(tmp.path());
    let server = Server::start(&tmp.path().join("server"), &[]);
    let out = push(tmp.path(), &site, &server.addr, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_no_retries(&stderr(&out));
    snapshot("plain_http_push", &stderr(&out), tmp.path());
}

#[test]
fn refused_credentials_exit_2_with_a_hint_for_push_and_copy() {
    let tmp = tempfile::tempdir().unwrap();
    let site = small_bundle(tmp.path());
    let users = ok(Command::new("htpasswd").args(["-Bbn", "site", "s3cret"]));
    std::fs::write(tmp.path().join("users"), users).unwrap();
    let server = Server::start(
        &tmp.path().join("server"),
        &["--htpasswd", tmp.path().join("users").to_str().unwrap()],
    );
    let wrong = ["--insecure", "--username", "site", "--password", "wrong"];
    let out = push(tmp.path(), &site, &server.addr, &wrong);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    snapshot("refused_credentials_push", &stderr(&out), tmp.path());

    let copy = |extra: &[&str]| {
        run(ferry()
            .current_dir(tmp.path())
            .args(["copy", "-q", "--state", "copy-state"])
            .arg(format!("oci:{}:app", tmp.path().join("src").display()))
            .arg(format!("docker://{}/team/copied:v1", server.addr))
            .args(extra))
    };
    let out = copy(&wrong);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--username"), "{}", stderr(&out));
    let out = copy(&["--insecure", "--username", "site", "--password", "s3cret"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn untrusted_certificate_exits_2_and_its_ca_file_fixes_it() {
    let tmp = tempfile::tempdir().unwrap();
    let site = small_bundle(tmp.path());
    let server = Server::start(&tmp.path().join("server"), &["--tls", "auto"]);
    let out = push(tmp.path(), &site, &server.addr, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_no_retries(&stderr(&out));
    snapshot("untrusted_certificate_push", &stderr(&out), tmp.path());
    let ca = server.state.join("tls/ca.crt");
    let out = push(
        tmp.path(),
        &site,
        &server.addr,
        &["-q", "--ca-file", ca.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn full_disk_exits_69_at_once_with_the_registrys_message() {
    let tmp = tempfile::tempdir().unwrap();
    // A 20 MiB layer (pushed in chunks) for a registry with 8 MiB of disk.
    let mut layout = Layout::new(&tmp.path().join("src"));
    let image = layout.image(9, 1, 20 * 1024 * 1024, "amd64", None);
    layout.tag("big", image);
    let site = tmp.path().join("big.ferry");
    bundle_from_layout(
        &tmp.path().join("src"),
        &["big"],
        &site,
        WriteOptions::default(),
    );
    let disk = SmallDisk::mount(&tmp.path().join("small"), 8);
    let server = Server::start(&disk.0.join("server"), &[]);
    // -v shows the client's retries, which are debug lines.
    let out = push(tmp.path(), &site, &server.addr, &["--insecure", "-v"]);
    assert_eq!(out.status.code(), Some(69), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("the registry's disk is full"),
        "{}",
        stderr(&out)
    );
    // A connection the registry closed while the body was on its way
    // may be retried; its 507 answer never is.
    let retried_507 = stderr(&out)
        .lines()
        .any(|l| l.contains("507") && l.contains("retry"));
    assert!(!retried_507, "{}", stderr(&out));
    snapshot("full_disk_push", &stderr(&out), tmp.path());
    drop(server);

    // The same class when ferry itself writes to the full disk.
    let out = run(ferry()
        .args(["bundle", "import", "-q"])
        .arg(&site)
        .arg("--state")
        .arg(disk.0.join("import-state")));
    assert_eq!(out.status.code(), Some(69), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("hint: free space"),
        "{}",
        stderr(&out)
    );
    std::fs::write(tmp.path().join("big.bin"), vec![7u8; 12 << 20]).unwrap();
    std::fs::write(tmp.path().join("ferry.yaml"), "files:\n  - big.bin\n").unwrap();
    let out = run(ferry()
        .current_dir(tmp.path())
        .args(["bundle", "create", "-q", "--state", "create-state", "-o"])
        .arg(disk.0.join("site.ferry")));
    assert_eq!(out.status.code(), Some(69), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("No space left on device"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn damaged_bundle_exits_1_in_every_command() {
    let tmp = tempfile::tempdir().unwrap();
    let site = small_bundle(tmp.path());
    let good = std::fs::read(&site).unwrap();
    let truncated = tmp.path().join("truncated.ferry");
    std::fs::write(&truncated, &good[..good.len() * 2 / 3]).unwrap();
    let server = Server::start(&tmp.path().join("server"), &[]);
    for command in [
        vec!["bundle", "inspect"],
        vec!["bundle", "verify"],
        vec!["bundle", "import", "--state", "import-state"],
        vec!["bundle", "push", "--insecure", "--to", &server.addr],
    ] {
        let out = run(ferry()
            .current_dir(tmp.path())
            .args(&command)
            .arg(&truncated));
        assert_eq!(out.status.code(), Some(1), "{command:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("hint: copy the bundle again"),
            "{command:?}: {}",
            stderr(&out)
        );
    }
    let out = run(ferry().args(["bundle", "verify"]).arg(&truncated));
    snapshot("damaged_verify", &stderr(&out), tmp.path());
}

/// The reading end of stdout is gone before ferry writes a byte.
fn with_closed_stdout(cmd: &mut Command) -> Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    cmd.env("RUST_BACKTRACE", "1")
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .unwrap()
}

#[test]
fn a_closed_stdout_ends_the_command_quietly() {
    let tmp = tempfile::tempdir().unwrap();
    let site = small_bundle(tmp.path());
    for cmd in [
        ferry().args(["bundle", "inspect"]).arg(&site),
        ferry()
            .args(["registry", "fsck", "--state"])
            .arg(tmp.path().join("state")),
    ] {
        let out = with_closed_stdout(cmd);
        assert_eq!(out.status.code(), Some(141), "{}", stderr(&out));
        assert_eq!(stderr(&out), "");
    }
}

#[test]
fn json_commands_print_one_error_object() {
    let tmp = tempfile::tempdir().unwrap();
    let site = small_bundle(tmp.path());
    let server = Server::start(&tmp.path().join("server"), &[]);
    let out = push(tmp.path(), &site, &server.addr, &["--json"]);
    let error: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    assert_eq!(error["error"]["class"], "plain-http", "{error}");
    assert_eq!(error["error"]["code"], 2, "{error}");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        error["error"]["hint"]
            .as_str()
            .unwrap()
            .contains("--insecure")
    );
    assert!(error["error"]["message"].is_string() && error["error"]["causes"].is_array());

    let good = std::fs::read(&site).unwrap();
    std::fs::write(&site, &good[..good.len() / 2]).unwrap();
    let out = run(ferry().args(["bundle", "verify", "--json"]).arg(&site));
    let error: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    assert_eq!(error["error"]["class"], "damaged", "{error}");
    assert_eq!(error["error"]["code"], 1, "{error}");
}

#[test]
fn quiet_prints_only_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let site = small_bundle(tmp.path());
    let server = Server::start(&tmp.path().join("server"), &[]);
    let state = tmp.path().join("state");
    let state = state.to_str().unwrap();
    let site = site.to_str().unwrap();
    for args in [
        vec!["bundle", "verify", site],
        vec!["bundle", "push", site, "--insecure", "--to", &server.addr],
        vec!["bundle", "import", site, "--state", state],
        vec!["registry", "fsck", "--state", state],
        vec!["registry", "gc", "--state", state],
    ] {
        let out = run(ferry().current_dir(tmp.path()).arg("-q").args(&args));
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "",
            "{args:?} printed under -q"
        );
        assert_eq!(stderr(&out), "", "{args:?}");
    }
}

#[test]
fn listen_takes_a_bare_port() {
    let tmp = tempfile::tempdir().unwrap();
    let site = small_bundle(tmp.path());
    let port = closed_port();
    let mut child = ferry()
        .args(["bundle", "serve"])
        .arg(&site)
        .args(["--listen", &format!(":{port}")])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    assert!(
        line.starts_with(&format!("ferry registry on http://0.0.0.0:{port}")),
        "{line}{}",
        stderr(&out)
    );
}

#[test]
fn self_extracting_push_help_shows_push_registry() {
    let tmp = tempfile::tempdir().unwrap();
    let mut layout = Layout::new(&tmp.path().join("src"));
    let image = layout.image(7, 1, 1000, "amd64", None);
    layout.tag("app", image);
    let options = WriteOptions {
        self_extracting: Some(PathBuf::from(env!("CARGO_BIN_EXE_ferry"))),
        ..WriteOptions::default()
    };
    let site_run = tmp.path().join("site.run");
    bundle_from_layout(&tmp.path().join("src"), &["app"], &site_run, options);
    let help = ok(Command::new(&site_run).args(["push", "--help"]));
    assert!(help.contains("Usage: ./site.run push REGISTRY"), "{help}");
    assert!(!help.contains("bundle push"), "{help}");
    let out = run(Command::new(&site_run).arg("push"));
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("./site.run push REGISTRY"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn gc_with_a_wrong_password_says_it_was_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let users = ok(Command::new("htpasswd").args(["-Bbn", "site", "s3cret"]));
    std::fs::write(tmp.path().join("users"), users).unwrap();
    let server = Server::start(
        &tmp.path().join("server"),
        &["--htpasswd", tmp.path().join("users").to_str().unwrap()],
    );
    let gc = |extra: &[&str]| {
        run(ferry()
            .args(["registry", "gc", "--state"])
            .arg(&server.state)
            .args(extra))
    };
    let out = gc(&["--username", "site", "--password", "wrong"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        !stderr(&out).contains("give --username"),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("check the user and password"),
        "{}",
        stderr(&out)
    );
    let out = gc(&[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("give --username and --password"),
        "{}",
        stderr(&out)
    );
    let out = gc(&["--username", "site", "--password", "s3cret"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn create_hints_at_registry_settings_only_for_registry_failures() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let create = |spec: &str| {
        std::fs::write(dir.join("ferry.yaml"), spec).unwrap();
        run(ferry().current_dir(dir).args([
            "bundle", "create", "-q", "-o", "x.ferry", "--state", "state",
        ]))
    };
    let out = create("files:\n  - missing.bin\n");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        !stderr(&out).contains("--insecure-registry"),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("missing.bin"), "{}", stderr(&out));

    std::fs::write(dir.join("tool.bin"), b"the tool").unwrap();
    let wrong = "0".repeat(64);
    let out = create(&format!(
        "files:\n  - path: tool.bin\n    sha256: {wrong}\n"
    ));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        !stderr(&out).contains("--insecure-registry"),
        "{}",
        stderr(&out)
    );
}
