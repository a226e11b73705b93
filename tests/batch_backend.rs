//! The Batch backend against local fakes of the managed identity endpoint and the Batch
//! data plane (`runner_dispatch::testing::azure`). Every body it sends is checked against
//! Microsoft's models, as Batch would refuse it. Each test runs in a child process pointed
//! at the fake identity endpoint (see `azure_test!`). What every backend must do:
//! tests/compute_contract.rs.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::Method;
use serde_json::json;

use runner_dispatch::azure::batch::BatchBackend;
use runner_dispatch::azure::batch::{batch_job_body, batch_job_id, batch_task_body};
use runner_dispatch::azure::credential::SharedKey;
use runner_dispatch::azure_test;
use runner_dispatch::compute::{ComputeBackend, ComputeState, CreateOutcome};
use runner_dispatch::config::Pool;
use runner_dispatch::secret::Secret;
use runner_dispatch::testing::azure::batch::{Batch, BatchFake};
use runner_dispatch::testing::azure::core::{Fake, Service};
use runner_dispatch::testing::azure::identity::{token_for, token_hits};
use runner_dispatch::testing::azure::{
    BATCH_RESOURCE, Canned, JIT_SECRET, PULL_ID, Seen, batch, batch_part, jit_request, pool, registration_request,
    retry_after_of, start_batch,
};

fn batch_error(status: u16, code: &str, message: &str) -> Canned {
    Batch::error(status, code, message)
}

/// The Batch fake (Entra ID), the Batch backend over it, and pool `name`.
async fn over_batch(name: &str) -> (BatchFake, BatchBackend, Pool) {
    let fake = start_batch(None).await;
    let backend = batch(&fake.url, &[]);
    (fake, backend, pool(name))
}

fn posts(f: &Fake<Batch>, path: &str) -> Vec<Seen> {
    f.seen.iter().filter(|s| s.method == Method::POST && s.path == path).cloned().collect()
}

azure_test!(
    /// The pool's job is made once (and remembered); tasks are schema-valid container
    /// tasks with the managed identity's Batch token.
    batch_create_makes_the_job_once_and_adds_schema_valid_tasks,
    async {
        let (fake, backend, p) = over_batch("linux-batch").await;
        assert_eq!(backend.create(&p, &jit_request(&p, 1)).await.expect("1"), CreateOutcome::Created);
        assert_eq!(backend.create(&p, &jit_request(&p, 2)).await.expect("2"), CreateOutcome::Created);
        let hits = token_hits().await;
        let f = fake.lock();
        let jobs = posts(&f, "/jobs");
        assert_eq!(jobs.len(), 1, "job created once and cached");
        assert_eq!(jobs[0].body.as_ref().unwrap(), &batch_job_body(batch_part(&p)));
        assert_eq!(jobs[0].body.as_ref().unwrap()["poolInfo"]["poolId"], "linux-pool");
        assert_eq!(jobs[0].body.as_ref().unwrap()["onAllTasksComplete"], "noaction");
        let tasks = posts(&f, "/jobs/runner-dispatch-linux-pool/tasks");
        assert_eq!(tasks.len(), 2);
        assert_eq!(f.bodies_checked, 3);
        let task = tasks[0].body.clone().unwrap();
        assert_eq!(task, batch_task_body(&p, batch_part(&p), &jit_request(&p, 1)));
        assert_eq!(task["id"], "ghr-1");
        assert_eq!(task["commandLine"], "/bin/sh -c 'exec /entrypoint.sh'");
        assert_eq!(task["containerSettings"]["imageName"], "myacr.azurecr.io/actions-runner:2.330.0");
        assert_eq!(
            task["containerSettings"]["registry"],
            json!({"registryServer": "myacr.azurecr.io", "identityReference": {"resourceId": PULL_ID}})
        );
        assert_eq!(task["constraints"]["maxWallClockTime"], "PT7200S");
        assert_eq!(task["constraints"]["maxTaskRetryCount"], 0);
        assert_eq!(task["userIdentity"], json!({"autoUser": {"scope": "pool", "elevationLevel": "nonadmin"}}));
        assert!(tasks[0].query.contains("api-version=2025-06-01.21.0"));
        assert_eq!(hits.len(), 1, "one Batch token for all calls: {hits:?}");
        assert_eq!(hits[0].resource, BATCH_RESOURCE);
    }
);

azure_test!(batch_task_exists_is_already_exists, async {
    let (_fake, backend, p) = over_batch("linux-batch").await;
    assert_eq!(backend.create(&p, &jit_request(&p, 3)).await.expect("1"), CreateOutcome::Created);
    assert_eq!(backend.create(&p, &jit_request(&p, 3)).await.expect("2"), CreateOutcome::AlreadyExists);
});

azure_test!(
    /// A job deleted behind our back: create it again, then retry the task once.
    batch_job_not_found_creates_the_job_and_retries_the_task,
    async {
        let (fake, backend, p) = over_batch("linux-batch").await;
        backend.create(&p, &jit_request(&p, 1)).await.expect("first");
        fake.lock().jobs.clear();
        assert_eq!(backend.create(&p, &jit_request(&p, 2)).await.expect("second"), CreateOutcome::Created);
        let f = fake.lock();
        let order: Vec<String> = f.seen.iter().map(|s| format!("{} {}", s.method, s.path)).collect();
        assert_eq!(
            order,
            vec![
                "POST /jobs",
                "POST /jobs/runner-dispatch-linux-pool/tasks",
                "POST /jobs/runner-dispatch-linux-pool/tasks",
                "POST /jobs",
                "POST /jobs/runner-dispatch-linux-pool/tasks",
            ]
        );
        assert!(f.tasks.contains_key(&("runner-dispatch-linux-pool".into(), "ghr-2".into())));
    }
);

azure_test!(batch_an_existing_job_counts_as_ready, async {
    let fake = start_batch(None).await;
    let url = fake.url.clone();
    let p = pool("windows-batch");
    fake.lock().jobs.insert(batch_job_id("windows-pool"), json!({}));
    let backend = batch(&url, &[]);
    assert_eq!(backend.create(&p, &jit_request(&p, 4)).await.expect("ok"), CreateOutcome::Created);
    let f = fake.lock();
    assert_eq!(posts(&f, "/jobs").len(), 1, "one POST /jobs answered JobExists");
    let task = posts(&f, "/jobs/runner-dispatch-windows-pool/tasks").pop().unwrap().body.unwrap();
    assert_eq!(task["commandLine"], r"powershell -NoProfile -ExecutionPolicy Bypass -File C:\entrypoint.ps1");
});

azure_test!(
    /// run_on_host runs the runner on the VM as admin, on Linux and Windows, in JIT and
    /// registration mode; every body is valid.
    batch_run_on_host_tasks_are_schema_valid_and_start_the_installed_runner,
    async {
        let fake = start_batch(None).await;
        let url = fake.url.clone();
        let backend = batch(&url, &[]);
        let linux = pool("docker-host");
        let windows = pool("windows-host");
        backend.create(&linux, &jit_request(&linux, 1)).await.expect("linux jit");
        backend.create(&linux, &registration_request(&linux, 2)).await.expect("linux registration");
        backend.create(&windows, &jit_request(&windows, 3)).await.expect("windows jit");
        backend.create(&windows, &registration_request(&windows, 4)).await.expect("windows registration");
        let f = fake.lock();
        assert_eq!(f.bodies_checked, 6, "2 jobs + 4 tasks");
        let task = posts(&f, "/jobs/runner-dispatch-docker-pool/tasks")[0].body.clone().unwrap();
        assert_eq!(task["id"], "dock-1");
        assert!(task.get("containerSettings").is_none());
        assert_eq!(task["userIdentity"]["autoUser"]["elevationLevel"], "admin");
        let cmd = task["commandLine"].as_str().unwrap();
        assert!(cmd.starts_with("/bin/sh -c '") && cmd.contains("/opt/actions-runner/."), "{cmd}");
        assert!(cmd.contains("./run.sh --jitconfig \"$RUNNER_JITCONFIG\""), "{cmd}");
        let wtask = posts(&f, "/jobs/runner-dispatch-windows-host-pool/tasks")[0].body.clone().unwrap();
        let wcmd = wtask["commandLine"].as_str().unwrap();
        assert!(wcmd.starts_with("powershell ") && wcmd.contains(r"C:\actions-runner"), "{wcmd}");
        assert!(wcmd.contains("run.cmd --jitconfig $env:RUNNER_JITCONFIG"), "{wcmd}");
    }
);

/// Captures log output for one test.
#[derive(Clone, Default)]
struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogBuffer {
    type Writer = LogBuffer;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

azure_test!(
    /// Task settings carry the JIT config (readable on the account, documented), but
    /// errors and logs never do, even when Batch echoes it back.
    batch_secrets_never_reach_errors_or_logs,
    async {
        let logs = LogBuffer::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(logs.clone())
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);
        let (fake, backend, p) = over_batch("linux-batch").await;
        let mut canned = batch_error(400, "InvalidPropertyValue", &format!("The value {JIT_SECRET} is invalid."));
        canned.body["values"] = json!([
            {"key": "PropertyName", "value": "environmentSettings"},
            {"key": "PropertyValue", "value": JIT_SECRET},
        ]);
        {
            let mut f = fake.lock();
            f.jobs.insert(batch_job_id("linux-pool"), json!({}));
            f.canned.push_back(batch_error(409, "JobExists", "exists"));
            f.canned.push_back(canned);
        }
        let e = backend.create(&p, &jit_request(&p, 11)).await.expect_err("refused");
        assert!(!e.is_retryable());
        let reason = e.to_string();
        assert!(reason.contains("InvalidPropertyValue") && reason.contains("environmentSettings"), "{reason}");
        assert!(!reason.contains(JIT_SECRET), "{reason}");
        let f = fake.lock();
        let sent = posts(&f, "/jobs/runner-dispatch-linux-pool/tasks").pop().unwrap().body.unwrap();
        assert!(sent["environmentSettings"].as_array().unwrap().contains(&json!({"name": "RUNNER_JITCONFIG", "value": JIT_SECRET})));
        let logged = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
        assert!(logged.contains("batch_create_failed"), "the failure is logged: {logged}");
        assert!(!logged.contains(JIT_SECRET), "{logged}");
        assert!(!logged.contains(&token_for(BATCH_RESOURCE)), "tokens are never logged: {logged}");
    }
);

azure_test!(batch_throttling_quota_and_busy_servers_are_retryable, async {
    let (fake, backend, p) = over_batch("linux-batch").await;
    fake.answer_next(
        Canned::new(429, json!({"code": "TooManyRequests", "message": {"value": "slow down"}})).retry_after(12),
    );
    let e = backend.create(&p, &jit_request(&p, 1)).await.expect_err("throttled");
    assert!(e.is_retryable());
    assert_eq!(retry_after_of(&e), Some(Duration::from_secs(12)));
    fake.answer_next(batch_error(409, "ActiveJobAndScheduleQuotaReached", "quota"));
    assert!(backend.create(&p, &jit_request(&p, 1)).await.expect_err("quota").is_retryable());
    fake.answer_next(batch_error(503, "ServerBusy", "busy"));
    assert!(backend.find(&p, "ghr-1").await.expect_err("busy").is_retryable());
});

azure_test!(batch_find_maps_task_states_and_missing_tasks_to_none, async {
    let (fake, backend, p) = over_batch("linux-batch").await;
    assert_eq!(backend.find(&p, "ghr-1").await.expect("find"), None);
    backend.create(&p, &jit_request(&p, 1)).await.expect("create");
    let found = backend.find(&p, "ghr-1").await.expect("find").expect("exists");
    assert_eq!(found.state, ComputeState::Pending);
    assert_eq!(found.job_id, Some(1));
    assert_eq!(found.repository.as_deref(), Some("octo-org/api"));
    assert!(found.created_at.is_some());
    let key = ("runner-dispatch-linux-pool".to_owned(), "ghr-1".to_owned());
    for (patch, expected) in [
        (json!({"state": "running"}), ComputeState::Running),
        (json!({"state": "completed", "executionInfo": {"result": "success", "exitCode": 0}}), ComputeState::Succeeded),
        (json!({"state": "completed", "executionInfo": {"result": "failure", "exitCode": 1}}), ComputeState::Failed),
    ] {
        {
            let mut f = fake.lock();
            let t = f.tasks.get_mut(&key).unwrap();
            for (k, v) in patch.as_object().unwrap() {
                t[k] = v.clone();
            }
        }
        assert_eq!(backend.find(&p, "ghr-1").await.unwrap().unwrap().state, expected);
    }
});

azure_test!(batch_list_follows_odata_next_link_and_keeps_only_the_pools_tasks, async {
    let (fake, backend, p) = over_batch("linux-batch").await;
    assert!(backend.list(&p).await.expect("no job yet").is_empty());
    for id in 1..=4 {
        backend.create(&p, &jit_request(&p, id)).await.expect("create");
    }
    {
        let mut f = fake.lock();
        f.tasks.insert(
            ("runner-dispatch-linux-pool".into(), "manual-task".into()),
            json!({"id": "manual-task", "state": "active"}),
        );
    }
    let mut names: Vec<String> = backend.list(&p).await.expect("list").into_iter().map(|c| c.name).collect();
    names.sort();
    assert_eq!(names, vec!["ghr-1", "ghr-2", "ghr-3", "ghr-4"]);
    let f = fake.lock();
    let lists: Vec<&Seen> = f.seen.iter().filter(|s| s.method == Method::GET && s.path.ends_with("/tasks")).collect();
    assert_eq!(lists.len(), 4, "1 before the job existed + 3 pages of 2");
    assert!(lists[1].query.contains("%24select=") || lists[1].query.contains("$select="), "{}", lists[1].query);
});

azure_test!(batch_delete_of_a_missing_task_is_ok_and_active_count_is_none, async {
    let (fake, backend, p) = over_batch("linux-batch").await;
    backend.delete(&p, "ghr-5").await.expect("missing is fine");
    backend.create(&p, &jit_request(&p, 5)).await.expect("create");
    backend.delete(&p, "ghr-5").await.expect("deleted");
    assert!(fake.lock().tasks.is_empty());
    assert_eq!(backend.active_count(&p).await.expect("count"), None, "Batch queues: autoscale is the cap");
});

azure_test!(
    /// Shared Key: every request is signed over exactly what the server receives
    /// (including Content-Length), and no token is asked for.
    batch_shared_key_requests_are_signed_as_received,
    async {
        let key = "cnVubmVyLWRpc3BhdGNoLXRlc3Qta2V5";
        let fake = start_batch(Some(SharedKey::new("acct", &Secret::new(key)).unwrap())).await;
        let backend = batch(&fake.url, &[("AZURE_BATCH_ACCOUNT_NAME", "acct"), ("AZURE_BATCH_ACCOUNT_KEY", key)]);
        let p = pool("linux-batch");
        backend.create(&p, &jit_request(&p, 1)).await.expect("signed create");
        backend.find(&p, "ghr-1").await.expect("signed get").expect("exists");
        backend.list(&p).await.expect("signed list");
        backend.delete(&p, "ghr-1").await.expect("signed delete");
        assert!(token_hits().await.is_empty(), "Shared Key needs no token");
        let f = fake.lock();
        assert_eq!(f.seen.len(), 5);
        for s in &f.seen {
            let auth = s.headers.get("authorization").unwrap().to_str().unwrap();
            assert!(auth.starts_with("SharedKey acct:"), "{auth}");
        }
    }
);
