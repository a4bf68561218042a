//! Users and groups, written as `useradd`/`groupadd` leave them:
//! `/etc/passwd`, `/etc/shadow`, `/etc/group`, `/etc/gshadow` (each kept
//! with its mode and owner), a home directory owned by the user, and
//! `~/.ssh/authorized_keys` (0600, in a 0700 `.ssh`). New ids start at
//! 1000, the first id `useradd` hands out on Debian and the RHEL family
//! (`UID_MIN` in `/etc/login.defs`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::{Context, CustomizeError, CustomizeReport, write_file};
use crate::rootfs::{Meta, Rootfs};
use crate::spec::{ImageSpec, UserSpec};

const FIRST_ID: u32 = 1000;

/// One `/etc/passwd` or `/etc/group` database, as lines of fields.
struct Database {
    path: &'static str,
    lines: Vec<Vec<String>>,
}

impl Database {
    fn load(rootfs: &Rootfs, path: &'static str) -> Result<Database, CustomizeError> {
        let text = rootfs
            .read(Path::new(path))?
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        Ok(Database {
            path,
            lines: text
                .lines()
                .filter(|l| !l.is_empty())
                .map(|l| l.split(':').map(String::from).collect())
                .collect(),
        })
    }

    fn find(&self, name: &str) -> Option<&Vec<String>> {
        self.lines
            .iter()
            .find(|f| f.first().map(String::as_str) == Some(name))
    }

    fn find_mut(&mut self, name: &str) -> Option<&mut Vec<String>> {
        self.lines
            .iter_mut()
            .find(|f| f.first().map(String::as_str) == Some(name))
    }

    /// The numeric field `index` of every line (uids or gids).
    fn ids(&self, index: usize) -> BTreeSet<u32> {
        self.lines
            .iter()
            .filter_map(|f| f.get(index)?.parse().ok())
            .collect()
    }

    fn save(&self, rootfs: &mut Rootfs, cx: &Context<'_>, mode: u32) -> Result<(), CustomizeError> {
        let text: String = self.lines.iter().map(|f| f.join(":") + "\n").collect();
        write_file(rootfs, cx, self.path, text.as_bytes(), mode)
    }
}

/// The next id from 1000 not in `taken`.
fn next_id(taken: &BTreeSet<u32>) -> u32 {
    (FIRST_ID..)
        .find(|id| !taken.contains(id))
        .expect("ids left")
}

pub fn apply(
    spec: &ImageSpec,
    rootfs: &mut Rootfs,
    cx: &Context<'_>,
    report: &mut CustomizeReport,
) -> Result<(), CustomizeError> {
    if spec.groups.is_empty() && spec.users.is_empty() {
        return Ok(());
    }
    let mut passwd = Database::load(rootfs, "etc/passwd")?;
    let mut shadow = Database::load(rootfs, "etc/shadow")?;
    let mut group = Database::load(rootfs, "etc/group")?;
    let mut gshadow = Database::load(rootfs, "etc/gshadow")?;
    let has_gshadow = !gshadow.lines.is_empty();
    let days = (cx.mtime / 86_400).to_string();

    for g in &spec.groups {
        add_group(&mut group, &mut gshadow, &g.name, g.gid)?;
    }
    for u in &spec.users {
        check_name("users", &u.name)?;
        if passwd.find(&u.name).is_some() {
            return Err(CustomizeError::invalid(
                format!("users: {}", u.name),
                "the image has this user already",
            ));
        }
        let uid = match u.uid {
            Some(uid) if passwd.ids(2).contains(&uid) => {
                return Err(CustomizeError::invalid(
                    format!("users: {}", u.name),
                    format!("uid {uid} is taken in the image"),
                ));
            }
            Some(uid) => uid,
            None => next_id(&passwd.ids(2)),
        };
        let primary = u.group.clone().unwrap_or_else(|| u.name.clone());
        let gid = match group.find(&primary) {
            Some(fields) => fields.get(2).and_then(|g| g.parse().ok()).unwrap_or(0),
            None if u.group.is_some() => {
                return Err(CustomizeError::invalid(
                    format!("users: {}", u.name),
                    format!("group {primary:?} is neither in the image nor in groups"),
                ));
            }
            None => {
                // useradd's USERGROUPS_ENAB: the gid follows the uid when free.
                let taken = group.ids(2);
                let gid = if taken.contains(&uid) {
                    next_id(&taken)
                } else {
                    uid
                };
                add_group(&mut group, &mut gshadow, &primary, Some(gid))?
            }
        };
        for extra in &u.groups {
            let Some(fields) = group.find_mut(extra) else {
                return Err(CustomizeError::invalid(
                    format!("users: {}", u.name),
                    format!("supplementary group {extra:?} is neither in the image nor in groups"),
                ));
            };
            add_member(fields, 3, &u.name);
            if let Some(fields) = gshadow.find_mut(extra) {
                add_member(fields, 3, &u.name);
            }
        }
        let home = u
            .home
            .clone()
            .unwrap_or_else(|| format!("/home/{}", u.name));
        let shell = u.shell.clone().unwrap_or_else(|| default_shell(rootfs));
        passwd.lines.push(vec![
            u.name.clone(),
            "x".into(),
            uid.to_string(),
            gid.to_string(),
            u.gecos.clone().unwrap_or_default(),
            home.clone(),
            shell,
        ]);
        shadow.lines.push(vec![
            u.name.clone(),
            u.password_hash.clone().unwrap_or_else(|| "!".into()),
            days.clone(),
            "0".into(),
            "99999".into(),
            "7".into(),
            String::new(),
            String::new(),
            String::new(),
        ]);
        make_home(rootfs, cx, u, &home, uid, gid)?;
        report.users.push(u.name.clone());
    }
    passwd.save(rootfs, cx, 0o644)?;
    shadow.save(rootfs, cx, 0o640)?;
    group.save(rootfs, cx, 0o644)?;
    if has_gshadow {
        gshadow.save(rootfs, cx, 0o640)?;
    }
    Ok(())
}

fn check_name(what: &str, name: &str) -> Result<(), CustomizeError> {
    let ok = !name.is_empty()
        && name.len() <= 32
        && !name.starts_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(CustomizeError::invalid(
            what,
            format!("{name:?} is not a valid name (a-z, 0-9, _ - ., at most 32)"),
        ))
    }
}

fn add_group(
    group: &mut Database,
    gshadow: &mut Database,
    name: &str,
    gid: Option<u32>,
) -> Result<u32, CustomizeError> {
    check_name("groups", name)?;
    if group.find(name).is_some() {
        return Err(CustomizeError::invalid(
            format!("groups: {name}"),
            "the image has this group already",
        ));
    }
    let taken = group.ids(2);
    let gid = match gid {
        Some(g) if taken.contains(&g) => {
            return Err(CustomizeError::invalid(
                format!("groups: {name}"),
                format!("gid {g} is taken in the image"),
            ));
        }
        Some(g) => g,
        None => next_id(&taken),
    };
    group.lines.push(vec![
        name.into(),
        "x".into(),
        gid.to_string(),
        String::new(),
    ]);
    if !gshadow.lines.is_empty() {
        gshadow
            .lines
            .push(vec![name.into(), "!".into(), String::new(), String::new()]);
    }
    Ok(gid)
}

/// Adds `user` to the comma-separated member list in field `index`.
fn add_member(fields: &mut Vec<String>, index: usize, user: &str) {
    while fields.len() <= index {
        fields.push(String::new());
    }
    let members = &mut fields[index];
    if !members.split(',').any(|m| m == user) {
        if !members.is_empty() {
            members.push(',');
        }
        members.push_str(user);
    }
}

fn default_shell(rootfs: &Rootfs) -> String {
    let tree = rootfs.tree();
    let exists = |p: &str| {
        tree.resolve_all(Path::new(p))
            .ok()
            .is_some_and(|r| tree.get(&r).is_some())
    };
    if exists("bin/bash") {
        "/bin/bash"
    } else {
        "/bin/sh"
    }
    .to_string()
}

fn make_home(
    rootfs: &mut Rootfs,
    cx: &Context<'_>,
    user: &UserSpec,
    home: &str,
    uid: u32,
    gid: u32,
) -> Result<(), CustomizeError> {
    let owned = |mode| Meta {
        uid,
        gid,
        ..cx.meta(mode)
    };
    let home_path = crate::rootfs::tree::normalize(home.as_bytes())
        .map_err(|e| CustomizeError::invalid(format!("users: {}", user.name), e.to_string()))?;
    let home_path = rootfs.ensure_parents(&home_path, cx.mtime)?;
    rootfs.dir(&home_path, owned(0o750))?;
    if user.ssh_authorized_keys.is_empty() {
        return Ok(());
    }
    let ssh: PathBuf = home_path.join(".ssh");
    rootfs.dir(&ssh, owned(0o700))?;
    let keys: String = user
        .ssh_authorized_keys
        .iter()
        .map(|k| format!("{}\n", k.trim()))
        .collect();
    rootfs.file(
        &ssh.join("authorized_keys"),
        owned(0o600),
        &mut keys.as_bytes(),
    )?;
    Ok(())
}

/// `USER:GROUP` (names looked up in the image, or numbers) to ids.
pub fn owner(rootfs: &Rootfs, what: &str, text: &str) -> Result<(u32, u32), CustomizeError> {
    let (user, group) = text.split_once(':').unwrap_or((text, ""));
    let passwd = Database::load(rootfs, "etc/passwd")?;
    let groups = Database::load(rootfs, "etc/group")?;
    let lookup = |db: &Database, name: &str, kind: &str| -> Result<u32, CustomizeError> {
        if let Ok(n) = name.parse() {
            return Ok(n);
        }
        db.find(name)
            .and_then(|f| f.get(2)?.parse().ok())
            .ok_or_else(|| {
                CustomizeError::invalid(what, format!("no {kind} {name:?} in the image"))
            })
    };
    let uid = lookup(&passwd, user, "user")?;
    let gid = if group.is_empty() {
        passwd
            .find(user)
            .and_then(|f| f.get(3)?.parse().ok())
            .unwrap_or(0)
    } else {
        lookup(&groups, group, "group")?
    };
    Ok((uid, gid))
}
