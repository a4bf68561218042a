//! A read-only TFTP server for the iPXE binaries PXE firmware loads.
//!
//! RFC 1350 transfers in octet mode with the option extension (RFC 2347):
//! `blksize` (RFC 2348, 8–65464), `tsize` (RFC 2349, the file size in the
//! OACK), `timeout` (RFC 2349, 1–255 s) and `windowsize` (RFC 7440, up to
//! [`MAX_WINDOW`] blocks in flight before an ACK). Each transfer runs on
//! its own socket (a new transfer ID, RFC 1350 §4) bound to the server
//! address. Write requests are refused; names go through [`path`]; netascii
//! mode is refused because what is served here are binaries, and
//! converting line ends would change their size against `tsize`.
//!
//! The window slides: an ACK inside it moves its start, and only the blocks
//! that newly fit are sent. Retransmission is go-back-N: on a timeout the
//! window is sent again from the first unacknowledged block. A
//! duplicate ACK does not trigger a resend (that is the "Sorcerer's
//! Apprentice" bug, RFC 1123 §4.2.3.1); only the timer does. Block numbers
//! roll over from 65535 to 0, as tftp-hpa, dnsmasq, iPXE and EDK II do.

pub mod packet;
pub mod path;

use std::collections::HashSet;
use std::fs::File;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::Semaphore;

use crate::tftp::packet::{Packet, code};

/// Largest window accepted (blocks in flight).
pub const MAX_WINDOW: u16 = 64;
/// RFC 2348's limits.
pub const MIN_BLKSIZE: usize = 8;
pub const MAX_BLKSIZE: usize = 65464;
const DEFAULT_BLKSIZE: usize = 512;
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);
const MAX_RETRIES: u32 = 6;
const MAX_TRANSFERS: usize = 256;

/// What was agreed for one transfer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    pub blksize: usize,
    pub windowsize: u16,
    pub timeout: Duration,
    /// The options to put in the OACK, in the client's order; empty means
    /// no OACK (the transfer starts with DATA 1).
    pub oack: Vec<(String, String)>,
}

/// Applies the client's options (RFC 2347: unknown or malformed ones are
/// ignored, values outside the limits are lowered where the RFC allows it).
pub fn negotiate(options: &[(String, String)], file_size: u64) -> Negotiated {
    let mut n = Negotiated {
        blksize: DEFAULT_BLKSIZE,
        windowsize: 1,
        timeout: DEFAULT_TIMEOUT,
        oack: Vec::new(),
    };
    let mut seen = HashSet::new();
    for (name, value) in options {
        if !seen.insert(name.as_str()) {
            continue;
        }
        let Ok(number) = value.parse::<u64>() else {
            continue;
        };
        match name.as_str() {
            "blksize" if number >= MIN_BLKSIZE as u64 => {
                n.blksize = number.min(MAX_BLKSIZE as u64) as usize;
                n.oack.push((name.clone(), n.blksize.to_string()));
            }
            "tsize" => n.oack.push((name.clone(), file_size.to_string())),
            "timeout" if (1..=255).contains(&number) => {
                n.timeout = Duration::from_secs(number);
                n.oack.push((name.clone(), number.to_string()));
            }
            "windowsize" if number >= 1 => {
                n.windowsize = number.min(u64::from(MAX_WINDOW)) as u16;
                n.oack.push((name.clone(), n.windowsize.to_string()));
            }
            _ => {}
        }
    }
    n
}

/// Looks up the MAC behind a client address for logs (filled from DHCP).
pub type MacLookup = Arc<dyn Fn(IpAddr) -> Option<String> + Send + Sync>;

/// The server: one listening socket, one task per transfer.
pub struct TftpServer {
    root: PathBuf,
    local_ip: IpAddr,
    socket: UdpSocket,
    mac_of: MacLookup,
}

impl TftpServer {
    pub fn new(root: PathBuf, local_ip: IpAddr, socket: UdpSocket, mac_of: MacLookup) -> Self {
        TftpServer {
            root,
            local_ip,
            socket,
            mac_of,
        }
    }

    /// Serves until the task is dropped.
    pub async fn run(self) {
        let limit = Arc::new(Semaphore::new(MAX_TRANSFERS));
        let active: Arc<Mutex<HashSet<SocketAddr>>> = Arc::default();
        let mut buf = vec![0u8; 2048];
        loop {
            let (len, peer) = match self.socket.recv_from(&mut buf).await {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!("tftp: receive failed: {e}");
                    continue;
                }
            };
            let request = match packet::parse(&buf[..len]) {
                Ok(p) => p,
                Err(e) => {
                    tracing::debug!(%peer, "tftp: ignoring malformed packet: {e}");
                    continue;
                }
            };
            let who = describe_peer(peer, &self.mac_of);
            let (filename, mode, options) = match request {
                Packet::Read {
                    filename,
                    mode,
                    options,
                } => (filename, mode, options),
                Packet::Write { filename } => {
                    tracing::warn!("tftp: {who} tried to write {filename:?}: refused (read-only)");
                    self.reply_error(peer, code::ACCESS_VIOLATION, "read-only server")
                        .await;
                    continue;
                }
                _ => continue,
            };
            // a retransmitted RRQ while its transfer runs is not a new one
            if !active.lock().expect("tftp active").insert(peer) {
                continue;
            }
            let Ok(permit) = limit.clone().try_acquire_owned() else {
                active.lock().expect("tftp active").remove(&peer);
                self.reply_error(peer, code::NOT_DEFINED, "server busy")
                    .await;
                continue;
            };
            let root = self.root.clone();
            let local_ip = self.local_ip;
            let active = active.clone();
            tokio::spawn(async move {
                let outcome = transfer(&root, local_ip, peer, &filename, &mode, &options).await;
                match outcome {
                    Ok(done) => tracing::info!(
                        "tftp: {who} got {filename} ({} bytes, blksize {}, windowsize {}) in {:.1} s",
                        done.bytes,
                        done.blksize,
                        done.windowsize,
                        done.elapsed.as_secs_f32()
                    ),
                    Err(TransferEnd::ProbeOnly) => {
                        tracing::debug!(
                            "tftp: {who} read the size of {filename} and stopped (firmware size probe)"
                        )
                    }
                    Err(e) => tracing::warn!("tftp: {who} did not get {filename:?}: {e}"),
                }
                drop(permit);
                active.lock().expect("tftp active").remove(&peer);
            });
        }
    }

    async fn reply_error(&self, peer: SocketAddr, code: u16, message: &str) {
        let _ = self
            .socket
            .send_to(&packet::error(code, message), peer)
            .await;
    }
}

fn describe_peer(peer: SocketAddr, mac_of: &MacLookup) -> String {
    match mac_of(peer.ip()) {
        Some(mac) => format!("{mac} ({peer})"),
        None => peer.to_string(),
    }
}

/// How a transfer that did not complete ended.
#[derive(Debug, thiserror::Error)]
pub enum TransferEnd {
    #[error("file not found ({0})")]
    NotFound(String),
    #[error("refused name")]
    BadName,
    #[error("mode {0:?} refused (octet only)")]
    Mode(String),
    #[error("client gave up: error {code} {message:?}")]
    ClientError { code: u16, message: String },
    #[error("client stopped answering")]
    TimedOut,
    #[error("the client ended the transfer after the option acknowledgement")]
    ProbeOnly,
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// A finished transfer.
#[derive(Debug)]
pub struct Done {
    pub bytes: u64,
    pub blksize: usize,
    pub windowsize: u16,
    pub elapsed: Duration,
}

async fn transfer(
    root: &Path,
    local_ip: IpAddr,
    peer: SocketAddr,
    filename: &str,
    mode: &str,
    options: &[(String, String)],
) -> Result<Done, TransferEnd> {
    let started = Instant::now();
    let socket = UdpSocket::bind(SocketAddr::new(local_ip, 0)).await?;
    socket.connect(peer).await?;
    let fail = |code, message: &str| packet::error(code, message);
    if mode != "octet" {
        let _ = socket
            .send(&fail(code::ILLEGAL_OPERATION, "only octet mode"))
            .await;
        return Err(TransferEnd::Mode(mode.to_string()));
    }
    let Some(path) = path::resolve(root, filename) else {
        let _ = socket
            .send(&fail(code::ACCESS_VIOLATION, "bad file name"))
            .await;
        return Err(TransferEnd::BadName);
    };
    let opened = tokio::task::spawn_blocking({
        let path = path.clone();
        move || -> std::io::Result<(File, u64)> {
            let file = File::open(&path)?;
            let meta = file.metadata()?;
            if !meta.is_file() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "not a regular file",
                ));
            }
            Ok((file, meta.len()))
        }
    })
    .await
    .map_err(std::io::Error::other)?;
    let (file, size) = match opened {
        Ok(x) => x,
        Err(e) => {
            let _ = socket
                .send(&fail(code::FILE_NOT_FOUND, "file not found"))
                .await;
            return Err(TransferEnd::NotFound(format!("{}: {e}", path.display())));
        }
    };
    let file = Arc::new(file);
    let agreed = negotiate(options, size);
    let mut recv = vec![0u8; 1024];
    if !agreed.oack.is_empty() {
        let oack = packet::option_ack(&agreed.oack);
        let mut tries = 0;
        loop {
            socket.send(&oack).await?;
            match tokio::time::timeout(agreed.timeout, socket.recv(&mut recv)).await {
                Ok(Ok(n)) => match packet::parse(&recv[..n]) {
                    Ok(Packet::Ack { block: 0 }) => break,
                    Ok(Packet::Error { .. }) => return Err(TransferEnd::ProbeOnly),
                    _ => {}
                },
                Ok(Err(e)) => return Err(e.into()),
                Err(_) => {
                    tries += 1;
                    if tries > MAX_RETRIES {
                        return Err(TransferEnd::TimedOut);
                    }
                }
            }
        }
    }

    let blksize = agreed.blksize as u64;
    // the last block is shorter than blksize, possibly empty
    let total_blocks = size / blksize + 1;
    let mut acked: u64 = 0;
    // highest block sent; at most `windowsize` ahead of `acked`
    let mut sent: u64 = 0;
    let mut tries = 0;
    let mut datagram = Vec::with_capacity(agreed.blksize + 4);
    while acked < total_blocks {
        let limit = (acked + u64::from(agreed.windowsize)).min(total_blocks);
        if sent < limit {
            let blocks = read_window(&file, sent + 1, limit, agreed.blksize, size).await?;
            for (i, data) in blocks.iter().enumerate() {
                let absolute = sent + 1 + i as u64;
                packet::data_header(absolute as u16, &mut datagram);
                datagram.extend_from_slice(data);
                socket.send(&datagram).await?;
            }
            sent = limit;
        }
        // wait for an ACK that moves the window, or time out
        let deadline = tokio::time::Instant::now() + agreed.timeout;
        let moved = loop {
            match tokio::time::timeout_at(deadline, socket.recv(&mut recv)).await {
                Err(_) => break false,
                Ok(Err(e)) => return Err(e.into()),
                Ok(Ok(n)) => match packet::parse(&recv[..n]) {
                    Ok(Packet::Ack { block }) => {
                        if let Some(abs) = ack_to_absolute(block, acked, sent) {
                            acked = abs;
                            break true;
                        }
                    }
                    Ok(Packet::Error { code, message }) => {
                        return Err(TransferEnd::ClientError { code, message });
                    }
                    _ => {}
                },
            }
        };
        if moved {
            tries = 0;
        } else {
            tries += 1;
            if tries > MAX_RETRIES {
                return Err(TransferEnd::TimedOut);
            }
            // go back: send the window again from the first unacknowledged block
            sent = acked;
        }
    }
    Ok(Done {
        bytes: size,
        blksize: agreed.blksize,
        windowsize: agreed.windowsize,
        elapsed: started.elapsed(),
    })
}

/// The absolute block an ACK of 16-bit `block` means, if it acknowledges
/// something new in the window `(acked, last]`.
pub fn ack_to_absolute(block: u16, acked: u64, last: u64) -> Option<u64> {
    (acked + 1..=last).rev().find(|b| *b as u16 == block)
}

async fn read_window(
    file: &Arc<File>,
    first: u64,
    last: u64,
    blksize: usize,
    size: u64,
) -> std::io::Result<Vec<Vec<u8>>> {
    let file = file.clone();
    tokio::task::spawn_blocking(move || {
        (first..=last)
            .map(|block| {
                let start = (block - 1) * blksize as u64;
                let len = (size.saturating_sub(start)).min(blksize as u64) as usize;
                let mut buf = vec![0u8; len];
                file.read_exact_at(&mut buf, start)?;
                Ok(buf)
            })
            .collect()
    })
    .await
    .map_err(std::io::Error::other)?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn negotiates_rfc_options() {
        let n = negotiate(
            &opts(&[
                ("blksize", "1468"),
                ("tsize", "0"),
                ("windowsize", "8"),
                ("timeout", "3"),
            ]),
            74213,
        );
        assert_eq!(n.blksize, 1468);
        assert_eq!(n.windowsize, 8);
        assert_eq!(n.timeout, Duration::from_secs(3));
        assert_eq!(
            n.oack,
            opts(&[
                ("blksize", "1468"),
                ("tsize", "74213"),
                ("windowsize", "8"),
                ("timeout", "3")
            ])
        );
    }

    #[test]
    fn clamps_and_ignores() {
        let n = negotiate(
            &opts(&[
                ("blksize", "70000"),
                ("windowsize", "1000"),
                ("timeout", "0"),
                ("bogus", "1"),
                ("blksize", "9"),
            ]),
            1,
        );
        assert_eq!(n.blksize, MAX_BLKSIZE);
        assert_eq!(n.windowsize, MAX_WINDOW);
        assert_eq!(n.timeout, DEFAULT_TIMEOUT);
        assert_eq!(n.oack, opts(&[("blksize", "65464"), ("windowsize", "64")]));
        let n = negotiate(&opts(&[("blksize", "7"), ("windowsize", "x")]), 1);
        assert!(n.oack.is_empty());
        assert_eq!(n.blksize, DEFAULT_BLKSIZE);
    }

    #[test]
    fn acks_map_across_rollover() {
        assert_eq!(ack_to_absolute(3, 0, 4), Some(3));
        assert_eq!(ack_to_absolute(0, 0, 4), None, "duplicate ACK of the OACK");
        assert_eq!(ack_to_absolute(5, 0, 4), None);
        assert_eq!(ack_to_absolute(0, 65534, 65540), Some(65536));
        assert_eq!(ack_to_absolute(2, 65534, 65540), Some(65538));
    }
}
