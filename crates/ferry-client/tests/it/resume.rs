//! Interrupted chunked uploads, resumed from the registry's offset.
//!
//! An upload is stopped at an exact byte (the source stops delivering
//! there and drops a marker file), then interrupted by dropping the push
//! future or by `kill -9` of a child process doing the push. A fresh
//! client with the same resume-state directory then finishes it; the
//! bytes it sends are counted.
//!
//! Distribution 2.8 cancels an upload whose stored size no longer matches
//! the offset signed into its upload URL, which is what a chunk cut
//! mid-body leaves; so against it the exact resume is tested at a chunk
//! boundary, and a mid-chunk interruption must restart and still finish.
//! ferry's registry keeps partial chunks and resumes mid-chunk.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ferry_client::{FileRange, PushOptions, PushOutcome, PushReport, ResumeStore};
use ferry_oci::Digest;
use ferry_oci::progress::NoProgress;
use ferry_registry::auth::Auth;

use crate::support::distribution::Distribution;
use crate::support::ferry::FerryRegistry;
use crate::support::image::random_bytes;
use crate::support::{ObservedSource, RecordingProgress, plain_client};

const CHUNK: u64 = 4 << 20;
const SIZE: u64 = 6 * CHUNK + 12345;
const REPO: &str = "resume/app";

fn options(resume_dir: &Path) -> PushOptions {
    PushOptions {
        monolithic_max: CHUNK,
        chunk_size: CHUNK,
        resume: Some(ResumeStore::open(resume_dir).unwrap()),
        ..Default::default()
    }
}

#[derive(Clone, Copy, Debug)]
enum Interruption {
    /// Drop the push future (the connection closes).
    DropFuture,
    /// SIGKILL a child process doing the push.
    Kill,
}

struct Setup {
    dir: tempfile::TempDir,
    file: PathBuf,
    digest: Digest,
}

fn setup(seed: u64) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("blob");
    let data = random_bytes(seed, SIZE as usize);
    std::fs::write(&file, &data).unwrap();
    Setup {
        digest: Digest::sha256(&data),
        file,
        dir,
    }
}

async fn wait_for(marker: &Path, child: Option<&mut Child>) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut child = child;
    while !marker.exists() {
        if let Some(c) = child.as_deref_mut()
            && let Ok(Some(status)) = c.try_wait()
        {
            let mut out = String::new();
            if let Some(mut e) = c.stderr.take() {
                std::io::Read::read_to_string(&mut e, &mut out).unwrap();
            }
            panic!("child push exited with {status} before pausing:\n{out}");
        }
        assert!(Instant::now() < deadline, "upload never reached the pause");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Let the bytes already written reach the registry.
    tokio::time::sleep(Duration::from_millis(300)).await;
}

/// Pushes until byte `pause_at`, interrupts, and returns the report of a
/// fresh client finishing the push, plus the bytes it read from the file.
async fn interrupt_and_resume(
    host: &str,
    setup: &Setup,
    pause_at: u64,
    interruption: Interruption,
) -> (PushReport, u64, RecordingProgress) {
    let resume_dir = setup.dir.path().join("resume");
    let marker = setup.dir.path().join("paused");
    match interruption {
        Interruption::DropFuture => {
            let client = plain_client(host);
            let repo = client.repository(host, REPO).unwrap();
            let source = ObservedSource::new(FileRange::whole(&setup.file).unwrap())
                .pausing_at(pause_at, marker.clone());
            let (digest, options) = (setup.digest.clone(), options(&resume_dir));
            let push = tokio::spawn(async move {
                repo.push_blob(&digest, &source, &options, &NoProgress)
                    .await
            });
            wait_for(&marker, None).await;
            push.abort();
            assert!(push.await.unwrap_err().is_cancelled());
        }
        Interruption::Kill => {
            let mut child = Command::new(std::env::current_exe().unwrap())
                .args(["--exact", "resume::child_push", "--ignored", "--nocapture"])
                .env("FERRY_TEST_CHILD_REGISTRY", host)
                .env("FERRY_TEST_CHILD_FILE", &setup.file)
                .env("FERRY_TEST_CHILD_DIGEST", setup.digest.to_string())
                .env("FERRY_TEST_CHILD_RESUME", &resume_dir)
                .env("FERRY_TEST_CHILD_PAUSE", pause_at.to_string())
                .env("FERRY_TEST_CHILD_MARKER", &marker)
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            wait_for(&marker, Some(&mut child)).await;
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();
        }
    }
    let states = ResumeStore::open(&resume_dir).unwrap().list().unwrap();
    assert_eq!(states.len(), 1, "the interrupted upload left its state");

    let client = plain_client(host);
    let repo = client.repository(host, REPO).unwrap();
    let source = ObservedSource::new(FileRange::whole(&setup.file).unwrap());
    let progress = RecordingProgress::default();
    let report = repo
        .push_blob(&setup.digest, &source, &options(&resume_dir), &progress)
        .await
        .unwrap();
    assert_eq!(report.outcome, PushOutcome::Uploaded);
    assert!(
        ResumeStore::open(&resume_dir)
            .unwrap()
            .list()
            .unwrap()
            .is_empty(),
        "a finished upload forgets its state"
    );
    // What the registry committed is the file, byte for byte.
    let mut back = Vec::new();
    repo.fetch_blob(
        &ferry_oci::Descriptor::new("application/octet-stream", setup.digest.clone(), SIZE),
        &mut back,
        &NoProgress,
    )
    .await
    .unwrap();
    assert_eq!(Digest::sha256(&back), setup.digest);
    let read = source.read.load(std::sync::atomic::Ordering::Relaxed);
    (report, read, progress)
}

fn assert_resumed_exactly(report: &PushReport, read: u64, progress: &RecordingProgress, at: u64) {
    assert_eq!(report.resumed_at, Some(at), "{report:?}");
    assert_eq!(report.restarts, 0);
    // Only the missing bytes went over the network; the ones the registry
    // had were read locally once, to hash them.
    assert_eq!(report.bytes_sent, SIZE - at);
    assert_eq!(read, SIZE);
    let id = report.digest.to_string();
    assert!(progress.events().contains(&format!("reset {id} {at}")));
    assert_eq!(progress.done(&id), SIZE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distribution_resumes_at_chunk_boundary_after_drop() {
    let registry = Distribution::start();
    let setup = setup(31);
    let at = 2 * CHUNK;
    let (report, read, progress) =
        interrupt_and_resume(&registry.host(), &setup, at, Interruption::DropFuture).await;
    assert_resumed_exactly(&report, read, &progress, at);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distribution_resumes_at_chunk_boundary_after_kill_9() {
    let registry = Distribution::start();
    let setup = setup(32);
    let at = 3 * CHUNK;
    let (report, read, progress) =
        interrupt_and_resume(&registry.host(), &setup, at, Interruption::Kill).await;
    assert_resumed_exactly(&report, read, &progress, at);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distribution_restarts_after_kill_9_mid_chunk() {
    let registry = Distribution::start();
    let setup = setup(33);
    let (report, _, _) = interrupt_and_resume(
        &registry.host(),
        &setup,
        2 * CHUNK + CHUNK / 2,
        Interruption::Kill,
    )
    .await;
    // Distribution cancelled the session; the blob was sent again, whole,
    // and still verified.
    assert_eq!(report.resumed_at, None, "{report:?}");
    assert_eq!(
        report.restarts, 0,
        "a cancelled saved session is not a restart"
    );
    assert_eq!(report.bytes_sent, SIZE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ferry_registry_resumes_mid_chunk_after_drop() {
    let registry = FerryRegistry::start(Auth::none()).await;
    let setup = setup(34);
    let at = 2 * CHUNK + 1_234_567;
    let (report, read, progress) =
        interrupt_and_resume(&registry.host(), &setup, at, Interruption::DropFuture).await;
    assert_resumed_exactly(&report, read, &progress, at);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ferry_registry_resumes_mid_chunk_after_kill_9() {
    let registry = FerryRegistry::start(Auth::none()).await;
    let setup = setup(35);
    let at = 4 * CHUNK + 777_777;
    let (report, read, progress) =
        interrupt_and_resume(&registry.host(), &setup, at, Interruption::Kill).await;
    assert_resumed_exactly(&report, read, &progress, at);
}

/// Not a test: the child process of the kill -9 tests, which pushes until
/// the pause and waits there to be killed. Does nothing when run by hand.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "child process of the kill -9 tests"]
async fn child_push() {
    let Ok(host) = std::env::var("FERRY_TEST_CHILD_REGISTRY") else {
        return;
    };
    let var = |k: &str| std::env::var(k).unwrap();
    let client = plain_client(&host);
    let repo = client.repository(&host, REPO).unwrap();
    let source = ObservedSource::new(FileRange::whole(var("FERRY_TEST_CHILD_FILE")).unwrap())
        .pausing_at(
            var("FERRY_TEST_CHILD_PAUSE").parse().unwrap(),
            var("FERRY_TEST_CHILD_MARKER").into(),
        );
    let digest: Digest = var("FERRY_TEST_CHILD_DIGEST").parse().unwrap();
    let options = options(Path::new(&var("FERRY_TEST_CHILD_RESUME")));
    let result = repo
        .push_blob(&digest, &source, &options, &NoProgress)
        .await;
    panic!("the push should pause until killed, but ended: {result:?}");
}
