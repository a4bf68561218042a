//! Booting an output in QEMU (TCG, no keypress) and waiting, bounded, for
//! the marker line on the serial console. Boots take a lock so that at
//! most two run at once on this two-core machine.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Firmware {
    SeaBios,
    Ovmf,
}

/// How the image is attached.
#[derive(Debug, Clone)]
pub enum Medium {
    /// A CD-ROM (IDE).
    Cdrom(PathBuf),
    /// A USB stick (EHCI + usb-storage).
    Usb(PathBuf),
    /// A virtio disk, raw or another format QEMU reads (`qcow2`, `vmdk`).
    Disk { path: PathBuf, format: &'static str },
}

/// Boots at most this many VMs at once.
const PARALLEL: usize = 2;
static RUNNING: Mutex<usize> = Mutex::new(0);
static FREED: Condvar = Condvar::new();

/// Boots `medium` under `firmware` and returns the serial console output
/// once `marker` appears; panics with the output when QEMU exits or
/// `timeout` passes first. `work` holds the log and the UEFI variables.
pub fn boot_until(
    firmware: Firmware,
    medium: &Medium,
    marker: &str,
    timeout: Duration,
    work: &Path,
) -> String {
    boot_with_nic(firmware, medium, "none", marker, timeout, work)
}

/// [`boot_until`] with QEMU's `-nic` option `nic` (`user,model=virtio-net-pci`:
/// the guest reaches the host's loopback services at 10.0.2.2).
pub fn boot_with_nic(
    firmware: Firmware,
    medium: &Medium,
    nic: &str,
    marker: &str,
    timeout: Duration,
    work: &Path,
) -> String {
    {
        let mut running = RUNNING.lock().unwrap();
        while *running >= PARALLEL {
            running = FREED.wait(running).unwrap();
        }
        *running += 1;
    }
    let result = run(firmware, medium, nic, marker, timeout, work);
    *RUNNING.lock().unwrap() -= 1;
    FREED.notify_one();
    match result {
        Ok(log) => log,
        Err(why) => panic!("{why}"),
    }
}

fn run(
    firmware: Firmware,
    medium: &Medium,
    nic: &str,
    marker: &str,
    timeout: Duration,
    work: &Path,
) -> Result<String, String> {
    std::fs::create_dir_all(work).unwrap();
    let log = work.join("serial.log");
    let _ = std::fs::remove_file(&log);
    let mut cmd = Command::new("qemu-system-x86_64");
    cmd.args(["-machine", "pc", "-m", "1024", "-smp", "1", "-accel", "tcg"])
        .args(["-display", "none", "-no-reboot", "-monitor", "none"])
        .arg("-serial")
        .arg(format!("file:{}", log.display()))
        .args(["-nic", nic]);
    if firmware == Firmware::Ovmf {
        let vars = work.join("OVMF_VARS.fd");
        std::fs::copy("/usr/share/OVMF/OVMF_VARS_4M.fd", &vars).unwrap();
        cmd.arg("-drive")
            .arg("if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd")
            .arg("-drive")
            .arg(format!(
                "if=pflash,format=raw,unit=1,file={}",
                vars.display()
            ));
    }
    match medium {
        Medium::Cdrom(path) => {
            cmd.arg("-drive").arg(format!(
                "if=ide,media=cdrom,readonly=on,format=raw,file={}",
                path.display()
            ));
        }
        Medium::Usb(path) => {
            cmd.args(["-device", "usb-ehci,id=ehci"])
                .arg("-drive")
                .arg(format!(
                    "if=none,id=stick,format=raw,readonly=on,file={}",
                    path.display()
                ))
                .args(["-device", "usb-storage,bus=ehci.0,drive=stick,bootindex=0"]);
        }
        Medium::Disk { path, format } => {
            cmd.arg("-drive").arg(format!(
                "if=virtio,format={format},snapshot=on,file={}",
                path.display()
            ));
        }
    }
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start qemu-system-x86_64: {e}"))?;
    let started = Instant::now();
    // Firmware and GRUB write code page 437 box drawing to the serial
    // console, which is not UTF-8: read the log lossily, not as a string.
    let read_log =
        || String::from_utf8_lossy(&std::fs::read(&log).unwrap_or_default()).into_owned();
    loop {
        let text = read_log();
        if text.contains(marker) {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(text);
        }
        if let Some(status) = child.try_wait().unwrap() {
            let text = read_log();
            if text.contains(marker) {
                return Ok(text);
            }
            let mut stderr = String::new();
            use std::io::Read;
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut stderr)
                .ok();
            return Err(format!(
                "QEMU ({firmware:?}, {medium:?}) ended ({status}) before {marker:?}; stderr: {stderr}\n--- serial ---\n{}",
                tail(&text)
            ));
        }
        if started.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "QEMU ({firmware:?}, {medium:?}) did not print {marker:?} within {timeout:?}\n--- serial ---\n{}",
                tail(&read_log())
            ));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(60)..].join("\n")
}
