//! `ferry serve`: the embedded OCI registry on a state directory, with
//! optional TLS and authentication. Prints how to push and pull.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, ValueEnum};

use ferry_registry::Registry;
use ferry_registry::auth::{Auth, Mode, htpasswd::Htpasswd};
use ferry_store::{Limits, Store};

use crate::cli::GlobalArgs;
use crate::exit::UserError;
use crate::output::state_dir;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address and port to listen on (`:PORT` for every address).
    #[arg(long, default_value = "0.0.0.0:5000", value_name = "ADDR:PORT", value_parser = super::parse_listen)]
    listen: SocketAddr,
    /// TLS: `auto` creates a site CA and a server certificate in the state
    /// directory; `off` serves plain HTTP. Ignored with --tls-cert.
    #[arg(long, value_enum, default_value_t = TlsMode::Off)]
    tls: TlsMode,
    /// Extra DNS names or IP addresses for the `--tls auto` certificate.
    #[arg(long = "tls-san", value_name = "NAME")]
    tls_san: Vec<String>,
    /// PEM certificate chain to serve (with --tls-key).
    #[arg(long, requires = "tls_key", value_name = "FILE")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, requires = "tls_cert", value_name = "FILE")]
    tls_key: Option<PathBuf>,
    /// Require credentials from this htpasswd file (bcrypt entries,
    /// `htpasswd -Bbn user pass`).
    #[arg(long, value_name = "FILE")]
    htpasswd: Option<PathBuf>,
    /// How clients authenticate when --htpasswd is set: the Docker token
    /// flow (Bearer tokens from /token) or plain Basic on every request.
    #[arg(long, value_enum, default_value_t = AuthMode::Token, requires = "htpasswd")]
    auth: AuthMode,
    /// With --htpasswd: let anyone pull without credentials.
    #[arg(long, requires = "htpasswd")]
    anonymous_read: bool,
    /// An upload session that receives nothing for this many seconds is
    /// abandoned: the server removes it and the bytes it holds (a client
    /// that comes back starts the blob over).
    #[arg(long, default_value_t = 3600, value_name = "SECONDS")]
    upload_expiry: u64,
    /// Largest manifest accepted, in bytes.
    #[arg(long, default_value_t = 4 * 1024 * 1024, value_name = "BYTES")]
    max_manifest_size: u64,
    /// Also network-boot machines as this netboot.yaml says (ProxyDHCP,
    /// TFTP, HTTP iPXE; see `ferry netboot serve`). Boot files can come
    /// from this registry's store (`oci:` sources).
    #[arg(long, value_name = "FILE")]
    netboot: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum TlsMode {
    Off,
    Auto,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum AuthMode {
    Token,
    Basic,
}

pub async fn run(global: &GlobalArgs, args: ServeArgs) -> anyhow::Result<ExitCode> {
    let state = state_dir(global);
    let root = state.join("registry");
    let store = crate::commands::registry::open_store_with(
        global,
        Limits {
            max_manifest_size: args.max_manifest_size,
        },
    )?;
    let _lock = lock_store(&root)?;

    let tls = tls_config(&state, &args)?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let auth = match &args.htpasswd {
        None => Auth::none(),
        Some(path) => {
            let users = Htpasswd::load(path).map_err(UserError::from_error)?;
            if users.is_empty() {
                tracing::warn!(
                    "{} has no users: nobody can log in{}; add one with `htpasswd -B {} USER`",
                    path.display(),
                    if args.anonymous_read {
                        " or push (anonymous pulls work)"
                    } else {
                        ", push or pull"
                    },
                    path.display()
                );
            }
            let mode = match args.auth {
                AuthMode::Token => Mode::Token,
                AuthMode::Basic => Mode::Basic,
            };
            Auth::with_users(mode, users, args.anonymous_read, tls.is_some())
        }
    };
    let listener = super::bind(args.listen).await?;
    let local = listener.local_addr()?;
    let _record = ServeRecord::write(&root, local, scheme)?;
    if !global.quiet {
        print_banner(&root, local, tls.as_ref(), &args);
    }
    let tls = tls.map(|t| t.config);

    let netboot_config = match &args.netboot {
        Some(path) => Some(crate::commands::netboot::load(path)?),
        None => None,
    };
    // One Ctrl-C / SIGTERM stops every service.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop.send(true);
    });
    let until_stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    tokio::spawn(expire_uploads(
        store.clone(),
        Duration::from_secs(args.upload_expiry),
    ));
    let registry = {
        let router = Registry::new(store.clone(), auth).router();
        let stopped = until_stopped(stopped.clone());
        async move {
            ferry_registry::server::serve(listener, router, tls, stopped, Duration::from_secs(30))
                .await
                .context("the registry server failed")
        }
    };
    let netboot = async {
        let Some(config) = netboot_config else {
            return Ok(());
        };
        let options = ferry_netboot::ServeOptions {
            state_dir: state.clone(),
            store: Some(store.clone()),
        };
        ferry_netboot::serve(config, options, until_stopped(stopped.clone()))
            .await
            .map_err(crate::commands::netboot::user_error)
    };
    tokio::try_join!(registry, netboot)?;
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// Removes abandoned upload sessions for as long as the server runs, so
/// that what a vanished client had sent does not hold the disk. Checks
/// often enough that a session goes at most half its expiry late.
async fn expire_uploads(store: Store, expiry: Duration) {
    let every = (expiry / 2).clamp(Duration::from_secs(1), Duration::from_secs(60));
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let store = store.clone();
        match tokio::task::spawn_blocking(move || store.purge_idle_uploads(expiry, false)).await {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => tracing::info!("removed {n} abandoned upload sessions"),
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot expire upload sessions"),
            Err(e) => tracing::warn!(error = %e, "upload expiry task failed"),
        }
    }
}

/// `serve.json` in the store: where this server listens, so that
/// `ferry registry gc` can ask it to collect (only the serving process
/// sees the uploads in flight). Removed when the server stops.
pub struct ServeRecord {
    path: std::path::PathBuf,
}

/// What `serve.json` holds.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct ServeInfo {
    pub url: String,
    pub pid: u32,
}

impl ServeRecord {
    fn write(
        root: &std::path::Path,
        local: SocketAddr,
        scheme: &str,
    ) -> anyhow::Result<ServeRecord> {
        let ip = if local.ip().is_unspecified() {
            match local.ip() {
                IpAddr::V4(_) => "127.0.0.1".to_string(),
                IpAddr::V6(_) => "[::1]".to_string(),
            }
        } else {
            match local.ip() {
                IpAddr::V6(ip) => format!("[{ip}]"),
                ip => ip.to_string(),
            }
        };
        let info = ServeInfo {
            url: format!("{scheme}://{ip}:{}", local.port()),
            pid: std::process::id(),
        };
        let path = root.join("serve.json");
        std::fs::write(&path, serde_json::to_vec(&info)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(ServeRecord { path })
    }
}

impl Drop for ServeRecord {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The running server of the store at `root`, if one holds it.
pub fn running_server(root: &std::path::Path) -> Option<ServeInfo> {
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(root.join("serve.lock"))
        .ok()?;
    if file.try_lock().is_ok() {
        return None; // nobody holds it
    }
    serde_json::from_slice(&std::fs::read(root.join("serve.json")).ok()?).ok()
}

/// One server per store: a second one would not see the first one's
/// uploads in flight, and its GC could not either.
fn lock_store(root: &std::path::Path) -> anyhow::Result<std::fs::File> {
    let path = root.join("serve.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(UserError::new(format!(
            "another ferry serve is using the store at {}",
            root.display()
        ))
        .with_hint("stop it, or give this one its own --state directory")
        .into()),
        Err(std::fs::TryLockError::Error(e)) => Err(e).context("cannot lock the store"),
    }
}

/// The server's TLS, and for `--tls auto` where its site CA is.
struct Tls {
    config: std::sync::Arc<rustls::ServerConfig>,
    auto: Option<ferry_registry::tls::AutoTls>,
}

fn tls_config(state: &std::path::Path, args: &ServeArgs) -> anyhow::Result<Option<Tls>> {
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        let config = ferry_registry::tls::load(cert, key).map_err(UserError::from_error)?;
        return Ok(Some(Tls { config, auto: None }));
    }
    match args.tls {
        TlsMode::Off => Ok(None),
        TlsMode::Auto => {
            let mut names = vec![
                "localhost".to_string(),
                "127.0.0.1".to_string(),
                "::1".to_string(),
            ];
            if let Some(host) = hostname() {
                names.push(host);
            }
            if !args.listen.ip().is_unspecified() {
                names.push(args.listen.ip().to_string());
            }
            names.extend(args.tls_san.iter().cloned());
            let auto = ferry_registry::tls::auto(&state.join("tls"), &names)?;
            Ok(Some(Tls {
                config: auto.config.clone(),
                auto: Some(auto),
            }))
        }
    }
}

/// How to make clients trust the `--tls auto` site CA, for a registry
/// reached at `target` (`HOST:PORT`, the directory name podman, skopeo
/// and Docker look up in their `certs.d`).
fn print_trust(auto: &ferry_registry::tls::AutoTls, target: &str) {
    let ca = auto.ca_cert.display();
    if auto.created_ca {
        println!("created a site CA: {ca}");
    }
    println!("TLS certificate for: {}", auto.names.join(", "));
    println!("clients must trust the site CA {ca}, e.g.:");
    println!(
        "  podman/skopeo: mkdir -p /etc/containers/certs.d/{target} && cp {ca} /etc/containers/certs.d/{target}/ca.crt"
    );
    println!(
        "  docker:        mkdir -p /etc/docker/certs.d/{target} && cp {ca} /etc/docker/certs.d/{target}/ca.crt"
    );
    println!(
        "  system-wide:   cp {ca} /usr/local/share/ca-certificates/ferry-site-ca.crt && update-ca-certificates"
    );
}

fn hostname() -> Option<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let name = name.trim();
    (!name.is_empty()).then(|| name.to_string())
}

fn print_banner(root: &std::path::Path, local: SocketAddr, tls: Option<&Tls>, args: &ServeArgs) {
    let scheme = if tls.is_some() { "https" } else { "http" };
    let host = if local.ip().is_unspecified() {
        hostname().unwrap_or_else(|| "127.0.0.1".into())
    } else {
        match local.ip() {
            IpAddr::V6(ip) => format!("[{ip}]"),
            ip => ip.to_string(),
        }
    };
    let target = format!("{host}:{}", local.port());
    if let Some(auto) = tls.and_then(|t| t.auto.as_ref()) {
        print_trust(auto, &target);
    }
    let verify = if scheme == "http" { "=false" } else { "=true" };
    println!(
        "ferry registry on {scheme}://{local} (store {})",
        root.display()
    );
    if args.htpasswd.is_some() {
        println!("  login: skopeo login --tls-verify{verify} {target}   (or podman login)");
    }
    println!(
        "  push:  skopeo copy --dest-tls-verify{verify} oci-archive:image.tar docker://{target}/library/app:1.0"
    );
    println!(
        "         podman push --tls-verify{verify} localhost/app:1.0 {target}/library/app:1.0"
    );
    println!(
        "  pull:  skopeo copy --src-tls-verify{verify} docker://{target}/library/app:1.0 oci:app"
    );
    println!("         podman pull --tls-verify{verify} {target}/library/app:1.0");
    println!("  press Ctrl-C to stop");
}

pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = ctrl_c.await;
            return;
        }
    };
    tokio::select! {
        _ = ctrl_c => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down: finishing open requests");
}
