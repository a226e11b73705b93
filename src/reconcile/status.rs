//! What `status` shows per pool, read from a pass's snapshot.

use std::collections::BTreeMap;

use serde::Serialize;

use super::PERIOD;
use super::fleet::Fleet;
use super::snapshot::{Census, Snapshot, census, registration_of};
use crate::idle::Target;
use crate::idle::demand::History;
use crate::provision::idle_target_of;

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

/// Each pool's status from the snapshot: the idle target and why, idle, busy, booting and
/// failed starts, the oldest runner, and the last hour's idle runner-minutes and time to
/// runner. A pool sharing a listing counts only the runners that name it (or none).
pub(super) fn pool_statuses(fleet: &impl Fleet, snapshot: &Snapshot) -> Vec<PoolStatus> {
    let now = snapshot.now;
    let mut out = Vec::new();
    for view in &snapshot.pools {
        let pool = &view.pool;
        let mut errors = Vec::new();
        let mut seen = Vec::new();
        match &view.compute {
            Ok(list) => {
                for ours in list {
                    let info = &ours.info;
                    if info.pool_name().is_some_and(|n| n != pool.name) {
                        continue;
                    }
                    let Some(job) = &ours.job else { continue };
                    let registration = match snapshot.registrations_at(job) {
                        Some(Ok(l)) => registration_of(info, l),
                        Some(Err(e)) => {
                            errors.push(format!("runners at {}: {e}", job.target.api_prefix()));
                            None
                        }
                        None => None,
                    };
                    seen.push((info, registration));
                }
            }
            Err(e) => errors.push(format!("compute: {e}")),
        }
        let counts = census(pool, seen.iter().map(|(i, r)| (*i, *r)), now);
        let mut placements: BTreeMap<String, usize> = BTreeMap::new();
        for (info, _) in seen.iter().filter(|(i, _)| !i.state.is_finished()) {
            let label = info.placement();
            if !label.is_empty() {
                *placements.entry(label.to_owned()).or_default() += 1;
            }
        }
        let floor = History::default();
        let history = view.demand.as_ref().unwrap_or_else(|e| {
            errors.push(format!("demand log: {e}"));
            &floor
        });
        let targets: Vec<String> =
            if pool.idle.is_on() { fleet.idle_targets(pool).iter().map(idle_target_of).collect() } else { Vec::new() };
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
