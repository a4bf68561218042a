//! Shared test machinery: the registries under test, test images, and
//! sources and progress reporters that let tests observe and interrupt.

pub mod distribution;
pub mod faults;
pub mod ferry;
pub mod image;
pub mod token_server;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ferry_client::source::{ChunkStream, OpenFuture};
use ferry_client::{BlobSource, Client, ClientOptions, HostConfig, RetryPolicy};
use ferry_oci::progress::Progress;
use futures_util::StreamExt;

/// Retries quick enough for tests.
pub fn fast_retries() -> RetryPolicy {
    RetryPolicy {
        max_retries: 6,
        base_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(200),
        max_retry_after: Duration::from_secs(1),
    }
}

/// A client that talks plain HTTP to `host`.
pub fn plain_client(host: &str) -> Client {
    plain_client_with(host, HostConfig::plain_http())
}

pub fn plain_client_with(host: &str, config: HostConfig) -> Client {
    Client::new(
        ClientOptions::default()
            .host(host, config)
            .retry(fast_retries()),
    )
    .unwrap()
}

/// Records progress events as text (`start id total`, `advance id n`,
/// `reset id done`, `finish id outcome`).
#[derive(Default)]
pub struct RecordingProgress {
    pub events: Mutex<Vec<String>>,
}

impl RecordingProgress {
    pub fn events(&self) -> Vec<String> {
        self.events.lock().unwrap().clone()
    }

    /// Sum of `advance` for `id` since its last `reset` (or start),
    /// plus the reset value: the done count a bar would show.
    pub fn done(&self, id: &str) -> u64 {
        let mut done = 0;
        for e in self.events() {
            let parts: Vec<&str> = e.split(' ').collect();
            if parts.get(1) != Some(&id) {
                continue;
            }
            match parts[0] {
                "advance" => done += parts[2].parse::<u64>().unwrap(),
                "reset" => done = parts[2].parse().unwrap(),
                _ => {}
            }
        }
        done
    }
}

impl Progress for RecordingProgress {
    fn start(&self, id: &str, _label: &str, total: Option<u64>) {
        self.events
            .lock()
            .unwrap()
            .push(format!("start {id} {}", total.unwrap_or(0)));
    }
    fn advance(&self, id: &str, bytes: u64) {
        self.events
            .lock()
            .unwrap()
            .push(format!("advance {id} {bytes}"));
    }
    fn reset(&self, id: &str, done: u64) {
        self.events
            .lock()
            .unwrap()
            .push(format!("reset {id} {done}"));
    }
    fn finish(&self, id: &str, outcome: &str) {
        self.events
            .lock()
            .unwrap()
            .push(format!("finish {id} {outcome}"));
    }
}

/// Wraps a source: counts the bytes read from it, and (optionally) stops
/// delivering at byte `pause_at`, never resuming, after writing a marker
/// file, so a test can interrupt an upload at an exact offset.
pub struct ObservedSource<S> {
    pub inner: S,
    pub read: Arc<AtomicU64>,
    pub pause_at: Option<u64>,
    pub paused_marker: Option<PathBuf>,
}

impl<S> ObservedSource<S> {
    pub fn new(inner: S) -> Self {
        ObservedSource {
            inner,
            read: Arc::new(AtomicU64::new(0)),
            pause_at: None,
            paused_marker: None,
        }
    }

    pub fn pausing_at(mut self, offset: u64, marker: PathBuf) -> Self {
        self.pause_at = Some(offset);
        self.paused_marker = Some(marker);
        self
    }
}

impl<S: BlobSource> BlobSource for ObservedSource<S> {
    fn len(&self) -> u64 {
        self.inner.len()
    }

    fn open(&self, offset: u64, len: u64) -> OpenFuture<'_> {
        let read = self.read.clone();
        let pause_at = self.pause_at;
        let marker = self.paused_marker.clone();
        Box::pin(async move {
            let inner = self.inner.open(offset, len).await?;
            let stream =
                futures_util::stream::unfold((inner, offset), move |(mut inner, position)| {
                    let read = read.clone();
                    let marker = marker.clone();
                    async move {
                        if let Some(pause) = pause_at
                            && position == pause
                        {
                            if let Some(m) = &marker {
                                std::fs::write(m, position.to_string()).unwrap();
                            }
                            std::future::pending::<()>().await;
                        }
                        let mut chunk = match inner.next().await? {
                            Ok(chunk) => chunk,
                            Err(e) => return Some((Err(e), (inner, position))),
                        };
                        // Stop exactly at the pause offset.
                        if let Some(pause) = pause_at
                            && position < pause
                            && position + chunk.len() as u64 > pause
                        {
                            chunk.truncate((pause - position) as usize);
                        }
                        read.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                        let next = position + chunk.len() as u64;
                        Some((Ok(chunk), (inner, next)))
                    }
                });
            Ok(Box::pin(stream) as ChunkStream)
        })
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }
}
