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
//! - [`writer`]: deterministic output from entries whose content is in
//!   the local cache (a [`ferry_store::Store`]).
//! - [`graph`]: which blobs an entry needs.

pub mod cache;
pub mod container;
pub mod create;
pub mod format;
pub mod graph;
pub mod reader;
pub mod sign;
pub mod sources;
pub mod spec;
pub mod writer;

pub use format::{BundleManifest, Entry, EntryKind};
pub use reader::{Bundle, BundleError};
