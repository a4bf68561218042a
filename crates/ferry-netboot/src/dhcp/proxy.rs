//! What a PXE client is told: the boot file for its kind, and the
//! ProxyDHCP reply that carries it.
//!
//! A ProxyDHCP server (PXE 2.1 §2.2.3) answers a PXE client's DHCPDISCOVER
//! next to the site's DHCP server: no address (`yiaddr` 0), only the boot
//! server (`siaddr`, option 54) and file. The shapes below are the ones
//! firmware accepts in practice:
//!
//! - iPXE: `file` and option 67 = `http://SERVER/boot.ipxe`, no option 43.
//!   iPXE takes its address from the site's server and the file from us,
//!   and sends nothing to port 4011.
//! - x86 BIOS PXE: `file` = `undionly.kpxe` over TFTP, option 43 with
//!   PXE_DISCOVERY_CONTROL (tag 6) = 8, "use the boot file in this offer,
//!   no boot server discovery" (PXE 2.1 §2.2.5, table 2-1).
//! - UEFI PXE: `file` set but no option 43. EDK II's PXE (and the firmware
//!   built on it) ignores a ProxyDHCP offer that bypasses discovery, but
//!   treats one without option 43 as a "BINL" offer and asks again with a
//!   DHCPREQUEST to port 4011 of the server; that request gets a DHCPACK
//!   with the file. (Pixiecore found and documents the same.)
//! - UEFI HTTP boot (vendor class `HTTPClient`, arch 16/19): the URL of the
//!   iPXE binary over HTTP, and option 60 `HTTPClient` (UEFI 2.8 §24.7.2).
//!
//! Every reply echoes option 97 (client machine identifier): PXE 2.1 says a
//! client may drop replies without it.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::Path;

use dhcproto::v4::{DhcpOption, DhcpOptions, HType, Message, MessageType, Opcode, UnknownOption};

use crate::config::BootFiles;
use crate::dhcp::client::{Client, Firmware};

/// Where boot files come from.
pub struct BootSettings<'a> {
    pub server_ip: Ipv4Addr,
    /// `http://SERVER:PORT`
    pub base_url: &'a str,
    pub boot_files: &'a BootFiles,
    /// The TFTP root, `None` if TFTP is off.
    pub tftp_root: Option<&'a Path>,
}

/// The boot file chosen for a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bootfile {
    /// iPXE: the HTTP URL of `/boot.ipxe`.
    Script(String),
    /// PXE firmware: an iPXE binary over TFTP.
    Tftp(String),
    /// UEFI HTTP boot: an iPXE binary over HTTP.
    Http(String),
}

impl Bootfile {
    pub fn as_str(&self) -> &str {
        match self {
            Bootfile::Script(s) | Bootfile::Tftp(s) | Bootfile::Http(s) => s,
        }
    }
}

/// Why a PXE client gets no boot file. Shown to operators with the MAC.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("not a PXE client (no PXEClient vendor class)")]
    NotPxe,
    #[error("{} firmware (option 93 = {code}) has no iPXE binary configured; set dhcp.boot_files.{key}", firmware.describe())]
    NoBinaryForArch {
        firmware: Firmware,
        code: u16,
        key: &'static str,
    },
    #[error("{} firmware (option 93 = {code}) is not supported", firmware.describe())]
    UnsupportedArch { firmware: Firmware, code: u16 },
    #[error("its iPXE binary {file} would come over TFTP, which is disabled (tftp.enabled)")]
    TftpDisabled { file: String },
    #[error(
        "TFTP file {file} is missing in {root} (install Debian's ipxe package or fix tftp.root / dhcp.boot_files)"
    )]
    TftpFileMissing { file: String, root: String },
}

/// The boot file for `client`.
pub fn choose_bootfile(client: &Client, boot: &BootSettings<'_>) -> Result<Bootfile, Refusal> {
    if !client.is_pxe && !client.is_ipxe {
        return Err(Refusal::NotPxe);
    }
    if client.is_ipxe {
        return Ok(Bootfile::Script(format!("{}/boot.ipxe", boot.base_url)));
    }
    let code = client.arch_code.unwrap_or(0);
    let (file, key) = match client.firmware {
        Firmware::Bios => (&boot.boot_files.bios, "bios"),
        Firmware::UefiX64 | Firmware::UefiX64Http => (&boot.boot_files.uefi_x86_64, "uefi_x86_64"),
        Firmware::UefiArm64 | Firmware::UefiArm64Http => {
            (&boot.boot_files.uefi_arm64, "uefi_arm64")
        }
        firmware => return Err(Refusal::UnsupportedArch { firmware, code }),
    };
    let file = file.clone().ok_or(Refusal::NoBinaryForArch {
        firmware: client.firmware,
        code,
        key,
    })?;
    let Some(root) = boot.tftp_root else {
        return Err(Refusal::TftpDisabled { file });
    };
    // the file must exist, or the client fails after a TFTP timeout with
    // nothing on the server side to say why
    if !crate::tftp::path::resolve(root, &file).is_some_and(|p| p.is_file()) {
        return Err(Refusal::TftpFileMissing {
            file,
            root: root.display().to_string(),
        });
    }
    if matches!(
        client.firmware,
        Firmware::UefiX64Http | Firmware::UefiArm64Http
    ) {
        return Ok(Bootfile::Http(format!("{}/ipxe/{file}", boot.base_url)));
    }
    Ok(Bootfile::Tftp(file))
}

/// On which port a request came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Port {
    /// 67: DHCP broadcast.
    Dhcp,
    /// 4011: PXE boot server request, unicast.
    Pxe,
}

/// The ProxyDHCP reply to `req`, and where to send it, or `None` if this
/// message type on this port gets no answer (a DHCPREQUEST on 67 meant
/// for the site's server, a RELEASE...).
pub fn proxy_reply(
    req: &Message,
    client: &Client,
    port: Port,
    source: SocketAddrV4,
    bootfile: &Bootfile,
    server_ip: Ipv4Addr,
) -> Option<(Message, SocketAddrV4)> {
    let reply_type = match (port, client.message_type) {
        (Port::Dhcp, MessageType::Discover) => MessageType::Offer,
        // a client that picked our offer and asks us by server identifier
        (Port::Dhcp, MessageType::Request) if server_id(req) == Some(server_ip) => MessageType::Ack,
        (Port::Pxe, MessageType::Request | MessageType::Inform) => MessageType::Ack,
        _ => return None,
    };
    let mut reply = base_reply(req, server_ip);
    reply.set_ciaddr(req.ciaddr());
    let opts = reply.opts_mut();
    opts.insert(DhcpOption::MessageType(reply_type));
    add_boot_options(opts, client, bootfile, server_ip, port == Port::Dhcp);
    set_boot_fields(&mut reply, bootfile, server_ip);
    let dest = match port {
        Port::Pxe if !source.ip().is_unspecified() => source,
        _ => broadcast_dest(req),
    };
    Some((reply, dest))
}

/// A BOOTREPLY with the request's transaction fields.
pub(crate) fn base_reply(req: &Message, server_ip: Ipv4Addr) -> Message {
    let mut reply = Message::default();
    reply
        .set_opcode(Opcode::BootReply)
        .set_htype(HType::Eth)
        .set_xid(req.xid())
        .set_flags(req.flags())
        .set_giaddr(req.giaddr())
        .set_chaddr(req.chaddr())
        .set_siaddr(server_ip);
    reply
        .opts_mut()
        .insert(DhcpOption::ServerIdentifier(server_ip));
    reply
}

/// The PXE-specific options of a reply (shared with the full DHCP mode).
pub(crate) fn add_boot_options(
    opts: &mut DhcpOptions,
    client: &Client,
    bootfile: &Bootfile,
    server_ip: Ipv4Addr,
    discovery_port: bool,
) {
    let vendor: &[u8] = if matches!(bootfile, Bootfile::Http(_)) {
        b"HTTPClient"
    } else {
        b"PXEClient"
    };
    opts.insert(DhcpOption::ClassIdentifier(vendor.to_vec()));
    opts.insert(DhcpOption::BootfileName(
        bootfile.as_str().as_bytes().to_vec(),
    ));
    if let Bootfile::Tftp(_) = bootfile {
        opts.insert(DhcpOption::TFTPServerName(
            server_ip.to_string().into_bytes(),
        ));
    }
    if discovery_port && client.firmware == Firmware::Bios && matches!(bootfile, Bootfile::Tftp(_))
    {
        // PXE_DISCOVERY_CONTROL = 8: boot the file named here, no menu,
        // no boot server discovery; then the end tag
        opts.insert(DhcpOption::VendorExtensions(vec![6, 1, 8, 255]));
    }
    if let Some(id) = &client.machine_id {
        opts.insert(DhcpOption::ClientMachineIdentifier(id.clone()));
    }
}

/// iPXE's own option 175, sub-option 176 (no-pxedhcp) = 1: do not wait
/// the 2 s for ProxyDHCP offers; this reply already has the boot file.
pub(crate) fn ipxe_no_proxy_wait(opts: &mut DhcpOptions) {
    opts.insert(DhcpOption::Unknown(UnknownOption::new(
        dhcproto::v4::OptionCode::Unknown(175),
        vec![176, 1, 1],
    )));
}

pub(crate) fn set_boot_fields(reply: &mut Message, bootfile: &Bootfile, server_ip: Ipv4Addr) {
    reply.set_sname_str(server_ip.to_string());
    // `file` is 128 bytes; a longer URL only goes in option 67
    if bootfile.as_str().len() < 128 {
        reply.set_fname_str(bootfile.as_str());
    }
}

/// Replies to clients without an address go to the broadcast address
/// (RFC 2131 §4.1 allows it for every client, and it needs no ARP entry
/// for an address the client does not have yet), or to the relay.
pub(crate) fn broadcast_dest(req: &Message) -> SocketAddrV4 {
    if req.giaddr().is_unspecified() {
        SocketAddrV4::new(Ipv4Addr::BROADCAST, 68)
    } else {
        SocketAddrV4::new(req.giaddr(), 67)
    }
}

pub(crate) fn server_id(req: &Message) -> Option<Ipv4Addr> {
    match req.opts().get(dhcproto::v4::OptionCode::ServerIdentifier) {
        Some(DhcpOption::ServerIdentifier(ip)) => Some(*ip),
        _ => None,
    }
}
