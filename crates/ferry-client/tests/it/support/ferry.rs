//! ferry's own registry (crate ferry-registry), served in-process on a
//! free loopback port; optionally behind a layer that injects faults.

use axum::Router;
use ferry_registry::Registry;
use ferry_registry::auth::Auth;
use ferry_store::{Limits, Store};
use tokio::task::JoinHandle;

pub struct FerryRegistry {
    _dir: tempfile::TempDir,
    host: String,
    task: JoinHandle<()>,
}

impl FerryRegistry {
    pub async fn start(auth: Auth) -> Self {
        Self::start_wrapped(auth, |router| router).await
    }

    /// Serves the registry's router as transformed by `wrap` (a fault
    /// injection layer, a request counter).
    pub async fn start_wrapped(auth: Auth, wrap: impl FnOnce(Router) -> Router) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::serve_on(listener, auth, wrap).await
    }

    /// Like [`FerryRegistry::start_wrapped`] on a listener of the caller's.
    pub async fn serve_on<L>(listener: L, auth: Auth, wrap: impl FnOnce(Router) -> Router) -> Self
    where
        L: axum::serve::Listener<Addr = std::net::SocketAddr>,
    {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("store"), Limits::default()).unwrap();
        let router = wrap(Registry::new(store, auth).router());
        let host = format!("127.0.0.1:{}", listener.local_addr().unwrap().port());
        let task = tokio::spawn(async move {
            axum::serve(listener, router).await.unwrap();
        });
        FerryRegistry {
            _dir: dir,
            host,
            task,
        }
    }

    pub fn host(&self) -> String {
        self.host.clone()
    }
}

impl Drop for FerryRegistry {
    fn drop(&mut self) {
        self.task.abort();
    }
}
