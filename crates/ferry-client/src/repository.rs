//! [`Repository`]: a handle on one repository of one registry, through
//! which every per-repository operation goes (manifests, blobs, uploads,
//! tags, referrers). The operations themselves live in their own modules
//! as `impl Repository` blocks.

use std::sync::Arc;

use http::{Method, StatusCode};
use url::Url;

use crate::auth::Scope;
use crate::client::{Client, Host};
use crate::error::{ClientError, Result};

/// One repository (`proj/app`) of one registry (`reg.local:5000`).
/// Cheap to clone.
#[derive(Clone)]
pub struct Repository {
    client: Client,
    registry: String,
    name: String,
}

impl std::fmt::Debug for Repository {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Repository({}/{})", self.registry, self.name)
    }
}

impl Repository {
    pub(crate) fn new(client: Client, registry: &str, name: &str) -> Self {
        Repository {
            client,
            registry: registry.to_string(),
            name: name.to_string(),
        }
    }

    /// The registry, `host[:port]`.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The repository name, path prefix included (`proj/library/nginx`).
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Another repository of the same registry.
    pub fn sibling(&self, name: &str) -> Result<Repository> {
        self.client.repository(&self.registry, name)
    }

    pub(crate) async fn host(&self) -> Result<Arc<Host>> {
        self.client.host(&self.registry).await
    }

    /// `base/v2/<name>/<rest>`.
    pub(crate) fn url(&self, host: &Host, rest: &str) -> Url {
        host.base
            .join(&format!("v2/{}/{rest}", self.name))
            .expect("repository names and API paths are valid URL paths")
    }

    pub(crate) fn pull_scopes(&self) -> Vec<Scope> {
        vec![Scope::pull(&self.name)]
    }

    pub(crate) fn push_scopes(&self) -> Vec<Scope> {
        vec![Scope::push(&self.name)]
    }
}

/// Turns any status other than `expected` into a [`ClientError::Registry`].
pub(crate) async fn expect_status(
    method: &Method,
    response: reqwest::Response,
    expected: &[StatusCode],
) -> Result<reqwest::Response> {
    if expected.contains(&response.status()) {
        Ok(response)
    } else {
        Err(ClientError::from_response(method, response).await)
    }
}

/// A header's value as text, if present and readable.
pub(crate) fn header_str<'a>(response: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    response.headers().get(name).and_then(|v| v.to_str().ok())
}

/// `Docker-Content-Digest`, if present and a digest ferry knows.
pub(crate) fn content_digest(response: &reqwest::Response) -> Option<ferry_oci::Digest> {
    header_str(response, "docker-content-digest").and_then(|v| v.trim().parse().ok())
}
