//! The output writers: each turns the [`crate::rootfs::Rootfs`] (and what
//! the other writers made from it) into one artifact, reads it back, and
//! only then puts it under its final name.

pub mod disk;
pub mod iso;
pub mod netboot;
pub mod ova;
pub mod ovf;
pub mod pipeline;
pub mod qcow2;
pub mod raw;
pub mod seed;
pub mod squashfs;
pub mod vmdk;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use ferry_oci::Digest;
use ferry_oci::atomic::AtomicWrite;
use ferry_oci::progress::Progress;
use serde::Serialize;

use crate::boot::kernel::Kernel;
use crate::rootfs::Rootfs;
use crate::spec::{Format, ImageSpec};

/// Every output format ferry builds, in the order a build runs them:
/// the squashfs-based outputs first, then the disk and what is made from
/// it (the disk writer adds disk-only files such as `fstab` to the tree).
/// A new format is a module with a [`Writer`] and one line here.
pub const WRITERS: &[&dyn Writer] = &[
    &squashfs::SquashfsOutput,
    &netboot::NetbootOutput,
    &iso::IsoOutput,
    &disk::RawOutput,
    &qcow2::Qcow2Output,
    &ova::OvaOutput,
];

/// One output format of `ferry image build`.
pub trait Writer: Sync {
    fn format(&self) -> Format;
    /// Writes the format's files under `job.out`, each read back before
    /// it got its final name, and records them with [`Job::record`].
    fn write(&self, job: &mut Job<'_>) -> Result<(), OutputError>;
}

/// Why an output could not be made.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error(transparent)]
    Squashfs(#[from] squashfs::SquashfsError),
    #[error(transparent)]
    Netboot(#[from] netboot::NetbootError),
    #[error(transparent)]
    Iso(#[from] iso::IsoError),
    #[error(transparent)]
    Disk(#[from] disk::DiskError),
    #[error(transparent)]
    Qcow2(#[from] qcow2::Qcow2Error),
    #[error(transparent)]
    Ova(#[from] ova::OvaError),
    #[error("{what}: {message}")]
    Spec { what: String, message: String },
    #[error(transparent)]
    File(#[from] FileError),
}

/// An output file that could not be written or read, or that does not
/// read back as it was written: the error every writer gives for its
/// files.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path} does not read back as written: {what}; the output disk or the file system \
         is failing, check it and build again"
    )]
    Verify { path: PathBuf, what: String },
}

impl FileError {
    /// For `map_err`: an I/O error on `path`.
    pub fn io(path: &Path) -> impl Fn(std::io::Error) -> FileError + '_ {
        move |source| FileError::Io {
            path: path.to_owned(),
            source,
        }
    }

    /// For `map_err`: `path` failed its read-back, for the reason given.
    pub fn verify(path: &Path) -> impl Fn(String) -> FileError + '_ {
        move |what| FileError::Verify {
            path: path.to_owned(),
            what,
        }
    }
}

/// One file a build made, for `manifest.json`.
#[derive(Debug, Clone, Serialize)]
pub struct Written {
    pub format: Format,
    /// Relative to the output directory.
    pub path: PathBuf,
    pub size: u64,
    pub sha256: Digest,
}

/// A build in progress, as the writers see it: the tree, the kernel, where
/// files go, and the intermediates already made.
pub struct Job<'a> {
    pub rootfs: &'a mut Rootfs,
    pub kernel: &'a Kernel,
    pub spec: &'a ImageSpec,
    pub spec_dir: &'a Path,
    pub name: &'a str,
    /// Seeds every UUID, GUID and serial (with `mtime`): the image name and
    /// the base image's digest.
    pub identity: String,
    /// Versions of what the image carries, by component (`kubernetes`,
    /// `containerd`, ...): the OVA's product properties and manifest.json.
    pub versions: std::collections::BTreeMap<String, String>,
    pub formats: &'a BTreeSet<Format>,
    pub out: &'a Path,
    /// Scratch directory on the output's filesystem.
    pub work: &'a Path,
    pub mtime: i64,
    pub processors: usize,
    /// Where the netboot set is pushed: ferry's store and `REPO:TAG`.
    pub push: Option<(&'a ferry_store::Store, &'a str)>,
    pub progress: &'a dyn Progress,
    pub squashfs: Option<PathBuf>,
    pub raw: Option<PathBuf>,
    pub written: Vec<Written>,
    /// How long the intermediates took (`squashfs`, `raw`), for the
    /// build's step times.
    pub steps: Vec<crate::build::StepTime>,
}

impl Job<'_> {
    /// Records `path` (a file under `out`) as an output of `format`,
    /// hashing it.
    pub fn record(&mut self, format: Format, path: &Path) -> Result<(), OutputError> {
        let (sha256, size) = netboot::hash_file(path).map_err(FileError::io(path))?;
        self.written.push(Written {
            format,
            path: path.strip_prefix(self.out).unwrap_or(path).to_path_buf(),
            size,
            sha256,
        });
        Ok(())
    }

    /// The extra kernel command line: the spec's, else the consoles'
    /// defaults are added by each writer itself.
    pub fn cmdline_extra(&self) -> String {
        self.spec.kernel.cmdline.clone().unwrap_or_default()
    }

    /// The root filesystem as squashfs: `OUT/rootfs.squashfs` when that is
    /// an output, else in the scratch directory; made once, verified.
    pub fn squashfs(&mut self) -> Result<PathBuf, OutputError> {
        if let Some(path) = &self.squashfs {
            return Ok(path.clone());
        }
        let wanted = self.formats.contains(&Format::Squashfs);
        let path = if wanted {
            self.out.join("rootfs.squashfs")
        } else {
            self.work.join("rootfs.squashfs")
        };
        let started = std::time::Instant::now();
        let options = squashfs::options(self.spec, self.processors, self.mtime)?;
        // Read back before it gets its name: nothing unverified ever has
        // the final name.
        let target = AtomicWrite::new()
            .open(&path)
            .map_err(FileError::io(&path))?;
        squashfs::write_to(self.rootfs, target.file(), &options, self.progress)?;
        squashfs::verify(target.temp_path(), self.rootfs)?;
        target.commit().map_err(FileError::io(&path))?;
        if wanted {
            self.record(Format::Squashfs, &path)?;
        }
        self.steps
            .push(crate::build::StepTime::since("squashfs", started));
        self.squashfs = Some(path.clone());
        Ok(path)
    }

    /// The raw disk: `OUT/NAME.raw` when that is an output, else in the
    /// scratch directory; made once (its writer verifies it).
    pub fn raw_disk(&mut self) -> Result<PathBuf, OutputError> {
        if let Some(path) = &self.raw {
            return Ok(path.clone());
        }
        let wanted = self.formats.contains(&Format::Raw);
        let path = if wanted {
            self.out.join(format!("{}.raw", self.name))
        } else {
            self.work.join("disk.raw")
        };
        let started = std::time::Instant::now();
        let options = disk::DiskOptions {
            size: self.spec.disk.size.map(|s| s.0),
            free: self.spec.disk.free.map_or(1 << 30, |s| s.0),
            cmdline_extra: self.cmdline_extra(),
            identity: self.identity.clone(),
            mtime: self.mtime,
        };
        disk::write(
            self.rootfs,
            self.kernel,
            &options,
            &path,
            self.work,
            self.progress,
        )?;
        if wanted {
            self.record(Format::Raw, &path)?;
        }
        self.steps
            .push(crate::build::StepTime::since("raw", started));
        self.raw = Some(path.clone());
        Ok(path)
    }
}
