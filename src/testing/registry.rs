//! A scriptable GitHub at the [`RunnerRegistry`] seam, for the algorithm's branches.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

use async_trait::async_trait;

use crate::github::{
    Delivery, GitHubError, JitConfig, JobContext, JobState, RegistrationToken, RunnerDeletion, RunnerInfo,
    RunnerRegistry,
};

/// A scriptable GitHub at the `RunnerRegistry` seam: runners, job states and deliveries
/// set by the test, JIT answers from a script, every call recorded as a line.
#[derive(Default)]
pub struct FakeGitHub {
    pub runners: Mutex<Vec<RunnerInfo>>,
    pub jobs: Mutex<BTreeMap<u64, Result<JobState, GitHubError>>>,
    pub deliveries: Mutex<Vec<Delivery>>,
    pub jit_script: Mutex<VecDeque<Result<(), GitHubError>>>,
    pub busy_on_delete: Mutex<Vec<u64>>,
    /// While set, listing runners fails (a GitHub outage at every registration target).
    pub list_runners_fails: Mutex<bool>,
    pub calls: Mutex<Vec<String>>,
    pub next_id: Mutex<u64>,
    /// Put into every JIT config and registration token handed out (leak tests look for it).
    pub marker: String,
}

impl FakeGitHub {
    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().expect("lock").clone()
    }

    fn call(&self, c: String) {
        self.calls.lock().expect("lock").push(c);
    }

    pub fn add_runner(&self, id: u64, name: &str, online: bool, busy: bool) {
        self.runners.lock().expect("lock").push(RunnerInfo { id, name: name.into(), online, busy, labels: vec![] });
    }
}

#[async_trait]
impl RunnerRegistry for FakeGitHub {
    async fn generate_jit_config(
        &self,
        _job: &JobContext,
        name: &str,
        labels: &[String],
        group: u64,
    ) -> Result<JitConfig, GitHubError> {
        self.call(format!("jit {name} {} {group}", labels.join(",")));
        if let Some(Err(e)) = self.jit_script.lock().expect("lock").pop_front() {
            return Err(e);
        }
        if self.runners.lock().expect("lock").iter().any(|r| r.name == name) {
            return Err(GitHubError::Conflict(format!("{name} exists")));
        }
        let mut id = self.next_id.lock().expect("lock");
        *id += 1000;
        self.add_runner(*id, name, false, false);
        Ok(JitConfig { runner_id: *id, encoded_jit_config: format!("jit-secret-{}{name}", self.marker).into() })
    }

    async fn registration_token(&self, _job: &JobContext) -> Result<RegistrationToken, GitHubError> {
        self.call("registration-token".into());
        Ok(RegistrationToken {
            token: format!("reg-token-secret{}", self.marker).into(),
            expires_at: time::OffsetDateTime::now_utc() + time::Duration::hours(1),
        })
    }

    async fn find_runner(&self, _job: &JobContext, name: &str) -> Result<Option<RunnerInfo>, GitHubError> {
        self.call(format!("find {name}"));
        Ok(self.runners.lock().expect("lock").iter().find(|r| r.name == name).cloned())
    }

    async fn list_runners(&self, _job: &JobContext) -> Result<Vec<RunnerInfo>, GitHubError> {
        self.call("list-runners".into());
        if *self.list_runners_fails.lock().expect("lock") {
            return Err(GitHubError::Transient("scripted outage".into()));
        }
        Ok(self.runners.lock().expect("lock").clone())
    }

    async fn delete_runner(&self, _job: &JobContext, runner_id: u64) -> Result<RunnerDeletion, GitHubError> {
        self.call(format!("delete-runner {runner_id}"));
        if self.busy_on_delete.lock().expect("lock").contains(&runner_id) {
            return Ok(RunnerDeletion::Busy);
        }
        let mut r = self.runners.lock().expect("lock");
        let before = r.len();
        r.retain(|x| x.id != runner_id);
        Ok(if r.len() < before { RunnerDeletion::Deleted } else { RunnerDeletion::NotFound })
    }

    async fn job_state(&self, _job: &JobContext, job_id: u64) -> Result<JobState, GitHubError> {
        self.call(format!("job {job_id}"));
        self.jobs.lock().expect("lock").get(&job_id).cloned().unwrap_or(Ok(JobState::Queued))
    }

    async fn list_deliveries(&self, _since: time::OffsetDateTime) -> Result<Vec<Delivery>, GitHubError> {
        self.call("list-deliveries".into());
        Ok(self.deliveries.lock().expect("lock").clone())
    }

    async fn redeliver(&self, delivery_id: u64) -> Result<(), GitHubError> {
        self.call(format!("redeliver {delivery_id}"));
        Ok(())
    }

    fn runner_url(&self, job: &JobContext) -> String {
        format!("https://github.com/{}", job.owner)
    }
}
