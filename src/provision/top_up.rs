//! Idle top-up at a job's arrival: when a queued job leaves a pool that keeps idle runners
//! below its idle target, the deficit is requested at once instead of at the next
//! reconcile pass (a rise in demand, a matrix that raises `"auto"`'s burst margin, a
//! schedule window that opened). Reconcile stays the repair pass.
//!
//! Cheap by construction: no GitHub call and no compute listing per job. The level of each
//! pool and registration target (runners idle or booting) is what the last reconcile pass
//! counted on this instance, plus the top-ups made since. A queued job does not change
//! it: the job takes a ready runner (or waits) and the runner made for it boots in its
//! place, so a burst of 50 jobs is covered by its 50 own runners and only a rise of the
//! target is a deficit. Without a recent count (a fresh instance, a failing reconcile)
//! nothing is topped up here. The deficit is reserved under a lock before any call, so
//! concurrent arrivals request it once; at most [`MAX_TOP_UP_PER_ARRIVAL`] per arrival and
//! [`MAX_TOP_UPS_IN_FLIGHT`] per pool and target at a time.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use super::Provisioner;
use crate::compute::ProvisionError;
use crate::config::Pool;
use crate::github::JobContext;
use crate::idle::Demand;
use crate::idle::demand;

/// At most this many idle runners are requested by one arrival (its provision call makes
/// them in turn; the other arrivals of a burst take the rest of the deficit).
pub const MAX_TOP_UP_PER_ARRIVAL: usize = 10;

/// At most this many idle runners of one pool and target are being requested at once.
pub const MAX_TOP_UPS_IN_FLIGHT: usize = 50;

/// A reconcile count older than this (two passes) is not trusted: no top-up until the next.
pub const LEVEL_FRESH: Duration = Duration::from_secs(600);

/// The demand a top-up reads is read from the log again after this long, or sooner once
/// the arrivals seen since could have moved it: [`REREAD_AFTER_ARRIVALS`], or a quarter of
/// the arrivals the last read counted. A burst of 50 reads the log about five times, and
/// steady traffic of 60 jobs a minute twice a minute, not once per job.
pub const DEMAND_CACHE: Duration = Duration::from_secs(30);

/// See [`DEMAND_CACHE`].
pub const REREAD_AFTER_ARRIVALS: usize = 10;

/// What an instance knows of its pools' idle levels.
#[derive(Default)]
pub(crate) struct Levels {
    /// By pool name and registration target (`api_prefix`).
    by_target: Mutex<BTreeMap<(String, String), Level>>,
    /// By pool and registration target: the demand last read.
    demand: Mutex<BTreeMap<(String, String), DemandRead>>,
}

/// Runners idle or booting for one pool and target, as last counted plus top-ups since.
#[derive(Debug, Clone, Copy)]
struct Level {
    level: usize,
    counted_at: Instant,
    /// Top-ups reserved and not finished yet.
    in_flight: usize,
}

/// A pool's demand as last read from its log, when, and the arrivals seen since.
#[derive(Debug, Clone, Copy)]
struct DemandRead {
    demand: Demand,
    at: Instant,
    arrivals_since: usize,
}

impl DemandRead {
    fn is_current(&self) -> bool {
        let counted = self.demand.arrivals_per_minute * crate::idle::RATE_WINDOW.as_secs_f64() / 60.0;
        let enough = REREAD_AFTER_ARRIVALS.max((counted / 4.0) as usize);
        self.at.elapsed() < DEMAND_CACHE && self.arrivals_since < enough
    }
}

fn key(pool: &Pool, target: &JobContext) -> (String, String) {
    (pool.name.clone(), target.target.api_prefix().to_ascii_lowercase())
}

impl Levels {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<(String, String), Level>> {
        self.by_target.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Provisioner {
    /// Reconcile counted `level` runners idle or booting for `pool` at `target` after its
    /// pass (trims and top-ups done). Top-ups still in flight are added to it.
    pub fn note_idle_level(&self, pool: &Pool, target: &JobContext, level: usize) {
        let mut levels = self.levels.lock();
        let entry =
            levels.entry(key(pool, target)).or_insert(Level { level: 0, counted_at: Instant::now(), in_flight: 0 });
        entry.level = level + entry.in_flight;
        entry.counted_at = Instant::now();
    }

    /// Idle runners this instance would count for `pool` at `target` now (tests, `status`).
    #[must_use]
    pub fn idle_level(&self, pool: &Pool, target: &JobContext) -> Option<usize> {
        self.levels.lock().get(&key(pool, target)).map(|l| l.level)
    }

    /// A job of `pool` registering at `job`'s target got its runner: tops the target up to
    /// the pool's idle target now, with the quota gate, JIT pacing and `max_runners` of
    /// [`Provisioner::provision_idle`]. Returns how many idle runners were made. Failures
    /// are logged, never returned: the job's own runner exists, and reconcile repairs.
    pub async fn top_up_idle(&self, pool: &Pool, job: &JobContext) -> usize {
        if !pool.enabled || !pool.idle.is_on() {
            return 0;
        }
        let prefix = job.target.api_prefix();
        // Only the pool's own targets get idle runners (never the target of any job).
        let Some(ctx) =
            self.idle_targets(pool).into_iter().find(|c| c.target.api_prefix().eq_ignore_ascii_case(&prefix))
        else {
            return 0;
        };
        let k = key(pool, &ctx);
        let fresh = |l: &Level| l.counted_at.elapsed() < LEVEL_FRESH;
        if !self.levels.lock().get(&k).is_some_and(fresh) {
            return 0;
        }
        let demand = if pool.idle.is_auto() { self.recent_demand(pool, &ctx).await } else { Demand::default() };
        let target = pool.idle.target_at(self.now(), &demand).count as usize;
        let (before, n) = {
            let mut levels = self.levels.lock();
            let Some(l) = levels.get_mut(&k).filter(|l| fresh(l)) else { return 0 };
            // A deficit within √target is left to the pass: reconcile keeps up to √target
            // above a target that follows demand, and topping up every small rise between
            // passes would ratchet the level up (0.90 → 0.99 idle runner-minutes per job at
            // 10 jobs a minute in the benchmark).
            let band = (target as f64).sqrt().floor() as usize;
            let deficit = target.saturating_sub(l.level);
            let n = if deficit <= band { 0 } else { deficit }
                .min(MAX_TOP_UP_PER_ARRIVAL)
                .min(MAX_TOP_UPS_IN_FLIGHT.saturating_sub(l.in_flight));
            let before = l.level;
            l.level += n;
            l.in_flight += n;
            (before, n)
        };
        if n == 0 {
            return 0;
        }
        let mut made = 0;
        let mut stopped = None;
        for _ in 0..n {
            match self.provision_idle(pool, &ctx).await {
                Ok(_) => made += 1,
                Err(e) => {
                    stopped = Some(e);
                    break;
                }
            }
        }
        {
            let mut levels = self.levels.lock();
            if let Some(l) = levels.get_mut(&k) {
                l.in_flight = l.in_flight.saturating_sub(n);
                l.level = l.level.saturating_sub(n - made);
            }
        }
        let deferred = matches!(stopped, Some(ProvisionError::Deferred { .. }));
        let error = stopped.as_ref().map(ToString::to_string).unwrap_or_default();
        tracing::info!(
            event = "idle_top_up",
            pool = %pool.name,
            target = %super::idle_target_of(&ctx),
            idle_target = target,
            level = before,
            requested = n,
            made,
            deferred,
            error = %error,
            "idle runners requested at a job's arrival"
        );
        made
    }

    /// The demand at one of the pool's registration targets as the log says now, this
    /// arrival included (see [`DEMAND_CACHE`]).
    async fn recent_demand(&self, pool: &Pool, ctx: &JobContext) -> Demand {
        let k = key(pool, ctx);
        {
            let mut cache = self.levels.demand.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(read) = cache.get_mut(&k) {
                read.arrivals_since += 1;
                if read.is_current() {
                    return read.demand;
                }
            }
        }
        let now = self.now();
        match demand::history(&*self.demand, &pool.name, now - demand::HISTORY, now).await {
            Ok(h) => {
                let d = h.demand_for(&super::idle_target_of(ctx));
                let mut cache = self.levels.demand.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                cache.insert(k, DemandRead { demand: d, at: Instant::now(), arrivals_since: 0 });
                d
            }
            Err(e) => {
                tracing::warn!(event = "demand_read_failed", pool = %pool.name, error = %e, "could not read the demand log; no top-up at this arrival");
                Demand::default()
            }
        }
    }
}
