//! `netboot.yaml`: what the operator writes.
//!
//! One file describes the boot server (address, ports, DHCP mode, TFTP
//! root), the profiles (where the kernel, initrds and other files come
//! from; the kernel command-line and user-data templates), the hosts (MAC,
//! name, labels, variables, profile), what unknown hosts get, and site-wide
//! variables. Every struct refuses unknown fields, so a typo is an error
//! with its line, not a silently ignored setting. [`Config::load`] parses
//! (serde-saphyr, which reports line, column and a snippet), then checks
//! what YAML cannot express: references between sections, duplicate MACs,
//! and template syntax (template errors carry the config line they sit on).
//!
//! The JSON schema of this file ([`Config::json_schema`]) is generated from
//! these types with schemars and committed as `docs/netboot.schema.json`.

use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::error::ConfigError;
use crate::mac::MacAddr;

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// How the boot server is reached (required).
    pub server: ServerConfig,
    /// DHCP: ProxyDHCP next to the site's DHCP server (default), a full
    /// DHCP server for isolated labs, or none.
    #[serde(default)]
    pub dhcp: DhcpConfig,
    /// The read-only TFTP server that hands iPXE to PXE firmware.
    #[serde(default)]
    pub tftp: TftpConfig,
    /// Site variables, available to every template as `site.*` and merged
    /// into `vars.*` (profile and host variables override them).
    #[serde(default)]
    pub vars: BTreeMap<String, serde_json::Value>,
    /// Profile given to hosts that are not listed under `hosts` (and to
    /// listed hosts without a profile). Without it unknown hosts are
    /// ignored: they get no DHCP answer and no boot script.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub default_profile: Option<Spanned<String>>,
    /// Once a host reported `ready`, send its next network boots to its
    /// local disk until `ferry hosts reset MAC` (default true).
    #[serde(default = "default_true")]
    pub boot_once: bool,
    /// How a provisioned host is sent to its local disk.
    #[serde(default)]
    pub local_boot: LocalBoot,
    /// Named boot profiles.
    pub profiles: BTreeMap<String, Profile>,
    /// Known hosts.
    #[serde(default)]
    pub hosts: Vec<Host>,
}

/// Where the boot server listens and how clients reach it.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// IPv4 address that clients use to reach this server (DHCP
    /// next-server, URLs in scripts). Defaults to the first IPv4 address
    /// of `interface`.
    #[serde(default)]
    pub address: Option<Ipv4Addr>,
    /// Network interface the DHCP and TFTP servers answer on. Needed for
    /// DHCP (replies to clients without an address are broadcast on it);
    /// found from `address` when omitted.
    #[serde(default)]
    pub interface: Option<String>,
    /// HTTP port (default 8080).
    #[serde(default = "default_http_port")]
    pub http_port: u16,
    /// Address the HTTP server binds (default `0.0.0.0:<http_port>`).
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub http_listen: Option<SocketAddr>,
}

/// How DHCP is served.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DhcpConfig {
    /// `proxy` (default): answer only PXE clients with boot information,
    /// next to the site's DHCP server. `full`: also hand out addresses
    /// from `pool` (isolated labs). `off`: no DHCP; the site's DHCP server
    /// points clients at `http://SERVER/boot.ipxe` itself.
    #[serde(default)]
    pub mode: DhcpMode,
    /// iPXE binaries handed to PXE firmware that is not iPXE yet, by
    /// client architecture (DHCP option 93), relative to the TFTP root.
    #[serde(default)]
    pub boot_files: BootFiles,
    /// Address pool for `mode: full`.
    #[serde(default)]
    pub pool: Option<PoolConfig>,
    /// UDP port for DHCP (default 67; change only for tests).
    #[serde(default = "default_dhcp_port")]
    pub port: u16,
    /// UDP port for PXE boot server requests (default 4011).
    #[serde(default = "default_pxe_port")]
    pub pxe_port: u16,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DhcpMode {
    #[default]
    Proxy,
    Full,
    Off,
}

/// Which iPXE binary each PXE client architecture gets over TFTP.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BootFiles {
    /// x86 BIOS PXE (option 93 = 0). Default `undionly.kpxe`.
    #[serde(default = "default_bios_file")]
    pub bios: Option<String>,
    /// x86-64 UEFI (option 93 = 7 or 9). Default `snponly.efi`.
    #[serde(default = "default_uefi_x64_file")]
    pub uefi_x86_64: Option<String>,
    /// arm64 UEFI (option 93 = 11). No default: Debian's `ipxe` package
    /// has no arm64 build.
    #[serde(default)]
    pub uefi_arm64: Option<String>,
}

impl Default for BootFiles {
    fn default() -> Self {
        BootFiles {
            bios: default_bios_file(),
            uefi_x86_64: default_uefi_x64_file(),
            uefi_arm64: None,
        }
    }
}

/// The address pool of the full DHCP mode.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PoolConfig {
    /// First address handed out.
    pub start: Ipv4Addr,
    /// Last address handed out.
    pub end: Ipv4Addr,
    /// Subnet mask (option 1).
    pub netmask: Ipv4Addr,
    /// Default gateway (option 3).
    #[serde(default)]
    pub router: Option<Ipv4Addr>,
    /// DNS servers (option 6).
    #[serde(default)]
    pub dns: Vec<Ipv4Addr>,
    /// Lease time in seconds (default 3600).
    #[serde(default = "default_lease_seconds")]
    pub lease_seconds: u32,
}

/// The TFTP server.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TftpConfig {
    /// Serve TFTP (default true unless `dhcp.mode` is `off`).
    #[serde(default)]
    pub enabled: Option<bool>,
    /// Directory served, read-only (default `/usr/lib/ipxe`, Debian's
    /// `ipxe` package).
    #[serde(default = "default_tftp_root")]
    pub root: PathBuf,
    /// UDP port (default 69).
    #[serde(default = "default_tftp_port")]
    pub port: u16,
}

impl Default for TftpConfig {
    fn default() -> Self {
        TftpConfig {
            enabled: None,
            root: default_tftp_root(),
            port: default_tftp_port(),
        }
    }
}

impl Default for DhcpConfig {
    fn default() -> Self {
        DhcpConfig {
            mode: DhcpMode::default(),
            boot_files: BootFiles::default(),
            pool: None,
            port: default_dhcp_port(),
            pxe_port: default_pxe_port(),
        }
    }
}

/// How a provisioned host leaves iPXE for its disk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LocalBoot {
    /// iPXE `exit`: the firmware goes on to its next boot device.
    #[default]
    Exit,
    /// BIOS: `sanboot --no-describe --drive 0x80` (first hard disk), then
    /// `exit` if that fails; UEFI: `exit`.
    Sanboot,
}

/// One boot profile: the files a host boots and the templates that
/// configure it.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// Where the files come from.
    pub source: Source,
    /// CPU architecture of the profile's kernel (default amd64). A host
    /// whose iPXE reports another one is refused.
    #[serde(default)]
    pub arch: Arch,
    /// Path of the kernel inside the source. Default: found by layout
    /// (Kairos/CanvOS, Debian live, Ubuntu casper, Fedora/RHEL pxeboot,
    /// Debian installer).
    #[serde(default)]
    pub kernel: Option<String>,
    /// Paths of the initrds inside the source, in order. Default: found
    /// by layout.
    #[serde(default)]
    pub initrd: Option<Vec<String>>,
    /// More files to serve, by name (`rootfs: rootfs.squashfs`); their
    /// URLs are `files.<name>` in templates. `rootfs` is found by layout
    /// when the layout has one.
    #[serde(default)]
    pub files: BTreeMap<String, String>,
    /// Kernel command line, a minijinja template. ferry adds
    /// `initrd=<name>` for each initrd itself (UEFI needs it).
    #[schemars(with = "String")]
    pub cmdline: Spanned<String>,
    /// Cloud-config / user-data served at the host's `config_url`, a
    /// minijinja template (inline).
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub user_data: Option<Spanned<String>>,
    /// The same, read from a file (relative to this config file).
    #[serde(default)]
    pub user_data_file: Option<PathBuf>,
    /// Profile variables (override site variables).
    #[serde(default)]
    pub vars: BTreeMap<String, serde_json::Value>,
}

/// An artifact source.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum Source {
    /// An ISO 9660 image (Joliet and Rock Ridge names), read in place.
    Iso(PathBuf),
    /// A directory.
    Dir(PathBuf),
    /// An OCI artifact in ferry's store (`repository:tag` or
    /// `repository@sha256:...`), one file per layer titled with
    /// `org.opencontainers.image.title`; an index picks `arch`.
    Oci(String),
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Arch {
    #[default]
    Amd64,
    Arm64,
}

impl Arch {
    pub fn as_str(self) -> &'static str {
        match self {
            Arch::Amd64 => "amd64",
            Arch::Arm64 => "arm64",
        }
    }
}

/// A known host.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Host {
    /// Its boot NIC's MAC address.
    pub mac: MacAddr,
    /// Host name, `host.name` in templates.
    #[serde(default)]
    pub name: Option<String>,
    /// Profile (default: `default_profile`).
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub profile: Option<Spanned<String>>,
    /// Labels, `host.labels.*` in templates.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Host variables (override profile and site variables).
    #[serde(default)]
    pub vars: BTreeMap<String, serde_json::Value>,
    /// Fixed address in `dhcp.mode: full`.
    #[serde(default)]
    pub ip: Option<Ipv4Addr>,
}

fn default_true() -> bool {
    true
}
fn default_http_port() -> u16 {
    8080
}
fn default_dhcp_port() -> u16 {
    67
}
fn default_pxe_port() -> u16 {
    4011
}
fn default_tftp_port() -> u16 {
    69
}
fn default_tftp_root() -> PathBuf {
    PathBuf::from("/usr/lib/ipxe")
}
fn default_bios_file() -> Option<String> {
    Some("undionly.kpxe".into())
}
fn default_uefi_x64_file() -> Option<String> {
    Some("snponly.efi".into())
}
fn default_lease_seconds() -> u32 {
    3600
}

/// A configuration that parsed and passed every check, with relative
/// paths resolved against the file's directory.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    pub config: Config,
    /// The file it came from (for messages).
    pub path: PathBuf,
    /// Hosts by MAC, as indexes into `config.hosts`.
    pub host_index: HashMap<MacAddr, usize>,
    /// User-data templates read from `user_data_file`, by profile.
    pub user_data_files: BTreeMap<String, String>,
}

impl Config {
    /// JSON schema of the file, for editors and `docs/netboot.schema.json`.
    pub fn json_schema() -> serde_json::Value {
        serde_json::to_value(schemars::schema_for!(Config)).expect("schema serializes")
    }

    /// Reads, parses and checks `path`.
    pub fn load(path: &Path) -> Result<LoadedConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Config::parse(&text, path, base)
    }

    /// Parses and checks `text`; relative paths are taken from `base`.
    pub fn parse(text: &str, path: &Path, base: &Path) -> Result<LoadedConfig, ConfigError> {
        let mut config = deserialize(text, path)?;
        config.resolve_paths(base);
        let mut problems = Vec::new();
        let host_index = config.check(&mut problems);
        let mut user_data_files = BTreeMap::new();
        for (name, profile) in &config.profiles {
            if let Some(file) = &profile.user_data_file {
                match std::fs::read_to_string(file) {
                    Ok(text) => {
                        user_data_files.insert(name.clone(), text);
                    }
                    Err(e) => problems.push(format!(
                        "profiles.{name}.user_data_file: cannot read {}: {e}",
                        file.display()
                    )),
                }
            }
        }
        if problems.is_empty() {
            Ok(LoadedConfig {
                config,
                path: path.to_path_buf(),
                host_index,
                user_data_files,
            })
        } else {
            Err(ConfigError::Invalid {
                path: path.to_path_buf(),
                problems,
            })
        }
    }

    fn resolve_paths(&mut self, base: &Path) {
        let absolute = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        absolute(&mut self.tftp.root);
        for profile in self.profiles.values_mut() {
            match &mut profile.source {
                Source::Iso(p) | Source::Dir(p) => absolute(p),
                Source::Oci(_) => {}
            }
            if let Some(p) = &mut profile.user_data_file {
                absolute(p);
            }
        }
    }

    /// Cross-field checks; returns the MAC index.
    fn check(&self, problems: &mut Vec<String>) -> HashMap<MacAddr, usize> {
        if self.profiles.is_empty() {
            problems.push("profiles: at least one profile is needed".into());
        }
        if let Some(name) = &self.default_profile
            && !self.profiles.contains_key(&name.value)
        {
            problems.push(format!(
                "line {}: default_profile `{}` is not defined under profiles",
                name.referenced.line(),
                name.value
            ));
        }
        for (name, profile) in &self.profiles {
            if profile.user_data.is_some() && profile.user_data_file.is_some() {
                problems.push(format!(
                    "profiles.{name}: give user_data or user_data_file, not both"
                ));
            }
            for file in profile.files.keys() {
                if !is_file_name(file) {
                    problems.push(format!(
                        "profiles.{name}.files: `{file}` is not a valid name (letters, digits, '.', '_', '-')"
                    ));
                }
            }
        }
        let mut index = HashMap::new();
        for (i, host) in self.hosts.iter().enumerate() {
            if let Some(first) = index.insert(host.mac, i) {
                problems.push(format!(
                    "hosts[{i}]: MAC {} is already listed at hosts[{first}]",
                    host.mac
                ));
            }
            match &host.profile {
                Some(p) if !self.profiles.contains_key(&p.value) => problems.push(format!(
                    "line {}: hosts[{i}] ({}): profile `{}` is not defined under profiles",
                    p.referenced.line(),
                    host.mac,
                    p.value
                )),
                None if self.default_profile.is_none() => problems.push(format!(
                    "hosts[{i}] ({}): no profile, and no default_profile to fall back on",
                    host.mac
                )),
                _ => {}
            }
        }
        if self.dhcp.mode == DhcpMode::Full {
            match &self.dhcp.pool {
                None => problems.push("dhcp.pool: required with dhcp.mode: full".into()),
                Some(pool) if u32::from(pool.start) > u32::from(pool.end) => problems.push(
                    format!("dhcp.pool: start {} is after end {}", pool.start, pool.end),
                ),
                Some(_) => {}
            }
        }
        index
    }

    /// The TFTP server runs unless disabled; by default it follows DHCP.
    pub fn tftp_enabled(&self) -> bool {
        self.tftp.enabled.unwrap_or(self.dhcp.mode != DhcpMode::Off)
    }
}

impl LoadedConfig {
    /// The host entry for `mac`, if listed.
    pub fn host(&self, mac: &MacAddr) -> Option<&Host> {
        self.host_index.get(mac).map(|&i| &self.config.hosts[i])
    }

    /// The profile name `mac` boots, or `None` if it is unknown and there
    /// is no default profile.
    pub fn profile_for(&self, mac: &MacAddr) -> Option<&str> {
        let listed = self.host(mac).and_then(|h| h.profile.as_ref());
        listed
            .or(self.config.default_profile.as_ref())
            .map(|s| s.value.as_str())
    }

    /// The user-data template of a profile, inline or from its file.
    pub fn user_data_template(&self, profile: &str) -> Option<&str> {
        let p = self.config.profiles.get(profile)?;
        p.user_data
            .as_ref()
            .map(|s| s.value.as_str())
            .or_else(|| self.user_data_files.get(profile).map(String::as_str))
    }
}

/// Deserializes the file, with errors made for the operator: the file's
/// name in the snippet (serde-saphyr says `<input>`), no `error:` of its own
/// (the binary prints one), and a missing field named with the path of the
/// mapping that lacks it (`profiles.k`), found with serde_path_to_error:
/// serde-saphyr puts the caret on that mapping's last key, which reads as
/// if that key were wrong.
fn deserialize(text: &str, path: &Path) -> Result<Config, ConfigError> {
    let mut at = String::new();
    let parsed = serde_saphyr::with_deserializer_from_str(text, |de| {
        serde_path_to_error::deserialize(de).map_err(|e| {
            at = e.path().to_string();
            e.into_inner()
        })
    });
    let error = match parsed {
        Ok(config) => return Ok(config),
        Err(e) => e,
    };
    let message = match error.without_snippet() {
        serde_saphyr::Error::SerdeMissingField { field, .. } if at == "." => {
            format!("`{field}:` is missing at the top level; it is required")
        }
        serde_saphyr::Error::SerdeMissingField { field, .. } => {
            format!("{at}: `{field}:` is missing; it is required")
        }
        _ => {
            let name = path.display().to_string();
            let options = serde_saphyr::render_options! { source_name: Some(&name) };
            let rendered = error.render_with_options(options);
            rendered
                .strip_prefix("error: ")
                .map(str::to_string)
                .unwrap_or(rendered)
        }
    };
    Err(ConfigError::Parse {
        path: path.to_path_buf(),
        message,
    })
}

/// A name usable as the last segment of a file URL and as an iPXE image name.
pub fn is_file_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}
