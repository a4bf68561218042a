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

use clap::{CommandFactory, FromArgMatches};

fn main() -> std::process::ExitCode {
    exit::quiet_on_closed_stdout();
    let arguments = self_extracting::arguments(std::env::args_os().collect());
    let matches = self_extracting::command(cli::Cli::command()).get_matches_from(arguments);
    let cli = cli::Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let reporting = exit::Reporting::of(&matches);
    output::init_logging(&cli.global);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let error = anyhow::Error::new(e).context("cannot start the async runtime");
            return exit::report(&error, &reporting);
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(code) => code,
        Err(e) => exit::report(&e, &reporting),
    }
}
