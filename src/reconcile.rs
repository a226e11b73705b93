//! The 5-minute repair pass: redeliver missed webhooks; reap failed starts, idle,
//! finished and over-TTL runners and orphan registrations. Stateless but for one set of
//! orphan names seen last time (so a registration is only removed when seen orphaned twice).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use time::OffsetDateTime;

use crate::config::{Backend, Pool, RunnerKind};
use crate::github::{Delivery, JobContext, JobState, RunnerDeletion, RunnerInfo, RunnerTarget};
use crate::idle::demand::{History, Record};
use crate::idle::{IdleBase, Target};
use crate::message::RunnerMessage;
use crate::provision::{ComputeInfo, Provisioner, idle_target_of};

/// How often the timer fires.
pub const PERIOD: Duration = Duration::from_secs(300);
/// At most this many idle runners are made per pool and target in one pass (a sudden
/// large target fills over a few passes, within the create quota's pace).
pub const MAX_TOP_UP_PER_PASS: usize = 50;

/// At most this many redeliveries of one delivery guid.
pub const MAX_REDELIVERIES: usize = 3;

/// What one pass did; logged as one `reconcile_summary` line.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct ReconcileReport {
    pub redelivered: usize,
    pub failed_starts: usize,
    /// Idle runners deleted (beyond the target, past their maximum age, or idle too long).
    pub idle: usize,
    /// Idle runners made to hold a pool's target.
    pub idle_created: usize,
    pub finished: usize,
    pub over_ttl: usize,
    pub orphan_registrations: usize,
    pub errors: usize,
    /// New provision requests for jobs whose runner failed to start.
    #[serde(skip)]
    pub requeue: Vec<RunnerMessage>,
}

/// Chooses which deliveries to redeliver: `workflow_job` queued/completed, grouped by
/// guid; only when no attempt succeeded, the latest failed by timeout, 5xx or 429, and
/// fewer than [`MAX_REDELIVERIES`] redeliveries were made.
#[must_use]
pub fn deliveries_to_redeliver(deliveries: &[Delivery]) -> Vec<u64> {
    let mut by_guid: BTreeMap<&str, Vec<&Delivery>> = BTreeMap::new();
    for d in deliveries {
        let relevant = d.event == "workflow_job" && matches!(d.action.as_deref(), Some("queued" | "completed"));
        if relevant {
            by_guid.entry(d.guid.as_str()).or_default().push(d);
        }
    }
    let mut out = Vec::new();
    for attempts in by_guid.values() {
        if attempts.iter().any(|d| (200..300).contains(&d.status_code)) {
            continue;
        }
        let redeliveries = attempts.iter().filter(|d| d.redelivery).count();
        if redeliveries >= MAX_REDELIVERIES {
            continue;
        }
        let Some(latest) = attempts.iter().max_by_key(|d| (d.delivered_at, d.id)) else { continue };
        let retryable = latest.status_code == 0 || latest.status_code == 429 || latest.status_code >= 500;
        if retryable {
            out.push(latest.id);
        }
    }
    out
}

/// Runs reconcile passes.
pub struct Reconciler {
    provisioner: Arc<Provisioner>,
    redeliver: bool,
    orphans_seen: Mutex<HashSet<String>>,
    /// JIT runner ids recorded on our compute in the last pass: an orphan registration is
    /// removed only if its id is one of ours (another deployment may use the same prefix).
    recorded_ids: Mutex<HashSet<u64>>,
    /// Registration ids of our runners seen online and idle in the last pass: only those
    /// may be retired in this one.
    idle_seen: Mutex<HashSet<u64>>,
}

/// Runners seen online and idle: in the last pass (`before`) and in this one (`now`).
#[derive(Default)]
struct SeenIdle {
    before: HashSet<u64>,
    now: HashSet<u64>,
}

/// A registration target as a key (GitHub logins are case-insensitive).
fn target_key(ctx: &JobContext) -> String {
    ctx.target.api_prefix().to_ascii_lowercase()
}

/// Whether a listed compute is one runner-dispatch made for this pool: named exactly
/// `<prefix>-<digits>` and tagged with that same job id, or named `<prefix>-i-<8 hex>` and
/// tagged as idle capacity. Anyone who can tag a container group in the resource group
/// could otherwise get it deleted.
fn is_ours(pool: &Pool, info: &ComputeInfo) -> bool {
    match pool.runner_kind(&info.name) {
        Some(RunnerKind::Job(id)) => info.job_id == Some(id),
        Some(RunnerKind::Idle) => info.idle_target().is_some(),
        None => false,
    }
}

/// One of our runners still standing after the reaping, with its registration.
struct Standing {
    info: ComputeInfo,
    job: JobContext,
    registration: Option<RunnerInfo>,
}

/// What a pool's runners at one registration target are doing.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Census {
    /// Online and not busy: ready for a job (kept idle ones and job runners whose job
    /// another runner took).
    pub idle: usize,
    pub busy: usize,
    /// Created, not online yet, within `runner_boot_timeout`.
    pub booting: usize,
    /// Past `runner_boot_timeout` and never online (reconcile deletes them).
    pub failed_starts: usize,
    /// Age of the oldest runner, in seconds.
    pub oldest_s: Option<u64>,
}

/// The ACI placement a runner was created in (empty for pools without placements).
fn placement_of(info: &ComputeInfo) -> &str {
    info.placement()
}

fn age_of(info: &ComputeInfo, now: OffsetDateTime) -> Duration {
    info.created_at.map_or(Duration::ZERO, |c| (now - c).try_into().unwrap_or(Duration::ZERO))
}

/// Counts runners by what they do (see [`Census`]).
fn census<'a>(
    pool: &Pool,
    runners: impl Iterator<Item = (&'a ComputeInfo, Option<&'a RunnerInfo>)>,
    now: OffsetDateTime,
) -> Census {
    let mut c = Census::default();
    for (info, registration) in runners {
        let age = age_of(info, now);
        c.oldest_s = Some(c.oldest_s.unwrap_or(0).max(age.as_secs()));
        match registration {
            Some(r) if r.busy => c.busy += 1,
            Some(r) if r.online => c.idle += 1,
            _ if info.state.is_finished() => {}
            _ if age > pool.runner_boot_timeout => c.failed_starts += 1,
            _ => c.booting += 1,
        }
    }
    c
}

/// The registration named like `info` in `list`, if it is the runner made for this compute:
/// its id must be the one recorded on the compute (when one was: JIT mode). Runner names are
/// unique only per scope, so a same-named runner elsewhere is not ours.
fn registration_of<'a>(info: &ComputeInfo, list: &'a [RunnerInfo]) -> Option<&'a RunnerInfo> {
    list.iter().find(|r| r.name == info.name && info.runner_id.is_none_or(|id| id == r.id))
}

impl Reconciler {
    /// `redeliver`: whether a hook is configured (`GITHUB_HOOK_SCOPE`).
    #[must_use]
    pub fn new(provisioner: Arc<Provisioner>, redeliver: bool) -> Self {
        Self {
            provisioner,
            redeliver,
            orphans_seen: Mutex::new(HashSet::new()),
            recorded_ids: Mutex::new(HashSet::new()),
            idle_seen: Mutex::new(HashSet::new()),
        }
    }

    /// One pass. Never fails: errors are counted and logged, and the pass goes on.
    pub async fn run(&self) -> ReconcileReport {
        let started = Instant::now();
        let mut report = ReconcileReport::default();
        if self.redeliver {
            self.redeliver_missed(&mut report).await;
        }
        self.reap(&mut report).await;
        tracing::info!(
            event = "reconcile_summary",
            redelivered = report.redelivered,
            failed_starts = report.failed_starts,
            idle = report.idle,
            idle_created = report.idle_created,
            finished = report.finished,
            over_ttl = report.over_ttl,
            orphan_registrations = report.orphan_registrations,
            requeued = report.requeue.len(),
            errors = report.errors,
            duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            "reconcile finished"
        );
        report
    }

    async fn redeliver_missed(&self, report: &mut ReconcileReport) {
        let github = &self.provisioner.github;
        let window = PERIOD * 2 + Duration::from_secs(600);
        let since = self.provisioner.now() - window;
        let deliveries = match github.list_deliveries(since).await {
            Ok(d) => d,
            Err(e) => {
                report.errors += 1;
                tracing::warn!(event = "reconcile_error", step = "list_deliveries", error = %e, "could not list webhook deliveries");
                return;
            }
        };
        for id in deliveries_to_redeliver(&deliveries) {
            match github.redeliver(id).await {
                Ok(()) => {
                    report.redelivered += 1;
                    tracing::info!(
                        event = "redelivered",
                        github_delivery = id,
                        "asked GitHub to redeliver a failed delivery"
                    );
                }
                Err(e) => {
                    report.errors += 1;
                    tracing::warn!(event = "reconcile_error", step = "redeliver", github_delivery = id, error = %e, "redelivery failed");
                }
            }
        }
    }

    fn context_for(&self, info: &ComputeInfo) -> Option<JobContext> {
        if let Some(target) = info.idle_target() {
            return Some(self.provisioner.idle_context(target));
        }
        let repository = info.repository.as_deref()?;
        let (owner, _) = repository.split_once('/')?;
        Some(self.provisioner.context_for(repository, owner, None))
    }

    /// Reaps each pool's compute, then the registrations whose compute is gone.
    async fn reap(&self, report: &mut ReconcileReport) {
        let p = &self.provisioner;
        let now = p.now();
        // Runners per registration target, listed once per pass.
        let mut runners: BTreeMap<String, (JobContext, Vec<RunnerInfo>)> = BTreeMap::new();
        // Our runners still standing after reaping, by the pool they belong to.
        let mut standing: BTreeMap<String, Vec<Standing>> = BTreeMap::new();
        // A compute belongs to one pool, however many listings show it.
        let mut standing_names: HashSet<String> = HashSet::new();
        let mut compute_names: BTreeSet<String> = BTreeSet::new();
        let mut recorded_now: HashSet<u64> = HashSet::new();
        let mut listed_everything = true;
        let mut seen_shared: HashSet<(Backend, String)> = HashSet::new();
        for pool in &p.pools.pools {
            let backend = p.backends.for_pool(pool);
            let computes = match backend.list(pool).await {
                Ok(c) => c,
                Err(e) => {
                    listed_everything = false;
                    report.errors += 1;
                    tracing::warn!(event = "reconcile_error", step = "list_compute", pool = %pool.name, error = %e, "could not list compute");
                    continue;
                }
            };
            // Pools that share a listing (a Batch pool) see the same compute: act on it once.
            let first_time =
                pool.compute.shared_listing().is_none_or(|s| seen_shared.insert((pool.backend(), s.to_owned())));
            for info in computes {
                if !is_ours(pool, &info) {
                    tracing::debug!(runner_name = %crate::telemetry::loggable(&info.name), pool = %pool.name, "listed compute is not named and tagged as ours; left alone");
                    continue;
                }
                compute_names.insert(info.name.clone());
                recorded_now.extend(info.runner_id);
                if !first_time {
                    continue;
                }
                let Some(job) = self.context_for(&info) else { continue };
                let target_key = job.target.api_prefix();
                if !runners.contains_key(&target_key) {
                    match p.github.list_runners(&job).await {
                        Ok(list) => {
                            runners.insert(target_key.clone(), (job.clone(), list));
                        }
                        Err(e) => {
                            report.errors += 1;
                            tracing::warn!(event = "reconcile_error", step = "list_runners", target = %target_key, error = %e, "could not list runners");
                            continue;
                        }
                    }
                }
                let registration = runners.get(&target_key).and_then(|(_, l)| registration_of(&info, l).cloned());
                let removed = match self.reap_one(pool, &info, &job, registration.as_ref(), now, report).await {
                    Ok(removed) => removed,
                    Err(e) => {
                        report.errors += 1;
                        tracing::warn!(event = "reconcile_error", step = "reap", runner_name = %info.name, error = %e, "could not clean up a runner");
                        false
                    }
                };
                if !removed && standing_names.insert(info.name.clone()) {
                    // A shared listing (Batch) names each runner's own pool.
                    let owner = info.pool_name().filter(|n| p.pools.pool(n).is_some()).unwrap_or(&pool.name).to_owned();
                    standing.entry(owner).or_default().push(Standing { info, job, registration });
                }
            }
        }
        let before = self.idle_seen.lock().map(|s| s.clone()).unwrap_or_default();
        let mut idle = SeenIdle { before, now: HashSet::new() };
        for pool in &p.pools.pools {
            let runners_of_pool = standing.remove(&pool.name).unwrap_or_default();
            self.keep_level(pool, runners_of_pool, now, &mut idle, report).await;
        }
        if let Ok(mut s) = self.idle_seen.lock() {
            *s = idle.now;
        }
        // Idle runners' registrations are looked for where they register, even where no
        // compute stands any more (the orphan pass below needs the list).
        for pool in p.pools.pools.iter().filter(|pool| pool.idle.is_on()) {
            for ctx in p.idle_targets(pool) {
                let key = ctx.target.api_prefix();
                if runners.contains_key(&key) {
                    continue;
                }
                match p.github.list_runners(&ctx).await {
                    Ok(list) => {
                        runners.insert(key, (ctx, list));
                    }
                    Err(e) => {
                        report.errors += 1;
                        tracing::warn!(event = "reconcile_error", step = "list_runners", target = %key, error = %e, "could not list runners");
                    }
                }
            }
        }
        self.reap_orphans(&runners, &compute_names, recorded_now, listed_everything, report).await;
    }

    /// Holds each configured (or default) registration target of the pool at its idle
    /// target, each from its own demand (see [`Reconciler::hold_target`]). Runners standing
    /// at any other target (a job's, at repo scope say) are trimmed there as job runners
    /// and never topped up: idle runners exist exactly where `idle_targets` says.
    async fn keep_level(
        &self,
        pool: &Arc<Pool>,
        standing: Vec<Standing>,
        now: OffsetDateTime,
        idle: &mut SeenIdle,
        report: &mut ReconcileReport,
    ) {
        let p = &self.provisioner;
        let keeps = pool.enabled && pool.idle.is_on();
        let history = if keeps { self.history_or_floor(pool, now).await } else { History::default() };
        let mut by_target: BTreeMap<String, (JobContext, Option<Target>, Vec<Standing>)> = BTreeMap::new();
        if keeps {
            for ctx in p.idle_targets(pool) {
                let target = pool.idle.target_at(now, &history.demand_for(&idle_target_of(&ctx)));
                by_target.entry(target_key(&ctx)).or_insert((ctx, Some(target), Vec::new()));
            }
        }
        for s in standing {
            by_target.entry(target_key(&s.job)).or_insert_with(|| (s.job.clone(), None, Vec::new())).2.push(s);
        }
        for (ctx, target, list) in by_target.into_values() {
            self.hold_target(pool, &ctx, target.as_ref(), list, now, idle, report).await;
        }
    }

    /// One registration target of a pool. Idle runners beyond the target go: kept-idle
    /// ones now, job runners after `runner_idle_timeout` (at most one period in pools that
    /// keep idle runners). Ones past `idle_runner_max_age` are replaced, the new one made
    /// before the old one goes. A runner is retired only when it was seen idle in the last
    /// pass too (GitHub may have just given it a job that does not show busy yet), and a
    /// 422 on its deregistration means it just took one: it stays. Idle + booting below the
    /// target are topped up. `target` is `None` at a target that is not configured:
    /// nothing is kept or made there.
    #[allow(clippy::too_many_arguments)]
    async fn hold_target(
        &self,
        pool: &Arc<Pool>,
        ctx: &JobContext,
        target: Option<&Target>,
        mut list: Vec<Standing>,
        now: OffsetDateTime,
        idle: &mut SeenIdle,
        report: &mut ReconcileReport,
    ) {
        let p = &self.provisioner;
        // A job's runner beyond the level waits out `runner_idle_timeout`, as in a pool
        // without idle runners; in a pool that keeps them, one period (older than that, any
        // job queued for it has long been given to it) so the level falls to its floor by
        // the second pass after demand stops.
        let job_runner_timeout =
            if pool.idle.is_on() { pool.runner_idle_timeout.min(PERIOD) } else { pool.runner_idle_timeout };
        let count = target.map_or(0, |t| t.count as usize);
        // A target that follows demand moves a little every pass; trimming on every dip and
        // topping up on every rise would make runners for nothing (the benchmark: 1.09
        // runners per job at a job a minute). Idle runners up to √target above it stay, but
        // never above `idle_runners_max` (a hard cap); at a floor of 0 nothing does, so
        // demand that stops still ends at the floor.
        let keep_limit = match pool.idle.base {
            IdleBase::Auto { max } => (count + (count as f64).sqrt().ceil() as usize).min(max as usize),
            IdleBase::Fixed(_) => count,
        };
        // Youngest first: they stay longest before their maximum age.
        list.sort_by_key(|s| age_of(&s.info, now));
        let booting = census(pool, list.iter().map(|s| (&s.info, s.registration.as_ref())), now).booting;
        let mut kept = 0usize;
        let mut retired = 0usize;
        for s in &list {
            let Some(r) = s.registration.as_ref().filter(|r| r.online && !r.busy) else { continue };
            idle.now.insert(r.id);
            let age = age_of(&s.info, now);
            let idle_kind = pool.runner_kind(&s.info.name) == Some(RunnerKind::Idle);
            let over_age = idle_kind && age > pool.idle.max_age;
            let within = kept + booting < keep_limit;
            if within && !over_age {
                kept += 1;
                continue;
            }
            let why = if over_age {
                "max_age"
            } else if idle_kind {
                "surplus"
            } else if age > job_runner_timeout {
                "idle_timeout"
            } else {
                continue;
            };
            if !idle.before.contains(&r.id) {
                // Idle for the first time: decided next pass.
                kept += usize::from(within);
                continue;
            }
            if over_age && kept + booting < count {
                // Its place in the level is the replacement's: made first, so the old runner
                // goes only once the new one is on its way.
                if let Err(e) = p.provision_idle(pool, ctx).await {
                    report.errors += 1;
                    tracing::warn!(event = "reconcile_error", step = "replace_idle", pool = %pool.name, runner_name = %s.info.name, error = %e, "could not make the replacement of an old idle runner; it stays");
                    kept += 1;
                    continue;
                }
                report.idle_created += 1;
                kept += 1;
            }
            match self.retire(pool, &s.info, ctx, r).await {
                Ok(true) => {
                    retired += 1;
                    report.idle += 1;
                    tracing::info!(event = "runner_idle_reaped", runner_name = %s.info.name, pool = %pool.name, placement = placement_of(&s.info), reason = why, "idle runner deleted");
                }
                Ok(false) => {}
                Err(e) => {
                    report.errors += 1;
                    tracing::warn!(event = "reconcile_error", step = "trim_idle", runner_name = %s.info.name, error = %e, "could not delete an idle runner");
                }
            }
        }
        let Some(t) = target else { return };
        let name = idle_target_of(ctx);
        let idle_now = list.iter().filter(|s| s.registration.as_ref().is_some_and(|r| r.online && !r.busy)).count();
        let idle_after = u32::try_from(idle_now - retired).unwrap_or(u32::MAX);
        let missing = count.saturating_sub(kept + booting).min(MAX_TOP_UP_PER_PASS);
        let mut made = 0;
        for _ in 0..missing {
            match p.provision_idle(pool, ctx).await {
                Ok(_) => {
                    report.idle_created += 1;
                    made += 1;
                }
                Err(e) => {
                    report.errors += 1;
                    tracing::warn!(event = "reconcile_error", step = "top_up", pool = %pool.name, target = %ctx.target.api_prefix(), error = %e, "could not make an idle runner");
                    break;
                }
            }
        }
        // What a job's arrival tops up from until the next pass (see provision::top_up).
        p.note_idle_level(pool, ctx, idle_now - retired + booting + made);
        tracing::info!(event = "idle_target", pool = %pool.name, registration_target = %name, target = t.count, idle = idle_after, why = %serde_json::to_string(&t.why).unwrap_or_default(), "idle level held");
        let sample = Record::Idle { at: now.unix_timestamp(), idle: idle_after };
        crate::idle::demand::record_for(&*p.demand, &pool.name, &name, &[sample]).await;
    }

    /// The pool's demand log over the last [`crate::idle::demand::HISTORY`].
    async fn history_of(&self, pool: &Pool, now: OffsetDateTime) -> Result<History, String> {
        let since = now - crate::idle::demand::HISTORY;
        crate::idle::demand::history(&*self.provisioner.demand, &pool.name, since, now).await
    }

    /// The pool's history for a pass (an unreadable log: none, so the targets fall to
    /// their floor).
    async fn history_or_floor(&self, pool: &Pool, now: OffsetDateTime) -> History {
        self.history_of(pool, now).await.unwrap_or_else(|e| {
            tracing::warn!(event = "reconcile_error", step = "read_demand", pool = %pool.name, error = %e, "could not read the demand log; the idle target falls to its floor");
            History::default()
        })
    }

    /// Deregisters an idle runner, then deletes its compute. `Ok(false)`: it just took a job.
    async fn retire(&self, pool: &Pool, info: &ComputeInfo, job: &JobContext, r: &RunnerInfo) -> Result<bool, String> {
        let p = &self.provisioner;
        if p.github.delete_runner(job, r.id).await.map_err(|e| e.to_string())? == RunnerDeletion::Busy {
            return Ok(false);
        }
        p.backends.for_pool(pool).delete(pool, &info.name).await.map_err(|e| e.to_string())?;
        Ok(true)
    }

    /// Registrations of ours (job and idle runners) whose compute is gone: offline ones are removed once seen
    /// orphaned in two passes (a fresh JIT registration may be seconds from its compute),
    /// unless this instance holds it for a retry (HELD_REGISTRATION_TTL is shorter than
    /// two passes, so another instance's reconcile cannot remove it under the hold either).
    /// Only ids recorded on our compute (this pass or the last) count: an offline runner
    /// merely named like ours may be another deployment's (say, a Batch runner waiting
    /// for a node). Crash leftovers without a record are removed by GitHub itself, which
    /// deletes ephemeral runners that never connect within a day.
    async fn reap_orphans(
        &self,
        runners: &BTreeMap<String, (JobContext, Vec<RunnerInfo>)>,
        compute_names: &BTreeSet<String>,
        mut recorded_now: HashSet<u64>,
        listed_everything: bool,
        report: &mut ReconcileReport,
    ) {
        let p = &self.provisioner;
        let mut recorded: HashSet<u64> = self.recorded_ids.lock().map(|s| s.clone()).unwrap_or_default();
        recorded.extend(recorded_now.iter().copied());
        if listed_everything {
            let mut seen_now = HashSet::new();
            let previous = self.orphans_seen.lock().map(|s| s.clone()).unwrap_or_default();
            for (job, list) in runners.values() {
                for r in list {
                    if !p.pools.is_runner_name(&r.name)
                        || !(recorded.contains(&r.id) || p.made_registration(r.id))
                        || compute_names.contains(&r.name)
                        || r.online
                        || r.busy
                        || p.holds_registration(&r.name)
                    {
                        continue;
                    }
                    let key = format!("{}/{}", job.target.api_prefix(), r.name);
                    if previous.contains(&key) {
                        match p.github.delete_runner(job, r.id).await {
                            Ok(_) => report.orphan_registrations += 1,
                            Err(e) => {
                                report.errors += 1;
                                tracing::warn!(event = "reconcile_error", step = "delete_orphan", runner_name = %r.name, error = %e, "could not delete an orphan registration");
                            }
                        }
                    } else {
                        seen_now.insert(key);
                        // Remembered until the next pass decides on it.
                        recorded_now.insert(r.id);
                    }
                }
            }
            if let Ok(mut s) = self.orphans_seen.lock() {
                *s = seen_now;
            }
        }
        if let Ok(mut s) = self.recorded_ids.lock() {
            *s = if listed_everything { recorded_now } else { recorded };
        }
    }

    /// Removes a finished, over-TTL or failed-start runner. `Ok(true)`: it is gone. Idle
    /// ones are left to [`Reconciler::keep_level`].
    async fn reap_one(
        &self,
        pool: &Arc<Pool>,
        info: &ComputeInfo,
        job: &JobContext,
        registration: Option<&RunnerInfo>,
        now: OffsetDateTime,
        report: &mut ReconcileReport,
    ) -> Result<bool, String> {
        let p = &self.provisioner;
        let backend = p.backends.for_pool(pool);
        let age = age_of(info, now);
        let delete_registration = |r: &RunnerInfo| {
            let r = r.clone();
            async move { p.github.delete_runner(job, r.id).await.map_err(|e| e.to_string()) }
        };
        if info.state.is_finished() {
            // Some backends keep finished records for debugging a while (Batch tasks).
            if age < pool.compute.finished_retention() {
                return Ok(true);
            }
            if let Some(r) = registration.filter(|r| !r.busy) {
                delete_registration(r).await?;
            }
            backend.delete(pool, &info.name).await.map_err(|e| e.to_string())?;
            report.finished += 1;
            return Ok(true);
        }
        if age > pool.runner_ttl {
            // The compute goes whatever it is doing (the TTL is a hard limit); a busy
            // registration is left for GitHub to end with its job.
            if let Some(r) = registration.filter(|r| !r.busy) {
                delete_registration(r).await?;
            }
            backend.delete(pool, &info.name).await.map_err(|e| e.to_string())?;
            report.over_ttl += 1;
            tracing::warn!(event = "runner_over_ttl", runner_name = %info.name, pool = %pool.name, placement = placement_of(info), "runner exceeded runner_ttl; deleted");
            return Ok(true);
        }
        match registration {
            Some(r) if r.busy || r.online => Ok(false),
            // Registered but never online, or no registration at all: a failed start
            // once past the boot timeout.
            _ if age > pool.runner_boot_timeout => {
                if let Some(r) = registration.filter(|r| !r.busy) {
                    delete_registration(r).await?;
                }
                backend.delete(pool, &info.name).await.map_err(|e| e.to_string())?;
                report.failed_starts += 1;
                tracing::warn!(event = "runner_failed_start", runner_name = %info.name, pool = %pool.name, placement = placement_of(info), "runner never came online; deleted");
                if let Some(job_id) = info.job_id {
                    if matches!(p.github.job_state(job, job_id).await, Ok(JobState::Queued)) {
                        report.requeue.push(self.requeue_message(pool, info, job, job_id));
                    }
                }
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    fn requeue_message(&self, pool: &Pool, info: &ComputeInfo, job: &JobContext, job_id: u64) -> RunnerMessage {
        let _ = self;
        crate::provision::requeue_message(pool, info, job, job_id, "reconcile:failed_start")
    }
}

/// One pool as `status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct PoolStatus {
    pub pool: String,
    pub backend: &'static str,
    pub enabled: bool,
    /// The highest idle target now and why (every registration target has the same unless
    /// the pool follows demand); `None` when the pool keeps no idle runners.
    pub idle_target: Option<Target>,
    /// Registration targets that keep idle runners.
    pub idle_targets: Vec<String>,
    /// Each registration target's idle target now and why (under `"auto"`, from its own
    /// demand).
    pub idle_target_by_target: BTreeMap<String, Target>,
    #[serde(flatten)]
    pub runners: Census,
    /// Idle runner-minutes over the last hour, from reconcile's samples.
    pub idle_runner_minutes_last_hour: f64,
    /// ACI pools with placements: runners by placement (the label each was created in).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub placements: BTreeMap<String, usize>,
    /// Queued to started over the last hour (pools that keep idle runners record it).
    pub time_to_runner: crate::idle::demand::TimeToRunner,
    /// What could not be read (the pool's figures are then partial).
    pub errors: Vec<String>,
}

impl Reconciler {
    /// What each pool has now, read-only: the idle target and why, idle, busy, booting and
    /// failed starts, the oldest runner, and the last hour's idle runner-minutes and time
    /// to runner. Reads the same lists a pass reads; changes nothing.
    pub async fn status(&self) -> Vec<PoolStatus> {
        let p = &self.provisioner;
        let now = self.provisioner.now();
        let mut runners: BTreeMap<String, Result<Vec<RunnerInfo>, String>> = BTreeMap::new();
        let mut out = Vec::new();
        for pool in &p.pools.pools {
            let mut errors = Vec::new();
            let mut seen = Vec::new();
            match p.backends.for_pool(pool).list(pool).await {
                Ok(list) => {
                    for info in list.into_iter().filter(|i| is_ours(pool, i)) {
                        if info.pool_name().is_some_and(|n| n != pool.name) {
                            continue;
                        }
                        let Some(job) = self.context_for(&info) else { continue };
                        let key = job.target.api_prefix();
                        if !runners.contains_key(&key) {
                            let listed = p.github.list_runners(&job).await.map_err(|e| e.to_string());
                            runners.insert(key.clone(), listed);
                        }
                        let registration = match runners.get(&key) {
                            Some(Ok(l)) => registration_of(&info, l).cloned(),
                            Some(Err(e)) => {
                                errors.push(format!("runners at {key}: {e}"));
                                None
                            }
                            None => None,
                        };
                        seen.push((info, registration));
                    }
                }
                Err(e) => errors.push(format!("compute: {e}")),
            }
            let counts = census(pool, seen.iter().map(|(i, r)| (i, r.as_ref())), now);
            let mut placements: BTreeMap<String, usize> = BTreeMap::new();
            for (info, _) in seen.iter().filter(|(i, _)| !i.state.is_finished()) {
                let label = placement_of(info);
                if !label.is_empty() {
                    *placements.entry(label.to_owned()).or_default() += 1;
                }
            }
            let history = self.history_of(pool, now).await.unwrap_or_else(|e| {
                errors.push(format!("demand log: {e}"));
                History::default()
            });
            let targets: Vec<String> =
                if pool.idle.is_on() { p.idle_targets(pool).iter().map(idle_target_of).collect() } else { Vec::new() };
            let idle_target_by_target: BTreeMap<String, Target> =
                targets.iter().map(|t| (t.clone(), pool.idle.target_at(now, &history.demand_for(t)))).collect();
            let idle_target = pool.idle.is_on().then(|| {
                idle_target_by_target
                    .values()
                    .max_by_key(|t| t.count)
                    .cloned()
                    .unwrap_or_else(|| pool.idle.target_at(now, &crate::idle::Demand::default()))
            });
            errors.dedup();
            out.push(PoolStatus {
                pool: pool.name.clone(),
                backend: pool.backend().as_str(),
                enabled: pool.enabled,
                idle_targets: targets,
                idle_target,
                idle_target_by_target,
                runners: counts,
                placements,
                idle_runner_minutes_last_hour: (history.idle_runner_minutes(PERIOD) * 10.0).round() / 10.0,
                time_to_runner: history.time_to_runner(),
                errors,
            });
        }
        out
    }
}

/// Used by tests and `doctor`: the registration target of a runner scope for an owner.
#[must_use]
pub fn org_target(owner: &str) -> RunnerTarget {
    RunnerTarget::Org { org: owner.to_owned() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(id: u64, guid: &str, code: u16, redelivery: bool, minute: i64) -> Delivery {
        Delivery {
            id,
            guid: guid.into(),
            delivered_at: Some(OffsetDateTime::UNIX_EPOCH + time::Duration::minutes(minute)),
            redelivery,
            status: if code == 0 { "timed out".into() } else { "x".into() },
            status_code: code,
            event: "workflow_job".into(),
            action: Some("queued".into()),
        }
    }

    #[test]
    fn redelivers_only_failures_worth_retrying_at_most_three_times() {
        let mut other_event = d(9, "g9", 500, false, 1);
        other_event.event = "push".into();
        let mut in_progress = d(10, "g10", 500, false, 1);
        in_progress.action = Some("in_progress".into());
        let list = vec![
            d(1, "timeout", 0, false, 1),
            d(2, "server", 502, false, 1),
            d(3, "throttled", 429, false, 1),
            d(4, "refused", 401, false, 1),
            d(5, "ok-later", 500, false, 1),
            d(6, "ok-later", 202, true, 2),
            d(7, "tired", 500, true, 1),
            d(8, "tired", 500, true, 2),
            d(11, "tired", 500, true, 3),
            d(12, "tired", 500, false, 0),
            other_event,
            in_progress,
            d(13, "latest-4xx", 500, false, 1),
            d(14, "latest-4xx", 400, true, 2),
        ];
        let mut ids = deliveries_to_redeliver(&list);
        ids.sort_unstable();
        assert_eq!(ids, vec![1, 2, 3]);
    }
}
