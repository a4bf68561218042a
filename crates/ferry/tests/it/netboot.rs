//! End to end: unmodified iPXE in QEMU network-boots from `ferry netboot
//! serve`, driven by the shared harness (`shared/harness/netboot/
//! harness-b.sh`: network namespaces, tap + bridge, a separate busybox
//! udhcpd as the site's DHCP server, stock Debian iPXE ROMs and OVMF).
//! ferry is the ProxyDHCP (or full DHCP) server, the TFTP server and the
//! HTTP server; the kernel and initrd are read from an ISO built here with
//! xorriso from the harness's Debian kernel and busybox initramfs. The
//! guest fetches its config at the `config_url=` on its command line and
//! posts `ready` to `events_url=`; `ferry hosts` must then show it ready.
//!
//! Needs root, /dev/net/tun and the Debian packages in
//! scripts/debian-packages.txt. Boots run one at a time (TCG is slow and
//! the machine has two cores).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;

const MAC: &str = "52:54:00:12:34:56";
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn ferry() -> &'static str {
    env!("CARGO_BIN_EXE_ferry")
}

fn harness_dir() -> PathBuf {
    std::env::var_os("FERRY_NETBOOT_HARNESS").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/harness/netboot"),
        PathBuf::from,
    )
}

/// Where the harness keeps its kernel/initramfs build and run logs: kept
/// across test runs so the kernel is built once.
fn harness_state() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("netboot-harness")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A site: ISO, netboot.yaml, ferry state directory.
struct Site {
    dir: tempfile::TempDir,
}

impl Site {
    fn new(extra_config: &str) -> Site {
        Self::with_source("{iso: kairos.iso}", extra_config)
    }

    fn with_source(source: &str, extra_config: &str) -> Site {
        let state = harness_state();
        let out = state.join("out");
        if !out.join("vmlinuz").exists() || !out.join("initrd.img").exists() {
            let built = Command::new(harness_dir().join("build-initramfs.sh"))
                .arg(&out)
                .env("CACHE", state.join("cache"))
                .output()
                .expect("run build-initramfs.sh");
            assert!(
                built.status.success(),
                "build-initramfs.sh: {}",
                text(&built)
            );
        }
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path().join("tree");
        std::fs::create_dir_all(tree.join("boot")).unwrap();
        std::fs::copy(out.join("vmlinuz"), tree.join("boot/kernel")).unwrap();
        std::fs::copy(out.join("initrd.img"), tree.join("boot/initrd")).unwrap();
        std::fs::write(tree.join("rootfs.squashfs"), vec![7u8; 1 << 20]).unwrap();
        let iso = dir.path().join("kairos.iso");
        let made = Command::new("xorriso")
            .args(["-as", "mkisofs", "-R", "-J", "-V", "KAIROS_TEST", "-o"])
            .arg(&iso)
            .arg(&tree)
            .output()
            .expect("run xorriso");
        assert!(made.status.success(), "xorriso: {}", text(&made));
        std::fs::remove_dir_all(&tree).unwrap();
        let config = format!(
            "server:
  address: 10.99.0.2
  interface: br0
  http_port: 8080
vars:
  site: e2e
profiles:
  kairos:
    source: {source}
    cmdline: >-
      console=ttyS0 panic=5 BOOTIF={{{{ host.bootif }}}}
      config_url={{{{ config_url }}}} events_url={{{{ events_url }}}}
      root=live:{{{{ files.rootfs }}}}
    user_data: |
      #cloud-config host={{{{ host.name }}}} site={{{{ site.site }}}}
hosts:
  - mac: {MAC}
    name: node1
    profile: kairos
{extra_config}"
        );
        std::fs::write(dir.path().join("netboot.yaml"), config).unwrap();
        Site { dir }
    }

    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// Runs harness-b.sh with ferry as the DHCP/TFTP/HTTP server. Returns
    /// (passed, harness output, ferry's log of this run).
    fn boot(&self, env: &[(&str, &str)]) -> (bool, String, String) {
        self.boot_with(
            &format!(
                "netboot serve -c {}",
                self.dir.path().join("netboot.yaml").display()
            ),
            env,
        )
    }

    /// Like [`Site::boot`] with `ferry <command>` as the server.
    fn boot_with(&self, command: &str, env: &[(&str, &str)]) -> (bool, String, String) {
        let log = self.dir.path().join(format!("ferry-{}.log", env.len()));
        let _ = std::fs::remove_file(&log);
        let hook = format!(
            "ip netns exec $NS_SRV {} --state {} {command} >>{} 2>&1 &",
            ferry(),
            self.state().display(),
            log.display()
        );
        let out = Command::new(harness_dir().join("harness-b.sh"))
            .env("NETBOOT_HARNESS_STATE", harness_state())
            .env("DNSMASQ", "0")
            .env("EXTERNAL_HTTP", "1")
            .env("HOOK", hook)
            .env("TIMEOUT", "150")
            .envs(env.iter().copied())
            .output()
            .expect("run harness-b.sh");
        let ferry_log = std::fs::read_to_string(&log).unwrap_or_default();
        (out.status.success(), text(&out), ferry_log)
    }

    fn hosts(&self) -> serde_json::Value {
        let out = Command::new(ferry())
            .arg("--state")
            .arg(self.state())
            .args(["hosts", "--json"])
            .output()
            .unwrap();
        assert!(out.status.success(), "ferry hosts: {}", text(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    }

    fn host(&self) -> serde_json::Value {
        let hosts = self.hosts();
        hosts
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h["mac"] == MAC)
            .cloned()
            .unwrap_or_else(|| panic!("{MAC} not in {hosts:#}"))
    }
}

fn assert_provisioned(site: &Site, output: &str, ferry_log: &str) {
    let h = site.host();
    assert_eq!(h["state"], "ready", "{h:#}\n{output}\n{ferry_log}");
    for stage in ["booting", "kernel", "initrd", "installing", "ready"] {
        assert!(
            h["stages"][stage].is_string(),
            "stage {stage} missing: {h:#}"
        );
    }
    assert!(h["ip"].as_str().unwrap().starts_with("10.99.0."), "{h:#}");
    assert!(
        output.contains("NETBOOT-CONFIG #cloud-config host=node1 site=e2e"),
        "the guest did not print its own config:\n{output}"
    );
    for line in [
        "boot script served: profile kairos",
        "fetching kernel",
        "fetching initrd",
        "config fetched",
        ": ready (ip 10.99.0.",
    ] {
        assert!(
            ferry_log.contains(line),
            "ferry log lacks {line:?}:\n{ferry_log}"
        );
    }
}

/// SeaBIOS: the NIC's iPXE ROM, then (boot-once) the local disk, then
/// after `ferry hosts reset` the generic ipxe.iso from a CD.
#[test]
fn bios_nic_rom_then_local_disk_then_reset_and_ipxe_iso() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let site = Site::new("");

    let (ok, output, log) = site.boot(&[("MODES", "proxy")]);
    assert!(ok, "first boot failed:\n{output}\n--- ferry:\n{log}");
    assert!(
        log.contains(
            "ProxyDHCP OFFER to x86 BIOS firmware (iPXE): http://10.99.0.2:8080/boot.ipxe"
        ),
        "{log}"
    );
    assert_provisioned(&site, &output, &log);

    // second power-on: ferry sends it to its disk; the VM has none, so
    // SeaBIOS ends at "No bootable device" and the harness reports a failure
    let (ok, output, log) = site.boot(&[("MODES", "proxy"), ("TIMEOUT", "25"), ("KEEP", "1")]);
    assert!(!ok, "a provisioned host must not install again:\n{output}");
    assert!(log.contains("sent to its local disk (boot-once"), "{log}");
    assert!(!log.contains("fetching kernel"), "{log}");
    let run_dir = output
        .split("logs kept in ")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .expect("the harness names its run directory");
    let serial =
        String::from_utf8_lossy(&std::fs::read(Path::new(run_dir).join("serial.log")).unwrap())
            .into_owned();
    let _ = std::fs::remove_dir_all(run_dir);
    let provisioned = serial.find("is provisioned (ready since").expect(&serial);
    let disk = serial.find("Booting from Hard Disk").expect(&serial);
    assert!(
        provisioned < disk,
        "iPXE left for the disk after ferry's script:\n{serial}"
    );
    assert!(site.host()["local_boots"].as_u64() == Some(1));

    let reset = Command::new(ferry())
        .arg("--state")
        .arg(site.state())
        .args(["hosts", "reset", MAC])
        .output()
        .unwrap();
    assert!(reset.status.success(), "{}", text(&reset));
    assert_eq!(site.host()["state"], "discovered");

    let (ok, output, log) = site.boot(&[("MODES", "iso")]);
    assert!(ok, "ipxe.iso boot failed:\n{output}\n--- ferry:\n{log}");
    assert_provisioned(&site, &output, &log);
}

/// OVMF: the iPXE EFI driver in the NIC ROM; and OVMF's own UEFI PXE with
/// no iPXE anywhere: ferry's ProxyDHCP (no option 43) → PXE request on
/// port 4011 → snponly.efi over ferry's TFTP → iPXE → ferry's script with
/// `initrd=` (the EFI stub needs it).
#[test]
fn uefi_nic_rom_and_firmware_pxe_over_tftp() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let site = Site::new("boot_once: false\n");
    let (ok, output, log) = site.boot(&[("FIRMWARE", "ovmf"), ("MODES", "proxy efichain-proxy")]);
    assert!(ok, "UEFI boots failed:\n{output}\n--- ferry:\n{log}");
    assert!(output.contains("2 passed, 0 failed"), "{output}");
    assert_provisioned(&site, &output, &log);
    for line in [
        "ProxyDHCP OFFER to x86-64 UEFI firmware: snponly.efi",
        "ProxyDHCP ACK to x86-64 UEFI firmware: snponly.efi",
        "got snponly.efi (173792 bytes",
        "ProxyDHCP OFFER to x86-64 UEFI firmware (iPXE): http://10.99.0.2:8080/boot.ipxe",
    ] {
        assert!(log.contains(line), "ferry log lacks {line:?}:\n{log}");
    }
}

/// An isolated lab: ferry is the only DHCP server (addresses from its
/// pool, leases persisted) and iPXE gets the script in the same offer.
#[test]
fn full_dhcp_mode_hands_out_the_address_too() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let site = Site::new(
        "dhcp:\n  mode: full\n  pool: {start: 10.99.0.200, end: 10.99.0.210, netmask: 255.255.255.0, router: 10.99.0.2}\n",
    );
    let (ok, output, log) = site.boot(&[("MODES", "dhcp")]);
    assert!(ok, "full-DHCP boot failed:\n{output}\n--- ferry:\n{log}");
    assert!(
        output.contains("ip=10.99.0.200"),
        "the address came from ferry's pool:\n{output}"
    );
    assert!(
        log.contains("DHCP ACK to x86 BIOS firmware (iPXE)"),
        "{log}"
    );
    assert_provisioned(&site, &output, &log);
    let leases = std::fs::read_to_string(site.state().join("netboot/leases.json")).unwrap();
    assert!(
        leases.contains(MAC) && leases.contains("10.99.0.200"),
        "{leases}"
    );
}

/// The whole chain: boot files carried in a bundle as an OS artifact,
/// `ferry bundle import`ed into the embedded registry, and served from
/// there by `ferry serve --netboot` (registry and netboot in one process).
#[test]
fn serve_with_netboot_boots_from_a_bundle_imported_into_the_registry() {
    use ferry_bundle::format::{Entry, EntryKind};
    use ferry_oci::{Descriptor, Digest, media_type};

    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let site = Site::with_source("{oci: os/kairos:v1}", "");
    let out = harness_state().join("out");
    let cache = ferry_store::Store::open(
        site.dir.path().join("cache"),
        ferry_store::Limits::default(),
    )
    .unwrap();
    let put = |data: &[u8]| {
        let d = Digest::sha256(data);
        cache.put_blob("cache", &d, None, &mut &data[..]).unwrap();
        d
    };
    let mut layers = Vec::new();
    for (title, data) in [
        ("boot/kernel", std::fs::read(out.join("vmlinuz")).unwrap()),
        (
            "boot/initrd",
            std::fs::read(out.join("initrd.img")).unwrap(),
        ),
        ("rootfs.squashfs", vec![7u8; 1 << 20]),
    ] {
        let d = put(&data);
        layers.push(serde_json::json!({
            "mediaType": "application/octet-stream", "digest": d.to_string(), "size": data.len(),
            "annotations": {media_type::ANNOTATION_TITLE: title},
        }));
    }
    let empty = put(b"{}");
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": media_type::OCI_MANIFEST,
        "artifactType": "application/vnd.ferry.os.v1",
        "config": {"mediaType": media_type::OCI_EMPTY, "digest": empty.to_string(), "size": 2},
        "layers": layers,
    }))
    .unwrap();
    let m = put(&manifest);
    let bundle = site.dir.path().join("os.ferry");
    let plan = ferry_bundle::writer::Plan {
        entries: vec![Entry {
            kind: EntryKind::OsImage,
            source: "registry.example/os/kairos:v1".into(),
            repository: "os/kairos".into(),
            tag: Some("v1".into()),
            descriptor: Descriptor::new(media_type::OCI_MANIFEST, m, manifest.len() as u64),
            platforms: vec![],
        }],
        spec: serde_json::json!({}),
        created: None,
        base: None,
    };
    ferry_bundle::writer::write_bundle(
        &plan,
        &cache,
        &bundle,
        &Default::default(),
        &ferry_oci::progress::NoProgress,
    )
    .unwrap();
    let imported = Command::new(ferry())
        .arg("--state")
        .arg(site.state())
        .args(["bundle", "import"])
        .arg(&bundle)
        .output()
        .unwrap();
    assert!(imported.status.success(), "{}", text(&imported));

    let serve = format!(
        "serve --listen 10.99.0.2:5000 --netboot {}",
        site.dir.path().join("netboot.yaml").display()
    );
    let (ok, output, log) = site.boot_with(&serve, &[("MODES", "proxy")]);
    assert!(ok, "boot failed:\n{output}\n--- ferry:\n{log}");
    assert!(
        log.contains("ferry registry on http://10.99.0.2:5000"),
        "{log}"
    );
    assert_provisioned(&site, &output, &log);
}

/// Issue 9's netboot set, booted for real: the test OS built by `ferry
/// image build --format netboot --push` into the registry store, served by
/// `ferry serve --netboot` from that artifact (`{oci: ...}`) with the
/// profile the build wrote, and booted by stock iPXE: Debian's live-boot
/// downloads the squashfs over ferry's HTTP (`fetch=`), systemd comes up,
/// and the test overlay's unit fetches its config and posts `ready`.
#[test]
fn an_image_built_netboot_set_boots_from_the_registry() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let site = Site {
        dir: tempfile::tempdir().unwrap(),
    };
    let dir = site.dir.path();
    let ferry_in_state = |args: &[&str]| {
        let out = Command::new(ferry())
            .arg("--state")
            .arg(site.state())
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "ferry {args:?}: {}", text(&out));
        out
    };
    let tar = crate::image::debian_tar();
    ferry_in_state(&[
        "image",
        "import",
        tar.to_str().unwrap(),
        "--tag",
        "os/debian:12",
    ]);
    std::fs::write(
        dir.join("image.yaml"),
        format!("name: debian-netboot\n{}", crate::image::OVERLAY),
    )
    .unwrap();
    ferry_in_state(&[
        "image",
        "build",
        "os/debian:12",
        "-f",
        "image.yaml",
        "--format",
        "netboot",
        "--push",
        "os/debian-netboot:12",
        "-o",
        "out",
    ]);
    // The profile the build wrote, with the host's config and events URLs
    // the test overlay's unit uses.
    let profile = std::fs::read_to_string(dir.join("out/netboot/netboot.yaml")).unwrap();
    assert!(
        profile.contains("source: {oci: os/debian-netboot:12}"),
        "{profile}"
    );
    let profile: String = profile
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            if l.trim_start().starts_with("boot=live") {
                format!("{l} config_url={{{{ config_url }}}} events_url={{{{ events_url }}}}\n")
            } else {
                format!("{l}\n")
            }
        })
        .map(|l| format!("  {l}"))
        .collect();
    let config = format!(
        "server:
  address: 10.99.0.2
  interface: br0
  http_port: 8080
profiles:
{profile}    user_data: |
      #cloud-config built-by-ferry-image
hosts:
  - mac: {MAC}
    name: node1
    profile: debian-netboot
"
    );
    std::fs::write(dir.join("netboot.yaml"), &config).unwrap();
    let serve = format!(
        "serve --listen 10.99.0.2:5000 --netboot {}",
        dir.join("netboot.yaml").display()
    );
    let (ok, output, log) = site.boot_with(
        &serve,
        &[("MODES", "proxy"), ("MEM", "1536"), ("TIMEOUT", "420")],
    );
    assert!(
        ok,
        "boot failed:\n{output}\n--- ferry:\n{log}\n--- netboot.yaml:\n{config}"
    );
    assert!(
        output.contains("NETBOOT-CONFIG #cloud-config built-by-ferry-image"),
        "{output}"
    );
    for line in ["fetching kernel", "fetching initrd", ": ready (ip 10.99.0."] {
        assert!(log.contains(line), "ferry log lacks {line:?}:\n{log}");
    }
    let host = site.host();
    assert_eq!(host["state"], "ready", "{host:#}");
    assert!(
        host.to_string().contains("FERRY-IMAGE-OK netboot"),
        "the guest's own message is not among the host's events: {host:#}"
    );
}
