//! Pushing many blobs with a bound on how many run at once.
//!
//! Each push runs as its own task (so hashing spreads over the runtime's
//! threads); a semaphore admits `concurrency` of them at a time. One
//! failure does not stop the others: a bundle push wants to know every blob
//! that failed, and the ones that succeeded are not lost. Except a failure
//! every other push would meet too ([`ClientError::is_registry_wide`]: the
//! registry's disk is full, it is gone, it refuses the credentials or the
//! TLS): that one stops them all, at once, instead of each blob finding
//! out alone (and retrying) in turn. Interrupted chunked uploads resume on
//! the next run.

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
/// the order of `blobs`; `Err` if a registry-wide failure stopped them
/// all.
pub async fn push_blobs(
    blobs: Vec<BlobPush>,
    concurrency: usize,
    progress: Arc<dyn Progress>,
) -> Result<Vec<Result<PushReport>>> {
    let semaphore = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    let count = blobs.len();
    for (index, blob) in blobs.into_iter().enumerate() {
        let semaphore = semaphore.clone();
        let progress = progress.clone();
        tasks.spawn(async move {
            // Closed when a push met a registry-wide refusal: the pushes
            // still waiting never start.
            let Ok(_permit) = semaphore.clone().acquire_owned().await else {
                return (index, Err(cancelled()));
            };
            let result = blob
                .repository
                .push_blob(&blob.digest, &*blob.source, &blob.options, &*progress)
                .await;
            // Closed before this push's permit is released, so that no
            // waiting push slips in between the refusal and the abort below.
            if result.as_ref().is_err_and(ClientError::is_registry_wide) {
                semaphore.close();
            }
            (index, result)
        });
    }
    let mut results: Vec<Option<Result<PushReport>>> = (0..count).map(|_| None).collect();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            // Dropping the set aborts the pushes still running or waiting.
            Ok((_, Err(e))) if e.is_registry_wide() => return Err(e),
            Ok((index, result)) => results[index] = Some(result),
            // A panicking push is a bug; keep it visible as a panic.
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => tracing::error!("blob push task ended abnormally: {e}"),
        }
    }
    Ok(results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err(cancelled())))
        .collect())
}

fn cancelled() -> ClientError {
    ClientError::InvalidArgument("blob push task was cancelled".into())
}
