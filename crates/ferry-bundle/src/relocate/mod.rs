//! What a site needs after a push to use what was pushed, written into one
//! directory (the "site files"):
//!
//! - `manifests/<name>/...`: the bundle's Kubernetes manifests (each
//!   `manifests:` entry under its name, files at their relative paths)
//!   with every `image` the bundle carries pointing at the target
//!   ([`manifests`]);
//! - `containerd/certs.d/<upstream>/hosts.toml` and `registries.yaml`
//!   (k3s / RKE2): mirror rules for every upstream registry the bundle has
//!   images from, `--map` included ([`mirrors`]); with the CA the push
//!   was given (`--ca-file`) beside them.
//!
//! Which image went where comes from one [`catalog`]. Anything that could
//! not be relocated or expressed is returned as a [`Warning`] for the
//! binary to print.
//!
//! The directory is written whole or not at all: the new set is written
//! beside it and swapped in, so a reused `--out` never mixes in files of
//! an earlier push and a failure leaves the previous set as it was. Only a
//! directory ferry wrote (it holds [`MARKER`]) or an empty one is ever
//! replaced.

mod catalog;
mod manifests;
mod mirrors;

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use ferry_oci::media_type;
use serde::Serialize;

pub use mirrors::{Access, K3S_CA, K3S_CA_ON_NODE, prefix_mirror_files};

use crate::format::EntryKind;
use crate::graph;
use crate::push::Target;
use crate::reader::Bundle;

/// The file that marks a directory as site files written by ferry.
pub const MARKER: &str = ".ferry-site";

#[derive(Debug, thiserror::Error)]
pub enum RelocateError {
    #[error("{0}")]
    Graph(#[from] graph::GraphError),
    #[error("{0}")]
    Mapping(String),
    #[error("writing {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("reading {what} from the bundle: {source}")]
    Read {
        what: String,
        source: std::io::Error,
    },
    #[error(
        "{path} holds {entry}, which ferry did not write; site files replace the whole directory, so it is left alone"
    )]
    NotSiteFiles { path: String, entry: String },
    #[error("{path} is not a directory")]
    NotADirectory { path: String },
    #[error("two manifest files of the bundle would both be written to {path}")]
    SamePath { path: String },
}

/// Something that could not be relocated or expressed, for the user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Warning {
    /// The manifest file it is about, if any: its path in the site
    /// directory (`manifests/<name>/...`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// 1-based line in `file`, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    pub message: String,
}

impl Warning {
    fn at(file: &str, line: Option<usize>, message: String) -> Warning {
        Warning {
            file: Some(file.to_string()),
            line,
            message,
        }
    }

    fn general(message: String) -> Warning {
        Warning {
            file: None,
            line: None,
            message,
        }
    }
}

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.file, self.line) {
            (Some(file), Some(line)) => write!(f, "{file}:{line}: {}", self.message),
            (Some(file), None) => write!(f, "{file}: {}", self.message),
            _ => f.write_str(&self.message),
        }
    }
}

/// What [`write_site_files`] wrote.
#[derive(Debug)]
pub struct SiteFiles {
    /// Every file, under the site directory; empty when the bundle needs
    /// none (nothing was written then).
    pub files: Vec<PathBuf>,
    pub warnings: Vec<Warning>,
}

/// Writes the site files for `bundle`, pushed to `target` with the
/// repository `map` (`--map`, as push applied it), into `out`.
pub fn write_site_files(
    bundle: &Bundle,
    target: &Target,
    map: &[(String, String)],
    access: &Access,
    out: &Path,
) -> Result<SiteFiles, RelocateError> {
    let catalog = catalog::Catalog::new(bundle, target, map)?;
    let mut warnings = Vec::new();
    // Relative path -> content; small text files, so held in memory until
    // the whole set is known.
    let mut files: BTreeMap<PathBuf, Vec<u8>> = BTreeMap::new();
    for entry in bundle
        .manifest
        .entries
        .iter()
        .filter(|e| e.kind == EntryKind::Manifests)
    {
        let dir = Path::new("manifests").join(
            safe_relative(
                entry
                    .repository
                    .strip_prefix("manifests/")
                    .unwrap_or(&entry.repository),
            )
            .unwrap_or_else(|| "manifests".into()),
        );
        for layer in graph::walk(bundle, &entry.descriptor)?.blobs {
            let Some(title) = layer.annotation(media_type::ANNOTATION_TITLE) else {
                continue;
            };
            // The title comes from the bundle: it must stay inside `out`.
            let Some(relative) = safe_relative(title) else {
                warnings.push(Warning::at(
                    title,
                    None,
                    "not a relative path inside the directory; not written".into(),
                ));
                continue;
            };
            let path = dir.join(relative);
            let Some(bytes) =
                bundle
                    .read_blob(&layer.digest)
                    .map_err(|source| RelocateError::Read {
                        what: title.to_string(),
                        source,
                    })?
            else {
                // A delta bundle leaves out what its base carries.
                warnings.push(Warning::at(
                    &path.to_string_lossy(),
                    None,
                    "unchanged since the base bundle, so this delta does not carry it; not written (take it from the base bundle's site files)".into(),
                ));
                continue;
            };
            // Warnings name the file as it is in the site directory.
            let relocated = manifests::relocate(&path.to_string_lossy(), &bytes, &catalog);
            warnings.extend(relocated.warnings);
            if files.insert(path.clone(), relocated.bytes).is_some() {
                return Err(RelocateError::SamePath {
                    path: out.join(path).display().to_string(),
                });
            }
        }
    }
    let mirrors = mirrors::mirror_files(&catalog, target, access, &bundle.manifest.spec);
    warnings.extend(mirrors.warnings);
    files.extend(
        mirrors
            .files
            .into_iter()
            .map(|(path, bytes)| (PathBuf::from(path), bytes)),
    );
    if files.is_empty() {
        return Ok(SiteFiles {
            files: Vec::new(),
            warnings,
        });
    }
    files.insert(
        PathBuf::from(MARKER),
        b"Written by `ferry bundle push`. The next push with this --out replaces this whole directory.\n".to_vec(),
    );
    check_replaceable(out)?;
    let staged = sibling(out, "new");
    let written = write_all(&staged, &files).and_then(|()| swap_in(&staged, out));
    if written.is_err() {
        let _ = std::fs::remove_dir_all(&staged);
    }
    written?;
    Ok(SiteFiles {
        files: files
            .into_keys()
            .filter(|p| p != Path::new(MARKER))
            .map(|p| out.join(p))
            .collect(),
        warnings,
    })
}

/// `path` as a relative path of plain components, if it is one.
fn safe_relative(path: &str) -> Option<PathBuf> {
    let path = Path::new(path);
    let plain = path.components().all(|c| matches!(c, Component::Normal(_)));
    (plain && path.components().next().is_some()).then(|| path.to_path_buf())
}

/// Refuses to replace anything but a directory of site files (or an
/// empty one). Directories written before the marker existed hold only
/// the names site files have. [`write_site_files`] checks too; a caller
/// checks first so that nothing is pushed when the site files could not
/// be written.
pub fn check_replaceable(out: &Path) -> Result<(), RelocateError> {
    let shown = || out.display().to_string();
    let entries = match std::fs::read_dir(out) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => {
            return Err(RelocateError::NotADirectory { path: shown() });
        }
        Err(source) => {
            return Err(RelocateError::Write {
                path: shown(),
                source,
            });
        }
    };
    let names: Vec<String> = entries
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<Result<_, _>>()
        .map_err(|source| RelocateError::Write {
            path: shown(),
            source,
        })?;
    if names.iter().any(|n| n == MARKER) {
        return Ok(());
    }
    const SITE_NAMES: [&str; 4] = [
        "manifests",
        "containerd",
        "registries.yaml",
        mirrors::K3S_CA,
    ];
    match names
        .into_iter()
        .find(|n| !SITE_NAMES.contains(&n.as_str()))
    {
        None => Ok(()),
        Some(entry) => Err(RelocateError::NotSiteFiles {
            path: shown(),
            entry,
        }),
    }
}

/// A hidden sibling of `out` (same directory, so same file system).
fn sibling(out: &Path, what: &str) -> PathBuf {
    let name = out
        .file_name()
        .map_or_else(|| "site".into(), |n| n.to_string_lossy().into_owned());
    out.with_file_name(format!(".{name}.ferry-{what}-{}", std::process::id()))
}

fn write_all(dir: &Path, files: &BTreeMap<PathBuf, Vec<u8>>) -> Result<(), RelocateError> {
    let _ = std::fs::remove_dir_all(dir);
    for (relative, data) in files {
        let path = dir.join(relative);
        let err = |source| RelocateError::Write {
            path: path.display().to_string(),
            source,
        };
        std::fs::create_dir_all(path.parent().expect("under dir")).map_err(err)?;
        std::fs::write(&path, data).map_err(err)?;
    }
    Ok(())
}

/// Puts `staged` at `out`, moving an existing `out` aside first and
/// removing it after; if the swap fails, the old directory goes back.
fn swap_in(staged: &Path, out: &Path) -> Result<(), RelocateError> {
    let err = |source| RelocateError::Write {
        path: out.display().to_string(),
        source,
    };
    if std::fs::symlink_metadata(out).is_err() {
        return std::fs::rename(staged, out).map_err(err);
    }
    let old = sibling(out, "old");
    std::fs::rename(out, &old).map_err(err)?;
    if let Err(e) = std::fs::rename(staged, out) {
        let _ = std::fs::rename(&old, out);
        return Err(err(e));
    }
    std::fs::remove_dir_all(&old).map_err(|source| RelocateError::Write {
        path: old.display().to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_relative_paths_are_written() {
        assert_eq!(safe_relative("a/b.yaml"), Some(PathBuf::from("a/b.yaml")));
        for bad in ["", "/etc/passwd", "../x.yaml", "a/../../x", "./a"] {
            assert_eq!(safe_relative(bad), None, "{bad}");
        }
    }

    #[test]
    fn only_site_files_or_nothing_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("site");
        check_replaceable(&out).unwrap();
        std::fs::create_dir(&out).unwrap();
        check_replaceable(&out).unwrap();
        std::fs::create_dir(out.join("manifests")).unwrap();
        std::fs::write(out.join("registries.yaml"), "").unwrap();
        check_replaceable(&out).unwrap();
        std::fs::write(out.join("notes.txt"), "").unwrap();
        assert!(matches!(
            check_replaceable(&out),
            Err(RelocateError::NotSiteFiles { entry, .. }) if entry == "notes.txt"
        ));
        std::fs::write(out.join(MARKER), "").unwrap();
        check_replaceable(&out).unwrap();
        assert!(matches!(
            check_replaceable(&out.join("registries.yaml")),
            Err(RelocateError::NotADirectory { .. })
        ));
    }

    #[test]
    fn the_new_set_replaces_the_old_whole() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("site");
        let set = |names: &[&str]| {
            names
                .iter()
                .map(|n| (PathBuf::from(n), n.as_bytes().to_vec()))
                .collect::<BTreeMap<_, _>>()
        };
        for names in [&["a/old.yaml", "b.yaml"][..], &["a/new.yaml"][..]] {
            let staged = sibling(&out, "new");
            write_all(&staged, &set(names)).unwrap();
            swap_in(&staged, &out).unwrap();
        }
        let mut found: Vec<String> = Vec::new();
        for e in std::fs::read_dir(dir.path()).unwrap() {
            found.push(e.unwrap().file_name().to_string_lossy().into_owned());
        }
        assert_eq!(found, ["site"]);
        assert_eq!(
            std::fs::read(out.join("a/new.yaml")).unwrap(),
            b"a/new.yaml"
        );
        assert!(!out.join("a/old.yaml").exists());
        assert!(!out.join("b.yaml").exists());
    }
}
