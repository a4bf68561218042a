//! [`Netboot`]: the loaded configuration, compiled templates, resolved
//! artifacts and the inventory, shared by the DHCP, TFTP and HTTP sides,
//! and the one decision they all need: what a given machine should boot
//! ([`Plan`]).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::Mutex;

use crate::artifact::ArtifactStore;
use crate::config::{LoadedConfig, Source};
use crate::error::{ConfigError, ServeError};
use crate::inventory::{HostRecord, HostState, Inventory};
use crate::mac::MacAddr;
use crate::template::Templates;

/// What a machine gets when it network-boots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Boot the profile's kernel and initrds.
    Install { profile: String },
    /// Provisioned (boot-once): go to the local disk.
    LocalDisk,
    /// Unknown MAC and no default profile: no answer, no script.
    Ignore,
}

/// Everything the servers share.
pub struct Netboot {
    pub config: LoadedConfig,
    pub templates: Templates,
    pub artifacts: ArtifactStore,
    pub inventory: Inventory,
    /// The address clients reach us at.
    pub server_ip: Ipv4Addr,
    /// The interface DHCP and TFTP answer on, if known.
    pub interface: Option<String>,
    /// `http://SERVER:PORT`
    pub base_url: String,
    /// Addresses seen in DHCP packets, so that TFTP logs can name the MAC.
    recent_ips: Mutex<HashMap<IpAddr, MacAddr>>,
}

impl Netboot {
    /// Checks templates against every host, resolves every profile's
    /// files (a profile whose `oci:` artifact is not in the registry yet
    /// waits; see [`ArtifactStore`]) and opens the inventory under
    /// `state_dir`. `store` is ferry's registry store, needed by `oci:`
    /// sources.
    pub fn new(
        config: LoadedConfig,
        state_dir: &Path,
        store: Option<ferry_store::Store>,
    ) -> Result<Netboot, ServeError> {
        let invalid = |problems: Vec<String>| {
            ServeError::Config(ConfigError::Invalid {
                path: config.path.clone(),
                problems,
            })
        };
        let templates = Templates::compile(&config).map_err(invalid)?;
        let needs_store = config
            .config
            .profiles
            .values()
            .any(|p| matches!(p.source, Source::Oci(_)));
        let artifacts = ArtifactStore::new(&config.config.profiles, store.filter(|_| needs_store))?;
        let names = |profile: &str| artifacts.file_names(profile);
        let problems = templates.check_hosts(&config, &names);
        if !problems.is_empty() {
            return Err(invalid(problems));
        }
        let (server_ip, interface) = server_address(&config)?;
        let base_url = format!("http://{server_ip}:{}", config.config.server.http_port);
        let inventory = Inventory::open(state_dir)?;
        Ok(Netboot {
            config,
            templates,
            artifacts,
            inventory,
            server_ip,
            interface,
            base_url,
            recent_ips: Mutex::new(HashMap::new()),
        })
    }

    /// What `mac` boots, given its inventory record.
    pub fn plan(&self, mac: &MacAddr, record: Option<&HostRecord>) -> Plan {
        let Some(profile) = self.config.profile_for(mac) else {
            return Plan::Ignore;
        };
        if self.config.config.boot_once && record.is_some_and(|r| r.state == HostState::Ready) {
            return Plan::LocalDisk;
        }
        Plan::Install {
            profile: profile.to_string(),
        }
    }

    /// URL names of a profile's files.
    pub fn file_names(&self, profile: &str) -> Vec<String> {
        self.artifacts.file_names(profile)
    }

    pub fn remember_ip(&self, ip: Ipv4Addr, mac: MacAddr) {
        let mut map = self.recent_ips.lock().expect("recent ips");
        // bounded: a busy segment must not grow this forever
        if map.len() >= 4096 {
            map.clear();
        }
        map.insert(IpAddr::V4(ip), mac);
    }

    pub fn mac_of_ip(&self, ip: IpAddr) -> Option<MacAddr> {
        self.recent_ips
            .lock()
            .expect("recent ips")
            .get(&ip)
            .copied()
    }
}

/// The advertised address and the interface: `server.address`, or the
/// first IPv4 address of `server.interface`; the interface is found from
/// the address when not given.
fn server_address(config: &LoadedConfig) -> Result<(Ipv4Addr, Option<String>), ServeError> {
    let server = &config.config.server;
    let interfaces = if_addrs::get_if_addrs().map_err(|source| ServeError::Io {
        what: "cannot list network interfaces".into(),
        source,
    })?;
    let v4 = |iface: &if_addrs::Interface| match iface.ip() {
        IpAddr::V4(ip) => Some(ip),
        IpAddr::V6(_) => None,
    };
    match (server.address, &server.interface) {
        (Some(ip), Some(name)) => Ok((ip, Some(name.clone()))),
        (Some(ip), None) => {
            let name = interfaces
                .iter()
                .find(|i| v4(i) == Some(ip))
                .map(|i| i.name.clone());
            Ok((ip, name))
        }
        (None, Some(name)) => interfaces
            .iter()
            .filter(|i| &i.name == name)
            .find_map(v4)
            .map(|ip| (ip, Some(name.clone())))
            .ok_or_else(|| {
                ServeError::Setup(format!(
                    "interface {name} has no IPv4 address; set server.address in {}",
                    config.path.display()
                ))
            }),
        (None, None) => Err(ServeError::Setup(format!(
            "{}: set server.address (the IPv4 address clients reach this server at) or server.interface",
            config.path.display()
        ))),
    }
}
