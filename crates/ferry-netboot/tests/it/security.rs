//! Security properties: per-host tokens, path traversal over HTTP, and
//! packet handlers that survive malformed input.

use std::net::{Ipv4Addr, SocketAddrV4};

use dhcproto::Encodable;
use dhcproto::v4::{DhcpOption, Message, MessageType};
use ferry_netboot::dhcp::DhcpServer;
use ferry_netboot::dhcp::proxy::Port;
use http::Method;

use crate::util::{MAC, OTHER_MAC, Site, basic_yaml, boot_script, get, pattern, request};

#[tokio::test]
async fn configs_only_at_their_own_hosts_token() {
    let site = Site::new();
    let nb = site.netboot(&basic_yaml(""));
    let (_, token_a) = boot_script(&nb, MAC).await;
    let (_, token_b) = boot_script(&nb, OTHER_MAC).await;
    assert_ne!(token_a, token_b);
    assert_eq!(token_a.len(), 64);
    assert!(
        get(&nb, &format!("/h/{token_a}/config"))
            .await
            .text()
            .contains("hostname: node1")
    );
    assert!(
        get(&nb, &format!("/h/{token_b}/config"))
            .await
            .text()
            .contains("hostname: node2")
    );

    let guessed = "0123456789abcdef".repeat(4);
    let mut flipped = token_a.clone().into_bytes();
    flipped[63] = if flipped[63] == b'0' { b'1' } else { b'0' };
    let flipped = String::from_utf8(flipped).unwrap();
    for token in [
        guessed.as_str(),
        &flipped,
        &token_a[..63],
        &token_a.to_uppercase(),
        "..",
        "%2e%2e",
    ] {
        for path in ["config", "files/kernel"] {
            let r = get(&nb, &format!("/h/{token}/{path}")).await;
            assert_eq!(r.status, 404, "{token}/{path}");
            assert!(!r.text().contains("node"), "a 404 leaks nothing");
        }
        let r = request(
            &nb,
            Method::POST,
            &format!("/h/{token}/events"),
            &[],
            br#"{"state":"ready"}"#,
        )
        .await;
        assert_eq!(r.status, 404, "{token}/events");
    }
    // the forged events changed nothing: the host is where its real
    // config fetch put it
    let h = nb.inventory.get(&MAC.parse().unwrap()).unwrap().unwrap();
    assert_eq!(h.state, ferry_netboot::HostState::Installing);
}

#[tokio::test]
async fn http_path_traversal_is_refused() {
    let site = Site::new();
    std::fs::write(site.path().join("tftp/secret.txt"), b"secret").unwrap();
    let nb = site.netboot(&basic_yaml(""));
    let (_, token) = boot_script(&nb, MAC).await;
    for path in [
        format!("/h/{token}/files/..%2F..%2Fnetboot.yaml"),
        format!("/h/{token}/files/%2e%2e"),
        format!("/h/{token}/files/..%2fstate%2fnetboot%2fhosts.json"),
        format!("/h/{token}/files/boot%2Fkernel"),
        format!("/h/{token}/files/.hidden"),
        format!("/h/{token}/files/../../../etc/passwd"),
        "/ipxe/..%2F..%2F..%2Fetc%2Fpasswd".to_string(),
        "/ipxe/secret.txt".to_string(),
        "/boot/..%2F..%2Fetc%2Fpasswd".to_string(),
    ] {
        let r = get(&nb, &path).await;
        assert_eq!(r.status, 404, "{path}");
        assert!(
            !r.text().contains("secret") && !r.text().contains("root:"),
            "{path}"
        );
    }
    // the configured iPXE binaries are served, nothing else of the TFTP root
    let r = get(&nb, "/ipxe/undionly.kpxe").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, pattern(70_001, 4));
}

/// Random and mutated datagrams: `handle` answers or not, never panics.
#[test]
fn dhcp_handler_survives_malformed_packets() {
    let site = Site::new();
    let nb = site.netboot(&basic_yaml("default_profile: k\n"));
    let dhcp = DhcpServer::new(nb, None);
    let from = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 68);
    let mut valid = Message::new(
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        &[0x52, 0x54, 0, 0x12, 0x34, 0x56],
    );
    valid
        .opts_mut()
        .insert(DhcpOption::MessageType(MessageType::Discover));
    valid
        .opts_mut()
        .insert(DhcpOption::ClassIdentifier(b"PXEClient".to_vec()));
    valid
        .opts_mut()
        .insert(DhcpOption::UserClass(b"iPXE".to_vec()));
    let valid = valid.to_vec().unwrap();
    assert!(dhcp.handle(&valid, from, Port::Dhcp).is_some());

    let noise = pattern(1 << 20, 99);
    let mut cursor = 0;
    let mut take = |n: usize| {
        let s = noise[cursor % (noise.len() - 2048)..][..n].to_vec();
        cursor += n + 1;
        s
    };
    for i in 0..20_000usize {
        let packet = match i % 4 {
            0 => take(i % 700),
            1 => {
                // flip a few bytes of a valid packet
                let mut p = valid.clone();
                let r = take(4);
                let len = p.len();
                p[usize::from(r[0]) * 2 % len] ^= r[1];
                p[usize::from(r[2]) % len] = r[3];
                p
            }
            2 => {
                // truncated
                let r = take(2);
                valid[..usize::from(u16::from_le_bytes([r[0], r[1]])) % valid.len()].to_vec()
            }
            _ => {
                // valid header, random options; hlen past 16
                let mut p = valid[..240].to_vec();
                p[2] = take(1)[0];
                p.extend(take(i % 300));
                p
            }
        };
        for port in [Port::Dhcp, Port::Pxe] {
            let _ = dhcp.handle(&packet, from, port);
        }
    }
}
