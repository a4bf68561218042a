//! Integration tests of ferry-image against the real tools that read its
//! outputs.

mod squashfs;
