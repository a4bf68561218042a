//! How fast ferry hashes on this machine (sha2's SHA-NI path is chosen at
//! run time). `cargo run --release -p ferry-oci --example hash_speed`
//! prints MB/s for sha256 and sha512 over 1 GiB in memory; compare with
//! `sha256sum` (software) and `openssl dgst -sha256` (SHA-NI).

use std::time::Instant;

use ferry_oci::{Algorithm, Hasher};

fn main() {
    let data: Vec<u8> = (0..64 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    for algorithm in Algorithm::ALL {
        let mut hasher = Hasher::new(algorithm);
        let started = Instant::now();
        for _ in 0..16 {
            hasher.update(&data);
        }
        let digest = hasher.finish();
        let secs = started.elapsed().as_secs_f64();
        println!(
            "{algorithm}: {:.0} MB/s over 1 GiB ({})",
            (16 * data.len()) as f64 / 1e6 / secs,
            digest.short()
        );
    }
}
