//! Turning a runner request into a runner, idempotently and safely after partial failure.
//! The compute name `<prefix>-<job id>` is the idempotency key; the JIT runner name (the
//! same string) is the lock between workers.

pub mod dry_run;
pub mod throttle;
pub mod top_up;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use time::OffsetDateTime;

use crate::backends::Backends;
use crate::compute::{ComputeInfo, ComputeRequest, CreateOutcome, EnvValue, JobInfo, ProvisionError, Purpose};
use crate::config::{CheckJobQueued, Pool, PoolsConfig, RunnerKind, RunnerScope, TokenMode};
use crate::events;
use crate::github::{GitHubError, JobContext, JobState, RunnerDeletion, RunnerRegistry, RunnerTarget};
use crate::idle::demand::{self, DemandLog, MemoryDemandLog, Record};
use crate::message::RunnerMessage;
use crate::routing::choose_pool;
use crate::timestamps;

/// Jobs older than this are given up: GitHub cancels a job no runner took in 24 h.
pub const MAX_JOB_AGE: Duration = Duration::from_secs(24 * 3600);

/// Under `check_job_queued = "stale"`, a job older than this is checked with GitHub first.
pub const STALE_AFTER: Duration = Duration::from_secs(120);

/// An attempt waits in-line for its JIT slot up to this long; beyond, it is deferred.
pub const MAX_JIT_WAIT: Duration = Duration::from_secs(20);

/// A JIT registration whose create failed retryably is kept (in memory, with its config)
/// this long for the next attempt, instead of being deleted and generated again. Shorter
/// than one reconcile period: reconcile (on any instance) removes an offline registration
/// without compute only when it saw it in two passes, so a registration younger than this
/// is never removed under a held config.
pub const HELD_REGISTRATION_TTL: Duration = Duration::from_secs(240);

/// The hold in standalone mode, where the only reconcile is this process's own (which
/// leaves held registrations alone): long enough to wait out hours of ACI create quota,
/// and under the day after which GitHub removes an ephemeral registration that never
/// connected (and the job, queued that long, is cancelled anyway).
pub const STANDALONE_HELD_REGISTRATION_TTL: Duration = Duration::from_secs(20 * 3600);

/// At most this many registrations are held; beyond, a failed create deletes its
/// registration as before.
pub const MAX_HELD_REGISTRATIONS: usize = 2_000;

/// A JIT registration made for this attempt's runner, and when.
#[derive(Debug, Clone, Copy)]
struct Registration {
    id: u64,
    made_at: tokio::time::Instant,
}

/// What step 3 of provisioning (credentials for exactly this runner) came to.
enum RunnerCredentials {
    /// The runner's environment, and the JIT registration made for it (none in
    /// registration mode).
    Ready { env: Vec<(String, EnvValue)>, registration: Option<Registration> },
    /// A live registration with this name exists: another worker's runner is up.
    Taken,
}

/// A JIT configuration call's answer, where a 409 is an answer and not an error.
enum JitCall {
    Made(crate::github::JitConfig),
    /// 409: a runner with this name is already registered.
    NameTaken(GitHubError),
}

impl JitCall {
    /// The configuration, or the 409 as a provisioning error.
    fn config(self) -> Result<crate::github::JitConfig, ProvisionError> {
        match self {
            JitCall::Made(jit) => Ok(jit),
            JitCall::NameTaken(e) => Err(e.into()),
        }
    }
}

/// A JIT registration made for a runner whose compute could not be created yet.
struct HeldRegistration {
    runner_id: u64,
    config: crate::secret::Secret,
    made_at: tokio::time::Instant,
}

/// How a request ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProvisionOutcome {
    /// A new runner was requested from the backend.
    Created { backend: &'static str },
    /// The compute already existed (duplicate delivery, or another worker won).
    AlreadyExists,
    /// GitHub says no runner is needed any more.
    Skipped { reason: String },
}

/// Runs the provisioning algorithm and cleanup against GitHub and the backends.
///
/// `pools` and `demand` are public for tests and the time-to-runner benchmark, which read
/// the configuration and the demand log the provisioner acts on; GitHub and the backends
/// are reached through its methods (reconcile's through [`crate::reconcile`]'s `Fleet`).
pub struct Provisioner {
    pub pools: Arc<PoolsConfig>,
    github: Arc<dyn RunnerRegistry>,
    backends: Backends,
    /// Paces JIT configuration calls (`github.jit_per_minute`, bursts of ten seconds' worth
    /// less one call of slack for latency jitter).
    jit_pacer: throttle::Pacer,
    /// Per backend and location: closed while creates are throttled.
    create_gates: Mutex<BTreeMap<String, Arc<throttle::CreateGate>>>,
    /// By runner name: JIT registrations kept for the next attempt after a retryable
    /// create failure, so a throttled create costs no further GitHub call.
    held: Mutex<BTreeMap<String, HeldRegistration>>,
    /// How long from its JIT call a registration may be held.
    hold_ttl: Duration,
    /// The ids of the JIT registrations this process made (the last
    /// [`MADE_REGISTRATIONS_KEPT`]): reconcile removes an orphan registration only if it is
    /// ours, recorded here or on our compute.
    made: Mutex<std::collections::VecDeque<u64>>,
    /// Where arrivals and start times are kept for idle targets and `status`.
    pub demand: Arc<dyn DemandLog>,
    /// The time of day for job ages, runner ages and demand windows: the system clock,
    /// or a simulated one (see [`Provisioner::with_clock`]).
    clock: Clock,
    /// Idle levels as reconcile last counted them, for top-ups at a job's arrival.
    levels: top_up::Levels,
}

/// A source of the time of day. The system clock in service; the time-to-runner benchmark
/// runs provisioning and reconcile on simulated time (tokio's paused clock) through it.
pub type Clock = Arc<dyn Fn() -> OffsetDateTime + Send + Sync>;

/// How many JIT registration ids a process remembers as its own.
pub const MADE_REGISTRATIONS_KEPT: usize = 10_000;

impl Provisioner {
    #[must_use]
    pub fn new(pools: Arc<PoolsConfig>, github: Arc<dyn RunnerRegistry>, backends: Backends) -> Self {
        let per_minute = pools.github.jit_per_minute;
        let jit_pacer = throttle::Pacer::new(per_minute, (per_minute / 6).saturating_sub(1).max(1));
        Self {
            pools,
            github,
            backends,
            jit_pacer,
            create_gates: Mutex::new(BTreeMap::new()),
            held: Mutex::new(BTreeMap::new()),
            hold_ttl: HELD_REGISTRATION_TTL,
            made: Mutex::new(std::collections::VecDeque::new()),
            demand: Arc::new(MemoryDemandLog::default()),
            clock: Arc::new(OffsetDateTime::now_utc),
            levels: top_up::Levels::default(),
        }
    }

    /// Reads the time of day from `clock` instead of the system clock (a simulation). Pacing
    /// and holds already run on tokio's clock, which a paused runtime simulates.
    #[must_use]
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Now, by this provisioner's clock (the system clock unless [`Provisioner::with_clock`]).
    #[must_use]
    pub fn now(&self) -> OffsetDateTime {
        (self.clock)()
    }

    /// The GitHub runner registry (for reconcile's `Fleet`).
    pub(crate) fn registry(&self) -> &dyn RunnerRegistry {
        &*self.github
    }

    /// The compute backends (for reconcile's `Fleet`).
    pub(crate) fn backends(&self) -> &Backends {
        &self.backends
    }

    /// Keeps demand records in `log` (a file store standalone, blobs under the host)
    /// instead of memory.
    #[must_use]
    pub fn with_demand_log(mut self, log: Arc<dyn DemandLog>) -> Self {
        self.demand = log;
        self
    }

    /// A runner was requested for a job of a pool whose idle target follows demand: one
    /// arrival at the job's registration target, dated by its `created_at` (the receive
    /// time when that is missing or out of bounds).
    async fn record_arrival(&self, pool: &Pool, msg: &RunnerMessage, job: &JobContext) {
        let now = self.now();
        let at = timestamps::parse_time(msg.job_created_at.as_deref()).map_or(now, |t| demand::bounded(t, now));
        let record = Record::Arrival { job: msg.job_id, at: at.unix_timestamp() };
        demand::record_for(&*self.demand, &pool.name, &idle_target_of(job), &[record]).await;
    }

    /// A job of a pool that keeps idle runners started: how long after it was queued, and
    /// on which kind of runner. Times out of bounds (see [`demand::in_bounds`]) give no
    /// sample, and a cold start counts at most `runner_boot_timeout` (one job that waited
    /// hours on quota says nothing about how long a runner takes to boot).
    async fn record_started(&self, pool: &Pool, msg: &RunnerMessage, ran_on_kind: &str) {
        let (Some(queued), Some(started)) = (
            timestamps::parse_time(msg.job_created_at.as_deref()),
            timestamps::parse_time(msg.job_started_at.as_deref()),
        ) else {
            return;
        };
        let now = self.now();
        if ran_on_kind == "other" || !demand::in_bounds(queued, now) || !demand::in_bounds(started, now) {
            return;
        }
        let waited = (started - queued).whole_seconds();
        if waited < 0 {
            return;
        }
        let idle = ran_on_kind == "idle";
        let boot_timeout = i64::try_from(pool.runner_boot_timeout.as_secs()).unwrap_or(i64::MAX);
        let record = Record::Started {
            job: msg.job_id,
            at: started.unix_timestamp(),
            queued_s: if idle { waited } else { waited.min(boot_timeout) },
            idle,
        };
        demand::record_for(&*self.demand, &pool.name, &idle_target_of(&self.job_context(msg)), &[record]).await;
    }

    /// Where a pool's idle runners register, one context per target: `idle_targets`, or at
    /// org scope every allowed owner the pool's `repositories` admit, or the enterprise.
    /// Repo scope needs `idle_targets` (check-config says so).
    #[must_use]
    pub fn idle_targets(&self, pool: &Pool) -> Vec<JobContext> {
        let github = &self.pools.github;
        let names: Vec<String> = if !pool.idle.targets.is_empty() {
            pool.idle.targets.clone()
        } else {
            match github.runner_scope {
                RunnerScope::Org => github
                    .allowed_owners
                    .iter()
                    .filter(|owner| {
                        pool.repositories.is_empty()
                            || pool.repositories.iter().any(|g| {
                                crate::glob::Glob::new(g.pattern().split('/').next().unwrap_or_default()).matches(owner)
                            })
                    })
                    .cloned()
                    .collect(),
                RunnerScope::Enterprise => vec![github.enterprise.clone().unwrap_or_default()],
                RunnerScope::Repo => Vec::new(),
            }
        };
        names.iter().map(|t| self.idle_context(t)).collect()
    }

    /// The registration context of an `idle_targets` entry (an org login, `owner/repo`,
    /// or the enterprise).
    #[must_use]
    pub fn idle_context(&self, target: &str) -> JobContext {
        let owner = target.split('/').next().unwrap_or_default();
        let repository = if target.contains('/') { target.to_owned() } else { format!("{target}/") };
        self.context_for(&repository, owner, None)
    }

    /// Holds registrations this long from their JIT call instead of
    /// [`HELD_REGISTRATION_TTL`]: only where no other instance's reconcile runs (standalone).
    #[must_use]
    pub fn with_registration_hold(mut self, ttl: Duration) -> Self {
        self.hold_ttl = ttl;
        self
    }

    /// Keeps a registration for the next attempt. `false`: not kept (too many held).
    fn hold(&self, name: &str, registration: Registration, config: crate::secret::Secret) -> bool {
        let now = tokio::time::Instant::now();
        let mut held = self.held.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let ttl = self.hold_ttl;
        held.retain(|_, h| h.made_at + ttl > now);
        if held.len() >= MAX_HELD_REGISTRATIONS && !held.contains_key(name) {
            return false;
        }
        if registration.made_at + ttl <= now {
            return false;
        }
        held.insert(
            name.to_owned(),
            HeldRegistration { runner_id: registration.id, config, made_at: registration.made_at },
        );
        true
    }

    /// Takes the registration held for `name`, if it is still fresh.
    fn take_held(&self, name: &str) -> Option<HeldRegistration> {
        let mut held = self.held.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        held.remove(name).filter(|h| h.made_at + self.hold_ttl > tokio::time::Instant::now())
    }

    /// How many registrations are held for a later attempt (for tests and metrics).
    #[must_use]
    pub fn held_registrations(&self) -> usize {
        self.held.lock().unwrap_or_else(std::sync::PoisonError::into_inner).len()
    }

    /// Whether a fresh registration of this name is held for a later attempt (reconcile
    /// leaves it alone).
    #[must_use]
    pub fn holds_registration(&self, name: &str) -> bool {
        let held = self.held.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        held.get(name).is_some_and(|h| h.made_at + self.hold_ttl > tokio::time::Instant::now())
    }

    /// The create gate of the pool's backend and location (quotas are per region or account).
    fn create_gate(&self, pool: &Pool) -> Arc<throttle::CreateGate> {
        let key = format!("{}/{}", pool.backend().as_str(), pool.compute.quota_scope());
        let mut gates = self.create_gates.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        gates.entry(key).or_default().clone()
    }

    /// Waits for a JIT slot, or defers the attempt when the slot is far away.
    async fn pace_jit(&self) -> Result<(), ProvisionError> {
        let wait = self.jit_pacer.reserve(MAX_JIT_WAIT).map_err(|after| ProvisionError::Deferred {
            reason: "pacing GitHub JIT configuration calls (github.jit_per_minute)".into(),
            retry_after: after,
        })?;
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        Ok(())
    }

    /// A JIT configuration call, paced; a rate-limit answer pauses the pacer.
    async fn generate_jit(
        &self,
        job: &JobContext,
        name: &str,
        labels: &[String],
        group: u64,
    ) -> Result<JitCall, ProvisionError> {
        self.pace_jit().await?;
        match self.github.generate_jit_config(job, name, labels, group).await {
            Ok(jit) => Ok(JitCall::Made(jit)),
            Err(e @ GitHubError::Conflict(_)) => Ok(JitCall::NameTaken(e)),
            Err(e) => {
                if let GitHubError::RateLimited { retry_after } = &e {
                    self.jit_pacer.throttled(*retry_after);
                }
                Err(e.into())
            }
        }
    }

    /// The pool named in the message, or, if it was renamed or removed since, the pool
    /// the job's labels choose now.
    fn pool_for(&self, msg: &RunnerMessage) -> Option<Arc<Pool>> {
        self.pools
            .pool(&msg.pool)
            .filter(|p| p.enabled)
            .cloned()
            .or_else(|| choose_pool(&self.pools, &msg.labels, Some(&msg.repository)))
    }

    /// The pool a provision request may use: the one it names, if that pool is enabled and
    /// fits the job's labels and repository by the routing rule ([`crate::routing::fits`]);
    /// the pool the job's labels choose now if the named one was removed or disabled since.
    /// A message can come by a route other than the signed webhook (an envelope, a spool
    /// file), so a pool it names is never taken on its word: a runner with a pool's
    /// identity or subnet goes only to jobs that pool admits.
    ///
    /// # Errors
    /// Permanent: the named pool does not fit the job, or no pool does.
    fn pool_that_fits(&self, msg: &RunnerMessage) -> Result<Arc<Pool>, ProvisionError> {
        let Some(named) = self.pools.pool(&msg.pool).filter(|p| p.enabled) else {
            return choose_pool(&self.pools, &msg.labels, Some(&msg.repository)).ok_or_else(|| {
                ProvisionError::permanent(format!(
                    "pool {:?} no longer exists or is disabled, and no other pool fits the job",
                    msg.pool
                ))
            });
        };
        let labels = crate::routing::normalize_labels(&msg.labels);
        let verdict = if labels.is_empty() {
            Err("the job has no labels".to_owned())
        } else {
            crate::routing::fits(named, &labels, Some(&msg.repository)).map_err(|m| m.to_string())
        };
        verdict.map(|()| named.clone()).map_err(|why| {
            ProvisionError::permanent(format!(
                "message refused: pool {} does not fit job {} of {}: {why}",
                named.name,
                msg.job_id,
                crate::telemetry::loggable(&msg.repository)
            ))
        })
    }

    /// Where the job's runner registers, from `runner_scope`.
    #[must_use]
    pub fn job_context(&self, msg: &RunnerMessage) -> JobContext {
        self.context_for(&msg.repository, &msg.owner, msg.installation_id)
    }

    /// The context of calls about a job of `repository` (`owner/name`) owned by `owner`:
    /// where its runner registers (the configured runner scope) and which installation.
    #[must_use]
    pub fn context_for(&self, repository: &str, owner: &str, installation_id: Option<u64>) -> JobContext {
        let (repo_owner, repo) = repository.split_once('/').unwrap_or((owner, ""));
        let target = match self.pools.github.runner_scope {
            RunnerScope::Org => RunnerTarget::Org { org: owner.to_owned() },
            RunnerScope::Repo => RunnerTarget::Repo { owner: repo_owner.to_owned(), repo: repo.to_owned() },
            RunnerScope::Enterprise => {
                RunnerTarget::Enterprise { enterprise: self.pools.github.enterprise.clone().unwrap_or_default() }
            }
        };
        JobContext { target, repository: repository.to_owned(), owner: owner.to_owned(), installation_id }
    }

    /// Provisions one runner for `msg`. `attempt` is 1 for the first delivery of the message.
    ///
    /// # Errors
    /// Retryable (the queue brings the message back) or permanent (report it as failed).
    pub async fn provision(&self, msg: &RunnerMessage, attempt: u32) -> Result<ProvisionOutcome, ProvisionError> {
        self.check_message(msg)?;
        let pool = self.pool_that_fits(msg)?;
        let age = job_age(msg, self.now());
        if age.is_some_and(|a| a > MAX_JOB_AGE) {
            return Err(ProvisionError::permanent("job is older than 24 h; GitHub has cancelled it".to_owned()));
        }
        let name = pool.runner_name(msg.job_id);
        let job = self.job_context(msg);
        let admission = self.admit_create(&pool)?;

        // 1. Compute with this name exists (any state): done.
        if self.backends.for_pool(&pool).find(&pool, &name).await?.is_some() {
            // Another worker's compute carries this name: a registration we held for it
            // was replaced by that worker's (one registration per name).
            drop(self.take_held(&name));
            return Ok(ProvisionOutcome::AlreadyExists);
        }

        // 2. Does the job still need a runner?
        let check = match self.pools.github.check_job_queued {
            CheckJobQueued::Always => true,
            CheckJobQueued::Never => false,
            CheckJobQueued::Stale => attempt > 1 || age.is_some_and(|a| a > STALE_AFTER),
        };
        if check {
            if let Some(reason) = self.job_no_longer_needs_a_runner(&job, msg.job_id).await {
                if let Some(h) = self.take_held(&name) {
                    self.delete_registration(&job, &name, h.runner_id).await;
                }
                return Ok(ProvisionOutcome::Skipped { reason });
            }
        }

        self.check_cap(&pool).await?;

        // 3. Credentials for exactly this runner.
        let (env, registration) = match self.runner_env(&pool, &job, &name, attempt).await? {
            RunnerCredentials::Ready { env, registration } => (env, registration),
            RunnerCredentials::Taken => return Ok(ProvisionOutcome::AlreadyExists),
        };

        // 4. Create the compute (5. on failure, inside).
        let request = ComputeRequest {
            name,
            purpose: Purpose::Job(JobInfo {
                job_id: msg.job_id,
                run_id: msg.run_id,
                repository: msg.repository.clone(),
                job_created_at: msg.job_created_at.clone(),
            }),
            runner_id: registration.as_ref().map(|r| r.id),
            env,
        };
        let outcome = self.create(&pool, &job, &request, registration, admission, true).await?;
        if outcome == CreateOutcome::Created {
            events::runner_requested(msg, &pool, self.backends.for_pool(&pool).kind(), attempt);
            // Once per job: a later attempt finds the compute (step 1) and requests nothing.
            if pool.idle.is_auto() {
                self.record_arrival(&pool, msg, &job).await;
            }
            self.top_up_idle(&pool, &job).await;
        }
        Ok(match outcome {
            CreateOutcome::Created => ProvisionOutcome::Created { backend: self.backends.for_pool(&pool).kind() },
            CreateOutcome::AlreadyExists => ProvisionOutcome::AlreadyExists,
        })
    }

    /// Makes one idle runner for `pool`, registered at `target` (see
    /// [`Provisioner::idle_targets`]): a fresh `<prefix>-i-<8 hex>` name, the pool's labels
    /// and runner group, tagged as idle capacity. Same quota gate, JIT pacing and cap as a
    /// job's runner; a failed create deletes its registration (the next pass tries again).
    /// Returns the runner's name.
    ///
    /// # Errors
    /// As [`Provisioner::provision`]; a deferral when the pool is at `max_runners`.
    pub async fn provision_idle(&self, pool: &Pool, target: &JobContext) -> Result<String, ProvisionError> {
        let admission = self.admit_create(pool)?;
        self.check_cap(pool).await?;
        let name = pool.idle_runner_name(rand::random());
        let (env, registration) = match self.runner_env(pool, target, &name, 1).await? {
            RunnerCredentials::Ready { env, registration } => (env, registration),
            RunnerCredentials::Taken => {
                return Err(ProvisionError::retryable(format!("idle runner name {name} is already taken")));
            }
        };
        let request = ComputeRequest {
            name: name.clone(),
            purpose: Purpose::Idle { target: idle_target_of(target) },
            runner_id: registration.as_ref().map(|r| r.id),
            env,
        };
        self.create(pool, target, &request, registration, admission, false).await?;
        events::idle_runner_requested(pool, &name, &request, self.backends.for_pool(pool).kind());
        Ok(name)
    }

    /// Creates throttled (learned from a create's retry_after): defer before spending any
    /// call. After the pause one attempt probes; the rest wait for it.
    fn admit_create(&self, pool: &Pool) -> Result<throttle::Admission, ProvisionError> {
        if let Some(after) = self.backends.for_pool(pool).paused_for(pool) {
            return Err(ProvisionError::Deferred {
                reason: format!("every placement of pool {} is paused for quota or capacity", pool.name),
                retry_after: after,
            });
        }
        self.create_gate(pool).admit().map_err(|after| ProvisionError::Deferred {
            reason: format!("{} creates are throttled; waiting for the quota", pool.backend().as_str()),
            retry_after: after,
        })
    }

    /// Pool cap (soft): over it is a deferral, never a drop.
    async fn check_cap(&self, pool: &Pool) -> Result<(), ProvisionError> {
        let Some(max) = pool.max_runners else { return Ok(()) };
        if let Some(active) = self.backends.for_pool(pool).active_count(pool).await? {
            if active >= max as usize {
                // Waiting for a slot is a deferral, like a quota wait: it is not an
                // attempt, and only the job's 24 h age ends it.
                return Err(ProvisionError::Deferred {
                    reason: format!("pool {} is at max_runners ({active}/{max})", pool.name),
                    retry_after: MAX_RUNNERS_RECHECK,
                });
            }
        }
        Ok(())
    }

    /// Step 4: creates the compute; on failure, step 5 (see [`Provisioner::after_failed_create`]).
    async fn create(
        &self,
        pool: &Pool,
        job: &JobContext,
        request: &ComputeRequest,
        registration: Option<Registration>,
        admission: throttle::Admission,
        may_hold: bool,
    ) -> Result<CreateOutcome, ProvisionError> {
        match self.backends.for_pool(pool).create(pool, request).await {
            Ok(outcome) => {
                admission.created();
                Ok(outcome)
            }
            Err(e) => {
                if let ProvisionError::Retryable { retry_after: Some(after), .. } = &e {
                    admission.throttled(*after);
                }
                if let Some(registration) = registration {
                    self.after_failed_create(pool, job, request, registration, &e, may_hold).await;
                }
                // A create refused with a Retry-After is a quota or throttle, not a fault of
                // this request: it waits as a deferral (not an attempt, so the retry is not
                // "stale" by itself; the job's age still triggers the check).
                Err(match e {
                    ProvisionError::Retryable { reason, retry_after: Some(after) } => {
                        ProvisionError::Deferred { reason, retry_after: after }
                    }
                    other => other,
                })
            }
        }
    }

    /// Step 5: a permanent failure deletes the registration. A retryable one keeps it, with
    /// its config, for the next attempt: no second JIT call, no 409 to resolve. Held only
    /// when the retry is due within the hold; a longer wait (an hourly quota) deletes it
    /// now, so that retry starts clean. (Idle top-ups never hold: the next pass starts over.)
    async fn after_failed_create(
        &self,
        pool: &Pool,
        job: &JobContext,
        request: &ComputeRequest,
        registration: Registration,
        e: &ProvisionError,
        may_hold: bool,
    ) {
        let due = match e {
            ProvisionError::Retryable { retry_after, .. } => Some(retry_after.unwrap_or_default()),
            ProvisionError::Deferred { retry_after, .. } => Some(*retry_after),
            ProvisionError::Permanent { .. } => None,
        };
        let retry_soon = may_hold
            && due.is_some_and(|after| registration.made_at + self.hold_ttl > tokio::time::Instant::now() + after);
        let held = retry_soon
            && request
                .env
                .iter()
                .find_map(|(k, v)| match v {
                    EnvValue::Secret(s) if *k == pool.env_names.jitconfig => Some(s.clone()),
                    _ => None,
                })
                .is_some_and(|config| self.hold(&request.name, registration, config));
        if !held {
            self.delete_registration(job, &request.name, registration.id).await;
        }
    }

    /// Deletes a registration whose runner will not be created; a failure is only logged
    /// (reconcile removes registrations whose compute is gone).
    async fn delete_registration(&self, job: &JobContext, name: &str, runner_id: u64) {
        if let Err(e) = self.github.delete_runner(job, runner_id).await {
            tracing::warn!(event = "registration_delete_failed", runner_name = %name, error = %e, "could not delete the registration of a runner whose compute failed");
        }
    }

    /// `Some(reason)` when GitHub says the job is done or taken by a runner not ours.
    /// Fails open: when GitHub cannot answer, provision anyway.
    async fn job_no_longer_needs_a_runner(&self, job: &JobContext, job_id: u64) -> Option<String> {
        match self.github.job_state(job, job_id).await {
            Ok(JobState::Completed) => Some("job already completed".into()),
            Ok(JobState::InProgress { runner_name }) => {
                match runner_name.as_deref().filter(|n| self.pools.is_runner_name(n)) {
                    // One of our runners, idle or made for another job, took it: its place
                    // needs filling, and this job's runner fills it.
                    Some(_) => None,
                    None => {
                        Some(format!("job already running on {}", runner_name.as_deref().unwrap_or("another runner")))
                    }
                }
            }
            Ok(_) => None,
            Err(e) => {
                tracing::warn!(event = "job_check_failed", job_id, error = %e, "could not check the job with GitHub; provisioning anyway");
                None
            }
        }
    }

    /// The runner's environment. `Ok((None, _))` means a healthy registration with this
    /// name already exists (nothing to create).
    async fn runner_env(
        &self,
        pool: &Pool,
        job: &JobContext,
        name: &str,
        attempt: u32,
    ) -> Result<RunnerCredentials, ProvisionError> {
        let n = &pool.env_names;
        let mut env = Vec::new();
        let mut runner_id = None;
        match self.pools.github.token_mode {
            TokenMode::Jit => {
                let group = pool.runner_group_id.unwrap_or(1);
                let held = self.take_held(name);
                // The registration an earlier attempt made and could not use yet (it keeps its
                // age: a hold never outlives the hold time from the JIT call), or a new one.
                let made_at = held.as_ref().map_or_else(tokio::time::Instant::now, |h| h.made_at);
                let jit = match held {
                    Some(h) => crate::github::JitConfig { runner_id: h.runner_id, encoded_jit_config: h.config },
                    None => match self.generate_jit(job, name, &pool.labels, group).await? {
                        JitCall::Made(j) => j,
                        JitCall::NameTaken(_) => {
                            if attempt <= 1 {
                                return Err(ProvisionError::retryable(format!(
                                    "runner name {name} is already registered; another worker may be mid-flight"
                                )));
                            }
                            match self.github.find_runner(job, name).await? {
                                Some(r) if r.online || r.busy => return Ok(RunnerCredentials::Taken),
                                Some(r) => {
                                    // A crash between JIT and create left it offline: replace it.
                                    match self.github.delete_runner(job, r.id).await? {
                                        RunnerDeletion::Busy => return Ok(RunnerCredentials::Taken),
                                        RunnerDeletion::Deleted | RunnerDeletion::NotFound => {}
                                    }
                                    self.generate_jit(job, name, &pool.labels, group).await?.config()?
                                }
                                None => self.generate_jit(job, name, &pool.labels, group).await?.config()?,
                            }
                        }
                    },
                };
                self.remember_made(jit.runner_id);
                runner_id = Some(Registration { id: jit.runner_id, made_at });
                env.push((n.jitconfig.clone(), EnvValue::Secret(jit.encoded_jit_config)));
            }
            TokenMode::Registration => {
                let token = self.github.registration_token(job).await?;
                env.push((n.url.clone(), EnvValue::Plain(self.github.runner_url(job))));
                env.push((n.token.clone(), EnvValue::Secret(token.token)));
                env.push((n.name.clone(), EnvValue::Plain(name.to_owned())));
                env.push((n.labels.clone(), EnvValue::Plain(pool.labels.join(","))));
                env.push((n.group.clone(), EnvValue::Plain(pool.runner_group_name.clone())));
                env.push((n.ephemeral.clone(), EnvValue::Plain("1".into())));
            }
        }
        for (k, v) in &pool.env {
            env.push((k.clone(), EnvValue::Plain(v.clone())));
        }
        Ok(RunnerCredentials::Ready { env, registration: runner_id })
    }

    /// Cleans up after a completed job: deletes the compute of the runner that ran it
    /// (when it is ours), and the compute made for this job if its runner never got a job
    /// (a runner of ours that is busy, perhaps with another queued job, is left alone).
    /// Returns the names deleted.
    ///
    /// # Errors
    /// Retryable backend or GitHub failures (the queue retries).
    pub async fn cleanup(&self, msg: &RunnerMessage) -> Result<Cleaned, ProvisionError> {
        let mut cleaned = Cleaned::default();
        cleaned.deleted = self.cleanup_compute(msg, &mut cleaned.requests).await?;
        Ok(cleaned)
    }

    /// [`Provisioner::cleanup`]'s work: the names deleted; a runner request for a job whose
    /// runner this job took goes into `requests`.
    async fn cleanup_compute(
        &self,
        msg: &RunnerMessage,
        requests: &mut Vec<RunnerMessage>,
    ) -> Result<Vec<String>, ProvisionError> {
        self.check_message(msg)?;
        let Some(pool) = self.pool_for(msg) else {
            return Ok(Vec::new());
        };
        let kind = events::ran_on_kind(&self.pools, msg.job_id, msg.ran_on.as_deref());
        events::job_completed(msg, &pool, kind);
        if pool.idle.is_on() {
            self.record_started(&pool, msg, kind).await;
        }
        let job = self.job_context(msg);
        let mut deleted = Vec::new();
        let own = pool.runner_name(msg.job_id);
        if let Some(ran_on) = msg.ran_on.as_deref().filter(|n| self.pools.is_runner_name(n)) {
            if let Some((owner_pool, info)) = self.compute_of_runner(&pool, ran_on).await? {
                if ran_on_this_compute(&info, msg.ran_on_id) {
                    // Asked before the delete: the compute's record of the job it was made
                    // for goes with it, and a failed check must leave it for the retry.
                    let displaced = match owner_pool.runner_kind(ran_on) {
                        Some(RunnerKind::Job(other)) if other != msg.job_id => {
                            self.runner_for_displaced_job(&owner_pool, &info, other, msg).await?
                        }
                        _ => None,
                    };
                    self.backends.for_pool(&owner_pool).delete(&owner_pool, ran_on).await?;
                    deleted.push(ran_on.to_owned());
                    requests.extend(displaced);
                    if ran_on != own {
                        // The job took a runner of ours made for another job (or kept idle).
                        // Its own runner, booting or idle, is left alone: GitHub may be handing
                        // it a job right now, and deleting it could kill that job. Reconcile
                        // removes it if it stays idle.
                        return Ok(deleted);
                    }
                } else {
                    tracing::warn!(
                        event = "cleanup_skipped",
                        job_id = msg.job_id,
                        runner_name = %ran_on,
                        "the job ran on a runner named like ours but not the one made for this compute; left alone"
                    );
                }
            }
            if ran_on == own {
                return Ok(deleted);
            }
        }
        if pool.idle.is_on() {
            // The runner made for this job boots or waits as the pool's next idle one: that
            // is how the idle level holds without a call. Reconcile trims any surplus.
            return Ok(deleted);
        }
        let backend = self.backends.for_pool(&pool);
        let Some(info) = backend.find(&pool, &own).await? else {
            return Ok(deleted);
        };
        match self.github.find_runner(&job, &own).await? {
            Some(r) if r.busy => return Ok(deleted),
            // Named like ours but not the registration made for this compute: not ours to remove.
            Some(r) if info.runner_id.is_some_and(|id| id != r.id) => {}
            Some(r) => {
                if self.github.delete_runner(&job, r.id).await? == RunnerDeletion::Busy {
                    return Ok(deleted);
                }
            }
            None => {}
        }
        backend.delete(&pool, &own).await?;
        deleted.push(own);
        Ok(deleted)
    }

    /// A completed job ran on `info`, the runner made for job `other` of `pool`: that job
    /// lost its runner. GitHub gives a queued job to any online runner whose labels fit, so
    /// the one that took it may be of another pool, and the job's own runner cannot stand in
    /// for `other` (its labels may not fit) nor be counted on (another job may take it). One
    /// rule, within a pool or across pools: while `other` is still queued and under 24 h old,
    /// a runner is requested for it again, in its own pool and under its own name
    /// `<prefix>-<job id>`, which provisioning locks on, so a redelivery or a second
    /// completion makes no second runner. One job-state call per such completion.
    ///
    /// # Errors
    /// Retryable: GitHub could not say whether `other` is still queued (a 404 says it is
    /// gone); the cleanup is retried, after GitHub's `Retry-After` when it gave one (the
    /// compute, and with it the record of `other`, is kept until then).
    async fn runner_for_displaced_job(
        &self,
        pool: &Pool,
        info: &ComputeInfo,
        other: u64,
        completed: &RunnerMessage,
    ) -> Result<Option<RunnerMessage>, ProvisionError> {
        // The repository comes from the compute's metadata (tags anyone with access to the
        // resource group can edit): it reaches a GitHub URL only under the webhook's rules.
        let recorded = info.repository.as_deref().and_then(|r| Some((r, r.split_once('/')?.0))).filter(|(r, owner)| {
            crate::names::check_full_name(r, owner).is_ok() && self.pools.github.admits(owner, r).is_ok()
        });
        let Some((repository, owner)) = recorded else {
            tracing::warn!(event = "displaced_job_unknown", job_id = other, runner_name = %info.name, "a job took the runner made for another job, but the runner's compute records no repository the allowlists admit for that job; reconcile's redelivery is its only way back");
            return Ok(None);
        };
        let now = self.now();
        let created = crate::timestamps::parse_time(info.job_created_at.as_deref()).or(info.created_at);
        if created.is_none_or(|t| (now - t).try_into().is_ok_and(|age: Duration| age > MAX_JOB_AGE)) {
            return Ok(None);
        }
        // The completed job's installation serves this owner too (one installation per owner).
        let installation = completed.installation_id.filter(|_| completed.owner == owner);
        let job = self.context_for(repository, owner, installation);
        // `check_job_queued = "never"` spends no GitHub call on it: the displaced job gets a
        // runner again unasked (one it no longer needs idles out, as after any check skipped).
        let state = if self.pools.github.check_job_queued == CheckJobQueued::Never {
            Ok(JobState::Queued)
        } else {
            self.github.job_state(&job, other).await
        };
        match state {
            Ok(JobState::Queued) => {}
            // Running, done, or gone with its repository: nothing to make.
            Ok(_) | Err(GitHubError::NotFound(_)) => return Ok(None),
            Err(e) => {
                let retry_after = match &e {
                    GitHubError::RateLimited { retry_after } => Some(*retry_after),
                    _ => None,
                };
                let reason = format!(
                    "could not check whether job {other}, whose runner {} ran job {}, is still queued: {e}",
                    info.name, completed.job_id
                );
                return Err(ProvisionError::Retryable { reason, retry_after });
            }
        }
        let request = requeue_message(pool, info, &job, other, ORIGIN_DISPLACED);
        events::displaced_job_requeued(&request, pool, completed);
        Ok(Some(request))
    }

    fn remember_made(&self, runner_id: u64) {
        if let Ok(mut made) = self.made.lock() {
            if made.len() == MADE_REGISTRATIONS_KEPT {
                made.pop_front();
            }
            made.push_back(runner_id);
        }
    }

    /// Whether this process made the JIT registration with this id (one of the last
    /// [`MADE_REGISTRATIONS_KEPT`]).
    #[must_use]
    pub fn made_registration(&self, runner_id: u64) -> bool {
        self.made.lock().is_ok_and(|m| m.contains(&runner_id))
    }

    /// A message may come by a route other than the signed webhook (an envelope route, a
    /// spool file), so the names and allowlists are checked again on every one: a message
    /// the webhook would have refused is refused here, before any call.
    fn check_message(&self, msg: &RunnerMessage) -> Result<(), ProvisionError> {
        let refuse = |why: String| ProvisionError::permanent(format!("message refused: {why}"));
        crate::names::check_full_name(&msg.repository, &msg.owner).map_err(refuse)?;
        self.pools.github.admits(&msg.owner, &msg.repository).map_err(refuse)?;
        // A message without an installation uses the configured one or the lookup of our own
        // App's installation for this (allowed) owner: it cannot reach another installation.
        if msg.installation_id.is_some() {
            self.pools.github.admits_installation(msg.installation_id).map_err(refuse)?;
        }
        crate::names::dedup_labels(msg.labels.clone()).map_err(refuse)?;
        Ok(())
    }

    /// The compute named `runner_name` and its pool: the message's pool first, then every
    /// other pool whose prefix the name carries (pools may share a prefix but not a
    /// backend, so each is asked). Only compute named and tagged as ours counts.
    async fn compute_of_runner(
        &self,
        first: &Arc<Pool>,
        runner_name: &str,
    ) -> Result<Option<(Arc<Pool>, ComputeInfo)>, ProvisionError> {
        let candidates = std::iter::once(first)
            .chain(self.pools.pools.iter().filter(|p| p.name != first.name))
            .filter(|p| p.runner_kind(runner_name).is_some());
        for pool in candidates {
            if let Some(info) = self.backends.for_pool(pool).find(pool, runner_name).await? {
                let ours = match pool.runner_kind(&info.name) {
                    Some(RunnerKind::Job(id)) => info.job_id.is_none_or(|tag| tag == id),
                    Some(RunnerKind::Idle) => info.idle_target().is_some(),
                    None => false,
                };
                if ours {
                    return Ok(Some((pool.clone(), info)));
                }
            }
        }
        Ok(None)
    }
}

/// What a cleanup did: the compute it deleted, and the runner requests it makes for jobs
/// whose runner the completed job took (see [`Provisioner::cleanup`]); the transport puts
/// them on `runner-requests` (the spool standalone).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cleaned {
    pub deleted: Vec<String>,
    pub requests: Vec<RunnerMessage>,
}

/// `origin` of a request made again because another job took the runner made for its job.
pub const ORIGIN_DISPLACED: &str = "cleanup:displaced";

/// A provision request made again for job `job_id`, whose runner `info` of `pool` is gone
/// (it never started, or another job took it): the job's own pool, name and times.
#[must_use]
pub fn requeue_message(pool: &Pool, info: &ComputeInfo, job: &JobContext, job_id: u64, origin: &str) -> RunnerMessage {
    RunnerMessage {
        v: crate::message::MESSAGE_VERSION,
        kind: crate::message::MessageKind::Provision,
        job_id,
        run_id: info.run_id.unwrap_or_default(),
        repository: job.repository.clone(),
        owner: job.owner.clone(),
        installation_id: job.installation_id,
        labels: pool.labels.clone(),
        pool: pool.name.clone(),
        runner_name: pool.runner_name(job_id),
        delivery_id: format!("{}-{job_id}", origin.split(':').next().unwrap_or(origin)),
        job_created_at: info.job_created_at.clone(),
        ran_on: None,
        ran_on_id: None,
        job_started_at: None,
        origin: Some(origin.to_owned()),
    }
}

/// Whether a completed job whose runner had id `ran_on_id` ran on this compute's runner:
/// the id recorded at create must match. Without a record (registration mode, or compute
/// made by an older version), only compute that has already finished is taken, so a
/// same-named runner elsewhere can never get a running job's compute deleted.
fn ran_on_this_compute(info: &ComputeInfo, ran_on_id: Option<u64>) -> bool {
    match info.runner_id {
        Some(recorded) => ran_on_id == Some(recorded),
        None => info.state.is_finished(),
    }
}

/// The `idle_targets` entry a registration context stands for.
#[must_use]
pub fn idle_target_of(ctx: &JobContext) -> String {
    match &ctx.target {
        RunnerTarget::Org { org } => org.clone(),
        RunnerTarget::Repo { owner, repo } => format!("{owner}/{repo}"),
        RunnerTarget::Enterprise { enterprise } => enterprise.clone(),
    }
}

/// How soon a request waiting on `max_runners` looks again: runners finish in minutes.
pub const MAX_RUNNERS_RECHECK: Duration = Duration::from_secs(30);

/// How long before `now` GitHub created the job.
#[must_use]
pub fn job_age(msg: &RunnerMessage, now: OffsetDateTime) -> Option<Duration> {
    let created = timestamps::parse_time(msg.job_created_at.as_deref())?;
    let age = now - created;
    age.try_into().ok()
}

impl From<GitHubError> for ProvisionError {
    fn from(e: GitHubError) -> Self {
        match e {
            GitHubError::RateLimited { retry_after } => {
                ProvisionError::Retryable { reason: e.to_string(), retry_after: Some(retry_after) }
            }
            ref other if other.is_retryable() => ProvisionError::retryable(other.to_string()),
            other => ProvisionError::permanent(other.to_string()),
        }
    }
}
