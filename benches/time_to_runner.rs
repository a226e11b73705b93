//! Time to runner with idle runners kept ready (issues 17, 22, 25), on simulated time.
//!
//! `cargo bench --bench time_to_runner` drives the real `Provisioner::provision`,
//! `Provisioner::cleanup` and `Reconciler::run` through their seams: GitHub
//! (`RunnerRegistry`) and ACI (`ComputeBackend`) are in-process fakes sharing one simulated
//! world, and every clock the code reads is tokio's paused clock (`Provisioner::with_clock`
//! maps it to the time of day). Hours of traffic take seconds.
//!
//! The model: Poisson arrivals of single jobs or of batches (a matrix: 10 or 50 jobs in the
//! same second) for one ACI pool, or for two pools whose labels overlap; a runner boots in a log-normal time (median
//! 45 s, p95 120 s) and then comes online; GitHub gives a queued job to an online free runner
//! (the oldest) about 2 s later (an assumption: 1.5-2.5 s), else the job waits for the next
//! runner to come online whose labels fit it; a job
//! runs 5 minutes, then its ephemeral runner deregisters, its compute ends, and the completed
//! webhook runs `cleanup` with `ran_on` = that runner; reconcile runs every 5 minutes. Not
//! simulated: API latency and errors, create quotas (ACI's limits are far above these rates),
//! webhook delivery delays, the queue between the webhook and `provision` (a request is
//! provisioned when its job is queued, retried as the queue would after a deferral).
//!
//! The lanes (issue 25): the same traffic at 10 jobs/min on a `vm` pool, whose VMs take
//! longer to boot (log-normal, median 120 s, p95 240 s: an assumption from a Microsoft
//! figure, BENCHMARKS.md cites it), cold and with idle runners, beside ACI; compute-minutes
//! per job (compute that exists, from create to delete) priced at list prices. Batch from
//! zero nodes is not simulated: its row states the design's 5-15 minutes and prices one node
//! per job.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashSet, VecDeque};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use runner_dispatch::backends::Backends;
use runner_dispatch::compute::{
    ComputeBackend, ComputeInfo, ComputeRequest, ComputeState, CreateOutcome, ProvisionError,
};
use runner_dispatch::config::{Pool, PoolsConfig};
use runner_dispatch::github::{
    Delivery, GitHubError, JitConfig, JobContext, JobState, RegistrationToken, RunnerDeletion, RunnerInfo,
    RunnerRegistry,
};
use runner_dispatch::idle::demand::MemoryDemandLog;
use runner_dispatch::message::{MESSAGE_VERSION, MessageKind, RunnerMessage};
use runner_dispatch::provision::Provisioner;
use runner_dispatch::reconcile::{PERIOD, Reconciler};
use runner_dispatch::testing::sim::{BootModel, assign_delay};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::sync::Notify;
use tokio::time::Instant;

/// Traffic before the measured window (the auto target needs ten minutes of history).
const WARM_UP: Duration = Duration::from_secs(30 * 60);
const MEASURED: Duration = Duration::from_secs(2 * 3600);
/// After the last arrival: time for the last jobs to be assigned (else they are lost).
const DRAIN: Duration = Duration::from_secs(20 * 60);
const JOB_RUNS: Duration = Duration::from_secs(5 * 60);
/// The decay scenario: this long busy, then this long without jobs.
const DECAY_BUSY: Duration = Duration::from_secs(3600);
const DECAY_QUIET: Duration = Duration::from_secs(3600);

/// The second pool of the two-pool cases: its labels are a superset of the first's, so
/// its runners also fit the first pool's jobs (GitHub gives them any job they fit).
const BIG_LABEL: &str = "big";
/// In the two-pool cases, this share of jobs asks for the second pool's label.
const BIG_SHARE: f64 = 0.3;

fn pools_text(idle: &str, two_pools: bool, lane: Lane) -> String {
    let mut text = String::from(
        r#"
[github]
allowed_owners = ["octo-org"]
token_mode = "jit"
check_job_queued = "stale"
"#,
    );
    let _ = writeln!(text, "{}{idle}", lane.pool());
    if two_pools {
        let _ = write!(
            text,
            r#"
[[pools]]
name = "aci-big"
backend = "aci"
name_prefix = "ghb"
labels = ["self-hosted", "linux", "aci", "{BIG_LABEL}"]
image = "example.azurecr.io/runner:1"
cpu = 4
{idle}
"#
        );
    }
    text
}

/// Which backend the simulated pool uses, and so how long its compute takes to boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lane {
    /// ACI container groups ([`BootModel::ACI`]).
    Aci,
    /// A fresh VM per job ([`BootModel::VM`]).
    Vm,
}

impl Lane {
    fn name(self) -> &'static str {
        match self {
            Lane::Aci => "aci",
            Lane::Vm => "vm",
        }
    }

    /// Create to runner online.
    fn boot(self) -> BootModel {
        match self {
            Lane::Aci => BootModel::ACI,
            Lane::Vm => BootModel::VM,
        }
    }

    /// The first pool's table (the idle keys follow it).
    fn pool(self) -> &'static str {
        match self {
            Lane::Aci => {
                r#"
[[pools]]
name = "aci"
backend = "aci"
labels = ["self-hosted", "linux", "aci"]
image = "example.azurecr.io/runner:1"
"#
            }
            Lane::Vm => {
                r#"
[[pools]]
name = "vm"
backend = "vm"
labels = ["self-hosted", "linux", "docker"]
image = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-runners/providers/Microsoft.Compute/galleries/runners/images/docker-runner"
vm_size = "Standard_D2ads_v5"
resource_group = "rg-runners"
location = "westeurope"
subnet_id = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-runners/providers/Microsoft.Network/virtualNetworks/vnet/subnets/vm-runners"
runner_group_id = 7
"#
            }
        }
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A runner registration at GitHub.
struct Reg {
    name: String,
    online: bool,
    busy: bool,
    /// GitHub has chosen it for a job (assigned in about 2 s): not free, not deletable.
    reserved: bool,
    /// Whether it carries the second pool's label (it fits every job).
    big: bool,
}

#[derive(Default)]
struct Job {
    queued: u64,
    /// Asks for the second pool's label (only its runners fit it).
    big: bool,
    /// A free runner was online when it was queued.
    found_ready: bool,
    assigned: Option<u64>,
    times_assigned: u32,
    runner: Option<(String, u64)>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    Arrival,
    Boot(String),
    Assign { job: u64, reg: u64 },
    Complete { job: u64, reg: u64 },
    Retry { job: u64, attempt: u32 },
    Reconcile,
}

/// GitHub, ACI and the jobs, in simulated milliseconds since the start.
struct World {
    start: Instant,
    /// Boots and assignment delays.
    rng: StdRng,
    /// Arrivals alone: every configuration at one rate sees the same jobs.
    arrivals: StdRng,
    seq: u64,
    events: BinaryHeap<Reverse<(u64, u64, Event)>>,
    computes: BTreeMap<String, ComputeInfo>,
    ever_created: HashSet<String>,
    regs: BTreeMap<u64, Reg>,
    next_reg: u64,
    next_job: u64,
    jobs: BTreeMap<u64, Job>,
    waiting: VecDeque<u64>,
    /// Arrivals stop here.
    arrivals_end: u64,
    /// Mean milliseconds between arrivals (of batches).
    gap_ms: f64,
    /// Jobs per arrival.
    batch: usize,
    /// Whether jobs go to two pools (a share asks for [`BIG_LABEL`]).
    two_pools: bool,
    window: (u64, u64),
    /// The lane's boot time.
    boot: BootModel,
    idle_runner_ms: f64,
    /// Compute that exists (booting, running, finished until deleted), integrated over the
    /// window: what a VM is billed for.
    compute_ms: f64,
    last_tick: u64,
    creates: usize,
    github_calls: usize,
    duplicate_creates: usize,
    given_up: usize,
    /// After each reconcile pass: when it started and the idle capacity it left.
    passes: Vec<(u64, usize)>,
}

impl World {
    fn now(&self) -> u64 {
        ms(Instant::now() - self.start)
    }

    fn in_window(&self) -> bool {
        (self.window.0..self.window.1).contains(&self.now())
    }

    fn push(&mut self, at: u64, event: Event) {
        self.seq += 1;
        self.events.push(Reverse((at, self.seq, event)));
    }

    /// Adds idle runner-time up to now (only inside the measured window).
    fn tick(&mut self) {
        let now = self.now();
        let (from, to) = (self.last_tick.max(self.window.0), now.min(self.window.1));
        if to > from {
            let idle = self.regs.values().filter(|r| r.online && !r.busy).count();
            self.idle_runner_ms += idle as f64 * (to - from) as f64;
            self.compute_ms += self.computes.len() as f64 * (to - from) as f64;
        }
        self.last_tick = now;
    }

    /// Runners online and free, plus runners booting: what the pool pays for without a job.
    fn idle_capacity(&self) -> usize {
        let idle = self.regs.values().filter(|r| r.online && !r.busy).count();
        idle + self.computes.values().filter(|c| c.state == ComputeState::Pending).count()
    }

    fn boot_time(&mut self) -> Duration {
        self.boot.sample(&mut self.rng)
    }

    /// GitHub matches waiting jobs, oldest first, to free online runners whose labels fit
    /// them, oldest registration first.
    fn match_jobs(&mut self) {
        // Free runners, oldest registration first (most of the time there are none).
        let mut free: Vec<(u64, bool)> =
            self.regs.iter().filter(|(_, r)| r.online && !r.busy && !r.reserved).map(|(id, r)| (*id, r.big)).collect();
        let now = self.now();
        let mut i = 0;
        while i < self.waiting.len() && !free.is_empty() {
            let job = self.waiting[i];
            let (big, queued) = self.jobs.get(&job).map_or((false, 0), |j| (j.big, j.queued));
            let Some(k) = free.iter().position(|(_, runner_big)| *runner_big || !big) else {
                i += 1;
                continue;
            };
            let (id, _) = free.remove(k);
            if let Some(reg) = self.regs.get_mut(&id) {
                reg.reserved = true;
            }
            self.waiting.remove(i);
            if queued == now {
                if let Some(j) = self.jobs.get_mut(&job) {
                    j.found_ready = true;
                }
            }
            let at = now + ms(assign_delay(&mut self.rng));
            self.push(at, Event::Assign { job, reg: id });
        }
    }
}

struct Shared {
    world: Mutex<World>,
    notify: Notify,
}

impl Shared {
    fn world(&self) -> MutexGuard<'_, World> {
        self.world.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Schedules an event from a task and wakes the event loop.
    fn schedule(&self, after: Duration, event: Event) {
        let mut w = self.world();
        let at = w.now() + ms(after);
        w.push(at, event);
        drop(w);
        self.notify.notify_one();
    }

    /// One GitHub API call, counted inside the measured window.
    fn github(&self) -> MutexGuard<'_, World> {
        let mut w = self.world();
        if w.in_window() {
            w.github_calls += 1;
        }
        w
    }
}

/// GitHub at the `RunnerRegistry` seam.
struct FakeGitHub(Arc<Shared>);

fn runner_info(id: u64, r: &Reg) -> RunnerInfo {
    RunnerInfo { id, name: r.name.clone(), online: r.online, busy: r.busy, labels: Vec::new() }
}

#[async_trait]
impl RunnerRegistry for FakeGitHub {
    async fn generate_jit_config(
        &self,
        _job: &JobContext,
        name: &str,
        labels: &[String],
        _group: u64,
    ) -> Result<JitConfig, GitHubError> {
        let mut w = self.0.github();
        if w.regs.values().any(|r| r.name == name) {
            return Err(GitHubError::Conflict(format!("runner {name} already exists")));
        }
        w.next_reg += 1;
        let id = w.next_reg;
        let big = labels.iter().any(|l| l == BIG_LABEL);
        w.regs.insert(id, Reg { name: name.to_owned(), online: false, busy: false, reserved: false, big });
        Ok(JitConfig { runner_id: id, encoded_jit_config: format!("jit-{name}").into() })
    }

    async fn registration_token(&self, _job: &JobContext) -> Result<RegistrationToken, GitHubError> {
        Err(GitHubError::Permanent("the simulation runs in JIT mode".into()))
    }

    async fn find_runner(&self, _job: &JobContext, name: &str) -> Result<Option<RunnerInfo>, GitHubError> {
        let w = self.0.github();
        Ok(w.regs.iter().find(|(_, r)| r.name == name).map(|(id, r)| runner_info(*id, r)))
    }

    async fn list_runners(&self, _job: &JobContext) -> Result<Vec<RunnerInfo>, GitHubError> {
        let w = self.0.github();
        Ok(w.regs.iter().map(|(id, r)| runner_info(*id, r)).collect())
    }

    async fn delete_runner(&self, _job: &JobContext, runner_id: u64) -> Result<RunnerDeletion, GitHubError> {
        let mut w = self.0.github();
        w.tick();
        Ok(match w.regs.get(&runner_id) {
            None => RunnerDeletion::NotFound,
            Some(r) if r.busy || r.reserved => RunnerDeletion::Busy,
            Some(_) => {
                w.regs.remove(&runner_id);
                RunnerDeletion::Deleted
            }
        })
    }

    async fn job_state(&self, _job: &JobContext, job_id: u64) -> Result<JobState, GitHubError> {
        let w = self.0.github();
        Ok(match w.jobs.get(&job_id).map(|j| (j.assigned.is_some(), j.runner.clone())) {
            None | Some((false, _)) => JobState::Queued,
            Some((true, runner)) if w.regs.contains_key(&runner.as_ref().map_or(0, |r| r.1)) => {
                JobState::InProgress { runner_name: runner.map(|r| r.0) }
            }
            Some(_) => JobState::Completed,
        })
    }

    async fn list_deliveries(&self, _since: OffsetDateTime) -> Result<Vec<Delivery>, GitHubError> {
        Ok(Vec::new())
    }

    async fn redeliver(&self, _delivery_id: u64) -> Result<(), GitHubError> {
        Ok(())
    }

    fn runner_url(&self, _job: &JobContext) -> String {
        "https://github.com/octo-org".into()
    }
}

/// ACI or ARM VMs at the `ComputeBackend` seam: created compute boots, then its runner
/// comes online.
struct FakeCompute(Arc<Shared>, Lane);

#[async_trait]
impl ComputeBackend for FakeCompute {
    fn kind(&self) -> &'static str {
        self.1.name()
    }

    async fn find(&self, _pool: &Pool, name: &str) -> Result<Option<ComputeInfo>, ProvisionError> {
        Ok(self.0.world().computes.get(name).cloned())
    }

    async fn create(&self, pool: &Pool, request: &ComputeRequest) -> Result<CreateOutcome, ProvisionError> {
        let mut w = self.0.world();
        if w.computes.contains_key(&request.name) {
            return Ok(CreateOutcome::AlreadyExists);
        }
        if !w.ever_created.insert(request.name.clone()) {
            // A name made again is a duplicate unless its job still waits: a job whose runner
            // another job took is asked for again by cleanup (a new runner, not a second one).
            let waiting = match &request.purpose {
                runner_dispatch::compute::Purpose::Job(j) => {
                    w.jobs.get(&j.job_id).is_some_and(|s| s.times_assigned == 0)
                }
                runner_dispatch::compute::Purpose::Idle { .. } => false,
            };
            if !waiting {
                w.duplicate_creates += 1;
            }
        }
        if w.in_window() {
            w.creates += 1;
        }
        let info = ComputeInfo {
            created_at: Some(sim_time(&w)),
            ..ComputeInfo::requested(pool, request, ComputeState::Pending)
        };
        w.computes.insert(request.name.clone(), info);
        let at = w.now() + ms(w.boot_time());
        w.push(at, Event::Boot(request.name.clone()));
        drop(w);
        self.0.notify.notify_one();
        Ok(CreateOutcome::Created)
    }

    async fn delete(&self, _pool: &Pool, name: &str) -> Result<(), ProvisionError> {
        let mut w = self.0.world();
        w.tick();
        if let Some(info) = w.computes.remove(name) {
            // The runner process goes with its container.
            if let Some(r) = info.runner_id.and_then(|id| w.regs.get_mut(&id)) {
                r.online = false;
            }
        }
        Ok(())
    }

    /// A pool's compute (ACI and ARM list by the pool's tag).
    async fn list(&self, pool: &Pool) -> Result<Vec<ComputeInfo>, ProvisionError> {
        let w = self.0.world();
        Ok(w.computes.values().filter(|c| c.pool_name() == Some(pool.name.as_str())).cloned().collect())
    }

    async fn active_count(&self, pool: &Pool) -> Result<Option<usize>, ProvisionError> {
        let w = self.0.world();
        Ok(Some(w.computes.values().filter(|c| c.pool_name() == Some(pool.name.as_str())).count()))
    }
}

/// The time of day at simulated `now` (a fixed Wednesday morning, outside any window).
fn base() -> OffsetDateTime {
    OffsetDateTime::parse("2026-12-02T06:00:00Z", &Rfc3339).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

fn sim_time(w: &World) -> OffsetDateTime {
    base() + Duration::from_millis(w.now())
}

fn rfc3339(at_ms: u64) -> Option<String> {
    (base() + Duration::from_millis(at_ms)).format(&Rfc3339).ok()
}

#[derive(Debug, Clone, Copy)]
enum Idle {
    Off,
    Fixed(u32),
    Auto { max: u32 },
}

impl Idle {
    fn keys(self) -> String {
        match self {
            Idle::Off => String::new(),
            Idle::Fixed(n) => format!("idle_runners = {n}"),
            Idle::Auto { max } => format!("idle_runners = \"auto\"\nidle_runners_max = {max}"),
        }
    }

    fn label(self) -> String {
        match self {
            Idle::Off => "idle_runners = 0".into(),
            Idle::Fixed(n) => format!("idle_runners = {n}"),
            Idle::Auto { max } => format!("auto (max {max})"),
        }
    }
}

struct Sim {
    shared: Arc<Shared>,
    provisioner: Arc<Provisioner>,
    reconciler: Reconciler,
    /// The first pool, and the second in the two-pool cases.
    pool: Arc<Pool>,
    big: Option<Arc<Pool>>,
}

impl Sim {
    fn message(&self, job: u64, kind: MessageKind) -> RunnerMessage {
        let w = self.shared.world();
        let j = w.jobs.get(&job);
        let pool = match &self.big {
            Some(big) if j.is_some_and(|j| j.big) => big,
            _ => &self.pool,
        };
        RunnerMessage {
            v: MESSAGE_VERSION,
            kind,
            job_id: job,
            run_id: job,
            repository: "octo-org/api".into(),
            owner: "octo-org".into(),
            installation_id: None,
            labels: pool.labels.clone(),
            pool: pool.name.clone(),
            runner_name: pool.runner_name(job),
            delivery_id: format!("d-{job}"),
            job_created_at: j.and_then(|j| rfc3339(j.queued)),
            ran_on: j.and_then(|j| j.runner.as_ref().map(|r| r.0.clone())),
            ran_on_id: j.and_then(|j| j.runner.as_ref().map(|r| r.1)),
            job_started_at: j.and_then(|j| j.assigned.and_then(rfc3339)),
            origin: None,
        }
    }

    /// A provision request, retried as the queue would.
    async fn provision(self: Arc<Self>, job: u64, attempt: u32) {
        let msg = self.message(job, MessageKind::Provision);
        match self.provisioner.provision(&msg, attempt).await {
            Ok(_) => {}
            Err(ProvisionError::Deferred { retry_after, .. }) => {
                self.shared.schedule(retry_after, Event::Retry { job, attempt });
            }
            Err(ProvisionError::Retryable { retry_after, .. }) => {
                let after = retry_after.unwrap_or(Duration::from_secs(10));
                self.shared.schedule(after, Event::Retry { job, attempt: attempt + 1 });
            }
            Err(ProvisionError::Permanent { .. }) => self.shared.world().given_up += 1,
        }
    }

    async fn cleanup(self: Arc<Self>, job: u64) {
        let msg = self.message(job, MessageKind::Cleanup);
        match self.provisioner.cleanup(&msg).await {
            // A job whose runner this one took, still waiting: asked for again, as the
            // cleanup trigger's runner-requests output (or the spool) would.
            Ok(cleaned) => {
                for request in cleaned.requests {
                    tokio::spawn(self.clone().provision(request.job_id, 1));
                }
            }
            Err(_) => self.shared.schedule(Duration::from_secs(10), Event::Complete { job, reg: 0 }),
        }
    }

    async fn reconcile(self: Arc<Self>) {
        let started = self.shared.world().now();
        let report = self.reconciler.run().await;
        if std::env::var_os("RD_SIM_TRACE").is_some() {
            self.trace_pass(started, &report).await;
        }
        let mut w = self.shared.world();
        let capacity = w.idle_capacity();
        w.passes.push((started, capacity));
    }

    /// `RD_SIM_TRACE=1`: one line per reconcile pass (demand as reconcile reads it, runners).
    async fn trace_pass(&self, started: u64, report: &runner_dispatch::reconcile::ReconcileReport) {
        let now = self.provisioner.now();
        let since = now - runner_dispatch::idle::demand::HISTORY;
        let history =
            runner_dispatch::idle::demand::history(&*self.provisioner.demand, &self.pool.name, since, now).await;
        let d = history.unwrap_or_default().demand();
        let w = self.shared.world();
        let count = |f: &dyn Fn(&Reg) -> bool| w.regs.values().filter(|r| f(r)).count();
        eprintln!(
            "t={:.0} min: {:.1} jobs/min, cold start {:?}; idle {}, booting {}, busy {}, waiting {}; made {}, trimmed {}",
            started as f64 / 60_000.0,
            d.arrivals_per_minute,
            d.cold_start,
            count(&|r| r.online && !r.busy),
            w.computes.values().filter(|c| c.state == ComputeState::Pending).count(),
            count(&|r| r.busy),
            w.waiting.len(),
            report.idle_created,
            report.idle,
        );
    }

    /// Applies one event to the world; calls into runner-dispatch run as tasks.
    fn handle(self: &Arc<Self>, event: Event) {
        let mut w = self.shared.world();
        w.tick();
        let now = w.now();
        match event {
            Event::Arrival => {
                if now >= w.arrivals_end {
                    return;
                }
                let mut batch = Vec::new();
                for _ in 0..w.batch {
                    w.next_job += 1;
                    let job = w.next_job;
                    let big = w.two_pools && w.arrivals.random::<f64>() < BIG_SHARE;
                    w.jobs.insert(job, Job { queued: now, big, ..Job::default() });
                    w.waiting.push_back(job);
                    batch.push(job);
                }
                w.match_jobs();
                let gap = -w.gap_ms * (1.0 - w.arrivals.random::<f64>()).ln();
                w.push(now + gap as u64, Event::Arrival);
                drop(w);
                for job in batch {
                    tokio::spawn(self.clone().provision(job, 1));
                }
            }
            Event::Boot(name) => {
                let Some(info) = w.computes.get_mut(&name).filter(|c| c.state == ComputeState::Pending) else {
                    return;
                };
                info.state = ComputeState::Running;
                if let Some(r) = info.runner_id.and_then(|id| w.regs.get_mut(&id)) {
                    r.online = true;
                }
                w.match_jobs();
            }
            Event::Assign { job, reg } => {
                let Some(r) = w.regs.get_mut(&reg).filter(|r| r.online) else {
                    // The runner went before GitHub handed it the job: back in line.
                    w.waiting.push_front(job);
                    w.match_jobs();
                    return;
                };
                (r.busy, r.reserved) = (true, false);
                let name = r.name.clone();
                let j = w.jobs.entry(job).or_default();
                j.times_assigned += 1;
                if j.assigned.is_none() {
                    j.assigned = Some(now);
                    j.runner = Some((name, reg));
                }
                w.push(now + ms(JOB_RUNS), Event::Complete { job, reg });
            }
            Event::Complete { job, reg } => {
                // The ephemeral runner deregisters and its container exits.
                if let Some(r) = w.regs.remove(&reg) {
                    if let Some(c) = w.computes.get_mut(&r.name) {
                        c.state = ComputeState::Succeeded;
                    }
                }
                drop(w);
                tokio::spawn(self.clone().cleanup(job));
            }
            Event::Retry { job, attempt } => {
                drop(w);
                tokio::spawn(self.clone().provision(job, attempt));
            }
            Event::Reconcile => {
                w.push(now + ms(PERIOD), Event::Reconcile);
                drop(w);
                tokio::spawn(self.clone().reconcile());
            }
        }
    }
}

/// What one run measured.
struct Outcome {
    jobs: usize,
    /// Queued to assigned, seconds, of the jobs queued in the measured window.
    waits: Vec<f64>,
    /// Of those, the jobs that found a free runner online when they were queued.
    found_ready: usize,
    idle_runner_minutes: f64,
    compute_minutes: f64,
    creates: usize,
    github_calls: usize,
    duplicates: usize,
    lost: usize,
    given_up: usize,
    arrivals_end: u64,
    passes: Vec<(u64, usize)>,
}

impl Outcome {
    fn per_job(&self, n: f64) -> f64 {
        n / self.jobs.max(1) as f64
    }

    fn percentile(&self, p: f64) -> f64 {
        let mut w = self.waits.clone();
        w.sort_by(f64::total_cmp);
        let rank = ((p * w.len() as f64).ceil() as usize).clamp(1, w.len().max(1));
        w.get(rank - 1).copied().unwrap_or(f64::NAN)
    }

    /// Reconcile passes after the last arrival until idle capacity is at the floor (0),
    /// and the capacity each pass left.
    fn decay(&self) -> (Option<usize>, Vec<usize>) {
        let after: Vec<usize> = self.passes.iter().filter(|(t, _)| *t >= self.arrivals_end).map(|p| p.1).collect();
        (after.iter().position(|c| *c == 0).map(|i| i + 1), after)
    }
}

/// The traffic of one case.
#[derive(Debug, Clone, Copy)]
struct Traffic {
    jobs_per_minute: f64,
    /// Jobs per arrival (1: Poisson arrivals of single jobs; more: batches at the same mean).
    batch: usize,
    two_pools: bool,
    lane: Lane,
}

impl Traffic {
    const fn poisson(jobs_per_minute: f64) -> Self {
        Self { jobs_per_minute, batch: 1, two_pools: false, lane: Lane::Aci }
    }

    fn label(self) -> String {
        let mut s = if self.batch == 1 { "Poisson".to_owned() } else { format!("batches of {}", self.batch) };
        if self.two_pools {
            s.push_str(", two pools");
        }
        if self.lane != Lane::Aci {
            s = format!("{} lane, {s}", self.lane.name());
        }
        s
    }
}

/// Simulates `traffic` for `busy`, then nothing for `quiet`; measures `window`.
async fn simulate(
    idle: Idle,
    traffic: Traffic,
    busy: Duration,
    quiet: Duration,
    window: (Duration, Duration),
) -> Outcome {
    let jobs_per_minute = traffic.jobs_per_minute;
    // One seed per traffic: every configuration sees the same arrivals and boot times drawn in order.
    let seed = jobs_per_minute.to_bits() ^ (traffic.batch as u64 - 1) << 48 ^ u64::from(traffic.two_pools) << 56;
    let pools = Arc::new(
        PoolsConfig::parse(&pools_text(&idle.keys(), traffic.two_pools, traffic.lane))
            .expect("the simulated pools parse"),
    );
    let pool = pools.pools[0].clone();
    let big = pools.pools.get(1).cloned();
    let start = Instant::now();
    let shared = Arc::new(Shared {
        world: Mutex::new(World {
            start,
            rng: StdRng::seed_from_u64(seed),
            arrivals: StdRng::seed_from_u64(seed ^ 0x5eed),
            seq: 0,
            events: BinaryHeap::new(),
            computes: BTreeMap::new(),
            ever_created: HashSet::new(),
            regs: BTreeMap::new(),
            next_reg: 0,
            next_job: 1_000,
            jobs: BTreeMap::new(),
            waiting: VecDeque::new(),
            arrivals_end: ms(busy),
            gap_ms: 60_000.0 * traffic.batch as f64 / jobs_per_minute,
            batch: traffic.batch,
            two_pools: traffic.two_pools,
            window: (ms(window.0), ms(window.0 + window.1)),
            boot: traffic.lane.boot(),
            idle_runner_ms: 0.0,
            compute_ms: 0.0,
            last_tick: 0,
            creates: 0,
            github_calls: 0,
            duplicate_creates: 0,
            given_up: 0,
            passes: Vec::new(),
        }),
        notify: Notify::new(),
    });
    let clock_start = start;
    let provisioner = Arc::new(
        Provisioner::new(
            pools,
            Arc::new(FakeGitHub(shared.clone())),
            Backends::single(Arc::new(FakeCompute(shared.clone(), traffic.lane))),
        )
        .with_demand_log(Arc::new(MemoryDemandLog::default()))
        .with_clock(Arc::new(move || base() + (Instant::now() - clock_start))),
    );
    let sim = Arc::new(Sim { reconciler: Reconciler::new(provisioner.clone(), false), provisioner, pool, big, shared });
    {
        let mut w = sim.shared.world();
        w.push(0, Event::Arrival);
        w.push(ms(PERIOD), Event::Reconcile);
    }
    let end = ms(busy + quiet);
    loop {
        let next = sim.shared.world().events.peek().map(|Reverse((t, _, _))| *t);
        let Some(at) = next.filter(|t| *t <= end) else { break };
        tokio::select! {
            () = tokio::time::sleep_until(start + Duration::from_millis(at)) => {}
            () = sim.shared.notify.notified() => continue,
        }
        loop {
            let due = {
                let mut w = sim.shared.world();
                let now = w.now();
                match w.events.peek() {
                    Some(Reverse((t, _, _))) if *t <= now => w.events.pop().map(|Reverse((_, _, e))| e),
                    _ => None,
                }
            };
            let Some(event) = due else { break };
            sim.handle(event);
        }
    }
    let mut w = sim.shared.world();
    w.tick();
    if std::env::var_os("RD_SIM_TRACE").is_some() {
        for (id, j) in w.jobs.iter().filter(|(_, j)| j.assigned.is_none()) {
            let own = sim.pool.runner_name(*id);
            eprintln!(
                "lost job {id}: queued at {:.1} min, its runner {own} created: {}, exists: {}",
                j.queued as f64 / 60_000.0,
                w.ever_created.contains(&own),
                w.computes.contains_key(&own)
            );
        }
    }
    let (from, to) = w.window;
    let measured: Vec<&Job> = w.jobs.values().filter(|j| (from..to).contains(&j.queued)).collect();
    Outcome {
        jobs: measured.len(),
        waits: measured.iter().filter_map(|j| j.assigned.map(|a| (a - j.queued) as f64 / 1000.0)).collect(),
        found_ready: measured.iter().filter(|j| j.found_ready).count(),
        idle_runner_minutes: w.idle_runner_ms / 60_000.0,
        compute_minutes: w.compute_ms / 60_000.0,
        creates: w.creates,
        github_calls: w.github_calls,
        duplicates: w.duplicate_creates + w.jobs.values().filter(|j| j.times_assigned > 1).count(),
        lost: w.jobs.values().filter(|j| j.assigned.is_none()).count(),
        given_up: w.given_up,
        arrivals_end: w.arrivals_end,
        passes: std::mem::take(&mut w.passes),
    }
}

fn run(idle: Idle, traffic: Traffic, busy: Duration, quiet: Duration, window: (Duration, Duration)) -> Outcome {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a paused runtime");
    runtime.block_on(simulate(idle, traffic, busy, quiet, window))
}

/// A goal, what was measured, and whether it holds.
type Goal = (String, String, bool);

/// One measured case: its row of the table, and its figures for the goals.
struct Row {
    p50: f64,
    p95: f64,
    idle_per_job: f64,
    /// Minutes of compute that existed per job (boot, job, idle, until deleted).
    billed_per_job: f64,
    runners_per_job: f64,
    /// Duplicates and lost jobs.
    faults: (usize, usize),
    line: String,
}

fn measure(idle: Idle, traffic: Traffic) -> Row {
    let o = run(idle, traffic, WARM_UP + MEASURED, DRAIN, (WARM_UP, MEASURED));
    let (p50, p95) = (o.percentile(0.50), o.percentile(0.95));
    let idle_per_job = o.per_job(o.idle_runner_minutes);
    let runners_per_job = o.per_job(o.creates as f64);
    let line = format!(
        "| {} | {} | {} | {} | {p50:.1} | {p95:.1} | {:.0} % | {idle_per_job:.2} | {runners_per_job:.3} | {:.2} | {} | {} |",
        traffic.label(),
        traffic.jobs_per_minute,
        idle.label(),
        o.jobs,
        100.0 * o.per_job(o.found_ready as f64),
        o.per_job(o.github_calls as f64),
        o.duplicates,
        o.lost + o.given_up,
    );
    let billed_per_job = o.per_job(o.compute_minutes);
    Row { p50, p95, idle_per_job, billed_per_job, runners_per_job, faults: (o.duplicates, o.lost + o.given_up), line }
}

/// List prices (pay-as-you-go, Linux), the assumptions of the cost columns: BENCHMARKS.md
/// says where they come from. ACI per vCPU-second and per GB-second; VMs per hour.
const ACI_VCPU_S: f64 = 0.000_013_5;
const ACI_GB_S: f64 = 0.000_001_5;
/// The simulated ACI pool's size (the `aci` backend's defaults).
const ACI_VCPU: f64 = 2.0;
const ACI_GB: f64 = 4.0;
/// Standard_D2ads_v5 (2 vCPU, 8 GiB), regular and Spot.
const VM_HOUR: f64 = 0.103;
const VM_SPOT_HOUR: f64 = 0.0124;
/// A Batch node from zero, one task per node: the node boots (the VM model's median), runs
/// the 5-minute job, and is removed at the next autoscale evaluation (2.5 minutes later on
/// average). Not simulated.
const BATCH_NODE_MIN_PER_JOB: f64 = BootModel::VM.median_s / 60.0 + 5.0 + 2.5;

impl Lane {
    /// What `minutes` of this lane's compute cost: (list price, Spot), in USD.
    fn cost(self, minutes: f64) -> (f64, Option<f64>) {
        match self {
            Lane::Aci => (minutes * 60.0 * (ACI_VCPU * ACI_VCPU_S + ACI_GB * ACI_GB_S), None),
            Lane::Vm => (minutes * VM_HOUR / 60.0, Some(minutes * VM_SPOT_HOUR / 60.0)),
        }
    }
}

/// Issue 25: the ACI and VM lanes at 10 Poisson jobs a minute, cold and with `"auto"`: time
/// to runner, idle runner-minutes and compute-minutes per job, and cost per job; Batch from
/// zero by its stated model. Adds the issue's goal rows to `goals`.
fn lanes(auto: Idle, wanted: &dyn Fn(&str) -> bool, goals: &mut Vec<Goal>) -> String {
    let mut table = String::from(
        "| lane | idle runners | p50 s | p95 s | found a ready runner | idle runner-min/job | compute-min/job | cost/job, list | cost/job, Spot |\n|---|---|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    let mut cold_p95: BTreeMap<&str, f64> = BTreeMap::new();
    let mut stated: Vec<String> = Vec::new();
    for lane in [Lane::Aci, Lane::Vm] {
        // For the VM lane, also fixed levels: what it takes to meet the goal `"auto"` misses.
        let levels: &[Idle] =
            if lane == Lane::Vm { &[Idle::Off, auto, Idle::Fixed(30), Idle::Fixed(40)] } else { &[Idle::Off, auto] };
        for &idle in levels {
            let name = format!("lane {}: {}", lane.name(), idle.label());
            if !wanted(&name) {
                continue;
            }
            let row = measure(idle, Traffic { lane, ..Traffic::poisson(10.0) });
            let (list, spot) = lane.cost(row.billed_per_job);
            let figures: Vec<&str> = row.line.split(" | ").skip(4).take(4).collect();
            let _ = writeln!(
                table,
                "| {} | {} | {} | {:.2} | ${list:.4} | {} |",
                lane.name(),
                idle.label(),
                figures.join(" | "),
                row.billed_per_job,
                spot.map_or("–".into(), |s| format!("${s:.4}")),
            );
            eprintln!("  {name}: done");
            stated.push(format!(
                "{} {}: ${list:.4}{}",
                lane.name(),
                idle.label(),
                spot.map_or(String::new(), |s| format!(" (Spot ${s:.4})"))
            ));
            if matches!(idle, Idle::Off) {
                cold_p95.insert(lane.name(), row.p95);
            }
            if lane == Lane::Vm && matches!(idle, Idle::Off) {
                let aci = cold_p95.get("aci").copied().unwrap_or(f64::NAN);
                goals.push((
                    format!("vm lane, cold, Poisson at 10/min: p95 ≤ 2 × ACI's cold p95 ({aci:.1} s)"),
                    format!("{:.1} s ({:.2} ×)", row.p95, row.p95 / aci),
                    row.p95 <= 2.0 * aci,
                ));
            }
            if lane == Lane::Vm && matches!(idle, Idle::Auto { .. }) {
                goals.push((
                    format!("vm lane, {}, Poisson at 10/min: p95 ≤ 5 s", idle.label()),
                    format!("{:.1} s", row.p95),
                    row.p95 <= 5.0,
                ));
            }
        }
    }
    let batch = (BATCH_NODE_MIN_PER_JOB * VM_HOUR / 60.0, BATCH_NODE_MIN_PER_JOB * VM_SPOT_HOUR / 60.0);
    let _ = writeln!(
        table,
        "| batch (pool at zero nodes; not simulated) | idle_runners = 0 | 5-15 min | | | | {BATCH_NODE_MIN_PER_JOB:.2} | ${:.4} | ${:.4} |",
        batch.0, batch.1
    );
    stated.push(format!("batch from zero: ${:.4} (Spot ${:.4})", batch.0, batch.1));
    goals.push(("cost per job stated for the three lanes (5-minute job, list prices)".into(), stated.join("; "), true));
    table
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` does not: stay out of tests.
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("time-to-runner simulation: run with `cargo bench --bench time_to_runner`");
        return;
    }
    let wall = std::time::Instant::now();
    let auto = Idle::Auto { max: 100 };
    let batches = |batch: usize| Traffic { batch, ..Traffic::poisson(10.0) };
    let two_pools = |batch: usize| Traffic { batch, two_pools: true, ..Traffic::poisson(10.0) };
    let mut cases: Vec<(Idle, Traffic)> = Vec::new();
    for idle in [Idle::Off, Idle::Fixed(10), auto] {
        for rate in [1.0, 10.0, 60.0] {
            cases.push((idle, Traffic::poisson(rate)));
        }
    }
    for traffic in [batches(10), batches(50), two_pools(1), two_pools(10)] {
        cases.push((Idle::Off, traffic));
        cases.push((auto, traffic));
    }
    let mut table = String::from(
        "| traffic | jobs/min | idle runners | jobs | p50 s | p95 s | found a ready runner | idle runner-min/job | runners/job | GitHub calls/job | duplicates | lost |\n|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    let mut goals: Vec<Goal> = Vec::new();
    let mut p50_without: BTreeMap<String, f64> = BTreeMap::new();
    // `RD_SIM_ONLY=text`: only the cases whose name contains it (and no curve unless it matches).
    let only = std::env::var("RD_SIM_ONLY").ok();
    let wanted = |name: &str| only.as_deref().is_none_or(|o| name.contains(o));
    for (idle, traffic) in cases {
        if !wanted(&format!("{}, {} at {}/min", idle.label(), traffic.label(), traffic.jobs_per_minute)) {
            continue;
        }
        let row = measure(idle, traffic);
        let _ = writeln!(table, "{}", row.line);
        let name = format!("{}, {} at {}/min", idle.label(), traffic.label(), traffic.jobs_per_minute);
        eprintln!("  {name}: done ({:.1} s wall)", wall.elapsed().as_secs_f64());
        if matches!(idle, Idle::Off) {
            p50_without.insert(traffic.label(), row.p50);
        }
        let is_auto = matches!(idle, Idle::Auto { .. });
        if is_auto && traffic.batch == 1 && !traffic.two_pools && (traffic.jobs_per_minute - 10.0).abs() < f64::EPSILON
        {
            goals.push((format!("{name}: p95 ≤ 5 s"), format!("{:.1} s", row.p95), row.p95 <= 5.0));
            goals.push((
                format!("{name}: ≤ 1 idle runner-minute per job"),
                format!("{:.2}", row.idle_per_job),
                row.idle_per_job <= 1.0,
            ));
        }
        if is_auto && traffic.batch == 10 && !traffic.two_pools {
            goals.push((format!("{name}: p95 ≤ 15 s"), format!("{:.1} s", row.p95), row.p95 <= 15.0));
            goals.push((
                format!("{name}: ≤ 2 idle runner-minutes per job"),
                format!("{:.2}", row.idle_per_job),
                row.idle_per_job <= 2.0,
            ));
        }
        if is_auto && traffic.batch == 50 {
            let without = p50_without.get(&traffic.label()).copied().unwrap_or(f64::NAN);
            goals.push((
                format!("{name}: p50 ≤ 0.7 × the p50 without idle runners ({without:.1} s)"),
                format!("{:.1} s ({:.2} ×)", row.p50, row.p50 / without),
                row.p50 <= 0.7 * without,
            ));
        }
        goals.push((
            format!("{name}: ≤ 1.05 runners created per job"),
            format!("{:.3}", row.runners_per_job),
            row.runners_per_job <= 1.05,
        ));
        goals.push((
            format!("{name}: 0 duplicates, 0 lost"),
            format!("{} / {}", row.faults.0, row.faults.1),
            row.faults == (0, 0),
        ));
    }
    // The trade-off an operator chooses from for batches of 10: a fixed level, or "auto"
    // capped by idle_runners_max.
    let mut curve = String::from(
        "| idle runners | p50 s | p95 s | found a ready runner | idle runner-min/job | runners/job |\n|---|---:|---:|---:|---:|---:|\n",
    );
    let margins = [
        Idle::Fixed(10),
        Idle::Fixed(20),
        Idle::Fixed(30),
        Idle::Fixed(40),
        Idle::Auto { max: 15 },
        Idle::Auto { max: 20 },
        Idle::Auto { max: 25 },
        Idle::Auto { max: 30 },
        Idle::Auto { max: 40 },
        auto,
    ];
    for idle in margins {
        if !wanted(&format!("curve {}", idle.label())) {
            continue;
        }
        let row = measure(idle, batches(10));
        // The row's own columns from "p50" on.
        let figures: Vec<&str> = row.line.split(" | ").skip(4).take(5).collect();
        let _ = writeln!(curve, "| {} | {} |", idle.label(), figures.join(" | "));
        eprintln!("  curve {}: done ({:.1} s wall)", idle.label(), wall.elapsed().as_secs_f64());
    }
    let lanes = lanes(auto, &wanted, &mut goals);
    let decay = run(auto, Traffic::poisson(10.0), DECAY_BUSY, DECAY_QUIET, (Duration::ZERO, DECAY_BUSY));
    let (passes, capacity) = decay.decay();
    let trail: Vec<String> = capacity.iter().take(6).map(ToString::to_string).collect();
    goals.push((
        "auto (max 100): idle capacity at the floor (0) within 2 reconcile passes after the last job".into(),
        format!(
            "{} (idle + booting after each pass: {})",
            passes.map_or("never".into(), |p| format!("{p} passes")),
            trail.join(" → ")
        ),
        passes.is_some_and(|p| p <= 2),
    ));
    println!(
        "## Time to runner (simulated)\n\n{table}\n### Batches of 10 at 10 jobs/min: the trade-off\n\n{curve}\n### Lanes at 10 Poisson jobs/min: time to runner and cost per job\n\n{lanes}\n| goal | measured | ok |\n|---|---|---|\n{}",
        goals
            .iter()
            .map(|(what, measured, ok)| format!("| {what} | {measured} | {} |", if *ok { "ok" } else { "MISS" }))
            .collect::<Vec<_>>()
            .join("\n")
    );
    eprintln!("simulated in {:.1} s", wall.elapsed().as_secs_f64());
}
