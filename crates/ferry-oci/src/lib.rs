//! OCI primitives shared by every ferry crate.
//!
//! - [`Digest`] and [`Algorithm`]: content addresses (`sha256:<hex>`,
//!   `sha512:<hex>`), validated strictly as the image-spec grammar requires,
//!   and [`Hasher`], which computes one while data streams through it
//!   (sha2's SHA-NI backend is picked at run time on CPUs that have it).
//! - [`Reference`]: image references with Docker's normalization
//!   (`nginx` is `docker.io/library/nginx:latest`).
//! - [`media_type`]: the OCI and Docker media types ferry understands.
//! - [`manifest`]: parsing a manifest or index body once, to learn what it
//!   references (config, layers, children, subject) without caring whether
//!   it is OCI or Docker flavoured. The typed structures are oci-spec's,
//!   re-exported as [`spec`].
//! - [`layout`]: reading OCI image layout directories.
//! - [`name`]: validation of repository names and tags.
//! - [`progress`]: the trait through which libraries report progress;
//!   only the binary draws it.
//! - [`atomic`]: crash-safe file writes (temporary file, fsync, rename,
//!   fsync of the directory), shared by every crate that writes files.

pub mod atomic;
pub mod digest;
pub mod layout;
pub mod manifest;
pub mod media_type;
pub mod name;
pub mod progress;
pub mod reference;

pub use digest::{Algorithm, Digest, DigestError, Hasher};
pub use manifest::{Descriptor, ManifestError, ParsedManifest};
pub use reference::{Reference, ReferenceError};

/// The oci-spec crate, re-exported so that users get the same version.
pub use oci_spec as spec;
