//! The standalone transport: raw GitHub requests on /api/github-webhook, a durable
//! spool, retries with backoff, and replay after a restart.

mod common;

use std::sync::Arc;

use common::*;
use runner_dispatch::compute::ProvisionError;
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
        Ok(runner_dispatch::compute::CreateOutcome::Created),
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

// ---------------------------------------------------------------------------
// The envelope routes standalone (issue 14, item 1)
// ---------------------------------------------------------------------------

const ADMIN_TOKEN: &str = "standalone-admin-token-0123456789abcdef";

/// A queue-trigger envelope carrying a provision message for `owner/repo`.
fn provision_envelope(job_id: u64, owner: &str, repo: &str) -> serde_json::Value {
    let message = serde_json::json!({
        "v": 1, "kind": "provision", "job_id": job_id, "run_id": 1,
        "repository": format!("{owner}/{repo}"), "owner": owner, "installation_id": null,
        "labels": ["self-hosted", "linux"], "pool": "linux", "runner_name": format!("ghr-{job_id}"),
        "delivery_id": "d", "job_created_at": null
    });
    serde_json::json!({"Data": {"message": message}, "Metadata": {"DequeueCount": 1}})
}

async fn standalone_with_token(token: Option<&str>) -> (TestApp, Arc<DryRunBackend>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tmp");
    let backend = Arc::new(DryRunBackend::new(false));
    let settings = runner_dispatch::config::Settings { admin_token: token.map(Into::into), ..settings() };
    let app = spawn_app_with_settings(
        &settings,
        pools(),
        backend.clone(),
        Some(dir.path()),
        fast_queue(),
        runner_dispatch::server::RAW_REQUEST_TIMEOUT,
    )
    .await;
    (app, backend, dir)
}

async fn post_envelope(app: &TestApp, path: &str, bearer: Option<&str>, body: &serde_json::Value) -> u16 {
    let mut req = app.client.post(app.url(path)).json(body);
    if let Some(b) = bearer {
        req = req.header("Authorization", b);
    }
    req.send().await.expect("send").status().as_u16()
}

#[tokio::test]
async fn without_an_admin_token_standalone_does_not_serve_the_envelope_routes() {
    let (app, backend, _dir) = standalone_with_token(None).await;
    let message = provision_envelope(801, "Octocoders", "Hello-World");
    for path in ["/github-webhook", "/provision-runner", "/cleanup-runner", "/reconcile"] {
        for bearer in [None, Some(format!("Bearer {ADMIN_TOKEN}"))] {
            assert_eq!(post_envelope(&app, path, bearer.as_deref(), &message).await, 404, "{path}");
        }
    }
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert!(app.github.calls().is_empty(), "GitHub was called: {:?}", app.github.calls());
    assert!(backend.created().is_empty());
}

#[tokio::test]
async fn with_an_admin_token_the_envelope_routes_want_it_exactly() {
    let (app, backend, _dir) = standalone_with_token(Some(ADMIN_TOKEN)).await;
    let message = provision_envelope(802, "Octocoders", "Hello-World");
    let wrong = [
        None,
        Some(String::new()),
        Some(ADMIN_TOKEN.to_owned()),
        Some(format!("bearer {ADMIN_TOKEN}")),
        Some(format!("Bearer {ADMIN_TOKEN}x")),
        Some(format!("Bearer {}", &ADMIN_TOKEN[1..])),
        Some("Basic dXNlcjpwYXNz".to_owned()),
    ];
    for path in ["/github-webhook", "/provision-runner", "/cleanup-runner", "/reconcile"] {
        for bearer in &wrong {
            assert_eq!(post_envelope(&app, path, bearer.as_deref(), &message).await, 401, "{path} {bearer:?}");
        }
    }
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert!(app.github.calls().is_empty(), "GitHub was called: {:?}", app.github.calls());
    assert!(backend.created().is_empty());
    // The operator, with the token, re-drives a request.
    assert_eq!(post_envelope(&app, "/provision-runner", Some(&format!("Bearer {ADMIN_TOKEN}")), &message).await, 200);
    assert_eq!(backend.created().len(), 1);
    assert_eq!(backend.created()[0].name, "ghr-802");
}

#[tokio::test]
async fn a_message_for_an_owner_the_allowlist_refuses_is_refused_whatever_the_route() {
    let (app, backend, _dir) = standalone_with_token(Some(ADMIN_TOKEN)).await;
    let bearer = format!("Bearer {ADMIN_TOKEN}");
    for (owner, repo) in [("other-org", "Hello-World"), ("Octocoders", "..")] {
        let message = provision_envelope(803, owner, repo);
        let resp = app
            .client
            .post(app.url("/provision-runner"))
            .header("Authorization", &bearer)
            .json(&message)
            .send()
            .await
            .expect("send");
        assert_eq!(resp.status(), 200);
        let reply: serde_json::Value = resp.json().await.expect("json");
        let reason = reply["Outputs"]["failedRequest"]["reason"].as_str().unwrap_or_default().to_owned();
        assert!(reason.contains("message refused"), "{owner}/{repo}: {reply}");
    }
    assert!(app.github.calls().is_empty(), "GitHub was called: {:?}", app.github.calls());
    assert!(backend.created().is_empty());
}

// ---------------------------------------------------------------------------
// Concurrent deliveries and waiting on max_runners (issue 14, items 11 and 4)
// ---------------------------------------------------------------------------

#[tokio::test]
async fn concurrent_deliveries_of_one_job_are_all_accepted_and_spooled_once() {
    let dir = tempfile::tempdir().expect("tmp");
    let (app, backend) = spawn_dry_run(Some(dir.path())).await;
    let app = Arc::new(app);
    let body = fresh_queued(811);
    let tasks: Vec<_> = (0..12)
        .map(|i| {
            let (app, body) = (app.clone(), body.clone());
            tokio::spawn(async move {
                let delivery = format!("00000000-0000-0000-0000-0000000000{i:02}");
                post_raw(&app, &body, "workflow_job", Some(sign(&body)), &delivery).await
            })
        })
        .collect();
    for t in tasks {
        let (status, reply) = t.await.expect("task");
        assert_eq!(status, 202, "{reply}");
    }
    assert!(eventually(|| backend.created().len() == 1).await);
    let queue = app.state.queue.as_ref().expect("standalone queue");
    assert!(eventually(|| queue.spool().pending().is_empty()).await);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(backend.created().len(), 1, "{:?}", backend.created());
    assert_eq!(app.github.calls().iter().filter(|c| c.contains("generate-jitconfig")).count(), 1);
    let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("pending")).expect("dir").flatten().collect();
    assert!(leftovers.is_empty(), "temporary files left behind: {leftovers:?}");
}

#[tokio::test]
async fn a_request_waiting_on_max_runners_is_deferred_never_given_up() {
    let text = POOLS.replace(
        "image = \"example.azurecr.io/runner:1\"\n\n[[pools]]\nname = \"windows\"",
        "image = \"example.azurecr.io/runner:1\"\nmax_runners = 1\n\n[[pools]]\nname = \"windows\"",
    );
    let pools = Arc::new(runner_dispatch::config::PoolsConfig::parse(&text).expect("pools"));
    let dir = tempfile::tempdir().expect("tmp");
    let backend = common::ScriptedBackend::with(vec![]);
    // Three attempts at most, retried within milliseconds: a cap wait counted as an
    // attempt would land in failed/ at once.
    let app = spawn_app_with(
        pools,
        backend.clone(),
        Some(dir.path()),
        fast_queue(),
        runner_dispatch::server::RAW_REQUEST_TIMEOUT,
    )
    .await;
    for job in [821, 822] {
        let body = fresh_queued(job);
        let (status, _) = post_raw(&app, &body, "workflow_job", Some(sign(&body)), &format!("d-{job}")).await;
        assert_eq!(status, 202);
    }
    assert!(eventually(|| backend.create_count() == 1).await);
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let spool = app.state.queue.as_ref().expect("standalone queue").spool();
    assert!(spool.failed().is_empty(), "given up while waiting on max_runners: {:?}", spool.failed());
    assert_eq!(spool.pending().len(), 1, "the second request still waits");
    assert_eq!(backend.create_count(), 1);
}

/// A standalone server on `dir` whose spool takes at most `max` pending requests.
async fn capped(
    dir: &std::path::Path,
    max: usize,
    backend: Arc<dyn runner_dispatch::compute::ComputeBackend>,
    options: QueueOptions,
) -> TestApp {
    let settings = runner_dispatch::config::Settings { spool_max: Some(max), ..settings() };
    spawn_app_with_settings(
        &settings,
        pools(),
        backend,
        Some(dir),
        options,
        runner_dispatch::server::RAW_REQUEST_TIMEOUT,
    )
    .await
}

#[tokio::test]
async fn a_full_spool_answers_503_with_retry_after_and_drops_nothing_it_accepted() {
    let dir = tempfile::tempdir().expect("tmp");
    let signed = |job: u64| {
        let body = fresh_queued(job);
        let signature = sign(&body);
        (body, signature)
    };
    {
        // Every attempt fails retryably with an hour's backoff: what is accepted stays pending.
        let stuck = ScriptedBackend::with((0..4).map(|_| Err(ProvisionError::retryable("down"))).collect());
        let hour = std::time::Duration::from_secs(3600);
        let options = QueueOptions { backoff_base: hour, backoff_max: hour, ..fast_queue() };
        let app = capped(dir.path(), 2, stuck.clone(), options).await;
        for job in [701, 702] {
            let (body, signature) = signed(job);
            assert_eq!(post_raw(&app, &body, "workflow_job", Some(signature), "a").await.0, 202);
        }
        assert!(eventually(|| stuck.create_count() == 2).await, "both tried once, both waiting");
        let (body, signature) = signed(703);
        let resp = app
            .client
            .post(app.url("/api/github-webhook"))
            .header("Content-Type", "application/json")
            .header("X-GitHub-Event", "workflow_job")
            .header("X-GitHub-Delivery", "b")
            .header("X-Hub-Signature-256", signature)
            .body(body)
            .send()
            .await
            .expect("send");
        assert_eq!(resp.status(), 503);
        assert_eq!(resp.headers().get("retry-after").and_then(|v| v.to_str().ok()), Some("60"));
        let reply: serde_json::Value = resp.json().await.expect("json");
        assert_eq!(reply["result"], "unavailable");
        assert!(reply["detail"].as_str().expect("detail").contains("RUNNER_DISPATCH_SPOOL_MAX"), "{reply}");
        // A redelivery of a request already pending is still acknowledged, once.
        let (body, signature) = signed(701);
        let (status, reply) = post_raw(&app, &body, "workflow_job", Some(signature), "a").await;
        assert_eq!((status, reply["detail"].as_str()), (202, Some("already queued (duplicate delivery)")));
        let queue = app.state.queue.as_ref().expect("q");
        let mut pending: Vec<u64> = queue.spool().pending().iter().map(|i| i.message.job_id).collect();
        pending.sort_unstable();
        assert_eq!(pending, [701, 702], "nothing accepted was dropped, nothing refused was kept");
        assert_eq!(queue.depth(), 2);
    }
    // After a restart the accepted requests are replayed and provisioned; then there is room.
    let backend = Arc::new(DryRunBackend::new(false));
    let app = capped(dir.path(), 2, backend.clone(), fast_queue()).await;
    assert!(eventually(|| backend.created().len() == 2).await, "the accepted requests were provisioned");
    let queue = app.state.queue.as_ref().expect("q");
    assert!(eventually(|| queue.depth() == 0 && queue.spool().pending().is_empty()).await);
    let (body, signature) = signed(703);
    assert_eq!(post_raw(&app, &body, "workflow_job", Some(signature), "b").await.0, 202);
    assert!(eventually(|| backend.created().len() == 3).await);
}
