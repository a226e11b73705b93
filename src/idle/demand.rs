//! What must outlive a reconcile pass for idle runners: jobs queued (for `"auto"`),
//! queued-to-started times (the measured cold start, time-to-runner figures) and idle
//! counts (idle runner-minutes for `status`). Kept as JSON lines in ten-minute buckets
//! per pool, where both modes have durable storage: files in the state directory
//! standalone ([`FileDemandLog`]), append blobs in the Function App's own storage account
//! under the host, through the same managed identity ([`crate::azure::demand_blob`]). Appends are independent, so concurrent workers
//! never overwrite each other; a record that cannot be written is logged and skipped
//! (it only makes `"auto"` less informed, never blocks a runner).

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::{Demand, RATE_WINDOW};

/// Records are kept in buckets of this many minutes.
pub const BUCKET_MINUTES: i64 = 10;

/// How far back `status` and the cold-start measure look.
pub const HISTORY: Duration = Duration::from_secs(3600);

/// One fact about a pool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "k", rename_all = "snake_case")]
pub enum Record {
    /// A runner was requested for a job of the pool, queued at `at` (unix seconds of its
    /// `created_at`, or the receive time when that is out of bounds: see [`bounded`]).
    Arrival { job: u64, at: i64 },
    /// A job started `queued_s` after it was queued (at most the pool's
    /// `runner_boot_timeout` for a cold start), on an idle runner or on the runner made for
    /// it (a cold start).
    Started { job: u64, at: i64, queued_s: i64, idle: bool },
    /// Reconcile saw `idle` runners online and idle at one registration target.
    Idle { at: i64, idle: u32 },
}

impl Record {
    fn at(&self) -> i64 {
        match self {
            Record::Arrival { at, .. } | Record::Started { at, .. } | Record::Idle { at, .. } => *at,
        }
    }
}

/// One line of the log: a record and the registration target it is about (an
/// `idle_targets` entry, lowercase). Lines written before targets were recorded have none:
/// they count for the pool as a whole ([`History::demand`], `status`) and for no target
/// ([`History::demand_for`]), and are out of the history within the hour.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    #[serde(flatten)]
    pub record: Record,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

/// How far before now a record's time may be: GitHub cancels a job no runner took in 24 h.
pub const MAX_PAST: Duration = Duration::from_secs(24 * 3600);

/// How far after now a record's time may be (clock skew between GitHub and us).
pub const MAX_FUTURE: Duration = Duration::from_secs(300);

/// Whether a time from a payload is within [now − [`MAX_PAST`], now + [`MAX_FUTURE`]].
#[must_use]
pub fn in_bounds(at: OffsetDateTime, now: OffsetDateTime) -> bool {
    at >= now - MAX_PAST && at <= now + MAX_FUTURE
}

/// A time from a payload as a record keeps it: itself when [`in_bounds`], else `now` (the
/// receive time). A signed event dated 2000 or 2099 thus neither reaches far buckets nor
/// moves a rate.
#[must_use]
pub fn bounded(at: OffsetDateTime, now: OffsetDateTime) -> OffsetDateTime {
    if in_bounds(at, now) { at } else { now }
}

/// A registration target as the log keeps it (logins are case-insensitive).
#[must_use]
pub fn target_key(target: &str) -> String {
    target.to_ascii_lowercase()
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

/// Appends records about the pool as a whole (all in the bucket of the first one's
/// time); a failure is logged.
pub async fn record(log: &dyn DemandLog, pool: &str, records: &[Record]) {
    append(log, pool, None, records).await;
}

/// Appends records about one registration target of the pool (see [`record`]).
pub async fn record_for(log: &dyn DemandLog, pool: &str, target: &str, records: &[Record]) {
    append(log, pool, Some(target_key(target)), records).await;
}

async fn append(log: &dyn DemandLog, pool: &str, target: Option<String>, records: &[Record]) {
    let Some(first) = records.first() else { return };
    let at = OffsetDateTime::from_unix_timestamp(first.at()).unwrap_or_else(|_| OffsetDateTime::now_utc());
    let mut lines = Vec::new();
    for r in records {
        if serde_json::to_writer(&mut lines, &Entry { record: r.clone(), target: target.clone() }).is_ok() {
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
            if let Ok(e) = serde_json::from_slice::<Entry>(line) {
                if (since.unix_timestamp()..=now.unix_timestamp()).contains(&e.record.at()) {
                    records.push(e);
                }
            }
        }
    }
    Ok(History { records, now: now.unix_timestamp() })
}

/// A pool's recent records, and what they add up to.
#[derive(Debug, Clone, Default)]
pub struct History {
    pub records: Vec<Entry>,
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

/// The value at percentile `p` of sorted `values` (the lower one between two).
fn percentile<T: Copy>(sorted: &[T], p: usize) -> Option<T> {
    (!sorted.is_empty()).then(|| sorted[(sorted.len() - 1) * p / 100])
}

/// Whether a recorded wait is one to count: started after it was queued and within the day
/// GitHub keeps a job queued (lines of older versions were not bounded).
fn plausible_wait(queued_s: i64) -> bool {
    (0..=i64::try_from(MAX_PAST.as_secs()).unwrap_or(i64::MAX)).contains(&queued_s)
}

impl History {
    /// History read at `now` from already-known records about no particular target (tests,
    /// the benchmark).
    #[must_use]
    pub fn from_records(records: Vec<Record>, now: OffsetDateTime) -> Self {
        let records = records.into_iter().map(|record| Entry { record, target: None }).collect();
        Self { records, now: now.unix_timestamp() }
    }

    /// What the history says about demand at one registration target (an `idle_targets`
    /// entry, any case): the jobs queued there (see [`History::demand`] for the windows),
    /// and the pool's measured cold start, which is the compute's and the same at every
    /// target (more samples make it steadier).
    #[must_use]
    pub fn demand_for(&self, target: &str) -> Demand {
        let key = target_key(target);
        self.demand_where(|e| e.target.as_deref() == Some(key.as_str()))
    }

    /// The pool's demand at all its targets together (and lines recorded without one).
    /// Arrivals per minute over [`RATE_WINDOW`], or none when no job came in the last
    /// [`super::AUTO_WINDOW`] (longer for batches: [`super::quiet_window`]) (distinct jobs),
    /// their burst dispersion, and the cold start: the median (and p95) of queued-to-started
    /// times of jobs that ran on the runner made for them, one per job. The longer window
    /// keeps the target steady at low rates (a 5-minute count of a job a minute swings the
    /// target between 2 and 5, and each swing trims and re-creates runners); the shorter one
    /// lets it fall to its floor by the second pass after demand stops.
    #[must_use]
    pub fn demand(&self) -> Demand {
        self.demand_where(|_| true)
    }

    fn demand_where(&self, counts: impl Fn(&Entry) -> bool) -> Demand {
        let secs = |d: Duration| i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
        let mut jobs: Vec<(i64, u64)> = self
            .records
            .iter()
            .filter(|e| counts(e))
            .filter_map(|e| match e.record {
                Record::Arrival { job, at } if at > self.now - secs(RATE_WINDOW) => Some((at, job)),
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
        let cold = self.cold_starts();
        let as_duration = |s: i64| Duration::from_secs(s.unsigned_abs());
        Demand {
            arrivals_per_minute,
            cold_start: percentile(&cold, 50).map(as_duration),
            cold_start_p95: percentile(&cold, 95).map(as_duration),
            dispersion,
        }
    }

    /// The pool's cold-start samples, sorted: one per job (the first recorded; a redelivered
    /// completed event adds none), from jobs that ran on their own runner.
    fn cold_starts(&self) -> Vec<i64> {
        let mut seen = std::collections::HashSet::new();
        let mut cold: Vec<i64> = self
            .records
            .iter()
            .filter_map(|e| match e.record {
                Record::Started { job, queued_s, idle: false, .. } if plausible_wait(queued_s) && seen.insert(job) => {
                    Some(queued_s)
                }
                _ => None,
            })
            .collect();
        cold.sort_unstable();
        cold
    }

    /// Idle runner-minutes: each reconcile sample counts for one period.
    #[must_use]
    pub fn idle_runner_minutes(&self, period: Duration) -> f64 {
        let per_sample = period.as_secs_f64() / 60.0;
        self.records
            .iter()
            .map(|e| match e.record {
                Record::Idle { idle, .. } => f64::from(idle) * per_sample,
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
        for e in &self.records {
            if let Record::Started { job, queued_s, idle, .. } = e.record {
                if plausible_wait(queued_s) && seen.insert(job) {
                    times.push(queued_s);
                    on_idle += usize::from(idle);
                }
            }
        }
        times.sort_unstable();
        TimeToRunner {
            jobs: times.len(),
            on_idle_runner: on_idle,
            p50_s: percentile(&times, 50),
            p95_s: percentile(&times, 95),
        }
    }
}

/// Files under `<state dir>/demand/<pool>/<bucket>.jsonl` (standalone). As a new bucket
/// starts, buckets older than [`KEPT`] before now (the system clock) are removed, and so
/// are any dated over an hour ahead (no record is: times are bounded before they are
/// recorded), so a run of events dated in the future can never push out the current one.
#[derive(Debug)]
pub struct FileDemandLog {
    dir: PathBuf,
}

impl FileDemandLog {
    #[must_use]
    pub fn new(state_dir: &std::path::Path) -> Self {
        Self { dir: state_dir.join("demand") }
    }

    /// Removes the pool's buckets dated outside [now − [`KEPT`], now + 1 h]; files not
    /// named like a bucket are left alone.
    fn prune(dir: &std::path::Path, now: OffsetDateTime) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for path in entries.filter_map(Result::ok).map(|e| e.path()) {
            let start = path.file_name().and_then(|n| n.to_str()?.strip_suffix(".jsonl")).and_then(bucket_start);
            if start.is_some_and(|s| s < now - KEPT || s > now + time::Duration::HOUR) {
                drop(std::fs::remove_file(path));
            }
        }
    }
}

/// How long a pool's buckets are kept: three hours, well over [`HISTORY`].
pub const KEPT: Duration = Duration::from_secs(3 * 3600);

/// The start of the bucket [`bucket_of`] names `name`; `None` for any other name.
#[must_use]
pub fn bucket_start(name: &str) -> Option<OffsetDateTime> {
    let (date, rest) = name.split_once('T')?;
    let (hour, tens) = rest.split_once('-')?;
    let mut parts = date.splitn(3, '-');
    let (y, m, d) = (parts.next()?.parse().ok()?, parts.next()?.parse::<u8>().ok()?, parts.next()?.parse().ok()?);
    let date = time::Date::from_calendar_date(y, time::Month::try_from(m).ok()?, d).ok()?;
    let tens: u8 = tens.parse().ok()?;
    let minute = tens.checked_mul(u8::try_from(BUCKET_MINUTES).ok()?).filter(|m| *m < 60)?;
    let at = date.with_hms(hour.parse().ok()?, minute, 0).ok()?.assume_utc();
    (bucket_of(at) == name).then_some(at)
}

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
            Self::prune(&dir, OffsetDateTime::now_utc());
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
        // The file log prunes by the system clock: the records are dated around it.
        let now = OffsetDateTime::now_utc();
        let at = |m: i64| (now - time::Duration::minutes(m)).unix_timestamp();
        // Six jobs at octo-org in the last fifteen minutes (one recorded twice, three in the
        // last five), one older; two at another target, one line written before targets
        // were recorded.
        for (job, m) in [(1, 1), (2, 3), (3, 4), (3, 4), (4, 6), (5, 9), (6, 14), (7, 16)] {
            record_for(&log, "linux", "Octo-Org", &[Record::Arrival { job, at: at(m) }]).await;
        }
        for job in [20, 21] {
            record_for(&log, "linux", "other-org", &[Record::Arrival { job, at: at(2) }]).await;
        }
        record(&log, "linux", &[Record::Arrival { job: 30, at: at(2) }]).await;
        for (job, m, queued_s) in [(9, 30, 40), (8, 20, 60), (10, 25, 900), (10, 25, 5)] {
            let started = Record::Started { job, at: at(m), queued_s, idle: false };
            record_for(&log, "linux", "other-org", &[started]).await;
        }
        record_for(&log, "linux", "octo-org", &[Record::Started { job: 7, at: at(2), queued_s: 2, idle: true }]).await;
        let h = history(&log, "linux", now - time::Duration::hours(1), now).await.unwrap();
        let d = h.demand_for("octo-org");
        assert!((d.arrivals_per_minute - 0.4).abs() < 1e-9, "{d:?}");
        assert!((h.demand_for("OTHER-org").arrivals_per_minute - 2.0 / 15.0).abs() < 1e-9);
        assert!(h.demand_for("third-org").arrivals_per_minute.abs() < f64::EPSILON);
        assert!((h.demand().arrivals_per_minute - 9.0 / 15.0).abs() < 1e-9, "the pool's: every line");
        // Nothing in the last five minutes: no demand, whatever came before.
        let later =
            history(&log, "linux", now - time::Duration::hours(1), now + time::Duration::minutes(5)).await.unwrap();
        assert!(later.demand_for("octo-org").arrivals_per_minute.abs() < f64::EPSILON);
        // The cold start is the pool's (the same compute at every target): the median of
        // one sample per job (job 10's first), 40, 60 and 900.
        assert_eq!(d.cold_start, Some(Duration::from_secs(60)));
        assert_eq!(d.cold_start_p95, Some(Duration::from_secs(60)));
        let ttr = h.time_to_runner();
        assert_eq!((ttr.jobs, ttr.on_idle_runner, ttr.p50_s), (4, 1, Some(40)));
        // Another pool's records are its own.
        let other = history(&log, "windows", now - time::Duration::hours(1), now).await.unwrap();
        assert!(other.records.is_empty());
    }

    #[test]
    fn one_outlier_moves_neither_the_median_nor_counts_twice() {
        let now = t("2026-12-02T10:21:00Z");
        let at = now.unix_timestamp() - 60;
        let mut records: Vec<Record> = (1..=5)
            .map(|job| Record::Started { job, at, queued_s: 50 + i64::try_from(job).unwrap(), idle: false })
            .collect();
        // One job that waited on quota, recorded three times (redelivered completed
        // events), and a line of an older version with a wait from 2000.
        for _ in 0..3 {
            records.push(Record::Started { job: 6, at, queued_s: 900, idle: false });
        }
        records.push(Record::Started { job: 7, at, queued_s: 849_836_613, idle: false });
        let d = History::from_records(records, now).demand();
        assert_eq!(d.cold_start, Some(Duration::from_secs(53)), "{d:?}");
        assert_eq!(d.cold_start_p95, Some(Duration::from_secs(55)), "{d:?}");
        assert_eq!(History::from_records(vec![], now).demand().cold_start, None);
    }

    #[test]
    fn payload_times_out_of_bounds_become_the_receive_time() {
        let now = t("2026-12-02T10:21:00Z");
        for ok in ["2026-12-01T10:21:00Z", "2026-12-02T10:26:00Z", "2026-12-02T10:00:00Z"] {
            assert_eq!(bounded(t(ok), now), t(ok), "{ok}");
        }
        for bad in ["2000-01-01T00:00:00Z", "2026-12-01T10:20:59Z", "2026-12-02T10:26:01Z", "2099-01-01T00:00:00Z"] {
            assert_eq!(bounded(t(bad), now), now, "{bad}");
        }
    }

    #[test]
    fn bucket_names_read_back_as_their_start_and_nothing_else_does() {
        for at in ["2026-12-02T10:47:59Z", "2099-01-01T00:00:00Z", "2026-02-28T23:59:00Z"] {
            let name = bucket_of(t(at));
            let start = bucket_start(&name).expect(&name);
            assert_eq!(bucket_of(start), name);
            assert!(start <= t(at) && t(at) - start < time::Duration::minutes(BUCKET_MINUTES));
        }
        for other in ["notes", "2026-12-02T10-6", "2026-13-02T10-4", "2026-12-02T24-0", "2026-12-2T10-4", "x.jsonl"] {
            assert_eq!(bucket_start(other), None, "{other}");
        }
    }

    #[tokio::test]
    async fn the_file_log_prunes_buckets_by_age_so_future_ones_never_push_out_the_current_one() {
        let dir = tempfile::tempdir().unwrap();
        let log = FileDemandLog::new(dir.path());
        let now = OffsetDateTime::now_utc();
        let pool_dir = dir.path().join("demand").join("linux");
        std::fs::create_dir_all(&pool_dir).unwrap();
        // Left by an older version: 18 buckets in 2099, one five hours old, a stray file.
        for i in 0..18 {
            let name = bucket_of(t("2099-01-01T00:00:00Z") + time::Duration::minutes(10 * i));
            std::fs::write(pool_dir.join(format!("{name}.jsonl")), b"{}\n").unwrap();
        }
        let old = bucket_of(now - time::Duration::hours(5));
        std::fs::write(pool_dir.join(format!("{old}.jsonl")), b"{}\n").unwrap();
        std::fs::write(pool_dir.join("notes.txt"), b"mine").unwrap();
        // The current bucket, then a new one an hour ago... and the current one again.
        let current = Record::Arrival { job: 1, at: now.unix_timestamp() };
        record_for(&log, "linux", "octo-org", &[current]).await;
        let earlier = Record::Arrival { job: 2, at: (now - time::Duration::minutes(50)).unix_timestamp() };
        record_for(&log, "linux", "octo-org", &[earlier]).await;
        let mut left: Vec<String> = std::fs::read_dir(&pool_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        let mut want = vec![
            format!("{}.jsonl", bucket_of(now - time::Duration::minutes(50))),
            format!("{}.jsonl", bucket_of(now)),
            "notes.txt".to_owned(),
        ];
        want.sort();
        assert_eq!(left, want);
        let h = history(&log, "linux", now - time::Duration::hours(1), now).await.unwrap();
        assert_eq!(h.records.len(), 2);
    }
}
