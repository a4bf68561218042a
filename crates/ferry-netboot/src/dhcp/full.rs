//! The full DHCP mode for isolated labs: ferry hands out the addresses
//! too (RFC 2131), from one pool, with leases that survive restarts.
//!
//! Leases live in `<state>/netboot/leases.json`, rewritten atomically on
//! every change (bind, release). A host listed with `ip:` always gets that
//! address; other clients keep their lease, get the address they ask for if
//! it is free, or the first free one. A DECLINEd address (someone else
//! answers ARP for it) is skipped for ten minutes. PXE clients get the boot
//! file in the same offer, iPXE with option 175.176 so that it does not
//! wait for ProxyDHCP offers.

use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};

use dhcproto::v4::{DhcpOption, Message, MessageType, OptionCode};
use serde::{Deserialize, Serialize};

use crate::config::PoolConfig;
use crate::dhcp::client::Client;
use crate::dhcp::proxy::{
    Bootfile, add_boot_options, base_reply, broadcast_dest, ipxe_no_proxy_wait, server_id,
    set_boot_fields,
};
use crate::error::InventoryError;
use crate::mac::MacAddr;

const DECLINE_HOLD_SECS: i64 = 600;
/// How long an offered address is kept for the client's REQUEST.
const OFFER_HOLD_SECS: i64 = 60;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub mac: MacAddr,
    pub ip: Ipv4Addr,
    /// Unix seconds.
    pub expires: i64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct LeaseFile {
    version: u32,
    leases: Vec<Lease>,
}

/// The pool and its leases.
pub struct Leases {
    path: PathBuf,
    pool: PoolConfig,
    server_ip: Ipv4Addr,
    reserved: HashMap<MacAddr, Ipv4Addr>,
    leases: BTreeMap<MacAddr, Lease>,
    offered: HashMap<MacAddr, (Ipv4Addr, i64)>,
    declined: HashMap<Ipv4Addr, i64>,
}

impl Leases {
    /// Loads `<state_dir>/netboot/leases.json` (absent: no leases).
    pub fn open(
        state_dir: &Path,
        pool: PoolConfig,
        server_ip: Ipv4Addr,
        reserved: HashMap<MacAddr, Ipv4Addr>,
    ) -> Result<Leases, InventoryError> {
        let path = state_dir.join("netboot").join("leases.json");
        let leases = match std::fs::read(&path) {
            Ok(bytes) => {
                let file: LeaseFile =
                    serde_json::from_slice(&bytes).map_err(|source| InventoryError::Corrupt {
                        path: path.clone(),
                        source,
                    })?;
                file.leases.into_iter().map(|l| (l.mac, l)).collect()
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(source) => return Err(InventoryError::Io { path, source }),
        };
        Ok(Leases {
            path,
            pool,
            server_ip,
            reserved,
            leases,
            offered: HashMap::new(),
            declined: HashMap::new(),
        })
    }

    pub fn lease(&self, mac: &MacAddr) -> Option<&Lease> {
        self.leases.get(mac)
    }

    fn in_pool(&self, ip: Ipv4Addr) -> bool {
        (u32::from(self.pool.start)..=u32::from(self.pool.end)).contains(&u32::from(ip))
    }

    /// Whether `ip` may go to `mac` now.
    fn free_for(&self, ip: Ipv4Addr, mac: MacAddr, now: i64) -> bool {
        if ip == self.server_ip || self.declined.get(&ip).is_some_and(|&t| t > now) {
            return false;
        }
        if self.reserved.iter().any(|(m, r)| *r == ip && *m != mac) {
            return false;
        }
        let leased = self
            .leases
            .values()
            .any(|l| l.ip == ip && l.mac != mac && l.expires > now);
        let offered = self
            .offered
            .iter()
            .any(|(m, (o, t))| *o == ip && *m != mac && *t > now);
        !leased && !offered
    }

    /// The address to offer `mac`, or `None` if the pool is exhausted.
    pub fn offer(
        &mut self,
        mac: MacAddr,
        requested: Option<Ipv4Addr>,
        now: i64,
    ) -> Option<Ipv4Addr> {
        let ip = self.pick(mac, requested, now)?;
        self.offered.insert(mac, (ip, now + OFFER_HOLD_SECS));
        Some(ip)
    }

    fn pick(&self, mac: MacAddr, requested: Option<Ipv4Addr>, now: i64) -> Option<Ipv4Addr> {
        if let Some(&ip) = self.reserved.get(&mac) {
            return Some(ip);
        }
        if let Some(lease) = self.leases.get(&mac)
            && self.free_for(lease.ip, mac, now)
        {
            return Some(lease.ip);
        }
        if let Some(ip) = requested
            && self.in_pool(ip)
            && self.free_for(ip, mac, now)
        {
            return Some(ip);
        }
        (u32::from(self.pool.start)..=u32::from(self.pool.end))
            .map(Ipv4Addr::from)
            .find(|&ip| self.free_for(ip, mac, now))
    }

    /// Binds `ip` to `mac` (DHCPREQUEST); `false` means NAK.
    pub fn request(
        &mut self,
        mac: MacAddr,
        ip: Ipv4Addr,
        now: i64,
    ) -> Result<bool, InventoryError> {
        let allowed = match self.reserved.get(&mac) {
            Some(&r) => r == ip,
            None => self.in_pool(ip) && self.free_for(ip, mac, now),
        };
        if !allowed {
            return Ok(false);
        }
        self.offered.remove(&mac);
        self.leases.insert(
            mac,
            Lease {
                mac,
                ip,
                expires: now + i64::from(self.pool.lease_seconds),
            },
        );
        self.save()?;
        Ok(true)
    }

    pub fn release(&mut self, mac: MacAddr, ip: Ipv4Addr) -> Result<(), InventoryError> {
        if self.leases.get(&mac).is_some_and(|l| l.ip == ip) {
            self.leases.remove(&mac);
            self.save()?;
        }
        Ok(())
    }

    pub fn decline(&mut self, mac: MacAddr, ip: Ipv4Addr, now: i64) -> Result<(), InventoryError> {
        self.declined.insert(ip, now + DECLINE_HOLD_SECS);
        self.offered.remove(&mac);
        self.release(mac, ip)
    }

    fn save(&self) -> Result<(), InventoryError> {
        let file = LeaseFile {
            version: 1,
            leases: self.leases.values().cloned().collect(),
        };
        let json = serde_json::to_vec_pretty(&file).expect("leases serialize");
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| InventoryError::Io {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        ferry_oci::atomic::AtomicWrite::new()
            .replace(&self.path, &json)
            .map_err(|source| InventoryError::Io {
                path: self.path.clone(),
                source,
            })
    }
}

/// The full-DHCP answer to `req`: OFFER/ACK/NAK with the address, and the
/// boot file for PXE clients that may boot. `None`: no answer.
pub fn full_reply(
    req: &Message,
    client: &Client,
    leases: &mut Leases,
    bootfile: Option<&Bootfile>,
    now: i64,
) -> Result<Option<(Message, SocketAddrV4)>, InventoryError> {
    let server_ip = leases.server_ip;
    let requested = match req.opts().get(OptionCode::RequestedIpAddress) {
        Some(DhcpOption::RequestedIpAddress(ip)) => Some(*ip),
        _ => None,
    };
    let (reply_type, yiaddr) = match client.message_type {
        MessageType::Discover => match leases.offer(client.mac, requested, now) {
            Some(ip) => (MessageType::Offer, ip),
            None => {
                tracing::warn!(mac = %client.mac, "DHCP pool exhausted: no address to offer");
                return Ok(None);
            }
        },
        MessageType::Request => {
            if server_id(req).is_some_and(|id| id != server_ip) {
                // the client took another server's offer
                return Ok(None);
            }
            let Some(ip) = requested.or(Some(req.ciaddr()).filter(|c| !c.is_unspecified())) else {
                return Ok(None);
            };
            if leases.request(client.mac, ip, now)? {
                (MessageType::Ack, ip)
            } else {
                (MessageType::Nak, Ipv4Addr::UNSPECIFIED)
            }
        }
        MessageType::Release => {
            leases.release(client.mac, req.ciaddr())?;
            return Ok(None);
        }
        MessageType::Decline => {
            if let Some(ip) = requested {
                tracing::warn!(mac = %client.mac, %ip, "DHCPDECLINE: address in use by someone else");
                leases.decline(client.mac, ip, now)?;
            }
            return Ok(None);
        }
        MessageType::Inform => (MessageType::Ack, Ipv4Addr::UNSPECIFIED),
        _ => return Ok(None),
    };
    let mut reply = base_reply(req, server_ip);
    reply.set_yiaddr(yiaddr);
    if client.message_type == MessageType::Inform {
        reply.set_ciaddr(req.ciaddr());
    }
    let opts = reply.opts_mut();
    opts.insert(DhcpOption::MessageType(reply_type));
    if reply_type != MessageType::Nak {
        let pool = &leases.pool;
        opts.insert(DhcpOption::SubnetMask(pool.netmask));
        if let Some(router) = pool.router {
            opts.insert(DhcpOption::Router(vec![router]));
        }
        if !pool.dns.is_empty() {
            opts.insert(DhcpOption::DomainNameServer(pool.dns.clone()));
        }
        if client.message_type != MessageType::Inform {
            opts.insert(DhcpOption::AddressLeaseTime(pool.lease_seconds));
        }
        if let Some(bootfile) = bootfile {
            add_boot_options(opts, client, bootfile, server_ip, true);
            if client.is_ipxe {
                ipxe_no_proxy_wait(opts);
            }
            set_boot_fields(&mut reply, bootfile, server_ip);
        }
    }
    let dest = if !req.ciaddr().is_unspecified() && req.giaddr().is_unspecified() {
        // renewing/informing clients have their address: unicast
        SocketAddrV4::new(req.ciaddr(), 68)
    } else {
        broadcast_dest(req)
    };
    Ok(Some((reply, dest)))
}
