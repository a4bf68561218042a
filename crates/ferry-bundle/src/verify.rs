//! `ferry bundle verify`: everything a bundle claims, checked.
//!
//! Opening a bundle already checked its structure (safe members, every
//! listed blob present, `index.json` matching its recorded digest). This
//! adds the expensive part: the signature (when a key is given), every
//! blob re-hashed against its name and size, and every entry's graph
//! complete (each manifest parses and everything it names is in the
//! bundle, or, for a delta, in its base).

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::sync::Mutex;

use ferry_oci::progress::Progress;
use ferry_oci::{Digest, Hasher};

use crate::format::BlobRecord;
use crate::graph;
use crate::reader::Bundle;

/// Checks a signature over `ferry/bundle.json`: `(manifest bytes, signature bytes)`.
pub type SignatureCheck<'a> = &'a dyn Fn(&[u8], &[u8]) -> Result<String, String>;

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct VerifyReport {
    pub bundle: String,
    pub entries: usize,
    pub blobs_checked: usize,
    pub bytes_checked: u64,
    /// What the signature check said (the signer, or why it failed);
    /// `None` when no key was given.
    pub signature: Option<String>,
    pub signed: bool,
    pub problems: Vec<String>,
}

impl VerifyReport {
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Verifies `bundle`. `check_signature` is required when the caller has
/// a key; a bundle without a signature then fails.
pub fn verify(
    bundle: &Bundle,
    check_signature: Option<SignatureCheck<'_>>,
    progress: &dyn Progress,
) -> VerifyReport {
    let mut report = VerifyReport {
        bundle: bundle.name().to_string(),
        entries: bundle.manifest.entries.len(),
        signed: bundle.signature.is_some(),
        ..VerifyReport::default()
    };
    if let Some(check) = check_signature {
        match &bundle.signature {
            None => report
                .problems
                .push("the bundle is not signed, but a key was given".into()),
            Some(sig) => match check(&bundle.manifest_bytes, sig) {
                Ok(signer) => report.signature = Some(signer),
                Err(why) => {
                    report
                        .problems
                        .push(format!("signature check failed: {why}"));
                    report.signature = Some(why);
                }
            },
        }
    }
    let owners = check_graphs(bundle, &mut report);
    check_blobs(
        bundle,
        &bundle.manifest.blobs,
        &owners,
        progress,
        &mut report,
    );
    report
}

/// Which entries need each blob (their sources), for problem messages.
type Owners<'a> = HashMap<Digest, Vec<&'a str>>;

/// Checks every entry's graph; returns which entries need each blob.
fn check_graphs<'a>(bundle: &'a Bundle, report: &mut VerifyReport) -> Owners<'a> {
    let mut owners: Owners<'a> = HashMap::new();
    let present: HashSet<&Digest> = bundle
        .manifest
        .blobs
        .iter()
        .chain(&bundle.manifest.base_blobs)
        .map(|b| &b.digest)
        .collect();
    for entry in &bundle.manifest.entries {
        match graph::walk(bundle, &entry.descriptor) {
            Ok(g) => {
                for digest in g.digests() {
                    if !present.contains(&digest) {
                        report.problems.push(format!(
                            "{}: needs {digest}, which the bundle does not list",
                            entry.source
                        ));
                    }
                    owners.entry(digest).or_default().push(&entry.source);
                }
            }
            Err(e) => report.problems.push(format!("{}: {e}", entry.source)),
        }
    }
    owners
}

/// ` (in docker.io/library/nginx:1.27, ...)`: the entries a blob belongs to.
fn belongs_to(owners: &Owners<'_>, digest: &Digest) -> String {
    match owners.get(digest) {
        Some(sources) => format!(" (in {})", sources.join(", ")),
        None => " (needed by no entry)".to_string(),
    }
}

fn check_blobs(
    bundle: &Bundle,
    blobs: &[BlobRecord],
    owners: &Owners<'_>,
    progress: &dyn Progress,
    report: &mut VerifyReport,
) {
    let total = blobs.iter().map(|b| b.size).sum();
    progress.start("verify", "verify", Some(total));
    let queue = Mutex::new(blobs.iter());
    let outcomes = Mutex::new(Vec::new());
    let workers = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .min(4);
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                let mut buf = vec![0u8; 1024 * 1024];
                loop {
                    let Some(record) = queue.lock().expect("verify queue").next() else {
                        break;
                    };
                    let outcome = hash_member(bundle, record, &mut buf, progress);
                    outcomes
                        .lock()
                        .expect("verify outcomes")
                        .push((record, outcome));
                }
            });
        }
    });
    let mut outcomes = outcomes.into_inner().expect("verify outcomes");
    outcomes.sort_by(|a, b| a.0.cmp(b.0));
    for (record, outcome) in outcomes {
        report.blobs_checked += 1;
        let of = belongs_to(owners, &record.digest);
        match outcome {
            Ok((digest, size)) => {
                report.bytes_checked += size;
                if size != record.size {
                    report.problems.push(format!(
                        "blob {}{of} is {size} bytes, not the {} recorded",
                        record.digest, record.size
                    ));
                } else if digest != record.digest {
                    report.problems.push(format!(
                        "blob {}{of} is corrupt: its content hashes to {digest}",
                        record.digest
                    ));
                }
            }
            Err(e) => report
                .problems
                .push(format!("blob {}{of}: {e}", record.digest)),
        }
    }
    progress.finish(
        "verify",
        if report.problems.is_empty() {
            "ok"
        } else {
            "failed"
        },
    );
}

fn hash_member(
    bundle: &Bundle,
    record: &BlobRecord,
    buf: &mut [u8],
    progress: &dyn Progress,
) -> std::io::Result<(Digest, u64)> {
    let member = bundle
        .blob(&record.digest)
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "not in the bundle"))?;
    let mut reader = bundle.container().reader();
    std::io::Seek::seek(&mut reader, std::io::SeekFrom::Start(member.offset))?;
    let mut reader = reader.take(member.size);
    let mut hasher = Hasher::new(record.digest.algorithm());
    loop {
        let n = reader.read(buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        progress.advance("verify", n as u64);
    }
    let size = hasher.bytes();
    Ok((hasher.finish(), size))
}
