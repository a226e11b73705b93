//! No job is lost when another job takes its runner (issue 22, found by the time-to-runner
//! benchmark): GitHub gives a queued job to any online runner whose labels fit, so a job of
//! one pool may take the runner made for a job of another pool whose labels overlap. When
//! it completes, a runner is requested again for the job that lost one, if that job is still
//! queued: once, through the real queue paths (the Functions host's envelopes, the
//! standalone spool).

mod common;

use std::path::Path;
use std::sync::Arc;

use common::*;
use runner_dispatch::backends::Backends;
use runner_dispatch::config::PoolsConfig;
use runner_dispatch::github::{GitHubError, JobState, RunnerRegistry};
use runner_dispatch::message::{MessageKind, RunnerMessage};
use runner_dispatch::server::AppState;
use runner_dispatch::spool::Spool;
use serde_json::{Value, json};

const REPOSITORY: &str = "Octocoders/Hello-World";
/// The `big` job whose runner is taken, and the `small` job that takes it.
const BIG_JOB: u64 = 101;
const SMALL_JOB: u64 = 102;

struct World {
    state: Arc<AppState>,
    url: String,
    gh: Arc<FakeGitHub>,
    backend: Arc<ScriptedBackend>,
    client: reqwest::Client,
}

fn pools() -> Arc<PoolsConfig> {
    let text = String::from_utf8(fixture("pools/overlapping.toml")).expect("utf8");
    Arc::new(PoolsConfig::parse(&text).expect("pools"))
}

/// The real router over the fake GitHub and a scripted backend; `state_dir` adds the
/// standalone spool.
async fn world(state_dir: Option<&Path>) -> World {
    world_with(state_dir, pools()).await
}

async fn world_with(state_dir: Option<&Path>, pools: Arc<PoolsConfig>) -> World {
    let gh = Arc::new(FakeGitHub::default());
    let backend = ScriptedBackend::with(vec![]);
    let registry: Arc<dyn RunnerRegistry> = gh.clone();
    let queue = state_dir.map(|d| (Spool::open(d).expect("spool"), fast_queue()));
    let state =
        runner_dispatch::app::assemble_state(&settings(), pools, registry, Backends::single(backend.clone()), queue);
    let (url, _task) = serve_fake(runner_dispatch::server::router(state.clone())).await;
    World { state, url, gh, backend, client: runner_dispatch::tls::client_builder().build().expect("client") }
}

/// When the tests' jobs were queued: a minute before the first asked.
static CREATED: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let created = time::OffsetDateTime::now_utc() - time::Duration::minutes(1);
    created.format(&time::format_description::well_known::Rfc3339).expect("fmt")
});

fn request(job_id: u64, pool: &str, prefix: &str, labels: &[&str]) -> RunnerMessage {
    RunnerMessage {
        repository: REPOSITORY.into(),
        owner: "Octocoders".into(),
        runner_name: format!("{prefix}-{job_id}"),
        job_created_at: Some(CREATED.clone()),
        ..provision_message(job_id, pool, labels)
    }
}

fn big_request() -> RunnerMessage {
    request(BIG_JOB, "big", "ghb", &["self-hosted", "linux", "big"])
}

fn small_request() -> RunnerMessage {
    request(SMALL_JOB, "small", "ghs", &["self-hosted", "linux"])
}

fn queue_invocation(message: &impl serde::Serialize, dequeue_count: u32) -> Value {
    json!({"Data": {"message": message}, "Metadata": {"DequeueCount": dequeue_count, "Id": "abc", "InsertionTime": "2026-01-01T00:00:00+00:00"}})
}

impl World {
    /// One invocation of a queue-triggered function, as the host makes it: the status and
    /// the reply.
    async fn invoke(&self, function: &str, message: &impl serde::Serialize, dequeue_count: u32) -> (u16, Value) {
        let resp = self
            .client
            .post(format!("{}/{function}", self.url))
            .json(&queue_invocation(message, dequeue_count))
            .send()
            .await
            .expect("send");
        (resp.status().as_u16(), resp.json().await.expect("json reply"))
    }

    fn runner_id(&self, name: &str) -> Option<u64> {
        self.gh.runners.lock().expect("lock").iter().find(|r| r.name == name).map(|r| r.id)
    }

    /// The small job ran on the big job's runner and completed: the ephemeral runner has
    /// deregistered. Returns the cleanup message the webhook makes of it.
    fn small_job_completed_on_the_big_runner(&self) -> RunnerMessage {
        let ran_on_id = self.runner_id("ghb-101");
        assert!(ran_on_id.is_some(), "ghb-101 was registered");
        self.gh.runners.lock().expect("lock").retain(|r| r.name != "ghb-101");
        RunnerMessage { kind: MessageKind::Cleanup, ran_on: Some("ghb-101".into()), ran_on_id, ..small_request() }
    }

    fn creates_of(&self, name: &str) -> usize {
        self.backend.creates.lock().expect("lock").iter().filter(|r| r.name == name).count()
    }

    fn exists(&self, name: &str) -> bool {
        self.backend.existing.lock().expect("lock").contains_key(name)
    }

    fn job_checks(&self, job_id: u64) -> usize {
        self.gh.calls().iter().filter(|c| **c == format!("job {job_id}")).count()
    }

    /// Under the host: both jobs' runners are made through `provision-runner`.
    async fn provision_both_under_the_host(&self) {
        for msg in [big_request(), small_request()] {
            let (status, reply) = self.invoke("provision-runner", &msg, 1).await;
            assert_eq!(status, 200, "{reply}");
        }
        assert!(self.exists("ghb-101") && self.exists("ghs-102"));
    }
}

#[tokio::test]
async fn a_job_whose_runner_another_pools_job_took_gets_a_runner_requested_again_under_the_host() {
    let w = world(None).await;
    w.provision_both_under_the_host().await;
    let cleanup = w.small_job_completed_on_the_big_runner();
    let (status, reply) = w.invoke("cleanup-runner", &cleanup, 1).await;
    assert_eq!(status, 200, "{reply}");
    assert!(!w.exists("ghb-101"), "the runner that ran the small job is deleted");
    assert!(w.exists("ghs-102"), "the small job's own runner is left alone");
    // The big job is still queued: a request for it, in its own pool, under its own name.
    let request = &reply["Outputs"]["runnerRequest"];
    assert!(request.is_object(), "one runner request on runner-requests: {reply}");
    let request: RunnerMessage = serde_json::from_value(request.clone()).expect("a runner message");
    let big = big_request();
    assert_eq!(request.kind, MessageKind::Provision);
    assert_eq!((request.job_id, request.pool.as_str(), request.runner_name.as_str()), (BIG_JOB, "big", "ghb-101"));
    assert_eq!(request.labels, ["self-hosted", "linux", "big"]);
    assert_eq!((request.repository.as_str(), request.owner.as_str()), (REPOSITORY, "Octocoders"));
    assert_eq!(request.job_created_at, big.job_created_at, "the job's own time, for the 24 h limit");
    assert_eq!(request.origin.as_deref(), Some("cleanup:displaced"));
    assert_eq!(w.job_checks(BIG_JOB), 1, "one job-state call for the completion");

    // The host delivers it to provision-runner: the big job has its runner again.
    let (status, reply) = w.invoke("provision-runner", &request, 1).await;
    assert_eq!(status, 200, "{reply}");
    assert!(reply["Outputs"].get("failedRequest").is_none(), "{reply}");
    assert_eq!(w.creates_of("ghb-101"), 2);
    assert!(w.exists("ghb-101"));

    // The completed event again (a redelivery, or the host's second copy): the new ghb-101
    // is not the runner the small job ran on, so nothing is deleted or requested.
    let (status, reply) = w.invoke("cleanup-runner", &cleanup, 1).await;
    assert_eq!(status, 200, "{reply}");
    assert!(reply["Outputs"].get("runnerRequest").is_none(), "a second request for the same job: {reply}");
    assert!(w.exists("ghb-101"), "the big job's new runner was deleted");
    assert_eq!(w.creates_of("ghb-101"), 2);
    // And the request itself twice makes no second runner (the name is the lock).
    let (status, _) = w.invoke("provision-runner", &request, 1).await;
    assert_eq!(status, 200);
    assert_eq!(w.creates_of("ghb-101"), 2);
}

#[tokio::test]
async fn a_job_that_is_no_longer_queued_gets_no_second_runner() {
    for state in [
        Ok(JobState::Completed),
        Ok(JobState::InProgress { runner_name: Some("ghs-102".into()) }),
        Ok(JobState::InProgress { runner_name: Some("GitHub Actions 3".into()) }),
        // Deleted with its repository, or run history purged.
        Err(GitHubError::NotFound("404".into())),
    ] {
        let w = world(None).await;
        w.provision_both_under_the_host().await;
        w.gh.jobs.lock().expect("lock").insert(BIG_JOB, state.clone());
        let cleanup = w.small_job_completed_on_the_big_runner();
        let (status, reply) = w.invoke("cleanup-runner", &cleanup, 1).await;
        assert_eq!(status, 200, "{state:?}: {reply}");
        assert!(reply["Outputs"].get("runnerRequest").is_none(), "{state:?}: {reply}");
        assert!(!w.exists("ghb-101"), "{state:?}");
        assert_eq!(w.job_checks(BIG_JOB), 1, "{state:?}");
    }
}

#[tokio::test]
async fn with_check_job_queued_never_the_displaced_job_gets_a_runner_unasked() {
    let text = String::from_utf8(fixture("pools/overlapping.toml")).expect("utf8");
    let text = text.replacen("check_job_queued = \"stale\"", "check_job_queued = \"never\"", 1);
    assert!(text.contains("check_job_queued = \"never\""));
    let w = world_with(None, Arc::new(PoolsConfig::parse(&text).expect("pools"))).await;
    w.provision_both_under_the_host().await;
    let (status, reply) = w.invoke("cleanup-runner", &w.small_job_completed_on_the_big_runner(), 1).await;
    assert_eq!(status, 200, "{reply}");
    let request: RunnerMessage = serde_json::from_value(reply["Outputs"]["runnerRequest"].clone()).expect("a request");
    assert_eq!((request.job_id, request.pool.as_str()), (BIG_JOB, "big"));
    assert_eq!(w.job_checks(BIG_JOB), 0, "no GitHub call spent on it");
}

/// Puts a finished `ghb-101` (runner id 7) made for the big job, as its backend reads it
/// back with `repository` and `job_created_at` recorded, and has the small job complete on
/// it: the cleanup's reply.
async fn complete_on_a_recorded_runner(w: &World, repository: &str, job_created_at: String) -> (u16, Value) {
    w.backend.existing.lock().expect("lock").insert(
        "ghb-101".into(),
        runner_dispatch::compute::ComputeInfo {
            pool: Some("big".into()),
            job_id: Some(BIG_JOB),
            run_id: Some(1),
            repository: Some(repository.into()),
            job_created_at: Some(job_created_at),
            runner_id: Some(7),
            ..runner_dispatch::compute::ComputeInfo::new("ghb-101", runner_dispatch::compute::ComputeState::Succeeded)
        },
    );
    let cleanup = RunnerMessage {
        kind: MessageKind::Cleanup,
        ran_on: Some("ghb-101".into()),
        ran_on_id: Some(7),
        ..small_request()
    };
    w.invoke("cleanup-runner", &cleanup, 1).await
}

#[tokio::test]
async fn a_job_older_than_a_day_is_not_asked_about_nor_requested_again() {
    let w = world(None).await;
    let old = time::OffsetDateTime::now_utc() - time::Duration::hours(25);
    let old = old.format(&time::format_description::well_known::Rfc3339).expect("fmt");
    let (status, reply) = complete_on_a_recorded_runner(&w, REPOSITORY, old).await;
    assert_eq!(status, 200, "{reply}");
    assert!(reply["Outputs"].get("runnerRequest").is_none(), "{reply}");
    assert!(!w.exists("ghb-101"));
    assert_eq!(w.job_checks(BIG_JOB), 0, "no GitHub call for a job GitHub has cancelled");
}

#[tokio::test]
async fn a_repository_recorded_on_the_compute_reaches_github_only_under_the_webhook_rules() {
    // Tags are editable by anyone with access to the resource group.
    for repository in ["Octocoders/../../orgs/x", "mallory/Hello-World", "no-slash"] {
        let w = world(None).await;
        let (status, reply) = complete_on_a_recorded_runner(&w, repository, CREATED.clone()).await;
        assert_eq!(status, 200, "{repository}: {reply}");
        assert!(reply["Outputs"].get("runnerRequest").is_none(), "{repository}: {reply}");
        assert_eq!(w.job_checks(BIG_JOB), 0, "{repository}: asked GitHub about it");
    }
    // The same compute with a repository the rules admit is asked about once.
    let w = world(None).await;
    let (_, reply) = complete_on_a_recorded_runner(&w, REPOSITORY, CREATED.clone()).await;
    assert_eq!(reply["Outputs"]["runnerRequest"]["job_id"], BIG_JOB, "{reply}");
    assert_eq!(w.job_checks(BIG_JOB), 1);
}

#[tokio::test]
async fn when_github_cannot_say_whether_the_job_is_queued_the_cleanup_is_retried_then_reported() {
    let w = world(None).await;
    w.provision_both_under_the_host().await;
    w.gh.jobs.lock().expect("lock").insert(BIG_JOB, Err(GitHubError::Transient("502 Bad Gateway".into())));
    let cleanup = w.small_job_completed_on_the_big_runner();
    // Non-2xx: the host makes the message visible again. The compute, and with it the
    // record of the big job, is kept for that retry.
    let (status, reply) = w.invoke("cleanup-runner", &cleanup, 1).await;
    assert_eq!(status, 500, "{reply}");
    assert!(reply["Outputs"].get("runnerRequest").is_none(), "{reply}");
    assert!(w.exists("ghb-101"), "deleted before the job check answered");
    // GitHub answers on the retry: the request is made.
    w.gh.jobs.lock().expect("lock").insert(BIG_JOB, Ok(JobState::Queued));
    let (status, reply) = w.invoke("cleanup-runner", &cleanup, 2).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["Outputs"]["runnerRequest"]["runner_name"], "ghb-101", "{reply}");
    assert!(!w.exists("ghb-101"));

    // Still failing at the host's last dequeue: reported on runner-cleanup-failed, with a
    // reason naming the job that lost its runner.
    let w = world(None).await;
    w.provision_both_under_the_host().await;
    w.gh.jobs.lock().expect("lock").insert(BIG_JOB, Err(GitHubError::Transient("502 Bad Gateway".into())));
    let cleanup = w.small_job_completed_on_the_big_runner();
    let last = runner_dispatch::worker::DEFAULT_MAX_ATTEMPTS;
    let (status, reply) = w.invoke("cleanup-runner", &cleanup, last).await;
    assert_eq!(status, 200, "{reply}");
    let reason = reply["Outputs"]["failedCleanup"]["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("job 101"), "{reply}");
}

#[tokio::test]
async fn within_one_pool_the_same_rule_holds() {
    // A big job took the runner made for another big job: requested again the same way.
    let w = world(None).await;
    let first = big_request();
    let second = request(103, "big", "ghb", &["self-hosted", "linux", "big"]);
    for msg in [&first, &second] {
        let (status, reply) = w.invoke("provision-runner", msg, 1).await;
        assert_eq!(status, 200, "{reply}");
    }
    let ran_on_id = w.runner_id("ghb-101");
    w.gh.runners.lock().expect("lock").retain(|r| r.name != "ghb-101");
    let cleanup = RunnerMessage { kind: MessageKind::Cleanup, ran_on: Some("ghb-101".into()), ran_on_id, ..second };
    let (status, reply) = w.invoke("cleanup-runner", &cleanup, 1).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["Outputs"]["runnerRequest"]["job_id"], BIG_JOB, "{reply}");
    assert!(w.exists("ghb-103"), "the completed job's own runner is left alone");
}

/// The completed delivery GitHub sends when the small job finished on `ghb-101`.
fn completed_webhook(runner_id: u64) -> Vec<u8> {
    let mut v: Value = serde_json::from_slice(&fixture(
        "github-webhooks/workflow_job__completed.success.with-organization.payload.json",
    ))
    .expect("json");
    let now = time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).expect("fmt");
    let job = &mut v["workflow_job"];
    job["id"] = SMALL_JOB.into();
    job["labels"] = json!(["self-hosted", "linux"]);
    job["created_at"] = now.clone().into();
    job["started_at"] = now.into();
    job["runner_name"] = "ghb-101".into();
    job["runner_id"] = runner_id.into();
    serde_json::to_vec(&v).expect("ser")
}

#[tokio::test]
async fn standalone_the_request_goes_through_the_spool_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let w = world(Some(dir.path())).await;
    let queue = w.state.queue.as_ref().expect("standalone queue");
    for msg in [big_request(), small_request()] {
        assert!(queue.enqueue(msg).expect("spooled"));
    }
    assert!(eventually(|| w.exists("ghb-101") && w.exists("ghs-102") && queue.depth() == 0).await);
    let runner_id = w.runner_id("ghb-101").expect("registered");
    w.gh.runners.lock().expect("lock").retain(|r| r.name != "ghb-101");

    let body = completed_webhook(runner_id);
    let post = || async {
        let resp = w
            .client
            .post(format!("{}/api/github-webhook", w.url))
            .header("Content-Type", "application/json")
            .header("X-GitHub-Event", "workflow_job")
            .header("X-GitHub-Delivery", "5f7b2a10-0000-11f0-8000-000000000001")
            .header("X-Hub-Signature-256", sign(&body))
            .body(body.clone())
            .send()
            .await
            .expect("send");
        assert_eq!(resp.status(), 202);
    };
    post().await;
    // The cleanup spools the big job's request before it leaves the spool; the worker
    // provisions it.
    assert!(eventually(|| w.creates_of("ghb-101") == 2 && queue.depth() == 0).await, "{:?}", w.gh.calls());
    assert!(w.exists("ghb-101"));
    assert_eq!(w.job_checks(BIG_JOB), 1);

    // The same delivery again: nothing is requested, nothing is deleted.
    post().await;
    assert!(eventually(|| queue.depth() == 0).await);
    assert_eq!(w.creates_of("ghb-101"), 2);
    assert!(w.exists("ghb-101"));
    assert_eq!(w.job_checks(BIG_JOB), 1);
}
