//! Pushing many blobs with a bound on how many run at once.
//!
//! Each push runs as its own task (so hashing spreads over the runtime's
//! threads); a semaphore admits `concurrency` of them at a time. One
//! failure does not stop the others: a bundle push wants to know every blob
//! that failed, and the ones that succeeded are not lost.

use std::sync::Arc;

use ferry_oci::Digest;
use ferry_oci::progress::Progress;
use tokio::sync::Semaphore;

use crate::error::{ClientError, Result};
use crate::repository::Repository;
use crate::source::BlobSource;
use crate::upload::{PushOptions, PushReport};

/// One blob to push: where, what, from which bytes, how.
#[derive(Clone)]
pub struct BlobPush {
    pub repository: Repository,
    pub digest: Digest,
    pub source: Arc<dyn BlobSource>,
    pub options: PushOptions,
}

/// Pushes `blobs`, at most `concurrency` at a time. The results are in
/// the order of `blobs`.
pub async fn push_blobs(
    blobs: Vec<BlobPush>,
    concurrency: usize,
    progress: Arc<dyn Progress>,
) -> Vec<Result<PushReport>> {
    let semaphore = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    let count = blobs.len();
    for (index, blob) in blobs.into_iter().enumerate() {
        let semaphore = semaphore.clone();
        let progress = progress.clone();
        tasks.spawn(async move {
            let _permit = semaphore
                .acquire_owned()
                .await
                .expect("the semaphore is never closed");
            let result = blob
                .repository
                .push_blob(&blob.digest, &*blob.source, &blob.options, &*progress)
                .await;
            (index, result)
        });
    }
    let mut results: Vec<Option<Result<PushReport>>> = (0..count).map(|_| None).collect();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((index, result)) => results[index] = Some(result),
            // A panicking push is a bug; keep it visible as a panic.
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => tracing::error!("blob push task ended abnormally: {e}"),
        }
    }
    results
        .into_iter()
        .map(|r| {
            r.unwrap_or_else(|| {
                Err(ClientError::InvalidArgument(
                    "blob push task was cancelled".into(),
                ))
            })
        })
        .collect()
}
