//! `ferry image build|import|schema`: OS images built offline from an OCI
//! image (crates/ferry-image).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use ferry_image::build::{self, BuildRequest};
use ferry_image::import::LayerCompression;
use ferry_image::kubernetes::matrix::Matrix;
use ferry_image::kubernetes::preload::PreloadSource;
use ferry_image::source::{BaseImage, BaseRef, Blobs, BundleBlobs, Platform};
use ferry_image::spec::{Format, ImageSpec};

use crate::cli::GlobalArgs;
use crate::exit::UserError;
use crate::output::{human_bytes, print_json};
use crate::progress::Bars;

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Build OS images (squashfs, netboot set, live ISO, raw disk, qcow2,
    /// OVA) from an OS in OCI form, offline and without root.
    Build(BuildArgs),
    /// Turn a root filesystem tarball (mmdebstrap, debootstrap, dnf
    /// --installroot) into a single-layer OS image in ferry's store.
    Import(ImportArgs),
    /// Print the JSON schema of image.yaml.
    Schema,
    /// Print the Kubernetes compatibility matrix a build checks components
    /// against (ferry's own, or the file given).
    Matrix(MatrixArgs),
}

#[derive(Debug, Args)]
pub struct MatrixArgs {
    /// A matrix file to print instead of ferry's (checked as a build would).
    #[arg(long, value_name = "FILE")]
    pub matrix: Option<PathBuf>,
    /// Only this Kubernetes version's row.
    #[arg(long, value_name = "VERSION")]
    pub kubernetes: Option<String>,
    /// Print it as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// The base OS image: os/debian:12 (ferry's store),
    /// bundle:site.ferry[:REF], registry.site:5000/os/rocky:9,
    /// oci:DIR[:REF], oci-archive:FILE[:REF]. Replaces the spec's `base`.
    pub base: Option<String>,
    /// The spec (image.yaml); `ferry image schema` prints its JSON schema.
    #[arg(short = 'f', long = "file", value_name = "IMAGE.YAML")]
    pub file: Option<PathBuf>,
    /// The output directory (new or empty).
    #[arg(short = 'o', long = "output", value_name = "DIR")]
    pub output: PathBuf,
    /// Formats to build, replacing the spec's `formats` (default squashfs):
    /// squashfs, netboot, iso, raw, qcow2, ova.
    #[arg(long, value_delimiter = ',', value_name = "FORMAT,...")]
    pub format: Vec<Format>,
    /// Also store the netboot set in ferry's registry as REPO:TAG, the
    /// artifact `ferry netboot`'s `{oci: REPO:TAG}` source boots.
    #[arg(long, value_name = "REPO:TAG")]
    pub push: Option<String>,
    /// Platform taken from a multi-platform base (default: the spec's, else
    /// linux/amd64).
    #[arg(long, value_name = "OS/ARCH")]
    pub platform: Option<Platform>,
    /// Compression threads (default: every core).
    #[arg(long, value_name = "N")]
    pub processors: Option<usize>,
    /// Keep the scratch directory OUT/.ferry-build (to look at the staged tree).
    #[arg(long)]
    pub keep_work: bool,
    /// Print the build report (manifest.json) as JSON.
    #[arg(long)]
    pub json: bool,
    /// The Kubernetes compatibility matrix, replacing ferry's and the
    /// spec's `kubernetes.matrix` (`ferry image matrix` prints ferry's).
    #[arg(long, value_name = "FILE")]
    pub matrix: Option<PathBuf>,
    /// Build a Kubernetes node whose components do not fit the matrix;
    /// manifest.json records the mismatch.
    #[arg(long)]
    pub allow_mismatch: bool,
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
        ImageCommand::Build(args) => build_cmd(global, args).await,
        ImageCommand::Import(args) => import_cmd(global, args).await,
        ImageCommand::Schema => {
            print_json(&ferry_image::spec::ImageSpec::json_schema())?;
            Ok(ExitCode::SUCCESS)
        }
        ImageCommand::Matrix(args) => matrix_cmd(args),
    }
}

fn load_matrix(path: Option<&Path>) -> anyhow::Result<Matrix> {
    Ok(match path {
        Some(path) => Matrix::load(path).map_err(UserError::from_error)?,
        None => Matrix::shipped(),
    })
}

fn matrix_cmd(args: MatrixArgs) -> anyhow::Result<ExitCode> {
    let mut matrix = load_matrix(args.matrix.as_deref())?;
    if let Some(version) = &args.kubernetes {
        let row = matrix.row(version).map_err(UserError::from_error)?.clone();
        matrix.kubernetes = [(version.clone(), row)].into();
    }
    if args.json {
        print_json(&matrix)?;
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "Kubernetes compatibility matrix {} ({})",
        matrix.version, matrix.origin
    );
    println!(
        "{:<12} {:<12} {:<10} {:<12} {:<10} SANDBOX IMAGE",
        "KUBERNETES", "CONTAINERD", "RUNC", "CNI PLUGINS", "CRICTL"
    );
    for version in matrix.versions() {
        let row = &matrix.kubernetes[version];
        println!(
            "{:<12} {:<12} {:<10} {:<12} {:<10} {}",
            version, row.containerd, row.runc, row.cni_plugins, row.crictl, row.sandbox_image
        );
    }
    for version in matrix.versions() {
        println!("\nkubeadm images for {version}:");
        for image in &matrix.kubernetes[version].images {
            println!("  {image}");
        }
    }
    Ok(ExitCode::SUCCESS)
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
    } else if !global.quiet {
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

/// Finds the manifest or index a reference names (the base, each
/// preloaded image) and the blobs it is in: ferry's store, a bundle read in
/// place (each bundle file opened once), or anything `bundle create`
/// reads, fetched into the content cache.
struct Locator<'a> {
    global: &'a GlobalArgs,
    store: &'a ferry_store::Store,
    spec: &'a ImageSpec,
    spec_dir: &'a Path,
    platform: &'a Platform,
    bars: &'a Arc<Bars>,
    bundles: HashMap<PathBuf, Arc<ferry_bundle::Bundle>>,
}

impl Locator<'_> {
    async fn locate(
        &mut self,
        reference: &str,
    ) -> anyhow::Result<(Arc<dyn Blobs>, ferry_oci::Digest)> {
        Ok(
            match BaseRef::parse(reference, self.spec_dir).map_err(UserError::from_error)? {
                BaseRef::Store {
                    repository,
                    reference,
                } => {
                    let r = ferry_store::ManifestRef::parse(&reference)
                        .map_err(UserError::from_error)?;
                    let digest =
                        self.store
                            .resolve_manifest(&repository, &r)?
                            .ok_or_else(|| ferry_image::source::SourceError::NotInStore {
                                reference: format!("{repository}:{reference}"),
                                store: self.store.root().display().to_string(),
                            })?;
                    (Arc::new(self.store.clone()), digest)
                }
                BaseRef::Bundle { file, name } => {
                    let bundle = match self.bundles.get(&file) {
                        Some(bundle) => bundle.clone(),
                        None => {
                            let bundle =
                                Arc::new(crate::commands::bundle::open(file.clone()).await?);
                            self.bundles.insert(file, bundle.clone());
                            bundle
                        }
                    };
                    let root = ferry_image::artifacts::find_entry(&bundle, name.as_deref())
                        .map_err(UserError::new)?;
                    (Arc::new(BundleBlobs(bundle)), root)
                }
                BaseRef::Fetched(reference) => {
                    let cache_dir = crate::output::state_dir(self.global).join("cache");
                    let cache = ferry_bundle::cache::ContentCache::open(&cache_dir)?;
                    let root = ferry_image::fetch::fetch(
                        &reference,
                        &self.spec.hosts,
                        self.platform,
                        self.spec_dir,
                        &cache,
                        self.bars.as_ref(),
                    )
                    .await?;
                    (Arc::new(cache.store().clone()), root)
                }
            },
        )
    }
}

async fn build_cmd(global: &GlobalArgs, args: BuildArgs) -> anyhow::Result<ExitCode> {
    let (mut spec, spec_dir) = match &args.file {
        Some(path) => {
            let spec = ImageSpec::load(path).map_err(UserError::from_error)?;
            let dir = path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .map_or_else(|| PathBuf::from("."), PathBuf::from);
            (spec, dir)
        }
        None => (ImageSpec::default(), PathBuf::from(".")),
    };
    if let Some(base) = &args.base {
        spec.base = base.clone();
    }
    if spec.base.is_empty() {
        return Err(UserError::new("no base image: give one (ferry image build os/debian:12 ...) or set `base:` in the spec")
            .with_hint("`ferry image import rootfs.tar --tag os/NAME:TAG` brings any distribution's rootfs tarball in")
            .into());
    }
    let formats: BTreeSet<Format> = if !args.format.is_empty() {
        args.format.iter().copied().collect()
    } else if !spec.formats.is_empty() {
        spec.formats.iter().copied().collect()
    } else {
        BTreeSet::from([Format::Squashfs])
    };
    let platform = match (&args.platform, &spec.platform) {
        (Some(p), _) => p.clone(),
        (None, Some(text)) => text
            .parse()
            .map_err(|e: String| UserError::new(format!("platform: {e}")))?,
        (None, None) => Platform::linux_amd64(),
    };
    let name = spec
        .name
        .clone()
        .unwrap_or_else(|| build::default_name(&spec.base));
    let mtime = source_date_epoch()?;
    let quiet = global.quiet || args.json;
    let store = crate::commands::registry::open_store(global)?;
    let push = match &args.push {
        Some(reference) if !formats.contains(&Format::Netboot) => {
            return Err(UserError::new(format!(
                "--push {reference} stores the netboot set: add netboot to --format"
            ))
            .into());
        }
        Some(reference) => Some((store.clone(), reference.clone())),
        None => None,
    };
    let bars = Arc::new(Bars::new(quiet, "image", None));
    let mut locator = Locator {
        global,
        store: &store,
        spec: &spec,
        spec_dir: &spec_dir,
        platform: &platform,
        bars: &bars,
        bundles: HashMap::new(),
    };
    let (blobs, root) = locator.locate(&spec.base).await?;
    let matrix = match (
        &args.matrix,
        spec.kubernetes.as_ref().and_then(|k| k.matrix.as_ref()),
    ) {
        (Some(path), _) => load_matrix(Some(path))?,
        (None, Some(path)) => load_matrix(Some(&spec_dir.join(path)))?,
        (None, None) => Matrix::shipped(),
    };
    let mut preload = Vec::new();
    if let Some(k) = &spec.kubernetes {
        let wanted =
            ferry_image::kubernetes::preload_wanted(k, &matrix).map_err(UserError::from_error)?;
        for (name, from) in wanted {
            let (blobs, root) = locator
                .locate(&from)
                .await
                .map_err(|e| e.context(format!("kubernetes.preload: {name} (read from {from})")))?;
            preload.push(PreloadSource {
                name,
                from,
                blobs,
                root,
            });
        }
    }
    let kubernetes = ferry_image::kubernetes::Inputs {
        matrix,
        allow_mismatch: args.allow_mismatch,
        preload,
        platform: platform.clone(),
    };
    let reference = spec.base.clone();
    let processors = args
        .processors
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let output = args.output.clone();
    let keep_work = args.keep_work;
    let artifacts_store = store.clone();
    let build_bars = bars.clone();
    let report = tokio::task::spawn_blocking(move || {
        let base = BaseImage::load(&reference, blobs, &root, &platform)?;
        let artifacts = ferry_image::artifacts::Artifacts::new(Some(artifacts_store), &spec_dir);
        let request = BuildRequest {
            spec: &spec,
            spec_dir: &spec_dir,
            name,
            formats,
            out: output,
            mtime,
            processors,
            push,
            keep_work,
            kubernetes,
        };
        let report = build::build(&base, &artifacts, &request, build_bars.as_ref());
        anyhow::Ok(report?)
    })
    .await?;
    bars.finish();
    let report = report?;
    if args.json {
        print_json(&report)?;
    } else if !global.quiet {
        println!(
            "built {} from {} (kernel {}) in {}:",
            report.name,
            report.base.reference,
            report.kernel.version,
            args.output.display()
        );
        for o in &report.outputs {
            println!(
                "  {:<9} {:<40} {:>10}  {}",
                o.format.as_str(),
                o.path.display(),
                human_bytes(o.size),
                o.sha256
            );
        }
        println!(
            "  manifest  {}",
            args.output.join("manifest.json").display()
        );
        let total: f64 = report.steps.iter().map(|s| s.seconds).sum();
        if total > 0.0 {
            let steps: Vec<String> = report
                .steps
                .iter()
                .map(|s| {
                    format!(
                        "{} {:.1} s ({:.0}%)",
                        s.step,
                        s.seconds,
                        100.0 * s.seconds / total
                    )
                })
                .collect();
            println!("  took {total:.1} s: {}", steps.join(", "));
        }
        if let Some(push) = &args.push {
            println!(
                "netboot set stored in ferry's registry as {push}; boot it with `source: {{oci: {push}}}`"
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
