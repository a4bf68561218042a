//! The output writers: each turns the [`crate::rootfs::Rootfs`] (and what
//! the other writers made from it) into one artifact, reads it back, and
//! only then puts it under its final name.

pub mod atomic;
pub mod disk;
pub mod iso;
pub mod netboot;
pub mod ova;
pub mod ovf;
pub mod pipeline;
pub mod qcow2;
pub mod raw;
pub mod squashfs;
pub mod vmdk;
