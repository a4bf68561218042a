//! GRUB images built from the OS image's own GRUB.
//!
//! ferry boots every output with the image's GRUB 2, for BIOS and UEFI:
//! the RHEL family (Rocky, Alma, RHEL) ships GRUB 2 and shim, not
//! syslinux, and Debian/Ubuntu ship it too, so one boot path serves both.
//! The image's `grub-mkimage` (`grub2-mkimage` on the RHEL family) builds
//! each core image from the image's module directories
//! (`/usr/lib/grub/i386-pc`, `/usr/lib/grub/x86_64-efi`), run through
//! [`super::exec`]. Every module the menu needs is embedded in the core
//! image, so nothing is loaded from the medium at boot but `grub.cfg`,
//! and the same image works from a CD, a USB stick or a disk. The early
//! configuration embedded with `-c` finds the filesystem holding
//! `grub.cfg` (by UUID, label or a marker file) and hands over to it.
//!
//! The output of `grub-mkimage` depends only on its inputs (no
//! timestamps), so builds stay reproducible.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::boot::exec::{self, ExecError};
use crate::rootfs::Rootfs;

/// Where the GRUB tools and modules are, by distribution family.
const MKIMAGE: &[&str] = &["usr/bin/grub-mkimage", "usr/bin/grub2-mkimage"];
const MODULE_ROOTS: &[&str] = &["usr/lib/grub", "usr/lib/grub2"];

/// Modules every core image carries (when the image's GRUB has them).
const COMMON_MODULES: &[&str] = &[
    "normal",
    "configfile",
    "linux",
    "echo",
    "test",
    "search",
    "search_fs_uuid",
    "search_fs_file",
    "search_label",
    "part_gpt",
    "part_msdos",
    "fat",
    "iso9660",
    "ext2",
    "gzio",
    "xzio",
    "zstd",
    "serial",
    "terminal",
    "minicmd",
    "sleep",
    "halt",
    "reboot",
];
/// Modules without which no image can boot at all.
const REQUIRED_MODULES: &[&str] = &["normal", "configfile", "linux", "search", "serial"];

/// A GRUB platform: its `grub-mkimage -O` targets and what it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Platform {
    /// BIOS: `i386-pc` (disk) and `i386-pc-eltorito` (CD).
    Bios,
    /// UEFI on x86-64.
    Efi,
}

impl Platform {
    fn dir(self) -> &'static str {
        match self {
            Platform::Bios => "i386-pc",
            Platform::Efi => "x86_64-efi",
        }
    }

    fn modules(self) -> &'static [&'static str] {
        match self {
            Platform::Bios => &["biosdisk", "vga", "all_video"],
            Platform::Efi => &["efi_gop", "efi_uga", "all_video"],
        }
    }

    fn packages(self) -> &'static str {
        match self {
            Platform::Bios => {
                "grub-pc-bin (Debian, Ubuntu) or grub2-pc-modules (RHEL, Rocky, Alma)"
            }
            Platform::Efi => {
                "grub-efi-amd64-bin (Debian, Ubuntu) or grub2-efi-x64-modules (RHEL, Rocky, Alma)"
            }
        }
    }
}

/// What a core image is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// `core.img` for a disk (BIOS boot partition), loaded by `boot.img`.
    BiosDisk,
    /// `eltorito.img` for a CD (El Torito no-emulation), `cdboot.img` first.
    BiosCdrom,
    /// `BOOTX64.EFI`.
    Efi,
}

impl Target {
    fn platform(self) -> Platform {
        match self {
            Target::BiosDisk | Target::BiosCdrom => Platform::Bios,
            Target::Efi => Platform::Efi,
        }
    }

    fn format(self) -> &'static str {
        match self {
            Target::BiosDisk => "i386-pc",
            Target::BiosCdrom => "i386-pc-eltorito",
            Target::Efi => "x86_64-efi",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum GrubError {
    #[error(
        "the image has no grub-mkimage (looked at /usr/bin/grub-mkimage, /usr/bin/grub2-mkimage): add grub-common (Debian, Ubuntu) or grub2-tools (RHEL, Rocky, Alma) to the image"
    )]
    NoMkimage,
    #[error(
        "the image has no GRUB for {platform} (/usr/lib/grub/{dir}): add {packages} to the image"
    )]
    NoPlatform {
        platform: &'static str,
        dir: &'static str,
        packages: &'static str,
    },
    #[error("the image's GRUB for {dir} lacks the modules {missing}")]
    MissingModules { dir: &'static str, missing: String },
    #[error(transparent)]
    Exec(#[from] ExecError),
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// The image's GRUB: its `grub-mkimage` and module directories.
#[derive(Debug, Clone)]
pub struct Grub {
    mkimage: PathBuf,
    module_root: PathBuf,
}

impl Grub {
    /// Finds GRUB in the image.
    pub fn find(rootfs: &Rootfs) -> Result<Grub, GrubError> {
        let tree = rootfs.tree();
        let exists = |p: &str| {
            tree.resolve_all(Path::new(p))
                .ok()
                .filter(|r| tree.get(r).is_some())
        };
        let mkimage = MKIMAGE
            .iter()
            .find_map(|p| exists(p))
            .ok_or(GrubError::NoMkimage)?;
        let module_root = MODULE_ROOTS
            .iter()
            .find_map(|p| exists(p))
            .unwrap_or_else(|| PathBuf::from(MODULE_ROOTS[0]));
        Ok(Grub {
            mkimage,
            module_root,
        })
    }

    /// The image path of platform `platform`'s module directory, checked.
    fn platform_dir(&self, rootfs: &Rootfs, platform: Platform) -> Result<PathBuf, GrubError> {
        let dir = self.module_root.join(platform.dir());
        let tree = rootfs.tree();
        match tree.resolve_all(&dir).ok().filter(|d| {
            tree.get(d).is_some_and(|i| i.kind.is_dir())
                && tree.get(&d.join("kernel.img")).is_some()
        }) {
            Some(d) => Ok(d),
            None => Err(GrubError::NoPlatform {
                platform: match platform {
                    Platform::Bios => "BIOS",
                    Platform::Efi => "UEFI",
                },
                dir: platform.dir(),
                packages: platform.packages(),
            }),
        }
    }

    /// Whether the image can boot `platform` at all.
    pub fn supports(&self, rootfs: &Rootfs, platform: Platform) -> Result<(), GrubError> {
        self.platform_dir(rootfs, platform).map(drop)
    }

    /// Builds a core image for `target` into `out`, with `early_config`
    /// embedded and `prefix` as its default prefix. `work` is a scratch
    /// directory.
    pub fn mkimage(
        &self,
        rootfs: &Rootfs,
        target: Target,
        early_config: &str,
        prefix: &str,
        out: &Path,
        work: &Path,
    ) -> Result<(), GrubError> {
        let platform = target.platform();
        let dir = self.platform_dir(rootfs, platform)?;
        let tree = rootfs.tree();
        let has = |m: &str| tree.get(&dir.join(format!("{m}.mod"))).is_some();
        let missing: Vec<&str> = REQUIRED_MODULES
            .iter()
            .copied()
            .filter(|m| !has(m))
            .collect();
        if !missing.is_empty() {
            return Err(GrubError::MissingModules {
                dir: platform.dir(),
                missing: missing.join(", "),
            });
        }
        let mut modules: Vec<&str> = COMMON_MODULES
            .iter()
            .chain(platform.modules())
            .copied()
            .filter(|m| has(m))
            .collect();
        if target == Target::BiosCdrom {
            modules.retain(|m| *m != "biosdisk");
            modules.push("biosdisk");
        }
        let config = work.join(format!("early-{}.cfg", target.format()));
        std::fs::write(&config, early_config).map_err(|source| GrubError::Io {
            path: config.display().to_string(),
            source,
        })?;
        let mut args: Vec<OsString> = vec![
            "-d".into(),
            rootfs.stage().host_path(&dir).into(),
            "-O".into(),
            target.format().into(),
            "-o".into(),
            out.into(),
            "-c".into(),
            config.into(),
            "-p".into(),
            prefix.into(),
        ];
        args.extend(modules.iter().map(OsString::from));
        exec::run_image_program(rootfs, &self.mkimage, &args, work)?;
        Ok(())
    }

    /// A file of the image's BIOS GRUB (`boot.img`, `boot_hybrid.img`,
    /// `cdboot.img`), read whole.
    pub fn bios_file(&self, rootfs: &Rootfs, name: &str) -> Result<Vec<u8>, GrubError> {
        let dir = self.platform_dir(rootfs, Platform::Bios)?;
        let path = dir.join(name);
        rootfs
            .read(&path)
            .ok()
            .flatten()
            .ok_or_else(|| GrubError::Io {
                path: format!("/{}", path.display()),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "not in the image"),
            })
    }
}

/// The `grub.cfg` that boots `entry` at once, on the serial console and
/// the screen alike (no keypress anywhere).
pub fn menu(title: &str, kernel: &str, initrd: &str, cmdline: &str) -> String {
    format!(
        "# Written by ferry image build.\n\
         serial --unit=0 --speed=115200\n\
         terminal_input console serial\n\
         terminal_output console serial\n\
         set timeout=1\n\
         set default=0\n\
         menuentry '{title}' {{\n\
         \x20 linux {kernel} {cmdline}\n\
         \x20 initrd {initrd}\n\
         }}\n"
    )
}
