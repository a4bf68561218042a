//! Any datagram on UDP 67 or 4011, in ProxyDHCP and full-DHCP mode: the
//! handler answers or not, and never panics. A reply it sends must decode.
#![no_main]

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::{Arc, OnceLock};

use dhcproto::{Decodable, Decoder};
use ferry_netboot::dhcp::DhcpServer;
use ferry_netboot::dhcp::full::Leases;
use ferry_netboot::dhcp::proxy::Port;
use ferry_netboot::{Config, Netboot};
use libfuzzer_sys::fuzz_target;

struct Servers {
    proxy: DhcpServer,
    full: DhcpServer,
    _dir: tempfile::TempDir,
}

fn servers() -> &'static Servers {
    static SERVERS: OnceLock<Servers> = OnceLock::new();
    SERVERS.get_or_init(|| {
        // tmpfs: the inventory and leases are fsynced on change
        let dir = tempfile::Builder::new().tempdir_in("/dev/shm").unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("media/boot")).unwrap();
        std::fs::create_dir_all(root.join("tftp")).unwrap();
        std::fs::write(root.join("media/boot/kernel"), b"kernel").unwrap();
        std::fs::write(root.join("media/boot/initrd"), b"initrd").unwrap();
        std::fs::write(root.join("tftp/undionly.kpxe"), b"ipxe").unwrap();
        std::fs::write(root.join("tftp/snponly.efi"), b"ipxe").unwrap();
        let yaml = "server: {address: 10.99.0.2}
tftp: {root: tftp}
dhcp:
  mode: full
  pool: {start: 10.99.0.100, end: 10.99.0.110, netmask: 255.255.255.0}
profiles:
  k:
    source: {dir: media}
    cmdline: x
hosts:
  - mac: 52:54:00:12:34:56
    profile: k
  - mac: 52:54:00:12:34:57
    profile: k
    ip: 10.99.0.50
";
        std::fs::write(root.join("netboot.yaml"), yaml).unwrap();
        let config = Config::load(&root.join("netboot.yaml")).unwrap();
        let proxy_config = {
            let mut c = config.clone();
            c.config.dhcp.mode = ferry_netboot::config::DhcpMode::Proxy;
            c
        };
        let full = Arc::new(Netboot::new(config, &root.join("state"), None).unwrap());
        let proxy = Arc::new(Netboot::new(proxy_config, &root.join("state"), None).unwrap());
        let pool = full.config.config.dhcp.pool.clone().unwrap();
        let leases = Leases::open(&root.join("state"), pool, full.server_ip, Default::default()).unwrap();
        Servers {
            proxy: DhcpServer::new(proxy, None),
            full: DhcpServer::new(full, Some(leases)),
            _dir: dir,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, packet)) = data.split_first() else {
        return;
    };
    let servers = servers();
    let server = if selector & 1 == 0 { &servers.proxy } else { &servers.full };
    let port = if selector & 2 == 0 { Port::Dhcp } else { Port::Pxe };
    let from = SocketAddrV4::new(Ipv4Addr::new(10, 99, 0, selector), 68);
    if let Some((reply, _)) = server.handle(packet, from, port) {
        dhcproto::v4::Message::decode(&mut Decoder::new(&reply)).expect("our reply decodes");
    }
});
