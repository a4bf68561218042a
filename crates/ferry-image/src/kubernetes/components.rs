//! The node's components, installed from file artifacts: every file an
//! artifact holds goes to the component's directory under its own name;
//! a `.tar`, `.tar.gz` or `.tgz` (the release archives of the CNI plugins,
//! crictl and containerd) is unpacked and the executables in it are
//! installed by their base name, so `bin/ctr` of containerd's archive and
//! `./bridge` of the CNI plugins' land in the same place as a loose file
//! would. Only regular files with an execute bit are taken from archives
//! (licences and READMEs stay out); their base names are plain file
//! names, so an archive cannot write outside the directory.
//!
//! Everything streams from the artifact's blob through the digest check
//! into the tree: a 100 MB kubelet is never held in memory.

use std::io::{self, Read};
use std::path::Path;

use flate2::read::GzDecoder;

use super::KubernetesError;
use crate::customize::{ArtifactFile, Context};
use crate::rootfs::{Meta, Rootfs, tree};
use crate::spec::ComponentSpec;

/// The annotation a version is read from when the spec gives none.
const VERSION_ANNOTATION: &str = "org.opencontainers.image.version";

/// One component, as the build found and installed it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Component {
    pub name: String,
    /// `None` when neither the spec, the annotation nor the tag tells it.
    pub version: Option<String>,
    pub artifact: String,
    /// The artifact's manifest digest.
    pub digest: ferry_oci::Digest,
    /// Image paths installed.
    pub files: Vec<String>,
}

/// The components of a node: name, the executable it must provide, and
/// whether its files go to `/opt/cni/bin` instead of the binaries'
/// directory.
pub const COMPONENTS: [(&str, &str); 7] = [
    ("kubelet", "kubelet"),
    ("kubeadm", "kubeadm"),
    ("kubectl", "kubectl"),
    ("containerd", "containerd"),
    ("runc", "runc"),
    ("cni_plugins", "loopback"),
    ("crictl", "crictl"),
];

pub const CNI_BIN: &str = "/opt/cni/bin";

/// Reads what `spec`'s artifact says of itself: its files and version.
pub fn describe(
    name: &str,
    spec: &ComponentSpec,
    cx: &Context<'_>,
) -> Result<(Component, Vec<ArtifactFile>), KubernetesError> {
    let info = cx
        .artifacts
        .describe(&spec.artifact)
        .map_err(|message| KubernetesError::component(name, &spec.artifact, message))?;
    if info.files.is_empty() {
        return Err(KubernetesError::component(
            name,
            &spec.artifact,
            "it holds no file (a file artifact has one layer per file, titled)",
        ));
    }
    let version = spec
        .version
        .clone()
        .or_else(|| info.annotations.get(VERSION_ANNOTATION).cloned())
        .or_else(|| tag_version(&spec.artifact));
    Ok((
        Component {
            name: name.to_string(),
            version,
            artifact: spec.artifact.clone(),
            digest: info.digest,
            files: Vec::new(),
        },
        info.files,
    ))
}

/// The version in a reference's tag (`files/containerd:1.7.13`), when it
/// reads as one.
fn tag_version(reference: &str) -> Option<String> {
    let last = reference.rsplit('/').next()?;
    let (_, tag) = last.split_once(':')?;
    super::matrix::parse_version(tag).map(|_| tag.to_string())
}

/// Installs the files of `component` into `dir` (absolute).
pub fn install(
    component: &mut Component,
    files: &[ArtifactFile],
    dir: &str,
    rootfs: &mut Rootfs,
    cx: &Context<'_>,
) -> Result<(), KubernetesError> {
    let error =
        |message: String| KubernetesError::component(&component.name, &component.artifact, message);
    let mut installed = Vec::new();
    for file in files {
        let reader = cx
            .artifacts
            .open(&component.artifact, file)
            .map_err(error)?;
        let title = file.title.as_str();
        let gzip = title.ends_with(".tar.gz") || title.ends_with(".tgz");
        if gzip || title.ends_with(".tar") {
            unpack(reader, gzip, dir, rootfs, cx, &mut installed)
                .map_err(|e| error(format!("{title}: {e}")))?;
            continue;
        }
        let name = base_name(title)
            .ok_or_else(|| error(format!("{title:?} is not a file name ferry can install")))?;
        let path = format!("{dir}/{name}");
        put(rootfs, cx, &path, &mut { reader }).map_err(|e| error(format!("{title}: {e}")))?;
        installed.push(path);
    }
    let wanted = COMPONENTS
        .iter()
        .find(|(n, _)| *n == component.name)
        .map(|(_, exe)| *exe);
    if let Some(exe) = wanted
        && !installed.iter().any(|p| p.rsplit('/').next() == Some(exe))
    {
        return Err(error(format!(
            "it has no `{exe}` executable (it holds: {})",
            if installed.is_empty() {
                files
                    .iter()
                    .map(|f| f.title.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            } else {
                installed.join(", ")
            }
        )));
    }
    installed.sort();
    installed.dedup();
    component.files = installed;
    Ok(())
}

/// The executables of the tar (gzip-compressed when `gzip`) in `blob`, by
/// base name into `dir`. The blob is read to its end, where its digest is
/// checked, even when the archive ends before it.
fn unpack(
    mut blob: Box<dyn Read + Send>,
    gzip: bool,
    dir: &str,
    rootfs: &mut Rootfs,
    cx: &Context<'_>,
    installed: &mut Vec<String>,
) -> Result<(), String> {
    if gzip {
        let mut decoder = GzDecoder::new(&mut blob);
        unpack_tar(&mut decoder, dir, rootfs, cx, installed)?;
        io::copy(&mut decoder, &mut io::sink()).map_err(|e| e.to_string())?;
    } else {
        unpack_tar(&mut blob, dir, rootfs, cx, installed)?;
    }
    io::copy(&mut blob, &mut io::sink()).map_err(|e| e.to_string())?;
    Ok(())
}

fn unpack_tar(
    reader: &mut dyn Read,
    dir: &str,
    rootfs: &mut Rootfs,
    cx: &Context<'_>,
    installed: &mut Vec<String>,
) -> Result<(), String> {
    let mut archive = tar::Archive::new(reader);
    let entries = archive.entries().map_err(|e| e.to_string())?;
    for entry in entries {
        let mut entry = entry.map_err(|e| e.to_string())?;
        let header = entry.header();
        let executable = header.mode().map_err(|e| e.to_string())? & 0o111 != 0;
        if !header.entry_type().is_file() || !executable {
            continue;
        }
        let entry_path = entry.path_bytes().into_owned();
        let Some(name) = base_name(&String::from_utf8_lossy(&entry_path)) else {
            continue;
        };
        let path = format!("{dir}/{name}");
        put(rootfs, cx, &path, &mut entry).map_err(|e| e.to_string())?;
        installed.push(path);
    }
    Ok(())
}

/// The last component of `path` when it is a plain file name.
fn base_name(path: &str) -> Option<String> {
    let name = Path::new(path.trim_end_matches('/'))
        .file_name()?
        .to_str()?;
    (!name.is_empty() && name != "." && name != "..").then(|| name.to_string())
}

/// Writes an executable at absolute image path `path`.
fn put(
    rootfs: &mut Rootfs,
    cx: &Context<'_>,
    path: &str,
    content: &mut dyn Read,
) -> Result<(), KubernetesError> {
    let image_path = tree::normalize(path.as_bytes()).map_err(crate::rootfs::RootfsError::from)?;
    let resolved = rootfs.ensure_parents(&image_path, cx.mtime)?;
    rootfs.file(&resolved, Meta::root_owned(0o755, cx.mtime), content)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_from_tags_and_names_from_paths() {
        assert_eq!(
            tag_version("files/containerd:1.7.13").as_deref(),
            Some("1.7.13")
        );
        assert_eq!(
            tag_version("bundle:site.ferry:k8s/kubelet:v1.30.4").as_deref(),
            Some("v1.30.4")
        );
        assert_eq!(tag_version("files/kubelet:latest"), None);
        assert_eq!(base_name("./bin/ctr").as_deref(), Some("ctr"));
        assert_eq!(base_name("../.."), None);
        assert_eq!(base_name("bridge").as_deref(), Some("bridge"));
    }
}
