//! Customization and sysprep on a small tree the test makes: every step of
//! the spec, checked in the files a distribution's own tools read
//! (`/etc/passwd`, the `.wants/` links, the trust bundle, containerd's
//! `hosts.toml`, ...), with owners and modes from the tree.

use std::path::Path;

use ferry_image::customize::{self, ArtifactFile, ArtifactFiles, ArtifactInfo};
use ferry_image::rootfs::{Kind, Rootfs, layer};
use ferry_image::spec::ImageSpec;
use ferry_oci::{Algorithm, Digest};

struct OneArtifact;

const HELM: &[u8] = b"#!/bin/sh\necho helm\n";

impl ArtifactFiles for OneArtifact {
    fn describe(&self, reference: &str) -> Result<ArtifactInfo, String> {
        if reference != "tools/helm:3.15" {
            return Err(format!("no artifact {reference}"));
        }
        let digest = Digest::of(Algorithm::Sha256, HELM);
        Ok(ArtifactInfo {
            digest: digest.clone(),
            annotations: Default::default(),
            files: vec![ArtifactFile {
                title: "helm".into(),
                digest,
                size: HELM.len() as u64,
            }],
        })
    }

    fn open(&self, _: &str, _: &ArtifactFile) -> Result<Box<dyn std::io::Read + Send>, String> {
        Ok(Box::new(HELM))
    }
}

const CA: &str =
    "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUFERRYTESTCA\n-----END CERTIFICATE-----\n";

fn base_tar() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |path: &str, mode: u32, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_mode(mode);
        h.set_size(data.len() as u64);
        h.set_mtime(1_600_000_000);
        b.append_data(&mut h, path, data).unwrap();
    };
    add("etc/passwd", 0o644, b"root:x:0:0:root:/root:/bin/bash\nman:x:6:12:man:/var/cache/man:/usr/sbin/nologin\nold:x:1000:1000::/home/old:/bin/sh\n");
    add("etc/shadow", 0o640, b"root:*:19000:0:99999:7:::\n");
    add(
        "etc/group",
        0o644,
        b"root:x:0:\nsudo:x:27:\nshadow:x:42:\nold:x:1000:\n",
    );
    add("etc/gshadow", 0o640, b"root:*::\nsudo:*::\n");
    add("etc/hosts", 0o644, b"127.0.0.1\tlocalhost\n");
    add(
        "etc/machine-id",
        0o444,
        b"0123456789abcdef0123456789abcdef\n",
    );
    add("etc/ssh/ssh_host_ed25519_key", 0o600, b"secret");
    add(
        "etc/ssl/certs/ca-certificates.crt",
        0o644,
        b"-----BEGIN CERTIFICATE-----\nUPSTREAM\n-----END CERTIFICATE-----\n",
    );
    add("usr/lib/systemd/system/demo.service", 0o644, b"[Unit]\nDescription=demo\n[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\nAlias=demo-alias.service\n");
    add(
        "usr/lib/systemd/system/multi-user.target",
        0o644,
        b"[Unit]\n",
    );
    add("bin/bash", 0o755, b"ELF");
    add("var/log/syslog", 0o640, b"old logs");
    add("var/cache/apt/archives/old.deb", 0o644, b"deb");
    add("var/lib/systemd/random-seed", 0o600, b"seed");
    b.into_inner().unwrap()
}

const SPEC: &str = r##"
hostname: node7
groups:
  - name: ops
users:
  - name: alice
    groups: [sudo, ops]
    ssh_authorized_keys: ["ssh-ed25519 AAAAKEY alice@site"]
files:
  - path: /etc/motd
    content: "welcome\n"
    mode: "0640"
    owner: alice:ops
  - path: /usr/local/bin/helm
    artifact: tools/helm:3.15
    mode: "0755"
directories:
  - path: /srv/data
    mode: "2775"
    owner: "1001:ops"
symlinks:
  - path: /usr/local/bin/h
    target: helm
ca_certificates: [ca.pem]
systemd:
  enable: [demo.service]
  default_target: multi-user.target
cloud_init:
  user_data: "#cloud-config\nruncmd: [true]\n"
registry_mirrors:
  registry: registry.site:5000/mirror
  upstreams: [docker.io, registry.k8s.io]
  ca_file: ca.pem
"##;

#[test]
fn every_step_lands_where_the_distributions_tools_look() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), CA).unwrap();
    let mut rootfs = Rootfs::new(dir.path().join("stage"), 0).unwrap();
    layer::apply(&mut rootfs, &base_tar()[..], "base", 0).unwrap();
    let spec = ImageSpec::parse(SPEC, Path::new("image.yaml")).unwrap();
    let cx = customize::Context {
        spec_dir: dir.path(),
        mtime: 1_700_000_000,
        artifacts: &OneArtifact,
        kubernetes: &Default::default(),
    };
    let report = customize::apply(&spec, &mut rootfs, &cx).unwrap();
    assert_eq!(report.users, ["alice"]);
    let read = |p: &str| String::from_utf8(rootfs.read(Path::new(p)).unwrap().unwrap()).unwrap();
    let meta = |p: &str| rootfs.tree().get(Path::new(p)).unwrap().meta.clone();

    // Accounts: ids after the image's own (the group `ops`, made first,
    // takes 1001, so alice's own group gets the next free gid, as
    // useradd does), memberships, a shadow line without a password, a
    // home with the key.
    assert!(
        read("etc/passwd").contains("alice:x:1001:1002::/home/alice:/bin/bash\n"),
        "{}",
        read("etc/passwd")
    );
    assert!(read("etc/group").contains("sudo:x:27:alice\n"));
    assert!(
        read("etc/group").contains("ops:x:1001:alice\n"),
        "{}",
        read("etc/group")
    );
    assert!(
        read("etc/group").contains("alice:x:1002:\n"),
        "{}",
        read("etc/group")
    );
    assert!(
        read("etc/shadow").contains("alice:!:19675:0:99999:7:::"),
        "{}",
        read("etc/shadow")
    );
    assert_eq!(meta("etc/shadow").mode, 0o640);
    let keys = meta("home/alice/.ssh/authorized_keys");
    assert_eq!((keys.mode, keys.uid), (0o600, 1001));
    assert_eq!(meta("home/alice/.ssh").mode, 0o700);
    assert_eq!(
        read("home/alice/.ssh/authorized_keys"),
        "ssh-ed25519 AAAAKEY alice@site\n"
    );

    // Files, directories, symlinks, with owners looked up in the image.
    let motd = meta("etc/motd");
    assert_eq!((motd.mode, motd.uid, motd.gid), (0o640, 1001, 1001));
    assert_eq!(read("usr/local/bin/helm"), "#!/bin/sh\necho helm\n");
    assert_eq!(meta("srv/data").mode, 0o2775);
    assert!(matches!(
        &rootfs.tree().get(Path::new("usr/local/bin/h")).unwrap().kind,
        Kind::Symlink { target } if target == Path::new("helm")
    ));

    // Trust store, hostname, systemd, cloud-init.
    assert!(read("etc/ssl/certs/ca-certificates.crt").contains("UPSTREAM"));
    assert!(read("etc/ssl/certs/ca-certificates.crt").contains("FERRYTESTCA"));
    assert!(read("usr/local/share/ca-certificates/ferry-1.crt").contains("FERRYTESTCA"));
    assert_eq!(read("etc/hostname"), "node7\n");
    assert!(read("etc/hosts").contains("127.0.1.1\tnode7"));
    let link = |p: &str| match &rootfs.tree().get(Path::new(p)).unwrap().kind {
        Kind::Symlink { target } => target.display().to_string(),
        other => panic!("{p} is a {}", other.name()),
    };
    assert_eq!(
        link("etc/systemd/system/multi-user.target.wants/demo.service"),
        "/usr/lib/systemd/system/demo.service"
    );
    assert_eq!(
        link("etc/systemd/system/demo-alias.service"),
        "/usr/lib/systemd/system/demo.service"
    );
    assert_eq!(
        link("etc/systemd/system/default.target"),
        "/usr/lib/systemd/system/multi-user.target"
    );
    assert!(read("var/lib/cloud/seed/nocloud/user-data").starts_with("#cloud-config"));
    assert!(read("var/lib/cloud/seed/nocloud/meta-data").contains("instance-id"));

    // The site registry's mirrors for containerd and k3s/RKE2.
    let docker = read("etc/containerd/certs.d/docker.io/hosts.toml");
    assert!(
        docker.contains("server = \"https://registry-1.docker.io\""),
        "{docker}"
    );
    assert!(
        docker.contains("[host.\"https://registry.site:5000/v2/mirror\"]"),
        "{docker}"
    );
    assert!(
        docker.contains("override_path = true") && docker.contains("ca = \"ca.crt\""),
        "{docker}"
    );
    assert!(read("etc/containerd/certs.d/registry.k8s.io/ca.crt").contains("FERRYTESTCA"));
    let k3s = read("etc/rancher/k3s/registries.yaml");
    assert!(k3s.contains("\"^(.*)$\": \"mirror/$1\""), "{k3s}");
    assert_eq!(k3s, read("etc/rancher/rke2/registries.yaml"));
    assert!(read("etc/rancher/k3s/ferry-registry-ca.crt").contains("FERRYTESTCA"));

    // Sysprep: identity gone, logs and caches cleared, directories kept.
    assert_eq!(read("etc/machine-id"), "");
    assert_eq!(meta("etc/machine-id").mode, 0o444);
    for gone in [
        "etc/ssh/ssh_host_ed25519_key",
        "var/log/syslog",
        "var/cache/apt/archives/old.deb",
        "var/lib/systemd/random-seed",
    ] {
        assert!(
            rootfs.tree().get(Path::new(gone)).is_none(),
            "{gone} survived sysprep"
        );
        assert!(
            !rootfs.stage().host_path(Path::new(gone)).exists(),
            "{gone} still staged"
        );
    }
    assert!(rootfs.tree().get(Path::new("var/log")).is_some());
}

#[test]
fn impossible_requests_are_refused_with_what_and_why() {
    let dir = tempfile::tempdir().unwrap();
    let attempt = |spec: &str| {
        let mut rootfs = Rootfs::new(dir.path().join(format!("s{}", spec.len())), 0).unwrap();
        layer::apply(&mut rootfs, &base_tar()[..], "base", 0).unwrap();
        let spec = ImageSpec::parse(spec, Path::new("image.yaml")).unwrap();
        let cx = customize::Context {
            spec_dir: dir.path(),
            mtime: 0,
            artifacts: &OneArtifact,
            kubernetes: &Default::default(),
        };
        customize::apply(&spec, &mut rootfs, &cx)
            .unwrap_err()
            .to_string()
    };
    let users = attempt("users:\n  - name: old\n");
    assert!(
        users.contains("users: old: the image has this user already"),
        "{users}"
    );
    let unit = attempt("systemd:\n  enable: [nope.service]\n");
    assert!(
        unit.contains("no unit file nope.service in the image"),
        "{unit}"
    );
    let owner = attempt("files:\n  - path: /x\n    content: x\n    owner: nobody\n");
    assert!(owner.contains("no user \"nobody\" in the image"), "{owner}");
    let relative = attempt("files:\n  - path: etc/x\n    content: x\n");
    assert!(relative.contains("the path must be absolute"), "{relative}");
    let host = attempt("hostname: \"not a name\"\n");
    assert!(host.contains("is not a host name"), "{host}");
}
