//! ferry's own maintenance endpoint: `POST /ferry/v1/gc?grace=SECONDS&dry_run=true`
//! runs garbage collection inside the serving process, where the store's
//! pins see every request in flight (a GC from another process could not).
//! `ferry registry gc` calls it when a server holds the store.
//!
//! Who may call it: with authentication on, any authenticated user (users
//! may already delete); without, only clients on the loopback interface.

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use ferry_store::GcOptions;

use crate::auth::{Identity, Mode};
use crate::error::RegistryError;
use crate::handlers::{param, query};
use crate::{Registry, blocking};

pub const GC_PATH: &str = "/ferry/v1/gc";

/// The peer of a connection, set by [`crate::server::serve`].
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub SocketAddr);

pub async fn gc(State(registry): State<Registry>, request: Request) -> Response {
    match run_gc(registry, request).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn run_gc(registry: Registry, request: Request) -> Result<Response, RegistryError> {
    let loopback = request
        .extensions()
        .get::<Peer>()
        .is_some_and(|p| p.0.ip().is_loopback());
    let identity = registry.auth.identify(request.headers()).await;
    let allowed = match (registry.auth.mode(), &identity) {
        (Mode::None, _) => loopback,
        (_, Ok(Identity::User(_))) => true,
        (_, Ok(Identity::Token(claims))) => !claims.sub.is_empty(),
        _ => false,
    };
    if !allowed {
        return Err(RegistryError::Denied);
    }
    let params = query(request.uri());
    let grace = param(&params, "grace")
        .map(|g| {
            g.parse::<u64>().map_err(|_| {
                RegistryError::BadRequest(format!("grace={g:?} is not a number of seconds"))
            })
        })
        .transpose()?
        .map_or(GcOptions::default().grace, Duration::from_secs);
    let options = GcOptions {
        grace,
        dry_run: param(&params, "dry_run") == Some("true"),
    };
    let store = registry.store.clone();
    let report = blocking(move || store.gc(&options)).await?;
    Ok(axum::Json(report).into_response())
}
