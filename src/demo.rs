//! `demo`: offline end to end. A standalone server on a free port with the embedded
//! pools file, the bundled sample webhooks sent over HTTP, provisioning requests recorded
//! instead of sent (secrets redacted), and a table of what happened to each.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::config::{EMBEDDED_DEMO_CONFIG, PoolsConfig, Settings};
use crate::secret::Secret;
use crate::server::router;
use crate::spool::{QueueOptions, Spool};

/// A `workflow_job` queued delivery (examples/webhooks/, made from octokit/webhooks' example), the base of every sample.
const QUEUED_EXAMPLE: &str = include_str!("../examples/webhooks/workflow_job.queued.json");

/// One sample delivery.
pub struct Sample {
    pub case: &'static str,
    pub event: &'static str,
    pub delivery: String,
    pub body: Vec<u8>,
    /// Sign with a wrong secret.
    pub bad_signature: bool,
}

/// A `workflow_job` payload from the example with this job, labels, owner and action;
/// `runner_*` null as in real queued deliveries and `created_at` now.
#[must_use]
pub fn sample_payload(action: &str, job_id: u64, labels: &[&str], owner: &str, repo: &str) -> Vec<u8> {
    let mut v: Value = serde_json::from_str(QUEUED_EXAMPLE).unwrap_or(Value::Null);
    let now = OffsetDateTime::now_utc().format(&Rfc3339).unwrap_or_default();
    v["action"] = action.into();
    let job = &mut v["workflow_job"];
    job["id"] = job_id.into();
    job["run_id"] = (job_id + 500_000).into();
    job["labels"] = labels.iter().map(|l| Value::from(*l)).collect();
    job["status"] = if action == "completed" { "completed" } else { "queued" }.into();
    job["created_at"] = now.clone().into();
    job["started_at"] = now.into();
    if action == "queued" {
        for k in ["runner_id", "runner_name", "runner_group_id", "runner_group_name"] {
            job[k] = Value::Null;
        }
    } else {
        job["runner_name"] = format!("ghr-{job_id}").into();
    }
    let repo_v = &mut v["repository"];
    repo_v["full_name"] = format!("{owner}/{repo}").into();
    repo_v["name"] = repo.into();
    repo_v["owner"]["login"] = owner.into();
    repo_v["private"] = true.into();
    repo_v["visibility"] = "private".into();
    serde_json::to_vec(&v).unwrap_or_default()
}

/// The bundled samples.
#[must_use]
pub fn samples() -> Vec<Sample> {
    let linux = sample_payload("queued", 1001, &["self-hosted", "linux", "aci"], "octo-org", "api");
    vec![
        Sample {
            case: "Linux job queued",
            event: "workflow_job",
            delivery: "demo-1".into(),
            body: linux.clone(),
            bad_signature: false,
        },
        Sample {
            case: "Windows job queued",
            event: "workflow_job",
            delivery: "demo-2".into(),
            body: sample_payload("queued", 1002, &["self-hosted", "Windows", "x64"], "octo-org", "desktop"),
            bad_signature: false,
        },
        Sample {
            case: "unmatched labels (gpu)",
            event: "workflow_job",
            delivery: "demo-3".into(),
            body: sample_payload("queued", 1003, &["self-hosted", "gpu"], "octo-org", "ml"),
            bad_signature: false,
        },
        Sample {
            case: "bad signature",
            event: "workflow_job",
            delivery: "demo-4".into(),
            body: sample_payload("queued", 1004, &["self-hosted", "linux"], "octo-org", "api"),
            bad_signature: true,
        },
        Sample {
            case: "duplicate delivery of #1",
            event: "workflow_job",
            delivery: "demo-1".into(),
            body: linux,
            bad_signature: false,
        },
        Sample {
            case: "owner not allowed",
            event: "workflow_job",
            delivery: "demo-6".into(),
            body: sample_payload("queued", 1006, &["self-hosted", "linux"], "evil-org", "x"),
            bad_signature: false,
        },
        Sample {
            case: "Linux job completed",
            event: "workflow_job",
            delivery: "demo-7".into(),
            body: sample_payload("completed", 1001, &["self-hosted", "linux", "aci"], "octo-org", "api"),
            bad_signature: false,
        },
        Sample {
            case: "Docker job queued",
            event: "workflow_job",
            delivery: "demo-8".into(),
            body: sample_payload("queued", 1008, &["self-hosted", "linux", "docker"], "octo-org", "api"),
            bad_signature: false,
        },
    ]
}

/// A completed job's payload names the runner that ran it by name and id, as GitHub's
/// does: the id is the one the dry-run registration gave the runner of that name (cleanup
/// deletes compute only for the runner id recorded on it).
fn with_runner_id(body: Vec<u8>, backend: &crate::provision::dry_run::DryRunBackend) -> Vec<u8> {
    let Ok(mut v) = serde_json::from_slice::<Value>(&body) else { return body };
    let Some(name) = v["workflow_job"]["runner_name"].as_str().map(str::to_owned) else { return body };
    match backend.created().into_iter().find(|r| r.name == name).and_then(|r| r.runner_id) {
        Some(id) => {
            v["workflow_job"]["runner_id"] = id.into();
            serde_json::to_vec(&v).unwrap_or(body)
        }
        None => body,
    }
}

/// Runs the demo.
pub async fn run(verbose: bool) -> ExitCode {
    match run_inner(verbose).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("demo failed: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run_inner(verbose: bool) -> anyhow::Result<()> {
    // A throwaway signing secret for this run only.
    let secret = crate::webhook::random_delivery_id();
    let settings = Settings {
        webhook_secrets: vec![Secret::new(secret.clone())],
        ..Settings::pools_only("(embedded)".into(), None)
    };
    let pools =
        Arc::new(PoolsConfig::parse(EMBEDDED_DEMO_CONFIG).map_err(|e| anyhow::anyhow!("embedded config: {e}"))?);
    let state_dir = tempfile::tempdir()?;
    let spool = Spool::open(state_dir.path())?;
    let options = QueueOptions { concurrency: 4, ..QueueOptions::default() };
    let runtime = crate::app::build_state(&settings, pools.clone(), true, Some((spool, options)), false)?;
    let (registry, backend) = runtime.dry_run.clone().ok_or_else(|| anyhow::anyhow!("dry-run expected"))?;
    let state = runtime.state;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let app = router(state.clone());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let url = format!("http://{addr}/api/github-webhook");
    println!(
        "runner-dispatch demo: standalone server on {addr}, embedded pools file, dry-run backends (nothing is created)\n"
    );
    println!(
        "pools: {}",
        pools
            .pools
            .iter()
            .map(|p| format!("{} ({} {}: {})", p.name, p.backend().as_str(), p.os.as_str(), p.labels.join(",")))
            .collect::<Vec<_>>()
            .join("; ")
    );
    println!();

    let client = crate::tls::client_builder().timeout(Duration::from_secs(10)).build()?;
    let mut rows = Vec::new();
    for (i, s) in samples().into_iter().enumerate() {
        let before_created: Vec<String> = backend.created().into_iter().map(|r| r.name).collect();
        let before_deleted = backend.deleted().len();
        let key = if s.bad_signature { "not-the-secret".as_bytes() } else { secret.as_bytes() };
        let body = with_runner_id(s.body, &backend);
        let resp = client
            .post(&url)
            .header("Content-Type", "application/json")
            .header("X-GitHub-Event", s.event)
            .header("X-GitHub-Delivery", &s.delivery)
            .header("X-Hub-Signature-256", crate::webhook::sign(key, &body))
            .body(body)
            .send()
            .await?;
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        let answer = body["result"].as_str().unwrap_or_default().to_owned();
        // Let the queue settle so each row shows what its delivery caused.
        wait_for_queue(&state, Duration::from_secs(5)).await;
        let mut effects: Vec<String> = backend
            .created()
            .into_iter()
            .filter(|r| !before_created.contains(&r.name))
            .map(|r| format!("runner {} requested in pool {} ({})", r.name, r.pool, r.backend))
            .collect();
        effects.extend(backend.deleted().into_iter().skip(before_deleted).map(|n| format!("runner {n} deleted")));
        let effect = if !effects.is_empty() {
            effects.join("; ")
        } else if status == 202 {
            "no new runner: it already exists".to_owned()
        } else {
            body["detail"].as_str().unwrap_or_default().to_owned()
        };
        rows.push((i + 1, s.case, status, answer, effect));
    }
    wait_for_queue(&state, Duration::from_secs(10)).await;

    println!("{:<3} {:<26} {:<5} {:<14} what happened", "#", "webhook", "HTTP", "answer");
    for (n, case, status, answer, effect) in &rows {
        println!("{n:<3} {case:<26} {status:<5} {answer:<14} {effect}");
    }
    let created = backend.created();
    println!(
        "\nrunners still pending (dry-run): {}",
        created.iter().map(|r| r.name.as_str()).collect::<Vec<_>>().join(", ")
    );
    println!("GitHub calls (dry-run): {}", registry.calls().len());
    for c in registry.calls() {
        println!("  {c}");
    }
    if verbose {
        for r in &backend.requests() {
            println!("\nrequest for {} (secrets redacted):\n{}", r.name, serde_json::to_string_pretty(&r.body)?);
        }
    }
    let failed = state.queue.as_ref().map(|q| q.spool().failed()).unwrap_or_default();
    if !failed.is_empty() {
        println!("\ngiven up:");
        for f in failed {
            println!("  job {}: {}", f.request.job_id, f.reason);
        }
    }
    if let Some(q) = &state.queue {
        q.drain(Duration::from_secs(5)).await;
    }
    println!("\nNothing was sent to GitHub or Azure. Run `runner-dispatch demo --verbose` to see each request body.");
    Ok(())
}

async fn wait_for_queue(state: &crate::server::AppState, limit: Duration) {
    let start = Instant::now();
    let Some(q) = &state.queue else { return };
    while start.elapsed() < limit {
        if q.spool().pending().is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
