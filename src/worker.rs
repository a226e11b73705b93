//! The queue worker: one attempt of a queued request (provision or cleanup) through the
//! provisioner, bounded in time and classified for the queue. Both transports run it: the
//! Functions host's queue triggers (through the envelope routes) and the standalone spool.

use std::sync::Arc;
use std::time::Duration;

use crate::compute::ProvisionError;
use crate::disposition::AttemptResult;
use crate::message::{MessageKind, RunnerMessage};
use crate::provision::{ProvisionOutcome, Provisioner};

/// A provisioning attempt that runs longer than this is abandoned and retried.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(240);

/// Default for `RUNNER_DISPATCH_MAX_ATTEMPTS`; keep equal to host.json `maxDequeueCount`.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 60;

/// Runs one attempt of a queued message through the shared handlers.
pub async fn process_message(provisioner: &Provisioner, message: RunnerMessage, attempt: u32) -> AttemptResult {
    let work = async {
        match message.kind {
            MessageKind::Provision => provisioner.provision(&message, attempt).await.map(|o| {
                match &o {
                    ProvisionOutcome::Created { .. } => {}
                    ProvisionOutcome::AlreadyExists => tracing::info!(event = "runner_exists", job_id = message.job_id, runner_name = %message.runner_name, "runner already exists; nothing to do"),
                    ProvisionOutcome::Skipped { reason } => tracing::info!(event = "runner_skipped", job_id = message.job_id, runner_name = %message.runner_name, reason = %reason, "job needs no runner"),
                }
                Vec::new()
            }),
            MessageKind::Cleanup => provisioner.cleanup(&message).await.map(|cleaned| {
                if !cleaned.deleted.is_empty() {
                    tracing::info!(event = "runner_cleaned", job_id = message.job_id, deleted = %cleaned.deleted.join(","), "compute of a finished job deleted");
                }
                cleaned.requests
            }),
        }
    };
    // Every line logged while handling the message carries the job's identity.
    let span = tracing::info_span!(
        "job",
        delivery_id = %message.delivery_id,
        job_id = message.job_id,
        repository = %message.repository,
        pool = %message.pool,
        attempt
    );
    let result = tokio::time::timeout(ATTEMPT_TIMEOUT, tracing::Instrument::instrument(work, span))
        .await
        .unwrap_or_else(|_| Err(ProvisionError::retryable("attempt timed out")));
    match result {
        Ok(requests) => AttemptResult::Done { requests },
        Err(ProvisionError::Retryable { reason, retry_after }) => AttemptResult::Retry { reason, after: retry_after },
        Err(ProvisionError::Deferred { reason, retry_after }) => AttemptResult::Defer { reason, after: retry_after },
        Err(ProvisionError::Permanent { reason }) => AttemptResult::GiveUp { reason },
    }
}

/// Builds the standalone queue handler: it needs only the provisioner, so the queue can be
/// started before the state that holds it (no cycle between the two).
#[must_use]
pub fn queue_handler(provisioner: Arc<Provisioner>) -> crate::spool::Handler {
    Arc::new(move |message, attempt| {
        let provisioner = provisioner.clone();
        Box::pin(async move { process_message(&provisioner, message, attempt).await })
    })
}
