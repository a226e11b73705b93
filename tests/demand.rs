//! What provisioning and cleanup write to the idle runners' demand log, and what they
//! refuse: one arrival per job, when its runner is requested; times from payloads within
//! [now − 24 h, now + 5 min]; one bounded cold-start sample per job.

mod common;

use std::sync::Arc;

use common::*;
use runner_dispatch::backends::Backends;
use runner_dispatch::compute::{ComputeInfo, ComputeState, ProvisionError};
use runner_dispatch::config::PoolsConfig;
use runner_dispatch::github::JobState;
use runner_dispatch::idle::demand::{DemandLog, Entry, FileDemandLog, History, MemoryDemandLog, Record, history};
use runner_dispatch::message::{MessageKind, RunnerMessage};
use runner_dispatch::provision::{ProvisionOutcome, Provisioner};
use runner_dispatch::reconcile::Reconciler;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

const IDLE_POOLS: &str = include_str!("fixtures/pools/idle.toml");

fn setup(pools_text: &str, demand: Arc<dyn DemandLog>) -> (Arc<Provisioner>, Arc<FakeGitHub>, Arc<ScriptedBackend>) {
    let pools = Arc::new(PoolsConfig::parse(pools_text).expect("pools"));
    let gh = Arc::new(FakeGitHub::default());
    let backend = ScriptedBackend::with(vec![]);
    let p = Provisioner::new(pools, gh.clone(), Backends::single(backend.clone())).with_demand_log(demand);
    (Arc::new(p), gh, backend)
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).expect("fmt")
}

fn message(job_id: u64, pool: &str, created: OffsetDateTime) -> RunnerMessage {
    RunnerMessage {
        job_created_at: Some(rfc3339(created)),
        ..provision_message(job_id, pool, &["self-hosted", "linux", pool])
    }
}

/// Everything in the pool's log from a day ago to an hour ahead.
async fn entries(log: &dyn DemandLog, pool: &str) -> Vec<Entry> {
    let now = OffsetDateTime::now_utc();
    let h = history(log, pool, now - time::Duration::hours(25), now + time::Duration::hours(1)).await;
    h.expect("history").records
}

fn arrivals(entries: &[Entry]) -> Vec<(u64, Option<&str>)> {
    entries
        .iter()
        .filter_map(|e| match e.record {
            Record::Arrival { job, .. } => Some((job, e.target.as_deref())),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn one_arrival_per_job_when_its_runner_is_requested_however_often_it_is_deferred() {
    let pools = IDLE_POOLS.replace("idle_runners_max = 20", "idle_runners_max = 20\nmax_runners = 1");
    let demand = Arc::new(MemoryDemandLog::default());
    let (p, gh, backend) = setup(&pools, demand.clone());
    let now = OffsetDateTime::now_utc();
    // The pool is at max_runners: every request waits, again and again.
    let blocker = ComputeInfo {
        created_at: Some(now),
        job_id: Some(999),
        repository: Some("octo-org/api".into()),
        ..ComputeInfo::new("auto-999", ComputeState::Running)
    };
    backend.existing.lock().expect("lock").insert(blocker.name.clone(), blocker);
    for _ in 0..20 {
        for job in 1..=5 {
            let outcome = p.provision(&message(job, "auto", now), 1).await;
            assert!(matches!(outcome, Err(ProvisionError::Deferred { .. })), "{outcome:?}");
        }
    }
    assert_eq!(arrivals(&entries(&*demand, "auto").await), [], "no runner requested, no arrival");
    // A slot frees: a job that no longer needs a runner records nothing; job 1 gets its
    // runner and one arrival, at its registration target; a redelivery adds none.
    backend.existing.lock().expect("lock").remove("auto-999");
    gh.jobs.lock().expect("lock").insert(3, Ok(JobState::Completed));
    assert!(matches!(p.provision(&message(3, "auto", now), 1).await, Ok(ProvisionOutcome::Skipped { .. })));
    assert!(matches!(p.provision(&message(1, "auto", now), 1).await, Ok(ProvisionOutcome::Created { .. })));
    assert!(matches!(p.provision(&message(1, "auto", now), 1).await, Ok(ProvisionOutcome::AlreadyExists)));
    assert!(matches!(p.provision(&message(1, "auto", now), 2).await, Ok(ProvisionOutcome::AlreadyExists)));
    assert!(matches!(p.provision(&message(2, "auto", now), 1).await, Err(ProvisionError::Deferred { .. })));
    assert_eq!(arrivals(&entries(&*demand, "auto").await), [(1, Some("octo-org"))]);
}

#[tokio::test]
async fn jobs_dated_in_2099_are_recorded_at_their_receive_time_and_keep_the_current_bucket() {
    let dir = tempfile::tempdir().expect("dir");
    let log: Arc<dyn DemandLog> = Arc::new(FileDemandLog::new(dir.path()));
    let (p, _, _) = setup(IDLE_POOLS, log.clone());
    let now = OffsetDateTime::now_utc();
    assert!(matches!(p.provision(&message(1, "auto", now), 1).await, Ok(ProvisionOutcome::Created { .. })));
    let future = OffsetDateTime::parse("2099-01-01T00:00:00Z", &Rfc3339).expect("time");
    for job in 0..18u64 {
        let at = future + time::Duration::minutes(10 * i64::try_from(job).expect("small"));
        assert!(matches!(p.provision(&message(100 + job, "auto", at), 1).await, Ok(ProvisionOutcome::Created { .. })));
    }
    let after = OffsetDateTime::now_utc();
    let h = history(&*log, "auto", now - time::Duration::hours(1), after).await.expect("history");
    assert_eq!(arrivals(&h.records).len(), 19, "every arrival, the first one included");
    for e in &h.records {
        let Record::Arrival { at, .. } = e.record else { continue };
        assert!((now.unix_timestamp()..=after.unix_timestamp()).contains(&at), "{e:?}");
    }
    // Nothing was written to a bucket far from now.
    for file in std::fs::read_dir(dir.path().join("demand").join("auto")).expect("dir") {
        let name = file.expect("entry").file_name().to_string_lossy().into_owned();
        let start = runner_dispatch::idle::demand::bucket_start(name.trim_end_matches(".jsonl")).expect("bucket");
        assert!((start - now).abs() < time::Duration::minutes(20), "{name}");
    }
}

fn completed(job_id: u64, pool: &str, created: &str, started: OffsetDateTime) -> RunnerMessage {
    let name = format!("{}-{job_id}", if pool == "auto" { "auto" } else { "ghr" });
    RunnerMessage {
        kind: MessageKind::Cleanup,
        job_created_at: Some(created.to_owned()),
        job_started_at: Some(rfc3339(started)),
        ran_on: Some(name),
        ran_on_id: Some(77),
        ..provision_message(job_id, pool, &["self-hosted", "linux", pool])
    }
}

fn cold_samples(entries: &[Entry]) -> Vec<(u64, i64)> {
    entries
        .iter()
        .filter_map(|e| match e.record {
            Record::Started { job, queued_s, idle: false, .. } => Some((job, queued_s)),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn cold_start_samples_are_bounded_and_a_job_from_2000_moves_no_target() {
    let demand = Arc::new(MemoryDemandLog::default());
    let (p, _, _) = setup(IDLE_POOLS, demand.clone());
    let now = OffsetDateTime::now_utc();
    let ago = |m: i64| now - time::Duration::minutes(m);
    // Demand at octo-org: 30 jobs in the last five minutes.
    for job in 0..30 {
        assert!(matches!(
            p.provision(&message(500 + job, "auto", ago(1)), 1).await,
            Ok(ProvisionOutcome::Created { .. })
        ));
    }
    // A minute's cold start, recorded twice (a redelivered completed event).
    for _ in 0..2 {
        p.cleanup(&completed(1, "auto", &rfc3339(ago(10)), ago(9))).await.expect("cleanup");
    }
    let reconciler = Reconciler::new(p.clone(), false);
    let target = |status: Vec<runner_dispatch::reconcile::PoolStatus>| {
        status.into_iter().find(|s| s.pool == "auto").and_then(|s| s.idle_target_by_target.get("octo-org").cloned())
    };
    let before = target(reconciler.status().await).expect("a target");
    // A signed event dated 2000, one started in 2099, and a job that waited three hours on
    // quota (it counts as runner_boot_timeout, 15 minutes, at most).
    p.cleanup(&completed(2, "auto", "2000-01-01T00:00:00Z", ago(1))).await.expect("cleanup");
    let future = OffsetDateTime::parse("2099-01-01T00:00:00Z", &Rfc3339).expect("time");
    p.cleanup(&completed(4, "auto", &rfc3339(ago(5)), future)).await.expect("cleanup");
    p.cleanup(&completed(3, "auto", &rfc3339(ago(181)), ago(1))).await.expect("cleanup");
    let log = entries(&*demand, "auto").await;
    assert_eq!(cold_samples(&log), [(1, 60), (1, 60), (3, 900)]);
    assert!(log.iter().all(|e| e.target.as_deref() == Some("octo-org")), "{log:?}");
    let history = History::from_records(log.into_iter().map(|e| e.record).collect(), now);
    assert_eq!(history.demand().cold_start, Some(std::time::Duration::from_secs(60)), "the median of one per job");
    assert_eq!(target(reconciler.status().await), Some(before));
    let status = reconciler.status().await;
    let ttr = &status.iter().find(|s| s.pool == "auto").expect("auto").time_to_runner;
    assert_eq!((ttr.jobs, ttr.p95_s), (2, Some(60)));
}
