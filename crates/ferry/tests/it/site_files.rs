//! The site files `ferry bundle push` writes, checked the way a site uses
//! them: a bundle made by `ferry bundle create` from a source `ferry serve`
//! (images, Kubernetes manifests in every style vendors ship, a local
//! file) is pushed into a `ferry serve` and Distribution 2.8.2; every
//! relocated manifest must name images the target serves and keep every
//! other byte; every image of the bundle must resolve through the written
//! `hosts.toml` and `registries.yaml` (see `mirror_resolver`) to a 200 from
//! the target, `--map` included, and a real containerd fetches it through
//! the `hosts.toml` with the upstream gone; local entries make no mirror; a reused
//! `--out` directory holds the new set only.

use std::path::{Path, PathBuf};

use ferry_oci::Digest;

use crate::bundle::Distribution;
use crate::containerd::Containerd;
use crate::images::Layout;
use crate::mirror_resolver;
use crate::{Server, ferry, ok, run};

/// A source registry holding `web/backend:2.0` (one image) and
/// `tools/multi:1.5` (an index of amd64 and arm64), and a directory to
/// make bundles in.
struct Source {
    tmp: tempfile::TempDir,
    server: Server,
    /// Digest of the `tools/multi:1.5` index and of its amd64 manifest.
    multi_index: Digest,
    multi_amd64: Digest,
}

impl Source {
    fn new() -> Source {
        let tmp = tempfile::tempdir().unwrap();
        let server = Server::start(&tmp.path().join("source-state"), &[]);
        let layout_dir = tmp.path().join("layout");
        let mut layout = Layout::new(&layout_dir);
        let backend = layout.image(21, 1, 3_000, "amd64", None);
        layout.tag("backend", backend);
        let amd = layout.image(22, 1, 3_000, "amd64", None);
        let arm = layout.image(23, 1, 3_000, "arm64", Some("v8"));
        let multi_amd64: Digest = amd["digest"].as_str().unwrap().parse().unwrap();
        let multi = layout.index(vec![amd, arm]);
        let multi_index: Digest = multi["digest"].as_str().unwrap().parse().unwrap();
        layout.tag("multi", multi);
        for (name, to) in [("backend", "web/backend:2.0"), ("multi", "tools/multi:1.5")] {
            ok(ferry()
                .args(["copy", "--insecure", "-q", "--state"])
                .arg(tmp.path().join("copy-state"))
                .arg(format!("oci:{}:{name}", layout_dir.display()))
                .arg(format!("docker://{}/{to}", server.addr)));
        }
        Source {
            tmp,
            server,
            multi_index,
            multi_amd64,
        }
    }

    fn dir(&self) -> &Path {
        self.tmp.path()
    }

    /// Makes `name` from the spec `body` (`SRC` stands for the source
    /// registry) with `manifests` written under `k8s/`.
    fn bundle(&self, name: &str, body: &str, manifests: &[(&str, String)]) -> PathBuf {
        let dir = self.dir().join(format!("{name}-input"));
        for (path, text) in manifests {
            let path = dir.join("k8s").join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("a.txt"), "a file\n").unwrap();
        let spec = format!(
            "hosts:\n  \"{src}\":\n    plain_http: true\n{}",
            body.replace("SRC", &self.server.addr),
            src = self.server.addr
        );
        std::fs::write(dir.join("ferry.yaml"), spec).unwrap();
        let out = self.dir().join(format!("{name}.ferry"));
        ok(ferry()
            .current_dir(&dir)
            .args(["bundle", "create", "-q", "-f", "ferry.yaml", "--state"])
            .arg(self.dir().join("create-state"))
            .arg("-o")
            .arg(&out));
        out
    }

    /// `ferry bundle push BUNDLE --to TO --insecure --out OUT ARGS...`:
    /// stdout and stderr; fails the test if the push fails.
    fn push(&self, bundle: &Path, to: &str, out: &Path, args: &[&str]) -> (String, String) {
        let mut cmd = ferry();
        cmd.args(["bundle", "push", "--insecure", "--to", to, "--state"])
            .arg(self.dir().join("push-state"))
            .arg("--out")
            .arg(out)
            .args(args)
            .arg(bundle);
        let output = run(&mut cmd);
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(
            output.status.success(),
            "{cmd:?} failed:\n{stdout}\n{stderr}"
        );
        (stdout, stderr)
    }

    fn src(&self, path: &str) -> String {
        format!("{}/{path}", self.server.addr)
    }
}

const IMAGES: &str = "images:\n  - SRC/web/backend:2.0\n  - SRC/tools/multi:1.5\n";

/// The manifests a vendor ships, in every style: pretty and compact JSON,
/// a JSON `List`, flow mappings and sequences, block style with comments
/// and quotes, several documents in one file, the same file name in two
/// directories, an image the bundle lacks, and a template.
fn vendor_manifests(s: &Source) -> Vec<(&'static str, String)> {
    let backend = s.src("web/backend:2.0");
    let multi = s.src("tools/multi:1.5");
    let by_digest = s.src(&format!("tools/multi@{}", s.multi_index));
    let amd64 = s.src(&format!("tools/multi@{}", s.multi_amd64));
    let missing = s.src("other/missing:1.0");
    vec![
        (
            "pod.json",
            format!(
                "{{\n  \"apiVersion\": \"v1\",\n  \"kind\": \"Pod\",\n  \"metadata\": {{\"name\": \"backend\"}},\n  \"spec\": {{\n    \"containers\": [\n      {{\"name\": \"backend\", \"image\": \"{backend}\"}}\n    ]\n  }}\n}}\n"
            ),
        ),
        (
            "list.json",
            format!(
                "{{\"apiVersion\":\"v1\",\"kind\":\"List\",\"items\":[{{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{{\"name\":\"a\"}},\"spec\":{{\"initContainers\":[{{\"name\":\"i\",\"image\":\"{backend}\"}}],\"containers\":[{{\"name\":\"a\",\"image\":\"{multi}\"}}]}}}}]}}"
            ),
        ),
        (
            "flow.yaml",
            format!(
                "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: tools}}\nspec:\n  template:\n    spec:\n      containers:\n        - {{name: x, image: {multi}}}\n        - {{name: y, image: '{backend}', args: [--port, \"80\"]}}\n"
            ),
        ),
        (
            "ds.yaml",
            format!(
                "apiVersion: apps/v1\nkind: DaemonSet\nmetadata:\n  name: agent\nspec:\n  template:\n    spec:\n      containers: [{{name: x, image: \"{backend}\"}}]\n"
            ),
        ),
        (
            "block.yaml",
            format!(
                "# the vendor's comment\napiVersion: v1\nkind: Pod\nmetadata:\n  name: pinned\nspec:\n  containers:\n  - name: multi\n    image: {by_digest}   # pinned\n  - image: \"{multi}\"\n    name: quoted\n  - name: amd64\n    image: {amd64}\n---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: elsewhere\nspec:\n  containers:\n  - name: missing\n    image: {missing}\n"
            ),
        ),
        (
            "more/block.yaml",
            format!("apiVersion: v1\nkind: Pod\nspec:\n  containers:\n  - image: {backend}\n"),
        ),
        (
            "tpl.yaml",
            format!(
                "apiVersion: v1\nkind: Pod\nspec:\n  containers:\n  - image: {{{{ .Values.image }}}}\n  - image: {backend}\n"
            ),
        ),
    ]
}

#[test]
fn manifests_of_every_style_are_relocated_and_keep_every_other_byte() {
    let s = Source::new();
    let manifests = vendor_manifests(&s);
    let bundle = s.bundle(
        "vendor",
        &format!("{IMAGES}manifests:\n  - k8s\nfiles:\n  - a.txt\n"),
        &manifests,
    );
    let target = Server::start(&s.dir().join("target-state"), &[]);
    let out = s.dir().join("site");
    let (_, stderr) = s.push(&bundle, &format!("{}/site", target.addr), &out, &[]);

    let relocations = [
        (
            "web/backend:2.0".to_string(),
            "site/web/backend:2.0".to_string(),
        ),
        (
            "tools/multi:1.5".to_string(),
            "site/tools/multi:1.5".to_string(),
        ),
        (
            format!("tools/multi@{}", s.multi_index),
            format!("site/tools/multi@{}", s.multi_index),
        ),
        (
            format!("tools/multi@{}", s.multi_amd64),
            format!("site/tools/multi@{}", s.multi_amd64),
        ),
    ];
    for (path, text) in &manifests {
        let written = std::fs::read_to_string(out.join("manifests/k8s").join(path))
            .unwrap_or_else(|e| panic!("{path} was not written: {e}"));
        // A template is left as it is (with a warning); everything else has
        // exactly its bundle images relocated.
        let expected = if *path == "tpl.yaml" {
            text.clone()
        } else {
            relocations.iter().fold(text.clone(), |t, (from, to)| {
                t.replace(&s.src(from), &format!("{}/{to}", target.addr))
            })
        };
        assert_eq!(written, expected, "{path}");
    }
    // Every relocated reference is served by the target.
    for (_, to) in &relocations {
        let reference = format!("{}/{to}", target.addr);
        mirror_resolver::direct(&reference).unwrap_or_else(|e| panic!("{e}"));
    }
    let warnings: Vec<String> = stderr
        .lines()
        .filter(|l| l.starts_with("warning:"))
        .map(|l| l.replace(&s.server.addr, "SRC"))
        .collect();
    insta::assert_snapshot!(warnings.join("\n"));
}

#[test]
fn mirror_files_carry_every_map_and_resolve_to_the_target() {
    let mut s = Source::new();
    let bundle = s.bundle("mapped", &format!("{IMAGES}files:\n  - a.txt\n"), &[]);
    // In the air gap the upstream is gone: whatever resolves came from the target.
    s.server.kill();
    let containerd = Containerd::start();
    let references = [
        s.src("web/backend:2.0"),
        s.src("tools/multi:1.5"),
        s.src(&format!("tools/multi@{}", s.multi_index)),
        s.src(&format!("tools/multi@{}", s.multi_amd64)),
    ];
    let ferry_target = Server::start(&s.dir().join("target-state"), &[]);
    let distribution = Distribution::start();
    for (label, addr) in [
        ("ferry", ferry_target.addr.as_str()),
        ("distribution", distribution.addr.as_str()),
    ] {
        let out = s.dir().join(format!("site-{label}"));
        s.push(
            &bundle,
            &format!("{addr}/mapped"),
            &out,
            &["--map", "web=apps/web"],
        );
        let hosts = std::fs::read_to_string(
            out.join("containerd/certs.d")
                .join(&s.server.addr)
                .join("hosts.toml"),
        )
        .unwrap();
        // The upstream keeps its scheme: the spec says it is plain HTTP.
        assert!(
            hosts.contains(&format!("server = \"http://{}\"", s.server.addr)),
            "{hosts}"
        );
        for reference in &references {
            let url = mirror_resolver::containerd(&out.join("containerd/certs.d"), reference)
                .unwrap_or_else(|e| panic!("{label}: {e}\n{hosts}"));
            assert!(url.contains(addr), "{url}");
            containerd
                .fetch(&out.join("containerd/certs.d"), reference)
                .unwrap_or_else(|e| panic!("{label}: {e}\n{hosts}"));
            let url = mirror_resolver::k3s(&out, reference).unwrap_or_else(|e| {
                panic!(
                    "{label}: {e}\n{}",
                    std::fs::read_to_string(out.join("registries.yaml")).unwrap()
                )
            });
            assert!(url.contains(addr), "{url}");
        }
        // Mapped where the push put them.
        let url = mirror_resolver::k3s(&out, &references[0]).unwrap();
        assert!(url.contains("/v2/mapped/apps/web/backend/"), "{url}");
    }
}

#[test]
fn local_entries_make_no_mirror() {
    let s = Source::new();
    let bundle = s.bundle(
        "local",
        "files:\n  - a.txt\nmanifests:\n  - k8s\n",
        &[(
            "cm.yaml",
            "apiVersion: v1\nkind: ConfigMap\ndata: {a: b}\n".to_string(),
        )],
    );
    let target = Server::start(&s.dir().join("target-state"), &[]);
    let out = s.dir().join("site");
    s.push(&bundle, &format!("{}/site", target.addr), &out, &[]);
    assert!(out.join("manifests/k8s/cm.yaml").exists());
    assert!(
        !out.join("containerd").exists(),
        "no registry images, no containerd mirror"
    );
    assert!(!out.join("registries.yaml").exists());
}

#[test]
fn a_reused_out_directory_holds_only_the_new_set() {
    let s = Source::new();
    let first = s.bundle(
        "first",
        &format!("{IMAGES}manifests:\n  - k8s\n"),
        &[(
            "old.yaml",
            format!(
                "kind: Pod\nspec:\n  containers:\n  - image: {}\n",
                s.src("web/backend:2.0")
            ),
        )],
    );
    let second = s.bundle(
        "second",
        "manifests:\n  - k8s\n",
        &[("new.yaml", "kind: ConfigMap\n".to_string())],
    );
    let target = Server::start(&s.dir().join("target-state"), &[]);
    let out = s.dir().join("site");
    let to = format!("{}/site", target.addr);
    s.push(&first, &to, &out, &[]);
    assert!(out.join("manifests/k8s/old.yaml").exists());
    assert!(out.join("registries.yaml").exists());
    s.push(&second, &to, &out, &[]);
    assert!(out.join("manifests/k8s/new.yaml").exists());
    assert!(
        !out.join("manifests/k8s/old.yaml").exists(),
        "a stale manifest of the first push is left"
    );
    assert!(!out.join("registries.yaml").exists());
    assert!(!out.join("containerd").exists());
    // Nothing is left beside it either.
    let siblings: Vec<_> = std::fs::read_dir(s.dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("site") && n != "site")
        .collect();
    assert!(siblings.is_empty(), "{siblings:?}");

    // A directory ferry did not write is never replaced.
    let foreign = s.dir().join("foreign");
    std::fs::create_dir(&foreign).unwrap();
    std::fs::write(foreign.join("notes.txt"), "mine").unwrap();
    let fresh = Server::start(&s.dir().join("fresh-state"), &[]);
    let output = run(ferry()
        .args(["bundle", "push", "--insecure", "--state"])
        .arg(s.dir().join("push-state"))
        .args(["--to", &format!("{}/site", fresh.addr)])
        .arg("--out")
        .arg(&foreign)
        .arg(&first));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("holds notes.txt, which ferry did not write"),
        "{stderr}"
    );
    assert!(stderr.contains("hint: give another --out"), "{stderr}");
    assert!(
        mirror_resolver::direct(&format!("{}/site/web/backend:2.0", fresh.addr)).is_err(),
        "--out is checked before anything is pushed"
    );
    assert_eq!(
        std::fs::read_to_string(foreign.join("notes.txt")).unwrap(),
        "mine"
    );
}

#[test]
fn the_site_ca_goes_into_the_mirror_files() {
    let mut s = Source::new();
    let bundle = s.bundle("tls", IMAGES, &[]);
    s.server.kill();
    let containerd = Containerd::start();
    let target = Server::start(&s.dir().join("target-state"), &["--tls", "auto"]);
    let ca = target
        .banner
        .lines()
        .find_map(|l| l.strip_prefix("created a site CA: "))
        .expect("ferry serve --tls auto names its CA")
        .to_string();
    let out = s.dir().join("site");
    let output = run(ferry()
        .args([
            "bundle",
            "push",
            "--to",
            &format!("{}/tls", target.addr),
            "--state",
        ])
        .arg(s.dir().join("push-state"))
        .arg("--ca-file")
        .arg(&ca)
        .arg("--out")
        .arg(&out)
        .arg(&bundle));
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let hosts = std::fs::read_to_string(
        out.join("containerd/certs.d")
            .join(&s.server.addr)
            .join("hosts.toml"),
    )
    .unwrap();
    assert!(!hosts.contains("skip_verify"), "{hosts}");
    for reference in [s.src("web/backend:2.0"), s.src("tools/multi:1.5")] {
        let url = mirror_resolver::containerd(&out.join("containerd/certs.d"), &reference)
            .unwrap_or_else(|e| panic!("{e}\n{hosts}"));
        assert!(url.starts_with("https://"), "{url}");
        containerd
            .fetch(&out.join("containerd/certs.d"), &reference)
            .unwrap_or_else(|e| panic!("{e}\n{hosts}"));
        mirror_resolver::k3s(&out, &reference).unwrap();
    }
}

#[test]
fn a_partly_failed_push_lists_what_it_created() {
    let s = Source::new();
    let bundle = s.bundle("partly", IMAGES, &[]);
    let target = Server::start(&s.dir().join("target-state"), &[]);
    // Other content already at the second image's tag: with
    // --on-existing-tag fail the push stops there, after the first.
    ok(ferry()
        .args(["copy", "--insecure", "-q", "--state"])
        .arg(s.dir().join("copy-state"))
        .arg(format!("oci:{}:backend", s.dir().join("layout").display()))
        .arg(format!("docker://{}/site/tools/multi:1.5", target.addr)));
    let out = s.dir().join("site");
    let output = run(ferry()
        .args(["bundle", "push", "--insecure", "--on-existing-tag", "fail"])
        .args(["--to", &format!("{}/site", target.addr), "--state"])
        .arg(s.dir().join("push-state"))
        .arg("--out")
        .arg(&out)
        .arg(&bundle));
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr).replace(&target.addr, "TARGET");
    assert!(
        stderr.contains("TARGET/site/web/backend:2.0 (created)"),
        "{stderr}"
    );
    insta::with_settings!({filters => vec![(r"sha256:[0-9a-f]{64}", "[digest]")]}, {
        insta::assert_snapshot!(stderr);
    });
    assert!(!out.exists(), "no site files for a failed push");
}

#[test]
fn a_delta_names_the_manifests_its_base_carries_instead_of_writing_them_empty() {
    let s = Source::new();
    let unchanged = ("same.yaml", "kind: ConfigMap\ndata: {a: b}\n".to_string());
    let base = s.bundle("base", "manifests:\n  - k8s\n", &[unchanged]);
    let input = s.dir().join("base-input");
    std::fs::write(
        input.join("k8s/new.yaml"),
        "kind: ConfigMap\ndata: {c: d}\n",
    )
    .unwrap();
    let delta = s.dir().join("delta.ferry");
    ok(ferry()
        .current_dir(&input)
        .args(["bundle", "create", "-q", "-f", "ferry.yaml", "--state"])
        .arg(s.dir().join("create-state"))
        .arg("--since")
        .arg(&base)
        .arg("-o")
        .arg(&delta));
    let target = Server::start(&s.dir().join("target-state"), &[]);
    let to = format!("{}/site", target.addr);
    s.push(&base, &to, &s.dir().join("base-site"), &[]);
    let out = s.dir().join("site");
    let (_, stderr) = s.push(&delta, &to, &out, &[]);
    assert_eq!(
        std::fs::read_to_string(out.join("manifests/k8s/new.yaml")).unwrap(),
        "kind: ConfigMap\ndata: {c: d}\n"
    );
    assert!(
        !out.join("manifests/k8s/same.yaml").exists(),
        "written although the delta does not carry it"
    );
    assert!(
        stderr.contains("warning: manifests/k8s/same.yaml: unchanged since the base bundle"),
        "{stderr}"
    );
}
