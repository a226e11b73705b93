//! The test doubles that tests, benchmarks and fuzz targets share (cargo feature
//! `test-util`, off by default, so the shipped binary never contains them).
//!
//! - fixtures: [`POOLS`], [`SECRET`], [`fixture`], [`fresh_queued`], [`settings`], [`pools`];
//! - scripted seam fakes for the algorithm's branches: [`FakeGitHub`] (a
//!   [`RunnerRegistry`](crate::github::RunnerRegistry)) and [`ScriptedBackend`] (a
//!   [`ComputeBackend`](crate::compute::ComputeBackend));
//! - seam fakes with latency and limits in (tokio) simulated time, for benchmarks:
//!   [`sim::SimGitHub`] and [`sim::SimCompute`];
//! - the real router on 127.0.0.1:0 over those seams: [`spawn_app`] and friends;
//! - local fakes of ARM (container groups and VMs), Batch, Blob storage and the managed
//!   identity endpoint, which check what they receive against Microsoft's models: [`azure`]
//!   (feature `azure-fakes`).
//!
//! Tests reach all of it as `common::*` (tests/common re-exports this module).

#[cfg(feature = "azure-fakes")]
pub mod azure;
mod compute;
mod registry;
mod server;
pub mod sim;

use std::path::Path;
use std::sync::Arc;

pub use compute::ScriptedBackend;
pub use registry::FakeGitHub;
pub use server::{TestApp, serve_fake, spawn_app, spawn_app_with, spawn_app_with_settings, spawn_dry_run};

use crate::config::{PoolsConfig, Settings};
use crate::message::{MESSAGE_VERSION, MessageKind, RunnerMessage};
use crate::spool::QueueOptions;

/// The webhook signing secret of [`settings`].
pub const SECRET: &str = "test-webhook-secret";

/// Pools for the octokit fixtures (owner Octocoders, public repositories, label ubuntu-latest).
pub const POOLS: &str = include_str!("../../tests/fixtures/pools/octokit.toml");

/// A file under `tests/fixtures/`; octokit's `workflow_job` examples as GitHub sends them.
///
/// # Panics
/// The file cannot be read.
#[must_use]
pub fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()));
    if name.starts_with("github-webhooks/workflow_job__") { as_github_sends_it(&bytes) } else { bytes }
}

/// octokit's `workflow_job` examples (queued, in_progress, completed) have `full_name`
/// `Codertocat/Hello-World` under owner `Octocoders`, which GitHub never sends and
/// runner-dispatch refuses (tests/fixtures.rs shows it): the owner part is made the owner's
/// login, as in a real delivery.
fn as_github_sends_it(bytes: &[u8]) -> Vec<u8> {
    let mut v: serde_json::Value = serde_json::from_slice(bytes).expect("json fixture");
    let (Some(login), Some(repo)) = (v["repository"]["owner"]["login"].as_str(), v["repository"]["name"].as_str())
    else {
        return bytes.to_vec();
    };
    v["repository"]["full_name"] = format!("{login}/{repo}").into();
    serde_json::to_vec(&v).expect("ser")
}

/// octokit's queued `workflow_job` example.
#[must_use]
pub fn queued_fixture() -> Vec<u8> {
    fixture("github-webhooks/workflow_job__queued.payload.json")
}

/// The queued fixture with a fresh `created_at` (the example's is from 2021, older than
/// the 24 h give-up limit) and `runner_*` null as in real queued deliveries.
#[must_use]
pub fn fresh_queued(job_id: u64) -> Vec<u8> {
    let mut v: serde_json::Value = serde_json::from_slice(&queued_fixture()).expect("json");
    let now = time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).expect("fmt");
    v["workflow_job"]["id"] = job_id.into();
    v["workflow_job"]["created_at"] = now.into();
    for k in ["runner_id", "runner_name", "runner_group_id", "runner_group_name"] {
        v["workflow_job"][k] = serde_json::Value::Null;
    }
    serde_json::to_vec(&v).expect("ser")
}

/// The `X-Hub-Signature-256` of `body` with [`SECRET`].
#[must_use]
pub fn sign(body: &[u8]) -> String {
    crate::webhook::sign(SECRET.as_bytes(), body)
}

/// Settings with [`SECRET`] and a GitHub URL nothing answers (the seams are faked).
#[must_use]
pub fn settings() -> Settings {
    Settings {
        webhook_secrets: vec![SECRET.into()],
        github_api_url: "http://127.0.0.1:9".into(),
        ..Settings::pools_only("runners.toml".into(), None)
    }
}

/// [`POOLS`], parsed.
#[must_use]
pub fn pools() -> Arc<PoolsConfig> {
    Arc::new(PoolsConfig::parse(POOLS).expect("test pools parse"))
}

/// A provision request for job `job_id` of `octo-org/api` (owner `octo-org`, no
/// installation, no timestamps) in `pool`, with `labels`; runner `ghr-<job id>`. Tests set
/// what they need differently with struct update syntax.
#[must_use]
pub fn provision_message(job_id: u64, pool: &str, labels: &[&str]) -> RunnerMessage {
    RunnerMessage {
        v: MESSAGE_VERSION,
        kind: MessageKind::Provision,
        job_id,
        run_id: 1,
        repository: "octo-org/api".into(),
        owner: "octo-org".into(),
        installation_id: None,
        labels: labels.iter().map(|l| (*l).to_owned()).collect(),
        pool: pool.into(),
        runner_name: format!("ghr-{job_id}"),
        delivery_id: "d".into(),
        job_created_at: None,
        ran_on: None,
        ran_on_id: None,
        job_started_at: None,
        origin: None,
    }
}

/// A standalone queue that retries within milliseconds.
#[must_use]
pub fn fast_queue() -> QueueOptions {
    QueueOptions {
        concurrency: 4,
        max_attempts: 3,
        max_pending: 0,
        backoff_base: std::time::Duration::from_millis(10),
        backoff_max: std::time::Duration::from_millis(50),
    }
}

/// Waits (bounded: 2 s) until `f` holds.
pub async fn eventually(mut f: impl FnMut() -> bool) -> bool {
    for _ in 0..200 {
        if f() {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    f()
}
