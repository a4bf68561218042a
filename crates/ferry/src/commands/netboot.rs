//! `ferry netboot serve|check|schema`: the network boot server.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand};

use ferry_netboot::config::Source;
use ferry_netboot::{Config, ConfigError, LoadedConfig, ServeError, ServeOptions};

use crate::cli::GlobalArgs;
use crate::exit::{ProblemFound, UserError};
use crate::output::{print_json, state_dir};

#[derive(Debug, Subcommand)]
pub enum NetbootCommand {
    /// Serve ProxyDHCP, TFTP and HTTP iPXE for the machines in netboot.yaml
    /// (needs root for UDP 67/69/4011).
    Serve(ConfigArgs),
    /// Check netboot.yaml: syntax, templates rendered for every host, and
    /// every profile's boot files.
    Check(ConfigArgs),
    /// Print the JSON schema of netboot.yaml.
    Schema,
}

#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// The configuration file.
    #[arg(short, long, value_name = "FILE", default_value = "netboot.yaml")]
    config: PathBuf,
}

pub async fn run(global: &GlobalArgs, command: NetbootCommand) -> anyhow::Result<ExitCode> {
    match command {
        NetbootCommand::Schema => {
            print_json(&Config::json_schema())?;
            Ok(ExitCode::SUCCESS)
        }
        NetbootCommand::Check(args) => {
            let config = load(&args.config)?;
            let state = tempfile_state()?;
            let store = open_store_if_needed(global, &config)?;
            let netboot = tokio::task::spawn_blocking(move || {
                ferry_netboot::Netboot::new(config, state.path(), store)
            })
            .await?
            .map_err(user_error)?;
            let waiting = netboot.artifacts.waiting();
            for name in netboot.config.config.profiles.keys() {
                if global.quiet {
                    break;
                }
                if let Some(why) = waiting.get(name) {
                    println!("profile {name}: not ready: {why}");
                } else if let Some(files) = netboot.artifacts.profile(name) {
                    println!(
                        "profile {name}: {}{}",
                        files.source,
                        files
                            .layout
                            .map(|l| format!(" ({l} layout)"))
                            .unwrap_or_default()
                    );
                    for (file, (_, served)) in &files.files {
                        println!("  {file:<10} {:>12} bytes  {}", served.size, served.origin);
                    }
                }
            }
            if !waiting.is_empty() {
                return Err(ProblemFound(format!(
                    "{}: {} of {} profiles not ready; push their artifacts into ferry's registry (`ferry serve --netboot` waits for them)",
                    args.config.display(),
                    waiting.len(),
                    netboot.config.config.profiles.len()
                ))
                .into());
            }
            if !global.quiet {
                println!(
                    "{}: OK ({} hosts, {} profiles)",
                    args.config.display(),
                    netboot.config.config.hosts.len(),
                    netboot.config.config.profiles.len()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        NetbootCommand::Serve(args) => {
            let config = load(&args.config)?;
            let store = open_store_if_needed(global, &config)?;
            let options = ServeOptions {
                state_dir: state_dir(global),
                store,
            };
            ferry_netboot::serve(config, options, crate::commands::serve::shutdown_signal())
                .await
                .map_err(user_error)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

pub fn load(path: &Path) -> anyhow::Result<LoadedConfig> {
    Config::load(path).map_err(|e| {
        let hint = match &e {
            ConfigError::Read { .. } => "give the configuration with -c FILE",
            _ => "`ferry netboot schema` prints every field; docs/netboot.md explains them",
        };
        UserError::from_error(e).with_hint(hint).into()
    })
}

/// Configuration and artifact problems are the user's to fix (exit 2);
/// sockets and I/O are not.
pub fn user_error(e: ServeError) -> anyhow::Error {
    match e {
        ServeError::Config(_) | ServeError::Artifact(_) | ServeError::Setup(_) => {
            UserError::from_error(e).into()
        }
        other => other.into(),
    }
}

fn open_store_if_needed(
    global: &GlobalArgs,
    config: &LoadedConfig,
) -> anyhow::Result<Option<ferry_store::Store>> {
    let needed = config
        .config
        .profiles
        .values()
        .any(|p| matches!(p.source, Source::Oci(_)));
    if needed {
        Ok(Some(crate::commands::registry::open_store(global)?))
    } else {
        Ok(None)
    }
}

/// `check` must not touch the real inventory.
fn tempfile_state() -> anyhow::Result<tempfile::TempDir> {
    Ok(tempfile::tempdir()?)
}
