//! Integration tests of ferry-netboot: configuration, ISO and directory
//! artifacts, the HTTP routes, ProxyDHCP and full DHCP decisions, TFTP
//! over real sockets (with busybox's client as a peer), and security
//! properties. The QEMU end-to-end boots drive `ferry netboot serve` and
//! live in the `ferry` crate's test binary.

mod config;
mod dhcp;
mod http;
mod iso;
mod oci;
mod security;
mod tftp;
mod util;
