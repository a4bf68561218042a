//! Where the push put each image of the bundle that came from a registry:
//! the one answer to "what does the site pull instead of X?", shared by the
//! relocated manifests and the mirror rules.
//!
//! Only registry sources count: an image from an `oci:` layout or an
//! archive has no upstream name a manifest or a node could ask for, and
//! files, charts and manifests are not pulled by container runtimes.

use std::collections::BTreeSet;
use std::path::Path;

use ferry_oci::{Digest, Reference};

use super::RelocateError;
use crate::format::EntryKind;
use crate::graph;
use crate::push::{Target, target_repository};
use crate::reader::Bundle;
use crate::sources::ImageSource;

/// One registry image of the bundle, as pushed.
#[derive(Debug, Clone)]
pub(crate) struct Placed {
    /// The image's upstream name, tag and/or digest, as the spec gave it.
    pub source: Reference,
    /// Its repository on the target, prefix and `--map` applied.
    pub repository: String,
    /// The tag it was pushed with (the spec's `tag:` may differ from the source's).
    pub tag: Option<String>,
    /// Its root manifest or index.
    pub root: Digest,
    /// The root and every manifest below it (a platform's manifest is
    /// pushed into the same repository, so it can be pinned too).
    pub manifests: BTreeSet<Digest>,
}

/// The bundle's registry images on one target.
#[derive(Debug)]
pub(crate) struct Catalog {
    /// The target registry host (`HOST[:PORT]`).
    pub registry: String,
    pub placed: Vec<Placed>,
}

impl Catalog {
    pub fn new(
        bundle: &Bundle,
        target: &Target,
        map: &[(String, String)],
    ) -> Result<Catalog, RelocateError> {
        let mut placed = Vec::new();
        for entry in &bundle.manifest.entries {
            if !matches!(
                entry.kind,
                EntryKind::Image | EntryKind::OsImage | EntryKind::Artifact
            ) {
                continue;
            }
            // Sources are spec text; a relative path base is not needed
            // to tell a registry reference from a local one.
            let Ok(ImageSource::Registry(source)) =
                ImageSource::parse(&entry.source, Path::new(""))
            else {
                continue;
            };
            let repository =
                target_repository(entry, target, map).map_err(RelocateError::Mapping)?;
            let graph = graph::walk(bundle, &entry.descriptor)?;
            placed.push(Placed {
                source,
                repository,
                tag: entry.tag.clone(),
                root: entry.descriptor.digest.clone(),
                manifests: graph.manifests.into_iter().map(|(d, _)| d.digest).collect(),
            });
        }
        Ok(Catalog {
            registry: target.registry.clone(),
            placed,
        })
    }

    /// The registries the bundle's images came from.
    pub fn upstreams(&self) -> BTreeSet<&str> {
        self.placed
            .iter()
            .map(|p| p.source.registry.as_str())
            .collect()
    }

    /// The images that came from `upstream`.
    pub fn images_from<'a>(&'a self, upstream: &'a str) -> impl Iterator<Item = &'a Placed> {
        self.placed
            .iter()
            .filter(move |p| p.source.registry == upstream)
    }

    /// What the site pulls instead of `reference`, if the bundle carries
    /// that image: by digest when the reference pins one (any manifest of
    /// the image), else by its tag. A tag the push changed is followed; an
    /// image pushed by digest only is pinned by that digest.
    pub fn relocate(&self, reference: &Reference) -> Option<Reference> {
        let mut same_name = self.placed.iter().filter(|p| {
            p.source.registry == reference.registry && p.source.repository == reference.repository
        });
        let placed = match &reference.digest {
            Some(digest) => same_name.find(|p| p.manifests.contains(digest))?,
            None => same_name.find(|p| p.source.tag.is_some() && p.source.tag == reference.tag)?,
        };
        let tag = reference.tag.as_ref().and(placed.tag.clone());
        let digest = reference
            .digest
            .clone()
            .or_else(|| tag.is_none().then(|| placed.root.clone()));
        Some(Reference {
            registry: self.registry.clone(),
            repository: placed.repository.clone(),
            tag,
            digest,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    fn catalog(placed: Vec<Placed>) -> Catalog {
        Catalog {
            registry: "reg.site:5000".into(),
            placed,
        }
    }

    fn placed(source: &str, repository: &str, tag: Option<&str>) -> Placed {
        Placed {
            source: source.parse().unwrap(),
            repository: repository.into(),
            tag: tag.map(str::to_string),
            root: D1.parse().unwrap(),
            manifests: [D1.parse().unwrap(), D2.parse().unwrap()].into(),
        }
    }

    fn relocate(c: &Catalog, r: &str) -> Option<String> {
        c.relocate(&r.parse().unwrap()).map(|r| r.to_string())
    }

    #[test]
    fn by_tag_by_digest_and_not_at_all() {
        let c = catalog(vec![placed("nginx:1.27", "m/library/nginx", Some("1.27"))]);
        assert_eq!(
            relocate(&c, "docker.io/library/nginx:1.27").as_deref(),
            Some("reg.site:5000/m/library/nginx:1.27")
        );
        assert_eq!(
            relocate(&c, &format!("nginx@{D2}")).unwrap(),
            format!("reg.site:5000/m/library/nginx@{D2}")
        );
        assert_eq!(
            relocate(&c, &format!("nginx:1.27@{D1}")).unwrap(),
            format!("reg.site:5000/m/library/nginx:1.27@{D1}")
        );
        // Another tag, another digest, another registry: not in the bundle.
        assert_eq!(relocate(&c, "nginx:1.26"), None);
        assert_eq!(
            relocate(
                &c,
                "nginx@sha256:3333333333333333333333333333333333333333333333333333333333333333"
            ),
            None
        );
        assert_eq!(relocate(&c, "quay.io/library/nginx:1.27"), None);
    }

    #[test]
    fn a_changed_tag_is_followed_and_no_tag_pins_the_digest() {
        let c = catalog(vec![
            placed("quay.io/org/app:1.0", "apps/app", Some("stable")),
            placed(&format!("registry.k8s.io/pause@{D1}"), "pause", None),
        ]);
        assert_eq!(
            relocate(&c, "quay.io/org/app:1.0").as_deref(),
            Some("reg.site:5000/apps/app:stable")
        );
        assert_eq!(
            relocate(&c, &format!("registry.k8s.io/pause@{D1}")).unwrap(),
            format!("reg.site:5000/pause@{D1}")
        );
    }
}
