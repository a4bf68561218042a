//! One module per command. [`run`] dispatches.

pub mod hosts;
pub mod netboot;
pub mod registry;

use std::process::ExitCode;

use crate::cli::{Cli, Command};

pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Registry(cmd) => registry::run(&cli.global, cmd).await,
        Command::Netboot(cmd) => netboot::run(&cli.global, cmd).await,
        Command::Hosts(args) => hosts::run(&cli.global, args).await,
    }
}
