//! Assembling the root filesystem of a build: the base image's layers in
//! order onto an empty [`Rootfs`], each layer verified (blob digest and
//! `diff_id`) as it streams, then the spec's customization and sysprep.

use std::path::Path;

use ferry_oci::progress::Progress;

use crate::customize::{self, CustomizeError, CustomizeReport};
use crate::rootfs::layer::{self, LayerError};
use crate::rootfs::{Rootfs, RootfsError};
use crate::source::{BaseImage, SourceError};
use crate::spec::ImageSpec;

#[derive(Debug, thiserror::Error)]
pub enum AssembleError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Layer(#[from] LayerError),
    #[error(transparent)]
    Rootfs(#[from] RootfsError),
    #[error(transparent)]
    Customize(#[from] CustomizeError),
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct AssembleReport {
    pub layers: usize,
    pub entries: u64,
    pub whiteouts: u64,
    pub file_bytes: u64,
    pub customize: CustomizeReport,
    /// Wall times of the two halves (not in manifest.json).
    #[serde(skip)]
    pub layers_seconds: f64,
    #[serde(skip)]
    pub customize_seconds: f64,
}

/// Lays `base`'s layers onto a new rootfs staged in `stage_dir`, then
/// applies `spec`'s customization in `cx`. Every file ferry writes is
/// dated `cx.mtime` (SOURCE_DATE_EPOCH).
pub fn assemble(
    base: &BaseImage,
    spec: &ImageSpec,
    cx: &customize::Context<'_>,
    stage_dir: &Path,
    progress: &dyn Progress,
) -> Result<(Rootfs, AssembleReport), AssembleError> {
    let mtime = cx.mtime;
    let started = std::time::Instant::now();
    let mut rootfs = Rootfs::new(stage_dir.to_path_buf(), mtime)?;
    let mut report = AssembleReport::default();
    let total: u64 = base.layers.iter().map(|l| l.descriptor.size).sum();
    progress.start("layers", "layers", Some(total));
    for (index, info) in base.layers.iter().enumerate() {
        let name = format!("layer {} of {}", index + 1, base.layers.len());
        let mut layer = base.open_layer(index)?;
        let applied = layer::apply(&mut rootfs, &mut layer, &name, mtime);
        let result = match applied {
            Ok(stats) => layer.finish().map(|()| stats).map_err(AssembleError::from),
            Err(e) => Err(e.into()),
        };
        let stats = match result {
            Ok(stats) => stats,
            // A corrupt blob explains a broken tar or a broken compressed
            // stream better than either error does. The decompressor may
            // have stopped before the blob's end (a gzip trailer's CRC is
            // checked before the blob is read to its end), so hash the
            // blob whole to tell corruption from a bad layer.
            Err(e) => {
                if !matches!(e, AssembleError::Source(SourceError::Digest { .. })) {
                    base.verify_layer_blob(index)?;
                }
                return Err(e);
            }
        };
        progress.advance("layers", info.descriptor.size);
        report.layers += 1;
        report.entries += stats.entries;
        report.whiteouts += stats.whiteouts;
    }
    progress.finish("layers", "applied");
    report.file_bytes = rootfs.tree().file_bytes();
    report.layers_seconds = started.elapsed().as_secs_f64();
    let started = std::time::Instant::now();
    report.customize = customize::apply(spec, &mut rootfs, cx)?;
    report.customize_seconds = started.elapsed().as_secs_f64();
    Ok((rootfs, report))
}
