//! The compute seam, at the bottom of the crate: the trait every backend implements (ACI,
//! Batch, the dry-run), what crosses it (the request, a runner's compute as each backend
//! reads it back, the error), and the placement failover any backend with placements uses.
//! It depends on nothing above it but the pool it is given.

pub mod placement;

use std::time::Duration;

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::config::Pool;
use crate::secret::Secret;

/// A value in the runner's environment: secrets must go where the platform hides them
/// (ACI `secureValue`), never in plain settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvValue {
    Plain(String),
    Secret(Secret),
}

/// The job a runner is made for; it lands in tags and names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobInfo {
    pub job_id: u64,
    pub run_id: u64,
    /// `owner/name`.
    pub repository: String,
    /// The job's own `created_at` from GitHub (deterministic: never "now").
    pub job_created_at: Option<String>,
}

/// What a runner is made for: it lands in tags (ACI) or the display name (Batch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Purpose {
    /// A queued job: `<prefix>-<job id>`.
    Job(JobInfo),
    /// Idle capacity registered at `target` (an org login, `owner/repo` or the
    /// enterprise): `<prefix>-i-<8 hex>`.
    Idle { target: String },
}

/// Everything a backend needs to create one runner.
#[derive(Debug, Clone)]
pub struct ComputeRequest {
    /// `<prefix>-<job id>` or `<prefix>-i-<8 hex>`: compute name and runner name.
    pub name: String,
    pub purpose: Purpose,
    /// The id GitHub gave the JIT registration made for this runner (none in registration
    /// mode): recorded on the compute, so cleanup deletes it only for a job that ran on
    /// exactly that runner, not on another scope's runner that took the same name.
    pub runner_id: Option<u64>,
    /// Runner variables (`RUNNER_JITCONFIG`, ...) then the pool's `env`, in a stable order.
    pub env: Vec<(String, EnvValue)>,
}

impl ComputeRequest {
    /// The secret values of the runner's environment, to redact from anything printed.
    #[must_use]
    pub fn secret_values(&self) -> Vec<&str> {
        self.env
            .iter()
            .filter_map(|(_, v)| match v {
                EnvValue::Secret(s) => Some(s.expose()),
                EnvValue::Plain(_) => None,
            })
            .collect()
    }
}

/// Lifecycle of a container group or task, as far as cleanup cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ComputeState {
    /// Created, waiting for a node or pulling the image.
    Pending,
    Running,
    /// Exited with success.
    Succeeded,
    /// Exited with failure, or failed to start.
    Failed,
    Unknown(String),
}

impl ComputeState {
    #[must_use]
    pub fn is_finished(&self) -> bool {
        matches!(self, ComputeState::Succeeded | ComputeState::Failed)
    }
}

/// One existing runner's compute (a container group, a task, a VM), as its backend reads it
/// back: what it was made for is typed here, and each backend maps it to and from its own
/// metadata (ACI tags, a Batch task's display name). Nothing above the backends reads a
/// backend's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComputeInfo {
    pub name: String,
    pub state: ComputeState,
    pub created_at: Option<OffsetDateTime>,
    /// The pool recorded at create (a Batch pool's listing holds several).
    pub pool: Option<String>,
    /// A job's runner: the job it was made for.
    pub job_id: Option<u64>,
    pub run_id: Option<u64>,
    pub repository: Option<String>,
    /// The job's own `created_at`, as recorded at create.
    pub job_created_at: Option<String>,
    /// Idle capacity: where its runner registered (see [`Purpose::Idle`]).
    pub idle_target: Option<String>,
    /// The JIT runner id recorded at create (see [`ComputeRequest::runner_id`]).
    pub runner_id: Option<u64>,
    /// The placement it was created in, for pools that have placements.
    pub placement: Option<String>,
}

impl ComputeInfo {
    /// A compute of which only the name and state are known yet.
    #[must_use]
    pub fn new(name: impl Into<String>, state: ComputeState) -> Self {
        Self {
            name: name.into(),
            state,
            created_at: None,
            pool: None,
            job_id: None,
            run_id: None,
            repository: None,
            job_created_at: None,
            idle_target: None,
            runner_id: None,
            placement: None,
        }
    }

    /// What `request` records on the compute it creates in `pool` (what a backend reads back).
    #[must_use]
    pub fn requested(pool: &Pool, request: &ComputeRequest, state: ComputeState) -> Self {
        let mut info = Self::new(request.name.clone(), state);
        info.pool = Some(pool.name.clone());
        info.runner_id = request.runner_id;
        match &request.purpose {
            Purpose::Job(job) => {
                info.job_id = Some(job.job_id);
                info.run_id = Some(job.run_id);
                info.repository = Some(job.repository.clone());
                info.job_created_at.clone_from(&job.job_created_at);
            }
            Purpose::Idle { target } => info.idle_target = Some(target.clone()),
        }
        info
    }

    /// Where an idle runner registered, when this compute is idle capacity.
    #[must_use]
    pub fn idle_target(&self) -> Option<&str> {
        self.idle_target.as_deref()
    }

    /// The pool recorded on the compute.
    #[must_use]
    pub fn pool_name(&self) -> Option<&str> {
        self.pool.as_deref()
    }

    /// The placement it was created in (empty for pools without placements).
    #[must_use]
    pub fn placement(&self) -> &str {
        self.placement.as_deref().unwrap_or_default()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreateOutcome {
    Created,
    /// 409 / `TaskExists`: another worker created it; success.
    AlreadyExists,
}

/// A failed backend or GitHub step, classified for the queue.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProvisionError {
    /// Try again later (throttling, quota, capacity, 5xx, timeouts, cap reached).
    #[error("{reason}")]
    Retryable { reason: String, retry_after: Option<Duration> },
    /// Not attempted: a client-side throttle (GitHub pacing, or a create quota learned from
    /// `Retry-After`) says come back after `retry_after`. No upstream call was spent, so the
    /// standalone queue does not count it as an attempt.
    #[error("{reason}")]
    Deferred { reason: String, retry_after: Duration },
    /// Retrying will not help (bad image, forbidden, invalid request).
    #[error("{reason}")]
    Permanent { reason: String },
}

impl ProvisionError {
    pub fn retryable(reason: impl Into<String>) -> Self {
        ProvisionError::Retryable { reason: reason.into(), retry_after: None }
    }

    pub fn permanent(reason: impl Into<String>) -> Self {
        ProvisionError::Permanent { reason: reason.into() }
    }

    #[must_use]
    pub fn is_retryable(&self) -> bool {
        matches!(self, ProvisionError::Retryable { .. } | ProvisionError::Deferred { .. })
    }
}

/// One kind of compute. Implementations are thin REST clients; the algorithm lives in
/// [`crate::provision::Provisioner`].
#[async_trait]
pub trait ComputeBackend: Send + Sync {
    /// `aci`, `batch` or `dry-run`.
    fn kind(&self) -> &'static str;

    /// The compute with this name in the pool, in any state.
    async fn find(&self, pool: &Pool, name: &str) -> Result<Option<ComputeInfo>, ProvisionError>;

    /// Creates the compute. Must not update an existing one.
    async fn create(&self, pool: &Pool, request: &ComputeRequest) -> Result<CreateOutcome, ProvisionError>;

    /// Deletes it; a missing one is success.
    async fn delete(&self, pool: &Pool, name: &str) -> Result<(), ProvisionError>;

    /// Every compute of this pool that runner-dispatch created.
    async fn list(&self, pool: &Pool) -> Result<Vec<ComputeInfo>, ProvisionError>;

    /// How many runners of the pool exist now, for `max_runners`; `None` when the
    /// backend caps itself (Batch autoscale). May be cached for a few seconds.
    async fn active_count(&self, pool: &Pool) -> Result<Option<usize>, ProvisionError>;

    /// `Some(wait)` when every place the pool's compute may go refuses creates for now
    /// (ACI placements paused for quota or capacity): the request is deferred before any
    /// call is spent on it.
    fn paused_for(&self, _pool: &Pool) -> Option<Duration> {
        None
    }

    /// For `doctor`: each place the pool's compute may go, and whether it can be listed
    /// with the app's identity (how many of the pool's runners are there). One entry,
    /// unlabelled, unless the backend spreads a pool (ACI placements).
    async fn reach(&self, pool: &Pool) -> Vec<(String, Result<usize, ProvisionError>)> {
        vec![(String::new(), self.list(pool).await.map(|l| l.len()))]
    }
}
