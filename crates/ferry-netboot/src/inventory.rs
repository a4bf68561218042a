//! The hosts inventory: what each machine did, with timestamps, persisted.
//!
//! A host moves through [`HostState`]: `discovered` (first DHCP packet or
//! first request) → `booting` (its iPXE script was served) → `fetched`
//! (kernel and initrd downloaded) → `installing` (it fetched its config, or
//! said so) → `ready` or `failed` (its event). Each step keeps its time, the
//! last events are kept with their messages, and every host has a random
//! token that its config and events URLs carry.
//!
//! The inventory is one JSON file, `<state>/netboot/hosts.json`, rewritten
//! whole (temporary file, fsync, rename, fsync of the directory) so a crash
//! leaves the old or the new version, never a torn one. Two processes use
//! it: the server, and `ferry hosts reset` run by an operator. Every write
//! therefore takes an exclusive `flock` on `hosts.lock`, re-reads the file,
//! applies its change and writes it back; readers reload whenever the
//! file's inode, size or mtime changed (a rename always changes the inode),
//! so the server sees a reset at once and never overwrites it with a stale
//! copy.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, OpenOptions};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ferry_oci::atomic::AtomicWrite;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::error::InventoryError;
use crate::mac::MacAddr;

/// How many events each host keeps.
const EVENTS_KEPT: usize = 20;
/// Most hosts the inventory takes: it is rewritten whole on each change,
/// and with a default profile any MAC on the segment gets a record, so a
/// flood of forged MACs must not grow it without bound.
pub const MAX_HOSTS: usize = 4096;

/// Where a host is in its provisioning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HostState {
    Discovered,
    Booting,
    Fetched,
    Installing,
    Ready,
    Failed,
}

impl HostState {
    pub fn as_str(self) -> &'static str {
        match self {
            HostState::Discovered => "discovered",
            HostState::Booting => "booting",
            HostState::Fetched => "fetched",
            HostState::Installing => "installing",
            HostState::Ready => "ready",
            HostState::Failed => "failed",
        }
    }
}

/// Which boot file a host fetched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchedKind {
    Kernel,
    Initrd,
}

/// One thing that happened to a host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostEvent {
    pub at: String,
    pub state: HostState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Everything the inventory knows about one host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostRecord {
    pub mac: MacAddr,
    pub state: HostState,
    /// Secret: the host's config and events URLs carry it. Never shown by
    /// `/api/hosts` or `ferry hosts` (see [`HostRecord::public`]).
    pub token: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// Client architecture as the firmware or iPXE reported it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arch: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    pub first_seen: String,
    pub last_seen: String,
    #[serde(default)]
    pub stages: Stages,
    /// Network boots sent to the local disk because the host was ready.
    #[serde(default)]
    pub local_boots: u32,
    #[serde(default)]
    pub events: Vec<HostEvent>,
}

/// When each provisioning step last happened (RFC 3339, UTC).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stages {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discovered: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub booting: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initrd: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub installing: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed: Option<String>,
}

/// A host record without its token: what `/api/hosts` and `ferry hosts`
/// show.
#[derive(Debug, Clone, Serialize)]
pub struct PublicHost<'a> {
    pub mac: MacAddr,
    pub state: HostState,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arch: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<&'a str>,
    pub first_seen: &'a str,
    pub last_seen: &'a str,
    pub stages: &'a Stages,
    pub local_boots: u32,
    pub events: &'a [HostEvent],
}

impl HostRecord {
    fn new(mac: MacAddr, now: &str) -> HostRecord {
        HostRecord {
            mac,
            state: HostState::Discovered,
            token: new_token(),
            profile: None,
            ip: None,
            arch: None,
            message: None,
            first_seen: now.to_string(),
            last_seen: now.to_string(),
            stages: Stages {
                discovered: Some(now.to_string()),
                ..Stages::default()
            },
            local_boots: 0,
            events: Vec::new(),
        }
    }

    pub fn public(&self) -> PublicHost<'_> {
        PublicHost {
            mac: self.mac,
            state: self.state,
            profile: self.profile.as_deref(),
            ip: self.ip.as_deref(),
            arch: self.arch.as_deref(),
            message: self.message.as_deref(),
            first_seen: &self.first_seen,
            last_seen: &self.last_seen,
            stages: &self.stages,
            local_boots: self.local_boots,
            events: &self.events,
        }
    }

    /// Moves to `state` now, recording an event. A new boot (`booting`)
    /// clears the times of the steps after it, so they always describe the
    /// latest attempt.
    pub fn transition(&mut self, state: HostState, message: Option<String>) {
        let now = now_rfc3339();
        let stages = &mut self.stages;
        match state {
            HostState::Discovered => stages.discovered = Some(now.clone()),
            HostState::Booting => {
                *stages = Stages {
                    discovered: stages.discovered.take(),
                    booting: Some(now.clone()),
                    ..Stages::default()
                };
            }
            // the kernel and initrd times are set by `fetched`
            HostState::Fetched => {}
            HostState::Installing => stages.installing = Some(now.clone()),
            HostState::Ready => stages.ready = Some(now.clone()),
            HostState::Failed => stages.failed = Some(now.clone()),
        }
        self.state = state;
        self.message.clone_from(&message);
        self.last_seen.clone_from(&now);
        self.events.push(HostEvent {
            at: now,
            state,
            message,
        });
        if self.events.len() > EVENTS_KEPT {
            let extra = self.events.len() - EVENTS_KEPT;
            self.events.drain(..extra);
        }
    }

    /// Records that the host downloaded its kernel or an initrd; once both
    /// are fetched during a boot it moves to `fetched`.
    pub fn fetched(&mut self, kind: FetchedKind) {
        let now = now_rfc3339();
        let slot = match kind {
            FetchedKind::Kernel => &mut self.stages.kernel,
            FetchedKind::Initrd => &mut self.stages.initrd,
        };
        if slot.is_none() {
            *slot = Some(now);
        }
        if self.state == HostState::Booting
            && self.stages.kernel.is_some()
            && self.stages.initrd.is_some()
        {
            self.transition(HostState::Fetched, None);
        }
    }

    /// Marks the host as seen now (written at most every 30 s per host, so
    /// that a chatty DHCP client does not cause a write per packet).
    pub fn touch(&mut self) {
        let now = OffsetDateTime::now_utc();
        let stale = OffsetDateTime::parse(&self.last_seen, &Rfc3339)
            .map(|last| (now - last).whole_seconds() >= 30)
            .unwrap_or(true);
        if stale {
            self.last_seen = format_time(now);
        }
    }
}

/// The current time as RFC 3339 UTC, second precision.
pub fn now_rfc3339() -> String {
    format_time(OffsetDateTime::now_utc())
}

fn format_time(t: OffsetDateTime) -> String {
    let t = t.replace_nanosecond(0).unwrap_or(t);
    t.format(&Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

/// 256 random bits, hex: the per-host secret in config and events URLs.
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the OS random number generator works");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct InventoryFile {
    version: u32,
    hosts: Vec<HostRecord>,
}

/// What identifies one version of the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fingerprint {
    inode: u64,
    len: u64,
    mtime_ns: i128,
}

#[derive(Default)]
struct Cached {
    fingerprint: Option<Fingerprint>,
    hosts: BTreeMap<MacAddr, HostRecord>,
    tokens: HashMap<String, MacAddr>,
}

/// The inventory of one state directory. Thread-safe; calls do blocking
/// file I/O (run them on a blocking thread from async code).
pub struct Inventory {
    file: PathBuf,
    lock: PathBuf,
    cache: Mutex<Cached>,
}

impl Inventory {
    /// Opens the inventory under `<state_dir>/netboot/`. Nothing is
    /// created until the first write, so that looking at the hosts of a
    /// state directory (`ferry hosts`) leaves it as it was.
    pub fn open(state_dir: &Path) -> Result<Inventory, InventoryError> {
        let dir = state_dir.join("netboot");
        let inventory = Inventory {
            file: dir.join("hosts.json"),
            lock: dir.join("hosts.lock"),
            cache: Mutex::new(Cached::default()),
        };
        inventory.refresh()?;
        Ok(inventory)
    }

    pub fn path(&self) -> &Path {
        &self.file
    }

    /// Every host, sorted by MAC.
    pub fn hosts(&self) -> Result<Vec<HostRecord>, InventoryError> {
        self.refresh()?;
        let cache = self.cache.lock().expect("inventory cache");
        Ok(cache.hosts.values().cloned().collect())
    }

    pub fn get(&self, mac: &MacAddr) -> Result<Option<HostRecord>, InventoryError> {
        self.refresh()?;
        Ok(self
            .cache
            .lock()
            .expect("inventory cache")
            .hosts
            .get(mac)
            .cloned())
    }

    /// The host whose token this is. Tokens are 256 random bits, so a
    /// guessed or another host's token finds nothing.
    pub fn by_token(&self, token: &str) -> Result<Option<HostRecord>, InventoryError> {
        self.refresh()?;
        let cache = self.cache.lock().expect("inventory cache");
        Ok(cache
            .tokens
            .get(token)
            .and_then(|mac| cache.hosts.get(mac))
            .cloned())
    }

    /// Applies `change` to the host's record (created as `discovered` if it
    /// is new) under the file lock, and writes the file if the record
    /// changed. Returns the record as written.
    pub fn update(
        &self,
        mac: MacAddr,
        change: impl FnOnce(&mut HostRecord),
    ) -> Result<HostRecord, InventoryError> {
        self.locked(|hosts| {
            if !hosts.contains_key(&mac) && hosts.len() >= MAX_HOSTS {
                return Err(InventoryError::Full {
                    mac,
                    max: MAX_HOSTS,
                });
            }
            let record = hosts
                .entry(mac)
                .or_insert_with(|| HostRecord::new(mac, &now_rfc3339()));
            change(record);
            Ok(record.clone())
        })?
    }

    /// Forgets the host's progress so that its next boot installs again,
    /// and gives it a new token (the old config URL stops working).
    /// Returns false if the host is unknown.
    pub fn reset(&self, mac: MacAddr) -> Result<bool, InventoryError> {
        if self.get(&mac)?.is_none() {
            return Ok(false);
        }
        self.locked(|hosts| match hosts.get_mut(&mac) {
            Some(record) => {
                let now = now_rfc3339();
                let mut fresh = HostRecord::new(mac, &now);
                fresh.first_seen = record.first_seen.clone();
                fresh.profile = record.profile.take();
                fresh.events = std::mem::take(&mut record.events);
                fresh.transition(HostState::Discovered, Some("reset by operator".into()));
                *record = fresh;
                true
            }
            None => false,
        })
    }

    fn locked<R>(
        &self,
        apply: impl FnOnce(&mut BTreeMap<MacAddr, HostRecord>) -> R,
    ) -> Result<R, InventoryError> {
        let dir = self
            .lock
            .parent()
            .expect("the lock is in the netboot directory");
        fs::create_dir_all(dir).map_err(|e| self.io_err(dir, e))?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&self.lock)
            .map_err(|e| self.io_err(&self.lock, e))?;
        lock.lock().map_err(|e| self.io_err(&self.lock, e))?;
        let (mut hosts, _) = self.read_file()?;
        let before = hosts.clone();
        let result = apply(&mut hosts);
        if hosts != before {
            let file = InventoryFile {
                version: 1,
                hosts: hosts.values().cloned().collect(),
            };
            let json = serde_json::to_vec_pretty(&file).expect("inventory serializes");
            AtomicWrite::new()
                .replace(&self.file, &json)
                .map_err(|e| self.io_err(&self.file, e))?;
        }
        let fingerprint = self.fingerprint()?;
        self.install(hosts, fingerprint);
        drop(lock);
        Ok(result)
    }

    /// Reloads the file if another process (or a write) changed it.
    fn refresh(&self) -> Result<(), InventoryError> {
        let current = self.fingerprint()?;
        if current.is_some() && self.cache.lock().expect("inventory cache").fingerprint == current {
            return Ok(());
        }
        let (hosts, fingerprint) = self.read_file()?;
        self.install(hosts, fingerprint);
        Ok(())
    }

    fn install(&self, hosts: BTreeMap<MacAddr, HostRecord>, fingerprint: Option<Fingerprint>) {
        let tokens = hosts.values().map(|h| (h.token.clone(), h.mac)).collect();
        *self.cache.lock().expect("inventory cache") = Cached {
            fingerprint,
            hosts,
            tokens,
        };
    }

    #[allow(clippy::type_complexity)]
    fn read_file(
        &self,
    ) -> Result<(BTreeMap<MacAddr, HostRecord>, Option<Fingerprint>), InventoryError> {
        let fingerprint = self.fingerprint()?;
        let bytes = match fs::read(&self.file) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((BTreeMap::new(), None)),
            Err(e) => return Err(self.io_err(&self.file, e)),
        };
        let file: InventoryFile =
            serde_json::from_slice(&bytes).map_err(|source| InventoryError::Corrupt {
                path: self.file.clone(),
                source,
            })?;
        Ok((
            file.hosts.into_iter().map(|h| (h.mac, h)).collect(),
            fingerprint,
        ))
    }

    fn fingerprint(&self) -> Result<Option<Fingerprint>, InventoryError> {
        match fs::metadata(&self.file) {
            Ok(m) => Ok(Some(Fingerprint {
                inode: m.ino(),
                len: m.len(),
                mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
            })),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.io_err(&self.file, e)),
        }
    }

    fn io_err(&self, path: &Path, source: io::Error) -> InventoryError {
        InventoryError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mac(last: u8) -> MacAddr {
        MacAddr([0x52, 0x54, 0, 0, 0, last])
    }

    #[test]
    fn persists_and_sees_other_writers() {
        let dir = tempfile::tempdir().unwrap();
        let server = Inventory::open(dir.path()).unwrap();
        let record = server
            .update(mac(1), |h| h.transition(HostState::Booting, None))
            .unwrap();
        assert_eq!(record.state, HostState::Booting);
        assert_eq!(record.token.len(), 64);

        // another process (ferry hosts reset) opens the same directory
        let operator = Inventory::open(dir.path()).unwrap();
        assert_eq!(
            operator.get(&mac(1)).unwrap().unwrap().state,
            HostState::Booting
        );
        server
            .update(mac(1), |h| {
                h.transition(HostState::Ready, Some("done".into()))
            })
            .unwrap();
        assert!(operator.reset(mac(1)).unwrap());
        assert!(!operator.reset(mac(2)).unwrap());

        let seen = server.get(&mac(1)).unwrap().unwrap();
        assert_eq!(seen.state, HostState::Discovered);
        assert_ne!(seen.token, record.token, "reset rotates the token");
        assert!(server.by_token(&record.token).unwrap().is_none());
        assert_eq!(server.by_token(&seen.token).unwrap().unwrap().mac, mac(1));
        let last = seen.events.last().unwrap();
        assert_eq!(last.message.as_deref(), Some("reset by operator"));
        assert!(seen.events.iter().any(|e| e.state == HostState::Ready));
    }

    #[test]
    fn keeps_a_bounded_event_history() {
        let dir = tempfile::tempdir().unwrap();
        let inv = Inventory::open(dir.path()).unwrap();
        for i in 0..(EVENTS_KEPT + 5) {
            inv.update(mac(3), |h| {
                h.transition(HostState::Installing, Some(format!("{i}")))
            })
            .unwrap();
        }
        let h = inv.get(&mac(3)).unwrap().unwrap();
        assert_eq!(h.events.len(), EVENTS_KEPT);
        assert_eq!(h.events.last().unwrap().message.as_deref(), Some("24"));
    }

    #[test]
    fn refuses_new_hosts_past_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let inv = Inventory::open(dir.path()).unwrap();
        let hosts: Vec<HostRecord> = (0..MAX_HOSTS)
            .map(|i| HostRecord::new(MacAddr([2, 0, 0, 0, (i >> 8) as u8, i as u8]), "t"))
            .collect();
        let json = serde_json::to_vec(&InventoryFile { version: 1, hosts }).unwrap();
        std::fs::create_dir_all(inv.path().parent().unwrap()).unwrap();
        AtomicWrite::new().replace(inv.path(), &json).unwrap();
        assert!(matches!(
            inv.update(mac(9), |_| {}),
            Err(InventoryError::Full { .. })
        ));
        // known hosts still update
        inv.update(MacAddr([2, 0, 0, 0, 0, 1]), |h| {
            h.transition(HostState::Booting, None)
        })
        .unwrap();
    }

    #[test]
    fn corrupt_file_is_an_error_not_an_empty_inventory() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("netboot")).unwrap();
        fs::write(dir.path().join("netboot/hosts.json"), b"{not json").unwrap();
        assert!(matches!(
            Inventory::open(dir.path()),
            Err(InventoryError::Corrupt { .. })
        ));
    }
}
