//! The idle level: holds each registration target of a pool that keeps idle runners at
//! its target (topping up, retiring surplus and old runners), and trims job runners left
//! idle. A runner is retired only when seen idle in two consecutive passes.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use time::OffsetDateTime;

use super::fleet::Fleet;
use super::reap::Standing;
use super::snapshot::{PoolView, Snapshot, age_of, census};
use super::{MAX_TOP_UP_PER_PASS, PERIOD, ReconcileReport};
use crate::compute::ComputeInfo;
use crate::config::{Pool, RunnerKind};
use crate::github::{JobContext, RunnerDeletion, RunnerInfo};
use crate::idle::demand::{History, Record};
use crate::idle::{IdleBase, Target};
use crate::provision::idle_target_of;

/// Runners seen online and idle: in the last pass (`before`) and in this one (`now`).
#[derive(Default)]
pub(super) struct SeenIdle {
    pub before: HashSet<u64>,
    pub now: HashSet<u64>,
}

/// A registration target as a key (GitHub logins are case-insensitive).
fn target_key(ctx: &JobContext) -> String {
    ctx.target.api_prefix().to_ascii_lowercase()
}

/// Holds every pool's level from the runners the reaping left standing.
pub(super) async fn keep_levels(
    fleet: &impl Fleet,
    snapshot: &Snapshot,
    mut standing: BTreeMap<String, Vec<Standing>>,
    idle: &mut SeenIdle,
    report: &mut ReconcileReport,
) {
    for view in &snapshot.pools {
        let runners_of_pool = standing.remove(&view.pool.name).unwrap_or_default();
        keep_level(fleet, view, runners_of_pool, snapshot.now, idle, report).await;
    }
}

/// Holds each configured (or default) registration target of the pool at its idle
/// target, each from its own demand (see [`hold_target`]). Runners standing
/// at any other target (a job's, at repo scope say) are trimmed there as job runners
/// and never topped up: idle runners exist exactly where `idle_targets` says.
async fn keep_level(
    fleet: &impl Fleet,
    view: &PoolView,
    standing: Vec<Standing>,
    now: OffsetDateTime,
    idle: &mut SeenIdle,
    report: &mut ReconcileReport,
) {
    let pool = &view.pool;
    let keeps = pool.enabled && pool.idle.is_on();
    let floor = History::default();
    let history = match &view.demand {
        Ok(history) if keeps => history,
        Err(e) if keeps => {
            tracing::warn!(event = "reconcile_error", step = "read_demand", pool = %pool.name, error = %e, "could not read the demand log; the idle target falls to its floor");
            &floor
        }
        _ => &floor,
    };
    let mut by_target: BTreeMap<String, (JobContext, Option<Target>, Vec<Standing>)> = BTreeMap::new();
    if keeps {
        for ctx in fleet.idle_targets(pool) {
            let target = pool.idle.target_at(now, &history.demand_for(&idle_target_of(&ctx)));
            by_target.entry(target_key(&ctx)).or_insert((ctx, Some(target), Vec::new()));
        }
    }
    for s in standing {
        by_target.entry(target_key(&s.job)).or_insert_with(|| (s.job.clone(), None, Vec::new())).2.push(s);
    }
    for (ctx, target, list) in by_target.into_values() {
        hold_target(fleet, pool, &ctx, target.as_ref(), list, now, idle, report).await;
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
    fleet: &impl Fleet,
    pool: &Arc<Pool>,
    ctx: &JobContext,
    target: Option<&Target>,
    mut list: Vec<Standing>,
    now: OffsetDateTime,
    idle: &mut SeenIdle,
    report: &mut ReconcileReport,
) {
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
            if let Err(e) = fleet.provision_idle(pool, ctx).await {
                report.errors += 1;
                tracing::warn!(event = "reconcile_error", step = "replace_idle", pool = %pool.name, runner_name = %s.info.name, error = %e, "could not make the replacement of an old idle runner; it stays");
                kept += 1;
                continue;
            }
            report.idle_created += 1;
            kept += 1;
        }
        match retire(fleet, pool, &s.info, ctx, r).await {
            Ok(true) => {
                retired += 1;
                report.idle += 1;
                tracing::info!(event = "runner_idle_reaped", runner_name = %s.info.name, pool = %pool.name, placement = s.info.placement(), reason = why, "idle runner deleted");
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
        match fleet.provision_idle(pool, ctx).await {
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
    fleet.note_idle_level(pool, ctx, idle_now - retired + booting + made);
    tracing::info!(event = "idle_target", pool = %pool.name, registration_target = %name, target = t.count, idle = idle_after, why = %serde_json::to_string(&t.why).unwrap_or_default(), "idle level held");
    let sample = Record::Idle { at: now.unix_timestamp(), idle: idle_after };
    fleet.record_demand(pool, &name, &[sample]).await;
}

/// Deregisters an idle runner, then deletes its compute. `Ok(false)`: it just took a job.
async fn retire(
    fleet: &impl Fleet,
    pool: &Pool,
    info: &ComputeInfo,
    job: &JobContext,
    r: &RunnerInfo,
) -> Result<bool, String> {
    if fleet.delete_registration(job, r.id).await? == RunnerDeletion::Busy {
        return Ok(false);
    }
    fleet.delete_compute(pool, &info.name).await?;
    Ok(true)
}
