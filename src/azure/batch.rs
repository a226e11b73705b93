//! Azure Batch: one task per runner, in one long-lived job per Batch pool, through the
//! Batch data plane REST API (Entra ID token or Shared Key).

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};
use reqwest::{Method, StatusCode, Url};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::credential::{AzureCredential, CredentialError, SharedKey, TokenSource, batch_scope};
use super::http::{AzureError, http_client, http_date, registry_host, same_origin, transport_error};
use crate::compute::{
    ComputeBackend, ComputeInfo, ComputeRequest, ComputeState, CreateOutcome, EnvValue, ProvisionError, Purpose,
};
use crate::config::{Compute, ConfigProblem, Os, Pool, PoolKeys, Role, Settings, TokenMode};
use crate::duration::to_iso8601;

pub const BATCH_API_VERSION: &str = "2025-06-01.21.0";
pub const BATCH_CONTENT_TYPE: &str = "application/json; odata=minimalmetadata";

/// Where the infrastructure's start task installs the runner on `run_on_host` nodes.
pub const HOST_RUNNER_DIR_LINUX: &str = "/opt/actions-runner";
pub const HOST_RUNNER_DIR_WINDOWS: &str = r"C:\actions-runner";

/// How long Batch keeps a finished task's directory on the node (stdout/stderr for
/// debugging, and on `run_on_host` the runner copy and its `_work`). Task *records*
/// stay until deleted; reconcile deletes them.
pub const TASK_RETENTION: &str = "PT1H";

/// Finished task records are kept this long for debugging, then reconcile deletes them.
pub const FINISHED_TASK_RETENTION: Duration = Duration::from_secs(2 * 3600);

/// A Batch pool's own settings (`backend = "batch"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchPool {
    /// The Azure Batch pool the tasks run on (never empty).
    pub batch_pool_id: String,
    /// Run the runner on the VM instead of in a container.
    pub run_on_host: bool,
    /// Accept registration tokens in task settings, which readers of the account can see.
    pub allow_readable_tokens: bool,
}

/// The pool keys only Batch reads.
pub const POOL_KEYS: &[&str] = &["batch_pool_id", "run_on_host", "allow_readable_tokens"];

/// Reads and checks the Batch keys of a pool (see [`Role`]): kept on Batch pools.
pub(crate) fn parse_pool(keys: &mut PoolKeys<'_>, role: Role) -> Option<BatchPool> {
    let batch_pool_id = keys.string("batch_pool_id");
    let run_on_host = keys.boolean("run_on_host").unwrap_or(false);
    let allow_readable_tokens = keys.boolean("allow_readable_tokens").unwrap_or(false);
    match role {
        Role::Chosen => {}
        Role::Other => {
            if run_on_host {
                keys.error(keys.own_key("run_on_host"), "only Batch pools can run the runner on the VM");
            }
            return None;
        }
        Role::Unknown => return None,
    }
    let batch_pool_id = batch_pool_id.filter(|id| !id.is_empty());
    if batch_pool_id.is_none() {
        keys.error(keys.own_key("batch_pool_id"), "required for backend = \"batch\": the Azure Batch pool id");
    }
    if keys.github.token_mode == TokenMode::Registration && !allow_readable_tokens {
        keys.error(
            keys.own_key("allow_readable_tokens"),
            "token_mode = \"registration\" on a Batch pool puts a registration token in task settings that anyone who can read the Batch account can read; use token_mode = \"jit\" or set allow_readable_tokens = true",
        );
    }
    if keys.max_runners.is_some() {
        keys.warn(
            keys.key("max_runners"),
            "ignored for Batch pools: the Batch pool's autoscale limit caps runners and Batch queues the rest",
        );
    }
    Some(BatchPool { batch_pool_id: batch_pool_id?, run_on_host, allow_readable_tokens })
}

/// Settings Batch pools need and the environment lacks.
#[must_use]
pub fn required_settings(settings: &Settings) -> Vec<ConfigProblem> {
    if settings.azure.batch_account_url.is_some() {
        return Vec::new();
    }
    vec![ConfigProblem::required("AZURE_BATCH_ACCOUNT_URL", "Batch pools add tasks through this account endpoint")]
}

/// The Batch part of a pool the Batch backend was given.
fn batch_of(pool: &Pool) -> Result<&BatchPool, ProvisionError> {
    match &pool.compute {
        Compute::Batch(b) => Ok(b),
        other => Err(ProvisionError::permanent(format!(
            "pool {} has backend = \"{}\", not \"batch\"",
            pool.name,
            other.backend().as_str()
        ))),
    }
}

/// Batch ids: at most 64 characters.
const MAX_ID_LEN: usize = 64;
const JOB_ID_PREFIX: &str = "runner-dispatch-";

/// Error codes that mean "later" (Batch status and error code reference, `BatchErrorCode`).
const RETRYABLE_CODES: &[&str] = &[
    "ServerBusy",
    "OperationTimedOut",
    "InternalError",
    "TooManyRequests",
    "ActiveJobAndScheduleQuotaReached",
    "JobBeingDeleted",
    "JobBeingTerminated",
    "JobNotActive",
];

/// The Batch job that holds a Batch pool's runner tasks: `runner-dispatch-<batch_pool_id>`,
/// characters outside `[A-Za-z0-9_-]` replaced, and when longer than 64 characters cut
/// and suffixed with a hash of the pool id (stable, and distinct for distinct pools).
#[must_use]
pub fn batch_job_id(batch_pool_id: &str) -> String {
    let clean: String = batch_pool_id
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '-' })
        .collect();
    let id = format!("{JOB_ID_PREFIX}{clean}");
    if id.len() <= MAX_ID_LEN {
        return id;
    }
    let hash = hex::encode(Sha256::digest(batch_pool_id.as_bytes()));
    let keep = MAX_ID_LEN - JOB_ID_PREFIX.len() - 1 - 8;
    format!("{JOB_ID_PREFIX}{}-{}", &clean[..keep], &hash[..8])
}

/// Task ids: 1–64 characters of `[A-Za-z0-9_-]`.
#[must_use]
pub fn is_valid_task_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_ID_LEN && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The add-job body: one long-lived job per Batch pool. `noaction` keeps it open when it
/// has no tasks; a job per GitHub job would hit the active-job quota.
#[must_use]
pub fn batch_job_body(batch: &BatchPool) -> Value {
    let pool_id = batch.batch_pool_id.as_str();
    json!({
        "id": batch_job_id(pool_id),
        "displayName": format!("runner-dispatch runners on Batch pool {pool_id}"),
        "poolInfo": { "poolId": pool_id },
        "onAllTasksComplete": "noaction",
        "onTaskFailure": "noaction",
        "constraints": { "maxTaskRetryCount": 0 },
        "metadata": [{ "name": "created-by", "value": "runner-dispatch" }],
    })
}

/// The task's command line. Batch does not run it in a shell, so each starts one
/// explicitly. A container task overrides the image's ENTRYPOINT with it and runs the
/// image's own start script (`/entrypoint.sh`, `C:\entrypoint.ps1`). On `run_on_host`
/// the runner runs on the VM: the start task has installed it under
/// [`HOST_RUNNER_DIR_LINUX`] / [`HOST_RUNNER_DIR_WINDOWS`]; each task copies it into its
/// own working directory (tasks sharing a node must not share `.runner` files), then runs
/// it with the JIT config, or registers it first in registration mode (the runner group
/// variable, when set, must hold the group's *name*: that is what `config.sh
/// --runnergroup` takes).
#[must_use]
pub fn batch_command_line(pool: &Pool, batch: &BatchPool) -> String {
    let n = &pool.env_names;
    match (pool.os, batch.run_on_host) {
        (Os::Linux, false) => "/bin/sh -c 'exec /entrypoint.sh'".to_owned(),
        (Os::Windows, false) => r"powershell -NoProfile -ExecutionPolicy Bypass -File C:\entrypoint.ps1".to_owned(),
        (Os::Linux, true) => format!(
            "/bin/sh -c 'set -e; export RUNNER_ALLOW_RUNASROOT=1; d=\"$AZ_BATCH_TASK_WORKING_DIR/runner\"; \
             cp -a {dir}/. \"$d\"; cd \"$d\"; \
             if [ -n \"${jit}\" ]; then exec ./run.sh --jitconfig \"${jit}\"; fi; \
             ./config.sh --unattended --ephemeral --disableupdate --url \"${url}\" --token \"${token}\" --name \"${name}\" --labels \"${labels}\" \
             ${{{group}:+--runnergroup \"${group}\"}}; \
             exec ./run.sh'",
            dir = HOST_RUNNER_DIR_LINUX,
            jit = n.jitconfig,
            url = n.url,
            token = n.token,
            name = n.name,
            labels = n.labels,
            group = n.group,
        ),
        (Os::Windows, true) => format!(
            "powershell -NoProfile -ExecutionPolicy Bypass -Command \"$ErrorActionPreference='Stop'; \
             $d = Join-Path $env:AZ_BATCH_TASK_WORKING_DIR 'runner'; Copy-Item -Recurse '{dir}' $d; Set-Location $d; \
             if ($env:{jit}) {{ & .\\run.cmd --jitconfig $env:{jit} }} \
             else {{ $g = @(); if ($env:{group}) {{ $g = '--runnergroup', $env:{group} }}; \
             & .\\config.cmd --unattended --ephemeral --disableupdate --url $env:{url} --token $env:{token} --name $env:{name} --labels $env:{labels} @g; \
             & .\\run.cmd }}; \
             exit $LASTEXITCODE\"",
            dir = HOST_RUNNER_DIR_WINDOWS,
            jit = n.jitconfig,
            url = n.url,
            token = n.token,
            name = n.name,
            labels = n.labels,
            group = n.group,
        ),
    }
}

/// The add-task body. Deterministic for a given pool and request.
///
/// Environment settings are plain values that anyone with read access to the Batch
/// account can read: JIT configs are single-use and bound to this runner's name, which
/// is why registration mode is refused on Batch unless the pool allows readable tokens.
///
/// The auto-user is pool-scoped (created once per node, not once per task: on Windows a
/// user per task costs seconds). Container tasks run it as `nonadmin`; `run_on_host`
/// tasks as `admin`, because jobs on the VM expect what GitHub-hosted runners give them:
/// `sudo`, and the Docker daemon for `container:` jobs, `services:` and `docker build`.
/// Such a job can read other tasks on the node, so `run_on_host` pools should run one
/// task per node (`taskSlotsPerNode = 1`).
#[must_use]
pub fn batch_task_body(pool: &Pool, batch: &BatchPool, request: &ComputeRequest) -> Value {
    let env: Vec<Value> = request
        .env
        .iter()
        .map(|(name, value)| {
            let v = match value {
                EnvValue::Plain(p) => p.as_str(),
                EnvValue::Secret(s) => s.expose(),
            };
            json!({ "name": name, "value": v })
        })
        .collect();
    let mut task = json!({
        "id": request.name,
        // Tasks have no metadata: the JIT runner id rides in the display name, for cleanup.
        "displayName": display_name(pool, request),
        "commandLine": batch_command_line(pool, batch),
        "environmentSettings": env,
        "constraints": {
            "maxWallClockTime": to_iso8601(pool.runner_ttl),
            "retentionTime": TASK_RETENTION,
            "maxTaskRetryCount": 0,
        },
        "userIdentity": {
            "autoUser": { "scope": "pool", "elevationLevel": if batch.run_on_host { "admin" } else { "nonadmin" } }
        },
    });
    if !batch.run_on_host {
        let mut container = json!({
            "imageName": pool.image,
            "containerRunOptions": "--rm",
            "workingDirectory": "containerImageDefault",
        });
        if let (Some(identity), Some(server)) = (&pool.image_pull_identity, registry_host(&pool.image)) {
            container["registry"] =
                json!({ "registryServer": server, "identityReference": { "resourceId": identity } });
        }
        task["containerSettings"] = container;
    }
    task
}

/// Task ids are at most 64 letters, digits, hyphens and underscores (unique ignoring case);
/// runner names take the same: a prefix of at most 40 leaves room for `-<20-digit job id>`.
pub(crate) fn name_prefix_problem(prefix: &str) -> Option<&'static str> {
    let ok = !prefix.is_empty()
        && prefix.len() <= 40
        && !prefix.starts_with(['-', '_'])
        && prefix.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    (!ok).then_some(
        "must be letters, digits, hyphens and underscores, at most 40 characters, not starting with a hyphen or underscore (it starts every Batch task id)",
    )
}

/// Tasks have no metadata: what ACI keeps in tags rides in the display name,
/// `<owner/repo> job <id> run <id> [created <time>] (pool <name>) runner <id>` or
/// `idle for <target> (pool <name>) runner <id>`, and is read back by [`batch_task_info`]
/// (names, times and numbers hold no spaces; tasks made before `run` was recorded read back
/// without it).
fn display_name(pool: &Pool, request: &ComputeRequest) -> String {
    let what = match &request.purpose {
        Purpose::Job(job) => {
            let mut what = format!("{} job {} run {}", job.repository, job.job_id, job.run_id);
            if let Some(created) =
                job.job_created_at.as_deref().filter(|c| !c.is_empty() && !c.contains(char::is_whitespace))
            {
                what.push_str(" created ");
                what.push_str(created);
            }
            what
        }
        Purpose::Idle { target } => format!("{IDLE_DISPLAY_PREFIX}{target}"),
    };
    match request.runner_id {
        Some(id) => format!("{what} (pool {}) runner {id}", pool.name),
        None => format!("{what} (pool {})", pool.name),
    }
}

const IDLE_DISPLAY_PREFIX: &str = "idle for ";

/// A task from a GET or list answer as [`ComputeInfo`].
#[must_use]
pub fn batch_task_info(pool: &Pool, task: &Value) -> ComputeInfo {
    let name = task["id"].as_str().unwrap_or_default().to_owned();
    let state = match task["state"].as_str().unwrap_or_default() {
        "active" | "preparing" => ComputeState::Pending,
        "running" => ComputeState::Running,
        "completed" => {
            let info = &task["executionInfo"];
            match info["result"].as_str() {
                Some("success") => ComputeState::Succeeded,
                Some("failure") => ComputeState::Failed,
                _ if info["exitCode"].as_i64() == Some(0) => ComputeState::Succeeded,
                _ => ComputeState::Failed,
            }
        }
        other => ComputeState::Unknown(other.to_owned()),
    };
    let display = task["displayName"].as_str().unwrap_or_default();
    let (what, rest) = display.rsplit_once(" (pool ").unwrap_or((display, ""));
    let words: Vec<&str> = what.split_whitespace().collect();
    let after = |key: &str| words.iter().position(|w| *w == key).and_then(|i| words.get(i + 1)).copied();
    let mut info = ComputeInfo::new(name, state);
    info.created_at = task["creationTime"].as_str().and_then(|s| OffsetDateTime::parse(s, &Rfc3339).ok());
    info.job_id = pool.job_id_of(&info.name);
    if let Some(target) = what.strip_prefix(IDLE_DISPLAY_PREFIX) {
        info.idle_target = Some(target.trim().to_owned()).filter(|t| !t.is_empty());
    } else {
        info.repository = words.first().filter(|r| r.contains('/')).map(|r| (*r).to_owned());
        info.run_id = after("run").and_then(|r| r.parse().ok());
        info.job_created_at = after("created").map(str::to_owned);
    }
    if !rest.is_empty() {
        info.pool = Some(rest.split_once(')').map_or(rest, |(p, _)| p).to_owned());
        info.runner_id = rest.split_once(") runner ").and_then(|(_, id)| id.parse().ok());
    }
    info
}

fn classify(e: &AzureError, what: &str, secrets: &[&str]) -> ProvisionError {
    let detail = e.describe(secrets);
    let retryable_code = e.code.as_deref().is_some_and(|c| RETRYABLE_CODES.iter().any(|r| r.eq_ignore_ascii_case(c)));
    if retryable_code || e.status == 429 || e.status >= 500 || e.status == 401 || e.status == 408 {
        return ProvisionError::Retryable { reason: format!("{what}: {detail}"), retry_after: e.retry_after };
    }
    let hint = match e.code.as_deref().unwrap_or_default() {
        "JobCompleted" => " — the Batch job was terminated; delete it and runner-dispatch creates it again",
        "AuthenticationFailed" => {
            " — check AZURE_BATCH_ACCOUNT_NAME / AZURE_BATCH_ACCOUNT_KEY, or the identity's token audience"
        }
        "InsufficientPermissions" | "AuthorizationFailure" | "PermissionDenied" => {
            " — the Function App's identity needs the Azure Batch Data Contributor role on the account"
        }
        "PoolNotFound" => " — check the pool's batch_pool_id",
        _ => "",
    };
    ProvisionError::permanent(format!("{what}: {detail}{hint}"))
}

/// How the data plane is authenticated.
pub enum BatchAuth {
    /// Entra ID bearer token for the Batch audience.
    Token(TokenSource),
    /// Shared Key signature with the account key.
    SharedKey(SharedKey),
}

impl std::fmt::Debug for BatchAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BatchAuth::Token(t) => f.debug_tuple("Token").field(t).finish(),
            BatchAuth::SharedKey(k) => f.debug_tuple("SharedKey").field(k).finish(),
        }
    }
}

enum AddTask {
    Added,
    Exists,
    JobNotFound,
}

/// Runner tasks in Batch jobs.
#[derive(Debug)]
pub struct BatchBackend {
    client: reqwest::Client,
    account_url: Option<String>,
    auth: BatchAuth,
    /// Jobs known to exist: created (or found existing) by this process.
    jobs_ready: Mutex<HashSet<String>>,
}

impl BatchBackend {
    /// The account URL comes from `AZURE_BATCH_ACCOUNT_URL`. With `AZURE_BATCH_ACCOUNT_KEY`
    /// (and `AZURE_BATCH_ACCOUNT_NAME`) requests are signed with Shared Key; otherwise they
    /// carry an Entra ID token from `credential` for the account's cloud. A missing account
    /// URL fails each call permanently, naming the setting.
    ///
    /// # Errors
    /// The account key is not base64.
    pub fn new(settings: &Settings, credential: &AzureCredential) -> Result<Self, CredentialError> {
        let azure = &settings.azure;
        let account_url = azure.batch_account_url.as_ref().map(|u| u.trim_end_matches('/').to_owned());
        let auth = match (&azure.batch_account_key, &azure.batch_account_name) {
            (Some(key), Some(name)) => BatchAuth::SharedKey(SharedKey::new(name.clone(), key)?),
            _ => BatchAuth::Token(credential.token_source(batch_scope(account_url.as_deref().unwrap_or_default()))),
        };
        Ok(Self { client: http_client(), account_url, auth, jobs_ready: Mutex::new(HashSet::new()) })
    }

    /// Replaces the HTTP client (timeouts, proxies).
    #[must_use]
    pub fn with_http_client(mut self, client: reqwest::Client) -> Self {
        self.client = client;
        self
    }

    #[must_use]
    pub fn auth(&self) -> &BatchAuth {
        &self.auth
    }

    fn base(&self) -> Result<&str, ProvisionError> {
        self.account_url
            .as_deref()
            .ok_or_else(|| ProvisionError::permanent("AZURE_BATCH_ACCOUNT_URL is not set: Batch pools need it"))
    }

    fn job_of(pool: &Pool) -> Result<String, ProvisionError> {
        Ok(batch_job_id(&batch_of(pool)?.batch_pool_id))
    }

    fn url(&self, path: &str, query: &[(&str, &str)]) -> Result<Url, ProvisionError> {
        let mut url = Url::parse(&format!("{}{path}", self.base()?))
            .map_err(|e| ProvisionError::permanent(format!("AZURE_BATCH_ACCOUNT_URL is not a valid URL: {e}")))?;
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("api-version", BATCH_API_VERSION);
            for (k, v) in query {
                q.append_pair(k, v);
            }
        }
        Ok(url)
    }

    /// Sends one request, authenticated; the body is serialized here so that Shared Key
    /// signs exactly the Content-Length sent.
    async fn send(
        &self,
        what: &str,
        method: Method,
        url: Url,
        body: Option<&Value>,
    ) -> Result<reqwest::Response, ProvisionError> {
        let mut req = self
            .client
            .request(method.clone(), url)
            .header("ocp-date", http_date(OffsetDateTime::now_utc()))
            .header(ACCEPT, "application/json");
        if let Some(body) = body {
            let bytes = serde_json::to_vec(body).unwrap_or_default();
            req = req.header(CONTENT_TYPE, BATCH_CONTENT_TYPE).header(CONTENT_LENGTH, bytes.len()).body(bytes);
        } else if method != Method::GET && method != Method::HEAD {
            req = req.header(CONTENT_LENGTH, 0);
        }
        let mut request = req.build().map_err(|e| ProvisionError::permanent(format!("{what}: {e}")))?;
        let authorization = match &self.auth {
            BatchAuth::Token(source) => {
                let token = source.token().await.map_err(|e| ProvisionError::retryable(e.to_string()))?;
                format!("Bearer {}", token.expose())
            }
            BatchAuth::SharedKey(key) => key.authorization(method.as_str(), request.url(), request.headers()),
        };
        let mut value = HeaderValue::from_str(&authorization)
            .map_err(|_| ProvisionError::permanent(format!("{what}: the credential is not a valid header value")))?;
        value.set_sensitive(true);
        request.headers_mut().insert(AUTHORIZATION, value);
        let response = self.client.execute(request).await.map_err(|e| transport_error(what, &e))?;
        tracing::debug!(event = "batch_request", what, status = response.status().as_u16(), "Batch answered");
        if response.status() == StatusCode::UNAUTHORIZED
            && let BatchAuth::Token(source) = &self.auth
        {
            source.invalidate().await;
        }
        Ok(response)
    }

    /// Creates the pool's job unless this process already knows it exists.
    async fn ensure_job(&self, pool: &Pool, job: &str) -> Result<(), ProvisionError> {
        if self.jobs_ready.lock().is_ok_and(|j| j.contains(job)) {
            return Ok(());
        }
        let what = format!("Batch create of job {job}");
        let response =
            self.send(&what, Method::POST, self.url("/jobs", &[])?, Some(&batch_job_body(batch_of(pool)?))).await?;
        let status = response.status();
        if !status.is_success() {
            let e = AzureError::from_response(response).await;
            if !e.code_is("JobExists") {
                return Err(classify(&e, &what, &[]));
            }
        } else {
            tracing::info!(
                event = "batch_job_created",
                job,
                batch_pool_id = batch_of(pool).map_or("", |b| b.batch_pool_id.as_str()),
                "created the Batch job for a pool"
            );
        }
        if let Ok(mut jobs) = self.jobs_ready.lock() {
            jobs.insert(job.to_owned());
        }
        Ok(())
    }

    async fn add_task(&self, job: &str, body: &Value, what: &str, secrets: &[&str]) -> Result<AddTask, ProvisionError> {
        let url = self.url(&format!("/jobs/{job}/tasks"), &[])?;
        let response = self.send(what, Method::POST, url, Some(body)).await?;
        if response.status().is_success() {
            return Ok(AddTask::Added);
        }
        let e = AzureError::from_response(response).await;
        if e.code_is("TaskExists") {
            return Ok(AddTask::Exists);
        }
        if e.code_is("JobNotFound") {
            return Ok(AddTask::JobNotFound);
        }
        let err = classify(&e, what, secrets);
        tracing::warn!(
            event = "batch_create_failed",
            job,
            status = e.status,
            code = e.code.as_deref().unwrap_or(""),
            retryable = err.is_retryable(),
            "Batch refused the task"
        );
        Err(err)
    }
}

#[async_trait]
impl ComputeBackend for BatchBackend {
    fn kind(&self) -> &'static str {
        "batch"
    }

    async fn find(&self, pool: &Pool, name: &str) -> Result<Option<ComputeInfo>, ProvisionError> {
        if !is_valid_task_id(name) {
            return Err(ProvisionError::permanent(format!("{name:?} is not a valid Batch task id")));
        }
        let job = Self::job_of(pool)?;
        let what = format!("Batch get of task {name} in job {job}");
        let response =
            self.send(&what, Method::GET, self.url(&format!("/jobs/{job}/tasks/{name}"), &[])?, None).await?;
        match response.status() {
            StatusCode::NOT_FOUND => Ok(None),
            s if s.is_success() => {
                let task: Value = response
                    .json()
                    .await
                    .map_err(|e| ProvisionError::retryable(format!("{what}: unreadable answer: {e}")))?;
                Ok(Some(batch_task_info(pool, &task)))
            }
            _ => Err(classify(&AzureError::from_response(response).await, &what, &[])),
        }
    }

    async fn create(&self, pool: &Pool, request: &ComputeRequest) -> Result<CreateOutcome, ProvisionError> {
        if !is_valid_task_id(&request.name) {
            return Err(ProvisionError::permanent(format!(
                "{:?} is not a valid Batch task id (1-64 letters, digits, hyphens, underscores)",
                request.name
            )));
        }
        let job = Self::job_of(pool)?;
        let body = batch_task_body(pool, batch_of(pool)?, request);
        let secrets = request.secret_values();
        let what = format!("Batch create of task {} in job {job}", request.name);
        self.ensure_job(pool, &job).await?;
        let outcome = match self.add_task(&job, &body, &what, &secrets).await? {
            AddTask::JobNotFound => {
                // Deleted behind our back: create it again and retry once.
                if let Ok(mut jobs) = self.jobs_ready.lock() {
                    jobs.remove(&job);
                }
                self.ensure_job(pool, &job).await?;
                self.add_task(&job, &body, &what, &secrets).await?
            }
            other => other,
        };
        match outcome {
            AddTask::Added => Ok(CreateOutcome::Created),
            AddTask::Exists => Ok(CreateOutcome::AlreadyExists),
            AddTask::JobNotFound => {
                Err(ProvisionError::retryable(format!("{what}: job {job} vanished again after being created")))
            }
        }
    }

    async fn delete(&self, pool: &Pool, name: &str) -> Result<(), ProvisionError> {
        if !is_valid_task_id(name) {
            return Err(ProvisionError::permanent(format!("{name:?} is not a valid Batch task id")));
        }
        let job = Self::job_of(pool)?;
        let what = format!("Batch delete of task {name} in job {job}");
        let response =
            self.send(&what, Method::DELETE, self.url(&format!("/jobs/{job}/tasks/{name}"), &[])?, None).await?;
        match response.status().as_u16() {
            200 | 202 | 204 | 404 => Ok(()),
            _ => Err(classify(&AzureError::from_response(response).await, &what, &[])),
        }
    }

    async fn list(&self, pool: &Pool) -> Result<Vec<ComputeInfo>, ProvisionError> {
        let job = Self::job_of(pool)?;
        let what = format!("Batch list of tasks in job {job}");
        let mut url = self.url(
            &format!("/jobs/{job}/tasks"),
            &[("$select", "id,displayName,state,creationTime,executionInfo"), ("maxresults", "1000")],
        )?;
        let base = self.base()?.to_owned();
        let mut out = Vec::new();
        for _page in 0..1000 {
            let response = self.send(&what, Method::GET, url.clone(), None).await?;
            if response.status() == StatusCode::NOT_FOUND {
                return Ok(out);
            }
            if !response.status().is_success() {
                return Err(classify(&AzureError::from_response(response).await, &what, &[]));
            }
            let page: Value = response
                .json()
                .await
                .map_err(|e| ProvisionError::retryable(format!("{what}: unreadable answer: {e}")))?;
            for task in page["value"].as_array().into_iter().flatten() {
                // A job's runner `<prefix>-<job id>` or an idle one `<prefix>-i-<8 hex>`.
                if task["id"].as_str().is_some_and(|id| pool.runner_kind(id).is_some()) {
                    out.push(batch_task_info(pool, task));
                }
            }
            match page["odata.nextLink"].as_str().filter(|n| !n.is_empty()) {
                Some(next) if same_origin(&base, next) => {
                    url = Url::parse(next)
                        .map_err(|e| ProvisionError::retryable(format!("{what}: bad nextLink: {e}")))?;
                }
                Some(_) => {
                    return Err(ProvisionError::permanent(format!(
                        "{what}: nextLink points outside {base}; not following it"
                    )));
                }
                None => return Ok(out),
            }
        }
        Ok(out)
    }

    /// Batch queues tasks until a node has a free slot: the pool's autoscale cap is the cap.
    async fn active_count(&self, _pool: &Pool) -> Result<Option<usize>, ProvisionError> {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_ids_fit_batch_rules() {
        assert_eq!(batch_job_id("windows"), "runner-dispatch-windows");
        assert_eq!(batch_job_id("a.b c"), "runner-dispatch-a-b-c");
        let long = "p".repeat(64);
        let id = batch_job_id(&long);
        assert_eq!(id.len(), 64);
        assert!(is_valid_task_id(&id), "{id}");
        assert_ne!(id, batch_job_id(&format!("{}q", "p".repeat(63))));
    }

    #[test]
    fn task_ids_are_checked() {
        assert!(is_valid_task_id("ghr-123"));
        assert!(is_valid_task_id("Ab_9"));
        assert!(!is_valid_task_id(""));
        assert!(!is_valid_task_id("a.b"));
        assert!(!is_valid_task_id(&"a".repeat(65)));
    }

    #[test]
    fn batch_codes_are_classified() {
        let e = |status, code: &str| AzureError { status, code: Some(code.into()), message: None, retry_after: None };
        assert!(classify(&e(409, "ActiveJobAndScheduleQuotaReached"), "x", &[]).is_retryable());
        assert!(classify(&e(503, "ServerBusy"), "x", &[]).is_retryable());
        assert!(!classify(&e(400, "InvalidPropertyValue"), "x", &[]).is_retryable());
        let completed = classify(&e(409, "JobCompleted"), "x", &[]);
        assert!(!completed.is_retryable() && completed.to_string().contains("delete it"));
    }

    #[test]
    fn a_job_task_reads_back_its_job_run_and_created_time_from_the_display_name() {
        let text = "[github]\nallowed_owners = [\"octo-org\"]\n[[pools]]\nname = \"win\"\nbackend = \"batch\"\nlabels = [\"w\"]\nimage = \"i\"\nbatch_pool_id = \"p\"\n";
        let cfg = crate::config::PoolsConfig::parse(text).expect("pools");
        let pool = &cfg.pools[0];
        let Compute::Batch(b) = &pool.compute else { panic!() };
        let request = ComputeRequest {
            name: pool.runner_name(42),
            purpose: Purpose::Job(crate::compute::JobInfo {
                job_id: 42,
                run_id: 9001,
                repository: "octo-org/api".into(),
                job_created_at: Some("2026-12-06T03:00:00Z".into()),
            }),
            runner_id: Some(77),
            env: vec![],
        };
        let mut task = batch_task_body(pool, b, &request);
        assert_eq!(
            task["displayName"],
            "octo-org/api job 42 run 9001 created 2026-12-06T03:00:00Z (pool win) runner 77"
        );
        task["state"] = serde_json::json!("running");
        // What reconcile needs to ask for the job again: the same as an ACI tag map gives.
        assert_eq!(
            batch_task_info(pool, &task),
            ComputeInfo {
                state: ComputeState::Running,
                ..ComputeInfo::requested(pool, &request, ComputeState::Running)
            }
        );
        // A task made before `run` was recorded still reads back, without it.
        task["displayName"] = serde_json::json!("octo-org/api job 42 (pool win) runner 77");
        let old = batch_task_info(pool, &task);
        assert_eq!(
            (old.job_id, old.run_id, old.repository.as_deref(), old.pool_name(), old.runner_id),
            (Some(42), None, Some("octo-org/api"), Some("win"), Some(77))
        );
    }

    #[test]
    fn an_idle_task_reads_back_its_target_and_pool_from_the_display_name() {
        let text = "[github]\nallowed_owners = [\"octo-org\"]\n[[pools]]\nname = \"win\"\nbackend = \"batch\"\nlabels = [\"w\"]\nimage = \"i\"\nbatch_pool_id = \"p\"\n";
        let cfg = crate::config::PoolsConfig::parse(text).expect("pools");
        let pool = &cfg.pools[0];
        let Compute::Batch(b) = &pool.compute else { panic!() };
        let request = ComputeRequest {
            name: pool.idle_runner_name(0xabc),
            purpose: Purpose::Idle { target: "octo-org".into() },
            runner_id: Some(77),
            env: vec![],
        };
        let mut task = batch_task_body(pool, b, &request);
        assert_eq!(task["displayName"], "idle for octo-org (pool win) runner 77");
        task["state"] = serde_json::json!("running");
        let info = batch_task_info(pool, &task);
        assert_eq!(
            (info.idle_target(), info.pool_name(), info.runner_id, info.job_id),
            (Some("octo-org"), Some("win"), Some(77), None)
        );
        assert_eq!(pool.runner_kind(&info.name), Some(crate::config::RunnerKind::Idle));
    }
}
