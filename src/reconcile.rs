//! The 5-minute repair pass: redeliver missed webhooks; reap failed starts, idle,
//! finished and over-TTL runners and orphan registrations. Stateless but for one set of
//! orphan names seen last time (so a registration is only removed when seen orphaned twice).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use time::OffsetDateTime;

use crate::azure::aci::{TAG_JOB_CREATED_AT, TAG_RUN_ID};
use crate::config::{Backend, Pool};
use crate::github::{Delivery, JobContext, JobState, RunnerDeletion, RunnerInfo, RunnerTarget};
use crate::message::{MESSAGE_VERSION, MessageKind, RunnerMessage};
use crate::provision::{ComputeInfo, Provisioner};

/// How often the timer fires.
pub const PERIOD: Duration = Duration::from_secs(300);
/// At most this many redeliveries of one delivery guid.
pub const MAX_REDELIVERIES: usize = 3;

/// What one pass did; logged as one `reconcile_summary` line.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct ReconcileReport {
    pub redelivered: usize,
    pub failed_starts: usize,
    pub idle: usize,
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
}

/// Whether a listed compute is one runner-dispatch made for this pool: named exactly
/// `<prefix>-<digits>` and, where the backend records it, tagged with that same job id.
/// Anyone who can tag a container group in the resource group could otherwise get it deleted.
fn is_ours(pool: &Pool, info: &ComputeInfo) -> bool {
    pool.job_id_of(&info.name).is_some_and(|id| info.job_id == Some(id))
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
        let since = OffsetDateTime::now_utc() - window;
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
        let repository = info.repository.as_deref()?;
        let (owner, _) = repository.split_once('/')?;
        Some(self.provisioner.context_for(repository, owner, None))
    }

    /// Reaps each pool's compute, then the registrations whose compute is gone.
    async fn reap(&self, report: &mut ReconcileReport) {
        let p = &self.provisioner;
        let now = OffsetDateTime::now_utc();
        // Runners per registration target, listed once per pass.
        let mut runners: BTreeMap<String, (JobContext, Vec<RunnerInfo>)> = BTreeMap::new();
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
                if let Err(e) = self.reap_one(pool, &info, &job, registration, now, report).await {
                    report.errors += 1;
                    tracing::warn!(event = "reconcile_error", step = "reap", runner_name = %info.name, error = %e, "could not clean up a runner");
                }
            }
        }
        self.reap_orphans(&runners, &compute_names, recorded_now, listed_everything, report).await;
    }

    /// Registrations of ours whose compute is gone: offline ones are removed once seen
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
                    if p.pools.job_id_of_runner(&r.name).is_none()
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

    async fn reap_one(
        &self,
        pool: &Arc<Pool>,
        info: &ComputeInfo,
        job: &JobContext,
        registration: Option<RunnerInfo>,
        now: OffsetDateTime,
        report: &mut ReconcileReport,
    ) -> Result<(), String> {
        let p = &self.provisioner;
        let backend = p.backends.for_pool(pool);
        let age: Duration = info.created_at.map_or(Duration::ZERO, |c| (now - c).try_into().unwrap_or(Duration::ZERO));
        let delete_registration = |r: &RunnerInfo| {
            let r = r.clone();
            async move { p.github.delete_runner(job, r.id).await.map_err(|e| e.to_string()) }
        };
        if info.state.is_finished() {
            // Some backends keep finished records for debugging a while (Batch tasks).
            if age < pool.compute.finished_retention() {
                return Ok(());
            }
            if let Some(r) = registration.as_ref().filter(|r| !r.busy) {
                delete_registration(r).await?;
            }
            backend.delete(pool, &info.name).await.map_err(|e| e.to_string())?;
            report.finished += 1;
            return Ok(());
        }
        if age > pool.runner_ttl {
            // The compute goes whatever it is doing (the TTL is a hard limit); a busy
            // registration is left for GitHub to end with its job.
            if let Some(r) = registration.as_ref().filter(|r| !r.busy) {
                delete_registration(r).await?;
            }
            backend.delete(pool, &info.name).await.map_err(|e| e.to_string())?;
            report.over_ttl += 1;
            tracing::warn!(event = "runner_over_ttl", runner_name = %info.name, pool = %pool.name, "runner exceeded runner_ttl; deleted");
            return Ok(());
        }
        match &registration {
            Some(r) if r.busy => Ok(()),
            Some(r) if r.online => {
                if age > pool.runner_idle_timeout {
                    // Deregister first: 422 means it just took a job; leave it.
                    if delete_registration(r).await.map_err(|e| e.clone())? == RunnerDeletion::Busy {
                        return Ok(());
                    }
                    backend.delete(pool, &info.name).await.map_err(|e| e.to_string())?;
                    report.idle += 1;
                    tracing::info!(event = "runner_idle_reaped", runner_name = %info.name, pool = %pool.name, "idle runner deleted");
                }
                Ok(())
            }
            // Registered but never online, or no registration at all: a failed start
            // once past the boot timeout.
            _ if age > pool.runner_boot_timeout => {
                if let Some(r) = registration.as_ref().filter(|r| !r.busy) {
                    delete_registration(r).await?;
                }
                backend.delete(pool, &info.name).await.map_err(|e| e.to_string())?;
                report.failed_starts += 1;
                tracing::warn!(event = "runner_failed_start", runner_name = %info.name, pool = %pool.name, "runner never came online; deleted");
                if let Some(job_id) = info.job_id {
                    if matches!(p.github.job_state(job, job_id).await, Ok(JobState::Queued)) {
                        report.requeue.push(self.requeue_message(pool, info, job, job_id));
                    }
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn requeue_message(&self, pool: &Pool, info: &ComputeInfo, job: &JobContext, job_id: u64) -> RunnerMessage {
        let _ = self;
        RunnerMessage {
            v: MESSAGE_VERSION,
            kind: MessageKind::Provision,
            job_id,
            run_id: info.tags.get(TAG_RUN_ID).and_then(|r| r.parse().ok()).unwrap_or_default(),
            repository: job.repository.clone(),
            owner: job.owner.clone(),
            installation_id: job.installation_id,
            labels: pool.labels.clone(),
            pool: pool.name.clone(),
            runner_name: pool.runner_name(job_id),
            delivery_id: format!("reconcile-{job_id}"),
            job_created_at: info.tags.get(TAG_JOB_CREATED_AT).cloned(),
            ran_on: None,
            ran_on_id: None,
            job_started_at: None,
            origin: Some("reconcile:failed_start".into()),
        }
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
