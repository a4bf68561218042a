//! What makes an output bootable: the image's kernel and initramfs
//! ([`kernel`]), and GRUB core images built from the image's own GRUB
//! ([`grub`]) by running the image's tools ([`exec`]), and the live
//! initramfs that boots a squashfs root ([`live`]).

pub mod exec;
pub mod grub;
pub mod kernel;
pub mod live;
