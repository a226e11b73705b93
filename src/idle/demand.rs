//! What must outlive a reconcile pass for idle runners: jobs queued (for `"auto"`),
//! queued-to-started times (the measured cold start, time-to-runner figures) and idle
//! counts (idle runner-minutes for `status`). Kept as JSON lines in ten-minute buckets
//! per pool, where both modes have durable storage: files in the state directory
//! standalone, append blobs in the Function App's own storage account under the host
//! (through the same managed identity). Appends are independent, so concurrent workers
//! never overwrite each other; a record that cannot be written is logged and skipped
//! (it only makes `"auto"` less informed, never blocks a runner).

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::StatusCode;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::{Demand, RATE_WINDOW};
use crate::azure::TokenSource;

/// Records are kept in buckets of this many minutes.
pub const BUCKET_MINUTES: i64 = 10;

/// How far back `status` and the cold-start measure look.
pub const HISTORY: Duration = Duration::from_secs(3600);

/// One fact about a pool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "k", rename_all = "snake_case")]
pub enum Record {
    /// A job was queued for the pool (unix seconds of its `created_at`).
    Arrival { job: u64, at: i64 },
    /// A job started `queued_s` after it was queued, on an idle runner or on the runner
    /// made for it (a cold start).
    Started { job: u64, at: i64, queued_s: i64, idle: bool },
    /// Reconcile saw `idle` runners online and idle for one registration target.
    Idle { at: i64, target: String, idle: u32 },
}

impl Record {
    fn at(&self) -> i64 {
        match self {
            Record::Arrival { at, .. } | Record::Started { at, .. } | Record::Idle { at, .. } => *at,
        }
    }
}

/// Durable append-only storage of record lines, by pool and bucket.
#[async_trait]
pub trait DemandLog: Send + Sync {
    /// `file`, `blob` or `memory`.
    fn kind(&self) -> &'static str;
    /// Appends complete lines to the bucket's object.
    async fn append(&self, pool: &str, bucket: &str, lines: &[u8]) -> Result<(), String>;
    /// The bucket's lines; empty when it does not exist.
    async fn read(&self, pool: &str, bucket: &str) -> Result<Vec<u8>, String>;
}

/// `2026-12-02T10-4`: the ten-minute bucket of `at` (UTC).
#[must_use]
pub fn bucket_of(at: OffsetDateTime) -> String {
    format!(
        "{:04}-{:02}-{:02}T{:02}-{}",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        i64::from(at.minute()) / BUCKET_MINUTES
    )
}

/// A pool name as one path or blob segment: kept when it is plain, else hex.
#[must_use]
pub fn pool_segment(pool: &str) -> String {
    if !pool.is_empty() && pool.len() <= 64 && pool.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        pool.to_owned()
    } else {
        format!("x-{}", hex::encode(pool.as_bytes()))
    }
}

/// Appends records (all in the bucket of the first one's time); a failure is logged.
pub async fn record(log: &dyn DemandLog, pool: &str, records: &[Record]) {
    let Some(first) = records.first() else { return };
    let at = OffsetDateTime::from_unix_timestamp(first.at()).unwrap_or_else(|_| OffsetDateTime::now_utc());
    let mut lines = Vec::new();
    for r in records {
        if serde_json::to_writer(&mut lines, r).is_ok() {
            lines.push(b'\n');
        }
    }
    if let Err(e) = log.append(&pool_segment(pool), &bucket_of(at), &lines).await {
        tracing::warn!(event = "demand_record_failed", pool = %pool, store = log.kind(), error = %e, "could not record demand; idle targets use what is recorded");
    }
}

/// A pool's records from `since` to `now`, read bucket by bucket. Unreadable lines (a
/// torn append) are skipped.
///
/// # Errors
/// The storage could not be read.
pub async fn history(
    log: &dyn DemandLog,
    pool: &str,
    since: OffsetDateTime,
    now: OffsetDateTime,
) -> Result<History, String> {
    let segment = pool_segment(pool);
    let mut records = Vec::new();
    let mut at = since;
    let step = time::Duration::minutes(BUCKET_MINUTES);
    let mut buckets = Vec::new();
    while at <= now + step {
        let b = bucket_of(at);
        if buckets.last() != Some(&b) {
            buckets.push(b);
        }
        at += step;
    }
    buckets.dedup();
    for b in buckets {
        let bytes = log.read(&segment, &b).await?;
        for line in bytes.split(|c| *c == b'\n').filter(|l| !l.is_empty()) {
            if let Ok(r) = serde_json::from_slice::<Record>(line) {
                if (since.unix_timestamp()..=now.unix_timestamp()).contains(&r.at()) {
                    records.push(r);
                }
            }
        }
    }
    Ok(History { records, now: now.unix_timestamp() })
}

/// A pool's recent records, and what they add up to.
#[derive(Debug, Clone, Default)]
pub struct History {
    pub records: Vec<Record>,
    now: i64,
}

/// Queued-to-started figures over the history.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TimeToRunner {
    pub jobs: usize,
    pub on_idle_runner: usize,
    pub p50_s: Option<i64>,
    pub p95_s: Option<i64>,
}

impl History {
    /// History read at `now` from already-known records (tests, the benchmark).
    #[must_use]
    pub fn from_records(records: Vec<Record>, now: OffsetDateTime) -> Self {
        Self { records, now: now.unix_timestamp() }
    }

    /// Arrivals per minute over [`RATE_WINDOW`], or none when no job came in the last
    /// [`super::AUTO_WINDOW`] (longer for batches: [`super::quiet_window`]) (distinct jobs:
    /// a redelivered request is recorded again), their burst dispersion, and the
    /// mean cold start over the whole history. The longer window keeps the target steady
    /// at low rates (a 5-minute count of a job a minute swings the target between 2 and 5,
    /// and each swing trims and re-creates runners); the shorter one lets it fall to its
    /// floor by the second pass after demand stops.
    #[must_use]
    pub fn demand(&self) -> Demand {
        let secs = |d: Duration| i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
        let mut jobs: Vec<(i64, u64)> = self
            .records
            .iter()
            .filter_map(|r| match r {
                Record::Arrival { job, at } if *at > self.now - secs(RATE_WINDOW) => Some((*at, *job)),
                _ => None,
            })
            .collect();
        // Batches (matrices) come with quiet gaps between them: see `quiet_window`.
        let dispersion = super::dispersion(&jobs, self.now, RATE_WINDOW);
        let recent = jobs.iter().any(|(at, _)| *at > self.now - secs(super::quiet_window(&jobs, self.now)));
        let mut ids: Vec<u64> = jobs.drain(..).map(|(_, job)| job).collect();
        ids.sort_unstable();
        ids.dedup();
        let arrivals_per_minute = if recent { ids.len() as f64 / (RATE_WINDOW.as_secs_f64() / 60.0) } else { 0.0 };
        let cold: Vec<i64> = self
            .records
            .iter()
            .filter_map(|r| match r {
                Record::Started { queued_s, idle: false, .. } if *queued_s >= 0 => Some(*queued_s),
                _ => None,
            })
            .collect();
        let cold_start = (!cold.is_empty()).then(|| {
            let mean = cold.iter().sum::<i64>() / i64::try_from(cold.len()).unwrap_or(1);
            Duration::from_secs(mean.unsigned_abs())
        });
        Demand { arrivals_per_minute, cold_start, dispersion }
    }

    /// Idle runner-minutes: each reconcile sample counts for one period.
    #[must_use]
    pub fn idle_runner_minutes(&self, period: Duration) -> f64 {
        let per_sample = period.as_secs_f64() / 60.0;
        self.records
            .iter()
            .map(|r| match r {
                Record::Idle { idle, .. } => f64::from(*idle) * per_sample,
                _ => 0.0,
            })
            .sum()
    }

    /// Queued-to-started p50 and p95, and how many jobs ran on an idle runner.
    #[must_use]
    pub fn time_to_runner(&self) -> TimeToRunner {
        let mut seen = std::collections::HashSet::new();
        let mut times = Vec::new();
        let mut on_idle = 0;
        for r in &self.records {
            if let Record::Started { job, queued_s, idle, .. } = r {
                if seen.insert(*job) {
                    times.push(*queued_s);
                    on_idle += usize::from(*idle);
                }
            }
        }
        times.sort_unstable();
        let pick = |p: usize| (!times.is_empty()).then(|| times[(times.len() - 1) * p / 100]);
        TimeToRunner { jobs: times.len(), on_idle_runner: on_idle, p50_s: pick(50), p95_s: pick(95) }
    }
}

/// Files under `<state dir>/demand/<pool>/<bucket>.jsonl` (standalone). Buckets older
/// than a few hours are removed as new ones start.
#[derive(Debug)]
pub struct FileDemandLog {
    dir: PathBuf,
}

impl FileDemandLog {
    #[must_use]
    pub fn new(state_dir: &std::path::Path) -> Self {
        Self { dir: state_dir.join("demand") }
    }
}

/// How many buckets a pool keeps (three hours).
const KEPT_BUCKETS: usize = 18;

#[async_trait]
impl DemandLog for FileDemandLog {
    fn kind(&self) -> &'static str {
        "file"
    }

    async fn append(&self, pool: &str, bucket: &str, lines: &[u8]) -> Result<(), String> {
        use std::io::Write as _;
        let dir = self.dir.join(pool);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let path = dir.join(format!("{bucket}.jsonl"));
        let new = !path.exists();
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        // One write per append: lines of concurrent appends do not interleave.
        f.write_all(lines).map_err(|e| format!("{}: {e}", path.display()))?;
        if new {
            let mut names: Vec<_> = std::fs::read_dir(&dir)
                .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
                .unwrap_or_default();
            names.sort();
            let old = names.len().saturating_sub(KEPT_BUCKETS);
            for p in names.into_iter().take(old) {
                drop(std::fs::remove_file(p));
            }
        }
        Ok(())
    }

    async fn read(&self, pool: &str, bucket: &str) -> Result<Vec<u8>, String> {
        let path = self.dir.join(pool).join(format!("{bucket}.jsonl"));
        match std::fs::read(&path) {
            Ok(b) => Ok(b),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }
}

/// In memory: for the dry-run and the demo only (nothing here outlives the process).
#[derive(Debug, Default)]
pub struct MemoryDemandLog {
    objects: Mutex<std::collections::BTreeMap<(String, String), Vec<u8>>>,
}

#[async_trait]
impl DemandLog for MemoryDemandLog {
    fn kind(&self) -> &'static str {
        "memory"
    }

    async fn append(&self, pool: &str, bucket: &str, lines: &[u8]) -> Result<(), String> {
        let mut o = self.objects.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        o.entry((pool.to_owned(), bucket.to_owned())).or_default().extend_from_slice(lines);
        Ok(())
    }

    async fn read(&self, pool: &str, bucket: &str) -> Result<Vec<u8>, String> {
        let o = self.objects.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        Ok(o.get(&(pool.to_owned(), bucket.to_owned())).cloned().unwrap_or_default())
    }
}

/// The Blob service version these calls are written against.
pub const BLOB_API_VERSION: &str = "2023-11-03";

/// The container in the Function App's storage account.
pub const STATE_CONTAINER: &str = "runner-dispatch-state";

/// Append blobs `runner-dispatch-state/demand/<pool>/<bucket>.jsonl` in the Function App's
/// storage account (`AzureWebJobsStorage__blobServiceUri`), with an Entra ID token for
/// `https://storage.azure.com/` from the app's identity (the role: Storage Blob Data
/// Contributor, which the Bicep grants). A blob holds at most 50,000 appends: a ten-minute
/// bucket takes 5,000 records a minute.
pub struct BlobDemandLog {
    client: reqwest::Client,
    /// `https://<account>.blob.core.windows.net`, no trailing slash.
    service: String,
    token: TokenSource,
}

impl std::fmt::Debug for BlobDemandLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobDemandLog").field("service", &self.service).finish_non_exhaustive()
    }
}

/// The token scope of Azure Storage.
pub const STORAGE_SCOPE: &str = "https://storage.azure.com/.default";

impl BlobDemandLog {
    #[must_use]
    pub fn new(service: &str, token: TokenSource) -> Self {
        Self { client: crate::azure::http::http_client(), service: service.trim_end_matches('/').to_owned(), token }
    }

    fn blob_url(&self, pool: &str, bucket: &str) -> String {
        format!("{}/{STATE_CONTAINER}/demand/{pool}/{bucket}.jsonl", self.service)
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<reqwest::Response, String> {
        let token = self.token.token().await.map_err(|e| e.to_string())?;
        let response = req
            .bearer_auth(token.expose())
            .header("x-ms-version", BLOB_API_VERSION)
            .send()
            .await
            .map_err(|e| crate::azure::http::transport_error("blob storage", &e).to_string())?;
        if response.status() == StatusCode::UNAUTHORIZED {
            self.token.invalidate().await;
        }
        Ok(response)
    }

    async fn fail(what: &str, response: reqwest::Response) -> String {
        let status = response.status().as_u16();
        let code = response.headers().get("x-ms-error-code").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        format!("{what}: HTTP {status} {code}")
    }

    /// Creates the container and then the append blob; "already exists" is fine.
    async fn create(&self, url: &str) -> Result<(), String> {
        let container = format!("{}/{STATE_CONTAINER}?restype=container", self.service);
        let r = self.send(self.client.put(&container).header("content-length", "0")).await?;
        if !(r.status().is_success() || r.status() == StatusCode::CONFLICT) {
            return Err(Self::fail("creating the state container", r).await);
        }
        let r = self
            .send(
                self.client
                    .put(url)
                    .header("x-ms-blob-type", "AppendBlob")
                    .header("if-none-match", "*")
                    .header("content-length", "0"),
            )
            .await?;
        if r.status().is_success() || matches!(r.status(), StatusCode::CONFLICT | StatusCode::PRECONDITION_FAILED) {
            Ok(())
        } else {
            Err(Self::fail("creating a demand blob", r).await)
        }
    }
}

#[async_trait]
impl DemandLog for BlobDemandLog {
    fn kind(&self) -> &'static str {
        "blob"
    }

    async fn append(&self, pool: &str, bucket: &str, lines: &[u8]) -> Result<(), String> {
        let url = self.blob_url(pool, bucket);
        let append = || self.client.put(format!("{url}?comp=appendblock")).body(lines.to_vec());
        let r = self.send(append()).await?;
        if r.status().is_success() {
            return Ok(());
        }
        if r.status() != StatusCode::NOT_FOUND {
            return Err(Self::fail("appending to a demand blob", r).await);
        }
        self.create(&url).await?;
        let r = self.send(append()).await?;
        if r.status().is_success() { Ok(()) } else { Err(Self::fail("appending to a demand blob", r).await) }
    }

    async fn read(&self, pool: &str, bucket: &str) -> Result<Vec<u8>, String> {
        let r = self.send(self.client.get(self.blob_url(pool, bucket))).await?;
        match r.status() {
            s if s.is_success() => {
                r.bytes().await.map(|b| b.to_vec()).map_err(|e| format!("reading a demand blob: {e}"))
            }
            StatusCode::NOT_FOUND => Ok(Vec::new()),
            _ => Err(Self::fail("reading a demand blob", r).await),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> OffsetDateTime {
        OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).unwrap()
    }

    #[test]
    fn buckets_are_ten_minutes_of_utc() {
        assert_eq!(bucket_of(t("2026-12-02T10:47:59Z")), "2026-12-02T10-4");
        assert_eq!(bucket_of(t("2026-12-02T10:50:00Z")), "2026-12-02T10-5");
    }

    #[test]
    fn pool_names_that_are_not_plain_become_hex() {
        assert_eq!(pool_segment("linux-aci"), "linux-aci");
        assert_eq!(pool_segment("../x"), "x-2e2e2f78");
    }

    #[tokio::test]
    async fn arrivals_and_cold_starts_are_read_back_from_files_across_buckets() {
        let dir = tempfile::tempdir().unwrap();
        let log = FileDemandLog::new(dir.path());
        let now = t("2026-12-02T10:21:00Z");
        let at = |m: i64| (now - time::Duration::minutes(m)).unix_timestamp();
        // Six jobs in the last fifteen minutes (one recorded twice, three in the last
        // five), one older.
        for (job, m) in [(1, 1), (2, 3), (3, 4), (3, 4), (4, 6), (5, 9), (6, 14), (7, 16)] {
            record(&log, "linux", &[Record::Arrival { job, at: at(m) }]).await;
        }
        record(&log, "linux", &[Record::Started { job: 9, at: at(30), queued_s: 40, idle: false }]).await;
        record(&log, "linux", &[Record::Started { job: 8, at: at(20), queued_s: 60, idle: false }]).await;
        record(&log, "linux", &[Record::Started { job: 7, at: at(2), queued_s: 2, idle: true }]).await;
        let h = history(&log, "linux", now - time::Duration::hours(1), now).await.unwrap();
        let d = h.demand();
        assert!((d.arrivals_per_minute - 0.4).abs() < 1e-9, "{d:?}");
        // Nothing in the last five minutes: no demand, whatever came before.
        let later =
            history(&log, "linux", now - time::Duration::hours(1), now + time::Duration::minutes(5)).await.unwrap();
        assert!(later.demand().arrivals_per_minute.abs() < f64::EPSILON);
        assert_eq!(d.cold_start, Some(Duration::from_secs(50)));
        let ttr = h.time_to_runner();
        assert_eq!((ttr.jobs, ttr.on_idle_runner, ttr.p50_s), (3, 1, Some(40)));
        // Another pool's records are its own.
        let other = history(&log, "windows", now - time::Duration::hours(1), now).await.unwrap();
        assert!(other.records.is_empty());
    }
}
