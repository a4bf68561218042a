//! A Kubernetes node image: the `kubernetes:` section of `image.yaml`
//! (docs/image-kubernetes.md).
//!
//! 1. [`check`] (before the base is assembled, so a wrong combination
//!    fails in a second): each component's artifact is described, its
//!    version told (spec, annotation or tag) and checked against the
//!    compatibility [`matrix`]; a mismatch is an error unless allowed.
//! 2. [`apply`] (a customization step): [`components`] installs the
//!    binaries, [`node`] writes units and configuration, [`preload`] puts
//!    the images containerd imports at first boot.
//!
//! The images to preload are found by the caller ([`preload_wanted`]
//! says which and where from; reading a registry is async and belongs to
//! the command), and handed in as [`Inputs::preload`].

pub mod components;
pub mod matrix;
pub mod node;
pub mod preload;

use std::collections::{BTreeMap, BTreeSet};

use ferry_oci::Reference;
use serde::Serialize;

use crate::customize::{Context, CustomizeError};
use crate::rootfs::{Rootfs, RootfsError};
use crate::source::Platform;
use crate::spec::{ImageSpec, KubernetesSpec, PreloadImage};
use components::Component;
use matrix::{Matrix, MatrixError, Mismatch};
use preload::{PreloadSource, Preloaded};

#[derive(Debug, thiserror::Error)]
pub enum KubernetesError {
    #[error(transparent)]
    Matrix(#[from] MatrixError),
    #[error("kubernetes.components.{component} ({artifact}): {message}")]
    Component {
        component: String,
        artifact: String,
        message: String,
    },
    #[error(
        "the components do not go with Kubernetes {version} by {matrix}: {list}; give matching \
         components, or build anyway with --allow-mismatch (manifest.json then records the mismatch)"
    )]
    Mismatch {
        version: String,
        matrix: String,
        list: String,
    },
    #[error("kubernetes.preload: {image} (read from {from}): {message}")]
    Preload {
        image: String,
        from: String,
        message: String,
    },
    #[error("kubernetes: {0}")]
    Invalid(String),
    #[error(transparent)]
    Rootfs(#[from] RootfsError),
    #[error(transparent)]
    Customize(Box<CustomizeError>),
}

impl From<CustomizeError> for KubernetesError {
    fn from(e: CustomizeError) -> Self {
        KubernetesError::Customize(Box::new(e))
    }
}

impl KubernetesError {
    fn component(name: &str, artifact: &str, message: impl Into<String>) -> Self {
        KubernetesError::Component {
            component: name.to_string(),
            artifact: artifact.to_string(),
            message: message.into(),
        }
    }
}

/// What a build needs besides the spec.
pub struct Inputs {
    pub matrix: Matrix,
    /// Build even when components do not fit the matrix.
    pub allow_mismatch: bool,
    /// The images of [`preload_wanted`], found.
    pub preload: Vec<PreloadSource>,
    /// The build's platform: what is taken from a multi-platform image.
    pub platform: Platform,
}

impl Default for Inputs {
    fn default() -> Self {
        Inputs {
            matrix: Matrix::shipped(),
            allow_mismatch: false,
            preload: Vec::new(),
            platform: Platform::linux_amd64(),
        }
    }
}

/// The `kubernetes` part of `manifest.json`.
#[derive(Debug, Clone, Serialize)]
pub struct KubernetesReport {
    pub version: String,
    /// The matrix the components were checked against.
    pub matrix: MatrixRecord,
    pub components: Vec<Component>,
    /// Components that did not fit the matrix (built with --allow-mismatch).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mismatches: Vec<Mismatch>,
    pub sandbox_image: String,
    pub preloaded: Vec<Preloaded>,
    pub files: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct MatrixRecord {
    pub origin: String,
    pub version: String,
}

impl KubernetesReport {
    /// Component -> version, for the OVA's product properties.
    pub fn versions(&self) -> BTreeMap<String, String> {
        let mut versions = BTreeMap::from([("kubernetes".to_string(), self.version.clone())]);
        for c in &self.components {
            if let Some(v) = &c.version {
                versions.insert(c.name.clone(), v.clone());
            }
        }
        versions
    }
}

/// The components named by `k`, in [`components::COMPONENTS`] order.
fn named(k: &KubernetesSpec) -> Vec<(&'static str, &crate::spec::ComponentSpec)> {
    let c = &k.components;
    let all = [
        Some(&c.kubelet),
        Some(&c.kubeadm),
        c.kubectl.as_ref(),
        Some(&c.containerd),
        Some(&c.runc),
        Some(&c.cni_plugins),
        c.crictl.as_ref(),
    ];
    components::COMPONENTS
        .iter()
        .zip(all)
        .filter_map(|((name, _), spec)| spec.map(|s| (*name, s)))
        .collect()
}

/// The components as [`check`] found them.
pub struct Checked {
    /// Each component with the files of its artifact.
    pub components: Vec<(Component, Vec<crate::customize::ArtifactFile>)>,
    /// What did not fit the matrix (empty unless allowed).
    pub mismatches: Vec<Mismatch>,
}

/// Describes every component and checks its version against the matrix
/// (a mismatch is an error unless allowed).
pub fn check(
    k: &KubernetesSpec,
    inputs: &Inputs,
    cx: &Context<'_>,
) -> Result<Checked, KubernetesError> {
    let mut described = Vec::new();
    for (name, spec) in named(k) {
        if spec.artifact.is_empty() {
            return Err(KubernetesError::component(name, "", "give its `artifact:`"));
        }
        described.push(components::describe(name, spec, cx)?);
    }
    let versions: Vec<(&str, Option<&str>)> = described
        .iter()
        .map(|(c, _)| (c.name.as_str(), c.version.as_deref()))
        .collect();
    let mismatches = inputs.matrix.check(&k.version, &versions)?;
    if !mismatches.is_empty() && !inputs.allow_mismatch {
        return Err(KubernetesError::Mismatch {
            version: k.version.clone(),
            matrix: format!("{} {}", inputs.matrix.origin, inputs.matrix.version),
            list: mismatches
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; "),
        });
    }
    Ok(Checked {
        components: described,
        mismatches,
    })
}

/// The images to preload, by node name, each with where it is read:
/// the matrix's control-plane images (when asked) and the spec's list.
pub fn preload_wanted(
    k: &KubernetesSpec,
    matrix: &Matrix,
) -> Result<Vec<(String, String)>, KubernetesError> {
    let row = matrix.row(&k.version)?;
    let mut names: Vec<(String, Option<String>)> = Vec::new();
    if k.preload.control_plane {
        names.extend(row.images.iter().map(|n| (n.clone(), None)));
    }
    for image in &k.preload.images {
        let from = match image {
            PreloadImage::Name(_) => None,
            PreloadImage::From { from, .. } => Some(from.clone()),
        };
        names.retain(|(n, _)| n != image.name());
        names.push((image.name().to_string(), from));
    }
    let default_from = k.preload.from.as_deref().unwrap_or("store");
    names
        .into_iter()
        .map(|(name, from)| {
            let from = match from {
                Some(from) => from,
                None => source_of(&name, default_from)?,
            };
            Ok((name, from))
        })
        .collect()
}

/// Where image `name` is in `from` (`store`, `bundle:FILE`, `HOST[/PREFIX]`),
/// placed as `ferry bundle import`/`push` place images: by their path
/// without the registry.
fn source_of(name: &str, from: &str) -> Result<String, KubernetesError> {
    let reference: Reference = name
        .parse()
        .map_err(|e| KubernetesError::Invalid(format!("preload: {name:?}: {e}")))?;
    let at = reference.tag_or_digest();
    let separator = if reference.digest.is_some() { "@" } else { ":" };
    Ok(match from {
        "store" => format!("store:{}{separator}{at}", reference.repository),
        bundle if bundle.starts_with("bundle:") => format!("{bundle}:{name}"),
        registry => format!(
            "{}/{}{separator}{at}",
            registry.trim_end_matches('/'),
            reference.repository
        ),
    })
}

/// The registries the node's images come from, for the mirrors' default
/// upstreams.
pub fn upstreams(k: &KubernetesSpec, matrix: &Matrix) -> Result<BTreeSet<String>, KubernetesError> {
    let mut names: Vec<String> = preload_wanted(k, matrix)?
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    names.push(sandbox_image(k, matrix)?);
    Ok(names
        .iter()
        .filter_map(|n| n.parse::<Reference>().ok())
        .map(|r| r.registry)
        .collect())
}

fn sandbox_image(k: &KubernetesSpec, matrix: &Matrix) -> Result<String, KubernetesError> {
    Ok(match &k.sandbox_image {
        Some(image) => image.clone(),
        None => matrix.row(&k.version)?.sandbox_image.clone(),
    })
}

/// Installs and configures the node; see the module docs.
pub fn apply(
    spec: &ImageSpec,
    k: &KubernetesSpec,
    inputs: &Inputs,
    rootfs: &mut Rootfs,
    cx: &Context<'_>,
) -> Result<KubernetesReport, KubernetesError> {
    let bin_dir = k.bin_dir.as_deref().unwrap_or("/usr/bin");
    if !matches!(bin_dir, "/usr/bin" | "/usr/local/bin") {
        return Err(KubernetesError::Invalid(format!(
            "bin_dir: {bin_dir:?} is not /usr/bin or /usr/local/bin"
        )));
    }
    let Checked {
        components: described,
        mismatches,
    } = check(k, inputs, cx)?;
    let mut installed = Vec::new();
    for (mut component, files) in described {
        let dir = if component.name == "cni_plugins" {
            components::CNI_BIN
        } else {
            bin_dir
        };
        components::install(&mut component, &files, dir, rootfs, cx)?;
        installed.push(component);
    }
    let sandbox = sandbox_image(k, &inputs.matrix)?;
    // Pinned to the site registry when there is one: containerd then never
    // asks an upstream for it, preloaded or not.
    let site_sandbox = match &spec.registry_mirrors {
        Some(mirrors) => Some(on_site(&sandbox, &mirrors.registry)?),
        None => None,
    };
    let containerd_major = installed
        .iter()
        .find(|c| c.name == "containerd")
        .and_then(|c| c.version.as_deref())
        .and_then(matrix::parse_version)
        .map(|v| v.0);
    let mut files = node::apply(
        &node::NodeConfig {
            bin_dir,
            sandbox_image: site_sandbox.as_deref().unwrap_or(&sandbox),
            containerd_major,
        },
        rootfs,
        cx,
    )?;
    let mut also_named = BTreeMap::new();
    if let Some(site) = &site_sandbox {
        also_named.insert(sandbox.clone(), vec![site.clone()]);
    }
    let ctr = format!("{}/ctr", bin_dir.trim_end_matches('/'));
    if !inputs.preload.is_empty()
        && !installed
            .iter()
            .any(|c| c.name == "containerd" && c.files.contains(&ctr))
    {
        return Err(KubernetesError::component(
            "containerd",
            &k.components.containerd.artifact,
            "preloaded images are imported at first boot by containerd's `ctr`, which this artifact does not hold",
        ));
    }
    let preloaded = preload::write(
        &inputs.preload,
        &also_named,
        &inputs.platform,
        &ctr,
        rootfs,
        cx,
    )?;
    if !preloaded.is_empty() {
        files.push(format!("{}/{}", node::UNIT_DIR, preload::UNIT));
    }
    Ok(KubernetesReport {
        version: k.version.clone(),
        matrix: MatrixRecord {
            origin: inputs.matrix.origin.clone(),
            version: inputs.matrix.version.clone(),
        },
        components: installed,
        mismatches,
        sandbox_image: site_sandbox.unwrap_or(sandbox),
        preloaded,
        files,
    })
}

/// `registry.k8s.io/pause:3.9` on site registry `site:5000/prefix`:
/// `site:5000/prefix/pause:3.9`, where `ferry bundle push --to` put it.
fn on_site(name: &str, site: &str) -> Result<String, KubernetesError> {
    let reference: Reference = name
        .parse()
        .map_err(|e| KubernetesError::Invalid(format!("sandbox_image {name:?}: {e}")))?;
    let target: ferry_bundle::push::Target = site
        .parse()
        .map_err(|e: String| KubernetesError::Invalid(format!("registry_mirrors.registry: {e}")))?;
    let repository = if target.prefix.is_empty() {
        reference.repository.clone()
    } else {
        format!("{}/{}", target.prefix, reference.repository)
    };
    Ok(reference
        .relocated(&target.registry, &repository)
        .to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preloaded_images_are_found_where_import_and_push_put_them() {
        assert_eq!(
            source_of("registry.k8s.io/pause:3.9", "store").unwrap(),
            "store:pause:3.9"
        );
        assert_eq!(
            source_of("busybox:1.36", "site:5000/mirror").unwrap(),
            "site:5000/mirror/library/busybox:1.36"
        );
        assert_eq!(
            source_of("registry.k8s.io/etcd:3.5.15-0", "bundle:site.ferry").unwrap(),
            "bundle:site.ferry:registry.k8s.io/etcd:3.5.15-0"
        );
        assert_eq!(
            on_site("registry.k8s.io/pause:3.9", "10.0.2.2:5000/site").unwrap(),
            "10.0.2.2:5000/site/pause:3.9"
        );
    }

    #[test]
    fn the_control_plane_and_the_spec_images_are_preloaded_once() {
        let k: KubernetesSpec = serde_saphyr::from_str(
            "version: 1.30.4\ncomponents: {kubelet: {artifact: a}, kubeadm: {artifact: a}, containerd: {artifact: a}, runc: {artifact: a}, cni_plugins: {artifact: a}}\npreload:\n  images:\n    - registry.k8s.io/pause:3.9\n    - {name: docker.io/library/busybox:1.36, from: 'oci:b:1'}\n",
        )
        .unwrap();
        let wanted = preload_wanted(&k, &Matrix::shipped()).unwrap();
        assert_eq!(wanted.len(), 8);
        assert_eq!(
            wanted
                .iter()
                .filter(|(n, _)| n.ends_with("pause:3.9"))
                .count(),
            1
        );
        assert_eq!(wanted.last().unwrap().1, "oci:b:1");
        let registries = upstreams(&k, &Matrix::shipped()).unwrap();
        assert_eq!(
            registries.into_iter().collect::<Vec<_>>(),
            ["docker.io", "registry.k8s.io"]
        );
    }
}
