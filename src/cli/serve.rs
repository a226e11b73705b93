//! `serve`: the server under the Functions host or standalone, with the reconcile ticker
//! and a graceful shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use super::ServeArgs;
use crate::app::build_state;
use crate::config::{ConfigErrors, GitHubAuth, Settings};
use crate::reconcile::PERIOD;
use crate::server::router;
use crate::spool::{QueueOptions, Spool};

pub(super) async fn serve(args: ServeArgs, settings: Result<Settings, ConfigErrors>) -> anyhow::Result<()> {
    let settings = settings.map_err(|e| anyhow::anyhow!("invalid settings:\n{e}"))?;
    let pools = Arc::new(settings.load_pools().map_err(|e| anyhow::anyhow!("invalid pools file:\n{e}"))?);
    for w in &pools.warnings {
        tracing::warn!(event = "config_warning", key = %w.key, "{}", w.message);
    }
    let host_port = settings.host_port;
    let dry_run = args.dry_run || matches!(settings.github_auth, GitHubAuth::None);
    if dry_run && !args.dry_run {
        tracing::warn!(
            event = "dry_run",
            "no GitHub credentials configured: running in dry-run mode, nothing will be created"
        );
    }
    let (addr, queue): (SocketAddr, _) = match &host_port {
        Some(port) => (format!("127.0.0.1:{port}").parse()?, None),
        None => {
            let spool = Spool::open(&args.state_dir)
                .map_err(|e| anyhow::anyhow!("cannot open --state-dir {}: {e}", args.state_dir.display()))?;
            (
                args.listen.parse().map_err(|e| anyhow::anyhow!("--listen {}: {e}", args.listen))?,
                Some((spool, QueueOptions::default())),
            )
        }
    };
    let runtime = build_state(&settings, pools.clone(), dry_run, queue, true)?;
    let state = runtime.state;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(
        event = "listening",
        address = %listener.local_addr()?,
        mode = if host_port.is_some() { "functions-host" } else { "standalone" },
        pools = pools.pools.len(),
        dry_run,
        "runner-dispatch listening"
    );
    if state.queue.is_some() {
        let reconciler = state.reconciler.clone();
        let queue = state.queue.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(PERIOD);
            tick.tick().await;
            loop {
                tick.tick().await;
                let report = reconciler.run().await;
                if let Some(q) = &queue {
                    for m in report.requeue {
                        let _ = q.enqueue(m);
                    }
                }
            }
        });
    }
    crate::server::serve_connections(
        listener,
        router(state.clone()),
        crate::server::HEADER_READ_TIMEOUT,
        crate::server::MAX_CONNECTIONS,
        shutdown_signal(),
    )
    .await?;
    if let Some(q) = &state.queue {
        let drained = q.drain(Duration::from_secs(20)).await;
        let pending = q.spool().pending();
        tracing::info!(
            event = "shutdown",
            drained,
            pending = pending.len(),
            pending_jobs = %pending.iter().map(|i| i.message.job_id.to_string()).collect::<Vec<_>>().join(","),
            "stopped; pending requests stay in the spool and are replayed at next start"
        );
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
