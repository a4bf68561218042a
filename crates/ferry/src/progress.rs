//! Draws library progress ([`ferry_oci::progress::Progress`]) as
//! indicatif bars on stderr: one bar per running task plus a total.
//! Hidden when stderr is not a terminal or with `--quiet`. Log lines
//! written while bars are on screen go above them ([`write_log`]), so a
//! warning (a retry, a resumed download) never tears a bar apart.

use std::collections::HashMap;
use std::io::Write;
use std::sync::Mutex;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use ferry_oci::progress::Progress;

/// The bars on screen, if any.
static ON_SCREEN: Mutex<Option<MultiProgress>> = Mutex::new(None);

/// Writes a log line to stderr, above the bars if some are drawn.
pub fn write_log(line: &[u8]) {
    let bars = ON_SCREEN.lock().expect("bars lock").clone();
    let write = || {
        let _ = std::io::stderr().lock().write_all(line);
    };
    match bars {
        Some(multi) => multi.suspend(write),
        None => write(),
    }
}

pub struct Bars {
    multi: MultiProgress,
    total: ProgressBar,
    tasks: Mutex<HashMap<String, ProgressBar>>,
}

impl Bars {
    /// Bars for an operation moving `total_bytes` in all (if known).
    pub fn new(quiet: bool, label: &str, total_bytes: Option<u64>) -> Bars {
        let target = if quiet {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr()
        };
        let multi = MultiProgress::with_draw_target(target);
        let total = multi.add(ProgressBar::new(total_bytes.unwrap_or(0)));
        total.set_style(
            ProgressStyle::with_template(
                "{prefix:>12} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        total.set_prefix(label.to_string());
        if !quiet {
            *ON_SCREEN.lock().expect("bars lock") = Some(multi.clone());
        }
        Bars {
            multi,
            total,
            tasks: Mutex::new(HashMap::new()),
        }
    }

    pub fn finish(&self) {
        self.total.finish_and_clear();
        ON_SCREEN.lock().expect("bars lock").take();
    }
}

impl Drop for Bars {
    fn drop(&mut self) {
        // Also on an early return that skipped `finish`.
        ON_SCREEN.lock().expect("bars lock").take();
    }
}

impl Progress for Bars {
    fn start(&self, id: &str, label: &str, total: Option<u64>) {
        let bar = self.multi.add(ProgressBar::new(total.unwrap_or(0)));
        bar.set_style(
            ProgressStyle::with_template("{prefix:>12} {msg:40!} {bytes:>10}/{total_bytes:10}")
                .expect("valid template"),
        );
        bar.set_message(label.to_string());
        self.tasks
            .lock()
            .expect("bars lock")
            .insert(id.to_string(), bar);
    }

    fn advance(&self, id: &str, bytes: u64) {
        self.total.inc(bytes);
        if let Some(bar) = self.tasks.lock().expect("bars lock").get(id) {
            bar.inc(bytes);
        }
    }

    fn reset(&self, id: &str, done: u64) {
        if let Some(bar) = self.tasks.lock().expect("bars lock").get(id) {
            let before = bar.position();
            self.total
                .set_position(self.total.position().saturating_sub(before) + done);
            bar.set_position(done);
        }
    }

    fn finish(&self, id: &str, _outcome: &str) {
        if let Some(bar) = self.tasks.lock().expect("bars lock").remove(id) {
            bar.finish_and_clear();
            self.multi.remove(&bar);
        }
    }

    fn message(&self, text: &str) {
        let _ = self.multi.println(text);
    }
}
