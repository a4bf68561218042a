//! ferry's OCI registry client (distribution-spec 1.1 plus Docker's
//! dialect), built for pushing and pulling multi-GB content reliably.
//!
//! # Types
//!
//! - [`Client`]: one per process; cheap to clone. Built from
//!   [`ClientOptions`]: per-host [`HostConfig`] ([`HostSecurity`]: verified
//!   HTTPS, unverified HTTPS with HTTP fallback, or plain HTTP; extra CA
//!   files; explicit [`Credentials`]), the auth files of `docker login` /
//!   `podman login` ([`CredentialStore`]), the [`RetryPolicy`], timeouts.
//!   It holds one connection pool per host, the learned auth challenges
//!   and the token cache.
//! - [`Repository`]: `client.repository("reg:5000", "proj/app")`; every
//!   per-repository operation: manifests ([`Repository::get_manifest`],
//!   [`Repository::head_manifest`], [`Repository::put_manifest`]), blobs
//!   ([`Repository::blob_exists`], [`Repository::get_blob`] →
//!   [`BlobReader`], [`Repository::fetch_blob`], [`Repository::push_blob`],
//!   [`Repository::mount_blob`]), [`Repository::tags`],
//!   [`Repository::referrers`]. [`Client::ping`] and [`Client::catalog`]
//!   are per registry.
//! - [`BlobSource`]: where pushed bytes come from, re-openable at any
//!   offset: [`FileRange`] (a file or a byte range of one, e.g. a blob
//!   inside a bundle tar) and [`MemorySource`].
//! - [`PushOptions`] (HEAD-skip, mount candidates, one-request vs chunked
//!   threshold, chunk size, [`ResumeStore`]) and the [`PushReport`] of
//!   what happened ([`PushOutcome`]: exists, mounted, uploaded; bytes
//!   sent; where it resumed). [`push_blobs`] runs many pushes with bounded
//!   concurrency.
//! - [`ClientError`]: typed failures carrying the HTTP status and the
//!   registry's error codes, or for a request that got no answer a
//!   [`TransportKind`] (unreachable, untrusted certificate, plain HTTP,
//!   TLS, interrupted).
//!
//! # Data flow
//!
//! Every request goes through [`Client`]'s loop: the [`auth`] module adds
//! `Authorization` (nothing until the host challenges; then Basic, or a
//! Bearer token from the Docker token flow, cached per scope), a `401`
//! teaches it the challenge and the request is sent again, and transient
//! failures (connection errors, 408/429/5xx but 501/505/507) are retried
//! with jittered exponential backoff honoring `Retry-After` ([`retry`]).
//! What a second try cannot change fails at once: an untrusted
//! certificate, a registry that speaks plain HTTP to an HTTPS request
//! (checked with one plain-HTTP request), a full disk (507).
//!
//! Pulls stream: [`BlobReader`] hashes as it hands out chunks, resumes a
//! cut body with `Range`, and ends with `Ok(None)` only if size and digest
//! verify. Manifests are read whole (bounded), checked against the digest
//! asked for and `Docker-Content-Digest`, and kept as exact bytes.
//!
//! Pushes ([`upload`] describes the protocol) read the source in 1 MiB
//! pieces into a bounded channel that feeds the request body, hashing on
//! the way, so memory stays flat whatever the blob size. The final request
//! that commits a blob is only completed once the local hash matched.
//! Chunked uploads save the upload URL and the registry-confirmed offset
//! after each chunk in a [`ResumeStore`]; after a crash the next process
//! asks the registry for the offset and sends only the rest.
//!
//! Proxies come from `HTTPS_PROXY` / `HTTP_PROXY` / `NO_PROXY` (reqwest's
//! default); connections are HTTP/1.1, one per concurrent transfer.
//!
//! Progress goes to [`ferry_oci::progress::Progress`], one task per blob
//! (id = digest); a resume or retry calls `reset` with the offset the
//! transfer continues from.
//!
//! # Registry quirks
//!
//! - **Path prefixes** (Harbor projects, Artifactory repository keys
//!   reached as `host/key/...`, a site prefix): part of the repository
//!   name; scopes and URLs carry it. Only `host[:port]` is the registry.
//! - **Basic-only registries** (ECR, htpasswd): learned from the `Basic`
//!   challenge; credentials then go with every request.
//! - **Token services on another host** (Docker Hub, Harbor, Artifactory's
//!   `/artifactory/api/docker/<key>/v2/token`): whatever `realm` says is
//!   used, reached with the registry host's TLS settings.
//! - **Artifactory**: may omit `Docker-Content-Digest` on `HEAD` (then
//!   [`ManifestInfo::digest`] is `None`), may return absolute upload URLs
//!   on another host or scheme (followed as given), and refuses
//!   cross-repository mounts across repository keys (the `202` fallback
//!   uploads instead). Its `Range` may be `bytes=0-N`; both forms parse.
//! - **ECR** requires `PATCH` chunks of at least 5 MiB: keep
//!   [`PushOptions::chunk_size`] above that (the default is 64 MiB).
//! - **Distribution 2.8 / Harbor** resume only at chunk boundaries (see
//!   [`upload`]).

pub mod auth;
mod blobs;
pub mod challenge;
mod client;
mod concurrent;
pub mod credentials;
pub mod error;
mod listing;
mod manifests;
mod options;
mod repository;
pub mod resume;
pub mod retry;
pub mod source;
pub mod tls;
pub mod upload;

pub use auth::Scope;
pub use blobs::BlobReader;
pub use client::{Client, PingInfo};
pub use concurrent::{BlobPush, push_blobs};
pub use credentials::{CredentialStore, Credentials};
pub use error::{ClientError, RegistryErrorDetail, Result, TransportKind};
pub use listing::Referrers;
pub use manifests::{Manifest, ManifestInfo};
pub use options::{ClientOptions, HostConfig, HostSecurity};
pub use repository::Repository;
pub use resume::{ResumeState, ResumeStore};
pub use retry::RetryPolicy;
pub use source::{BlobSource, ChunkStream, FileRange, MemorySource};
pub use upload::{PushOptions, PushOutcome, PushReport};
