//! A fake managed identity endpoint (App Service protocol) for tests that go through the
//! real `azure_identity` path.
//!
//! `azure_identity` reads `IDENTITY_ENDPOINT` / `IDENTITY_HEADER` from the process
//! environment, and this crate forbids `unsafe` (so no `std::env::set_var`). So a test
//! binary starts ONE token server (own thread and runtime) and runs each test's body in a
//! child process of itself whose environment points at that server ([`run_isolated`]). The
//! URL path carries the test name, so each test sees only its own token requests.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

const CHILD_ENV: &str = "RUNNER_DISPATCH_IDENTITY_TEST";
/// The `x-identity-header` the child's `IDENTITY_HEADER` holds.
pub const IDENTITY_HEADER_VALUE: &str = "fake-identity-header";

/// The token the identity endpoint issues for `resource` (fakes check it as the bearer).
#[must_use]
pub fn token_for(resource: &str) -> String {
    format!("mi-token-for-{resource}")
}

/// In the parent: runs the test named `name` (its full path in the test binary) in a child
/// process whose environment points at the token server, and fails if the child fails. In
/// the child: runs `body` on a fresh runtime.
///
/// # Panics
/// The child failed, or could not be started.
pub fn run_isolated<F: Future<Output = ()>>(name: &str, body: impl FnOnce() -> F) {
    match std::env::var(CHILD_ENV) {
        Ok(n) if n == name => {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            rt.block_on(body());
        }
        Ok(_) => {}
        Err(_) => {
            let server = token_server();
            let out = std::process::Command::new(std::env::current_exe().expect("test binary"))
                .args([name, "--exact", "--nocapture", "--test-threads=1"])
                .env(CHILD_ENV, name)
                .env("IDENTITY_ENDPOINT", format!("{server}/msi/{name}"))
                .env("IDENTITY_HEADER", IDENTITY_HEADER_VALUE)
                .env_remove("IDENTITY_SERVER_THUMBPRINT")
                .env_remove("IMDS_ENDPOINT")
                .env_remove("MSI_ENDPOINT")
                .env_remove("AZURE_CLIENT_SECRET")
                .env_remove("AZURE_CLIENT_ID")
                .output()
                .expect("run the test in a child process");
            let stdout = String::from_utf8_lossy(&out.stdout);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                out.status.success() && stdout.contains(&format!("test {name} ... ok")),
                "child test {name} failed:\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
            );
        }
    }
}

/// The resources this test's process asked tokens for (from the parent's server), each
/// with whether the request carried the identity header and api-version 2019-08-01.
///
/// # Panics
/// Not in a child of [`run_isolated`], or the server does not answer.
pub async fn token_requests() -> Vec<(String, bool)> {
    let endpoint = std::env::var("IDENTITY_ENDPOINT").expect("child env");
    let stats = endpoint.replacen("/msi/", "/stats/", 1);
    let client = crate::tls::client_builder().build().expect("client");
    let hits: Vec<Value> = client.get(stats).send().await.expect("stats").json().await.expect("stats json");
    hits.iter().map(|h| (h["resource"].as_str().unwrap_or_default().to_owned(), h["ok"] == true)).collect()
}

type Hits = Arc<Mutex<BTreeMap<String, Vec<Value>>>>;

fn token_server() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind token server");
        listener.set_nonblocking(true).expect("nonblocking");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            rt.block_on(async move {
                let hits: Hits = Arc::default();
                let app =
                    Router::new().route("/msi/{test}", get(issue)).route("/stats/{test}", get(stats)).with_state(hits);
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                axum::serve(listener, app).await.expect("token server");
            });
        });
        url
    })
}

async fn issue(State(hits): State<Hits>, Path(test): Path<String>, uri: Uri, headers: HeaderMap) -> Response {
    let query: BTreeMap<String, String> = uri
        .query()
        .unwrap_or_default()
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.replace("%3A", ":").replace("%2F", "/").replace("%3a", ":").replace("%2f", "/")))
        .collect();
    let resource = query.get("resource").cloned().unwrap_or_default();
    let ok = headers.get("x-identity-header").and_then(|v| v.to_str().ok()) == Some(IDENTITY_HEADER_VALUE)
        && query.get("api-version").map(String::as_str) == Some("2019-08-01");
    hits.lock().expect("hits").entry(test).or_default().push(json!({ "resource": resource, "ok": ok }));
    if !ok {
        return (StatusCode::BAD_REQUEST, "bad identity request").into_response();
    }
    let expires_on = time::OffsetDateTime::now_utc().unix_timestamp() + 3600;
    let body = json!({
        "access_token": token_for(&resource),
        "expires_on": expires_on.to_string(),
        "resource": resource,
        "token_type": "Bearer",
    });
    ([("content-type", "application/json")], body.to_string()).into_response()
}

async fn stats(State(hits): State<Hits>, Path(test): Path<String>) -> Response {
    let list = hits.lock().expect("hits").get(&test).cloned().unwrap_or_default();
    ([("content-type", "application/json")], Value::Array(list).to_string()).into_response()
}
