//! The Azure Functions custom handler transport, driven over HTTP as the host does:
//! envelopes in, `Outputs` / `Logs` / `ReturnValue` out.

mod common;

use common::*;
use runner_dispatch::compute::ProvisionError;
use serde_json::{Value, json};

fn envelope(headers: &[(&str, &str)], body: Option<&[u8]>) -> Value {
    let mut h = serde_json::Map::new();
    for (k, v) in headers {
        h.insert((*k).to_owned(), json!([v]));
    }
    let mut req = json!({
        "Url": "https://app.azurewebsites.net/api/github-webhook",
        "Method": "POST",
        "Query": {},
        "Headers": h,
        "Params": {},
        "Identities": [],
    });
    if let Some(b) = body {
        req["Body"] = Value::String(String::from_utf8(b.to_vec()).expect("utf8"));
    }
    json!({"Data": {"req": req}, "Metadata": {"sys": {"MethodName": "github-webhook"}}})
}

fn signed_headers(body: &[u8], event: &str) -> Vec<(String, String)> {
    vec![
        ("Content-Type".into(), "application/json".into()),
        ("X-GitHub-Event".into(), event.into()),
        ("X-GitHub-Delivery".into(), "72d3162e-cc78-11e3-81ab-4c9367dc0958".into()),
        ("X-Hub-Signature-256".into(), sign(body)),
    ]
}

async fn post_webhook(app: &TestApp, headers: &[(String, String)], body: Option<&[u8]>) -> Value {
    let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let resp = app.client.post(app.url("/github-webhook")).json(&envelope(&h, body)).send().await.expect("send");
    assert_eq!(resp.status(), 200, "the host must always get 200 for github-webhook");
    resp.json().await.expect("json reply")
}

fn status(reply: &Value) -> &str {
    reply["Outputs"]["res"]["statusCode"].as_str().expect("statusCode")
}

fn assert_no_queue_output(reply: &Value) {
    assert!(reply["Outputs"].get("runnerRequest").is_none(), "unexpected runner request: {reply}");
    assert!(reply["Outputs"].get("runnerCleanup").is_none(), "unexpected cleanup: {reply}");
}

#[tokio::test]
async fn a_signed_queued_fixture_yields_exactly_one_runner_request_for_the_right_pool() {
    let (app, _) = spawn_dry_run(None).await;
    let body = queued_fixture();
    let reply = post_webhook(&app, &signed_headers(&body, "workflow_job"), Some(&body)).await;
    assert_eq!(status(&reply), "202");
    let msg = &reply["Outputs"]["runnerRequest"];
    assert!(msg.is_object(), "one message object, not an array: {reply}");
    assert_eq!(msg["v"], 1);
    assert_eq!(msg["kind"], "provision");
    assert_eq!(msg["pool"], "linux");
    assert_eq!(msg["job_id"], 289_782_451);
    assert_eq!(msg["runner_name"], "ghr-289782451");
    assert_eq!(msg["installation_id"], 3_456_996);
    assert_eq!(msg["delivery_id"], "72d3162e-cc78-11e3-81ab-4c9367dc0958");
    let mut keys: Vec<&str> = msg.as_object().expect("obj").keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        vec![
            "delivery_id",
            "installation_id",
            "job_created_at",
            "job_id",
            "kind",
            "labels",
            "owner",
            "pool",
            "repository",
            "run_id",
            "runner_name",
            "v"
        ],
        "the message is the small contract shape, never the raw payload"
    );
    assert!(reply["Outputs"].get("runnerCleanup").is_none());
    assert!(reply["ReturnValue"].is_null());
}

#[tokio::test]
async fn refusals_carry_their_status_inside_outputs_res_and_queue_nothing() {
    let (app, _) = spawn_dry_run(None).await;
    let body = queued_fixture();
    let good = signed_headers(&body, "workflow_job");

    let mut tampered = body.clone();
    let last = tampered.len() - 3;
    tampered[last] = b' ';
    let reply = post_webhook(&app, &good, Some(&tampered)).await;
    assert_eq!(status(&reply), "401");
    assert_no_queue_output(&reply);

    let unsigned: Vec<_> = good.iter().filter(|(k, _)| k != "X-Hub-Signature-256").cloned().collect();
    let reply = post_webhook(&app, &unsigned, Some(&body)).await;
    assert_eq!(status(&reply), "401");
    assert_no_queue_output(&reply);

    let mut wrong = good.clone();
    wrong[3].1 = runner_dispatch::webhook::sign(b"another-secret", &body);
    let reply = post_webhook(&app, &wrong, Some(&body)).await;
    assert_eq!(status(&reply), "401");
    assert_no_queue_output(&reply);

    let malformed = b"{\"action\": \"queued\", ".to_vec();
    let reply = post_webhook(&app, &signed_headers(&malformed, "workflow_job"), Some(&malformed)).await;
    assert_eq!(status(&reply), "400");
    assert_no_queue_output(&reply);

    let oversize = vec![b' '; 1024 * 1024 + 1];
    let reply = post_webhook(&app, &signed_headers(&oversize, "workflow_job"), Some(&oversize)).await;
    assert_eq!(status(&reply), "413");
    assert_no_queue_output(&reply);

    let mut v: Value = serde_json::from_slice(&body).expect("json");
    v["repository"]["owner"]["login"] = "mallory".into();
    v["repository"]["full_name"] = "mallory/Hello-World".into();
    let disallowed = serde_json::to_vec(&v).expect("ser");
    let reply = post_webhook(&app, &signed_headers(&disallowed, "workflow_job"), Some(&disallowed)).await;
    assert_eq!(status(&reply), "403");
    assert_no_queue_output(&reply);

    let mut form = good.clone();
    form[0].1 = "application/x-www-form-urlencoded".into();
    let reply = post_webhook(&app, &form, Some(&body)).await;
    assert_eq!(status(&reply), "415");
    assert_no_queue_output(&reply);
}

#[tokio::test]
async fn ping_other_events_and_other_actions_are_acknowledged_without_work() {
    let (app, _) = spawn_dry_run(None).await;
    let ping = fixture("github-webhooks/ping__payload.json");
    let reply = post_webhook(&app, &signed_headers(&ping, "ping"), Some(&ping)).await;
    assert_eq!(status(&reply), "200");
    assert_no_queue_output(&reply);

    let push = br#"{"ref":"refs/heads/main"}"#.to_vec();
    let reply = post_webhook(&app, &signed_headers(&push, "push"), Some(&push)).await;
    assert_eq!(status(&reply), "200");
    assert_no_queue_output(&reply);

    for f in ["workflow_job__in_progress.payload.json", "workflow_job__waiting.payload.json"] {
        let b = fixture(&format!("github-webhooks/{f}"));
        let reply = post_webhook(&app, &signed_headers(&b, "workflow_job"), Some(&b)).await;
        assert_eq!(status(&reply), "200", "{f}");
        assert_no_queue_output(&reply);
    }
}

#[tokio::test]
async fn a_completed_job_queues_cleanup_with_the_runner_that_ran_it() {
    let (app, _) = spawn_dry_run(None).await;
    let body = fixture("github-webhooks/workflow_job__completed.success.with-organization.payload.json");
    let reply = post_webhook(&app, &signed_headers(&body, "workflow_job"), Some(&body)).await;
    assert_eq!(status(&reply), "202");
    let msg = &reply["Outputs"]["runnerCleanup"];
    assert_eq!(msg["kind"], "cleanup");
    assert_eq!(msg["ran_on"], "GitHub Actions 5");
    assert!(reply["Outputs"].get("runnerRequest").is_none());
}

#[tokio::test]
async fn envelope_variations_are_tolerated() {
    let (app, _) = spawn_dry_run(None).await;
    let body = queued_fixture();
    // Query as the string "{}", header values as plain strings, lower-case names.
    let env = json!({"Data": {"req": {
        "Url": "http://localhost:7071/api/github-webhook", "Method": "POST", "Query": "{}",
        "Headers": {"content-type": "application/json", "x-github-event": "workflow_job", "x-hub-signature-256": sign(&body)},
        "Params": {}, "Body": String::from_utf8(body.clone()).expect("utf8")
    }}, "Metadata": {}});
    let resp = app.client.post(app.url("/github-webhook")).json(&env).send().await.expect("send");
    let reply: Value = resp.json().await.expect("json");
    assert_eq!(status(&reply), "202");

    // Body absent: unsigned empty request is a 401, not a crash.
    let reply = post_webhook(&app, &[("X-GitHub-Event".into(), "workflow_job".into())], None).await;
    assert_eq!(status(&reply), "401");

    // Not an envelope at all: 400 to GitHub, 200 to the host.
    let resp = app.client.post(app.url("/github-webhook")).body("garbage").send().await.expect("send");
    assert_eq!(resp.status(), 200);
    let reply: Value = resp.json().await.expect("json");
    assert_eq!(status(&reply), "400");
}

fn queue_invocation(message: Value, dequeue_count: u32) -> Value {
    json!({"Data": {"message": message}, "Metadata": {"DequeueCount": dequeue_count, "Id": "abc", "InsertionTime": "2026-01-01T00:00:00+00:00"}})
}

async fn runner_request(app: &TestApp, job_id: u64) -> Value {
    let body = fresh_queued(job_id);
    let reply = post_webhook(app, &signed_headers(&body, "workflow_job"), Some(&body)).await;
    reply["Outputs"]["runnerRequest"].clone()
}

#[tokio::test]
async fn a_doubly_encoded_queue_message_is_provisioned_once() {
    let (app, backend) = spawn_dry_run(None).await;
    let msg = runner_request(&app, 42).await;
    let twice = Value::String(Value::String(msg.to_string()).to_string());
    let resp =
        app.client.post(app.url("/provision-runner")).json(&queue_invocation(twice, 1)).send().await.expect("send");
    assert_eq!(resp.status(), 200);
    let reply: Value = resp.json().await.expect("json");
    assert!(reply["Outputs"].get("failedRequest").is_none(), "{reply}");
    let created = backend.created();
    assert_eq!(created.len(), 1);
    assert_eq!(created[0].name, "ghr-42");
    assert_eq!(created[0].pool, "linux");
    // A second delivery of the same message creates nothing new.
    let resp =
        app.client.post(app.url("/provision-runner")).json(&queue_invocation(msg, 1)).send().await.expect("send");
    assert_eq!(resp.status(), 200);
    assert_eq!(backend.created().len(), 1);
    assert_eq!(app.github.calls().iter().filter(|c| c.contains("generate-jitconfig")).count(), 1);
}

#[tokio::test]
async fn a_retryable_failure_answers_non_2xx_so_the_host_retries() {
    let backend = ScriptedBackend::with(vec![Err(ProvisionError::retryable("ARM 429"))]);
    let app = spawn_app(backend.clone(), None, fast_queue()).await;
    let msg = runner_request(&app, 7).await;
    let resp = app
        .client
        .post(app.url("/provision-runner"))
        .json(&queue_invocation(msg.clone(), 1))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 500);
    let reply: Value = resp.json().await.expect("json");
    assert!(reply["Outputs"].get("failedRequest").is_none());
    // The host brings it back: the next attempt succeeds.
    let resp =
        app.client.post(app.url("/provision-runner")).json(&queue_invocation(msg, 2)).send().await.expect("send");
    assert_eq!(resp.status(), 200);
    assert_eq!(backend.create_count(), 2);
}

#[tokio::test]
async fn permanent_failures_and_the_last_attempt_go_to_the_failed_queue_with_the_reason() {
    let backend = ScriptedBackend::with(vec![
        Err(ProvisionError::permanent("image not found")),
        Err(ProvisionError::retryable("quota exceeded")),
    ]);
    let app = spawn_app(backend.clone(), None, fast_queue()).await;
    let msg = runner_request(&app, 8).await;
    let resp = app
        .client
        .post(app.url("/provision-runner"))
        .json(&queue_invocation(msg.clone(), 1))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    let reply: Value = resp.json().await.expect("json");
    let failed = &reply["Outputs"]["failedRequest"];
    assert_eq!(failed["reason"], "image not found");
    assert_eq!(failed["attempts"], 1);
    assert_eq!(failed["job_id"], 8);
    // The registration made for the failed create was deleted.
    assert!(
        app.github.calls().iter().any(|c| c.starts_with("DELETE /orgs/Octocoders/actions/runners/")),
        "{:?}",
        app.github.calls()
    );

    let last = app.state.max_attempts;
    let resp =
        app.client.post(app.url("/provision-runner")).json(&queue_invocation(msg, last)).send().await.expect("send");
    assert_eq!(resp.status(), 200, "the last attempt is reported, not failed again");
    let reply: Value = resp.json().await.expect("json");
    let failed = &reply["Outputs"]["failedRequest"];
    assert!(failed["reason"].as_str().expect("reason").contains("quota exceeded"));
    assert_eq!(failed["attempts"], last);
}

#[tokio::test]
async fn a_request_still_throttled_at_the_last_dequeue_is_queued_again_not_given_up() {
    let backend = ScriptedBackend::with(vec![Err(ProvisionError::Retryable {
        reason: "ContainerGroupQuotaReached".into(),
        retry_after: Some(std::time::Duration::from_secs(300)),
    })]);
    let app = spawn_app(backend.clone(), None, fast_queue()).await;
    let msg = runner_request(&app, 9).await;
    let last = app.state.max_attempts;
    let invoke = |m: Value, n: u32| app.client.post(app.url("/provision-runner")).json(&queue_invocation(m, n)).send();

    // The host's last dequeue, and creates are throttled (429 + Retry-After): a fresh copy.
    let resp = invoke(msg.clone(), last).await.expect("send");
    assert_eq!(resp.status(), 200, "answered, so the host does not poison it");
    let reply: Value = resp.json().await.expect("json");
    assert!(reply["Outputs"].get("failedRequest").is_none(), "{reply}");
    let copy = reply["Outputs"]["runnerRequest"].clone();
    assert_eq!(copy["job_id"], 9);
    assert_eq!(copy["runner_name"], msg["runner_name"]);
    assert_eq!(copy["origin"], runner_dispatch::server::REQUEUED_WHILE_THROTTLED);

    // While the create gate is closed the copy's attempts are deferred (500: the host retries)...
    let resp = invoke(copy.clone(), 1).await.expect("send");
    assert_eq!(resp.status(), 500);
    // ...and deferred again at its own last dequeue: queued again, still not given up.
    let resp = invoke(copy.clone(), last).await.expect("send");
    assert_eq!(resp.status(), 200);
    let reply: Value = resp.json().await.expect("json");
    assert_eq!(reply["Outputs"]["runnerRequest"]["job_id"], 9, "{reply}");
    assert_eq!(backend.create_count(), 1, "deferred attempts create nothing");

    // A fault without Retry-After at the last dequeue is still given up and reported.
    let backend = ScriptedBackend::with(vec![Err(ProvisionError::retryable("InternalServerError"))]);
    let app = spawn_app(backend.clone(), None, fast_queue()).await;
    let msg = runner_request(&app, 10).await;
    let resp = app
        .client
        .post(app.url("/provision-runner"))
        .json(&queue_invocation(msg, app.state.max_attempts))
        .send()
        .await
        .expect("send");
    let reply: Value = resp.json().await.expect("json");
    assert!(reply["Outputs"].get("runnerRequest").is_none(), "{reply}");
    assert!(reply["Outputs"]["failedRequest"]["reason"].as_str().expect("reason").contains("InternalServerError"));
}

#[tokio::test]
async fn an_unreadable_queue_message_is_reported_on_the_failed_queue() {
    let (app, backend) = spawn_dry_run(None).await;
    let resp = app
        .client
        .post(app.url("/provision-runner"))
        .json(&queue_invocation(json!("{not json"), 1))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    let reply: Value = resp.json().await.expect("json");
    assert!(reply["Outputs"]["failedRequest"]["reason"].as_str().expect("reason").contains("not JSON"));
    assert!(backend.created().is_empty());
}

#[tokio::test]
async fn a_job_older_than_a_day_is_given_up_not_provisioned() {
    let (app, backend) = spawn_dry_run(None).await;
    let body = queued_fixture(); // created_at 2021
    let reply = post_webhook(&app, &signed_headers(&body, "workflow_job"), Some(&body)).await;
    let msg = reply["Outputs"]["runnerRequest"].clone();
    let resp =
        app.client.post(app.url("/provision-runner")).json(&queue_invocation(msg, 1)).send().await.expect("send");
    let reply: Value = resp.json().await.expect("json");
    assert!(reply["Outputs"]["failedRequest"]["reason"].as_str().expect("reason").contains("24 h"));
    assert!(backend.created().is_empty());
}

#[tokio::test]
async fn cleanup_and_reconcile_and_readiness_answer_the_host() {
    let (app, backend) = spawn_dry_run(None).await;
    let msg = runner_request(&app, 9).await;
    app.client.post(app.url("/provision-runner")).json(&queue_invocation(msg.clone(), 1)).send().await.expect("send");
    assert_eq!(backend.created().len(), 1);
    let mut cleanup = msg.clone();
    cleanup["kind"] = "cleanup".into();
    cleanup["ran_on"] = "ghr-9".into();
    // The id of the JIT registration made for ghr-9 (the dry-run registry's first).
    cleanup["ran_on_id"] = 1.into();
    let resp =
        app.client.post(app.url("/cleanup-runner")).json(&queue_invocation(cleanup, 1)).send().await.expect("send");
    assert_eq!(resp.status(), 200);
    assert_eq!(backend.deleted(), vec!["ghr-9"]);

    // The timer body's shape is not relied on.
    for body in [json!({}), json!({"Data":{"timer":{"IsPastDue":false}},"Metadata":{}}), json!("x")] {
        let resp = app.client.post(app.url("/reconcile")).json(&body).send().await.expect("send");
        assert_eq!(resp.status(), 200);
        let reply: Value = resp.json().await.expect("json");
        assert!(reply["Logs"][0].as_str().expect("log").starts_with("reconcile:"));
    }
    assert_eq!(app.client.get(app.url("/")).send().await.expect("send").status(), 200);
}

#[test]
fn host_json_and_function_folders_declare_the_contract() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let host: Value = serde_json::from_slice(&std::fs::read(root.join("host.json")).expect("host.json")).expect("json");
    assert_eq!(host["extensionBundle"]["id"], "Microsoft.Azure.Functions.ExtensionBundle");
    assert_eq!(host["extensionBundle"]["version"], "[4.*, 5.0.0)");
    assert_eq!(host["customHandler"]["description"]["defaultExecutablePath"], "runner-dispatch");
    assert_eq!(host["extensions"]["queues"]["visibilityTimeout"], "00:01:00");
    assert_eq!(
        host["extensions"]["queues"]["maxDequeueCount"].as_u64(),
        Some(u64::from(runner_dispatch::worker::DEFAULT_MAX_ATTEMPTS)),
        "the handler gives up on the attempt the host would poison"
    );
    let read = |f: &str| -> Value {
        serde_json::from_slice(&std::fs::read(root.join("function_app").join(f).join("function.json")).expect(f))
            .expect("json")
    };
    let hook = read("github-webhook");
    let b = hook["bindings"].as_array().expect("bindings");
    assert!(b.iter().any(|x| x["type"] == "httpTrigger"
        && x["authLevel"] == "anonymous"
        && x["route"] == "github-webhook"
        && x["name"] == "req"));
    assert!(
        b.iter().any(|x| x["type"] == "queue" && x["queueName"] == "runner-requests" && x["name"] == "runnerRequest")
    );
    assert!(
        b.iter().any(|x| x["type"] == "queue" && x["queueName"] == "runner-cleanup" && x["name"] == "runnerCleanup")
    );
    let prov = read("provision-runner");
    assert!(
        prov["bindings"]
            .as_array()
            .expect("b")
            .iter()
            .any(|x| x["type"] == "queueTrigger" && x["queueName"] == "runner-requests" && x["name"] == "message")
    );
    assert!(
        prov["bindings"]
            .as_array()
            .expect("b")
            .iter()
            .any(|x| x["queueName"] == "runner-requests-failed" && x["name"] == "failedRequest")
    );
    assert!(
        prov["bindings"].as_array().expect("b").iter().any(|x| x["type"] == "queue"
            && x["direction"] == "out"
            && x["queueName"] == "runner-requests"
            && x["name"] == "runnerRequest"),
        "provision-runner re-queues throttled requests"
    );
    let clean = read("cleanup-runner");
    assert!(
        clean["bindings"]
            .as_array()
            .expect("b")
            .iter()
            .any(|x| x["type"] == "queueTrigger" && x["queueName"] == "runner-cleanup")
    );
    assert!(
        clean["bindings"].as_array().expect("b").iter().any(|x| x["type"] == "queue"
            && x["direction"] == "out"
            && x["queueName"] == "runner-requests"
            && x["name"] == "runnerRequest"),
        "cleanup-runner requests a runner again for a job whose runner another job took"
    );
    let rec = read("reconcile");
    assert!(
        rec["bindings"]
            .as_array()
            .expect("b")
            .iter()
            .any(|x| x["type"] == "timerTrigger" && x["schedule"] == "0 */5 * * * *")
    );
}

/// POOLS with `max_runners = 1` on the Linux pool.
fn capped_pools() -> std::sync::Arc<runner_dispatch::config::PoolsConfig> {
    let text = POOLS.replace(
        "image = \"example.azurecr.io/runner:1\"\n\n[[pools]]\nname = \"windows\"",
        "image = \"example.azurecr.io/runner:1\"\nmax_runners = 1\n\n[[pools]]\nname = \"windows\"",
    );
    std::sync::Arc::new(runner_dispatch::config::PoolsConfig::parse(&text).expect("pools"))
}

#[tokio::test]
async fn a_request_waiting_on_max_runners_at_the_last_dequeue_is_queued_again_not_given_up() {
    let backend = ScriptedBackend::with(vec![]);
    let app = spawn_app_with(
        capped_pools(),
        backend.clone(),
        None,
        fast_queue(),
        runner_dispatch::server::RAW_REQUEST_TIMEOUT,
    )
    .await;
    let first = runner_request(&app, 601).await;
    let resp =
        app.client.post(app.url("/provision-runner")).json(&queue_invocation(first, 1)).send().await.expect("send");
    assert_eq!(resp.status(), 200);
    assert_eq!(backend.create_count(), 1);
    // The pool is full. Waiting for a slot is not an attempt: at the host's last dequeue
    // the request goes back on runner-requests, never to the failed queue.
    let second = runner_request(&app, 602).await;
    let last = app.state.max_attempts;
    let resp =
        app.client.post(app.url("/provision-runner")).json(&queue_invocation(second, last)).send().await.expect("send");
    assert_eq!(resp.status(), 200);
    let reply: Value = resp.json().await.expect("json");
    assert!(reply["Outputs"].get("failedRequest").is_none(), "given up while waiting on max_runners: {reply}");
    assert_eq!(reply["Outputs"]["runnerRequest"]["job_id"], 602, "{reply}");
    assert_eq!(backend.create_count(), 1);
}

#[tokio::test]
async fn concurrent_deliveries_of_one_job_all_get_202_and_make_one_runner() {
    let (app, backend) = spawn_dry_run(None).await;
    let app = std::sync::Arc::new(app);
    let body = fresh_queued(611);
    let replies = futures_join((0..8).map(|i| {
        let (app, body) = (app.clone(), body.clone());
        async move {
            let mut headers = signed_headers(&body, "workflow_job");
            headers[2].1 = format!("00000000-0000-0000-0000-00000000000{i}");
            post_webhook(&app, &headers, Some(&body)).await
        }
    }))
    .await;
    assert!(replies.iter().all(|r| status(r) == "202"), "{replies:?}");
    // The host runs the eight queued messages, at once.
    let runs = futures_join(replies.into_iter().map(|r| {
        let app = app.clone();
        async move {
            let msg = r["Outputs"]["runnerRequest"].clone();
            app.client.post(app.url("/provision-runner")).json(&queue_invocation(msg, 1)).send().await.expect("send")
        }
    }))
    .await;
    // One creates; the others find it, or are told to come back while it is mid-flight.
    assert!(runs.iter().all(|r| r.status() == 200 || r.status() == 500), "{runs:?}");
    assert_eq!(backend.created().len(), 1, "{:?}", backend.created());
}

/// Runs the futures as concurrent tasks; their outputs in order.
async fn futures_join<F>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let tasks: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.expect("task"));
    }
    out
}

#[tokio::test]
async fn a_cleanup_given_up_goes_to_the_cleanup_failed_queue_with_the_reason() {
    let (app, backend) = spawn_dry_run(None).await;
    let cleanup = json!({
        "v": 1, "kind": "cleanup", "job_id": 631, "run_id": 1, "repository": "mallory/Hello-World",
        "owner": "mallory", "labels": ["self-hosted"], "pool": "linux", "runner_name": "ghr-631",
        "delivery_id": "d", "ran_on": "ghr-630", "ran_on_id": 5
    });
    let resp =
        app.client.post(app.url("/cleanup-runner")).json(&queue_invocation(cleanup, 1)).send().await.expect("send");
    assert_eq!(resp.status(), 200);
    let reply: Value = resp.json().await.expect("json");
    let failed = &reply["Outputs"]["failedCleanup"];
    assert_eq!(failed["job_id"], 631, "{reply}");
    assert!(failed["reason"].as_str().is_some_and(|r| r.contains("allowed_owners")), "{reply}");
    assert!(backend.deleted().is_empty());
    // An unreadable cleanup message is reported there too, not only in the log.
    let resp = app
        .client
        .post(app.url("/cleanup-runner"))
        .json(&queue_invocation(json!("garbage"), 1))
        .send()
        .await
        .expect("send");
    let reply: Value = resp.json().await.expect("json");
    assert!(reply["Outputs"]["failedCleanup"]["reason"].is_string(), "{reply}");
}
