//! Files, directories and symlinks from the spec. Content is inline, a
//! local file, or a file artifact from ferry's store or a bundle (so what
//! crossed the gap in a bundle lands in the image without a copy step).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::{Context, CustomizeError, CustomizeReport, accounts, parse_mode};
use crate::rootfs::{Meta, Rootfs, tree};
use crate::spec::{FileSpec, ImageSpec};

pub fn apply(
    spec: &ImageSpec,
    rootfs: &mut Rootfs,
    cx: &Context<'_>,
    report: &mut CustomizeReport,
) -> Result<(), CustomizeError> {
    for d in &spec.directories {
        let what = format!("directories: {}", d.path);
        let path = image_path(&what, &d.path)?;
        let meta = meta(
            rootfs,
            cx,
            &what,
            d.mode.as_deref(),
            d.owner.as_deref(),
            0o755,
        )?;
        let path = rootfs.ensure_parents(&path, cx.mtime)?;
        rootfs.dir(&path, meta)?;
    }
    for f in &spec.files {
        let what = format!("files: {}", f.path);
        let path = image_path(&what, &f.path)?;
        let (content, executable) = content(f, cx, &what)?;
        let default_mode = if executable { 0o755 } else { 0o644 };
        let meta = meta(
            rootfs,
            cx,
            &what,
            f.mode.as_deref(),
            f.owner.as_deref(),
            default_mode,
        )?;
        let path = rootfs.ensure_parents(&path, cx.mtime)?;
        rootfs.file(&path, meta, &mut &content[..])?;
        report.files_written += 1;
    }
    for s in &spec.symlinks {
        let what = format!("symlinks: {}", s.path);
        let path = image_path(&what, &s.path)?;
        let path = rootfs.ensure_parents(&path, cx.mtime)?;
        rootfs.symlink(&path, Path::new(&s.target), cx.meta(0o777))?;
    }
    Ok(())
}

/// An absolute image path from the spec, normalized.
fn image_path(what: &str, text: &str) -> Result<std::path::PathBuf, CustomizeError> {
    if !text.starts_with('/') {
        return Err(CustomizeError::invalid(what, "the path must be absolute"));
    }
    let path = tree::normalize(text.as_bytes())
        .map_err(|e| CustomizeError::invalid(what, e.to_string()))?;
    if path.as_os_str().is_empty() {
        return Err(CustomizeError::invalid(what, "the path names the root"));
    }
    Ok(path)
}

fn meta(
    rootfs: &Rootfs,
    cx: &Context<'_>,
    what: &str,
    mode: Option<&str>,
    owner: Option<&str>,
    default_mode: u32,
) -> Result<Meta, CustomizeError> {
    let mode = match mode {
        Some(m) => parse_mode(what, m)?,
        None => default_mode,
    };
    let (uid, gid) = match owner {
        Some(o) => accounts::owner(rootfs, what, o)?,
        None => (0, 0),
    };
    Ok(Meta {
        uid,
        gid,
        ..cx.meta(mode)
    })
}

/// The file's bytes, and whether its source was executable.
fn content(f: &FileSpec, cx: &Context<'_>, what: &str) -> Result<(Vec<u8>, bool), CustomizeError> {
    if let Some(text) = &f.content {
        return Ok((text.as_bytes().to_vec(), false));
    }
    if let Some(source) = &f.source {
        let bytes = cx.read_local(source)?;
        let executable = std::fs::metadata(cx.local(source))
            .map(|m| m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false);
        return Ok((bytes, executable));
    }
    let reference = f.artifact.as_deref().expect("the spec checks one source");
    cx.artifacts
        .read(reference, f.artifact_file.as_deref())
        .map(|b| (b, false))
        .map_err(|message| CustomizeError::invalid(what, message))
}
