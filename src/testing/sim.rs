//! GitHub and compute at their seams with latency and limits, for simulations in tokio's
//! paused time (`start_paused(true)`): every call sleeps its latency, so a simulated hour
//! costs what the code under test does, not an hour.
//!
//! [`SimGitHub`] registers runners as JIT configurations are made, limited by a token
//! bucket as GitHub limits an App; a simulation turns its runners online or busy with
//! [`SimGitHub::set_online`] and [`SimGitHub::set_busy`]. [`SimCompute`] creates, lists and
//! deletes compute, with optional sliding-window create limits (ACI's per region) answered
//! as a retryable error with `retry_after`. Both count what they were asked
//! ([`SimGitHub::counters`], [`SimCompute::counters`]).
//!
//! ```ignore
//! let github = Arc::new(SimGitHub::new(Duration::from_millis(50), JitLimit::GITHUB_APP));
//! let compute = Arc::new(SimCompute::new(Duration::from_millis(50), Duration::from_millis(300), ACI_CREATE_LIMITS));
//! let state = runner_dispatch::app::assemble_state(&settings, pools, github.clone(), Backends::single(compute.clone()), queue);
//! // ... enqueue, advance time, then read github.counters() and compute.counters().
//! ```

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use rand::Rng;
use tokio::time::Instant;

use crate::compute::{ComputeBackend, ComputeInfo, ComputeRequest, ComputeState, CreateOutcome, ProvisionError};
use crate::config::Pool;
use crate::github::{
    Delivery, GitHubError, JitConfig, JobContext, JobState, RegistrationToken, RunnerDeletion, RunnerInfo,
    RunnerRegistry,
};

/// How long created compute takes until its runner is online: a log-normal time given by
/// its median and 95th percentile (the time-to-runner benchmark's boot models; each is an
/// assumption, BENCHMARKS.md gives its source).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BootModel {
    pub median_s: f64,
    pub p95_s: f64,
}

impl BootModel {
    /// An ACI container group with a 1-2 GB runner image: median 45 s, p95 120 s.
    pub const ACI: BootModel = BootModel { median_s: 45.0, p95_s: 120.0 };
    /// A fresh VM from a gallery image: median 120 s, p95 240 s (Microsoft's ~2 minutes for
    /// GitHub's hosted-runner VMs to be recreated and made ready, taken whole).
    pub const VM: BootModel = BootModel { median_s: 120.0, p95_s: 240.0 };

    /// One boot time: `ln(boot) ~ N(mu, sigma)`, median `e^mu`, p95 `e^(mu + 1.645 sigma)`
    /// (two draws from `rng`, Box-Muller).
    pub fn sample(&self, rng: &mut impl Rng) -> Duration {
        let (mu, sigma) = (self.median_s.ln(), (self.p95_s / self.median_s).ln() / 1.644_854);
        let (u1, u2): (f64, f64) = (rng.random::<f64>().max(f64::MIN_POSITIVE), rng.random());
        let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
        Duration::from_secs_f64((mu + sigma * z).exp())
    }
}

/// How long GitHub takes to hand a queued job to a free online runner whose labels fit: 1.5
/// to 2.5 s, uniform (an assumption, not a measurement).
pub fn assign_delay(rng: &mut impl Rng) -> Duration {
    Duration::from_millis(rng.random_range(1_500..=2_500))
}

/// ACI's container group create limits per subscription and region: 100 in 5 minutes, 300 an hour.
pub const ACI_CREATE_LIMITS: &[(usize, Duration)] =
    &[(100, Duration::from_secs(5 * 60)), (300, Duration::from_secs(3600))];

/// Whole seconds, as `Retry-After` headers carry them (at least 1).
fn header_seconds(d: Duration) -> Duration {
    Duration::from_secs(d.as_secs_f64().ceil().max(1.0) as u64)
}

/// A limit on JIT configurations, as a token bucket.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct JitLimit {
    pub per_minute: f64,
    pub burst: f64,
}

impl JitLimit {
    /// GitHub's limit for an App: 180 a minute, 30 at once.
    pub const GITHUB_APP: JitLimit = JitLimit { per_minute: 180.0, burst: 30.0 };
}

/// What [`SimGitHub`] was asked, at the time of [`SimGitHub::counters`].
#[derive(Debug, Clone, Default)]
pub struct GitHubCounters {
    /// JIT calls answered (a configuration or a 409 for a taken name).
    pub jit_ok: usize,
    /// JIT calls refused by the bucket.
    pub jit_rate_limited: usize,
    /// When each refused JIT call was made.
    pub rate_limited_at: Vec<Instant>,
    /// Every other call, by trait method name (`find_runner`, `delete_runner`, ...).
    pub other: BTreeMap<String, usize>,
}

struct Bucket {
    tokens: f64,
    last: Instant,
}

#[derive(Default)]
struct Registered {
    /// Name → runner; a runner is registered offline and idle.
    runners: BTreeMap<String, RunnerInfo>,
    jobs: BTreeMap<u64, JobState>,
    next_id: u64,
}

/// GitHub at the [`RunnerRegistry`] seam: each call takes `latency`, JIT configurations are
/// limited by a [`JitLimit`], and a JIT configuration registers its runner (offline, idle).
pub struct SimGitHub {
    latency: Duration,
    limit: JitLimit,
    bucket: Mutex<Bucket>,
    registered: Mutex<Registered>,
    counters: Mutex<GitHubCounters>,
}

impl SimGitHub {
    /// A GitHub whose calls take `latency` and whose JIT calls are limited by `limit` (the
    /// bucket starts full, at the current simulated time).
    #[must_use]
    pub fn new(latency: Duration, limit: JitLimit) -> Self {
        Self {
            latency,
            limit,
            bucket: Mutex::new(Bucket { tokens: limit.burst, last: Instant::now() }),
            registered: Mutex::new(Registered::default()),
            counters: Mutex::new(GitHubCounters::default()),
        }
    }

    /// Every registered runner, by name.
    #[must_use]
    pub fn runners(&self) -> Vec<RunnerInfo> {
        self.registered.lock().expect("lock").runners.values().cloned().collect()
    }

    /// Marks the runner `name` online (it connected) or offline; false if it is not registered.
    pub fn set_online(&self, name: &str, online: bool) -> bool {
        self.update(name, |r| r.online = online)
    }

    /// Marks the runner `name` busy (running a job) or idle; false if it is not registered.
    pub fn set_busy(&self, name: &str, busy: bool) -> bool {
        self.update(name, |r| r.busy = busy)
    }

    /// What `job_state` answers for `job_id` (`Queued` until set).
    pub fn set_job_state(&self, job_id: u64, state: JobState) {
        self.registered.lock().expect("lock").jobs.insert(job_id, state);
    }

    /// A snapshot of the counters.
    #[must_use]
    pub fn counters(&self) -> GitHubCounters {
        self.counters.lock().expect("lock").clone()
    }

    fn update(&self, name: &str, change: impl FnOnce(&mut RunnerInfo)) -> bool {
        self.registered.lock().expect("lock").runners.get_mut(name).map(change).is_some()
    }

    /// Waits the call's latency and counts it under `what`.
    async fn call(&self, what: &str) {
        tokio::time::sleep(self.latency).await;
        *self.counters.lock().expect("lock").other.entry(what.to_owned()).or_default() += 1;
    }

    /// Takes a token from the bucket, or says how long until there is one.
    fn take_token(&self, now: Instant) -> Result<(), Duration> {
        let mut b = self.bucket.lock().expect("lock");
        let rate = self.limit.per_minute / 60.0;
        b.tokens = (b.tokens + (now - b.last).as_secs_f64() * rate).min(self.limit.burst);
        b.last = now;
        if b.tokens < 1.0 {
            return Err(Duration::from_secs_f64((1.0 - b.tokens) / rate));
        }
        b.tokens -= 1.0;
        Ok(())
    }
}

#[async_trait]
impl RunnerRegistry for SimGitHub {
    async fn generate_jit_config(
        &self,
        _job: &JobContext,
        name: &str,
        labels: &[String],
        _group: u64,
    ) -> Result<JitConfig, GitHubError> {
        tokio::time::sleep(self.latency).await;
        let now = Instant::now();
        if let Err(wait) = self.take_token(now) {
            let mut counters = self.counters.lock().expect("lock");
            counters.jit_rate_limited += 1;
            counters.rate_limited_at.push(now);
            return Err(GitHubError::RateLimited { retry_after: header_seconds(wait) });
        }
        self.counters.lock().expect("lock").jit_ok += 1;
        let mut registered = self.registered.lock().expect("lock");
        if registered.runners.contains_key(name) {
            return Err(GitHubError::Conflict(format!("runner {name} already exists")));
        }
        registered.next_id += 1;
        let id = registered.next_id;
        let runner = RunnerInfo { id, name: name.to_owned(), online: false, busy: false, labels: labels.to_vec() };
        registered.runners.insert(name.to_owned(), runner);
        Ok(JitConfig { runner_id: id, encoded_jit_config: format!("jit-{name}").into() })
    }

    async fn registration_token(&self, _job: &JobContext) -> Result<RegistrationToken, GitHubError> {
        self.call("registration_token").await;
        Ok(RegistrationToken {
            token: "t".into(),
            expires_at: time::OffsetDateTime::now_utc() + time::Duration::hours(1),
        })
    }

    async fn find_runner(&self, _job: &JobContext, name: &str) -> Result<Option<RunnerInfo>, GitHubError> {
        self.call("find_runner").await;
        Ok(self.registered.lock().expect("lock").runners.get(name).cloned())
    }

    async fn list_runners(&self, _job: &JobContext) -> Result<Vec<RunnerInfo>, GitHubError> {
        self.call("list_runners").await;
        Ok(self.runners())
    }

    async fn delete_runner(&self, _job: &JobContext, runner_id: u64) -> Result<RunnerDeletion, GitHubError> {
        self.call("delete_runner").await;
        let mut registered = self.registered.lock().expect("lock");
        let Some(runner) = registered.runners.values().find(|r| r.id == runner_id).cloned() else {
            return Ok(RunnerDeletion::NotFound);
        };
        if runner.busy {
            return Ok(RunnerDeletion::Busy);
        }
        registered.runners.remove(&runner.name);
        Ok(RunnerDeletion::Deleted)
    }

    async fn job_state(&self, _job: &JobContext, job_id: u64) -> Result<JobState, GitHubError> {
        self.call("job_state").await;
        Ok(self.registered.lock().expect("lock").jobs.get(&job_id).cloned().unwrap_or(JobState::Queued))
    }

    // No hook: a simulation has no missed webhooks to redeliver.
    async fn list_deliveries(&self, _since: time::OffsetDateTime) -> Result<Vec<Delivery>, GitHubError> {
        *self.counters.lock().expect("lock").other.entry("list_deliveries".to_owned()).or_default() += 1;
        Ok(Vec::new())
    }

    async fn redeliver(&self, _delivery_id: u64) -> Result<(), GitHubError> {
        *self.counters.lock().expect("lock").other.entry("redeliver".to_owned()).or_default() += 1;
        Ok(())
    }

    fn runner_url(&self, job: &JobContext) -> String {
        format!("https://github.com/{}", job.owner)
    }
}

/// What [`SimCompute`] was asked, at the time of [`SimCompute::counters`].
#[derive(Debug, Clone, Default)]
pub struct ComputeCounters {
    /// Successful creates per compute name (more than 1: a duplicate).
    pub created: BTreeMap<String, usize>,
    /// Creates refused by a window limit.
    pub throttled: usize,
    pub finds: usize,
    pub deletes: usize,
    /// When the last successful create finished.
    pub last_created: Option<Instant>,
}

#[derive(Default)]
struct ComputeLog {
    counters: ComputeCounters,
    /// Name → the compute that exists now.
    live: BTreeMap<String, ComputeInfo>,
    /// Per limit, the times of the creates inside its window.
    windows: Vec<VecDeque<Instant>>,
}

/// Compute (ARM, Batch) at the [`ComputeBackend`] seam: reads take `read_latency`, creates
/// `create_latency`, and creates beyond any `(count, window)` sliding-window limit are
/// answered with a retryable error carrying `retry_after`. Created compute is `Pending`
/// and tagged with its pool; it is listed and found until deleted.
pub struct SimCompute {
    read_latency: Duration,
    create_latency: Duration,
    limits: &'static [(usize, Duration)],
    log: Mutex<ComputeLog>,
}

impl SimCompute {
    /// A backend with these latencies and create limits (`&[]` for none, or [`ACI_CREATE_LIMITS`]).
    #[must_use]
    pub fn new(read_latency: Duration, create_latency: Duration, limits: &'static [(usize, Duration)]) -> Self {
        let log = ComputeLog { windows: vec![VecDeque::new(); limits.len()], ..ComputeLog::default() };
        Self { read_latency, create_latency, limits, log: Mutex::new(log) }
    }

    /// How many distinct names were created (cheap enough to poll every simulated second).
    #[must_use]
    pub fn created_names(&self) -> usize {
        self.log.lock().expect("lock").counters.created.len()
    }

    /// Whether `name` was ever created.
    #[must_use]
    pub fn was_created(&self, name: &str) -> bool {
        self.log.lock().expect("lock").counters.created.contains_key(name)
    }

    /// The compute that exists now.
    #[must_use]
    pub fn live(&self) -> Vec<ComputeInfo> {
        self.log.lock().expect("lock").live.values().cloned().collect()
    }

    /// A snapshot of the counters.
    #[must_use]
    pub fn counters(&self) -> ComputeCounters {
        self.log.lock().expect("lock").counters.clone()
    }

    /// How long until a create at `now` fits every window (zero: it fits now).
    fn window_wait(&self, log: &mut ComputeLog, now: Instant) -> Duration {
        let mut wait = Duration::ZERO;
        for ((limit, window), q) in self.limits.iter().zip(log.windows.iter_mut()) {
            while q.front().is_some_and(|t| now - *t >= *window) {
                q.pop_front();
            }
            if q.len() >= *limit {
                wait = wait.max(*window - (now - q[q.len() - limit]));
            }
        }
        wait
    }
}

#[async_trait]
impl ComputeBackend for SimCompute {
    fn kind(&self) -> &'static str {
        "sim"
    }

    async fn find(&self, _pool: &Pool, name: &str) -> Result<Option<ComputeInfo>, ProvisionError> {
        tokio::time::sleep(self.read_latency).await;
        let mut log = self.log.lock().expect("lock");
        log.counters.finds += 1;
        Ok(log.live.get(name).cloned())
    }

    async fn create(&self, pool: &Pool, request: &ComputeRequest) -> Result<CreateOutcome, ProvisionError> {
        tokio::time::sleep(self.create_latency).await;
        let now = Instant::now();
        let mut log = self.log.lock().expect("lock");
        let wait = self.window_wait(&mut log, now);
        if !wait.is_zero() {
            log.counters.throttled += 1;
            return Err(ProvisionError::Retryable {
                reason: "ContainerGroupQuotaReached: too many creates".into(),
                retry_after: Some(header_seconds(wait)),
            });
        }
        for q in &mut log.windows {
            q.push_back(now);
        }
        *log.counters.created.entry(request.name.clone()).or_default() += 1;
        log.counters.last_created = Some(now);
        let info = ComputeInfo {
            pool: Some(pool.name.clone()),
            ..ComputeInfo::new(request.name.clone(), ComputeState::Pending)
        };
        log.live.insert(request.name.clone(), info);
        Ok(CreateOutcome::Created)
    }

    async fn delete(&self, _pool: &Pool, name: &str) -> Result<(), ProvisionError> {
        let mut log = self.log.lock().expect("lock");
        log.counters.deletes += 1;
        log.live.remove(name);
        Ok(())
    }

    async fn list(&self, pool: &Pool) -> Result<Vec<ComputeInfo>, ProvisionError> {
        let log = self.log.lock().expect("lock");
        Ok(log.live.values().filter(|c| c.pool_name() == Some(pool.name.as_str())).cloned().collect())
    }

    /// `None`: this fake leaves `max_runners` uncounted.
    async fn active_count(&self, _pool: &Pool) -> Result<Option<usize>, ProvisionError> {
        Ok(None)
    }
}
