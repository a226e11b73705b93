//! Placements (issue 18): `cargo bench --bench placements`.
//!
//! A 1,000-job burst on one ACI pool with one, two and three placements at ACI's default
//! create limits (per subscription and region: 100 in 5 minutes, 300 an hour), and a run
//! where the first of three placements answers capacity errors for its first 30 minutes.
//! It drives the real `Provisioner::provision` (its JIT pacing, create gate, held
//! registrations and deferrals) and the real placement failover
//! (`compute::placement::create_in_order`, which the ACI backend uses) on tokio's paused
//! clock. GitHub and each placement's ARM are the shared simulations of
//! `runner_dispatch::testing::sim`; the queue is a small simulated one that does what the
//! standalone queue does with an answer (done; a deferral comes back after its
//! `retry_after` as the same attempt; a retryable failure as the next attempt).
//!
//! Not simulated: ARM's HTTP (the backend's request building and error classification are
//! covered by tests against a fake ARM), the webhook side, and runner boots (a runner is
//! "requested" when its create succeeds).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use runner_dispatch::backends::Backends;
use runner_dispatch::compute::placement::{Pauses, Place, Refusal, create_in_order};
use runner_dispatch::compute::{ComputeBackend, ComputeInfo, ComputeRequest, CreateOutcome, ProvisionError};
use runner_dispatch::config::{Pool, PoolsConfig};
use runner_dispatch::message::RunnerMessage;
use runner_dispatch::provision::{Provisioner, STANDALONE_HELD_REGISTRATION_TTL};
use runner_dispatch::testing::provision_message;
use runner_dispatch::testing::sim::{ACI_CREATE_LIMITS, JitLimit, SimCompute, SimGitHub};
use tokio::time::Instant;

const JOBS: u64 = 1000;
const WORKERS: usize = 16;
const GITHUB_LATENCY: Duration = Duration::from_millis(50);
const ARM_READ: Duration = Duration::from_millis(50);
const ARM_CREATE: Duration = Duration::from_millis(300);
/// A retryable failure without `retry_after` comes back after this (the queue's backoff).
const RETRY: Duration = Duration::from_secs(10);
/// Give up simulating after this (jobs not requested by then are lost).
const HORIZON: Duration = Duration::from_secs(8 * 3600);

/// One pool over `places` simulated placements; the first answers capacity errors until
/// `outage_until`.
struct Placed {
    places: Vec<SimCompute>,
    labels: Vec<Place>,
    pauses: Pauses,
    outage_until: Option<Instant>,
}

impl Placed {
    fn new(k: usize, outage: Option<Duration>) -> Self {
        Self {
            places: (0..k).map(|_| SimCompute::new(ARM_READ, ARM_CREATE, ACI_CREATE_LIMITS)).collect(),
            labels: (0..k)
                .map(|i| Place { quota_key: format!("sub/region-{i}"), label: format!("region-{i}") })
                .collect(),
            pauses: Pauses::default(),
            outage_until: outage.map(|d| Instant::now() + d),
        }
    }
}

#[async_trait]
impl ComputeBackend for Placed {
    fn kind(&self) -> &'static str {
        "aci"
    }

    async fn find(&self, pool: &Pool, name: &str) -> Result<Option<ComputeInfo>, ProvisionError> {
        for p in &self.places {
            if let Some(info) = p.find(pool, name).await? {
                return Ok(Some(info));
            }
        }
        Ok(None)
    }

    async fn create(&self, pool: &Pool, request: &ComputeRequest) -> Result<CreateOutcome, ProvisionError> {
        create_in_order(&pool.name, &request.name, &self.labels, &self.pauses, |i| async move {
            if i == 0 && self.outage_until.is_some_and(|t| Instant::now() < t) {
                tokio::time::sleep(ARM_CREATE).await;
                return Err(Refusal::QuotaOrCapacity(ProvisionError::Retryable {
                    reason: "ServiceUnavailable: the requested resource is not available in the location".into(),
                    retry_after: None,
                }));
            }
            match self.places[i].create(pool, request).await {
                Ok(o) => Ok(o),
                Err(e @ ProvisionError::Retryable { .. }) => Err(Refusal::QuotaOrCapacity(e)),
                Err(e) => Err(Refusal::Other(e)),
            }
        })
        .await
    }

    async fn delete(&self, pool: &Pool, name: &str) -> Result<(), ProvisionError> {
        for p in &self.places {
            p.delete(pool, name).await?;
        }
        Ok(())
    }

    async fn list(&self, pool: &Pool) -> Result<Vec<ComputeInfo>, ProvisionError> {
        let mut out = Vec::new();
        for p in &self.places {
            out.extend(p.list(pool).await?);
        }
        Ok(out)
    }

    async fn active_count(&self, _pool: &Pool) -> Result<Option<usize>, ProvisionError> {
        Ok(None)
    }

    fn paused_for(&self, _pool: &Pool) -> Option<Duration> {
        if self.labels.len() < 2 {
            return None;
        }
        self.pauses.all_paused(self.labels.iter().map(|p| p.quota_key.as_str()))
    }
}

fn pools(k: usize) -> Arc<PoolsConfig> {
    let placement = if k == 1 {
        "location = \"region-0\"".to_owned()
    } else {
        let list: Vec<String> = (0..k).map(|i| format!("{{ location = \"region-{i}\" }}")).collect();
        format!("placements = [{}]", list.join(", "))
    };
    let text = format!(
        "[github]\nallowed_owners = [\"octo-org\"]\ncheck_job_queued = \"stale\"\n[defaults]\nresource_group = \"rg\"\n\
         [[pools]]\nname = \"aci\"\nbackend = \"aci\"\nlabels = [\"self-hosted\", \"linux\"]\nimage = \"example.azurecr.io/runner:1\"\n{placement}\n"
    );
    Arc::new(PoolsConfig::parse(&text).expect("bench pools"))
}

fn message(job_id: u64) -> RunnerMessage {
    RunnerMessage {
        repository: "octo-org/matrix".into(),
        installation_id: Some(1),
        delivery_id: format!("d-{job_id}"),
        ..provision_message(job_id, "aci", &["self-hosted", "linux"])
    }
}

/// The earliest time the last of `jobs` creates can happen over `k` placements under ACI's
/// sliding windows, creates spread evenly: the bound a perfect scheduler meets.
fn bound(jobs: usize, k: usize) -> Duration {
    let per_place = jobs.div_ceil(k);
    let mut times: Vec<Duration> = Vec::with_capacity(per_place);
    for j in 0..per_place {
        let mut t = Duration::ZERO;
        for (limit, window) in ACI_CREATE_LIMITS {
            if j >= *limit {
                t = t.max(times[j - limit] + *window);
            }
        }
        times.push(t);
    }
    times.last().copied().unwrap_or_default()
}

struct Outcome {
    last_requested: Duration,
    github_calls: usize,
    jit_calls: usize,
    duplicates: usize,
    lost: u64,
    by_place: Vec<usize>,
}

async fn burst(k: usize, outage: Option<Duration>) -> Outcome {
    let start = Instant::now();
    let github = Arc::new(SimGitHub::new(GITHUB_LATENCY, JitLimit::GITHUB_APP));
    let compute = Arc::new(Placed::new(k, outage));
    let provisioner = Arc::new(
        Provisioner::new(pools(k), github.clone(), Backends::single(compute.clone()))
            .with_registration_hold(STANDALONE_HELD_REGISTRATION_TTL),
    );
    let queue: Arc<Mutex<Queue>> = Arc::new(Mutex::new((1..=JOBS).map(|j| Reverse((start, j, 1))).collect()));
    let done = Arc::new(Mutex::new((0u64, Duration::ZERO, 0u64)));
    let mut workers = Vec::new();
    for _ in 0..WORKERS {
        let (queue, done, provisioner) = (queue.clone(), done.clone(), provisioner.clone());
        workers.push(tokio::spawn(async move {
            loop {
                let next = queue.lock().expect("lock").pop();
                let Some(Reverse((due, job, attempt))) = next else { return };
                if due - start > HORIZON {
                    return;
                }
                if due > Instant::now() {
                    // Not due: put it back and wait for it (or an earlier one another worker takes).
                    queue.lock().expect("lock").push(Reverse((due, job, attempt)));
                    tokio::time::sleep_until(due).await;
                    continue;
                }
                match provisioner.provision(&message(job), attempt).await {
                    Ok(_) => {
                        let mut d = done.lock().expect("lock");
                        d.0 += 1;
                        d.1 = d.1.max(Instant::now() - start);
                    }
                    Err(ProvisionError::Deferred { retry_after, .. }) => {
                        queue.lock().expect("lock").push(Reverse((Instant::now() + retry_after, job, attempt)));
                    }
                    Err(ProvisionError::Retryable { retry_after, .. }) => {
                        let at = Instant::now() + retry_after.unwrap_or(RETRY);
                        queue.lock().expect("lock").push(Reverse((at, job, attempt + 1)));
                    }
                    Err(ProvisionError::Permanent { .. }) => done.lock().expect("lock").2 += 1,
                }
            }
        }));
    }
    for w in workers {
        w.await.expect("worker");
    }
    let (requested, last, failed) = *done.lock().expect("lock");
    let counters = github.counters();
    let mut created: BTreeMap<String, usize> = BTreeMap::new();
    let mut by_place = Vec::new();
    for p in &compute.places {
        let c = p.counters();
        by_place.push(c.created.values().sum());
        for (name, n) in c.created {
            *created.entry(name).or_default() += n;
        }
    }
    Outcome {
        last_requested: last,
        github_calls: counters.jit_ok + counters.jit_rate_limited + counters.other.values().sum::<usize>(),
        jit_calls: counters.jit_ok + counters.jit_rate_limited,
        duplicates: created.values().filter(|n| **n > 1).count(),
        lost: JOBS - requested + failed,
        by_place,
    }
}

/// The simulated queue: (due, job, attempt), earliest first.
type Queue = BinaryHeap<Reverse<(Instant, u64, u32)>>;

fn minutes(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() / 60.0)
}

fn run(k: usize, outage: Option<Duration>) -> Outcome {
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().expect("runtime");
    runtime.block_on(burst(k, outage))
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let jobs = usize::try_from(JOBS).unwrap_or(usize::MAX);
    println!("## Placements: a {JOBS}-job burst at ACI's default create limits\n");
    println!(
        "| placements | last runner requested (min) | bound (min) | ratio | GitHub calls/job | JIT calls/job | duplicates | lost | creates per placement |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    let mut goals = Vec::new();
    for k in 1..=3 {
        let wall = std::time::Instant::now();
        let o = run(k, None);
        let b = bound(jobs, k);
        let ratio = o.last_requested.as_secs_f64() / b.as_secs_f64();
        let per_job = o.github_calls as f64 / JOBS as f64;
        println!(
            "| {k} | {} | {} | {ratio:.3} | {per_job:.3} | {:.3} | {} | {} | {:?} |",
            minutes(o.last_requested),
            minutes(b),
            o.jit_calls as f64 / JOBS as f64,
            o.duplicates,
            o.lost,
            o.by_place
        );
        eprintln!("  k = {k}: {:.1} s wall", wall.elapsed().as_secs_f64());
        goals.push((format!("{k} placement(s): ≤ 1.05 × bound"), format!("{ratio:.3}"), ratio <= 1.05));
        goals.push((format!("{k} placement(s): ≤ 1 GitHub call per job"), format!("{per_job:.3}"), per_job <= 1.0));
        goals.push((
            format!("{k} placement(s): 0 duplicates, 0 lost"),
            format!("{} / {}", o.duplicates, o.lost),
            o.duplicates == 0 && o.lost == 0,
        ));
    }
    let o = run(3, Some(Duration::from_secs(1800)));
    let per_job = o.github_calls as f64 / JOBS as f64;
    println!(
        "\nThree placements, the first answering capacity errors (`ServiceUnavailable`) for its first 30 minutes: \
         last runner requested at {} min (bound with three: {} min), {per_job:.3} GitHub calls per job, \
         {} duplicates, {} lost, creates per placement {:?}.\n",
        minutes(o.last_requested),
        minutes(bound(jobs, 3)),
        o.duplicates,
        o.lost,
        o.by_place
    );
    goals.push((
        "capacity outage in the first placement: every job gets a runner".into(),
        format!("{} lost", o.lost),
        o.lost == 0 && o.duplicates == 0,
    ));
    goals.push(("capacity outage: no extra GitHub call".into(), format!("{per_job:.3} calls/job"), per_job <= 1.0));
    println!("| goal | measured | ok |\n|---|---|---|");
    for (goal, measured, ok) in goals {
        println!("| {goal} | {measured} | {} |", if ok { "ok" } else { "MISS" });
    }
}
