//! Integration tests of ferry-image: one test binary, a module per concern.
//! `fixture` builds (once, cached) the real Debian OS the boot tests use;
//! `qemu` boots an output under SeaBIOS or OVMF and waits for the marker
//! the test overlay unit prints; `disk` tests the raw disk output; `clones`
//! boots two VMs from one image to check sysprep.

mod build;
mod clones;
mod customize;
mod disk;
mod fixture;
mod iso;
mod layers;
mod qemu;
mod snapshot;
mod spec;
mod squashfs;
mod util;
mod vdisk;
