//! Logging set-up and shared output helpers.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use tracing_subscriber::EnvFilter;

use crate::cli::GlobalArgs;

/// Logs go to stderr; `RUST_LOG` overrides the level chosen by -v/-q.
pub fn init_logging(global: &GlobalArgs) {
    let level = match (global.quiet, global.verbose) {
        (true, _) => "error",
        (false, 0) => "info",
        (false, 1) => "debug",
        (false, _) => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new(format!("warn,ferry={level},ferry_store={level},ferry_registry={level},ferry_client={level},ferry_bundle={level},ferry_netboot={level},ferry_image={level}"))
    });
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(|| LogLine(Vec::new()))
        .with_target(false)
        .init();
}

/// One formatted log event, written out in one piece when tracing drops
/// it (through [`crate::progress::write_log`], which keeps it clear of the
/// progress bars).
struct LogLine(Vec<u8>);

impl std::io::Write for LogLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LogLine {
    fn drop(&mut self) {
        crate::progress::write_log(&self.0);
    }
}

/// The state directory: `--state`, `$FERRY_STATE`, `/var/lib/ferry` for
/// root, else `$XDG_DATA_HOME/ferry` (or `~/.local/share/ferry`).
pub fn state_dir(global: &GlobalArgs) -> PathBuf {
    if let Some(dir) = &global.state {
        return dir.clone();
    }
    // /proc/self is owned by the process's effective uid.
    let is_root = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
    if is_root {
        return PathBuf::from("/var/lib/ferry");
    }
    if let Some(xdg) = std::env::var_os("XDG_DATA_HOME") {
        return PathBuf::from(xdg).join("ferry");
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    home.join(".local/share/ferry")
}

/// Prints `value` as pretty JSON on stdout.
pub fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Bytes for humans: 1.2 GiB.
pub fn human_bytes(bytes: u64) -> String {
    indicatif::HumanBytes(bytes).to_string()
}

/// Prints `rows` under `header` in columns as wide as their widest cell,
/// two spaces apart; columns listed in `right` are right-aligned (sizes).
/// The last column is not padded, so long values there do not push
/// trailing blanks.
pub fn print_table<const N: usize>(header: [&str; N], rows: &[[String; N]], right: &[usize]) {
    let mut widths = header.map(|h| h.chars().count());
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: [&str; N]| {
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate() {
            let width = widths[i];
            if i + 1 == N {
                out.push_str(cell);
            } else if right.contains(&i) {
                out.push_str(&format!("{cell:>width$}  "));
            } else {
                out.push_str(&format!("{cell:<width$}  "));
            }
        }
        println!("{}", out.trim_end());
    };
    line(header);
    for row in rows {
        line(row.each_ref().map(String::as_str));
    }
}
