//! One module per command. [`run`] dispatches.

pub mod bundle;
pub mod bundle_create;
pub mod copy;
pub mod hosts;
pub mod image;
pub mod netboot;
pub mod registry;
pub mod serve;

use std::net::SocketAddr;
use std::process::ExitCode;

use crate::cli::{Cli, Command};
use crate::exit::UserError;

pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve(args) => serve::run(&cli.global, args).await,
        Command::Copy(args) => copy::run(&cli.global, args).await,
        Command::Bundle(cmd) => bundle::run(&cli.global, cmd).await,
        Command::Registry(cmd) => registry::run(&cli.global, cmd).await,
        Command::Netboot(cmd) => netboot::run(&cli.global, cmd).await,
        Command::Hosts(args) => hosts::run(&cli.global, args).await,
        Command::Image(cmd) => image::run(&cli.global, cmd).await,
    }
}

/// Binds a server's `--listen` address; a taken port is the user's to fix.
async fn bind(listen: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(listen).await.map_err(|e| {
        UserError::new(format!("cannot listen on {listen}: {e}"))
            .with_hint("another process may hold the port; choose one with --listen")
            .into()
    })
}
