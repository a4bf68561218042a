//! `image.yaml`: what `ferry image build` makes (docs/image.md, "The spec
//! file"). Every struct refuses unknown fields, so a typo is an error
//! naming the field and its line (serde-saphyr reports both), and the JSON
//! schema ([`ImageSpec::json_schema`]) is generated from these types and
//! committed as `docs/image.schema.json`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ferry_bundle::spec::HostSpec;
use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};

pub use ferry_bundle::spec::SpecError;
use ferry_bundle::spec::{from_yaml, read_spec};

/// The whole spec file.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ImageSpec {
    /// Name of the image: outputs are named after it (`NAME.iso`,
    /// `NAME.ova`, ...). Default: the base image's repository name and tag
    /// (`debian-12`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Version recorded in the OVA's product section and `manifest.json`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The base OS, an OCI image holding a whole OS (kernel and initramfs
    /// included): `os/debian:12` (ferry's store), `bundle:site.ferry[:REF]`,
    /// `registry.site:5000/os/rocky:9`, `oci:DIR[:REF]`,
    /// `oci-archive:FILE[:REF]`. `ferry image build BASE` replaces it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub base: String,
    /// Platform taken from a multi-platform base: `linux/amd64` (default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    /// How to reach registries named in `base`, as in `ferry.yaml`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub hosts: BTreeMap<String, HostSpec>,
    /// Outputs made when `--format` is not given. Default: `[squashfs]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub formats: Vec<Format>,
    #[serde(default)]
    pub squashfs: SquashfsSpec,
    #[serde(default)]
    pub kernel: KernelSpec,
    #[serde(default)]
    pub disk: DiskSpec,
    #[serde(default)]
    pub vm: VmSpec,
    /// Written to `/etc/hostname` and `/etc/hosts`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Groups added to `/etc/group` (and `/etc/gshadow`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<GroupSpec>,
    /// Users added to `/etc/passwd` and `/etc/shadow`, with home
    /// directories and SSH keys.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub users: Vec<UserSpec>,
    /// Files placed in the image.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<FileSpec>,
    /// Directories created in the image.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub directories: Vec<DirectorySpec>,
    /// Symlinks created in the image.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub symlinks: Vec<SymlinkSpec>,
    /// PEM files of CA certificates added to the image's trust store
    /// (relative to the spec file).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ca_certificates: Vec<PathBuf>,
    #[serde(default)]
    pub systemd: SystemdSpec,
    /// A cloud-init NoCloud seed in `/var/lib/cloud/seed/nocloud/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud_init: Option<CloudInitSpec>,
    /// Container runtimes pull from the site registry: containerd
    /// `hosts.toml` per upstream and a k3s/RKE2 `registries.yaml`, the same
    /// files `ferry bundle push` writes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry_mirrors: Option<MirrorSpec>,
    /// A Kubernetes node: components, their configuration and preloaded
    /// images (docs/image-kubernetes.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes: Option<KubernetesSpec>,
    #[serde(default)]
    pub sysprep: SysprepSpec,
}

/// An output format.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// `rootfs.squashfs`.
    Squashfs,
    /// Kernel, initrd, rootfs.squashfs and a `netboot.yaml` profile.
    Netboot,
    /// A hybrid live ISO: BIOS and UEFI, CD and USB stick.
    Iso,
    /// A raw GPT disk: ESP + ext4 root, BIOS and UEFI.
    Raw,
    /// The raw disk as qcow2.
    Qcow2,
    /// The raw disk as a stream-optimized VMDK in an OVA for vSphere.
    Ova,
}

impl Format {
    pub const ALL: [Format; 6] = [
        Format::Squashfs,
        Format::Netboot,
        Format::Iso,
        Format::Raw,
        Format::Qcow2,
        Format::Ova,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Format::Squashfs => "squashfs",
            Format::Netboot => "netboot",
            Format::Iso => "iso",
            Format::Raw => "raw",
            Format::Qcow2 => "qcow2",
            Format::Ova => "ova",
        }
    }
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Format::ALL
            .into_iter()
            .find(|f| f.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown format {s:?} (formats: {})",
                    Format::ALL.map(Format::as_str).join(", ")
                )
            })
    }
}

/// The squashfs root filesystem (also inside the ISO and netboot set).
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SquashfsSpec {
    /// `zstd` (default) or `xz`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compression: Option<SquashfsCompression>,
    /// Compression level (zstd 1-22, default 15 as mksquashfs; xz has none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<u32>,
    /// Block size: a power of two from 4K to 1M (default 128K).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_size: Option<Size>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SquashfsCompression {
    Zstd,
    Xz,
    Gzip,
}

/// The kernel command line.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KernelSpec {
    /// Added to every boot entry's command line (after what ferry needs to
    /// find the root filesystem). Default: `console=tty0 console=ttyS0,115200n8`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmdline: Option<String>,
}

/// The raw disk (and qcow2, VMDK).
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DiskSpec {
    /// Disk size (`8G`, `20GiB`). Default: what the tree needs plus
    /// `free`. A size below what the tree needs is an error naming both.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<Size>,
    /// Free space left in the root filesystem when the size is automatic
    /// (default 1G).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub free: Option<Size>,
}

/// Virtual hardware described in the OVA.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VmSpec {
    /// `efi` (default) or `bios`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firmware: Option<Firmware>,
    /// Virtual CPUs (default 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<u32>,
    /// Memory (default 4G).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<Size>,
    /// Disk controller: `scsi` (LSI Logic, default), `pvscsi` or `sata`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller: Option<String>,
    /// vSphere guest OS id (default `other5xLinux64Guest`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os_type: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Firmware {
    Bios,
    Efi,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupSpec {
    pub name: String,
    /// Default: the next free id from 1000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gid: Option<u32>,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UserSpec {
    pub name: String,
    /// Default: the next free id from 1000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    /// Primary group: a group name; default a group named after the user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Supplementary groups (they must exist in the image or in `groups`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// Default `/home/NAME`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub home: Option<String>,
    /// Default `/bin/bash` when the image has it, else `/bin/sh`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gecos: Option<String>,
    /// A crypt(3) hash for `/etc/shadow` (`mkpasswd -m sha-512`). Default:
    /// no password login (`!`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_hash: Option<String>,
    /// Lines of `~/.ssh/authorized_keys`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ssh_authorized_keys: Vec<String>,
}

/// One file to place; exactly one of `content`, `source`, `artifact`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileSpec {
    /// Absolute path in the image.
    pub path: String,
    /// The file's text, inline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// A local file (relative to the spec file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<PathBuf>,
    /// A file artifact in ferry's store (`tools/helm:3.15`) or a bundle
    /// (`bundle:site.ferry:tools/helm:3.15`): its one file, or the file
    /// named by `artifact_file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact: Option<String>,
    /// Which file of a multi-file artifact (its title).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_file: Option<String>,
    /// Octal, default `0644` (`0755` for `source` files that are executable).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// `USER:GROUP` by name (looked up in the image) or number; default root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DirectorySpec {
    pub path: String,
    /// Octal, default `0755`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SymlinkSpec {
    pub path: String,
    pub target: String,
}

/// systemd units, changed as `systemctl` would without running it.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SystemdSpec {
    /// Units enabled: the `.wants/` (or `.requires/`) symlinks of their
    /// `[Install]` section.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub enable: Vec<String>,
    /// Units disabled: those symlinks removed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub disable: Vec<String>,
    /// Units masked (linked to `/dev/null`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mask: Vec<String>,
    /// The default target (`multi-user.target`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_target: Option<String>,
}

/// cloud-init NoCloud seed; each part inline or from a file.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CloudInitSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_data: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_data_file: Option<PathBuf>,
    /// Default: `instance-id` and `local-hostname` from the image name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta_data: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta_data_file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_config: Option<String>,
}

/// Where container runtimes in the image pull from.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MirrorSpec {
    /// The site registry: `HOST[:PORT][/PREFIX]`, where `ferry bundle push
    /// --to` put the images.
    pub registry: String,
    /// Upstream registries mirrored (`docker.io`, `registry.k8s.io`, ...).
    /// Default with a `kubernetes:` section: every registry its images
    /// name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub upstreams: Vec<String>,
    /// The registry speaks plain HTTP.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub plain_http: bool,
    /// Skip TLS verification.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure: bool,
    /// The registry's CA (PEM), also added to the trust store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
}

/// A Kubernetes node image (docs/image-kubernetes.md).
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KubernetesSpec {
    /// The Kubernetes version (`1.30.4`; a leading `v` is allowed): the
    /// compatibility matrix's row the components are checked against.
    pub version: String,
    /// A compatibility matrix file replacing the one ferry ships
    /// (relative to the spec file; `ferry image matrix` prints the
    /// shipped one). `--matrix` replaces it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matrix: Option<PathBuf>,
    /// Where kubelet, kubeadm, kubectl, containerd, runc and crictl are
    /// installed: `/usr/bin` (default) or `/usr/local/bin`. CNI plugins
    /// go to `/opt/cni/bin`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bin_dir: Option<String>,
    pub components: ComponentsSpec,
    /// The pod sandbox image containerd runs (`sandbox_image`). Default:
    /// the matrix's pause image. With `registry_mirrors`, containerd is
    /// pinned to its copy on the site registry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox_image: Option<String>,
    #[serde(default)]
    pub preload: PreloadSpec,
}

/// The components of a node, each a file artifact (or an archive of
/// them) in ferry's store or a bundle.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ComponentsSpec {
    pub kubelet: ComponentSpec,
    pub kubeadm: ComponentSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubectl: Option<ComponentSpec>,
    pub containerd: ComponentSpec,
    pub runc: ComponentSpec,
    pub cni_plugins: ComponentSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crictl: Option<ComponentSpec>,
}

/// One component.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ComponentSpec {
    /// A file artifact: `files/kubelet:v1.30.4` (ferry's store) or
    /// `bundle:site.ferry:files/kubelet:v1.30.4`. Every file it holds is
    /// installed; a `.tar`, `.tar.gz` or `.tgz` is unpacked and its
    /// executables installed.
    pub artifact: String,
    /// The component's version. Default: the artifact's
    /// `org.opencontainers.image.version` annotation, else its tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// Images containerd has before kubelet starts.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PreloadSpec {
    /// The matrix's control-plane images for the version (what `kubeadm
    /// config images list` prints), default true.
    #[serde(default = "yes")]
    pub control_plane: bool,
    /// More images, by the name the node uses (`docker.io/library/busybox:1.36`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<PreloadImage>,
    /// Where images are read from when an image does not say: `store`
    /// (ferry's store, where `ferry bundle import` put them; default),
    /// `bundle:FILE`, or a registry `HOST[:PORT][/PREFIX]` (as `ferry
    /// bundle push --to` placed them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
}

impl Default for PreloadSpec {
    fn default() -> Self {
        PreloadSpec {
            control_plane: true,
            images: Vec::new(),
            from: None,
        }
    }
}

/// A preloaded image: its name on the node, or the name and where to
/// read it.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum PreloadImage {
    Name(String),
    From {
        /// The name containerd gives it (`registry.k8s.io/pause:3.9`).
        name: String,
        /// Where it is read: a store reference (`store:pause:3.9`), a
        /// bundle entry (`bundle:site.ferry:REF`), a registry reference,
        /// `oci:DIR:REF` or `oci-archive:FILE:REF`.
        from: String,
    },
}

impl PreloadImage {
    pub fn name(&self) -> &str {
        match self {
            PreloadImage::Name(name) | PreloadImage::From { name, .. } => name,
        }
    }
}

/// What is cleaned so every clone boots as a new machine.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SysprepSpec {
    /// Default true: empty machine-id, no SSH host keys, logs and package
    /// caches cleared.
    #[serde(default = "yes")]
    pub enabled: bool,
}

impl Default for SysprepSpec {
    fn default() -> Self {
        SysprepSpec { enabled: true }
    }
}

fn yes() -> bool {
    true
}

/// A size in bytes, written `4G`, `512M`, `20GiB`, `128K` or a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[schemars(with = "String")]
pub struct Size(pub u64);

impl std::str::FromStr for Size {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (number, unit) = t.split_at(split);
        let number: u64 = number
            .parse()
            .map_err(|_| format!("{s:?}: expected a size such as 4G, 512M or 20GiB"))?;
        let factor: u64 = match unit.trim().to_ascii_uppercase().as_str() {
            "" | "B" => 1,
            "K" | "KB" | "KIB" => 1 << 10,
            "M" | "MB" | "MIB" => 1 << 20,
            "G" | "GB" | "GIB" => 1 << 30,
            "T" | "TB" | "TIB" => 1 << 40,
            _ => return Err(format!("{s:?}: unknown unit {unit:?} (K, M, G, T)")),
        };
        number
            .checked_mul(factor)
            .map(Size)
            .ok_or_else(|| format!("{s:?} is too large"))
    }
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Number(n) => Ok(Size(n)),
            Raw::Text(t) => t.parse().map_err(serde::de::Error::custom),
        }
    }
}

impl ImageSpec {
    /// JSON schema of the file, for editors and `docs/image.schema.json`.
    pub fn json_schema() -> serde_json::Value {
        serde_json::to_value(schemars::schema_for!(ImageSpec)).expect("schema serializes")
    }

    /// Reads and parses `path`.
    pub fn load(path: &Path) -> Result<ImageSpec, SpecError> {
        ImageSpec::parse(&read_spec(path)?, path)
    }

    /// Parses `text`; `path` names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<ImageSpec, SpecError> {
        let parse_err = |message: String| SpecError::Parse {
            path: path.to_path_buf(),
            message,
        };
        let spec: ImageSpec = from_yaml(text, path)?;
        for file in &spec.files {
            let sources = [
                file.content.is_some(),
                file.source.is_some(),
                file.artifact.is_some(),
            ];
            if sources.iter().filter(|s| **s).count() != 1 {
                return Err(parse_err(format!(
                    "files: {}: give exactly one of content, source, artifact",
                    file.path
                )));
            }
        }
        Ok(spec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!("4G".parse::<Size>().unwrap(), Size(4 << 30));
        assert_eq!("512MiB".parse::<Size>().unwrap(), Size(512 << 20));
        assert_eq!("128K".parse::<Size>().unwrap(), Size(128 << 10));
        assert!("4X".parse::<Size>().is_err());
    }

    #[test]
    fn unknown_fields_are_named_with_their_line() {
        let err = ImageSpec::parse("base: os/debian:12\nhostnme: x\n", Path::new("image.yaml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("hostnme") && err.contains("line 2"), "{err}");
        let err = ImageSpec::parse(
            "base: x:1\nfiles:\n  - path: /a\n    content: x\n    source: b\n",
            Path::new("image.yaml"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("exactly one"), "{err}");
    }
}
