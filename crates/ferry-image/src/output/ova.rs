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
        let options = OvaOptions {
            name: job.name.to_string(),
            appliance: appliance(job)?,
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

/// The virtual machine the OVA describes, from the spec's `vm:` section,
/// with the build's inputs as read-only product properties.
fn appliance(job: &super::Job<'_>) -> Result<ovf::Appliance, super::OutputError> {
    use crate::spec::Firmware as F;
    let vm = &job.spec.vm;
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
    let version = job.spec.version.clone().unwrap_or_else(|| "1.0".into());
    Ok(ovf::Appliance {
        name: job.name.to_string(),
        product: ovf::Product {
            product: job.name.to_string(),
            vendor: None,
            version: version.clone(),
            full_version: Some(version),
            product_url: None,
            vendor_url: None,
        },
        properties: vec![
            ovf::Property::input("base", &job.identity),
            ovf::Property::input("kernel", &job.kernel.version),
            ovf::Property::input("builder", &format!("ferry {}", env!("CARGO_PKG_VERSION"))),
        ],
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
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
