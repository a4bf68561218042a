//! The ferry bundle: one file that carries a site's software across the
//! air gap and proves, before anything is loaded, that nothing was lost or
//! altered on the way.
//!
//! - [`format`]: the shape (a tar of an OCI image layout plus
//!   `ferry/bundle.json`, the [`format::BundleManifest`] that lists every
//!   entry and every blob's digest and size).
//! - [`container`]: where a bundle's bytes are: one file, split parts, or
//!   the tail of a self-extracting executable.
//! - [`reader`]: [`reader::Bundle::open`] walks the tar headers once,
//!   refuses unsafe members and incomplete bundles, and serves blobs in
//!   place by offset.
//! - [`spec`]: `ferry.yaml`, what a bundle should carry; [`create`] turns
//!   it into entries whose content is in the [`cache`] (a
//!   [`ferry_store::Store`] every source streams into, verified), reading
//!   registries, layouts, archives, chart repositories and URLs through
//!   [`sources`]; then [`writer`] writes the bundle deterministically from
//!   the cache, signed by [`sign`] (minisign format) if asked.
//! - [`writer`]: deterministic output from entries whose content is in
//!   the local cache.
//! - [`graph`]: which blobs an entry needs.
//! - [`inspect`] and [`verify`]: what a bundle carries, and whether every
//!   byte of it is what it claims.
//! - [`push`]: into any registry, in place, resumable, in parallel;
//!   [`import`]: into ferry's own store without HTTP; [`serve`]: a
//!   read-only registry straight from the file; [`relocate`]: the site's
//!   Kubernetes manifests and mirror configuration after a push.

pub mod cache;
pub mod container;
pub mod create;
pub mod format;
pub mod graph;
pub mod import;
pub mod inspect;
pub mod layout;
pub mod push;
pub mod reader;
pub mod relocate;
pub mod serve;
pub mod sign;
pub mod sources;
pub mod spec;
pub mod verify;
pub mod writer;

pub use format::{BundleManifest, Entry, EntryKind};
pub use reader::{Bundle, BundleError};
