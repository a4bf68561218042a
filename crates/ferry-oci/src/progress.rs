//! Progress reporting for long operations (pushes, pulls, bundle writes,
//! fsck). Libraries report through [`Progress`]; only the binary draws.
//!
//! A task is a unit the user would recognise (a blob, a file); `id`s are
//! unique within one operation (a digest string is typical).

/// Receives progress events. Every method has a no-op default so that
/// reporters implement only what they show.
pub trait Progress: Send + Sync {
    /// A task starts; `total` is its size in bytes if known.
    fn start(&self, _id: &str, _label: &str, _total: Option<u64>) {}
    /// `bytes` more bytes of the task are done.
    fn advance(&self, _id: &str, _bytes: u64) {}
    /// The task's done count went back to `done` (a retry or a resume).
    fn reset(&self, _id: &str, _done: u64) {}
    /// The task ended; `outcome` is a short word ("pushed", "skipped",
    /// "mounted", "failed").
    fn finish(&self, _id: &str, _outcome: &str) {}
    /// A line for the user, outside any task.
    fn message(&self, _text: &str) {}
}

/// Reports nothing.
pub struct NoProgress;

impl Progress for NoProgress {}
