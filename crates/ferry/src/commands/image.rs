//! `ferry image build|import|schema`: OS images built offline from an OCI
//! image (crates/ferry-image).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};

use ferry_image::import::LayerCompression;
use ferry_image::source::Platform;

use crate::cli::GlobalArgs;
use crate::exit::UserError;
use crate::output::{human_bytes, print_json};
use crate::progress::Bars;

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Turn a root filesystem tarball (mmdebstrap, debootstrap, dnf
    /// --installroot) into a single-layer OS image in ferry's store.
    Import(ImportArgs),
    /// Print the JSON schema of image.yaml.
    Schema,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The rootfs tarball (uncompressed tar), or - for standard input.
    pub tarball: PathBuf,
    /// Where it goes in ferry's store: REPOSITORY:TAG (e.g. os/debian:12).
    #[arg(long, value_name = "REPO:TAG")]
    pub tag: String,
    /// Platform recorded in the image's config.
    #[arg(long, default_value = "linux/amd64", value_name = "OS/ARCH")]
    pub platform: Platform,
    /// How the layer is compressed in the store.
    #[arg(long, value_enum, default_value_t = Compression::Zstd)]
    pub compression: Compression,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Compression {
    Zstd,
    Gzip,
}

pub async fn run(global: &GlobalArgs, command: ImageCommand) -> anyhow::Result<ExitCode> {
    match command {
        ImageCommand::Import(args) => import_cmd(global, args).await,
        ImageCommand::Schema => {
            print_json(&ferry_image::spec::ImageSpec::json_schema())?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// SOURCE_DATE_EPOCH (reproducible builds' convention), else now.
pub fn source_date_epoch() -> anyhow::Result<i64> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(text) => text
            .trim()
            .parse::<i64>()
            .ok()
            .filter(|s| *s >= 0)
            .ok_or_else(|| {
                UserError::new(format!(
                    "SOURCE_DATE_EPOCH={text:?} is not a number of seconds since 1970"
                ))
                .into()
            }),
        Err(_) => Ok(time::OffsetDateTime::now_utc().unix_timestamp()),
    }
}

async fn import_cmd(global: &GlobalArgs, args: ImportArgs) -> anyhow::Result<ExitCode> {
    let store = crate::commands::registry::open_store(global)?;
    let created = source_date_epoch()?;
    let quiet = global.quiet || args.json;
    let name = args.tarball.display().to_string();
    let mut input: Box<dyn std::io::Read + Send> = if args.tarball == std::path::Path::new("-") {
        Box::new(std::io::stdin())
    } else {
        Box::new(
            std::fs::File::open(&args.tarball)
                .map_err(|e| UserError::new(format!("cannot read {name}: {e}")))?,
        )
    };
    let compression = match args.compression {
        Compression::Zstd => LayerCompression::Zstd,
        Compression::Gzip => LayerCompression::Gzip,
    };
    let tag = args.tag.clone();
    let platform = args.platform.clone();
    let report = tokio::task::spawn_blocking(move || {
        let bars = Bars::new(quiet, "import", None);
        let report = ferry_image::import::import(
            &store,
            &mut input,
            &name,
            &tag,
            &platform,
            compression,
            created,
            &bars,
        );
        bars.finish();
        report
    })
    .await?
    .map_err(UserError::from_error)?;
    if args.json {
        print_json(&report)?;
    } else {
        println!(
            "imported {} ({}): {} entries, {} tar, {} layer",
            report.reference,
            report.manifest_digest,
            report.entries,
            human_bytes(report.tar_bytes),
            human_bytes(report.layer_bytes)
        );
    }
    Ok(ExitCode::SUCCESS)
}
