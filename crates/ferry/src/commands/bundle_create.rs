//! `ferry bundle create` and `ferry bundle keygen`: making a bundle from a
//! spec file, and the minisign key pair that signs it.
//!
//! Creation runs in three phases, each with its own progress bars:
//! resolving the spec (manifests, conversions), downloading what the cache
//! lacks, writing the file. Then a summary (entries, blobs, bytes,
//! downloads, what deduplication and a `--since` base saved).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use clap::Args;

use ferry_bundle::cache::ContentCache;
use ferry_bundle::create::{self, CreateError, CreateOptions, HostOverride};
use ferry_bundle::sign::{self, SecretKey};
use ferry_bundle::spec::{PlatformFilter, Spec};
use ferry_bundle::writer::{WriteError, WriteOptions};

use crate::cli::GlobalArgs;
use crate::exit::{UserError, with_hint};
use crate::output::{human_bytes, print_json, state_dir};
use crate::progress::Bars;

#[derive(Debug, Args)]
pub struct BundleCreateArgs {
    /// The spec file (see docs/bundle.md).
    #[arg(
        short = 'f',
        long = "file",
        value_name = "FERRY_YAML",
        default_value = "ferry.yaml"
    )]
    pub file: PathBuf,
    /// The bundle to write (with --split: the name of its parts).
    #[arg(short, long, value_name = "FILE")]
    pub output: PathBuf,
    /// Keep only this platform of multi-platform images (repeatable;
    /// replaces the spec's `platforms`).
    #[arg(long = "platform", value_name = "OS/ARCH[/VARIANT]")]
    pub platforms: Vec<PlatformFilter>,
    /// Write parts of this size (4G, 700M, 1048576): FILE.000, FILE.001, ...
    /// that concatenate back to the bundle.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub split: Option<u64>,
    /// Write ferry's own executable followed by the bundle: one file that
    /// runs `push`, `inspect` and `serve` on a machine without ferry.
    #[arg(long, conflicts_with = "split")]
    pub self_extracting: bool,
    /// Make a delta: leave out every blob this earlier bundle carries.
    #[arg(long, value_name = "OLD_BUNDLE")]
    pub since: Option<PathBuf>,
    /// Sign with this minisign secret key (from `ferry bundle keygen`).
    #[arg(long, value_name = "KEY")]
    pub sign: Option<PathBuf>,
    /// Creation time to record (RFC 3339). Default: $SOURCE_DATE_EPOCH if
    /// set, else none, so that the same inputs give the same bytes.
    #[arg(long, value_name = "RFC3339")]
    pub created: Option<String>,
    /// Downloads at the same time.
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub concurrency: usize,
    /// Skip TLS verification for this source host (falls back to plain
    /// HTTP for a registry without TLS). Repeatable.
    #[arg(long = "insecure-registry", value_name = "HOST[:PORT]")]
    pub insecure: Vec<String>,
    /// This source registry speaks plain HTTP. Repeatable.
    #[arg(long = "plain-http", value_name = "HOST[:PORT]")]
    pub plain_http: Vec<String>,
    /// Trust this PEM CA file for a source host. Repeatable.
    #[arg(long = "ca-file", value_name = "HOST=FILE", value_parser = parse_pair)]
    pub ca_files: Vec<(String, String)>,
    /// Credentials for a source host (visible to other local users in the
    /// process list: prefer `docker login` or --authfile). Repeatable.
    #[arg(long = "creds", value_name = "HOST=USER:PASSWORD", value_parser = parse_pair)]
    pub creds: Vec<(String, String)>,
    /// Read registry credentials from this file (Docker's config.json
    /// format) instead of the `docker login` / `podman login` ones.
    #[arg(long, value_name = "FILE")]
    pub authfile: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Write OUT.key (secret, mode 0600) and OUT.pub.
    #[arg(short, long, value_name = "OUT", default_value = "ferry")]
    pub output: PathBuf,
}

/// The shell's exit code for a command ended by SIGINT (128 + 2).
const INTERRUPTED: u8 = 130;

/// `4G`, `700M`, `512K`, `1048576` (binary units; `GiB`, `G`, `GB` alike).
fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let digits = t.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = t[digits.len()..].to_ascii_uppercase();
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a size like 4G, 700M or 1048576"))?;
    let shift = match unit.trim_end_matches('B').trim_end_matches('I') {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        _ => return Err(format!("{s:?}: unknown unit (use K, M, G or T)")),
    };
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("{s:?} is too large"))
}

fn parse_pair(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .filter(|(a, b)| !a.is_empty() && !b.is_empty())
        .ok_or_else(|| format!("{s:?} is not HOST=VALUE"))
}

/// The creation time: `--created`, else `$SOURCE_DATE_EPOCH`
/// (reproducible-builds.org/specs/source-date-epoch), else none; one the
/// bundle cannot record is refused here, before any work.
fn created(arg: Option<&str>) -> anyhow::Result<Option<i64>> {
    let (epoch, from) = if let Some(text) = arg {
        let t = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
            .map_err(|e| {
            UserError::new(format!("--created {text:?} is not an RFC 3339 time: {e}"))
                .with_hint("for example --created 2025-06-01T00:00:00Z")
        })?;
        (t.unix_timestamp(), format!("--created {text}"))
    } else {
        match std::env::var("SOURCE_DATE_EPOCH") {
            Ok(v) if !v.is_empty() => {
                let epoch = v.trim().parse().map_err(|_| {
                    UserError::new(format!(
                        "SOURCE_DATE_EPOCH={v:?} is not a number of seconds since 1970"
                    ))
                })?;
                (epoch, format!("SOURCE_DATE_EPOCH={v}"))
            }
            _ => return Ok(None),
        }
    };
    ferry_bundle::writer::creation_time(epoch)
        .map_err(|e| UserError::new(format!("{from}: {e}")))?;
    Ok(Some(epoch))
}

fn host_overrides(args: &BundleCreateArgs) -> anyhow::Result<BTreeMap<String, HostOverride>> {
    let mut hosts: BTreeMap<String, HostOverride> = BTreeMap::new();
    for h in &args.insecure {
        hosts.entry(h.clone()).or_default().insecure = true;
    }
    for h in &args.plain_http {
        hosts.entry(h.clone()).or_default().plain_http = true;
    }
    for (h, file) in &args.ca_files {
        hosts
            .entry(h.clone())
            .or_default()
            .ca_files
            .push(PathBuf::from(file));
    }
    for (h, creds) in &args.creds {
        let (user, password) = creds
            .split_once(':')
            .ok_or_else(|| UserError::new(format!("--creds {h}=...: expected USER:PASSWORD")))?;
        hosts.entry(h.clone()).or_default().credentials =
            Some((user.to_string(), password.to_string()));
    }
    Ok(hosts)
}

/// A creation error as the user sees it: typed, so that [`crate::exit`]
/// classifies it and hints at the flags that apply (`--creds`,
/// `--plain-http` only for a registry's refusal); plus the hints only this
/// command knows.
fn user_facing(error: CreateError) -> anyhow::Error {
    match &error {
        CreateError::Base { .. } => with_hint(
            error,
            "--since needs the earlier bundle, complete (all of its parts)",
        ),
        CreateError::Write(WriteError::SplitTooSmall) => {
            with_hint(error, "use --split 4G or similar")
        }
        _ => anyhow::Error::new(error),
    }
}

pub async fn run(global: &GlobalArgs, args: BundleCreateArgs) -> anyhow::Result<ExitCode> {
    let spec = Spec::load(&args.file)?;
    let spec_dir = match args.file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let signer = match &args.sign {
        Some(path) => Some(SecretKey::load(path).map_err(|e| {
            UserError::new(format!("--sign: {e}"))
                .with_hint("make a key pair with `ferry bundle keygen -o NAME`")
        })?),
        None => None,
    };
    let key_id = signer.as_ref().map(SecretKey::key_id);
    let options = CreateOptions {
        platforms: (!args.platforms.is_empty()).then(|| args.platforms.clone()),
        hosts: host_overrides(&args)?,
        auth_files: args.authfile.iter().cloned().collect(),
        concurrency: args.concurrency.max(1),
        retry: None,
        since: args.since.clone(),
        created: created(args.created.as_deref())?,
    };
    let cancel = Arc::new(AtomicBool::new(false));
    let write_options = WriteOptions {
        split: args.split,
        self_extracting: if args.self_extracting {
            Some(std::env::current_exe().context("finding ferry's own executable")?)
        } else {
            None
        },
        signer: signer.map(sign::signer),
        cancel: Some(cancel.clone()),
    };
    let cache_dir = state_dir(global).join("cache");
    let cache = ContentCache::open(&cache_dir)
        .with_context(|| format!("cannot open the content cache at {}", cache_dir.display()))?;
    let quiet = global.quiet || args.json;

    let bars = Bars::new(quiet, "resolve", None);
    let resolution = create::resolve(&spec, &spec_dir, &options, &cache, &bars).await;
    bars.finish();
    let resolution = resolution.map_err(user_facing)?;

    let missing = resolution.missing().map_err(user_facing)?;
    let bars = Bars::new(
        quiet,
        "download",
        Some(missing.iter().map(|(d, _)| d.size).sum()),
    );
    let fetch = resolution.fetch(options.concurrency, &bars).await;
    bars.finish();
    let fetch = fetch.map_err(user_facing)?;

    let bars = Bars::new(quiet, "write", Some(resolution.bundle_bytes()));
    let write = create::blocking_write(
        resolution.plan(),
        cache.store().clone(),
        args.output.clone(),
        write_options,
        &bars,
    );
    // From here on Ctrl-C stops the writer, which removes its `.partial`
    // file(s), instead of killing the process with them on disk. (Before,
    // an interrupted download resumes on the next run: nothing to clean.)
    tokio::pin!(write);
    let write = tokio::select! {
        write = &mut write => write,
        _ = tokio::signal::ctrl_c() => {
            cancel.store(true, Ordering::Relaxed);
            write.await
        }
    };
    bars.finish();
    if let Err(CreateError::Write(WriteError::Cancelled)) = write {
        eprintln!(
            "interrupted: {} was not written, and its partial file was removed",
            args.output.display()
        );
        return Ok(ExitCode::from(INTERRUPTED));
    }
    let write = write.map_err(user_facing)?;

    let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
    for e in &resolution.entries {
        *kinds.entry(e.entry.kind.as_str()).or_default() += 1;
    }
    if args.json {
        print_json(&serde_json::json!({
            "files": write.files,
            "bytes": write.bytes,
            "entries": resolution.entries.len(),
            "kinds": kinds,
            "blobs": write.blobs,
            "blob_bytes": write.blob_bytes,
            "bytes_before_dedup": write.bytes_before_dedup,
            "base_blobs": write.base_blobs,
            "base_bytes": write.base_bytes,
            "fetch": fetch,
            "signed_by": key_id,
        }))?;
        return Ok(ExitCode::SUCCESS);
    }
    if !global.quiet {
        print_summary(&args, &write, &fetch, &kinds, key_id.as_deref());
    }
    Ok(ExitCode::SUCCESS)
}

fn print_summary(
    args: &BundleCreateArgs,
    write: &ferry_bundle::writer::WriteReport,
    fetch: &create::FetchReport,
    kinds: &BTreeMap<&str, usize>,
    key_id: Option<&str>,
) {
    let entries: usize = kinds.values().sum();
    let kinds = kinds
        .iter()
        .map(|(k, n)| format!("{n} {k}{}", if *n == 1 { "" } else { "s" }))
        .collect::<Vec<_>>()
        .join(", ");
    match write.files.as_slice() {
        [one] => println!("wrote {} ({})", one.display(), human_bytes(write.bytes)),
        many => {
            println!(
                "wrote {} parts ({} in all):",
                many.len(),
                human_bytes(write.bytes)
            );
            for f in many {
                println!("  {}", f.display());
            }
        }
    }
    println!("  {entries} entries: {kinds}");
    println!(
        "  {} blobs, {}; storing shared blobs once saved {}",
        write.blobs,
        human_bytes(write.blob_bytes),
        human_bytes(write.bytes_before_dedup.saturating_sub(write.blob_bytes))
    );
    println!(
        "  fetched {} blobs ({}); {} blobs ({}) needed no fetching (cached, or local files)",
        fetch.blobs_fetched,
        human_bytes(fetch.bytes_fetched),
        fetch.blobs_cached,
        human_bytes(fetch.bytes_cached)
    );
    if let Some(base) = &args.since {
        println!(
            "  delta on {}: {} blobs ({}) left out (in the base; the target must have them)",
            base.display(),
            write.base_blobs,
            human_bytes(write.base_bytes)
        );
    }
    if let Some(id) = key_id {
        println!("  signed with key {id}");
    }
    if args.self_extracting {
        println!(
            "  run it on the site: ./{} push REGISTRY",
            file_name(&args.output)
        );
    }
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

pub async fn run_keygen(global: &GlobalArgs, args: KeygenArgs) -> anyhow::Result<ExitCode> {
    let files = sign::keygen(&args.output)?;
    let public = std::fs::read_to_string(&files.public)
        .with_context(|| format!("reading back {}", files.public.display()))?;
    if global.quiet {
        return Ok(ExitCode::SUCCESS);
    }
    println!("secret key {} (keep it private)", files.secret.display());
    println!("public key {}", files.public.display());
    println!("key id     {}", files.key_id);
    println!(
        "public key line, for runbooks and `minisign -P`: {}",
        public.lines().nth(1).unwrap_or_default()
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4G"), Ok(4 << 30));
        assert_eq!(parse_size("700M"), Ok(700 << 20));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("2gb"), Ok(2 << 30));
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert!(parse_size("4X").is_err());
        assert!(parse_size("G").is_err());
        assert!(parse_size("99999999999T").is_err());
    }

    #[test]
    fn creation_time() {
        assert_eq!(
            created(Some("2023-11-14T22:13:20Z")).unwrap(),
            Some(1_700_000_000)
        );
        assert!(created(Some("yesterday")).is_err());
    }
}
