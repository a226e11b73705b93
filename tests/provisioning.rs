//! The provisioning algorithm's branches: idempotency, the JIT name lock, the job check,
//! pool caps, registration mode, cleanup.

mod common;

use std::sync::Arc;

use common::*;
use runner_dispatch::backends::Backends;
use runner_dispatch::compute::{EnvValue, ProvisionError};
use runner_dispatch::config::PoolsConfig;
use runner_dispatch::github::{GitHubError, JobState};
use runner_dispatch::message::{MessageKind, RunnerMessage};
use runner_dispatch::provision::{ProvisionOutcome, Provisioner};

fn message(job_id: u64, minutes_old: i64) -> RunnerMessage {
    let created = time::OffsetDateTime::now_utc() - time::Duration::minutes(minutes_old);
    RunnerMessage {
        run_id: 5,
        installation_id: Some(1),
        job_created_at: Some(created.format(&time::format_description::well_known::Rfc3339).expect("fmt")),
        ..provision_message(job_id, "linux", &["self-hosted", "linux"])
    }
}

fn setup(extra: &str) -> (Provisioner, Arc<FakeGitHub>, Arc<ScriptedBackend>) {
    let text = POOLS
        .replace("check_job_queued = \"never\"", extra)
        .replace("batch_pool_id = \"win\"", "batch_pool_id = \"win\"\nallow_readable_tokens = true");
    let pools = Arc::new(PoolsConfig::parse(&text).expect("pools"));
    let gh = Arc::new(FakeGitHub::default());
    let backend = ScriptedBackend::with(vec![]);
    (Provisioner::new(pools, gh.clone(), Backends::single(backend.clone())), gh, backend)
}

/// The backend's next create is refused as ACI refuses it over quota: retryable, with a
/// Retry-After of `secs`. Returns that wait.
fn throttle_next_create(backend: &ScriptedBackend, secs: u64) -> std::time::Duration {
    let after = std::time::Duration::from_secs(secs);
    backend.script.lock().expect("lock").push_back(Err(ProvisionError::Retryable {
        reason: "ContainerGroupQuotaReached".into(),
        retry_after: Some(after),
    }));
    after
}

#[tokio::test]
async fn jit_mode_makes_one_call_and_passes_the_config_only_as_a_secret() {
    let (p, gh, backend) = setup("check_job_queued = \"stale\"");
    let out = p.provision(&message(1, 0), 1).await.expect("ok");
    assert_eq!(out, ProvisionOutcome::Created { backend: "scripted" });
    assert_eq!(
        gh.calls(),
        vec!["jit ghr-1 self-hosted,linux,x64,ubuntu-latest 1"],
        "fresh job: no job check, one call"
    );
    let req = backend.creates.lock().expect("lock")[0].clone();
    assert_eq!(req.env.len(), 1);
    assert_eq!(req.env[0].0, "RUNNER_JITCONFIG");
    assert!(matches!(&req.env[0].1, EnvValue::Secret(s) if s.expose() == "jit-secret-ghr-1"));
    // The same message again: the compute exists, nothing is called or created.
    assert_eq!(p.provision(&message(1, 0), 1).await.expect("ok"), ProvisionOutcome::AlreadyExists);
    assert_eq!(backend.create_count(), 1);
    assert_eq!(gh.calls().len(), 1);
}

#[tokio::test]
async fn a_409_on_the_first_attempt_is_retryable_and_a_stale_offline_registration_is_replaced_later() {
    let (p, gh, backend) = setup("check_job_queued = \"never\"");
    gh.add_runner(77, "ghr-2", false, false); // a crash between JIT and create left this
    let err = p.provision(&message(2, 0), 1).await.expect_err("first attempt defers");
    assert!(err.is_retryable(), "{err}");
    assert_eq!(backend.create_count(), 0);
    let out = p.provision(&message(2, 0), 2).await.expect("second attempt recovers");
    assert_eq!(out, ProvisionOutcome::Created { backend: "scripted" });
    assert!(gh.calls().contains(&"delete-runner 77".to_owned()), "{:?}", gh.calls());
    assert_eq!(backend.create_count(), 1);
}

#[tokio::test]
async fn a_409_for_an_online_runner_means_another_worker_won() {
    let (p, gh, backend) = setup("check_job_queued = \"never\"");
    gh.add_runner(78, "ghr-3", true, false);
    let out = p.provision(&message(3, 0), 2).await.expect("ok");
    assert_eq!(out, ProvisionOutcome::AlreadyExists);
    assert_eq!(backend.create_count(), 0);
    assert!(!gh.calls().iter().any(|c| c.starts_with("delete-runner")));
}

#[tokio::test]
async fn the_job_check_skips_completed_jobs_and_jobs_taken_by_foreign_runners_only() {
    let (p, gh, backend) = setup("check_job_queued = \"always\"");
    gh.jobs.lock().expect("lock").insert(10, Ok(JobState::Completed));
    gh.jobs
        .lock()
        .expect("lock")
        .insert(11, Ok(JobState::InProgress { runner_name: Some("someone-elses-runner".into()) }));
    gh.jobs.lock().expect("lock").insert(12, Ok(JobState::InProgress { runner_name: Some("ghr-99".into()) }));
    gh.jobs.lock().expect("lock").insert(13, Err(GitHubError::Transient("502".into())));
    assert!(matches!(p.provision(&message(10, 0), 1).await, Ok(ProvisionOutcome::Skipped { .. })));
    assert!(matches!(p.provision(&message(11, 0), 1).await, Ok(ProvisionOutcome::Skipped { .. })));
    // Our runner made for job 99 took job 12: job 99 now needs a runner, and so does 12's request.
    assert!(matches!(p.provision(&message(12, 0), 1).await, Ok(ProvisionOutcome::Created { .. })));
    // GitHub cannot answer: fail open.
    assert!(matches!(p.provision(&message(13, 0), 1).await, Ok(ProvisionOutcome::Created { .. })));
    assert_eq!(backend.create_count(), 2);
}

#[tokio::test]
async fn stale_mode_checks_only_retries_and_old_jobs() {
    let (p, gh, _) = setup("check_job_queued = \"stale\"");
    p.provision(&message(20, 0), 1).await.expect("ok");
    assert!(!gh.calls().iter().any(|c| c.starts_with("job ")));
    p.provision(&message(21, 5), 1).await.expect("ok");
    assert!(gh.calls().contains(&"job 21".to_owned()));
    p.provision(&message(22, 0), 2).await.expect("ok");
    assert!(gh.calls().contains(&"job 22".to_owned()));
}

#[tokio::test]
async fn max_runners_defers_instead_of_dropping() {
    let pools = POOLS.replace(
        "image = \"example.azurecr.io/runner:1\"\n\n[[pools]]\nname = \"windows\"",
        "image = \"example.azurecr.io/runner:1\"\nmax_runners = 1\n\n[[pools]]\nname = \"windows\"",
    );
    let pools = Arc::new(PoolsConfig::parse(&pools).expect("pools"));
    assert_eq!(pools.pool("linux").expect("linux").max_runners, Some(1));
    let gh = Arc::new(FakeGitHub::default());
    let backend = ScriptedBackend::with(vec![]);
    let p = Provisioner::new(pools, gh.clone(), Backends::single(backend.clone()));
    p.provision(&message(30, 0), 1).await.expect("first fits");
    let err = p.provision(&message(31, 0), 1).await.expect_err("cap reached");
    // A deferral, not a retryable failure: waiting for a slot is not an attempt, so the
    // request is never given up for it (only the job's 24 h age ends it).
    assert!(matches!(&err, ProvisionError::Deferred { reason, .. } if reason.contains("max_runners")), "{err}");
    assert_eq!(backend.create_count(), 1);
    assert_eq!(gh.calls().iter().filter(|c| c.starts_with("jit")).count(), 1, "no JIT config wasted on a deferral");
}

#[tokio::test]
async fn registration_mode_passes_the_contract_variables_with_the_token_as_a_secret() {
    let (p, _, backend) = setup("check_job_queued = \"never\"\ntoken_mode = \"registration\"");
    // (setup adds allow_readable_tokens to the Batch pool, which registration mode requires)
    p.provision(&message(40, 0), 1).await.expect("ok");
    let req = backend.creates.lock().expect("lock")[0].clone();
    let names: Vec<&str> = req.env.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        names,
        vec!["RUNNER_URL", "RUNNER_TOKEN", "RUNNER_NAME", "RUNNER_LABELS", "RUNNER_GROUP", "RUNNER_EPHEMERAL"]
    );
    assert!(matches!(&req.env[1].1, EnvValue::Secret(_)));
    assert_eq!(req.env[2].1, EnvValue::Plain("ghr-40".into()));
    assert_eq!(req.env[5].1, EnvValue::Plain("1".into()));
}

#[tokio::test]
async fn a_permanent_create_failure_deletes_the_registration_and_reports() {
    let (p, gh, backend) = setup("check_job_queued = \"never\"");
    backend.script.lock().expect("lock").push_back(Err(ProvisionError::permanent("InaccessibleImage")));
    let err = p.provision(&message(50, 0), 1).await.expect_err("permanent");
    assert!(!err.is_retryable());
    assert!(gh.calls().iter().any(|c| c.starts_with("delete-runner")), "{:?}", gh.calls());
    assert!(gh.runners.lock().expect("lock").is_empty());
}

#[tokio::test]
async fn cleanup_deletes_the_runner_that_ran_the_job_and_leaves_its_own_runner_to_the_job_that_lost_one() {
    let (p, gh, backend) = setup("check_job_queued = \"never\"");
    // ghr-60 (made for job 60) ran job 61; ghr-61 (made for 61) took job 60 and is busy.
    p.provision(&message(60, 0), 1).await.expect("ok");
    p.provision(&message(61, 0), 1).await.expect("ok");
    for r in gh.runners.lock().expect("lock").iter_mut() {
        r.online = true;
        r.busy = r.name == "ghr-61";
    }
    let mut done = message(61, 0);
    done.kind = MessageKind::Cleanup;
    done.ran_on = Some("ghr-60".into());
    done.ran_on_id = gh.runners.lock().expect("lock").iter().find(|r| r.name == "ghr-60").map(|r| r.id);
    let deleted = p.cleanup(&done).await.expect("ok").deleted;
    assert_eq!(deleted, vec!["ghr-60"], "ghr-61 is busy with job 60 and stays");
    assert!(backend.existing.lock().expect("lock").contains_key("ghr-61"));
    // Still booting, not busy: kept all the same. Job 60 gave its runner to job 61 and
    // waits for ghr-61; deleting it would leave job 60 with none.
    p.provision(&message(63, 0), 1).await.expect("ok");
    p.provision(&message(64, 0), 1).await.expect("ok");
    let mut done = message(64, 0);
    done.kind = MessageKind::Cleanup;
    done.ran_on = Some("ghr-63".into());
    done.ran_on_id = gh.runners.lock().expect("lock").iter().find(|r| r.name == "ghr-63").map(|r| r.id);
    assert_eq!(p.cleanup(&done).await.expect("ok").deleted, vec!["ghr-63"]);
    assert!(backend.existing.lock().expect("lock").contains_key("ghr-64"), "a booting swap partner was deleted");
    // A runner the job never needed (a GitHub-hosted runner ran it) is removed when idle.
    p.provision(&message(62, 0), 1).await.expect("ok");
    let mut other = message(62, 0);
    other.kind = MessageKind::Cleanup;
    other.ran_on = Some("GitHub Actions 5".into());
    assert_eq!(p.cleanup(&other).await.expect("ok").deleted, vec!["ghr-62"]);
}

#[tokio::test]
async fn cleanup_never_deletes_compute_for_a_job_that_ran_on_a_same_named_foreign_runner() {
    let (p, gh, backend) = setup("check_job_queued = \"never\"");
    // The victim's runner ghr-70 is running job 70.
    p.provision(&message(70, 0), 1).await.expect("ok");
    let victim_id = gh.runners.lock().expect("lock").iter().find(|r| r.name == "ghr-70").map(|r| r.id);
    assert!(victim_id.is_some());
    // A repository admin registered a repo-level runner also named ghr-70 (id 777); a job
    // of theirs completed on it.
    for ran_on_id in [Some(777), None] {
        let mut done = message(71, 0);
        done.kind = MessageKind::Cleanup;
        done.ran_on = Some("ghr-70".into());
        done.ran_on_id = ran_on_id;
        let deleted = p.cleanup(&done).await.expect("ok").deleted;
        assert!(deleted.is_empty(), "{ran_on_id:?}: deleted {deleted:?}");
        assert!(backend.existing.lock().expect("lock").contains_key("ghr-70"), "{ran_on_id:?}");
    }
    // The victim's own completion, with the recorded id, does delete it.
    let mut done = message(70, 0);
    done.kind = MessageKind::Cleanup;
    done.ran_on = Some("ghr-70".into());
    done.ran_on_id = victim_id;
    assert_eq!(p.cleanup(&done).await.expect("ok").deleted, vec!["ghr-70"]);
}

#[tokio::test(start_paused = true)]
async fn a_throttled_create_defers_later_jobs_before_any_github_call_then_one_probe_goes() {
    let (p, gh, backend) = setup("check_job_queued = \"never\"");
    throttle_next_create(&backend, 30);
    let err = p.provision(&message(50, 0), 1).await.expect_err("throttled");
    assert!(err.is_retryable());
    let jit_calls = |gh: &FakeGitHub| gh.calls().iter().filter(|c| c.starts_with("jit")).count();
    assert_eq!(jit_calls(&gh), 1);
    // While the quota is exhausted: deferred, no GitHub call, no create.
    let err = p.provision(&message(51, 0), 1).await.expect_err("deferred");
    assert!(
        matches!(&err, ProvisionError::Deferred { retry_after, .. } if *retry_after == std::time::Duration::from_secs(30)),
        "{err:?}"
    );
    assert_eq!(jit_calls(&gh), 1, "no JIT config spent on a job that cannot be created yet");
    assert_eq!(backend.create_count(), 1);
    // After retry_after: one probe goes through and reopens the gate.
    tokio::time::advance(std::time::Duration::from_secs(30)).await;
    assert_eq!(
        p.provision(&message(51, 0), 1).await.expect("probe"),
        ProvisionOutcome::Created { backend: "scripted" }
    );
    assert_eq!(p.provision(&message(52, 0), 1).await.expect("open"), ProvisionOutcome::Created { backend: "scripted" });
}

#[tokio::test(start_paused = true)]
async fn a_github_rate_limit_pauses_jit_calls_for_exactly_retry_after() {
    let (p, gh, _) = setup("check_job_queued = \"never\"\njit_per_minute = 0");
    gh.jit_script
        .lock()
        .expect("lock")
        .push_back(Err(GitHubError::RateLimited { retry_after: std::time::Duration::from_secs(60) }));
    let err = p.provision(&message(60, 0), 1).await.expect_err("rate limited");
    assert!(matches!(err, ProvisionError::Retryable { retry_after: Some(_), .. }), "{err:?}");
    let err = p.provision(&message(61, 0), 1).await.expect_err("paused");
    assert!(
        matches!(&err, ProvisionError::Deferred { retry_after, .. } if *retry_after == std::time::Duration::from_secs(60)),
        "{err:?}"
    );
    assert_eq!(gh.calls().iter().filter(|c| c.starts_with("jit")).count(), 1, "the pause spends no call");
    tokio::time::advance(std::time::Duration::from_secs(60)).await;
    p.provision(&message(61, 0), 1).await.expect("after the pause");
}

#[tokio::test(start_paused = true)]
async fn jit_calls_are_paced_to_jit_per_minute() {
    let (p, gh, _) = setup("check_job_queued = \"never\"\njit_per_minute = 6");
    // Burst of one (6 / 6), then one call every 10 s: the second waits in line.
    let start = tokio::time::Instant::now();
    p.provision(&message(70, 0), 1).await.expect("first");
    p.provision(&message(71, 0), 1).await.expect("second");
    assert_eq!(start.elapsed(), std::time::Duration::from_secs(10));
    assert_eq!(gh.calls().iter().filter(|c| c.starts_with("jit")).count(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_throttled_create_keeps_its_registration_and_the_retry_spends_no_github_call() {
    let (p, gh, backend) = setup("check_job_queued = \"never\"");
    throttle_next_create(&backend, 30);
    let err = p.provision(&message(70, 0), 1).await.expect_err("throttled");
    assert!(
        matches!(&err, ProvisionError::Deferred { retry_after, .. } if *retry_after == std::time::Duration::from_secs(30)),
        "a throttled create waits as a deferral, not a failed attempt: {err:?}"
    );
    assert_eq!(gh.calls(), vec!["jit ghr-70 self-hosted,linux,x64,ubuntu-latest 1"], "kept, not deleted");
    assert_eq!(p.held_registrations(), 1);
    tokio::time::advance(std::time::Duration::from_secs(30)).await;
    assert_eq!(
        p.provision(&message(70, 0), 2).await.expect("retry"),
        ProvisionOutcome::Created { backend: "scripted" }
    );
    assert_eq!(gh.calls().len(), 1, "the retry reused the registration: {:?}", gh.calls());
    let creates = backend.creates.lock().expect("lock").clone();
    assert_eq!(creates.len(), 2);
    for req in &creates {
        assert!(matches!(&req.env[0].1, EnvValue::Secret(s) if s.expose() == "jit-secret-ghr-70"), "same config");
    }
    assert_eq!(p.held_registrations(), 0);
    assert_eq!(gh.runners.lock().expect("lock").len(), 1, "one registration in all");
}

#[tokio::test(start_paused = true)]
async fn a_held_registration_is_deleted_when_the_retry_finds_the_job_done() {
    let (p, gh, backend) = setup("check_job_queued = \"stale\"");
    backend.script.lock().expect("lock").push_back(Err(ProvisionError::retryable("InternalServerError")));
    assert!(p.provision(&message(71, 0), 1).await.expect_err("transient").is_retryable());
    assert_eq!(p.held_registrations(), 1);
    gh.jobs.lock().expect("lock").insert(71, Ok(JobState::Completed));
    let out = p.provision(&message(71, 0), 2).await.expect("skipped");
    assert!(matches!(out, ProvisionOutcome::Skipped { .. }), "{out:?}");
    assert!(gh.calls().iter().any(|c| c.starts_with("delete-runner")), "{:?}", gh.calls());
    assert!(gh.runners.lock().expect("lock").is_empty(), "no offline registration left behind");
    assert_eq!(p.held_registrations(), 0);
    assert_eq!(backend.create_count(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_held_registration_expires_and_the_retry_replaces_it_through_the_409_path() {
    let (p, gh, backend) = setup("check_job_queued = \"never\"");
    backend.script.lock().expect("lock").push_back(Err(ProvisionError::retryable("InternalServerError")));
    assert!(p.provision(&message(72, 0), 1).await.expect_err("transient").is_retryable());
    tokio::time::advance(runner_dispatch::provision::HELD_REGISTRATION_TTL + std::time::Duration::from_secs(1)).await;
    assert_eq!(
        p.provision(&message(72, 0), 2).await.expect("retry"),
        ProvisionOutcome::Created { backend: "scripted" }
    );
    let calls = gh.calls();
    assert_eq!(calls.iter().filter(|c| c.starts_with("jit")).count(), 3, "409, then a fresh one: {calls:?}");
    assert!(calls.iter().any(|c| c.starts_with("delete-runner")), "{calls:?}");
    assert_eq!(gh.runners.lock().expect("lock").len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_create_throttled_for_longer_than_the_hold_deletes_its_registration_at_once() {
    let (p, gh, backend) = setup("check_job_queued = \"never\"");
    let hour = throttle_next_create(&backend, 3600);
    assert!(p.provision(&message(73, 0), 1).await.expect_err("throttled").is_retryable());
    assert_eq!(p.held_registrations(), 0, "an hour is longer than a hold may last");
    assert!(gh.runners.lock().expect("lock").is_empty(), "deleted, so the retry starts clean");
    tokio::time::advance(hour).await;
    assert_eq!(
        p.provision(&message(73, 0), 1).await.expect("retry"),
        ProvisionOutcome::Created { backend: "scripted" }
    );
    let calls = gh.calls();
    assert_eq!(calls.iter().filter(|c| c.starts_with("jit")).count(), 2, "no 409 to resolve: {calls:?}");
    assert!(!calls.iter().any(|c| c.starts_with("find")), "{calls:?}");
}

#[tokio::test(start_paused = true)]
async fn reconcile_leaves_a_held_registration_alone() {
    let (p, gh, backend) = setup("check_job_queued = \"never\"");
    // An existing runner so reconcile lists the org's registrations.
    p.provision(&message(74, 0), 1).await.expect("created");
    backend.script.lock().expect("lock").push_back(Err(ProvisionError::retryable("InternalServerError")));
    assert!(p.provision(&message(75, 0), 1).await.expect_err("transient").is_retryable());
    assert_eq!(p.held_registrations(), 1);
    let p = Arc::new(p);
    let r = runner_dispatch::reconcile::Reconciler::new(p.clone(), false);
    for _ in 0..2 {
        assert_eq!(r.run().await.orphan_registrations, 0);
    }
    assert!(gh.runners.lock().expect("lock").iter().any(|x| x.name == "ghr-75"), "held, so not an orphan");
    // Once the hold has lapsed it is an orphan like any other (seen in two passes).
    tokio::time::advance(runner_dispatch::provision::HELD_REGISTRATION_TTL).await;
    r.run().await;
    assert_eq!(r.run().await.orphan_registrations, 1);
    assert!(!gh.runners.lock().expect("lock").iter().any(|x| x.name == "ghr-75"));
}

#[tokio::test(start_paused = true)]
async fn standalone_holds_a_registration_through_an_hourly_quota() {
    let (p, gh, backend) = setup("check_job_queued = \"never\"");
    let p = p.with_registration_hold(runner_dispatch::provision::STANDALONE_HELD_REGISTRATION_TTL);
    let hour = throttle_next_create(&backend, 3600);
    assert!(p.provision(&message(76, 0), 1).await.expect_err("throttled").is_retryable());
    assert_eq!(p.held_registrations(), 1, "within the standalone hold");
    tokio::time::advance(hour).await;
    assert_eq!(
        p.provision(&message(76, 0), 1).await.expect("retry"),
        ProvisionOutcome::Created { backend: "scripted" }
    );
    assert_eq!(gh.calls(), vec!["jit ghr-76 self-hosted,linux,x64,ubuntu-latest 1"], "one GitHub call in all");
}
