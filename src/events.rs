//! One structured log event per step of a job's life, with the durations GitHub's own
//! timestamps give. Field names are documented in docs/operations.md.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::config::Pool;
use crate::message::RunnerMessage;
use crate::telemetry::loggable;
use crate::webhook::WorkflowJobEvent;

/// Parses an RFC 3339 timestamp from GitHub.
#[must_use]
pub fn parse_time(s: Option<&str>) -> Option<OffsetDateTime> {
    s.and_then(|s| OffsetDateTime::parse(s, &Rfc3339).ok())
}

/// Now, as RFC 3339 (`None` only if the clock cannot be formatted).
#[must_use]
pub fn now_rfc3339() -> Option<String> {
    OffsetDateTime::now_utc().format(&Rfc3339).ok()
}

/// Seconds from `from` to `to` (or now), when both are known.
#[must_use]
pub fn seconds_between(from: Option<&str>, to: Option<&str>) -> Option<i64> {
    let from = parse_time(from)?;
    let to = match to {
        Some(t) => parse_time(Some(t))?,
        None => OffsetDateTime::now_utc(),
    };
    Some((to - from).whole_seconds())
}

fn tags_json(pool: &Pool) -> String {
    serde_json::to_string(&pool.tags).unwrap_or_default()
}

pub fn webhook_accepted(job: &WorkflowJobEvent, pool: &Pool, delivery: &str) {
    tracing::info!(
        event = "webhook_accepted",
        action = %loggable(&job.action),
        delivery_id = delivery,
        job_id = job.job_id,
        run_id = job.run_id,
        repository = %loggable(&job.repository),
        pool = %pool.name,
        pool_tags = %tags_json(pool),
        labels = %loggable(&job.labels.join(",")),
        "webhook accepted"
    );
}

pub fn job_started(job: &WorkflowJobEvent, delivery: &str) {
    tracing::info!(
        event = "job_started",
        delivery_id = delivery,
        job_id = job.job_id,
        repository = %loggable(&job.repository),
        runner_name = %loggable(job.runner_name.as_deref().unwrap_or("")),
        queued_to_started_s = seconds_between(job.created_at.as_deref(), job.started_at.as_deref()),
        "job started"
    );
}

pub fn refused(job: &WorkflowJobEvent, delivery: &str, reason: &str) {
    tracing::warn!(
        event = "webhook_forbidden",
        delivery_id = delivery,
        job_id = job.job_id,
        repository = %loggable(&job.repository),
        reason = %loggable(reason),
        "webhook refused: not allowed"
    );
}

pub fn no_pool(job: &WorkflowJobEvent, delivery: &str) {
    tracing::info!(
        event = "no_pool",
        delivery_id = delivery,
        job_id = job.job_id,
        repository = %loggable(&job.repository),
        labels = %loggable(&job.labels.join(",")),
        "no pool fits the job's labels; not provisioned"
    );
}

pub fn runner_requested(msg: &RunnerMessage, pool: &Pool, backend: &str, attempt: u32) {
    tracing::info!(
        event = "runner_requested",
        delivery_id = %msg.delivery_id,
        job_id = msg.job_id,
        repository = %loggable(&msg.repository),
        pool = %pool.name,
        pool_tags = %tags_json(pool),
        runner_name = %msg.runner_name,
        backend,
        attempt,
        queued_to_requested_s = seconds_between(msg.job_created_at.as_deref(), None),
        "runner requested"
    );
}

pub fn job_completed(msg: &RunnerMessage, pool: &Pool) {
    tracing::info!(
        event = "job_completed",
        delivery_id = %msg.delivery_id,
        job_id = msg.job_id,
        repository = %loggable(&msg.repository),
        pool = %pool.name,
        pool_tags = %tags_json(pool),
        ran_on = %loggable(msg.ran_on.as_deref().unwrap_or("")),
        queued_to_started_s = seconds_between(msg.job_created_at.as_deref(), msg.job_started_at.as_deref()),
        "job completed"
    );
}

pub fn given_up(msg: &RunnerMessage, reason: &str, attempts: u32) {
    tracing::error!(
        event = "given_up",
        delivery_id = %msg.delivery_id,
        job_id = msg.job_id,
        repository = %loggable(&msg.repository),
        pool = %msg.pool,
        runner_name = %msg.runner_name,
        attempts,
        reason,
        "runner request given up"
    );
}
