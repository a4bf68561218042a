//! ferry's network boot server: a machine powers on and installs with no
//! keypress.
//!
//! The flow (DESIGN.md, "Netboot flow"): PXE firmware asks DHCP; the
//! site's server gives the address and ferry's ProxyDHCP ([`dhcp`]) gives
//! an iPXE binary over TFTP ([`tftp`]), or, when the client already is
//! iPXE, the URL of `/boot.ipxe`. iPXE then runs ferry's scripts over HTTP
//! ([`http`]): the entry script chains to the machine's own script, which
//! boots the profile's kernel and initrds (or sends a provisioned machine
//! to its disk). The kernel command line carries the host's own config URL
//! and events URL, both holding a per-host secret token; the installer
//! fetches its user-data there and posts `installing`, `ready` or
//! `failed`.
//!
//! - [`config`]: `netboot.yaml` (profiles, hosts, site variables), parsed
//!   strictly, with a JSON schema.
//! - [`template`]: minijinja templates for the command line and user-data.
//! - [`artifact`]: kernel, initrds and root filesystems read in place from
//!   an ISO, a directory or an OCI artifact in ferry's store.
//! - [`inventory`]: each host's state and history, persisted atomically;
//!   shared with `ferry hosts`.
//! - [`service`]: [`Netboot`], what the servers share, and the boot
//!   decision ([`Plan`]).
//! - [`server`]: [`serve`] starts everything.

pub mod artifact;
pub mod config;
pub mod dhcp;
pub mod error;
pub mod http;
pub mod inventory;
pub mod mac;
pub mod server;
pub mod service;
pub mod template;
pub mod tftp;

pub use config::{Config, LoadedConfig};
pub use error::{ArtifactError, ConfigError, InventoryError, ServeError};
pub use inventory::{HostRecord, HostState, Inventory};
pub use mac::MacAddr;
pub use server::{ServeOptions, serve};
pub use service::{Netboot, Plan};
