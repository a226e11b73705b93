//! Orphan registrations: runners of ours registered at GitHub whose compute is gone.

use std::collections::{BTreeSet, HashSet};
use std::sync::Mutex;

use super::ReconcileReport;
use super::fleet::Fleet;
use super::snapshot::{Registrations, Snapshot};

/// What the orphan pass remembers from one pass to the next.
#[derive(Default)]
pub(super) struct OrphanMemory {
    /// Orphans seen last pass (`target/name`): removed when seen again.
    pub orphans_seen: Mutex<HashSet<String>>,
    /// JIT runner ids recorded on our compute in the last pass: an orphan registration is
    /// removed only if its id is one of ours (another deployment may use the same prefix).
    pub recorded_ids: Mutex<HashSet<u64>>,
}

/// Registrations of ours (job and idle runners) whose compute is gone: offline ones are removed once seen
/// orphaned in two passes (a fresh JIT registration may be seconds from its compute),
/// unless this instance holds it for a retry (HELD_REGISTRATION_TTL is shorter than
/// two passes, so another instance's reconcile cannot remove it under the hold either).
/// Only ids recorded on our compute (this pass or the last) count: an offline runner
/// merely named like ours may be another deployment's (say, a Batch runner waiting
/// for a node). Crash leftovers without a record are removed by GitHub itself, which
/// deletes ephemeral runners that never connect within a day.
pub(super) async fn reap_orphans(
    fleet: &impl Fleet,
    snapshot: &Snapshot,
    compute_names: &BTreeSet<String>,
    mut recorded_now: HashSet<u64>,
    memory: &OrphanMemory,
    report: &mut ReconcileReport,
) {
    let listed_everything = snapshot.listed_everything();
    let mut recorded: HashSet<u64> = memory.recorded_ids.lock().map(|s| s.clone()).unwrap_or_default();
    recorded.extend(recorded_now.iter().copied());
    if listed_everything {
        let mut seen_now = HashSet::new();
        let previous = memory.orphans_seen.lock().map(|s| s.clone()).unwrap_or_default();
        for Registrations { ctx: job, runners } in snapshot.registrations.values() {
            let Ok(list) = runners else { continue };
            for r in list {
                if !fleet.pools().is_runner_name(&r.name)
                    || !(recorded.contains(&r.id) || fleet.made_registration(r.id))
                    || compute_names.contains(&r.name)
                    || r.online
                    || r.busy
                    || fleet.holds_registration(&r.name)
                {
                    continue;
                }
                let key = format!("{}/{}", job.target.api_prefix(), r.name);
                if previous.contains(&key) {
                    match fleet.delete_registration(job, r.id).await {
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
        if let Ok(mut s) = memory.orphans_seen.lock() {
            *s = seen_now;
        }
    }
    if let Ok(mut s) = memory.recorded_ids.lock() {
        *s = if listed_everything { recorded_now } else { recorded };
    }
}
