//! Accepting a GitHub delivery: size, content type, signature, event, allowlist, pool.
//! Transport-free: both the standalone route and the Functions envelope call [`accept`].

pub mod event;
mod log_events;
pub mod signature;

use serde_json::json;

use crate::config::PoolsConfig;
use crate::message::{MESSAGE_VERSION, MessageKind, RunnerMessage};
use crate::routing::choose_pool;
use crate::secret::Secret;

pub use event::{EventError, WorkflowJobEvent, parse_workflow_job};
pub use signature::{SignatureError, sign, verify_signature};

/// Largest body accepted (413 beyond). `workflow_job` payloads are a few KiB.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Request headers, looked up case-insensitively (the Functions host keeps the received case).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(Vec<(String, String)>);

impl Headers {
    #[must_use]
    pub fn new(pairs: Vec<(String, String)>) -> Self {
        Self(pairs)
    }

    /// Every header as received, in order.
    #[must_use]
    pub fn pairs(&self) -> &[(String, String)] {
        &self.0
    }

    #[must_use]
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

impl From<&axum::http::HeaderMap> for Headers {
    fn from(map: &axum::http::HeaderMap) -> Self {
        Self(map.iter().filter_map(|(k, v)| v.to_str().ok().map(|v| (k.as_str().to_owned(), v.to_owned()))).collect())
    }
}

/// The decision on one delivery: what GitHub is answered and what is queued. Each
/// transport renders it (standalone: the HTTP answer and the spool; the Functions host:
/// `Outputs.res` and the queue bindings).
#[derive(Debug, Clone, PartialEq)]
pub enum WebhookVerdict {
    /// 202: work to queue (a provision or cleanup message).
    Accepted { message: Box<RunnerMessage>, detail: String },
    /// 200: nothing to do (a ping, another event or action, no pool fits).
    Acknowledged { result: &'static str, detail: String },
    /// 4xx: refused, and why.
    Refused { status: u16, result: &'static str, detail: String },
}

/// The old name of [`WebhookVerdict`].
pub type WebhookOutcome = WebhookVerdict;

impl WebhookVerdict {
    fn reply(status: u16, result: &'static str, detail: impl Into<String>) -> Self {
        let detail = detail.into();
        if status == 200 { Self::Acknowledged { result, detail } } else { Self::Refused { status, result, detail } }
    }

    /// The status GitHub sees.
    #[must_use]
    pub fn status(&self) -> u16 {
        match self {
            Self::Accepted { .. } => 202,
            Self::Acknowledged { .. } => 200,
            Self::Refused { status, .. } => *status,
        }
    }

    /// The short JSON body GitHub sees: `{"result", "detail"}`.
    #[must_use]
    pub fn body(&self) -> serde_json::Value {
        let (result, detail) = match self {
            Self::Accepted { detail, .. } => ("accepted", detail),
            Self::Acknowledged { result, detail } | Self::Refused { result, detail, .. } => (*result, detail),
        };
        json!({ "result": result, "detail": detail })
    }

    /// The message to queue, if any.
    #[must_use]
    pub fn message(&self) -> Option<&RunnerMessage> {
        match self {
            Self::Accepted { message, .. } => Some(message),
            Self::Acknowledged { .. } | Self::Refused { .. } => None,
        }
    }
}

/// Decides what a delivery means. Never fails: every input gets a status.
/// No work is done before the signature is verified, beyond the size and content-type checks.
#[must_use]
pub fn accept(secrets: &[Secret], pools: &PoolsConfig, headers: &Headers, body: &[u8]) -> WebhookOutcome {
    // Every line logged below names the delivery itself (no per-request span: on the
    // envelope route a span and its JSON rendering cost as much as the line).
    // The header is not signed and is logged before the signature check: only a plain id
    // (GitHub sends a GUID) is kept; anything else is logged and queued as "invalid".
    let delivery = delivery_id(headers.get("x-github-delivery"));
    if body.len() > MAX_BODY_BYTES {
        return refuse(413, "too_large", format!("body over {MAX_BODY_BYTES} bytes"), &delivery);
    }
    if let Some(ct) = headers.get("content-type") {
        let mime = ct.split(';').next().unwrap_or("").trim();
        if !mime.eq_ignore_ascii_case("application/json") {
            return refuse(
                415,
                "unsupported_media_type",
                "set the webhook content type to application/json",
                &delivery,
            );
        }
    }
    if let Err(e) = verify_signature(secrets, headers.get("x-hub-signature-256"), body) {
        return refuse(401, "bad_signature", e.to_string(), &delivery);
    }
    let event = headers.get("x-github-event").unwrap_or("");
    match event {
        "ping" => return WebhookOutcome::reply(200, "pong", "webhook configured"),
        "workflow_job" => {}
        "" => return refuse(400, "bad_request", "missing X-GitHub-Event header", &delivery),
        other => return WebhookOutcome::reply(200, "ignored", format!("event {other} is not handled")),
    }
    let mut job = match parse_workflow_job(body) {
        Ok(j) => j,
        Err(e) => return refuse(400, "bad_request", e.to_string(), &delivery),
    };
    // It drives the 24 h give-up and lands in an ARM tag and the demand log: a time GitHub
    // cannot have sent is replaced by the receive time before anything reads it.
    job.created_at = Some(job_created_at(job.created_at.as_deref(), time::OffsetDateTime::now_utc()));
    let kind = match job.action.as_str() {
        "queued" => MessageKind::Provision,
        "completed" => MessageKind::Cleanup,
        "in_progress" => {
            let kind = crate::events::ran_on_kind(pools, job.job_id, job.runner_name.as_deref());
            log_events::job_started(&job, &delivery, kind);
            return WebhookOutcome::reply(200, "ignored", "action in_progress needs no runner");
        }
        other => return WebhookOutcome::reply(200, "ignored", format!("action {other} needs no runner")),
    };
    if let Err(reason) = check_allowed(pools, &job) {
        log_events::refused(&job, &delivery, &reason);
        return WebhookOutcome::reply(403, "forbidden", reason);
    }
    let Some(pool) = choose_pool(pools, &job.labels, Some(&job.repository)) else {
        log_events::no_pool(&job, &delivery);
        return WebhookOutcome::reply(
            200,
            "no_pool",
            format!("no pool fits labels [{}] in {}", job.labels.join(", "), job.repository),
        );
    };
    let message = RunnerMessage {
        v: MESSAGE_VERSION,
        kind,
        job_id: job.job_id,
        run_id: job.run_id,
        repository: job.repository.clone(),
        owner: job.owner.clone(),
        installation_id: job.installation_id,
        labels: job.labels.clone(),
        pool: pool.name.clone(),
        runner_name: pool.runner_name(job.job_id),
        delivery_id: delivery.clone(),
        // Checked above (never absent): a request must be able to age out (24 h) even
        // while it waits on a throttle that never counts as an attempt.
        job_created_at: job.created_at.clone(),
        ran_on: if kind == MessageKind::Cleanup { job.runner_name.clone() } else { None },
        ran_on_id: if kind == MessageKind::Cleanup { job.runner_id } else { None },
        job_started_at: if kind == MessageKind::Cleanup { job.started_at.clone() } else { None },
        origin: None,
    };
    log_events::webhook_accepted(&job, &pool, &delivery);
    let detail = match kind {
        MessageKind::Provision => format!("runner {} requested in pool {}", message.runner_name, pool.name),
        MessageKind::Cleanup => format!("cleanup of job {} queued", job.job_id),
    };
    WebhookVerdict::Accepted { message: Box::new(message), detail }
}

/// How far ahead of our clock a job's `created_at` may be (clock skew) before it is
/// taken for a time GitHub cannot have sent.
pub const MAX_CREATED_AT_SKEW: time::Duration = time::Duration::minutes(5);

/// The job's `created_at` as queued, RFC 3339 in UTC: the payload's when it is an RFC 3339
/// time no later than `received` + [`MAX_CREATED_AT_SKEW`], else `received` (absent,
/// garbage, or in the future: a job cannot be queued after it is delivered). A time long
/// past is kept: the 24 h give-up ends such a request.
#[must_use]
pub fn job_created_at(sent: Option<&str>, received: time::OffsetDateTime) -> String {
    use time::format_description::well_known::Rfc3339;
    // Compared before the move to UTC, which could leave the year range for a date at
    // its far end (9999-12-31T23:59:59-01:00).
    let at = crate::timestamps::parse_time(sent)
        .filter(|t| *t <= received + MAX_CREATED_AT_SKEW)
        .map_or(received, |t| t.to_offset(time::UtcOffset::UTC));
    // A year before 0 in UTC does not format: then the receive time.
    at.format(&Rfc3339).or_else(|_| received.format(&Rfc3339)).unwrap_or_default()
}

/// The delivery id as logged and queued: `-` when absent, `invalid` unless it is 1 to
/// [`MAX_DELIVERY_ID_CHARS`] ASCII letters, digits, `-` or `_`.
#[must_use]
pub fn delivery_id(header: Option<&str>) -> String {
    match header {
        None => "-".to_owned(),
        Some(v)
            if !v.is_empty()
                && v.len() <= MAX_DELIVERY_ID_CHARS
                && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') =>
        {
            v.to_owned()
        }
        Some(_) => "invalid".to_owned(),
    }
}

/// A GUID-shaped random id, like GitHub's delivery ids (for deliveries we send ourselves:
/// `send-webhook`, the demo).
#[must_use]
pub fn random_delivery_id() -> String {
    let b: [u8; 16] = rand::random();
    let h = hex::encode(b);
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

/// Longest `X-GitHub-Delivery` kept (a GUID is 36).
pub const MAX_DELIVERY_ID_CHARS: usize = 64;

fn refuse(status: u16, result: &'static str, detail: impl Into<String>, delivery: &str) -> WebhookOutcome {
    let detail = detail.into();
    tracing::warn!(event = "webhook_refused", status, result, delivery_id = delivery, reason = %crate::telemetry::loggable(&detail), "webhook refused");
    WebhookOutcome::reply(status, result, detail)
}

/// Owner, repository, visibility and installation allowlists.
///
/// # Errors
/// The reason, for the 403 body and the log.
pub fn check_allowed(pools: &PoolsConfig, job: &WorkflowJobEvent) -> Result<(), String> {
    let gh = &pools.github;
    gh.admits(&job.owner, &job.repository)?;
    gh.admits_installation(job.installation_id)?;
    if job.public && !gh.allow_public_repositories {
        return Err(format!("repository {} is public and github.allow_public_repositories is false", job.repository));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_at_in_the_future_or_unreadable_becomes_the_receive_time() {
        let now = "2026-12-06T03:00:00Z";
        let received = crate::timestamps::parse_time(Some(now)).expect("time");
        for sent in [
            Some("2099-01-01T00:00:00Z"),
            Some("2026-12-06T03:05:01Z"),
            Some("9999-12-31T23:59:59-01:00"),
            Some("yesterday"),
            Some(""),
            Some("2026-12-06 02:00:00"),
            None,
        ] {
            assert_eq!(job_created_at(sent, received), now, "{sent:?}");
        }
        // Within the skew, and in the past, GitHub's own time is kept (in UTC).
        assert_eq!(job_created_at(Some("2026-12-06T03:04:00Z"), received), "2026-12-06T03:04:00Z");
        assert_eq!(job_created_at(Some("2026-12-06T03:30:00+01:00"), received), "2026-12-06T02:30:00Z");
        assert_eq!(job_created_at(Some("2000-01-01T00:00:00Z"), received), "2000-01-01T00:00:00Z");
        // The far end of the range: a year before 0 in UTC.
        assert_eq!(job_created_at(Some("0000-01-01T00:00:00+01:00"), received), now);
    }
}
