//! `ferry bundle inspect|verify|push`: reading and loading bundles.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};

use ferry_bundle::push::{OnExistingTag, PushOptions, Target};
use ferry_bundle::{Bundle, inspect, verify};
use ferry_client::{Client, ClientOptions, Credentials, HostConfig, HostSecurity, ResumeStore};

use crate::cli::GlobalArgs;
use crate::exit::{ProblemFound, UserError};
use crate::output::{human_bytes, print_json, print_table, state_dir};
use crate::progress::Bars;

#[derive(Debug, Subcommand)]
pub enum BundleCommand {
    /// Make a bundle from a spec file (ferry.yaml).
    Create(super::bundle_create::BundleCreateArgs),
    /// Make a minisign key pair for signing bundles.
    Keygen(super::bundle_create::KeygenArgs),
    /// List what a bundle carries (instant: reads no blob).
    Inspect(InspectArgs),
    /// Check every digest and size in a bundle (and its signature).
    Verify(VerifyArgs),
    /// Push a bundle into an OCI registry, straight from the file.
    Push(PushArgs),
    /// Load a bundle into ferry's embedded registry store (no HTTP).
    Import(ImportArgs),
    /// Serve a bundle as a read-only registry, straight from the file.
    Serve(ServeArgs),
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    pub bundle: PathBuf,
    /// Put every repository under this path prefix.
    #[arg(long, default_value = "", value_name = "PREFIX")]
    pub prefix: String,
    /// Hash the store's copy of every blob the bundle needs again, and
    /// replace one whose bytes went bad with the bundle's (repairs what
    /// `ferry registry fsck` reports as corrupt).
    #[arg(long)]
    pub repair: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    pub bundle: PathBuf,
    /// Address and port to listen on (`:PORT` for every address).
    #[arg(long, default_value = "0.0.0.0:5000", value_name = "ADDR:PORT", value_parser = super::parse_listen)]
    pub listen: std::net::SocketAddr,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The bundle (a .ferry file, the first of its split parts, or a self-extracting file).
    pub bundle: PathBuf,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    pub bundle: PathBuf,
    /// Also check the bundle's minisign signature against this public key
    /// (a .pub file or the `RW...` key text); an unsigned bundle then fails.
    #[arg(long, value_name = "PUB")]
    pub key: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct PushArgs {
    pub bundle: PathBuf,
    /// Refuse to push unless the bundle is signed by this minisign public
    /// key (a .pub file or the `RW...` key text); checked before any byte is sent.
    #[arg(long, value_name = "PUB")]
    pub key: Option<String>,
    /// The registry: HOST[:PORT][/PREFIX]. docker.io/library/nginx:1.27
    /// lands at HOST/PREFIX/library/nginx:1.27.
    #[arg(long, value_name = "REGISTRY")]
    pub to: Target,
    /// Blobs pushed at the same time.
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub concurrency: usize,
    /// When a tag exists on the target with other content.
    #[arg(long, value_enum, default_value_t = ExistingTag::Overwrite)]
    pub on_existing_tag: ExistingTag,
    /// Rewrite repository paths: `--map library=mirror/library` (first match wins).
    #[arg(long = "map", value_name = "FROM=TO", value_parser = parse_map)]
    pub map: Vec<(String, String)>,
    #[command(flatten)]
    pub access: RegistryAccess,
    /// Where to write the relocated Kubernetes manifests and the containerd
    /// and k3s/RKE2 mirror configuration; a directory of an earlier push is
    /// replaced [default: ./<bundle file name without extension>-site, e.g.
    /// ./site-site for site.ferry, site.ferry.000 or site.run].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Check every blob and manifest on the target with its own request,
    /// even for entries whose tag already matches, and upload what is
    /// missing (repairs a registry that lost blobs).
    #[arg(long)]
    pub verify_target: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// How to reach a registry: TLS and credentials (`bundle push`, `copy`).
#[derive(Debug, Args)]
pub struct RegistryAccess {
    /// Skip TLS verification, or talk plain HTTP if the registry has no TLS.
    #[arg(long)]
    pub insecure: bool,
    /// Extra CA certificate (PEM) to trust for the registry.
    #[arg(long, value_name = "FILE")]
    pub ca_file: Vec<PathBuf>,
    /// Registry user (else from `podman login` / `docker login`).
    #[arg(long, env = "FERRY_REGISTRY_USERNAME", requires = "password")]
    pub username: Option<String>,
    /// Registry password.
    #[arg(
        long,
        env = "FERRY_REGISTRY_PASSWORD",
        requires = "username",
        hide_env_values = true
    )]
    pub password: Option<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ExistingTag {
    Skip,
    Overwrite,
    Fail,
}

fn parse_map(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(a, b)| {
            (
                a.trim_matches('/').to_string(),
                b.trim_matches('/').to_string(),
            )
        })
        .ok_or_else(|| format!("{s:?}: expected FROM=TO"))
}

pub async fn run(global: &GlobalArgs, command: BundleCommand) -> anyhow::Result<ExitCode> {
    match command {
        BundleCommand::Create(args) => super::bundle_create::run(global, args).await,
        BundleCommand::Keygen(args) => super::bundle_create::run_keygen(global, args).await,
        BundleCommand::Inspect(args) => inspect_cmd(args).await,
        BundleCommand::Verify(args) => verify_cmd(global, args).await,
        BundleCommand::Push(args) => push_cmd(global, args).await,
        BundleCommand::Import(args) => import_cmd(global, args).await,
        BundleCommand::Serve(args) => serve_cmd(global, args).await,
    }
}

/// Opens a bundle. Its errors keep their type: [`crate::exit`] tells
/// damage (exit 1) from a wrong path (exit 2).
pub async fn open(path: PathBuf) -> anyhow::Result<Bundle> {
    Ok(tokio::task::spawn_blocking(move || Bundle::open(&path)).await??)
}

async fn inspect_cmd(args: InspectArgs) -> anyhow::Result<ExitCode> {
    let bundle = open(args.bundle).await?;
    let report = inspect::inspect(&bundle)
        .with_context(|| format!("cannot list what {} carries", bundle.name()))?;
    if args.json {
        print_json(&report)?;
        return Ok(ExitCode::SUCCESS);
    }
    println!("bundle   {}", report.bundle);
    if let Some(name) = &report.name {
        println!("name     {name}");
    }
    println!(
        "made by  {}{}",
        report.tool,
        report
            .created
            .as_deref()
            .map(|c| format!(", {c}"))
            .unwrap_or_default()
    );
    println!("signed   {}", if report.signed { "yes" } else { "no" });
    if let Some(base) = &report.base {
        println!(
            "delta on {base} ({} blobs, {}, come from it)",
            report.base_blobs,
            human_bytes(report.base_bytes)
        );
    }
    println!();
    let rows: Vec<[String; 5]> = report
        .entries
        .iter()
        .map(|e| {
            [
                e.kind.as_str().to_string(),
                e.source.clone(),
                e.target.clone(),
                human_bytes(e.bytes),
                if e.platforms.is_empty() {
                    "-".to_string()
                } else {
                    e.platforms.join(",")
                },
            ]
        })
        .collect();
    print_table(
        ["KIND", "SOURCE", "TARGET", "SIZE", "PLATFORMS"],
        &rows,
        &[3],
    );
    println!();
    let saved = report.bytes_without_dedup.saturating_sub(report.blob_bytes);
    println!(
        "{} entries, {} unique blobs, {} ({} saved by storing shared blobs once); file {}",
        report.entries.len(),
        report.blobs,
        human_bytes(report.blob_bytes),
        human_bytes(saved),
        human_bytes(report.file_bytes)
    );
    Ok(ExitCode::SUCCESS)
}

async fn verify_cmd(global: &GlobalArgs, args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let bundle = open(args.bundle).await?;
    let quiet = global.quiet || args.json;
    let key = args.key.clone();
    let report = tokio::task::spawn_blocking(move || {
        let bars = Bars::new(quiet, "verify", None);
        let check = |manifest: &[u8], signature: &[u8]| {
            signature_check(key.as_deref().unwrap_or_default(), manifest, signature)
        };
        let report = verify::verify(
            &bundle,
            key.as_ref().map(|_| &check as verify::SignatureCheck<'_>),
            &bars,
        );
        bars.finish();
        report
    })
    .await?;
    if args.json {
        print_json(&report)?;
    } else {
        // The problems are the command's findings: printed even with -q.
        for p in &report.problems {
            println!("problem: {p}");
        }
        if !global.quiet {
            if let Some(signature) = &report.signature {
                println!("signature: {signature}");
            }
            println!(
                "{}: {} entries, {} blobs ({}) checked{}",
                report.bundle,
                report.entries,
                report.blobs_checked,
                human_bytes(report.bytes_checked),
                if report.is_ok() { ", all good" } else { "" }
            );
        }
    }
    if report.is_ok() {
        Ok(ExitCode::SUCCESS)
    } else {
        Err(ProblemFound(format!(
            "{} problem(s) in {}",
            report.problems.len(),
            report.bundle
        ))
        .into())
    }
}

/// A registry client for `registry` with the user's TLS and credential choices.
pub fn client_for(registry: &str, access: &RegistryAccess) -> anyhow::Result<Client> {
    let credentials = access.username.clone().zip(access.password.clone());
    let host = HostConfig {
        security: if access.insecure {
            HostSecurity::InsecureSkipVerify
        } else {
            HostSecurity::Verified
        },
        ca_files: access.ca_file.clone(),
        credentials: credentials.map(|(u, p)| Credentials::basic(u, p)),
    };
    let options = ClientOptions::from_environment().host(registry, host);
    Client::new(options).context("cannot set up the registry client")
}

/// Checks `signature` over `ferry/bundle.json` with minisign public key `key`.
fn signature_check(key: &str, manifest: &[u8], signature: &[u8]) -> Result<String, String> {
    ferry_bundle::sign::verify_signature(key, manifest, signature)
        .map(|v| format!("signed by key {} ({})", v.key_id, v.trusted_comment))
        .map_err(|e| e.to_string())
}

async fn push_cmd(global: &GlobalArgs, args: PushArgs) -> anyhow::Result<ExitCode> {
    let bundle = Arc::new(open(args.bundle.clone()).await?);
    if let Some(key) = &args.key {
        // Before anything is sent: a bad signature stops the push here.
        let signer = match &bundle.signature {
            None => Err("the bundle is not signed".to_string()),
            Some(sig) => signature_check(key, &bundle.manifest_bytes, sig),
        }
        .map_err(|why| ProblemFound(format!("{}: {why}; nothing was pushed", bundle.name())))?;
        if !args.json && !global.quiet {
            println!("{}: {signer}", bundle.name());
        }
    }
    // Before anything is sent: the site files must have somewhere to go.
    ferry_bundle::relocate::check_replaceable(&site_dir(&args)).map_err(site_files_error)?;
    let client = client_for(&args.to.registry, &args.access)?;
    let resume_dir = state_dir(global).join("push-resume");
    let resume = ResumeStore::open(&resume_dir)
        .with_context(|| format!("cannot use {} for resumable uploads", resume_dir.display()))?;
    let options = PushOptions {
        concurrency: args.concurrency.max(1),
        on_existing_tag: match args.on_existing_tag {
            ExistingTag::Skip => OnExistingTag::Skip,
            ExistingTag::Overwrite => OnExistingTag::Overwrite,
            ExistingTag::Fail => OnExistingTag::Fail,
        },
        repository_map: args.map.clone(),
        resume: Some(resume),
        verify_target: args.verify_target,
        ..PushOptions::default()
    };
    let bars = Arc::new(Bars::new(global.quiet || args.json, "push", None));
    let result =
        ferry_bundle::push::push(bundle.clone(), &client, &args.to, &options, bars.clone()).await;
    bars.finish();
    // The exit code follows from the error chain (exit.rs); a push that
    // stopped part way keeps what stopped it as its source.
    let report = result.with_context(|| format!("push to {} failed", args.to))?;
    let site = write_site_files(&bundle, &client, &args).await?;
    for warning in &site.warnings {
        eprintln!("warning: {warning}");
    }
    if args.json {
        print_json(&serde_json::json!({
            "push": report,
            "site_files": site.files,
            "site_warnings": site.warnings,
        }))?;
    } else if !global.quiet {
        for t in &report.tags {
            println!("{:<11} {}", t.outcome, t.reference);
        }
        println!(
            "pushed to {} in {:.1}s: {} blobs uploaded ({}{}), {}, {} mounted{}; {} manifests pushed, {} already there",
            report.target,
            report.seconds,
            report.blobs_uploaded,
            human_bytes(report.bytes_sent),
            if report.blobs_resumed > 0 {
                format!(", {} resumed", report.blobs_resumed)
            } else {
                String::new()
            },
            already_there(&report),
            report.blobs_mounted,
            if report.blobs_in_base > 0 {
                format!(", {} in the base (found there)", report.blobs_in_base)
            } else {
                String::new()
            },
            report.manifests_pushed,
            report.manifests_skipped
        );
        if !site.files.is_empty() {
            println!(
                "site files (relocated manifests, containerd hosts.toml, registries.yaml) under {}",
                site_dir(&args).display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// "12 already there (tag matched, not checked)": how the blobs the push
/// skipped were known to be there.
fn already_there(report: &ferry_bundle::push::PushReport) -> String {
    let (all, unchecked) = (report.blobs_skipped, report.blobs_unchecked);
    let how = if all == 0 {
        String::new()
    } else if unchecked == 0 {
        " (verified by HEAD)".to_string()
    } else if unchecked == all {
        " (tag matched, not checked)".to_string()
    } else {
        format!(
            " ({} verified by HEAD, {unchecked} tag matched, not checked)",
            all - unchecked
        )
    };
    format!("{all} already there{how}")
}

/// Where the site files go: `--out`, else `<bundle name>-site` in the
/// current directory, the name being the file's without a split part's
/// `.NNN` and without its extension (`site.ferry.000` -> `site-site`).
fn site_dir(args: &PushArgs) -> PathBuf {
    args.out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("{}-site", bundle_stem(&args.bundle))))
}

fn bundle_stem(bundle: &std::path::Path) -> String {
    let file = ferry_bundle::container::split_base(bundle).unwrap_or_else(|| bundle.into());
    file.file_stem()
        .map_or_else(|| "bundle".into(), |s| s.to_string_lossy().into_owned())
}

/// The relocated manifests and mirror configuration for what was pushed.
async fn write_site_files(
    bundle: &Bundle,
    client: &Client,
    args: &PushArgs,
) -> anyhow::Result<ferry_bundle::relocate::SiteFiles> {
    let ping = client.ping(&args.to.registry).await.with_context(|| {
        format!(
            "cannot reach {} to record how the site reaches it",
            args.to.registry
        )
    })?;
    let mut ca_pem = Vec::new();
    for file in &args.access.ca_file {
        let pem = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
        ca_pem.extend_from_slice(&pem);
        if !pem.ends_with(b"\n") {
            ca_pem.push(b'\n');
        }
    }
    let access = ferry_bundle::relocate::Access {
        skip_verify: args.access.insecure && ping.base_url.starts_with("https"),
        base_url: ping.base_url,
        ca_pem: (!ca_pem.is_empty()).then_some(ca_pem),
    };
    let out = site_dir(args);
    ferry_bundle::relocate::write_site_files(bundle, &args.to, &args.map, &access, &out)
        .map_err(site_files_error)
}

fn site_files_error(e: ferry_bundle::relocate::RelocateError) -> anyhow::Error {
    use ferry_bundle::relocate::RelocateError as E;
    match e {
        E::NotSiteFiles { .. } | E::NotADirectory { .. } => UserError::from_error(e)
            .with_hint("give another --out, or remove it yourself")
            .into(),
        other => anyhow::Error::from(other).context("writing the site files"),
    }
}

async fn import_cmd(global: &GlobalArgs, args: ImportArgs) -> anyhow::Result<ExitCode> {
    if !args.prefix.is_empty() && !ferry_oci::name::is_valid_repository(&args.prefix) {
        return Err(UserError::new(format!(
            "{:?} is not a valid repository prefix",
            args.prefix
        ))
        .into());
    }
    let bundle = open(args.bundle).await?;
    let name = bundle.name().to_string();
    let store = crate::commands::registry::open_store(global)?;
    let quiet = global.quiet || args.json;
    let prefix = args.prefix.clone();
    let repair = args.repair;
    let report = tokio::task::spawn_blocking(move || {
        let bars = Bars::new(quiet, "import", None);
        let report = ferry_bundle::import::import(&bundle, &store, &prefix, repair, &bars);
        bars.finish();
        report
    })
    .await?
    .with_context(|| format!("import of {name} failed"))?;
    if args.json {
        print_json(&report)?;
    } else if !global.quiet {
        for tag in &report.tags {
            println!("imported {tag}");
        }
        println!(
            "{} blobs imported ({}), {} already in the store ({}){}, {} manifests",
            report.blobs_imported,
            human_bytes(report.bytes),
            report.blobs_present,
            if report.present_verified {
                "re-hashed, intact"
            } else {
                "kept as they are, not checked"
            },
            if report.present_verified {
                format!(", {} damaged and repaired", report.blobs_repaired)
            } else {
                String::new()
            },
            report.manifests
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn serve_cmd(global: &GlobalArgs, args: ServeArgs) -> anyhow::Result<ExitCode> {
    let bundle = Arc::new(open(args.bundle).await?);
    let name = bundle.name().to_string();
    let entries: Vec<String> = bundle
        .manifest
        .entries
        .iter()
        .map(|e| match &e.tag {
            Some(tag) => format!("{}:{tag}", e.repository),
            None => format!(
                "{}@{} ({})",
                e.repository,
                e.descriptor.digest,
                e.kind.as_str()
            ),
        })
        .collect();
    let router =
        ferry_bundle::serve::router(bundle).with_context(|| format!("cannot serve {name}"))?;
    let listener = super::bind(args.listen).await?;
    let local = listener.local_addr()?;
    if !global.quiet {
        println!("ferry registry on http://{local} (read-only, from {name})");
        for e in entries {
            println!("  {e}");
        }
    }
    ferry_registry::server::serve(
        listener,
        router,
        None,
        crate::commands::serve::shutdown_signal(),
        std::time::Duration::from_secs(30),
    )
    .await?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_site_directory_is_named_after_the_bundle() {
        for (bundle, stem) in [
            ("site.ferry", "site"),
            ("/mnt/usb/site.ferry.000", "site"),
            ("site.run", "site"),
            ("release-2025.06.ferry", "release-2025.06"),
            ("bundle", "bundle"),
            (".hidden", ".hidden"),
        ] {
            assert_eq!(bundle_stem(std::path::Path::new(bundle)), stem, "{bundle}");
        }
    }
}
