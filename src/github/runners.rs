//! Runner calls where runners register (org, repo or enterprise): JIT configurations,
//! registration tokens, listing, finding and deleting runners, runner groups and job state;
//! and [`RunnerRegistry`] for the live client.

use async_trait::async_trait;
use reqwest::Method;
use serde::Deserialize;
use serde_json::json;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::client::GitHubClient;
use super::transport::{MAX_PAGES, PER_PAGE, segment};
use super::{
    Delivery, GitHubError, JitConfig, JobContext, JobState, RegistrationToken, RunnerDeletion, RunnerInfo,
    RunnerRegistry, RunnerTarget,
};
use crate::secret::Secret;

/// Registration tokens live 1 h; reuse one while it has more than this left.
const REGISTRATION_TOKEN_MIN_LEFT: time::Duration = time::Duration::minutes(10);

/// A runner group's access settings (`visibility`: `all`, `selected` or `private`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RunnerGroup {
    pub id: u64,
    pub name: String,
    pub visibility: String,
    #[serde(default)]
    pub allows_public_repositories: bool,
}

/// A repository a runner group admits (`minimal-repository`, the fields `doctor` reads).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct GroupRepository {
    pub full_name: String,
    #[serde(default)]
    pub private: bool,
    #[serde(default)]
    pub visibility: Option<String>,
}

impl GroupRepository {
    /// Public unless GitHub says private or internal.
    #[must_use]
    pub fn is_public(&self) -> bool {
        self.visibility.as_deref().map_or(!self.private, |v| v.eq_ignore_ascii_case("public"))
    }
}

/// The repositories a runner group with `visibility = "selected"` admits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupRepositories {
    pub repositories: Vec<GroupRepository>,
    /// GitHub's `total_count`: more than `repositories` holds when the pages ran out.
    pub total_count: u64,
}

impl GitHubClient {
    /// `GET /orgs/{org}/actions/runner-groups/{id}/repositories`, page by page: the
    /// repositories a `selected` group admits, for `doctor`'s isolation check.
    ///
    /// # Errors
    /// As every call: not found, permission, rate limit, transport.
    pub async fn runner_group_repositories(
        &self,
        job: &JobContext,
        org: &str,
        id: u64,
    ) -> Result<GroupRepositories, GitHubError> {
        #[derive(Deserialize)]
        struct Page {
            total_count: u64,
            repositories: Vec<GroupRepository>,
        }
        let bearer = self.runner_bearer(job).await?;
        let path = format!("orgs/{}/actions/runner-groups/{id}/repositories", segment(org)?);
        let mut all = GroupRepositories { repositories: Vec::new(), total_count: 0 };
        for page in 1..=MAX_PAGES {
            let mut url = self.url(&path)?;
            url.query_pairs_mut().append_pair("per_page", &PER_PAGE.to_string()).append_pair("page", &page.to_string());
            let reply = self.send(Method::GET, url, None, &bearer, &[]).await?;
            let page: Page = reply.json(&Method::GET, &path)?;
            let n = page.repositories.len();
            all.total_count = page.total_count;
            all.repositories.extend(page.repositories);
            if n < PER_PAGE {
                break;
            }
        }
        Ok(all)
    }

    /// `GET /orgs/{org}/actions/runner-groups/{id}`: who may use the group, for `doctor`'s
    /// isolation check.
    ///
    /// # Errors
    /// As every call: not found, permission, rate limit, transport.
    pub async fn runner_group(&self, job: &JobContext, org: &str, id: u64) -> Result<RunnerGroup, GitHubError> {
        let bearer = self.runner_bearer(job).await?;
        let path = format!("orgs/{}/actions/runner-groups/{id}", segment(org)?);
        let reply = self.send(Method::GET, self.url(&path)?, None, &bearer, &[]).await?;
        reply.json(&Method::GET, &path)
    }

    /// `orgs/{org}`, `repos/{o}/{r}` or `enterprises/{e}` with every name checked by [`segment`].
    fn target_prefix(target: &RunnerTarget) -> Result<String, GitHubError> {
        match target {
            RunnerTarget::Org { org } => segment(org)?,
            RunnerTarget::Repo { owner, repo } => {
                segment(owner)?;
                segment(repo)?
            }
            RunnerTarget::Enterprise { enterprise } => segment(enterprise)?,
        };
        Ok(target.api_prefix())
    }

    /// The bearer for runner calls at the job's target.
    async fn runner_bearer(&self, job: &JobContext) -> Result<Secret, GitHubError> {
        self.bearer_for_job(job, || Self::installation_lookup_for_target(job)).await
    }

    /// `orgs/{org}` or `repos/{o}/{r}`: where to look up the installation for a runner call.
    fn installation_lookup_for_target(job: &JobContext) -> Result<String, GitHubError> {
        match &job.target {
            RunnerTarget::Org { .. } | RunnerTarget::Repo { .. } => Self::target_prefix(&job.target),
            RunnerTarget::Enterprise { enterprise } => Err(GitHubError::Permanent(format!(
                "enterprise {enterprise}: the GitHub App installation cannot be looked up for enterprise runners; \
                 set GITHUB_APP_INSTALLATION_ID or use the App's own webhook (its payloads carry the installation)"
            ))),
        }
    }

    /// Every runner at the target (optionally only those named `name`), page by page.
    async fn runners(&self, job: &JobContext, name: Option<&str>) -> Result<Vec<RunnerInfo>, GitHubError> {
        #[derive(Deserialize)]
        struct Page {
            runners: Vec<RunnerJson>,
        }
        let bearer = self.runner_bearer(job).await?;
        let path = format!("{}/actions/runners", Self::target_prefix(&job.target)?);
        let mut all = Vec::new();
        for page in 1..=MAX_PAGES {
            let mut url = self.url(&path)?;
            {
                let mut q = url.query_pairs_mut();
                if let Some(name) = name {
                    q.append_pair("name", name);
                }
                q.append_pair("per_page", &PER_PAGE.to_string());
                q.append_pair("page", &page.to_string());
            }
            let reply = self.send(Method::GET, url, None, &bearer, &[]).await?;
            let page: Page = reply.json(&Method::GET, &path)?;
            let n = page.runners.len();
            all.extend(page.runners.into_iter().map(RunnerJson::into_info));
            if n < PER_PAGE {
                break;
            }
        }
        Ok(all)
    }
}

#[derive(Deserialize)]
struct RunnerJson {
    id: u64,
    name: String,
    status: String,
    #[serde(default)]
    busy: bool,
    #[serde(default)]
    labels: Vec<LabelJson>,
}

#[derive(Deserialize)]
struct LabelJson {
    name: String,
}

impl RunnerJson {
    fn into_info(self) -> RunnerInfo {
        RunnerInfo {
            id: self.id,
            name: self.name,
            online: self.status == "online",
            busy: self.busy,
            labels: self.labels.into_iter().map(|l| l.name).collect(),
        }
    }
}

#[async_trait]
impl RunnerRegistry for GitHubClient {
    async fn generate_jit_config(
        &self,
        job: &JobContext,
        name: &str,
        labels: &[String],
        runner_group_id: u64,
    ) -> Result<JitConfig, GitHubError> {
        #[derive(Deserialize)]
        struct Jit {
            runner: RunnerId,
            encoded_jit_config: String,
        }
        #[derive(Deserialize)]
        struct RunnerId {
            id: u64,
        }
        let bearer = self.runner_bearer(job).await?;
        let path = format!("{}/actions/runners/generate-jitconfig", Self::target_prefix(&job.target)?);
        let body = json!({
            "name": name,
            "runner_group_id": runner_group_id,
            "labels": labels,
            "work_folder": "_work",
        });
        let reply = self.send(Method::POST, self.url(&path)?, Some(&body), &bearer, &[]).await?;
        let jit: Jit = reply.json(&Method::POST, &path)?;
        Ok(JitConfig { runner_id: jit.runner.id, encoded_jit_config: Secret::new(jit.encoded_jit_config) })
    }

    async fn registration_token(&self, job: &JobContext) -> Result<RegistrationToken, GitHubError> {
        #[derive(Deserialize)]
        struct Token {
            token: String,
            expires_at: String,
        }
        let prefix = Self::target_prefix(&job.target)?;
        let mut cache = self.registration_tokens.lock().await;
        let now = OffsetDateTime::now_utc();
        if let Some(t) = cache.get(&prefix).filter(|t| t.expires_at - now > REGISTRATION_TOKEN_MIN_LEFT) {
            return Ok(t.clone());
        }
        let bearer = self.runner_bearer(job).await?;
        let path = format!("{prefix}/actions/runners/registration-token");
        let reply = self.send(Method::POST, self.url(&path)?, None, &bearer, &[]).await?;
        let minted: Token = reply.json(&Method::POST, &path)?;
        let expires_at = OffsetDateTime::parse(&minted.expires_at, &Rfc3339).map_err(|_| {
            GitHubError::Transient(format!("POST /{path}: expires_at {:?} is not a date", minted.expires_at))
        })?;
        let token = RegistrationToken { token: Secret::new(minted.token), expires_at };
        cache.insert(prefix, token.clone());
        Ok(token)
    }

    async fn find_runner(&self, job: &JobContext, name: &str) -> Result<Option<RunnerInfo>, GitHubError> {
        // The `name` filter exists for org, repo and enterprise lists; match exactly anyway.
        Ok(self.runners(job, Some(name)).await?.into_iter().find(|r| r.name == name))
    }

    async fn list_runners(&self, job: &JobContext) -> Result<Vec<RunnerInfo>, GitHubError> {
        self.runners(job, None).await
    }

    async fn delete_runner(&self, job: &JobContext, runner_id: u64) -> Result<RunnerDeletion, GitHubError> {
        let bearer = self.runner_bearer(job).await?;
        let path = format!("{}/actions/runners/{runner_id}", Self::target_prefix(&job.target)?);
        let reply = self.send(Method::DELETE, self.url(&path)?, None, &bearer, &[404, 422]).await?;
        Ok(match reply.status.as_u16() {
            404 => RunnerDeletion::NotFound,
            422 => RunnerDeletion::Busy,
            _ => RunnerDeletion::Deleted,
        })
    }

    async fn job_state(&self, job: &JobContext, job_id: u64) -> Result<JobState, GitHubError> {
        #[derive(Deserialize)]
        struct Job {
            status: String,
            runner_name: Option<String>,
        }
        let Some((owner, name)) = job.repository.split_once('/') else {
            return Err(GitHubError::Permanent("the job's repository is not owner/name".into()));
        };
        let repository = format!("{}/{}", segment(owner)?, segment(name)?);
        let bearer = self.bearer_for_job(job, || Ok(format!("repos/{repository}"))).await?;
        let path = format!("repos/{repository}/actions/jobs/{job_id}");
        let reply = self.send(Method::GET, self.url(&path)?, None, &bearer, &[]).await?;
        let state: Job = reply.json(&Method::GET, &path)?;
        Ok(match state.status.as_str() {
            "queued" => JobState::Queued,
            "in_progress" => JobState::InProgress { runner_name: state.runner_name.filter(|n| !n.is_empty()) },
            "completed" => JobState::Completed,
            other => JobState::Other(other.to_owned()),
        })
    }

    // The hook's calls live with the hook (hooks.rs); the trait is one impl.
    async fn list_deliveries(&self, since: OffsetDateTime) -> Result<Vec<Delivery>, GitHubError> {
        self.hook_deliveries_since(since).await
    }

    async fn redeliver(&self, delivery_id: u64) -> Result<(), GitHubError> {
        self.redeliver_hook_delivery(delivery_id).await
    }

    fn runner_url(&self, job: &JobContext) -> String {
        match &job.target {
            RunnerTarget::Org { org } => format!("{}/{org}", self.web),
            RunnerTarget::Repo { owner, repo } => format!("{}/{owner}/{repo}", self.web),
            RunnerTarget::Enterprise { enterprise } => format!("{}/enterprises/{enterprise}", self.web),
        }
    }
}
