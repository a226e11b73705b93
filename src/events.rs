//! One structured log event per step of a job's life, with the durations GitHub's own
//! timestamps give. Field names are documented in docs/operations.md.

use crate::config::Pool;
use crate::message::RunnerMessage;
use crate::telemetry::loggable;
use crate::timestamps::seconds_between;

/// The pool's tags as one JSON text field (cost attribution in queries).
pub(crate) fn tags_json(pool: &Pool) -> String {
    serde_json::to_string(&pool.tags).unwrap_or_default()
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

/// Reconcile made an idle runner to keep the pool's level.
pub fn idle_runner_requested(pool: &Pool, runner_name: &str, request: &crate::compute::ComputeRequest, backend: &str) {
    let target = match &request.purpose {
        crate::compute::Purpose::Idle { target } => target.as_str(),
        crate::compute::Purpose::Job(_) => "",
    };
    tracing::info!(
        event = "idle_runner_requested",
        pool = %pool.name,
        pool_tags = %tags_json(pool),
        runner_name = %runner_name,
        target = %loggable(target),
        backend,
        "idle runner requested"
    );
}

/// Which runner a job ran on: `made_for_job` (its own: a cold start), `idle` (one kept
/// ready, or made for another job), or `other` (not ours).
#[must_use]
pub fn ran_on_kind(pools: &crate::config::PoolsConfig, job_id: u64, ran_on: Option<&str>) -> &'static str {
    let Some(name) = ran_on else { return "other" };
    match pools.pools.iter().find_map(|p| p.runner_kind(name)) {
        Some(crate::config::RunnerKind::Job(id)) if id == job_id => "made_for_job",
        Some(_) => "idle",
        None => "other",
    }
}

/// A job took the runner made for `request`'s job, which is still queued: a runner is
/// requested for it again (see `Provisioner::cleanup`).
pub fn displaced_job_requeued(request: &RunnerMessage, pool: &Pool, completed: &RunnerMessage) {
    tracing::info!(
        event = "displaced_job_requeued",
        job_id = request.job_id,
        repository = %loggable(&request.repository),
        pool = %pool.name,
        runner_name = %request.runner_name,
        taken_by_job_id = completed.job_id,
        taken_by_pool = %loggable(&completed.pool),
        "another job took this queued job's runner; a runner is requested for it again"
    );
}

pub fn job_completed(msg: &RunnerMessage, pool: &Pool, ran_on_kind: &str) {
    tracing::info!(
        event = "job_completed",
        delivery_id = %msg.delivery_id,
        job_id = msg.job_id,
        repository = %loggable(&msg.repository),
        pool = %pool.name,
        pool_tags = %tags_json(pool),
        ran_on = %loggable(msg.ran_on.as_deref().unwrap_or("")),
        ran_on_kind,
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
