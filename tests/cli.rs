//! The commands, run as a user runs them: the real binary, its output and exit code.

use std::path::Path;
use std::process::Command;

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_runner-dispatch"));
    for k in [
        "RUNNER_DISPATCH_CONFIG",
        "RUNNER_DISPATCH_CONFIG_TOML",
        "GITHUB_WEBHOOK_SECRET",
        "GITHUB_APP_ID",
        "GITHUB_TOKEN",
        "FUNCTIONS_CUSTOMHANDLER_PORT",
    ] {
        c.env_remove(k);
    }
    c
}

fn write(dir: &tempfile::TempDir, text: &str) -> String {
    let p = dir.path().join("runners.toml");
    std::fs::write(&p, text).expect("write");
    p.to_string_lossy().into_owned()
}

#[test]
fn check_config_lists_every_problem_with_its_key_and_exits_1() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = write(
        &dir,
        r#"
[github]
allowed_owners = []
token_mode = "magic"
[[pools]]
name = "a"
backend = "aci"
labels = ["linux"]
image = ""
runner_ttl = "forever"
[[pools]]
name = "a"
backend = "batch"
labels = ["windows"]
image = "img"
colour = "blue"
"#,
    );
    let out = bin().args(["check-config", "--pools-only"]).env("RUNNER_DISPATCH_CONFIG", &path).output().expect("run");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    for key in [
        "github.allowed_owners",
        "github.token_mode",
        "pools[0].image",
        "pools[0].runner_ttl",
        "pools[1].batch_pool_id",
        "pools[1].colour",
    ] {
        assert!(err.contains(key), "missing {key} in:\n{err}");
    }
    assert!(err.contains("problem(s) found"));
}

#[test]
fn check_config_refuses_a_restricted_pool_that_keeps_idle_runners_in_a_shared_runner_group() {
    // Issue 22 item 9: check-config once printed plain `ok` for this file.
    let text = r#"
[github]
allowed_owners = ["octo-org"]
[defaults]
runner_group_id = 3
[[pools]]
name = "open"
backend = "aci"
labels = ["linux"]
image = "img"
[[pools]]
name = "open-idle"
backend = "aci"
labels = ["linux", "ready"]
image = "img"
idle_runners = 2
[[pools]]
name = "api"
backend = "aci"
labels = ["linux", "api"]
image = "img"
repositories = ["octo-org/api-*"]
idle_runners = 2
"#;
    let dir = tempfile::tempdir().expect("tmp");
    let path = write(&dir, text);
    let out = bin().args(["check-config", "--pools-only"]).env("RUNNER_DISPATCH_CONFIG", &path).output().expect("run");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let line = err.lines().find(|l| l.starts_with("error: pools[2].idle_runners:")).unwrap_or_else(|| panic!("{err}"));
    assert!(line.contains("pools[2].runner_group_id") && line.contains("pools[2].repositories"), "{line}");
    assert!(err.contains("1 problem(s) found"), "only the restricted pool is refused:\n{err}");
    let fixed = text
        .replace("repositories = [\"octo-org/api-*\"]\n", "repositories = [\"octo-org/api-*\"]\nrunner_group_id = 9\n");
    let path = write(&dir, &fixed);
    let out = bin().args(["check-config", "--pools-only"]).env("RUNNER_DISPATCH_CONFIG", &path).output().expect("run");
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn check_config_accepts_the_example_file_and_names_missing_settings() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/runners.example.toml");
    let out =
        bin().args(["check-config", "--pools-only"]).env("RUNNER_DISPATCH_CONFIG", example).output().expect("run");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok: 3 pool(s)"));
    let out = bin().args(["check-config"]).env("RUNNER_DISPATCH_CONFIG", example).output().expect("run");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("GITHUB_WEBHOOK_SECRET"), "{err}");
}

#[test]
fn route_explains_the_choice_and_why_not_the_others() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = write(
        &dir,
        r#"
[github]
allowed_owners = ["o"]
[[pools]]
name = "general"
backend = "aci"
labels = ["self-hosted", "linux"]
image = "i"
[[pools]]
name = "api-team"
backend = "aci"
labels = ["self-hosted", "linux", "x64"]
image = "i"
repositories = ["o/api-*"]
[[pools]]
name = "win"
backend = "batch"
labels = ["self-hosted", "windows"]
image = "i"
batch_pool_id = "w"
"#,
    );
    let out = bin()
        .args(["route", "--labels", "self-hosted,Linux", "--repository", "o/api-gw"])
        .env("RUNNER_DISPATCH_CONFIG", &path)
        .output()
        .expect("run");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("=> pool api-team"), "{text}");
    assert!(text.lines().any(|l| l.contains("general") && l.contains("loses on precedence")), "{text}");
    assert!(text.lines().any(|l| l.contains("win") && l.contains("lacks label(s) linux")), "{text}");
    let out = bin().args(["route", "--labels", "gpu"]).env("RUNNER_DISPATCH_CONFIG", &path).output().expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stdout).contains("no pool fits"));
}

#[test]
fn demo_runs_offline_and_prints_the_outcome_table_without_secrets() {
    let out = bin().arg("demo").env("GITHUB_WEBHOOK_SECRET", "must-not-be-used").output().expect("run");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    let row = |case: &str| {
        text.lines().find(|l| l.contains(case)).unwrap_or_else(|| panic!("no row {case}:\n{text}")).to_owned()
    };
    assert!(
        row("Linux job queued").contains("202")
            && row("Linux job queued").contains("ghr-1001 requested in pool linux-aci")
    );
    assert!(row("Windows job queued").contains("windows-batch"));
    assert!(row("unmatched labels").contains("200"));
    assert!(row("bad signature").contains("401"));
    assert!(row("duplicate delivery").contains("already exists"));
    assert!(row("owner not allowed").contains("403"));
    assert!(row("Linux job completed").contains("deleted"));
    assert!(row("Docker job queued").contains("ghr-1008 requested in pool linux-docker (vm)"));
    assert_eq!(text.matches("generate-jitconfig").count(), 3, "one JIT config per runner:\n{text}");
    let verbose = bin().args(["demo", "--verbose"]).output().expect("run");
    let v = String::from_utf8_lossy(&verbose.stdout);
    assert!(v.contains("\"secureValue\": \"[redacted]\""), "{v}");
    assert!(!v.contains("dry-run-jit-config"), "the JIT config must be redacted:\n{v}");
    assert!(v.contains("\"vmSize\": \"Standard_D4ads_v5\"") && v.contains("\"customData\""), "the VM body:\n{v}");
}

#[test]
fn github_app_manifest_prints_json_with_the_needed_permissions() {
    let out = bin()
        .args(["github-app-manifest", "--scope", "org", "--webhook-url", "https://x.example/api/github-webhook"])
        .output()
        .expect("run");
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["default_permissions"]["organization_self_hosted_runners"], "write");
    assert_eq!(v["hook_attributes"]["url"], "https://x.example/api/github-webhook");
}

#[test]
fn serve_refuses_to_start_without_a_webhook_secret_and_says_which_setting() {
    let out = bin().args(["serve", "--listen", "127.0.0.1:0"]).output().expect("run");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("GITHUB_WEBHOOK_SECRET"), "{err}");
}

#[test]
fn doctor_names_what_is_missing_and_exits_1() {
    let out = bin().arg("doctor").output().expect("run");
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("FAIL") && text.contains("GITHUB_WEBHOOK_SECRET"), "{text}");
}

/// `func start` as docs/running.md has it: the host runs the binary with the values of
/// `local.settings.json` (copied from the example unchanged) and FUNCTIONS_CUSTOMHANDLER_PORT,
/// in a folder holding runners.toml. The handler must come up and answer `GET /`.
#[test]
fn serve_starts_with_the_local_settings_example_as_written() {
    let example: serde_json::Value = serde_json::from_slice(
        &std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("local.settings.json.example")).expect("read"),
    )
    .expect("local.settings.json.example is JSON");
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::copy(Path::new(env!("CARGO_MANIFEST_DIR")).join("runners.example.toml"), dir.path().join("runners.toml"))
        .expect("copy pools");
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let mut c = Command::new(env!("CARGO_BIN_EXE_runner-dispatch"));
    c.env_clear().env("PATH", std::env::var("PATH").unwrap_or_default()).current_dir(dir.path());
    for (k, v) in example["Values"].as_object().expect("Values") {
        c.env(k, v.as_str().expect("string value"));
    }
    c.env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = c.spawn().expect("serve");
    let mut up = false;
    for _ in 0..100 {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            use std::io::{Read, Write};
            let _ = s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
            let mut reply = String::new();
            let _ = s.read_to_string(&mut reply);
            up = reply.starts_with("HTTP/1.1 200");
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let _ = child.kill();
    let out = child.wait_with_output().expect("output");
    let logs = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(up, "the handler did not come up with the example settings:\n{logs}");
    assert!(logs.contains("dry-run"), "without App credentials it says it runs dry:\n{logs}");
}

#[test]
fn check_config_refuses_a_placement_subnet_outside_the_subscription_it_defaults_to() {
    let dir = tempfile::tempdir().expect("tmp");
    let subnet = "/subscriptions/bbbbbbbb-0000-0000-0000-00000000000b/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/v/subnets/aci";
    let path = write(
        &dir,
        &format!(
            r#"
[github]
allowed_owners = ["o"]
[[pools]]
name = "p"
backend = "aci"
labels = ["linux"]
image = "i"
resource_group = "rg"
placements = [{{ location = "westeurope" }}, {{ location = "northeurope", subnet_id = "{subnet}" }}]
"#
        ),
    );
    let run = |subscription: &str| {
        let out = bin()
            .arg("check-config")
            .env("RUNNER_DISPATCH_CONFIG", &path)
            .env("AZURE_SUBSCRIPTION_ID", subscription)
            .env("GITHUB_WEBHOOK_SECRET", "s")
            .output()
            .expect("run");
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    // The placement has no subscription_id: its container groups go to AZURE_SUBSCRIPTION_ID.
    let (code, err) = run("aaaaaaaa-0000-0000-0000-00000000000a");
    assert_eq!(code, Some(1));
    assert!(err.contains("pools[0].placements[1].subnet_id"), "{err}");
    assert!(!err.contains("placements[0]"), "{err}");
    let (code, err) = run("BBBBBBBB-0000-0000-0000-00000000000B");
    assert_eq!(code, Some(0), "{err}");
}
