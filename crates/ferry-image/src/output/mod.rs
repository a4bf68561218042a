//! Output writers: one module per artifact format, each reading the
//! [`crate::rootfs::Rootfs`] and reading its output back before the
//! build reports success.

pub mod squashfs;
