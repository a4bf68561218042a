//! `ferry hosts [--json]` and `ferry hosts reset MAC`: the netboot
//! inventory under the state directory.

use std::process::ExitCode;

use clap::{Args, Subcommand};

use ferry_netboot::{HostRecord, Inventory, MacAddr};

use crate::cli::GlobalArgs;
use crate::exit::UserError;
use crate::output::{print_json, print_table, state_dir};

#[derive(Debug, Args)]
pub struct HostsArgs {
    #[command(subcommand)]
    command: Option<HostsCommand>,
    /// Print the inventory as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Subcommand)]
enum HostsCommand {
    /// Forget a host's progress: its next network boot installs it again
    /// (and its config URL changes).
    Reset {
        /// The host's MAC address.
        mac: String,
    },
}

pub async fn run(global: &GlobalArgs, args: HostsArgs) -> anyhow::Result<ExitCode> {
    let state = state_dir(global);
    let inventory = tokio::task::spawn_blocking(move || Inventory::open(&state)).await??;
    match args.command {
        Some(HostsCommand::Reset { mac }) => {
            let mac: MacAddr = mac.parse().map_err(|e| UserError::new(format!("{e}")))?;
            let path = inventory.path().display().to_string();
            if tokio::task::spawn_blocking(move || inventory.reset(mac)).await?? {
                if !global.quiet {
                    println!("{mac}: reset; its next network boot installs it again");
                }
                Ok(ExitCode::SUCCESS)
            } else {
                Err(UserError::new(format!("no host {mac} in {path}"))
                    .with_hint("`ferry hosts` lists the hosts that have booted")
                    .into())
            }
        }
        None => {
            let hosts = tokio::task::spawn_blocking(move || inventory.hosts()).await??;
            if args.json {
                let public: Vec<_> = hosts.iter().map(HostRecord::public).collect();
                print_json(&public)?;
            } else {
                print_hosts(&hosts);
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn print_hosts(hosts: &[HostRecord]) {
    if hosts.is_empty() {
        println!("no hosts have network-booted yet");
        return;
    }
    let rows: Vec<[String; 6]> = hosts
        .iter()
        .map(|h| {
            [
                h.mac.to_string(),
                h.state.as_str().to_string(),
                h.profile.clone().unwrap_or_else(|| "-".into()),
                h.ip.clone().unwrap_or_else(|| "-".into()),
                h.last_seen.clone(),
                h.message.clone().unwrap_or_default(),
            ]
        })
        .collect();
    print_table(
        ["MAC", "STATE", "PROFILE", "IP", "LAST SEEN", "MESSAGE"],
        &rows,
        &[],
    );
}
