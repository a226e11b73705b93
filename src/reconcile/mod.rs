//! The 5-minute repair pass: redeliver missed webhooks; reap failed starts, idle,
//! finished and over-TTL runners and orphan registrations; hold idle levels. One
//! snapshot (`snapshot.rs`) is gathered per pass and separate passes act on it, in this order:
//! redelivery, reaping, idle level, orphans; `status` renders the same snapshot. The passes
//! reach the provisioner only through `fleet::Fleet`. Stateless but for the runners seen
//! idle and the orphans seen last time (each is acted on only when seen twice).

mod fleet;
mod idle_level;
mod orphans;
mod reap;
mod redeliver;
mod snapshot;
mod status;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::message::RunnerMessage;
use crate::provision::Provisioner;

pub use redeliver::deliveries_to_redeliver;
pub use snapshot::Census;
pub use status::PoolStatus;

/// How often the timer fires.
pub const PERIOD: Duration = crate::idle::PASS_PERIOD;
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

/// Runs reconcile passes.
pub struct Reconciler {
    provisioner: Arc<Provisioner>,
    redeliver: bool,
    orphans: orphans::OrphanMemory,
    /// Registration ids of our runners seen online and idle in the last pass: only those
    /// may be retired in this one.
    idle_seen: Mutex<HashSet<u64>>,
}

impl Reconciler {
    /// `redeliver`: whether a hook is configured (`GITHUB_HOOK_SCOPE`).
    #[must_use]
    pub fn new(provisioner: Arc<Provisioner>, redeliver: bool) -> Self {
        Self {
            provisioner,
            redeliver,
            orphans: orphans::OrphanMemory::default(),
            idle_seen: Mutex::new(HashSet::new()),
        }
    }

    /// One pass. Never fails: errors are counted and logged, and the pass goes on.
    pub async fn run(&self) -> ReconcileReport {
        let started = Instant::now();
        let fleet = &*self.provisioner;
        let mut report = ReconcileReport::default();
        if self.redeliver {
            redeliver::redeliver_missed(fleet, &mut report).await;
        }
        let snapshot = snapshot::Snapshot::gather(fleet).await;
        note_listing_errors(&snapshot, &mut report);
        let reaped = reap::reap(fleet, &snapshot, &mut report).await;
        let before = self.idle_seen.lock().map(|s| s.clone()).unwrap_or_default();
        let mut idle = idle_level::SeenIdle { before, now: HashSet::new() };
        idle_level::keep_levels(fleet, &snapshot, reaped.standing, &mut idle, &mut report).await;
        if let Ok(mut s) = self.idle_seen.lock() {
            *s = idle.now;
        }
        orphans::reap_orphans(fleet, &snapshot, &reaped.compute_names, reaped.recorded, &self.orphans, &mut report)
            .await;
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

    /// What each pool has now, read-only: the idle target and why, idle, busy, booting and
    /// failed starts, the oldest runner, and the last hour's idle runner-minutes and time
    /// to runner. Gathers the snapshot a pass gathers; changes nothing.
    pub async fn status(&self) -> Vec<PoolStatus> {
        let fleet = &*self.provisioner;
        let snapshot = snapshot::Snapshot::gather(fleet).await;
        status::pool_statuses(fleet, &snapshot)
    }
}

/// Counts and logs what the snapshot could not list: a pool's compute, or the runners at
/// a registration target (the runners there are left alone this pass).
fn note_listing_errors(snapshot: &snapshot::Snapshot, report: &mut ReconcileReport) {
    for view in &snapshot.pools {
        if let Err(e) = &view.compute {
            report.errors += 1;
            tracing::warn!(event = "reconcile_error", step = "list_compute", pool = %view.pool.name, error = %e, "could not list compute");
        }
    }
    for (target, listed) in &snapshot.registrations {
        if let Err(e) = &listed.runners {
            report.errors += 1;
            tracing::warn!(event = "reconcile_error", step = "list_runners", target = %target, error = %e, "could not list runners");
        }
    }
}
