//! The virtual-disk outputs (qcow2, stream-optimized VMDK, OVA) checked
//! with the tools that consume them here: `qemu-img` (check, compare,
//! info, convert back to raw), `tar`, `xmllint`; and the known vSphere
//! import breakers, each with its own test. The raw GPT disk is made by
//! the test: sparse, pseudo-random data in some regions, text in another,
//! explicit zeros in another, a grain table's whole range empty, and a
//! last grain only partly inside the disk (where the backup GPT lives).

use std::fs;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use ferry_image::output::ovf::{
    Appliance, Controller, Firmware, GUEST_INFO_TRANSPORT, GuestOs, Hardware, Nic, Product,
    Property, PropertyType,
};
use ferry_image::output::vmdk::{AdapterType, StreamOptions};
use ferry_image::output::{ova, qcow2, vmdk};
use ferry_oci::progress::NoProgress;

use crate::util::{noise, run, schema_check, sha256};

const MIB: u64 = 1 << 20;
/// 100 MiB and 3 sectors: four grain tables' worth (32 MiB each), the
/// last grain partial.
const DISK_SIZE: u64 = 100 * MIB + 3 * 512;

fn gpt_disk(dir: &Path) -> PathBuf {
    let path = dir.join("disk.raw");
    fs::File::create(&path).unwrap().set_len(DISK_SIZE).unwrap();
    run(Command::new("sgdisk")
        .args(["-n1:2048:+16M", "-t1:ef00", "-n2:0:0", "-t2:8300"])
        .arg(&path));
    let file = fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.write_all_at(&noise(3 * MIB as usize, 1), 2 * MIB)
        .unwrap();
    let text: String = (0..40_000)
        .map(|i| format!("line {i} of a config file\n"))
        .collect();
    file.write_all_at(text.as_bytes(), 10 * MIB + 123).unwrap();
    // Written zeros: allocated in the raw file, not in the outputs.
    file.write_all_at(&vec![0u8; MIB as usize], 20 * MIB)
        .unwrap();
    // Nothing between 32 and 64 MiB: an empty grain table. Then data
    // across a grain boundary.
    file.write_all_at(&noise(100_000, 2), 70 * MIB + 4096)
        .unwrap();
    file.sync_all().unwrap();
    path
}

/// 64 KiB clusters of the raw disk that hold a non-zero byte.
fn data_clusters(raw: &Path) -> u64 {
    fs::read(raw)
        .unwrap()
        .chunks(65536)
        .filter(|c| c.iter().any(|&b| b != 0))
        .count() as u64
}

fn stream_options(threads: usize) -> StreamOptions {
    StreamOptions {
        adapter: AdapterType::Pvscsi,
        hardware_version: 13,
        threads,
    }
}

fn appliance() -> Appliance {
    Appliance {
        name: "rocky-9-kube-v1.30.4".into(),
        product: Product {
            product: "Rocky Linux 9 and Kubernetes v1.30.4".into(),
            vendor: Some("ferry".into()),
            version: "v1.30.4".into(),
            full_version: Some("v1.30.4+ferry.1".into()),
            product_url: None,
            vendor_url: Some("https://example.invalid/ferry".into()),
        },
        properties: vec![
            Property::input("base", "registry.local/os/rocky:9@sha256:0123"),
            Property {
                key: "guestinfo.userdata".into(),
                kind: PropertyType::String,
                value: String::new(),
                label: Some("cloud-init user data".into()),
                description: Some("base64 <user-data> & more".into()),
                user_configurable: true,
                category: Some("cloud-init".into()),
            },
            Property {
                key: "guestinfo.userdata.encoding".into(),
                kind: PropertyType::String,
                value: "base64".into(),
                label: None,
                description: None,
                user_configurable: true,
                category: Some("cloud-init".into()),
            },
        ],
        os: GuestOs::from_vmware_id("rhel9_64Guest"),
        hardware: Hardware {
            version: 13,
            firmware: Firmware::Efi,
            cpus: 2,
            memory_mib: 4096,
            controller: Controller::Pvscsi,
            nic: Nic::Vmxnet3,
        },
        network: "nic0".into(),
        transport: Some(GUEST_INFO_TRANSPORT.into()),
    }
}

fn ova_options(threads: usize) -> ova::OvaOptions {
    ova::OvaOptions {
        name: "rocky-9-kube-v1.30.4".into(),
        appliance: appliance(),
        threads,
        mtime: 1_700_000_000,
    }
}

#[test]
fn qcow2_is_clean_equal_to_the_raw_disk_sparse_and_reproducible() {
    let dir = tempfile::tempdir().unwrap();
    let raw = gpt_disk(dir.path());
    let out = dir.path().join("disk.qcow2");
    let report = qcow2::write(&raw, &out, &NoProgress).unwrap();

    let check = run(Command::new("qemu-img")
        .args(["check", "-f", "qcow2"])
        .arg(&out));
    assert!(check.contains("No errors were found"), "{check}");
    let compare = run(Command::new("qemu-img")
        .args(["compare", "-f", "raw", "-F", "qcow2"])
        .arg(&raw)
        .arg(&out));
    assert!(compare.contains("Images are identical"), "{compare}");
    let info = run(Command::new("qemu-img")
        .args(["info", "--output=json"])
        .arg(&out));
    assert!(info.contains("\"format\": \"qcow2\""), "{info}");
    assert!(info.contains("\"compat\": \"1.1\""), "qcow2 v3: {info}");
    assert!(info.contains("\"cluster-size\": 65536"), "{info}");
    assert!(
        info.contains(&format!("\"virtual-size\": {DISK_SIZE}")),
        "{info}"
    );

    // Zero clusters, written or not, are not allocated.
    assert_eq!(report.data_clusters, data_clusters(&raw));
    assert_eq!(report.virtual_size, DISK_SIZE);
    assert_eq!(report.file_size, fs::metadata(&out).unwrap().len());
    assert_eq!(report.sha256, sha256(&out));

    let again = dir.path().join("again.qcow2");
    assert_eq!(
        qcow2::write(&raw, &again, &NoProgress).unwrap().sha256,
        report.sha256
    );
    assert_eq!(sha256(&again), report.sha256);
}

#[test]
fn vmdk_is_stream_optimized_clean_and_converts_back_to_the_raw_disk() {
    let dir = tempfile::tempdir().unwrap();
    let raw = gpt_disk(dir.path());
    let out = dir.path().join("disk.vmdk");
    let report = vmdk::write_stream_optimized(&raw, &out, &stream_options(0), &NoProgress).unwrap();

    let check = run(Command::new("qemu-img")
        .args(["check", "-f", "vmdk"])
        .arg(&out));
    assert!(check.contains("No errors were found"), "{check}");
    let info = run(Command::new("qemu-img")
        .args(["info", "--output=json"])
        .arg(&out));
    assert!(
        info.contains("\"create-type\": \"streamOptimized\""),
        "{info}"
    );
    assert!(info.contains("\"compressed\": true"), "{info}");
    assert!(
        info.contains(&format!("\"virtual-size\": {DISK_SIZE}")),
        "{info}"
    );
    let compare = run(Command::new("qemu-img")
        .args(["compare", "-f", "raw", "-F", "vmdk"])
        .arg(&raw)
        .arg(&out));
    assert!(compare.contains("Images are identical"), "{compare}");
    let back = dir.path().join("back.raw");
    run(Command::new("qemu-img")
        .args(["convert", "-f", "vmdk", "-O", "raw"])
        .arg(&out)
        .arg(&back));
    assert!(
        fs::read(&back).unwrap() == fs::read(&raw).unwrap(),
        "the raw disk comes back"
    );

    assert_eq!(report.grains, data_clusters(&raw));
    assert_eq!(report.capacity, DISK_SIZE);
    assert_eq!(report.sha256, sha256(&out));
    let bytes = fs::read(&out).unwrap();
    let descriptor = String::from_utf8_lossy(&bytes[512..512 * 21]);
    assert!(
        descriptor.contains("createType=\"streamOptimized\""),
        "{descriptor}"
    );
    assert!(
        descriptor.contains("ddb.adapterType = \"pvscsi\""),
        "{descriptor}"
    );
    assert!(
        descriptor.contains("ddb.virtualHWVersion = \"13\""),
        "{descriptor}"
    );
    assert!(
        descriptor.contains("RW 204803 SPARSE \"disk.vmdk\""),
        "{descriptor}"
    );
}

/// ESXi refuses streamOptimized disks older than version 3 ("sparse VMDK
/// version too old") and streams without the end-of-stream marker.
#[test]
fn vmdk_header_is_version_3_and_the_stream_ends_with_footer_and_eos() {
    let dir = tempfile::tempdir().unwrap();
    let raw = gpt_disk(dir.path());
    let out = dir.path().join("disk.vmdk");
    vmdk::write_stream_optimized(&raw, &out, &stream_options(2), &NoProgress).unwrap();
    let bytes = fs::read(&out).unwrap();
    let le32 = |b: &[u8], at: usize| u32::from_le_bytes(b[at..at + 4].try_into().unwrap());
    let le64 = |b: &[u8], at: usize| u64::from_le_bytes(b[at..at + 8].try_into().unwrap());

    assert_eq!(&bytes[..4], b"KDMV");
    assert!(le32(&bytes, 4) >= 3, "header version {}", le32(&bytes, 4));
    let flags = le32(&bytes, 8);
    assert_eq!(
        flags & (1 << 16 | 1 << 17),
        1 << 16 | 1 << 17,
        "compressed grains and markers"
    );
    assert_eq!(
        le64(&bytes, 56),
        u64::MAX,
        "gdOffset = GD_AT_END in the header"
    );
    assert_eq!(le64(&bytes, 12), DISK_SIZE / 512, "capacity in sectors");
    assert_eq!(le64(&bytes, 20), 128, "64 KiB grains");

    let n = bytes.len();
    assert_eq!(n % 512, 0);
    let eos = &bytes[n - 512..];
    assert!(
        eos.iter().all(|&b| b == 0),
        "the last sector is the end-of-stream marker"
    );
    let footer = &bytes[n - 1024..n - 512];
    let footer_marker = &bytes[n - 1536..n - 1024];
    assert_eq!(le64(footer_marker, 0), 1, "one footer sector");
    assert_eq!(le32(footer_marker, 8), 0);
    assert_eq!(le32(footer_marker, 12), 3, "footer marker");
    assert_eq!(&footer[..4], b"KDMV");
    assert_eq!(le32(footer, 4), 3);
    let gd = le64(footer, 56);
    assert!(
        gd != u64::MAX && gd * 512 < n as u64 - 1536,
        "the footer has the real gdOffset"
    );
    let gd_marker = &bytes[(gd as usize - 1) * 512..gd as usize * 512];
    assert_eq!(
        le32(gd_marker, 12),
        2,
        "the grain directory marker precedes it"
    );
    // Four grain tables, the empty one included, all pointed at.
    let entries: Vec<u32> = (0..4)
        .map(|i| le32(&bytes, gd as usize * 512 + i * 4))
        .collect();
    assert!(entries.iter().all(|&e| e != 0), "{entries:?}");
}

#[test]
fn vmdk_bytes_do_not_depend_on_the_thread_count_or_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let raw = gpt_disk(dir.path());
    let mut digests = Vec::new();
    for (run, threads) in [(1, 1), (2, 4), (3, 4)] {
        let out_dir = dir.path().join(format!("run{run}"));
        fs::create_dir(&out_dir).unwrap();
        let out = out_dir.join("disk.vmdk");
        let report =
            vmdk::write_stream_optimized(&raw, &out, &stream_options(threads), &NoProgress)
                .unwrap();
        assert_eq!(report.sha256, sha256(&out));
        digests.push(report.sha256);
    }
    assert_eq!(digests[0], digests[1], "1 vs 4 threads");
    assert_eq!(digests[1], digests[2], "two runs");
}

fn build_ova(dir: &Path) -> (PathBuf, ova::OvaReport) {
    let raw = gpt_disk(dir);
    let out = dir.join("output").join("rocky-9-kube-v1.30.4");
    fs::create_dir_all(&out).unwrap();
    let report = ova::write(&raw, &out, &ova_options(0), &NoProgress).unwrap();
    (out, report)
}

#[test]
fn ova_set_has_image_builders_names_and_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let (out, report) = build_ova(dir.path());
    let mut names: Vec<String> = fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "rocky-9-kube-v1.30.4-disk-0.vmdk",
            "rocky-9-kube-v1.30.4.mf",
            "rocky-9-kube-v1.30.4.ova",
            "rocky-9-kube-v1.30.4.ova.sha256",
            "rocky-9-kube-v1.30.4.ovf",
        ]
    );
    let ova_path = out.join("rocky-9-kube-v1.30.4.ova");
    assert_eq!(report.ova.sha256, sha256(&ova_path));
    // image-builder writes the bare hex digest.
    assert_eq!(
        fs::read_to_string(out.join("rocky-9-kube-v1.30.4.ova.sha256")).unwrap(),
        report.ova.sha256.hex()
    );
    // The VMDK inside the OVA is the loose one, and qemu-img reads it.
    let extracted = dir.path().join("extracted");
    fs::create_dir(&extracted).unwrap();
    run(Command::new("tar")
        .arg("xf")
        .arg(&ova_path)
        .arg("-C")
        .arg(&extracted));
    let disk = extracted.join("rocky-9-kube-v1.30.4-disk-0.vmdk");
    assert_eq!(sha256(&disk), report.disk.sha256);
    let compare = run(Command::new("qemu-img")
        .args(["compare", "-f", "raw", "-F", "vmdk"])
        .arg(dir.path().join("disk.raw"))
        .arg(&disk));
    assert!(compare.contains("Images are identical"), "{compare}");
    // The OVF's File size is the VMDK's real size.
    let ovf = fs::read_to_string(out.join("rocky-9-kube-v1.30.4.ovf")).unwrap();
    assert!(
        ovf.contains(&format!(
            "ovf:href=\"rocky-9-kube-v1.30.4-disk-0.vmdk\" ovf:id=\"file1\" ovf:size=\"{}\"",
            report.disk.size
        )),
        "{ovf}"
    );
    assert!(
        ovf.contains(&format!("ovf:capacity=\"{DISK_SIZE}\"")),
        "{ovf}"
    );

    let again = dir.path().join("again");
    fs::create_dir(&again).unwrap();
    let second = ova::write(
        &dir.path().join("disk.raw"),
        &again,
        &ova_options(1),
        &NoProgress,
    )
    .unwrap();
    assert_eq!(
        second.ova.sha256, report.ova.sha256,
        "reproducible, whatever the threads"
    );
}

/// A PAX header member before the `.ovf` (Python's tarfile default)
/// makes ovftool report "Did not find an .ovf file at the beginning of
/// the OVA package"; vSphere supports no PAX.
#[test]
fn ova_tar_has_the_ovf_first_and_only_plain_ustar_members() {
    let dir = tempfile::tempdir().unwrap();
    let (out, _) = build_ova(dir.path());
    let ova_path = out.join("rocky-9-kube-v1.30.4.ova");
    let listing = run(Command::new("tar").arg("tvf").arg(&ova_path));
    let members: Vec<&str> = listing
        .lines()
        .map(|l| l.split_whitespace().last().unwrap())
        .collect();
    assert_eq!(
        members,
        [
            "rocky-9-kube-v1.30.4.ovf",
            "rocky-9-kube-v1.30.4-disk-0.vmdk",
            "rocky-9-kube-v1.30.4.mf"
        ],
        "{listing}"
    );
    assert!(
        !listing.contains("PaxHeader") && !listing.contains("LongLink"),
        "{listing}"
    );
    assert!(
        listing.lines().all(|l| l.starts_with("-rw-r--r--")),
        "{listing}"
    );

    // Every header block: a regular file ('0'), POSIX ustar magic, a name
    // under 100 bytes; GNU tar's listing hides nothing this way.
    let bytes = fs::read(&ova_path).unwrap();
    let mut at = 0usize;
    let mut headers = 0;
    while bytes[at..at + 512].iter().any(|&b| b != 0) {
        let header = &bytes[at..at + 512];
        assert_eq!(header[156], b'0', "typeflag of header {headers}");
        assert_eq!(&header[257..265], b"ustar\x0000", "ustar magic and version");
        assert!(header[..100].contains(&0), "name shorter than 100 bytes");
        let size_text = std::str::from_utf8(&header[124..135]).unwrap();
        let size = u64::from_str_radix(size_text, 8).unwrap() as usize;
        at += 512 + size.next_multiple_of(512);
        headers += 1;
    }
    assert_eq!(headers, 3);
    assert!(
        bytes[at..].iter().all(|&b| b == 0),
        "then only the end-of-archive blocks"
    );
}

/// vSphere refuses SHA1, OpenSSL 3's "SHA2-256(...)" and the BSD form
/// "SHA256 (name) = hex"; only `SHA256(name)= hex` lines are accepted.
#[test]
fn ova_manifest_lines_are_sha256_paren_name_paren_equals_hex() {
    let dir = tempfile::tempdir().unwrap();
    let (out, report) = build_ova(dir.path());
    let manifest = fs::read_to_string(out.join("rocky-9-kube-v1.30.4.mf")).unwrap();
    let lines: Vec<&str> = manifest.split_inclusive('\n').collect();
    assert_eq!(lines.len(), 2, "{manifest:?}");
    for (line, (name, digest)) in lines.iter().zip([
        ("rocky-9-kube-v1.30.4.ovf", &report.ovf.sha256),
        ("rocky-9-kube-v1.30.4-disk-0.vmdk", &report.disk.sha256),
    ]) {
        assert_eq!(*line, format!("SHA256({name})= {}\n", digest.hex()));
        assert_eq!(*digest, sha256(&out.join(name)));
    }
}

/// Element names with their parents, in document order, from the
/// descriptor's tags (it has no comments, CDATA or unescaped markup).
fn elements(xml: &str) -> Vec<(String, String)> {
    let mut stack: Vec<String> = Vec::new();
    let mut found = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find('<') {
        rest = &rest[start + 1..];
        let end = rest.find('>').unwrap();
        let tag = &rest[..end];
        rest = &rest[end + 1..];
        if tag.starts_with('?') {
            continue;
        }
        if let Some(name) = tag.strip_prefix('/') {
            assert_eq!(stack.pop().as_deref(), Some(name));
            continue;
        }
        let name = tag.split([' ', '/']).next().unwrap().to_string();
        found.push((stack.last().cloned().unwrap_or_default(), name.clone()));
        if !tag.ends_with('/') {
            stack.push(name);
        }
    }
    assert!(stack.is_empty());
    found
}

/// Every element and attribute name in the descriptor's start tags.
fn tag_names(xml: &str) -> Vec<String> {
    let mut names = Vec::new();
    for tag in xml.split('<').skip(1) {
        let tag = tag.split('>').next().unwrap();
        if tag.starts_with(['?', '/']) {
            continue;
        }
        // Outside quotes: the element name, then `name=` for attributes.
        for (i, part) in tag.split('"').enumerate().filter(|(i, _)| i % 2 == 0) {
            for word in part.split_whitespace() {
                let word = word.trim_end_matches('/');
                if i == 0 && !word.ends_with('=') {
                    names.push(word.to_string());
                } else if let Some(attribute) = word.strip_suffix('=') {
                    names.push(attribute.to_string());
                }
            }
        }
    }
    names
}

fn children<'a>(found: &'a [(String, String)], parent: &str) -> Vec<&'a str> {
    found
        .iter()
        .filter(|(p, _)| p == parent)
        .map(|(_, n)| n.as_str())
        .collect()
}

/// Elements out of the OVF 1.0 schema's order and undeclared namespace
/// prefixes make ovftool and vSphere reject the descriptor.
#[test]
fn ovf_is_well_formed_with_every_prefix_declared_and_elements_in_schema_order() {
    let dir = tempfile::tempdir().unwrap();
    let (out, _) = build_ova(dir.path());
    let path = out.join("rocky-9-kube-v1.30.4.ovf");
    // xmllint also fails on a namespace error (an undeclared prefix).
    run(Command::new("xmllint").arg("--noout").arg(&path));
    let xml = fs::read_to_string(&path).unwrap();

    let envelope = xml
        .split_once("<Envelope ")
        .unwrap()
        .1
        .split_once('>')
        .unwrap()
        .0;
    for prefix in ["ovf", "rasd", "vssd", "vmw", "xsi"] {
        assert!(
            envelope.contains(&format!("xmlns:{prefix}=\"")),
            "xmlns:{prefix} declared"
        );
    }
    assert!(envelope.contains("xmlns=\"http://schemas.dmtf.org/ovf/envelope/1\""));
    for name in tag_names(&xml) {
        if let Some((prefix, _)) = name.split_once(':')
            && prefix != "xmlns"
        {
            assert!(
                envelope.contains(&format!("xmlns:{prefix}=")),
                "{name}: {prefix} undeclared"
            );
        }
    }

    let found = elements(&xml);
    assert_eq!(
        children(&found, "Envelope"),
        [
            "References",
            "DiskSection",
            "NetworkSection",
            "VirtualSystem"
        ]
    );
    assert_eq!(
        children(&found, "VirtualSystem"),
        [
            "Info",
            "Name",
            "ProductSection",
            "OperatingSystemSection",
            "VirtualHardwareSection"
        ]
    );
    assert_eq!(children(&found, "DiskSection"), ["Info", "Disk"]);
    assert_eq!(children(&found, "NetworkSection"), ["Info", "Network"]);
    assert_eq!(
        children(&found, "ProductSection"),
        [
            "Info",
            "Product",
            "Vendor",
            "Version",
            "FullVersion",
            "VendorUrl",
            "Category",
            "Property",
            "Category",
            "Property",
            "Property"
        ]
    );
    assert_eq!(
        children(&found, "Property"),
        ["Label", "Label", "Description"]
    );
    assert_eq!(children(&found, "OperatingSystemSection"), ["Info"]);
    let hardware = children(&found, "VirtualHardwareSection");
    assert_eq!(hardware[..2], ["Info", "System"]);
    assert_eq!(hardware[2..7], ["Item"; 5]);
    assert_eq!(hardware[7..], ["vmw:Config"]);
    assert_eq!(
        children(&found, "System"),
        [
            "vssd:ElementName",
            "vssd:InstanceID",
            "vssd:VirtualSystemIdentifier",
            "vssd:VirtualSystemType"
        ]
    );
    // CIM_ResourceAllocationSettingData's sequence, then vmw extensions.
    let cim_order = [
        "Address",
        "AddressOnParent",
        "AllocationUnits",
        "AutomaticAllocation",
        "AutomaticDeallocation",
        "Caption",
        "Connection",
        "ConsumerVisibility",
        "Description",
        "ElementName",
        "HostResource",
        "InstanceID",
        "Limit",
        "MappingBehavior",
        "OtherResourceType",
        "Parent",
        "PoolID",
        "Reservation",
        "ResourceSubType",
        "ResourceType",
        "VirtualQuantity",
        "Weight",
    ];
    // Each Item: its rasd elements in that order, vmw:Config after them.
    assert_eq!(xml.matches("<Item>").count(), 5);
    for item in xml.split("<Item>").skip(1) {
        let item = item.split("</Item>").next().unwrap();
        let names: Vec<String> = elements(&format!("<Item>{item}</Item>"))
            .into_iter()
            .filter(|(p, _)| p == "Item")
            .map(|(_, n)| n)
            .collect();
        let rasd: Vec<usize> = names
            .iter()
            .filter_map(|n| n.strip_prefix("rasd:"))
            .map(|f| cim_order.iter().position(|o| *o == f).unwrap())
            .collect();
        assert!(rasd.windows(2).all(|w| w[0] < w[1]), "{names:?}");
        let first_config = names
            .iter()
            .position(|n| n == "vmw:Config")
            .unwrap_or(names.len());
        assert!(
            names[first_config..].iter().all(|n| n == "vmw:Config"),
            "{names:?}"
        );
    }
    assert!(xml.contains(
        "ovf:format=\"http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized\""
    ));
    assert!(
        xml.contains("<vmw:Config ovf:required=\"false\" vmw:key=\"firmware\" vmw:value=\"efi\"/>")
    );
    assert!(xml.contains("ovf:id=\"80\" vmw:osType=\"rhel9_64Guest\""));
    assert!(xml.contains("<rasd:ResourceSubType>VirtualSCSI</rasd:ResourceSubType>"));
    assert!(xml.contains("<rasd:ResourceSubType>VmxNet3</rasd:ResourceSubType>"));
    assert!(xml.contains("<Description>base64 &lt;user-data&gt; &amp; more</Description>"));
}

/// The documented schema takes the descriptor, and is no formality: it
/// refuses the descriptor with what vSphere refuses (sections or `rasd`
/// elements out of order, an unknown environment transport, a File
/// without its size).
#[test]
fn the_descriptor_passes_the_documented_schema_which_refuses_what_vsphere_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let (out, _) = build_ova(dir.path());
    let path = out.join("rocky-9-kube-v1.30.4.ovf");
    schema_check(&path).unwrap();
    let xml = fs::read_to_string(&path).unwrap();
    let os_section = {
        let start = xml.find("    <OperatingSystemSection").unwrap();
        let end = xml.find("</OperatingSystemSection>\n").unwrap() + 26;
        xml[start..end].to_string()
    };
    let broken = [
        (
            "OperatingSystemSection before ProductSection",
            xml.replace(&os_section, "")
                .replace("    <ProductSection>", &format!("{os_section}    <ProductSection>")),
        ),
        (
            "rasd:InstanceID before rasd:ElementName",
            xml.replacen(
                "<rasd:ElementName>2 virtual CPU(s)</rasd:ElementName>\n        <rasd:InstanceID>1</rasd:InstanceID>",
                "<rasd:InstanceID>1</rasd:InstanceID>\n        <rasd:ElementName>2 virtual CPU(s)</rasd:ElementName>",
                1,
            ),
        ),
        (
            "an unknown transport",
            xml.replace("ovf:transport=\"com.vmware.guestInfo\"", "ovf:transport=\"floppy\""),
        ),
        (
            "a File without its size",
            xml.replacen(" ovf:size=\"", " ovf:bytes=\"", 1),
        ),
    ];
    for (what, text) in broken {
        assert_ne!(text, xml, "{what}: the mutation changed nothing");
        let mutated = dir.path().join("mutated.ovf");
        fs::write(&mutated, &text).unwrap();
        assert!(schema_check(&mutated).is_err(), "the schema took {what}");
    }
}

#[test]
fn a_bad_appliance_is_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let raw = gpt_disk(dir.path());
    let out = dir.path().join("out");
    fs::create_dir(&out).unwrap();
    let mut options = ova_options(0);
    options.appliance.hardware.version = 8;
    let err = ova::write(&raw, &out, &options, &NoProgress).unwrap_err();
    assert!(err.to_string().contains("vmx-8 is too old"), "{err}");

    let mut options = ova_options(0);
    options
        .appliance
        .properties
        .push(Property::input("base", "again"));
    let err = ova::write(&raw, &out, &options, &NoProgress).unwrap_err();
    assert!(err.to_string().contains("appears twice"), "{err}");

    let mut options = ova_options(0);
    options.name = "../escape".into();
    let err = ova::write(&raw, &out, &options, &NoProgress).unwrap_err();
    assert!(err.to_string().contains("OVA name"), "{err}");
    assert_eq!(fs::read_dir(&out).unwrap().count(), 0, "nothing written");
}
