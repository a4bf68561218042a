//! systemd units enabled, disabled and masked as `systemctl` does it,
//! from the unit files' `[Install]` sections (systemd.unit(5), "[Install]
//! Section Options"): `WantedBy=`/`RequiredBy=` become symlinks in
//! `/etc/systemd/system/<target>.wants/` (`.requires/`) to the unit
//! file, `Alias=` a symlink by the alias name, `Also=` enables those units
//! too. Masking links the unit to `/dev/null`.

use std::path::{Path, PathBuf};

use super::{Context, CustomizeError, CustomizeReport};
use crate::rootfs::{Kind, Rootfs};
use crate::spec::SystemdSpec;

/// Where unit files are looked up, first match wins (systemd's search
/// path for system units, without the runtime directories).
const UNIT_DIRS: &[&str] = &[
    "etc/systemd/system",
    "usr/local/lib/systemd/system",
    "usr/lib/systemd/system",
    "lib/systemd/system",
];
const ETC: &str = "etc/systemd/system";

pub fn apply(
    spec: &SystemdSpec,
    rootfs: &mut Rootfs,
    cx: &Context<'_>,
    report: &mut CustomizeReport,
) -> Result<(), CustomizeError> {
    for unit in &spec.enable {
        enable_unit(rootfs, cx, unit)?;
        report.units_enabled.push(unit.clone());
    }
    for unit in &spec.disable {
        disable(rootfs, unit)?;
    }
    for unit in &spec.mask {
        mask_unit(rootfs, cx, unit)?;
    }
    if let Some(target) = &spec.default_target {
        let file = find_unit(rootfs, target).ok_or_else(|| not_found(target))?;
        let link = rootfs.ensure_parents(&Path::new(ETC).join("default.target"), cx.mtime)?;
        rootfs.symlink(&link, &Path::new("/").join(file), cx.meta(0o777))?;
    }
    Ok(())
}

/// `systemctl enable UNIT` for a unit another step of the build wrote.
pub(crate) fn enable_unit(
    rootfs: &mut Rootfs,
    cx: &Context<'_>,
    unit: &str,
) -> Result<(), CustomizeError> {
    enable(rootfs, cx, unit, &mut Vec::new())
}

/// `systemctl mask UNIT`: a link to `/dev/null` in `/etc/systemd/system`.
pub(crate) fn mask_unit(
    rootfs: &mut Rootfs,
    cx: &Context<'_>,
    unit: &str,
) -> Result<(), CustomizeError> {
    let path = rootfs.ensure_parents(&Path::new(ETC).join(unit), cx.mtime)?;
    rootfs.symlink(&path, Path::new("/dev/null"), cx.meta(0o777))?;
    Ok(())
}

fn not_found(unit: &str) -> CustomizeError {
    CustomizeError::invalid(
        format!("systemd: {unit}"),
        format!(
            "no unit file {unit} in the image (looked in /{})",
            UNIT_DIRS.join(", /")
        ),
    )
}

/// The template file of `unit` (`getty@tty1.service` → `getty@.service`).
fn file_name(unit: &str) -> String {
    match unit.split_once('@') {
        Some((name, rest)) => match rest.rsplit_once('.') {
            Some((_, suffix)) => format!("{name}@.{suffix}"),
            None => unit.to_string(),
        },
        None => unit.to_string(),
    }
}

/// The image path of `unit`'s file.
fn find_unit(rootfs: &Rootfs, unit: &str) -> Option<PathBuf> {
    let tree = rootfs.tree();
    for name in [unit.to_string(), file_name(unit)] {
        for dir in UNIT_DIRS {
            let path = Path::new(dir).join(&name);
            if let Ok(resolved) = tree.resolve_parent(&path)
                && let Some(inode) = tree.get(&resolved)
                && !matches!(&inode.kind, Kind::Symlink { target } if target == Path::new("/dev/null"))
            {
                return Some(resolved);
            }
        }
    }
    None
}

/// `[Install]` settings of a unit file.
#[derive(Default)]
struct Install {
    wanted_by: Vec<String>,
    required_by: Vec<String>,
    alias: Vec<String>,
    also: Vec<String>,
    default_instance: Option<String>,
}

fn install_section(text: &str) -> Install {
    let mut install = Install::default();
    let mut in_install = false;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_install = line == "[Install]";
            continue;
        }
        if !in_install || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let values = value.split_whitespace().map(String::from);
        match key.trim() {
            "WantedBy" => install.wanted_by.extend(values),
            "RequiredBy" => install.required_by.extend(values),
            "Alias" => install.alias.extend(values),
            "Also" => install.also.extend(values),
            "DefaultInstance" => install.default_instance = Some(value.trim().to_string()),
            _ => {}
        }
    }
    install
}

fn enable(
    rootfs: &mut Rootfs,
    cx: &Context<'_>,
    unit: &str,
    seen: &mut Vec<String>,
) -> Result<(), CustomizeError> {
    if seen.iter().any(|u| u == unit) {
        return Ok(());
    }
    seen.push(unit.to_string());
    let file = find_unit(rootfs, unit).ok_or_else(|| not_found(unit))?;
    let text = rootfs
        .read(&file)?
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let install = install_section(&text);
    // `foo@.service` enabled by its template name uses DefaultInstance.
    let instance = if unit.contains("@.") {
        match &install.default_instance {
            Some(i) => unit.replacen("@.", &format!("@{i}."), 1),
            None => unit.to_string(),
        }
    } else {
        unit.to_string()
    };
    if install.wanted_by.is_empty()
        && install.required_by.is_empty()
        && install.alias.is_empty()
        && install.also.is_empty()
    {
        return Err(CustomizeError::invalid(
            format!("systemd: {unit}"),
            "its unit file has no [Install] section (WantedBy=, RequiredBy=, Alias=): it cannot be enabled; list it in another unit's Wants= instead",
        ));
    }
    let target_file = Path::new("/").join(&file);
    let mut links: Vec<PathBuf> = Vec::new();
    for t in &install.wanted_by {
        links.push(Path::new(ETC).join(format!("{t}.wants")).join(&instance));
    }
    for t in &install.required_by {
        links.push(Path::new(ETC).join(format!("{t}.requires")).join(&instance));
    }
    for alias in &install.alias {
        links.push(Path::new(ETC).join(alias));
    }
    for link in links {
        let link = rootfs.ensure_parents(&link, cx.mtime)?;
        rootfs.symlink(&link, &target_file, cx.meta(0o777))?;
    }
    for also in &install.also {
        enable(rootfs, cx, also, seen)?;
    }
    Ok(())
}

fn disable(rootfs: &mut Rootfs, unit: &str) -> Result<(), CustomizeError> {
    let etc = Path::new(ETC);
    let doomed: Vec<PathBuf> = rootfs
        .tree()
        .descendants(etc)
        .filter(|(p, _)| {
            p.file_name().is_some_and(|n| n == unit)
                && p.parent().is_some_and(|d| {
                    d == etc
                        || d.extension()
                            .is_some_and(|e| e == "wants" || e == "requires")
                })
        })
        .filter(|(_, id)| matches!(rootfs.tree().inode(*id).kind, Kind::Symlink { .. }))
        .map(|(p, _)| p.to_path_buf())
        .collect();
    for path in doomed {
        rootfs.remove(&path)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn install_sections_and_templates() {
        let i = install_section(
            "[Unit]\nWantedBy=nope\n[Install]\nWantedBy=multi-user.target  graphical.target\nAlias=sshd.service\nAlso=ssh.socket\n",
        );
        assert_eq!(i.wanted_by, ["multi-user.target", "graphical.target"]);
        assert_eq!(i.alias, ["sshd.service"]);
        assert_eq!(i.also, ["ssh.socket"]);
        assert_eq!(file_name("getty@tty1.service"), "getty@.service");
        assert_eq!(file_name("ssh.service"), "ssh.service");
    }
}
