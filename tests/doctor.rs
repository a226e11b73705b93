//! `runner-dispatch doctor`, the real binary, against one local fake that plays GitHub
//! (PAT auth), the managed identity endpoint (App Service protocol), ARM and the Batch
//! data plane. Each test scripts the fake's answers and reads doctor's verdict.
//!
//! Bodies follow GitHub's OpenAPI examples (`tests/fixtures/github-openapi`); the runner
//! group body is not in that subset and follows the documented `runner-groups-org` fields.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

const PAT: &str = "ghp_DOCTORTESTPATSECRET0123456789";
const MI_TOKEN: &str = "mi-token-DOCTOR-SECRET-for-arm-and-batch";
const IDENTITY_HEADER: &str = "fake-identity-header";
const SUBSCRIPTION: &str = "00000000-0000-0000-0000-000000000000";
const OPENAPI: &str = include_str!("fixtures/github-openapi/api.github.com.runners-subset.json");

/// One protected ACI pool (repositories + its own runner group 7) and one Batch pool.
const POOLS: &str = r#"
[github]
allowed_owners = ["octo-org"]

[[pools]]
name = "secure"
backend = "aci"
labels = ["self-hosted", "linux", "secure"]
image = "example.azurecr.io/runner:1"
repositories = ["octo-org/api"]
runner_group_id = 7
resource_group = "rg-runners"
location = "westeurope"

[[pools]]
name = "batch"
backend = "batch"
labels = ["self-hosted", "linux", "batch"]
image = "example.azurecr.io/runner:1"
batch_pool_id = "linux-pool"
"#;

fn example(name: &str) -> Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    let doc = DOC.get_or_init(|| serde_json::from_str(OPENAPI).expect("openapi subset"));
    let value = doc["components"]["examples"][name]["value"].clone();
    assert!(!value.is_null(), "no example {name}");
    value
}

/// What the fake answers differently from a healthy deployment.
#[derive(Clone, Copy, PartialEq)]
enum Fault {
    None,
    /// Runner group 7 admits every repository of the organisation.
    GroupVisibleToAll,
    /// Runner group 7 (selected) lists a repository the pool does not serve.
    GroupListsAnotherRepository,
    /// Runner group 7 (selected) lists the pool's repository, but it is public.
    GroupListsAPublicRepository,
    /// GitHub refuses the credentials when listing runners.
    RunnersUnauthorized,
    /// ARM refuses to list the container groups.
    ArmForbidden,
}

#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    authorization: Option<String>,
}

#[derive(Clone)]
struct Fake {
    fault: Fault,
    seen: Arc<Mutex<Vec<Seen>>>,
}

fn github_error(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(json!({"message": message, "documentation_url": "https://docs.github.com/rest"})))
        .into_response()
}

async fn answer(State(fake): State<Fake>, req: Request) -> Response {
    let path = req.uri().path().to_owned();
    let query: BTreeMap<String, String> = req
        .uri()
        .query()
        .unwrap_or_default()
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let header = |k: &str| req.headers().get(k).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let authorization = header("authorization");
    fake.seen.lock().unwrap().push(Seen { method: req.method().to_string(), path: path.clone(), authorization });
    let github_auth_ok = header("authorization").as_deref() == Some(&format!("Bearer {PAT}"));
    let azure_auth_ok = header("authorization").as_deref() == Some(&format!("Bearer {MI_TOKEN}"));
    let rg_groups = format!(
        "/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-runners/providers/Microsoft.ContainerInstance/containerGroups"
    );
    match path.as_str() {
        // Managed identity endpoint (App Service protocol, api-version 2019-08-01).
        "/msi/token" => {
            let api_version = query.get("api-version").map(String::as_str);
            if header("x-identity-header").as_deref() != Some(IDENTITY_HEADER) || api_version != Some("2019-08-01") {
                return (StatusCode::BAD_REQUEST, "bad identity request").into_response();
            }
            let expires_on = time::OffsetDateTime::now_utc().unix_timestamp() + 3600;
            axum::Json(json!({
                "access_token": MI_TOKEN,
                "expires_on": expires_on.to_string(),
                "resource": query.get("resource").cloned().unwrap_or_default().replace("%3A", ":").replace("%2F", "/"),
                "token_type": "Bearer",
            }))
            .into_response()
        }
        "/orgs/octo-org/actions/runners" if fake.fault == Fault::RunnersUnauthorized => {
            github_error(StatusCode::UNAUTHORIZED, "Bad credentials")
        }
        _ if path.starts_with("/orgs/") && !github_auth_ok => github_error(StatusCode::UNAUTHORIZED, "Bad credentials"),
        "/orgs/octo-org/actions/runners" => axum::Json(example("runner-paginated")).into_response(),
        "/orgs/octo-org/hooks/7/deliveries" => axum::Json(example("hook-delivery-items")).into_response(),
        "/orgs/octo-org/actions/runner-groups/7" => {
            let visibility = if fake.fault == Fault::GroupVisibleToAll { "all" } else { "selected" };
            axum::Json(json!({
                "id": 7,
                "name": "api-runners",
                "visibility": visibility,
                "default": false,
                "runners_url": "https://api.github.com/orgs/octo-org/actions/runner-groups/7/runners",
                "selected_repositories_url": "https://api.github.com/orgs/octo-org/actions/runner-groups/7/repositories",
                "inherited": false,
                "allows_public_repositories": false,
                "restricted_to_workflows": false,
                "selected_workflows": [],
                "workflow_restrictions_read_only": false
            }))
            .into_response()
        }
        _ if path == rg_groups => {
            if !azure_auth_ok {
                return (StatusCode::UNAUTHORIZED, "no token").into_response();
            }
            if fake.fault == Fault::ArmForbidden {
                let error = json!({"error": {"code": "AuthorizationFailed", "message": "The client does not have authorization to perform action 'Microsoft.ContainerInstance/containerGroups/read'."}});
                return (StatusCode::FORBIDDEN, axum::Json(error)).into_response();
            }
            axum::Json(json!({"value": []})).into_response()
        }
        // The group's repository list (`minimal-repository` items), one page of 100.
        "/orgs/octo-org/actions/runner-groups/7/repositories" => {
            if query.get("per_page").map(String::as_str) != Some("100")
                || query.get("page").map(String::as_str) != Some("1")
            {
                return (StatusCode::BAD_REQUEST, "expected per_page=100&page=1").into_response();
            }
            let repo = |name: &str, public: bool| {
                json!({"id": 1, "node_id": "R_1", "name": name, "full_name": format!("octo-org/{name}"),
                       "private": !public, "visibility": if public { "public" } else { "private" },
                       "owner": {"login": "octo-org"}})
            };
            let mut repositories = vec![repo("api", fake.fault == Fault::GroupListsAPublicRepository)];
            if fake.fault == Fault::GroupListsAnotherRepository {
                repositories.push(repo("web", false));
            }
            axum::Json(json!({"total_count": repositories.len(), "repositories": repositories})).into_response()
        }
        _ if path.starts_with("/jobs/") && path.ends_with("/tasks") && azure_auth_ok => {
            axum::Json(json!({"value": []})).into_response()
        }
        // The Function App's Blob endpoint: the idle runners' demand log (status reads it).
        _ if path.starts_with("/runner-dispatch-state/demand/secure/") && req.method() == axum::http::Method::GET => {
            if !azure_auth_ok || header("x-ms-version").is_none() {
                return (StatusCode::FORBIDDEN, "no token").into_response();
            }
            let started = time::OffsetDateTime::now_utc().unix_timestamp() - 300;
            let lines: String = [(1, 3, true), (2, 4, true), (3, 70, false)]
                .iter()
                .map(|(job, q, idle)| {
                    format!("{}\n", json!({"k": "started", "job": job, "at": started, "queued_s": q, "idle": idle}))
                })
                .collect();
            lines.into_response()
        }
        _ if path.starts_with("/runner-dispatch-state/") => {
            (StatusCode::NOT_FOUND, [("x-ms-error-code", "BlobNotFound")], "").into_response()
        }
        _ => (StatusCode::IM_A_TEAPOT, format!("the fake does not know {path}")).into_response(),
    }
}

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    seen: Vec<Seen>,
}

/// Runs `runner-dispatch doctor` with only the settings given here.
async fn doctor(fault: Fault) -> Run {
    run(&["doctor"], fault, &[]).await
}

/// Runs `runner-dispatch <args>` with only the settings given here, and `extra` ones.
async fn run(args: &[&str], fault: Fault, extra: &[(&str, &str)]) -> Run {
    let fake = Fake { fault, seen: Arc::default() };
    let app = Router::new().fallback(answer).with_state(fake.clone());
    let (url, server) = runner_dispatch::testing::serve_fake(app).await;
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_runner-dispatch"));
    command.args(args).env_clear();
    command
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("RUST_LOG", "warn")
        .env("GITHUB_WEBHOOK_SECRET", "doctor-webhook-secret")
        .env("GITHUB_TOKEN", PAT)
        .env("GITHUB_API_URL", &url)
        .env("GITHUB_HOOK_SCOPE", "org")
        .env("GITHUB_HOOK_ID", "7")
        .env("GITHUB_HOOK_OWNER", "octo-org")
        .env("RUNNER_DISPATCH_CONFIG_TOML", POOLS)
        .env("AZURE_SUBSCRIPTION_ID", SUBSCRIPTION)
        .env("AZURE_RESOURCE_MANAGER_URL", &url)
        .env("AZURE_BATCH_ACCOUNT_URL", &url)
        .env("IDENTITY_ENDPOINT", format!("{url}/msi/token"))
        .env("IDENTITY_HEADER", IDENTITY_HEADER);
    // Given last, so they override the ones above.
    for (k, v) in extra {
        command.env(k, v.replace("{url}", &url));
    }
    let out = command.output().await.expect("run runner-dispatch");
    server.abort();
    let seen = fake.seen.lock().unwrap().clone();
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        seen,
    }
}

impl Run {
    fn all(&self) -> String {
        format!("--- stdout\n{}--- stderr\n{}", self.stdout, self.stderr)
    }

    /// The one stdout line that starts with `prefix` and contains every part.
    fn line(&self, prefix: &str, parts: &[&str]) -> &str {
        self.stdout
            .lines()
            .find(|l| l.starts_with(prefix) && parts.iter().all(|p| l.contains(p)))
            .unwrap_or_else(|| panic!("no line {prefix:?} with {parts:?} in:\n{}", self.all()))
    }

    fn no_secrets(&self) {
        for secret in [PAT, MI_TOKEN, "doctor-webhook-secret"] {
            assert!(!self.all().contains(secret), "{secret} printed:\n{}", self.all());
        }
    }

    /// Exit 1 with exactly one failure, the line `prefix` with every part, and no secret.
    fn fails_once(&self, prefix: &str, parts: &[&str]) {
        assert_eq!(self.code, Some(1), "{}", self.all());
        self.line(prefix, parts);
        assert_eq!(self.stdout.matches("FAIL").count(), 1, "one failure expected:\n{}", self.all());
        assert_eq!(self.stdout.lines().last(), Some("1 problem(s)"), "{}", self.all());
        self.no_secrets();
    }

    fn saw(&self, method: &str, path: &str) -> bool {
        self.seen.iter().any(|s| s.method == method && s.path == path)
    }
}

#[tokio::test]
async fn doctor_passes_a_healthy_deployment_and_says_what_it_checked() {
    let run = doctor(Fault::None).await;
    assert_eq!(run.code, Some(0), "{}", run.all());
    assert_eq!(run.stdout.lines().last(), Some("all checks passed"), "{}", run.all());
    assert!(!run.stdout.contains("FAIL"), "{}", run.all());
    run.line("ok    GitHub: /orgs/octo-org lists 2 runner(s), 0 of them ours", &[]);
    run.line("ok    GitHub: hook deliveries readable", &[]);
    run.line(
        "ok    pool secure: runner group 7 (api-runners) in octo-org is restricted",
        &["selected, 1 repositories"],
    );
    run.line("ok    Azure: pool secure (aci) reachable", &[]);
    run.line("ok    Azure: pool batch (batch) reachable", &[]);
    // Each check really asked: GitHub with the PAT, ARM and Batch with the identity's token.
    for path in ["/orgs/octo-org/actions/runners", "/orgs/octo-org/hooks/7/deliveries"] {
        assert!(run.saw("GET", path), "doctor never asked {path}: {:?}", run.seen);
    }
    assert!(run.saw("GET", "/orgs/octo-org/actions/runner-groups/7"), "{:?}", run.seen);
    assert!(run.saw("GET", "/orgs/octo-org/actions/runner-groups/7/repositories"), "{:?}", run.seen);
    assert!(run.seen.iter().any(|s| s.path.ends_with("/containerGroups")), "{:?}", run.seen);
    assert!(run.seen.iter().any(|s| s.path.ends_with("/tasks")), "{:?}", run.seen);
    for s in run.seen.iter().filter(|s| s.path.starts_with("/orgs/")) {
        assert_eq!(s.authorization.as_deref(), Some(format!("Bearer {PAT}").as_str()), "{s:?}");
    }
    run.no_secrets();
}

#[tokio::test]
async fn doctor_fails_a_protected_pool_whose_runner_group_admits_all_repositories() {
    let run = doctor(Fault::GroupVisibleToAll).await;
    run.fails_once(
        "FAIL  pool secure: runner group 7 (api-runners) in octo-org",
        &["visibility \"all\"", "restrict it"],
    );
}

#[tokio::test]
async fn doctor_fails_a_runner_group_that_lists_a_repository_the_pool_does_not_serve() {
    let run = doctor(Fault::GroupListsAnotherRepository).await;
    run.fails_once(
        "FAIL  pool secure: runner group 7 (api-runners) in octo-org",
        &["admits octo-org/web outside the pool's repositories", "restrict it"],
    );
}

#[tokio::test]
async fn doctor_fails_a_runner_group_that_lists_a_public_repository_unless_they_are_allowed() {
    let refused = doctor(Fault::GroupListsAPublicRepository).await;
    refused.fails_once(
        "FAIL  pool secure: runner group 7 (api-runners) in octo-org",
        &["admits public repositories octo-org/api"],
    );
    let allowed = POOLS.replace(
        "allowed_owners = [\"octo-org\"]",
        "allowed_owners = [\"octo-org\"]\nallow_public_repositories = true",
    );
    let passed =
        run(&["doctor"], Fault::GroupListsAPublicRepository, &[("RUNNER_DISPATCH_CONFIG_TOML", &allowed)]).await;
    assert_eq!(passed.code, Some(0), "{}", passed.all());
}

#[tokio::test]
async fn doctor_checks_the_group_of_a_pool_that_keeps_idle_runners_on_a_private_subnet() {
    // No repositories and no identity: the private subnet and the idle runners are why.
    let subnet = "subnet_id = \"/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-net/providers/Microsoft.Network/virtualNetworks/v/subnets/runners\"\nidle_runners = 1";
    let pools = POOLS.replace("repositories = [\"octo-org/api\"]", subnet);
    assert_ne!(pools, POOLS);
    let checked =
        run(&["doctor"], Fault::GroupListsAnotherRepository, &[("RUNNER_DISPATCH_CONFIG_TOML", &pools)]).await;
    // The group lists api and web; the pool admits every repository of octo-org: no wider.
    checked.line("ok    pool secure: runner group 7 (api-runners) in octo-org is restricted", &["2 repositories"]);
    assert!(checked.saw("GET", "/orgs/octo-org/actions/runner-groups/7/repositories"), "{:?}", checked.seen);
    // Without its own group the pools file itself is refused, naming both keys.
    let shared = pools.replace("runner_group_id = 7\n", "");
    let refused = run(&["doctor"], Fault::None, &[("RUNNER_DISPATCH_CONFIG_TOML", &shared)]).await;
    assert_eq!(refused.code, Some(1), "{}", refused.all());
    refused.line(
        "FAIL  error: RUNNER_DISPATCH_CONFIG_TOML: pools[0].idle_runners",
        &["pools[0].runner_group_id", "pools[0].subnet_id"],
    );
}

#[tokio::test]
async fn doctor_names_the_github_call_that_was_refused_and_never_prints_the_token() {
    let run = doctor(Fault::RunnersUnauthorized).await;
    run.fails_once(
        "FAIL  GitHub: cannot list runners of /orgs/octo-org",
        &["GET /orgs/octo-org/actions/runners", "401"],
    );
}

#[tokio::test]
async fn doctor_fails_a_pool_whose_compute_the_identity_cannot_list() {
    let run = doctor(Fault::ArmForbidden).await;
    run.fails_once("FAIL  Azure: pool secure (aci)", &["AuthorizationFailed", "403", "rg-runners"]);
    run.line("ok    Azure: pool batch (batch) reachable", &[]);
}

#[tokio::test]
async fn status_reports_each_pool_from_the_live_lists_and_the_demand_blobs() {
    let pools = POOLS.replace("runner_group_id = 7\n", "runner_group_id = 7\nidle_runners = 2\n");
    let out = run(
        &["status", "--json"],
        Fault::None,
        &[("RUNNER_DISPATCH_CONFIG_TOML", &pools), ("AzureWebJobsStorage__blobServiceUri", "{url}")],
    )
    .await;
    assert_eq!(out.code, Some(0), "{}", out.all());
    let report: Value = serde_json::from_str(&out.stdout).expect("json");
    let secure = &report[0];
    assert_eq!(secure["pool"], "secure");
    assert_eq!(secure["idle_target"], json!({"count": 2, "why": {"kind": "fixed"}}));
    assert_eq!(secure["idle_targets"], json!(["octo-org"]));
    assert_eq!(
        (secure["idle"].as_u64(), secure["busy"].as_u64(), secure["booting"].as_u64()),
        (Some(0), Some(0), Some(0))
    );
    assert_eq!(secure["time_to_runner"], json!({"jobs": 3, "on_idle_runner": 2, "p50_s": 4, "p95_s": 4}));
    assert_eq!(report[1]["pool"], "batch");
    assert!(report[1]["idle_target"].is_null());
    assert!(out.saw("GET", "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-runners/providers/Microsoft.ContainerInstance/containerGroups"));
    assert!(!out.seen.iter().any(|s| s.method != "GET"), "status changed something: {:?}", out.seen);
    out.no_secrets();
    // Text for people: the same figures, one pool after another.
    let text = run(
        &["status"],
        Fault::None,
        &[("RUNNER_DISPATCH_CONFIG_TOML", &pools), ("AzureWebJobsStorage__blobServiceUri", "{url}")],
    )
    .await;
    assert!(text.stdout.contains("idle target   2 per target at octo-org (idle_runners)"), "{}", text.all());
    assert!(text.stdout.contains("time to runner p50 4 s, p95 4 s (3 jobs, 2 on idle runners)"), "{}", text.all());
}

#[tokio::test]
async fn doctor_checks_every_placement_of_a_pool_and_names_the_one_it_cannot_reach() {
    let pools = POOLS.replace(
        "resource_group = \"rg-runners\"\nlocation = \"westeurope\"",
        "placements = [{ location = \"westeurope\", resource_group = \"rg-runners\" }, { location = \"northeurope\", resource_group = \"rg-elsewhere\" }]",
    );
    assert_ne!(pools, POOLS);
    let out = run(&["doctor"], Fault::None, &[("RUNNER_DISPATCH_CONFIG_TOML", &pools)]).await;
    out.line("ok    Azure: pool secure (aci) placement westeurope (rg-runners, subscription", &["reachable"]);
    out.fails_once("FAIL  Azure: pool secure (aci) placement northeurope (rg-elsewhere", &[]);
}

#[tokio::test]
async fn status_with_a_state_dir_shows_the_standalone_spool_depth_per_pool() {
    let dir = tempfile::tempdir().expect("tmp");
    let spool = runner_dispatch::spool::Spool::open(dir.path()).expect("spool");
    for job in [1, 2] {
        let message = runner_dispatch::testing::provision_message(job, "secure", &["secure"]);
        assert!(spool.put_new(&runner_dispatch::spool::SpoolItem { message, attempts: 0 }).expect("put"));
    }
    let state_dir = dir.path().to_str().expect("utf8");
    let extra = [("RUNNER_DISPATCH_SPOOL_MAX", "50")];
    let text = run(&["status", "--state-dir", state_dir], Fault::None, &extra).await;
    assert_eq!(text.code, Some(0), "{}", text.all());
    text.line("spool         2 pending (secure 2) of at most 50 (RUNNER_DISPATCH_SPOOL_MAX), 0 given up", &[]);
    let json = run(&["status", "--json", "--state-dir", state_dir], Fault::None, &extra).await;
    let report: Value = serde_json::from_str(&json.stdout).expect("json");
    assert_eq!((report[0]["pool"].as_str(), report[0]["spool_pending"].as_u64()), (Some("secure"), Some(2)));
    assert_eq!((report[1]["pool"].as_str(), report[1]["spool_pending"].as_u64()), (Some("batch"), Some(0)));
    assert_eq!(spool.pending().len(), 2, "status changed nothing");
}
