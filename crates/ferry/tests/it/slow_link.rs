//! A TCP proxy that carries one direction's bytes at a fixed rate: a slow
//! link between a client and its registry, so that a test can kill the
//! client at chosen points of an upload (client-to-server) or a download
//! (server-to-client) however fast this machine is.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A running proxy; it lives as long as the test process.
pub struct SlowLink {
    /// `127.0.0.1:PORT` to connect to instead of the server.
    pub addr: String,
    /// Bytes carried from the server to clients so far.
    downloaded: Arc<AtomicU64>,
}

/// Which direction the link slows down.
#[derive(Clone, Copy)]
enum Slow {
    Uploads,
    Downloads,
}

/// The upstream rate, shared by all connections: when the link is next free.
/// Idle time earns no credit, so a new client never gets a burst.
struct Budget {
    free_at: Instant,
    bytes_per_second: u64,
}

impl Budget {
    /// Blocks until `n` more bytes fit in the rate.
    fn spend(budget: &Mutex<Budget>, n: u64) {
        let wait = {
            let mut b = budget.lock().unwrap();
            let now = Instant::now();
            let cost = Duration::from_secs_f64(n as f64 / b.bytes_per_second as f64);
            b.free_at = b.free_at.max(now) + cost;
            b.free_at - now
        };
        std::thread::sleep(wait);
    }
}

impl SlowLink {
    /// Client-to-server bytes at `bytes_per_second`.
    pub fn start(upstream: &str, bytes_per_second: u64) -> SlowLink {
        SlowLink::spawn(upstream, bytes_per_second, Slow::Uploads)
    }

    /// Server-to-client bytes at `bytes_per_second`.
    pub fn start_downloads(upstream: &str, bytes_per_second: u64) -> SlowLink {
        SlowLink::spawn(upstream, bytes_per_second, Slow::Downloads)
    }

    /// Bytes carried from the server to clients so far.
    pub fn downloaded(&self) -> u64 {
        self.downloaded.load(Ordering::SeqCst)
    }

    fn spawn(upstream: &str, bytes_per_second: u64, slow: Slow) -> SlowLink {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let upstream = upstream.to_string();
        let budget = Arc::new(Mutex::new(Budget {
            free_at: Instant::now(),
            bytes_per_second,
        }));
        let downloaded = Arc::new(AtomicU64::new(0));
        let counter = downloaded.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = TcpStream::connect(&upstream) else {
                    continue;
                };
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let (up, down) = match slow {
                    Slow::Uploads => (Some(budget.clone()), None),
                    Slow::Downloads => (None, Some(budget.clone())),
                };
                let counter = counter.clone();
                std::thread::spawn(move || pump(client, server, up.as_deref(), None));
                std::thread::spawn(move || pump(s2, c2, down.as_deref(), Some(&counter)));
            }
        });
        SlowLink { addr, downloaded }
    }
}

/// Copies `from` to `to` until either side closes, spending `budget` if
/// given and adding what it carried to `count`.
fn pump(
    mut from: TcpStream,
    mut to: TcpStream,
    budget: Option<&Mutex<Budget>>,
    count: Option<&AtomicU64>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Some(budget) = budget {
            Budget::spend(budget, n as u64);
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
        if let Some(count) = count {
            count.fetch_add(n as u64, Ordering::SeqCst);
        }
    }
    let _ = to.shutdown(Shutdown::Write);
    let _ = from.shutdown(Shutdown::Read);
}
