//! What a reconcile pass and `status` read, gathered once: each pool's compute (ours
//! only), the registrations at each registration target (one list per target), each
//! pool's demand history, and what could not be read.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use time::OffsetDateTime;

use super::fleet::Fleet;
use crate::compute::ComputeInfo;
use crate::config::{Pool, RunnerKind};
use crate::github::{JobContext, RunnerInfo};
use crate::idle::demand::History;

/// One pass's view of the deployment. Read-only once gathered.
pub(crate) struct Snapshot {
    /// The time of day the pass acts at.
    pub now: OffsetDateTime,
    /// Every pool, in configuration order.
    pub pools: Vec<PoolView>,
    /// Registrations by registration target (`api_prefix`), each listed once.
    pub registrations: BTreeMap<String, Registrations>,
}

/// One pool as listed.
pub(crate) struct PoolView {
    pub pool: Arc<Pool>,
    /// The compute listed for the pool that is ours (see [`is_ours`]), or why none could be.
    pub compute: Result<Vec<Ours>, String>,
    /// The pool's demand log over the last [`crate::idle::demand::HISTORY`].
    pub demand: Result<History, String>,
}

/// A compute of ours and the registration context it belongs to (`None`: one cannot be
/// told from its description).
pub(crate) struct Ours {
    pub info: ComputeInfo,
    pub job: Option<JobContext>,
}

/// The runners registered at one registration target.
pub(crate) struct Registrations {
    pub ctx: JobContext,
    pub runners: Result<Vec<RunnerInfo>, String>,
}

impl Snapshot {
    /// Lists each pool's compute and the registrations its runners and idle targets need,
    /// then reads each pool's demand log.
    pub async fn gather(fleet: &impl Fleet) -> Self {
        let now = fleet.now();
        let mut pools = Vec::new();
        let mut registrations = BTreeMap::new();
        for pool in &fleet.pools().pools {
            let compute = match fleet.list_compute(pool).await {
                Ok(list) => {
                    let mut ours = Vec::new();
                    for info in list {
                        if !is_ours(pool, &info) {
                            tracing::debug!(runner_name = %crate::telemetry::loggable(&info.name), pool = %pool.name, "listed compute is not named and tagged as ours; left alone");
                            continue;
                        }
                        let job = context_of(fleet, &info);
                        if let Some(ctx) = &job {
                            list_once(fleet, &mut registrations, ctx).await;
                        }
                        ours.push(Ours { info, job });
                    }
                    Ok(ours)
                }
                Err(e) => Err(e),
            };
            pools.push(PoolView { pool: pool.clone(), compute, demand: Ok(History::default()) });
        }
        // Idle runners' registrations are looked for where they register, even where no
        // compute stands any more (the orphan pass needs the list).
        for pool in fleet.pools().pools.iter().filter(|pool| pool.idle.is_on()) {
            for ctx in fleet.idle_targets(pool) {
                list_once(fleet, &mut registrations, &ctx).await;
            }
        }
        for view in &mut pools {
            let since = now - crate::idle::demand::HISTORY;
            view.demand = fleet.demand_history(&view.pool, since, now).await;
        }
        Self { now, pools, registrations }
    }

    /// Whether every pool's compute could be listed (else no registration is an orphan
    /// for sure).
    pub fn listed_everything(&self) -> bool {
        self.pools.iter().all(|p| p.compute.is_ok())
    }

    /// The runners at `ctx`'s registration target: `None` when they were not listed.
    pub fn registrations_at(&self, ctx: &JobContext) -> Option<&Result<Vec<RunnerInfo>, String>> {
        self.registrations.get(&ctx.target.api_prefix()).map(|r| &r.runners)
    }
}

/// Lists the runners at `ctx`'s registration target unless they were listed already.
async fn list_once(fleet: &impl Fleet, registrations: &mut BTreeMap<String, Registrations>, ctx: &JobContext) {
    if let Entry::Vacant(slot) = registrations.entry(ctx.target.api_prefix()) {
        let runners = fleet.list_registrations(ctx).await;
        slot.insert(Registrations { ctx: ctx.clone(), runners });
    }
}

/// The registration context a compute's runner registered at.
fn context_of(fleet: &impl Fleet, info: &ComputeInfo) -> Option<JobContext> {
    if let Some(target) = info.idle_target() {
        return Some(fleet.idle_context(target));
    }
    let repository = info.repository.as_deref()?;
    let (owner, _) = repository.split_once('/')?;
    Some(fleet.job_context(repository, owner))
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

/// The registration named like `info` in `list`, if it is the runner made for this compute:
/// its id must be the one recorded on the compute (when one was: JIT mode). Runner names are
/// unique only per scope, so a same-named runner elsewhere is not ours.
pub(crate) fn registration_of<'a>(info: &ComputeInfo, list: &'a [RunnerInfo]) -> Option<&'a RunnerInfo> {
    list.iter().find(|r| r.name == info.name && info.runner_id.is_none_or(|id| id == r.id))
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

pub(crate) fn age_of(info: &ComputeInfo, now: OffsetDateTime) -> Duration {
    info.created_at.map_or(Duration::ZERO, |c| (now - c).try_into().unwrap_or(Duration::ZERO))
}

/// Counts runners by what they do (see [`Census`]).
pub(crate) fn census<'a>(
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
