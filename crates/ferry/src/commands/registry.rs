//! `ferry registry fsck|gc`: maintenance of the embedded registry's store.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};

use ferry_store::{GcOptions, Limits, Store};

use crate::cli::GlobalArgs;
use crate::exit::{ProblemFound, UserError};
use crate::output::{human_bytes, print_json, state_dir};
use crate::progress::Bars;

#[derive(Debug, Subcommand)]
pub enum RegistryCommand {
    /// Verify every blob's digest and every manifest's references.
    Fsck(FsckArgs),
    /// Remove blobs that no manifest references. Safe while `ferry serve`
    /// runs on the store: the server then does the collection itself.
    Gc(GcArgs),
}

#[derive(Debug, Args)]
pub struct FsckArgs {
    /// Move corrupt blobs to the store's quarantine/ directory, so they
    /// are no longer served and the next push or import stores them again.
    #[arg(long)]
    repair: bool,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct GcArgs {
    /// Keep unreferenced blobs younger than this many seconds (uploads
    /// whose manifest is still to come), and upload sessions that received
    /// data within it; older sessions are abandoned and removed.
    #[arg(long, default_value_t = 3600, value_name = "SECONDS")]
    grace: u64,
    /// Show what would be removed, remove nothing.
    #[arg(long)]
    dry_run: bool,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// User for a server started with --htpasswd.
    #[arg(long, env = "FERRY_REGISTRY_USERNAME", requires = "password")]
    username: Option<String>,
    /// Password for --username.
    #[arg(long, env = "FERRY_REGISTRY_PASSWORD", hide_env_values = true)]
    password: Option<String>,
}

pub fn open_store(global: &GlobalArgs) -> anyhow::Result<Store> {
    open_store_with(global, Limits::default())
}

/// Opens the registry store in the state directory. A state directory
/// that cannot be created or written is the user's to fix: a user error
/// naming `--state`.
pub fn open_store_with(global: &GlobalArgs, limits: Limits) -> anyhow::Result<Store> {
    let root = state_dir(global).join("registry");
    let context = format!("cannot open the registry store at {}", root.display());
    Store::open(&root, limits).map_err(|e| match &e {
        ferry_store::StoreError::Io { source, .. } if is_unwritable(source) => UserError::new(
            format!("{context}: {source}"),
        )
        .with_hint(
            "the state directory must be writable: choose one with --state DIR or FERRY_STATE",
        )
        .into(),
        _ => anyhow::Error::new(e).context(context),
    })
}

/// Whether an I/O error says the path cannot be written by this user.
fn is_unwritable(e: &std::io::Error) -> bool {
    use std::io::ErrorKind as K;
    matches!(
        e.kind(),
        K::PermissionDenied | K::ReadOnlyFilesystem | K::NotADirectory
    )
}

pub async fn run(global: &GlobalArgs, command: RegistryCommand) -> anyhow::Result<ExitCode> {
    let store = open_store(global)?;
    let quiet = global.quiet;
    match command {
        RegistryCommand::Fsck(args) => {
            let report = tokio::task::spawn_blocking(move || {
                let bars = Bars::new(quiet || args.json, "fsck", None);
                let on_blob = |bytes| ferry_oci::progress::Progress::advance(&bars, "", bytes);
                let report = if args.repair {
                    store.fsck_and_repair(&on_blob)
                } else {
                    store.fsck(&on_blob)
                };
                bars.finish();
                report
            })
            .await??;
            if args.json {
                print_json(&report)?;
            } else {
                if !quiet {
                    println!(
                        "checked {} blobs ({}) and {} manifests",
                        report.blobs_checked,
                        human_bytes(report.bytes_checked),
                        report.manifests_checked
                    );
                }
                // The findings: printed even with -q.
                for c in &report.corrupt_blobs {
                    println!("corrupt blob {}: content hashes to {}", c.digest, c.actual);
                    if let Some(path) = &c.quarantined {
                        println!("  quarantined: moved to {path}; push or import it again");
                    }
                }
                for p in &report.problems {
                    println!("{}: {}", p.repository, p.what);
                }
                if !args.repair && !report.corrupt_blobs.is_empty() {
                    println!(
                        "`ferry registry fsck --repair` takes corrupt blobs out of service so that a push or import stores them again"
                    );
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
            let report = match crate::commands::serve::running_server(store.root()) {
                Some(server) => gc_through_server(&server, &args).await?,
                None => {
                    let options = GcOptions {
                        grace: Duration::from_secs(args.grace),
                        dry_run: args.dry_run,
                    };
                    tokio::task::spawn_blocking(move || store.gc(&options)).await??
                }
            };
            if args.json {
                print_json(&report)?;
            } else if !quiet {
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

/// Asks the server that holds the store to collect: it alone sees the
/// uploads and pushes in flight. The server is on this machine; its TLS
/// certificate is the site CA's (`--tls auto`) or the operator's, so the
/// loopback call does not verify it.
async fn gc_through_server(
    server: &crate::commands::serve::ServeInfo,
    args: &GcArgs,
) -> anyhow::Result<ferry_store::GcReport> {
    tracing::info!(url = %server.url, pid = server.pid, "a ferry serve holds the store; collecting through it");
    let tls = ferry_client::tls::insecure_config().context("cannot set up TLS")?;
    let http = reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .build()
        .context("cannot set up an HTTP client")?;
    let mut request = http.post(format!(
        "{}{}?grace={}&dry_run={}",
        server.url,
        ferry_registry::admin::GC_PATH,
        args.grace,
        args.dry_run
    ));
    if let (Some(user), Some(password)) = (&args.username, &args.password) {
        request = request.basic_auth(user, Some(password));
    }
    let response = request
        .send()
        .await
        .with_context(|| format!("cannot reach the ferry serve at {}", server.url))?;
    let status = response.status();
    if status == reqwest::StatusCode::FORBIDDEN || status == reqwest::StatusCode::UNAUTHORIZED {
        let refused = UserError::new(format!(
            "the ferry serve at {} refused ({status})",
            server.url
        ));
        return Err(if args.username.is_some() {
            refused.with_hint(
                "check the user and password: the server takes the users of its --htpasswd file",
            )
        } else {
            refused.with_hint("the server runs with --htpasswd: give --username and --password")
        }
        .into());
    }
    if !response.status().is_success() {
        anyhow::bail!(
            "the server answered {}: {}",
            response.status(),
            response.text().await.unwrap_or_default()
        );
    }
    response
        .json()
        .await
        .context("the server's GC report is unreadable")
}
