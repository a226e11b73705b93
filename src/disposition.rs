//! What happens to a queued message after one attempt: done, retried, deferred, put back on
//! the queue, or given up. One policy for both transports (the Functions host's queue and
//! the standalone spool), so "deferrals are not attempts" and "nothing waiting is dropped"
//! hold the same way in both.

use std::time::Duration;

use crate::message::{MessageKind, RunnerMessage};

/// What one attempt of a queued message came to (from the provisioner).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptResult {
    /// Finished; `requests`: runner requests it made (a cleanup's, for a job whose runner
    /// another job took), for the transport to queue.
    Done {
        requests: Vec<RunnerMessage>,
    },
    /// Failed, retryably; `after` when the upstream said how long to wait (`Retry-After`).
    Retry {
        reason: String,
        after: Option<Duration>,
    },
    /// Not attempted (a throttle, a quota wait, `max_runners`): comes back after `after`.
    Defer {
        reason: String,
        after: Duration,
    },
    GiveUp {
        reason: String,
    },
}

/// Which queue carries the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// The Functions host: `attempt` is the dequeue count, and a non-2xx reply makes the
    /// message visible again after `visibilityTimeout`.
    FunctionsHost,
    /// The standalone spool: deferrals do not count as attempts.
    Standalone,
}

/// What the transport does with the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// Finished: queue `requests` (see [`AttemptResult::Done`]), then remove it.
    Done { requests: Vec<RunnerMessage> },
    /// Try again; counts as an attempt. `after`: the upstream's wait, else the transport's
    /// backoff (standalone) or visibility timeout (host).
    Retry { reason: String, after: Option<Duration> },
    /// Try again after `after` without counting an attempt (standalone only: under the
    /// host every dequeue counts, so a wait there is a [`Disposition::Retry`]).
    Defer { reason: String, after: Duration },
    /// Under the host, a provision request whose dequeue budget is spent while it was only
    /// waiting: a fresh copy goes back on the queue (a job over 24 h is given up by the
    /// provisioner itself).
    Requeue { reason: String },
    /// Report it on the failed queue with the reason.
    GiveUp { reason: String },
}

/// The one policy. `attempt` is 1 for the first attempt; `max_attempts` the transport's
/// budget (`RUNNER_DISPATCH_MAX_ATTEMPTS`, the host's `maxDequeueCount`).
#[must_use]
pub fn decide(
    result: AttemptResult,
    attempt: u32,
    max_attempts: u32,
    kind: MessageKind,
    transport: Transport,
) -> Disposition {
    let last = attempt >= max_attempts;
    let spent = |reason: String| Disposition::GiveUp { reason: format!("gave up after {attempt} attempts: {reason}") };
    match (result, transport) {
        (AttemptResult::Done { requests }, _) => Disposition::Done { requests },
        (AttemptResult::GiveUp { reason }, _) => Disposition::GiveUp { reason },
        (AttemptResult::Defer { reason, after }, Transport::Standalone) => Disposition::Defer { reason, after },
        (AttemptResult::Retry { reason, .. }, Transport::Standalone) if last => spent(reason),
        (AttemptResult::Retry { reason, after }, Transport::Standalone) => Disposition::Retry { reason, after },
        // Under the host a wait is only a wait when it is one: deferred, or throttled with
        // a Retry-After. Faults (5xx, timeouts) spend the budget like any retry.
        (
            AttemptResult::Defer { reason, .. } | AttemptResult::Retry { reason, after: Some(_) },
            Transport::FunctionsHost,
        ) if last && kind == MessageKind::Provision => Disposition::Requeue { reason },
        (AttemptResult::Defer { reason, .. } | AttemptResult::Retry { reason, .. }, Transport::FunctionsHost)
            if last =>
        {
            spent(reason)
        }
        (AttemptResult::Defer { reason, after }, Transport::FunctionsHost) => {
            Disposition::Retry { reason, after: Some(after) }
        }
        (AttemptResult::Retry { reason, after }, Transport::FunctionsHost) => Disposition::Retry { reason, after },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use AttemptResult as A;
    use Disposition as D;
    use MessageKind::{Cleanup, Provision};
    use Transport::{FunctionsHost as Host, Standalone};

    fn retry(after: Option<u64>) -> A {
        A::Retry { reason: "r".into(), after: after.map(Duration::from_secs) }
    }
    fn defer() -> A {
        A::Defer { reason: "r".into(), after: Duration::from_secs(30) }
    }
    fn gave_up(n: u32) -> D {
        D::GiveUp { reason: format!("gave up after {n} attempts: r") }
    }

    #[test]
    fn done_and_permanent_failures_are_the_same_everywhere() {
        for t in [Host, Standalone] {
            for k in [Provision, Cleanup] {
                assert_eq!(decide(A::Done { requests: vec![] }, 60, 60, k, t), D::Done { requests: vec![] });
                assert_eq!(
                    decide(A::GiveUp { reason: "bad image".into() }, 1, 60, k, t),
                    D::GiveUp { reason: "bad image".into() }
                );
            }
        }
    }

    #[test]
    fn standalone_deferrals_never_count_and_retries_run_out() {
        for attempt in [1, 3, 1000] {
            assert_eq!(
                decide(defer(), attempt, 3, Provision, Standalone),
                D::Defer { reason: "r".into(), after: Duration::from_secs(30) }
            );
        }
        assert_eq!(decide(retry(None), 2, 3, Provision, Standalone), D::Retry { reason: "r".into(), after: None });
        assert_eq!(decide(retry(Some(5)), 3, 3, Provision, Standalone), gave_up(3));
        assert_eq!(decide(retry(None), 3, 3, Cleanup, Standalone), gave_up(3));
    }

    #[test]
    fn under_the_host_a_waiting_provision_request_is_requeued_at_the_last_dequeue() {
        for waiting in [defer(), retry(Some(60))] {
            assert_eq!(decide(waiting.clone(), 60, 60, Provision, Host), D::Requeue { reason: "r".into() });
            // A cleanup has nothing to wait for: its budget ends it.
            assert_eq!(decide(waiting, 60, 60, Cleanup, Host), gave_up(60));
        }
        // A fault (no Retry-After) at the last dequeue is given up.
        assert_eq!(decide(retry(None), 60, 60, Provision, Host), gave_up(60));
    }

    #[test]
    fn under_the_host_every_earlier_wait_or_fault_is_a_retry() {
        assert_eq!(
            decide(defer(), 1, 60, Provision, Host),
            D::Retry { reason: "r".into(), after: Some(Duration::from_secs(30)) }
        );
        assert_eq!(decide(retry(None), 59, 60, Cleanup, Host), D::Retry { reason: "r".into(), after: None });
    }
}
