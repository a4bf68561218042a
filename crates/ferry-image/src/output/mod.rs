//! The output writers: each turns the [`crate::rootfs::Rootfs`] (and what
//! the other writers made from it) into one artifact, reads it back, and
//! only then puts it under its final name.

pub mod iso;
