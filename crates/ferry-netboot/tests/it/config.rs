//! netboot.yaml: strict parsing, messages that point at the line, and the
//! committed JSON schema.

use std::path::Path;

use ferry_netboot::{Config, ConfigError};

fn parse(yaml: &str) -> Result<ferry_netboot::LoadedConfig, ConfigError> {
    Config::parse(yaml, Path::new("netboot.yaml"), Path::new("/srv"))
}

fn message(yaml: &str) -> String {
    parse(yaml).unwrap_err().to_string()
}

const PROFILE: &str = "profiles:\n  k:\n    source: {dir: media}\n    cmdline: x\n";

#[test]
fn unknown_fields_are_refused_with_their_line() {
    let m = message(&format!(
        "server:\n  address: 10.0.0.2\n  http_prot: 80\n{PROFILE}"
    ));
    assert!(m.contains("line 3"), "{m}");
    assert!(m.contains("unknown field `http_prot`"), "{m}");

    let m = message(&format!(
        "server: {{address: 10.0.0.2}}\n{PROFILE}    initrds: [a]\n"
    ));
    assert!(m.contains("line 6") && m.contains("`initrds`"), "{m}");

    let m = message(&format!(
        "server: {{address: 10.0.0.2}}\n{PROFILE}hosts:\n  - mac: 52:54:00:12:34:5g\n"
    ));
    assert!(
        m.contains("line 7") && m.contains("not a MAC address"),
        "{m}"
    );

    let m = message(&format!(
        "server: {{address: 10.0.0.2}}\ndhcp: {{mode: relay}}\n{PROFILE}"
    ));
    assert!(m.contains("line 2") && m.contains("relay"), "{m}");
}

#[test]
fn cross_references_are_checked() {
    let m = message(&format!(
        "server: {{address: 10.0.0.2}}\ndefault_profile: nope\n{PROFILE}hosts:\n  - mac: 52:54:00:12:34:56\n    profile: k\n  - mac: 52-54-00-12-34-56\n    profile: missing\n  - mac: 52:54:00:00:00:01\n"
    ));
    for needle in [
        "line 2: default_profile `nope` is not defined",
        "hosts[1]: MAC 52:54:00:12:34:56 is already listed at hosts[0]",
        "profile `missing` is not defined",
    ] {
        assert!(m.contains(needle), "missing {needle:?} in {m}");
    }
    let m = message(&format!(
        "server: {{address: 10.0.0.2}}\n{PROFILE}hosts:\n  - mac: 52:54:00:00:00:01\n"
    ));
    assert!(m.contains("no profile, and no default_profile"), "{m}");
    let m = message(&format!(
        "server: {{address: 10.0.0.2}}\ndhcp: {{mode: full}}\n{PROFILE}"
    ));
    assert!(m.contains("dhcp.pool: required"), "{m}");
}

#[test]
fn relative_paths_follow_the_config_file() {
    let c = parse(&format!(
        "server: {{address: 10.0.0.2}}\ntftp: {{root: ipxe}}\n{PROFILE}"
    ))
    .unwrap();
    assert_eq!(c.config.tftp.root, Path::new("/srv/ipxe"));
    match &c.config.profiles["k"].source {
        ferry_netboot::config::Source::Dir(p) => assert_eq!(p, Path::new("/srv/media")),
        other => panic!("{other:?}"),
    }
}

/// docs/netboot.schema.json is generated from the types; it must not drift.
#[test]
fn committed_schema_matches_the_types() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/netboot.schema.json");
    let generated = serde_json::to_string_pretty(&Config::json_schema()).unwrap() + "\n";
    if std::env::var_os("FERRY_UPDATE_SCHEMA").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run with FERRY_UPDATE_SCHEMA=1)", path.display()));
    assert_eq!(
        committed, generated,
        "schema changed: run the test with FERRY_UPDATE_SCHEMA=1"
    );
}
