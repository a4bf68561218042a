//! `ferry registry fsck|gc`: maintenance of the embedded registry's store.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};

use ferry_store::{GcOptions, Limits, Store};

use crate::cli::GlobalArgs;
use crate::exit::ProblemFound;
use crate::output::{human_bytes, print_json, state_dir};
use crate::progress::Bars;

#[derive(Debug, Subcommand)]
pub enum RegistryCommand {
    /// Verify every blob's digest and every manifest's references.
    Fsck(FsckArgs),
    /// Remove blobs that no manifest references (safe while `ferry serve` runs
    /// on the same store only through its API; see `--help`).
    Gc(GcArgs),
}

#[derive(Debug, Args)]
pub struct FsckArgs {
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct GcArgs {
    /// Keep unreferenced blobs younger than this many seconds (uploads
    /// whose manifest is still to come).
    #[arg(long, default_value_t = 3600, value_name = "SECONDS")]
    grace: u64,
    /// Show what would be removed, remove nothing.
    #[arg(long)]
    dry_run: bool,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

pub fn open_store(global: &GlobalArgs) -> anyhow::Result<Store> {
    let root = state_dir(global).join("registry");
    Store::open(&root, Limits::default())
        .with_context(|| format!("cannot open the registry store at {}", root.display()))
}

pub async fn run(global: &GlobalArgs, command: RegistryCommand) -> anyhow::Result<ExitCode> {
    let store = open_store(global)?;
    let quiet = global.quiet;
    match command {
        RegistryCommand::Fsck(args) => {
            let report = tokio::task::spawn_blocking(move || {
                let bars = Bars::new(quiet || args.json, "fsck", None);
                let report =
                    store.fsck(&|bytes| ferry_oci::progress::Progress::advance(&bars, "", bytes));
                bars.finish();
                report
            })
            .await??;
            if args.json {
                print_json(&report)?;
            } else {
                println!(
                    "checked {} blobs ({}) and {} manifests",
                    report.blobs_checked,
                    human_bytes(report.bytes_checked),
                    report.manifests_checked
                );
                for c in &report.corrupt_blobs {
                    println!("corrupt blob {}: content hashes to {}", c.digest, c.actual);
                }
                for p in &report.problems {
                    println!("{}: {}", p.repository, p.what);
                }
            }
            if report.is_clean() {
                Ok(ExitCode::SUCCESS)
            } else {
                Err(ProblemFound(format!(
                    "{} corrupt blobs, {} metadata problems",
                    report.corrupt_blobs.len(),
                    report.problems.len()
                ))
                .into())
            }
        }
        RegistryCommand::Gc(args) => {
            let options = GcOptions {
                grace: Duration::from_secs(args.grace),
                dry_run: args.dry_run,
                ..GcOptions::default()
            };
            let report = tokio::task::spawn_blocking(move || store.gc(&options)).await??;
            if args.json {
                print_json(&report)?;
            } else {
                let verb = if report.dry_run {
                    "would remove"
                } else {
                    "removed"
                };
                println!(
                    "marked {} blobs from {} manifests; {verb} {} blobs ({}), {} stale uploads, {} dangling links",
                    report.blobs_marked,
                    report.manifests_marked,
                    report.blobs_deleted.len(),
                    human_bytes(report.bytes_freed),
                    report.uploads_purged,
                    report.links_removed
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
