//! Asks GitHub to redeliver the `workflow_job` deliveries that failed and may succeed now.

use std::collections::BTreeMap;
use std::time::Duration;

use super::fleet::Fleet;
use super::{MAX_REDELIVERIES, PERIOD, ReconcileReport};
use crate::github::Delivery;

/// Chooses which deliveries to redeliver: `workflow_job` queued/completed, grouped by
/// guid; only when no attempt succeeded, the latest failed by timeout, 5xx or 429, and
/// fewer than [`MAX_REDELIVERIES`] redeliveries were made.
#[must_use]
pub fn deliveries_to_redeliver(deliveries: &[Delivery]) -> Vec<u64> {
    let mut by_guid: BTreeMap<&str, Vec<&Delivery>> = BTreeMap::new();
    for d in deliveries {
        let relevant = d.event == "workflow_job" && matches!(d.action.as_deref(), Some("queued" | "completed"));
        if relevant {
            by_guid.entry(d.guid.as_str()).or_default().push(d);
        }
    }
    let mut out = Vec::new();
    for attempts in by_guid.values() {
        if attempts.iter().any(|d| (200..300).contains(&d.status_code)) {
            continue;
        }
        let redeliveries = attempts.iter().filter(|d| d.redelivery).count();
        if redeliveries >= MAX_REDELIVERIES {
            continue;
        }
        let Some(latest) = attempts.iter().max_by_key(|d| (d.delivered_at, d.id)) else { continue };
        let retryable = latest.status_code == 0 || latest.status_code == 429 || latest.status_code >= 500;
        if retryable {
            out.push(latest.id);
        }
    }
    out
}

/// Redelivers the failed deliveries of the last two periods and ten minutes.
pub(super) async fn redeliver_missed(fleet: &impl Fleet, report: &mut ReconcileReport) {
    let window = PERIOD * 2 + Duration::from_secs(600);
    let since = fleet.now() - window;
    let deliveries = match fleet.list_deliveries(since).await {
        Ok(d) => d,
        Err(e) => {
            report.errors += 1;
            tracing::warn!(event = "reconcile_error", step = "list_deliveries", error = %e, "could not list webhook deliveries");
            return;
        }
    };
    for id in deliveries_to_redeliver(&deliveries) {
        match fleet.redeliver(id).await {
            Ok(()) => {
                report.redelivered += 1;
                tracing::info!(
                    event = "redelivered",
                    github_delivery = id,
                    "asked GitHub to redeliver a failed delivery"
                );
            }
            Err(e) => {
                report.errors += 1;
                tracing::warn!(event = "reconcile_error", step = "redeliver", github_delivery = id, error = %e, "redelivery failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::OffsetDateTime;

    fn d(id: u64, guid: &str, code: u16, redelivery: bool, minute: i64) -> Delivery {
        Delivery {
            id,
            guid: guid.into(),
            delivered_at: Some(OffsetDateTime::UNIX_EPOCH + time::Duration::minutes(minute)),
            redelivery,
            status: if code == 0 { "timed out".into() } else { "x".into() },
            status_code: code,
            event: "workflow_job".into(),
            action: Some("queued".into()),
        }
    }

    #[test]
    fn redelivers_only_failures_worth_retrying_at_most_three_times() {
        let mut other_event = d(9, "g9", 500, false, 1);
        other_event.event = "push".into();
        let mut in_progress = d(10, "g10", 500, false, 1);
        in_progress.action = Some("in_progress".into());
        let list = vec![
            d(1, "timeout", 0, false, 1),
            d(2, "server", 502, false, 1),
            d(3, "throttled", 429, false, 1),
            d(4, "refused", 401, false, 1),
            d(5, "ok-later", 500, false, 1),
            d(6, "ok-later", 202, true, 2),
            d(7, "tired", 500, true, 1),
            d(8, "tired", 500, true, 2),
            d(11, "tired", 500, true, 3),
            d(12, "tired", 500, false, 0),
            other_event,
            in_progress,
            d(13, "latest-4xx", 500, false, 1),
            d(14, "latest-4xx", 400, true, 2),
        ];
        let mut ids = deliveries_to_redeliver(&list);
        ids.sort_unstable();
        assert_eq!(ids, vec![1, 2, 3]);
    }
}
