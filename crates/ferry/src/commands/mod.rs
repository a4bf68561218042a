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

/// A `--listen` value: `ADDR:PORT`, or `:PORT` for every IPv4 address
/// (as Go servers and Distribution's `addr: :5000` take it).
pub fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    let full = match text.strip_prefix(':') {
        Some(port) => format!("0.0.0.0:{port}"),
        None => text.to_string(),
    };
    full.parse().map_err(|_| {
        format!("{text:?} is not ADDR:PORT or :PORT (e.g. 10.0.0.5:5000, [::]:5000, :5000)")
    })
}

/// Binds a server's `--listen` address; a taken port is the user's to fix.
async fn bind(listen: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(listen).await.map_err(|e| {
        UserError::new(format!("cannot listen on {listen}: {e}"))
            .with_hint("another process may hold the port; choose one with --listen")
            .into()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses() {
        assert_eq!(parse_listen(":5000"), Ok("0.0.0.0:5000".parse().unwrap()));
        assert_eq!(
            parse_listen("10.0.0.5:443"),
            Ok("10.0.0.5:443".parse().unwrap())
        );
        assert_eq!(parse_listen("[::]:5000"), Ok("[::]:5000".parse().unwrap()));
        assert!(parse_listen(":x").is_err());
        assert!(parse_listen("5000").is_err());
    }
}
