//! Idle top-up at a job's arrival (issue 22): a pool below its idle target requests the
//! deficit when a job arrives, once however many jobs arrive together, within the quota
//! gate and `max_runners`, and never in a pool that keeps no idle runners. Pools from
//! tests/fixtures/pools/idle.toml (pool "ready"), with the level changed per test.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use runner_dispatch::backends::Backends;
use runner_dispatch::compute::{CreateOutcome, ProvisionError};
use runner_dispatch::config::PoolsConfig;
use runner_dispatch::idle::demand::MemoryDemandLog;
use runner_dispatch::provision::{ProvisionOutcome, Provisioner};
use runner_dispatch::reconcile::Reconciler;

const IDLE_POOLS: &str = include_str!("fixtures/pools/idle.toml");

fn setup(
    level: &str,
    script: Vec<Result<CreateOutcome, ProvisionError>>,
) -> (Arc<Provisioner>, Arc<FakeGitHub>, Arc<ScriptedBackend>) {
    let pools = Arc::new(PoolsConfig::parse(&IDLE_POOLS.replace("idle_runners = 2", level)).expect("pools"));
    let gh = Arc::new(FakeGitHub::default());
    let backend = ScriptedBackend::with(script);
    let p = Provisioner::new(pools, gh.clone(), Backends::single(backend.clone()))
        .with_demand_log(Arc::new(MemoryDemandLog::default()));
    (Arc::new(p), gh, backend)
}

/// Idle runners and job runners that exist (were created and not refused).
fn created(backend: &ScriptedBackend) -> (usize, usize) {
    let existing = backend.existing.lock().expect("lock");
    let idle = existing.keys().filter(|n| n.starts_with("ghr-i-")).count();
    (idle, existing.len() - idle)
}

fn job(id: u64) -> runner_dispatch::message::RunnerMessage {
    provision_message(id, "ready", &["self-hosted", "linux", "ready"])
}

/// Says that reconcile counted `level` runners idle or booting at the pool's one target.
fn counted(p: &Provisioner, level: usize) {
    let pool = p.pools.pool("ready").expect("pool").clone();
    let target = p.idle_targets(&pool).remove(0);
    p.note_idle_level(&pool, &target, level);
}

fn level(p: &Provisioner) -> Option<usize> {
    let pool = p.pools.pool("ready").expect("pool").clone();
    p.idle_level(&pool, &p.idle_targets(&pool)[0])
}

/// Provisions jobs `ids` concurrently, as the queue's workers would for a matrix.
async fn burst(
    p: &Arc<Provisioner>,
    ids: std::ops::RangeInclusive<u64>,
) -> Vec<Result<ProvisionOutcome, ProvisionError>> {
    let tasks: Vec<_> = ids
        .map(|id| {
            let p = p.clone();
            tokio::spawn(async move { p.provision(&job(id), 1).await })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.expect("task"));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_of_fifty_jobs_requests_the_deficit_once_and_its_own_runners_cover_the_rest() {
    // Reconcile reaches 5 of the 20 before the quota says wait (its pass stops there).
    let mut script: Vec<_> = (0..5).map(|_| Ok(CreateOutcome::Created)).collect();
    script.push(Err(ProvisionError::Deferred { reason: "quota".into(), retry_after: Duration::from_secs(1) }));
    let (p, gh, backend) = setup("idle_runners = 20", script);
    let report = Reconciler::new(p.clone(), false).run().await;
    assert_eq!(report.idle_created, 5, "{report:?}");
    assert_eq!(level(&p), Some(5), "the pass counts what it left: 5 booting");

    let outcomes = burst(&p, 1..=50).await;
    assert!(outcomes.iter().all(|o| matches!(o, Ok(ProvisionOutcome::Created { .. }))), "{outcomes:?}");
    // 50 job runners, and the 15 missing idle ones, requested once between all 50 arrivals:
    // the burst's own runners replace the ready ones its jobs take, so they are no deficit.
    assert_eq!(created(&backend), (5 + 15, 50));
    assert_eq!(backend.create_count(), 5 + 1 + 15 + 50, "the pass's refused create, then one each");
    assert_eq!(level(&p), Some(20));
    let jit_idle = gh.calls().iter().filter(|c| c.starts_with("jit ghr-i-")).count();
    assert_eq!(jit_idle, 21, "one JIT configuration per idle runner (and the refused one), none spent twice");

    // At the target: the next job gets its own runner and nothing more.
    assert!(matches!(p.provision(&job(51), 1).await, Ok(ProvisionOutcome::Created { .. })));
    assert_eq!(created(&backend), (20, 51));
    assert_eq!(backend.create_count(), 5 + 1 + 15 + 51);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_top_up_in_a_pool_without_idle_runners_nor_before_a_reconcile_count() {
    let (p, _, backend) = setup("idle_runners = 0", vec![]);
    counted(&p, 0);
    burst(&p, 1..=10).await;
    assert_eq!(created(&backend), (0, 10), "a pool that keeps no idle runners gets only job runners");

    // A fresh instance has no count of the pool's level: it leaves the top-up to reconcile
    // rather than guess (a guess of 0 would make a whole level per instance).
    let (p, _, backend) = setup("idle_runners = 20", vec![]);
    burst(&p, 1..=10).await;
    assert_eq!(created(&backend), (0, 10));
    assert_eq!(level(&p), None);
}

#[tokio::test]
async fn a_small_deficit_is_left_to_the_pass() {
    // Target 20, counted 17: within √20 of the target, reconcile's band; not worth a call now.
    let (p, _, backend) = setup("idle_runners = 20", vec![]);
    counted(&p, 17);
    p.provision(&job(1), 1).await.expect("provisioned");
    assert_eq!(created(&backend), (0, 1));
    counted(&p, 15);
    p.provision(&job(2), 1).await.expect("provisioned");
    assert_eq!(created(&backend), (5, 2));
}

#[tokio::test]
async fn top_ups_stop_at_max_runners_and_give_back_what_they_did_not_make() {
    let pools = "idle_runners = 20\nmax_runners = 8";
    let (p, gh, backend) = setup(pools, vec![]);
    counted(&p, 0);
    p.provision(&job(1), 1).await.expect("provisioned");
    // The job's runner, then idle runners up to the cap of 8 compute in the pool (the
    // 8th top-up stops at the cap before any GitHub call).
    assert_eq!(created(&backend), (7, 1));
    assert_eq!(level(&p), Some(7), "what was not made is not counted");
    assert_eq!(gh.calls().iter().filter(|c| c.starts_with("jit ")).count(), 8);
    // At the cap a job's own runner waits (a deferral), and so does every top-up.
    let deferred = p.provision(&job(2), 1).await;
    assert!(matches!(deferred, Err(ProvisionError::Deferred { .. })), "{deferred:?}");
    assert_eq!(created(&backend), (7, 1));
    assert_eq!(gh.calls().iter().filter(|c| c.starts_with("jit ")).count(), 8);
}

#[tokio::test]
async fn a_quota_refusal_stops_the_top_up_and_closes_the_gate_for_the_next_arrival() {
    let quota = ProvisionError::Retryable {
        reason: "ContainerGroupQuotaReached".into(),
        retry_after: Some(Duration::from_secs(300)),
    };
    // The job's own runner is created; the first idle runner is refused for quota.
    let (p, gh, backend) = setup("idle_runners = 20", vec![Ok(CreateOutcome::Created), Err(quota)]);
    counted(&p, 0);
    assert!(matches!(p.provision(&job(1), 1).await, Ok(ProvisionOutcome::Created { .. })));
    assert_eq!(backend.create_count(), 2, "one refused idle runner, no second try in this arrival");
    assert_eq!(level(&p), Some(0));
    // Its registration is removed (an idle top-up never holds one for later).
    let refused = gh.calls().iter().filter(|c| c.starts_with("delete-runner")).count();
    assert_eq!(refused, 1, "{:?}", gh.calls());
    // The next arrival waits for the quota before any call: no JIT, no create.
    let jit_before = gh.calls().iter().filter(|c| c.starts_with("jit ")).count();
    let next = p.provision(&job(2), 1).await;
    assert!(matches!(next, Err(ProvisionError::Deferred { .. })), "{next:?}");
    assert_eq!(gh.calls().iter().filter(|c| c.starts_with("jit ")).count(), jit_before);
    assert_eq!(backend.create_count(), 2);
}
