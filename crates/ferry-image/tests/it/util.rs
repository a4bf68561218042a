//! Helpers the test modules share: running a reference tool, bytes that
//! do not compress, a file's sha256, tree metadata, the OVF schema check.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use ferry_image::rootfs::Meta;
use ferry_oci::Digest;
use ferry_oci::digest::{Algorithm, Hasher};

/// `security.capability` v2 (VFS_CAP_REVISION_2 with the effective bit)
/// granting cap_net_raw, as on Debian's ping.
pub const CAP_NET_RAW: &[u8] = &[
    1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
];

/// Runs `cmd` and returns what it printed, standard output then standard
/// error (xorriso, for one, reports some fields on standard error);
/// panics with it if `cmd` cannot start or fails.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{text}",
        out.status
    );
    text
}

/// `len` deterministic bytes that do not compress (xorshift64 from
/// `seed`).
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// The sha256 of the file at `path`, streamed.
pub fn sha256(path: &Path) -> Digest {
    let mut hasher = Hasher::new(Algorithm::Sha256);
    let mut file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    std::io::copy(&mut file, &mut hasher).unwrap();
    hasher.finish()
}

/// Metadata with no xattrs.
pub fn meta(mode: u32, uid: u32, gid: u32, mtime: i64) -> Meta {
    Meta {
        mode,
        uid,
        gid,
        mtime,
        xattrs: BTreeMap::new(),
    }
}

/// `meta` with `xattrs` added.
pub fn with_xattrs(mut meta: Meta, xattrs: &[(&str, &[u8])]) -> Meta {
    for (name, value) in xattrs {
        meta.xattrs.insert(name.to_string(), value.to_vec());
    }
    meta
}

/// The schema committed in docs/ovf.rng, run by xmllint on `ovf`;
/// xmllint's report when it does not validate.
pub fn schema_check(ovf: &Path) -> Result<(), String> {
    let schema = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/ovf.rng");
    let out = Command::new("xmllint")
        .arg("--noout")
        .arg("--relaxng")
        .arg(&schema)
        .arg(ovf)
        .output()
        .expect("run xmllint");
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// A directory for what a test binary builds once and keeps in a static:
/// a fixed place under the target directory, emptied at the start of each
/// run (a `TempDir` in a static is never dropped, so it would stay in
/// /tmp after every run).
pub fn run_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
