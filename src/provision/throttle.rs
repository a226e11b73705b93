//! Client-side throttling in front of rate-limited upstream calls, so a burst of queued
//! jobs spends no GitHub call on a request that is bound to be refused:
//! [`Pacer`] spaces JIT configuration calls to GitHub's rate (a token bucket kept as a
//! "theoretical arrival time", GCRA) and learns pauses from `Retry-After`;
//! [`CreateGate`] closes compute creation for the `retry_after` a throttled create
//! reported, then lets one probe through before opening fully.
//!
//! Time is `tokio::time::Instant`, so the benchmarks can run them on paused time.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Spaces calls to at most `per_minute` a minute with bursts of `burst`, and pauses them
/// after the upstream said so.
#[derive(Debug)]
pub struct Pacer {
    /// Time between calls at the steady rate; `None`: no proactive limit, only learned pauses.
    interval: Option<Duration>,
    /// How far ahead of the steady schedule a burst may run: `(burst - 1) * interval`.
    tolerance: Duration,
    state: Mutex<PacerState>,
}

#[derive(Debug, Default)]
struct PacerState {
    /// When the bucket is next "empty" at the steady rate (GCRA's TAT).
    tat: Option<Instant>,
    /// No call before this (from the upstream's `Retry-After`).
    not_before: Option<Instant>,
}

impl Pacer {
    /// `per_minute = 0`: no proactive limit.
    #[must_use]
    pub fn new(per_minute: u32, burst: u32) -> Self {
        let interval = (per_minute > 0).then(|| Duration::from_secs(60) / per_minute);
        let tolerance = interval.map_or(Duration::ZERO, |i| i * burst.saturating_sub(1));
        Self { interval, tolerance, state: Mutex::new(PacerState::default()) }
    }

    /// Reserves the next slot. `Ok(wait)`: sleep `wait`, then call. `Err(after)`: the slot
    /// is further than `max_wait` away; nothing was reserved, come back after `after`.
    ///
    /// # Errors
    /// The wait would exceed `max_wait`.
    pub fn reserve(&self, max_wait: Duration) -> Result<Duration, Duration> {
        let now = Instant::now();
        let mut s = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let tat = s.tat.map_or(now, |t| t.max(now));
        let mut at = now;
        if self.interval.is_some() {
            at = at.max(tat.checked_sub(self.tolerance).unwrap_or(now));
        }
        if let Some(nb) = s.not_before {
            at = at.max(nb);
        }
        let wait = at - now;
        if wait > max_wait {
            return Err(wait);
        }
        if let Some(interval) = self.interval {
            s.tat = Some(tat.max(at) + interval);
        }
        Ok(wait)
    }

    /// The upstream refused a call: no call before `retry_after` from now, and then at the
    /// steady rate without a burst.
    pub fn throttled(&self, retry_after: Duration) {
        let resume = Instant::now() + retry_after;
        let mut s = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        s.not_before = Some(s.not_before.map_or(resume, |nb| nb.max(resume)));
        if self.interval.is_some() {
            let tat = resume + self.tolerance;
            s.tat = Some(s.tat.map_or(tat, |t| t.max(tat)));
        }
    }
}

/// How long callers wait while another request probes a gate that just reopened.
pub const PROBE_WAIT: Duration = Duration::from_secs(1);

/// Closed for the `retry_after` of a throttled create; then half-open (one probe at a
/// time) until a create succeeds.
#[derive(Debug, Default)]
pub struct CreateGate {
    state: Mutex<GateState>,
}

#[derive(Debug, Default)]
struct GateState {
    /// Set by a throttled create; cleared by a successful one.
    closed_until: Option<Instant>,
    probing: bool,
}

/// Admission through a [`CreateGate`]. A probe that ends without reporting (early return,
/// timeout, panic) frees the gate for the next probe when dropped.
#[derive(Debug)]
pub struct Admission {
    gate: std::sync::Arc<CreateGate>,
    probe: bool,
}

impl CreateGate {
    /// `Err(after)` while closed or while another request probes.
    ///
    /// # Errors
    /// Creation is throttled: come back after the duration.
    pub fn admit(self: &std::sync::Arc<Self>) -> Result<Admission, Duration> {
        let now = Instant::now();
        let mut s = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match s.closed_until {
            None => Ok(Admission { gate: self.clone(), probe: false }),
            Some(until) if now < until => Err(until - now),
            Some(_) if s.probing => Err(PROBE_WAIT),
            Some(_) => {
                s.probing = true;
                Ok(Admission { gate: self.clone(), probe: true })
            }
        }
    }

    fn finish(&self, probe: bool, throttled: Option<Duration>) {
        let mut s = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if probe {
            s.probing = false;
        }
        match throttled {
            Some(after) => {
                let until = Instant::now() + after;
                s.closed_until = Some(s.closed_until.map_or(until, |u| u.max(until)));
            }
            None => s.closed_until = None,
        }
    }
}

impl Admission {
    /// The create succeeded: the gate opens.
    pub fn created(mut self) {
        self.gate.finish(self.probe, None);
        self.probe = false;
    }

    /// The create was throttled: the gate closes for `retry_after`.
    pub fn throttled(mut self, retry_after: Duration) {
        self.gate.finish(self.probe, Some(retry_after));
        self.probe = false;
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        if self.probe {
            let mut s = self.gate.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            s.probing = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_pacer_allows_a_burst_then_spaces_calls_at_the_rate() {
        let p = Pacer::new(180, 3);
        let max = Duration::from_secs(10);
        let waits: Vec<Duration> = (0..6).map(|_| p.reserve(max).expect("within max")).collect();
        let i = Duration::from_secs(60) / 180;
        assert_eq!(waits, vec![Duration::ZERO, Duration::ZERO, Duration::ZERO, i, i * 2, i * 3]);
        // Too far ahead: nothing reserved, told when to come back.
        assert_eq!(p.reserve(Duration::from_millis(100)).expect_err("too far"), i * 4);
        assert_eq!(p.reserve(max).expect("slot"), i * 4);
    }

    #[tokio::test(start_paused = true)]
    async fn the_pacer_honours_retry_after_exactly_then_paces_without_a_burst() {
        let p = Pacer::new(60, 10);
        p.throttled(Duration::from_secs(5));
        let max = Duration::from_secs(60);
        assert_eq!(p.reserve(max).expect("slot"), Duration::from_secs(5));
        assert_eq!(p.reserve(max).expect("slot"), Duration::from_secs(6));
        let unpaced = Pacer::new(0, 0);
        assert_eq!(unpaced.reserve(max).expect("free"), Duration::ZERO);
        unpaced.throttled(Duration::from_secs(2));
        assert_eq!(unpaced.reserve(max).expect("slot"), Duration::from_secs(2));
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(unpaced.reserve(max).expect("free"), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn the_gate_closes_for_retry_after_then_lets_one_probe_through() {
        let g = std::sync::Arc::new(CreateGate::default());
        g.admit().expect("open").throttled(Duration::from_secs(30));
        assert_eq!(g.admit().expect_err("closed"), Duration::from_secs(30));
        tokio::time::advance(Duration::from_secs(30)).await;
        let probe = g.admit().expect("probe");
        assert_eq!(g.admit().expect_err("probing"), PROBE_WAIT);
        drop(probe); // ended without a create (e.g. the job was done): next probe may go
        let probe = g.admit().expect("probe again");
        probe.created();
        let a = g.admit().expect("open");
        let b = g.admit().expect("open, concurrently");
        b.created();
        drop(a);
    }
}
