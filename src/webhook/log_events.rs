//! The log events of a delivery (accepted, refused, no pool, a job started): the first
//! lines of a job's story; the rest are in [`crate::events`].

use crate::config::Pool;
use crate::events::tags_json;
use crate::telemetry::loggable;
use crate::timestamps::seconds_between;

use super::WorkflowJobEvent;

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

/// `ran_on_kind`: `made_for_job`, `idle` or `other` (see [`crate::events::ran_on_kind`]).
pub fn job_started(job: &WorkflowJobEvent, delivery: &str, ran_on_kind: &str) {
    tracing::info!(
        event = "job_started",
        delivery_id = delivery,
        job_id = job.job_id,
        repository = %loggable(&job.repository),
        runner_name = %loggable(job.runner_name.as_deref().unwrap_or("")),
        ran_on_kind,
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
