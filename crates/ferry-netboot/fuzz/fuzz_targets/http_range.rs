//! Any `Range` header against any file size, through `parse_range` (the
//! adapter over the `http-range-header` crate): a partial range is always
//! inside the file and non-empty.
#![no_main]

use ferry_netboot::http::files::{RangeRequest, parse_range};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 8 {
        return;
    }
    let size = u64::from_le_bytes(data[..8].try_into().unwrap()) >> (data[0] % 64);
    let Ok(header) = std::str::from_utf8(&data[8..]) else {
        return;
    };
    if let RangeRequest::Partial(r) = parse_range(header, size) {
        assert!(r.start <= r.end && r.end < size, "{header:?} {size} -> {r:?}");
    }
});
