//! OS images built offline from an OCI image: the third flow of ferry.
//!
//! Data flows one way:
//!
//! 1. the base OS image (a bootc-style container image holding a whole OS,
//!    kernel and initramfs included) is found in ferry's store, a
//!    registry, an OCI layout or archive, or a bundle;
//! 2. [`rootfs`]: its layers are applied in order to a [`rootfs::Rootfs`]
//!    (whiteouts, opaque directories, hard links, devices, owners, modes
//!    and xattrs kept as data, so no root is needed);
//! 3. customization and sysprep change that tree;
//! 4. one writer per output format turns it into artifacts, each read back
//!    before the build reports success, and `manifest.json` records every
//!    input and output.

pub mod artifacts;
pub mod assemble;
pub mod boot;
pub mod build;
pub mod customize;
pub mod fetch;
pub mod import;
pub mod kubernetes;
pub mod output;
pub mod rootfs;
pub mod source;
pub mod spec;
