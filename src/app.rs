//! The composition root: builds the provisioner, reconciler, standalone queue and shared
//! state from the settings, for `serve` (both transports), the demo, tests and benchmarks.

use std::sync::Arc;

use crate::azure::demand_blob::{BlobDemandLog, STORAGE_SCOPE};
use crate::backends::Backends;
use crate::config::{GitHubAuth, PoolsConfig, Settings};
use crate::github::RunnerRegistry;
use crate::github::client::GitHubClient;
use crate::github::dry_run::DryRunRegistry;
use crate::idle::demand::{DemandLog, FileDemandLog, MemoryDemandLog};
use crate::provision::Provisioner;
use crate::provision::dry_run::DryRunBackend;
use crate::reconcile::Reconciler;
use crate::server::AppState;
use crate::spool::{QueueOptions, Spool, StandaloneQueue};
use crate::worker::{DEFAULT_MAX_ATTEMPTS, queue_handler};

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
        let live = live_clients(settings, &pools)?;
        (live.github, live.backends, None)
    };
    let state = assemble_state(settings, pools, github, backends, queue);
    Ok(Runtime { state, dry_run: dry })
}

/// The live GitHub client and Azure backends, built once: `serve` uses them through the
/// seams, `doctor` also asks the client what only it can answer (runner groups).
pub struct LiveClients {
    pub github: Arc<GitHubClient>,
    pub backends: Backends,
}

/// Builds the live GitHub client and Azure backends from the settings.
///
/// # Errors
/// Missing or unusable credentials and settings, in words.
pub fn live_clients(settings: &Settings, pools: &PoolsConfig) -> anyhow::Result<LiveClients> {
    if matches!(settings.github_auth, GitHubAuth::None) {
        anyhow::bail!("no GitHub credentials: set GITHUB_APP_ID and GITHUB_APP_PRIVATE_KEY, or GITHUB_TOKEN");
    }
    let problems = crate::backends::azure_setting_problems(settings, pools);
    if !problems.is_empty() {
        anyhow::bail!(
            "missing Azure settings:\n{}",
            problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")
        );
    }
    let backends = crate::backends::live(settings).map_err(|e| anyhow::anyhow!("Azure credentials: {e}"))?;
    let github = GitHubClient::new(settings).map_err(|e| anyhow::anyhow!("GitHub client: {e}"))?;
    Ok(LiveClients { github: Arc::new(github), backends })
}

/// Where the idle runners' demand log lives: the state directory standalone; the Function
/// App's own storage account under the host (a local file when the host runs on a
/// connection string, as `func start` with Azurite does); memory elsewhere (tests, demo).
pub fn demand_log(settings: &Settings, state_dir: Option<&std::path::Path>, under_host: bool) -> Arc<dyn DemandLog> {
    if let Some(dir) = state_dir {
        return Arc::new(FileDemandLog::new(dir));
    }
    if !under_host {
        return Arc::new(MemoryDemandLog::default());
    }
    let blob = settings.azure.state_blob_url.as_deref().and_then(|url| {
        let credential = crate::azure::AzureCredential::from_settings(&settings.azure)
            .map_err(|e| tracing::warn!(event = "demand_log_local", error = %e, "no Azure credential for the state blobs; keeping the demand log in a local file"))
            .ok()?;
        Some(BlobDemandLog::new(url, credential.token_source(STORAGE_SCOPE)))
    });
    match blob {
        Some(b) => Arc::new(b),
        None => {
            let dir = std::env::temp_dir().join("runner-dispatch-state");
            tracing::warn!(event = "demand_log_local", dir = %dir.display(), "AzureWebJobsStorage__blobServiceUri is not set; the idle runners' demand log is a local file");
            Arc::new(FileDemandLog::new(&dir))
        }
    }
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
    let demand = demand_log(settings, queue.as_ref().map(|(spool, _)| spool.state_dir()), settings.host_port.is_some());
    let mut provisioner = Provisioner::new(pools.clone(), github, backends).with_demand_log(demand);
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
        if options.max_pending == 0 {
            options.max_pending = settings.spool_max.unwrap_or(crate::spool::DEFAULT_SPOOL_MAX);
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
