//! The spec file: the documented example parses, mistakes are refused
//! with the field and its line, and the committed JSON schema is current.

use std::path::Path;

use ferry_bundle::spec::{Compression, Spec};

fn parse(text: &str) -> Result<Spec, String> {
    Spec::parse(text, Path::new("ferry.yaml")).map_err(|e| e.to_string())
}

fn docs(file: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../docs")
        .join(file)
}

/// The ```yaml blocks of docs/bundle.md that hold a whole spec.
fn documented_specs() -> Vec<String> {
    let text = std::fs::read_to_string(docs("bundle.md")).unwrap();
    let mut specs = Vec::new();
    let mut block: Option<String> = None;
    for line in text.lines() {
        match (&mut block, line.trim_end()) {
            (None, "```yaml") => block = Some(String::new()),
            (Some(b), "```") => {
                if b.starts_with("# ferry.yaml") {
                    specs.push(b.clone());
                }
                block = None;
            }
            (Some(b), l) => {
                b.push_str(l);
                b.push('\n');
            }
            _ => {}
        }
    }
    specs
}

#[test]
fn documented_example_parses() {
    let specs = documented_specs();
    assert!(
        !specs.is_empty(),
        "docs/bundle.md has no `# ferry.yaml` example"
    );
    for text in specs {
        let spec = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert!(!spec.images.is_empty());
    }
}

#[test]
fn every_section_and_shorthand() {
    let spec = parse(
        "name: site\n\
         platforms: [linux/amd64, linux/arm64]\n\
         hosts:\n  reg.local:5000:\n    plain_http: true\n    ca_file: ca.pem\n    username: u\n    password_env: REG_PASSWORD\n\
         images:\n  - nginx:1.27\n  - ref: docker-archive:saved.tar\n    compression: gzip\n    repository: apps/saved\n    tag: v1\n\
         artifacts:\n  - ghcr.io/org/pack:1.0\n\
         charts:\n  - oci: oci://ghcr.io/org/charts/app\n    version: 1.2.3\n  - repo: https://charts.example.com\n    name: app\n    version: 2.0.0\n  - path: charts/local-0.1.0.tgz\n\
         files:\n  - tools/k9s.tar.gz\n  - url: https://example.com/k3s\n    sha256: 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n\
         manifests:\n  - k8s/\n\
         os_images:\n  - ref: registry.example/os/rocky:9\n  - path: isos/rocky.iso\n",
    )
    .unwrap();
    assert_eq!(spec.images.len(), 2);
    assert_eq!(spec.images[0].reference, "nginx:1.27");
    assert_eq!(spec.images[1].compression, Some(Compression::Gzip));
    assert_eq!(spec.platforms.len(), 2);
    assert_eq!(
        spec.hosts["reg.local:5000"].password_env.as_deref(),
        Some("REG_PASSWORD")
    );
    assert_eq!(spec.charts.len(), 3);
    assert_eq!(
        spec.files[0].path.as_deref(),
        Some(Path::new("tools/k9s.tar.gz"))
    );
    assert!(spec.files[1].url.is_some());
    assert_eq!(spec.manifests[0].path, Path::new("k8s/"));
    assert_eq!(spec.os_images.len(), 2);
    // The echo in ferry/bundle.json round-trips.
    let echo = spec.to_json();
    let again: Spec = serde_json::from_value(echo.clone()).unwrap();
    assert_eq!(again.to_json(), echo);
}

/// Each mistake is refused with a message naming what is wrong and the
/// line it is on.
#[test]
fn mistakes_name_the_field_and_line() {
    let cases: &[(&str, &str, u32)] = &[
        (
            "images:\n  - nginx\nimagse:\n  - x\n",
            "unknown field `imagse`",
            3,
        ),
        (
            "images:\n  - nginx:1.27\n  - ref: redis:7\n    platfroms: [linux/amd64]\n",
            "unknown field `platfroms`",
            4,
        ),
        (
            "hosts:\n  reg:\n    insecure: true\n    pasword_env: X\nimages: [a]\n",
            "unknown field `pasword_env`",
            4,
        ),
        (
            "charts:\n  - repo: https://charts.example\n    name: app\n",
            "needs `name` and `version`",
            2,
        ),
        (
            "charts:\n  - oci: oci://r/c\n    path: c.tgz\n",
            "exactly one of `oci`, `repo` or `path`",
            2,
        ),
        ("charts:\n  - app\n", "expected a map", 2),
        (
            "files:\n  - path: a\n    url: https://x/y\n",
            "exactly one of `path` or `url`",
            2,
        ),
        (
            "files:\n  - url: ftp://x/y\n",
            "not an http:// or https:// URL",
            2,
        ),
        (
            "files:\n  - path: a\n    sha256: abc\n",
            "64 lowercase hex",
            2,
        ),
        ("platforms: [linux]\nimages: [a]\n", "invalid platform", 1),
        (
            "images:\n  - ref: nginx\n    compression: zstd\n",
            "docker-archive: sources only",
            2,
        ),
        (
            "images:\n  - ref: x\n    compression: lz4\n",
            "unknown variant `lz4`",
            3,
        ),
        (
            "os_images:\n  - ref: r/os:1\n    path: x.iso\n",
            "exactly one of `ref`, `path` or `url`",
            2,
        ),
        ("images: [a]\nimages: [b]\n", "duplicate", 2),
    ];
    for (text, message, line) in cases {
        let err = parse(text).expect_err(text);
        assert!(err.contains(message), "{text:?}: {err}");
        assert!(
            err.contains(&format!("line {line} ")),
            "{text:?} should point at line {line}: {err}"
        );
        assert!(err.starts_with("ferry.yaml: "), "{err}");
    }
    let empty = parse("name: nothing\n").unwrap_err();
    assert!(empty.contains("lists nothing"), "{empty}");
}

/// docs/ferry.schema.json is generated from the types; it must not drift.
#[test]
fn committed_schema_matches_the_types() {
    let path = docs("ferry.schema.json");
    let generated = serde_json::to_string_pretty(&Spec::json_schema()).unwrap() + "\n";
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
