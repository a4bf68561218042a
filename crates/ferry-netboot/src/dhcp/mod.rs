//! The DHCP side: ProxyDHCP (default) or full DHCP, on UDP 67 and 4011.
//!
//! Packets are decoded with dhcproto, classified ([`client`]), checked
//! against the host policy ([`Netboot::plan`]), and answered with the boot
//! file for the client's kind ([`proxy`]) and, in full mode, an address
//! ([`full`]). [`DhcpServer::handle`] is the whole decision for one
//! datagram; the socket loops only receive and send. Both sockets are bound
//! to the interface (`SO_BINDTODEVICE`), so replies broadcast to
//! 255.255.255.255 leave through it and requests from other segments are
//! not seen.
//!
//! In ProxyDHCP mode only PXE clients (option 60 `PXEClient`) are answered;
//! everyone else is left to the site's DHCP server.

pub mod client;
pub mod full;
pub mod proxy;
mod sanitize;

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use dhcproto::v4::Message;
use dhcproto::{Decodable, Decoder, Encodable};
use tokio::net::UdpSocket;

use crate::config::DhcpMode;
use crate::dhcp::client::{Client, classify};
use crate::dhcp::full::{Leases, full_reply};
use crate::dhcp::proxy::{BootSettings, Port, choose_bootfile, proxy_reply};
use crate::mac::MacAddr;
use crate::service::{Netboot, Plan};

/// How often the same line about the same MAC may be logged: PXE firmware
/// repeats its DISCOVER four times or more per boot.
const LOG_EVERY: Duration = Duration::from_secs(20);

pub struct DhcpServer {
    nb: Arc<Netboot>,
    leases: Option<Mutex<Leases>>,
    logged: Mutex<HashMap<(MacAddr, String), Instant>>,
}

impl DhcpServer {
    pub fn new(nb: Arc<Netboot>, leases: Option<Leases>) -> DhcpServer {
        DhcpServer {
            nb,
            leases: leases.map(Mutex::new),
            logged: Mutex::new(HashMap::new()),
        }
    }

    /// Receives and answers on `socket` until the task is dropped.
    pub async fn run(self: Arc<Self>, socket: UdpSocket, port: Port) {
        let mut buf = vec![0u8; 1500];
        loop {
            let (len, from) = match socket.recv_from(&mut buf).await {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!("dhcp: receive failed: {e}");
                    continue;
                }
            };
            let SocketAddr::V4(from) = from else { continue };
            let packet = buf[..len].to_vec();
            let this = self.clone();
            // inventory and lease writes are blocking file I/O
            let reply = tokio::task::spawn_blocking(move || this.handle(&packet, from, port)).await;
            if let Ok(Some((bytes, dest))) = reply
                && let Err(e) = socket.send_to(&bytes, dest).await
            {
                tracing::warn!("dhcp: cannot send to {dest}: {e}");
            }
        }
    }

    /// The answer to one datagram, if any. Never panics on any input.
    pub fn handle(
        &self,
        packet: &[u8],
        from: SocketAddrV4,
        port: Port,
    ) -> Option<(Vec<u8>, SocketAddrV4)> {
        let mut packet = packet.to_vec();
        sanitize::blank_malformed_options(&mut packet);
        let msg = match Message::decode(&mut Decoder::new(&packet)) {
            Ok(m) => m,
            Err(e) => {
                tracing::debug!("dhcp: undecodable packet from {from}: {e}");
                return None;
            }
        };
        let client = classify(&msg).ok()?;
        if let Some(ip) = client.address {
            self.nb.remember_ip(ip, client.mac);
        }
        let full_mode = self.nb.config.config.dhcp.mode == DhcpMode::Full && port == Port::Dhcp;
        if !client.is_pxe && !client.is_ipxe && !full_mode {
            return None;
        }
        let bootfile = if client.is_pxe || client.is_ipxe {
            self.bootfile_for(&client)
        } else {
            None
        };
        let reply = if full_mode {
            let leases = self.leases.as_ref()?;
            let mut leases = leases.lock().expect("leases");
            match full_reply(&msg, &client, &mut leases, bootfile.as_ref(), unix_now()) {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!("{}: DHCP lease not saved: {e}", client.mac);
                    None
                }
            }
        } else {
            let bootfile = bootfile?;
            proxy_reply(&msg, &client, port, from, &bootfile, self.nb.server_ip)
        };
        let (reply, dest) = reply?;
        if let Some(file) = reply.fname_str().and_then(Result::ok).map(str::to_string) {
            self.log(
                client.mac,
                tracing::Level::INFO,
                format!(
                    "{} {} to {} firmware{}: {file}",
                    if full_mode { "DHCP" } else { "ProxyDHCP" },
                    reply
                        .opts()
                        .msg_type()
                        .map_or("reply".into(), |t| format!("{t:?}").to_uppercase()),
                    client.firmware.describe(),
                    if client.is_ipxe { " (iPXE)" } else { "" },
                ),
            );
        }
        match reply.to_vec() {
            Ok(bytes) => Some((bytes, dest)),
            Err(e) => {
                tracing::error!("{}: cannot encode the DHCP reply: {e}", client.mac);
                None
            }
        }
    }

    /// The boot file, after the host policy; logs why when there is none.
    fn bootfile_for(&self, client: &Client) -> Option<proxy::Bootfile> {
        // decide before writing: a MAC that will not boot gets no record
        let known = self.nb.inventory.get(&client.mac).ok().flatten();
        if self.nb.plan(&client.mac, known.as_ref()) == Plan::Ignore {
            self.log(
                client.mac,
                tracing::Level::WARN,
                format!(
                    "not booted: unknown MAC and no default_profile in {}",
                    self.nb.config.path.display()
                ),
            );
            return None;
        }
        if let Err(e) = self.nb.inventory.update(client.mac, |r| {
            r.touch();
            if !client.is_ipxe || r.arch.is_none() {
                r.arch = Some(client.firmware.arch_name().to_string());
            }
        }) {
            tracing::error!("{}: inventory not updated: {e}", client.mac);
        }
        let cfg = &self.nb.config.config;
        let settings = BootSettings {
            server_ip: self.nb.server_ip,
            base_url: &self.nb.base_url,
            boot_files: &cfg.dhcp.boot_files,
            tftp_root: cfg.tftp_enabled().then_some(cfg.tftp.root.as_path()),
        };
        match choose_bootfile(client, &settings) {
            Ok(b) => Some(b),
            Err(refusal) => {
                self.log(
                    client.mac,
                    tracing::Level::WARN,
                    format!("not booted: {refusal}"),
                );
                None
            }
        }
    }

    fn log(&self, mac: MacAddr, level: tracing::Level, line: String) {
        {
            let mut logged = self.logged.lock().expect("dhcp log limiter");
            let now = Instant::now();
            if logged.len() > 4096 {
                logged.retain(|_, t| now.duration_since(*t) < LOG_EVERY);
            }
            let key = (mac, line.clone());
            if logged
                .get(&key)
                .is_some_and(|t| now.duration_since(*t) < LOG_EVERY)
            {
                return;
            }
            logged.insert(key, now);
        }
        if level == tracing::Level::WARN {
            tracing::warn!("{mac}: {line}");
        } else {
            tracing::info!("{mac}: {line}");
        }
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// A UDP socket on `0.0.0.0:port` that receives broadcasts on
/// `interface` only and may send broadcasts.
pub fn bind_udp(port: u16, interface: Option<&str>) -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_address(true)?;
    socket.set_broadcast(true)?;
    if let Some(name) = interface {
        socket.bind_device(Some(name.as_bytes()))?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port).into())?;
    UdpSocket::from_std(socket.into())
}
