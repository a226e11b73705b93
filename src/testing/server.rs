//! The real router on 127.0.0.1:0, wired over the dry-run registry and any backend.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use crate::backends::Backends;
use crate::compute::ComputeBackend;
use crate::config::{PoolsConfig, Settings};
use crate::github::RunnerRegistry;
use crate::github::dry_run::DryRunRegistry;
use crate::provision::dry_run::DryRunBackend;
use crate::server::AppState;
use crate::spool::{QueueOptions, Spool};

/// A running server and what it talks to.
pub struct TestApp {
    pub addr: SocketAddr,
    pub state: Arc<AppState>,
    pub github: Arc<DryRunRegistry>,
    pub client: reqwest::Client,
}

impl TestApp {
    /// `http://127.0.0.1:port{path}`.
    #[must_use]
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

/// Starts the router on 127.0.0.1:0 with the given backend; `state_dir` adds the standalone queue.
pub async fn spawn_app(backend: Arc<dyn ComputeBackend>, state_dir: Option<&Path>, options: QueueOptions) -> TestApp {
    spawn_app_with(super::pools(), backend, state_dir, options, crate::server::RAW_REQUEST_TIMEOUT).await
}

/// [`spawn_app`] with another pools config and raw-route timeout.
pub async fn spawn_app_with(
    pools: Arc<PoolsConfig>,
    backend: Arc<dyn ComputeBackend>,
    state_dir: Option<&Path>,
    options: QueueOptions,
    raw_timeout: std::time::Duration,
) -> TestApp {
    spawn_app_with_settings(&super::settings(), pools, backend, state_dir, options, raw_timeout).await
}

/// [`spawn_app_with`] with other settings (an admin token, say).
///
/// # Panics
/// The port or the spool cannot be opened.
pub async fn spawn_app_with_settings(
    settings: &Settings,
    pools: Arc<PoolsConfig>,
    backend: Arc<dyn ComputeBackend>,
    state_dir: Option<&Path>,
    options: QueueOptions,
    raw_timeout: std::time::Duration,
) -> TestApp {
    let github = Arc::new(DryRunRegistry::new());
    let registry: Arc<dyn RunnerRegistry> = github.clone();
    let queue = state_dir.map(|d| (Spool::open(d).expect("spool"), options));
    let state = crate::app::assemble_state(settings, pools, registry, Backends::single(backend), queue);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let app = crate::server::router_with_timeout(state.clone(), raw_timeout);
    tokio::spawn(async move {
        crate::server::serve_connections(
            listener,
            app,
            crate::server::HEADER_READ_TIMEOUT,
            crate::server::MAX_CONNECTIONS,
            std::future::pending(),
        )
        .await
        .expect("serve");
    });
    TestApp { addr, state, github, client: crate::tls::client_builder().build().expect("client") }
}

/// [`spawn_app`] over the dry-run backend, with a fast queue when `state_dir` is given.
pub async fn spawn_dry_run(state_dir: Option<&Path>) -> (TestApp, Arc<DryRunBackend>) {
    let backend = Arc::new(DryRunBackend::new(false));
    let app = spawn_app(backend.clone(), state_dir, super::fast_queue()).await;
    (app, backend)
}

/// Serves a fake (of GitHub, ARM, Batch, Blob storage or an identity endpoint) on
/// 127.0.0.1 and a free port: its base URL, and the task to abort when done.
pub async fn serve_fake(app: axum::Router) -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let task = tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    (url, task)
}
