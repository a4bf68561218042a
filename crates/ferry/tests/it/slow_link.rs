//! A TCP proxy that carries client-to-server bytes at a fixed rate: a slow
//! link between a pushing client and its registry, so that a test can kill
//! the client at chosen points of an upload however fast this machine is.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A running proxy; it lives as long as the test process.
pub struct SlowLink {
    /// `127.0.0.1:PORT` to connect to instead of the server.
    pub addr: String,
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
    pub fn start(upstream: &str, bytes_per_second: u64) -> SlowLink {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let upstream = upstream.to_string();
        let budget = Arc::new(Mutex::new(Budget {
            free_at: Instant::now(),
            bytes_per_second,
        }));
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = TcpStream::connect(&upstream) else {
                    continue;
                };
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let budget = budget.clone();
                std::thread::spawn(move || pump(client, server, Some(&budget)));
                std::thread::spawn(move || pump(s2, c2, None));
            }
        });
        SlowLink { addr }
    }
}

/// Copies `from` to `to` until either side closes, spending `budget` if given.
fn pump(mut from: TcpStream, mut to: TcpStream, budget: Option<&Mutex<Budget>>) {
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
    }
    let _ = to.shutdown(Shutdown::Write);
    let _ = from.shutdown(Shutdown::Read);
}
