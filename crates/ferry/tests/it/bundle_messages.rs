//! What the bundle commands say about a file that is not a (whole)
//! bundle: plainly what it is, and for a split bundle which part is
//! missing.

use std::path::Path;

use crate::bundle::split_bundle;
use crate::{ferry, run};

/// `ferry bundle inspect PATH`'s exit code and stderr, with `dir` shown as `DIR`.
fn inspect(path: &Path, dir: &Path) -> String {
    let out = run(ferry()
        .current_dir(dir)
        .args(["bundle", "inspect"])
        .arg(path));
    format!(
        "exit {}: {}",
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).replace(&dir.display().to_string(), "DIR")
    )
}

#[test]
fn a_file_that_is_not_a_bundle_is_called_that() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(
        dir.join("notes.txt"),
        "root:x:0:0:root:/root:/bin/bash\n".repeat(40),
    )
    .unwrap();
    std::fs::write(dir.join("program"), crate::images::bytes(3, 4096)).unwrap();
    std::fs::write(dir.join("empty.ferry"), b"").unwrap();
    let mut tar = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_ustar();
    header.set_size(6);
    header.set_mode(0o644);
    header.set_cksum();
    tar.append_data(&mut header, "hello.txt", &b"hello\n"[..])
        .unwrap();
    std::fs::write(dir.join("other.tar"), tar.into_inner().unwrap()).unwrap();
    std::fs::create_dir(dir.join("a-directory")).unwrap();
    let said: Vec<String> = [
        "notes.txt",
        "program",
        "empty.ferry",
        "other.tar",
        "a-directory",
    ]
    .iter()
    .map(|name| inspect(Path::new(name), dir))
    .collect();
    insta::assert_snapshot!(said.join(""));
}

#[test]
fn a_split_bundle_with_a_missing_part_names_the_part() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let split = split_bundle(dir);
    let parts: Vec<_> = (0..)
        .map(|i| dir.join(format!("split.ferry.{i:03}")))
        .take_while(|p| p.exists())
        .collect();
    let mut said = Vec::new();
    // The last part.
    let last = parts.last().unwrap();
    std::fs::rename(last, dir.join("aside")).unwrap();
    said.push(inspect(Path::new("split.ferry"), dir));
    std::fs::rename(dir.join("aside"), last).unwrap();
    // The first, asked for by the bundle's name and by a later part's.
    std::fs::rename(&parts[0], dir.join("aside")).unwrap();
    said.push(inspect(Path::new("split.ferry"), dir));
    said.push(inspect(Path::new("split.ferry.001"), dir));
    std::fs::rename(dir.join("aside"), &parts[0]).unwrap();
    // One in the middle.
    std::fs::remove_file(&parts[1]).unwrap();
    said.push(inspect(&split, dir));
    insta::assert_snapshot!(said.join(""));
}

#[test]
fn verify_names_the_entry_a_bad_blob_belongs_to() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    crate::images::standard(&dir.join("src"));
    let site = dir.join("site.ferry");
    crate::bundle::bundle_from_layout(
        &dir.join("src"),
        &["multi", "many"],
        &site,
        ferry_bundle::writer::WriteOptions::default(),
    );
    // A bit flips in the largest layer (one of multi's).
    let bundle = ferry_bundle::Bundle::open(&site).unwrap();
    let victim = bundle.manifest.blobs.iter().max_by_key(|b| b.size).unwrap();
    let member = bundle.blob(&victim.digest).unwrap();
    let mut bytes = std::fs::read(&site).unwrap();
    bytes[(member.offset + member.size / 2) as usize] ^= 0x04;
    std::fs::write(&site, &bytes).unwrap();
    let out = run(ferry()
        .current_dir(dir)
        .args(["bundle", "verify", "-q", "site.ferry"]));
    assert_eq!(out.status.code(), Some(1));
    let report = run(ferry()
        .current_dir(dir)
        .args(["bundle", "verify", "--json", "site.ferry"]));
    let report: serde_json::Value = serde_json::from_slice(&report.stdout).unwrap();
    insta::assert_snapshot!(format!(
        "{}{}\n{:#}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        report["problems"]
    ));
}
