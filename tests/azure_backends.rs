//! The ACI and Batch backends against local fakes of the managed identity endpoint, ARM
//! and the Batch data plane. Every body the backends send is checked against Microsoft's
//! models (`tests/fixtures/azure-schemas`), as Azure would refuse it.
//!
//! `azure_identity` reads `IDENTITY_ENDPOINT` / `IDENTITY_HEADER` from the process
//! environment, and this crate forbids `unsafe` (so no `std::env::set_var`). So the test
//! binary starts ONE fake token server (own thread and runtime, `OnceLock`), and runs each
//! test's body in a child process of itself whose environment points at that server. The
//! server's URL path carries the test name, so each test sees only its own token requests.

mod azure {
    use std::collections::{BTreeMap, VecDeque};
    use std::future::Future;
    use std::sync::{Arc, Mutex, OnceLock};
    use std::time::Duration;

    use axum::Router;
    use axum::body::Bytes;
    use axum::extract::{Path, Query, State};
    use axum::http::{HeaderMap, Method, StatusCode, Uri};
    use axum::response::{IntoResponse, Response};
    use axum::routing::get;
    use serde_json::{Value, json};

    use runner_dispatch::azure::aci::{ACI_API_VERSION, AciBackend, AciPool, container_group_body};
    use runner_dispatch::azure::batch::{
        BATCH_API_VERSION, BatchBackend, BatchPool, batch_job_body, batch_job_id, batch_task_body,
    };
    use runner_dispatch::azure::credential::{AzureCredential, CredentialKind, SharedKey};
    use runner_dispatch::config::{Compute, Pool, PoolsConfig, Settings};
    use runner_dispatch::provision::{
        ComputeBackend, ComputeRequest, ComputeState, CreateOutcome, EnvValue, JobInfo, ProvisionError, Purpose,
    };
    use runner_dispatch::secret::Secret;

    const CHILD_ENV: &str = "RUNNER_DISPATCH_AZURE_TEST";
    const IDENTITY_HEADER_VALUE: &str = "fake-identity-header";
    const JIT_SECRET: &str = "JIT-SECRET-eyJhbGciOiJub25lIn0-do-not-leak";
    const USER_ASSIGNED_CLIENT_ID: &str = "11111111-2222-3333-4444-555555555555";
    const SUBSCRIPTION: &str = "00000000-0000-0000-0000-000000000000";
    const BATCH_RESOURCE: &str = "https://batch.core.windows.net/";

    // -----------------------------------------------------------------------------------
    // One test body per child process
    // -----------------------------------------------------------------------------------

    macro_rules! azure_test {
        ($(#[$doc:meta])* $name:ident, $body:expr) => {
            $(#[$doc])*
            #[test]
            fn $name() {
                run_isolated(concat!("azure::", stringify!($name)), || $body);
            }
        };
    }

    /// In the parent: runs the test in a child whose environment points at the token
    /// server. In the child: runs the body on a fresh runtime.
    fn run_isolated<F: Future<Output = ()>>(name: &str, body: impl FnOnce() -> F) {
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

    // -----------------------------------------------------------------------------------
    // The fake managed identity endpoint (App Service protocol), in the parent
    // -----------------------------------------------------------------------------------

    #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
    struct TokenHit {
        resource: String,
        api_version: String,
        client_id: Option<String>,
        identity_header_ok: bool,
    }

    type TokenHits = Arc<Mutex<BTreeMap<String, Vec<TokenHit>>>>;

    /// The token each resource gets: fakes check it arrives as the bearer.
    fn token_for(resource: &str) -> String {
        format!("mi-token-for-{resource}")
    }

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

    async fn issue_token(
        State(hits): State<TokenHits>,
        Path(test): Path<String>,
        Query(q): Query<BTreeMap<String, String>>,
        headers: HeaderMap,
    ) -> Response {
        let resource = q.get("resource").cloned().unwrap_or_default();
        let hit = TokenHit {
            resource: resource.clone(),
            api_version: q.get("api-version").cloned().unwrap_or_default(),
            client_id: q.get("client_id").cloned(),
            identity_header_ok: headers.get("x-identity-header").and_then(|v| v.to_str().ok())
                == Some(IDENTITY_HEADER_VALUE),
        };
        let ok = hit.identity_header_ok && hit.api_version == "2019-08-01";
        hits.lock().unwrap().entry(test).or_default().push(hit);
        if !ok {
            return (StatusCode::BAD_REQUEST, "bad identity request").into_response();
        }
        let expires_on = time::OffsetDateTime::now_utc().unix_timestamp() + 3600;
        axum::Json(json!({
            "access_token": token_for(&resource),
            "expires_on": expires_on.to_string(),
            "resource": resource,
            "token_type": "Bearer",
        }))
        .into_response()
    }

    async fn token_stats(State(hits): State<TokenHits>, Path(test): Path<String>) -> axum::Json<Vec<TokenHit>> {
        axum::Json(hits.lock().unwrap().get(&test).cloned().unwrap_or_default())
    }

    /// The token requests this test's process made (asked of the parent's server).
    async fn token_hits() -> Vec<TokenHit> {
        let endpoint = std::env::var("IDENTITY_ENDPOINT").expect("child env");
        let stats = endpoint.replacen("/msi/", "/stats/", 1);
        let client = runner_dispatch::tls::client_builder().build().expect("client");
        client.get(stats).send().await.expect("stats").json().await.expect("stats json")
    }

    // -----------------------------------------------------------------------------------
    // Schemas, pools, requests
    // -----------------------------------------------------------------------------------

    fn schema(name: &str) -> jsonschema::Validator {
        let path = format!("{}/tests/fixtures/azure-schemas/{name}", env!("CARGO_MANIFEST_DIR"));
        let schema: Value = serde_json::from_str(&std::fs::read_to_string(path).expect("schema")).expect("json");
        jsonschema::draft202012::new(&schema).expect("valid schema")
    }

    /// Schema errors, empty when valid.
    fn schema_errors(validator: &jsonschema::Validator, body: &Value) -> Vec<String> {
        validator.iter_errors(body).map(|e| format!("{} at {}", e, e.instance_path)).collect()
    }

    fn aci_schema() -> &'static jsonschema::Validator {
        static S: OnceLock<jsonschema::Validator> = OnceLock::new();
        S.get_or_init(|| schema("aci-container-group.schema.json"))
    }
    fn task_schema() -> &'static jsonschema::Validator {
        static S: OnceLock<jsonschema::Validator> = OnceLock::new();
        S.get_or_init(|| schema("batch-task.schema.json"))
    }
    fn job_schema() -> &'static jsonschema::Validator {
        static S: OnceLock<jsonschema::Validator> = OnceLock::new();
        S.get_or_init(|| schema("batch-job.schema.json"))
    }

    const PULL_ID: &str =
        "/subscriptions/s/resourceGroups/id/providers/Microsoft.ManagedIdentity/userAssignedIdentities/acr-pull";
    const JOBS_ID: &str =
        "/subscriptions/s/resourceGroups/id/providers/Microsoft.ManagedIdentity/userAssignedIdentities/jobs";
    const SUBNET: &str =
        "/subscriptions/s/resourceGroups/net/providers/Microsoft.Network/virtualNetworks/v/subnets/runners";

    fn pools() -> PoolsConfig {
        let text = format!(
            r#"
[github]
allowed_owners = ["octo-org"]
[defaults]
resource_group = "rg-runners"
location = "westeurope"
runner_group_id = 1
[[pools]]
name = "linux-aci"
backend = "aci"
labels = ["linux"]
image = "myacr.azurecr.io/actions-runner:2.330.0"
subnet_id = "{SUBNET}"
image_pull_identity = "{PULL_ID}"
identity = "{JOBS_ID}"
tags = {{ cost-center = "1234" }}
max_runners = 5
[[pools]]
name = "windows-aci"
backend = "aci"
os = "windows"
labels = ["windows"]
image = "mcr.microsoft.com/windows/servercore:ltsc2022"
cpu = 4
memory_gb = 8
[[pools]]
name = "linux-batch"
backend = "batch"
labels = ["batch", "linux"]
image = "myacr.azurecr.io/actions-runner:2.330.0"
image_pull_identity = "{PULL_ID}"
batch_pool_id = "linux-pool"
runner_ttl = "2h"
[[pools]]
name = "windows-batch"
backend = "batch"
os = "windows"
labels = ["batch", "windows"]
image = "myacr.azurecr.io/actions-runner:ltsc2022"
batch_pool_id = "windows-pool"
[[pools]]
name = "docker-host"
backend = "batch"
labels = ["docker"]
image = "unused-on-host"
batch_pool_id = "docker-pool"
run_on_host = true
name_prefix = "dock"
[[pools]]
name = "windows-host"
backend = "batch"
os = "windows"
labels = ["docker", "windows"]
image = "unused-on-host"
batch_pool_id = "windows-host-pool"
run_on_host = true
"#
        );
        PoolsConfig::parse(&text).expect("test pools")
    }

    fn pool(name: &str) -> Pool {
        pools().pool(name).map(|p| (**p).clone()).expect("pool")
    }

    fn aci_part(pool: &Pool) -> &AciPool {
        match &pool.compute {
            Compute::Aci(a) => a,
            other => panic!("{} is a {other:?} pool", pool.name),
        }
    }

    fn batch_part(pool: &Pool) -> &BatchPool {
        match &pool.compute {
            Compute::Batch(b) => b,
            other => panic!("{} is a {other:?} pool", pool.name),
        }
    }

    fn jit_request(pool: &Pool, job_id: u64) -> ComputeRequest {
        ComputeRequest {
            name: pool.runner_name(job_id),
            purpose: Purpose::Job(JobInfo {
                job_id,
                run_id: 9001,
                repository: "octo-org/api".into(),
                job_created_at: Some("2026-11-23T15:00:00Z".into()),
            }),
            runner_id: Some(4242),
            env: vec![
                ("RUNNER_JITCONFIG".into(), EnvValue::Secret(Secret::new(JIT_SECRET))),
                ("CUSTOM".into(), EnvValue::Plain("plain-value".into())),
            ],
        }
    }

    /// The legacy registration mode's variables.
    fn registration_request(pool: &Pool, job_id: u64) -> ComputeRequest {
        let mut r = jit_request(pool, job_id);
        r.runner_id = None;
        r.env = vec![
            ("RUNNER_URL".into(), EnvValue::Plain("https://github.com/octo-org".into())),
            ("RUNNER_TOKEN".into(), EnvValue::Secret(Secret::new(JIT_SECRET))),
            ("RUNNER_NAME".into(), EnvValue::Plain(r.name.clone())),
            ("RUNNER_LABELS".into(), EnvValue::Plain(pool.labels.join(","))),
            ("RUNNER_GROUP".into(), EnvValue::Plain("1".into())),
            ("RUNNER_EPHEMERAL".into(), EnvValue::Plain("1".into())),
        ];
        r
    }

    fn settings(arm: &str, batch: &str, extra: &[(&str, &str)]) -> Settings {
        let mut env: BTreeMap<String, String> = [
            ("GITHUB_WEBHOOK_SECRET", "whsec"),
            ("AZURE_SUBSCRIPTION_ID", SUBSCRIPTION),
            ("AZURE_RESOURCE_MANAGER_URL", arm),
            ("AZURE_BATCH_ACCOUNT_URL", batch),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        for (k, v) in extra {
            env.insert((*k).to_owned(), (*v).to_owned());
        }
        Settings::from_lookup(|k| env.get(k).cloned()).expect("settings")
    }

    fn credential(s: &Settings) -> AzureCredential {
        let c = AzureCredential::from_settings(&s.azure).expect("credential");
        assert_eq!(c.kind(), CredentialKind::ManagedIdentity, "IDENTITY_ENDPOINT selects managed identity");
        c
    }

    async fn serve(app: Router) -> String {
        runner_dispatch::testing::serve_fake(app).await.0
    }

    // -----------------------------------------------------------------------------------
    // The fake ARM (container groups)
    // -----------------------------------------------------------------------------------

    #[derive(Debug, Clone)]
    struct Seen {
        method: Method,
        path: String,
        query: String,
        headers: HeaderMap,
        body: Option<Value>,
    }

    type Canned = (u16, Vec<(&'static str, String)>, Value);

    #[derive(Default)]
    struct Fake {
        base: String,
        seen: Vec<Seen>,
        groups: BTreeMap<String, Value>,
        jobs: BTreeMap<String, Value>,
        tasks: BTreeMap<(String, String), Value>,
        /// Answers for the next requests, ahead of the normal behaviour.
        canned: VecDeque<Canned>,
        bodies_checked: usize,
        shared_key: Option<SharedKey>,
        expect_token: Option<String>,
    }

    type Shared = Arc<Mutex<Fake>>;

    fn answer(status: u16, headers: Vec<(&'static str, String)>, body: Value) -> Response {
        let mut r = (StatusCode::from_u16(status).expect("status"), axum::Json(body)).into_response();
        for (k, v) in headers {
            r.headers_mut().insert(k, v.parse().expect("header"));
        }
        r
    }

    fn arm_error(status: u16, code: &str, message: &str) -> Canned {
        (status, vec![], json!({"error": {"code": code, "message": message}}))
    }

    async fn start_arm() -> (String, Shared) {
        let fake: Shared = Arc::default();
        let url = serve(Router::new().fallback(arm_handler).with_state(fake.clone())).await;
        {
            let mut f = fake.lock().unwrap();
            f.base = url.clone();
            f.expect_token = Some(token_for(&url));
        }
        (url, fake)
    }

    async fn arm_handler(
        State(fake): State<Shared>,
        method: Method,
        uri: Uri,
        headers: HeaderMap,
        body: Bytes,
    ) -> Response {
        let mut f = fake.lock().unwrap();
        let body: Option<Value> = (!body.is_empty()).then(|| serde_json::from_slice(&body).expect("json body"));
        f.seen.push(Seen {
            method: method.clone(),
            path: uri.path().to_owned(),
            query: uri.query().unwrap_or_default().to_owned(),
            headers: headers.clone(),
            body: body.clone(),
        });
        let bearer = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default();
        if Some(bearer.strip_prefix("Bearer ").unwrap_or_default()) != f.expect_token.as_deref() {
            let (s, h, b) = arm_error(401, "InvalidAuthenticationToken", "wrong token");
            return answer(s, h, b);
        }
        if !uri.query().unwrap_or_default().contains(&format!("api-version={ACI_API_VERSION}")) {
            let (s, h, b) = arm_error(400, "MissingApiVersionParameter", "api-version");
            return answer(s, h, b);
        }
        let prefix = format!(
            "/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-runners/providers/Microsoft.ContainerInstance/containerGroups"
        );
        let Some(rest) = uri.path().strip_prefix(&prefix) else {
            let (s, h, b) = arm_error(404, "ResourceGroupNotFound", "no such path");
            return answer(s, h, b);
        };
        if let Some(body) = &body {
            let errors = schema_errors(aci_schema(), body);
            if !errors.is_empty() {
                let (s, h, b) = arm_error(400, "InvalidRequestContent", &errors.join("; "));
                return answer(s, h, b);
            }
            f.bodies_checked += 1;
        }
        if let Some((s, h, b)) = f.canned.pop_front() {
            return answer(s, h, b);
        }
        let name = rest.trim_start_matches('/').to_owned();
        match (method, name.is_empty()) {
            (Method::PUT, false) => {
                if f.groups.contains_key(&name) {
                    panic!("a PUT on existing container group {name}: it would update or redeploy it");
                }
                let mut group = body.expect("PUT body");
                for c in group["properties"]["containers"].as_array_mut().expect("containers") {
                    for e in c["properties"]["environmentVariables"].as_array_mut().expect("env") {
                        e.as_object_mut().expect("env var").remove("secureValue");
                    }
                }
                group["name"] = json!(name);
                group["properties"]["provisioningState"] = json!("Succeeded");
                group["properties"]["instanceView"] = json!({"state": "Running"});
                group["systemData"] = json!({"createdAt": "2026-11-23T15:01:02Z"});
                f.groups.insert(name, group.clone());
                answer(201, vec![], group)
            }
            (Method::GET, false) => get_group(&f.groups, &name),
            (Method::DELETE, false) => delete_group(&mut f.groups, &name),
            (Method::GET, true) => {
                // Two groups per page, continued by an absolute nextLink.
                let skip: usize = uri
                    .query()
                    .unwrap_or_default()
                    .split('&')
                    .find_map(|kv| kv.strip_prefix("$skiptoken="))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                // Like ARM's list: no instance views, only the provisioning state.
                let all: Vec<Value> = f
                    .groups
                    .values()
                    .cloned()
                    .map(|mut g| {
                        g["properties"].as_object_mut().expect("properties").remove("instanceView");
                        g
                    })
                    .collect();
                let page: Vec<Value> = all.iter().skip(skip).take(2).cloned().collect();
                let mut body = json!({ "value": page });
                if skip + 2 < all.len() {
                    body["nextLink"] =
                        json!(format!("{}{prefix}?api-version={ACI_API_VERSION}&$skiptoken={}", f.base, skip + 2));
                }
                answer(200, vec![], body)
            }
            _ => answer(405, vec![], json!({"error": {"code": "MethodNotAllowed"}})),
        }
    }

    /// ARM's GET of one container group: the group, or 404 `ResourceNotFound`.
    fn get_group<K: Ord>(groups: &BTreeMap<K, Value>, key: &K) -> Response {
        match groups.get(key) {
            Some(g) => answer(200, vec![], g.clone()),
            None => {
                let (s, h, b) = arm_error(404, "ResourceNotFound", "not found");
                answer(s, h, b)
            }
        }
    }

    /// ARM's DELETE of one container group: 200 when it existed, else 204.
    fn delete_group<K: Ord>(groups: &mut BTreeMap<K, Value>, key: &K) -> Response {
        if groups.remove(key).is_some() { answer(200, vec![], json!({})) } else { answer(204, vec![], json!(null)) }
    }

    fn group_of(name: &str, pool: &str, state: &str) -> Value {
        let provisioning = if state == "Failed" { "Failed" } else { "Succeeded" };
        json!({
            "name": name,
            "tags": {"runner-dispatch-pool": pool, "runner-dispatch-job-id": name.rsplit('-').next().unwrap()},
            "properties": {"provisioningState": provisioning, "instanceView": {"state": state}, "osType": "Linux", "containers": []},
        })
    }

    /// GETs of the group list (pages) and of single groups.
    fn list_and_read_calls(f: &Fake) -> (usize, usize) {
        let gets = f.seen.iter().filter(|s| s.method == Method::GET);
        let lists = gets.clone().filter(|s| s.path.ends_with("/containerGroups")).count();
        (lists, gets.count() - lists)
    }

    fn aci(arm: &str, extra: &[(&str, &str)]) -> AciBackend {
        let s = settings(arm, "http://127.0.0.1:9", extra);
        AciBackend::new(&s, &credential(&s))
    }

    fn puts(f: &Fake) -> Vec<Seen> {
        f.seen.iter().filter(|s| s.method == Method::PUT).cloned().collect()
    }

    fn retry_after_of(e: &ProvisionError) -> Option<Duration> {
        match e {
            ProvisionError::Retryable { retry_after, .. } => *retry_after,
            ProvisionError::Deferred { retry_after, .. } => Some(*retry_after),
            ProvisionError::Permanent { .. } => None,
        }
    }

    // -----------------------------------------------------------------------------------
    // ACI
    // -----------------------------------------------------------------------------------

    azure_test!(
        /// The PUT carries the managed identity's token for the ARM audience, create-only,
        /// and a body Microsoft's model accepts (subnet, pull identity, jobs' identity).
        aci_create_puts_a_schema_valid_body_with_the_managed_identity_token,
        async {
            let (arm, fake) = start_arm().await;
            let backend = aci(&arm, &[]);
            let p = pool("linux-aci");
            let outcome = backend.create(&p, &jit_request(&p, 42)).await.expect("created");
            assert_eq!(outcome, CreateOutcome::Created);
            let hits = token_hits().await;
            let f = fake.lock().unwrap();
            let put = puts(&f).pop().expect("one PUT");
            assert_eq!(
                put.path,
                format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-runners/providers/Microsoft.ContainerInstance/containerGroups/ghr-42")
            );
            assert_eq!(put.query, "api-version=2025-09-01");
            assert_eq!(put.headers.get("if-none-match").unwrap(), "*");
            assert_eq!(f.bodies_checked, 1);
            let body = put.body.expect("body");
            assert_eq!(body["properties"]["restartPolicy"], "Never");
            assert_eq!(body["properties"]["osType"], "Linux");
            assert_eq!(body["location"], "westeurope");
            assert_eq!(body["properties"]["subnetIds"], json!([{ "id": SUBNET }]));
            assert_eq!(
                body["properties"]["imageRegistryCredentials"],
                json!([{ "server": "myacr.azurecr.io", "identity": PULL_ID }])
            );
            assert_eq!(body["identity"]["type"], "UserAssigned");
            let ids: Vec<&String> = body["identity"]["userAssignedIdentities"].as_object().unwrap().keys().collect();
            assert_eq!(ids, vec![PULL_ID, JOBS_ID]);
            let container = &body["properties"]["containers"][0];
            assert_eq!(container["name"], "runner");
            assert_eq!(container["properties"]["image"], "myacr.azurecr.io/actions-runner:2.330.0");
            assert_eq!(container["properties"]["resources"]["requests"], json!({"cpu": 2.0, "memoryInGB": 4.0}));
            assert_eq!(hits.len(), 1, "{hits:?}");
            assert_eq!(hits[0].resource, arm, "the ARM audience follows AZURE_RESOURCE_MANAGER_URL");
            assert!(hits[0].identity_header_ok && hits[0].api_version == "2019-08-01");
            assert_eq!(hits[0].client_id, None, "system-assigned without AZURE_CLIENT_ID");
        }
    );

    azure_test!(
        /// One token request for many calls; the user-assigned client id goes along.
        aci_token_is_fetched_once_and_cached_across_calls_with_the_user_assigned_client_id,
        async {
            let (arm, _fake) = start_arm().await;
            let backend = aci(&arm, &[("AZURE_CLIENT_ID", USER_ASSIGNED_CLIENT_ID)]);
            let p = pool("linux-aci");
            assert!(backend.find(&p, "ghr-1").await.expect("find").is_none());
            backend.create(&p, &jit_request(&p, 1)).await.expect("create");
            assert!(backend.find(&p, "ghr-1").await.expect("find").is_some());
            backend.list(&p).await.expect("list");
            backend.delete(&p, "ghr-1").await.expect("delete");
            let hits = token_hits().await;
            assert_eq!(hits.len(), 1, "fetched once: {hits:?}");
            assert_eq!(hits[0].client_id.as_deref(), Some(USER_ASSIGNED_CLIENT_ID));
        }
    );

    azure_test!(
        /// Secrets only in `secureValue`, plain values in `value`; the same request gives
        /// the same JSON, with the job's tags.
        aci_secrets_go_only_in_secure_value_and_the_body_is_deterministic_with_tags,
        async {
            let (arm, fake) = start_arm().await;
            let backend = aci(&arm, &[]);
            let p = pool("linux-aci");
            let req = jit_request(&p, 7);
            backend.create(&p, &req).await.expect("created");
            let sent = puts(&fake.lock().unwrap()).pop().unwrap().body.unwrap();
            assert_eq!(sent, container_group_body(&p, aci_part(&p), &req, "westeurope"), "what is sent is the pure builder's body");
            assert_eq!(container_group_body(&p, aci_part(&p), &req, "westeurope"), container_group_body(&p, aci_part(&p), &req, "westeurope"));
            assert_eq!(serde_json::to_string(&sent).unwrap(), serde_json::to_string(&container_group_body(&p, aci_part(&p), &req, "westeurope")).unwrap());
            let env = sent["properties"]["containers"][0]["properties"]["environmentVariables"].as_array().unwrap().clone();
            assert_eq!(
                env,
                vec![
                    json!({"name": "RUNNER_JITCONFIG", "secureValue": JIT_SECRET}),
                    json!({"name": "CUSTOM", "value": "plain-value"}),
                ]
            );
            for e in &env {
                assert_ne!(e.get("value").and_then(Value::as_str), Some(JIT_SECRET));
            }
            assert_eq!(
                sent["tags"],
                json!({
                    "cost-center": "1234",
                    "runner-dispatch-pool": "linux-aci",
                    "runner-dispatch-job-id": "7",
                    "runner-dispatch-run-id": "9001",
                    "runner-dispatch-repository": "octo-org/api",
                    "runner-dispatch-runner-id": "4242",
                    "runner-dispatch-job-created-at": "2026-11-23T15:00:00Z",
                })
            );
            let found = backend.find(&p, "ghr-7").await.expect("find").expect("exists");
            assert_eq!(found.job_id, Some(7));
            assert_eq!(found.repository.as_deref(), Some("octo-org/api"));
            assert_eq!(found.state, ComputeState::Running);
            assert!(found.created_at.is_some());
        }
    );

    azure_test!(
        /// Windows, no VNet, no identities, registration-mode variables: still valid.
        aci_windows_body_with_registration_variables_is_schema_valid,
        async {
            let (arm, fake) = start_arm().await;
            let backend = aci(&arm, &[]);
            let p = pool("windows-aci");
            let req = registration_request(&p, 8);
            assert_eq!(backend.create(&p, &req).await.expect("created"), CreateOutcome::Created);
            let body = puts(&fake.lock().unwrap()).pop().unwrap().body.unwrap();
            assert_eq!(body["properties"]["osType"], "Windows");
            assert!(body.get("identity").is_none() && body["properties"].get("subnetIds").is_none());
            assert!(body["properties"].get("imageRegistryCredentials").is_none());
            let env = body["properties"]["containers"][0]["properties"]["environmentVariables"].clone();
            assert!(env.as_array().unwrap().contains(&json!({"name": "RUNNER_TOKEN", "secureValue": JIT_SECRET})));
            assert_eq!(fake.lock().unwrap().bodies_checked, 1);
        }
    );

    azure_test!(
        /// An expired or revoked token is a deferral. (Our cache drops the token; the
        /// managed identity credential keeps its own cache until five minutes before expiry.)
        aci_a_401_is_retryable,
        async {
            let (arm, fake) = start_arm().await;
            let backend = aci(&arm, &[]);
            let p = pool("linux-aci");
            fake.lock().unwrap().canned.push_back(arm_error(401, "ExpiredAuthenticationToken", "expired"));
            let e = backend.find(&p, "ghr-1").await.expect_err("401");
            assert!(e.is_retryable() && e.to_string().contains("ExpiredAuthenticationToken"), "{e}");
            assert_eq!(backend.find(&p, "ghr-1").await.expect("next call"), None);
        }
    );

    azure_test!(aci_conflict_on_create_is_already_exists, async {
        let (arm, fake) = start_arm().await;
        let backend = aci(&arm, &[]);
        let p = pool("linux-aci");
        fake.lock().unwrap().canned.push_back(arm_error(409, "Conflict", "The container group already exists."));
        assert_eq!(backend.create(&p, &jit_request(&p, 5)).await.expect("ok"), CreateOutcome::AlreadyExists);
        fake.lock().unwrap().canned.push_back(arm_error(412, "PreconditionFailed", "If-None-Match"));
        assert_eq!(backend.create(&p, &jit_request(&p, 5)).await.expect("ok"), CreateOutcome::AlreadyExists);
    });

    azure_test!(
        /// Quota and capacity are deferrals whatever the status: `ContainerGroupQuotaReached`
        /// comes as a 400, `ServiceUnavailable` as a 409 (which is not "already exists").
        aci_quota_and_capacity_error_codes_are_retryable,
        async {
            let (arm, fake) = start_arm().await;
            let backend = aci(&arm, &[]);
            let p = pool("linux-aci");
            fake.lock().unwrap().canned.push_back(arm_error(
                400,
                "ContainerGroupQuotaReached",
                "Resource type 'Microsoft.ContainerInstance/containerGroups' container group quota 'StandardCores' exceeded in region 'westeurope'. Limit: '10', Usage: '10' Requested: '2'.",
            ));
            let e = backend.create(&p, &jit_request(&p, 6)).await.expect_err("quota");
            assert!(e.is_retryable(), "{e}");
            assert!(e.to_string().contains("ContainerGroupQuotaReached"), "{e}");
            fake.lock().unwrap().canned.push_back(arm_error(
                409,
                "ServiceUnavailable",
                "The requested resource is not available in the location 'westeurope' at this moment.",
            ));
            let e = backend.create(&p, &jit_request(&p, 6)).await.expect_err("capacity");
            assert!(e.is_retryable(), "{e}");
        }
    );

    azure_test!(aci_throttling_is_retryable_and_honours_retry_after, async {
        let (arm, fake) = start_arm().await;
        let backend = aci(&arm, &[]);
        let p = pool("linux-aci");
        fake.lock().unwrap().canned.push_back((
            429,
            vec![("retry-after", "37".into())],
            json!({"error": {"code": "TooManyRequests", "message": "throttled"}}),
        ));
        let e = backend.create(&p, &jit_request(&p, 9)).await.expect_err("throttled");
        assert!(e.is_retryable());
        assert_eq!(retry_after_of(&e), Some(Duration::from_secs(37)));
        fake.lock().unwrap().canned.push_back(arm_error(500, "InternalServerError", "oops"));
        assert!(backend.find(&p, "ghr-9").await.expect_err("5xx").is_retryable());
    });

    azure_test!(
        /// A bad image is permanent, with a reason that helps and no secret in it.
        aci_inaccessible_image_is_permanent_with_a_helpful_reason_without_secrets,
        async {
            let (arm, fake) = start_arm().await;
            let backend = aci(&arm, &[]);
            let p = pool("linux-aci");
            fake.lock().unwrap().canned.push_back(arm_error(
                400,
                "InaccessibleImage",
                &format!("The image 'myacr.azurecr.io/actions-runner:2.330.0' in container group 'ghr-10' is not accessible. Please check the image and registry credential. env={JIT_SECRET}"),
            ));
            let e = backend.create(&p, &jit_request(&p, 10)).await.expect_err("bad image");
            assert!(!e.is_retryable(), "{e}");
            let reason = e.to_string();
            assert!(reason.contains("InaccessibleImage") && reason.contains("image_pull_identity"), "{reason}");
            assert!(!reason.contains(JIT_SECRET), "{reason}");
            fake.lock().unwrap().canned.push_back(arm_error(403, "AuthorizationFailed", "no write"));
            let e = backend.create(&p, &jit_request(&p, 10)).await.expect_err("forbidden");
            assert!(!e.is_retryable() && e.to_string().contains("Contributor"), "{e}");
        }
    );

    azure_test!(aci_find_of_a_missing_group_is_none_and_of_a_failed_group_is_failed, async {
        let (arm, fake) = start_arm().await;
        let backend = aci(&arm, &[]);
        let p = pool("linux-aci");
        assert_eq!(backend.find(&p, "ghr-404").await.expect("find"), None);
        let example: Value = serde_json::from_str(
            &std::fs::read_to_string(format!(
                "{}/tests/fixtures/azure-aci/ContainerGroupsGet_Failed.2025-09-01.json",
                env!("CARGO_MANIFEST_DIR")
            ))
            .unwrap(),
        )
        .unwrap();
        fake.lock().unwrap().canned.push_back((200, vec![], example["responses"]["200"]["body"].clone()));
        let found = backend.find(&p, "demo1").await.expect("find").expect("exists");
        assert_eq!(found.state, ComputeState::Failed);
        assert!(found.state.is_finished());
    });

    azure_test!(aci_invalid_names_are_refused_before_calling_azure, async {
        let (arm, fake) = start_arm().await;
        let backend = aci(&arm, &[]);
        let p = pool("linux-aci");
        let mut req = jit_request(&p, 1);
        req.name = "Bad_Name".into();
        assert!(!backend.create(&p, &req).await.expect_err("invalid").is_retryable());
        assert!(fake.lock().unwrap().seen.is_empty());
    });

    azure_test!(
        /// Paging through `nextLink`, and only groups tagged with this pool.
        aci_list_follows_next_link_and_keeps_only_the_pools_groups,
        async {
            let (arm, fake) = start_arm().await;
            let backend = aci(&arm, &[]);
            let p = pool("linux-aci");
            {
                let mut f = fake.lock().unwrap();
                for (name, pool, state) in [
                    ("ghr-1", "linux-aci", "Running"),
                    ("ghr-2", "windows-aci", "Running"),
                    ("ghr-3", "linux-aci", "Succeeded"),
                    ("ghr-4", "linux-aci", "Pending"),
                    ("ghr-6", "linux-aci", "Failed"),
                    ("other", "", "Running"),
                ] {
                    f.groups.insert(name.into(), group_of(name, pool, state));
                }
            }
            let mut listed: Vec<(String, ComputeState, Option<u64>)> =
                backend.list(&p).await.expect("list").into_iter().map(|c| (c.name, c.state, c.job_id)).collect();
            listed.sort_by(|a, b| a.0.cmp(&b.0));
            assert_eq!(
                listed,
                vec![
                    ("ghr-1".into(), ComputeState::Running, Some(1)),
                    ("ghr-3".into(), ComputeState::Succeeded, Some(3)),
                    ("ghr-4".into(), ComputeState::Pending, Some(4)),
                    ("ghr-6".into(), ComputeState::Failed, Some(6)),
                ]
            );
            let (lists, reads) = list_and_read_calls(&fake.lock().unwrap());
            assert_eq!(lists, 3, "6 groups at 2 per page");
            assert_eq!(reads, 3, "the list omits instance views: read the pool's groups not known to be failed");
        }
    );

    azure_test!(
        /// `max_runners` counts unfinished groups with one list call, reused for seconds.
        aci_active_count_is_cached_for_a_few_seconds,
        async {
            let (arm, fake) = start_arm().await;
            let backend = aci(&arm, &[]);
            let p = pool("linux-aci");
            {
                let mut f = fake.lock().unwrap();
                f.groups.insert("ghr-1".into(), group_of("ghr-1", "linux-aci", "Running"));
                f.groups.insert("ghr-2".into(), group_of("ghr-2", "linux-aci", "Failed"));
                f.groups.insert("ghr-3".into(), group_of("ghr-3", "linux-aci", "Pending"));
                f.groups.insert("ghr-9".into(), group_of("ghr-9", "windows-aci", "Running"));
            }
            assert_eq!(backend.active_count(&p).await.expect("count"), Some(2), "failed groups do not count");
            fake.lock().unwrap().groups.insert("ghr-5".into(), group_of("ghr-5", "linux-aci", "Running"));
            assert_eq!(backend.active_count(&p).await.expect("count"), Some(2), "cached");
            assert_eq!(list_and_read_calls(&fake.lock().unwrap()), (2, 0), "one list call (two pages), no reads");
            backend.create(&p, &jit_request(&p, 6)).await.expect("create");
            assert_eq!(backend.active_count(&p).await.expect("count"), Some(3), "our own create counts at once");
            backend.delete(&p, "ghr-6").await.expect("delete");
            assert_eq!(backend.active_count(&p).await.expect("count"), Some(2), "and our own delete");
            assert_eq!(list_and_read_calls(&fake.lock().unwrap()), (2, 0), "still one list call");
            let short = aci(&arm, &[]).with_active_count_ttl(Duration::from_millis(1));
            assert_eq!(short.active_count(&p).await.unwrap(), Some(3), "ghr-1, ghr-3 and ghr-5");
        }
    );

    azure_test!(aci_delete_of_a_missing_group_is_ok, async {
        let (arm, fake) = start_arm().await;
        let backend = aci(&arm, &[]);
        let p = pool("linux-aci");
        backend.delete(&p, "ghr-77").await.expect("missing is fine");
        fake.lock().unwrap().canned.push_back(arm_error(404, "ResourceNotFound", "gone"));
        backend.delete(&p, "ghr-77").await.expect("404 is fine");
        fake.lock().unwrap().canned.push_back(arm_error(409, "Conflict", "busy"));
        assert!(backend.delete(&p, "ghr-77").await.is_err());
    });

    // -----------------------------------------------------------------------------------
    // The fake Batch account
    // -----------------------------------------------------------------------------------

    fn batch_error(status: u16, code: &str, message: &str) -> Canned {
        (
            status,
            vec![],
            json!({
                "odata.metadata": "https://acct.westeurope.batch.azure.com/$metadata#Microsoft.Azure.Batch.Protocol.Entities.Container.errors/@Element",
                "code": code,
                "message": {"lang": "en-US", "value": format!("{message}\nRequestId:00000000-0000-0000-0000-000000000000\nTime:2026-11-23T15:00:00.0000000Z")},
            }),
        )
    }

    async fn start_batch(shared_key: Option<SharedKey>) -> (String, Shared) {
        let fake: Shared = Arc::default();
        let url = serve(Router::new().fallback(batch_handler).with_state(fake.clone())).await;
        {
            let mut f = fake.lock().unwrap();
            f.base = url.clone();
            f.shared_key = shared_key;
            f.expect_token = Some(token_for(BATCH_RESOURCE));
        }
        (url, fake)
    }

    #[allow(clippy::too_many_lines)]
    async fn batch_handler(
        State(fake): State<Shared>,
        method: Method,
        uri: Uri,
        headers: HeaderMap,
        body: Bytes,
    ) -> Response {
        let mut f = fake.lock().unwrap();
        let json_body: Option<Value> = (!body.is_empty()).then(|| serde_json::from_slice(&body).expect("json body"));
        f.seen.push(Seen {
            method: method.clone(),
            path: uri.path().to_owned(),
            query: uri.query().unwrap_or_default().to_owned(),
            headers: headers.clone(),
            body: json_body.clone(),
        });
        let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        let authorized = match &f.shared_key {
            Some(key) => {
                // Recomputed over what arrived: headers and URL as the server sees them.
                let url = reqwest::Url::parse(&format!("{}{}", f.base, uri)).unwrap();
                auth == key.authorization(method.as_str(), &url, &headers) && headers.contains_key("ocp-date")
            }
            None => Some(auth.strip_prefix("Bearer ").unwrap_or_default()) == f.expect_token.as_deref(),
        };
        if !authorized {
            let (s, h, b) = batch_error(403, "AuthenticationFailed", "Server failed to authenticate the request.");
            return answer(s, h, b);
        }
        if !uri.query().unwrap_or_default().contains(&format!("api-version={BATCH_API_VERSION}")) {
            let (s, h, b) = batch_error(400, "MissingRequiredQueryParameter", "api-version");
            return answer(s, h, b);
        }
        if method == Method::POST
            && headers.get("content-type").and_then(|v| v.to_str().ok())
                != Some("application/json; odata=minimalmetadata")
        {
            let (s, h, b) = batch_error(400, "InvalidHeaderValue", "content-type");
            return answer(s, h, b);
        }
        let segments: Vec<String> = uri.path().trim_start_matches('/').split('/').map(str::to_owned).collect();
        let seg: Vec<&str> = segments.iter().map(String::as_str).collect();
        if let Some(b) = &json_body {
            let validator = if seg == ["jobs"] { job_schema() } else { task_schema() };
            let errors = schema_errors(validator, b);
            if !errors.is_empty() {
                let (s, h, b) = batch_error(400, "InvalidPropertyValue", &errors.join("; "));
                return answer(s, h, b);
            }
            f.bodies_checked += 1;
        }
        if let Some((s, h, b)) = f.canned.pop_front() {
            return answer(s, h, b);
        }
        match (method, seg.as_slice()) {
            (Method::POST, ["jobs"]) => {
                let job = json_body.unwrap();
                let id = job["id"].as_str().unwrap().to_owned();
                if f.jobs.contains_key(&id) {
                    let (s, h, b) = batch_error(409, "JobExists", "The specified job already exists.");
                    return answer(s, h, b);
                }
                f.jobs.insert(id, job);
                answer(201, vec![], json!(null))
            }
            (Method::POST, ["jobs", job, "tasks"]) => {
                if !f.jobs.contains_key(*job) {
                    let (s, h, b) = batch_error(404, "JobNotFound", "The specified job does not exist.");
                    return answer(s, h, b);
                }
                let mut task = json_body.unwrap();
                let id = task["id"].as_str().unwrap().to_owned();
                if f.tasks.keys().any(|(j, t)| j == job && t.eq_ignore_ascii_case(&id)) {
                    let (s, h, b) = batch_error(409, "TaskExists", "The specified task already exists.");
                    return answer(s, h, b);
                }
                task["state"] = json!("active");
                task["creationTime"] = json!("2026-11-23T15:01:02.123Z");
                f.tasks.insert(((*job).to_owned(), id), task);
                answer(201, vec![], json!(null))
            }
            (Method::GET, ["jobs", job, "tasks", task]) => {
                match f.tasks.get(&((*job).to_owned(), (*task).to_owned())) {
                    Some(t) => answer(200, vec![], t.clone()),
                    None => {
                        let (s, h, b) = batch_error(404, "TaskNotFound", "The specified task does not exist.");
                        answer(s, h, b)
                    }
                }
            }
            (Method::DELETE, ["jobs", job, "tasks", task]) => {
                if f.tasks.remove(&((*job).to_owned(), (*task).to_owned())).is_some() {
                    answer(200, vec![], json!(null))
                } else {
                    let (s, h, b) = batch_error(404, "TaskNotFound", "The specified task does not exist.");
                    answer(s, h, b)
                }
            }
            (Method::GET, ["jobs", job, "tasks"]) => {
                if !f.jobs.contains_key(*job) {
                    let (s, h, b) = batch_error(404, "JobNotFound", "The specified job does not exist.");
                    return answer(s, h, b);
                }
                let skip: usize = uri
                    .query()
                    .unwrap_or_default()
                    .split('&')
                    .find_map(|kv| kv.strip_prefix("skip="))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                let all: Vec<Value> = f.tasks.iter().filter(|((j, _), _)| j == job).map(|(_, t)| t.clone()).collect();
                let page: Vec<Value> = all.iter().skip(skip).take(2).cloned().collect();
                let mut body = json!({ "value": page });
                if skip + 2 < all.len() {
                    body["odata.nextLink"] =
                        json!(format!("{}/jobs/{job}/tasks?api-version={BATCH_API_VERSION}&skip={}", f.base, skip + 2));
                }
                answer(200, vec![], body)
            }
            _ => answer(405, vec![], json!({"code": "MethodNotAllowed"})),
        }
    }

    fn batch(batch_url: &str, extra: &[(&str, &str)]) -> BatchBackend {
        let s = settings("http://127.0.0.1:9", batch_url, extra);
        BatchBackend::new(&s, &credential(&s)).expect("batch backend")
    }

    fn posts(f: &Fake, path: &str) -> Vec<Seen> {
        f.seen.iter().filter(|s| s.method == Method::POST && s.path == path).cloned().collect()
    }

    // -----------------------------------------------------------------------------------
    // Batch
    // -----------------------------------------------------------------------------------

    azure_test!(
        /// The pool's job is made once (and remembered); tasks are schema-valid container
        /// tasks with the managed identity's Batch token.
        batch_create_makes_the_job_once_and_adds_schema_valid_tasks,
        async {
            let (url, fake) = start_batch(None).await;
            let backend = batch(&url, &[]);
            let p = pool("linux-batch");
            assert_eq!(backend.create(&p, &jit_request(&p, 1)).await.expect("1"), CreateOutcome::Created);
            assert_eq!(backend.create(&p, &jit_request(&p, 2)).await.expect("2"), CreateOutcome::Created);
            let hits = token_hits().await;
            let f = fake.lock().unwrap();
            let jobs = posts(&f, "/jobs");
            assert_eq!(jobs.len(), 1, "job created once and cached");
            assert_eq!(jobs[0].body.as_ref().unwrap(), &batch_job_body(batch_part(&p)));
            assert_eq!(jobs[0].body.as_ref().unwrap()["poolInfo"]["poolId"], "linux-pool");
            assert_eq!(jobs[0].body.as_ref().unwrap()["onAllTasksComplete"], "noaction");
            let tasks = posts(&f, "/jobs/runner-dispatch-linux-pool/tasks");
            assert_eq!(tasks.len(), 2);
            assert_eq!(f.bodies_checked, 3);
            let task = tasks[0].body.clone().unwrap();
            assert_eq!(task, batch_task_body(&p, batch_part(&p), &jit_request(&p, 1)));
            assert_eq!(task["id"], "ghr-1");
            assert_eq!(task["commandLine"], "/bin/sh -c 'exec /entrypoint.sh'");
            assert_eq!(task["containerSettings"]["imageName"], "myacr.azurecr.io/actions-runner:2.330.0");
            assert_eq!(
                task["containerSettings"]["registry"],
                json!({"registryServer": "myacr.azurecr.io", "identityReference": {"resourceId": PULL_ID}})
            );
            assert_eq!(task["constraints"]["maxWallClockTime"], "PT7200S");
            assert_eq!(task["constraints"]["maxTaskRetryCount"], 0);
            assert_eq!(task["userIdentity"], json!({"autoUser": {"scope": "pool", "elevationLevel": "nonadmin"}}));
            assert!(tasks[0].query.contains("api-version=2025-06-01.21.0"));
            assert_eq!(hits.len(), 1, "one Batch token for all calls: {hits:?}");
            assert_eq!(hits[0].resource, BATCH_RESOURCE);
        }
    );

    azure_test!(batch_task_exists_is_already_exists, async {
        let (url, _fake) = start_batch(None).await;
        let backend = batch(&url, &[]);
        let p = pool("linux-batch");
        assert_eq!(backend.create(&p, &jit_request(&p, 3)).await.expect("1"), CreateOutcome::Created);
        assert_eq!(backend.create(&p, &jit_request(&p, 3)).await.expect("2"), CreateOutcome::AlreadyExists);
    });

    azure_test!(
        /// A job deleted behind our back: create it again, then retry the task once.
        batch_job_not_found_creates_the_job_and_retries_the_task,
        async {
            let (url, fake) = start_batch(None).await;
            let backend = batch(&url, &[]);
            let p = pool("linux-batch");
            backend.create(&p, &jit_request(&p, 1)).await.expect("first");
            fake.lock().unwrap().jobs.clear();
            assert_eq!(backend.create(&p, &jit_request(&p, 2)).await.expect("second"), CreateOutcome::Created);
            let f = fake.lock().unwrap();
            let order: Vec<String> = f.seen.iter().map(|s| format!("{} {}", s.method, s.path)).collect();
            assert_eq!(
                order,
                vec![
                    "POST /jobs",
                    "POST /jobs/runner-dispatch-linux-pool/tasks",
                    "POST /jobs/runner-dispatch-linux-pool/tasks",
                    "POST /jobs",
                    "POST /jobs/runner-dispatch-linux-pool/tasks",
                ]
            );
            assert!(f.tasks.contains_key(&("runner-dispatch-linux-pool".into(), "ghr-2".into())));
        }
    );

    azure_test!(batch_an_existing_job_counts_as_ready, async {
        let (url, fake) = start_batch(None).await;
        let p = pool("windows-batch");
        fake.lock().unwrap().jobs.insert(batch_job_id("windows-pool"), json!({}));
        let backend = batch(&url, &[]);
        assert_eq!(backend.create(&p, &jit_request(&p, 4)).await.expect("ok"), CreateOutcome::Created);
        let f = fake.lock().unwrap();
        assert_eq!(posts(&f, "/jobs").len(), 1, "one POST /jobs answered JobExists");
        let task = posts(&f, "/jobs/runner-dispatch-windows-pool/tasks").pop().unwrap().body.unwrap();
        assert_eq!(task["commandLine"], r"powershell -NoProfile -ExecutionPolicy Bypass -File C:\entrypoint.ps1");
    });

    azure_test!(
        /// run_on_host runs the runner on the VM as admin, on Linux and Windows, in JIT and
        /// registration mode; every body is valid.
        batch_run_on_host_tasks_are_schema_valid_and_start_the_installed_runner,
        async {
            let (url, fake) = start_batch(None).await;
            let backend = batch(&url, &[]);
            let linux = pool("docker-host");
            let windows = pool("windows-host");
            backend.create(&linux, &jit_request(&linux, 1)).await.expect("linux jit");
            backend.create(&linux, &registration_request(&linux, 2)).await.expect("linux registration");
            backend.create(&windows, &jit_request(&windows, 3)).await.expect("windows jit");
            backend.create(&windows, &registration_request(&windows, 4)).await.expect("windows registration");
            let f = fake.lock().unwrap();
            assert_eq!(f.bodies_checked, 6, "2 jobs + 4 tasks");
            let task = posts(&f, "/jobs/runner-dispatch-docker-pool/tasks")[0].body.clone().unwrap();
            assert_eq!(task["id"], "dock-1");
            assert!(task.get("containerSettings").is_none());
            assert_eq!(task["userIdentity"]["autoUser"]["elevationLevel"], "admin");
            let cmd = task["commandLine"].as_str().unwrap();
            assert!(cmd.starts_with("/bin/sh -c '") && cmd.contains("/opt/actions-runner/."), "{cmd}");
            assert!(cmd.contains("./run.sh --jitconfig \"$RUNNER_JITCONFIG\""), "{cmd}");
            let wtask = posts(&f, "/jobs/runner-dispatch-windows-host-pool/tasks")[0].body.clone().unwrap();
            let wcmd = wtask["commandLine"].as_str().unwrap();
            assert!(wcmd.starts_with("powershell ") && wcmd.contains(r"C:\actions-runner"), "{wcmd}");
            assert!(wcmd.contains("run.cmd --jitconfig $env:RUNNER_JITCONFIG"), "{wcmd}");
        }
    );

    /// Captures log output for one test.
    #[derive(Clone, Default)]
    struct LogBuffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for LogBuffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogBuffer {
        type Writer = LogBuffer;
        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    azure_test!(
        /// Task settings carry the JIT config (readable on the account, documented), but
        /// errors and logs never do, even when Batch echoes it back.
        batch_secrets_never_reach_errors_or_logs,
        async {
            let logs = LogBuffer::default();
            let subscriber = tracing_subscriber::fmt()
                .with_writer(logs.clone())
                .with_max_level(tracing::Level::TRACE)
                .with_ansi(false)
                .finish();
            let _guard = tracing::subscriber::set_default(subscriber);
            let (url, fake) = start_batch(None).await;
            let backend = batch(&url, &[]);
            let p = pool("linux-batch");
            let mut canned = batch_error(400, "InvalidPropertyValue", &format!("The value {JIT_SECRET} is invalid."));
            canned.2["values"] = json!([
                {"key": "PropertyName", "value": "environmentSettings"},
                {"key": "PropertyValue", "value": JIT_SECRET},
            ]);
            {
                let mut f = fake.lock().unwrap();
                f.jobs.insert(batch_job_id("linux-pool"), json!({}));
                f.canned.push_back(batch_error(409, "JobExists", "exists"));
                f.canned.push_back(canned);
            }
            let e = backend.create(&p, &jit_request(&p, 11)).await.expect_err("refused");
            assert!(!e.is_retryable());
            let reason = e.to_string();
            assert!(reason.contains("InvalidPropertyValue") && reason.contains("environmentSettings"), "{reason}");
            assert!(!reason.contains(JIT_SECRET), "{reason}");
            let f = fake.lock().unwrap();
            let sent = posts(&f, "/jobs/runner-dispatch-linux-pool/tasks").pop().unwrap().body.unwrap();
            assert!(sent["environmentSettings"].as_array().unwrap().contains(&json!({"name": "RUNNER_JITCONFIG", "value": JIT_SECRET})));
            let logged = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
            assert!(logged.contains("batch_create_failed"), "the failure is logged: {logged}");
            assert!(!logged.contains(JIT_SECRET), "{logged}");
            assert!(!logged.contains(&token_for(BATCH_RESOURCE)), "tokens are never logged: {logged}");
        }
    );

    azure_test!(batch_throttling_quota_and_busy_servers_are_retryable, async {
        let (url, fake) = start_batch(None).await;
        let backend = batch(&url, &[]);
        let p = pool("linux-batch");
        fake.lock().unwrap().canned.push_back((
            429,
            vec![("retry-after", "12".into())],
            json!({"code": "TooManyRequests", "message": {"value": "slow down"}}),
        ));
        let e = backend.create(&p, &jit_request(&p, 1)).await.expect_err("throttled");
        assert!(e.is_retryable());
        assert_eq!(retry_after_of(&e), Some(Duration::from_secs(12)));
        fake.lock().unwrap().canned.push_back(batch_error(409, "ActiveJobAndScheduleQuotaReached", "quota"));
        assert!(backend.create(&p, &jit_request(&p, 1)).await.expect_err("quota").is_retryable());
        fake.lock().unwrap().canned.push_back(batch_error(503, "ServerBusy", "busy"));
        assert!(backend.find(&p, "ghr-1").await.expect_err("busy").is_retryable());
    });

    azure_test!(batch_find_maps_task_states_and_missing_tasks_to_none, async {
        let (url, fake) = start_batch(None).await;
        let backend = batch(&url, &[]);
        let p = pool("linux-batch");
        assert_eq!(backend.find(&p, "ghr-1").await.expect("find"), None);
        backend.create(&p, &jit_request(&p, 1)).await.expect("create");
        let found = backend.find(&p, "ghr-1").await.expect("find").expect("exists");
        assert_eq!(found.state, ComputeState::Pending);
        assert_eq!(found.job_id, Some(1));
        assert_eq!(found.repository.as_deref(), Some("octo-org/api"));
        assert!(found.created_at.is_some());
        let key = ("runner-dispatch-linux-pool".to_owned(), "ghr-1".to_owned());
        for (patch, expected) in [
            (json!({"state": "running"}), ComputeState::Running),
            (
                json!({"state": "completed", "executionInfo": {"result": "success", "exitCode": 0}}),
                ComputeState::Succeeded,
            ),
            (
                json!({"state": "completed", "executionInfo": {"result": "failure", "exitCode": 1}}),
                ComputeState::Failed,
            ),
        ] {
            {
                let mut f = fake.lock().unwrap();
                let t = f.tasks.get_mut(&key).unwrap();
                for (k, v) in patch.as_object().unwrap() {
                    t[k] = v.clone();
                }
            }
            assert_eq!(backend.find(&p, "ghr-1").await.unwrap().unwrap().state, expected);
        }
    });

    azure_test!(batch_list_follows_odata_next_link_and_keeps_only_the_pools_tasks, async {
        let (url, fake) = start_batch(None).await;
        let backend = batch(&url, &[]);
        let p = pool("linux-batch");
        assert!(backend.list(&p).await.expect("no job yet").is_empty());
        for id in 1..=4 {
            backend.create(&p, &jit_request(&p, id)).await.expect("create");
        }
        {
            let mut f = fake.lock().unwrap();
            f.tasks.insert(
                ("runner-dispatch-linux-pool".into(), "manual-task".into()),
                json!({"id": "manual-task", "state": "active"}),
            );
        }
        let mut names: Vec<String> = backend.list(&p).await.expect("list").into_iter().map(|c| c.name).collect();
        names.sort();
        assert_eq!(names, vec!["ghr-1", "ghr-2", "ghr-3", "ghr-4"]);
        let f = fake.lock().unwrap();
        let lists: Vec<&Seen> =
            f.seen.iter().filter(|s| s.method == Method::GET && s.path.ends_with("/tasks")).collect();
        assert_eq!(lists.len(), 4, "1 before the job existed + 3 pages of 2");
        assert!(lists[1].query.contains("%24select=") || lists[1].query.contains("$select="), "{}", lists[1].query);
    });

    azure_test!(batch_delete_of_a_missing_task_is_ok_and_active_count_is_none, async {
        let (url, fake) = start_batch(None).await;
        let backend = batch(&url, &[]);
        let p = pool("linux-batch");
        backend.delete(&p, "ghr-5").await.expect("missing is fine");
        backend.create(&p, &jit_request(&p, 5)).await.expect("create");
        backend.delete(&p, "ghr-5").await.expect("deleted");
        assert!(fake.lock().unwrap().tasks.is_empty());
        assert_eq!(backend.active_count(&p).await.expect("count"), None, "Batch queues: autoscale is the cap");
    });

    azure_test!(
        /// Shared Key: every request is signed over exactly what the server receives
        /// (including Content-Length), and no token is asked for.
        batch_shared_key_requests_are_signed_as_received,
        async {
            let key = "cnVubmVyLWRpc3BhdGNoLXRlc3Qta2V5";
            let (url, fake) = start_batch(Some(SharedKey::new("acct", &Secret::new(key)).unwrap())).await;
            let backend = batch(&url, &[("AZURE_BATCH_ACCOUNT_NAME", "acct"), ("AZURE_BATCH_ACCOUNT_KEY", key)]);
            let p = pool("linux-batch");
            backend.create(&p, &jit_request(&p, 1)).await.expect("signed create");
            backend.find(&p, "ghr-1").await.expect("signed get").expect("exists");
            backend.list(&p).await.expect("signed list");
            backend.delete(&p, "ghr-1").await.expect("signed delete");
            assert!(token_hits().await.is_empty(), "Shared Key needs no token");
            let f = fake.lock().unwrap();
            assert_eq!(f.seen.len(), 5);
            for s in &f.seen {
                let auth = s.headers.get("authorization").unwrap().to_str().unwrap();
                assert!(auth.starts_with("SharedKey acct:"), "{auth}");
            }
        }
    );

    // -----------------------------------------------------------------------------------
    // Pure body builders (used by the demo and dry-run): every pool shape is valid
    // -----------------------------------------------------------------------------------

    #[test]
    fn every_body_builder_output_is_schema_valid() {
        let cfg = pools();
        for p in &cfg.pools {
            for req in [jit_request(p, 123), registration_request(p, 456)] {
                // Every pool's shape (OS, image, identities) as an ACI body too: a Batch
                // pool's with ACI's default sizes.
                let default_aci = AciPool {
                    cpu: 2.0,
                    memory_gb: 4.0,
                    subnet_id: None,
                    resource_group: None,
                    location: None,
                    placements: vec![],
                };
                let aci_part = if let Compute::Aci(a) = &p.compute { a } else { &default_aci };
                let aci = container_group_body(p, aci_part, &req, "westeurope");
                assert_eq!(schema_errors(aci_schema(), &aci), Vec::<String>::new(), "ACI body of {}", p.name);
                if let Compute::Batch(b) = &p.compute {
                    let task = batch_task_body(p, b, &req);
                    assert_eq!(schema_errors(task_schema(), &task), Vec::<String>::new(), "task of {}", p.name);
                    let job = batch_job_body(b);
                    assert_eq!(schema_errors(job_schema(), &job), Vec::<String>::new(), "job of {}", p.name);
                }
            }
        }
        // The schemas are strict: an unknown field is refused.
        let mut bad = batch_task_body(
            &pool("linux-batch"),
            batch_part(&pool("linux-batch")),
            &jit_request(&pool("linux-batch"), 1),
        );
        bad["metadata"] = json!([]);
        assert!(!schema_errors(task_schema(), &bad).is_empty());
    }

    #[test]
    fn the_azure_examples_validate_against_the_schemas() {
        let read = |p: &str| -> Value {
            serde_json::from_str(
                &std::fs::read_to_string(format!("{}/tests/fixtures/{p}", env!("CARGO_MANIFEST_DIR"))).unwrap(),
            )
            .unwrap()
        };
        let task = read("azure-batch/Tasks_CreateTask_ContainerSettings.2025-06-01.21.0.json");
        assert_eq!(schema_errors(task_schema(), &task["parameters"]["task"]), Vec::<String>::new());
        let job = read("azure-batch/JobAdd_Basic.2022-01-01.15.0.json");
        assert_eq!(schema_errors(job_schema(), &job["parameters"]["job"]), Vec::<String>::new());
    }

    // -----------------------------------------------------------------------------------
    // The idle runners' demand log in the Function App's storage account (append blobs)
    // -----------------------------------------------------------------------------------

    #[derive(Default)]
    struct BlobFake {
        blobs: BTreeMap<String, Vec<u8>>,
        container: bool,
        calls: Vec<String>,
    }

    async fn blob_answer(
        State(fake): State<Arc<Mutex<BlobFake>>>,
        req: axum::extract::Request,
    ) -> axum::response::Response {
        use axum::response::IntoResponse;
        let storage_token = format!("Bearer {}", token_for("https://storage.azure.com"));
        let headers = req.headers().clone();
        let header = |k: &str| headers.get(k).and_then(|v| v.to_str().ok()).map(str::to_owned);
        if header("authorization").as_deref() != Some(storage_token.as_str()) || header("x-ms-version").is_none() {
            return (StatusCode::FORBIDDEN, [("x-ms-error-code", "AuthenticationFailed")], "").into_response();
        }
        let method = req.method().to_string();
        let path = req.uri().path().to_owned();
        let query = req.uri().query().unwrap_or_default().to_owned();
        let (blob_type, if_none_match) = (header("x-ms-blob-type"), header("if-none-match"));
        drop(headers);
        let body = axum::body::to_bytes(req.into_body(), 1 << 20).await.expect("body");
        let mut f = fake.lock().unwrap();
        f.calls.push(format!("{method} {path}?{query}"));
        let missing = |code: &'static str| (StatusCode::NOT_FOUND, [("x-ms-error-code", code)], "").into_response();
        match (method.as_str(), query.as_str()) {
            ("PUT", "restype=container") => {
                if f.container {
                    return (StatusCode::CONFLICT, [("x-ms-error-code", "ContainerAlreadyExists")], "").into_response();
                }
                f.container = true;
                StatusCode::CREATED.into_response()
            }
            ("PUT", "comp=appendblock") => {
                let container = f.container;
                match f.blobs.get_mut(&path) {
                    Some(b) => {
                        b.extend_from_slice(&body);
                        StatusCode::CREATED.into_response()
                    }
                    None if container => missing("BlobNotFound"),
                    None => missing("ContainerNotFound"),
                }
            }
            ("PUT", "") => {
                assert_eq!(blob_type.as_deref(), Some("AppendBlob"));
                assert_eq!(if_none_match.as_deref(), Some("*"), "creating must never truncate a blob");
                if !f.container {
                    return missing("ContainerNotFound");
                }
                f.blobs.entry(path).or_default();
                StatusCode::CREATED.into_response()
            }
            ("GET", "") => match f.blobs.get(&path) {
                Some(b) => b.clone().into_response(),
                None => missing("BlobNotFound"),
            },
            _ => (StatusCode::IM_A_TEAPOT, "unexpected").into_response(),
        }
    }

    azure_test!(
        /// The first append creates the container and the append blob (never over an existing
        /// one), later appends just append, and the history reads back what was written.
        demand_log_appends_to_blobs_in_the_function_apps_storage_with_the_app_identity,
        async {
            use runner_dispatch::idle::demand::{BlobDemandLog, Record, STORAGE_SCOPE, history, record};
            let fake = Arc::new(Mutex::new(BlobFake::default()));
            let url = serve(Router::new().fallback(blob_answer).with_state(fake.clone())).await;
            let s = settings("http://unused", "http://unused", &[("AzureWebJobsStorage__blobServiceUri", &url)]);
            assert_eq!(s.azure.state_blob_url.as_deref(), Some(url.as_str()));
            let log = BlobDemandLog::new(&url, credential(&s).token_source(STORAGE_SCOPE));
            let now = time::OffsetDateTime::now_utc();
            let at = now.unix_timestamp() - 1;
            record(&log, "linux", &[Record::Arrival { job: 1, at }]).await;
            record(&log, "linux", &[Record::Arrival { job: 2, at }, Record::Started { job: 1, at, queued_s: 42, idle: false }]).await;
            let h = history(&log, "linux", now - time::Duration::hours(1), now).await.expect("history");
            assert_eq!(h.records.len(), 3, "{:?}", h.records);
            assert_eq!(h.demand().cold_start, Some(std::time::Duration::from_secs(42)));
            let calls = fake.lock().unwrap().calls.clone();
            let creates = calls.iter().filter(|c| c.ends_with('?') && c.starts_with("PUT")).count();
            assert_eq!(creates, 1, "one blob created: {calls:?}");
            assert_eq!(calls.iter().filter(|c| c.ends_with("restype=container")).count(), 1, "{calls:?}");
            assert!(calls.iter().all(|c| !c.contains("demand/linux/") || c.contains("/runner-dispatch-state/demand/linux/")));
        }
    );

    // -----------------------------------------------------------------------------------
    // ACI placements: one pool over resource groups, regions and subscriptions
    // -----------------------------------------------------------------------------------

    const OTHER_SUBSCRIPTION: &str = "11111111-1111-1111-1111-111111111111";

    /// ARM for several subscriptions and resource groups: groups by (subscription, group,
    /// name); a resource group may be scripted to refuse every create.
    #[derive(Default)]
    struct PlacementFake {
        groups: BTreeMap<(String, String, String), Value>,
        refuse: BTreeMap<String, (u16, &'static str, Option<u64>)>,
        seen: Vec<(String, String, String)>,
        token: String,
    }

    async fn placement_arm(
        State(fake): State<Arc<Mutex<PlacementFake>>>,
        method: Method,
        uri: Uri,
        headers: HeaderMap,
        body: Bytes,
    ) -> Response {
        let mut f = fake.lock().unwrap();
        let bearer = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default();
        if bearer.strip_prefix("Bearer ") != Some(f.token.as_str()) {
            let (s, h, b) = arm_error(401, "InvalidAuthenticationToken", "wrong token");
            return answer(s, h, b);
        }
        let parts: Vec<&str> = uri.path().trim_start_matches('/').split('/').collect();
        let [
            "subscriptions",
            sub,
            "resourceGroups",
            rg,
            "providers",
            "Microsoft.ContainerInstance",
            "containerGroups",
            rest @ ..,
        ] = parts.as_slice()
        else {
            let (s, h, b) = arm_error(404, "ResourceGroupNotFound", "no such path");
            return answer(s, h, b);
        };
        let (sub, rg) = ((*sub).to_owned(), (*rg).to_owned());
        let name = rest.first().copied().unwrap_or_default().to_owned();
        f.seen.push((method.to_string(), rg.clone(), name.clone()));
        let key = (sub.clone(), rg.clone(), name.clone());
        match (method, name.is_empty()) {
            (Method::PUT, false) => {
                let body: Value = serde_json::from_slice(&body).expect("json body");
                let errors = schema_errors(aci_schema(), &body);
                assert!(errors.is_empty(), "{errors:?}");
                if let Some((status, code, after)) = f.refuse.get(&rg).copied() {
                    let headers = after.map(|a| vec![("retry-after", a.to_string())]).unwrap_or_default();
                    return answer(
                        status,
                        headers,
                        json!({"error": {"code": code, "message": format!("{code} in {rg}")}}),
                    );
                }
                let mut group = body;
                group["name"] = json!(name);
                group["properties"]["provisioningState"] = json!("Succeeded");
                group["properties"]["instanceView"] = json!({"state": "Running"});
                f.groups.insert(key, group.clone());
                answer(201, vec![], group)
            }
            (Method::GET, false) => get_group(&f.groups, &key),
            (Method::DELETE, false) => delete_group(&mut f.groups, &key),
            (Method::GET, true) => {
                let value: Vec<Value> =
                    f.groups.iter().filter(|((s, r, _), _)| *s == sub && *r == rg).map(|(_, g)| g.clone()).collect();
                answer(200, vec![], json!({ "value": value }))
            }
            _ => answer(405, vec![], json!({})),
        }
    }

    fn spread_pools(max_runners: u32) -> Arc<PoolsConfig> {
        let text = format!(
            r#"
[github]
allowed_owners = ["octo-org"]
check_job_queued = "never"
[[pools]]
name = "spread"
backend = "aci"
labels = ["linux"]
image = "myacr.azurecr.io/actions-runner:2.330.0"
max_runners = {max_runners}
placements = [
  {{ location = "westeurope", resource_group = "rg-a", subnet_id = "{SUBNET}" }},
  {{ location = "northeurope", resource_group = "rg-b", subscription_id = "{OTHER_SUBSCRIPTION}" }},
  {{ location = "swedencentral", resource_group = "rg-c" }},
]
"#
        );
        Arc::new(PoolsConfig::parse(&text).expect("placement pools"))
    }

    struct Spread {
        fake: Arc<Mutex<PlacementFake>>,
        provisioner: runner_dispatch::provision::Provisioner,
        github: Arc<runner_dispatch::testing::FakeGitHub>,
        backend: Arc<AciBackend>,
    }

    async fn spread(max_runners: u32) -> Spread {
        let fake: Arc<Mutex<PlacementFake>> = Arc::default();
        let url = serve(Router::new().fallback(placement_arm).with_state(fake.clone())).await;
        fake.lock().unwrap().token = token_for(&url);
        let backend = Arc::new(aci(&url, &[]).with_active_count_ttl(Duration::ZERO));
        let github = Arc::new(runner_dispatch::testing::FakeGitHub::default());
        let provisioner = runner_dispatch::provision::Provisioner::new(
            spread_pools(max_runners),
            github.clone(),
            runner_dispatch::provision::Backends::single(backend.clone()),
        );
        Spread { fake, provisioner, github, backend }
    }

    fn spread_message(job_id: u64) -> runner_dispatch::message::RunnerMessage {
        runner_dispatch::testing::provision_message(job_id, "spread", &["linux"])
    }

    impl Spread {
        fn jit_calls(&self) -> usize {
            self.github.calls().iter().filter(|c| c.starts_with("jit ")).count()
        }

        fn puts_in(&self, rg: &str) -> usize {
            self.fake.lock().unwrap().seen.iter().filter(|(m, r, _)| m == "PUT" && r == rg).count()
        }

        fn group_in(&self, rg: &str, name: &str) -> Option<Value> {
            self.fake.lock().unwrap().groups.iter().find(|((_, r, n), _)| r == rg && n == name).map(|(_, g)| g.clone())
        }
    }

    azure_test!(
        /// A quota refusal in the first placement: the same attempt creates in the second,
        /// with the one JIT configuration; the refused placement is passed over afterwards.
        aci_a_quota_refusal_in_one_placement_creates_in_the_next_in_the_same_attempt,
        async {
            let s = spread(10).await;
            s.fake.lock().unwrap().refuse.insert("rg-a".into(), (400, "ContainerGroupQuotaReached", Some(120)));
            let out = s.provisioner.provision(&spread_message(1), 1).await.expect("created");
            assert!(matches!(out, runner_dispatch::provision::ProvisionOutcome::Created { .. }), "{out:?}");
            assert_eq!(s.jit_calls(), 1);
            let group = s.group_in("rg-b", "ghr-1").expect("created in rg-b");
            assert_eq!(group["location"], "northeurope");
            assert_eq!(group["tags"]["runner-dispatch-placement"], "northeurope");
            assert!(group["properties"].get("subnetIds").is_none(), "rg-a's subnet is regional: not used elsewhere");
            assert!(s.fake.lock().unwrap().groups.keys().all(|(sub, r, _)| r != "rg-b" || sub == OTHER_SUBSCRIPTION));
            // The next job skips the paused placement: no PUT in rg-a.
            let before = s.puts_in("rg-a");
            s.provisioner.provision(&spread_message(2), 1).await.expect("created");
            assert_eq!(s.puts_in("rg-a"), before);
            assert!(s.group_in("rg-b", "ghr-2").is_some());
        }
    );

    azure_test!(
        /// A region out of capacity (409 ServiceUnavailable) fails over the same way, in
        /// order of preference.
        aci_a_capacity_refusal_fails_over_in_order_of_preference,
        async {
            let s = spread(10).await;
            {
                let mut f = s.fake.lock().unwrap();
                f.refuse.insert("rg-a".into(), (409, "ServiceUnavailable", None));
                f.refuse.insert("rg-b".into(), (400, "ContainerGroupQuotaReached", None));
            }
            s.provisioner.provision(&spread_message(3), 1).await.expect("created");
            assert!(s.group_in("rg-c", "ghr-3").is_some());
            assert_eq!((s.puts_in("rg-a"), s.puts_in("rg-b"), s.puts_in("rg-c")), (1, 1, 1));
            assert_eq!(s.jit_calls(), 1);
        }
    );

    azure_test!(
        /// Every placement refusing: a deferral until the earliest is free; the next request
        /// is deferred before any GitHub call.
        aci_all_placements_paused_is_a_deferral_that_costs_no_github_call,
        async {
            let s = spread(10).await;
            {
                let mut f = s.fake.lock().unwrap();
                for rg in ["rg-a", "rg-b", "rg-c"] {
                    f.refuse.insert(rg.into(), (400, "ContainerGroupQuotaReached", Some(if rg == "rg-b" { 60 } else { 600 })));
                }
            }
            let e = s.provisioner.provision(&spread_message(4), 1).await.expect_err("all refused");
            assert!(matches!(e, ProvisionError::Deferred { .. }), "{e:?}");
            assert_eq!(retry_after_of(&e), Some(Duration::from_secs(60)), "the earliest placement");
            let calls = s.github.calls().len();
            let e = s.provisioner.provision(&spread_message(5), 1).await.expect_err("still paused");
            assert!(matches!(e, ProvisionError::Deferred { .. }), "{e:?}");
            assert_eq!(s.github.calls().len(), calls, "a paused pool spent a GitHub call");
        }
    );

    azure_test!(
        /// The name is the same everywhere: a group already in the second placement (made
        /// before a crash, say) means no create in the first.
        aci_a_group_already_in_another_placement_means_no_create,
        async {
            let s = spread(10).await;
            s.fake.lock().unwrap().groups.insert(
                (OTHER_SUBSCRIPTION.into(), "rg-b".into(), "ghr-6".into()),
                json!({"name": "ghr-6", "tags": {"runner-dispatch-pool": "spread", "runner-dispatch-job-id": "6"}, "properties": {"provisioningState": "Succeeded"}}),
            );
            let out = s.provisioner.provision(&spread_message(6), 1).await.expect("exists");
            assert_eq!(out, runner_dispatch::provision::ProvisionOutcome::AlreadyExists);
            assert_eq!(s.puts_in("rg-a") + s.puts_in("rg-b") + s.puts_in("rg-c"), 0);
            assert_eq!(s.jit_calls(), 0);
        }
    );

    azure_test!(
        /// max_runners counts every placement; listing and deleting reach every placement.
        aci_caps_listing_and_deletion_span_placements,
        async {
            let s = spread(2).await;
            s.provisioner.provision(&spread_message(7), 1).await.expect("a");
            s.fake.lock().unwrap().refuse.insert("rg-a".into(), (400, "ContainerGroupQuotaReached", Some(300)));
            s.provisioner.provision(&spread_message(8), 1).await.expect("b");
            assert!(s.group_in("rg-a", "ghr-7").is_some() && s.group_in("rg-b", "ghr-8").is_some());
            let e = s.provisioner.provision(&spread_message(9), 1).await.expect_err("capped");
            assert!(e.to_string().contains("max_runners (2/2)"), "{e}");
            let p = spread_pools(2).pool("spread").map(|p| (**p).clone()).expect("pool");
            let mut names: Vec<String> = s.backend.list(&p).await.expect("list").into_iter().map(|c| c.name).collect();
            names.sort();
            assert_eq!(names, ["ghr-7", "ghr-8"]);
            // Cleanup finds the runner that ran the job wherever it is.
            let mut done = spread_message(8);
            done.kind = runner_dispatch::message::MessageKind::Cleanup;
            done.ran_on = Some("ghr-8".into());
            done.ran_on_id = s.github.runners.lock().unwrap().iter().find(|r| r.name == "ghr-8").map(|r| r.id);
            assert_eq!(s.provisioner.cleanup(&done).await.expect("cleanup"), ["ghr-8"]);
            assert!(s.group_in("rg-b", "ghr-8").is_none());
            s.backend.delete(&p, "ghr-7").await.expect("delete");
            assert!(s.group_in("rg-a", "ghr-7").is_none());
        }
    );

    azure_test!(
        /// Both transports: the host's queue invocation and the standalone server's admin
        /// route reach the same failover (here, rg-a out of capacity: the group goes to rg-b).
        aci_placements_fail_over_on_both_transports,
        async {
            let token = "placement-admin-token-0123456789abcdef";
            for standalone in [false, true] {
                let fake: Arc<Mutex<PlacementFake>> = Arc::default();
                let url = serve(Router::new().fallback(placement_arm).with_state(fake.clone())).await;
                {
                    let mut f = fake.lock().unwrap();
                    f.token = token_for(&url);
                    f.refuse.insert("rg-a".into(), (409, "ServiceUnavailable", None));
                }
                let dir = tempfile::tempdir().expect("dir");
                let settings = Settings { admin_token: Some(token.into()), ..runner_dispatch::testing::settings() };
                let app = runner_dispatch::testing::spawn_app_with_settings(
                    &settings,
                    spread_pools(10),
                    Arc::new(aci(&url, &[])),
                    standalone.then_some(dir.path()),
                    runner_dispatch::testing::fast_queue(),
                    runner_dispatch::server::RAW_REQUEST_TIMEOUT,
                )
                .await;
                let job = 20 + u64::from(standalone);
                let invocation = json!({"Data": {"message": serde_json::to_value(spread_message(job)).unwrap()}, "Metadata": {"DequeueCount": 1}});
                let mut req = app.client.post(app.url("/provision-runner")).json(&invocation);
                if standalone {
                    req = req.bearer_auth(token);
                }
                let resp = req.send().await.expect("send");
                assert_eq!(resp.status(), 200, "standalone: {standalone}");
                let f = fake.lock().unwrap();
                let created: Vec<&String> = f.groups.keys().map(|(_, rg, _)| rg).collect();
                assert_eq!(created, ["rg-b"], "standalone: {standalone}");
                assert_eq!(f.seen.iter().filter(|(m, _, _)| m == "PUT").count(), 2, "one refused, one created");
            }
        }
    );
}
