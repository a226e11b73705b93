//! No secret leaks: distinct values are planted in every secret-bearing setting and in the
//! JIT configs and registration tokens a fake GitHub hands out; the pipeline is driven
//! through both transports, successes and failures; and every log line (JSON, all levels),
//! HTTP response, Functions reply, dry-run request and command output is searched for them.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use common::*;
use runner_dispatch::backends::Backends;
use runner_dispatch::compute::{ComputeBackend, ProvisionError};
use runner_dispatch::config::{PoolsConfig, Settings};
use runner_dispatch::github::RunnerRegistry;
use runner_dispatch::provision::dry_run::DryRunBackend;
use runner_dispatch::server::{AppState, RAW_REQUEST_TIMEOUT, router_with_timeout};
use runner_dispatch::spool::Spool;
use serde_json::{Value, json};

const WEBHOOK_SECRET: &str = "whsec-LEAKMARK-webhook-1f0c";
const OLD_WEBHOOK_SECRET: &str = "whsec-LEAKMARK-rotated-77aa";
const GITHUB_TOKEN: &str = "ghp_LEAKMARKgithubtoken0000000000";
const AZURE_CLIENT_SECRET: &str = "azcs-LEAKMARK-client-secret-9b2d";
const BATCH_KEY: &str = "batchkey+LEAKMARK+account/key==";
const CONFIG_MARKER: &str = "cfg-LEAKMARK-inline-config-5e6f";
const JIT_MARKER: &str = "-JITLEAKMARK-4c1d-";
const REG_MARKER: &str = "-REGLEAKMARK-8a3b-";

fn private_key() -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/test-keys/github-app-test.pem");
    std::fs::read_to_string(path).expect("test key")
}

/// The planted config: the marker in a comment and as the value of an unknown key, which
/// is reported by key only.
fn inline_config(valid: bool) -> String {
    let pools = format!(
        r#"# deployed from Key Vault; {CONFIG_MARKER}
[github]
allowed_owners = ["Octocoders"]
allow_public_repositories = true
check_job_queued = "never"

[[pools]]
name = "linux"
backend = "aci"
labels = ["self-hosted", "linux", "x64", "ubuntu-latest"]
image = "example.azurecr.io/runner:1"
"#
    );
    if valid { pools } else { format!("{pools}secret_note = \"{CONFIG_MARKER}\"\n") }
}

/// Every planted value, and each line of the PEM body (a leaked fragment counts).
fn markers() -> Vec<String> {
    let mut m: Vec<String> = [
        WEBHOOK_SECRET,
        OLD_WEBHOOK_SECRET,
        GITHUB_TOKEN,
        AZURE_CLIENT_SECRET,
        BATCH_KEY,
        CONFIG_MARKER,
        JIT_MARKER,
        REG_MARKER,
        "LEAKMARK",
        // The dry-run registry's own stand-ins for a JIT config and a registration token.
        "dry-run-jit-config-for-",
        "dry-run-registration-token",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    m.extend(private_key().lines().filter(|l| !l.starts_with("-----")).map(str::to_owned));
    m.push(private_key().replace('\n', "\\n"));
    m
}

fn planted_env(valid: bool) -> Vec<(&'static str, String)> {
    let mut v = vec![
        ("GITHUB_WEBHOOK_SECRET", format!("{WEBHOOK_SECRET},{OLD_WEBHOOK_SECRET}")),
        ("GITHUB_TOKEN", GITHUB_TOKEN.to_owned()),
        ("AZURE_CLIENT_SECRET", AZURE_CLIENT_SECRET.to_owned()),
        ("AZURE_BATCH_ACCOUNT_KEY", BATCH_KEY.to_owned()),
        ("RUNNER_DISPATCH_CONFIG_TOML", inline_config(valid)),
        ("GITHUB_API_URL", "http://127.0.0.1:9".to_owned()),
        ("AZURE_RESOURCE_MANAGER_URL", "http://127.0.0.1:9".to_owned()),
    ];
    if valid {
        v.extend([
            ("GITHUB_APP_ID", "123456".to_owned()),
            ("GITHUB_APP_PRIVATE_KEY", private_key()),
            ("AZURE_CLIENT_ID", "00000000-0000-0000-0000-000000000001".to_owned()),
            ("AZURE_TENANT_ID", "00000000-0000-0000-0000-000000000002".to_owned()),
            ("AZURE_BATCH_ACCOUNT_NAME", "leakbatch".to_owned()),
            ("AZURE_BATCH_ACCOUNT_URL", "http://127.0.0.1:9".to_owned()),
            ("AZURE_SUBSCRIPTION_ID", "00000000-0000-0000-0000-000000000003".to_owned()),
            ("AZURE_RESOURCE_GROUP", "rg-leak".to_owned()),
            ("AZURE_LOCATION", "westeurope".to_owned()),
        ]);
    } else {
        // Errors that concern the secret settings themselves: a key that is no PEM (flattened
        // newlines, a fragment), and secrets without the settings they need.
        v.extend([
            ("GITHUB_APP_ID", "123456".to_owned()),
            ("GITHUB_APP_PRIVATE_KEY", format!("{}\\nLEAKMARK", &private_key()[40..200])),
        ]);
    }
    v
}

fn lookup<'a>(env: &'a [(&'static str, String)]) -> impl Fn(&str) -> Option<String> + 'a {
    move |k| env.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone())
}

// ---------------------------------------------------------------------------
// Capturing every log line
// ---------------------------------------------------------------------------

#[derive(Clone)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// All tracing output of this test binary, JSON, every level of every crate.
fn logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let writer = Buffer(buf.clone());
        let subscriber = tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(true)
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("the only subscriber of this binary");
        buf
    })
    .clone()
}

/// Everything captured by one scenario.
#[derive(Default)]
struct Captured(Vec<(String, String)>);

impl Captured {
    fn add(&mut self, what: impl Into<String>, text: impl Into<String>) {
        self.0.push((what.into(), text.into()));
    }

    fn assert_clean(&self) {
        let log = String::from_utf8_lossy(&logs().lock().expect("lock")).into_owned();
        assert!(log.contains("webhook_refused"), "the log capture works (a refusal was logged)");
        let all = self.0.iter().map(|(w, t)| (w.as_str(), t.as_str())).chain([("tracing output", log.as_str())]);
        for (what, text) in all {
            for m in markers() {
                assert!(!text.contains(&m), "{what} contains the planted secret {m:?}:\n{text}");
            }
        }
    }
}

fn settings(env: &[(&'static str, String)]) -> Settings {
    Settings::from_lookup(lookup(env)).expect("planted settings are valid")
}

fn pools_of(settings: &Settings, registration: bool) -> Arc<PoolsConfig> {
    let mut p = settings.load_pools().expect("planted config is valid");
    if registration {
        p = PoolsConfig::parse(&inline_config(true).replace("[github]\n", "[github]\ntoken_mode = \"registration\"\n"))
            .expect("registration config");
    }
    Arc::new(p)
}

struct App {
    addr: std::net::SocketAddr,
    state: Arc<AppState>,
    client: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl App {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

async fn spawn(
    settings: &Settings,
    pools: Arc<PoolsConfig>,
    github: Arc<dyn RunnerRegistry>,
    backend: Arc<dyn ComputeBackend>,
    standalone: bool,
) -> App {
    let dir = tempfile::tempdir().expect("tmp");
    let queue = standalone.then(|| (Spool::open(dir.path()).expect("spool"), fast_queue()));
    let state = runner_dispatch::app::assemble_state(settings, pools, github, Backends::single(backend), queue);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let app = router_with_timeout(state.clone(), RAW_REQUEST_TIMEOUT);
    tokio::spawn(async move {
        axum::serve(listener, app).await.expect("serve");
    });
    App { addr, state, client: runner_dispatch::tls::client_builder().build().expect("client"), _dir: dir }
}

fn fake_github() -> Arc<FakeGitHub> {
    Arc::new(FakeGitHub { marker: format!("{JIT_MARKER}{REG_MARKER}"), ..FakeGitHub::default() })
}

fn completed(job_id: u64) -> Vec<u8> {
    let mut v: Value = serde_json::from_slice(&fresh_queued(job_id)).expect("json");
    v["action"] = "completed".into();
    v["workflow_job"]["runner_name"] = format!("ghr-{job_id}").into();
    serde_json::to_vec(&v).expect("ser")
}

async fn post_raw(app: &App, cap: &mut Captured, body: &[u8], key: Option<&str>, delivery: &str) -> u16 {
    let mut req = app
        .client
        .post(app.url("/api/github-webhook"))
        .header("Content-Type", "application/json")
        .header("X-GitHub-Event", "workflow_job")
        .header("X-GitHub-Delivery", delivery)
        .body(body.to_vec());
    if let Some(k) = key {
        req = req.header("X-Hub-Signature-256", runner_dispatch::webhook::sign(k.as_bytes(), body));
    }
    let resp = req.send().await.expect("send");
    let status = resp.status().as_u16();
    let headers = format!("{:?}", resp.headers());
    let text = resp.text().await.expect("text");
    cap.add(format!("raw response {delivery} headers"), headers);
    cap.add(format!("raw response {delivery}"), text);
    status
}

fn webhook_envelope(body: &[u8], key: Option<&str>) -> Value {
    let mut h = json!({"Content-Type": ["application/json"], "X-GitHub-Event": ["workflow_job"], "X-GitHub-Delivery": ["d-host"]});
    if let Some(k) = key {
        h["X-Hub-Signature-256"] = json!([runner_dispatch::webhook::sign(k.as_bytes(), body)]);
    }
    json!({"Data": {"req": {"Url": "https://x/api/github-webhook", "Method": "POST", "Query": {}, "Headers": h,
                            "Body": String::from_utf8(body.to_vec()).expect("utf8")}},
           "Metadata": {}})
}

async fn post_host(app: &App, cap: &mut Captured, path: &str, envelope: &Value) -> (u16, Value) {
    let resp = app.client.post(app.url(path)).json(envelope).send().await.expect("send");
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("text");
    cap.add(format!("host reply {path}"), text.clone());
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn queue_envelope(message: &Value, dequeue: u32) -> Value {
    // The host passes queue messages as JSON strings.
    json!({"Data": {"message": message.to_string()}, "Metadata": {"DequeueCount": dequeue, "Id": "m-1"}})
}

fn record_dry_run(cap: &mut Captured, backend: &DryRunBackend) {
    let created = backend.created();
    assert!(!created.is_empty(), "the dry-run backend saw the request");
    for r in created {
        let text = serde_json::to_string_pretty(&r.body).expect("ser");
        assert!(text.contains("\"secureValue\": \"[redacted]\""), "runner credentials are redacted: {text}");
        cap.add(format!("dry-run request {}", r.name), text);
    }
}

// ---------------------------------------------------------------------------
// The scenarios
// ---------------------------------------------------------------------------

#[test]
fn settings_and_config_errors_never_echo_values() {
    let mut cap = Captured::default();
    let _ = logs();
    let env = planted_env(true);
    let s = settings(&env);
    cap.add("Settings Debug", format!("{s:?}"));
    cap.add("Settings Debug (pretty)", format!("{s:#?}"));
    let pools = s.load_pools().expect("valid");
    cap.add("PoolsConfig Debug", format!("{pools:?}"));

    let bad = planted_env(false);
    let errors = Settings::from_lookup(lookup(&bad)).expect_err("invalid settings");
    let keys: Vec<&str> = errors.0.iter().map(|p| p.key.as_str()).collect();
    for k in ["GITHUB_APP_PRIVATE_KEY", "AZURE_BATCH_ACCOUNT_NAME", "AZURE_CLIENT_SECRET"] {
        assert!(keys.contains(&k), "{k} is reported: {keys:?}");
    }
    cap.add("ConfigErrors Display", errors.to_string());
    cap.add("ConfigErrors Debug", format!("{errors:?}"));

    // An invalid inline config: reported by key, the marker never echoed.
    let mut env_bad_cfg = env.clone();
    env_bad_cfg.retain(|(k, _)| *k != "RUNNER_DISPATCH_CONFIG_TOML");
    env_bad_cfg.push(("RUNNER_DISPATCH_CONFIG_TOML", inline_config(false)));
    let errors = settings(&env_bad_cfg).load_pools().expect_err("unknown key");
    assert!(errors.to_string().contains("secret_note"), "{errors}");
    cap.add("inline config errors", errors.to_string());
    cap.add("inline config errors Debug", format!("{errors:?}"));
    // Not even TOML: an unterminated string holding the marker.
    for broken in [format!("[github]\nallowed_owners = [\"{CONFIG_MARKER}"), format!("x = \"{CONFIG_MARKER}\n")] {
        let mut e = env.clone();
        e.retain(|(k, _)| *k != "RUNNER_DISPATCH_CONFIG_TOML");
        e.push(("RUNNER_DISPATCH_CONFIG_TOML", broken));
        let errors = settings(&e).load_pools().expect_err("not TOML");
        cap.add("inline config TOML error", errors.to_string());
    }
    cap.0.iter().for_each(|(w, t)| {
        for m in markers() {
            assert!(!t.contains(&m), "{w} contains {m:?}: {t}");
        }
    });
}

#[tokio::test]
async fn the_standalone_transport_leaks_nothing() {
    let _ = logs();
    let mut cap = Captured::default();
    let env = planted_env(true);
    let s = settings(&env);
    for registration in [false, true] {
        let github = fake_github();
        let backend = Arc::new(DryRunBackend::new(false));
        let app = spawn(&s, pools_of(&s, registration), github.clone(), backend.clone(), true).await;
        let job = if registration { 7102 } else { 7101 };
        let body = fresh_queued(job);
        assert_eq!(post_raw(&app, &mut cap, &body, None, "unsigned").await, 401);
        assert_eq!(post_raw(&app, &mut cap, &body, Some("wrong"), "badsig").await, 401);
        assert_eq!(post_raw(&app, &mut cap, b"{not json", Some(WEBHOOK_SECRET), "badjson").await, 400);
        assert_eq!(post_raw(&app, &mut cap, &body, Some(OLD_WEBHOOK_SECRET), "good").await, 202);
        let queue = app.state.queue.as_ref().expect("queue");
        assert!(eventually(|| !backend.created().is_empty() && queue.spool().pending().is_empty()).await);
        record_dry_run(&mut cap, &backend);
        assert_eq!(post_raw(&app, &mut cap, &completed(job), Some(WEBHOOK_SECRET), "done").await, 202);
        assert!(eventually(|| queue.spool().pending().is_empty()).await);
        let expected_call = if registration { "registration-token" } else { "jit ghr-" };
        assert!(github.calls().iter().any(|c| c.starts_with(expected_call)), "{:?}", github.calls());
    }

    // Failures: a permanent create failure, a GitHub failure, then retries to the limit.
    let github = fake_github();
    github
        .jit_script
        .lock()
        .expect("lock")
        .push_back(Err(runner_dispatch::github::GitHubError::Permanent("Bad credentials".into())));
    let backend = ScriptedBackend::with(vec![
        Err(ProvisionError::permanent("quota exceeded")),
        Err(ProvisionError::retryable("busy")),
    ]);
    let app = spawn(&s, pools_of(&s, false), github, backend.clone(), true).await;
    for (i, job) in [7201u64, 7202, 7203].into_iter().enumerate() {
        assert_eq!(post_raw(&app, &mut cap, &fresh_queued(job), Some(WEBHOOK_SECRET), &format!("f{i}")).await, 202);
    }
    let spool = app.state.queue.as_ref().expect("queue").spool();
    assert!(eventually(|| spool.failed().len() >= 2 && spool.pending().is_empty()).await, "{:?}", spool.failed());
    for f in spool.failed() {
        cap.add("failed request", serde_json::to_string(&f).expect("ser"));
    }
    assert!(backend.create_count() >= 2);
    cap.assert_clean();
}

#[tokio::test]
async fn the_functions_transport_leaks_nothing() {
    let _ = logs();
    let mut cap = Captured::default();
    let env = planted_env(true);
    let s = settings(&env);
    for registration in [false, true] {
        let github = fake_github();
        let backend = Arc::new(DryRunBackend::new(false));
        let app = spawn(&s, pools_of(&s, registration), github, backend.clone(), false).await;
        let body = fresh_queued(if registration { 7302 } else { 7301 });
        let (st, r) = post_host(&app, &mut cap, "/github-webhook", &webhook_envelope(&body, Some("wrong"))).await;
        assert_eq!((st, r["Outputs"]["res"]["statusCode"].as_str()), (200, Some("401")));
        let (_, r) = post_host(&app, &mut cap, "/github-webhook", &webhook_envelope(&body, None)).await;
        assert_eq!(r["Outputs"]["res"]["statusCode"], "401");
        let (_, r) = post_host(&app, &mut cap, "/github-webhook", &webhook_envelope(&body, Some(WEBHOOK_SECRET))).await;
        assert_eq!(r["Outputs"]["res"]["statusCode"], "202", "{r}");
        let message = r["Outputs"]["runnerRequest"].clone();
        let (st, r) = post_host(&app, &mut cap, "/provision-runner", &queue_envelope(&message, 1)).await;
        assert_eq!(st, 200, "{r}");
        record_dry_run(&mut cap, &backend);
        let (_, r) =
            post_host(&app, &mut cap, "/github-webhook", &webhook_envelope(&completed(7301), Some(WEBHOOK_SECRET)))
                .await;
        let cleanup = r["Outputs"]["runnerCleanup"].clone();
        post_host(&app, &mut cap, "/cleanup-runner", &queue_envelope(&cleanup, 1)).await;
        // Unreadable envelopes and messages.
        post_host(&app, &mut cap, "/github-webhook", &json!("not an envelope")).await;
        post_host(&app, &mut cap, "/provision-runner", &json!({"Data": {"message": "{\"v\":1}"}, "Metadata": {}}))
            .await;
        post_host(&app, &mut cap, "/reconcile", &json!({})).await;
    }

    // Failures: permanent create failure (given up to the failed queue), retryable (500),
    // retryable at the last attempt (given up), and a GitHub refusal.
    let github = fake_github();
    let backend = ScriptedBackend::with(vec![
        Err(ProvisionError::permanent("quota exceeded")),
        Err(ProvisionError::retryable("busy")),
        Err(ProvisionError::retryable("still busy")),
    ]);
    let app = spawn(&s, pools_of(&s, false), github.clone(), backend, false).await;
    let mut messages = Vec::new();
    for job in [7401u64, 7402, 7403, 7404] {
        let (_, r) =
            post_host(&app, &mut cap, "/github-webhook", &webhook_envelope(&fresh_queued(job), Some(WEBHOOK_SECRET)))
                .await;
        messages.push(r["Outputs"]["runnerRequest"].clone());
    }
    let (st, r) = post_host(&app, &mut cap, "/provision-runner", &queue_envelope(&messages[0], 1)).await;
    assert_eq!(st, 200);
    assert!(r["Outputs"].get("failedRequest").is_some(), "{r}");
    let (st, _) = post_host(&app, &mut cap, "/provision-runner", &queue_envelope(&messages[1], 1)).await;
    assert_eq!(st, 500);
    let (st, r) = post_host(&app, &mut cap, "/provision-runner", &queue_envelope(&messages[2], 60)).await;
    assert_eq!(st, 200);
    assert!(r["Outputs"].get("failedRequest").is_some(), "{r}");
    github.jit_script.lock().expect("lock").push_back(Err(runner_dispatch::github::GitHubError::Permanent(
        "Resource not accessible by integration".into(),
    )));
    post_host(&app, &mut cap, "/provision-runner", &queue_envelope(&messages[3], 1)).await;
    cap.assert_clean();
}

// ---------------------------------------------------------------------------
// The binary
// ---------------------------------------------------------------------------

fn bin(env: &[(&'static str, String)]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_runner-dispatch"));
    c.env_clear();
    c.env("PATH", std::env::var("PATH").unwrap_or_default());
    c.env("RUST_LOG", "trace");
    for (k, v) in env {
        c.env(k, v);
    }
    c
}

fn output_of(mut c: Command) -> String {
    let out = c.output().expect("run the binary");
    format!("{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[test]
fn the_binary_leaks_nothing_in_check_config_and_the_demo() {
    let mut cap = Captured::default();
    let valid = planted_env(true);
    let mut c = bin(&valid);
    c.arg("check-config");
    let out = output_of(c);
    assert!(out.contains("ok: 1 pool(s)"), "{out}");
    cap.add("check-config (valid)", out);

    let mut c = bin(&planted_env(false));
    c.arg("check-config");
    let out = output_of(c);
    assert!(out.contains("GITHUB_APP_PRIVATE_KEY") && out.contains("secret_note"), "{out}");
    cap.add("check-config (errors)", out);

    for args in [vec!["demo", "--verbose"], vec!["route", "--labels", "self-hosted,linux"]] {
        let mut c = bin(&valid);
        c.args(&args);
        let out = output_of(c);
        if args[0] == "demo" {
            assert!(out.contains("\"secureValue\": \"[redacted]\""), "the demo shows the redaction: {out}");
            assert!(out.contains("Linux job queued"), "{out}");
        }
        cap.add(args.join(" "), out);
    }
    for (what, text) in &cap.0 {
        for m in markers() {
            assert!(!text.contains(&m), "{what} contains the planted secret {m:?}:\n{text}");
        }
    }
}

/// `serve --dry-run` standalone with the planted settings and this log format, on a free
/// port; returns the process, its port and its state directory.
fn served_binary(log_format: &str) -> (std::process::Child, u16, tempfile::TempDir) {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let dir = tempfile::tempdir().expect("tmp");
    let mut env = planted_env(true);
    env.push(("RUNNER_DISPATCH_LOG_FORMAT", log_format.to_owned()));
    let mut c = bin(&env);
    c.args(["serve", "--dry-run", "--listen", &format!("127.0.0.1:{port}"), "--state-dir"])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    (c.spawn().expect("serve"), port, dir)
}

/// A client, once the served binary answers its health check.
async fn client_when_up(port: u16) -> reqwest::Client {
    let client = runner_dispatch::tls::client_builder().build().expect("client");
    for _ in 0..100 {
        if client.get(format!("http://127.0.0.1:{port}/healthz")).send().await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    client
}

#[test]
fn the_served_binary_logs_nothing_secret() {
    let (mut child, port, _dir) = served_binary("json");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("rt");
    let replies = rt.block_on(async {
        let client = client_when_up(port).await;
        let url = format!("http://127.0.0.1:{port}/api/github-webhook");
        let mut replies = Vec::new();
        let body = fresh_queued(7501);
        for key in [None, Some("wrong"), Some(WEBHOOK_SECRET)] {
            let mut req = client
                .post(&url)
                .header("Content-Type", "application/json")
                .header("X-GitHub-Event", "workflow_job")
                .header("X-GitHub-Delivery", "served")
                .body(body.clone());
            if let Some(k) = key {
                req = req.header("X-Hub-Signature-256", runner_dispatch::webhook::sign(k.as_bytes(), &body));
            }
            let resp = req.send().await.expect("send");
            replies.push(format!("{} {}", resp.status(), resp.text().await.unwrap_or_default()));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        replies
    });
    let _ = child.kill();
    let out = child.wait_with_output().expect("output");
    let text = format!("{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(replies[2].starts_with("202"), "{replies:?}\n{text}");
    assert!(text.contains("webhook_refused"), "logs were captured: {text}");
    assert!(text.contains("secureValue"), "the dry-run request was printed: {text}");
    for t in replies.iter().chain([&text]) {
        for m in markers() {
            assert!(!t.contains(&m), "served binary output contains {m:?}:\n{t}");
        }
    }
}

/// Text logs (standalone's default) carry no forged line, no terminal escape and no
/// megabyte line, whatever a delivery's unsigned headers or signed labels hold.
#[test]
fn the_served_binary_logs_untrusted_values_escaped_and_capped() {
    let (mut child, port, _dir) = served_binary("text");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("rt");
    let statuses = rt.block_on(async {
        let client = client_when_up(port).await;
        let url = format!("http://127.0.0.1:{port}/api/github-webhook");
        let forged = "x\n2026-01-01T00:00:00Z  INFO FORGED event=\"webhook_accepted\" \u{1b}[31mred";
        let mut v: Value = serde_json::from_slice(&fresh_queued(7601)).expect("json");
        v["workflow_job"]["labels"] = serde_json::json!(["self-hosted", forged]);
        let labelled = serde_json::to_vec(&v).expect("ser");
        let mut statuses = Vec::new();
        for (body, delivery, key) in [
            (fresh_queued(7602), "y".repeat(200_000), None),
            (labelled, "label-case".to_owned(), Some(WEBHOOK_SECRET)),
            (fresh_queued(7603), "a\nFORGED line".to_owned(), None),
        ] {
            let mut req = client
                .post(&url)
                .header("Content-Type", "application/json")
                .header("X-GitHub-Event", "workflow_job")
                .body(body.clone());
            if let Ok(h) = reqwest::header::HeaderValue::from_bytes(delivery.as_bytes()) {
                req = req.header("X-GitHub-Delivery", h);
            }
            if let Some(k) = key {
                req = req.header("X-Hub-Signature-256", runner_dispatch::webhook::sign(k.as_bytes(), &body));
            }
            statuses.push(req.send().await.map(|r| r.status().as_u16()).unwrap_or(0));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        statuses
    });
    let _ = child.kill();
    let out = child.wait_with_output().expect("output");
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(statuses[0], 401, "{statuses:?}");
    assert_eq!(statuses[1], 200, "no pool fits the forged label: {statuses:?}");
    assert!(text.contains("webhook_refused") && text.contains("no_pool"), "logs were captured: {text}");
    for line in text.lines() {
        assert!(line.len() < 2_000, "a {}-byte log line", line.len());
        assert!(!line.contains("FORGED") || !line.starts_with("2026-01-01"), "a forged line: {line}");
        assert!(!line.contains('\u{1b}'), "a terminal escape reached the log: {line:?}");
    }
    assert!(!text.contains(&"y".repeat(300)), "the unsigned delivery header was logged whole");
}
