//! The OCI distribution-spec 1.1 API as an axum [`Router`] over a
//! [`ferry_store::Store`].
//!
//! A request flows: axum hands every `/v2/...` path to [`dispatch`], which
//! parses it once into a [`route::Route`] (names may have many `/`),
//! asks [`auth::Auth`] whether the caller may perform the route's
//! [`route::Action`], and calls the endpoint's handler in [`handlers`].
//! Handlers run store calls on blocking threads; blob bodies stream between
//! the socket and the store in both directions without ever being held in
//! memory whole ([`body`]). Errors become the spec's JSON error bodies in
//! [`error`].
//!
//! [`server`] runs the router over plain HTTP or TLS ([`tls`]) with graceful
//! shutdown; the token endpoint of the Docker auth flow is [`auth::token`];
//! [`admin`] runs garbage collection inside the serving process.

pub mod admin;
pub mod auth;
pub mod body;
pub mod error;
pub mod handlers;
pub mod range;
pub mod route;
pub mod server;
pub mod tls;

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use ferry_store::Store;

use crate::auth::Auth;
use crate::error::RegistryError;
use crate::route::Route;

/// Shared state of every request.
#[derive(Clone)]
pub struct Registry {
    pub store: Store,
    pub auth: Arc<Auth>,
}

impl Registry {
    pub fn new(store: Store, auth: Auth) -> Self {
        Registry {
            store,
            auth: Arc::new(auth),
        }
    }

    /// The axum Router serving `/v2/` and the token endpoint.
    pub fn router(self) -> Router {
        Router::new()
            .route("/v2", any(dispatch_base))
            .route("/v2/", any(dispatch_base))
            .route("/v2/{*rest}", any(dispatch))
            .route(auth::token::PATH, get(auth::token::issue))
            .route(admin::GC_PATH, post(admin::gc))
            .layer(axum::middleware::map_response(api_version_header))
            .with_state(self)
    }
}

/// Every response says which API it speaks (Docker clients check it on `/v2/`).
async fn api_version_header(mut response: Response) -> Response {
    response.headers_mut().insert(
        "Docker-Distribution-API-Version",
        HeaderValue::from_static("registry/2.0"),
    );
    response
}

async fn dispatch_base(State(registry): State<Registry>, request: Request) -> Response {
    route_request(registry, Route::Base, request).await
}

async fn dispatch(State(registry): State<Registry>, request: Request) -> Response {
    let rest = request
        .uri()
        .path()
        .strip_prefix("/v2/")
        .unwrap_or_default()
        .to_string();
    match Route::parse(&rest) {
        Ok(route) => route_request(registry, route, request).await,
        Err(e) => e.into_response(),
    }
}

async fn route_request(registry: Registry, route: Route, request: Request) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let started = std::time::Instant::now();
    let response = match handle(registry, route, request).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    tracing::debug!(%method, %path, status = response.status().as_u16(), elapsed_ms = started.elapsed().as_millis() as u64, "request");
    response
}

async fn handle(
    registry: Registry,
    route: Route,
    request: Request<Body>,
) -> Result<Response, RegistryError> {
    let method = request.method().clone();
    registry
        .auth
        .authorize(&route, &method, request.uri(), request.headers())
        .await?;
    use handlers::*;
    match (&route, method) {
        (Route::Base, Method::GET | Method::HEAD) => {
            Ok(axum::Json(serde_json::json!({})).into_response())
        }
        (Route::Catalog, Method::GET) => tags::catalog(registry, request).await,
        (Route::Tags { name }, Method::GET) => tags::list(registry, name, request).await,
        (Route::Manifest { name, reference }, m) => match m {
            Method::GET | Method::HEAD => manifests::get(registry, name, reference, request).await,
            Method::PUT => manifests::put(registry, name, reference, request).await,
            Method::DELETE => manifests::delete(registry, name, reference).await,
            _ => Err(RegistryError::Unsupported),
        },
        (Route::Blob { name, digest }, m) => match m {
            Method::GET | Method::HEAD => blobs::get(registry, name, digest, request).await,
            Method::DELETE => blobs::delete(registry, name, digest).await,
            _ => Err(RegistryError::Unsupported),
        },
        (Route::Upload { name, id: None }, Method::POST) => {
            uploads::start(registry, name, request).await
        }
        (Route::Upload { name, id: Some(id) }, m) => match m {
            Method::PATCH => uploads::patch(registry, name, id, request).await,
            Method::PUT => uploads::put(registry, name, id, request).await,
            Method::GET => uploads::status(registry, name, id).await,
            Method::DELETE => uploads::cancel(registry, name, id).await,
            _ => Err(RegistryError::Unsupported),
        },
        (Route::Referrers { name, digest }, Method::GET) => {
            referrers::list(registry, name, digest, request).await
        }
        _ => Err(RegistryError::Unsupported),
    }
}

/// Runs a store call on a blocking thread.
pub(crate) async fn blocking<T, F>(f: F) -> Result<T, RegistryError>
where
    F: FnOnce() -> Result<T, ferry_store::StoreError> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| RegistryError::Internal(format!("store task failed: {e}")))?
        .map_err(RegistryError::from)
}
