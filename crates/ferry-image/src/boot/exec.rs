//! Running a program that ships inside the image (its `grub-mkimage`),
//! on the build host, without root.
//!
//! Boot loaders must come from the OS image itself, built the way that
//! distribution builds them; the tool that assembles them is in the image
//! too. A chroot would need root (or a user namespace), so instead the
//! image's own dynamic loader runs the program directly from the stage:
//! `<stage>/lib64/ld-linux-x86-64.so.2 --library-path <the image's
//! library directories> <stage>/usr/bin/grub-mkimage ...`. The program and
//! every library it loads come from the image; nothing of the host's is
//! used but its kernel. The program runs as the build user with an empty
//! environment and only the arguments ferry gives it, so it can only
//! write where that user can. It must be built for the build host's
//! architecture (an x86-64 image on an x86-64 host).
//!
//! The loader is found from the program's ELF `PT_INTERP` header (read by
//! hand: 30 lines, where an ELF crate would add a dependency for one
//! field), resolved inside the image like every other path.

use std::ffi::OsString;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::rootfs::Rootfs;

/// Library directories tried, in the order glibc's default search uses
/// them on the distributions ferry targets.
const LIBRARY_DIRS: &[&str] = &[
    "lib/x86_64-linux-gnu",
    "usr/lib/x86_64-linux-gnu",
    "lib64",
    "usr/lib64",
    "lib",
    "usr/lib",
];

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("{program} is not in the image")]
    Missing { program: String },
    #[error("{program}: {reason}")]
    NotRunnable { program: String, reason: String },
    #[error("running {program} from the image: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{program} from the image failed ({status}): {stderr}")]
    Failed {
        program: String,
        status: std::process::ExitStatus,
        stderr: String,
    },
}

/// Runs image program `program` (an image path) with `args`, in `work`
/// (a scratch directory of the build). Returns its standard output.
pub fn run_image_program(
    rootfs: &Rootfs,
    program: &Path,
    args: &[OsString],
    work: &Path,
) -> Result<Vec<u8>, ExecError> {
    let shown = format!("/{}", program.display());
    let tree = rootfs.tree();
    let resolved = tree
        .resolve_all(program)
        .ok()
        .filter(|p| tree.get(p).is_some())
        .ok_or_else(|| ExecError::Missing {
            program: shown.clone(),
        })?;
    let binary = rootfs.stage().host_path(&resolved);
    let not_runnable = |reason: String| ExecError::NotRunnable {
        program: shown.clone(),
        reason,
    };
    let interp = elf_interpreter(&binary).map_err(not_runnable)?;
    let interp_image = tree
        .resolve_all(Path::new(&interp))
        .ok()
        .filter(|p| tree.get(p).is_some())
        .ok_or_else(|| not_runnable(format!("its loader {interp} is not in the image")))?;
    // The stage keeps files 0644; the loader must be executable, so a
    // copy of it runs.
    let loader = work.join("image-ld.so");
    std::fs::copy(rootfs.stage().host_path(&interp_image), &loader)
        .and_then(|_| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&loader, std::fs::Permissions::from_mode(0o755))
        })
        .map_err(|source| ExecError::Spawn {
            program: shown.clone(),
            source,
        })?;
    let library_path: Vec<PathBuf> = LIBRARY_DIRS
        .iter()
        .filter_map(|d| tree.resolve_all(Path::new(d)).ok())
        .filter(|d| tree.get(d).is_some_and(|i| i.kind.is_dir()))
        .map(|d| rootfs.stage().host_path(&d))
        .collect();
    let library_path = std::env::join_paths(library_path)
        .map_err(|e| not_runnable(format!("a library directory path cannot be passed: {e}")))?;
    let output = Command::new(&loader)
        .env_clear()
        .current_dir(work)
        .arg("--library-path")
        .arg(library_path)
        .arg(&binary)
        .args(args)
        .output()
        .map_err(|source| ExecError::Spawn {
            program: shown.clone(),
            source,
        })?;
    if !output.status.success() {
        return Err(ExecError::Failed {
            program: shown,
            status: output.status,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    Ok(output.stdout)
}

/// The `PT_INTERP` path of a 64-bit little-endian ELF executable (the
/// System V gABI "Program Header" chapter: `e_phoff` at 0x20,
/// `e_phentsize` at 0x36, `e_phnum` at 0x38; a program header's `p_type`
/// at 0, `p_offset` at 8, `p_filesz` at 0x20).
fn elf_interpreter(binary: &Path) -> Result<String, String> {
    let mut head = Vec::new();
    std::fs::File::open(binary)
        .and_then(|f| f.take(64 * 1024).read_to_end(&mut head))
        .map_err(|e| e.to_string())?;
    if head.len() < 64 || &head[..4] != b"\x7fELF" {
        return Err("not an ELF executable".into());
    }
    if head[4] != 2 || head[5] != 1 {
        return Err("not a 64-bit little-endian ELF executable".into());
    }
    let u16_at = |o: usize| u16::from_le_bytes([head[o], head[o + 1]]) as usize;
    let u64_at =
        |o: usize| u64::from_le_bytes(head[o..o + 8].try_into().expect("8 bytes")) as usize;
    let machine = u16_at(0x12);
    if machine != 62 {
        return Err(format!(
            "built for ELF machine {machine}, not x86-64 (62): the image is of another architecture"
        ));
    }
    let (phoff, phentsize, phnum) = (u64_at(0x20), u16_at(0x36), u16_at(0x38));
    for i in 0..phnum {
        let at = phoff + i * phentsize;
        if at + 0x28 > head.len() {
            break;
        }
        if u32::from_le_bytes(head[at..at + 4].try_into().expect("4 bytes")) == 3 {
            let (offset, size) = (u64_at(at + 8), u64_at(at + 0x20));
            let raw = head
                .get(offset..offset + size)
                .ok_or("its PT_INTERP lies past the first 64 KiB")?;
            return Ok(String::from_utf8_lossy(raw)
                .trim_end_matches('\0')
                .to_string());
        }
    }
    Err("statically linked or not an executable (no PT_INTERP)".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_interpreter_of_a_host_binary() {
        let interp = elf_interpreter(Path::new("/bin/sh")).unwrap();
        assert!(interp.contains("ld-linux"), "{interp}");
        assert!(elf_interpreter(Path::new("/etc/hostname")).is_err());
    }
}
