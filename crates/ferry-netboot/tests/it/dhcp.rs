//! ProxyDHCP and full-DHCP decisions for each kind of client, through
//! `DhcpServer::handle` on real encoded packets.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;

use dhcproto::v4::{
    Architecture, DhcpOption, Message, MessageType, Opcode, OptionCode, UnknownOption,
};
use dhcproto::{Decodable, Decoder, Encodable};
use ferry_netboot::dhcp::DhcpServer;
use ferry_netboot::dhcp::full::Leases;
use ferry_netboot::dhcp::proxy::Port;

use crate::util::{MAC, Site, basic_yaml};

const CLIENT_PORT: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 68);

struct Req {
    mac: &'static str,
    kind: MessageType,
    vendor: Option<&'static [u8]>,
    user_class: Option<&'static [u8]>,
    arch: Option<u16>,
    ipxe_175: bool,
    ciaddr: Ipv4Addr,
    opts: Vec<DhcpOption>,
}

fn req(mac: &'static str, kind: MessageType) -> Req {
    Req {
        mac,
        kind,
        vendor: Some(b"PXEClient:Arch:00000:UNDI:002001"),
        user_class: None,
        arch: Some(0),
        ipxe_175: false,
        ciaddr: Ipv4Addr::UNSPECIFIED,
        opts: Vec::new(),
    }
}

impl Req {
    fn encode(&self) -> Vec<u8> {
        let mac: ferry_netboot::MacAddr = self.mac.parse().unwrap();
        let mut m = Message::new(
            self.ciaddr,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            &mac.0,
        );
        m.set_xid(0x1234_5678);
        let o = m.opts_mut();
        o.insert(DhcpOption::MessageType(self.kind));
        if let Some(v) = self.vendor {
            o.insert(DhcpOption::ClassIdentifier(v.to_vec()));
        }
        if let Some(u) = self.user_class {
            o.insert(DhcpOption::UserClass(u.to_vec()));
        }
        if let Some(a) = self.arch {
            o.insert(DhcpOption::ClientSystemArchitecture(Architecture::from(a)));
        }
        if self.ipxe_175 {
            o.insert(DhcpOption::Unknown(UnknownOption::new(
                OptionCode::Unknown(175),
                vec![177, 5, 1, 0x1a, 0xf4, 1, 0],
            )));
        }
        o.insert(DhcpOption::ClientMachineIdentifier(vec![0, 1, 2, 3]));
        for opt in &self.opts {
            o.insert(opt.clone());
        }
        m.to_vec().unwrap()
    }
}

fn server(site: &Site, yaml: &str) -> DhcpServer {
    DhcpServer::new(site.netboot(yaml), None)
}

fn answer(
    dhcp: &DhcpServer,
    r: &Req,
    port: Port,
    from: SocketAddrV4,
) -> Option<(Message, SocketAddrV4)> {
    let (bytes, dest) = dhcp.handle(&r.encode(), from, port)?;
    Some((Message::decode(&mut Decoder::new(&bytes)).unwrap(), dest))
}

fn opt(m: &Message, code: OptionCode) -> Option<&DhcpOption> {
    m.opts().get(code)
}

/// The `file` field as dhcproto decodes it (it keeps the NUL padding).
fn file_field(m: &Message) -> String {
    m.fname_str()
        .unwrap()
        .unwrap()
        .trim_end_matches('\0')
        .to_string()
}

fn bootfile(m: &Message) -> String {
    match opt(m, OptionCode::BootfileName) {
        Some(DhcpOption::BootfileName(b)) => String::from_utf8(b.clone()).unwrap(),
        other => panic!("no option 67: {other:?}"),
    }
}

#[test]
fn ipxe_gets_the_script_url_whatever_its_architecture() {
    let site = Site::new();
    let dhcp = server(&site, &basic_yaml(""));
    for (arch, by_175) in [(0, false), (7, false), (7, true), (11, false)] {
        let mut r = req(MAC, MessageType::Discover);
        if by_175 {
            r.ipxe_175 = true;
        } else {
            r.user_class = Some(b"iPXE");
        }
        r.arch = Some(arch);
        let (m, dest) = answer(&dhcp, &r, Port::Dhcp, CLIENT_PORT).expect("an offer");
        assert_eq!(m.opcode(), Opcode::BootReply);
        assert_eq!(m.opts().msg_type(), Some(MessageType::Offer));
        assert_eq!(m.xid(), 0x1234_5678);
        assert_eq!(
            m.yiaddr(),
            Ipv4Addr::UNSPECIFIED,
            "ProxyDHCP hands out no address"
        );
        assert_eq!(m.siaddr(), Ipv4Addr::LOCALHOST);
        assert_eq!(bootfile(&m), "http://127.0.0.1:8080/boot.ipxe");
        assert_eq!(file_field(&m), "http://127.0.0.1:8080/boot.ipxe");
        assert_eq!(
            opt(&m, OptionCode::ServerIdentifier),
            Some(&DhcpOption::ServerIdentifier(Ipv4Addr::LOCALHOST))
        );
        assert_eq!(
            opt(&m, OptionCode::ClassIdentifier),
            Some(&DhcpOption::ClassIdentifier(b"PXEClient".to_vec()))
        );
        assert_eq!(
            opt(&m, OptionCode::ClientMachineIdentifier),
            Some(&DhcpOption::ClientMachineIdentifier(vec![0, 1, 2, 3]))
        );
        assert!(opt(&m, OptionCode::VendorExtensions).is_none());
        assert_eq!(dest, SocketAddrV4::new(Ipv4Addr::BROADCAST, 68));
    }
}

#[test]
fn pxe_firmware_gets_the_ipxe_binary_for_its_architecture() {
    let site = Site::new();
    let dhcp = server(&site, &basic_yaml(""));
    // BIOS: undionly.kpxe, discovery control "use this file"
    let (m, _) = answer(
        &dhcp,
        &req(MAC, MessageType::Discover),
        Port::Dhcp,
        CLIENT_PORT,
    )
    .unwrap();
    assert_eq!(bootfile(&m), "undionly.kpxe");
    assert_eq!(file_field(&m), "undionly.kpxe");
    assert_eq!(
        opt(&m, OptionCode::VendorExtensions),
        Some(&DhcpOption::VendorExtensions(vec![6, 1, 8, 255]))
    );
    assert_eq!(
        opt(&m, OptionCode::TFTPServerName),
        Some(&DhcpOption::TFTPServerName(b"127.0.0.1".to_vec()))
    );

    // x86-64 UEFI (7 and 9): snponly.efi, no option 43, so EDK II asks on 4011
    for arch in [7, 9] {
        let mut r = req(MAC, MessageType::Discover);
        r.arch = Some(arch);
        r.vendor = Some(b"PXEClient:Arch:00007:UNDI:003000");
        let (m, _) = answer(&dhcp, &r, Port::Dhcp, CLIENT_PORT).unwrap();
        assert_eq!(bootfile(&m), "snponly.efi");
        assert!(opt(&m, OptionCode::VendorExtensions).is_none());
        // ... and the boot server request on 4011 gets an ACK, unicast back
        let mut r = req(MAC, MessageType::Request);
        r.arch = Some(arch);
        r.ciaddr = Ipv4Addr::new(10, 99, 0, 148);
        let from = SocketAddrV4::new(Ipv4Addr::new(10, 99, 0, 148), 4011);
        let (m, dest) = answer(&dhcp, &r, Port::Pxe, from).unwrap();
        assert_eq!(m.opts().msg_type(), Some(MessageType::Ack));
        assert_eq!(bootfile(&m), "snponly.efi");
        assert_eq!(dest, from);
    }

    // arm64 UEFI: no binary by default, so no answer
    let mut r = req(MAC, MessageType::Discover);
    r.arch = Some(11);
    assert!(answer(&dhcp, &r, Port::Dhcp, CLIENT_PORT).is_none());
    // unknown architecture
    r.arch = Some(25);
    assert!(answer(&dhcp, &r, Port::Dhcp, CLIENT_PORT).is_none());
}

#[test]
fn arm64_with_a_binary_and_uefi_http_boot() {
    let site = Site::new();
    std::fs::write(site.path().join("tftp/ipxe-arm64.efi"), b"arm64").unwrap();
    let yaml = basic_yaml("").replace(
        "tftp: {root: tftp}",
        "tftp: {root: tftp}\ndhcp: {boot_files: {uefi_arm64: ipxe-arm64.efi}}",
    );
    let dhcp = server(&site, &yaml);
    let mut r = req(MAC, MessageType::Discover);
    r.arch = Some(11);
    assert_eq!(
        bootfile(&answer(&dhcp, &r, Port::Dhcp, CLIENT_PORT).unwrap().0),
        "ipxe-arm64.efi"
    );
    r.arch = Some(16);
    r.vendor = Some(b"HTTPClient:Arch:00016:UNDI:003001");
    let (m, _) = answer(&dhcp, &r, Port::Dhcp, CLIENT_PORT).unwrap();
    assert_eq!(bootfile(&m), "http://127.0.0.1:8080/ipxe/snponly.efi");
    assert_eq!(
        opt(&m, OptionCode::ClassIdentifier),
        Some(&DhcpOption::ClassIdentifier(b"HTTPClient".to_vec()))
    );
}

#[test]
fn who_gets_no_answer() {
    let site = Site::new();
    let dhcp = server(&site, &basic_yaml(""));
    // not a PXE client: the site's DHCP server's business
    let mut r = req(MAC, MessageType::Discover);
    r.vendor = Some(b"MSFT 5.0");
    r.arch = None;
    assert!(answer(&dhcp, &r, Port::Dhcp, CLIENT_PORT).is_none());
    // unknown MAC, no default profile
    assert!(
        answer(
            &dhcp,
            &req("52:54:00:99:99:99", MessageType::Discover),
            Port::Dhcp,
            CLIENT_PORT
        )
        .is_none()
    );
    // an unknown MAC that will not boot leaves no record (a flood of
    // forged MACs must not grow the inventory)
    let unknown: ferry_netboot::MacAddr = "52:54:00:99:99:99".parse().unwrap();
    assert!(
        site.netboot(&basic_yaml(""))
            .inventory
            .get(&unknown)
            .unwrap()
            .is_none()
    );
    // a REQUEST on 67 for the site's server
    let mut r = req(MAC, MessageType::Request);
    r.user_class = Some(b"iPXE");
    r.opts
        .push(DhcpOption::ServerIdentifier(Ipv4Addr::new(10, 99, 0, 1)));
    assert!(answer(&dhcp, &r, Port::Dhcp, CLIENT_PORT).is_none());
    // our own reply looped back
    let (mut m, _) = answer(
        &dhcp,
        &req(MAC, MessageType::Discover),
        Port::Dhcp,
        CLIENT_PORT,
    )
    .unwrap();
    m.set_opcode(Opcode::BootReply);
    assert!(
        dhcp.handle(&m.to_vec().unwrap(), CLIENT_PORT, Port::Dhcp)
            .is_none()
    );
    // TFTP disabled or binary missing: no answer rather than a dead end
    let site = Site::new();
    std::fs::remove_file(site.path().join("tftp/undionly.kpxe")).unwrap();
    let dhcp = server(&site, &basic_yaml(""));
    assert!(
        answer(
            &dhcp,
            &req(MAC, MessageType::Discover),
            Port::Dhcp,
            CLIENT_PORT
        )
        .is_none()
    );
    // with a default profile an unknown MAC boots and is recorded
    let nb = site.netboot(&basic_yaml("default_profile: k\n"));
    let dhcp = DhcpServer::new(nb.clone(), None);
    let mut r = req("52:54:00:99:99:99", MessageType::Discover);
    r.user_class = Some(b"iPXE");
    assert!(answer(&dhcp, &r, Port::Dhcp, CLIENT_PORT).is_some());
    let h = nb
        .inventory
        .get(&"52:54:00:99:99:99".parse().unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(h.state, ferry_netboot::HostState::Discovered);
}

#[test]
fn full_dhcp_leases_addresses_and_keeps_them() {
    let site = Site::new();
    let yaml = basic_yaml("").replace(
        "tftp: {root: tftp}",
        "tftp: {root: tftp}\ndhcp:\n  mode: full\n  pool: {start: 10.99.0.100, end: 10.99.0.102, netmask: 255.255.255.0, router: 10.99.0.1, dns: [10.99.0.1], lease_seconds: 600}",
    ) + "  - mac: 52:54:00:00:00:07\n    profile: k\n    ip: 10.99.0.50\n";
    let nb = site.netboot(&yaml);
    let pool = nb.config.config.dhcp.pool.clone().unwrap();
    let leases = |nb: &Arc<ferry_netboot::Netboot>| {
        let reserved = [(
            "52:54:00:00:00:07".parse().unwrap(),
            Ipv4Addr::new(10, 99, 0, 50),
        )]
        .into();
        Leases::open(&site.state(), pool.clone(), nb.server_ip, reserved).unwrap()
    };
    let dhcp = DhcpServer::new(nb.clone(), Some(leases(&nb)));

    // a plain client (not PXE) gets an address, no boot file
    let mut r = req("52:54:00:00:00:01", MessageType::Discover);
    r.vendor = None;
    r.arch = None;
    let (offer, _) = answer(&dhcp, &r, Port::Dhcp, CLIENT_PORT).unwrap();
    assert_eq!(offer.opts().msg_type(), Some(MessageType::Offer));
    assert_eq!(offer.yiaddr(), Ipv4Addr::new(10, 99, 0, 100));
    assert!(opt(&offer, OptionCode::BootfileName).is_none());
    assert_eq!(
        opt(&offer, OptionCode::SubnetMask),
        Some(&DhcpOption::SubnetMask(Ipv4Addr::new(255, 255, 255, 0)))
    );
    assert_eq!(
        opt(&offer, OptionCode::Router),
        Some(&DhcpOption::Router(vec![Ipv4Addr::new(10, 99, 0, 1)]))
    );
    assert_eq!(
        opt(&offer, OptionCode::AddressLeaseTime),
        Some(&DhcpOption::AddressLeaseTime(600))
    );
    r.kind = MessageType::Request;
    r.opts = vec![
        DhcpOption::RequestedIpAddress(offer.yiaddr()),
        DhcpOption::ServerIdentifier(Ipv4Addr::LOCALHOST),
    ];
    let (ack, _) = answer(&dhcp, &r, Port::Dhcp, CLIENT_PORT).unwrap();
    assert_eq!(ack.opts().msg_type(), Some(MessageType::Ack));
    assert_eq!(ack.yiaddr(), Ipv4Addr::new(10, 99, 0, 100));

    // iPXE gets its address and the script in one offer, with 175.176 = 1
    let mut r = req(MAC, MessageType::Discover);
    r.user_class = Some(b"iPXE");
    let (offer, _) = answer(&dhcp, &r, Port::Dhcp, CLIENT_PORT).unwrap();
    assert_eq!(offer.yiaddr(), Ipv4Addr::new(10, 99, 0, 101));
    assert_eq!(bootfile(&offer), "http://127.0.0.1:8080/boot.ipxe");
    assert_eq!(
        opt(&offer, OptionCode::Unknown(175)),
        Some(&DhcpOption::Unknown(UnknownOption::new(
            OptionCode::Unknown(175),
            vec![176, 1, 1]
        )))
    );
    // a host with a fixed address gets it
    let (offer, _) = answer(
        &dhcp,
        &req("52:54:00:00:00:07", MessageType::Discover),
        Port::Dhcp,
        CLIENT_PORT,
    )
    .unwrap();
    assert_eq!(offer.yiaddr(), Ipv4Addr::new(10, 99, 0, 50));
    // asking for someone else's address is refused
    let mut r = req("52:54:00:00:00:02", MessageType::Request);
    r.vendor = None;
    r.opts = vec![DhcpOption::RequestedIpAddress(Ipv4Addr::new(
        10, 99, 0, 100,
    ))];
    let (nak, _) = answer(&dhcp, &r, Port::Dhcp, CLIENT_PORT).unwrap();
    assert_eq!(nak.opts().msg_type(), Some(MessageType::Nak));

    // leases survive a restart: the first client keeps its address
    drop(dhcp);
    let dhcp = DhcpServer::new(nb.clone(), Some(leases(&nb)));
    let mut r = req("52:54:00:00:00:01", MessageType::Discover);
    r.vendor = None;
    let (offer, _) = answer(&dhcp, &r, Port::Dhcp, CLIENT_PORT).unwrap();
    assert_eq!(offer.yiaddr(), Ipv4Addr::new(10, 99, 0, 100));
    let saved = std::fs::read_to_string(site.state().join("netboot/leases.json")).unwrap();
    assert!(
        saved.contains("10.99.0.100") && saved.contains("52:54:00:00:00:01"),
        "{saved}"
    );
}
