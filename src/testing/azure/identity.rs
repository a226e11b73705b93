//! A fake managed identity endpoint (the App Service protocol `azure_identity` speaks when
//! `IDENTITY_ENDPOINT` is set), and the way tests reach it.
//!
//! `azure_identity` reads `IDENTITY_ENDPOINT` / `IDENTITY_HEADER` from the process
//! environment, and this crate forbids `unsafe` (so no `std::env::set_var`). So a test
//! binary starts ONE token server (own thread and runtime), and [`azure_test!`] runs each
//! test's body in a child process of the test binary whose environment points at that
//! server. The URL path carries the test name, so each test sees only its own token
//! requests ([`token_hits`]).
//!
//! [`azure_test!`]: crate::azure_test

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

/// Set in the child process to the name of the test it runs.
const CHILD_ENV: &str = "RUNNER_DISPATCH_AZURE_TEST";

/// The `X-IDENTITY-HEADER` value the endpoint requires.
pub const IDENTITY_HEADER_VALUE: &str = "fake-identity-header";

/// One token request, as the endpoint saw it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct TokenHit {
    pub resource: String,
    pub api_version: String,
    pub client_id: Option<String>,
    pub identity_header_ok: bool,
}

type TokenHits = Arc<Mutex<BTreeMap<String, Vec<TokenHit>>>>;

/// The token each resource gets: fakes check it arrives as the bearer.
#[must_use]
pub fn token_for(resource: &str) -> String {
    format!("mi-token-for-{resource}")
}

/// A `#[test]` whose async body runs in a child process pointed at the fake managed
/// identity endpoint (see the [module](crate::testing::azure::identity)).
#[macro_export]
macro_rules! azure_test {
    ($(#[$doc:meta])* $name:ident, $body:expr) => {
        $(#[$doc])*
        #[test]
        fn $name() {
            $crate::testing::azure::identity::run_isolated(module_path!(), stringify!($name), || $body);
        }
    };
}

/// In the parent: runs the test `module::name` alone in a child process whose environment
/// points at the token server, and fails if it fails. In the child: runs `body` on a fresh
/// runtime. `module` is the caller's `module_path!()`.
///
/// # Panics
/// The child test failed (its output is shown), or could not be started.
pub fn run_isolated<F: Future<Output = ()>>(module: &str, name: &str, body: impl FnOnce() -> F) {
    // The harness names a test by its path below the crate root.
    let name = match module.split_once("::") {
        Some((_, inner)) => format!("{inner}::{name}"),
        None => name.to_owned(),
    };
    match std::env::var(CHILD_ENV) {
        Ok(n) if n == name => {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            rt.block_on(body());
        }
        Ok(_) => {}
        Err(_) => {
            let server = token_server();
            let out = std::process::Command::new(std::env::current_exe().expect("test binary"))
                // The parent decided to run it: an `#[ignore]`d test run with `--ignored` too.
                .args([name.as_str(), "--exact", "--include-ignored", "--nocapture", "--test-threads=1"])
                .env(CHILD_ENV, &name)
                .env("IDENTITY_ENDPOINT", format!("{server}/msi/{name}"))
                .env("IDENTITY_HEADER", IDENTITY_HEADER_VALUE)
                .env_remove("IDENTITY_SERVER_THUMBPRINT")
                .env_remove("IMDS_ENDPOINT")
                .env_remove("MSI_ENDPOINT")
                .env_remove("AZURE_CLIENT_SECRET")
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

/// The token server of this process (started on first use, on its own thread).
fn token_server() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind token server");
        listener.set_nonblocking(true).expect("nonblocking");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            rt.block_on(async move {
                let hits: TokenHits = Arc::default();
                let app = Router::new()
                    .route("/msi/{test}", get(issue_token))
                    .route("/stats/{test}", get(token_stats))
                    .with_state(hits);
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                axum::serve(listener, app).await.expect("token server");
            });
        });
        url
    })
}

fn json_response(status: StatusCode, body: &impl serde::Serialize) -> Response {
    (status, [("content-type", "application/json")], serde_json::to_vec(body).expect("json")).into_response()
}

async fn issue_token(
    State(hits): State<TokenHits>,
    Path(test): Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let url = reqwest::Url::parse(&format!("http://fake{uri}")).expect("url");
    let q: BTreeMap<String, String> = url.query_pairs().into_owned().collect();
    let resource = q.get("resource").cloned().unwrap_or_default();
    let hit = TokenHit {
        resource: resource.clone(),
        api_version: q.get("api-version").cloned().unwrap_or_default(),
        client_id: q.get("client_id").cloned(),
        identity_header_ok: headers.get("x-identity-header").and_then(|v| v.to_str().ok())
            == Some(IDENTITY_HEADER_VALUE),
    };
    let ok = hit.identity_header_ok && hit.api_version == "2019-08-01";
    hits.lock().unwrap_or_else(PoisonError::into_inner).entry(test).or_default().push(hit);
    if !ok {
        return (StatusCode::BAD_REQUEST, "bad identity request").into_response();
    }
    let expires_on = time::OffsetDateTime::now_utc().unix_timestamp() + 3600;
    let token = json!({
        "access_token": token_for(&resource),
        "expires_on": expires_on.to_string(),
        "resource": resource,
        "token_type": "Bearer",
    });
    json_response(StatusCode::OK, &token)
}

async fn token_stats(State(hits): State<TokenHits>, Path(test): Path<String>) -> Response {
    let hits = hits.lock().unwrap_or_else(PoisonError::into_inner).get(&test).cloned().unwrap_or_default();
    json_response(StatusCode::OK, &hits)
}

/// The token requests this test's process made (asked of the parent's server).
///
/// # Panics
/// Outside an [`azure_test!`](crate::azure_test) child, or the server does not answer.
pub async fn token_hits() -> Vec<TokenHit> {
    let endpoint = std::env::var("IDENTITY_ENDPOINT").expect("child env");
    let stats = endpoint.replacen("/msi/", "/stats/", 1);
    let client = crate::tls::client_builder().build().expect("client");
    client.get(stats).send().await.expect("stats").json().await.expect("stats json")
}
