//! Starting everything: [`serve`] binds the HTTP, DHCP and TFTP sockets
//! for one configuration and runs them until `shutdown` completes.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use crate::config::{DhcpMode, LoadedConfig};
use crate::dhcp::full::Leases;
use crate::dhcp::proxy::Port;
use crate::dhcp::{DhcpServer, bind_udp};
use crate::error::ServeError;
use crate::service::Netboot;
use crate::tftp::TftpServer;

/// Where state lives and what else the server may use.
pub struct ServeOptions {
    /// ferry's state directory; the inventory and leases go under
    /// `<state_dir>/netboot/`.
    pub state_dir: PathBuf,
    /// ferry's registry store, for `oci:` sources.
    pub store: Option<ferry_store::Store>,
}

/// Runs ProxyDHCP/DHCP, TFTP and HTTP for `config` until `shutdown`
/// completes. Fails early (before binding anything) on a template or
/// artifact problem, and when a socket cannot be bound.
pub async fn serve(
    config: LoadedConfig,
    options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let ServeOptions { state_dir, store } = options;
    let nb = tokio::task::spawn_blocking(move || Netboot::new(config, &state_dir, store))
        .await
        .map_err(|e| ServeError::Setup(format!("start-up task failed: {e}")))??;
    let nb = Arc::new(nb);
    let cfg = &nb.config.config;

    let waiting = nb.artifacts.waiting();
    for name in cfg.profiles.keys() {
        if let Some(reason) = waiting.get(name) {
            tracing::warn!(
                "profile {name} is not ready: {reason}; hosts that boot it are told to retry until it is pushed"
            );
        } else if let Some(files) = nb.artifacts.profile(name) {
            let list: Vec<String> = files
                .files
                .iter()
                .map(|(n, (_, f))| format!("{n} ({} bytes)", f.size))
                .collect();
            tracing::info!(
                "profile {name}: {}{}: {}",
                files.source,
                files
                    .layout
                    .map(|l| format!(", {l} layout"))
                    .unwrap_or_default(),
                list.join(", ")
            );
        }
    }

    let listen = cfg.server.http_listen.unwrap_or(SocketAddr::new(
        IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        cfg.server.http_port,
    ));
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|source| ServeError::Io {
            what: format!("cannot listen for HTTP on {listen}"),
            source,
        })?;
    tracing::info!("HTTP on {listen}; clients use {}/boot.ipxe", nb.base_url);

    let mut tasks = tokio::task::JoinSet::new();
    if cfg.dhcp.mode != DhcpMode::Off {
        let interface = nb.interface.clone().ok_or_else(|| {
            ServeError::Setup(format!(
                "no interface holds {}: set server.interface so DHCP replies can be broadcast",
                nb.server_ip
            ))
        })?;
        let leases = match (&cfg.dhcp.mode, &cfg.dhcp.pool) {
            (DhcpMode::Full, Some(pool)) => {
                let reserved = cfg
                    .hosts
                    .iter()
                    .filter_map(|h| h.ip.map(|ip| (h.mac, ip)))
                    .collect();
                let state = nb.inventory.path().parent().and_then(|p| p.parent());
                let state = state.map(PathBuf::from).unwrap_or_default();
                Some(Leases::open(&state, pool.clone(), nb.server_ip, reserved)?)
            }
            _ => None,
        };
        let dhcp = Arc::new(DhcpServer::new(nb.clone(), leases));
        for (port, kind) in [(cfg.dhcp.port, Port::Dhcp), (cfg.dhcp.pxe_port, Port::Pxe)] {
            let socket = bind_udp(port, Some(&interface)).map_err(|source| ServeError::Io {
                what: format!("cannot bind UDP port {port} on {interface} (root or CAP_NET_BIND_SERVICE+CAP_NET_RAW needed; is another DHCP server running here?)"),
                source,
            })?;
            tasks.spawn(dhcp.clone().run(socket, kind));
        }
        tracing::info!(
            "{} on {interface}, UDP {} and {}",
            if cfg.dhcp.mode == DhcpMode::Full {
                "DHCP (full, with address pool)"
            } else {
                "ProxyDHCP"
            },
            cfg.dhcp.port,
            cfg.dhcp.pxe_port
        );
    }
    if cfg.tftp_enabled() {
        let addr = SocketAddr::new(IpAddr::V4(nb.server_ip), cfg.tftp.port);
        let socket = tokio::net::UdpSocket::bind(addr)
            .await
            .map_err(|source| ServeError::Io {
                what: format!("cannot bind TFTP on {addr}"),
                source,
            })?;
        let nb2 = nb.clone();
        let mac_of = Arc::new(move |ip| nb2.mac_of_ip(ip).map(|m| m.to_string()));
        let tftp = TftpServer::new(
            cfg.tftp.root.clone(),
            IpAddr::V4(nb.server_ip),
            socket,
            mac_of,
        );
        tasks.spawn(tftp.run());
        tracing::info!(
            "TFTP on {addr}, serving {} read-only",
            cfg.tftp.root.display()
        );
        let boot = &cfg.dhcp.boot_files;
        for file in [&boot.bios, &boot.uefi_x86_64, &boot.uefi_arm64]
            .into_iter()
            .flatten()
        {
            if !crate::tftp::path::resolve(&cfg.tftp.root, file).is_some_and(|p| p.is_file()) {
                tracing::warn!(
                    "TFTP root {} has no {file}: PXE clients that need it will not boot",
                    cfg.tftp.root.display()
                );
            }
        }
    }

    if !waiting.is_empty() {
        tasks.spawn(resolve_when_pushed(nb.clone()));
    }

    let app = crate::http::router(nb.clone());
    let result = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
    .map_err(|source| ServeError::Io {
        what: "HTTP server failed".into(),
        source,
    });
    tasks.abort_all();
    result
}

/// How often profiles that wait for their artifact look for it.
const WAITING_RETRY: std::time::Duration = std::time::Duration::from_secs(2);

/// Resolves waiting profiles again every [`WAITING_RETRY`] until none
/// waits, so that a profile is ready (and says so in the log) as soon as
/// its artifact is pushed, not only when a host next boots. A look is one
/// tag read in the store.
async fn resolve_when_pushed(nb: Arc<Netboot>) {
    loop {
        tokio::time::sleep(WAITING_RETRY).await;
        let nb = nb.clone();
        match tokio::task::spawn_blocking(move || nb.artifacts.retry_waiting()).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}
