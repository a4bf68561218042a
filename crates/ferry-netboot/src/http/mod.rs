//! The HTTP side, as an axum [`Router`] over [`Netboot`].
//!
//! | route | what |
//! | --- | --- |
//! | `GET /boot.ipxe` | entry script: chains to the machine's own script |
//! | `GET /boot/{mac}.ipxe` | the machine's script: install, local disk, or why not |
//! | `GET/HEAD /h/{token}/files/{name}` | the host's kernel, initrds, rootfs... (Range, ETag) |
//! | `GET/HEAD /h/{token}/files/{name}/{file name}` | the same file under a name of the caller's choice: initramfs tools that judge a download by its extension (live-boot's `fetch=` wants `.squashfs`) get one |
//! | `GET /h/{token}/config` | the host's user-data, rendered; marks it `installing` |
//! | `POST /h/{token}/events` | `{"state":"installing|ready|failed","message":".."}` |
//! | `GET/HEAD /ipxe/{file}` | the configured iPXE binaries, for UEFI HTTP boot |
//! | `GET /api/hosts` | the inventory (no tokens) |
//!
//! Per-host URLs carry the host's token (256 random bits): a config holds
//! secrets, so it is only served at its own host's URL; another host's
//! token or a guessed one is a 404 that does not say which part was wrong.
//! The MAC-addressed script is the one thing reachable by MAC, because a
//! MAC is all iPXE knows about itself; it is where the token is handed out.

pub mod files;
pub mod ipxe;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRequestParts, Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use serde::Deserialize;

use crate::artifact::Role;
use crate::config::{Arch, is_file_name};
use crate::inventory::{FetchedKind, HostRecord, HostState};
use crate::mac::MacAddr;
use crate::service::{Netboot, Plan};
use crate::template::{Context, ContextInputs, Which};

/// The router; serve it with `into_make_service_with_connect_info::<SocketAddr>()`
/// to have client addresses in the logs.
pub fn router(netboot: Arc<Netboot>) -> Router {
    Router::new()
        .route("/boot.ipxe", get(entry_script))
        .route("/boot/{script}", get(host_script))
        .route("/h/{token}/files/{name}", get(host_file))
        .route("/h/{token}/files/{name}/{as_name}", get(host_file_named))
        .route("/h/{token}/config", get(host_config))
        .route("/h/{token}/events", post(host_event))
        .route("/ipxe/{file}", get(ipxe_binary))
        .route("/api/hosts", get(api_hosts))
        .layer(DefaultBodyLimit::max(64 * 1024))
        .with_state(netboot)
}

type Shared = State<Arc<Netboot>>;

/// The client's address, when the server provides it.
struct Peer(Option<SocketAddr>);

impl<S: Send + Sync> FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Peer(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0),
        ))
    }
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(a) => write!(f, "{}", a.ip()),
            None => f.write_str("?"),
        }
    }
}

/// Runs blocking work (inventory and artifact file I/O) off the runtime.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f)
        .await
        .expect("blocking task panicked")
}

fn ipxe_script(body: String) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        )],
        body,
    )
        .into_response()
}

fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "not found\n").into_response()
}

fn internal(what: impl std::fmt::Display) -> Response {
    tracing::error!("{what}");
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal error; see the ferry server log\n",
    )
        .into_response()
}

async fn entry_script(State(nb): Shared) -> Response {
    ipxe_script(ipxe::entry(&nb.base_url))
}

#[derive(Debug, Default, Deserialize)]
struct ScriptQuery {
    #[serde(default)]
    uuid: String,
    #[serde(default)]
    arch: String,
    #[serde(default)]
    platform: String,
}

async fn host_script(
    State(nb): Shared,
    Path(script): Path<String>,
    Query(query): Query<ScriptQuery>,
    peer: Peer,
) -> Response {
    let Some(mac) = script
        .strip_suffix(".ipxe")
        .and_then(|m| m.parse::<MacAddr>().ok())
    else {
        return not_found();
    };
    let arch = clean(&query.arch, 16);
    let platform = clean(&query.platform, 16);
    let arch_label = match (arch.is_empty(), platform.is_empty()) {
        (false, false) => format!("{arch}-{platform}"),
        _ => format!("{arch}{platform}"),
    };
    if nb.config.profile_for(&mac).is_none() {
        tracing::warn!(
            "{mac}: not booted: unknown MAC and no default_profile in {} (from {peer})",
            nb.config.path.display()
        );
        return ipxe_script(ipxe::refusal(
            mac,
            "unknown MAC and no default_profile on the ferry server",
        ));
    }
    let nb2 = nb.clone();
    let record = match blocking(move || nb2.inventory.update(mac, |r| r.touch())).await {
        Ok(r) => r,
        Err(e) => return internal(e),
    };
    let (peer_addr, label) = (peer.0, arch_label.clone());
    let with_addr = move |mut r: HostRecord| {
        if let Some(a) = peer_addr {
            r.ip = Some(a.ip().to_string());
        }
        if !label.is_empty() {
            r.arch = Some(label.clone());
        }
        r
    };
    match nb.plan(&mac, Some(&record)) {
        // answered above; a config change between the two reads lands here
        Plan::Ignore => ipxe_script(ipxe::refusal(mac, "no profile")),
        Plan::LocalDisk => {
            tracing::info!(
                "{mac}: provisioned (ready since {}); sent to its local disk (boot-once; `ferry hosts reset {mac}` to reinstall)",
                record.stages.ready.as_deref().unwrap_or("?")
            );
            let ready = record.stages.ready.clone();
            let nb2 = nb.clone();
            let update = blocking(move || {
                nb2.inventory.update(mac, |r| {
                    r.local_boots += 1;
                    *r = with_addr(r.clone());
                })
            })
            .await;
            if let Err(e) = update {
                return internal(e);
            }
            ipxe_script(ipxe::local_disk(
                mac,
                nb.config.config.local_boot,
                ready.as_deref(),
            ))
        }
        Plan::Install { profile } => {
            let profile_arch = nb.config.config.profiles[&profile].arch;
            let client_arch = match arch.as_str() {
                "arm64" => Some(Arch::Arm64),
                "x86_64" | "i386" => Some(Arch::Amd64),
                _ => None,
            };
            if client_arch.is_some_and(|a| a != profile_arch) {
                let why = format!(
                    "wrong architecture: iPXE is {arch}, profile {profile} is {}",
                    profile_arch.as_str()
                );
                tracing::warn!("{mac}: not booted: {why}");
                return ipxe_script(ipxe::refusal(mac, &why));
            }
            let (nb2, profile2) = (nb.clone(), profile.clone());
            let Some(files) = blocking(move || nb2.artifacts.profile(&profile2)).await else {
                let Some(why) = nb.artifacts.not_ready(&profile) else {
                    return internal(format!("{mac}: profile {profile} has no resolved files"));
                };
                tracing::warn!("{mac}: not booted yet: profile {profile} is not ready: {why}");
                return ipxe_script(ipxe::not_ready(mac, &profile, &why, &nb.base_url));
            };
            let context = Context::build(
                &nb.config,
                ContextInputs {
                    mac,
                    profile: &profile,
                    base_url: &nb.base_url,
                    token: &record.token,
                    file_names: files.files.keys().cloned().collect(),
                    arch: &arch,
                    uuid: &clean(&query.uuid, 64),
                },
            );
            let cmdline = match nb.templates.render(&profile, Which::Cmdline, &context) {
                Ok(c) => c.unwrap_or_default(),
                Err(e) => {
                    tracing::error!("{mac}: not booted: template error: {e}");
                    return ipxe_script(ipxe::refusal(
                        mac,
                        "template error in its profile; see the ferry server log",
                    ));
                }
            };
            let url = |name: &str| format!("{}/h/{}/files/{name}", nb.base_url, record.token);
            let initrds: Vec<ipxe::Fetch<'_>> = files
                .initrds
                .iter()
                .map(|n| ipxe::Fetch {
                    name: n,
                    url: url(n),
                })
                .collect();
            let script = ipxe::install(
                mac,
                &context.host.name,
                &profile,
                ipxe::Fetch {
                    name: "kernel",
                    url: url("kernel"),
                },
                &initrds,
                &cmdline,
            );
            tracing::info!(
                "{mac}: boot script served: profile {profile} ({arch_label}, from {peer})"
            );
            let nb2 = nb.clone();
            let profile2 = profile.clone();
            let update = blocking(move || {
                nb2.inventory.update(mac, |r| {
                    *r = with_addr(r.clone());
                    r.profile = Some(profile2);
                    r.transition(HostState::Booting, None);
                })
            })
            .await;
            if let Err(e) = update {
                return internal(e);
            }
            ipxe_script(script)
        }
    }
}

/// Printable ASCII only, bounded: query values end up in logs.
fn clean(s: &str, max: usize) -> String {
    s.chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .take(max)
        .collect()
}

/// A well-formed token (64 hex digits) that the inventory knows.
async fn host_by_token(
    nb: &Arc<Netboot>,
    token: &str,
    peer: &Peer,
    what: &str,
) -> Result<HostRecord, Response> {
    let shown: String = token
        .chars()
        .filter(char::is_ascii_hexdigit)
        .take(8)
        .collect();
    if token.len() != 64 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
        tracing::warn!("{what}: malformed token {shown}… from {peer}: 404");
        return Err(not_found());
    }
    let nb2 = nb.clone();
    let token = token.to_string();
    match blocking(move || nb2.inventory.by_token(&token)).await {
        Ok(Some(r)) => Ok(r),
        Ok(None) => {
            tracing::warn!("{what}: unknown token {shown}… from {peer}: 404");
            Err(not_found())
        }
        Err(e) => Err(internal(e)),
    }
}

/// [`host_file`], whatever name the URL ends with.
async fn host_file_named(
    state: Shared,
    Path((token, name, as_name)): Path<(String, String, String)>,
    method: Method,
    headers: HeaderMap,
    peer: Peer,
) -> Response {
    if !is_file_name(&as_name) {
        return not_found();
    }
    host_file(state, Path((token, name)), method, headers, peer).await
}

async fn host_file(
    State(nb): Shared,
    Path((token, name)): Path<(String, String)>,
    method: Method,
    headers: HeaderMap,
    peer: Peer,
) -> Response {
    if !is_file_name(&name) {
        return not_found();
    }
    let record = match host_by_token(&nb, &token, &peer, "file").await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let mac = record.mac;
    let Some(profile) = record
        .profile
        .clone()
        .or_else(|| nb.config.profile_for(&mac).map(str::to_string))
    else {
        return not_found();
    };
    let nb2 = nb.clone();
    let (profile2, name2) = (profile.clone(), name.clone());
    let opened = blocking(move || nb2.artifacts.open(&profile2, &name2)).await;
    let (role, served, file) = match opened {
        Ok(Some(x)) => x,
        Ok(None) => {
            tracing::warn!("{mac}: asked for {name}, which profile {profile} does not have: 404");
            return not_found();
        }
        Err(e) => return internal(format!("{mac}: {e}")),
    };
    if method == Method::GET {
        let kind = match role {
            Role::Kernel => Some(FetchedKind::Kernel),
            Role::Initrd => Some(FetchedKind::Initrd),
            Role::Other => None,
        };
        if let Some(kind) = kind {
            let range = headers
                .get(header::RANGE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            tracing::info!(
                "{mac}: fetching {name} ({} bytes, {}){}",
                served.size,
                served.origin,
                if range.is_empty() {
                    String::new()
                } else {
                    format!(" range {range}")
                }
            );
            let nb2 = nb.clone();
            if let Err(e) = blocking(move || nb2.inventory.update(mac, |r| r.fetched(kind))).await {
                return internal(e);
            }
        } else {
            tracing::debug!("{mac}: fetching {name} from {}", served.origin);
        }
    }
    files::respond(&method, &headers, served, file)
}

async fn host_config(State(nb): Shared, Path(token): Path<String>, peer: Peer) -> Response {
    let record = match host_by_token(&nb, &token, &peer, "config").await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let mac = record.mac;
    let Some(profile) = record
        .profile
        .clone()
        .or_else(|| nb.config.profile_for(&mac).map(str::to_string))
    else {
        return not_found();
    };
    let context = Context::build(
        &nb.config,
        ContextInputs {
            mac,
            profile: &profile,
            base_url: &nb.base_url,
            token: &record.token,
            file_names: nb.file_names(&profile),
            arch: record.arch.as_deref().unwrap_or(""),
            uuid: "",
        },
    );
    let text = match nb.templates.render(&profile, Which::UserData, &context) {
        Ok(Some(t)) => t,
        Ok(None) => {
            tracing::warn!(
                "{mac}: asked for its config, but profile {profile} has no user_data: 404"
            );
            return not_found();
        }
        Err(e) => {
            tracing::error!("{mac}: config not served: template error: {e}");
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                "template error; see the ferry server log\n",
            )
                .into_response();
        }
    };
    tracing::info!("{mac}: config fetched ({} bytes, from {peer})", text.len());
    let nb2 = nb.clone();
    let update = blocking(move || {
        nb2.inventory.update(mac, |r| {
            if matches!(
                r.state,
                HostState::Discovered | HostState::Booting | HostState::Fetched
            ) {
                r.transition(HostState::Installing, Some("config fetched".into()));
            }
        })
    })
    .await;
    if let Err(e) = update {
        return internal(e);
    }
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        )],
        text,
    )
        .into_response()
}

/// An event as hosts post it. Fields other than these (the harness sends
/// `mac`) are ignored, so installers can send what they have.
#[derive(Debug, Deserialize)]
struct EventBody {
    state: String,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    ip: Option<String>,
}

async fn host_event(
    State(nb): Shared,
    Path(token): Path<String>,
    peer: Peer,
    body: Bytes,
) -> Response {
    let record = match host_by_token(&nb, &token, &peer, "event").await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let mac = record.mac;
    let event: EventBody = match serde_json::from_slice(&body) {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!("{mac}: bad event from {peer}: {e}");
            return (
                StatusCode::BAD_REQUEST,
                "expected JSON {\"state\": \"installing|ready|failed\", \"message\": \"...\"}\n",
            )
                .into_response();
        }
    };
    let state = match event.state.as_str() {
        "installing" => HostState::Installing,
        "ready" => HostState::Ready,
        "failed" => HostState::Failed,
        other => {
            tracing::warn!(
                "{mac}: event with unknown state {:?} from {peer}",
                clean(other, 32)
            );
            return (
                StatusCode::BAD_REQUEST,
                "state must be installing, ready or failed\n",
            )
                .into_response();
        }
    };
    let message = event.message.map(|m| {
        m.chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .take(1024)
            .collect::<String>()
    });
    let ip = event
        .ip
        .filter(|ip| ip.parse::<std::net::IpAddr>().is_ok())
        .or(peer.0.map(|a| a.ip().to_string()));
    let line = format!(
        "{mac}: {}{}{}",
        state.as_str(),
        ip.as_deref()
            .map(|i| format!(" (ip {i})"))
            .unwrap_or_default(),
        message
            .as_deref()
            .map(|m| format!(": {m}"))
            .unwrap_or_default()
    );
    if state == HostState::Failed {
        tracing::warn!("{line}");
    } else {
        tracing::info!("{line}");
    }
    let nb2 = nb.clone();
    let update = blocking(move || {
        nb2.inventory.update(mac, |r| {
            if ip.is_some() {
                r.ip = ip;
            }
            r.transition(state, message);
        })
    })
    .await;
    match update {
        Ok(r) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            serde_json::json!({ "mac": r.mac, "state": r.state }).to_string(),
        )
            .into_response(),
        Err(e) => internal(e),
    }
}

async fn ipxe_binary(
    State(nb): Shared,
    Path(file): Path<String>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    let boot = &nb.config.config.dhcp.boot_files;
    let allowed = [&boot.bios, &boot.uefi_x86_64, &boot.uefi_arm64]
        .into_iter()
        .flatten()
        .any(|f| *f == file);
    let Some(path) = allowed
        .then(|| crate::tftp::path::resolve(&nb.config.config.tftp.root, &file))
        .flatten()
    else {
        return not_found();
    };
    let opened = blocking(move || -> std::io::Result<_> {
        let f = std::fs::File::open(&path)?;
        let meta = f.metadata()?;
        let fp = crate::artifact::Fingerprint::of(&meta);
        let served = crate::artifact::ServedFile::whole(
            crate::artifact::Backing::Path(path.clone()),
            &meta,
            crate::artifact::file_etag(&fp, ""),
            path.display().to_string(),
        );
        Ok((served, f))
    })
    .await;
    match opened {
        Ok((served, f)) => files::respond(&method, &headers, served, f),
        Err(_) => not_found(),
    }
}

async fn api_hosts(State(nb): Shared) -> Response {
    let nb2 = nb.clone();
    match blocking(move || nb2.inventory.hosts()).await {
        Ok(hosts) => {
            let public: Vec<_> = hosts.iter().map(HostRecord::public).collect();
            (
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                )],
                serde_json::to_string_pretty(&public).expect("hosts serialize"),
            )
                .into_response()
        }
        Err(e) => internal(e),
    }
}
