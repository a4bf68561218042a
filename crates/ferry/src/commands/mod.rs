//! One module per command. [`run`] dispatches.

pub mod bundle;
pub mod bundle_create;
pub mod copy;
pub mod hosts;
pub mod netboot;
pub mod registry;
pub mod serve;

use std::process::ExitCode;

use crate::cli::{Cli, Command};

pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve(args) => serve::run(&cli.global, args).await,
        Command::Copy(args) => copy::run(&cli.global, args).await,
        Command::Bundle(cmd) => bundle::run(&cli.global, cmd).await,
        Command::Registry(cmd) => registry::run(&cli.global, cmd).await,
        Command::Netboot(cmd) => netboot::run(&cli.global, cmd).await,
        Command::Hosts(args) => hosts::run(&cli.global, args).await,
    }
}
