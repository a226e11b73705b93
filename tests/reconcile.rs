//! Reconcile passes: failed starts, idle, finished and over-TTL runners, orphan
//! registrations, redelivery.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::*;
use runner_dispatch::backends::Backends;
use runner_dispatch::compute::{ComputeInfo, ComputeState};
use runner_dispatch::config::PoolsConfig;
use runner_dispatch::github::{Delivery, JobState};
use runner_dispatch::idle::demand::{MemoryDemandLog, Record, record, record_for};
use runner_dispatch::message::{MessageKind, RunnerMessage};
use runner_dispatch::provision::{ProvisionOutcome, Provisioner};
use runner_dispatch::reconcile::Reconciler;

fn compute(name: &str, job_id: u64, state: ComputeState, minutes_old: i64) -> ComputeInfo {
    ComputeInfo {
        created_at: Some(time::OffsetDateTime::now_utc() - time::Duration::minutes(minutes_old)),
        job_id: Some(job_id),
        repository: Some("octo-org/api".into()),
        job_created_at: Some("2026-11-23T00:00:00Z".into()),
        // The JIT registration made for it: tests register runner `100 + job id` for it.
        runner_id: Some(100 + job_id),
        ..ComputeInfo::new(name, state)
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
    assert_eq!((report.finished, report.failed_starts, report.idle, report.over_ttl), (1, 1, 0, 1), "{report:?}");
    // An idle runner goes once seen idle in two passes.
    let second = r.run().await;
    assert_eq!((second.idle, second.failed_starts, second.requeue.len()), (1, 0, 0), "{second:?}");
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
    assert_eq!(
        gh.calls().iter().filter(|c| *c == "list-runners").count(),
        2,
        "runners listed once per target and pass"
    );
}

/// Two pools on one Batch pool list the same tasks; each is reaped by its own prefix and
/// rules (the pass once acted only on the first pool's listing, so the second pool's
/// finished and over-TTL tasks stayed forever).
#[tokio::test]
async fn pools_sharing_one_batch_pool_each_reap_their_own_runners() {
    let text = r#"
[github]
allowed_owners = ["octo-org"]
[[pools]]
name = "win-a"
backend = "batch"
os = "windows"
labels = ["self-hosted", "windows", "a"]
image = "img"
batch_pool_id = "shared"
name_prefix = "wa"
[[pools]]
name = "win-b"
backend = "batch"
os = "windows"
labels = ["self-hosted", "windows", "b"]
image = "img"
batch_pool_id = "shared"
name_prefix = "wb"
runner_ttl = "1h"
"#;
    let pools = Arc::new(PoolsConfig::parse(text).expect("pools"));
    let gh = Arc::new(FakeGitHub::default());
    let backend = ScriptedBackend::with(vec![]);
    let r = Reconciler::new(Arc::new(Provisioner::new(pools, gh.clone(), Backends::single(backend.clone()))), false);
    // Finished past Batch's two hours of retention.
    let mut a = compute("wa-1", 1, ComputeState::Succeeded, 150);
    a.pool = Some("win-a".into());
    let mut b = compute("wb-2", 2, ComputeState::Succeeded, 150);
    b.pool = Some("win-b".into());
    // Over win-b's own TTL (1 h), though under win-a's (6 h): win-b's rules apply.
    let mut old = compute("wb-3", 3, ComputeState::Running, 90);
    old.pool = Some("win-b".into());
    gh.add_runner(103, "wb-3", true, true);
    for c in [a, b, old] {
        put(&backend, c);
    }
    let report = r.run().await;
    assert!(!exists(&backend, "wa-1"), "win-a's finished task is deleted");
    assert!(!exists(&backend, "wb-2"), "win-b's finished task is deleted too");
    assert!(!exists(&backend, "wb-3"), "win-b's task over win-b's TTL is deleted");
    assert_eq!((report.finished, report.over_ttl), (2, 1), "{report:?}: each task reaped once");
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
async fn runners_at_a_target_that_cannot_be_listed_are_listed_once_and_left_alone() {
    let (r, gh, backend) = setup(false);
    // Past the boot timeout with no registration seen: failed starts, if the list could
    // be trusted. Every pool of POOLS lists them (one scripted backend).
    put(&backend, compute("ghr-2", 2, ComputeState::Pending, 20));
    put(&backend, compute("ghr-3", 3, ComputeState::Pending, 20));
    *gh.list_runners_fails.lock().expect("lock") = true;
    let report = r.run().await;
    assert_eq!((report.failed_starts, report.errors), (0, 1), "{report:?}");
    assert!(exists(&backend, "ghr-2") && exists(&backend, "ghr-3"), "runners were deleted on a failed list");
    let listed = |gh: &FakeGitHub| gh.calls().iter().filter(|c| *c == "list-runners").count();
    assert_eq!(listed(&gh), 1, "one list per registration target and pass: {:?}", gh.calls());
    // `status` reads the same snapshot: one list, and the failure named in every pool that
    // has runners there.
    let status = r.status().await;
    assert_eq!(listed(&gh), 2, "{:?}", gh.calls());
    for pool in &status {
        assert_eq!(pool.errors.len(), 1, "{pool:?}");
        assert!(pool.errors[0].starts_with("runners at ") && pool.errors[0].ends_with("scripted outage"), "{pool:?}");
    }
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

// ---------------------------------------------------------------------------------------
// Idle runners kept ready (tests/fixtures/pools/idle.toml: pool "ready" keeps 2, pool
// "auto" follows demand up to 20).

const IDLE_POOLS: &str = include_str!("fixtures/pools/idle.toml");

fn idle_setup(
    pools_text: &str,
) -> (Reconciler, Arc<Provisioner>, Arc<FakeGitHub>, Arc<ScriptedBackend>, Arc<MemoryDemandLog>) {
    let pools = Arc::new(PoolsConfig::parse(pools_text).expect("pools"));
    let gh = Arc::new(FakeGitHub::default());
    let backend = ScriptedBackend::with(vec![]);
    let demand = Arc::new(MemoryDemandLog::default());
    let p = Arc::new(
        Provisioner::new(pools, gh.clone(), Backends::single(backend.clone())).with_demand_log(demand.clone()),
    );
    (Reconciler::new(p.clone(), false), p, gh, backend, demand)
}

/// Names of existing compute that start with `prefix`.
fn named(backend: &ScriptedBackend, prefix: &str) -> Vec<String> {
    backend.existing.lock().expect("lock").keys().filter(|n| n.starts_with(prefix)).cloned().collect()
}

/// An idle runner of pool "ready", `minutes_old`, registered as `id` with GitHub.
fn idle_runner(backend: &ScriptedBackend, gh: &FakeGitHub, name: &str, id: u64, minutes_old: i64, busy: bool) {
    let mut c = compute(name, 0, ComputeState::Running, minutes_old);
    c.job_id = None;
    c.repository = None;
    c.runner_id = Some(id);
    c.pool = Some("ready".into());
    c.idle_target = Some("octo-org".into());
    put(backend, c);
    gh.add_runner(id, name, true, busy);
}

/// Marks every registration online (the runners finished booting).
fn boot_all(gh: &FakeGitHub) {
    for r in gh.runners.lock().expect("lock").iter_mut() {
        r.online = true;
    }
}

#[tokio::test]
async fn top_up_creates_exactly_the_difference_and_no_more_on_a_second_pass() {
    let pools = IDLE_POOLS.replace("idle_runners = \"auto\"", "idle_runners = 0");
    let (r, _, gh, backend, _) = idle_setup(&pools);
    let report = r.run().await;
    assert_eq!(report.idle_created, 2, "{report:?}");
    let made = named(&backend, "ghr-i-");
    assert_eq!(made.len(), 2);
    // Same labels and runner group as the pool's job runners, registered in the org.
    let jit: Vec<String> = gh.calls().into_iter().filter(|c| c.starts_with("jit ")).collect();
    assert_eq!(jit.len(), 2);
    assert!(jit.iter().all(|c| c.ends_with(" self-hosted,linux,ready 1")), "{jit:?}");
    // Booting: counted, so nothing more. Online and idle: still exactly the target.
    assert_eq!(r.run().await.idle_created, 0);
    boot_all(&gh);
    let again = r.run().await;
    assert_eq!((again.idle_created, again.idle), (0, 0), "{again:?}");
    assert_eq!(named(&backend, "ghr-i-"), made);
    // The auto pool saw no demand: it keeps none.
    assert!(named(&backend, "auto-").is_empty());
}

#[tokio::test]
async fn surplus_is_trimmed_youngest_kept_and_a_runner_that_just_took_a_job_stays() {
    let (r, _, gh, backend, _) = idle_setup(IDLE_POOLS);
    idle_runner(&backend, &gh, "ghr-i-00000001", 501, 3, false);
    idle_runner(&backend, &gh, "ghr-i-00000002", 502, 5, false);
    idle_runner(&backend, &gh, "ghr-i-00000003", 503, 7, false);
    idle_runner(&backend, &gh, "ghr-i-00000004", 504, 9, false);
    idle_runner(&backend, &gh, "ghr-i-00000005", 505, 11, true); // busy: a job runs on it
    gh.busy_on_delete.lock().expect("lock").push(504); // takes a job as we deregister
    let first = r.run().await;
    assert_eq!((first.idle, first.idle_created), (0, 0), "seen idle once: nothing retired yet: {first:?}");
    let report = r.run().await;
    assert_eq!((report.idle, report.idle_created), (1, 0), "{report:?}");
    let left = named(&backend, "ghr-i-");
    assert_eq!(left, ["ghr-i-00000001", "ghr-i-00000002", "ghr-i-00000004", "ghr-i-00000005"]);
    let calls = gh.calls();
    assert!(calls.contains(&"delete-runner 503".to_owned()), "deregistered before its compute: {calls:?}");
    assert!(!calls.contains(&"delete-runner 505".to_owned()), "a busy runner was deregistered");
}

#[tokio::test]
async fn the_idle_timeout_spares_job_runners_up_to_the_target() {
    let (r, _, gh, backend, _) = idle_setup(IDLE_POOLS);
    // Three runners made for jobs that other runners took: online, idle past the 10 min timeout.
    for job in [1, 2, 3] {
        put(&backend, compute(&format!("ghr-{job}"), job, ComputeState::Running, 10 + i64::try_from(job).unwrap()));
        gh.add_runner(100 + job, &format!("ghr-{job}"), true, false);
    }
    assert_eq!(r.run().await.idle, 0, "seen idle once");
    let report = r.run().await;
    assert_eq!((report.idle, report.idle_created), (1, 0), "{report:?}");
    assert_eq!(named(&backend, "ghr-"), ["ghr-1", "ghr-2"], "the two youngest are the pool's idle level");
}

#[tokio::test]
async fn idle_runners_past_their_maximum_age_are_replaced() {
    let (r, _, gh, backend, _) = idle_setup(IDLE_POOLS);
    idle_runner(&backend, &gh, "ghr-i-0000000a", 510, 61, false);
    idle_runner(&backend, &gh, "ghr-i-0000000b", 511, 5, false);
    let first = r.run().await;
    assert_eq!((first.idle, first.idle_created), (0, 0), "seen idle once: {first:?}");
    let report = r.run().await;
    assert_eq!((report.idle, report.idle_created), (1, 1), "{report:?}");
    let left = named(&backend, "ghr-i-");
    assert_eq!(left.len(), 2);
    assert!(!left.contains(&"ghr-i-0000000a".to_owned()));
    // The replacement was made (its JIT call) before the old runner was deregistered.
    let calls = gh.calls();
    let made = calls.iter().position(|c| c.starts_with("jit ghr-i-")).expect("a replacement");
    let retired = calls.iter().position(|c| c == "delete-runner 510").expect("the old one retired");
    assert!(made < retired, "{calls:?}");
}

#[tokio::test]
async fn the_auto_target_follows_the_recorded_arrivals_and_falls_to_the_floor_without_them() {
    let (r, _, gh, backend, demand) = idle_setup(IDLE_POOLS);
    let now = time::OffsetDateTime::now_utc();
    // 100 jobs over the last ten minutes: 6.67 a minute over the 15-minute rate window;
    // a measured cold start of 54 s read as the 60 s floor: 6.67 in boot plus 2 × √6.67.
    let mut records: Vec<Record> = (0..100)
        .map(|i| Record::Arrival {
            job: i,
            at: (now - time::Duration::seconds(6 * i64::try_from(i).unwrap() + 1)).unix_timestamp(),
        })
        .collect();
    records.push(Record::Started {
        job: 1,
        at: (now - time::Duration::minutes(20)).unix_timestamp(),
        queued_s: 54,
        idle: false,
    });
    for chunk in records.chunks(1) {
        record_for(&*demand, "auto", "octo-org", chunk).await;
    }
    let report = r.run().await;
    assert_eq!(named(&backend, "auto-i-").len(), 12, "{report:?}");
    // Demand over: once the window is past, the level falls back to the floor (0).
    let (r2, _, gh2, backend2, demand2) = idle_setup(IDLE_POOLS);
    let old = (now - time::Duration::minutes(6)).unix_timestamp();
    record_for(&*demand2, "auto", "octo-org", &[Record::Arrival { job: 1, at: old }]).await;
    for i in 0..3u64 {
        let name = format!("auto-i-0000000{i}");
        let mut c = compute(&name, 0, ComputeState::Running, 5);
        c.job_id = None;
        c.runner_id = Some(700 + i);
        c.pool = Some("auto".into());
        c.idle_target = Some("octo-org".into());
        put(&backend2, c);
        gh2.add_runner(700 + i, &name, true, false);
    }
    assert_eq!(r2.run().await.idle, 0, "seen idle once");
    let report = r2.run().await;
    assert_eq!(report.idle, 3, "{report:?}");
    assert!(named(&backend2, "auto-").is_empty(), "the auto pool made or kept runners without demand");
    drop(gh);
}

#[tokio::test]
async fn a_job_taken_by_an_idle_runner_still_leads_to_exactly_one_new_runner() {
    let (_, p, gh, backend, _) = idle_setup(IDLE_POOLS);
    idle_runner(&backend, &gh, "ghr-i-0000000c", 520, 3, true);
    gh.jobs.lock().expect("lock").insert(42, Ok(JobState::InProgress { runner_name: Some("ghr-i-0000000c".into()) }));
    let mut msg = common_message(42, "ready");
    assert!(matches!(p.provision(&msg, 1).await, Ok(ProvisionOutcome::Created { .. })));
    assert!(matches!(p.provision(&msg, 2).await, Ok(ProvisionOutcome::AlreadyExists)), "a redelivery makes no second");
    assert_eq!(named(&backend, "ghr-42").len(), 1);
    // The job completes on the idle runner: that one goes, the job's own runner stays as
    // the pool's next idle one.
    msg.kind = MessageKind::Cleanup;
    msg.ran_on = Some("ghr-i-0000000c".into());
    msg.ran_on_id = Some(520);
    let deleted = p.cleanup(&msg).await.expect("cleanup").deleted;
    assert_eq!(deleted, ["ghr-i-0000000c"]);
    assert_eq!(named(&backend, "ghr-"), ["ghr-42"]);
}

fn common_message(job_id: u64, pool: &str) -> RunnerMessage {
    let created = time::OffsetDateTime::now_utc() - time::Duration::seconds(30);
    RunnerMessage {
        run_id: 5,
        job_created_at: Some(created.format(&time::format_description::well_known::Rfc3339).expect("fmt")),
        ..provision_message(job_id, pool, &["self-hosted", "linux", pool])
    }
}

/// Both transports run the same pass: the host's timer invocation, and the standalone
/// server's admin route (whose demand log is a file in its state directory).
#[tokio::test]
async fn both_transports_top_up_idle_runners_from_the_reconcile_route() {
    let pools = Arc::new(PoolsConfig::parse(IDLE_POOLS).expect("pools"));
    let token = "idle-admin-token-0123456789abcdef0123";
    let dir = tempfile::tempdir().expect("dir");
    for standalone in [false, true] {
        let backend = Arc::new(runner_dispatch::provision::dry_run::DryRunBackend::new(false));
        let settings = runner_dispatch::config::Settings { admin_token: Some(token.into()), ..settings() };
        let app = spawn_app_with_settings(
            &settings,
            pools.clone(),
            backend.clone(),
            standalone.then_some(dir.path()),
            fast_queue(),
            runner_dispatch::server::RAW_REQUEST_TIMEOUT,
        )
        .await;
        let mut request = app.client.post(app.url("/reconcile")).json(&serde_json::json!({}));
        if standalone {
            request = request.bearer_auth(token);
        }
        let resp = request.send().await.expect("send");
        assert_eq!(resp.status(), 200, "standalone: {standalone}");
        let idle: Vec<String> = backend
            .created()
            .into_iter()
            .filter(|r| r.idle_target.as_deref() == Some("octo-org"))
            .map(|r| r.name)
            .collect();
        assert_eq!(idle.len(), 2, "standalone: {standalone}: {idle:?}");
        assert!(idle.iter().all(|n| n.starts_with("ghr-i-") && n.len() == "ghr-i-".len() + 8), "{idle:?}");
    }
    // Standalone keeps the pass's idle counts where a restart finds them.
    assert!(dir.path().join("demand").join("ready").read_dir().expect("demand dir").next().is_some());
}

/// Idle capacity at `target` for pool `pool`, named `name`, registered as `id`.
fn idle_runner_at(backend: &ScriptedBackend, gh: &FakeGitHub, (name, pool, target): (&str, &str, &str), id: u64) {
    let mut c = compute(name, 0, ComputeState::Running, 3);
    c.job_id = None;
    c.repository = None;
    c.runner_id = Some(id);
    c.pool = Some(pool.to_owned());
    c.idle_target = Some(target.to_owned());
    put(backend, c);
    gh.add_runner(id, name, true, false);
}

/// Idle runners standing, by the target each was made for.
fn idle_by_target(backend: &ScriptedBackend, prefix: &str) -> BTreeMap<String, usize> {
    let mut by = BTreeMap::new();
    for c in backend.existing.lock().expect("lock").values().filter(|c| c.name.starts_with(prefix)) {
        *by.entry(c.idle_target.clone().unwrap_or_default()).or_default() += 1;
    }
    by
}

#[tokio::test]
async fn idle_runners_are_made_and_kept_only_at_the_configured_targets() {
    let pools = IDLE_POOLS
        .replace("allowed_owners = [\"octo-org\"]", "allowed_owners = [\"octo-org\", \"other-org\"]")
        .replace("idle_runners = 2\n", "idle_runners = 2\nidle_targets = [\"octo-org\"]\n");
    let (r, _, gh, backend, _) = idle_setup(&pools);
    // A busy job runner in other-org, and an idle runner an older configuration left there.
    let mut job = compute("ghr-7", 7, ComputeState::Running, 3);
    job.repository = Some("other-org/api".into());
    put(&backend, job);
    gh.add_runner(107, "ghr-7", true, true);
    idle_runner_at(&backend, &gh, ("ghr-i-000000aa", "ready", "other-org"), 540);
    for _ in 0..3 {
        r.run().await;
        boot_all(&gh);
    }
    assert_eq!(idle_by_target(&backend, "ghr-i-"), BTreeMap::from([("octo-org".to_owned(), 2)]));
    assert!(exists(&backend, "ghr-7"), "the busy job runner stays");
}

#[tokio::test]
async fn auto_sizes_each_target_from_its_own_demand() {
    let pools = IDLE_POOLS
        .replace("allowed_owners = [\"octo-org\"]", "allowed_owners = [\"octo-org\", \"other-org\", \"third-org\"]");
    let (r, _, _, backend, demand) = idle_setup(&pools);
    let now = time::OffsetDateTime::now_utc();
    // 100 jobs at octo-org over the last ten minutes (12 idle runners there, as above),
    // one at other-org (one a job an hour keeps one), none at third-org; and 100 lines of an
    // older version without a target, which count for no target.
    for i in 0..100i64 {
        let at = (now - time::Duration::seconds(6 * i + 1)).unix_timestamp();
        let job = u64::try_from(i).unwrap();
        record_for(&*demand, "auto", "Octo-Org", &[Record::Arrival { job, at }]).await;
        record(&*demand, "auto", &[Record::Arrival { job: 1000 + job, at }]).await;
    }
    let at = (now - time::Duration::seconds(30)).unix_timestamp();
    record_for(&*demand, "auto", "other-org", &[Record::Arrival { job: 5000, at }]).await;
    let report = r.run().await;
    let want = BTreeMap::from([("octo-org".to_owned(), 12), ("other-org".to_owned(), 1)]);
    assert_eq!(idle_by_target(&backend, "auto-i-"), want, "{report:?}");
    let status = r.status().await;
    let auto = status.iter().find(|p| p.pool == "auto").expect("auto");
    let counts: Vec<(&str, u32)> = auto.idle_target_by_target.iter().map(|(t, x)| (t.as_str(), x.count)).collect();
    assert_eq!(counts, [("octo-org", 12), ("other-org", 1), ("third-org", 0)]);
    assert_eq!(auto.idle_target.as_ref().map(|t| t.count), Some(12), "the highest");
}

#[tokio::test]
async fn idle_runners_max_is_a_hard_cap_on_what_is_kept() {
    let (r, _, gh, backend, demand) = idle_setup(&IDLE_POOLS.replace("idle_runners_max = 20", "idle_runners_max = 5"));
    let now = time::OffsetDateTime::now_utc();
    for i in 0..100i64 {
        let at = (now - time::Duration::seconds(6 * i + 1)).unix_timestamp();
        record_for(&*demand, "auto", "octo-org", &[Record::Arrival { job: u64::try_from(i).unwrap(), at }]).await;
    }
    for i in 0..7u64 {
        idle_runner_at(&backend, &gh, (&format!("auto-i-0000000{i}"), "auto", "octo-org"), 700 + i);
    }
    let first = r.run().await;
    assert_eq!((first.idle, named(&backend, "auto-i-").len()), (0, 7), "{first:?}");
    let second = r.run().await;
    assert_eq!(second.idle, 2, "{second:?}");
    assert_eq!(named(&backend, "auto-i-").len(), 5, "nothing kept or made above the cap");
}

#[tokio::test]
async fn a_runner_is_trimmed_only_when_seen_idle_in_two_passes_in_a_row() {
    let (r, _, gh, backend, _) = idle_setup(IDLE_POOLS);
    idle_runner(&backend, &gh, "ghr-i-00000001", 501, 3, false);
    idle_runner(&backend, &gh, "ghr-i-00000002", 502, 5, false);
    // The surplus one is busy in the first pass, then shows idle: GitHub may have just given
    // it a job that does not show busy yet.
    idle_runner(&backend, &gh, "ghr-i-00000003", 503, 7, true);
    assert_eq!(r.run().await.idle, 0);
    gh.runners.lock().expect("lock").iter_mut().filter(|x| x.id == 503).for_each(|x| x.busy = false);
    assert_eq!(r.run().await.idle, 0, "idle in one pass only");
    assert!(!gh.calls().contains(&"delete-runner 503".to_owned()));
    assert_eq!(r.run().await.idle, 1);
    assert!(!exists(&backend, "ghr-i-00000003"));
}

#[tokio::test]
async fn an_orphan_idle_runner_registration_is_removed_like_a_job_runners() {
    let (r, _, gh, backend, _) = idle_setup(IDLE_POOLS);
    idle_runner(&backend, &gh, "ghr-i-0000000d", 530, 3, false);
    // Named like an idle runner of ours, never our compute.
    gh.add_runner(531, "ghr-i-0000000e", false, false);
    assert_eq!(r.run().await.orphan_registrations, 0);
    // Its compute goes (deleted by hand, say) and the registration shows offline.
    backend.existing.lock().expect("lock").remove("ghr-i-0000000d");
    gh.runners.lock().expect("lock").iter_mut().filter(|x| x.id == 530).for_each(|x| x.online = false);
    assert_eq!(r.run().await.orphan_registrations, 0, "seen orphaned once");
    assert_eq!(r.run().await.orphan_registrations, 1, "seen orphaned twice");
    let calls = gh.calls();
    assert!(calls.contains(&"delete-runner 530".to_owned()), "{calls:?}");
    assert!(!calls.contains(&"delete-runner 531".to_owned()), "another deployment's runner was removed");
}

#[tokio::test]
async fn a_windows_runners_are_made_one_cold_start_and_one_pass_before_it_opens() {
    let pools = IDLE_POOLS.replace(
        "idle_runners = 2\n",
        "idle_runners = 0\nidle_schedule = [{ days = \"daily\", hours = \"07:00-19:00\", timezone = \"UTC\", idle_runners = 3 }]\n",
    );
    let day = time::OffsetDateTime::now_utc().date();
    for (hms, want) in [((6, 53, 0), 0), ((6, 55, 0), 3)] {
        let at = day.with_hms(hms.0, hms.1, hms.2).expect("time").assume_utc();
        let gh = Arc::new(FakeGitHub::default());
        let backend = ScriptedBackend::with(vec![]);
        let p = Provisioner::new(
            Arc::new(PoolsConfig::parse(&pools).expect("pools")),
            gh,
            Backends::single(backend.clone()),
        )
        .with_clock(Arc::new(move || at));
        let report = Reconciler::new(Arc::new(p), false).run().await;
        assert_eq!(named(&backend, "ghr-i-").len(), want, "at {at}: {report:?}");
    }
}
