//! One structured event per step of a job's life, with identity, pool tags and durations.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use common::*;
use runner_dispatch::backends::Backends;
use runner_dispatch::config::PoolsConfig;
use runner_dispatch::message::MessageKind;
use runner_dispatch::provision::Provisioner;
use runner_dispatch::webhook::{Headers, accept};

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Buffer {
    fn events(&self) -> Vec<serde_json::Value> {
        let text = String::from_utf8(self.0.lock().expect("lock").clone()).expect("utf8");
        text.lines().map(|l| serde_json::from_str(l).expect("every log line is JSON")).collect()
    }
}

const TAGGED: &str = r#"
[github]
allowed_owners = ["Octocoders"]
allow_public_repositories = true
check_job_queued = "never"
[defaults]
tags = { cost-center = "4711" }
[[pools]]
name = "linux"
backend = "aci"
labels = ["self-hosted", "linux", "ubuntu-latest"]
image = "img"
tags = { team = "api" }
"#;

#[tokio::test]
async fn accepted_requested_and_completed_events_carry_job_pool_tags_and_durations() {
    let buf = Buffer::default();
    let writer = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let pools = Arc::new(PoolsConfig::parse(TAGGED).expect("pools"));
    let body = fresh_queued(77);
    let headers = Headers::new(vec![
        ("X-GitHub-Event".into(), "workflow_job".into()),
        ("X-GitHub-Delivery".into(), "guid-77".into()),
        ("X-Hub-Signature-256".into(), sign(&body)),
    ]);
    let outcome = accept(&[SECRET.into()], &pools, &headers, &body);
    let msg = outcome.message().cloned().expect("queued");
    let gh = Arc::new(FakeGitHub::default());
    let backend = ScriptedBackend::with(vec![]);
    let p = Provisioner::new(pools, gh, Backends::single(backend));
    p.provision(&msg, 1).await.expect("created");
    let mut done = msg.clone();
    done.kind = MessageKind::Cleanup;
    done.ran_on = Some("ghr-77".into());
    done.job_started_at = done.job_created_at.clone();
    p.cleanup(&done).await.expect("cleaned");

    let events = buf.events();
    let find = |name: &str| {
        events.iter().find(|e| e["event"] == name).unwrap_or_else(|| panic!("no {name} in {events:?}")).clone()
    };
    let accepted = find("webhook_accepted");
    assert_eq!(accepted["job_id"], 77);
    assert_eq!(accepted["delivery_id"], "guid-77");
    assert_eq!(accepted["pool"], "linux");
    assert_eq!(accepted["repository"], "Octocoders/Hello-World");
    let requested = find("runner_requested");
    assert_eq!(requested["runner_name"], "ghr-77");
    let tags: serde_json::Value =
        serde_json::from_str(requested["pool_tags"].as_str().expect("tags text")).expect("tags json");
    assert_eq!(tags, serde_json::json!({"cost-center": "4711", "team": "api"}));
    assert!(requested["queued_to_requested_s"].as_i64().expect("duration") >= 0);
    let completed = find("job_completed");
    assert_eq!(completed["ran_on"], "ghr-77");
    assert_eq!(completed["queued_to_started_s"], 0);
    assert!(completed["pool_tags"].as_str().expect("tags").contains("4711"));
}
