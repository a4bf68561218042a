//! `ferry copy`: images from an OCI image layout directory into a
//! registry, with the same engine as `ferry bundle push` (parallel,
//! HEAD-skip, mounts, resumable uploads, exact digests).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;

use ferry_bundle::format::{Entry, EntryKind};
use ferry_bundle::layout::LayoutContent;
use ferry_bundle::push::{PushOptions, Target};
use ferry_oci::layout::OciLayout;
use ferry_oci::name;

use crate::cli::GlobalArgs;
use crate::commands::bundle::{RegistryAccess, client_for};
use crate::exit::UserError;
use crate::output::{human_bytes, print_json};
use crate::progress::Bars;

#[derive(Debug, Args)]
pub struct CopyArgs {
    /// `oci:DIR:NAME` (one image of a layout), or `oci:DIR` with --all-tags.
    pub source: String,
    /// `docker://HOST[:PORT]/REPO[:TAG]`; with --all-tags `docker://HOST[:PORT][/PREFIX]`,
    /// each image landing at PREFIX/NAME:latest (or PREFIX/REPO:TAG for names like REPO:TAG).
    pub destination: String,
    /// Copy every named image of the layout.
    #[arg(long)]
    pub all_tags: bool,
    #[command(flatten)]
    pub access: RegistryAccess,
    /// Blobs pushed at the same time.
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub concurrency: usize,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(global: &GlobalArgs, args: CopyArgs) -> anyhow::Result<ExitCode> {
    let source = args.source.strip_prefix("oci:").ok_or_else(|| {
        UserError::new(format!(
            "{}: the source must be oci:DIR[:NAME]",
            args.source
        ))
    })?;
    let destination = args.destination.strip_prefix("docker://").ok_or_else(|| {
        UserError::new(format!(
            "{}: the destination must be docker://HOST/REPO[:TAG]",
            args.destination
        ))
    })?;
    let (dir, wanted) = if args.all_tags {
        (source.to_string(), None)
    } else {
        match source.split_once(':') {
            Some((dir, name)) => (dir.to_string(), Some(name.to_string())),
            None => {
                return Err(
                    UserError::new("name the image: oci:DIR:NAME, or use --all-tags").into(),
                );
            }
        }
    };
    let layout = OciLayout::open(&PathBuf::from(&dir))?;
    let (target, entries) = if let Some(name) = wanted {
        let descriptor = layout
            .find(&name)
            .ok_or_else(|| UserError::new(format!("{dir} has no image named {name:?}")))?;
        let (registry, rest) = destination
            .split_once('/')
            .ok_or_else(|| UserError::new(format!("{destination}: expected HOST/REPO[:TAG]")))?;
        let (repo, tag) = split_tag(rest);
        let entry = entry(&dir, &name, repo, tag.unwrap_or("latest"), descriptor)?;
        (
            Target {
                registry: registry.to_string(),
                prefix: String::new(),
            },
            vec![entry],
        )
    } else {
        let target: Target = destination.parse().map_err(UserError::new)?;
        let mut entries = Vec::new();
        for (name, descriptor) in layout.named() {
            let (repo, tag) = split_tag(name);
            entries.push(entry(
                &dir,
                name,
                repo,
                tag.unwrap_or("latest"),
                descriptor,
            )?);
        }
        (target, entries)
    };
    let client = client_for(&target.registry, &args.access)?;
    let content = Arc::new(LayoutContent { layout, entries });
    let options = PushOptions {
        concurrency: args.concurrency.max(1),
        ..PushOptions::default()
    };
    let bars = Arc::new(Bars::new(global.quiet || args.json, "copy", None));
    let result = ferry_bundle::push::push(content, &client, &target, &options, bars.clone()).await;
    bars.finish();
    let report = result.with_context(|| format!("copy to {} failed", args.destination))?;
    if args.json {
        print_json(&report)?;
    } else if !global.quiet {
        for t in &report.tags {
            println!("{:<11} {}", t.outcome, t.reference);
        }
        println!(
            "{} blobs uploaded ({}), {} already there, {} mounted, in {:.1}s",
            report.blobs_uploaded,
            human_bytes(report.bytes_sent),
            report.blobs_skipped,
            report.blobs_mounted,
            report.seconds
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `repo:tag` -> (`repo`, `tag`); a ':' inside a path component with a
/// port (`host:5000/x`) is not a tag.
fn split_tag(s: &str) -> (&str, Option<&str>) {
    match s.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => (repo, Some(tag)),
        _ => (s, None),
    }
}

fn entry(
    dir: &str,
    name: &str,
    repo: &str,
    tag: &str,
    descriptor: &ferry_oci::Descriptor,
) -> anyhow::Result<Entry> {
    if !name::is_valid_repository(repo) || !name::is_valid_tag(tag) {
        return Err(
            UserError::new(format!("{repo}:{tag} is not a valid repository and tag")).into(),
        );
    }
    let mut descriptor = descriptor.clone();
    descriptor.annotations = None;
    descriptor.platform = None;
    Ok(Entry {
        kind: EntryKind::Image,
        source: format!("oci:{dir}:{name}"),
        repository: repo.to_string(),
        tag: Some(tag.to_string()),
        descriptor,
        platforms: Vec::new(),
    })
}
