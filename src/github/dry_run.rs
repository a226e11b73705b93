//! An offline [`RunnerRegistry`]: records calls and hands out placeholder credentials.
//! Used by `demo` and when no GitHub credentials are configured.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use time::OffsetDateTime;

use super::{
    Delivery, GitHubError, JitConfig, JobContext, JobState, RegistrationToken, RunnerDeletion, RunnerInfo,
    RunnerRegistry,
};
use crate::secret::Secret;

/// Records what would have been asked of GitHub.
#[derive(Debug, Default)]
pub struct DryRunRegistry {
    next_id: AtomicU64,
    calls: Mutex<Vec<String>>,
}

impl DryRunRegistry {
    #[must_use]
    pub fn new() -> Self {
        Self { next_id: AtomicU64::new(1), calls: Mutex::new(Vec::new()) }
    }

    /// The calls made so far, one line each (no secrets).
    #[must_use]
    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().map(|c| c.clone()).unwrap_or_default()
    }

    fn record(&self, line: String) {
        if let Ok(mut c) = self.calls.lock() {
            c.push(line);
        }
    }
}

#[async_trait]
impl RunnerRegistry for DryRunRegistry {
    async fn generate_jit_config(
        &self,
        job: &JobContext,
        name: &str,
        labels: &[String],
        runner_group_id: u64,
    ) -> Result<JitConfig, GitHubError> {
        self.record(format!(
            "POST /{}/actions/runners/generate-jitconfig name={name} labels={} runner_group_id={runner_group_id}",
            job.target.api_prefix(),
            labels.join(",")
        ));
        Ok(JitConfig {
            runner_id: self.next_id.fetch_add(1, Ordering::Relaxed),
            encoded_jit_config: Secret::new(format!("dry-run-jit-config-for-{name}")),
        })
    }

    async fn registration_token(&self, job: &JobContext) -> Result<RegistrationToken, GitHubError> {
        self.record(format!("POST /{}/actions/runners/registration-token", job.target.api_prefix()));
        Ok(RegistrationToken {
            token: Secret::new("dry-run-registration-token"),
            expires_at: OffsetDateTime::now_utc() + time::Duration::hours(1),
        })
    }

    async fn find_runner(&self, _job: &JobContext, _name: &str) -> Result<Option<RunnerInfo>, GitHubError> {
        Ok(None)
    }

    async fn list_runners(&self, _job: &JobContext) -> Result<Vec<RunnerInfo>, GitHubError> {
        Ok(Vec::new())
    }

    async fn delete_runner(&self, job: &JobContext, runner_id: u64) -> Result<RunnerDeletion, GitHubError> {
        self.record(format!("DELETE /{}/actions/runners/{runner_id}", job.target.api_prefix()));
        Ok(RunnerDeletion::Deleted)
    }

    async fn job_state(&self, _job: &JobContext, _job_id: u64) -> Result<JobState, GitHubError> {
        Ok(JobState::Queued)
    }

    async fn list_deliveries(&self, _since: OffsetDateTime) -> Result<Vec<Delivery>, GitHubError> {
        Ok(Vec::new())
    }

    async fn redeliver(&self, _delivery_id: u64) -> Result<(), GitHubError> {
        Ok(())
    }

    fn runner_url(&self, job: &JobContext) -> String {
        match &job.target {
            super::RunnerTarget::Org { org } => format!("https://github.com/{org}"),
            super::RunnerTarget::Repo { owner, repo } => format!("https://github.com/{owner}/{repo}"),
            super::RunnerTarget::Enterprise { enterprise } => format!("https://github.com/enterprises/{enterprise}"),
        }
    }
}
