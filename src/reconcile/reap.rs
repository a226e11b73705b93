//! Reaping: removes finished, over-TTL and failed-start runners (requeueing the jobs
//! whose runner never started), and hands on the runners still standing.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;

use time::OffsetDateTime;

use super::ReconcileReport;
use super::fleet::Fleet;
use super::snapshot::{Snapshot, age_of, registration_of};
use crate::compute::ComputeInfo;
use crate::config::Pool;
use crate::github::{JobContext, JobState, RunnerInfo};
use crate::message::RunnerMessage;

/// One of our runners still standing after the reaping, with its registration.
pub(super) struct Standing {
    pub info: ComputeInfo,
    pub job: JobContext,
    pub registration: Option<RunnerInfo>,
}

/// What the reaping leaves for the passes after it.
pub(super) struct Reaped {
    /// Our runners still standing, by the pool they belong to.
    pub standing: BTreeMap<String, Vec<Standing>>,
    /// The names of every compute of ours listed (a registration so named is not an orphan).
    pub compute_names: BTreeSet<String>,
    /// The JIT runner ids recorded on our compute.
    pub recorded: HashSet<u64>,
}

/// Reaps each pool's compute, each compute once: pools that share a listing (a Batch pool)
/// each see the compute named with their own prefix, and one listed for two pools is acted
/// on by the first.
pub(super) async fn reap(fleet: &impl Fleet, snapshot: &Snapshot, report: &mut ReconcileReport) -> Reaped {
    let mut reaped = Reaped { standing: BTreeMap::new(), compute_names: BTreeSet::new(), recorded: HashSet::new() };
    // A compute belongs to one pool, however many listings show it.
    let mut standing_names: HashSet<String> = HashSet::new();
    // Pools listed before the reaping: one that another pool's listing showed and this
    // pass removed is gone for the pools after it.
    let mut removed_names: HashSet<String> = HashSet::new();
    let mut acted: HashSet<String> = HashSet::new();
    for view in &snapshot.pools {
        let pool = &view.pool;
        let Ok(computes) = &view.compute else { continue };
        for ours in computes {
            let info = &ours.info;
            if removed_names.contains(&info.name) {
                continue;
            }
            reaped.compute_names.insert(info.name.clone());
            reaped.recorded.extend(info.runner_id);
            if !acted.insert(info.name.clone()) {
                continue;
            }
            let Some(job) = &ours.job else { continue };
            // A shared listing (Batch) shows other pools' runners too: each is reaped by the
            // rules (TTL, boot timeout, retention) of the pool it records, when that pool
            // would name it so.
            let pool = info
                .pool_name()
                .and_then(|n| fleet.pools().pool(n))
                .filter(|owner| owner.runner_kind(&info.name).is_some())
                .unwrap_or(pool);
            // Runners at a target whose registrations could not be listed are left alone.
            let Some(Ok(list)) = snapshot.registrations_at(job) else { continue };
            let registration = registration_of(info, list).cloned();
            let fate = match reap_one(fleet, pool, info, job, registration.as_ref(), snapshot.now, report).await {
                Ok(fate) => fate,
                Err(e) => {
                    report.errors += 1;
                    tracing::warn!(event = "reconcile_error", step = "reap", runner_name = %info.name, error = %e, "could not clean up a runner");
                    Fate::Standing
                }
            };
            if fate == Fate::Deleted {
                removed_names.insert(info.name.clone());
            }
            if fate == Fate::Standing && standing_names.insert(info.name.clone()) {
                reaped.standing.entry(pool.name.clone()).or_default().push(Standing {
                    info: info.clone(),
                    job: job.clone(),
                    registration,
                });
            }
        }
    }
    reaped
}

/// What the reaping did with a runner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    /// Deleted: the pools after this one no longer list it.
    Deleted,
    /// Finished, and kept a while for debugging (`finished_retention`).
    Retained,
    /// Still standing: left to the idle-level pass.
    Standing,
}

/// Removes a finished, over-TTL or failed-start runner. Idle ones are left to the
/// idle-level pass.
async fn reap_one(
    fleet: &impl Fleet,
    pool: &Arc<Pool>,
    info: &ComputeInfo,
    job: &JobContext,
    registration: Option<&RunnerInfo>,
    now: OffsetDateTime,
    report: &mut ReconcileReport,
) -> Result<Fate, String> {
    let age = age_of(info, now);
    let delete_registration = |r: &RunnerInfo| {
        let id = r.id;
        async move { fleet.delete_registration(job, id).await }
    };
    if info.state.is_finished() {
        // Some backends keep finished records for debugging a while (Batch tasks).
        if age < pool.compute.finished_retention() {
            return Ok(Fate::Retained);
        }
        if let Some(r) = registration.filter(|r| !r.busy) {
            delete_registration(r).await?;
        }
        fleet.delete_compute(pool, &info.name).await?;
        report.finished += 1;
        return Ok(Fate::Deleted);
    }
    if age > pool.runner_ttl {
        // The compute goes whatever it is doing (the TTL is a hard limit); a busy
        // registration is left for GitHub to end with its job.
        if let Some(r) = registration.filter(|r| !r.busy) {
            delete_registration(r).await?;
        }
        fleet.delete_compute(pool, &info.name).await?;
        report.over_ttl += 1;
        tracing::warn!(event = "runner_over_ttl", runner_name = %info.name, pool = %pool.name, placement = info.placement(), "runner exceeded runner_ttl; deleted");
        return Ok(Fate::Deleted);
    }
    match registration {
        Some(r) if r.busy || r.online => Ok(Fate::Standing),
        // Registered but never online, or no registration at all: a failed start
        // once past the boot timeout.
        _ if age > pool.runner_boot_timeout => {
            if let Some(r) = registration.filter(|r| !r.busy) {
                delete_registration(r).await?;
            }
            fleet.delete_compute(pool, &info.name).await?;
            report.failed_starts += 1;
            tracing::warn!(event = "runner_failed_start", runner_name = %info.name, pool = %pool.name, placement = info.placement(), "runner never came online; deleted");
            if let Some(job_id) = info.job_id {
                if matches!(fleet.job_state(job, job_id).await, Ok(JobState::Queued)) {
                    report.requeue.push(requeue_message(pool, info, job, job_id));
                }
            }
            Ok(Fate::Deleted)
        }
        _ => Ok(Fate::Standing),
    }
}

/// A new provision request for a job whose runner failed to start.
fn requeue_message(pool: &Pool, info: &ComputeInfo, job: &JobContext, job_id: u64) -> RunnerMessage {
    crate::provision::requeue_message(pool, info, job, job_id, "reconcile:failed_start")
}
