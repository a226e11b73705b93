//! The runner-dispatch benchmark harness: `cargo bench --bench runner_dispatch`.
//!
//! One command runs every measurement and prints one table (see BENCHMARKS.md):
//! 1. cold start of `serve --dry-run` beside a hello-world axum server (same profile),
//! 2. webhook acknowledgement throughput and latency on both transports beside a plain
//!    axum handler and a Node 20 peer (`benches/node_peer/server.js`, when `node` is on
//!    PATH), plus a fixed-rate run,
//! 3. burst provisioning of 1,000 queued jobs through the real standalone queue and
//!    `Provisioner` against rate-limited fakes (tokio paused time, in child processes),
//! 4. memory (idle and peak RSS), binary and package size,
//! 5. pool matching among 5,000 pools.
//!
//! Everything runs on 127.0.0.1 and is bounded by counts and time. Goals are ratios
//! measured within one run; the machine may be shared, so read the noise columns.
//! `RD_BENCH_QUICK=1` shortens every section; `RD_BENCH_BIN=<path>` benchmarks another
//! build of the binary (e.g. one built with a different `opt-level`).

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const SECRET: &str = "bench-webhook-secret";

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn quick() -> bool {
    std::env::var_os("RD_BENCH_QUICK").is_some_and(|v| !v.is_empty() && v != "0")
}

// ---------------------------------------------------------------------------------------
// Small statistics and reporting helpers.

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (p / 100.0 * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(f64::total_cmp);
    v
}

fn median(v: &[f64]) -> f64 {
    percentile(&sorted(v.to_vec()), 50.0)
}

/// One line of the final table.
struct Row {
    section: &'static str,
    metric: String,
    value: String,
    goal: String,
    met: Option<bool>,
}

#[derive(Default)]
struct Report {
    rows: Vec<Row>,
    notes: Vec<String>,
}

impl Report {
    fn row(&mut self, section: &'static str, metric: impl Into<String>, value: impl Into<String>) {
        self.rows.push(Row { section, metric: metric.into(), value: value.into(), goal: String::new(), met: None });
    }

    fn goal(
        &mut self,
        section: &'static str,
        metric: impl Into<String>,
        value: impl Into<String>,
        goal: impl Into<String>,
        met: bool,
    ) {
        self.rows.push(Row { section, metric: metric.into(), value: value.into(), goal: goal.into(), met: Some(met) });
    }

    fn note(&mut self, n: impl Into<String>) {
        let n = n.into();
        eprintln!("  note: {n}");
        self.notes.push(n);
    }

    fn markdown(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "| # | metric | value | goal | met |");
        let _ = writeln!(out, "|---|---|---|---|---|");
        for r in &self.rows {
            let met = match r.met {
                Some(true) => "yes",
                Some(false) => "**no**",
                None => "",
            };
            let _ = writeln!(out, "| {} | {} | {} | {} | {} |", r.section, r.metric, r.value, r.goal, met);
        }
        if !self.notes.is_empty() {
            let _ = writeln!(out, "\nNotes:");
            for n in &self.notes {
                let _ = writeln!(out, "- {n}");
            }
        }
        out
    }
}

// ---------------------------------------------------------------------------------------
// Processes.

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

/// `VmRSS` and `VmHWM` of a process, in KiB.
fn rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// A server process we started; killed (by its own handle) when dropped.
struct Server {
    child: Child,
    port: u16,
    _dir: Option<tempfile::TempDir>,
}

impl Server {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Target {
    /// `serve --dry-run` standalone (`--listen`, spool in a temp `--state-dir`).
    RunnerDispatch,
    /// The same under the Functions host's contract (`FUNCTIONS_CUSTOMHANDLER_PORT`).
    RunnerDispatchHost,
    Hello,
    /// `node benches/node_peer/server.js <port>`: the same envelope work in plain Node.
    NodePeer,
}

/// Whether `node` can be run (the Node peer's rows are skipped, with a note, otherwise).
fn node_available() -> bool {
    Command::new("node")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

struct Bins {
    runner_dispatch: PathBuf,
    hello: PathBuf,
}

fn spawn(bins: &Bins, target: Target) -> Server {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut state_dir = None;
    let mut cmd = match target {
        Target::RunnerDispatch | Target::RunnerDispatchHost => {
            let dir = tempfile::Builder::new().prefix("rd-bench-state").tempdir().expect("state dir");
            let mut cmd = Command::new(&bins.runner_dispatch);
            cmd.args(["serve", "--dry-run", "--listen", &listen, "--state-dir"]).arg(dir.path());
            if target == Target::RunnerDispatchHost {
                cmd.env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string());
            } else {
                cmd.env_remove("FUNCTIONS_CUSTOMHANDLER_PORT");
            }
            cmd.env("GITHUB_WEBHOOK_SECRET", SECRET)
                .env("RUNNER_DISPATCH_CONFIG", repo_root().join("runners.example.toml"))
                .env_remove("RUNNER_DISPATCH_CONFIG_TOML")
                .env_remove("GITHUB_APP_ID")
                .env_remove("GITHUB_APP_PRIVATE_KEY")
                .env_remove("GITHUB_TOKEN")
                .env_remove("RUST_LOG");
            state_dir = Some(dir);
            cmd
        }
        Target::Hello => {
            let mut cmd = Command::new(&bins.hello);
            cmd.arg(&listen);
            cmd
        }
        Target::NodePeer => {
            let mut cmd = Command::new("node");
            cmd.arg(repo_root().join("benches/node_peer/server.js"))
                .arg(port.to_string())
                .env("GITHUB_WEBHOOK_SECRET", SECRET);
            cmd
        }
    };
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("could not spawn {target:?}: {e}"));
    Server { child, port, _dir: state_dir }
}

/// CPU time (user + system) a process has used so far, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces): utime and stime are the
    // 12th and 13th, in clock ticks of 1/100 s on Linux.
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let ticks: Vec<f64> = after_name.split_whitespace().skip(11).take(2).filter_map(|v| v.parse().ok()).collect();
    ticks.iter().sum::<f64>() / 100.0
}

/// Polls `GET /` until a 200 or the deadline. Returns the time since `start`.
fn wait_for_200(port: u16, start: Instant, deadline: Duration) -> Option<Duration> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    while start.elapsed() < deadline {
        if let Ok(mut s) = TcpStream::connect(addr) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            if s.write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").is_ok() {
                let mut buf = [0u8; 16];
                let mut got = 0;
                while got < 12 {
                    match s.read(&mut buf[got..]) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => got += n,
                    }
                }
                if buf.starts_with(b"HTTP/1.1 200") {
                    return Some(start.elapsed());
                }
            }
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    None
}

fn start_and_wait(bins: &Bins, target: Target) -> (Server, Duration) {
    let start = Instant::now();
    let server = spawn(bins, target);
    let took = wait_for_200(server.port, start, Duration::from_secs(20))
        .unwrap_or_else(|| panic!("{target:?} did not answer 200 on GET / within 20 s"));
    (server, took)
}

// ---------------------------------------------------------------------------------------
// 1. Cold start (and idle RSS).

fn cold_start(bins: &Bins, report: &mut Report) {
    // A start takes a few milliseconds and the spread between runs is of the same order
    // (p10-p90 of 21 runs moved the ratio of medians between 1.46x and 1.56x from one run
    // of this harness to the next, same binaries): 61 interleaved pairs.
    let runs = if quick() { 5 } else { 61 };
    // Idle RSS needs the process to settle for 250 ms; a few samples are enough for it.
    let rss_runs = runs.min(7);
    eprintln!("[1] cold start: {runs} interleaved runs each");
    let (mut rd, mut hello, mut rd_rss, mut hello_rss) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for i in 0..runs {
        let order =
            if i % 2 == 0 { [Target::RunnerDispatch, Target::Hello] } else { [Target::Hello, Target::RunnerDispatch] };
        for t in order {
            let (server, took) = start_and_wait(bins, t);
            let rss = (i < rss_runs).then(|| {
                // Idle: let start-up work (spool replay, first timers) settle.
                std::thread::sleep(Duration::from_millis(250));
                rss_kib(server.pid()).0 as f64
            });
            let ms = took.as_secs_f64() * 1000.0;
            match t {
                Target::RunnerDispatch | Target::RunnerDispatchHost => {
                    rd.push(ms);
                    rd_rss.extend(rss);
                }
                Target::Hello => {
                    hello.push(ms);
                    hello_rss.extend(rss);
                }
                Target::NodePeer => unreachable!("cold start compares runner-dispatch with hello_axum only"),
            }
        }
    }
    let (rd_med, hello_med) = (median(&rd), median(&hello));
    let ratio = rd_med / hello_med;
    // The same comparison pair by pair (each pair ran back to back, so shares the load).
    let pair_ratios: Vec<f64> = rd.iter().zip(&hello).map(|(r, h)| r / h).collect();
    let spread = |v: &[f64]| {
        let s = sorted(v.to_vec());
        format!("p10 {:.2} / p90 {:.2} ms", percentile(&s, 10.0), percentile(&s, 90.0))
    };
    report.row("1", "cold start, hello_axum (median of runs)", format!("{hello_med:.2} ms ({})", spread(&hello)));
    report.row("1", "cold start, serve --dry-run (median)", format!("{rd_med:.2} ms ({})", spread(&rd)));
    report.goal(
        "1",
        "cold start ratio runner-dispatch / hello",
        format!("{ratio:.2}x (ratio of medians; median of the {runs} pair ratios {:.2}x)", median(&pair_ratios)),
        "<= 1.5x",
        ratio <= 1.5,
    );
    let idle = median(&rd_rss);
    report.goal(
        "4",
        "idle RSS, serve --dry-run (VmRSS, median)",
        format!("{:.1} MiB", idle / 1024.0),
        "< 12 MB",
        idle * 1024.0 < 12e6,
    );
    report.row("4", "idle RSS, hello_axum (reference)", format!("{:.1} MiB", median(&hello_rss) / 1024.0));
}

// ---------------------------------------------------------------------------------------
// 2. Webhook acknowledgement.

/// A prepared request: everything computed before the clock starts.
struct Req {
    url: String,
    headers: Vec<(&'static str, String)>,
    body: Arc<[u8]>,
}

/// A queued delivery for a private repository of an allowed owner whose labels choose
/// the `linux-aci` pool of runners.example.toml.
fn payload(template: &serde_json::Value, job_id: u64, now: &str) -> Vec<u8> {
    let mut v = template.clone();
    v["workflow_job"]["id"] = job_id.into();
    v["workflow_job"]["run_id"] = (job_id / 3).into();
    v["workflow_job"]["created_at"] = now.into();
    serde_json::to_vec(&v).expect("ser")
}

fn payload_template() -> serde_json::Value {
    let path = repo_root().join("tests/fixtures/github-webhooks/workflow_job__queued.payload.json");
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).expect("fixture")).expect("json");
    v["workflow_job"]["labels"] = serde_json::json!(["self-hosted", "linux", "x64", "aci"]);
    for k in ["runner_id", "runner_name", "runner_group_id", "runner_group_name"] {
        v["workflow_job"][k] = serde_json::Value::Null;
    }
    v["repository"]["full_name"] = "octo-org/hello-world".into();
    v["repository"]["name"] = "hello-world".into();
    v["repository"]["owner"]["login"] = "octo-org".into();
    v["repository"]["private"] = true.into();
    v["repository"]["visibility"] = "private".into();
    v["organization"] = serde_json::json!({"login": "octo-org"});
    v
}

fn envelope(body: &[u8], delivery: &str) -> Vec<u8> {
    let sig = runner_dispatch::webhook::sign(SECRET.as_bytes(), body);
    let env = serde_json::json!({
        "Data": {"req": {
            "Url": "https://app.azurewebsites.net/api/github-webhook",
            "Method": "POST",
            "Query": {},
            "Headers": {
                "Content-Type": ["application/json"],
                "X-GitHub-Event": ["workflow_job"],
                "X-GitHub-Delivery": [delivery],
                "X-Hub-Signature-256": [sig],
                "User-Agent": ["GitHub-Hookshot/bench"],
            },
            "Params": {},
            "Identities": [],
            "Body": String::from_utf8(body.to_vec()).expect("utf8"),
        }},
        "Metadata": {"sys": {"MethodName": "github-webhook"}},
    });
    serde_json::to_vec(&env).expect("ser")
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Route {
    /// hello_axum `POST /echo` with the envelope body.
    Plain,
    /// `POST /github-webhook` (Functions host envelope).
    Envelope,
    /// The Node peer's `POST /github-webhook`, with the same envelopes.
    NodePeer,
    /// `POST /api/github-webhook` (standalone, spooled with fsync).
    Standalone,
}

impl Route {
    fn label(self) -> &'static str {
        match self {
            Route::Plain => "plain axum (read body, 200)",
            Route::Envelope => "envelope POST /github-webhook",
            Route::NodePeer => "Node peer envelope POST /github-webhook",
            Route::Standalone => "standalone POST /api/github-webhook (fsync spool)",
        }
    }
}

fn prepare(route: Route, base_url: &str, ids: std::ops::Range<u64>, template: &serde_json::Value) -> Vec<Req> {
    let now = time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).expect("fmt");
    ids.map(|id| {
        let body = payload(template, id, &now);
        let delivery = format!("00000000-0000-4000-8000-{id:012}");
        match route {
            Route::Plain | Route::Envelope | Route::NodePeer => Req {
                url: format!("{base_url}{}", if route == Route::Plain { "/echo" } else { "/github-webhook" }),
                headers: vec![("content-type", "application/json".into())],
                body: envelope(&body, &delivery).into(),
            },
            Route::Standalone => Req {
                url: format!("{base_url}/api/github-webhook"),
                headers: vec![
                    ("content-type", "application/json".into()),
                    ("x-github-event", "workflow_job".into()),
                    ("x-github-delivery", delivery),
                    ("x-hub-signature-256", runner_dispatch::webhook::sign(SECRET.as_bytes(), &body)),
                ],
                body: body.into(),
            },
        }
    })
    .collect()
}

async fn send(client: &reqwest::Client, r: &Req) -> Result<(u16, Vec<u8>), String> {
    let mut b = client.post(&r.url);
    for (k, v) in &r.headers {
        b = b.header(*k, v);
    }
    let resp = b.body(r.body.to_vec()).send().await.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let body = resp.bytes().await.map_err(|e| e.to_string())?;
    Ok((status, body.to_vec()))
}

struct LoadResult {
    ok: usize,
    errors: usize,
    elapsed: Duration,
    latencies_ms: Vec<f64>,
}

/// Closed loop: `conns` workers send the prepared requests back to back.
/// Requests `i` cycles through the prepared ones up to `total` (only for stateless routes).
async fn closed_loop(
    client: &reqwest::Client,
    reqs: Arc<Vec<Req>>,
    total: usize,
    conns: usize,
    limit: Duration,
) -> LoadResult {
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let (client, reqs, next) = (client.clone(), reqs.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let (mut ok, mut errors, mut lat) = (0usize, 0usize, Vec::new());
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total || start.elapsed() > limit {
                    break;
                }
                let t = Instant::now();
                match send(&client, &reqs[i % reqs.len()]).await {
                    Ok((s, _)) if s < 300 => {
                        ok += 1;
                        lat.push(t.elapsed().as_secs_f64() * 1000.0);
                    }
                    _ => errors += 1,
                }
            }
            (ok, errors, lat)
        }));
    }
    let mut res = LoadResult { ok: 0, errors: 0, elapsed: Duration::ZERO, latencies_ms: Vec::new() };
    for t in tasks {
        let (ok, errors, lat) = t.await.expect("worker");
        res.ok += ok;
        res.errors += errors;
        res.latencies_ms.extend(lat);
    }
    res.elapsed = start.elapsed();
    res
}

/// Open loop at a fixed rate; latency from the moment each request is sent.
async fn fixed_rate(client: &reqwest::Client, reqs: Arc<Vec<Req>>, rate: f64) -> (LoadResult, f64) {
    let interval = Duration::from_secs_f64(1.0 / rate);
    let start = tokio::time::Instant::now() + Duration::from_millis(20);
    let mut tasks = Vec::with_capacity(reqs.len());
    for i in 0..reqs.len() {
        let (client, reqs) = (client.clone(), reqs.clone());
        let at = start + interval * u32::try_from(i).expect("count");
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep_until(at).await;
            let lag = at.elapsed().as_secs_f64() * 1000.0;
            let t = Instant::now();
            let r = send(&client, &reqs[i]).await;
            (r.is_ok_and(|(s, _)| s < 300), t.elapsed().as_secs_f64() * 1000.0, lag)
        }));
    }
    let wall = Instant::now();
    let mut res = LoadResult { ok: 0, errors: 0, elapsed: Duration::ZERO, latencies_ms: Vec::new() };
    let mut lags = Vec::new();
    for t in tasks {
        let (ok, ms, lag) = t.await.expect("task");
        if ok {
            res.ok += 1;
            res.latencies_ms.push(ms);
        } else {
            res.errors += 1;
        }
        lags.push(lag);
    }
    res.elapsed = wall.elapsed();
    (res, percentile(&sorted(lags), 99.0))
}

fn webhook_ack(bins: &Bins, report: &mut Report) {
    // Plain and envelope: `prepared` distinct deliveries cycled up to `total` per round (the
    // envelope route keeps no state, so a repeat short-circuits nothing). Standalone: every
    // request a distinct job (the spool refuses duplicates), at most `spooled` per round.
    let (rounds, prepared, total, spooled, limit) = if quick() {
        (2, 500, 3000, 300, Duration::from_secs(1))
    } else {
        (5, 3000, 60_000, 1500, Duration::from_secs(3))
    };
    let conns = 4;
    eprintln!("[2] webhook ack: {rounds} interleaved rounds of up to {limit:?} per route, {conns} connections");
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("rt");
    // The envelope route is measured as deployed: runner-dispatch under the Functions host's
    // contract (no spool); the raw route on a standalone server of its own, so its queue's
    // background work (spool removals, dry-run provisioning) does not land on the others.
    let (host, _) = start_and_wait(bins, Target::RunnerDispatchHost);
    let (standalone, _) = start_and_wait(bins, Target::RunnerDispatch);
    let (hello, _) = start_and_wait(bins, Target::Hello);
    // The Node peer gets the same envelopes and the same closed loop as the envelope route.
    let node = node_available().then(|| start_and_wait(bins, Target::NodePeer).0);
    if node.is_none() {
        report.note("`node` is not on PATH: the Node peer's rows are skipped (install Node 20 to compare)");
    }
    let stateless_routes: Vec<Route> =
        [Route::Plain, Route::Envelope].into_iter().chain(node.as_ref().map(|_| Route::NodePeer)).collect();
    let template = payload_template();
    let client = runner_dispatch::tls::client_builder()
        .pool_max_idle_per_host(64)
        .timeout(Duration::from_secs(10))
        .no_proxy()
        .build()
        .expect("client");
    let mut next_id: u64 = 50_000_000;
    let mut ids = |n: usize| {
        let r = next_id..next_id + n as u64;
        next_id += n as u64;
        r
    };
    let base = |route: Route| match route {
        Route::Plain => hello.url(""),
        Route::Envelope => host.url(""),
        Route::Standalone => standalone.url(""),
        Route::NodePeer => node.as_ref().expect("Node peer started").url(""),
    };
    // The server's own CPU time per ack: the client shares the same cores, so throughput
    // ratios understate how much less work one server does than another.
    let server_pid = |route: Route| match route {
        Route::Plain => hello.pid(),
        Route::Envelope => host.pid(),
        Route::Standalone => standalone.pid(),
        Route::NodePeer => node.as_ref().expect("Node peer started").pid(),
    };
    // Check once that each route really accepts (and does not refuse) the delivery.
    rt.block_on(async {
        for &route in stateless_routes.iter().chain([&Route::Standalone]) {
            let r = prepare(route, &base(route), ids(1), &template);
            let (status, body) = send(&client, &r[0]).await.expect("check request");
            let text = String::from_utf8_lossy(&body);
            assert!(status < 300, "{route:?} answered {status}: {text}");
            if route != Route::Plain {
                assert!(text.contains("accepted"), "{route:?} did not accept the delivery: {text}");
            }
        }
    });
    let mut results: Vec<(Route, Vec<LoadResult>)> =
        stateless_routes.iter().chain([&Route::Standalone]).map(|r| (*r, Vec::new())).collect();
    let mut cpu_of = vec![0.0; results.len()];
    let stateless: Vec<(Route, Arc<Vec<Req>>)> =
        stateless_routes.iter().map(|r| (*r, Arc::new(prepare(*r, &base(*r), ids(prepared), &template)))).collect();
    for round in 0..rounds {
        // Rotate which of the stateless routes goes first; the spooling one goes last.
        let mut order: Vec<usize> = (0..stateless.len()).collect();
        order.rotate_left(round % stateless.len());
        order.push(stateless.len());
        for k in order {
            let (route, acc) = &mut results[k];
            let route = *route;
            let cpu_before = cpu_seconds(server_pid(route));
            let r = if route == Route::Standalone {
                let reqs = Arc::new(prepare(route, &base(route), ids(spooled), &template));
                rt.block_on(closed_loop(&client, reqs, spooled, conns, limit))
            } else {
                let reqs = stateless.iter().find(|(r, _)| *r == route).map(|(_, q)| q.clone()).expect("prepared");
                rt.block_on(closed_loop(&client, reqs, total, conns, limit))
            };
            eprintln!(
                "  round {round} {:<52} {:>7.0} req/s  ({} ok, {} errors, {:.1} s)",
                route.label(),
                r.ok as f64 / r.elapsed.as_secs_f64(),
                r.ok,
                r.errors,
                r.elapsed.as_secs_f64()
            );
            acc.push(r);
            cpu_of[k] += cpu_seconds(server_pid(route)) - cpu_before;
        }
    }
    let mut rps_of = std::collections::BTreeMap::new();
    let mut cpu_us_per_ack = std::collections::BTreeMap::new();
    for ((route, rs), cpu) in results.iter().zip(&cpu_of) {
        let ok: usize = rs.iter().map(|r| r.ok).sum();
        let errors: usize = rs.iter().map(|r| r.errors).sum();
        let secs: f64 = rs.iter().map(|r| r.elapsed.as_secs_f64()).sum();
        let per_round: Vec<f64> = rs.iter().map(|r| r.ok as f64 / r.elapsed.as_secs_f64()).collect();
        let lat = sorted(rs.iter().flat_map(|r| r.latencies_ms.iter().copied()).collect());
        let rps = ok as f64 / secs;
        rps_of.insert(format!("{route:?}"), (rps, per_round.clone()));
        let cpu_us = cpu * 1e6 / ok.max(1) as f64;
        cpu_us_per_ack.insert(format!("{route:?}"), cpu_us);
        let spread = per_round.iter().map(|x| format!("{x:.0}")).collect::<Vec<_>>().join("/");
        report.row(
            "2",
            format!("{}: throughput, {conns} conns", route.label()),
            format!(
                "{rps:.0} req/s (rounds {spread}); p50 {:.2} ms, p99 {:.2} ms; {ok} ok, {errors} errors; server CPU {cpu_us:.0} us per request",
                percentile(&lat, 50.0),
                percentile(&lat, 99.0)
            ),
        );
    }
    let (plain, plain_rounds) = rps_of["Plain"].clone();
    let (envelope, env_rounds) = rps_of["Envelope"].clone();
    let ratio = envelope / plain;
    // Per-round ratios (each pair measured back to back) show the noise.
    let per_round: Vec<String> = env_rounds.iter().zip(&plain_rounds).map(|(e, p)| format!("{:.2}", e / p)).collect();
    report.goal(
        "2",
        "envelope throughput / plain axum",
        format!("{ratio:.2}x (per round {})", per_round.join("/")),
        ">= 0.5x",
        ratio >= 0.5,
    );
    let sratio = rps_of["Standalone"].0 / plain;
    report.row("2", "standalone (fsync per request) throughput / plain axum", format!("{sratio:.3}x"));
    // The user-relevant bar: well ahead of a plain Node handler doing the same work.
    const NODE_GOAL: f64 = 3.0;
    if let Some((node_rps, node_rounds)) = rps_of.get("NodePeer").cloned() {
        let ratio = envelope / node_rps;
        let per_round: Vec<String> =
            env_rounds.iter().zip(&node_rounds).map(|(e, n)| format!("{:.2}", e / n)).collect();
        report.goal(
            "2",
            "envelope ack throughput, runner-dispatch / Node peer",
            format!("{ratio:.2}x (per round {})", per_round.join("/")),
            format!(">= {NODE_GOAL}x"),
            ratio >= NODE_GOAL,
        );
        report.row(
            "2",
            "server CPU per envelope ack, Node peer / runner-dispatch",
            format!("{:.2}x", cpu_us_per_ack["NodePeer"] / cpu_us_per_ack["Envelope"]),
        );
    } else {
        report.row("2", "envelope ack throughput, runner-dispatch / Node peer", "skipped: `node` not on PATH");
    }

    // Fixed rate, envelope route (and the plain handler for reference), each request distinct.
    let n = if quick() { 1000 } else { 5000 };
    for route in [Route::Envelope, Route::Plain] {
        let reqs = Arc::new(prepare(route, &base(route), ids(n), &template));
        let (r, lag) = rt.block_on(fixed_rate(&client, reqs, 1000.0));
        let lat = sorted(r.latencies_ms.clone());
        let p99 = percentile(&lat, 99.0);
        let text = format!(
            "p50 {:.2} ms, p99 {p99:.2} ms, max {:.2} ms; {} ok, {} errors over {:.1} s; client timer lag p99 {lag:.2} ms",
            percentile(&lat, 50.0),
            lat.last().copied().unwrap_or(f64::NAN),
            r.ok,
            r.errors,
            r.elapsed.as_secs_f64()
        );
        if route == Route::Envelope {
            report.goal("2", "envelope at fixed 1,000 req/s", text, "p99 ~2 ms", p99 <= 2.5);
        } else {
            report.row("2", "plain axum at fixed 1,000 req/s (reference)", text);
        }
    }
    if let Some(node) = &node {
        let (_, hwm) = rss_kib(node.pid());
        report.row("4", "peak RSS during webhook load, Node peer (reference)", format!("{:.1} MiB", mib(hwm)));
    }
    for (name, server) in [("host mode, envelope load", &host), ("standalone, spooling load", &standalone)] {
        let (_, hwm) = rss_kib(server.pid());
        report.goal(
            "4",
            format!("peak RSS during webhook load, {name} (VmHWM)"),
            format!("{:.1} MiB", mib(hwm)),
            "< 40 MB",
            hwm * 1024 < 40_000_000,
        );
    }
}

// ---------------------------------------------------------------------------------------
// 3. Burst provisioning (seam-level simulation, paused tokio time, child processes).

mod burst {
    use std::collections::BTreeMap;
    use std::sync::Arc;
    use std::time::Duration;

    use runner_dispatch::backends::Backends;
    use runner_dispatch::config::{Pool, PoolsConfig, Settings};
    use runner_dispatch::github::RunnerRegistry;
    use runner_dispatch::message::{MESSAGE_VERSION, MessageKind, RunnerMessage};
    use runner_dispatch::spool::{QueueOptions, Spool};
    use runner_dispatch::testing::sim::{ACI_CREATE_LIMITS, JitLimit, SimCompute, SimGitHub};
    use serde::{Deserialize, Serialize};
    use tokio::time::Instant;

    pub const JOBS: usize = 1000;
    pub const GITHUB_LATENCY: Duration = Duration::from_millis(50);
    /// GitHub's limit on JIT configurations: 180 a minute per App, as a token bucket.
    pub const JIT: JitLimit = JitLimit::GITHUB_APP;
    pub const ARM_GET_LATENCY: Duration = Duration::from_millis(50);
    pub const CREATE_LATENCY: Duration = Duration::from_millis(300);
    /// ACI: container group creates per subscription and region.
    pub const ACI_LIMITS: &[(usize, Duration)] = ACI_CREATE_LIMITS;

    const POOLS: &str = r#"
[github]
allowed_owners = ["octo-org"]
token_mode = "jit"
check_job_queued = "stale"

[defaults]
resource_group = "rg-runners"
location = "westeurope"

[[pools]]
name = "aci"
backend = "aci"
labels = ["self-hosted", "linux", "x64", "aci"]
image = "example.azurecr.io/runner:1"

[[pools]]
name = "batch"
backend = "batch"
labels = ["self-hosted", "linux", "x64", "batch"]
image = "example.azurecr.io/runner:1"
batch_pool_id = "linux"
"#;

    /// The earliest possible time of the last create, with unlimited workers: each job
    /// needs an ARM read, a JIT token and a create admitted by the windows.
    pub fn lower_bound(limits: &[(usize, Duration)]) -> Duration {
        let rate = JIT.per_minute / 60.0;
        let mut admitted: Vec<f64> = Vec::with_capacity(JOBS);
        let first = (ARM_GET_LATENCY + GITHUB_LATENCY + CREATE_LATENCY).as_secs_f64();
        for k in 0..JOBS {
            // JIT token k is available at (k + 1 - burst) / rate.
            let token = ((k as f64 + 1.0 - JIT.burst) / rate).max(0.0);
            let mut t = first.max(token + (GITHUB_LATENCY + CREATE_LATENCY).as_secs_f64());
            for (limit, window) in limits {
                if k >= *limit {
                    t = t.max(admitted[k - limit] + window.as_secs_f64());
                }
            }
            admitted.push(t);
        }
        Duration::from_secs_f64(admitted.last().copied().unwrap_or(0.0))
    }

    #[derive(Debug, Serialize, Deserialize)]
    pub struct BurstResult {
        pub variant: String,
        pub jobs: usize,
        pub done_virtual_s: Option<f64>,
        pub last_create_virtual_s: f64,
        pub bound_s: f64,
        pub created: usize,
        pub duplicates: usize,
        pub failed: usize,
        pub lost: usize,
        pub pending_at_end: usize,
        pub jit_calls: usize,
        pub jit_rate_limited: usize,
        /// Virtual seconds of the first few rate-limited JIT calls.
        pub jit_limited_at_s: Vec<f64>,
        pub other_github_calls: BTreeMap<String, usize>,
        pub create_throttled: usize,
        pub attempts: usize,
        pub wall_s: f64,
        pub vm_hwm_kib: u64,
    }

    fn message(pool: &Pool, job_id: u64, now: &str) -> RunnerMessage {
        RunnerMessage {
            v: MESSAGE_VERSION,
            kind: MessageKind::Provision,
            job_id,
            run_id: job_id,
            repository: "octo-org/app".into(),
            owner: "octo-org".into(),
            installation_id: Some(1),
            labels: pool.labels.clone(),
            pool: pool.name.clone(),
            runner_name: pool.runner_name(job_id),
            delivery_id: format!("d-{job_id}"),
            job_created_at: Some(now.to_owned()),
            ran_on: None,
            ran_on_id: None,
            job_started_at: None,
            origin: None,
        }
    }

    /// Runs in a child process (so its peak RSS is its own): prints one JSON line.
    pub fn child(variant: &str) {
        let wall = std::time::Instant::now();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().expect("rt");
        let result = rt.block_on(run(variant, wall));
        println!("{}", serde_json::to_string(&result).expect("json"));
    }

    async fn run(variant: &str, wall: std::time::Instant) -> BurstResult {
        let limits: &'static [(usize, Duration)] = if variant == "aci" { ACI_LIMITS } else { &[] };
        let pools = Arc::new(PoolsConfig::parse(POOLS).expect("bench pools parse"));
        let pool = pools.pool(variant).expect("pool").clone();
        let github = Arc::new(SimGitHub::new(GITHUB_LATENCY, JIT));
        let compute = Arc::new(SimCompute::new(ARM_GET_LATENCY, CREATE_LATENCY, limits));
        let settings = Settings {
            webhook_secrets: vec![super::SECRET.into()],
            github_api_url: "http://127.0.0.1:9".into(),
            ..Settings::pools_only("runners.toml".into(), None)
        };
        // tmpfs when there is one: fsync cost is wall time only (virtual time stands
        // still while the thread blocks), and it keeps this section short.
        let shm = std::path::Path::new("/dev/shm");
        let dir = if shm.is_dir() { tempfile::tempdir_in(shm) } else { tempfile::tempdir() }.expect("dir");
        let spool = Spool::open(dir.path()).expect("spool");
        let registry: Arc<dyn RunnerRegistry> = github.clone();
        let state = runner_dispatch::app::assemble_state(
            &settings,
            pools,
            registry,
            Backends::single(compute.clone()),
            Some((spool.clone(), QueueOptions::default())),
        );
        let queue = state.queue.clone().expect("queue");
        let now = time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).expect("fmt");
        let start = Instant::now();
        for i in 0..JOBS as u64 {
            assert!(queue.enqueue(message(&pool, 7_000_000 + i, &now)).expect("enqueue"));
        }
        let cap = if variant == "aci" { Duration::from_secs(6 * 3600) } else { Duration::from_secs(3600) };
        let mut done = None;
        while start.elapsed() < cap && wall.elapsed() < Duration::from_secs(100) {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let created = compute.created_names();
            if created >= JOBS || created + spool.failed().len() >= JOBS {
                done = Some(start.elapsed());
                break;
            }
        }
        let failed: Vec<u64> = spool.failed().iter().map(|f| f.request.job_id).collect();
        let c = compute.counters();
        let g = github.counters();
        let created = c.created.len();
        let lost = (0..JOBS as u64)
            .map(|i| 7_000_000 + i)
            .filter(|id| !c.created.contains_key(&pool.runner_name(*id)) && !failed.contains(id))
            .count();
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let vm_hwm_kib = status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        BurstResult {
            variant: variant.to_owned(),
            jobs: JOBS,
            done_virtual_s: done.map(|d| d.as_secs_f64()),
            last_create_virtual_s: c.last_created.map_or(f64::NAN, |t| (t - start).as_secs_f64()),
            bound_s: lower_bound(limits).as_secs_f64(),
            created,
            duplicates: c.created.values().filter(|n| **n > 1).count(),
            failed: failed.len(),
            lost,
            pending_at_end: spool.pending().len(),
            jit_calls: g.jit_ok + g.jit_rate_limited,
            jit_rate_limited: g.jit_rate_limited,
            jit_limited_at_s: g.rate_limited_at.iter().take(10).map(|t| (*t - start).as_secs_f64()).collect(),
            other_github_calls: g.other,
            create_throttled: c.throttled,
            attempts: c.finds,
            wall_s: wall.elapsed().as_secs_f64(),
            vm_hwm_kib,
        }
    }
}

fn burst_provisioning(report: &mut Report) {
    for variant in ["batch", "aci"] {
        eprintln!("[3] burst of {} jobs, {variant} variant (child process, paused time)", burst::JOBS);
        let exe = std::env::current_exe().expect("exe");
        let out = Command::new(exe)
            .env("RD_BENCH_CHILD", variant)
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .output()
            .expect("burst child");
        let line = String::from_utf8_lossy(&out.stdout);
        let Some(r) = line.lines().rev().find_map(|l| serde_json::from_str::<burst::BurstResult>(l).ok()) else {
            report.note(format!("burst {variant}: child failed ({}): {line}", out.status));
            continue;
        };
        eprintln!("  {r:?}");
        let t = r.last_create_virtual_s;
        let ratio = t / r.bound_s;
        let other: usize = r.other_github_calls.values().sum();
        let calls = (r.jit_calls + other) as f64 / r.jobs as f64;
        let others = r.other_github_calls.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ");
        let name = if variant == "aci" { "ACI-bound (100/5 min, 300/h)" } else { "GitHub-bound (Batch, 180 JIT/min)" };
        report.goal(
            "3",
            format!("{name}: time to last runner requested / bound"),
            format!(
                "{:.1} min / {:.1} min = {ratio:.3}x; {} created, {} attempts, {} creates throttled; wall {:.1} s",
                t / 60.0,
                r.bound_s / 60.0,
                r.created,
                r.attempts,
                r.create_throttled,
                r.wall_s
            ),
            "<= 1.15x",
            ratio <= 1.15 && r.created == r.jobs,
        );
        report.goal(
            "3",
            format!("{name}: GitHub calls per job"),
            format!(
                "{calls:.3} ({} JIT of which {} rate-limited{}{})",
                r.jit_calls,
                r.jit_rate_limited,
                if others.is_empty() { "" } else { "; " },
                others
            ),
            "<= 1",
            calls <= 1.0 + 1e-9,
        );
        report.goal(
            "3",
            format!("{name}: duplicates / lost / failed"),
            format!("{} / {} / {} (pending at end {})", r.duplicates, r.lost, r.failed, r.pending_at_end),
            "0 / 0",
            r.duplicates == 0 && r.lost == 0,
        );
        report.goal(
            "4",
            format!("peak RSS during burst, {variant} (VmHWM of the child)"),
            format!("{:.1} MiB", mib(r.vm_hwm_kib)),
            "< 40 MB",
            r.vm_hwm_kib * 1024 < 40_000_000,
        );
    }
}

// ---------------------------------------------------------------------------------------
// 4. Sizes.

fn sizes(bins: &Bins, report: &mut Report) {
    let bin_size = std::fs::metadata(&bins.runner_dispatch).map(|m| m.len()).unwrap_or(0);
    let hello_size = std::fs::metadata(&bins.hello).map(|m| m.len()).unwrap_or(0);
    report.goal(
        "4",
        "release binary size",
        format!("{:.2} MiB", bin_size as f64 / 1048576.0),
        "< 15 MB",
        bin_size < 15_000_000,
    );
    report.row("4", "hello_axum binary size (reference)", format!("{:.2} MiB", hello_size as f64 / 1048576.0));
    let dir = tempfile::tempdir().expect("dir");
    let zip = dir.path().join("runner-dispatch.zip");
    let script = r#"
import os, sys, zipfile
out, root, binary = sys.argv[1], sys.argv[2], sys.argv[3]
with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
    # The layout of scripts/package.sh: the app root with host.json, one folder per
    # function, the binary (mode 0755) and the pools file as runners.toml.
    def add(path, name, mode):
        info = zipfile.ZipInfo.from_file(path, name)
        info.external_attr = (0o100000 | mode) << 16
        info.create_system = 3
        info.compress_type = zipfile.ZIP_DEFLATED
        with open(path, "rb") as f:
            z.writestr(info, f.read())
    add(os.path.join(root, "host.json"), "host.json", 0o644)
    fa = os.path.join(root, "function_app")
    for fn in sorted(os.listdir(fa)):
        add(os.path.join(fa, fn, "function.json"), fn + "/function.json", 0o644)
    add(binary, "runner-dispatch", 0o755)
    add(os.path.join(root, "runners.example.toml"), "runners.toml", 0o644)
"#;
    let status =
        Command::new("python3").args(["-c", script]).arg(&zip).arg(repo_root()).arg(&bins.runner_dispatch).status();
    match (status, std::fs::metadata(&zip)) {
        (Ok(s), Ok(m)) if s.success() => {
            report.row(
                "4",
                "package zip (layout of scripts/package.sh)",
                format!("{:.2} MiB", m.len() as f64 / 1048576.0),
            );
        }
        _ => report.note("package zip: python3 unavailable or failed; size not measured"),
    }
}

// ---------------------------------------------------------------------------------------
// 5. Pool matching at scale.

fn generated_pools(n: usize) -> String {
    let extras = ["gpu", "large", "small", "docker", "k8s", "build", "test", "deploy", "eu", "us", "fast", "cheap"];
    let mut s = String::from(
        "[github]\nallowed_owners = [\"octo-org\"]\n\n[defaults]\nresource_group = \"rg\"\nlocation = \"westeurope\"\n",
    );
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for i in 0..n {
        let os = if i % 4 == 3 { "windows" } else { "linux" };
        let arch = if i % 3 == 2 { "arm64" } else { "x64" };
        let mut labels = vec!["self-hosted".to_owned(), os.to_owned(), arch.to_owned()];
        for _ in 0..(1 + rnd() % 3) {
            let l = extras[(rnd() % extras.len() as u64) as usize].to_owned();
            if !labels.contains(&l) {
                labels.push(l);
            }
        }
        let labels = labels.iter().map(|l| format!("{l:?}")).collect::<Vec<_>>().join(", ");
        let _ = write!(
            s,
            "\n[[pools]]\nname = \"pool-{i}\"\nbackend = \"aci\"\nlabels = [{labels}]\nimage = \"example.azurecr.io/runner:{i}\"\n"
        );
        if i % 2 == 0 {
            let _ = writeln!(s, "repositories = [\"octo-org/svc-{}-*\", \"octo-org/team-{i}\"]", i % 97);
        }
    }
    s
}

fn pool_matching(report: &mut Report) {
    use runner_dispatch::config::PoolsConfig;
    use runner_dispatch::routing::choose_pool;
    let n = 5000;
    eprintln!("[5] pool matching among {n} pools");
    let text = generated_pools(n);
    let mut parse_ms = Vec::new();
    let mut config = None;
    for _ in 0..if quick() { 2 } else { 5 } {
        let t = Instant::now();
        let c = PoolsConfig::parse(&text).expect("generated pools parse");
        parse_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        config = Some(c);
    }
    let config = config.expect("parsed");
    assert_eq!(config.pools.len(), n);
    let label_sets: Vec<Vec<String>> = [
        vec!["self-hosted", "linux", "x64"],
        vec!["self-hosted", "linux", "x64", "gpu"],
        vec!["self-hosted", "windows", "x64", "build"],
        vec!["linux", "arm64", "docker", "eu"],
        vec!["self-hosted", "linux", "x64", "large", "fast"],
        vec!["self-hosted", "macos"],
    ]
    .iter()
    .map(|v| v.iter().map(|s| (*s).to_owned()).collect())
    .collect();
    let repos = ["octo-org/svc-12-api", "octo-org/team-4000", "octo-org/web", "other/repo"];
    let queries: Vec<(&Vec<String>, &str)> =
        label_sets.iter().flat_map(|l| repos.iter().map(move |r| (l, *r))).collect();
    let mut found = 0usize;
    let batches = if quick() { 40 } else { 200 };
    let per = queries.len();
    let mut per_call_us = Vec::new();
    for _ in 0..batches {
        let t = Instant::now();
        for (labels, repo) in &queries {
            found += usize::from(std::hint::black_box(choose_pool(&config, labels, Some(repo))).is_some());
        }
        per_call_us.push(t.elapsed().as_secs_f64() * 1e6 / per as f64);
    }
    let s = sorted(per_call_us);
    let med = percentile(&s, 50.0);
    report.goal(
        "5",
        format!("choose_pool among {n} pools (median of {batches} batches of {per} mixed queries)"),
        format!(
            "{med:.1} us/call (p90 batch {:.1} us; {} of {} calls found a pool)",
            percentile(&s, 90.0),
            found,
            batches * per
        ),
        "well under 1 ms",
        med < 1000.0,
    );
    report.goal(
        "5",
        format!("parse + validate a {n}-pool file ({} KiB)", text.len() / 1024),
        format!("{:.1} ms (median of {})", median(&parse_ms), parse_ms.len()),
        "(report)",
        true,
    );
}

// ---------------------------------------------------------------------------------------

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|c| c.lines().next().and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse::<u64>().ok()))
        .map_or_else(|| "?".into(), |k| format!("{:.1} GiB", k as f64 / 1048576.0));
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    format!(
        "{} CPUs ({cpu}), {mem} RAM, load average at start {}",
        std::thread::available_parallelism().map_or(0, usize::from),
        load.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    )
}

/// Builds the release binary and the hello-world baseline with `cargo build --release`,
/// in two invocations. The binary must be built alone, as `scripts/package.sh` builds it:
/// one cargo invocation that also builds an example resolves features with the
/// dev-dependencies' features unified in (tokio "full", axum "json"...), for the binary
/// too, and that binary was 2.1 MiB larger with 40 % more relocations than the shipped
/// one. (The binary `cargo bench` links for itself has them unified as well.)
fn build_release(bin: &Path) -> PathBuf {
    let hello = bin.parent().expect("bin dir").join("examples").join("hello_axum");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    eprintln!("building the release binary and the hello_axum baseline (cargo build --release) ...");
    for args in [["build", "--release", "--bin", "runner-dispatch"], ["build", "--release", "--example", "hello_axum"]]
    {
        let status = Command::new(&cargo).args(args).current_dir(repo_root()).status();
        assert!(status.is_ok_and(|s| s.success()), "could not build: run `cargo {}`", args.join(" "));
    }
    hello
}

fn main() {
    if let Ok(variant) = std::env::var("RD_BENCH_CHILD") {
        burst::child(&variant);
        return;
    }
    // `cargo bench` passes `--bench`; `cargo test --all-targets` does not: stay out of tests.
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("runner_dispatch benchmarks: run with `cargo bench --bench runner_dispatch`");
        return;
    }
    // `cargo bench -- <filter>` runs the sections whose number is listed, e.g. `-- 1 4`.
    let only: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let run = |s: &str| only.is_empty() || only.iter().any(|o| o == s);
    let default_bin = PathBuf::from(env!("CARGO_BIN_EXE_runner-dispatch"));
    let runner_dispatch = std::env::var_os("RD_BENCH_BIN").map_or(default_bin.clone(), PathBuf::from);
    let hello = build_release(&default_bin);
    let bins = Bins { runner_dispatch, hello };
    let started = time::OffsetDateTime::now_utc();
    let machine = machine();
    eprintln!("runner-dispatch benchmarks on {machine}");
    let wall = Instant::now();
    let mut report = Report::default();
    if run("1") {
        cold_start(&bins, &mut report);
    }
    if run("2") {
        webhook_ack(&bins, &mut report);
    }
    if run("3") {
        burst_provisioning(&mut report);
    }
    if run("4") {
        sizes(&bins, &mut report);
    }
    if run("5") {
        pool_matching(&mut report);
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    report.note(format!(
        "load average at end {} (machine shared with other builds: compare ratios, not absolute times)",
        load.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    ));
    println!("\nrunner-dispatch benchmarks, {started}, {machine}");
    println!("binary: {}", bins.runner_dispatch.display());
    println!("total wall time {:.0} s\n", wall.elapsed().as_secs_f64());
    println!("{}", report.markdown());
}
