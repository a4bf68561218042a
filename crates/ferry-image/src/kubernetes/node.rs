//! What a kubeadm node needs besides the binaries, written as the
//! upstream packages write it:
//!
//! - `kubelet.service` and its `10-kubeadm.conf` drop-in, as the
//!   Kubernetes packages (kubernetes/release, `cmd/krel/templates/latest/`)
//!   install them, with the binaries' directory substituted;
//! - `containerd.service` as containerd's repository ships it, and a
//!   `config.toml`: the systemd cgroup driver (kubeadm's default since
//!   1.22, so kubelet and runc agree), the sandbox image, the CNI
//!   directories and `config_path` for `certs.d/*/hosts.toml`
//!   (containerd docs/hosts.md). containerd 2 reads config version 3,
//!   whose CRI plugins are split in two (docs/PLUGINS.md); 1.x reads 2;
//! - `crictl.yaml` pointing at containerd's socket;
//! - `overlay` and `br_netfilter` loaded at boot, and the sysctls kubeadm's
//!   preflight checks (`net.ipv4.ip_forward`, `bridge-nf-call-iptables`):
//!   systemd-sysctl runs after systemd-modules-load, so the bridge keys
//!   exist when they are set (kubernetes.io/docs/setup/production-environment/container-runtimes/);
//! - swap off: kubelet refuses to start with swap on by default, so swap
//!   lines of `/etc/fstab` are commented out and `swap.target` is masked
//!   (no swap unit, from fstab or systemd-gpt-auto-generator, is started).

use std::path::Path;

use super::KubernetesError;
use crate::customize::{Context, systemd, write_file};
use crate::rootfs::Rootfs;

/// Where unit files ferry adds go: the vendor directory, so that
/// `/etc/systemd/system` stays the administrator's.
pub const UNIT_DIR: &str = "usr/lib/systemd/system";

/// The node's configuration; `bin_dir` is absolute (`/usr/bin`).
pub struct NodeConfig<'a> {
    pub bin_dir: &'a str,
    pub sandbox_image: &'a str,
    /// containerd's major version, when known.
    pub containerd_major: Option<u64>,
}

pub fn apply(
    node: &NodeConfig<'_>,
    rootfs: &mut Rootfs,
    cx: &Context<'_>,
) -> Result<Vec<String>, KubernetesError> {
    let bin = node.bin_dir.trim_end_matches('/');
    let files: [(&str, String, u32); 7] = [
        (
            "usr/lib/systemd/system/kubelet.service",
            KUBELET_SERVICE.replace("{bin}", bin),
            0o644,
        ),
        (
            "usr/lib/systemd/system/kubelet.service.d/10-kubeadm.conf",
            KUBEADM_DROP_IN.replace("{bin}", bin),
            0o644,
        ),
        (
            "usr/lib/systemd/system/containerd.service",
            CONTAINERD_SERVICE.replace("{bin}", bin),
            0o644,
        ),
        ("etc/containerd/config.toml", containerd_config(node), 0o644),
        ("etc/crictl.yaml", CRICTL_YAML.to_string(), 0o644),
        (
            "etc/modules-load.d/kubernetes.conf",
            "# Written by ferry image build: containerd's overlayfs snapshotter and\n# bridged pod traffic seen by iptables.\noverlay\nbr_netfilter\n".to_string(),
            0o644,
        ),
        (
            "etc/sysctl.d/99-kubernetes.conf",
            "# Written by ferry image build: what kubeadm's preflight checks.\nnet.bridge.bridge-nf-call-iptables = 1\nnet.bridge.bridge-nf-call-ip6tables = 1\nnet.ipv4.ip_forward = 1\n".to_string(),
            0o644,
        ),
    ];
    let mut written = Vec::new();
    for (path, text, mode) in files {
        write_file(rootfs, cx, path, text.as_bytes(), mode)?;
        written.push(format!("/{path}"));
    }
    swap_off(rootfs, cx)?;
    systemd::enable_unit(rootfs, cx, "containerd.service")?;
    systemd::enable_unit(rootfs, cx, "kubelet.service")?;
    Ok(written)
}

/// Comments out the swap lines of `/etc/fstab` and masks `swap.target`.
fn swap_off(rootfs: &mut Rootfs, cx: &Context<'_>) -> Result<(), KubernetesError> {
    if let Some(fstab) = rootfs.read(Path::new("etc/fstab"))? {
        let text = String::from_utf8_lossy(&fstab);
        let mut changed = false;
        let lines: Vec<String> = text
            .lines()
            .map(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                if !line.trim_start().starts_with('#') && fields.get(2) == Some(&"swap") {
                    changed = true;
                    format!("# swap off for kubelet (ferry image build): {line}")
                } else {
                    line.to_string()
                }
            })
            .collect();
        if changed {
            write_file(
                rootfs,
                cx,
                "etc/fstab",
                (lines.join("\n") + "\n").as_bytes(),
                0o644,
            )?;
        }
    }
    systemd::mask_unit(rootfs, cx, "swap.target")?;
    Ok(())
}

fn containerd_config(node: &NodeConfig<'_>) -> String {
    let bin = node.bin_dir.trim_end_matches('/');
    let sandbox = toml_string(node.sandbox_image);
    let runc = toml_string(&format!("{bin}/runc"));
    if node.containerd_major.is_some_and(|m| m >= 2) {
        format!(
            r#"# Written by ferry image build (containerd 2, config version 3).
version = 3

[plugins.'io.containerd.cri.v1.images']
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = {sandbox}
  [plugins.'io.containerd.cri.v1.images'.registry]
    config_path = '/etc/containerd/certs.d'

[plugins.'io.containerd.cri.v1.runtime']
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dir = '/opt/cni/bin'
    conf_dir = '/etc/cni/net.d'
  [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
    runtime_type = 'io.containerd.runc.v2'
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
      BinaryName = {runc}
      SystemdCgroup = true
"#
        )
    } else {
        format!(
            r#"# Written by ferry image build (containerd 1.x, config version 2).
version = 2

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = {sandbox}
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/opt/cni/bin"
    conf_dir = "/etc/cni/net.d"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = {runc}
        SystemdCgroup = true
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "/etc/containerd/certs.d"
"#
        )
    }
}

/// A TOML basic string.
fn toml_string(text: &str) -> String {
    serde_json::to_string(text).expect("a string serializes")
}

const KUBELET_SERVICE: &str = "\
[Unit]
Description=kubelet: The Kubernetes Node Agent
Documentation=https://kubernetes.io/docs/
Wants=network-online.target containerd.service
After=network-online.target containerd.service

[Service]
ExecStart={bin}/kubelet
Restart=always
StartLimitInterval=0
RestartSec=10

[Install]
WantedBy=multi-user.target
";

const KUBEADM_DROP_IN: &str = "\
# Note: This dropin only works with kubeadm and kubelet v1.11+
[Service]
Environment=\"KUBELET_KUBECONFIG_ARGS=--bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf --kubeconfig=/etc/kubernetes/kubelet.conf\"
Environment=\"KUBELET_CONFIG_ARGS=--config=/var/lib/kubelet/config.yaml\"
# This is a file that \"kubeadm init\" and \"kubeadm join\" generates at runtime, populating the KUBELET_KUBEADM_ARGS variable dynamically
EnvironmentFile=-/var/lib/kubelet/kubeadm-flags.env
# This is a file that the user can use for overrides of the kubelet args as a last resort. Preferably, the user should use
# the .NodeRegistration.KubeletExtraArgs object in the configuration files instead. KUBELET_EXTRA_ARGS should be sourced from this file.
EnvironmentFile=-/etc/default/kubelet
ExecStart=
ExecStart={bin}/kubelet $KUBELET_KUBECONFIG_ARGS $KUBELET_CONFIG_ARGS $KUBELET_KUBEADM_ARGS $KUBELET_EXTRA_ARGS
";

const CONTAINERD_SERVICE: &str = "\
[Unit]
Description=containerd container runtime
Documentation=https://containerd.io
After=network.target local-fs.target dbus.service

[Service]
ExecStartPre=-/sbin/modprobe overlay
ExecStart={bin}/containerd

Type=notify
Delegate=yes
KillMode=process
Restart=always
RestartSec=5

# Having non-zero Limit*s causes performance problems due to accounting overhead
# in the kernel. We recommend using cgroups to do container-local accounting.
LimitNPROC=infinity
LimitCORE=infinity

# Comment TasksMax if your systemd version does not support it.
# Only systemd 226 and above support this version.
TasksMax=infinity
OOMScoreAdjust=-999

[Install]
WantedBy=multi-user.target
";

const CRICTL_YAML: &str = "\
runtime-endpoint: unix:///run/containerd/containerd.sock
image-endpoint: unix:///run/containerd/containerd.sock
timeout: 10
";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containerd_config_follows_its_major_version() {
        let mut node = NodeConfig {
            bin_dir: "/usr/local/bin",
            sandbox_image: "site:5000/pause:3.9",
            containerd_major: Some(1),
        };
        let v2 = containerd_config(&node);
        assert!(
            v2.contains("version = 2") && v2.contains("sandbox_image = \"site:5000/pause:3.9\"")
        );
        assert!(v2.contains("SystemdCgroup = true") && v2.contains("/usr/local/bin/runc"));
        assert!(v2.contains("config_path = \"/etc/containerd/certs.d\""));
        node.containerd_major = Some(2);
        let v3 = containerd_config(&node);
        assert!(v3.contains("version = 3") && v3.contains("sandbox = \"site:5000/pause:3.9\""));
    }
}
