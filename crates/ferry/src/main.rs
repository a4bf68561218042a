//! The `ferry` binary: parses the command line, sets up logging, runs one
//! command and turns its outcome into output and an exit code.
//!
//! Commands live in [`commands`], one module each. They return
//! `anyhow::Result`; [`exit`] is the one place that decides what the user
//! sees when they fail (message, hint, exit code).

mod cli;
mod commands;
mod exit;
mod output;
mod progress;
mod self_extracting;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse_from(self_extracting::arguments(std::env::args_os().collect()));
    output::init_logging(&cli.global);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            return exit::report(&anyhow::Error::new(e).context("cannot start the async runtime"));
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(code) => code,
        Err(e) => exit::report(&e),
    }
}
