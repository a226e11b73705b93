//! Reconcile passes: failed starts, idle, finished and over-TTL runners, orphan
//! registrations, redelivery.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::*;
use runner_dispatch::config::PoolsConfig;
use runner_dispatch::github::{Delivery, JobState};
use runner_dispatch::provision::{Backends, ComputeInfo, ComputeState, Provisioner};
use runner_dispatch::reconcile::Reconciler;

fn compute(name: &str, job_id: u64, state: ComputeState, minutes_old: i64) -> ComputeInfo {
    ComputeInfo {
        name: name.into(),
        state,
        created_at: Some(time::OffsetDateTime::now_utc() - time::Duration::minutes(minutes_old)),
        job_id: Some(job_id),
        repository: Some("octo-org/api".into()),
        // The JIT registration made for it: tests register runner `100 + job id` for it.
        runner_id: Some(100 + job_id),
        tags: BTreeMap::from([("runner-dispatch-job-created-at".to_owned(), "2026-11-23T00:00:00Z".to_owned())]),
    }
}

fn setup(redeliver: bool) -> (Reconciler, Arc<FakeGitHub>, Arc<ScriptedBackend>) {
    let pools = Arc::new(PoolsConfig::parse(POOLS).expect("pools"));
    let gh = Arc::new(FakeGitHub::default());
    let backend = ScriptedBackend::with(vec![]);
    let p = Arc::new(Provisioner::new(pools, gh.clone(), Backends::single(backend.clone())));
    (Reconciler::new(p, redeliver), gh, backend)
}

fn put(backend: &ScriptedBackend, c: ComputeInfo) {
    backend.existing.lock().expect("lock").insert(c.name.clone(), c);
}

fn exists(backend: &ScriptedBackend, name: &str) -> bool {
    backend.existing.lock().expect("lock").contains_key(name)
}

#[tokio::test]
async fn each_kind_of_leftover_is_reaped_and_healthy_runners_are_left_alone() {
    let (r, gh, backend) = setup(false);
    put(&backend, compute("ghr-1", 1, ComputeState::Succeeded, 30)); // finished
    put(&backend, compute("ghr-2", 2, ComputeState::Pending, 20)); // never came online
    gh.add_runner(102, "ghr-2", false, false);
    put(&backend, compute("ghr-3", 3, ComputeState::Running, 12)); // online, idle too long
    gh.add_runner(103, "ghr-3", true, false);
    put(&backend, compute("ghr-4", 4, ComputeState::Running, 400)); // over the 6 h TTL, busy
    gh.add_runner(104, "ghr-4", true, true);
    put(&backend, compute("ghr-5", 5, ComputeState::Running, 30)); // busy: a job is running
    gh.add_runner(105, "ghr-5", true, true);
    put(&backend, compute("ghr-6", 6, ComputeState::Pending, 3)); // just started
    gh.add_runner(106, "ghr-6", false, false);
    put(&backend, compute("ghr-7", 7, ComputeState::Running, 12)); // idle, but takes a job as we deregister
    gh.add_runner(107, "ghr-7", true, false);
    gh.busy_on_delete.lock().expect("lock").push(107);
    gh.jobs.lock().expect("lock").insert(2, Ok(JobState::Queued));

    let report = r.run().await;
    assert_eq!((report.finished, report.failed_starts, report.idle, report.over_ttl), (1, 1, 1, 1), "{report:?}");
    for gone in ["ghr-1", "ghr-2", "ghr-3", "ghr-4"] {
        assert!(!exists(&backend, gone), "{gone} should be deleted");
    }
    for kept in ["ghr-5", "ghr-6", "ghr-7"] {
        assert!(exists(&backend, kept), "{kept} should stay");
    }
    // The failed start's job still waits: a new request is made, marked as such.
    assert_eq!(report.requeue.len(), 1);
    assert_eq!(report.requeue[0].job_id, 2);
    assert_eq!(report.requeue[0].runner_name, "ghr-2");
    assert_eq!(report.requeue[0].origin.as_deref(), Some("reconcile:failed_start"));
    // Idle: the registration goes before the compute.
    let calls = gh.calls();
    assert!(calls.contains(&"delete-runner 103".to_owned()));
    assert_eq!(gh.calls().iter().filter(|c| *c == "list-runners").count(), 1, "runners listed once per target");
}

#[tokio::test]
async fn an_orphan_registration_is_removed_only_when_ours_and_seen_twice() {
    let (r, gh, backend) = setup(false);
    // Reconcile lists runners per target of existing compute; give it one to see the org.
    put(&backend, compute("ghr-9", 9, ComputeState::Running, 1));
    gh.add_runner(109, "ghr-9", true, true);
    // Ours: its compute (recording runner id 200) existed in the first pass, then went.
    put(&backend, compute("ghr-100", 100, ComputeState::Running, 1));
    gh.add_runner(200, "ghr-100", false, false);
    gh.add_runner(201, "ghr-201", false, false); // named like ours, never our compute
    gh.add_runner(300, "someone-else", false, false); // not ours
    assert_eq!(r.run().await.orphan_registrations, 0);
    backend.existing.lock().expect("lock").remove("ghr-100");
    assert_eq!(r.run().await.orphan_registrations, 0, "seen orphaned once");
    assert_eq!(r.run().await.orphan_registrations, 1, "seen orphaned twice");
    assert_eq!(r.run().await.orphan_registrations, 0);
    let calls = gh.calls();
    assert!(calls.contains(&"delete-runner 200".to_owned()));
    assert!(!calls.contains(&"delete-runner 201".to_owned()), "another deployment's ghr-201 was removed");
    assert!(!calls.contains(&"delete-runner 300".to_owned()));
}

#[tokio::test]
async fn compute_not_named_and_tagged_as_ours_is_left_alone() {
    let (r, gh, backend) = setup(false);
    // Tagged with our pool by someone who can tag in the resource group, finished long ago.
    let mut foreign = compute("database", 1, ComputeState::Succeeded, 600);
    foreign.job_id = None;
    put(&backend, foreign);
    // Our name pattern, but the job-id tag says another job.
    let mut mismatched = compute("ghr-55", 56, ComputeState::Succeeded, 600);
    mismatched.name = "ghr-55".into();
    put(&backend, mismatched);
    // A sign in the name is not a job id.
    put(&backend, compute("ghr-+12", 12, ComputeState::Succeeded, 600));
    gh.add_runner(112, "ghr-+12", false, false);
    let report = r.run().await;
    assert_eq!((report.finished, report.over_ttl, report.failed_starts), (0, 0, 0), "{report:?}");
    for kept in ["database", "ghr-55", "ghr-+12"] {
        assert!(exists(&backend, kept), "{kept} was deleted");
    }
    assert!(gh.calls().iter().all(|c| !c.starts_with("delete-runner")), "{:?}", gh.calls());
}

#[tokio::test]
async fn a_busy_or_foreign_registration_is_never_removed() {
    let (r, gh, backend) = setup(false);
    // Over the TTL and busy: the compute goes (hard limit), the busy registration stays.
    put(&backend, compute("ghr-4", 4, ComputeState::Running, 400));
    gh.add_runner(104, "ghr-4", true, true);
    // Idle past the timeout, but the online runner of that name is not the one we made
    // (id 999, say from another scope): it is not deregistered.
    put(&backend, compute("ghr-3", 3, ComputeState::Running, 12));
    gh.add_runner(999, "ghr-3", true, false);
    let report = r.run().await;
    assert_eq!(report.over_ttl, 1, "{report:?}");
    assert!(!exists(&backend, "ghr-4"));
    let calls = gh.calls();
    assert!(!calls.contains(&"delete-runner 104".to_owned()), "a busy registration was removed: {calls:?}");
    assert!(!calls.contains(&"delete-runner 999".to_owned()), "a foreign registration was removed: {calls:?}");
}

#[tokio::test]
async fn missed_deliveries_are_redelivered_when_a_hook_is_configured() {
    let (r, gh, _) = setup(true);
    let d = |id, guid: &str, code, redelivery| Delivery {
        id,
        guid: guid.into(),
        delivered_at: Some(time::OffsetDateTime::now_utc()),
        redelivery,
        status: "x".into(),
        status_code: code,
        event: "workflow_job".into(),
        action: Some("queued".into()),
    };
    *gh.deliveries.lock().expect("lock") = vec![d(1, "a", 504, false), d(2, "b", 202, false), d(3, "c", 401, false)];
    let report = r.run().await;
    assert_eq!(report.redelivered, 1);
    assert!(gh.calls().contains(&"redeliver 1".to_owned()));
    let (r2, gh2, _) = setup(false);
    *gh2.deliveries.lock().expect("lock") = vec![d(1, "a", 504, false)];
    assert_eq!(r2.run().await.redelivered, 0, "no hook configured: no redelivery");
}
