//! Idle runners kept ready: how many a pool wants now (fixed, by a schedule window, or
//! following demand). The `idle_*` keys that set a pool's [`IdlePolicy`] are read and
//! checked with the rest of the pools file (`config/idle_keys.rs`).
//!
//! The level is held by provisioning as it is: every queued job still gets its own runner
//! `<prefix>-<job id>`, so when an idle runner takes a job, the runner made for that job
//! boots and becomes the next idle one. Reconcile tops the level up and trims it (see
//! [`crate::reconcile`]); what must outlive a pass (arrivals, start times, idle counts)
//! is kept in a [`demand::DemandLog`].

pub mod demand;
pub mod schedule;

use std::time::Duration;

use serde::Serialize;

pub use schedule::Window;

/// How often the reconcile pass runs ([`crate::reconcile::PERIOD`] is this figure): idle
/// levels are topped up and trimmed at this pace, so a schedule window's runners are made
/// one period early ([`Demand::window_lead`]).
pub const PASS_PERIOD: Duration = Duration::from_secs(300);

/// Default of `idle_runner_max_age`: idle runners are replaced this long after their
/// compute was created, so new images and fresh hosts come through.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(3600);

/// Default of `idle_runners_max` under `idle_runners = "auto"`.
pub const DEFAULT_AUTO_MAX: u32 = 10;

/// `"auto"` sees no demand when no job came in this long (one reconcile period), so a pool
/// that stops getting jobs is at its floor by the second pass after the last one.
pub const AUTO_WINDOW: Duration = Duration::from_secs(300);

/// While jobs come, `"auto"` reads their rate over this long: steady at low rates.
pub const RATE_WINDOW: Duration = Duration::from_secs(900);

/// Arrivals are counted in bins of this long to see batches: a matrix queues its jobs
/// within a second or two, and counting per bin (not chaining close arrivals) keeps steady
/// traffic at a dispersion of 1 whatever its rate.
pub const BATCH_BIN: Duration = Duration::from_secs(5);

/// The cold start assumed for `"auto"`, and its floor once the pool has measured its own
/// (queued to started on runners made for their job, over the last hour).
pub const DEFAULT_COLD_START: Duration = Duration::from_secs(60);

/// `idle_runners`: a number, or `"auto"` with its cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdleBase {
    Fixed(u32),
    Auto { max: u32 },
}

/// A pool's idle-runner settings.
#[derive(Debug, Clone)]
pub struct IdlePolicy {
    pub base: IdleBase,
    pub schedule: Vec<Window>,
    /// As written: org logins (org scope) or `owner/repo` (repo scope). Empty: the
    /// default (see [`crate::provision::Provisioner::idle_targets`]).
    pub targets: Vec<String>,
    pub max_age: Duration,
    /// The least cold start `"auto"` and a window's lead assume: the pool's backend's typical
    /// boot ([`DEFAULT_COLD_START`] for containers, longer for a fresh VM), because the
    /// measured figure reads short (see [`IdlePolicy::target`]).
    pub cold_start_floor: Duration,
}

impl Default for IdlePolicy {
    fn default() -> Self {
        Self {
            base: IdleBase::Fixed(0),
            schedule: Vec::new(),
            targets: Vec::new(),
            max_age: DEFAULT_MAX_AGE,
            cold_start_floor: DEFAULT_COLD_START,
        }
    }
}

/// Why the target is what it is.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Why {
    /// `idle_runners = N`.
    Fixed,
    /// An `idle_schedule` window holds (its index and text).
    Window { index: usize, window: String },
    /// `"auto"`: from demand, not below the window's figure, not above `idle_runners_max`.
    Auto { arrivals_per_minute: f64, cold_start_s: u64, dispersion: f64, floor: u32, max: u32 },
}

/// How many idle runners a pool wants now, per registration target.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Target {
    pub count: u32,
    pub why: Why,
}

/// What a pool's recent history says about demand at one registration target.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Demand {
    /// Jobs queued per minute over [`RATE_WINDOW`]; zero when none came in [`AUTO_WINDOW`].
    pub arrivals_per_minute: f64,
    /// Median queued-to-started time of jobs that ran on a runner made for them (a cold
    /// start, each at most the pool's `runner_boot_timeout`), over the last hour; `None`
    /// before the first.
    pub cold_start: Option<Duration>,
    /// The 95th percentile of the same: how far ahead a schedule window's runners are made.
    pub cold_start_p95: Option<Duration>,
    /// How bursty arrivals are over [`RATE_WINDOW`]: the index of dispersion of the number
    /// of jobs queued per [`BATCH_BIN`] (see [`dispersion`]). 1 for steady (Poisson)
    /// arrivals, about the batch size when jobs come in batches (a matrix); below 1 reads as 1.
    pub dispersion: f64,
}

impl Demand {
    /// How long before a schedule window starts its runners are made: the measured p95
    /// cold start (never below [`DEFAULT_COLD_START`], which is also the figure before any
    /// is measured), plus one reconcile period, because the top-up that sees the window
    /// first is the last pass before it starts.
    #[must_use]
    pub fn window_lead(&self, floor: Duration) -> Duration {
        self.cold_start_p95.map_or(floor, |c| c.max(floor)) + PASS_PERIOD
    }
}

impl IdlePolicy {
    /// Whether the pool can ever want an idle runner (so cleanup leaves a job's own runner
    /// to become idle capacity, and demand is recorded).
    #[must_use]
    pub fn is_on(&self) -> bool {
        match self.base {
            IdleBase::Fixed(n) => n > 0 || self.schedule.iter().any(|w| w.idle_runners > 0),
            IdleBase::Auto { max } => max > 0,
        }
    }

    /// Whether the target follows demand (so arrivals are worth recording).
    #[must_use]
    pub fn is_auto(&self) -> bool {
        matches!(self.base, IdleBase::Auto { .. })
    }

    /// [`IdlePolicy::target`] at a time of day as the rest of the code keeps it.
    #[must_use]
    pub fn target_at(&self, now: time::OffsetDateTime, demand: &Demand) -> Target {
        let ts = jiff::Timestamp::from_second(now.unix_timestamp()).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
        self.target(ts, demand)
    }

    /// The target at `now`: the first window that holds, else `idle_runners`; under
    /// `"auto"`, the demand rule never below the window's figure, and never above
    /// `idle_runners_max` (a hard cap). A window that starts within the demand's
    /// [`Demand::window_lead`] counts already when it raises the target, so its runners are
    /// online when it starts.
    #[must_use]
    pub fn target(&self, now: jiff::Timestamp, demand: &Demand) -> Target {
        let first_at = |t: jiff::Timestamp| self.schedule.iter().enumerate().find(|(_, w)| w.holds(t));
        let lead = jiff::SignedDuration::try_from(demand.window_lead(self.cold_start_floor))
            .unwrap_or(jiff::SignedDuration::ZERO);
        let current = first_at(now);
        let soon = now.checked_add(lead).ok().and_then(first_at);
        let figure = |w: Option<(usize, &Window)>| match (self.base, w) {
            (_, Some((_, w))) => w.idle_runners,
            (IdleBase::Fixed(n), None) => n,
            (IdleBase::Auto { .. }, None) => 0,
        };
        let window = match soon {
            Some(s) if figure(Some(s)) > figure(current) => Some(s),
            _ => current,
        };
        match (self.base, window) {
            (IdleBase::Fixed(_), Some((index, w))) => Target {
                count: w.idle_runners,
                why: Why::Window { index, window: format!("{} {} {}", w.days_text, w.hours_text, w.timezone) },
            },
            (IdleBase::Fixed(n), None) => Target { count: n, why: Why::Fixed },
            (IdleBase::Auto { max }, window) => {
                let floor = window.map_or(0, |(_, w)| w.idle_runners);
                // Measured cold starts read short: a waiting job goes to whichever runner
                // comes online first, so jobs that ran on their own runner are the fast
                // boots. Never below the backend's typical boot (the benchmark: on ACI, p95 24 s
                // without the 60 s floor at 10 jobs/min, 2.5 s with it; a VM's, see
                // `Backend::cold_start_floor`).
                let cold = demand.cold_start.map_or(self.cold_start_floor, |c| c.max(self.cold_start_floor));
                let dispersion = demand.dispersion.max(1.0);
                Target {
                    count: auto_count(demand.arrivals_per_minute, cold, dispersion).max(floor).min(max),
                    why: Why::Auto {
                        arrivals_per_minute: (demand.arrivals_per_minute * 100.0).round() / 100.0,
                        cold_start_s: cold.as_secs(),
                        dispersion: (dispersion * 10.0).round() / 10.0,
                        floor,
                        max,
                    },
                }
            }
        }
    }
}

/// Traffic whose [`dispersion`] is at least this comes in batches (matrices).
pub const BURST_DISPERSION: f64 = 2.0;

/// Standard deviations of margin kept for batch traffic. Two (Poisson's) would find a
/// ready runner for about 98 % of jobs; for batches that costs 2.7 idle runner-minutes per
/// job at batches of 10 in the benchmark, over the goal of 2. One keeps 90 % on a
/// ready runner (p95 12.8 s, 1.62 idle runner-minutes per job): the jobs beyond it wait
/// one cold start, and `idle_runners_max` still caps it (BENCHMARKS.md's trade-off curve).
pub const BURST_Z: f64 = 1.0;

/// The `"auto"` rule. Jobs that an idle runner takes each leave their own runner booting,
/// so at any moment about `m = arrivals × cold start` idle runners are away being
/// replaced. Keeping `m` plus two standard deviations of the number of jobs queued in a
/// cold start finds an idle runner for about 98 % of jobs. For steady (Poisson) arrivals
/// that deviation is `√m` (runners in boot form an M/G/∞ queue); when jobs come in
/// batches it is `√(m × dispersion)` (the variance of a compound Poisson count is the mean
/// times `E[B²]/E[B]`, which the dispersion measures), of which [`BURST_Z`] are kept, so a
/// pool fed by matrices of ten keeps about `m + √(10m)`. The idle runner-minutes paid are about the margin per
/// minute, so per job they shrink as demand grows and grow with the batch size. No
/// arrivals: zero (the floor). The benchmark's time-to-runner table is the evidence.
#[must_use]
pub fn auto_count(arrivals_per_minute: f64, cold_start: Duration, dispersion: f64) -> u32 {
    if arrivals_per_minute <= 0.0 || arrivals_per_minute.is_nan() {
        return 0;
    }
    let m = arrivals_per_minute * cold_start.as_secs_f64() / 60.0;
    let dispersion = if dispersion.is_finite() { dispersion.max(1.0) } else { 1.0 };
    let z = if dispersion >= BURST_DISPERSION { BURST_Z } else { 2.0 };
    let want = (m + z * (m * dispersion).sqrt()).ceil().max(1.0);
    if want >= f64::from(u32::MAX) { u32::MAX } else { want as u32 }
}

/// The index of dispersion (variance over mean) of the number of jobs queued per
/// [`BATCH_BIN`] over the `window` before `now`, from `(queued at, job id)` in unix seconds
/// (one count per job: repeated ids count once; times outside the window are left out).
/// Poisson arrivals give 1 at any rate; batches of `B` jobs give about `E[B²]/E[B]` (`B`
/// when every batch has `B` jobs). No arrivals: 1.
#[must_use]
pub fn dispersion(arrivals: &[(i64, u64)], now: i64, window: Duration) -> f64 {
    let bin = i64::try_from(BATCH_BIN.as_secs()).unwrap_or(5).max(1);
    let span = i64::try_from(window.as_secs()).unwrap_or(i64::MAX).max(bin);
    let from = now.saturating_sub(span);
    let mut jobs: Vec<(u64, i64)> =
        arrivals.iter().filter(|(at, _)| *at > from && *at <= now).map(|(at, job)| (*job, *at)).collect();
    jobs.sort_unstable();
    jobs.dedup_by_key(|(job, _)| *job);
    if jobs.is_empty() {
        return 1.0;
    }
    let mut per_bin: std::collections::BTreeMap<i64, u64> = std::collections::BTreeMap::new();
    for (_, at) in &jobs {
        *per_bin.entry((now - at) / bin).or_default() += 1;
    }
    let n = jobs.len() as f64;
    let bins = (span / bin) as f64;
    let sum_sq: f64 = per_bin.values().map(|k| (*k as f64) * (*k as f64)).sum();
    // Var/mean over all bins (empty ones included) = Σk²/n − n/bins.
    (sum_sq / n - n / bins).max(1.0)
}

/// How long without a job reads as "demand stopped": [`AUTO_WINDOW`], or for traffic
/// that comes in batches (a [`dispersion`] of 2 or more) three mean gaps between batches
/// (the [`BATCH_BIN`]s with arrivals over [`RATE_WINDOW`]), at most [`RATE_WINDOW`]. A
/// matrix every few minutes then keeps its level across an ordinary gap (95 % of the gaps
/// between batches arriving at random are shorter) instead of trimming it and making it
/// again at the next batch; steady traffic keeps [`AUTO_WINDOW`], and so its decay within
/// two passes after the last job.
#[must_use]
pub fn quiet_window(arrivals: &[(i64, u64)], now: i64) -> Duration {
    if dispersion(arrivals, now, RATE_WINDOW) < 2.0 {
        return AUTO_WINDOW;
    }
    let bin = i64::try_from(BATCH_BIN.as_secs()).unwrap_or(5).max(1);
    let span = i64::try_from(RATE_WINDOW.as_secs()).unwrap_or(i64::MAX);
    let mut bins: Vec<i64> = arrivals
        .iter()
        .filter(|(at, _)| *at > now.saturating_sub(span) && *at <= now)
        .map(|(at, _)| (now - at) / bin)
        .collect();
    bins.sort_unstable();
    bins.dedup();
    if bins.is_empty() {
        return AUTO_WINDOW;
    }
    let mean_gap = RATE_WINDOW.as_secs_f64() / bins.len() as f64;
    Duration::from_secs_f64(3.0 * mean_gap).clamp(AUTO_WINDOW, RATE_WINDOW)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_keeps_the_runners_in_boot_plus_two_deviations_and_nothing_without_demand() {
        let cold = Duration::from_secs(54);
        assert_eq!(auto_count(0.0, cold, 1.0), 0);
        // 10 jobs a minute, 54 s to start: 9 in boot, plus 2 × 3.
        assert_eq!(auto_count(10.0, cold, 1.0), 15);
        // One job an hour still keeps one.
        assert_eq!(auto_count(1.0 / 60.0, cold, 1.0), 1);
        assert_eq!(auto_count(60.0, cold, 1.0), 54 + 15);
    }

    #[test]
    fn auto_widens_the_margin_by_the_burst_dispersion_and_reads_poisson_as_before() {
        let cold = Duration::from_secs(60);
        // Steady arrivals: m + 2√m as before (10 in boot, plus 2 × 3.2).
        assert_eq!(auto_count(10.0, cold, 1.0), 17);
        // Matrices of 10: the count of jobs queued in a cold start varies ten times as much,
        // so the deviation is √(10 m); one of it is kept (see `BURST_Z`): 10 + 10.
        assert_eq!(auto_count(10.0, cold, 10.0), 20);
        // Batches of 50 at the same mean: 10 + √500.
        assert_eq!(auto_count(10.0, cold, 50.0), 33);
        // Just below the batch threshold it is still Poisson's two deviations.
        assert_eq!(auto_count(10.0, cold, 1.9), 10 + (2.0 * 19.0_f64.sqrt()).ceil() as u32);
        // Less than Poisson, or nonsense, reads as Poisson; no demand is still nothing.
        for odd in [0.0, 0.5, f64::NAN, f64::INFINITY] {
            assert_eq!(auto_count(10.0, cold, odd), 17, "{odd}");
        }
        assert_eq!(auto_count(0.0, cold, 50.0), 0);
    }

    const NOW: i64 = 1_800_000_000;

    #[test]
    fn dispersion_is_one_for_steady_arrivals_and_about_the_batch_size_for_batches() {
        let window = RATE_WINDOW;
        // One job every 6 s for 15 minutes (10 a minute, never two in a bin).
        let steady: Vec<(i64, u64)> = (0..150).map(|i| (NOW - 6 * i, i as u64)).collect();
        assert!((dispersion(&steady, NOW, window) - 1.0).abs() < 1e-9);
        // A matrix of 10 in one second, once a minute: Σk²/n − n/bins = 10 − 150/180.
        let batches: Vec<(i64, u64)> = (0..150).map(|i| (NOW - 60 * (i / 10) - 1, i as u64)).collect();
        assert!((dispersion(&batches, NOW, window) - (10.0 - 150.0 / 180.0)).abs() < 1e-9);
        // A redelivered arrival counts once; arrivals outside the window or in the future not at all.
        let mut repeated = steady.clone();
        repeated.extend(steady.iter().map(|(at, job)| (*at, *job)));
        repeated.push((NOW + 30, 9_999));
        repeated.push((NOW - 3_600, 9_998));
        assert!((dispersion(&repeated, NOW, window) - 1.0).abs() < 1e-9);
        assert!((dispersion(&[], NOW, window) - 1.0).abs() < 1e-9);
    }

    #[test]
    fn the_quiet_window_stretches_to_three_gaps_between_batches_within_the_rate_window() {
        let steady: Vec<(i64, u64)> = (0..15).map(|i| (NOW - 60 * i, i as u64)).collect();
        assert_eq!(quiet_window(&steady, NOW), AUTO_WINDOW, "a job a minute: demand stops after 5 quiet minutes");
        let sparse: Vec<(i64, u64)> = (0..3).map(|i| (NOW - 300 * i, i as u64)).collect();
        assert_eq!(quiet_window(&sparse, NOW), AUTO_WINDOW, "steady however sparse");
        assert_eq!(quiet_window(&[], NOW), AUTO_WINDOW);
        // Three matrices of 50 in 15 minutes: 5 minutes apart on average, so 15 quiet minutes.
        let matrices: Vec<(i64, u64)> = (0..150).map(|i| (NOW - 300 * (i / 50) - 10, i as u64)).collect();
        assert_eq!(quiet_window(&matrices, NOW), RATE_WINDOW);
        // Six of them: 2.5 minutes apart, 7.5 quiet minutes.
        let six: Vec<(i64, u64)> = (0..300).map(|i| (NOW - 150 * (i / 50) - 10, i as u64)).collect();
        assert_eq!(quiet_window(&six, NOW), Duration::from_secs(450));
    }

    #[test]
    fn a_batch_flow_keeps_its_demand_through_an_ordinary_gap_and_steady_traffic_does_not() {
        let now = time::OffsetDateTime::from_unix_timestamp(NOW).unwrap();
        let arrivals = |list: Vec<(i64, u64)>| {
            demand::History::from_records(
                list.into_iter().map(|(at, job)| demand::Record::Arrival { job, at }).collect(),
                now,
            )
            .demand()
        };
        // Matrices of 50 at 14, 10 and 6 minutes ago: nothing for 6 minutes.
        let matrices = arrivals((0..150).map(|i| (NOW - 360 - 240 * (i / 50), i as u64)).collect());
        assert!(matrices.arrivals_per_minute > 9.9, "{matrices:?}");
        assert!(matrices.dispersion > 40.0, "{matrices:?}");
        // A job every 20 s until 6 minutes ago: demand has stopped.
        let steady = arrivals((0..25).map(|i| (NOW - 360 - 20 * i, i as u64)).collect());
        assert!(steady.arrivals_per_minute.abs() < f64::EPSILON, "{steady:?}");
    }

    fn window(days: &str, hours: &str, n: u32) -> Window {
        Window::parse(days, hours, "UTC", n).unwrap()
    }

    #[test]
    fn the_first_window_that_holds_sets_the_target_else_idle_runners() {
        let policy = IdlePolicy {
            base: IdleBase::Fixed(1),
            schedule: vec![window("mon-fri", "07:00-19:00", 8), window("daily", "06:00-20:00", 4)],
            ..IdlePolicy::default()
        };
        let none = Demand::default();
        let wed_noon: jiff::Timestamp = "2026-12-02T12:00:00Z".parse().unwrap();
        let sat_noon: jiff::Timestamp = "2026-12-05T12:00:00Z".parse().unwrap();
        let night: jiff::Timestamp = "2026-12-02T23:00:00Z".parse().unwrap();
        assert_eq!(policy.target(wed_noon, &none).count, 8);
        assert!(matches!(policy.target(wed_noon, &none).why, Why::Window { index: 0, .. }));
        assert_eq!(policy.target(sat_noon, &none).count, 4);
        assert_eq!(policy.target(night, &none), Target { count: 1, why: Why::Fixed });
    }

    #[test]
    fn auto_is_capped_and_never_below_the_windows_figure() {
        let policy = IdlePolicy {
            base: IdleBase::Auto { max: 12 },
            schedule: vec![window("mon-fri", "07:00-19:00", 3)],
            ..IdlePolicy::default()
        };
        let busy = Demand { arrivals_per_minute: 60.0, cold_start: Some(Duration::from_secs(45)), ..Demand::default() };
        let quiet = Demand::default();
        let wed_noon: jiff::Timestamp = "2026-12-02T12:00:00Z".parse().unwrap();
        let night: jiff::Timestamp = "2026-12-02T23:00:00Z".parse().unwrap();
        assert_eq!(policy.target(wed_noon, &busy).count, 12);
        assert_eq!(policy.target(wed_noon, &quiet).count, 3);
        assert_eq!(policy.target(night, &quiet).count, 0);
        let Why::Auto { cold_start_s, floor, .. } = policy.target(night, &quiet).why else { panic!() };
        assert_eq!((cold_start_s, floor), (60, 0), "the default cold start until one is measured");
        // A measured cold start counts when it is longer than the default, never shorter
        // (fast boots are what "ran on its own runner" selects).
        for (measured, read) in [(30, 60), (90, 90)] {
            let d = Demand {
                arrivals_per_minute: 1.0,
                cold_start: Some(Duration::from_secs(measured)),
                ..Demand::default()
            };
            let Why::Auto { cold_start_s, .. } = policy.target(night, &d).why else { panic!() };
            assert_eq!(cold_start_s, read);
        }
    }

    #[test]
    fn idle_runners_max_is_a_hard_cap_even_over_a_windows_figure() {
        let policy = IdlePolicy {
            base: IdleBase::Auto { max: 5 },
            schedule: vec![window("mon-fri", "07:00-19:00", 8)],
            ..IdlePolicy::default()
        };
        let busy = Demand { arrivals_per_minute: 60.0, ..Demand::default() };
        let wed_noon: jiff::Timestamp = "2026-12-02T12:00:00Z".parse().unwrap();
        assert_eq!(policy.target(wed_noon, &busy).count, 5);
        assert_eq!(policy.target(wed_noon, &Demand::default()).count, 5);
    }

    #[test]
    fn a_window_counts_one_cold_start_and_one_pass_before_it_opens_and_only_to_raise_the_target() {
        let policy = IdlePolicy {
            base: IdleBase::Fixed(1),
            schedule: vec![window("mon-fri", "07:00-12:00", 8), window("mon-fri", "12:00-19:00", 2)],
            ..IdlePolicy::default()
        };
        let at = |s: &str| -> jiff::Timestamp { format!("2026-12-02T{s}Z").parse().unwrap() };
        let none = Demand::default();
        // Nothing measured: the default cold start (60 s) and the 5-minute pass.
        assert_eq!(policy.target(at("06:53:59"), &none).count, 1);
        assert_eq!(policy.target(at("06:54:00"), &none), policy.target(at("07:00:00"), &none));
        assert_eq!(policy.target(at("06:54:00"), &none).count, 8);
        // A measured p95 of 3 minutes moves it two minutes earlier; shorter ones do not
        // shorten it (measured cold starts read short).
        let slow = Demand { cold_start_p95: Some(Duration::from_secs(180)), ..Demand::default() };
        assert_eq!(policy.target(at("06:52:00"), &slow).count, 8);
        assert_eq!(policy.target(at("06:51:59"), &slow).count, 1);
        let fast = Demand { cold_start_p95: Some(Duration::from_secs(20)), ..Demand::default() };
        assert_eq!(policy.target(at("06:53:59"), &fast).count, 1);
        // A window that lowers the target starts on time, and so does the end of one.
        assert_eq!(policy.target(at("11:58:00"), &none).count, 8);
        assert_eq!(policy.target(at("12:00:00"), &none).count, 2);
        assert_eq!(policy.target(at("18:58:00"), &none).count, 2);
        assert_eq!(policy.target(at("19:00:00"), &none), Target { count: 1, why: Why::Fixed });
        // Under "auto", the coming window's figure is the floor.
        let auto = IdlePolicy { base: IdleBase::Auto { max: 20 }, ..policy };
        let Why::Auto { floor, .. } = auto.target(at("06:55:00"), &none).why else { panic!() };
        assert_eq!(floor, 8);
    }
}
