//! `ferry image build`: one base image in, the formats asked for out.
//!
//! 1. The output directory must be absent or empty: a build never mixes
//!    its files with others.
//! 2. The root filesystem is assembled in a scratch directory inside it
//!    (`OUT/.ferry-build`, removed at the end whatever happens) from the
//!    verified layers, then customized ([`crate::assemble`]).
//! 3. The kernel and initramfs are found ([`crate::boot::kernel`]).
//! 4. Each registered writer ([`crate::output::WRITERS`]) whose format is
//!    asked for runs, in registration order: the squashfs-based outputs
//!    before the disk ones (the disk writer adds disk-only files, such as
//!    `fstab`, to the tree). Intermediates (the squashfs, the raw disk)
//!    are made once, in the scratch directory unless they are outputs
//!    themselves. Every writer reads its output back before it renames it
//!    into place, so a file under its final name is complete and checked.
//! 5. `manifest.json` records the base image, every input, the kernel and
//!    each output's size and sha256; with the same inputs and
//!    SOURCE_DATE_EPOCH, every byte of every output is the same.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use ferry_oci::Digest;
use ferry_oci::progress::Progress;
use serde::Serialize;

use crate::assemble::{self, AssembleError, AssembleReport};
use crate::boot::kernel::{self, KernelError};
use crate::customize::ArtifactFiles;
use crate::output::{self, FileError, Job, OutputError, Written};
use crate::source::BaseImage;
use crate::spec::{Format, ImageSpec};

/// The scratch directory inside the output directory.
const WORK: &str = ".ferry-build";

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(
        "the output directory {path} is not empty: give a new or empty directory (a build never mixes its files with others)"
    )]
    OutputNotEmpty { path: String },
    #[error(transparent)]
    File(#[from] FileError),
    #[error(transparent)]
    Assemble(#[from] AssembleError),
    #[error(transparent)]
    Kernel(#[from] KernelError),
    #[error(transparent)]
    Output(#[from] OutputError),
    #[error("{0:?} is not a valid image name (letters, digits, . _ -)")]
    Name(String),
    #[error(transparent)]
    Kubernetes(#[from] crate::kubernetes::KubernetesError),
}

/// What to build.
pub struct BuildRequest<'a> {
    pub spec: &'a ImageSpec,
    /// Relative paths of the spec start here.
    pub spec_dir: &'a Path,
    /// Outputs are named after it.
    pub name: String,
    pub formats: BTreeSet<Format>,
    pub out: PathBuf,
    /// SOURCE_DATE_EPOCH: every timestamp ferry writes.
    pub mtime: i64,
    /// Compression threads.
    pub processors: usize,
    /// Push the netboot set as an artifact to ferry's store: (store, REPO:TAG).
    pub push: Option<(ferry_store::Store, String)>,
    /// Keep the scratch directory (for debugging a build).
    pub keep_work: bool,
    /// The matrix, --allow-mismatch and the preloaded images of a
    /// `kubernetes:` section.
    pub kubernetes: crate::kubernetes::Inputs,
}

/// `manifest.json`, and what the command prints.
#[derive(Debug, Clone, Serialize)]
pub struct BuildReport {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    pub tool: String,
    pub source_date_epoch: i64,
    pub base: BaseRecord,
    pub kernel: KernelRecord,
    pub rootfs: AssembleReport,
    /// The spec as it was applied.
    pub spec: ImageSpec,
    pub outputs: Vec<Written>,
    /// Where the time went, step by step (not in manifest.json, whose
    /// bytes depend only on the inputs).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<StepTime>,
}

/// One step of a build and its wall time.
#[derive(Debug, Clone, Serialize)]
pub struct StepTime {
    pub step: String,
    pub seconds: f64,
}

impl StepTime {
    pub fn since(step: &str, started: std::time::Instant) -> StepTime {
        StepTime {
            step: step.to_string(),
            seconds: started.elapsed().as_secs_f64(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct BaseRecord {
    pub reference: String,
    pub root_digest: Digest,
    pub manifest_digest: Digest,
    pub config_digest: Digest,
    pub platform: String,
    pub layers: Vec<LayerRecord>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LayerRecord {
    pub digest: Digest,
    pub diff_id: Digest,
    pub media_type: String,
    pub size: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct KernelRecord {
    pub version: String,
    pub kernel: String,
    pub initrd: String,
}

/// The name outputs get when the spec gives none: the base's repository
/// name and tag (`os/debian:12` -> `debian-12`).
pub fn default_name(base: &str) -> String {
    let last = base.rsplit('/').next().unwrap_or(base);
    let last = last.split('@').next().unwrap_or(last);
    last.replace(':', "-")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect()
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
}

/// Builds `request` from `base`; see the module docs.
pub fn build(
    base: &BaseImage,
    artifacts: &dyn ArtifactFiles,
    request: &BuildRequest<'_>,
    progress: &dyn Progress,
) -> Result<BuildReport, BuildError> {
    if !valid_name(&request.name) {
        return Err(BuildError::Name(request.name.clone()));
    }
    // A component that does not fit the matrix fails now, not after the
    // base is assembled.
    if let Some(k) = &request.spec.kubernetes {
        let cx = crate::customize::Context {
            spec_dir: request.spec_dir,
            mtime: request.mtime,
            artifacts,
            kubernetes: &request.kubernetes,
        };
        crate::kubernetes::check(k, &request.kubernetes, &cx)?;
    }
    // Absolute: the image's own tools run with the scratch directory as
    // their working directory, and every path handed to them must hold.
    let out = &std::path::absolute(&request.out).map_err(FileError::io(&request.out))?;
    match std::fs::read_dir(out) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(BuildError::OutputNotEmpty {
                    path: request.out.display().to_string(),
                });
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(out).map_err(FileError::io(out))?;
        }
        Err(e) => return Err(FileError::io(out)(e).into()),
    }
    let work = out.join(WORK);
    std::fs::create_dir_all(&work).map_err(FileError::io(&work))?;
    let result = build_in(base, artifacts, request, out, &work, progress);
    if !request.keep_work {
        let _ = std::fs::remove_dir_all(&work);
    }
    if result.is_err() {
        // Nothing half-made stays under a final name: writers rename only
        // what they verified, and a failed build removes what it renamed.
        remove_outputs(out, &work);
    }
    result
}

fn build_in(
    base: &BaseImage,
    artifacts: &dyn ArtifactFiles,
    request: &BuildRequest<'_>,
    out: &Path,
    work: &Path,
    progress: &dyn Progress,
) -> Result<BuildReport, BuildError> {
    let mut steps = Vec::new();
    let cx = crate::customize::Context {
        spec_dir: request.spec_dir,
        mtime: request.mtime,
        artifacts,
        kubernetes: &request.kubernetes,
    };
    let (mut rootfs, assembled) =
        assemble::assemble(base, request.spec, &cx, &work.join("rootfs"), progress)?;
    let kernel = kernel::find(rootfs.tree())?;
    let mut job = Job {
        rootfs: &mut rootfs,
        kernel: &kernel,
        spec: request.spec,
        spec_dir: request.spec_dir,
        name: &request.name,
        identity: format!("{}@{}", request.name, base.manifest_digest),
        versions: assembled
            .customize
            .kubernetes
            .as_ref()
            .map(|k| k.versions())
            .unwrap_or_default(),
        formats: &request.formats,
        out,
        work,
        mtime: request.mtime,
        processors: request.processors,
        push: request.push.as_ref().map(|(s, r)| (s, r.as_str())),
        progress,
        squashfs: None,
        raw: None,
        written: Vec::new(),
        steps: Vec::new(),
    };
    steps.push(StepTime {
        step: "layers".into(),
        seconds: assembled.layers_seconds,
    });
    steps.push(StepTime {
        step: "customize".into(),
        seconds: assembled.customize_seconds,
    });
    for writer in output::WRITERS {
        if request.formats.contains(&writer.format()) {
            let started = std::time::Instant::now();
            writer.write(&mut job)?;
            // The intermediates it made (the squashfs, the raw disk) are
            // steps of their own; what is left is the writer's.
            let intermediates: f64 = job.steps.iter().map(|s| s.seconds).sum();
            let mut own = StepTime::since(writer.format().as_str(), started);
            own.seconds -= intermediates;
            for step in job.steps.drain(..) {
                match steps
                    .iter_mut()
                    .find(|s: &&mut StepTime| s.step == step.step)
                {
                    Some(same) => same.seconds += step.seconds,
                    None => steps.push(step),
                }
            }
            match steps.iter_mut().find(|s| s.step == own.step) {
                Some(same) => same.seconds += own.seconds,
                None => steps.push(own),
            }
        }
    }
    let mut outputs = std::mem::take(&mut job.written);
    let platform = format!("{}/{}", base.config.os, base.config.architecture);
    let mut report = BuildReport {
        name: request.name.clone(),
        version: request.spec.version.clone(),
        tool: format!("ferry {}", env!("CARGO_PKG_VERSION")),
        source_date_epoch: request.mtime,
        base: BaseRecord {
            reference: base.reference.clone(),
            root_digest: base.root_digest.clone(),
            manifest_digest: base.manifest_digest.clone(),
            config_digest: base.config_digest.clone(),
            platform,
            layers: base
                .layers
                .iter()
                .map(|l| LayerRecord {
                    digest: l.descriptor.digest.clone(),
                    diff_id: l.diff_id.clone(),
                    media_type: l.descriptor.media_type.clone(),
                    size: l.descriptor.size,
                })
                .collect(),
        },
        kernel: KernelRecord {
            version: kernel.version.clone(),
            kernel: format!("/{}", kernel.kernel.display()),
            initrd: format!("/{}", kernel.initrd.display()),
        },
        rootfs: assembled,
        spec: request.spec.clone(),
        outputs: Vec::new(),
        steps: Vec::new(),
    };
    outputs.sort_by(|a, b| a.path.cmp(&b.path));
    report.outputs = outputs;
    let manifest = out.join("manifest.json");
    let bytes = serde_json::to_vec_pretty(&report).expect("the report serializes");
    ferry_oci::atomic::AtomicWrite::new()
        .mode(0o644)
        .replace(&manifest, &bytes)
        .map_err(FileError::io(&manifest))?;
    report.steps = steps;
    Ok(report)
}

/// Removes everything in `out` but the scratch directory (a failed build
/// leaves no output behind; the directory was empty when it started).
fn remove_outputs(out: &Path, work: &Path) {
    let Ok(entries) = std::fs::read_dir(out) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path == work {
            continue;
        }
        let _ = if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_the_base() {
        assert_eq!(default_name("os/debian:12"), "debian-12");
        assert_eq!(default_name("reg.x:5000/os/rocky:9.4"), "rocky-9.4");
        assert_eq!(default_name("oci:dir:os"), "oci-dir-os");
        assert!(!valid_name(".hidden"));
        assert!(!valid_name("a/b"));
    }
}
