//! Shared helpers for integration tests: a test pools file, signing, servers on port 0,
//! and a scripted compute backend for failure paths.
#![allow(dead_code)]

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use runner_dispatch::config::{Backend, Pool, PoolsConfig, Settings};
use runner_dispatch::github::RunnerRegistry;
use runner_dispatch::github::dry_run::DryRunRegistry;
use runner_dispatch::provision::dry_run::DryRunBackend;
use runner_dispatch::provision::{
    Backends, ComputeBackend, ComputeInfo, ComputeRequest, ComputeState, CreateOutcome, ProvisionError, Purpose,
    TAG_IDLE_TARGET, TAG_POOL,
};
use runner_dispatch::server::AppState;
use runner_dispatch::spool::{QueueOptions, Spool};

pub const SECRET: &str = "test-webhook-secret";

/// Pools for the octokit fixtures (owner Octocoders, public repositories, label ubuntu-latest);
/// shared with the benchmarks and fuzz targets as a file.
pub const POOLS: &str = include_str!("../fixtures/pools/octokit.toml");

pub fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()));
    if name.starts_with("github-webhooks/workflow_job__") { as_github_sends_it(&bytes) } else { bytes }
}

/// octokit's `workflow_job` examples (queued, in_progress, completed) have `full_name`
/// `Codertocat/Hello-World` under owner `Octocoders`, which GitHub never sends and
/// runner-dispatch refuses (tests/fixtures.rs shows it): the owner part is made the owner's
/// login, as in a real delivery.
fn as_github_sends_it(bytes: &[u8]) -> Vec<u8> {
    let mut v: serde_json::Value = serde_json::from_slice(bytes).expect("json fixture");
    let (Some(login), Some(repo)) = (v["repository"]["owner"]["login"].as_str(), v["repository"]["name"].as_str())
    else {
        return bytes.to_vec();
    };
    v["repository"]["full_name"] = format!("{login}/{repo}").into();
    serde_json::to_vec(&v).expect("ser")
}

pub fn queued_fixture() -> Vec<u8> {
    fixture("github-webhooks/workflow_job__queued.payload.json")
}

/// The queued fixture with a fresh `created_at` (the example's is from 2021, older than
/// the 24 h give-up limit) and `runner_*` null as in real queued deliveries.
pub fn fresh_queued(job_id: u64) -> Vec<u8> {
    let mut v: serde_json::Value = serde_json::from_slice(&queued_fixture()).expect("json");
    let now = time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).expect("fmt");
    v["workflow_job"]["id"] = job_id.into();
    v["workflow_job"]["created_at"] = now.into();
    for k in ["runner_id", "runner_name", "runner_group_id", "runner_group_name"] {
        v["workflow_job"][k] = serde_json::Value::Null;
    }
    serde_json::to_vec(&v).expect("ser")
}

pub fn sign(body: &[u8]) -> String {
    runner_dispatch::webhook::sign(SECRET.as_bytes(), body)
}

pub fn settings() -> Settings {
    Settings {
        webhook_secrets: vec![SECRET.into()],
        github_api_url: "http://127.0.0.1:9".into(),
        ..Settings::pools_only("runners.toml".into(), None)
    }
}

pub fn pools() -> Arc<PoolsConfig> {
    Arc::new(PoolsConfig::parse(POOLS).expect("test pools parse"))
}

/// A running server and what it talks to.
pub struct TestApp {
    pub addr: SocketAddr,
    pub state: Arc<AppState>,
    pub github: Arc<DryRunRegistry>,
    pub client: reqwest::Client,
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

/// Starts the router on 127.0.0.1:0 with the given backend; `state_dir` adds the standalone queue.
pub async fn spawn_app(backend: Arc<dyn ComputeBackend>, state_dir: Option<&Path>, options: QueueOptions) -> TestApp {
    spawn_app_with(pools(), backend, state_dir, options, runner_dispatch::server::RAW_REQUEST_TIMEOUT).await
}

/// [`spawn_app`] with another pools config and raw-route timeout.
pub async fn spawn_app_with(
    pools: Arc<PoolsConfig>,
    backend: Arc<dyn ComputeBackend>,
    state_dir: Option<&Path>,
    options: QueueOptions,
    raw_timeout: std::time::Duration,
) -> TestApp {
    spawn_app_with_settings(&settings(), pools, backend, state_dir, options, raw_timeout).await
}

/// [`spawn_app_with`] with other settings (an admin token, say).
pub async fn spawn_app_with_settings(
    settings: &Settings,
    pools: Arc<PoolsConfig>,
    backend: Arc<dyn ComputeBackend>,
    state_dir: Option<&Path>,
    options: QueueOptions,
    raw_timeout: std::time::Duration,
) -> TestApp {
    let github = Arc::new(DryRunRegistry::new());
    let registry: Arc<dyn RunnerRegistry> = github.clone();
    let queue = state_dir.map(|d| (Spool::open(d).expect("spool"), options));
    let state = runner_dispatch::cli::assemble_state(settings, pools, registry, Backends::single(backend), queue);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let app = runner_dispatch::server::router_with_timeout(state.clone(), raw_timeout);
    tokio::spawn(async move {
        runner_dispatch::server::serve_connections(
            listener,
            app,
            runner_dispatch::server::HEADER_READ_TIMEOUT,
            runner_dispatch::server::MAX_CONNECTIONS,
            std::future::pending(),
        )
        .await
        .expect("serve");
    });
    TestApp { addr, state, github, client: runner_dispatch::tls::client_builder().build().expect("client") }
}

pub async fn spawn_dry_run(state_dir: Option<&Path>) -> (TestApp, Arc<DryRunBackend>) {
    let backend = Arc::new(DryRunBackend::new(false));
    let app = spawn_app(backend.clone(), state_dir, fast_queue()).await;
    (app, backend)
}

pub fn fast_queue() -> QueueOptions {
    QueueOptions {
        concurrency: 4,
        max_attempts: 3,
        backoff_base: std::time::Duration::from_millis(10),
        backoff_max: std::time::Duration::from_millis(50),
    }
}

/// A backend whose `create` answers from a script (then `Created`), recording every call.
#[derive(Default)]
pub struct ScriptedBackend {
    pub script: Mutex<VecDeque<Result<CreateOutcome, ProvisionError>>>,
    pub creates: Mutex<Vec<ComputeRequest>>,
    pub existing: Mutex<BTreeMap<String, ComputeInfo>>,
}

impl ScriptedBackend {
    pub fn with(script: Vec<Result<CreateOutcome, ProvisionError>>) -> Arc<Self> {
        Arc::new(Self { script: Mutex::new(script.into()), ..Self::default() })
    }

    pub fn create_count(&self) -> usize {
        self.creates.lock().expect("lock").len()
    }
}

#[async_trait]
impl ComputeBackend for ScriptedBackend {
    fn kind(&self) -> &'static str {
        "scripted"
    }

    async fn find(&self, _pool: &Pool, name: &str) -> Result<Option<ComputeInfo>, ProvisionError> {
        Ok(self.existing.lock().expect("lock").get(name).cloned())
    }

    async fn create(&self, pool: &Pool, request: &ComputeRequest) -> Result<CreateOutcome, ProvisionError> {
        self.creates.lock().expect("lock").push(request.clone());
        let next = self.script.lock().expect("lock").pop_front().unwrap_or(Ok(CreateOutcome::Created));
        if matches!(next, Ok(CreateOutcome::Created)) {
            self.existing.lock().expect("lock").insert(
                request.name.clone(),
                ComputeInfo {
                    name: request.name.clone(),
                    state: ComputeState::Pending,
                    created_at: None,
                    job_id: match &request.purpose {
                        Purpose::Job(job) => Some(job.job_id),
                        Purpose::Idle { .. } => None,
                    },
                    repository: match &request.purpose {
                        Purpose::Job(job) => Some(job.repository.clone()),
                        Purpose::Idle { .. } => None,
                    },
                    runner_id: request.runner_id,
                    tags: match &request.purpose {
                        Purpose::Job(_) => BTreeMap::from([(TAG_POOL.to_owned(), pool.name.clone())]),
                        Purpose::Idle { target } => BTreeMap::from([
                            (TAG_POOL.to_owned(), pool.name.clone()),
                            (TAG_IDLE_TARGET.to_owned(), target.clone()),
                        ]),
                    },
                },
            );
        }
        next
    }

    async fn delete(&self, _pool: &Pool, name: &str) -> Result<(), ProvisionError> {
        self.existing.lock().expect("lock").remove(name);
        Ok(())
    }

    async fn list(&self, _pool: &Pool) -> Result<Vec<ComputeInfo>, ProvisionError> {
        Ok(self.existing.lock().expect("lock").values().cloned().collect())
    }

    async fn active_count(&self, pool: &Pool) -> Result<Option<usize>, ProvisionError> {
        Ok((pool.backend() == Backend::Aci).then(|| self.existing.lock().map(|e| e.len()).unwrap_or(0)))
    }
}

/// Waits (bounded) until `f` holds.
pub async fn eventually(mut f: impl FnMut() -> bool) -> bool {
    for _ in 0..200 {
        if f() {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    f()
}

use runner_dispatch::github::{
    Delivery, GitHubError, JitConfig, JobContext, JobState, RegistrationToken, RunnerDeletion, RunnerInfo,
};

/// A scriptable GitHub at the `RunnerRegistry` seam, for the algorithm's branches.
#[derive(Default)]
pub struct FakeGitHub {
    pub runners: Mutex<Vec<RunnerInfo>>,
    pub jobs: Mutex<BTreeMap<u64, Result<JobState, GitHubError>>>,
    pub deliveries: Mutex<Vec<Delivery>>,
    pub jit_script: Mutex<VecDeque<Result<(), GitHubError>>>,
    pub busy_on_delete: Mutex<Vec<u64>>,
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
