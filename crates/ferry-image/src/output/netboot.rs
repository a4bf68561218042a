//! The netboot set: the image's kernel and initramfs with its
//! `rootfs.squashfs`, and a `netboot.yaml` profile to paste into ferry's
//! netboot configuration.
//!
//! The files are named as `ferry netboot`'s "plain" layout expects them
//! (`vmlinuz`, `initrd.img`, `rootfs.squashfs`), so the set boots as
//! `source: {dir: OUT/netboot}` or, pushed into ferry's store with
//! `--push REPO:TAG`, as `source: {oci: REPO:TAG}`: an ORAS-style
//! artifact (image-spec 1.1 "Guidelines for Artifact Usage", one layer per
//! file titled `org.opencontainers.image.title`), the shape netboot's OCI
//! source reads, so a built image is bootable over the network with no
//! copy step. The kernel command line fetches the squashfs over the same
//! HTTP server (`fetch=` for Debian's live-boot, `root=live:URL` for
//! dracut's dmsquash-live on the RHEL family).

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use ferry_oci::atomic::AtomicWrite;
use ferry_oci::digest::{Algorithm, Hasher};
use ferry_oci::{Descriptor, Digest, media_type};
use ferry_store::{ManifestRef, Store};

use crate::boot::kernel::Kernel;
use crate::boot::live::{LiveInitramfs, NoLiveInitramfs};
use crate::output::FileError;
use crate::rootfs::Rootfs;

/// `artifactType` of a pushed netboot set.
pub const NETBOOT_ARTIFACT_TYPE: &str = "application/vnd.ferry.netboot.v1";

/// The files of the set, as named in it.
pub const KERNEL: &str = "vmlinuz";
pub const INITRD: &str = "initrd.img";
pub const ROOTFS: &str = "rootfs.squashfs";

#[derive(Debug, thiserror::Error)]
pub enum NetbootError {
    #[error(transparent)]
    File(#[from] FileError),
    #[error("--push {reference}: {message}")]
    Push { reference: String, message: String },
    #[error(transparent)]
    Live(#[from] NoLiveInitramfs),
}

/// One file written, for the build report.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SetFile {
    pub path: PathBuf,
    pub size: u64,
    pub sha256: Digest,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct NetbootReport {
    pub files: Vec<SetFile>,
    /// `REPO:TAG` and the manifest digest, when pushed.
    pub pushed: Option<(String, Digest)>,
}

/// Writes the set into directory `dir` (created), the squashfs taken from
/// `squashfs`, its profile naming `final_dir` (where the caller moves
/// it); pushes it to `push` (`REPO:TAG`) in `store` if given.
#[allow(clippy::too_many_arguments)]
pub fn write(
    rootfs: &Rootfs,
    kernel: &Kernel,
    squashfs: &Path,
    name: &str,
    cmdline_extra: &str,
    dir: &Path,
    final_dir: &Path,
    push: Option<(&Store, &str)>,
) -> Result<NetbootReport, NetbootError> {
    let live = LiveInitramfs::detect(rootfs.tree())?;
    fs::create_dir_all(dir).map_err(FileError::io(dir))?;
    let kernel_out = dir.join(KERNEL);
    let initrd_out = dir.join(INITRD);
    let rootfs_out = dir.join(ROOTFS);
    copy_out(rootfs, &kernel.kernel, &kernel_out).map_err(FileError::io(&kernel_out))?;
    copy_out(rootfs, &kernel.initrd, &initrd_out).map_err(FileError::io(&initrd_out))?;
    // A hard link when the squashfs is on the same filesystem: the set
    // costs no second copy of the largest file.
    let _ = fs::remove_file(&rootfs_out);
    fs::hard_link(squashfs, &rootfs_out)
        .or_else(|_| copy(&mut fs::File::open(squashfs)?, &rootfs_out))
        .map_err(FileError::io(&rootfs_out))?;
    let source = match push {
        Some((_, reference)) => format!("{{oci: {reference}}}"),
        None => format!("{{dir: {}}}", final_dir.display()),
    };
    let profile = format!(
        "# Written by ferry image build: paste under `profiles:` in netboot.yaml.\n\
         {name}:\n\
         \x20 source: {source}\n\
         \x20 cmdline: >-\n\
         \x20   {}\n",
        // live-boot takes a download by its extension: ferry's netboot
        // serves a file under any name appended to its URL.
        live.network_cmdline("{{ files.rootfs }}/rootfs.squashfs", cmdline_extra),
    );
    let profile_path = dir.join("netboot.yaml");
    AtomicWrite::new()
        .replace(&profile_path, profile.as_bytes())
        .map_err(FileError::io(&profile_path))?;
    let mut files = Vec::new();
    for path in [&kernel_out, &initrd_out, &rootfs_out, &profile_path] {
        let (sha256, size) = hash_file(path).map_err(FileError::io(path))?;
        files.push(SetFile {
            path: path.clone(),
            size,
            sha256,
        });
    }
    let pushed = match push {
        Some((store, reference)) => {
            let digest = push_set(store, reference, &files[..3])?;
            Some((reference.to_string(), digest))
        }
        None => None,
    };
    Ok(NetbootReport { files, pushed })
}

/// Copies image file `path` out of the stage.
fn copy_out(rootfs: &Rootfs, path: &Path, out: &Path) -> io::Result<()> {
    copy(&mut rootfs.stage().open(path)?, out)
}

/// Writes `out` from `from`, whole or not at all.
fn copy(from: &mut impl io::Read, out: &Path) -> io::Result<()> {
    let mut to = AtomicWrite::new().open(out)?;
    io::copy(from, &mut to)?;
    to.commit()
}

/// sha256 and size of a file, streamed.
pub fn hash_file(path: &Path) -> io::Result<(Digest, u64)> {
    let mut hasher = Hasher::new(Algorithm::Sha256);
    io::copy(&mut fs::File::open(path)?, &mut hasher)?;
    let size = hasher.bytes();
    Ok((hasher.finish(), size))
}

/// Stores the set's three files as an artifact tagged `reference`.
fn push_set(store: &Store, reference: &str, files: &[SetFile]) -> Result<Digest, NetbootError> {
    let fail = |message: String| NetbootError::Push {
        reference: reference.to_string(),
        message,
    };
    let (repository, tag) = reference
        .rsplit_once(':')
        .filter(|(r, t)| {
            !t.contains('/')
                && ferry_oci::name::is_valid_repository(r)
                && ferry_oci::name::is_valid_tag(t)
        })
        .ok_or_else(|| fail("expected REPOSITORY:TAG (e.g. os/debian-netboot:12)".into()))?;
    let empty: &[u8] = b"{}";
    let empty_digest = Digest::sha256(empty);
    store
        .put_blob(repository, &empty_digest, Some(2), &mut &empty[..])
        .map_err(|e| fail(e.to_string()))?;
    let mut layers = Vec::new();
    for file in files {
        let title = file
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut reader = fs::File::open(&file.path).map_err(|e| fail(e.to_string()))?;
        store
            .put_blob(repository, &file.sha256, Some(file.size), &mut reader)
            .map_err(|e| fail(format!("{title}: {e}")))?;
        let mut d = Descriptor::new("application/octet-stream", file.sha256.clone(), file.size);
        d.annotations = Some(BTreeMap::from([(
            media_type::ANNOTATION_TITLE.to_string(),
            title,
        )]));
        layers.push(d);
    }
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_MANIFEST,
        "artifactType": NETBOOT_ARTIFACT_TYPE,
        "config": {
            "mediaType": media_type::OCI_EMPTY,
            "digest": empty_digest,
            "size": 2,
            "data": "e30=",
        },
        "layers": layers,
    });
    let bytes = serde_json::to_vec_pretty(&manifest).expect("serializes");
    store
        .put_manifest(
            repository,
            &ManifestRef::Tag(tag.to_string()),
            &bytes,
            Some(media_type::OCI_MANIFEST),
        )
        .map(|p| p.digest)
        .map_err(|e| fail(e.to_string()))
}

/// The netboot set as an output of `ferry image build`: `OUT/netboot/`,
/// written in the scratch directory, checked, then moved into place whole.
pub struct NetbootOutput;

impl super::Writer for NetbootOutput {
    fn format(&self) -> crate::spec::Format {
        crate::spec::Format::Netboot
    }

    fn write(&self, job: &mut super::Job<'_>) -> Result<(), super::OutputError> {
        let squashfs = job.squashfs()?;
        let staging = job.work.join("netboot");
        let dir = job.out.join("netboot");
        let report = write(
            job.rootfs,
            job.kernel,
            &squashfs,
            job.name,
            &job.cmdline_extra(),
            &staging,
            &dir,
            job.push,
        )?;
        check(job.rootfs, job.kernel, &squashfs, &report)?;
        // The set appears whole: a directory renamed into place, and the
        // rename made durable.
        fs::rename(&staging, &dir)
            .and_then(|()| ferry_oci::atomic::sync_dir(job.out))
            .map_err(FileError::io(&dir))?;
        for file in &report.files {
            let name = file.path.file_name().unwrap_or_default();
            job.record(crate::spec::Format::Netboot, &dir.join(name))?;
        }
        Ok(())
    }
}

/// Reads the set back: the kernel, initrd and squashfs hash as their
/// sources do.
fn check(
    rootfs: &Rootfs,
    kernel: &Kernel,
    squashfs: &Path,
    report: &NetbootReport,
) -> Result<(), NetbootError> {
    let staged = |p: &Path| rootfs.stage().host_path(p);
    let sources = [
        staged(&kernel.kernel),
        staged(&kernel.initrd),
        squashfs.to_path_buf(),
    ];
    for (file, source) in report.files.iter().zip(sources) {
        let (digest, _) = hash_file(&source).map_err(FileError::io(&source))?;
        if digest != file.sha256 {
            return Err(FileError::verify(&file.path)(format!(
                "sha256 {}, its source's is {digest}",
                file.sha256
            ))
            .into());
        }
    }
    Ok(())
}
