//! The OVA for vSphere: the stream-optimized VMDK ([`super::vmdk`]), the
//! OVF descriptor ([`super::ovf`]) and the manifest, as loose files and
//! as one tar, named as kubernetes-sigs/image-builder names them so the
//! scripts that consume its output find them:
//!
//! ```text
//! <dir>/<name>-disk-0.vmdk
//! <dir>/<name>.ovf
//! <dir>/<name>.mf          SHA256(<name>.ovf)= <hex>, SHA256(<name>-disk-0.vmdk)= <hex>
//! <dir>/<name>.ova         tar: <name>.ovf, <name>-disk-0.vmdk, <name>.mf
//! <dir>/<name>.ova.sha256  the .ova's sha256, hex, nothing else (as image-builder writes it)
//! ```
//!
//! image-builder puts them in `output/<name>/`; `-o output/<name>` gives
//! the same layout. The descriptor's product properties (the image's
//! versions under image-builder's keys, the cloud-init guestinfo keys)
//! are `appliance`'s.
//!
//! What VMware's importers reject, and how this writer avoids it:
//!
//! - A tar whose first member is not the `.ovf` ("Did not find an .ovf
//!   file at the beginning of the OVA package", glennmatthews/cot#82):
//!   the descriptor is the first member; DSP0243 5.3 allows the manifest
//!   after the files it covers, so it is last.
//! - PAX extended headers (`PaxHeader` members), which Python 3.8's
//!   `tarfile` writes by default and which broke ovftool (cot#82) and
//!   oVirt's import (oVirt/ovirt-engine#374); open-vmdk notes vSphere
//!   does not support them (vmware/open-vmdk#65): plain ustar members
//!   only, names under 100 bytes, no GNU long-name members either. A
//!   member of 8 GiB or more, which ustar's size field cannot hold, gets
//!   a GNU header with a base-256 size in place (no extra member), the
//!   form open-vmdk's ova-compose uses by default and vSphere accepts.
//! - Manifest lines in any form but `SHA256(name)= hex`: vSphere 6.7+
//!   refuses SHA1 ("Invalid OVF checksum algorithm: SHA1",
//!   OpenCTI-Platform/opencti#1642), OpenSSL 3's `SHA2-256(...)`
//!   (home-assistant/operating-system#3654) and the BSD form
//!   `SHA256 (name) = hex` ("The following manifest file entry (line 1)
//!   is invalid", nextcloud/vm#910).
//!
//! Every file is written under a temporary name and renamed when whole;
//! the tar is read back (member order, header kinds, every member's
//! sha256 against the manifest) before it gets its name.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use ferry_oci::progress::Progress;
use ferry_oci::{Algorithm, Digest, Hasher};

use super::FileError;
use super::ovf::{self, Appliance, DiskFile, OvfError};
use super::vmdk::{self, StreamOptions, VmdkError, VmdkReport};
use ferry_oci::atomic::AtomicWrite;

/// The largest size a ustar header's 11 octal digits hold.
const USTAR_MAX_SIZE: u64 = (1 << 33) - 1;
/// The ustar name field, without a prefix.
const USTAR_NAME_MAX: usize = 99;

#[derive(Debug, thiserror::Error)]
pub enum OvaError {
    #[error(
        "OVA name {name:?}: use letters, digits, '.', '_', '-' and '+' (not first), \
         short enough that {name}-disk-0.vmdk fits a tar name (99 bytes)"
    )]
    Name { name: String },
    #[error(transparent)]
    Vmdk(#[from] VmdkError),
    #[error(transparent)]
    Ovf(#[from] OvfError),
    #[error(transparent)]
    File(#[from] FileError),
    #[error(transparent)]
    Rootfs(#[from] crate::rootfs::RootfsError),
}

/// What to build.
#[derive(Debug, Clone, PartialEq)]
pub struct OvaOptions {
    /// The base name of every file (image-builder's image name).
    pub name: String,
    pub appliance: Appliance,
    /// VMDK compression threads; 0 uses every core.
    pub threads: usize,
    /// The tar members' modification time (SOURCE_DATE_EPOCH).
    pub mtime: u64,
}

/// A file written, with its size and digest (for manifest.json).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifact {
    pub path: PathBuf,
    pub size: u64,
    pub sha256: Digest,
}

/// What [`write`] produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OvaReport {
    pub ova: Artifact,
    pub ova_sha256_file: PathBuf,
    pub ovf: Artifact,
    pub manifest: Artifact,
    pub disk: Artifact,
    pub vmdk: VmdkReport,
}

/// Writes the OVA set for the raw disk `raw` into `dir` (which must
/// exist); see the module docs. Reports the disk conversion to
/// `progress`.
pub fn write(
    raw: &Path,
    dir: &Path,
    options: &OvaOptions,
    progress: &dyn Progress,
) -> Result<OvaReport, OvaError> {
    let name = &options.name;
    let name_ok = !name.is_empty()
        && !name.starts_with(['.', '-', '+'])
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'+'))
        && format!("{name}-disk-0.vmdk").len() <= USTAR_NAME_MAX;
    if !name_ok {
        return Err(OvaError::Name { name: name.clone() });
    }
    // Refuse a bad appliance before the disk conversion, not after.
    ovf::validate(&options.appliance)?;
    let disk_name = format!("{name}-disk-0.vmdk");
    let ovf_name = format!("{name}.ovf");
    let mf_name = format!("{name}.mf");
    let ova_name = format!("{name}.ova");

    let hardware = &options.appliance.hardware;
    let disk_path = dir.join(&disk_name);
    let vmdk = vmdk::write_stream_optimized(
        raw,
        &disk_path,
        &StreamOptions {
            adapter: hardware.controller.adapter_type(),
            hardware_version: hardware.version,
            threads: options.threads,
        },
        progress,
    )?;
    let disk = Artifact {
        path: disk_path,
        size: vmdk.file_size,
        sha256: vmdk.sha256.clone(),
    };

    let descriptor = ovf::descriptor(
        &options.appliance,
        &DiskFile {
            href: disk_name.clone(),
            size: vmdk.file_size,
            capacity: vmdk.capacity,
            populated_size: vmdk.grains * 65536,
        },
    )?;
    let ovf = write_small(&dir.join(&ovf_name), descriptor.as_bytes())?;
    let manifest_text = format!(
        "SHA256({ovf_name})= {}\nSHA256({disk_name})= {}\n",
        ovf.sha256.hex(),
        disk.sha256.hex()
    );
    let manifest = write_small(&dir.join(&mf_name), manifest_text.as_bytes())?;

    let members = [
        (ovf_name.as_str(), &ovf),
        (disk_name.as_str(), &disk),
        (mf_name.as_str(), &manifest),
    ];
    let ova_path = dir.join(&ova_name);
    let ova = write_tar(&ova_path, &members, options.mtime)?;
    let sha_path = dir.join(format!("{ova_name}.sha256"));
    write_small(&sha_path, ova.sha256.hex().as_bytes())?;
    Ok(OvaReport {
        ova,
        ova_sha256_file: sha_path,
        ovf,
        manifest,
        disk,
        vmdk,
    })
}

fn write_small(path: &Path, bytes: &[u8]) -> Result<Artifact, OvaError> {
    AtomicWrite::new()
        .replace(path, bytes)
        .map_err(FileError::io(path))?;
    Ok(Artifact {
        path: path.to_owned(),
        size: bytes.len() as u64,
        sha256: Digest::sha256(bytes),
    })
}

/// Hashes what passes through.
struct Hashing<T> {
    inner: T,
    hasher: Hasher,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// A member's header: ustar, or GNU (base-256 size, no extra member)
/// past ustar's 8 GiB.
fn member_header(name: &str, size: u64, mtime: u64) -> io::Result<tar::Header> {
    let mut header = if size > USTAR_MAX_SIZE {
        tar::Header::new_gnu()
    } else {
        tar::Header::new_ustar()
    };
    header.set_path(name)?;
    header.set_size(size);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(mtime);
    header.set_cksum();
    Ok(header)
}

fn write_tar(path: &Path, members: &[(&str, &Artifact)], mtime: u64) -> Result<Artifact, OvaError> {
    let write_err = FileError::io(path);
    let target = AtomicWrite::new().open(path).map_err(&write_err)?;
    let (size, sha256) = {
        let out = Hashing {
            inner: BufWriter::with_capacity(1 << 20, target.file()),
            hasher: Hasher::new(Algorithm::Sha256),
        };
        let mut tar = tar::Builder::new(out);
        for (name, artifact) in members {
            let header = member_header(name, artifact.size, mtime).map_err(&write_err)?;
            let file = File::open(&artifact.path).map_err(FileError::io(&artifact.path))?;
            tar.append(&header, file.take(artifact.size))
                .map_err(&write_err)?;
        }
        let mut out = tar.into_inner().map_err(&write_err)?;
        out.flush().map_err(&write_err)?;
        (out.hasher.bytes(), out.hasher.finish())
    };
    verify_tar(target.temp_path(), members, &sha256).map_err(FileError::verify(path))?;
    target.commit().map_err(write_err)?;
    Ok(Artifact {
        path: path.to_owned(),
        size,
        sha256,
    })
}

/// Reads the tar back: exactly `members`, in order, plain regular-file
/// headers, each member's bytes hashing to its artifact's digest, and
/// the whole file to `sha256`.
fn verify_tar(path: &Path, members: &[(&str, &Artifact)], sha256: &Digest) -> Result<(), String> {
    let io = |e: io::Error| format!("reading it: {e}");
    let mut reader = Hashing {
        inner: io::BufReader::with_capacity(1 << 20, File::open(path).map_err(io)?),
        hasher: Hasher::new(Algorithm::Sha256),
    };
    {
        let mut archive = tar::Archive::new(&mut reader);
        let mut expected = members.iter();
        for entry in archive.entries().map_err(io)? {
            let mut entry = entry.map_err(io)?;
            let header = entry.header();
            let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            let Some((want, artifact)) = expected.next() else {
                return Err(format!("an extra member {name}"));
            };
            let plain = header.entry_type() == tar::EntryType::Regular
                && (header.as_ustar().is_some() || header.as_gnu().is_some());
            if name != *want || !plain {
                return Err(format!("member {name} where the plain file {want} belongs"));
            }
            let mut hasher = Hasher::new(Algorithm::Sha256);
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n = entry.read(&mut buf).map_err(io)?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
            }
            if hasher.finish() != artifact.sha256 {
                return Err(format!(
                    "member {name} differs from {}",
                    artifact.path.display()
                ));
            }
        }
        if let Some((missing, _)) = expected.next() {
            return Err(format!("member {missing} is missing"));
        }
    }
    io::copy(&mut reader, &mut io::sink()).map_err(io)?;
    if reader.hasher.finish() != *sha256 {
        return Err("the file's sha256 differs from the bytes written".into());
    }
    Ok(())
}

/// The OVA set as an output of `ferry image build`: `NAME.ova`, its
/// `.ova.sha256`, and the loose `.ovf`, `.mf` and `NAME-disk-0.vmdk`.
pub struct OvaOutput;

impl super::Writer for OvaOutput {
    fn format(&self) -> crate::spec::Format {
        crate::spec::Format::Ova
    }

    fn write(&self, job: &mut super::Job<'_>) -> Result<(), super::OutputError> {
        let raw = job.raw_disk()?;
        let os_release = job
            .rootfs
            .read(Path::new("etc/os-release"))
            .map_err(OvaError::from)?
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned());
        let facts = ImageFacts {
            identity: &job.identity,
            kernel: &job.kernel.version,
            versions: &job.versions,
            os_release: os_release.as_deref(),
            mtime: job.mtime,
        };
        let options = OvaOptions {
            name: job.name.to_string(),
            appliance: appliance(job.name, job.spec, &facts)?,
            threads: job.processors,
            mtime: job.mtime.max(0) as u64,
        };
        let report = write(&raw, job.out, &options, job.progress)?;
        for path in [
            &report.ova.path,
            &report.ova_sha256_file,
            &report.ovf.path,
            &report.manifest.path,
            &report.disk.path,
        ] {
            job.record(crate::spec::Format::Ova, path)?;
        }
        Ok(())
    }
}

/// What the OVA records about the image besides its virtual machine.
struct ImageFacts<'a> {
    /// The image name and base digest.
    identity: &'a str,
    kernel: &'a str,
    /// Component versions (`kubernetes`, `containerd`, ...).
    versions: &'a BTreeMap<String, String>,
    /// The image's `/etc/os-release`, if it has one.
    os_release: Option<&'a str>,
    /// SOURCE_DATE_EPOCH: the build's date.
    mtime: i64,
}

/// The category kubernetes-sigs/image-builder files its properties
/// under (`images/capi/hack/ovf_template.xml`); the same here, so what
/// reads an image-builder OVA's properties finds ferry's where it looks.
const CAPI_CATEGORY: &str = "Cluster API Provider (CAPI)";
const CLOUD_INIT_CATEGORY: &str = "cloud-init (VMware datasource)";

/// The cloud-init VMware datasource's guestinfo keys, with what each
/// holds (cloud-init `doc/rtd/reference/datasources/vmware.rst`): the
/// pairs CAPV sets on every VM it clones (`guestinfo.userdata`,
/// `guestinfo.metadata` and their `.encoding`, base64:
/// cluster-api-provider-vsphere `pkg/services/govmomi/extra/config.go`).
/// image-builder's OVF declares none of them and CAPV sets no vendor
/// data, so the `vendordata` pair is left out.
///
/// How a value reaches the guest matters: CAPV (and `govc vm.change -e`,
/// Terraform's `extra_config`) sets these as the VM's extraConfig
/// variables, which the datasource reads with `vmware-rpctool "info-get
/// guestinfo.userdata"`. A value typed into these properties at deploy
/// time instead reaches the guest inside `guestinfo.ovfEnv`, the OVF
/// environment document of [`ovf::GUEST_INFO_TRANSPORT`], which the
/// datasource does not read (vmware-archive/cloud-init-vmware-guestinfo
/// #67, #70). docs/image.md says so.
const GUESTINFO_KEYS: [(&str, &str, &str); 4] = [
    (
        "guestinfo.metadata",
        "cloud-init metadata",
        "cloud-init metadata (YAML or JSON), encoded as guestinfo.metadata.encoding says",
    ),
    (
        "guestinfo.metadata.encoding",
        "cloud-init metadata encoding",
        "base64, gzip+base64, or empty for plain text",
    ),
    (
        "guestinfo.userdata",
        "cloud-init user data",
        "cloud-init user data, encoded as guestinfo.userdata.encoding says",
    ),
    (
        "guestinfo.userdata.encoding",
        "cloud-init user data encoding",
        "base64, gzip+base64, or empty for plain text",
    ),
];

/// The virtual machine the OVA describes, from the spec's `vm:` section,
/// with the image's facts as read-only product properties and the
/// cloud-init VMware datasource's keys as properties the user may fill at
/// deploy time ([`GUESTINFO_KEYS`]).
fn appliance(
    name: &str,
    spec: &crate::spec::ImageSpec,
    facts: &ImageFacts<'_>,
) -> Result<ovf::Appliance, super::OutputError> {
    use crate::spec::Firmware as F;
    let vm = &spec.vm;
    let controller = match vm.controller.as_deref().unwrap_or("scsi") {
        "scsi" | "lsilogic" => ovf::Controller::LsiLogic,
        "pvscsi" => ovf::Controller::Pvscsi,
        "sata" => ovf::Controller::Sata,
        other => {
            return Err(super::OutputError::Spec {
                what: "vm.controller".into(),
                message: format!("{other:?} is not one of scsi, pvscsi, sata"),
            });
        }
    };
    // image-builder's product version is `kube-<KUBERNETES_SEMVER>`.
    let version = spec.version.clone().unwrap_or_else(|| {
        facts
            .versions
            .get("kubernetes")
            .map_or_else(|| "1.0".into(), |k| format!("kube-{}", semver(k)))
    });
    let mut properties = capi_properties(spec, facts);
    properties.extend([
        ovf::Property::input("base", facts.identity),
        ovf::Property::input("kernel", facts.kernel),
        ovf::Property::input("builder", &format!("ferry {}", env!("CARGO_PKG_VERSION"))),
    ]);
    properties.extend(
        GUESTINFO_KEYS
            .iter()
            .map(|(key, label, description)| ovf::Property {
                key: (*key).to_owned(),
                kind: ovf::PropertyType::String,
                value: String::new(),
                label: Some((*label).to_owned()),
                description: Some((*description).to_owned()),
                user_configurable: true,
                category: Some(CLOUD_INIT_CATEGORY.to_owned()),
            }),
    );
    Ok(ovf::Appliance {
        name: name.to_string(),
        product: ovf::Product {
            product: name.to_string(),
            vendor: None,
            version: version.clone(),
            full_version: Some(version),
            product_url: None,
            vendor_url: None,
        },
        properties,
        os: ovf::GuestOs::from_vmware_id(vm.os_type.as_deref().unwrap_or("other5xLinux64Guest")),
        hardware: ovf::Hardware {
            version: 13,
            firmware: match vm.firmware.unwrap_or(F::Efi) {
                F::Bios => ovf::Firmware::Bios,
                F::Efi => ovf::Firmware::Efi,
            },
            cpus: vm.cpus.unwrap_or(2),
            memory_mib: vm.memory.map_or(4096, |m| m.0 >> 20),
            controller,
            nic: ovf::Nic::Vmxnet3,
        },
        network: "nic0".into(),
        transport: Some(ovf::GUEST_INFO_TRANSPORT.to_owned()),
    })
}

/// The read-only properties image-builder's OVA carries
/// (`images/capi/hack/image-build-ova.py`), under its key names: the
/// build's date (SOURCE_DATE_EPOCH, so builds stay reproducible), the
/// distribution (`/etc/os-release`), and one property per component
/// version.
fn capi_properties(spec: &crate::spec::ImageSpec, facts: &ImageFacts<'_>) -> Vec<ovf::Property> {
    let fixed = |key: &str, value: String| ovf::Property {
        key: key.to_owned(),
        kind: ovf::PropertyType::String,
        value,
        label: None,
        description: None,
        user_configurable: false,
        category: Some(CAPI_CATEGORY.to_owned()),
    };
    let mut properties = vec![
        fixed("BUILD_TIMESTAMP", facts.mtime.to_string()),
        fixed("BUILD_DATE", crate::import::time_text(facts.mtime)),
    ];
    let os_release = |field: &str| {
        facts
            .os_release
            .and_then(|text| os_release_field(text, field))
    };
    if let Some(id) = os_release("ID") {
        properties.push(fixed("DISTRO_NAME", id));
    }
    if let Some(version) = os_release("VERSION_ID") {
        properties.push(fixed("DISTRO_VERSION", version));
    }
    // `linux/amd64[/variant]`: image-builder's distro_arch is `amd64`.
    let platform = spec.platform.as_deref().unwrap_or("linux/amd64");
    if let Some(arch) = platform.split('/').nth(1) {
        properties.push(fixed("DISTRO_ARCH", arch.to_owned()));
    }
    for (component, version) in facts.versions {
        let (key, value) = version_property(component, version);
        properties.push(fixed(&key, value));
    }
    properties
}

/// image-builder's property for a component's version: `KUBERNETES_SEMVER`
/// and `CNI_VERSION` hold its `kubernetes_semver` and
/// `kubernetes_cni_semver`, which carry a leading `v` (`v1.30.4`,
/// `v1.3.0`); `CONTAINERD_VERSION` its `containerd_version`, which does
/// not (`1.7.13`). Components image-builder has no property for get
/// `<COMPONENT>_VERSION` (`RUNC_VERSION`, `CRICTL_VERSION`, ...), the
/// version as given.
fn version_property(component: &str, version: &str) -> (String, String) {
    match component {
        "kubernetes" => ("KUBERNETES_SEMVER".into(), semver(version)),
        "cni" | "cni_plugins" | "cni-plugins" => ("CNI_VERSION".into(), semver(version)),
        "containerd" => (
            "CONTAINERD_VERSION".into(),
            version.strip_prefix('v').unwrap_or(version).to_owned(),
        ),
        other => {
            let upper: String = other
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() {
                        c.to_ascii_uppercase()
                    } else {
                        '_'
                    }
                })
                .collect();
            (format!("{upper}_VERSION"), version.to_owned())
        }
    }
}

/// `version` with the leading `v` Kubernetes' release tags carry.
fn semver(version: &str) -> String {
    if version.starts_with('v') {
        version.to_owned()
    } else {
        format!("v{version}")
    }
}

/// The value of `field` in an os-release(5) text: `KEY=value`, the value
/// possibly in quotes.
fn os_release_field(text: &str, field: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let value = line.trim().strip_prefix(field)?.strip_prefix('=')?;
        let value = value.trim_matches(|c| c == '"' || c == '\'');
        (!value.is_empty()).then(|| value.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const OS_RELEASE: &str = "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nID=debian\nID_LIKE=\"\"\n";

    /// A Kubernetes node image's appliance and its descriptor.
    fn kubernetes_node() -> (ovf::Appliance, String) {
        let versions: BTreeMap<String, String> = [
            ("kubernetes", "1.30.4"),
            ("containerd", "v1.7.13"),
            ("runc", "1.1.12"),
            ("cni_plugins", "1.3.0"),
            ("crictl", "1.28.0"),
        ]
        .into_iter()
        .map(|(c, v)| (c.to_owned(), v.to_owned()))
        .collect();
        let facts = ImageFacts {
            identity: "k8s-node@sha256:0123",
            kernel: "6.1.0-50-amd64",
            versions: &versions,
            os_release: Some(OS_RELEASE),
            mtime: 1_700_000_000,
        };
        let spec = crate::spec::ImageSpec::default();
        let appliance = appliance("k8s-node", &spec, &facts).unwrap();
        let descriptor = ovf::descriptor(
            &appliance,
            &ovf::DiskFile {
                href: "k8s-node-disk-0.vmdk".into(),
                size: 1000,
                capacity: 1 << 30,
                populated_size: 1 << 20,
            },
        )
        .unwrap();
        (appliance, descriptor)
    }

    #[test]
    fn versions_and_the_distribution_are_read_only_properties_under_image_builders_keys() {
        let (appliance, _) = kubernetes_node();
        let fixed: Vec<(&str, &str)> = appliance
            .properties
            .iter()
            .filter(|p| p.category.as_deref() == Some(CAPI_CATEGORY))
            .inspect(|p| assert!(!p.user_configurable, "{} is fixed", p.key))
            .map(|p| (p.key.as_str(), p.value.as_str()))
            .collect();
        assert_eq!(
            fixed,
            [
                ("BUILD_TIMESTAMP", "1700000000"),
                ("BUILD_DATE", "2023-11-14T22:13:20Z"),
                ("DISTRO_NAME", "debian"),
                ("DISTRO_VERSION", "12"),
                ("DISTRO_ARCH", "amd64"),
                ("CNI_VERSION", "v1.3.0"),
                ("CONTAINERD_VERSION", "1.7.13"),
                ("CRICTL_VERSION", "1.28.0"),
                ("KUBERNETES_SEMVER", "v1.30.4"),
                ("RUNC_VERSION", "1.1.12"),
            ]
        );
        assert_eq!(appliance.product.version, "kube-v1.30.4");
        let inputs: Vec<&str> = appliance
            .properties
            .iter()
            .filter(|p| p.key.starts_with("input."))
            .map(|p| p.key.as_str())
            .collect();
        assert_eq!(inputs, ["input.base", "input.kernel", "input.builder"]);
    }

    #[test]
    fn the_cloud_init_keys_are_user_configurable_and_reach_the_guest_through_guestinfo() {
        let (appliance, _) = kubernetes_node();
        let guestinfo: Vec<&ovf::Property> = appliance
            .properties
            .iter()
            .filter(|p| p.key.starts_with("guestinfo."))
            .collect();
        let keys: Vec<&str> = guestinfo.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "guestinfo.metadata",
                "guestinfo.metadata.encoding",
                "guestinfo.userdata",
                "guestinfo.userdata.encoding"
            ]
        );
        for p in guestinfo {
            assert!(p.user_configurable && p.value.is_empty(), "{p:?}");
            assert_eq!(p.kind, ovf::PropertyType::String);
        }
        assert_eq!(appliance.transport.as_deref(), Some("com.vmware.guestInfo"));
    }

    #[test]
    fn a_plain_os_image_has_no_version_properties_and_keeps_its_spec_version() {
        let facts = ImageFacts {
            identity: "os@sha256:0123",
            kernel: "6.1.0",
            versions: &BTreeMap::new(),
            os_release: None,
            mtime: 0,
        };
        let spec = crate::spec::ImageSpec {
            version: Some("2.1".into()),
            platform: Some("linux/arm64/v8".into()),
            ..Default::default()
        };
        let appliance = appliance("os", &spec, &facts).unwrap();
        let keys: Vec<&str> = appliance
            .properties
            .iter()
            .filter(|p| p.category.as_deref() == Some(CAPI_CATEGORY))
            .map(|p| p.key.as_str())
            .collect();
        assert_eq!(keys, ["BUILD_TIMESTAMP", "BUILD_DATE", "DISTRO_ARCH"]);
        assert_eq!(appliance.properties[2].value, "arm64");
        assert_eq!(appliance.product.version, "2.1");
    }

    /// The descriptor carries them as plain string properties, and the
    /// environment transport on the hardware section (the descriptor's
    /// structure is checked against docs/ovf.rng by the integration
    /// tests).
    #[test]
    fn the_descriptor_carries_the_versions_and_the_guestinfo_transport() {
        let (_, descriptor) = kubernetes_node();
        for (key, value) in [
            ("KUBERNETES_SEMVER", "v1.30.4"),
            ("CONTAINERD_VERSION", "1.7.13"),
            ("CNI_VERSION", "v1.3.0"),
            ("DISTRO_NAME", "debian"),
        ] {
            let element = format!(
                "<Property ovf:key=\"{key}\" ovf:type=\"string\" ovf:userConfigurable=\"false\" ovf:value=\"{value}\"/>"
            );
            assert!(descriptor.contains(&element), "{element}\n{descriptor}");
        }
        assert!(descriptor.contains("<Category>Cluster API Provider (CAPI)</Category>"));
        assert!(descriptor.contains(
            "<Property ovf:key=\"guestinfo.userdata\" ovf:type=\"string\" ovf:userConfigurable=\"true\" ovf:value=\"\">"
        ));
        assert!(
            descriptor.contains("<VirtualHardwareSection ovf:transport=\"com.vmware.guestInfo\">")
        );
    }

    #[test]
    fn os_release_fields_with_and_without_quotes() {
        assert_eq!(
            os_release_field(OS_RELEASE, "ID").as_deref(),
            Some("debian")
        );
        assert_eq!(
            os_release_field(OS_RELEASE, "VERSION_ID").as_deref(),
            Some("12")
        );
        assert_eq!(os_release_field(OS_RELEASE, "ID_LIKE"), None);
        assert_eq!(
            os_release_field("ID='rocky'\n", "ID").as_deref(),
            Some("rocky")
        );
    }

    #[test]
    fn members_past_ustar_size_get_a_gnu_header_not_an_extension_member() {
        let small = member_header("a-disk-0.vmdk", 10, 0).unwrap();
        assert!(small.as_ustar().is_some());
        let big = member_header("a-disk-0.vmdk", 9 << 30, 0).unwrap();
        assert!(big.as_gnu().is_some());
        assert_eq!(big.size().unwrap(), 9 << 30);
        assert_eq!(big.entry_type(), tar::EntryType::Regular);
    }
}
