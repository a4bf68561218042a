//! The self-extracting form: `ferry bundle create --self-extracting`
//! appends a bundle to ferry's own executable, so that `./site.run push
//! REGISTRY` works on a machine with nothing installed. When this binary
//! carries a bundle, its first word is a bundle command and the bundle is
//! the executable itself; the arguments are rewritten to the ordinary
//! `ferry bundle ...` form before parsing, so there is one code path, and
//! the usage those commands show (`--help`, a usage error) is the
//! self-extracting form's (`./site.run push REGISTRY`).

use std::ffi::OsString;
use std::path::PathBuf;

const COMMANDS: [&str; 5] = ["push", "inspect", "verify", "import", "serve"];

/// The arguments to parse: unchanged for a plain ferry, rewritten for a
/// self-extracting bundle.
pub fn arguments(args: Vec<OsString>) -> Vec<OsString> {
    let Some(exe) = embedded_bundle() else {
        return args;
    };
    let program = args.first().cloned().unwrap_or_else(|| "ferry".into());
    let word = args.get(1).and_then(|a| a.to_str()).map(str::to_string);
    match word.as_deref() {
        Some(command) if COMMANDS.contains(&command) => {
            let mut out = vec![
                program,
                "bundle".into(),
                command.into(),
                exe.into_os_string(),
            ];
            let mut rest = args.into_iter().skip(2).peekable();
            // `push REGISTRY`: the registry may come first, without --to.
            if command == "push"
                && let Some(first) = rest.peek()
                && !first.to_string_lossy().starts_with('-')
            {
                out.push("--to".into());
            }
            out.extend(rest);
            out
        }
        // Everything else (ferry's own commands, --version) works as usual.
        Some(w) if w != "help" && w != "--help" && w != "-h" => args,
        _ => {
            print_usage(&exe);
            std::process::exit(0);
        }
    }
}

/// The command line to parse with: ferry's own, with the bundle commands'
/// usage in the self-extracting form when this binary carries a bundle
/// (whose path they take without being told).
pub fn command(cli: clap::Command) -> clap::Command {
    let Some(exe) = embedded_bundle() else {
        return cli;
    };
    let name = file_name(&exe);
    cli.mut_subcommand("bundle", |bundle| {
        COMMANDS.iter().fold(bundle, |bundle, &command| {
            bundle.mut_subcommand(command, |sub| {
                let operand = if command == "push" {
                    " REGISTRY[/PREFIX]"
                } else {
                    ""
                };
                sub.override_usage(format!("./{name} {command}{operand} [OPTIONS]"))
                    .mut_arg("bundle", |bundle| bundle.hide(true))
            })
        })
    })
}

fn embedded_bundle() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    ferry_bundle::container::is_self_extracting(&exe).then_some(exe)
}

fn file_name(exe: &std::path::Path) -> String {
    exe.file_name()
        .map_or_else(|| "site.run".into(), |n| n.to_string_lossy().into_owned())
}

fn print_usage(exe: &std::path::Path) {
    let name = file_name(exe);
    println!(
        "{name}: a ferry bundle with ferry {} inside",
        env!("CARGO_PKG_VERSION")
    );
    println!();
    println!("Usage:");
    println!("  ./{name} inspect                 list what the bundle carries");
    println!(
        "  ./{name} verify                  check every digest (and --key PUB for the signature)"
    );
    println!(
        "  ./{name} push REGISTRY[/PREFIX]  push everything into an OCI registry (--insecure for plain HTTP)"
    );
    println!("  ./{name} import                  load it into ferry's embedded registry store");
    println!(
        "  ./{name} serve                   serve it as a read-only registry (--listen ADDR:PORT)"
    );
    println!();
    println!("Each command takes --help; ferry's other commands work too (./{name} --version).");
}
