//! Placements: one pool's compute spread over places (ACI: regions, subscriptions and
//! resource groups) in order of preference. A place that refuses a create for quota or
//! capacity is paused and the same attempt tries the next; all paused is a wait until the
//! earliest is free. The backend knows how to create in a place; the order, the pauses and
//! the answer are decided here, so the benchmark drives this same code on simulated time.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use super::{CreateOutcome, ProvisionError};

/// How long a place that refused for quota or capacity is passed over when the refusal
/// carries no `Retry-After`.
pub const PLACE_PAUSE: Duration = Duration::from_secs(180);

/// Places passed over until a time, by quota key (ACI: subscription and region, so a
/// pause holds for every pool there).
#[derive(Debug, Default)]
pub struct Pauses {
    until: Mutex<HashMap<String, Instant>>,
}

impl Pauses {
    /// How long `key` is still passed over.
    #[must_use]
    pub fn left(&self, key: &str) -> Option<Duration> {
        let now = Instant::now();
        let until = self.until.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        until.get(key).filter(|u| **u > now).map(|u| *u - now)
    }

    /// Passes `key` over for `for_` (a longer pause already there stays).
    pub fn pause(&self, key: &str, for_: Duration) {
        let mut until = self.until.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let at = Instant::now() + for_;
        let entry = until.entry(key.to_owned()).or_insert(at);
        *entry = (*entry).max(at);
    }

    /// `Some(wait until the earliest is free)` when every key is paused.
    #[must_use]
    pub fn all_paused<'a>(&self, keys: impl IntoIterator<Item = &'a str>) -> Option<Duration> {
        let mut earliest: Option<Duration> = None;
        for key in keys {
            let left = self.left(key)?;
            earliest = Some(earliest.map_or(left, |e| e.min(left)));
        }
        earliest
    }
}

/// One place, as the failover sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    /// What a pause is kept by (places sharing a quota share it).
    pub quota_key: String,
    /// For logs, tags and `status`.
    pub label: String,
}

/// How a create in one place failed.
#[derive(Debug)]
pub enum Refusal {
    /// Quota or capacity: another place may take it.
    QuotaOrCapacity(ProvisionError),
    /// Anything else: the attempt ends with it.
    Other(ProvisionError),
}

/// Creates in the first place that takes it, in order; see the module comment. With one
/// place, a refusal is returned as it is (the provisioner's create gate handles it, as for
/// any pool). `create(i)` creates in `places[i]`.
///
/// # Errors
/// A refusal that is not about quota or capacity, or (all places paused) a retryable
/// error whose `retry_after` is the wait until the earliest place is free.
pub async fn create_in_order<F, Fut>(
    pool: &str,
    runner_name: &str,
    places: &[Place],
    pauses: &Pauses,
    mut create: F,
) -> Result<CreateOutcome, ProvisionError>
where
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = Result<CreateOutcome, Refusal>>,
{
    if places.len() < 2 {
        return match create(0).await {
            Ok(o) => Ok(o),
            Err(Refusal::QuotaOrCapacity(e) | Refusal::Other(e)) => Err(e),
        };
    }
    let mut earliest: Option<Duration> = None;
    let mut last = None;
    for (i, place) in places.iter().enumerate() {
        if let Some(left) = pauses.left(&place.quota_key) {
            earliest = Some(earliest.map_or(left, |e| e.min(left)));
            continue;
        }
        match create(i).await {
            Ok(outcome) => {
                if outcome == CreateOutcome::Created {
                    tracing::info!(event = "runner_placed", runner_name = %runner_name, pool = %pool, placement = %place.label, preferred = i == 0, "container group created");
                }
                return Ok(outcome);
            }
            Err(Refusal::QuotaOrCapacity(e)) => {
                let wait = match &e {
                    ProvisionError::Retryable { retry_after: Some(after), .. } => *after,
                    ProvisionError::Deferred { retry_after, .. } => *retry_after,
                    _ => PLACE_PAUSE,
                };
                pauses.pause(&place.quota_key, wait);
                tracing::warn!(event = "placement_paused", pool = %pool, placement = %place.label, retry_after_s = wait.as_secs(), reason = %e, "placement refused a create for quota or capacity; trying the next");
                earliest = Some(earliest.map_or(wait, |x| x.min(wait)));
                last = Some(e);
            }
            Err(Refusal::Other(e)) => return Err(e),
        }
    }
    Err(ProvisionError::Retryable {
        reason: format!(
            "every placement of pool {pool} is paused for quota or capacity{}",
            last.map(|e| format!(" (last: {e})")).unwrap_or_default()
        ),
        retry_after: Some(earliest.unwrap_or(PLACE_PAUSE)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn places(n: usize) -> Vec<Place> {
        (0..n).map(|i| Place { quota_key: format!("q{i}"), label: format!("p{i}") }).collect()
    }

    fn quota(after: u64) -> Refusal {
        Refusal::QuotaOrCapacity(ProvisionError::Retryable {
            reason: "ContainerGroupQuotaReached".into(),
            retry_after: Some(Duration::from_secs(after)),
        })
    }

    #[tokio::test(start_paused = true)]
    async fn a_refused_place_is_paused_and_the_next_takes_the_create() {
        let pauses = Pauses::default();
        let p = places(3);
        let mut tried = Vec::new();
        let out = create_in_order("pool", "r", &p, &pauses, |i| {
            tried.push(i);
            async move { if i == 0 { Err(quota(60)) } else { Ok(CreateOutcome::Created) } }
        })
        .await;
        assert_eq!(out, Ok(CreateOutcome::Created));
        assert_eq!(tried, [0, 1]);
        assert_eq!(pauses.left("q0"), Some(Duration::from_secs(60)));
        // Paused places are passed over without a call until their time is up.
        let mut tried = Vec::new();
        create_in_order("pool", "r", &p, &pauses, |i| {
            tried.push(i);
            async { Ok(CreateOutcome::Created) }
        })
        .await
        .expect("created");
        assert_eq!(tried, [1]);
        tokio::time::advance(Duration::from_secs(61)).await;
        assert_eq!(pauses.left("q0"), None);
    }

    #[tokio::test(start_paused = true)]
    async fn all_paused_waits_for_the_earliest_and_other_refusals_end_the_attempt() {
        let pauses = Pauses::default();
        let p = places(2);
        let e = create_in_order("pool", "r", &p, &pauses, |i| async move { Err(quota(if i == 0 { 300 } else { 40 })) })
            .await
            .expect_err("all refused");
        assert!(
            matches!(e, ProvisionError::Retryable { retry_after: Some(d), .. } if d == Duration::from_secs(40)),
            "{e:?}"
        );
        assert_eq!(pauses.all_paused(p.iter().map(|x| x.quota_key.as_str())), Some(Duration::from_secs(40)));
        let pauses = Pauses::default();
        let e = create_in_order("pool", "r", &p, &pauses, |_| async {
            Err(Refusal::Other(ProvisionError::permanent("InaccessibleImage")))
        })
        .await
        .expect_err("permanent");
        assert!(!e.is_retryable());
        assert_eq!(pauses.left("q0"), None, "only quota or capacity pauses a place");
    }
}
