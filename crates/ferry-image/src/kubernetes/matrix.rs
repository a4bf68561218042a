//! The compatibility matrix: for a Kubernetes version, the containerd,
//! runc, CNI plugins and crictl versions that go with it, the pod sandbox
//! image and the images kubeadm pulls (`kubeadm config images list`).
//!
//! Shipped as data (`data/kubernetes-matrix.yaml`, compiled in), replaced
//! by a site's own file of the same format. A component's version is
//! checked against its row by [`Matrix::check`]; kubelet and kubeadm must
//! be the Kubernetes version itself, kubectl may be one minor version
//! apart (Kubernetes' version skew policy,
//! kubernetes.io/releases/version-skew-policy/#kubectl).

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// The matrix ferry ships.
pub const SHIPPED: &str = include_str!("../../data/kubernetes-matrix.yaml");

/// The format version of a matrix file this ferry reads.
const SCHEMA: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum MatrixError {
    #[error("{origin}: {message}")]
    Invalid { origin: String, message: String },
    #[error("{path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "Kubernetes {version} is not in the compatibility matrix ({origin}, which has {known}): \
         use one of those, or give a matrix with a row for it (kubernetes.matrix or --matrix)"
    )]
    UnknownVersion {
        version: String,
        origin: String,
        known: String,
    },
}

/// A matrix file.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Matrix {
    /// The file format's version (1).
    pub schema: u32,
    /// The data's own version, recorded in `manifest.json`.
    pub version: String,
    /// One row per Kubernetes version.
    pub kubernetes: BTreeMap<String, Row>,
    /// Where it was read from (`ferry's shipped matrix` or a path).
    #[serde(skip)]
    pub origin: String,
}

/// What goes with one Kubernetes version. A version is exact (`1.7.13`)
/// or a patch wildcard (`1.7.x`); several are separated by commas.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Row {
    pub containerd: String,
    pub runc: String,
    pub cni_plugins: String,
    pub crictl: String,
    /// The pause image containerd's CRI runs pods in.
    pub sandbox_image: String,
    /// The control-plane images of `kubeadm config images list`.
    pub images: Vec<String>,
}

/// A component whose version does not fit the row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mismatch {
    pub component: String,
    /// The component's version, if it could be told.
    pub given: Option<String>,
    /// What the matrix accepts.
    pub expected: String,
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.given {
            Some(given) => write!(
                f,
                "{} {given} (the matrix wants {})",
                self.component, self.expected
            ),
            None => write!(
                f,
                "{} of unknown version (the matrix wants {}; give its `version:`, or tag the artifact with it)",
                self.component, self.expected
            ),
        }
    }
}

impl Matrix {
    /// The matrix compiled into ferry.
    pub fn shipped() -> Matrix {
        Matrix::parse(SHIPPED, "ferry's shipped matrix").expect("the shipped matrix is valid")
    }

    /// Reads a matrix file.
    pub fn load(path: &Path) -> Result<Matrix, MatrixError> {
        let text = std::fs::read_to_string(path).map_err(|source| MatrixError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Matrix::parse(&text, &path.display().to_string())
    }

    /// Parses `text`; `origin` names it in messages.
    pub fn parse(text: &str, origin: &str) -> Result<Matrix, MatrixError> {
        let invalid = |message: String| MatrixError::Invalid {
            origin: origin.to_string(),
            message,
        };
        let mut matrix: Matrix =
            serde_saphyr::from_str(text).map_err(|e| invalid(e.to_string()))?;
        if matrix.schema != SCHEMA {
            return Err(invalid(format!(
                "schema {} is not one this ferry reads ({SCHEMA})",
                matrix.schema
            )));
        }
        for (version, row) in &matrix.kubernetes {
            if parse_version(version).is_none() {
                return Err(invalid(format!("{version:?} is not a version (1.30.4)")));
            }
            for (component, accepted) in row.accepted() {
                if accepted
                    .split(',')
                    .any(|p| parse_pattern(p.trim()).is_none())
                {
                    return Err(invalid(format!(
                        "kubernetes {version}: {component}: {accepted:?} is not a version, \
                         a patch wildcard (1.7.x) or a comma-separated list of them"
                    )));
                }
            }
        }
        matrix.origin = origin.to_string();
        Ok(matrix)
    }

    /// The row of Kubernetes `version`.
    pub fn row(&self, version: &str) -> Result<&Row, MatrixError> {
        let wanted = parse_version(version);
        self.kubernetes
            .iter()
            .find(|(v, _)| wanted.is_some() && parse_version(v) == wanted)
            .map(|(_, row)| row)
            .ok_or_else(|| MatrixError::UnknownVersion {
                version: version.to_string(),
                origin: self.origin.clone(),
                known: self.versions().join(", "),
            })
    }

    /// The Kubernetes versions, newest first.
    pub fn versions(&self) -> Vec<&str> {
        let mut versions: Vec<&str> = self.kubernetes.keys().map(String::as_str).collect();
        versions.sort_by_key(|v| std::cmp::Reverse(parse_version(v)));
        versions
    }

    /// Checks `components` (name -> version, `None` when unknown) against
    /// the row of Kubernetes `version`.
    pub fn check(
        &self,
        version: &str,
        components: &[(&str, Option<&str>)],
    ) -> Result<Vec<Mismatch>, MatrixError> {
        let row = self.row(version)?;
        let k8s = parse_version(version).expect("row() found it");
        let mut mismatches = Vec::new();
        for (component, given) in components {
            let (fits, expected) = match *component {
                "kubelet" | "kubeadm" => (
                    given.and_then(parse_version) == Some(k8s),
                    format!("{}.{}.{}", k8s.0, k8s.1, k8s.2),
                ),
                "kubectl" => (
                    given
                        .and_then(parse_version)
                        .is_some_and(|v| v.0 == k8s.0 && v.1.abs_diff(k8s.1) <= 1),
                    format!("{}.{}.x within one minor version", k8s.0, k8s.1),
                ),
                other => {
                    let accepted = row
                        .accepted()
                        .into_iter()
                        .find(|(name, _)| *name == other)
                        .map_or("", |(_, a)| a);
                    (
                        given.is_some_and(|g| accepts(accepted, g)),
                        accepted.to_string(),
                    )
                }
            };
            if !fits {
                mismatches.push(Mismatch {
                    component: component.to_string(),
                    given: given.map(str::to_string),
                    expected,
                });
            }
        }
        Ok(mismatches)
    }
}

impl Row {
    /// The checked components and what each accepts.
    pub fn accepted(&self) -> [(&'static str, &str); 4] {
        [
            ("containerd", &self.containerd),
            ("runc", &self.runc),
            ("cni_plugins", &self.cni_plugins),
            ("crictl", &self.crictl),
        ]
    }
}

/// Whether `version` is one `accepted` (comma-separated exact versions or
/// patch wildcards) names.
pub fn accepts(accepted: &str, version: &str) -> bool {
    let Some(v) = parse_version(version) else {
        return false;
    };
    accepted
        .split(',')
        .filter_map(|p| parse_pattern(p.trim()))
        .any(|(major, minor, patch)| v.0 == major && v.1 == minor && patch.is_none_or(|p| v.2 == p))
}

/// `1.30.4`, `v1.30.4`, `1.30.4-rc.1`, `1.30.4+k3s1`: the three numbers.
pub fn parse_version(text: &str) -> Option<(u64, u64, u64)> {
    let core = text.trim().trim_start_matches('v');
    let core = core.split(['-', '+', '~']).next()?;
    let mut parts = core.split('.').map(|p| p.parse::<u64>().ok());
    let version = (parts.next()??, parts.next()??, parts.next()??);
    parts.next().is_none().then_some(version)
}

/// `1.7.13` or `1.7.x`.
fn parse_pattern(text: &str) -> Option<(u64, u64, Option<u64>)> {
    if let Some(prefix) = text.strip_suffix(".x") {
        let (major, minor) = prefix.trim_start_matches('v').split_once('.')?;
        return Some((major.parse().ok()?, minor.parse().ok()?, None));
    }
    let (major, minor, patch) = parse_version(text)?;
    Some((major, minor, Some(patch)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_matrix_has_the_platform_table() {
        let m = Matrix::shipped();
        assert_eq!(m.versions(), ["1.30.4", "1.29.4", "1.28.9", "1.27.13"]);
        let row = m.row("v1.30.4").unwrap();
        assert_eq!(
            (
                row.containerd.as_str(),
                row.cni_plugins.as_str(),
                row.crictl.as_str()
            ),
            ("1.7.13", "1.3.0", "1.28.0")
        );
        assert_eq!(m.row("1.27.13").unwrap().cni_plugins, "1.2.0");
        assert!(
            m.row("1.31.0")
                .unwrap_err()
                .to_string()
                .contains("1.30.4, 1.29.4")
        );
    }

    #[test]
    fn versions_and_wildcards() {
        assert!(accepts("1.7.13", "v1.7.13"));
        assert!(accepts("1.7.x", "1.7.22"));
        assert!(accepts("1.6.20, 1.7.x", "1.6.20"));
        assert!(!accepts("1.7.13", "1.6.20"));
        assert!(!accepts("1.7.x", "garbage"));
        assert_eq!(parse_version("1.30.4+k3s1"), Some((1, 30, 4)));
        assert_eq!(parse_version("1.30"), None);
    }

    #[test]
    fn mismatches_name_both_versions() {
        let m = Matrix::shipped();
        let found = m
            .check(
                "1.30.4",
                &[
                    ("kubelet", Some("v1.30.4")),
                    ("kubectl", Some("1.29.8")),
                    ("containerd", Some("1.6.20")),
                    ("runc", None),
                ],
            )
            .unwrap();
        let text: Vec<String> = found.iter().map(ToString::to_string).collect();
        assert_eq!(text.len(), 2, "{text:?}");
        assert!(text[0].contains("containerd 1.6.20") && text[0].contains("1.7.13"));
        assert!(text[1].contains("runc of unknown version"));
    }

    #[test]
    fn a_bad_matrix_is_refused_with_its_origin() {
        let err = Matrix::parse(
            "schema: 1\nversion: x\nkubernetes:\n  1.30.4:\n    containerd: one\n    runc: 1.1.12\n    cni_plugins: 1.3.0\n    crictl: 1.28.0\n    sandbox_image: p:1\n    images: []\n",
            "site.yaml",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("site.yaml") && err.contains("containerd"),
            "{err}"
        );
    }
}
