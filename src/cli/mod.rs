//! The commands: serve (default), check-config, route, send-webhook, demo, doctor,
//! status, github-app-manifest.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{ConfigErrors, PoolsConfig, Settings};
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
    /// Per pool: the idle target and why, idle, busy, booting, failed starts, the oldest
    /// runner, idle runner-minutes and time to runner over the last hour.
    Status {
        /// JSON for scripts instead of text.
        #[arg(long)]
        json: bool,
        /// The standalone server's --state-dir, where its demand log and spool are (under
        /// the host the Function App's storage account is read).
        #[arg(long)]
        state_dir: Option<PathBuf>,
    },
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
            telemetry::init(log_format(settings.as_ref().ok()), "info");
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
            doctor().await
        }
        Command::Status { json, state_dir } => {
            telemetry::init(LogFormat::Pretty, "error");
            status(json, state_dir.as_deref()).await
        }
        Command::GithubAppManifest(args) => crate::manifest::print(&args),
    }
}

/// The log format of the settings: the one asked for, else JSON under the Functions host
/// (its console capture lands in Application Insights), else text. Decided here, not in
/// telemetry, so the logging module needs nothing of the settings.
fn log_format(settings: Option<&Settings>) -> LogFormat {
    match settings {
        Some(s) => s.log_format.unwrap_or(if s.host_port.is_some() { LogFormat::Json } else { LogFormat::Pretty }),
        None => LogFormat::Pretty,
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

mod check_config;
mod doctor;
mod route;
mod send_webhook;
mod serve;
mod status;

use check_config::check_config;
use doctor::doctor;
use route::route;
use send_webhook::send_webhook;
use serve::serve;
use status::status;
