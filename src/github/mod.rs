//! The GitHub side: what provisioning, cleanup and reconcile need from GitHub, behind
//! [`RunnerRegistry`], with the live client in [`client`] and an offline one in [`dry_run`].
//!
//! The live client's calls are split by concept: `auth` (App JWT, installation tokens,
//! PAT, token caches), `transport` (URLs, the retry helper, error mapping, pagination),
//! `runners` (JIT, registration tokens, runners, runner groups, jobs) and `hooks` (hook
//! deliveries and redelivery), layered so no file needs one above it: `transport` at the
//! bottom, `auth` on it, `client` (the struct, `send`) on both, `runners` and `hooks` on
//! the client. The public paths stay `github::client::*`.

mod auth;
pub mod client;
pub mod dry_run;
mod hook_path;
mod hooks;
mod runners;
mod transport;

pub use runners::{GroupRepositories, GroupRepository, RunnerGroup};

use std::time::Duration;

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::secret::Secret;

/// Where a runner registers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunnerTarget {
    Org { org: String },
    Repo { owner: String, repo: String },
    Enterprise { enterprise: String },
}

impl RunnerTarget {
    /// The API path prefix: `orgs/{org}`, `repos/{o}/{r}` or `enterprises/{e}`.
    #[must_use]
    pub fn api_prefix(&self) -> String {
        match self {
            RunnerTarget::Org { org } => format!("orgs/{org}"),
            RunnerTarget::Repo { owner, repo } => format!("repos/{owner}/{repo}"),
            RunnerTarget::Enterprise { enterprise } => format!("enterprises/{enterprise}"),
        }
    }
}

/// The job a call is made for: which installation token to use, and where the runner registers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobContext {
    pub target: RunnerTarget,
    /// `owner/name` of the job's repository.
    pub repository: String,
    pub owner: String,
    /// From the payload (App hooks); otherwise looked up.
    pub installation_id: Option<u64>,
}

/// A fresh JIT runner configuration.
#[derive(Debug, Clone)]
pub struct JitConfig {
    pub runner_id: u64,
    pub encoded_jit_config: Secret,
}

/// A registration token (legacy mode).
#[derive(Debug, Clone)]
pub struct RegistrationToken {
    pub token: Secret,
    pub expires_at: OffsetDateTime,
}

/// A registered self-hosted runner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunnerInfo {
    pub id: u64,
    pub name: String,
    /// `status == "online"`.
    pub online: bool,
    pub busy: bool,
    pub labels: Vec<String>,
}

/// What GitHub says of a job now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobState {
    Queued,
    InProgress { runner_name: Option<String> },
    Completed,
    Other(String),
}

/// Result of deleting a runner registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunnerDeletion {
    Deleted,
    NotFound,
    /// 422: the runner is running a job; leave it.
    Busy,
}

/// One webhook delivery as listed by GitHub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub id: u64,
    pub guid: String,
    pub delivered_at: Option<OffsetDateTime>,
    pub redelivery: bool,
    pub status: String,
    pub status_code: u16,
    pub event: String,
    pub action: Option<String>,
}

/// A failed GitHub call, classified for the queue.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GitHubError {
    /// 409: e.g. a runner with this name is already registered.
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("not found: {0}")]
    NotFound(String),
    /// Primary or secondary rate limit (403/429 with retry-after or x-ratelimit-reset).
    #[error("rate limited by GitHub; retry after {retry_after:?}")]
    RateLimited { retry_after: Duration },
    /// 5xx, timeouts, connection errors: worth retrying later.
    #[error("GitHub unavailable: {0}")]
    Transient(String),
    /// 4xx that retrying will not fix (bad credentials, missing permission, validation).
    #[error("GitHub refused: {0}")]
    Permanent(String),
}

impl GitHubError {
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        matches!(self, GitHubError::RateLimited { .. } | GitHubError::Transient(_))
    }
}

/// What the pipeline needs from GitHub. The live client and the dry-run both implement it.
#[async_trait]
pub trait RunnerRegistry: Send + Sync {
    /// `POST /{target}/actions/runners/generate-jitconfig`.
    async fn generate_jit_config(
        &self,
        job: &JobContext,
        name: &str,
        labels: &[String],
        runner_group_id: u64,
    ) -> Result<JitConfig, GitHubError>;

    /// `POST /{target}/actions/runners/registration-token`, cached while it has minutes left.
    async fn registration_token(&self, job: &JobContext) -> Result<RegistrationToken, GitHubError>;

    /// The runner with exactly this name, if registered.
    async fn find_runner(&self, job: &JobContext, name: &str) -> Result<Option<RunnerInfo>, GitHubError>;

    /// Every runner registered at the job's target (paged).
    async fn list_runners(&self, job: &JobContext) -> Result<Vec<RunnerInfo>, GitHubError>;

    async fn delete_runner(&self, job: &JobContext, runner_id: u64) -> Result<RunnerDeletion, GitHubError>;

    /// `GET /repos/{o}/{r}/actions/jobs/{id}`.
    async fn job_state(&self, job: &JobContext, job_id: u64) -> Result<JobState, GitHubError>;

    /// Deliveries of the configured hook since `since` (newest first, paged, no status filter).
    async fn list_deliveries(&self, since: OffsetDateTime) -> Result<Vec<Delivery>, GitHubError>;

    /// Asks GitHub to redeliver one delivery.
    async fn redeliver(&self, delivery_id: u64) -> Result<(), GitHubError>;

    /// The URL a runner registers against in registration mode (`https://github.com/org`).
    fn runner_url(&self, job: &JobContext) -> String;
}
