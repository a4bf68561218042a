//! The air-gapped Kubernetes node story end to end (docs/image-kubernetes.md):
//! on the connected side one bundle carries the OS image, the node's
//! components as files and the images; on the site it is imported and
//! pushed, `ferry image build` makes a node qcow2 and an OVA from it, and
//! the qcow2 boots under QEMU (TCG, bounded) with only a user-network link
//! to the `ferry serve` the test runs.
//!
//! Real in this test: containerd, runc, the CNI plugins and kubectl from
//! Debian's packages (scripts/test-k8s-debs.sh), the OS of
//! scripts/test-os.sh, a static busybox in the small images. Debian ships
//! no kubelet, kubeadm or crictl: small executables that print their
//! version stand in, so the wiring (paths, units, versions) is checked.
//! The guest reports on the serial console what a site engineer would
//! check by hand, then powers off.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ferry_oci::{Digest, media_type};

use crate::images::Layout;
use crate::{Server, ferry, run};

#[path = "../../../ferry-image/tests/it/qemu.rs"]
mod qemu;

/// Debian's packages, unpacked (cached by the script).
fn debs() -> PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/test-k8s-debs.sh");
    let out = std::process::Command::new(&script).output().unwrap();
    assert!(
        out.status.success(),
        "scripts/test-k8s-debs.sh: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

/// A `.tar.gz` of `members` (name, bytes, mode).
fn tgz(path: &Path, members: &[(String, Vec<u8>, u32)]) {
    let mut tar = tar::Builder::new(Vec::new());
    for (name, data, mode) in members {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(*mode);
        h.set_mtime(1_700_000_000);
        h.set_cksum();
        tar.append_data(&mut h, name, &data[..]).unwrap();
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar.into_inner().unwrap()).unwrap();
    std::fs::write(path, gz.finish().unwrap()).unwrap();
}

/// A stand-in executable that prints `version` as its program would.
fn stand_in(program: &str, version: &str) -> Vec<u8> {
    format!("#!/bin/sh\necho \"{program} version {version} (ferry test stand-in)\"\n").into_bytes()
}

/// The component files the bundle carries, in `dir/files`: the release
/// archives' shapes (containerd's `bin/`, the CNI plugins' `./`).
fn component_files(dir: &Path, debs: &Path) {
    let files = dir.join("files");
    std::fs::create_dir_all(&files).unwrap();
    let read = |p: &str| std::fs::read(debs.join("root").join(p)).unwrap();
    tgz(
        &files.join("containerd-1.6.20-linux-amd64.tar.gz"),
        &["containerd", "containerd-shim-runc-v2", "ctr"]
            .map(|b| (format!("bin/{b}"), read(&format!("usr/bin/{b}")), 0o755)),
    );
    std::fs::write(files.join("runc"), read("usr/sbin/runc")).unwrap();
    let mut cni: Vec<(String, Vec<u8>, u32)> = std::fs::read_dir(debs.join("root/usr/lib/cni"))
        .unwrap()
        .map(|e| e.unwrap())
        .map(|e| {
            (
                format!("./{}", e.file_name().to_string_lossy()),
                std::fs::read(e.path()).unwrap(),
                0o755,
            )
        })
        .collect();
    cni.sort();
    cni.push(("./LICENSE".into(), b"Apache-2.0\n".to_vec(), 0o644));
    tgz(&files.join("cni-plugins-linux-amd64-v1.1.1.tgz"), &cni);
    std::fs::write(files.join("kubectl"), read("usr/bin/kubectl")).unwrap();
    std::fs::write(files.join("kubelet"), stand_in("kubelet", "v1.20.2")).unwrap();
    std::fs::write(files.join("kubeadm"), stand_in("kubeadm", "v1.20.2")).unwrap();
    tgz(
        &files.join("crictl-v1.20.0-linux-amd64.tar.gz"),
        &[("crictl".into(), stand_in("crictl", "v1.20.0"), 0o755)],
    );
}

/// A small image: a static busybox and `cmd`; returns its manifest digest.
fn busybox_image(layout: &mut Layout, busybox: &[u8], tag: &str, cmd: &[&str]) -> Digest {
    let mut tar = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_size(busybox.len() as u64);
    h.set_mode(0o755);
    h.set_mtime(1_700_000_000);
    h.set_cksum();
    tar.append_data(&mut h, "bin/busybox", busybox).unwrap();
    // Unique per image, so each has layers of its own.
    let mut h = tar::Header::new_ustar();
    h.set_size(tag.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    tar.append_data(&mut h, "etc/image", tag.as_bytes())
        .unwrap();
    let tar = tar.into_inner().unwrap();
    let diff_id = Digest::sha256(&tar).to_string();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).unwrap();
    let layer = layout.blob(media_type::OCI_LAYER_GZIP, &gz.finish().unwrap());
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": cmd},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    });
    let config = layout.blob(
        media_type::OCI_CONFIG,
        &serde_json::to_vec(&config).unwrap(),
    );
    let manifest = serde_json::json!({
        "schemaVersion": 2, "mediaType": media_type::OCI_MANIFEST, "config": config, "layers": [layer],
    });
    let desc = layout.blob(
        media_type::OCI_MANIFEST,
        &serde_json::to_vec(&manifest).unwrap(),
    );
    let digest: Digest = desc["digest"].as_str().unwrap().parse().unwrap();
    layout.tag(tag, desc);
    digest
}

/// What the guest runs once containerd and the preload import are done,
/// each finding on its own `K8S ` line of the serial console.
const CHECK: &str = r#"#!/bin/sh
out() { echo "K8S $*" > /dev/ttyS0; }
out "containerd=$(systemctl is-active containerd.service) preload=$(systemctl is-active ferry-preload-images.service)"
ctr -n k8s.io images ls | while read -r line; do out "image $line"; done
ctr -n k8s.io run --rm registry.k8s.io/ferry-marker:1 marker > /tmp/run.out 2>&1
out "run $(tr '\n' ' ' < /tmp/run.out)"
for i in $(seq 90); do busybox ip route | grep -q default && break; sleep 1; done
if ctr -n k8s.io images pull --hosts-dir /etc/containerd/certs.d registry.k8s.io/ferry-extra:1 > /tmp/pull.out 2>&1; then
  out "pulled $(ctr -n k8s.io images ls | grep ferry-extra | tr -s ' ')"
else
  out "pull-failed $(tail -5 /tmp/pull.out | tr '\n' ' ')"
fi
out "kubelet=$(systemctl is-enabled kubelet.service) dropins=$(systemctl show -p DropInPaths --value kubelet.service)"
out "kubelet-binary=$(/usr/bin/kubelet --version)"
out "swaps=$(tail -n +2 /proc/swaps | wc -l) swap.target=$(systemctl is-enabled swap.target)"
out "ip_forward=$(cat /proc/sys/net/ipv4/ip_forward) bridge_nf=$(cat /proc/sys/net/bridge/bridge-nf-call-iptables)"
out "cni=$(ls /opt/cni/bin | tr '\n' ' ')"
out "sandbox $(grep sandbox_image /etc/containerd/config.toml | tr -s ' ')"
echo "FERRY-K8S-DONE" > /dev/ttyS0
systemctl poweroff --no-block
"#;

fn node_spec(site: &str) -> String {
    let check = CHECK
        .lines()
        .map(|l| format!("      {l}"))
        .collect::<Vec<_>>()
        .join("\n");
    format!(
        r#"base: os/debian:12
name: k8s-node
version: "1.20.2-test"
files:
  - path: /usr/local/sbin/k8s-check
    mode: "0755"
    content: |
{check}
  - path: /etc/systemd/system/k8s-check.service
    content: |
      [Unit]
      Description=Report the node's state to the test
      After=containerd.service ferry-preload-images.service systemd-networkd.service
      [Service]
      Type=oneshot
      ExecStart=/usr/local/sbin/k8s-check
      [Install]
      WantedBy=multi-user.target
  - path: /etc/systemd/network/20-dhcp.network
    content: |
      [Match]
      Name=en* eth*
      [Network]
      DHCP=ipv4
systemd:
  enable: [k8s-check.service, systemd-networkd.service]
registry_mirrors:
  registry: {site}
  plain_http: true
kubernetes:
  version: 1.20.2
  matrix: matrix.yaml
  components:
    kubelet: {{artifact: k8s/kubelet:v1.20.2}}
    kubeadm: {{artifact: k8s/kubeadm:v1.20.2}}
    kubectl: {{artifact: k8s/kubectl:1.20.2}}
    containerd: {{artifact: k8s/containerd:1.6.20}}
    runc: {{artifact: k8s/runc:1.1.5}}
    cni_plugins: {{artifact: k8s/cni-plugins:1.1.1}}
    crictl: {{artifact: k8s/crictl:v1.20.0}}
  preload:
    images: [registry.k8s.io/ferry-marker:1]
"#
    )
}

/// The test's matrix: Debian's versions, except runc, which the matrix
/// wants newer than Debian's so that the build must be allowed.
const MATRIX: &str = "schema: 1
version: test-1
kubernetes:
  1.20.2:
    containerd: 1.6.x
    runc: 1.1.12
    cni_plugins: 1.1.1
    crictl: 1.20.0
    sandbox_image: registry.k8s.io/pause:3.9
    images: [registry.k8s.io/pause:3.9]
";

fn ok(dir: &Path, args: &[&str]) -> String {
    let out = run(ferry().current_dir(dir).args(args));
    assert!(
        out.status.success(),
        "ferry {args:?}:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_node_image_from_one_bundle_boots_with_its_images_and_the_site_mirror() {
    let debs = debs();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let site_state = d.join("site-registry");
    let server = Server::start(&site_state, &[]);
    let port = server.addr.rsplit(':').next().unwrap().to_string();

    // Connected side: the OS image (from the registry it was built into),
    // the components as files, the images from an OCI layout.
    let os = crate::image::debian_tar();
    ok(
        d,
        &[
            "--state",
            site_state.to_str().unwrap(),
            "image",
            "import",
            os.to_str().unwrap(),
            "--tag",
            "os/debian:12",
        ],
    );
    component_files(d, &debs);
    let busybox = std::fs::read(debs.join("root/bin/busybox")).unwrap();
    let mut layout = Layout::new(&d.join("images"));
    let pause = busybox_image(
        &mut layout,
        &busybox,
        "pause",
        &["/bin/busybox", "sleep", "3600"],
    );
    let marker = busybox_image(
        &mut layout,
        &busybox,
        "marker",
        &["/bin/busybox", "echo", "FERRY-PRELOADED-RAN"],
    );
    busybox_image(&mut layout, &busybox, "extra", &["/bin/busybox", "true"]);
    let file = |path: &str, repository: &str, tag: &str| {
        format!("  - {{path: files/{path}, repository: {repository}, tag: \"{tag}\"}}\n")
    };
    let spec = format!(
        "hosts:\n  \"127.0.0.1:{port}\": {{plain_http: true}}\nimages:\n  - {{ref: \"oci:images:pause\", repository: pause, tag: \"3.9\"}}\n  - {{ref: \"oci:images:marker\", repository: ferry-marker, tag: \"1\"}}\n  - {{ref: \"oci:images:extra\", repository: ferry-extra, tag: \"1\"}}\nos_images:\n  - ref: 127.0.0.1:{port}/os/debian:12\nfiles:\n{}",
        [
            file("kubelet", "k8s/kubelet", "v1.20.2"),
            file("kubeadm", "k8s/kubeadm", "v1.20.2"),
            file("kubectl", "k8s/kubectl", "1.20.2"),
            file(
                "containerd-1.6.20-linux-amd64.tar.gz",
                "k8s/containerd",
                "1.6.20"
            ),
            file("runc", "k8s/runc", "1.1.5"),
            file(
                "cni-plugins-linux-amd64-v1.1.1.tgz",
                "k8s/cni-plugins",
                "1.1.1"
            ),
            file("crictl-v1.20.0-linux-amd64.tar.gz", "k8s/crictl", "v1.20.0"),
        ]
        .concat()
    );
    std::fs::write(d.join("ferry.yaml"), spec).unwrap();
    ok(
        d,
        &["bundle", "create", "-f", "ferry.yaml", "-o", "k8s.ferry"],
    );

    // The site: the bundle into the store the build reads and onto the
    // registry the nodes pull from.
    ok(d, &["--state", "site", "bundle", "import", "k8s.ferry"]);
    let site = format!("10.0.2.2:{port}/site");
    ok(
        d,
        &[
            "bundle",
            "push",
            "k8s.ferry",
            "--to",
            &format!("127.0.0.1:{port}/site"),
            "--insecure",
        ],
    );
    std::fs::write(d.join("matrix.yaml"), MATRIX).unwrap();
    std::fs::write(d.join("k8s-node.yaml"), node_spec(&site)).unwrap();

    // The matrix wants runc 1.1.12: refused, naming both versions, before
    // anything is assembled.
    let refused = run(ferry().current_dir(d).args([
        "--state",
        "site",
        "image",
        "build",
        "-f",
        "k8s-node.yaml",
        "-o",
        "refused",
        "--format",
        "qcow2",
    ]));
    let said = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{said}");
    assert!(
        said.contains("runc 1.1.5") && said.contains("1.1.12") && said.contains("--allow-mismatch"),
        "{said}"
    );
    assert!(!d.join("refused").join("k8s-node.qcow2").exists());

    ok(
        d,
        &[
            "--state",
            "site",
            "image",
            "build",
            "-f",
            "k8s-node.yaml",
            "-o",
            "out",
            "--format",
            "qcow2,ova",
            "--allow-mismatch",
        ],
    );
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("out/manifest.json")).unwrap()).unwrap();
    let k8s = &manifest["rootfs"]["customize"]["kubernetes"];
    let versions: BTreeMap<&str, &str> = k8s["components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["name"].as_str().unwrap(), c["version"].as_str().unwrap()))
        .collect();
    assert_eq!(versions["containerd"], "1.6.20");
    assert_eq!(versions["kubelet"], "v1.20.2");
    assert_eq!(k8s["mismatches"][0]["component"], "runc", "{k8s}");
    assert_eq!(k8s["mismatches"][0]["given"], "1.1.5");
    assert_eq!(k8s["sandbox_image"], format!("{site}/pause:3.9"));
    let preloaded: BTreeMap<&str, &str> = k8s["preloaded"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["name"].as_str().unwrap(), p["digest"].as_str().unwrap()))
        .collect();
    assert_eq!(preloaded["registry.k8s.io/pause:3.9"], pause.to_string());
    assert_eq!(
        preloaded["registry.k8s.io/ferry-marker:1"],
        marker.to_string()
    );
    // The node: booted with only a user-network link to the site registry.
    let log = qemu::boot_with_nic(
        qemu::Firmware::SeaBios,
        &qemu::Medium::Disk {
            path: d.join("out/k8s-node.qcow2"),
            format: "qcow2",
        },
        "user,model=virtio-net-pci",
        "FERRY-K8S-DONE",
        Duration::from_secs(900),
        &d.join("vm"),
    );
    let found: Vec<&str> = log
        .lines()
        // The console interleaves systemd's messages: a finding may start
        // mid-line.
        .filter_map(|l| l.trim_end_matches('\r').split_once("K8S ").map(|(_, f)| f))
        .collect();
    let line = |prefix: &str| {
        found
            .iter()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix:?} line in:\n{}", found.join("\n")))
            .to_string()
    };
    let all = found.join("\n");
    assert_eq!(
        line("containerd="),
        "containerd=active preload=active",
        "{all}"
    );
    for (name, digest) in [
        ("registry.k8s.io/pause:3.9", &pause),
        ("registry.k8s.io/ferry-marker:1", &marker),
        (&format!("{site}/pause:3.9")[..], &pause),
    ] {
        let image = line(&format!("image {name} "));
        assert!(image.contains(&digest.to_string()), "{image}\n{all}");
    }
    assert!(line("run ").contains("FERRY-PRELOADED-RAN"), "{all}");
    assert!(
        line("pulled ").contains("registry.k8s.io/ferry-extra:1"),
        "{all}"
    );
    let kubelet = line("kubelet=");
    assert!(
        kubelet.starts_with("kubelet=enabled")
            && kubelet.contains("kubelet.service.d/10-kubeadm.conf"),
        "{all}"
    );
    assert!(line("kubelet-binary=").contains("v1.20.2"), "{all}");
    assert_eq!(line("swaps="), "swaps=0 swap.target=masked", "{all}");
    assert_eq!(line("ip_forward="), "ip_forward=1 bridge_nf=1", "{all}");
    assert!(
        line("cni=").contains("bridge") && !line("cni=").contains("LICENSE"),
        "{all}"
    );
    assert!(
        line("sandbox ").contains(&format!("{site}/pause:3.9")),
        "{all}"
    );
    // The OVA carries the versions as product properties.
    let ovf = std::fs::read_to_string(d.join("out/k8s-node.ovf")).unwrap();
    for (key, value) in [
        ("KUBERNETES_SEMVER", "v1.20.2"),
        ("CONTAINERD_VERSION", "1.6.20"),
        ("RUNC_VERSION", "1.1.5"),
        ("CNI_VERSION", "v1.1.1"),
    ] {
        let property = format!(
            "ovf:key=\"{key}\" ovf:type=\"string\" ovf:userConfigurable=\"false\" ovf:value=\"{value}\""
        );
        assert!(ovf.contains(&property), "{property} not in\n{ovf}");
    }
    assert!(ovf.contains("ovf:key=\"guestinfo.userdata\""), "{ovf}");

    drop(server);
}

/// `ferry image matrix` prints the shipped matrix; a row alone on request.
#[test]
fn the_matrix_is_printed_as_shipped() {
    let out = run(ferry().args(["image", "matrix", "--kubernetes", "1.30.4"]));
    assert!(out.status.success());
    insta::assert_snapshot!(String::from_utf8_lossy(&out.stdout));
    let json = run(ferry().args(["image", "matrix", "--json"]));
    let matrix: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(matrix["kubernetes"]["1.27.13"]["cni_plugins"], "1.2.0");
}

/// A site's own matrix is checked as a build would: a bad one names the
/// file and the field (usage error), an unknown version lists the known.
#[test]
fn a_bad_matrix_or_an_unknown_version_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("matrix.yaml");
    std::fs::write(&path, MATRIX.replace("runc: 1.1.12", "runc: latest")).unwrap();
    let out = run(ferry().args(["image", "matrix", "--matrix"]).arg(&path));
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(
        said.contains("matrix.yaml") && said.contains("runc") && said.contains("\"latest\""),
        "{said}"
    );
    let out = run(ferry().args(["image", "matrix", "--kubernetes", "1.31.0"]));
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(
        said.contains("1.31.0") && said.contains("1.30.4, 1.29.4, 1.28.9, 1.27.13"),
        "{said}"
    );
}
