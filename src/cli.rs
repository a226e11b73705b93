//! The commands: serve (default), check-config, route, send-webhook, demo, doctor,
//! github-app-manifest.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::config::{ConfigErrors, GitHubAuth, PoolsConfig, Settings};
use crate::github::RunnerRegistry;
use crate::github::dry_run::DryRunRegistry;
use crate::pools::explain_route;
use crate::provision::dry_run::DryRunBackend;
use crate::provision::{Backends, Provisioner};
use crate::reconcile::{PERIOD, Reconciler};
use crate::server::{AppState, DEFAULT_MAX_ATTEMPTS, queue_handler, router};
use crate::spool::{QueueOptions, Spool, StandaloneQueue};
use crate::telemetry::{self, LogFormat};

#[derive(Debug, Parser)]
#[command(name = "runner-dispatch", version, about = "Ephemeral GitHub Actions runners on Azure, one per queued job")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (the default). Under the Functions host, FUNCTIONS_CUSTOMHANDLER_PORT decides the port.
    Serve(ServeArgs),
    /// Validate the pools file and the settings; report every problem; exit 1 on any error.
    CheckConfig {
        /// Check only the pools file, not the environment settings.
        #[arg(long)]
        pools_only: bool,
    },
    /// Which pool a job with these labels would get, and why not the others.
    Route {
        /// Comma-separated job labels, e.g. self-hosted,linux,x64
        #[arg(long, value_delimiter = ',', required = true)]
        labels: Vec<String>,
        /// The job's repository, owner/name.
        #[arg(long)]
        repository: Option<String>,
    },
    /// Sign a webhook payload with GITHUB_WEBHOOK_SECRET and POST it (to test `func start` or a deployed app).
    SendWebhook {
        /// The JSON payload file.
        file: PathBuf,
        /// Where to send it, e.g. http://localhost:7071/api/github-webhook
        #[arg(long)]
        url: String,
        /// The X-GitHub-Event header.
        #[arg(long, default_value = "workflow_job")]
        event: String,
        /// The X-GitHub-Delivery header (default: a random id).
        #[arg(long)]
        delivery: Option<String>,
    },
    /// Offline end to end: a standalone server, the bundled sample webhooks, requests printed instead of sent.
    Demo {
        /// Also print each provisioning request (secrets redacted).
        #[arg(long)]
        verbose: bool,
    },
    /// Check the live settings: GitHub App, runner groups, Azure reachability.
    Doctor,
    /// Print a GitHub App manifest with exactly the permissions and events needed.
    GithubAppManifest(crate::manifest::ManifestArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on (standalone).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// Directory of the durable request spool (standalone).
    #[arg(long, default_value = "./.runner-dispatch")]
    pub state_dir: PathBuf,
    /// Create nothing: print the requests that would be sent (secrets redacted).
    #[arg(long)]
    pub dry_run: bool,
}

impl Default for ServeArgs {
    fn default() -> Self {
        Self { listen: "127.0.0.1:8080".into(), state_dir: PathBuf::from("./.runner-dispatch"), dry_run: false }
    }
}

/// Runs a command; returns the process exit code.
pub async fn run(cli: Cli) -> ExitCode {
    match cli.command.unwrap_or(Command::Serve(ServeArgs::default())) {
        Command::Serve(args) => {
            // Settings first: they choose the log format. An invalid one is reported by
            // serve, through the logs in the default format.
            let settings = Settings::from_env();
            telemetry::init(LogFormat::for_settings(settings.as_ref().ok()), "info");
            match serve(args, settings).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(event = "startup_failed", error = %e, "runner-dispatch could not start");
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::CheckConfig { pools_only } => check_config(pools_only),
        Command::Route { labels, repository } => route(&labels, repository.as_deref()),
        Command::SendWebhook { file, url, event, delivery } => send_webhook(&file, &url, &event, delivery).await,
        Command::Demo { verbose } => {
            telemetry::init(LogFormat::Pretty, "error");
            crate::demo::run(verbose).await
        }
        Command::Doctor => {
            telemetry::init(LogFormat::Pretty, "warn");
            crate::doctor::run().await
        }
        Command::GithubAppManifest(args) => crate::manifest::print(&args),
    }
}

fn print_problems(e: &ConfigErrors) {
    for p in &e.0 {
        eprintln!("{p}");
    }
}

/// The pools file from `RUNNER_DISPATCH_CONFIG_TOML` or `RUNNER_DISPATCH_CONFIG` (default `runners.toml`).
fn load_pools_from_env() -> Result<PoolsConfig, ConfigErrors> {
    Settings::load_pools_from_env()
}

fn check_config(pools_only: bool) -> ExitCode {
    let mut errors = 0usize;
    let pools = match load_pools_from_env() {
        Ok(p) => {
            for w in &p.warnings {
                eprintln!("{w}");
            }
            Some(p)
        }
        Err(e) => {
            errors += e.0.iter().filter(|p| !p.warning).count();
            print_problems(&e);
            None
        }
    };
    if !pools_only {
        match Settings::from_env() {
            Ok(s) => {
                if matches!(s.github_auth, GitHubAuth::None) {
                    eprintln!(
                        "warning: GITHUB_APP_ID/GITHUB_APP_PRIVATE_KEY or GITHUB_TOKEN: none set; only dry-run provisioning will work"
                    );
                }
                if let Some(p) = &pools {
                    for problem in crate::wiring::azure_setting_problems(&s, p) {
                        errors += 1;
                        eprintln!("{problem}");
                    }
                }
            }
            Err(e) => {
                errors += e.0.len();
                print_problems(&e);
            }
        }
    }
    if errors > 0 {
        eprintln!("{errors} problem(s) found");
        return ExitCode::FAILURE;
    }
    if let Some(p) = pools {
        println!(
            "ok: {} pool(s): {}",
            p.pools.len(),
            p.pools.iter().map(|p| p.name.as_str()).collect::<Vec<_>>().join(", ")
        );
    }
    ExitCode::SUCCESS
}

fn route(labels: &[String], repository: Option<&str>) -> ExitCode {
    let pools = match load_pools_from_env() {
        Ok(p) => p,
        Err(e) => {
            print_problems(&e);
            return ExitCode::FAILURE;
        }
    };
    let lines = explain_route(&pools, labels, repository);
    let chosen = lines.iter().find(|l| l.chosen).map(|l| l.pool.clone());
    println!("job labels [{}]{}", labels.join(", "), repository.map(|r| format!(" in {r}")).unwrap_or_default());
    for (line, pool) in lines.iter().zip(&pools.pools) {
        let verdict = match (&line.verdict, line.chosen) {
            (Ok(()), true) => "CHOSEN".to_owned(),
            (Ok(()), false) => "fits, but loses on precedence".to_owned(),
            (Err(m), _) => format!("no: {m}"),
        };
        let filter = if pool.repositories.is_empty() {
            String::new()
        } else {
            format!(" repositories [{}]", pool.repositories.iter().map(|g| g.pattern()).collect::<Vec<_>>().join(", "))
        };
        println!("  {:<24} {:<40} labels [{}]{filter}", line.pool, verdict, pool.labels.join(", "));
    }
    match chosen {
        Some(p) => {
            println!("=> pool {p} (repository filter first, then fewest labels, then file order)");
            ExitCode::SUCCESS
        }
        None => {
            println!("=> no pool fits: the job would be acknowledged (200) and not provisioned");
            ExitCode::from(2)
        }
    }
}

async fn send_webhook(file: &PathBuf, url: &str, event: &str, delivery: Option<String>) -> ExitCode {
    let body = match std::fs::read(file) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: cannot read {}: {e}", file.display());
            return ExitCode::FAILURE;
        }
    };
    let Some(secret) = Settings::signing_secret_from_env() else {
        eprintln!("error: GITHUB_WEBHOOK_SECRET is not set; it signs the payload");
        return ExitCode::FAILURE;
    };
    let delivery = delivery.unwrap_or_else(random_delivery_id);
    let signature = crate::webhook::sign(secret.expose().as_bytes(), &body);
    let client = crate::tls::client_builder().timeout(Duration::from_secs(30)).build();
    let Ok(client) = client else {
        eprintln!("error: cannot build an HTTP client");
        return ExitCode::FAILURE;
    };
    let result = client
        .post(url)
        .header("Content-Type", "application/json")
        .header("User-Agent", "GitHub-Hookshot/runner-dispatch-send-webhook")
        .header("X-GitHub-Event", event)
        .header("X-GitHub-Delivery", &delivery)
        .header("X-Hub-Signature-256", signature)
        .body(body)
        .send()
        .await;
    match result {
        Ok(resp) => {
            let status = resp.status();
            let text = resp.text().await.unwrap_or_default();
            println!("{} {}\n{text}", status.as_u16(), status.canonical_reason().unwrap_or(""));
            if status.is_success() { ExitCode::SUCCESS } else { ExitCode::FAILURE }
        }
        Err(e) => {
            eprintln!("error: POST {url} failed: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A GUID-shaped random id, like GitHub's delivery ids.
#[must_use]
pub fn random_delivery_id() -> String {
    let b: [u8; 16] = rand::random();
    let h = hex::encode(b);
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

/// Where and how the server runs.
pub struct Runtime {
    pub state: Arc<AppState>,
    pub dry_run: Option<(Arc<DryRunRegistry>, Arc<DryRunBackend>)>,
}

/// Builds the shared state. `dry_run` (or missing credentials) uses the offline
/// GitHub registry and backend.
///
/// # Errors
/// Unusable credentials or Azure settings.
pub fn build_state(
    settings: &Settings,
    pools: Arc<PoolsConfig>,
    dry_run: bool,
    queue: Option<(Spool, QueueOptions)>,
    print_requests: bool,
) -> anyhow::Result<Runtime> {
    let (github, backends, dry): (Arc<dyn RunnerRegistry>, Backends, _) = if dry_run {
        let g = Arc::new(DryRunRegistry::new());
        let b = Arc::new(DryRunBackend::new(print_requests));
        (g.clone(), Backends::single(b.clone()), Some((g, b)))
    } else {
        let (g, b) = crate::wiring::live_clients(settings, &pools)?;
        (g, b, None)
    };
    let state = assemble_state(settings, pools, github, backends, queue);
    Ok(Runtime { state, dry_run: dry })
}

/// Wires the handlers over any GitHub registry and backends (tests use their own).
#[must_use]
pub fn assemble_state(
    settings: &Settings,
    pools: Arc<PoolsConfig>,
    github: Arc<dyn RunnerRegistry>,
    backends: Backends,
    queue: Option<(Spool, QueueOptions)>,
) -> Arc<AppState> {
    let standalone = queue.is_some();
    let mut provisioner = Provisioner::new(pools.clone(), github, backends);
    if standalone {
        // Standalone: this process's reconcile is the only one, and it leaves held
        // registrations alone, so a throttled create may keep its registration longer.
        provisioner = provisioner.with_registration_hold(crate::provision::STANDALONE_HELD_REGISTRATION_TTL);
    }
    let provisioner = Arc::new(provisioner);
    let reconciler = Arc::new(Reconciler::new(provisioner.clone(), settings.hook_scope.is_some()));
    let max_attempts = settings.max_attempts.unwrap_or(DEFAULT_MAX_ATTEMPTS);

    let queue = queue.map(|(spool, mut options)| {
        if options.max_attempts == 0 {
            options.max_attempts = max_attempts;
        }
        StandaloneQueue::start(spool, options, queue_handler(provisioner.clone()))
    });
    Arc::new(AppState {
        secrets: settings.webhook_secrets.clone(),
        pools,
        provisioner,
        reconciler,
        queue,
        max_attempts,
        envelope_access: crate::server::EnvelopeAccess::new(!standalone, settings.admin_token.clone()),
    })
}

async fn serve(args: ServeArgs, settings: Result<Settings, ConfigErrors>) -> anyhow::Result<()> {
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
