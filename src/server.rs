//! The HTTP server: one router serving both transports over the same handlers.
//! Standalone: `POST /api/github-webhook` (raw GitHub request) into a durable in-process
//! queue. Azure Functions custom handler: the envelope routes `/github-webhook`,
//! `/provision-runner`, `/cleanup-runner` and `/reconcile`. The work behind a queued
//! message is [`crate::worker`]'s; this module serves routes.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tower_http::timeout::TimeoutLayer;

use crate::config::PoolsConfig;
use crate::disposition::{Disposition, Transport, decide};
use crate::functions_host::{InvocationReply, bindings, parse_http_invocation, parse_queue_invocation};
use crate::message::{FailedMessage, MessageKind, RunnerMessage, decode_message};
use crate::provision::Provisioner;
use crate::reconcile::Reconciler;
use crate::secret::Secret;
use crate::spool::{EnqueueError, SPOOL_FULL_RETRY_AFTER, StandaloneQueue};
use crate::webhook::{self, Headers, MAX_BODY_BYTES, WebhookVerdict};
use crate::worker::process_message;

/// `origin` of a provision request queued again because the host's retries ran out while
/// creates were throttled.
pub const REQUEUED_WHILE_THROTTLED: &str = "requeued:throttled";

/// Longest a raw webhook request may take, body upload included; slower clients get a bare
/// 408. GitHub itself gives up after 10 s, so nothing legitimate is cut short. Header size is
/// bounded by hyper's defaults (at most 100 headers and a ~400 KiB read buffer for the request
/// head, beyond which it answers 431); see docs/configuration.md, "Security".
pub const RAW_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a client may take to send a request's head (line and headers). GitHub sends
/// its head in one go; without this a client trickling bytes holds a connection forever.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections served at once; further clients wait in the listen backlog until one
/// closes. Well above GitHub's concurrency for one organisation, well below the process's
/// file descriptor limit.
pub const MAX_CONNECTIONS: usize = 1024;

/// How long shutdown waits for open requests to finish.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Serves `app` on `listener` until `shutdown` completes: HTTP/1.1 with a header-read
/// timeout and at most `max_connections` connections at once, then a graceful close of
/// the open ones (at most [`SHUTDOWN_GRACE`]).
///
/// # Errors
/// None today; accept errors (e.g. out of file descriptors) are logged and retried.
pub async fn serve_connections(
    listener: tokio::net::TcpListener,
    app: Router,
    header_read_timeout: Duration,
    max_connections: usize,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use hyper_util::service::TowerToHyperService;

    let permits = Arc::new(tokio::sync::Semaphore::new(max_connections.max(1)));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            () = &mut shutdown => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(event = "accept_failed", error = %e, "could not accept a connection; retrying");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder.timer(TokioTimer::new()).header_read_timeout(header_read_timeout);
        let connection =
            graceful.watch(builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone())));
        tokio::spawn(async move {
            // Errors here are the client's (reset, timeout, malformed head): nothing to do.
            let _ = connection.await;
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown()).await.is_err() {
        tracing::warn!(event = "shutdown_timeout", "connections still open after the grace period; closing");
    }
    Ok(())
}

/// Shared state of every handler.
pub struct AppState {
    pub secrets: Vec<Secret>,
    pub pools: Arc<PoolsConfig>,
    pub provisioner: Arc<Provisioner>,
    pub reconciler: Arc<Reconciler>,
    /// Present in standalone mode: where the raw webhook route puts work.
    pub queue: Option<StandaloneQueue>,
    /// The attempt at which a still-failing request is given up.
    pub max_attempts: u32,
    /// Who may call the envelope routes.
    pub envelope_access: EnvelopeAccess,
}

/// Who may call the envelope routes (`/github-webhook`, `/provision-runner`,
/// `/cleanup-runner`, `/reconcile`). They carry already-trusted work: a provision message
/// is obeyed without a webhook signature, so nobody may reach them unauthenticated.
#[derive(Debug, Clone)]
pub enum EnvelopeAccess {
    /// Under the Functions host: the host calls the handler on the loopback port it chose.
    FunctionsHost,
    /// Standalone with `RUNNER_DISPATCH_ADMIN_TOKEN`: only `Authorization: Bearer <token>`.
    Token(Secret),
    /// Standalone without the setting: the routes are not served (404).
    Closed,
}

impl EnvelopeAccess {
    /// The rule for a process: the host's, else the admin token's, else closed.
    #[must_use]
    pub fn new(under_host: bool, admin_token: Option<Secret>) -> Self {
        match (under_host, admin_token) {
            (true, _) => EnvelopeAccess::FunctionsHost,
            (false, Some(token)) => EnvelopeAccess::Token(token),
            (false, None) => EnvelopeAccess::Closed,
        }
    }

    /// `None` to let the request through, else the refusal's status.
    fn refusal(&self, headers: &HeaderMap) -> Option<StatusCode> {
        match self {
            EnvelopeAccess::FunctionsHost => None,
            EnvelopeAccess::Closed => Some(StatusCode::NOT_FOUND),
            EnvelopeAccess::Token(token) => {
                let presented = headers
                    .get(header::AUTHORIZATION)
                    .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
                    .unwrap_or_default();
                // Constant time in the token's content; the length is not secret.
                let equal: bool = subtle::ConstantTimeEq::ct_eq(presented, token.expose().as_bytes()).into();
                if equal { None } else { Some(StatusCode::UNAUTHORIZED) }
            }
        }
    }
}

/// Refuses an envelope route before anything is read or changed.
async fn guard_envelope(
    State(state): State<Arc<AppState>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    match state.envelope_access.refusal(request.headers()) {
        None => next.run(request).await,
        Some(StatusCode::NOT_FOUND) => json_response(
            404,
            &json!({"result":"not_found","detail":"envelope routes are served standalone only with RUNNER_DISPATCH_ADMIN_TOKEN set"}),
        ),
        Some(status) => {
            tracing::warn!(
                event = "envelope_unauthorized",
                path = %crate::telemetry::loggable(request.uri().path()),
                "envelope route called without the admin token; refused"
            );
            (status, [(header::WWW_AUTHENTICATE, "Bearer")], "").into_response()
        }
    }
}

/// The router for both transports.
pub fn router(state: Arc<AppState>) -> Router {
    router_with_timeout(state, RAW_REQUEST_TIMEOUT)
}

/// [`router`] with another timeout for the raw webhook route (tests use a short one).
/// Only the raw route is bounded: the envelope routes answer the Functions host, which has
/// its own `functionTimeout`, and a provisioning attempt may take up to [`ATTEMPT_TIMEOUT`].
pub fn router_with_timeout(state: Arc<AppState>, raw_timeout: Duration) -> Router {
    let envelope = Router::new()
        .route("/github-webhook", post(host_webhook))
        .route("/provision-runner", post(host_provision))
        .route("/cleanup-runner", post(host_cleanup))
        .route("/reconcile", post(host_reconcile))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), guard_envelope));
    Router::new()
        .route("/", get(health))
        .route("/healthz", get(health))
        .route(
            "/api/github-webhook",
            post(raw_webhook).layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, raw_timeout)),
        )
        .merge(envelope)
        // Envelopes carry the body as an escaped JSON string: allow room beyond the
        // webhook cap so oversize deliveries still get a proper 413 from `accept`.
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES * 3))
        .with_state(state)
}

async fn health() -> &'static str {
    "ok"
}

fn json_response(status: u16, body: &Value) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (code, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

/// Standalone: the raw GitHub request. Work is spooled durably before the 202.
async fn raw_webhook(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Bytes) -> Response {
    let verdict = webhook::accept(&state.secrets, &state.pools, &Headers::from(&headers), &body);
    let WebhookVerdict::Accepted { message, .. } = &verdict else {
        return json_response(verdict.status(), &verdict.body());
    };
    let Some(queue) = &state.queue else {
        return json_response(
            503,
            &json!({"result":"unavailable","detail":"this route queues work only in standalone mode; under the Functions host use /api/github-webhook of the Function App"}),
        );
    };
    // The spool fsyncs: keep that off the async workers so other requests go on.
    let (queue, message) = (queue.clone(), RunnerMessage::clone(message));
    let spooled = tokio::task::spawn_blocking(move || queue.enqueue_delivery(message))
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e).into()));
    match spooled {
        Ok(true) => json_response(verdict.status(), &verdict.body()),
        Ok(false) => json_response(202, &json!({"result":"accepted","detail":"already queued (duplicate delivery)"})),
        Err(full @ EnqueueError::Full { .. }) => {
            tracing::warn!(event = "spool_full", error = %full, "spool full; answering 503 so the delivery shows as failed and reconcile redelivers it");
            let mut response = json_response(
                503,
                &json!({"result":"unavailable","detail":format!("{full}; try again later (it will be redelivered)")}),
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from(SPOOL_FULL_RETRY_AFTER.as_secs()));
            response
        }
        Err(EnqueueError::Io(e)) => {
            tracing::error!(event = "spool_error", error = %e, "could not spool a request; answering 503 so the delivery shows as failed and reconcile redelivers it");
            json_response(
                503,
                &json!({"result":"unavailable","detail":"could not store the request; it will be redelivered"}),
            )
        }
    }
}

/// Host: the `github-webhook` envelope. Always 200 to the host; GitHub's status is in `Outputs.res`.
async fn host_webhook(State(state): State<Arc<AppState>>, body: Bytes) -> Response {
    let mut reply = InvocationReply::new();
    match parse_http_invocation(&body) {
        Ok(req) => {
            let verdict = webhook::accept(&state.secrets, &state.pools, &req.headers, &req.body);
            reply.http_response(verdict.status(), &verdict.body());
            if let WebhookVerdict::Accepted { message: m, .. } = verdict {
                let binding = match m.kind {
                    MessageKind::Provision => {
                        reply.log(format!(
                            "runner requested: job {} pool {} runner {}",
                            m.job_id, m.pool, m.runner_name
                        ));
                        bindings::RUNNER_REQUEST
                    }
                    MessageKind::Cleanup => {
                        reply.log(format!("cleanup queued: job {} pool {}", m.job_id, m.pool));
                        bindings::RUNNER_CLEANUP
                    }
                };
                reply.queue(binding, vec![to_value(&*m)]);
            }
        }
        Err(e) => {
            tracing::warn!(event = "envelope_invalid", error = %e, "github-webhook invocation unreadable");
            reply.http_response(400, &json!({"result":"bad_request","detail":"unreadable invocation"}));
        }
    }
    reply_response(200, &reply)
}

/// The answer to the Functions host: the reply serialized straight into the response body.
fn reply_response(status: u16, reply: &InvocationReply) -> Response {
    match serde_json::to_vec(reply) {
        Ok(body) => {
            let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            (code, [(header::CONTENT_TYPE, "application/json")], body).into_response()
        }
        // Only a map with non-string keys fails to serialize; the reply has none.
        Err(e) => json_response(500, &json!({"error": e.to_string()})),
    }
}

fn to_value<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

async fn host_queue(state: &AppState, body: &[u8], expected: MessageKind) -> Response {
    let mut reply = InvocationReply::new();
    let invocation = match parse_queue_invocation(body) {
        Ok(i) => i,
        Err(e) => {
            // Nothing to retry: the host gave us no message. Say so loudly.
            tracing::error!(event = "envelope_invalid", error = %e, "queue invocation unreadable");
            reply.log(format!("unreadable invocation: {e}"));
            return reply_response(200, &reply);
        }
    };
    let attempt = invocation.dequeue_count;
    // Each trigger reports what it gives up on its own failed queue.
    let failed_binding = match expected {
        MessageKind::Provision => bindings::FAILED,
        MessageKind::Cleanup => bindings::FAILED_CLEANUP,
    };
    let message = match decode_message(&invocation.message) {
        Ok(m) if m.kind == expected => m,
        Ok(m) => {
            tracing::error!(
                event = "message_misrouted",
                job_id = m.job_id,
                "message of the wrong kind on this queue; dropped to the failed queue"
            );
            let reason = format!("message of kind {:?} on the {expected:?} queue", m.kind).to_lowercase();
            reply.queue(failed_binding, vec![to_value(&FailedMessage { request: m, reason, attempts: attempt })]);
            return reply_response(200, &reply);
        }
        Err(e) => {
            let raw: String = invocation.message.to_string().chars().take(2000).collect();
            tracing::error!(event = "message_invalid", error = %e, "queue message unreadable; moved to the failed queue");
            reply.queue(failed_binding, vec![json!({"v":1,"reason":e.to_string(),"attempts":attempt,"raw":raw})]);
            reply.log(format!("unreadable message: {e}"));
            return reply_response(200, &reply);
        }
    };
    let result = process_message(&state.provisioner, message.clone(), attempt).await;
    let give_up = |reply: &mut InvocationReply, reason: String| {
        crate::events::given_up(&message, &reason, attempt);
        reply.log(format!("given up: {reason}"));
        reply.queue(
            failed_binding,
            vec![to_value(&FailedMessage { request: message.clone(), reason, attempts: attempt })],
        );
    };
    match decide(result, attempt, state.max_attempts, expected, Transport::FunctionsHost) {
        Disposition::Done { requests } => {
            reply.log(format!("job {} done", message.job_id));
            queue_requests(state, &mut reply, &requests);
            reply_response(200, &reply)
        }
        Disposition::GiveUp { reason } => {
            give_up(&mut reply, reason);
            reply_response(200, &reply)
        }
        // The host's dequeue budget is spent, but only waiting on a quota, a pace or
        // max_runners, not on a fault: a fresh copy goes back on runner-requests, so a burst
        // longer than maxDequeueCount x visibilityTimeout still gets every runner. Jobs over
        // 24 h are given up by the provisioner.
        Disposition::Requeue { reason } => {
            tracing::info!(event = "request_requeued", job_id = message.job_id, runner_name = %message.runner_name, attempt, reason = %reason, "still throttled after the host's last retry; queued again as a new message");
            reply.log(format!("requeued after {attempt} throttled attempts: {reason}"));
            let mut copy = message.clone();
            copy.origin = Some(REQUEUED_WHILE_THROTTLED.into());
            reply.queue(bindings::RUNNER_REQUEST, vec![to_value(&copy)]);
            reply_response(200, &reply)
        }
        Disposition::Retry { reason, .. } | Disposition::Defer { reason, .. } => {
            tracing::info!(event = "retry_scheduled", job_id = message.job_id, runner_name = %message.runner_name, attempt, reason = %reason, "attempt failed; the host will retry after visibilityTimeout");
            reply.log(format!("retrying: {reason}"));
            // Non-2xx fails the invocation: the host makes the message visible again.
            reply_response(500, &reply)
        }
    }
}

async fn host_provision(State(state): State<Arc<AppState>>, body: Bytes) -> Response {
    host_queue(&state, &body, MessageKind::Provision).await
}

async fn host_cleanup(State(state): State<Arc<AppState>>, body: Bytes) -> Response {
    host_queue(&state, &body, MessageKind::Cleanup).await
}

/// Host timer: the body's shape is not relied upon.
async fn host_reconcile(State(state): State<Arc<AppState>>, _body: Bytes) -> Response {
    let report = state.reconciler.run().await;
    let mut reply = InvocationReply::new();
    reply.log(format!("reconcile: {}", serde_json::to_string(&report).unwrap_or_default()));
    queue_requests(&state, &mut reply, &report.requeue);
    reply_response(200, &reply)
}

/// Runner requests made while handling an invocation (reconcile's re-requests, a cleanup's
/// request for a job whose runner another job took): onto `runner-requests` through the
/// reply's output binding, or into the spool when this process runs the standalone queue.
fn queue_requests(state: &AppState, reply: &mut InvocationReply, requests: &[RunnerMessage]) {
    if requests.is_empty() {
        return;
    }
    if let Some(queue) = &state.queue {
        for m in requests {
            if let Err(e) = queue.enqueue(m.clone()) {
                tracing::error!(event = "spool_error", error = %e, job_id = m.job_id, "could not spool a re-provision request");
            }
        }
    } else {
        reply.queue(bindings::RUNNER_REQUEST, requests.iter().map(to_value).collect());
    }
}
