//! The Linux runner entrypoint (`runner-image/entrypoint.sh`) run for real by bash, in a
//! runner directory whose `config.sh` and `run.sh` are recorders: they write the
//! arguments and the environment they received, then exit with a chosen status.
//!
//! What the runner contract asks of the entrypoint: JIT mode hands the config to the
//! runner only; registration mode registers with `--ephemeral --no-default-labels
//! --runnergroup` and the pool's labels; every token is gone from the environment the
//! job inherits; nothing prints a secret; the container ends when the runner ends, with
//! its status; a stop signal reaches the runner.
#![cfg(unix)]

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const JIT: &str = "jit-config-3f9a1c0e5b7d";
const TOKEN: &str = "AABBREGTOKEN9d8e7f";
const OTHER_TOKEN: &str = "ghp_planted_other_token_77";
const CUSTOM: &str = "custom-secret-value-5150";

fn entrypoint() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("runner-image/entrypoint.sh")
}

/// A recorder script: writes `argv` (one per line) and `env -0` to `<name>.args` and
/// `<name>.env`, marks that it started, then runs `tail` (optional) and exits `status`.
fn recorder(dir: &Path, name: &str, tail: &str, status: i32) {
    let script = format!(
        "#!/usr/bin/env bash\n\
         printf '%s\\n' \"$@\" > '{dir}/{name}.args'\n\
         env -0 > '{dir}/{name}.env'\n\
         : > '{dir}/{name}.started'\n\
         {tail}\n\
         exit {status}\n",
        dir = dir.display()
    );
    let path = dir.join(format!("{name}.sh"));
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

struct Run {
    status: i32,
    output: String,
    dir: tempfile::TempDir,
}

impl Run {
    fn args(&self, name: &str) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join(format!("{name}.args")))
            .unwrap_or_else(|_| panic!("{name}.sh did not run; output:\n{}", self.output))
            .lines()
            .map(str::to_owned)
            .collect()
    }
    fn env(&self, name: &str) -> BTreeMap<String, String> {
        let raw = std::fs::read(self.dir.path().join(format!("{name}.env"))).unwrap();
        raw.split(|b| *b == 0)
            .filter(|kv| !kv.is_empty())
            .filter_map(|kv| {
                let kv = String::from_utf8_lossy(kv);
                kv.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned()))
            })
            .collect()
    }
    fn ran(&self, name: &str) -> bool {
        self.dir.path().join(format!("{name}.started")).exists()
    }
}

fn command(dir: &Path, env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new("bash");
    cmd.arg(entrypoint())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into()))
        .env("RUNNER_HOME", dir)
        // Variables any container may carry, which must not reach the job.
        .env("GITHUB_TOKEN", OTHER_TOKEN)
        .env("SOME_APP_SECRET", CUSTOM)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

fn run(env: &[(&str, &str)], config_status: i32, run_status: i32) -> Run {
    let dir = tempfile::tempdir().unwrap();
    recorder(dir.path(), "config", "", config_status);
    recorder(dir.path(), "run", "", run_status);
    let out = command(dir.path(), env).output().unwrap();
    let output = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    Run { status: out.status.code().unwrap_or(-1), output, dir }
}

fn assert_no_secret_in(what: &str, text: &str) {
    for secret in [JIT, TOKEN, OTHER_TOKEN, CUSTOM] {
        assert!(!text.contains(secret), "{what} contains the secret {secret}:\n{text}");
    }
}

fn assert_job_env_clean(env: &BTreeMap<String, String>) {
    for name in ["RUNNER_JITCONFIG", "RUNNER_TOKEN", "GITHUB_TOKEN", "SOME_APP_SECRET", "RUNNER_SECRET_VARS"] {
        assert!(!env.contains_key(name), "{name} reached run.sh: {env:?}");
    }
}

#[test]
fn jit_mode_gives_the_config_to_the_runner_only_and_ends_with_its_status() {
    let r = run(&[("RUNNER_JITCONFIG", JIT)], 0, 7);
    assert_eq!(r.status, 7, "the container must end with the runner's status; output:\n{}", r.output);
    assert!(!r.ran("config"), "JIT mode must not call config.sh");
    // The config goes through the runner's input variable, never argv (ps shows argv).
    assert!(r.args("run").iter().all(|a| a.is_empty()), "run.sh argv: {:?}", r.args("run"));
    let env = r.env("run");
    assert_eq!(env.get("ACTIONS_RUNNER_INPUT_JITCONFIG").map(String::as_str), Some(JIT));
    assert_job_env_clean(&env);
    assert!(!env.values().any(|v| v.contains(TOKEN) || v.contains(OTHER_TOKEN) || v.contains(CUSTOM)));
    assert_no_secret_in("the entrypoint's output", &r.output);
}

#[test]
fn registration_mode_registers_an_ephemeral_runner_with_exactly_the_pool_labels() {
    let r = run(
        &[
            ("RUNNER_URL", "https://github.com/octo-org"),
            ("RUNNER_TOKEN", TOKEN),
            ("RUNNER_NAME", "ghr-4242"),
            ("RUNNER_LABELS", "linux,x64,gpu"),
            ("RUNNER_GROUP", "team-a"),
            ("RUNNER_SECRET_VARS", "EXTRA_PASS"),
            ("EXTRA_PASS", CUSTOM),
        ],
        0,
        0,
    );
    assert_eq!(r.status, 0, "output:\n{}", r.output);
    let args = r.args("config");
    let after = |flag: &str| -> Option<&str> {
        args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).map(String::as_str)
    };
    assert_eq!(after("--url"), Some("https://github.com/octo-org"));
    assert_eq!(after("--name"), Some("ghr-4242"));
    assert_eq!(after("--labels"), Some("linux,x64,gpu"));
    assert_eq!(after("--runnergroup"), Some("team-a"));
    for flag in ["--ephemeral", "--no-default-labels", "--unattended", "--disableupdate"] {
        assert!(args.iter().any(|a| a == flag), "config.sh lacks {flag}: {args:?}");
    }
    assert!(!args.iter().any(|a| a == "--token" || a.contains(TOKEN)), "the token is on config.sh's argv: {args:?}");
    // The token reaches config.sh through its input variable only, and the runner not at all.
    let config_env = r.env("config");
    assert_eq!(config_env.get("ACTIONS_RUNNER_INPUT_TOKEN").map(String::as_str), Some(TOKEN));
    assert_job_env_clean(&config_env);
    let run_env = r.env("run");
    assert_job_env_clean(&run_env);
    assert!(!run_env.contains_key("ACTIONS_RUNNER_INPUT_TOKEN"), "run.sh (the job's parent) got the token");
    assert!(!run_env.contains_key("EXTRA_PASS"), "a RUNNER_SECRET_VARS name reached the job");
    assert!(!run_env.values().any(|v| v.contains(TOKEN) || v.contains(CUSTOM)));
    assert_no_secret_in("the entrypoint's output", &r.output);
}

#[test]
fn registration_mode_is_always_ephemeral_and_stops_when_registration_fails() {
    let r = run(&[("RUNNER_URL", "https://github.com/o/r"), ("RUNNER_TOKEN", TOKEN), ("RUNNER_EPHEMERAL", "0")], 3, 0);
    assert_eq!(r.status, 3, "a failed config.sh must end the container with its status; output:\n{}", r.output);
    assert!(r.args("config").iter().any(|a| a == "--ephemeral"), "RUNNER_EPHEMERAL=0 must not make a reusable runner");
    assert!(!r.ran("run"), "the runner must not start after a failed registration");
    assert_no_secret_in("the entrypoint's output", &r.output);
}

#[test]
fn without_a_config_or_token_nothing_runs_and_the_exit_says_why() {
    let r = run(&[], 0, 0);
    assert_eq!(r.status, 64, "output:\n{}", r.output);
    assert!(r.output.contains("neither RUNNER_JITCONFIG nor RUNNER_TOKEN"), "output:\n{}", r.output);
    assert!(!r.ran("config") && !r.ran("run"));
    let r = run(&[("RUNNER_TOKEN", TOKEN)], 0, 0);
    assert_ne!(r.status, 0, "a token without RUNNER_URL must fail");
    assert!(r.output.contains("RUNNER_URL"), "output:\n{}", r.output);
    assert!(!r.ran("config") && !r.ran("run"));
    assert_no_secret_in("the entrypoint's output", &r.output);
}

#[test]
fn a_stop_signal_reaches_the_runner_and_the_container_ends_with_its_status() {
    let dir = tempfile::tempdir().unwrap();
    recorder(dir.path(), "config", "", 0);
    // The runner traps TERM, records it and exits 0, as the real one does after
    // cancelling its job; otherwise it would wait for a minute.
    recorder(
        dir.path(),
        "run",
        &format!(
            "trap \"echo term > '{}/run.term'; exit 0\" TERM\nfor _ in $(seq 600); do sleep 0.1; done",
            dir.path().display()
        ),
        9,
    );
    let mut child = command(dir.path(), &[("RUNNER_JITCONFIG", JIT)]).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !dir.path().join("run.started").exists() {
        assert!(Instant::now() < deadline, "run.sh never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "the entrypoint did not end after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut output = String::new();
    child.stderr.take().unwrap().read_to_string(&mut output).unwrap();
    assert!(dir.path().join("run.term").exists(), "the runner never got SIGTERM; output:\n{output}");
    assert_eq!(status.code(), Some(0), "the container must end with the runner's status; output:\n{output}");
    assert_no_secret_in("the entrypoint's output", &output);
}

// ---------------------------------------------------------------------------
// runner-image/fetch-runner.sh: the latest runner by default, checked by its sha256
// ---------------------------------------------------------------------------

/// A local stand-in for GitHub's releases API and download host: answers `GET path` from
/// a map and records every path asked for, and every request head (line and headers).
struct FakeReleases {
    base: String,
    seen: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    heads: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

fn fake_releases(routes: BTreeMap<String, Vec<u8>>) -> FakeReleases {
    use std::io::Write;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let heads = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let (log, head_log) = (seen.clone(), heads.clone());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).is_ok_and(|n| n == 1) {
                head.push(byte[0]);
            }
            let head = String::from_utf8_lossy(&head).into_owned();
            let path = head.split_whitespace().nth(1).unwrap_or("").to_owned();
            log.lock().expect("lock").push(path.clone());
            head_log.lock().expect("lock").push(head.clone());
            let (status, body) = match routes.get(&path) {
                Some(b) => ("200 OK", b.clone()),
                None => ("404 Not Found", b"{}".to_vec()),
            };
            let _ = write!(stream, "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
            let _ = stream.write_all(&body);
        }
    });
    FakeReleases { base, seen, heads }
}

/// A runner tarball holding `run.sh`, and its sha256.
fn runner_tarball(dir: &Path) -> (Vec<u8>, String) {
    use sha2::Digest;
    let src = dir.join("src");
    std::fs::create_dir_all(&src).expect("mkdir");
    std::fs::write(src.join("run.sh"), "#!/bin/sh\necho runner\n").expect("write");
    let tgz = dir.join("runner.tar.gz");
    let ok = Command::new("tar").arg("-czf").arg(&tgz).arg("-C").arg(&src).arg("run.sh").status().expect("tar");
    assert!(ok.success());
    let bytes = std::fs::read(&tgz).expect("read");
    let sha = hex::encode(sha2::Sha256::digest(&bytes));
    (bytes, sha)
}

const VERSION: &str = "2.400.0";
const ASSET: &str = "actions-runner-linux-x64-2.400.0.tar.gz";

/// Runs fetch-runner.sh in a fresh directory with these variables; returns (success,
/// stdout + stderr, the directory).
fn fetch_runner(fake: &FakeReleases, vars: &[(&str, &str)]) -> (bool, String, tempfile::TempDir) {
    let out_dir = tempfile::tempdir().expect("tmp");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("runner-image/fetch-runner.sh");
    let mut c = Command::new("bash");
    c.arg(script)
        .current_dir(out_dir.path())
        .env("RUNNER_RELEASES_API", format!("{}/releases", fake.base))
        .env("RUNNER_DOWNLOAD_BASE", format!("{}/download", fake.base))
        .env_remove("RUNNER_VERSION")
        .env_remove("RUNNER_SHA256")
        .env_remove("GITHUB_TOKEN");
    for (k, v) in vars {
        c.env(k, v);
    }
    let out = c.output().expect("run fetch-runner.sh");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text, out_dir)
}

fn release_json(digest: Option<&str>, body: &str) -> Vec<u8> {
    let mut asset = serde_json::json!({ "name": ASSET });
    if let Some(d) = digest {
        asset["digest"] = format!("sha256:{d}").into();
    }
    serde_json::to_vec(&serde_json::json!({ "tag_name": format!("v{VERSION}"), "assets": [asset], "body": body }))
        .expect("json")
}

#[test]
fn fetch_runner_takes_the_latest_release_and_checks_its_published_digest() {
    let work = tempfile::tempdir().expect("tmp");
    let (tarball, sha) = runner_tarball(work.path());
    let routes = BTreeMap::from([
        ("/releases/latest".to_owned(), release_json(Some(&sha), "")),
        (format!("/download/v{VERSION}/{ASSET}"), tarball),
    ]);
    let fake = fake_releases(routes);
    let (ok, text, dir) = fetch_runner(&fake, &[]);
    assert!(ok, "{text}");
    assert!(dir.path().join("run.sh").exists(), "not extracted: {text}");
    assert_eq!(std::fs::read_to_string(dir.path().join(".runner-version")).expect("version").trim(), VERSION);
    assert!(text.contains(&sha), "{text}");
}

#[test]
fn fetch_runner_falls_back_to_the_release_notes_checksum() {
    let work = tempfile::tempdir().expect("tmp");
    let (tarball, sha) = runner_tarball(work.path());
    let notes = format!("- {ASSET} <!-- BEGIN SHA linux-x64 -->{sha}<!-- END SHA linux-x64 -->\n");
    let routes = BTreeMap::from([
        ("/releases/latest".to_owned(), release_json(None, &notes)),
        (format!("/download/v{VERSION}/{ASSET}"), tarball),
    ]);
    let (ok, text, dir) = fetch_runner(&fake_releases(routes), &[]);
    assert!(ok, "{text}");
    assert!(dir.path().join("run.sh").exists());
}

#[test]
fn fetch_runner_refuses_a_tarball_whose_checksum_differs_or_is_unknown() {
    let work = tempfile::tempdir().expect("tmp");
    let (tarball, _) = runner_tarball(work.path());
    let wrong = "0".repeat(64);
    for release in [release_json(Some(&wrong), ""), release_json(None, "no checksums here")] {
        let routes = BTreeMap::from([
            ("/releases/latest".to_owned(), release),
            (format!("/download/v{VERSION}/{ASSET}"), tarball.clone()),
        ]);
        let (ok, text, dir) = fetch_runner(&fake_releases(routes), &[]);
        assert!(!ok, "accepted: {text}");
        assert!(text.contains("sha256"), "{text}");
        assert!(!dir.path().join("run.sh").exists(), "extracted anyway");
    }
}

#[test]
fn a_pinned_version_with_its_checksum_asks_no_release_api() {
    let work = tempfile::tempdir().expect("tmp");
    let (tarball, sha) = runner_tarball(work.path());
    let routes = BTreeMap::from([(format!("/download/v{VERSION}/{ASSET}"), tarball)]);
    let fake = fake_releases(routes);
    let (ok, text, dir) = fetch_runner(&fake, &[("RUNNER_VERSION", VERSION), ("RUNNER_SHA256", &sha)]);
    assert!(ok, "{text}");
    assert!(dir.path().join("run.sh").exists());
    let seen = fake.seen.lock().expect("lock").clone();
    assert_eq!(seen, [format!("/download/v{VERSION}/{ASSET}")], "only the tarball was fetched");
}

#[test]
fn a_github_token_goes_to_the_releases_api_only_and_is_never_printed() {
    let work = tempfile::tempdir().expect("tmp");
    let (tarball, sha) = runner_tarball(work.path());
    let routes = BTreeMap::from([
        ("/releases/latest".to_owned(), release_json(Some(&sha), "")),
        (format!("/download/v{VERSION}/{ASSET}"), tarball),
    ]);
    let token = "ghs_fetchRunnerTestToken0123456789";
    let fake = fake_releases(routes.clone());
    let (ok, text, dir) = fetch_runner(&fake, &[("GITHUB_TOKEN", token)]);
    assert!(ok, "{text}");
    assert!(dir.path().join("run.sh").exists());
    assert!(!text.contains(token), "token printed: {text}");
    let heads = fake.heads.lock().expect("lock").clone();
    let auth =
        |head: &str| head.lines().find(|l| l.to_ascii_lowercase().starts_with("authorization:")).map(str::to_owned);
    assert_eq!(heads.len(), 2, "{heads:?}");
    assert!(heads[0].starts_with("GET /releases/latest "), "{heads:?}");
    assert_eq!(auth(&heads[0]).as_deref(), Some(format!("Authorization: Bearer {token}").as_str()));
    assert_eq!(auth(&heads[1]), None, "the download got the token: {}", heads[1]);

    // Without a token nothing is sent, and a refusal (GitHub's 403 past 60 requests an
    // hour) says what to do about it.
    let fake = fake_releases(routes);
    let (ok, text, _dir) = fetch_runner(&fake, &[]);
    assert!(ok, "{text}");
    assert!(fake.heads.lock().expect("lock").iter().all(|h| auth(h).is_none()));
    let (ok, text, _dir) = fetch_runner(&fake_releases(BTreeMap::new()), &[]);
    assert!(!ok);
    assert!(text.contains("GITHUB_TOKEN") && text.contains("60"), "{text}");
}
