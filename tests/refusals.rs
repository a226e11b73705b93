//! Every refusal, through both transports: the status GitHub sees, a body that says why
//! without internal detail, and no work queued.
//!
//! What "no internal detail" means here: the body is `{"result","detail"}` and the detail
//! may describe the sender's own request (its header, its owner, its repository, the line
//! and column where its JSON breaks) and name the setting that refused it, but never a
//! file path, a Rust type or serde wording, a panic, the pools file, the configured
//! secret or the signature we expected. JSON positions are kept: they are only given
//! after the signature verified (so only the secret's holder sees them), they point into
//! the sender's own bytes, and they make a bad delivery fixable from GitHub's delivery log.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use runner_dispatch::compute::ProvisionError;
use runner_dispatch::config::PoolsConfig;
use runner_dispatch::provision::dry_run::DryRunBackend;
use runner_dispatch::server::RAW_REQUEST_TIMEOUT;
use serde_json::{Value, json};

/// Every allowlist switched on; the base request below passes all of them.
const STRICT: &str = r#"
[github]
allowed_owners = ["Octocoders"]
allowed_repositories = ["Octocoders/Hello-*"]
allow_public_repositories = false
allowed_installation_ids = [3456996]
check_job_queued = "never"

[[pools]]
name = "linux"
backend = "aci"
labels = ["self-hosted", "linux", "x64", "ubuntu-latest"]
image = "example.azurecr.io/runner:1"
"#;

fn strict() -> Arc<PoolsConfig> {
    Arc::new(PoolsConfig::parse(STRICT).expect("strict pools parse"))
}

/// The queued fixture, fresh, private, from an allowed owner, repository and installation.
fn base_body(edit: impl FnOnce(&mut Value)) -> Vec<u8> {
    let mut v: Value = serde_json::from_slice(&fresh_queued(9001)).expect("json");
    v["repository"]["private"] = true.into();
    v["repository"]["visibility"] = "private".into();
    edit(&mut v);
    serde_json::to_vec(&v).expect("ser")
}

fn headers(body: &[u8]) -> Vec<(String, String)> {
    vec![
        ("Content-Type".into(), "application/json".into()),
        ("X-GitHub-Event".into(), "workflow_job".into()),
        ("X-GitHub-Delivery".into(), "11111111-2222-3333-4444-555555555555".into()),
        ("X-Hub-Signature-256".into(), sign(body)),
    ]
}

fn without(mut h: Vec<(String, String)>, name: &str) -> Vec<(String, String)> {
    h.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
    h
}

fn with(h: Vec<(String, String)>, name: &str, value: &str) -> Vec<(String, String)> {
    let mut h = without(h, name);
    h.push((name.into(), value.into()));
    h
}

/// What a refusal body must never contain.
const INTERNAL: &[&str] = &[
    ".rs",
    "/src/",
    "/home/",
    "/work/",
    "runners.toml",
    "panicked",
    "RawJob",
    "RawEvent",
    "RawRepository",
    "struct ",
    "invalid type",
    "serde",
    SECRET,
];

fn assert_no_internal_detail(case: &str, body: &str, request_body: &[u8]) {
    let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{case}: body is not JSON ({e}): {body}"));
    let keys: Vec<&String> = v.as_object().expect("object").keys().collect();
    assert_eq!(keys, ["detail", "result"], "{case}: unexpected body shape {body}");
    assert!(!v["detail"].as_str().unwrap_or_default().is_empty(), "{case}: a refusal says why: {body}");
    for s in INTERNAL {
        assert!(!body.contains(s), "{case}: body reveals {s:?}: {body}");
    }
    // Never the signature we expected (an oracle for forging one).
    let expected = sign(request_body);
    assert!(!body.contains(&expected["sha256=".len()..]), "{case}: body reveals the expected signature");
}

struct Refusal {
    case: String,
    pools: Arc<PoolsConfig>,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    status: u16,
    result: &'static str,
    /// A word the detail must contain, so the right check refused.
    because: &'static str,
}

async fn check_raw(r: &Refusal) {
    let dir = tempfile::tempdir().expect("tmp");
    let backend = Arc::new(DryRunBackend::new(false));
    let app =
        spawn_app_with(r.pools.clone(), backend.clone(), Some(dir.path()), fast_queue(), RAW_REQUEST_TIMEOUT).await;
    let mut req = app.client.post(app.url("/api/github-webhook")).body(r.body.clone());
    for (k, v) in &r.headers {
        req = req.header(k, v);
    }
    let resp = req.send().await.expect("send");
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("text");
    let case = format!("raw: {}", r.case);
    assert_eq!(status, r.status, "{case}: {text}");
    assert_no_internal_detail(&case, &text, &r.body);
    let v: Value = serde_json::from_str(&text).expect("json");
    assert_eq!(v["result"], r.result, "{case}: {text}");
    assert!(v["detail"].as_str().expect("detail").contains(r.because), "{case}: {text}");
    tokio::time::sleep(Duration::from_millis(50)).await;
    let spool = app.state.queue.as_ref().expect("standalone queue").spool();
    assert!(spool.pending().is_empty(), "{case}: work was spooled");
    assert!(spool.failed().is_empty(), "{case}: work was spooled");
    assert!(backend.created().is_empty(), "{case}: a runner was requested");
    assert!(app.github.calls().is_empty(), "{case}: GitHub was called: {:?}", app.github.calls());
}

async fn check_host(r: &Refusal) {
    let backend = Arc::new(DryRunBackend::new(false));
    let app = spawn_app_with(r.pools.clone(), backend.clone(), None, fast_queue(), RAW_REQUEST_TIMEOUT).await;
    let mut h = serde_json::Map::new();
    for (k, v) in &r.headers {
        h.insert(k.clone(), json!([v]));
    }
    let body = String::from_utf8(r.body.clone()).expect("test bodies are UTF-8");
    let envelope = json!({
        "Data": {"req": {"Url": "https://app.azurewebsites.net/api/github-webhook", "Method": "POST",
                          "Query": {}, "Headers": h, "Body": body}},
        "Metadata": {"sys": {"MethodName": "github-webhook"}},
    });
    let resp = app.client.post(app.url("/github-webhook")).json(&envelope).send().await.expect("send");
    let case = format!("host: {}", r.case);
    assert_eq!(resp.status(), 200, "{case}: the host always gets 200");
    let reply: Value = resp.json().await.expect("json reply");
    let res = &reply["Outputs"]["res"];
    assert_eq!(res["statusCode"], r.status.to_string(), "{case}: {reply}");
    let text = res["body"].as_str().expect("body string");
    assert_no_internal_detail(&case, text, &r.body);
    let v: Value = serde_json::from_str(text).expect("json");
    assert_eq!(v["result"], r.result, "{case}: {text}");
    assert!(v["detail"].as_str().expect("detail").contains(r.because), "{case}: {text}");
    let outputs: Vec<&String> = reply["Outputs"].as_object().expect("outputs").keys().collect();
    assert_eq!(outputs, ["res"], "{case}: something was queued: {reply}");
    assert!(backend.created().is_empty(), "{case}: a runner was requested");
}

async fn check(r: Refusal) {
    check_raw(&r).await;
    check_host(&r).await;
}

fn refusal(case: impl Into<String>, headers: Vec<(String, String)>, body: Vec<u8>) -> Refusal {
    Refusal { case: case.into(), pools: strict(), headers, body, status: 0, result: "", because: "" }
}

impl Refusal {
    fn expect(self, status: u16, result: &'static str, because: &'static str) -> Self {
        Self { status, result, because, ..self }
    }
}

#[tokio::test]
async fn the_base_request_is_accepted_so_each_refusal_below_is_about_one_change() {
    let body = base_body(|_| {});
    for transport in ["raw", "host"] {
        let dir = tempfile::tempdir().expect("tmp");
        let backend = Arc::new(DryRunBackend::new(false));
        let state = if transport == "raw" { Some(dir.path()) } else { None };
        let app = spawn_app_with(strict(), backend, state, fast_queue(), RAW_REQUEST_TIMEOUT).await;
        let status = if transport == "raw" {
            let mut req = app.client.post(app.url("/api/github-webhook")).body(body.clone());
            for (k, v) in headers(&body) {
                req = req.header(k, v);
            }
            req.send().await.expect("send").status().as_u16()
        } else {
            let h: serde_json::Map<String, Value> = headers(&body).into_iter().map(|(k, v)| (k, json!([v]))).collect();
            let env = json!({"Data":{"req":{"Method":"POST","Url":"u","Headers":h,
                "Body":String::from_utf8(body.clone()).expect("utf8")}},"Metadata":{}});
            let reply: Value = app
                .client
                .post(app.url("/github-webhook"))
                .json(&env)
                .send()
                .await
                .expect("send")
                .json()
                .await
                .expect("json");
            assert!(reply["Outputs"].get("runnerRequest").is_some(), "{reply}");
            reply["Outputs"]["res"]["statusCode"].as_str().expect("status").parse().expect("number")
        };
        assert_eq!(status, 202, "{transport}");
    }
}

#[tokio::test]
async fn missing_signature() {
    let body = base_body(|_| {});
    check(refusal("missing signature", without(headers(&body), "X-Hub-Signature-256"), body).expect(
        401,
        "bad_signature",
        "missing",
    ))
    .await;
}

#[tokio::test]
async fn malformed_signatures() {
    let body = base_body(|_| {});
    let good = sign(&body);
    let hex = &good["sha256=".len()..];
    for bad in [
        "sha256=zz".to_owned(),
        format!("sha1={hex}"),
        format!("SHA256={hex}"),
        format!("sha256={}", &hex[1..]),
        format!("sha256={hex}0"),
        format!("sha256={}g", &hex[1..]),
        String::new(),
    ] {
        let h = with(headers(&body), "X-Hub-Signature-256", &bad);
        let case = if bad.is_empty() { "empty signature" } else { "malformed signature" };
        check(refusal(case, h, body.clone()).expect(401, "bad_signature", "")).await;
    }
}

#[tokio::test]
async fn wrong_signature() {
    let body = base_body(|_| {});
    let other_secret = runner_dispatch::webhook::sign(b"not-the-secret", &body);
    check(
        refusal("signed with another secret", with(headers(&body), "X-Hub-Signature-256", &other_secret), body.clone())
            .expect(401, "bad_signature", "does not match"),
    )
    .await;
    let other_body = sign(b"{}");
    check(refusal("signature of another body", with(headers(&body), "X-Hub-Signature-256", &other_body), body).expect(
        401,
        "bad_signature",
        "does not match",
    ))
    .await;
}

#[tokio::test]
async fn oversize_body() {
    // Valid JSON, correctly signed, one byte over the cap.
    let mut body = base_body(|_| {});
    body.pop();
    let pad = runner_dispatch::webhook::MAX_BODY_BYTES + 1 - body.len() - r#","p":""}"#.len();
    body.extend_from_slice(format!(r#","p":"{}"}}"#, "x".repeat(pad)).as_bytes());
    assert_eq!(body.len(), runner_dispatch::webhook::MAX_BODY_BYTES + 1);
    check(refusal("oversize body", headers(&body), body).expect(413, "too_large", "bytes")).await;
}

#[tokio::test]
async fn unsupported_content_type() {
    let body = base_body(|_| {});
    for ct in ["application/x-www-form-urlencoded", "text/plain", "application/jsonx", ""] {
        check(refusal("unsupported content type", with(headers(&body), "Content-Type", ct), body.clone()).expect(
            415,
            "unsupported_media_type",
            "application/json",
        ))
        .await;
    }
}

#[tokio::test]
async fn malformed_json() {
    for (case, body) in [
        ("truncated JSON", b"{\"action\":\"queued\",".to_vec()),
        ("not JSON", b"payload=%7B%7D".to_vec()),
        ("JSON of the wrong shape", br#"{"action":"queued","workflow_job":5,"repository":{}}"#.to_vec()),
        ("JSON of the wrong type", br#"{"action":"queued","workflow_job":{"id":"seven"}}"#.to_vec()),
        ("JSON without a repository", br#"{"action":"queued","workflow_job":{"id":7}}"#.to_vec()),
    ] {
        check(refusal(case, headers(&body), body).expect(400, "bad_request", "workflow_job")).await;
    }
}

#[tokio::test]
async fn missing_event_header() {
    let body = base_body(|_| {});
    check(refusal("missing event header", without(headers(&body), "X-GitHub-Event"), body).expect(
        400,
        "bad_request",
        "X-GitHub-Event",
    ))
    .await;
}

#[tokio::test]
async fn owner_not_allowed() {
    let body = base_body(|v| {
        v["repository"]["owner"]["login"] = "mallory".into();
        v["repository"]["full_name"] = "mallory/Hello-World".into();
    });
    check(refusal("owner not allowed", headers(&body), body).expect(403, "forbidden", "allowed_owners")).await;
}

#[tokio::test]
async fn repository_not_allowed() {
    let body = base_body(|v| {
        v["repository"]["full_name"] = "Octocoders/secret-infra".into();
        v["repository"]["name"] = "secret-infra".into();
    });
    check(refusal("repository not allowed", headers(&body), body).expect(403, "forbidden", "allowed_repositories"))
        .await;
}

#[tokio::test]
async fn public_repository_when_not_allowed() {
    for (case, edit) in [
        ("public by visibility", (|v: &mut Value| v["repository"]["visibility"] = "public".into()) as fn(&mut Value)),
        ("public by private=false", |v: &mut Value| {
            v["repository"]["private"] = false.into();
            v["repository"].as_object_mut().expect("repo").remove("visibility");
        }),
        ("visibility unknown", |v: &mut Value| {
            let repo = v["repository"].as_object_mut().expect("repo");
            repo.remove("visibility");
            repo.remove("private");
        }),
    ] {
        let body = base_body(edit);
        check(refusal(case, headers(&body), body).expect(403, "forbidden", "allow_public_repositories")).await;
    }
}

#[tokio::test]
async fn installation_not_allowed() {
    let body = base_body(|v| v["installation"]["id"] = 1.into());
    check(refusal("installation not allowed", headers(&body), body).expect(
        403,
        "forbidden",
        "allowed_installation_ids",
    ))
    .await;
    for (case, edit) in [
        ("no installation", (|v: &mut Value| v["installation"] = Value::Null) as fn(&mut Value)),
        ("installation absent", |v: &mut Value| {
            v.as_object_mut().expect("obj").remove("installation");
        }),
    ] {
        let body = base_body(edit);
        check(refusal(case, headers(&body), body).expect(403, "forbidden", "no installation")).await;
    }
}

// ---------------------------------------------------------------------------
// Names and labels from the payload (issue 14, items 2 and 8)
// ---------------------------------------------------------------------------

/// Repository-scoped runners, an owner allowlist and a repository glob: the set-up in which
/// a `full_name` with `..` once reached `POST /orgs/other-org/actions/runners/generate-jitconfig`.
const REPO_SCOPE: &str = r#"
[github]
allowed_owners = ["octo-org"]
allowed_repositories = ["octo-org/*"]
runner_scope = "repo"
check_job_queued = "never"

[[pools]]
name = "linux"
backend = "aci"
labels = ["self-hosted", "linux", "x64", "ubuntu-latest"]
image = "example.azurecr.io/runner:1"
"#;

fn repo_scope() -> Arc<PoolsConfig> {
    Arc::new(PoolsConfig::parse(REPO_SCOPE).expect("repo scope pools parse"))
}

/// The base request, from `octo-org/x` unless `edit` says otherwise.
fn octo_body(edit: impl FnOnce(&mut Value)) -> Vec<u8> {
    base_body(|v| {
        v["repository"]["owner"]["login"] = "octo-org".into();
        v["repository"]["full_name"] = "octo-org/x".into();
        v["repository"]["name"] = "x".into();
        edit(v);
    })
}

#[tokio::test]
async fn a_signed_full_name_that_climbs_out_of_its_path_segment_is_refused() {
    let body = octo_body(|v| v["repository"]["full_name"] = "octo-org/x/../../../orgs/other-org".into());
    check(Refusal { pools: repo_scope(), ..refusal("full_name with ..", headers(&body), body) }.expect(
        400,
        "bad_request",
        "full_name",
    ))
    .await;
}

/// A case's name, how it edits the base payload, and what the refusal must mention.
type NameCase = (String, Box<dyn Fn(&mut Value)>, &'static str);

/// `full_name` and `name` both set to a repository `name` of octo-org.
fn repository_named(name: &str) -> NameCase {
    let n = name.to_owned();
    (
        format!("repository name {}", if name.len() > 20 { "of 101 characters" } else { name }),
        Box::new(move |v: &mut Value| {
            v["repository"]["full_name"] = format!("octo-org/{n}").into();
            v["repository"]["name"] = n.clone().into();
        }),
        "repository name",
    )
}

#[tokio::test]
async fn repository_and_owner_names_outside_githubs_rules_are_refused() {
    let long = "r".repeat(101);
    let mut cases: Vec<NameCase> =
        ["..", ".", "x?y", "x#y", "x%2F..", long.as_str()].into_iter().map(repository_named).collect();
    let edits: [(&str, &str, &str, &'static str); 5] = [
        ("owner login with a slash", "octo-org/x", "octo-org/x/x", "owner"),
        ("owner login with ..", "..", "../x", "owner"),
        ("full_name of another owner", "octo-org", "other-org/x", "full_name"),
        ("full_name of another repository", "octo-org", "octo-org/y", "full_name"),
        ("full_name without a slash", "octo-org", "octo-org", "full_name"),
    ];
    for (case, login, full_name, because) in edits {
        let (login, full_name) = (login.to_owned(), full_name.to_owned());
        cases.push((
            case.to_owned(),
            Box::new(move |v: &mut Value| {
                v["repository"]["owner"]["login"] = login.clone().into();
                v["repository"]["full_name"] = full_name.clone().into();
            }),
            because,
        ));
    }
    for (case, edit, because) in cases {
        let body = octo_body(|v| edit(v));
        check(Refusal { pools: repo_scope(), ..refusal(case, headers(&body), body) }.expect(
            400,
            "bad_request",
            because,
        ))
        .await;
    }
}

#[tokio::test]
async fn names_github_allows_are_accepted_whatever_their_case() {
    // The owner part of full_name may differ in case from owner.login; dots, underscores
    // and hyphens are ordinary repository name characters.
    for (login, full_name, name) in [
        ("octo-org", "Octo-Org/x", "x"),
        ("octo-org", "octo-org/.github", ".github"),
        ("octo-org", "octo-org/a..b_c-d", "a..b_c-d"),
    ] {
        let body = octo_body(|v| {
            v["repository"]["owner"]["login"] = login.into();
            v["repository"]["full_name"] = full_name.into();
            v["repository"]["name"] = name.into();
        });
        let dir = tempfile::tempdir().expect("tmp");
        let backend = Arc::new(DryRunBackend::new(false));
        let app = spawn_app_with(repo_scope(), backend, Some(dir.path()), fast_queue(), RAW_REQUEST_TIMEOUT).await;
        let mut req = app.client.post(app.url("/api/github-webhook")).body(body.clone());
        for (k, v) in headers(&body) {
            req = req.header(k, v);
        }
        let resp = req.send().await.expect("send");
        assert_eq!(resp.status(), 202, "{full_name}: {}", resp.text().await.unwrap_or_default());
    }
}

/// `n` distinct labels of `len` bytes each (`l<i>` padded with `x`).
fn distinct_labels(n: usize, len: usize) -> Vec<String> {
    (0..n).map(|i| format!("{:x<len$}", format!("l{i}-"))).collect()
}

#[tokio::test]
async fn too_many_or_too_long_labels_are_refused() {
    let cases: Vec<(&'static str, Vec<String>)> = vec![
        ("101 distinct labels", distinct_labels(101, 8)),
        ("a label of 129 bytes", vec!["linux".into(), "x".repeat(129)]),
        ("labels of 4125 bytes in all", distinct_labels(33, 125)),
    ];
    for (case, labels) in cases {
        let body = base_body(|v| v["workflow_job"]["labels"] = json!(labels));
        check(refusal(case, headers(&body), body).expect(400, "bad_request", "label")).await;
    }
}

#[tokio::test]
async fn duplicate_labels_are_collapsed_before_the_message_is_built() {
    // 110,000 copies of one label (about 1 MB) once made a 990 KB queue message. The
    // backend refuses the create, so the message lands in failed/ where it can be read.
    let mut labels: Vec<String> = vec!["linux".into(); 110_000];
    labels.push("LINUX".into());
    labels.push("Self-Hosted".into());
    let body = base_body(|v| v["workflow_job"]["labels"] = json!(labels));
    assert!(body.len() > 800_000 && body.len() < runner_dispatch::webhook::MAX_BODY_BYTES);
    let dir = tempfile::tempdir().expect("tmp");
    let backend = ScriptedBackend::with(vec![Err(ProvisionError::permanent("refused to read the message"))]);
    let app = spawn_app_with(strict(), backend, Some(dir.path()), fast_queue(), RAW_REQUEST_TIMEOUT).await;
    let mut req = app.client.post(app.url("/api/github-webhook")).body(body.clone());
    for (k, v) in headers(&body) {
        req = req.header(k, v);
    }
    let resp = req.send().await.expect("send");
    assert_eq!(resp.status(), 202, "{}", resp.text().await.unwrap_or_default());
    let spool = app.state.queue.as_ref().expect("standalone queue").spool();
    assert!(eventually(|| !spool.failed().is_empty()).await, "the message never reached failed/");
    let failed = spool.failed().remove(0);
    assert_eq!(failed.request.labels, ["linux", "Self-Hosted"]);
    assert!(serde_json::to_vec(&failed).expect("ser").len() < 2048);
}
