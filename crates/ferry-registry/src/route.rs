//! Parsing `/v2/...` paths into [`Route`]s, once per request.
//!
//! Repository names have any number of `/`-separated components
//! (`a/b/c/d/e`), so the path cannot be matched by a fixed router pattern.
//! The endpoint is recognised from the end of the path instead
//! (distribution-spec "Endpoints" table): `.../manifests/<ref>`,
//! `.../blobs/uploads/[<id>]`, `.../blobs/<digest>`, `.../tags/list`,
//! `.../referrers/<digest>`; whatever precedes it is the name.

use crate::error::RegistryError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `/v2/`
    Base,
    /// `/v2/_catalog`
    Catalog,
    /// `/v2/<name>/tags/list`
    Tags { name: String },
    /// `/v2/<name>/manifests/<reference>`
    Manifest { name: String, reference: String },
    /// `/v2/<name>/blobs/<digest>`
    Blob { name: String, digest: String },
    /// `/v2/<name>/blobs/uploads/` (start) or `.../uploads/<id>`
    Upload { name: String, id: Option<String> },
    /// `/v2/<name>/referrers/<digest>`
    Referrers { name: String, digest: String },
}

/// What a request needs permission for (Docker token scope actions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Pull,
    Push,
    Delete,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Pull => "pull",
            Action::Push => "push",
            Action::Delete => "delete",
        }
    }
}

impl Route {
    /// Parses the part of the path after `/v2/`.
    pub fn parse(rest: &str) -> Result<Route, RegistryError> {
        if rest.is_empty() {
            return Ok(Route::Base);
        }
        if rest == "_catalog" {
            return Ok(Route::Catalog);
        }
        let segments: Vec<&str> = rest.split('/').collect();
        let n = segments.len();
        let name = |upto: usize| segments[..upto].join("/");
        let not_found = || RegistryError::NotFound;
        if n >= 3 && segments[n - 2] == "tags" && segments[n - 1] == "list" {
            return Ok(Route::Tags { name: name(n - 2) });
        }
        if n >= 3 && segments[n - 2] == "manifests" {
            return Ok(Route::Manifest {
                name: name(n - 2),
                reference: segments[n - 1].to_string(),
            });
        }
        if n >= 3 && segments[n - 2] == "referrers" {
            return Ok(Route::Referrers {
                name: name(n - 2),
                digest: segments[n - 1].to_string(),
            });
        }
        if n >= 4 && segments[n - 3] == "blobs" && segments[n - 2] == "uploads" {
            let id = segments[n - 1];
            return Ok(Route::Upload {
                name: name(n - 3),
                id: (!id.is_empty()).then(|| id.to_string()),
            });
        }
        // `/blobs/uploads` without the trailing slash starts an upload too.
        if n >= 3 && segments[n - 2] == "blobs" && segments[n - 1] == "uploads" {
            return Ok(Route::Upload {
                name: name(n - 2),
                id: None,
            });
        }
        if n >= 3 && segments[n - 2] == "blobs" {
            return Ok(Route::Blob {
                name: name(n - 2),
                digest: segments[n - 1].to_string(),
            });
        }
        Err(not_found())
    }

    /// The repository the route is about, if any.
    pub fn repository(&self) -> Option<&str> {
        match self {
            Route::Base | Route::Catalog => None,
            Route::Tags { name }
            | Route::Manifest { name, .. }
            | Route::Blob { name, .. }
            | Route::Upload { name, .. }
            | Route::Referrers { name, .. } => Some(name),
        }
    }

    /// The permission a request with `method` on this route needs.
    pub fn action(&self, method: &axum::http::Method) -> Action {
        use axum::http::Method;
        match *method {
            Method::GET | Method::HEAD => Action::Pull,
            Method::DELETE if !matches!(self, Route::Upload { .. }) => Action::Delete,
            _ => Action::Push,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Route {
        Route::parse(s).unwrap()
    }

    #[test]
    fn deep_names() {
        assert_eq!(
            parse("a/b/c/d/e/manifests/latest"),
            Route::Manifest {
                name: "a/b/c/d/e".into(),
                reference: "latest".into()
            }
        );
        assert_eq!(parse("a/b/tags/list"), Route::Tags { name: "a/b".into() });
        assert_eq!(
            parse("a/blobs/uploads/"),
            Route::Upload {
                name: "a".into(),
                id: None
            }
        );
        assert_eq!(
            parse("x/y/blobs/uploads/abc"),
            Route::Upload {
                name: "x/y".into(),
                id: Some("abc".into())
            }
        );
        assert_eq!(
            parse("x/blobs/sha256:ab"),
            Route::Blob {
                name: "x".into(),
                digest: "sha256:ab".into()
            }
        );
        // Components that look like endpoint words are still names.
        assert_eq!(
            parse("manifests/blobs/manifests/v1"),
            Route::Manifest {
                name: "manifests/blobs".into(),
                reference: "v1".into()
            }
        );
        assert_eq!(parse(""), Route::Base);
        assert_eq!(parse("_catalog"), Route::Catalog);
        assert!(Route::parse("nothing").is_err());
        assert!(Route::parse("a/b").is_err());
    }
}
