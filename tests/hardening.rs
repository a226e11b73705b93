//! Values a request carries are checked where they enter (issue 22, items 11 and 12):
//! a provision message is held to the pool it names, through the queue paths of both
//! transports, and a delivery's `created_at` is bounded before it drives the 24 h give-up
//! or an ARM tag.

mod common;

use std::sync::Arc;

use common::*;
use runner_dispatch::config::PoolsConfig;
use runner_dispatch::message::RunnerMessage;
use runner_dispatch::provision::dry_run::DryRunBackend;
use runner_dispatch::server::RAW_REQUEST_TIMEOUT;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// An open pool, and one for octo-org/api only that carries an Azure identity.
const POOLS: &str = r#"
[github]
allowed_owners = ["octo-org"]
check_job_queued = "never"

[[pools]]
name = "linux"
backend = "aci"
labels = ["self-hosted", "linux"]
image = "example.azurecr.io/runner:1"

[[pools]]
name = "secure"
backend = "aci"
labels = ["self-hosted", "linux", "secure"]
image = "example.azurecr.io/runner:1"
repositories = ["octo-org/api"]
identity = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/r/providers/Microsoft.ManagedIdentity/userAssignedIdentities/api-deployer"
runner_group_id = 7
"#;

fn pools() -> Arc<PoolsConfig> {
    Arc::new(PoolsConfig::parse(POOLS).expect("pools parse"))
}

/// Provision requests that name a pool that does not fit their job, and what the reason says.
fn misnamed() -> Vec<(RunnerMessage, &'static str)> {
    let now = OffsetDateTime::now_utc().format(&Rfc3339).expect("fmt");
    let msg = |job: u64, repository: &str, pool: &str, labels: &[&str]| RunnerMessage {
        repository: repository.into(),
        job_created_at: Some(now.clone()),
        ..provision_message(job, pool, labels)
    };
    vec![
        // Another repository's job sent to the pool with the identity.
        (msg(1, "octo-org/web", "secure", &["self-hosted", "linux"]), "repository not in its repositories filter"),
        // A label the named pool lacks.
        (msg(2, "octo-org/api", "linux", &["self-hosted", "gpu"]), "lacks label(s) gpu"),
        // No label at all fits nothing.
        (msg(3, "octo-org/api", "secure", &[]), "no labels"),
    ]
}

#[tokio::test]
async fn a_provision_message_naming_a_pool_that_does_not_fit_its_job_fails_under_the_host() {
    let backend = Arc::new(DryRunBackend::new(false));
    let app = spawn_app_with(pools(), backend.clone(), None, fast_queue(), RAW_REQUEST_TIMEOUT).await;
    for (msg, because) in misnamed() {
        let invocation = json!({"Data": {"message": serde_json::to_value(&msg).expect("ser")},
            "Metadata": {"DequeueCount": 1, "Id": "x", "InsertionTime": "2026-01-01T00:00:00+00:00"}});
        // 200: a permanent refusal is not retried.
        let reply = host_call(&app, "/provision-runner", &invocation).await;
        let failed = &reply["Outputs"]["failedRequest"];
        assert_eq!(failed["job_id"], msg.job_id, "{reply}");
        let reason = failed["reason"].as_str().expect("reason");
        assert!(reason.contains(&format!("pool {} does not fit", msg.pool)) && reason.contains(because), "{reason}");
    }
    assert!(backend.requests().is_empty(), "nothing was created: {:?}", backend.requests());
    assert!(app.github.calls().is_empty(), "GitHub was called: {:?}", app.github.calls());
}

#[tokio::test]
async fn a_provision_message_naming_a_pool_that_does_not_fit_its_job_fails_in_the_standalone_spool() {
    let dir = tempfile::tempdir().expect("tmp");
    let backend = Arc::new(DryRunBackend::new(false));
    let app = spawn_app_with(pools(), backend.clone(), Some(dir.path()), fast_queue(), RAW_REQUEST_TIMEOUT).await;
    let queue = app.state.queue.as_ref().expect("standalone queue");
    let cases = misnamed();
    for (msg, _) in &cases {
        assert!(queue.enqueue(msg.clone()).expect("spooled"));
    }
    assert!(eventually(|| queue.spool().failed().len() == cases.len()).await, "{:?}", queue.spool().failed());
    let failed = queue.spool().failed();
    for (msg, because) in &cases {
        let f = failed.iter().find(|f| f.request.job_id == msg.job_id).expect("failed");
        assert_eq!(f.attempts, 1, "refused at once, not retried");
        assert!(f.reason.contains(because), "{}", f.reason);
    }
    assert!(eventually(|| queue.spool().pending().is_empty()).await, "{:?}", queue.spool().pending());
    assert!(backend.requests().is_empty(), "nothing was created: {:?}", backend.requests());
    assert!(app.github.calls().is_empty(), "GitHub was called: {:?}", app.github.calls());
}

#[tokio::test]
async fn a_message_that_fits_the_pool_it_names_is_still_provisioned_and_a_removed_pool_falls_back_to_routing() {
    let backend = Arc::new(DryRunBackend::new(false));
    let dir = tempfile::tempdir().expect("tmp");
    let app = spawn_app_with(pools(), backend.clone(), Some(dir.path()), fast_queue(), RAW_REQUEST_TIMEOUT).await;
    let queue = app.state.queue.as_ref().expect("standalone queue");
    let now = OffsetDateTime::now_utc().format(&Rfc3339).expect("fmt");
    let fits = RunnerMessage {
        job_created_at: Some(now.clone()),
        ..provision_message(10, "secure", &["self-hosted", "Linux", "secure"])
    };
    let renamed = RunnerMessage {
        job_created_at: Some(now),
        repository: "octo-org/web".into(),
        ..provision_message(11, "old-name", &["self-hosted", "linux"])
    };
    assert!(queue.enqueue(fits).expect("spooled"));
    assert!(queue.enqueue(renamed).expect("spooled"));
    assert!(eventually(|| backend.created().len() == 2).await, "{:?}", queue.spool().failed());
    let mut made: Vec<(String, u64)> = backend.created().into_iter().map(|r| (r.pool, r.job_id)).collect();
    made.sort();
    assert_eq!(made, [("linux".to_owned(), 11), ("secure".to_owned(), 10)]);
}

fn headers(body: &[u8]) -> serde_json::Map<String, Value> {
    [
        ("Content-Type", "application/json".to_owned()),
        ("X-GitHub-Event", "workflow_job".to_owned()),
        ("X-GitHub-Delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958".to_owned()),
        ("X-Hub-Signature-256", sign(body)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), json!([v])))
    .collect()
}

/// The queued fixture for job `job_id` with `created_at` set to `created_at`.
fn queued_with_created_at(job_id: u64, created_at: Value) -> Vec<u8> {
    let mut v: Value = serde_json::from_slice(&fresh_queued(job_id)).expect("json");
    v["workflow_job"]["created_at"] = created_at;
    serde_json::to_vec(&v).expect("ser")
}

/// What the handler answers the host for an invocation of `path` (always 200 here).
async fn host_call(app: &TestApp, path: &str, invocation: &Value) -> Value {
    let resp = app.client.post(app.url(path)).json(invocation).send().await.expect("send");
    assert_eq!(resp.status(), 200, "{path}");
    resp.json().await.expect("json reply")
}

/// The runner request the host gets for a delivery.
async fn runner_request(app: &TestApp, body: &[u8]) -> Value {
    let envelope = json!({"Data": {"req": {"Url": "https://app.azurewebsites.net/api/github-webhook", "Method": "POST",
        "Query": {}, "Headers": headers(body), "Body": String::from_utf8(body.to_vec()).expect("utf8")}},
        "Metadata": {}});
    let reply = host_call(app, "/github-webhook", &envelope).await;
    assert_eq!(reply["Outputs"]["res"]["statusCode"], "202", "{reply}");
    reply["Outputs"]["runnerRequest"].clone()
}

#[tokio::test]
async fn a_created_at_in_the_future_or_unreadable_becomes_the_receive_time() {
    let (app, backend) = spawn_dry_run(None).await;
    for (job, created_at) in [
        (501, json!("2099-01-01T00:00:00Z")),
        (502, json!("not a time")),
        (503, json!(1_700_000_000)),
        (504, Value::Null),
    ] {
        let before = OffsetDateTime::now_utc().replace_nanosecond(0).expect("ns");
        let msg = runner_request(&app, &queued_with_created_at(job, created_at.clone())).await;
        let after = OffsetDateTime::now_utc();
        let queued = msg["job_created_at"].as_str().unwrap_or_else(|| panic!("{created_at}: {msg}"));
        let at = OffsetDateTime::parse(queued, &Rfc3339).unwrap_or_else(|e| panic!("{created_at}: {queued}: {e}"));
        assert!(before <= at && at <= after, "{created_at}: queued {queued}, received between {before} and {after}");
        // The request is provisioned, and the ARM tag carries the receive time.
        let reply =
            host_call(&app, "/provision-runner", &json!({"Data": {"message": msg}, "Metadata": {"DequeueCount": 1}}))
                .await;
        assert!(reply["Outputs"].get("failedRequest").is_none(), "{created_at}: {reply}");
        let made = backend.created().into_iter().find(|r| r.job_id == job).expect("created");
        assert_eq!(made.body["tags"]["runner-dispatch-job-created-at"], queued, "{created_at}");
    }
}

#[tokio::test]
async fn a_created_at_long_past_is_kept_and_the_request_is_given_up_as_older_than_a_day() {
    let (app, backend) = spawn_dry_run(None).await;
    let msg = runner_request(&app, &queued_with_created_at(601, json!("2000-01-01T00:00:00Z"))).await;
    assert_eq!(msg["job_created_at"], "2000-01-01T00:00:00Z");
    let reply =
        host_call(&app, "/provision-runner", &json!({"Data": {"message": msg}, "Metadata": {"DequeueCount": 1}})).await;
    let reason = reply["Outputs"]["failedRequest"]["reason"].as_str().expect("given up");
    assert!(reason.contains("older than 24 h"), "{reason}");
    assert!(backend.requests().is_empty());
    assert!(app.github.calls().is_empty(), "{:?}", app.github.calls());
}
