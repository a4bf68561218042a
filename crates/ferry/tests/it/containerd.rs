//! A real containerd (Debian's package) for the site files' mirror rules:
//! a daemon of its own under a temporary directory (root, state and socket
//! there, the CRI plugin off), and `ctr content fetch --hosts-dir`, which
//! resolves and fetches an image through `hosts.toml` files exactly as a
//! node's containerd with `config_path` does, without unpacking it.

use std::path::Path;
use std::process::{Child, Command, Stdio};

pub struct Containerd {
    child: Child,
    dir: tempfile::TempDir,
}

impl Containerd {
    pub fn start() -> Containerd {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config.toml");
        std::fs::write(
            &config,
            format!(
                "version = 2\nroot = \"{d}/root\"\nstate = \"{d}/state\"\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n[grpc]\n  address = \"{d}/containerd.sock\"\n",
                d = dir.path().display()
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.path().join("containerd.log")).unwrap();
        let child = Command::new("containerd")
            .arg("--config")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("containerd (Debian package containerd) runs; scripts/test.sh installs it");
        let containerd = Containerd { child, dir };
        for _ in 0..200 {
            if containerd
                .ctr()
                .arg("version")
                .output()
                .is_ok_and(|o| o.status.success())
            {
                return containerd;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!(
            "containerd did not start:\n{}",
            std::fs::read_to_string(containerd.dir.path().join("containerd.log")).unwrap()
        );
    }

    fn ctr(&self) -> Command {
        let mut c = Command::new("ctr");
        c.arg("--address")
            .arg(self.dir.path().join("containerd.sock"));
        c
    }

    /// Fetches `reference` (every platform) through the `hosts.toml` files
    /// under `hosts_dir`; the error is ctr's output.
    pub fn fetch(&self, hosts_dir: &Path, reference: &str) -> Result<(), String> {
        let out = self
            .ctr()
            .args(["content", "fetch", "--all-platforms", "--hosts-dir"])
            .arg(hosts_dir)
            .arg(reference)
            .output()
            .unwrap();
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "ctr content fetch {reference}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
