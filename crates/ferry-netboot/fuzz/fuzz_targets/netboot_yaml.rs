//! Any netboot.yaml: a config or an error, never a panic.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = ferry_netboot::Config::parse(text, Path::new("netboot.yaml"), Path::new("/srv"));
    }
});
