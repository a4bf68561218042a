//! Typed errors. The binary turns them into messages and exit codes.

use std::io;
use std::path::PathBuf;

/// The configuration file is unreadable or wrong.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("{}: {message}", path.display())]
    Parse { path: PathBuf, message: String },
    #[error("{}: {}", path.display(), problems.join("\n  "))]
    Invalid {
        path: PathBuf,
        problems: Vec<String>,
    },
}

/// A boot artifact source could not be opened or lacks a file.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("profile `{profile}`: cannot open {}: {source}", path.display())]
    Open {
        profile: String,
        path: PathBuf,
        source: io::Error,
    },
    #[error("profile `{profile}`: {} is not a readable ISO 9660 image: {message}", path.display())]
    NotIso {
        profile: String,
        path: PathBuf,
        message: String,
    },
    #[error("profile `{profile}`: {what} `{file}` not found in {source_desc}")]
    Missing {
        profile: String,
        what: String,
        file: String,
        source_desc: String,
    },
    #[error(
        "profile `{profile}`: no kernel/initrd layout recognized in {source_desc} (looked for {tried}); set kernel: and initrd: in the profile"
    )]
    NoLayout {
        profile: String,
        source_desc: String,
        tried: String,
    },
    #[error("profile `{profile}`: {message}")]
    Oci { profile: String, message: String },
    /// An `oci:` source (or a blob of it) that is not in ferry's registry
    /// yet: it may be pushed while ferry runs.
    #[error("profile `{profile}`: {what} is not in ferry's registry")]
    NotInRegistry { profile: String, what: String },
    #[error("profile `{profile}`: {source}")]
    Store {
        profile: String,
        source: ferry_store::StoreError,
    },
}

/// The hosts inventory could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    #[error("hosts inventory {}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("hosts inventory is full ({max} hosts): not recording {mac}")]
    Full {
        mac: crate::mac::MacAddr,
        max: usize,
    },
    #[error("hosts inventory {} is corrupt: {source}", path.display())]
    Corrupt {
        path: PathBuf,
        source: serde_json::Error,
    },
}

/// Starting or running the netboot services failed.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Artifact(#[from] ArtifactError),
    #[error(transparent)]
    Inventory(#[from] InventoryError),
    #[error("{what}: {source}")]
    Io { what: String, source: io::Error },
    #[error("{0}")]
    Setup(String),
}
