//! The TFTP server over real UDP sockets on 127.0.0.1: options, windows,
//! block-number rollover, retransmission, refusals, and busybox's client.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use ferry_netboot::tftp::TftpServer;
use ferry_netboot::tftp::packet::{self, Packet};

use crate::util::{pattern, run};

/// Starts a server on 127.0.0.1 over `root`; returns its address.
async fn start(root: &Path) -> SocketAddr {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let server = TftpServer::new(
        root.to_path_buf(),
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        socket,
        Arc::new(|_| None),
    );
    tokio::spawn(server.run());
    addr
}

/// The file's bytes and the OACK's options.
type Fetched = (Vec<u8>, Vec<(String, String)>);

/// A minimal blocking client; `drop_first` skips ACKing the first DATA
/// it sees, to make the server retransmit.
fn fetch(
    server: SocketAddr,
    name: &str,
    options: &[(&str, &str)],
    drop_first: bool,
) -> Result<Fetched, (u16, String)> {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    sock.send_to(&packet::read_request(name, "octet", options), server)
        .unwrap();
    let blksize: usize = options
        .iter()
        .find(|(k, _)| *k == "blksize")
        .map_or(512, |(_, v)| v.parse().unwrap());
    let mut data = Vec::new();
    let mut oack = Vec::new();
    let mut expected: u16 = 1;
    let mut dropped = !drop_first;
    let mut buf = vec![0u8; 70_000];
    loop {
        let (n, from) = sock.recv_from(&mut buf).expect("server answered");
        match packet::parse(&buf[..n]).unwrap() {
            Packet::OptionAck { options } => {
                oack = options;
                sock.send_to(&packet::ack(0), from).unwrap();
            }
            Packet::Data { block, len } => {
                if block != expected {
                    continue; // rest of a window after a loss; wait for the resend
                }
                if !dropped {
                    dropped = true;
                    continue;
                }
                data.extend_from_slice(&buf[4..4 + len]);
                sock.send_to(&packet::ack(block), from).unwrap();
                expected = expected.wrapping_add(1);
                if len < blksize {
                    return Ok((data, oack));
                }
            }
            Packet::Error { code, message } => return Err((code, message)),
            other => panic!("unexpected {other:?}"),
        }
    }
}

fn opts(oack: &[(String, String)]) -> Vec<(&str, &str)> {
    oack.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn transfers_with_options_windows_and_rollover() {
    let root = tempfile::tempdir().unwrap();
    let small = pattern(74_213, 7);
    let big = pattern(528_001, 8); // 66 001 blocks of 8 bytes: block numbers wrap
    std::fs::write(root.path().join("undionly.kpxe"), &small).unwrap();
    std::fs::write(root.path().join("big.bin"), &big).unwrap();
    std::fs::write(root.path().join("exact.bin"), pattern(1024, 9)).unwrap();
    let server = start(root.path()).await;

    let got = tokio::task::spawn_blocking(move || {
        let plain = fetch(server, "undionly.kpxe", &[], false).unwrap();
        let opt = fetch(
            server,
            "/undionly.kpxe",
            &[("blksize", "1468"), ("tsize", "0"), ("windowsize", "4")],
            false,
        )
        .unwrap();
        let wrap = fetch(
            server,
            "big.bin",
            &[("blksize", "8"), ("windowsize", "64")],
            false,
        )
        .unwrap();
        // a file that is a whole number of blocks ends with an empty DATA
        let exact = fetch(server, "exact.bin", &[("blksize", "512")], false).unwrap();
        let lossy = fetch(
            server,
            "undionly.kpxe",
            &[("blksize", "1024"), ("windowsize", "8"), ("timeout", "1")],
            true,
        )
        .unwrap();
        (plain, opt, wrap, exact, lossy)
    })
    .await
    .unwrap();
    let (plain, opt, wrap, exact, lossy) = got;
    assert_eq!(plain.0, small);
    assert!(plain.1.is_empty(), "no options, no OACK");
    assert_eq!(opt.0, small);
    assert_eq!(
        opts(&opt.1),
        vec![("blksize", "1468"), ("tsize", "74213"), ("windowsize", "4")]
    );
    assert_eq!(wrap.0.len(), big.len());
    assert!(wrap.0 == big, "rolled-over transfer differs");
    assert_eq!(exact.0, pattern(1024, 9));
    assert_eq!(lossy.0, small, "retransmitted after a lost block");
}

#[tokio::test(flavor = "multi_thread")]
async fn refuses_escapes_writes_and_netascii() {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir(root.path().join("sub")).unwrap();
    std::fs::write(root.path().join("sub/ok.efi"), b"ok").unwrap();
    let outside = root
        .path()
        .parent()
        .unwrap()
        .join(format!("secret-{}", std::process::id()));
    std::fs::write(&outside, b"secret").unwrap();
    let server = start(root.path()).await;
    let secret_name = outside.file_name().unwrap().to_str().unwrap().to_string();
    let results = tokio::task::spawn_blocking(move || {
        let mut r = Vec::new();
        for name in [
            format!("../{secret_name}"),
            format!("/../{secret_name}"),
            format!("sub/../../{secret_name}"),
            format!("..\\{secret_name}"),
            "/etc/passwd".to_string(),
            "sub".to_string(),
        ] {
            r.push((name.clone(), fetch(server, &name, &[], false)));
        }
        r
    })
    .await
    .unwrap();
    for (name, result) in results {
        let (code, _) = result.expect_err(&name);
        assert!(code == 1 || code == 2, "{name}: code {code}");
    }
    std::fs::remove_file(&outside).unwrap();

    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 600];
    let mut wrq = packet::read_request("sub/ok.efi", "octet", &[]);
    wrq[1] = 2;
    sock.send_to(&wrq, server).unwrap();
    let (n, _) = sock.recv_from(&mut buf).unwrap();
    assert!(matches!(
        packet::parse(&buf[..n]).unwrap(),
        Packet::Error { code: 2, .. }
    ));
    sock.send_to(&packet::read_request("sub/ok.efi", "netascii", &[]), server)
        .unwrap();
    let (n, _) = sock.recv_from(&mut buf).unwrap();
    assert!(matches!(
        packet::parse(&buf[..n]).unwrap(),
        Packet::Error { code: 4, .. }
    ));
    // garbage does not kill the server
    for junk in [&b""[..], b"\x00", b"\xff\xff\xff", b"\x00\x01\x00\x00\x00"] {
        sock.send_to(junk, server).unwrap();
    }
    let (data, _) = tokio::task::spawn_blocking(move || fetch(server, "sub/ok.efi", &[], false))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(data, b"ok");
}

/// busybox's client (Debian busybox-static) as an independent peer.
#[tokio::test(flavor = "multi_thread")]
async fn busybox_tftp_client_downloads() {
    let root = tempfile::tempdir().unwrap();
    let content = pattern(173_792, 10);
    std::fs::write(root.path().join("snponly.efi"), &content).unwrap();
    let server = start(root.path()).await;
    let out = root.path().join("got.efi");
    let out2 = out.clone();
    tokio::task::spawn_blocking(move || {
        run(Command::new("busybox")
            .args(["tftp", "-g", "-r", "snponly.efi", "-l"])
            .arg(&out2)
            .args(["-b", "1468", "127.0.0.1"])
            .arg(server.port().to_string()));
    })
    .await
    .unwrap();
    assert_eq!(std::fs::read(&out).unwrap(), content);
}
