//! The standalone transport: raw GitHub requests on /api/github-webhook, a durable
//! spool, retries with backoff, and replay after a restart.

mod common;

use std::sync::Arc;

use common::*;
use runner_dispatch::provision::ProvisionError;
use runner_dispatch::provision::dry_run::DryRunBackend;
use runner_dispatch::spool::QueueOptions;

async fn post_raw(
    app: &TestApp,
    body: &[u8],
    event: &str,
    signature: Option<String>,
    delivery: &str,
) -> (u16, serde_json::Value) {
    let mut req = app
        .client
        .post(app.url("/api/github-webhook"))
        .header("Content-Type", "application/json")
        .header("X-GitHub-Event", event)
        .header("X-GitHub-Delivery", delivery)
        .body(body.to_vec());
    if let Some(s) = signature {
        req = req.header("X-Hub-Signature-256", s);
    }
    let resp = req.send().await.expect("send");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(serde_json::Value::Null))
}

#[tokio::test]
async fn a_signed_delivery_is_spooled_then_provisioned_exactly_once() {
    let dir = tempfile::tempdir().expect("tmp");
    let (app, backend) = spawn_dry_run(Some(dir.path())).await;
    let body = fresh_queued(501);
    let (status, reply) = post_raw(&app, &body, "workflow_job", Some(sign(&body)), "d-1").await;
    assert_eq!(status, 202, "{reply}");
    assert!(eventually(|| backend.created().len() == 1).await);
    // A duplicate delivery (same guid, as GitHub redelivers) creates nothing new.
    let (status, _) = post_raw(&app, &body, "workflow_job", Some(sign(&body)), "d-1").await;
    assert_eq!(status, 202);
    let queue = app.state.queue.as_ref().expect("standalone queue");
    assert!(eventually(|| queue.spool().pending().is_empty()).await, "finished work leaves the spool");
    assert_eq!(backend.created().len(), 1);
    assert_eq!(backend.created()[0].name, "ghr-501");
    assert_eq!(backend.created()[0].pool, "linux");
    assert_eq!(app.github.calls().iter().filter(|c| c.contains("generate-jitconfig")).count(), 1);
}

#[tokio::test]
async fn refused_requests_get_their_status_and_leave_nothing_behind() {
    let dir = tempfile::tempdir().expect("tmp");
    let (app, backend) = spawn_dry_run(Some(dir.path())).await;
    let body = fresh_queued(502);
    let (s, _) = post_raw(&app, &body, "workflow_job", None, "d").await;
    assert_eq!(s, 401);
    let (s, _) = post_raw(&app, &body, "workflow_job", Some(runner_dispatch::webhook::sign(b"nope", &body)), "d").await;
    assert_eq!(s, 401);
    let (s, _) = post_raw(&app, &body, "workflow_job", Some("sha256=zz".into()), "d").await;
    assert_eq!(s, 401);
    let bad = b"[1,2".to_vec();
    let (s, _) = post_raw(&app, &bad, "workflow_job", Some(sign(&bad)), "d").await;
    assert_eq!(s, 400);
    let big = vec![b'{'; 1024 * 1024 + 10];
    let (s, _) = post_raw(&app, &big, "workflow_job", Some(sign(&big)), "d").await;
    assert_eq!(s, 413);
    let mut v: serde_json::Value = serde_json::from_slice(&body).expect("json");
    v["workflow_job"]["labels"] = serde_json::json!(["self-hosted", "gpu"]);
    let nopool = serde_json::to_vec(&v).expect("ser");
    let (s, reply) = post_raw(&app, &nopool, "workflow_job", Some(sign(&nopool)), "d").await;
    assert_eq!(s, 200);
    assert_eq!(reply["result"], "no_pool");
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert!(backend.created().is_empty());
    assert!(app.state.queue.as_ref().expect("q").spool().pending().is_empty());
    assert_eq!(app.client.get(app.url("/healthz")).send().await.expect("send").status(), 200);
}

#[tokio::test]
async fn retryable_failures_are_retried_with_backoff_then_given_up_with_the_reason() {
    let dir = tempfile::tempdir().expect("tmp");
    let backend = ScriptedBackend::with(vec![
        Err(ProvisionError::retryable("throttled")),
        Ok(runner_dispatch::provision::CreateOutcome::Created),
    ]);
    let app = spawn_app(backend.clone(), Some(dir.path()), fast_queue()).await;
    let body = fresh_queued(601);
    assert_eq!(post_raw(&app, &body, "workflow_job", Some(sign(&body)), "x").await.0, 202);
    assert!(eventually(|| backend.create_count() == 2).await, "retried after a retryable failure");
    let queue = app.state.queue.as_ref().expect("q");
    assert!(eventually(|| queue.spool().pending().is_empty()).await);

    let always = ScriptedBackend::with((0..10).map(|_| Err(ProvisionError::retryable("no capacity"))).collect());
    let dir2 = tempfile::tempdir().expect("tmp");
    let app2 = spawn_app(always.clone(), Some(dir2.path()), fast_queue()).await;
    let body = fresh_queued(602);
    assert_eq!(post_raw(&app2, &body, "workflow_job", Some(sign(&body)), "y").await.0, 202);
    let q2 = app2.state.queue.as_ref().expect("q");
    assert!(eventually(|| q2.spool().failed().len() == 1).await, "given up after max_attempts");
    let failed = &q2.spool().failed()[0];
    assert_eq!(failed.attempts, 3);
    assert!(failed.reason.contains("no capacity"), "{}", failed.reason);
    assert_eq!(always.create_count(), 3);
    // The spool writes run on the blocking pool: moving to failed/ and removing from
    // pending/ are two steps another thread may observe between.
    assert!(eventually(|| q2.spool().pending().is_empty()).await);
}

#[tokio::test]
async fn spooled_requests_survive_a_restart_and_are_replayed() {
    let dir = tempfile::tempdir().expect("tmp");
    {
        // First process: every attempt fails retryably with a long backoff, then it "dies".
        let stuck = ScriptedBackend::with(vec![Err(ProvisionError::retryable("down"))]);
        let hour = std::time::Duration::from_secs(3600);
        let options = QueueOptions { backoff_base: hour, backoff_max: hour, ..fast_queue() };
        let app = spawn_app(stuck.clone(), Some(dir.path()), options).await;
        let body = fresh_queued(701);
        assert_eq!(post_raw(&app, &body, "workflow_job", Some(sign(&body)), "z").await.0, 202);
        assert!(eventually(|| stuck.create_count() == 1).await);
        // The attempt count is rewritten on the blocking pool: let it land before "dying".
        let spool = app.state.queue.as_ref().expect("q").spool().clone();
        assert!(eventually(|| spool.pending().first().is_some_and(|i| i.attempts == 1)).await);
        assert_eq!(spool.pending().len(), 1);
    }
    // Second process on the same state dir: the request is replayed and provisioned.
    let backend = Arc::new(DryRunBackend::new(false));
    let app = spawn_app(backend.clone(), Some(dir.path()), fast_queue()).await;
    assert!(eventually(|| backend.created().len() == 1).await, "replayed at start");
    assert_eq!(backend.created()[0].name, "ghr-701");
    let q = app.state.queue.as_ref().expect("q");
    assert!(eventually(|| q.spool().pending().is_empty()).await);
}
