//! ISO 9660 sources built with xorriso: layouts detected, Rock Ridge and
//! Joliet names, symlinks, plain ISO 9660, byte-exact reads by range, and
//! an image replaced while serving.

use std::collections::BTreeMap;
use std::path::Path;

use ferry_netboot::ArtifactError;
use ferry_netboot::artifact::{ArtifactStore, ProfileFiles};
use ferry_netboot::config::{Config, Profile};

use crate::util::{Site, boot_script, get, pattern, request, xorriso};

fn profile(yaml: &str) -> Profile {
    let full = format!("server: {{address: 10.0.0.2}}\nprofiles:\n  p:\n{yaml}");
    let c = Config::parse(&full, Path::new("t.yaml"), Path::new("/")).unwrap();
    c.config.profiles["p"].clone()
}

fn write(root: &Path, rel: &str, data: &[u8]) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, data).unwrap();
}

/// Reads a resolved file back through its segments.
fn read_all(files: &ProfileFiles, name: &str) -> Vec<u8> {
    use std::io::{Read, Seek, SeekFrom};
    let (_, f) = &files.files[name];
    let mut handle = f.open().unwrap();
    let mut out = Vec::new();
    let mut pos = 0;
    while let Some((off, len)) = f.locate(pos) {
        let mut buf = vec![0u8; len as usize];
        if let Some(off) = off {
            handle.seek(SeekFrom::Start(off)).unwrap();
            handle.read_exact(&mut buf).unwrap();
        }
        out.extend_from_slice(&buf);
        pos += len;
    }
    out
}

#[test]
fn kairos_layout_with_rock_ridge_and_joliet() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    let (kernel, initrd, rootfs) = (
        pattern(400_001, 11),
        pattern(99_999, 12),
        pattern(2_000_000, 13),
    );
    write(&tree, "boot/kernel", &kernel);
    write(&tree, "boot/initrd", &initrd);
    write(&tree, "rootfs.squashfs", &rootfs);
    let iso = dir.path().join("kairos.iso");
    xorriso(&tree, &iso, &["-rockridge", "on", "-joliet", "on"]);
    let p = profile(&format!(
        "    source: {{iso: {}}}\n    cmdline: x\n",
        iso.display()
    ));
    let files = ProfileFiles::resolve("p", &p, None).unwrap();
    assert_eq!(files.layout, Some("kairos"));
    assert_eq!(files.initrds, vec!["initrd"]);
    assert_eq!(read_all(&files, "kernel"), kernel);
    assert_eq!(read_all(&files, "initrd"), initrd);
    assert_eq!(read_all(&files, "rootfs"), rootfs);
    // in place: the kernel's bytes sit inside the image at its extent
    let (_, k) = &files.files["kernel"];
    let image = std::fs::read(&iso).unwrap();
    let off = k.segments[0].offset.unwrap() as usize;
    assert_eq!(&image[off..off + kernel.len()], &kernel[..]);
}

#[test]
fn debian_live_symlink_and_fedora_joliet_only() {
    let dir = tempfile::tempdir().unwrap();
    // Debian live-build: live/vmlinuz is a Rock Ridge symlink to the versioned file
    let tree = dir.path().join("debian");
    write(&tree, "live/vmlinuz-6.1.0-56-amd64", &pattern(50_000, 21));
    write(
        &tree,
        "live/initrd.img-6.1.0-56-amd64",
        &pattern(40_000, 22),
    );
    write(&tree, "live/filesystem.squashfs", &pattern(10_000, 23));
    std::os::unix::fs::symlink("vmlinuz-6.1.0-56-amd64", tree.join("live/vmlinuz")).unwrap();
    std::os::unix::fs::symlink("initrd.img-6.1.0-56-amd64", tree.join("live/initrd.img")).unwrap();
    let iso = dir.path().join("debian.iso");
    xorriso(&tree, &iso, &["-rockridge", "on"]);
    let files = ProfileFiles::resolve(
        "p",
        &profile(&format!(
            "    source: {{iso: {}}}\n    cmdline: x\n",
            iso.display()
        )),
        None,
    )
    .unwrap();
    assert_eq!(files.layout, Some("debian-live"));
    assert_eq!(read_all(&files, "kernel"), pattern(50_000, 21));
    assert_eq!(read_all(&files, "rootfs"), pattern(10_000, 23));

    // Fedora, Joliet names only (no Rock Ridge)
    let tree = dir.path().join("fedora");
    write(&tree, "images/pxeboot/vmlinuz", &pattern(30_000, 31));
    write(&tree, "images/pxeboot/initrd.img", &pattern(20_000, 32));
    write(&tree, "LiveOS/squashfs.img", &pattern(5_000, 33));
    let iso = dir.path().join("fedora.iso");
    xorriso(&tree, &iso, &["-rockridge", "off", "-joliet", "on"]);
    let files = ProfileFiles::resolve(
        "p",
        &profile(&format!(
            "    source: {{iso: {}}}\n    cmdline: x\n",
            iso.display()
        )),
        None,
    )
    .unwrap();
    assert_eq!(files.layout, Some("fedora"));
    assert_eq!(read_all(&files, "initrd"), pattern(20_000, 32));
    assert_eq!(read_all(&files, "rootfs"), pattern(5_000, 33));
}

#[test]
fn explicit_paths_in_plain_iso9660_and_missing_files() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("t");
    write(&tree, "EFI/VMLINUZ", &pattern(3_000, 41));
    write(&tree, "EFI/INITRD", &pattern(2_000, 42));
    write(&tree, "EFI/EXTRA.IMG", &pattern(1_000, 43));
    let iso = dir.path().join("plain.iso");
    xorriso(&tree, &iso, &["-rockridge", "off", "-joliet", "off"]);
    let p = profile(&format!(
        "    source: {{iso: {}}}\n    kernel: efi/vmlinuz\n    initrd: [efi/initrd, EFI/EXTRA.IMG]\n    files: {{extra: efi/extra.img}}\n    cmdline: x\n",
        iso.display()
    ));
    let files = ProfileFiles::resolve("p", &p, None).unwrap();
    assert_eq!(files.initrds, vec!["initrd", "initrd1"]);
    assert_eq!(read_all(&files, "initrd1"), pattern(1_000, 43));
    assert_eq!(read_all(&files, "extra"), pattern(1_000, 43));

    let p = profile(&format!(
        "    source: {{iso: {}}}\n    kernel: efi/nope\n    initrd: [efi/initrd]\n    cmdline: x\n",
        iso.display()
    ));
    let e = ProfileFiles::resolve("p", &p, None).unwrap_err();
    assert!(matches!(e, ArtifactError::Missing { .. }), "{e}");
    assert!(e.to_string().contains("kernel `efi/nope` not found"), "{e}");

    let p = profile(&format!(
        "    source: {{iso: {}}}\n    cmdline: x\n",
        iso.display()
    ));
    let e = ProfileFiles::resolve("p", &p, None).unwrap_err();
    assert!(
        e.to_string().contains("no kernel/initrd layout recognized"),
        "{e}"
    );

    std::fs::write(dir.path().join("fake.iso"), pattern(100_000, 1)).unwrap();
    let p = profile(&format!(
        "    source: {{iso: {}}}\n    cmdline: x\n",
        dir.path().join("fake.iso").display()
    ));
    let e = ProfileFiles::resolve("p", &p, None).unwrap_err();
    assert!(matches!(e, ArtifactError::NotIso { .. }), "{e}");
}

#[test]
fn an_image_replaced_on_disk_is_read_again() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("t");
    write(&tree, "boot/kernel", &pattern(10_000, 51));
    write(&tree, "boot/initrd", &pattern(10_000, 52));
    let iso = dir.path().join("k.iso");
    xorriso(&tree, &iso, &["-rockridge", "on"]);
    let p = profile(&format!(
        "    source: {{iso: {}}}\n    cmdline: x\n",
        iso.display()
    ));
    let store = ArtifactStore::new(&BTreeMap::from([("p".to_string(), p)]), None).unwrap();
    // a new image with different content and layout, renamed over the old
    write(&tree, "boot/aaa-first", &pattern(70_000, 53));
    write(&tree, "boot/kernel", &pattern(20_000, 54));
    let new = dir.path().join("new.iso");
    xorriso(&tree, &new, &["-rockridge", "on"]);
    std::fs::rename(&new, &iso).unwrap();
    let (_, served, _) = store.open("p", "kernel").unwrap().unwrap();
    assert_eq!(served.size, 20_000);
    let files = store.profile("p").unwrap();
    assert_eq!(read_all(&files, "kernel"), pattern(20_000, 54));
}

#[tokio::test]
async fn http_serves_iso_files_byte_exact_with_ranges() {
    let site = Site::new();
    let tree = site.path().join("tree");
    let kernel = pattern(1_234_567, 61);
    write(&tree, "boot/kernel", &kernel);
    write(&tree, "boot/initrd", &pattern(4_096, 62));
    xorriso(
        &tree,
        &site.path().join("k.iso"),
        &["-rockridge", "on", "-joliet", "on"],
    );
    let yaml = crate::util::basic_yaml("").replace("source: {dir: media}", "source: {iso: k.iso}");
    let nb = site.netboot(&yaml);
    let (_, token) = boot_script(&nb, crate::util::MAC).await;
    let url = format!("/h/{token}/files/kernel");
    let full = get(&nb, &url).await;
    assert_eq!(full.status, 200);
    assert_eq!(full.body, kernel);
    let part = request(
        &nb,
        http::Method::GET,
        &url,
        &[("range", "bytes=1000000-1100000")],
        b"",
    )
    .await;
    assert_eq!(part.status, 206);
    assert_eq!(part.body, &kernel[1_000_000..=1_100_000]);
    assert_eq!(
        part.headers["content-range"],
        "bytes 1000000-1100000/1234567"
    );
}
