//! What the commands report: every `--json` output uses one key style
//! (snake_case, docs/bundle.md "JSON output"), the counts of a delta agree
//! between `create`, `inspect` and `push`, and `inspect` lines up long
//! sources and names the spec.

use std::path::Path;
use std::process::Command;

use crate::images::standard;
use crate::{Server, ferry, ok};

/// Keys whose children are named by data (entry kinds), not by ferry.
const DATA_KEYED: &[&str] = &["kinds"];

/// Every object key under `value` that is not snake_case, with its path.
fn not_snake_case(value: &serde_json::Value, path: &str, found: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, child) in map {
                let here = format!("{path}.{key}");
                let snake = key.starts_with(|c: char| c.is_ascii_lowercase())
                    && key
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
                if !snake {
                    found.push(here.clone());
                }
                if !DATA_KEYED.contains(&key.as_str()) {
                    not_snake_case(child, &here, found);
                }
            }
        }
        serde_json::Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                not_snake_case(item, &format!("{path}[{i}]"), found);
            }
        }
        _ => {}
    }
}

/// Runs `cmd` (which has `--json`), parses its stdout and records it.
fn json(
    name: &str,
    cmd: &mut Command,
    outputs: &mut Vec<(String, serde_json::Value)>,
) -> serde_json::Value {
    let out = ok(cmd);
    let value: serde_json::Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{name}: {e}: {out}"));
    outputs.push((name.to_string(), value.clone()));
    value
}

fn create(dir: &Path) -> Command {
    let mut c = ferry();
    c.current_dir(dir)
        .args(["bundle", "create", "--state", "state"])
        .env_remove("SOURCE_DATE_EPOCH");
    c
}

#[test]
fn json_keys_are_snake_case_and_delta_counts_agree() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    standard(&dir.join("src"));
    let tool =
        dir.join("vendor/example-corp/platform-tools/release-2025.06/bin/site-bootstrap-tool.bin");
    std::fs::create_dir_all(tool.parent().unwrap()).unwrap();
    std::fs::write(&tool, crate::images::bytes(9, 50_000)).unwrap();
    let base_spec = "name: site-2025-05\nimages:\n  - ref: oci:src:multi\n    repository: team/multi\n    tag: v1\n";
    std::fs::write(dir.join("base.yaml"), base_spec).unwrap();
    std::fs::write(
        dir.join("delta.yaml"),
        format!(
            "name: site-2025-06\n{}  - ref: oci:src:many\n    repository: team/many\n    tag: v1\nfiles:\n  - {}\n",
            base_spec.split_once('\n').unwrap().1,
            tool.strip_prefix(dir).unwrap().display()
        ),
    )
    .unwrap();
    let mut outputs = Vec::new();
    json(
        "bundle create",
        create(dir).args(["-f", "base.yaml", "-o", "base.ferry", "--json"]),
        &mut outputs,
    );
    let created = json(
        "bundle create --since",
        create(dir).args([
            "-f",
            "delta.yaml",
            "-o",
            "delta.ferry",
            "--since",
            "base.ferry",
            "--json",
        ]),
        &mut outputs,
    );
    let inspected = json(
        "bundle inspect",
        ferry()
            .current_dir(dir)
            .args(["bundle", "inspect", "--json", "delta.ferry"]),
        &mut outputs,
    );
    json(
        "bundle verify",
        ferry()
            .current_dir(dir)
            .args(["bundle", "verify", "--json", "delta.ferry"]),
        &mut outputs,
    );
    let server = Server::start(&dir.join("server-state"), &[]);
    let push = |bundle: &str| {
        let mut c = ferry();
        c.current_dir(dir).args([
            "bundle",
            "push",
            "--insecure",
            "--json",
            "--state",
            "push-state",
            "--to",
            &server.addr,
            bundle,
        ]);
        c
    };
    json("bundle push", &mut push("base.ferry"), &mut outputs);
    let pushed = json(
        "bundle push (delta)",
        &mut push("delta.ferry"),
        &mut outputs,
    );
    for bundle in ["base.ferry", "delta.ferry"] {
        json(
            "bundle import",
            ferry()
                .current_dir(dir)
                .args(["bundle", "import", "--json", "--state", "site", bundle]),
            &mut outputs,
        );
    }
    json(
        "registry fsck",
        ferry()
            .current_dir(dir)
            .args(["registry", "fsck", "--json", "--state", "site"]),
        &mut outputs,
    );
    json(
        "registry gc",
        ferry()
            .current_dir(dir)
            .args(["registry", "gc", "--json", "--state", "site"]),
        &mut outputs,
    );
    json(
        "copy",
        ferry().current_dir(dir).args([
            "copy",
            "--insecure",
            "--json",
            "--state",
            "copy-state",
            "oci:src:many",
            &format!("docker://{}/copied/many:v1", server.addr),
        ]),
        &mut outputs,
    );
    let inventory = ferry_netboot::inventory::Inventory::open(&dir.join("site")).unwrap();
    inventory
        .update("52:54:00:12:34:56".parse().unwrap(), |h| {
            h.transition(ferry_netboot::inventory::HostState::Booting, None)
        })
        .unwrap();
    json(
        "hosts",
        ferry()
            .current_dir(dir)
            .args(["hosts", "--json", "--state", "site"]),
        &mut outputs,
    );

    let mut found = Vec::new();
    for (name, value) in &outputs {
        not_snake_case(value, name, &mut found);
    }
    assert!(found.is_empty(), "keys that are not snake_case: {found:#?}");

    // The delta's counts: what create left out is what inspect and push
    // say came from the base; storing shared blobs once saves nothing here
    // (no two entries share a stored blob), whatever the base holds.
    assert!(created["base_blobs"].as_u64().unwrap() > 0, "{created}");
    assert_eq!(created["base_blobs"], inspected["base_blobs"]);
    assert_eq!(created["base_bytes"], inspected["base_bytes"]);
    assert_eq!(
        created["base_blobs"], pushed["push"]["blobs_in_base"],
        "{pushed}"
    );
    assert_eq!(
        created["bytes_before_dedup"], created["blob_bytes"],
        "{created}"
    );
    assert_eq!(inspected["bytes_without_dedup"], created["blob_bytes"]);
    let report = &pushed["push"];
    let count = |key: &str| report[key].as_u64().unwrap();
    assert_eq!(
        created["blobs"].as_u64().unwrap(),
        count("blobs_uploaded")
            + count("blobs_skipped")
            + count("blobs_mounted")
            + count("manifests_pushed")
            + count("manifests_skipped"),
        "every blob the delta stores is accounted for once: {created} {pushed}"
    );

    // What a person reads.
    let summary = ok(create(dir).args([
        "-f",
        "delta.yaml",
        "-o",
        "delta.ferry",
        "--since",
        "base.ferry",
    ]));
    let listing = ok(ferry()
        .current_dir(dir)
        .args(["bundle", "inspect", "delta.ferry"]));
    insta::assert_snapshot!(
        format!("{summary}\n{listing}").replace(env!("CARGO_PKG_VERSION"), "VERSION")
    );
}
