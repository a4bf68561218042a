//! Listings: tags (`/v2/<name>/tags/list`), the catalog (`/v2/_catalog`)
//! and referrers (`/v2/<name>/referrers/<digest>`), each followed across
//! pages through the `Link: <url>; rel="next"` header (RFC 8288), which
//! registries send when they cut a list short.
//!
//! Registries without the referrers API answer it with 404; referrers are
//! then read from the "referrers tag schema" fallback the distribution-spec
//! defines: an index tagged `<alg>-<first 64 hex chars of the digest>`.

use ferry_oci::{Descriptor, Digest, media_type};
use http::{Method, StatusCode};
use serde::Deserialize;
use url::Url;

use crate::auth::Scope;
use crate::client::{Client, Host, Request};
use crate::error::{ClientError, Result, read_limited};
use crate::repository::{Repository, expect_status, header_str};

/// Largest listing page accepted (a page of names is small; this only
/// guards against a runaway response).
const MAX_PAGE_BYTES: u64 = 16 * 1024 * 1024;

/// Pages followed at most, so a registry whose `Link` loops cannot keep
/// the client busy forever.
const MAX_PAGES: usize = 100_000;

/// Referrers of a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Referrers {
    pub descriptors: Vec<Descriptor>,
    /// The registry applied the `artifactType` filter (`OCI-Filters-Applied`);
    /// if it did not, ferry filtered the list itself.
    pub filtered_by_registry: bool,
    /// Read from the referrers tag schema (registry without the API).
    pub from_tag_schema: bool,
}

#[derive(Deserialize)]
struct TagList {
    #[serde(default)]
    tags: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct Catalog {
    #[serde(default)]
    repositories: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct Index {
    #[serde(default)]
    manifests: Vec<Descriptor>,
}

/// The `rel="next"` target of a `Link` header, resolved against `base`.
fn next_link(response: &reqwest::Response) -> Option<Url> {
    response
        .headers()
        .get_all(http::header::LINK)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|link| {
            let (target, params) = link.trim().split_once(';')?;
            let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
            let is_next = params.split(';').any(|p| {
                let p = p.trim().replace(' ', "");
                p == "rel=next" || p == "rel=\"next\""
            });
            is_next.then(|| response.url().join(target).ok())?
        })
}

/// Fetches every page from `first`, handing each body to `collect`.
async fn paginate(
    client: &Client,
    host: &Host,
    first: Url,
    scopes: Vec<Scope>,
    mut collect: impl FnMut(&Url, &[u8]) -> Result<()>,
) -> Result<()> {
    let mut next = Some(first);
    let mut pages = 0;
    while let Some(url) = next.take() {
        pages += 1;
        if pages > MAX_PAGES {
            return Err(ClientError::protocol(&url, "more than 100000 pages"));
        }
        let response = client
            .send(host, Request::new(Method::GET, url.clone(), scopes.clone()))
            .await?;
        let response = expect_status(&Method::GET, response, &[StatusCode::OK]).await?;
        next = next_link(&response).filter(|n| n != &url);
        let body = match read_limited(response, MAX_PAGE_BYTES).await {
            Ok(body) => body,
            Err(Some(e)) => return Err(ClientError::transport(&Method::GET, url.as_str(), e)),
            Err(None) => {
                return Err(ClientError::protocol(
                    &url,
                    "listing page larger than 16 MiB",
                ));
            }
        };
        collect(&url, &body)?;
    }
    Ok(())
}

impl Repository {
    /// Every tag of the repository, all pages followed. A repository the
    /// registry does not know has no tags.
    pub async fn tags(&self) -> Result<Vec<String>> {
        self.tags_paged(None).await
    }

    /// Like [`Repository::tags`], asking for pages of `page_size` tags.
    pub async fn tags_paged(&self, page_size: Option<usize>) -> Result<Vec<String>> {
        let host = self.host().await?;
        let mut url = self.url(&host, "tags/list");
        if let Some(n) = page_size {
            url.query_pairs_mut().append_pair("n", &n.to_string());
        }
        let mut tags = Vec::new();
        let result = paginate(
            self.client(),
            &host,
            url,
            self.pull_scopes(),
            |url, body| {
                let page: TagList = serde_json::from_slice(body)
                    .map_err(|e| ClientError::protocol(url, format!("tag list: {e}")))?;
                tags.extend(page.tags.unwrap_or_default());
                Ok(())
            },
        )
        .await;
        match result {
            Err(e) if e.status() == Some(StatusCode::NOT_FOUND) && tags.is_empty() => {
                Ok(Vec::new())
            }
            Err(e) => Err(e),
            Ok(()) => Ok(tags),
        }
    }

    /// The manifests whose `subject` is `subject`, optionally only those of
    /// `artifact_type`.
    pub async fn referrers(
        &self,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Referrers> {
        let host = self.host().await?;
        let mut url = self.url(&host, &format!("referrers/{subject}"));
        if let Some(t) = artifact_type {
            url.query_pairs_mut().append_pair("artifactType", t);
        }
        // The first page decides between the API and the fallback.
        let request = Request::new(Method::GET, url.clone(), self.pull_scopes())
            .header(http::header::ACCEPT, media_type::OCI_INDEX)?;
        let response = self.client().send(&host, request).await?;
        if response.status() == StatusCode::NOT_FOUND {
            return self.referrers_from_tag(subject, artifact_type).await;
        }
        let response = expect_status(&Method::GET, response, &[StatusCode::OK]).await?;
        let filtered_by_registry = artifact_type.is_some()
            && header_str(&response, "oci-filters-applied")
                .is_some_and(|v| v.split(',').any(|f| f.trim() == "artifactType"));
        let next = next_link(&response).filter(|n| n != &url);
        let body = read_limited(response, MAX_PAGE_BYTES)
            .await
            .map_err(|_| ClientError::protocol(&url, "unreadable referrers page"))?;
        let mut descriptors = parse_index(&url, &body)?;
        if let Some(next) = next {
            paginate(
                self.client(),
                &host,
                next,
                self.pull_scopes(),
                |url, body| {
                    descriptors.extend(parse_index(url, body)?);
                    Ok(())
                },
            )
            .await?;
        }
        if let Some(t) = artifact_type.filter(|_| !filtered_by_registry) {
            descriptors.retain(|d| d.artifact_type.as_deref() == Some(t));
        }
        Ok(Referrers {
            descriptors,
            filtered_by_registry,
            from_tag_schema: false,
        })
    }

    async fn referrers_from_tag(
        &self,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Referrers> {
        let tag = referrers_tag(subject);
        let mut descriptors = match self.get_manifest(&tag).await {
            Ok(index) => parse_index(&tag, &index.bytes)?,
            Err(e) if e.status() == Some(StatusCode::NOT_FOUND) => Vec::new(),
            Err(e) => return Err(e),
        };
        if let Some(t) = artifact_type {
            descriptors.retain(|d| d.artifact_type.as_deref() == Some(t));
        }
        Ok(Referrers {
            descriptors,
            filtered_by_registry: false,
            from_tag_schema: true,
        })
    }
}

/// The tag under which a registry without the referrers API keeps the
/// referrers of `subject` (distribution-spec 1.1 "Referrers Tag Schema":
/// `<alg>-<ref>`, the hex truncated to 64 characters).
pub(crate) fn referrers_tag(subject: &Digest) -> String {
    let hex = subject.hex();
    format!("{}-{}", subject.algorithm(), &hex[..hex.len().min(64)])
}

fn parse_index(what: impl std::fmt::Display, body: &[u8]) -> Result<Vec<Descriptor>> {
    serde_json::from_slice::<Index>(body)
        .map(|i| i.manifests)
        .map_err(|e| ClientError::protocol(what, format!("referrers index: {e}")))
}

impl Client {
    /// Every repository of the registry (`/v2/_catalog`), all pages
    /// followed. Many registries restrict or disable it.
    pub async fn catalog(&self, registry: &str, page_size: Option<usize>) -> Result<Vec<String>> {
        let host = self.host(registry).await?;
        let mut url = host.base.join("v2/_catalog").expect("static path");
        if let Some(n) = page_size {
            url.query_pairs_mut().append_pair("n", &n.to_string());
        }
        let mut names = Vec::new();
        paginate(self, &host, url, vec![Scope::catalog()], |url, body| {
            let page: Catalog = serde_json::from_slice(body)
                .map_err(|e| ClientError::protocol(url, format!("catalog: {e}")))?;
            names.extend(page.repositories.unwrap_or_default());
            Ok(())
        })
        .await?;
        Ok(names)
    }
}
