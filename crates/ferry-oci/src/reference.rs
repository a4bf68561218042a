//! Image references, normalized the way Docker and containerd do it
//! (github.com/distribution/reference, `ParseNormalizedNamed`):
//!
//! - the first path component is a registry host if it contains `.` or
//!   `:`, or is `localhost`; otherwise the registry is `docker.io`;
//! - on `docker.io`, a one-component name gets `library/` in front;
//! - `index.docker.io` is `docker.io`;
//! - without a tag or digest, the tag is `latest`.
//!
//! So `nginx` is `docker.io/library/nginx:latest`, and
//! `registry.local:5000/a/b/c@sha256:...` keeps its port, path and digest.

use std::fmt;
use std::str::FromStr;

use crate::digest::{Digest, DigestError};
use crate::name;

pub const DOCKER_HUB: &str = "docker.io";

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reference {
    /// Registry host, with port if any (`docker.io`, `10.0.0.1:5000`).
    pub registry: String,
    /// Repository path inside the registry (`library/nginx`).
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<Digest>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error("empty image reference")]
    Empty,
    #[error("invalid image reference {reference:?}: {reason}")]
    Invalid { reference: String, reason: String },
    #[error("invalid digest in image reference: {0}")]
    Digest(#[from] DigestError),
}

impl Reference {
    /// The registry host that clients actually talk to (Docker Hub's API
    /// lives at `registry-1.docker.io`).
    pub fn api_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            "registry-1.docker.io"
        } else {
            &self.registry
        }
    }

    /// The tag or digest to fetch: the digest wins when both are given,
    /// since it pins the content.
    pub fn tag_or_digest(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".to_string(),
        }
    }

    /// `registry/repository`, without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The same reference with a different registry and repository.
    pub fn relocated(&self, registry: &str, repository: &str) -> Reference {
        Reference {
            registry: registry.to_string(),
            repository: repository.to_string(),
            tag: self.tag.clone(),
            digest: self.digest.clone(),
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

fn looks_like_host(component: &str) -> bool {
    component.contains('.') || component.contains(':') || component == "localhost"
}

fn valid_host(host: &str) -> bool {
    // host[:port], host being a DNS name or an IPv4/IPv6 literal.
    let (h, port) = match host.rsplit_once(':') {
        Some((h, p)) if h.ends_with(']') || !h.contains(':') => (h, Some(p)),
        _ => (host, None),
    };
    if let Some(p) = port
        && (p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return false;
    }
    if let Some(inner) = h.strip_prefix('[').and_then(|x| x.strip_suffix(']')) {
        return inner.parse::<std::net::Ipv6Addr>().is_ok();
    }
    !h.is_empty()
        && h.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

impl FromStr for Reference {
    type Err = ReferenceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = |reason: &str| ReferenceError::Invalid {
            reference: s.to_string(),
            reason: reason.to_string(),
        };
        if s.is_empty() {
            return Err(ReferenceError::Empty);
        }
        let (rest, digest) = match s.split_once('@') {
            Some((rest, d)) => (rest, Some(d.parse::<Digest>()?)),
            None => (s, None),
        };
        // A tag is after the last ':' that follows the last '/'.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name_part, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => {
                let split = last_slash + i;
                (&rest[..split], Some(rest[split + 1..].to_string()))
            }
            None => (rest, None),
        };
        if let Some(tag) = &tag
            && !name::is_valid_tag(tag)
        {
            return Err(invalid(&format!("invalid tag {tag:?}")));
        }
        let (registry, repository) = match name_part.split_once('/') {
            Some((first, remainder)) if looks_like_host(first) => {
                if !valid_host(first) {
                    return Err(invalid(&format!("invalid registry host {first:?}")));
                }
                let host = if first == "index.docker.io" {
                    DOCKER_HUB
                } else {
                    first
                };
                (host.to_string(), remainder.to_string())
            }
            _ => (DOCKER_HUB.to_string(), name_part.to_string()),
        };
        let repository = if registry == DOCKER_HUB && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository
        };
        if !name::is_valid_repository(&repository) {
            let reason = if repository.bytes().any(|b| b.is_ascii_uppercase()) {
                "repository names must be lowercase".to_string()
            } else {
                format!("invalid repository name {repository:?}")
            };
            return Err(invalid(&reason));
        }
        let tag = match (&tag, &digest) {
            (None, None) => Some("latest".to_string()),
            _ => tag,
        };
        Ok(Reference {
            registry,
            repository,
            tag,
            digest,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> String {
        s.parse::<Reference>().unwrap().to_string()
    }

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn docker_normalization() {
        assert_eq!(norm("nginx"), "docker.io/library/nginx:latest");
        assert_eq!(norm("nginx:1.27"), "docker.io/library/nginx:1.27");
        assert_eq!(norm("bitnami/redis"), "docker.io/bitnami/redis:latest");
        assert_eq!(
            norm("index.docker.io/nginx"),
            "docker.io/library/nginx:latest"
        );
        assert_eq!(norm("docker.io/nginx"), "docker.io/library/nginx:latest");
        assert_eq!(norm("localhost/x"), "localhost/x:latest");
        assert_eq!(
            norm("registry.local:5000/a/b/c/d:v1"),
            "registry.local:5000/a/b/c/d:v1"
        );
        assert_eq!(
            norm(&format!("ghcr.io/o/r@{D}")),
            format!("ghcr.io/o/r@{D}")
        );
        assert_eq!(
            norm(&format!("nginx:1@{D}")),
            format!("docker.io/library/nginx:1@{D}")
        );
        assert_eq!(norm("[::1]:5000/x:t"), "[::1]:5000/x:t");
        assert_eq!(norm("127.0.0.1:5000/x"), "127.0.0.1:5000/x:latest");
    }

    #[test]
    fn refused() {
        for bad in [
            "",
            "Nginx",
            "nginx:",
            "nginx:-x",
            "a//b",
            "nginx@sha256:abc",
            "host:port/x",
            "registry.local:5000/",
            "foo.com:99999999/x",
        ] {
            assert!(bad.parse::<Reference>().is_err(), "{bad}");
        }
    }

    #[test]
    fn tag_or_digest() {
        let r: Reference = format!("x/y:1@{D}").parse().unwrap();
        assert_eq!(r.tag_or_digest(), D);
        assert_eq!(r.api_host(), "registry-1.docker.io");
    }
}
