//! Who is asking: a DHCP request classified as a PXE client of some
//! firmware and architecture, iPXE or not.
//!
//! - PXE clients put `PXEClient` at the start of the vendor class
//!   identifier (option 60; PXE 2.1 §2.2.1). Nothing else is answered in
//!   ProxyDHCP mode.
//! - The architecture is option 93 (RFC 4578 §2.1, IANA "Processor
//!   Architecture Types"): 0 x86 BIOS, 6 x86 UEFI, 7 and 9 x86-64 UEFI
//!   (7 is "EFI BC", which every x86-64 UEFI firmware sends in practice),
//!   10 arm32 UEFI, 11 arm64 UEFI, 16 x86-64 UEFI HTTP, 19 arm64 UEFI
//!   HTTP. Without option 93 the client is taken to be x86 BIOS, like
//!   dnsmasq does.
//! - iPXE identifies itself with user class `iPXE` (option 77, sent raw
//!   rather than in RFC 3004's length-prefixed form) and with its own
//!   encapsulated option 175. It must get the HTTP URL of `/boot.ipxe`
//!   instead of the iPXE binary again, or it would chainload itself
//!   forever.

use std::net::Ipv4Addr;

use dhcproto::v4::{DhcpOption, HType, Message, MessageType, Opcode, OptionCode};

use crate::mac::MacAddr;

/// Firmware family by option 93.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Firmware {
    Bios,
    UefiIa32,
    UefiX64,
    UefiArm32,
    UefiArm64,
    UefiX64Http,
    UefiArm64Http,
    Other(u16),
}

impl Firmware {
    pub fn from_arch(code: Option<u16>) -> Firmware {
        match code {
            None | Some(0) => Firmware::Bios,
            Some(6) => Firmware::UefiIa32,
            Some(7) | Some(9) => Firmware::UefiX64,
            Some(10) => Firmware::UefiArm32,
            Some(11) => Firmware::UefiArm64,
            Some(16) => Firmware::UefiX64Http,
            Some(19) => Firmware::UefiArm64Http,
            Some(n) => Firmware::Other(n),
        }
    }

    /// For logs: "x86-64 UEFI".
    pub fn describe(self) -> String {
        match self {
            Firmware::Bios => "x86 BIOS".into(),
            Firmware::UefiIa32 => "x86 32-bit UEFI".into(),
            Firmware::UefiX64 => "x86-64 UEFI".into(),
            Firmware::UefiArm32 => "arm32 UEFI".into(),
            Firmware::UefiArm64 => "arm64 UEFI".into(),
            Firmware::UefiX64Http => "x86-64 UEFI HTTP boot".into(),
            Firmware::UefiArm64Http => "arm64 UEFI HTTP boot".into(),
            Firmware::Other(n) => format!("architecture {n}"),
        }
    }

    /// The inventory's architecture name.
    pub fn arch_name(self) -> &'static str {
        match self {
            Firmware::Bios => "x86-bios",
            Firmware::UefiIa32 => "x86-uefi",
            Firmware::UefiX64 | Firmware::UefiX64Http => "x86_64-uefi",
            Firmware::UefiArm32 => "arm32-uefi",
            Firmware::UefiArm64 | Firmware::UefiArm64Http => "arm64-uefi",
            Firmware::Other(_) => "other",
        }
    }
}

/// A classified DHCP request.
#[derive(Debug, Clone)]
pub struct Client {
    pub mac: MacAddr,
    pub message_type: MessageType,
    /// Vendor class starts with `PXEClient` (or `HTTPClient`).
    pub is_pxe: bool,
    pub is_ipxe: bool,
    pub arch_code: Option<u16>,
    pub firmware: Firmware,
    /// Option 97, echoed back as PXE requires.
    pub machine_id: Option<Vec<u8>>,
    /// Option 50 or ciaddr, for logs and the TFTP MAC map.
    pub address: Option<Ipv4Addr>,
}

/// Why a packet gets no answer before any host policy applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotAClient {
    /// A reply, or not Ethernet: not ours to answer.
    NotARequest,
    /// No option 53.
    NoMessageType,
}

/// Classifies a decoded request.
pub fn classify(msg: &Message) -> Result<Client, NotAClient> {
    // chaddr() slices by hlen, which a malformed packet may set past 16
    if msg.opcode() != Opcode::BootRequest || msg.htype() != HType::Eth || msg.hlen() != 6 {
        return Err(NotAClient::NotARequest);
    }
    let mac = MacAddr::from_slice(msg.chaddr()).ok_or(NotAClient::NotARequest)?;
    let message_type = msg.opts().msg_type().ok_or(NotAClient::NoMessageType)?;
    let vendor = match msg.opts().get(OptionCode::ClassIdentifier) {
        Some(DhcpOption::ClassIdentifier(v)) => v.as_slice(),
        _ => &[],
    };
    let is_pxe = vendor.starts_with(b"PXEClient") || vendor.starts_with(b"HTTPClient");
    let user_class_ipxe = match msg.opts().get(OptionCode::UserClass) {
        Some(DhcpOption::UserClass(data)) => is_ipxe_user_class(data),
        _ => false,
    };
    let is_ipxe = user_class_ipxe || msg.opts().get(OptionCode::Unknown(175)).is_some();
    let arch_code = match msg.opts().get(OptionCode::ClientSystemArchitecture) {
        Some(DhcpOption::ClientSystemArchitecture(a)) => Some(u16::from(*a)),
        _ => None,
    };
    let machine_id = match msg.opts().get(OptionCode::ClientMachineIdentifier) {
        Some(DhcpOption::ClientMachineIdentifier(id)) => Some(id.clone()),
        _ => None,
    };
    let requested = match msg.opts().get(OptionCode::RequestedIpAddress) {
        Some(DhcpOption::RequestedIpAddress(ip)) => Some(*ip),
        _ => None,
    };
    let address = Some(msg.ciaddr())
        .filter(|ip| !ip.is_unspecified())
        .or(requested);
    Ok(Client {
        mac,
        message_type,
        is_pxe,
        is_ipxe,
        arch_code,
        firmware: Firmware::from_arch(arch_code),
        machine_id,
        address,
    })
}

/// iPXE sends `iPXE` raw; RFC 3004 clients send length-prefixed items.
fn is_ipxe_user_class(data: &[u8]) -> bool {
    if data == b"iPXE" {
        return true;
    }
    let mut rest = data;
    while let Some((&len, tail)) = rest.split_first() {
        let len = usize::from(len);
        if len > tail.len() {
            return false;
        }
        if &tail[..len] == b"iPXE" {
            return true;
        }
        rest = &tail[len..];
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_class_forms() {
        assert!(is_ipxe_user_class(b"iPXE"));
        assert!(is_ipxe_user_class(b"\x03abc\x04iPXE"));
        assert!(!is_ipxe_user_class(b"\x09iPXE"));
        assert!(!is_ipxe_user_class(b"gPXE"));
        assert!(!is_ipxe_user_class(b""));
    }

    #[test]
    fn architectures() {
        assert_eq!(Firmware::from_arch(None), Firmware::Bios);
        assert_eq!(Firmware::from_arch(Some(7)), Firmware::UefiX64);
        assert_eq!(Firmware::from_arch(Some(9)), Firmware::UefiX64);
        assert_eq!(Firmware::from_arch(Some(11)), Firmware::UefiArm64);
        assert_eq!(Firmware::from_arch(Some(42)), Firmware::Other(42));
    }
}
