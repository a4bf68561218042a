//! The command line, declared with clap's derive API.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::commands::bundle::BundleCommand;
use crate::commands::copy::CopyArgs;
use crate::commands::registry::RegistryCommand;
use crate::commands::serve::ServeArgs;

/// Carry a site's software across the air gap.
///
/// ferry builds one verifiable bundle of images, charts and files on the
/// connected side, loads it into a private OCI registry on the
/// disconnected side, and network-boots machines from it.
#[derive(Debug, Parser)]
#[command(
    name = "ferry",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// More log output (-v: debug, -vv: trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Print only errors, and what the command is for (listings, --json,
    /// problems found): no progress bars, logs, banners or summaries.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Where ferry keeps its state (registry store, netboot inventory, caches).
    #[arg(long, global = true, env = "FERRY_STATE", value_name = "DIR")]
    pub state: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run ferry's services: the embedded OCI registry (and, with
    /// --netboot, network boot).
    Serve(ServeArgs),
    /// Copy images from an OCI layout directory into a registry.
    Copy(CopyArgs),
    /// Make, check and load bundles.
    #[command(subcommand)]
    Bundle(BundleCommand),
    /// Maintain the embedded registry's store.
    #[command(subcommand)]
    Registry(RegistryCommand),
    /// Network-boot machines: ProxyDHCP, TFTP and HTTP iPXE.
    #[command(subcommand)]
    Netboot(crate::commands::netboot::NetbootCommand),
    /// Provisioning state of each network-booted host.
    Hosts(crate::commands::hosts::HostsArgs),
    /// Build OS images offline from an OCI image.
    #[command(subcommand)]
    Image(crate::commands::image::ImageCommand),
}
