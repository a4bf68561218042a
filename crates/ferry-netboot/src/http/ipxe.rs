//! The iPXE scripts ferry serves.
//!
//! - [`entry`]: `/boot.ipxe`, the same for every machine; it chains to the
//!   machine's own script with its MAC, SMBIOS UUID, iPXE build
//!   architecture and platform (`pcbios`/`efi`).
//! - [`install`]: kernel + initrds + the rendered command line. Every
//!   initrd is named on the kernel line as `initrd=<name>`: iPXE (the 2019
//!   builds Debian ships) hands initrds to the kernel's EFI stub only as
//!   files named that way, and without it a UEFI boot panics with "VFS:
//!   Unable to mount root fs"; on BIOS the word is harmless.
//! - [`local_disk`]: a provisioned host leaves iPXE for its disk.
//! - [`refusal`]: a host that may not boot sees why on its console.
//! - [`not_ready`]: a host whose profile waits for its artifact sees why,
//!   and asks again a little later.
//!
//! Every script prints a `ferry:` line first, so the console says what the
//! server decided.

use crate::config::LocalBoot;
use crate::mac::MacAddr;

pub fn entry(base_url: &str) -> String {
    format!(
        "#!ipxe\n\
         echo ferry: fetching the boot script for ${{mac}}\n\
         chain {base_url}/boot/${{mac:hexhyp}}.ipxe?uuid=${{uuid}}&arch=${{buildarch}}&platform=${{platform}} || goto failed\n\
         exit\n\
         :failed\n\
         echo ferry: no boot script for ${{mac}} from {base_url}; trying the next boot device\n\
         exit 1\n"
    )
}

/// One file to fetch: its URL name and URL. The URL ends with the name,
/// which is therefore also iPXE's image name for it.
pub struct Fetch<'a> {
    pub name: &'a str,
    pub url: String,
}

pub fn install(
    mac: MacAddr,
    host_name: &str,
    profile: &str,
    kernel: Fetch<'_>,
    initrds: &[Fetch<'_>],
    cmdline: &str,
) -> String {
    let mut initrd_args = String::new();
    for i in initrds {
        initrd_args.push_str(&format!(" initrd={}", i.name));
    }
    let mut script = format!(
        "#!ipxe\n\
         echo ferry: {mac} ({}) boots profile {profile}\n\
         kernel {}{initrd_args} {} || goto failed\n",
        printable(host_name),
        kernel.url,
        one_line(cmdline)
    );
    for i in initrds {
        script.push_str(&format!("initrd {} || goto failed\n", i.url));
    }
    script.push_str(&format!(
        "boot || goto failed\n\
         :failed\n\
         echo ferry: booting {mac} failed; see the ferry server log\n\
         exit 1\n"
    ));
    script
}

pub fn local_disk(mac: MacAddr, how: LocalBoot, ready_since: Option<&str>) -> String {
    let since = ready_since
        .map(|t| format!(" since {t}"))
        .unwrap_or_default();
    let head = format!(
        "#!ipxe\n\
         echo ferry: {mac} is provisioned (ready{since}); booting from the local disk\n\
         echo ferry: to install it again run: ferry hosts reset {mac}\n"
    );
    match how {
        LocalBoot::Exit => format!("{head}exit\n"),
        LocalBoot::Sanboot => format!(
            "{head}iseq ${{platform}} efi && exit ||\n\
             sanboot --no-describe --drive 0x80 || exit\n"
        ),
    }
}

/// How long a host whose profile is not ready waits before asking again.
pub const NOT_READY_RETRY_SECS: u32 = 30;

/// The profile's boot files are not available yet (its artifact is still
/// to be pushed into ferry's registry): say why, wait, and start over from
/// the entry script, so the host boots by itself once they are.
pub fn not_ready(mac: MacAddr, profile: &str, why: &str, base_url: &str) -> String {
    format!(
        "#!ipxe\n\
         echo ferry: {mac}: profile {profile} is not ready: {}\n\
         echo ferry: trying again in {NOT_READY_RETRY_SECS} seconds\n\
         sleep {NOT_READY_RETRY_SECS}\n\
         chain --replace {base_url}/boot.ipxe || exit 1\n",
        one_line(why)
    )
}

pub fn refusal(mac: MacAddr, why: &str) -> String {
    format!(
        "#!ipxe\n\
         echo ferry: not booting {mac}: {}\n\
         exit 1\n",
        one_line(why)
    )
}

/// Script arguments are one line; a stray newline would start a command.
fn one_line(s: &str) -> String {
    s.split(['\n', '\r']).collect::<Vec<_>>().join(" ")
}

fn printable(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn install_names_every_initrd_on_the_kernel_line() {
        let mac: MacAddr = "52:54:00:12:34:56".parse().unwrap();
        let s = install(
            mac,
            "node1",
            "kairos",
            Fetch {
                name: "kernel",
                url: "http://s/h/t/files/kernel".into(),
            },
            &[
                Fetch {
                    name: "initrd",
                    url: "http://s/h/t/files/initrd".into(),
                },
                Fetch {
                    name: "initrd1",
                    url: "http://s/h/t/files/initrd1".into(),
                },
            ],
            "console=ttyS0\nrd.neednet=1",
        );
        assert!(s.starts_with("#!ipxe\n"));
        assert!(s.contains(
            "kernel http://s/h/t/files/kernel initrd=initrd initrd=initrd1 console=ttyS0 rd.neednet=1 || goto failed\n"
        ), "{s}");
        assert!(s.contains("initrd http://s/h/t/files/initrd1 || goto failed\n"));
    }
}
