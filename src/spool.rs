//! The standalone transport's durable queue: each accepted request is a file in
//! `--state-dir`, written and fsynced before the webhook answers 202, removed when the
//! work succeeds or is given up, and replayed at start. Given-up requests land in
//! `failed/` with their reason (the standalone twin of `runner-requests-failed`).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{Semaphore, mpsc};

use crate::message::{FailedMessage, MessageKind, RunnerMessage};

/// One spooled request with its retry state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpoolItem {
    pub message: RunnerMessage,
    /// Attempts made so far.
    pub attempts: u32,
}

/// Files under `<state-dir>/pending` and `<state-dir>/failed`.
#[derive(Debug, Clone)]
pub struct Spool {
    pending: PathBuf,
    failed: PathBuf,
}

/// The spool key of a message: one pending item per kind and runner name, so a
/// duplicate delivery does not queue the same work twice.
#[must_use]
pub fn spool_key(message: &RunnerMessage) -> String {
    let kind = match message.kind {
        MessageKind::Provision => "provision",
        MessageKind::Cleanup => "cleanup",
    };
    let safe: String = message
        .runner_name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' })
        .collect();
    format!("{kind}-{safe}")
}

fn fsync_dir(dir: &Path) -> std::io::Result<()> {
    // Directory fsync makes the rename durable on Linux; not available everywhere.
    #[cfg(unix)]
    {
        fs::File::open(dir)?.sync_all()?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// A temporary file of its own for every write: concurrent writers of one key (an App
/// hook and an org hook delivering the same job) never share, truncate or rename another's.
fn write_temp(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<PathBuf> {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!(".{name}.{}.{n}.tmp", std::process::id()));
    let mut f = fs::OpenOptions::new().write(true).create_new(true).open(&tmp)?;
    let written = f.write_all(bytes).and_then(|()| f.sync_all());
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(tmp)
}

/// Replaces `name` in `dir` with `bytes`, durably.
fn write_durably(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = write_temp(dir, name, bytes)?;
    if let Err(e) = fs::rename(&tmp, dir.join(name)) {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    fsync_dir(dir)
}

/// Creates `name` in `dir` with `bytes`, durably, only if it does not exist: the check and
/// the write are one step (a hard link fails with `AlreadyExists` atomically, where
/// `exists()` then `rename` would let two writers both think they were first).
/// Returns `false` when it already existed.
fn create_durably(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<bool> {
    let tmp = write_temp(dir, name, bytes)?;
    let linked = fs::hard_link(&tmp, dir.join(name));
    let _ = fs::remove_file(&tmp);
    match linked {
        Ok(()) => fsync_dir(dir).map(|()| true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e),
    }
}

impl Spool {
    /// Opens (creating) the spool under `state_dir`.
    ///
    /// # Errors
    /// The directories cannot be created.
    pub fn open(state_dir: &Path) -> std::io::Result<Self> {
        let pending = state_dir.join("pending");
        let failed = state_dir.join("failed");
        fs::create_dir_all(&pending)?;
        fs::create_dir_all(&failed)?;
        Ok(Self { pending, failed })
    }

    /// The spool under `state_dir` as it is, for reading only: nothing is created (a
    /// missing directory reads as empty).
    #[must_use]
    pub fn existing(state_dir: &Path) -> Self {
        Self { pending: state_dir.join("pending"), failed: state_dir.join("failed") }
    }

    /// The state directory the spool lives in.
    #[must_use]
    pub fn state_dir(&self) -> &Path {
        self.pending.parent().unwrap_or(&self.pending)
    }

    /// Writes the item durably. Returns `false` when an item with this key is already pending.
    ///
    /// # Errors
    /// Disk errors: the caller must not acknowledge the request.
    pub fn put_new(&self, item: &SpoolItem) -> std::io::Result<bool> {
        let bytes = serde_json::to_vec(item).map_err(std::io::Error::other)?;
        create_durably(&self.pending, &format!("{}.json", spool_key(&item.message)), &bytes)
    }

    /// Rewrites the item (after an attempt).
    ///
    /// # Errors
    /// Disk errors.
    pub fn update(&self, item: &SpoolItem) -> std::io::Result<()> {
        let bytes = serde_json::to_vec(item).map_err(std::io::Error::other)?;
        write_durably(&self.pending, &format!("{}.json", spool_key(&item.message)), &bytes)
    }

    /// Removes a finished item.
    ///
    /// # Errors
    /// Disk errors other than "already gone".
    pub fn remove(&self, key: &str) -> std::io::Result<()> {
        match fs::remove_file(self.pending.join(format!("{key}.json"))) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => fsync_dir(&self.pending),
        }
    }

    /// Moves a given-up item to `failed/` with its reason.
    ///
    /// # Errors
    /// Disk errors.
    pub fn fail(&self, key: &str, failed: &FailedMessage) -> std::io::Result<()> {
        let bytes = serde_json::to_vec_pretty(failed).map_err(std::io::Error::other)?;
        write_durably(&self.failed, &format!("{key}.json"), &bytes)?;
        self.remove(key)
    }

    /// Every pending item (for replay at start and the shutdown report). Unreadable files
    /// are reported and skipped, never deleted.
    #[must_use]
    pub fn pending(&self) -> Vec<SpoolItem> {
        let Ok(entries) = fs::read_dir(&self.pending) else { return Vec::new() };
        let mut items: Vec<(std::time::SystemTime, SpoolItem)> = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            match fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
            {
                Ok(item) => {
                    let mtime = entry.metadata().and_then(|m| m.modified()).unwrap_or(std::time::UNIX_EPOCH);
                    items.push((mtime, item));
                }
                Err(e) => {
                    tracing::error!(event = "spool_unreadable", path = %path.display(), error = %e, "spool file unreadable; left in place")
                }
            }
        }
        items.sort_by_key(|(t, _)| *t);
        items.into_iter().map(|(_, i)| i).collect()
    }

    /// Whether an item with the message's key is pending.
    #[must_use]
    pub fn holds(&self, message: &RunnerMessage) -> bool {
        self.pending.join(format!("{}.json", spool_key(message))).exists()
    }

    /// Given-up items.
    #[must_use]
    pub fn failed(&self) -> Vec<FailedMessage> {
        let Ok(entries) = fs::read_dir(&self.failed) else { return Vec::new() };
        entries
            .flatten()
            .filter_map(|e| fs::read(e.path()).ok())
            .filter_map(|b| serde_json::from_slice(&b).ok())
            .collect()
    }
}

use crate::disposition::{AttemptResult, Disposition, Transport, decide};

/// Runs one attempt of an item; implemented by the server over the shared handlers.
pub type Handler = Arc<
    dyn Fn(RunnerMessage, u32) -> std::pin::Pin<Box<dyn std::future::Future<Output = AttemptResult> + Send>>
        + Send
        + Sync,
>;

/// The longest a retry waits, whatever an upstream's `Retry-After` says.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(15 * 60);

/// Retry delay after `attempts` failed attempts: 2, 4, 8 ... seconds, at most `max`.
#[must_use]
pub fn backoff(attempts: u32, base: Duration, max: Duration) -> Duration {
    let factor = 1u32 << attempts.saturating_sub(1).min(16);
    base.saturating_mul(factor).min(max)
}

/// Default of `RUNNER_DISPATCH_SPOOL_MAX`: requests pending in the standalone spool beyond
/// which a delivery is answered 503. Far above a burst (a matrix is at most 256 jobs; at
/// ACI's default quota of 300 creates an hour, 10,000 requests take more than the day a
/// job waits), and a bound on the spool's disk (a request is under 6 KiB) and memory.
pub const DEFAULT_SPOOL_MAX: usize = 10_000;

/// What a full spool tells the sender to wait before trying again (GitHub does not retry
/// by itself: reconcile redelivers a delivery that failed with a 5xx).
pub const SPOOL_FULL_RETRY_AFTER: Duration = Duration::from_secs(60);

/// Why a delivery was not spooled.
#[derive(Debug, thiserror::Error)]
pub enum EnqueueError {
    /// `max` requests are pending already: the delivery must be refused (503), not dropped.
    #[error("the spool holds {max} pending requests (RUNNER_DISPATCH_SPOOL_MAX)")]
    Full { max: usize },
    /// The write failed: the request must not be acknowledged.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Tuning of the in-process queue.
#[derive(Debug, Clone)]
pub struct QueueOptions {
    pub concurrency: usize,
    /// 0: take `RUNNER_DISPATCH_MAX_ATTEMPTS` (default 60).
    pub max_attempts: u32,
    /// Most requests pending at once for deliveries ([`StandaloneQueue::enqueue_delivery`]);
    /// 0: [`DEFAULT_SPOOL_MAX`] (the server passes `RUNNER_DISPATCH_SPOOL_MAX`).
    pub max_pending: usize,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
}

impl Default for QueueOptions {
    fn default() -> Self {
        Self {
            concurrency: 8,
            max_attempts: 0,
            max_pending: 0,
            backoff_base: Duration::from_secs(2),
            backoff_max: Duration::from_secs(60),
        }
    }
}

/// The in-process queue: a spool plus a bounded pool of workers.
#[derive(Clone)]
pub struct StandaloneQueue {
    spool: Spool,
    /// Requests pending in the spool: counted at start, then as they come and go.
    depth: Arc<AtomicUsize>,
    tx: mpsc::UnboundedSender<SpoolItem>,
    inflight: Arc<Semaphore>,
    options: QueueOptions,
}

impl StandaloneQueue {
    /// Starts the workers and replays what the spool holds.
    #[must_use]
    pub fn start(spool: Spool, mut options: QueueOptions, handler: Handler) -> Self {
        if options.max_pending == 0 {
            options.max_pending = DEFAULT_SPOOL_MAX;
        }
        let (tx, mut rx) = mpsc::unbounded_channel::<SpoolItem>();
        let inflight = Arc::new(Semaphore::new(options.concurrency.max(1)));
        let replay = spool.pending();
        let depth = Arc::new(AtomicUsize::new(replay.len()));
        let queue = Self {
            spool: spool.clone(),
            depth: depth.clone(),
            tx: tx.clone(),
            inflight: inflight.clone(),
            options: options.clone(),
        };
        if !replay.is_empty() {
            tracing::info!(event = "spool_replay", count = replay.len(), "replaying spooled requests");
        }
        for item in replay {
            let _ = tx.send(item);
        }
        tokio::spawn(async move {
            while let Some(item) = rx.recv().await {
                let Ok(permit) = inflight.clone().acquire_owned().await else { break };
                let spool = spool.clone();
                let handler = handler.clone();
                let tx = tx.clone();
                let options = options.clone();
                let depth = depth.clone();
                tokio::spawn(async move {
                    let _permit = permit;
                    if run_one(item, &spool, &handler, &tx, &options, &depth).await {
                        depth.fetch_sub(1, Ordering::Relaxed);
                    }
                });
            }
        });
        queue
    }

    /// [`StandaloneQueue::enqueue`] for a delivery: refused while
    /// [`QueueOptions::max_pending`] requests are pending (a duplicate of a pending one is
    /// still `Ok(false)`). Nothing already spooled is ever dropped to make room.
    ///
    /// # Errors
    /// The spool is full, or its write failed: the request must not be acknowledged.
    pub fn enqueue_delivery(&self, message: RunnerMessage) -> Result<bool, EnqueueError> {
        let max = self.options.max_pending;
        // The slot is taken before the write, so concurrent deliveries never overshoot.
        if self.depth.fetch_add(1, Ordering::Relaxed) >= max {
            self.depth.fetch_sub(1, Ordering::Relaxed);
            if self.spool.holds(&message) {
                return Ok(false);
            }
            return Err(EnqueueError::Full { max });
        }
        let spooled = self.spool_and_send(message);
        if !matches!(spooled, Ok(true)) {
            self.depth.fetch_sub(1, Ordering::Relaxed);
        }
        Ok(spooled?)
    }

    /// Requests pending in the spool now.
    #[must_use]
    pub fn depth(&self) -> usize {
        self.depth.load(Ordering::Relaxed)
    }

    /// Spools the message durably, then schedules it, whatever the depth: for reconcile's
    /// re-requests (bounded by the runners it saw; refusing one would lose its job, whose
    /// failed compute is already gone). `Ok(false)`: already queued.
    ///
    /// # Errors
    /// The spool write failed: the request must not be acknowledged.
    pub fn enqueue(&self, message: RunnerMessage) -> std::io::Result<bool> {
        enqueue_counted(&self.spool, &self.tx, &self.depth, message)
    }

    fn spool_and_send(&self, message: RunnerMessage) -> std::io::Result<bool> {
        spool_and_send(&self.spool, &self.tx, message)
    }

    #[must_use]
    pub fn spool(&self) -> &Spool {
        &self.spool
    }

    /// Waits until no attempt is running, up to `timeout`. Returns whether it drained.
    pub async fn drain(&self, timeout: Duration) -> bool {
        let all = u32::try_from(self.options.concurrency.max(1)).unwrap_or(u32::MAX);
        tokio::time::timeout(timeout, self.inflight.acquire_many(all)).await.is_ok()
    }
}

/// [`StandaloneQueue::enqueue`], for the workers too (a cleanup's runner requests).
fn enqueue_counted(
    spool: &Spool,
    tx: &mpsc::UnboundedSender<SpoolItem>,
    depth: &AtomicUsize,
    message: RunnerMessage,
) -> std::io::Result<bool> {
    let spooled = spool_and_send(spool, tx, message);
    if matches!(spooled, Ok(true)) {
        depth.fetch_add(1, Ordering::Relaxed);
    }
    spooled
}

fn spool_and_send(
    spool: &Spool,
    tx: &mpsc::UnboundedSender<SpoolItem>,
    mut message: RunnerMessage,
) -> std::io::Result<bool> {
    // A request that carries no job time gets the time it was queued, so the 24 h age
    // limit still ends it (deferrals are not attempts).
    if message.job_created_at.is_none() {
        message.job_created_at = crate::timestamps::now_rfc3339();
    }
    let item = SpoolItem { message, attempts: 0 };
    if !spool.put_new(&item)? {
        return Ok(false);
    }
    tx.send(item).map_err(|_| std::io::Error::other("queue stopped"))?;
    Ok(true)
}

/// Runs a spool write (it fsyncs) on the blocking pool, so the queue's disk work never
/// stalls the async workers that acknowledge webhooks.
async fn on_disk(spool: &Spool, f: impl FnOnce(&Spool) -> std::io::Result<()> + Send + 'static) -> std::io::Result<()> {
    let spool = spool.clone();
    tokio::task::spawn_blocking(move || f(&spool)).await.unwrap_or_else(|e| Err(std::io::Error::other(e)))
}

/// One attempt of `item`; `true` when the item left the spool (done or given up).
async fn run_one(
    mut item: SpoolItem,
    spool: &Spool,
    handler: &Handler,
    tx: &mpsc::UnboundedSender<SpoolItem>,
    options: &QueueOptions,
    depth: &Arc<AtomicUsize>,
) -> bool {
    let key = spool_key(&item.message);
    item.attempts += 1;
    let attempt = item.attempts;
    let result = handler(item.message.clone(), attempt).await;
    let kind = item.message.kind;
    match decide(result, attempt, options.max_attempts, kind, Transport::Standalone) {
        Disposition::Done { requests } => {
            // The requests are spooled before the item that made them leaves the spool.
            for request in requests {
                let (s, t, d) = (spool.clone(), tx.clone(), depth.clone());
                let job_id = request.job_id;
                let spooled = tokio::task::spawn_blocking(move || enqueue_counted(&s, &t, &d, request))
                    .await
                    .unwrap_or_else(|e| Err(std::io::Error::other(e)));
                if let Err(e) = spooled {
                    tracing::error!(event = "spool_error", error = %e, job_id, "could not spool a re-provision request");
                }
            }
            let k = key.clone();
            if let Err(e) = on_disk(spool, move |s| s.remove(&k)).await {
                tracing::error!(event = "spool_error", key, error = %e, "could not remove a finished request from the spool");
            }
            true
        }
        Disposition::Defer { reason, after } => {
            item.attempts -= 1;
            let delay = after.min(MAX_RETRY_DELAY);
            tracing::debug!(event = "attempt_deferred", job_id = item.message.job_id, runner_name = %item.message.runner_name, delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX), reason = %reason, "deferred by a client-side throttle; not counted as an attempt");
            send_later(tx, item, delay);
            false
        }
        // The standalone spool keeps waiting requests itself: nothing is requeued.
        Disposition::GiveUp { reason } | Disposition::Requeue { reason } => {
            crate::events::given_up(&item.message, &reason, attempt);
            let failed = FailedMessage { request: item.message.clone(), reason, attempts: attempt };
            let k = key.clone();
            if let Err(e) = on_disk(spool, move |s| s.fail(&k, &failed)).await {
                tracing::error!(event = "spool_error", key, error = %e, "could not record a given-up request");
            }
            true
        }
        Disposition::Retry { reason, after } => {
            let snapshot = item.clone();
            if let Err(e) = on_disk(spool, move |s| s.update(&snapshot)).await {
                tracing::error!(event = "spool_error", key, error = %e, "could not record the attempt count");
            }
            let delay = after
                .unwrap_or_else(|| backoff(attempt, options.backoff_base, options.backoff_max))
                .min(MAX_RETRY_DELAY);
            tracing::info!(event = "retry_scheduled", job_id = item.message.job_id, runner_name = %item.message.runner_name, attempt, delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX), reason = %reason, "attempt failed; will retry");
            send_later(tx, item, delay);
            false
        }
    }
}

/// Puts `item` back on the queue after `delay`.
fn send_later(tx: &mpsc::UnboundedSender<SpoolItem>, item: SpoolItem, delay: Duration) {
    let tx = tx.clone();
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        let _ = tx.send(item);
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::MESSAGE_VERSION;

    fn msg(job: u64) -> RunnerMessage {
        RunnerMessage {
            v: MESSAGE_VERSION,
            kind: MessageKind::Provision,
            job_id: job,
            run_id: 1,
            repository: "o/r".into(),
            owner: "o".into(),
            installation_id: None,
            labels: vec!["linux".into()],
            pool: "p".into(),
            runner_name: format!("ghr-{job}"),
            delivery_id: "d".into(),
            job_created_at: None,
            ran_on: None,
            ran_on_id: None,
            job_started_at: None,
            origin: None,
        }
    }

    #[test]
    fn items_survive_a_reopen_and_duplicates_are_refused() {
        let dir = tempfile::tempdir().expect("tmp");
        let spool = Spool::open(dir.path()).expect("open");
        assert!(spool.put_new(&SpoolItem { message: msg(1), attempts: 0 }).expect("put"));
        assert!(!spool.put_new(&SpoolItem { message: msg(1), attempts: 0 }).expect("dup"));
        let reopened = Spool::open(dir.path()).expect("reopen");
        assert_eq!(reopened.pending().len(), 1);
        reopened
            .fail("provision-ghr-1", &FailedMessage { request: msg(1), reason: "r".into(), attempts: 2 })
            .expect("fail");
        assert!(reopened.pending().is_empty());
        assert_eq!(reopened.failed()[0].reason, "r");
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let b = |n| backoff(n, Duration::from_secs(2), Duration::from_secs(60));
        assert_eq!(b(1), Duration::from_secs(2));
        assert_eq!(b(2), Duration::from_secs(4));
        assert_eq!(b(10), Duration::from_secs(60));
    }

    #[tokio::test(start_paused = true)]
    async fn deferrals_are_not_attempts_and_do_not_exhaust_max_attempts() {
        let dir = tempfile::tempdir().expect("tmp");
        let spool = Spool::open(dir.path()).expect("open");
        let seen: Arc<std::sync::Mutex<Vec<u32>>> = Arc::default();
        let log = seen.clone();
        let handler: Handler = Arc::new(move |_m, attempt| {
            let log = log.clone();
            Box::pin(async move {
                let mut l = log.lock().expect("lock");
                l.push(attempt);
                if l.len() <= 3 {
                    AttemptResult::Defer { reason: "throttled".into(), after: Duration::from_secs(5) }
                } else {
                    AttemptResult::Done { requests: vec![] }
                }
            })
        });
        let options = QueueOptions { max_attempts: 1, ..QueueOptions::default() };
        let queue = StandaloneQueue::start(spool.clone(), options, handler);
        assert!(queue.enqueue(msg(9)).expect("enqueue"));
        for _ in 0..40 {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        assert_eq!(*seen.lock().expect("lock"), vec![1, 1, 1, 1], "every try is still the first attempt");
        assert!(spool.pending().is_empty() && spool.failed().is_empty(), "done, not given up");
    }
}
