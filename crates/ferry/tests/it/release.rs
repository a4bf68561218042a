//! The release binary (scripts/release.sh) runs on any x86-64 Linux from
//! glibc 2.17 on: no symbol it needs is versioned later than GLIBC_2.17,
//! it starts, and its sha256 file is right. The build (cargo-zigbuild,
//! several minutes) keeps its target directory in ~/.cache/ferry-tests so
//! later runs are incremental.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Builds (or finds up to date) the release binary; returns its path.
fn release_binary() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let cache = std::env::var_os("FERRY_TEST_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache/ferry-tests")
        });
    let out = Command::new(root.join("scripts/release.sh"))
        .env("CARGO_TARGET_DIR", cache.join("release-target"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "scripts/release.sh: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

/// `2.17` from `GLIBC_2.17`.
fn version_of(symbol_version: &str) -> Option<(u32, u32)> {
    let (major, minor) = symbol_version.strip_prefix("GLIBC_")?.split_once('.')?;
    let minor = minor.split('.').next()?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

#[test]
fn the_release_binary_needs_glibc_2_17_at_most_and_runs() {
    let binary = release_binary();
    let dynamic = Command::new("objdump")
        .arg("-T")
        .arg(&binary)
        .output()
        .unwrap();
    assert!(dynamic.status.success());
    let symbols = String::from_utf8_lossy(&dynamic.stdout);
    let newest = symbols
        .split(|c: char| c.is_whitespace() || c == '(' || c == ')')
        .filter_map(version_of)
        .max()
        .expect("the binary is dynamically linked against glibc");
    assert!(newest <= (2, 17), "needs GLIBC_{}.{}", newest.0, newest.1);

    let version = Command::new(&binary).arg("--version").output().unwrap();
    assert!(version.status.success());
    assert_eq!(
        String::from_utf8_lossy(&version.stdout).trim(),
        format!("ferry {}", env!("CARGO_PKG_VERSION"))
    );

    let sums = std::fs::read_to_string(format!("{}.sha256", binary.display())).unwrap();
    let check = Command::new("sha256sum")
        .arg("--check")
        .arg("--status")
        .current_dir(binary.parent().unwrap())
        .stdin(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(sums.as_bytes())?;
            child.wait()
        })
        .unwrap();
    assert!(check.success(), "{sums}");
    // Stripped: no section of debug information left.
    let sections = Command::new("objdump")
        .arg("-h")
        .arg(&binary)
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&sections.stdout).contains(".debug_info"));
}
