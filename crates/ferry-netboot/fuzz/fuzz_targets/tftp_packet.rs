//! Any datagram to the TFTP server: parsing never panics, negotiated
//! options stay within the RFC limits, and no file name leaves the root.
#![no_main]

use std::path::{Component, Path};

use ferry_netboot::tftp::packet::{self, Packet};
use ferry_netboot::tftp::{MAX_BLKSIZE, MAX_WINDOW, MIN_BLKSIZE, negotiate, path};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(Packet::Read { filename, mode, options }) = packet::parse(data) else {
        return;
    };
    let n = negotiate(&options, 74_213);
    assert!((MIN_BLKSIZE..=MAX_BLKSIZE).contains(&n.blksize));
    assert!((1..=MAX_WINDOW).contains(&n.windowsize));
    let root = Path::new("/srv/tftp");
    if let Some(p) = path::resolve(root, &filename) {
        assert!(p.starts_with(root), "{p:?}");
        assert!(p.components().all(|c| c != Component::ParentDir), "{p:?}");
        assert!(p != root);
    }
    // what parsed re-encodes to the same request
    let opts: Vec<(&str, &str)> = options.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let again = packet::parse(&packet::read_request(&filename, &mode, &opts)).unwrap();
    assert_eq!(again, Packet::Read { filename, mode, options });
});
