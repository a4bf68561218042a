//! The HTTP routes in-process: scripts, files (HEAD, Range, validators),
//! per-host config and events, the inventory, and boot-once.

use http::Method;

use ferry_netboot::HostState;

use crate::util::{MAC, Site, basic_yaml, boot_script, get, pattern, request};

#[tokio::test]
async fn entry_script_chains_by_mac() {
    let site = Site::new();
    let nb = site.netboot(&basic_yaml(""));
    let r = get(&nb, "/boot.ipxe").await;
    assert_eq!(r.status, 200);
    let text = r.text();
    assert!(text.starts_with("#!ipxe\n"), "{text}");
    assert!(text.contains("chain http://127.0.0.1:8080/boot/${mac:hexhyp}.ipxe?uuid=${uuid}&arch=${buildarch}&platform=${platform}"), "{text}");
}

#[tokio::test]
async fn a_host_goes_through_every_state_and_then_boots_its_disk() {
    let site = Site::new();
    let nb = site.netboot(&basic_yaml(""));
    let mac = MAC.parse().unwrap();

    let (script, token) = boot_script(&nb, MAC).await;
    let text = script.text();
    assert!(text.contains(&format!(
        "kernel http://127.0.0.1:8080/h/{token}/files/kernel initrd=initrd console=ttyS0 config_url=http://127.0.0.1:8080/h/{token}/config events_url=http://127.0.0.1:8080/h/{token}/events || goto failed"
    )), "{text}");
    assert!(text.contains(&format!(
        "initrd http://127.0.0.1:8080/h/{token}/files/initrd || goto failed"
    )));
    let h = nb.inventory.get(&mac).unwrap().unwrap();
    assert_eq!(h.state, HostState::Booting);
    assert_eq!(h.profile.as_deref(), Some("k"));
    assert_eq!(h.arch.as_deref(), Some("x86_64-efi"));

    assert_eq!(
        get(&nb, &format!("/h/{token}/files/kernel")).await.body,
        pattern(300_000, 1)
    );
    assert_eq!(
        nb.inventory.get(&mac).unwrap().unwrap().state,
        HostState::Booting
    );
    assert_eq!(
        get(&nb, &format!("/h/{token}/files/initrd")).await.body,
        pattern(120_000, 2)
    );
    let h = nb.inventory.get(&mac).unwrap().unwrap();
    assert_eq!(h.state, HostState::Fetched);
    assert!(h.stages.kernel.is_some() && h.stages.initrd.is_some());

    let config = get(&nb, &format!("/h/{token}/config")).await;
    assert_eq!(config.status, 200);
    assert_eq!(config.text(), "#cloud-config\nhostname: node1\nsite: lab\n");
    assert_eq!(
        nb.inventory.get(&mac).unwrap().unwrap().state,
        HostState::Installing
    );

    let events = format!("/h/{token}/events");
    let r = request(
        &nb,
        Method::POST,
        &events,
        &[("content-type", "application/json")],
        br#"{"state":"installing","message":"partitioning /dev/vda"}"#,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = request(
        &nb,
        Method::POST,
        &events,
        &[],
        br#"{"state":"ready","mac":"52:54:00:12:34:56","ip":"10.99.0.148"}"#,
    )
    .await;
    assert_eq!(r.status, 200);
    let h = nb.inventory.get(&mac).unwrap().unwrap();
    assert_eq!(h.state, HostState::Ready);
    assert_eq!(h.ip.as_deref(), Some("10.99.0.148"));
    assert!(
        h.events
            .iter()
            .any(|e| e.message.as_deref() == Some("partitioning /dev/vda"))
    );

    // the API shows it, without its token
    let api = get(&nb, "/api/hosts").await;
    let hosts: serde_json::Value = serde_json::from_slice(&api.body).unwrap();
    assert_eq!(hosts[0]["mac"], MAC);
    assert_eq!(hosts[0]["state"], "ready");
    assert!(!api.text().contains(&token));

    // boot-once: the next netboot goes to the local disk
    let (again, _) = boot_script(&nb, MAC).await;
    let text = again.text();
    assert!(
        text.contains("is provisioned (ready since") && text.trim_end().ends_with("exit"),
        "{text}"
    );
    assert!(!text.contains("kernel "));
    assert_eq!(nb.inventory.get(&mac).unwrap().unwrap().local_boots, 1);

    // until reset: then it installs again, with a new token
    assert!(nb.inventory.reset(mac).unwrap());
    let (third, new_token) = boot_script(&nb, MAC).await;
    assert_ne!(new_token, token);
    assert!(
        third
            .text()
            .contains(&format!("/h/{new_token}/files/kernel"))
    );
    assert_eq!(get(&nb, &format!("/h/{token}/config")).await.status, 404);
}

#[tokio::test]
async fn bad_events_are_refused() {
    let site = Site::new();
    let nb = site.netboot(&basic_yaml(""));
    let (_, token) = boot_script(&nb, MAC).await;
    let url = format!("/h/{token}/events");
    for body in [&br#"{"state":"done"}"#[..], b"state=ready", b"{}"] {
        let r = request(&nb, Method::POST, &url, &[], body).await;
        assert_eq!(r.status, 400, "{body:?}");
    }
    let r = request(&nb, Method::POST, &url, &[], &vec![b'x'; 100_000]).await;
    assert_eq!(r.status, 413);
    assert_eq!(
        nb.inventory
            .get(&MAC.parse().unwrap())
            .unwrap()
            .unwrap()
            .state,
        HostState::Booting
    );
}

#[tokio::test]
async fn head_ranges_and_validators() {
    let site = Site::new();
    let nb = site.netboot(&basic_yaml(""));
    let (_, token) = boot_script(&nb, MAC).await;
    let url = format!("/h/{token}/files/rootfs");
    let data = pattern(1_000_000, 3);

    let head = request(&nb, Method::HEAD, &url, &[], b"").await;
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    assert_eq!(head.headers["content-length"], "1000000");
    assert_eq!(head.headers["accept-ranges"], "bytes");
    let etag = head.headers["etag"].to_str().unwrap().to_string();
    let modified = head.headers["last-modified"].to_str().unwrap().to_string();
    assert!(etag.starts_with('"') && etag.ends_with('"'));

    let r = request(&nb, Method::GET, &url, &[("range", "bytes=999990-")], b"").await;
    assert_eq!(r.status, 206);
    assert_eq!(r.body, &data[999_990..]);
    assert_eq!(r.headers["content-range"], "bytes 999990-999999/1000000");
    let r = request(&nb, Method::GET, &url, &[("range", "bytes=-10")], b"").await;
    assert_eq!(r.body, &data[999_990..]);
    let r = request(&nb, Method::GET, &url, &[("range", "bytes=1000000-")], b"").await;
    assert_eq!(r.status, 416);
    assert_eq!(r.headers["content-range"], "bytes */1000000");
    let r = request(&nb, Method::GET, &url, &[("range", "bytes=0-1,5-9")], b"").await;
    assert_eq!((r.status.as_u16(), r.body.len()), (200, 1_000_000));

    // The same file under a name the caller picks (live-boot's fetch=
    // judges a download by its extension); a name that could climb is not.
    let named = request(
        &nb,
        Method::GET,
        &format!("{url}/filesystem.squashfs"),
        &[("range", "bytes=-10")],
        b"",
    )
    .await;
    assert_eq!(named.status, 206);
    assert_eq!(named.body, &data[999_990..]);
    assert_eq!(
        request(&nb, Method::GET, &format!("{url}/..%2fconfig"), &[], b"")
            .await
            .status,
        404
    );

    let r = request(&nb, Method::GET, &url, &[("if-none-match", &etag)], b"").await;
    assert_eq!(r.status, 304);
    assert!(r.body.is_empty());
    let r = request(
        &nb,
        Method::GET,
        &url,
        &[("if-modified-since", &modified)],
        b"",
    )
    .await;
    assert_eq!(r.status, 304);
    let r = request(
        &nb,
        Method::GET,
        &url,
        &[("range", "bytes=0-9"), ("if-range", &etag)],
        b"",
    )
    .await;
    assert_eq!(r.status, 206);
    let r = request(
        &nb,
        Method::GET,
        &url,
        &[("range", "bytes=0-9"), ("if-range", "\"old\"")],
        b"",
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), 1_000_000);
    let r = request(&nb, Method::GET, &url, &[("if-match", "\"old\"")], b"").await;
    assert_eq!(r.status, 412);
}

#[tokio::test]
async fn unknown_hosts_default_profile_and_architecture() {
    let site = Site::new();
    let nb = site.netboot(&basic_yaml(""));
    let r = get(&nb, "/boot/52-54-00-99-99-99.ipxe").await;
    assert_eq!(r.status, 200);
    assert!(
        r.text()
            .contains("not booting 52:54:00:99:99:99: unknown MAC and no default_profile"),
        "{}",
        r.text()
    );
    let r = get(
        &nb,
        &format!(
            "/boot/{}.ipxe?arch=arm64&platform=efi",
            MAC.replace(':', "-")
        ),
    )
    .await;
    assert!(
        r.text()
            .contains("wrong architecture: iPXE is arm64, profile k is amd64"),
        "{}",
        r.text()
    );
    assert_eq!(get(&nb, "/boot/not-a-mac.ipxe").await.status, 404);

    let site = Site::new();
    let nb = site.netboot(&basic_yaml("default_profile: k\n"));
    let (r, token) = boot_script(&nb, "52:54:00:99:99:99").await;
    assert!(
        r.text()
            .contains("(host-52-54-00-99-99-99) boots profile k"),
        "{}",
        r.text()
    );
    let config = get(&nb, &format!("/h/{token}/config")).await;
    assert!(config.text().contains("hostname: host-52-54-00-99-99-99"));
}

/// `Range` edge cases, the same table as ferry-registry's blob GETs: one
/// range is served (a suffix longer than the file is the whole file), a
/// reversed or zero-length one and one past the end get 416 with
/// `Content-Range: bytes */LEN`, several ranges or a malformed header the
/// whole file (RFC 9110 §14.2 lets a server ignore them).
#[tokio::test]
async fn range_edge_cases() {
    let site = Site::new();
    let nb = site.netboot(&basic_yaml(""));
    let (_, token) = boot_script(&nb, MAC).await;
    let url = format!("/h/{token}/files/rootfs");
    let len = 1_000_000u64;
    for (range, status, content_range) in [
        ("bytes=0-4", 206, "bytes 0-4/1000000"),
        ("bytes=999995-", 206, "bytes 999995-999999/1000000"),
        ("bytes=999995-2000000", 206, "bytes 999995-999999/1000000"),
        ("bytes=-3", 206, "bytes 999997-999999/1000000"),
        ("bytes=-2000000", 206, "bytes 0-999999/1000000"),
        ("BYTES=1-1", 206, "bytes 1-1/1000000"),
        ("bytes=-0", 416, "bytes */1000000"),
        ("bytes=1000000-", 416, "bytes */1000000"),
        ("bytes=4-2", 416, "bytes */1000000"),
        ("bytes=0-1,3-4", 200, ""),
        ("bytes=0-5,3-4", 200, ""),
        ("items=0-1", 200, ""),
        ("bytes=x-1", 200, ""),
        ("bytes=", 200, ""),
    ] {
        let r = request(&nb, Method::GET, &url, &[("range", range)], b"").await;
        let got = r
            .headers
            .get("content-range")
            .map_or("", |v| v.to_str().unwrap());
        assert_eq!((r.status.as_u16(), got), (status, content_range), "{range}");
        if status == 200 {
            assert_eq!(r.body.len() as u64, len, "{range}");
        }
    }
}
