//! The live GitHub client against a fake GitHub (axum on 127.0.0.1:0, one per test) that
//! checks what it receives: the App JWT's signature and claims, the bearer on every call,
//! the standard headers, and JIT request bodies against GitHub's OpenAPI schema.

// One module named after the area, so `cargo test github` selects these tests.
mod github {
    use std::collections::HashMap;
    use std::io::Write;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex, OnceLock};
    use std::time::{Duration, Instant};

    use axum::body::Bytes;
    use axum::extract::State;
    use axum::http::{HeaderMap, Method, StatusCode, Uri};
    use axum::response::{IntoResponse, Response};
    use jsonwebtoken::{Algorithm, DecodingKey, Validation};
    use runner_dispatch::config::{GitHubAuth, Settings};
    use runner_dispatch::github::client::{ClientSetupError, GitHubClient, RetryPolicy};
    use runner_dispatch::github::{
        Delivery, GitHubError, JobContext, JobState, RunnerDeletion, RunnerRegistry, RunnerTarget,
    };
    use runner_dispatch::secret::Secret;
    use serde_json::{Value, json};
    use time::OffsetDateTime;
    use time::format_description::well_known::Rfc3339;

    const PRIVATE_KEY: &str = include_str!("fixtures/test-keys/app-private-key.pem");
    const PRIVATE_KEY_PKCS8: &str = include_str!("fixtures/test-keys/app-private-key.pkcs8.pem");
    const PUBLIC_KEY: &str = include_str!("fixtures/test-keys/app-public-key.pem");
    const OPENAPI: &str = include_str!("fixtures/github-openapi/api.github.com.runners-subset.json");
    const OPENAPI_GHEC: &str = include_str!("fixtures/github-openapi/ghec.enterprise-runners-subset.json");
    const APP_ID: &str = "123456";
    const PAT: &str = "ghp_TESTPATSECRET0123456789";

    // ---------------------------------------------------------------------------
    // OpenAPI fixtures
    // ---------------------------------------------------------------------------

    fn openapi() -> &'static Value {
        static DOC: OnceLock<Value> = OnceLock::new();
        DOC.get_or_init(|| serde_json::from_str(OPENAPI).expect("openapi subset"))
    }

    fn openapi_ghec() -> &'static Value {
        static DOC: OnceLock<Value> = OnceLock::new();
        DOC.get_or_init(|| serde_json::from_str(OPENAPI_GHEC).expect("ghec openapi subset"))
    }

    /// `components.examples[name].value` from GitHub's OpenAPI description.
    fn example(name: &str) -> Value {
        openapi()["components"]["examples"][name]["value"].clone()
    }

    /// The inline request body schema of the generate-jitconfig operation for this path.
    /// The schema uses no `$ref` and no OpenAPI-only keywords (`nullable`), so it is a valid
    /// draft-4 JSON Schema as is; `default` and `description` are annotations.
    fn jit_request_schema(path: &str) -> Value {
        let (doc, key) = if path.starts_with("/orgs/") {
            (openapi(), "/orgs/{org}/actions/runners/generate-jitconfig")
        } else if path.starts_with("/repos/") {
            (openapi(), "/repos/{owner}/{repo}/actions/runners/generate-jitconfig")
        } else {
            (openapi_ghec(), "/enterprises/{enterprise}/actions/runners/generate-jitconfig")
        };
        let schema = doc["paths"][key]["post"]["requestBody"]["content"]["application/json"]["schema"].clone();
        assert!(schema.is_object(), "no request schema for {key}");
        assert!(!schema.to_string().contains("$ref"), "schema for {key} needs $ref resolution");
        schema
    }

    /// Checks a JIT body: schema-valid, and no property the schema does not know.
    fn check_jit_body(path: &str, body: &Value) -> Result<(), String> {
        let schema = jit_request_schema(path);
        let validator = jsonschema::draft4::new(&schema).map_err(|e| format!("schema does not compile: {e}"))?;
        let errors: Vec<String> = validator.iter_errors(body).map(|e| e.to_string()).collect();
        if !errors.is_empty() {
            return Err(format!("JIT body {body} does not match the OpenAPI schema: {errors:?}"));
        }
        let known = schema["properties"].as_object().expect("properties");
        for k in body.as_object().ok_or("body is not an object")?.keys() {
            if !known.contains_key(k) {
                return Err(format!("JIT body has a property the API does not define: {k}"));
            }
        }
        Ok(())
    }

    // ---------------------------------------------------------------------------
    // The fake GitHub
    // ---------------------------------------------------------------------------

    /// One request as the fake saw it.
    #[derive(Debug, Clone)]
    struct Recorded {
        method: Method,
        path: String,
        query: HashMap<String, String>,
        /// The bearer credential (after `Bearer `).
        bearer: Option<String>,
        body: Value,
        /// `http://127.0.0.1:port` plus the API prefix, for building Link headers.
        base: String,
    }

    impl Recorded {
        fn q(&self, k: &str) -> Option<&str> {
            self.query.get(k).map(String::as_str)
        }
    }

    /// A scripted answer.
    #[derive(Debug, Clone)]
    struct Canned {
        status: u16,
        headers: Vec<(String, String)>,
        body: Option<Value>,
        delay: Option<Duration>,
    }

    fn reply(status: u16, body: Value) -> Canned {
        Canned { status, headers: Vec::new(), body: Some(body), delay: None }
    }

    fn empty(status: u16) -> Canned {
        Canned { status, headers: Vec::new(), body: None, delay: None }
    }

    fn error(status: u16, message: &str) -> Canned {
        reply(status, json!({"message": message, "documentation_url": "https://docs.github.com/rest"}))
    }

    /// A catch-all that fails the test loudly.
    fn unexpected() -> Canned {
        empty(418)
    }

    impl Canned {
        fn header(mut self, k: &str, v: &str) -> Self {
            self.headers.push((k.to_owned(), v.to_owned()));
            self
        }

        fn delayed(mut self, d: Duration) -> Self {
            self.delay = Some(d);
            self
        }
    }

    /// Answers a request; the second argument counts calls to the same method and path (1-based).
    type Responder = Arc<dyn Fn(&Recorded, usize) -> Canned + Send + Sync>;

    struct FakeState {
        prefix: String,
        base: OnceLock<String>,
        responder: Responder,
        requests: Mutex<Vec<Recorded>>,
        problems: Mutex<Vec<String>>,
        minted_tokens: Mutex<Vec<String>>,
        jwts: Mutex<Vec<String>>,
        minted: AtomicUsize,
    }

    #[derive(Clone)]
    struct Fake {
        state: Arc<FakeState>,
        /// What the client is pointed at (`http://127.0.0.1:port[/api/v3]`).
        url: String,
    }

    impl Fake {
        async fn start(responder: impl Fn(&Recorded, usize) -> Canned + Send + Sync + 'static) -> Self {
            Self::start_at("", responder).await
        }

        /// `prefix` is the API path prefix, `/api/v3` for GitHub Enterprise Server.
        async fn start_at(
            prefix: &str,
            responder: impl Fn(&Recorded, usize) -> Canned + Send + Sync + 'static,
        ) -> Self {
            logs();
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let addr = listener.local_addr().expect("addr");
            let url = format!("http://{addr}{prefix}");
            let state = Arc::new(FakeState {
                prefix: prefix.to_owned(),
                base: OnceLock::new(),
                responder: Arc::new(responder),
                requests: Mutex::new(Vec::new()),
                problems: Mutex::new(Vec::new()),
                minted_tokens: Mutex::new(Vec::new()),
                jwts: Mutex::new(Vec::new()),
                minted: AtomicUsize::new(0),
            });
            state.base.set(url.clone()).expect("base set once");
            let app = axum::Router::new().fallback(handle).with_state(state.clone());
            tokio::spawn(async move {
                axum::serve(listener, app).await.expect("fake GitHub");
            });
            Self { state, url }
        }

        fn requests(&self) -> Vec<Recorded> {
            self.state.requests.lock().unwrap().clone()
        }

        fn count(&self, method: &str, path: &str) -> usize {
            self.requests().iter().filter(|r| r.method.as_str() == method && r.path == path).count()
        }

        fn paths(&self) -> Vec<String> {
            self.requests().iter().map(|r| format!("{} {}", r.method, r.path)).collect()
        }

        fn mints(&self) -> usize {
            self.state.minted.load(Ordering::SeqCst)
        }

        fn minted_tokens(&self) -> Vec<String> {
            self.state.minted_tokens.lock().unwrap().clone()
        }

        fn jwts(&self) -> Vec<String> {
            self.state.jwts.lock().unwrap().clone()
        }

        fn assert_no_problems(&self) {
            let problems = self.state.problems.lock().unwrap().clone();
            assert!(problems.is_empty(), "the fake GitHub saw problems:\n{}", problems.join("\n"));
        }
    }

    fn problem(state: &FakeState, p: String) {
        state.problems.lock().unwrap().push(p);
    }

    /// Verifies an App JWT: RS256 signature with the test public key, `iss`, `iat` backdated
    /// about 60 s, `exp` in the future and at most 10 minutes ahead.
    fn verify_jwt(jwt: &str) -> Result<(), String> {
        let header = jsonwebtoken::decode_header(jwt).map_err(|e| format!("JWT header: {e}"))?;
        if header.alg != Algorithm::RS256 {
            return Err(format!("JWT alg is {:?}, not RS256", header.alg));
        }
        let key = DecodingKey::from_rsa_pem(PUBLIC_KEY.as_bytes()).expect("public key");
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_issuer(&[APP_ID]);
        validation.set_required_spec_claims(&["exp", "iss"]);
        validation.leeway = 0;
        let data = jsonwebtoken::decode::<Value>(jwt, &key, &validation).map_err(|e| format!("JWT rejected: {e}"))?;
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let iat = data.claims["iat"].as_i64().ok_or("JWT has no iat")?;
        let exp = data.claims["exp"].as_i64().ok_or("JWT has no exp")?;
        if data.claims["iss"] != json!(APP_ID) {
            return Err(format!("JWT iss is {}", data.claims["iss"]));
        }
        if !(now - 75..=now - 45).contains(&iat) {
            return Err(format!("JWT iat is {}s from now, expected about -60s", iat - now));
        }
        if exp <= now || exp > now + 600 {
            return Err(format!("JWT exp is {}s from now, expected (0, 600]", exp - now));
        }
        Ok(())
    }

    async fn handle(
        State(state): State<Arc<FakeState>>,
        method: Method,
        uri: Uri,
        headers: HeaderMap,
        body: Bytes,
    ) -> Response {
        let header = |k: &str| headers.get(k).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let Some(path) = uri.path().strip_prefix(state.prefix.as_str()).map(str::to_owned) else {
            problem(&state, format!("{method} {}: outside the API prefix {}", uri.path(), state.prefix));
            return StatusCode::NOT_FOUND.into_response();
        };
        let query: HashMap<String, String> = uri
            .query()
            .unwrap_or("")
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (k.to_owned(), v.replace("%2F", "/").replace('+', " "))
            })
            .collect();
        let body_json: Value = if body.is_empty() {
            Value::Null
        } else {
            match serde_json::from_slice(&body) {
                Ok(v) => v,
                Err(e) => {
                    problem(&state, format!("{method} {path}: body is not JSON: {e}"));
                    Value::Null
                }
            }
        };
        let bearer = header("authorization").and_then(|a| a.strip_prefix("Bearer ").map(str::to_owned));
        let rec = Recorded {
            method: method.clone(),
            path: path.clone(),
            query,
            bearer: bearer.clone(),
            body: body_json,
            base: state.base.get().cloned().unwrap_or_default(),
        };
        let nth = {
            let mut requests = state.requests.lock().unwrap();
            requests.push(rec.clone());
            requests.iter().filter(|r| r.method == method && r.path == path).count()
        };

        // Headers every request must carry.
        match header("user-agent") {
            Some(ua) if ua.starts_with("runner-dispatch/") => {}
            other => problem(&state, format!("{method} {path}: User-Agent is {other:?}")),
        }
        if header("accept").as_deref() != Some("application/vnd.github+json") {
            problem(&state, format!("{method} {path}: Accept is {:?}", header("accept")));
        }
        if header("x-github-api-version").as_deref() != Some("2022-11-28") {
            problem(&state, format!("{method} {path}: X-GitHub-Api-Version is {:?}", header("x-github-api-version")));
        }

        // Credentials: the App JWT for /app/* and installation lookups, else a token we issued.
        let wants_jwt = path.starts_with("/app/") || path.ends_with("/installation");
        let Some(bearer) = bearer else {
            problem(&state, format!("{method} {path}: no bearer credential"));
            return error_response(401, "Requires authentication");
        };
        if wants_jwt {
            state.jwts.lock().unwrap().push(bearer.clone());
            if let Err(e) = verify_jwt(&bearer) {
                problem(&state, format!("{method} {path}: {e}"));
                return error_response(401, "A JSON web token could not be decoded");
            }
        } else if bearer != PAT && !state.minted_tokens.lock().unwrap().contains(&bearer) {
            problem(&state, format!("{method} {path}: bearer is neither the PAT nor an installation token we minted"));
            return error_response(401, "Bad credentials");
        }

        if path.ends_with("/actions/runners/generate-jitconfig")
            && let Err(e) = check_jit_body(&path, &rec.body)
        {
            problem(&state, format!("{method} {path}: {e}"));
            return error_response(422, "Invalid request.");
        }

        // Installation tokens are minted here unless the test scripts the answer.
        let canned =
            if method == Method::POST && path.starts_with("/app/installations/") && path.ends_with("/access_tokens") {
                let scripted = (state.responder)(&rec, nth);
                if scripted.status == 418 {
                    let n = state.minted.fetch_add(1, Ordering::SeqCst) + 1;
                    let id = path.trim_start_matches("/app/installations/").trim_end_matches("/access_tokens");
                    // Opaque, and not of the length the docs show.
                    let token = format!("ghs_INSTALLTOKEN{id}x{n}_{}", "z".repeat(n * 7));
                    state.minted_tokens.lock().unwrap().push(token.clone());
                    let mut body = example("installation-token");
                    body["token"] = json!(token);
                    let expires = OffsetDateTime::now_utc() + time::Duration::hours(1);
                    body["expires_at"] = json!(expires.format(&Rfc3339).unwrap());
                    reply(201, body)
                } else {
                    scripted
                }
            } else {
                (state.responder)(&rec, nth)
            };
        if canned.status == 418 {
            problem(&state, format!("unexpected call: {method} {path} {:?}", rec.query));
        }
        if let Some(d) = canned.delay {
            tokio::time::sleep(d).await;
        }
        let mut response = match canned.body {
            Some(b) => axum::Json(b).into_response(),
            None => ().into_response(),
        };
        *response.status_mut() = StatusCode::from_u16(canned.status).expect("status");
        for (k, v) in canned.headers {
            response.headers_mut().insert(
                axum::http::HeaderName::from_bytes(k.as_bytes()).expect("header name"),
                v.parse().expect("header value"),
            );
        }
        response
    }

    fn error_response(status: u16, message: &str) -> Response {
        let mut r = axum::Json(json!({"message": message})).into_response();
        *r.status_mut() = StatusCode::from_u16(status).expect("status");
        r
    }

    // ---------------------------------------------------------------------------
    // Client and job helpers
    // ---------------------------------------------------------------------------

    fn fast_policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 3,
            base_backoff: Duration::from_millis(1),
            max_inline_rate_limit_wait: Duration::from_secs(10),
            request_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(2),
        }
    }

    fn settings(vars: &[(&str, &str)]) -> Settings {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        Settings::from_lookup(|k| {
            map.get(k).cloned().or_else(|| (k == "GITHUB_WEBHOOK_SECRET").then(|| "whsec".into()))
        })
        .expect("settings")
    }

    fn app_client(fake: &Fake, extra: &[(&str, &str)]) -> GitHubClient {
        let mut vars = vec![
            ("GITHUB_API_URL", fake.url.as_str()),
            ("GITHUB_APP_ID", APP_ID),
            ("GITHUB_APP_PRIVATE_KEY", PRIVATE_KEY),
        ];
        vars.extend_from_slice(extra);
        GitHubClient::new(&settings(&vars)).expect("client").with_retry_policy(fast_policy()).expect("policy")
    }

    fn pat_client(fake: &Fake, extra: &[(&str, &str)]) -> GitHubClient {
        let mut vars = vec![("GITHUB_API_URL", fake.url.as_str()), ("GITHUB_TOKEN", PAT)];
        vars.extend_from_slice(extra);
        GitHubClient::new(&settings(&vars)).expect("client").with_retry_policy(fast_policy()).expect("policy")
    }

    fn org_job(installation_id: Option<u64>) -> JobContext {
        JobContext {
            target: RunnerTarget::Org { org: "octo-org".into() },
            repository: "octo-org/octo-repo".into(),
            owner: "octo-org".into(),
            installation_id,
        }
    }

    fn repo_job(installation_id: Option<u64>) -> JobContext {
        JobContext {
            target: RunnerTarget::Repo { owner: "octo-org".into(), repo: "octo-repo".into() },
            repository: "octo-org/octo-repo".into(),
            owner: "octo-org".into(),
            installation_id,
        }
    }

    fn labels() -> Vec<String> {
        vec!["self-hosted".into(), "linux".into(), "x64".into()]
    }

    /// GitHub's JIT example, answering with the requested name.
    fn jit_answer(rec: &Recorded, id: u64) -> Canned {
        let mut body = example("runner-jitconfig");
        body["runner"]["id"] = json!(id);
        body["runner"]["name"] = rec.body["name"].clone();
        body["encoded_jit_config"] = json!(format!("JITCONFIG-{id}-SECRET"));
        reply(201, body)
    }

    fn runner_json(id: u64, name: &str, status: &str, busy: bool) -> Value {
        let mut r = example("runner");
        r["id"] = json!(id);
        r["name"] = json!(name);
        r["status"] = json!(status);
        r["busy"] = json!(busy);
        r
    }

    fn runners_page(runners: Vec<Value>) -> Canned {
        let mut page = example("runner-paginated");
        page["total_count"] = json!(runners.len());
        page["runners"] = Value::Array(runners);
        reply(200, page)
    }

    fn delivery_json(id: u64, minutes_ago: i64, action: &str) -> Value {
        let mut d = example("hook-delivery-items")[0].clone();
        let at = OffsetDateTime::now_utc() - time::Duration::minutes(minutes_ago);
        d["id"] = json!(id);
        d["guid"] = json!(format!("guid-{id}"));
        d["delivered_at"] = json!(at.replace_nanosecond(0).unwrap().format(&Rfc3339).unwrap());
        d["event"] = json!("workflow_job");
        d["action"] = json!(action);
        d
    }

    /// A log sink for `tracing`, to check what the client logs.
    #[derive(Clone, Default)]
    struct LogSink(Arc<Mutex<Vec<u8>>>);

    impl Write for LogSink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl LogSink {
        fn text(&self) -> String {
            String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
        }
    }

    /// Every log line of this test process, at TRACE. A global subscriber, because a scoped
    /// one races with other test threads over tracing's per-callsite interest cache.
    fn logs() -> &'static LogSink {
        static SINK: OnceLock<LogSink> = OnceLock::new();
        SINK.get_or_init(|| {
            let sink = LogSink::default();
            let writer = sink.clone();
            let subscriber = tracing_subscriber::fmt()
                .with_max_level(tracing::Level::TRACE)
                .with_ansi(false)
                .with_writer(move || writer.clone())
                .finish();
            tracing::subscriber::set_global_default(subscriber).expect("the only global subscriber");
            sink
        })
    }

    /// Lines of the PEM body: none of them may ever appear in output.
    fn pem_lines() -> Vec<&'static str> {
        PRIVATE_KEY.lines().filter(|l| !l.starts_with("-----") && l.len() > 20).collect()
    }

    // ---------------------------------------------------------------------------
    // Authentication
    // ---------------------------------------------------------------------------

    #[tokio::test]
    async fn app_auth_mints_one_installation_token_and_reuses_it_across_calls() {
        let fake = Fake::start(|rec, _| match (rec.method.as_str(), rec.path.as_str()) {
            ("POST", "/orgs/octo-org/actions/runners/generate-jitconfig") => jit_answer(rec, 42),
            ("GET", "/orgs/octo-org/actions/runners") => runners_page(vec![runner_json(1, "a", "online", false)]),
            ("GET", "/repos/octo-org/octo-repo/actions/jobs/7") => reply(200, example("job")),
            _ => unexpected(),
        })
        .await;
        let client = app_client(&fake, &[]);
        let job = org_job(Some(77));
        client.generate_jit_config(&job, "rd-1", &labels(), 1).await.expect("jit");
        client.list_runners(&job).await.expect("list");
        client.job_state(&job, 7).await.expect("job");
        client.generate_jit_config(&job, "rd-2", &labels(), 1).await.expect("jit again");

        assert_eq!(fake.mints(), 1, "one installation token for four calls: {:?}", fake.paths());
        assert_eq!(fake.count("POST", "/app/installations/77/access_tokens"), 1);
        let token = fake.minted_tokens()[0].clone();
        for r in fake.requests().iter().filter(|r| !r.path.starts_with("/app/")) {
            assert_eq!(r.bearer.as_deref(), Some(token.as_str()), "{} {} used another credential", r.method, r.path);
        }
        fake.assert_no_problems();
    }

    #[tokio::test]
    async fn concurrent_callers_share_one_token_mint() {
        let fake = Fake::start(|rec, _| match rec.path.as_str() {
            "/orgs/octo-org/actions/runners" => runners_page(vec![]),
            _ => unexpected(),
        })
        .await;
        let client = Arc::new(app_client(&fake, &[]));
        let job = org_job(Some(5));
        let calls = (0..8).map(|_| {
            let (client, job) = (client.clone(), job.clone());
            tokio::spawn(async move { client.list_runners(&job).await })
        });
        for c in calls {
            c.await.expect("join").expect("list");
        }
        assert_eq!(fake.mints(), 1);
        fake.assert_no_problems();
    }

    #[tokio::test]
    async fn installation_tokens_are_per_installation() {
        let fake = Fake::start(|rec, _| match rec.path.as_str() {
            "/orgs/octo-org/actions/runners" => runners_page(vec![]),
            _ => unexpected(),
        })
        .await;
        let client = app_client(&fake, &[]);
        client.list_runners(&org_job(Some(1))).await.expect("first installation");
        client.list_runners(&org_job(Some(2))).await.expect("second installation");
        client.list_runners(&org_job(Some(1))).await.expect("first again");
        assert_eq!(fake.count("POST", "/app/installations/1/access_tokens"), 1);
        assert_eq!(fake.count("POST", "/app/installations/2/access_tokens"), 1);
        fake.assert_no_problems();
    }

    #[tokio::test]
    async fn installation_is_looked_up_for_org_targets_when_the_payload_has_none_and_cached() {
        let fake = Fake::start(|rec, _| match (rec.method.as_str(), rec.path.as_str()) {
            ("GET", "/orgs/octo-org/installation") => {
                let mut inst = example("installation");
                inst["id"] = json!(9001);
                reply(200, inst)
            }
            ("POST", "/orgs/octo-org/actions/runners/generate-jitconfig") => jit_answer(rec, 3),
            _ => unexpected(),
        })
        .await;
        let client = app_client(&fake, &[]);
        client.generate_jit_config(&org_job(None), "rd-1", &labels(), 1).await.expect("jit");
        client.generate_jit_config(&org_job(None), "rd-2", &labels(), 1).await.expect("jit");
        assert_eq!(fake.count("GET", "/orgs/octo-org/installation"), 1, "lookup is cached");
        assert_eq!(fake.count("POST", "/app/installations/9001/access_tokens"), 1);
        fake.assert_no_problems();
    }

    #[tokio::test]
    async fn a_looked_up_installation_that_is_gone_is_looked_up_again() {
        let fake = Fake::start(|rec, nth| match (rec.method.as_str(), rec.path.as_str()) {
            ("GET", "/orgs/octo-org/installation") => reply(200, json!({"id": if nth == 1 { 1 } else { 2 }})),
            ("POST", "/app/installations/1/access_tokens") => error(404, "Not Found"),
            ("GET", "/orgs/octo-org/actions/runners") => runners_page(vec![]),
            _ => unexpected(),
        })
        .await;
        let client = app_client(&fake, &[]);
        let err = client.list_runners(&org_job(None)).await.expect_err("installation 1 is gone");
        assert!(matches!(err, GitHubError::NotFound(_)), "{err}");
        client.list_runners(&org_job(None)).await.expect("the new installation");
        assert_eq!(fake.count("GET", "/orgs/octo-org/installation"), 2);
        assert_eq!(fake.count("POST", "/app/installations/2/access_tokens"), 1);
        fake.assert_no_problems();
    }

    #[tokio::test]
    async fn installation_is_looked_up_per_repository_for_repo_targets() {
        let fake = Fake::start(|rec, _| match (rec.method.as_str(), rec.path.as_str()) {
            ("GET", "/repos/octo-org/octo-repo/installation") => reply(200, json!({"id": 31})),
            ("POST", "/repos/octo-org/octo-repo/actions/runners/generate-jitconfig") => jit_answer(rec, 3),
            _ => unexpected(),
        })
        .await;
        let client = app_client(&fake, &[]);
        client.generate_jit_config(&repo_job(None), "rd-1", &labels(), 1).await.expect("jit");
        assert_eq!(fake.count("POST", "/app/installations/31/access_tokens"), 1);
        fake.assert_no_problems();
    }

    #[tokio::test]
    async fn the_configured_installation_id_spares_the_lookup() {
        let fake = Fake::start(|rec, _| match rec.path.as_str() {
            "/orgs/octo-org/actions/runners" => runners_page(vec![]),
            _ => unexpected(),
        })
        .await;
        let client = app_client(&fake, &[("GITHUB_APP_INSTALLATION_ID", "555")]);
        client.list_runners(&org_job(None)).await.expect("list");
        // The payload's installation wins over the setting.
        client.list_runners(&org_job(Some(556))).await.expect("list");
        assert_eq!(fake.count("POST", "/app/installations/555/access_tokens"), 1);
        assert_eq!(fake.count("POST", "/app/installations/556/access_tokens"), 1);
        assert!(fake.paths().iter().all(|p| !p.ends_with("/installation")), "{:?}", fake.paths());
        fake.assert_no_problems();
    }

    #[tokio::test]
    async fn enterprise_targets_without_an_installation_id_are_refused_clearly() {
        let fake = Fake::start(|_, _| unexpected()).await;
        let client = app_client(&fake, &[]);
        let job = JobContext {
            target: RunnerTarget::Enterprise { enterprise: "acme".into() },
            repository: "octo-org/octo-repo".into(),
            owner: "octo-org".into(),
            installation_id: None,
        };
        let err = client.list_runners(&job).await.expect_err("no installation");
        assert!(matches!(err, GitHubError::Permanent(ref m) if m.contains("GITHUB_APP_INSTALLATION_ID")), "{err}");
        assert!(fake.requests().is_empty());
    }

    #[tokio::test]
    async fn personal_access_token_is_sent_as_bearer_without_app_calls() {
        let fake = Fake::start(|rec, _| match (rec.method.as_str(), rec.path.as_str()) {
            ("POST", "/repos/octo-org/octo-repo/actions/runners/generate-jitconfig") => jit_answer(rec, 8),
            ("GET", "/repos/octo-org/octo-repo/actions/jobs/7") => reply(200, example("job")),
            _ => unexpected(),
        })
        .await;
        let client = pat_client(&fake, &[]);
        let jit = client.generate_jit_config(&repo_job(None), "rd-1", &labels(), 1).await.expect("jit");
        assert_eq!(jit.runner_id, 8);
        assert_eq!(client.job_state(&repo_job(None), 7).await.expect("job"), JobState::Completed);
        assert!(fake.requests().iter().all(|r| r.bearer.as_deref() == Some(PAT)));
        assert_eq!(fake.mints(), 0);
        // App-only endpoints need the App.
        let pat_app_hook = pat_client(&fake, &[("GITHUB_HOOK_SCOPE", "app")]);
        let err = pat_app_hook.list_deliveries(OffsetDateTime::now_utc()).await.expect_err("needs the App");
        assert!(matches!(err, GitHubError::Permanent(_)), "{err}");
        fake.assert_no_problems();
    }

    #[tokio::test]
    async fn runner_group_settings_are_read_for_the_isolation_check() {
        let fake = Fake::start(|rec, _| match (rec.method.as_str(), rec.path.as_str()) {
            ("GET", "/orgs/octo-org/actions/runner-groups/7") => reply(
                200,
                json!({"id": 7, "name": "api", "visibility": "selected", "allows_public_repositories": false, "default": false}),
            ),
            ("GET", "/orgs/octo-org/actions/runner-groups/8") => reply(
                200,
                json!({"id": 8, "name": "open", "visibility": "all", "allows_public_repositories": true}),
            ),
            _ => unexpected(),
        })
        .await;
        let client = pat_client(&fake, &[]);
        let g = client.runner_group(&org_job(None), "octo-org", 7).await.expect("group");
        assert_eq!((g.visibility.as_str(), g.allows_public_repositories), ("selected", false));
        let g = client.runner_group(&org_job(None), "octo-org", 8).await.expect("group");
        assert_eq!((g.visibility.as_str(), g.allows_public_repositories), ("all", true));
        assert!(fake.requests().iter().all(|r| r.bearer.as_deref() == Some(PAT)));
        fake.assert_no_problems();
    }

    #[tokio::test]
    async fn a_pkcs8_private_key_works_too() {
        let fake = Fake::start(|rec, _| match rec.path.as_str() {
            "/orgs/octo-org/actions/runners" => runners_page(vec![]),
            _ => unexpected(),
        })
        .await;
        let s = settings(&[
            ("GITHUB_API_URL", fake.url.as_str()),
            ("GITHUB_APP_ID", APP_ID),
            ("GITHUB_APP_PRIVATE_KEY", PRIVATE_KEY_PKCS8),
        ]);
        let client = GitHubClient::new(&s).expect("pkcs8 key");
        client.list_runners(&org_job(Some(1))).await.expect("list");
        fake.assert_no_problems();
    }

    #[test]
    fn client_refuses_missing_credentials() {
        let err = GitHubClient::new(&settings(&[])).expect_err("no credentials");
        assert_eq!(err, ClientSetupError::NoCredentials);
        assert!(err.to_string().contains("GITHUB_APP_ID"));
    }

    #[test]
    fn malformed_private_key_is_a_clear_startup_error_without_the_key() {
        let body: Vec<&str> = pem_lines();
        // PKCS#1 armour around `inner` (assembled, so no key-shaped literal sits in the source).
        let armour = |inner: &str| {
            let label = ["RSA", "PRIVATE", "KEY"].join(" ");
            format!("-----BEGIN {label}-----\n{inner}\n-----END {label}-----\n")
        };
        let damaged = [
            // Right armour, garbage inside.
            armour(&"QUJD".repeat(40)),
            // A real key with lines missing.
            armour(&format!("{}\n{}", body[0], body[body.len() - 1])),
            // The public key where the private one belongs.
            PUBLIC_KEY.to_owned(),
        ];
        for key in damaged {
            // Past the settings' own PEM sniffing, which the public key would not pass.
            let mut s = settings(&[("GITHUB_APP_ID", APP_ID), ("GITHUB_APP_PRIVATE_KEY", PRIVATE_KEY)]);
            s.github_auth =
                GitHubAuth::App { app_id: APP_ID.into(), private_key: Secret::new(key.clone()), installation_id: None };
            let err = GitHubClient::new(&s).expect_err("damaged key");
            let text = format!("{err} {err:?}");
            assert!(matches!(err, ClientSetupError::InvalidPrivateKey(_)), "{text}");
            assert!(text.contains("GITHUB_APP_PRIVATE_KEY"), "{text}");
            for line in key.lines().filter(|l| !l.starts_with("-----")) {
                assert!(!text.contains(line), "the error quotes the key: {text}");
            }
            assert!(!text.contains("QUJD"), "{text}");
        }
    }

    #[test]
    fn a_bad_api_url_is_a_startup_error() {
        let mut s = settings(&[("GITHUB_TOKEN", PAT)]);
        s.github_api_url = "https://".into();
        assert!(matches!(GitHubClient::new(&s), Err(ClientSetupError::InvalidApiUrl(_))));
    }

    // ---------------------------------------------------------------------------
    // JIT and registration tokens
    // ---------------------------------------------------------------------------

    #[tokio::test]
    async fn jit_config_request_matches_the_openapi_schema_and_returns_runner_id_and_config() {
        let fake = Fake::start(|rec, _| match (rec.method.as_str(), rec.path.as_str()) {
            ("POST", "/orgs/octo-org/actions/runners/generate-jitconfig") => jit_answer(rec, 23),
            _ => unexpected(),
        })
        .await;
        let client = app_client(&fake, &[]);
        let jit = client.generate_jit_config(&org_job(Some(1)), "rd-linux-99", &labels(), 4).await.expect("jit");
        assert_eq!(jit.runner_id, 23);
        assert_eq!(jit.encoded_jit_config.expose(), "JITCONFIG-23-SECRET");
        assert_eq!(format!("{:?}", jit.encoded_jit_config), "[redacted]");
        let sent = fake.requests().into_iter().find(|r| r.path.ends_with("generate-jitconfig")).expect("jit request");
        assert_eq!(
            sent.body,
            json!({"name": "rd-linux-99", "runner_group_id": 4, "labels": ["self-hosted", "linux", "x64"], "work_folder": "_work"})
        );
        fake.assert_no_problems();
    }

    #[test]
    fn the_jit_schema_check_catches_bad_bodies() {
        // The fake's check must be able to fail, or the test above proves nothing.
        let path = "/orgs/o/actions/runners/generate-jitconfig";
        assert!(check_jit_body(path, &json!({"name": "x", "runner_group_id": 1, "labels": ["a"]})).is_ok());
        assert!(check_jit_body(path, &json!({"name": "x", "runner_group_id": 1, "labels": []})).is_err());
        assert!(check_jit_body(path, &json!({"name": "x", "runner_group_id": "1", "labels": ["a"]})).is_err());
        assert!(check_jit_body(path, &json!({"name": "x", "labels": ["a"]})).is_err());
        assert!(
            check_jit_body(path, &json!({"name": "x", "runner_group_id": 1, "labels": ["a"], "ephemeral": true}))
                .is_err()
        );
        assert!(
            check_jit_body(
                "/enterprises/e/actions/runners/generate-jitconfig",
                &json!({"name": "x", "runner_group_id": 1, "labels": ["a"], "work_folder": "_work"})
            )
            .is_ok()
        );
    }

    #[tokio::test]
    async fn jit_config_for_an_enterprise_with_a_known_installation() {
        let fake = Fake::start(|rec, _| match rec.path.as_str() {
            "/enterprises/acme/actions/runners/generate-jitconfig" => jit_answer(rec, 5),
            _ => unexpected(),
        })
        .await;
        let client = app_client(&fake, &[("GITHUB_APP_INSTALLATION_ID", "12")]);
        let job = JobContext {
            target: RunnerTarget::Enterprise { enterprise: "acme".into() },
            repository: "octo-org/octo-repo".into(),
            owner: "octo-org".into(),
            installation_id: None,
        };
        assert_eq!(client.generate_jit_config(&job, "rd-1", &labels(), 1).await.expect("jit").runner_id, 5);
        fake.assert_no_problems();
    }

    #[tokio::test]
    async fn jit_config_conflict_is_reported_as_conflict() {
        let fake = Fake::start(|rec, _| match rec.path.as_str() {
            "/orgs/octo-org/actions/runners/generate-jitconfig" => {
                error(409, "Already exists - A runner with the name rd-1 already exists.")
            }
            _ => unexpected(),
        })
        .await;
        let client = app_client(&fake, &[]);
        let err = client.generate_jit_config(&org_job(Some(1)), "rd-1", &labels(), 1).await.expect_err("409");
        let GitHubError::Conflict(message) = &err else { panic!("expected Conflict, got {err:?}") };
        assert!(message.contains("POST /orgs/octo-org/actions/runners/generate-jitconfig"), "{message}");
        assert!(message.contains("409"), "{message}");
        assert!(message.contains("already exists"), "{message}");
        assert!(!err.is_retryable());
        assert_eq!(fake.count("POST", "/orgs/octo-org/actions/runners/generate-jitconfig"), 1, "409 is not retried");
        fake.assert_no_problems();
    }

    #[tokio::test]
    async fn registration_token_is_reused_while_it_has_time_left() {
        let fake = Fake::start(|rec, _| match (rec.method.as_str(), rec.path.as_str()) {
            ("POST", "/orgs/octo-org/actions/runners/registration-token")
            | ("POST", "/repos/octo-org/octo-repo/actions/runners/registration-token") => {
                let mut t = example("authentication-token");
                let expires = OffsetDateTime::now_utc() + time::Duration::hours(1);
                t["token"] = json!(format!("REGTOKEN{}", rec.path.len()));
                t["expires_at"] = json!(expires.format(&Rfc3339).unwrap());
                reply(201, t)
            }
            _ => unexpected(),
        })
        .await;
        let client = app_client(&fake, &[]);
        let first = client.registration_token(&org_job(Some(1))).await.expect("token");
        let second = client.registration_token(&org_job(Some(1))).await.expect("token");
        assert_eq!(first.token, second.token);
        assert_eq!(fake.count("POST", "/orgs/octo-org/actions/runners/registration-token"), 1);
        // Another scope gets its own.
        let repo = client.registration_token(&repo_job(Some(1))).await.expect("token");
        assert_ne!(repo.token, first.token);
        assert_eq!(fake.count("POST", "/repos/octo-org/octo-repo/actions/runners/registration-token"), 1);
        fake.assert_no_problems();
    }

    #[tokio::test]
    async fn a_registration_token_close_to_expiry_is_replaced() {
        let fake = Fake::start(|rec, nth| match rec.path.as_str() {
            "/orgs/octo-org/actions/runners/registration-token" => {
                // The first has 5 minutes left: too little to start a runner with.
                let left = if nth == 1 { time::Duration::minutes(5) } else { time::Duration::hours(1) };
                let expires = OffsetDateTime::now_utc() + left;
                reply(201, json!({"token": format!("REG{nth}"), "expires_at": expires.format(&Rfc3339).unwrap()}))
            }
            _ => unexpected(),
        })
        .await;
        let client = app_client(&fake, &[]);
        assert_eq!(client.registration_token(&org_job(Some(1))).await.expect("t").token.expose(), "REG1");
        assert_eq!(client.registration_token(&org_job(Some(1))).await.expect("t").token.expose(), "REG2");
        assert_eq!(client.registration_token(&org_job(Some(1))).await.expect("t").token.expose(), "REG2");
        fake.assert_no_problems();
    }

    // ---------------------------------------------------------------------------
    // Runners
    // ---------------------------------------------------------------------------

    #[tokio::test]
    async fn find_runner_filters_by_name_and_matches_exactly() {
        let fake = Fake::start(|rec, _| match rec.path.as_str() {
            "/orgs/octo-org/actions/runners" => {
                assert_eq!(rec.q("name"), Some("rd-linux-7"), "find uses the name filter");
                // A lenient filter may return near-misses; only the exact name counts.
                runners_page(vec![
                    runner_json(70, "rd-linux-70", "online", true),
                    runner_json(7, "rd-linux-7", "offline", false),
                ])
            }
            _ => unexpected(),
        })
        .await;
        let client = app_client(&fake, &[]);
        let found = client.find_runner(&org_job(Some(1)), "rd-linux-7").await.expect("find").expect("found");
        assert_eq!(found.id, 7);
        assert!(!found.online);
        assert!(!found.busy);
        assert_eq!(found.labels, vec!["self-hosted", "X64", "macOS", "no-gpu"]);
        fake.assert_no_problems();
    }

    #[tokio::test]
    async fn find_runner_returns_none_when_no_name_matches() {
        let fake = Fake::start(|rec, _| match rec.path.as_str() {
            "/repos/octo-org/octo-repo/actions/runners" => runners_page(vec![runner_json(1, "RD-1", "online", false)]),
            _ => unexpected(),
        })
        .await;
        let client = pat_client(&fake, &[]);
        assert_eq!(client.find_runner(&repo_job(None), "rd-1").await.expect("find"), None);
        fake.assert_no_problems();
    }

    #[tokio::test]
    async fn list_runners_follows_pages_until_a_short_one() {
        let fake = Fake::start(|rec, _| match rec.path.as_str() {
            "/orgs/octo-org/actions/runners" => {
                assert_eq!(rec.q("per_page"), Some("100"));
                let page: u64 = rec.q("page").and_then(|p| p.parse().ok()).unwrap_or(1);
                let n = if page < 3 { 100 } else { 17 };
                let first = (page - 1) * 100;
                runners_page(
                    (first..first + n).map(|i| runner_json(i, &format!("r-{i}"), "online", i % 2 == 0)).collect(),
                )
            }
            _ => unexpected(),
        })
        .await;
        let client = app_client(&fake, &[]);
        let all = client.list_runners(&org_job(Some(1))).await.expect("list");
        assert_eq!(all.len(), 217);
        assert_eq!(all[216].name, "r-216");
        assert!(all[0].online && all[0].busy);
        assert_eq!(fake.count("GET", "/orgs/octo-org/actions/runners"), 3);
        fake.assert_no_problems();
    }

    #[tokio::test]
    async fn delete_runner_maps_204_404_and_422() {
        let fake = Fake::start(|rec, _| match (rec.method.as_str(), rec.path.as_str()) {
            ("DELETE", "/orgs/octo-org/actions/runners/1") => empty(204),
            ("DELETE", "/orgs/octo-org/actions/runners/2") => error(404, "Not Found"),
            ("DELETE", "/orgs/octo-org/actions/runners/3") => {
                error(422, "Bad request - Runner \"rd-3\" is still running a job\"")
            }
            ("DELETE", "/orgs/octo-org/actions/runners/4") => error(403, "Resource not accessible by integration"),
            _ => unexpected(),
        })
        .await;
        let client = app_client(&fake, &[]);
        let job = org_job(Some(1));
        assert_eq!(client.delete_runner(&job, 1).await.expect("204"), RunnerDeletion::Deleted);
        assert_eq!(client.delete_runner(&job, 2).await.expect("404"), RunnerDeletion::NotFound);
        assert_eq!(client.delete_runner(&job, 3).await.expect("422"), RunnerDeletion::Busy);
        let err = client.delete_runner(&job, 4).await.expect_err("403");
        assert!(
            matches!(err, GitHubError::Permanent(ref m) if m.contains("403") && m.contains("not accessible")),
            "{err}"
        );
        fake.assert_no_problems();
    }

    // ---------------------------------------------------------------------------
    // Jobs
    // ---------------------------------------------------------------------------

    #[tokio::test]
    async fn job_state_maps_queued_in_progress_completed_and_other() {
        let fake = Fake::start(|rec, _| {
            let mut job = example("job");
            let (status, runner): (&str, Value) = match rec.path.as_str() {
                "/repos/octo-org/octo-repo/actions/jobs/1" => ("queued", Value::Null),
                "/repos/octo-org/octo-repo/actions/jobs/2" => ("in_progress", json!("rd-linux-2")),
                "/repos/octo-org/octo-repo/actions/jobs/3" => ("in_progress", Value::Null),
                "/repos/octo-org/octo-repo/actions/jobs/4" => ("completed", json!("rd-linux-4")),
                "/repos/octo-org/octo-repo/actions/jobs/5" => ("waiting", Value::Null),
                "/repos/octo-org/octo-repo/actions/jobs/6" => return error(404, "Not Found"),
                _ => return unexpected(),
            };
            job["status"] = json!(status);
            job["runner_name"] = runner;
            reply(200, job)
        })
        .await;
        let client = app_client(&fake, &[]);
        let job = org_job(Some(1));
        assert_eq!(client.job_state(&job, 1).await.expect("1"), JobState::Queued);
        assert_eq!(
            client.job_state(&job, 2).await.expect("2"),
            JobState::InProgress { runner_name: Some("rd-linux-2".into()) }
        );
        assert_eq!(client.job_state(&job, 3).await.expect("3"), JobState::InProgress { runner_name: None });
        assert_eq!(client.job_state(&job, 4).await.expect("4"), JobState::Completed);
        assert_eq!(client.job_state(&job, 5).await.expect("5"), JobState::Other("waiting".into()));
        assert!(matches!(client.job_state(&job, 6).await, Err(GitHubError::NotFound(_))));
        fake.assert_no_problems();
    }

    // ---------------------------------------------------------------------------
    // Hook deliveries
    // ---------------------------------------------------------------------------

    #[tokio::test]
    async fn app_hook_deliveries_use_the_jwt_follow_link_pages_and_stop_at_since() {
        let fake = Fake::start(|rec, _| match (rec.path.as_str(), rec.q("cursor")) {
            ("/app/hook/deliveries", None) => {
                assert_eq!(rec.q("per_page"), Some("100"));
                let link = format!(r#"<{}/app/hook/deliveries?per_page=100&cursor=v1_p2>; rel="next""#, rec.base);
                reply(200, json!([delivery_json(5, 1, "queued"), delivery_json(4, 2, "completed")]))
                    .header("link", &link)
            }
            ("/app/hook/deliveries", Some("v1_p2")) => {
                let link = format!(r#"<{}/app/hook/deliveries?per_page=100&cursor=v1_p3>; rel="next""#, rec.base);
                reply(200, json!([delivery_json(3, 3, "queued"), delivery_json(2, 20, "queued")])).header("link", &link)
            }
            _ => unexpected(),
        })
        .await;
        let client = app_client(&fake, &[("GITHUB_HOOK_SCOPE", "app")]);
        let since = OffsetDateTime::now_utc() - time::Duration::minutes(10);
        let deliveries: Vec<Delivery> = client.list_deliveries(since).await.expect("deliveries");
        assert_eq!(deliveries.iter().map(|d| d.id).collect::<Vec<_>>(), vec![5, 4, 3]);
        assert_eq!(deliveries[0].guid, "guid-5");
        assert_eq!(deliveries[0].event, "workflow_job");
        assert_eq!(deliveries[0].action.as_deref(), Some("queued"));
        assert_eq!(deliveries[0].status_code, 200);
        assert!(!deliveries[0].redelivery);
        assert!(deliveries[0].delivered_at.is_some());
        assert_eq!(fake.count("GET", "/app/hook/deliveries"), 2, "the page past `since` is not fetched");
        assert_eq!(fake.mints(), 0, "app hook deliveries use the JWT, not an installation token");
        assert_eq!(fake.jwts().len(), 2);
        fake.assert_no_problems();
    }

    #[tokio::test]
    async fn org_hook_deliveries_use_the_installation_token_of_the_org() {
        let fake = Fake::start(|rec, _| match (rec.method.as_str(), rec.path.as_str(), rec.q("cursor")) {
        ("GET", "/orgs/octo-org/installation", _) => reply(200, json!({"id": 4242})),
        ("GET", "/orgs/octo-org/hooks/77/deliveries", None) => {
            let link = format!(
                r#"<{base}/orgs/octo-org/hooks/77/deliveries?per_page=100&cursor=v1_next>; rel="next", <{base}/orgs/octo-org/hooks/77/deliveries?per_page=100>; rel="first""#,
                base = rec.base
            );
            reply(200, json!([delivery_json(9, 1, "queued")])).header("link", &link)
        }
        ("GET", "/orgs/octo-org/hooks/77/deliveries", Some("v1_next")) => reply(200, json!([delivery_json(8, 2, "completed")])),
        ("POST", "/orgs/octo-org/hooks/77/deliveries/9/attempts", _) => reply(202, Value::Null),
        _ => unexpected(),
    })
    .await;
        let client = app_client(
            &fake,
            &[("GITHUB_HOOK_SCOPE", "org"), ("GITHUB_HOOK_ID", "77"), ("GITHUB_HOOK_OWNER", "octo-org")],
        );
        let since = OffsetDateTime::now_utc() - time::Duration::hours(1);
        let ids: Vec<u64> = client.list_deliveries(since).await.expect("deliveries").iter().map(|d| d.id).collect();
        assert_eq!(ids, vec![9, 8]);
        client.redeliver(9).await.expect("redeliver");
        assert_eq!(fake.count("GET", "/orgs/octo-org/installation"), 1);
        assert_eq!(fake.count("POST", "/app/installations/4242/access_tokens"), 1);
        let token = fake.minted_tokens()[0].clone();
        for r in fake.requests().iter().filter(|r| r.path.contains("/hooks/")) {
            assert_eq!(r.bearer.as_deref(), Some(token.as_str()));
        }
        fake.assert_no_problems();
    }

    #[tokio::test]
    async fn repo_hook_deliveries_with_a_token() {
        let fake = Fake::start(|rec, _| match (rec.method.as_str(), rec.path.as_str()) {
            ("GET", "/repos/octo-org/octo-repo/hooks/5/deliveries") => {
                reply(200, json!([delivery_json(1, 1, "queued")]))
            }
            ("POST", "/repos/octo-org/octo-repo/hooks/5/deliveries/1/attempts") => reply(202, Value::Null),
            _ => unexpected(),
        })
        .await;
        let client = pat_client(
            &fake,
            &[("GITHUB_HOOK_SCOPE", "repo"), ("GITHUB_HOOK_ID", "5"), ("GITHUB_HOOK_REPOSITORY", "octo-org/octo-repo")],
        );
        assert_eq!(
            client.list_deliveries(OffsetDateTime::now_utc() - time::Duration::hours(1)).await.expect("list").len(),
            1
        );
        client.redeliver(1).await.expect("redeliver");
        fake.assert_no_problems();
    }

    #[tokio::test]
    async fn redeliver_posts_an_attempt_with_the_app_jwt_and_accepts_202() {
        let fake = Fake::start(|rec, _| match (rec.method.as_str(), rec.path.as_str()) {
            ("POST", "/app/hook/deliveries/12345678/attempts") => reply(202, json!({})),
            ("POST", "/app/hook/deliveries/1/attempts") => error(422, "Validation Failed"),
            _ => unexpected(),
        })
        .await;
        let client = app_client(&fake, &[("GITHUB_HOOK_SCOPE", "app")]);
        client.redeliver(12_345_678).await.expect("202");
        assert!(matches!(client.redeliver(1).await, Err(GitHubError::Permanent(_))));
        assert_eq!(fake.mints(), 0);
        fake.assert_no_problems();
    }

    #[tokio::test]
    async fn a_link_to_another_host_is_not_followed_with_our_credential() {
        let fake = Fake::start(|rec, _| match rec.path.as_str() {
            "/app/hook/deliveries" => reply(200, json!([delivery_json(1, 1, "queued")]))
                .header("link", r#"<https://evil.example/app/hook/deliveries?cursor=x>; rel="next""#),
            _ => unexpected(),
        })
        .await;
        let client = app_client(&fake, &[("GITHUB_HOOK_SCOPE", "app")]);
        let err =
            client.list_deliveries(OffsetDateTime::now_utc() - time::Duration::hours(1)).await.expect_err("refused");
        assert!(matches!(err, GitHubError::Permanent(ref m) if m.contains("evil.example")), "{err}");
        fake.assert_no_problems();
    }

    #[tokio::test]
    async fn deliveries_without_a_hook_scope_are_refused() {
        let fake = Fake::start(|_, _| unexpected()).await;
        let client = app_client(&fake, &[]);
        assert!(matches!(client.list_deliveries(OffsetDateTime::now_utc()).await, Err(GitHubError::Permanent(_))));
        assert!(matches!(client.redeliver(1).await, Err(GitHubError::Permanent(_))));
        assert!(fake.requests().is_empty());
    }

    // ---------------------------------------------------------------------------
    // GHES and the web URL
    // ---------------------------------------------------------------------------

    #[tokio::test]
    async fn ghes_base_url_with_api_v3_prefix_works_and_runner_url_is_the_web_host() {
        let fake = Fake::start_at("/api/v3", |rec, _| match (rec.method.as_str(), rec.path.as_str()) {
            ("GET", "/orgs/octo-org/installation") => reply(200, json!({"id": 3})),
            ("POST", "/orgs/octo-org/actions/runners/generate-jitconfig") => jit_answer(rec, 1),
            ("GET", "/app/hook/deliveries") if rec.q("cursor").is_none() => {
                let link = format!(r#"<{}/app/hook/deliveries?per_page=100&cursor=c2>; rel="next""#, rec.base);
                reply(200, json!([delivery_json(2, 1, "queued")])).header("link", &link)
            }
            ("GET", "/app/hook/deliveries") => reply(200, json!([delivery_json(1, 1, "queued")])),
            _ => unexpected(),
        })
        .await;
        assert!(fake.url.ends_with("/api/v3"));
        let client = app_client(&fake, &[("GITHUB_HOOK_SCOPE", "app")]);
        client.generate_jit_config(&org_job(None), "rd-1", &labels(), 1).await.expect("jit");
        assert_eq!(
            client.list_deliveries(OffsetDateTime::now_utc() - time::Duration::hours(1)).await.expect("d").len(),
            2
        );
        let host = fake.url.trim_end_matches("/api/v3");
        assert_eq!(client.runner_url(&org_job(None)), format!("{host}/octo-org"));
        assert_eq!(client.runner_url(&repo_job(None)), format!("{host}/octo-org/octo-repo"));
        fake.assert_no_problems();
    }

    #[test]
    fn runner_url_on_github_com() {
        let client = GitHubClient::new(&settings(&[("GITHUB_TOKEN", PAT)])).expect("client");
        assert_eq!(client.runner_url(&org_job(None)), "https://github.com/octo-org");
        assert_eq!(client.runner_url(&repo_job(None)), "https://github.com/octo-org/octo-repo");
        let ent = JobContext { target: RunnerTarget::Enterprise { enterprise: "acme".into() }, ..org_job(None) };
        assert_eq!(client.runner_url(&ent), "https://github.com/enterprises/acme");
        let ghes = GitHubClient::new(&settings(&[
            ("GITHUB_TOKEN", PAT),
            ("GITHUB_API_URL", "https://ghes.example.com/api/v3"),
        ]))
        .expect("client");
        assert_eq!(ghes.runner_url(&org_job(None)), "https://ghes.example.com/octo-org");
    }

    // ---------------------------------------------------------------------------
    // Rate limits, retries and errors
    // ---------------------------------------------------------------------------

    #[tokio::test]
    async fn rate_limit_429_with_short_retry_after_is_retried_once_and_succeeds() {
        let fake = Fake::start(|rec, nth| match rec.path.as_str() {
            "/orgs/octo-org/actions/runners/generate-jitconfig" if nth == 1 => {
                error(429, "Too many requests").header("retry-after", "1")
            }
            "/orgs/octo-org/actions/runners/generate-jitconfig" => jit_answer(rec, 2),
            _ => unexpected(),
        })
        .await;
        let client = app_client(&fake, &[]);
        let started = Instant::now();
        let jit = client.generate_jit_config(&org_job(Some(1)), "rd-1", &labels(), 1).await.expect("retried");
        assert_eq!(jit.runner_id, 2);
        assert!(started.elapsed() >= Duration::from_millis(950), "waited {:?}", started.elapsed());
        assert_eq!(fake.count("POST", "/orgs/octo-org/actions/runners/generate-jitconfig"), 2);
        fake.assert_no_problems();
    }

    #[tokio::test]
    async fn a_second_short_rate_limit_in_the_same_call_is_returned() {
        let fake = Fake::start(|rec, _| match rec.path.as_str() {
            "/orgs/octo-org/actions/runners" => error(429, "Too many requests").header("retry-after", "0"),
            _ => unexpected(),
        })
        .await;
        let client = app_client(&fake, &[]);
        let err = client.list_runners(&org_job(Some(1))).await.expect_err("limited");
        assert_eq!(err, GitHubError::RateLimited { retry_after: Duration::ZERO });
        assert_eq!(fake.count("GET", "/orgs/octo-org/actions/runners"), 2, "one inline wait, then give up");
        fake.assert_no_problems();
    }

    #[tokio::test]
    async fn secondary_rate_limit_with_long_retry_after_returns_rate_limited_without_sleeping() {
        let fake = Fake::start(|rec, _| match rec.path.as_str() {
            "/orgs/octo-org/actions/runners/generate-jitconfig" => {
                error(403, "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.")
                    .header("retry-after", "120")
            }
            _ => unexpected(),
        })
        .await;
        let client = app_client(&fake, &[]);
        let started = Instant::now();
        let err = client.generate_jit_config(&org_job(Some(1)), "rd-1", &labels(), 1).await.expect_err("limited");
        assert_eq!(err, GitHubError::RateLimited { retry_after: Duration::from_secs(120) });
        assert!(err.is_retryable());
        assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
        assert_eq!(fake.count("POST", "/orgs/octo-org/actions/runners/generate-jitconfig"), 1);
        fake.assert_no_problems();
    }

    #[tokio::test]
    async fn exhausted_primary_rate_limit_waits_until_the_reset() {
        let reset = OffsetDateTime::now_utc().unix_timestamp() + 600;
        let fake = Fake::start(move |rec, _| match rec.path.as_str() {
            "/orgs/octo-org/actions/runners" => error(403, "API rate limit exceeded for installation ID 1.")
                .header("x-ratelimit-remaining", "0")
                .header("x-ratelimit-reset", &reset.to_string()),
            _ => unexpected(),
        })
        .await;
        let client = app_client(&fake, &[]);
        let err = client.list_runners(&org_job(Some(1))).await.expect_err("limited");
        let GitHubError::RateLimited { retry_after } = err else { panic!("{err:?}") };
        assert!((Duration::from_secs(595)..=Duration::from_secs(601)).contains(&retry_after), "{retry_after:?}");
        fake.assert_no_problems();
    }

    #[tokio::test]
    async fn server_errors_are_retried_then_succeed() {
        let fake = Fake::start(|rec, nth| match rec.path.as_str() {
            "/repos/octo-org/octo-repo/actions/jobs/7" if nth <= 2 => error(502, "Server Error"),
            "/repos/octo-org/octo-repo/actions/jobs/7" => reply(200, example("job")),
            _ => unexpected(),
        })
        .await;
        let client = app_client(&fake, &[]);
        assert_eq!(client.job_state(&org_job(Some(1)), 7).await.expect("third time"), JobState::Completed);
        assert_eq!(fake.count("GET", "/repos/octo-org/octo-repo/actions/jobs/7"), 3);
        fake.assert_no_problems();
    }

    #[tokio::test]
    async fn persistent_server_errors_become_transient() {
        let fake = Fake::start(|rec, _| match rec.path.as_str() {
            "/orgs/octo-org/actions/runners/generate-jitconfig" => error(500, "Internal Server Error"),
            _ => unexpected(),
        })
        .await;
        let client = app_client(&fake, &[]);
        let err = client.generate_jit_config(&org_job(Some(1)), "rd-1", &labels(), 1).await.expect_err("500");
        let GitHubError::Transient(message) = &err else { panic!("expected Transient, got {err:?}") };
        assert!(
            message.contains("POST /orgs/octo-org/actions/runners/generate-jitconfig: 500 Internal Server Error"),
            "{message}"
        );
        assert!(err.is_retryable());
        assert_eq!(fake.count("POST", "/orgs/octo-org/actions/runners/generate-jitconfig"), 3);
        fake.assert_no_problems();
    }

    #[tokio::test]
    async fn timeouts_are_retried_then_transient() {
        let fake = Fake::start(|rec, _| match rec.path.as_str() {
            "/orgs/octo-org/actions/runners" => runners_page(vec![]).delayed(Duration::from_millis(400)),
            _ => unexpected(),
        })
        .await;
        let policy = RetryPolicy { request_timeout: Duration::from_millis(100), ..fast_policy() };
        let client = app_client(&fake, &[]).with_retry_policy(policy).expect("policy");
        let err = client.list_runners(&org_job(Some(1))).await.expect_err("timeout");
        assert!(matches!(err, GitHubError::Transient(ref m) if m.contains("timed out")), "{err}");
        assert_eq!(fake.count("GET", "/orgs/octo-org/actions/runners"), 3);
        fake.assert_no_problems();
    }

    #[tokio::test]
    async fn connection_errors_are_transient() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        drop(listener);
        let client = GitHubClient::new(&settings(&[("GITHUB_API_URL", url.as_str()), ("GITHUB_TOKEN", PAT)]))
            .expect("client")
            .with_retry_policy(fast_policy())
            .expect("policy");
        let err = client.job_state(&org_job(None), 1).await.expect_err("refused");
        assert!(
            matches!(err, GitHubError::Transient(ref m) if m.contains("GET /repos/octo-org/octo-repo/actions/jobs/1")),
            "{err}"
        );
    }

    #[tokio::test]
    async fn unauthorized_is_permanent_and_the_token_is_minted_again_next_time() {
        let fake = Fake::start(|rec, nth| match rec.path.as_str() {
            "/orgs/octo-org/actions/runners" if nth == 1 => error(401, "Bad credentials"),
            "/orgs/octo-org/actions/runners" => runners_page(vec![]),
            _ => unexpected(),
        })
        .await;
        let client = app_client(&fake, &[]);
        let err = client.list_runners(&org_job(Some(1))).await.expect_err("401");
        assert!(matches!(err, GitHubError::Permanent(ref m) if m.contains("401 Bad credentials")), "{err}");
        assert!(!err.is_retryable());
        assert_eq!(fake.count("GET", "/orgs/octo-org/actions/runners"), 1, "401 is not retried");
        client.list_runners(&org_job(Some(1))).await.expect("fresh token");
        assert_eq!(fake.mints(), 2, "the refused token was dropped from the cache");
        fake.assert_no_problems();
    }

    #[tokio::test]
    async fn a_refused_app_jwt_is_permanent() {
        let fake = Fake::start(|rec, _| match rec.path.as_str() {
            "/app/installations/1/access_tokens" => error(401, "A JSON web token could not be decoded"),
            _ => unexpected(),
        })
        .await;
        let client = app_client(&fake, &[]);
        let err = client.list_runners(&org_job(Some(1))).await.expect_err("401");
        assert!(
            matches!(err, GitHubError::Permanent(ref m) if m.contains("/app/installations/1/access_tokens")),
            "{err}"
        );
        fake.assert_no_problems();
    }

    #[tokio::test(flavor = "current_thread")]
    async fn no_error_message_or_log_line_contains_a_token_the_jwt_or_the_key() {
        // A server that echoes the credential it got back in its error messages.
        let fake = Fake::start(|rec, nth| {
            let echo = format!("bad credential {}", rec.bearer.clone().unwrap_or_default());
            match rec.path.as_str() {
                "/orgs/octo-org/actions/runners/generate-jitconfig" if nth == 1 => jit_answer(rec, 1),
                // A misshapen success: serde would quote the string where a number belongs.
                "/orgs/octo-org/actions/runners/generate-jitconfig" if nth == 2 => {
                    reply(201, json!({"runner": {"id": "SHAPE-SECRET"}, "encoded_jit_config": "SHAPE-SECRET"}))
                }
                "/orgs/octo-org/actions/runners/generate-jitconfig" => error(401, &echo),
                "/orgs/octo-org/actions/runners" => error(500, &echo),
                "/orgs/octo-org/actions/runners/registration-token" => error(403, &echo),
                "/repos/octo-org/octo-repo/actions/jobs/1" => error(429, &echo).header("retry-after", "3600"),
                "/app/hook/deliveries" => error(401, &echo),
                "/orgs/other/installation" => error(404, &echo),
                _ => unexpected(),
            }
        })
        .await;
        let sink = logs();

        let client = app_client(&fake, &[("GITHUB_HOOK_SCOPE", "app")]);
        let job = org_job(Some(1));
        let mut outputs = Vec::new();
        let jit = client.generate_jit_config(&job, "rd-1", &labels(), 1).await.expect("jit");
        outputs.push(format!("{jit:?}"));
        outputs.push(format!("{client:?}"));
        let errors = vec![
            client.generate_jit_config(&job, "rd-2", &labels(), 1).await.expect_err("misshapen"),
            client.generate_jit_config(&job, "rd-3", &labels(), 1).await.expect_err("401"),
            client.list_runners(&job).await.expect_err("500"),
            client.registration_token(&job).await.expect_err("403"),
            client.job_state(&job, 1).await.expect_err("429"),
            client.list_deliveries(OffsetDateTime::now_utc()).await.expect_err("401"),
            client.list_runners(&org_job(None).clone_with_org("other")).await.expect_err("404"),
        ];
        for e in &errors {
            outputs.push(format!("{e} {e:?}"));
        }
        let logs = sink.text();
        assert!(logs.contains("path=/orgs/other/installation"), "the client logs its calls: {logs}");
        // Whatever any test in this process logged: no token, JIT config or JWT of the fakes.
        for marker in ["ghs_INSTALLTOKEN", "JITCONFIG-", PAT, "REGTOKEN", "eyJ0eXAiOiJKV1Qi", "eyJhbGciOiJSUzI1NiI"] {
            assert!(!logs.contains(marker), "a log line carries {marker}");
        }

        let mut secrets: Vec<String> = fake.minted_tokens();
        secrets.extend(fake.jwts());
        secrets.push("JITCONFIG-1-SECRET".into());
        secrets.push("SHAPE-SECRET".into());
        assert!(secrets.len() >= 4, "the scenario produced tokens and JWTs: {secrets:?}");
        // JWT segments too: the signature alone must not leak.
        let jwt_parts: Vec<String> =
            fake.jwts().iter().flat_map(|j| j.split('.').map(str::to_owned).collect::<Vec<_>>()).collect();
        let everything = format!("{}\n{logs}", outputs.join("\n"));
        for s in secrets.iter().chain(jwt_parts.iter().filter(|p| p.len() > 30)) {
            assert!(!everything.contains(s.as_str()), "leaked {s}:\n{everything}");
        }
        for line in pem_lines() {
            assert!(!everything.contains(line), "leaked a line of the private key");
        }
        assert!(!everything.contains("PRIVATE KEY"));
        assert!(
            matches!(errors[0], GitHubError::Transient(ref m) if m.contains("unexpected response body")),
            "{}",
            errors[0]
        );
        assert!(errors[1].to_string().contains("[redacted]"), "{}", errors[1]);
        fake.assert_no_problems();
    }

    // ---------------------------------------------------------------------------
    // Names never leave their path segment (issue 14, item 2)
    // ---------------------------------------------------------------------------

    /// A path as a server splits and decodes it: `/a/b%3Fc` is `["a", "b?c"]`.
    fn decoded_segments(path: &str) -> Vec<String> {
        fn decode(s: &str) -> String {
            let b = s.as_bytes();
            let mut out = Vec::with_capacity(b.len());
            let mut i = 0;
            while i < b.len() {
                if b[i] == b'%' && i + 2 < b.len() {
                    let hex = std::str::from_utf8(&b[i + 1..i + 3]).expect("ascii");
                    out.push(u8::from_str_radix(hex, 16).expect("hex escape"));
                    i += 3;
                } else {
                    out.push(b[i]);
                    i += 1;
                }
            }
            String::from_utf8(out).expect("utf-8")
        }
        path.trim_start_matches('/').split('/').map(decode).collect()
    }

    fn repo_target(owner: &str, repo: &str) -> JobContext {
        JobContext {
            target: RunnerTarget::Repo { owner: owner.into(), repo: repo.into() },
            repository: format!("{owner}/{repo}"),
            owner: owner.into(),
            installation_id: None,
        }
    }

    #[tokio::test]
    async fn a_name_with_dots_a_query_a_fragment_or_an_encoded_slash_stays_one_path_segment() {
        let fake = Fake::start(|rec, _| {
            if rec.path.ends_with("/generate-jitconfig") {
                jit_answer(rec, 7)
            } else if rec.path.ends_with("/actions/runners") {
                runners_page(vec![])
            } else if rec.method == Method::DELETE {
                empty(204)
            } else if rec.path.contains("/actions/jobs/") {
                let mut job = example("job");
                job["status"] = json!("queued");
                reply(200, job)
            } else {
                unexpected()
            }
        })
        .await;
        let client = pat_client(&fake, &[]);
        for (owner, repo) in [
            ("octo-org", "x?y"),
            ("octo-org", "x#y"),
            ("octo-org", "x%2F..%2F..%2Forgs%2Fother-org"),
            ("octo-org", "x%2e%2e"),
            ("octo-org", "a..b"),
            ("octo-org", "..x"),
            ("octo-org", "x;y z"),
            ("o%2F..", "r"),
        ] {
            let job = repo_target(owner, repo);
            let before = fake.requests().len();
            client.generate_jit_config(&job, "rd-1", &labels(), 1).await.expect("jit");
            client.list_runners(&job).await.expect("list");
            client.delete_runner(&job, 5).await.expect("delete");
            client.job_state(&job, 9).await.expect("job");
            let seen: Vec<Vec<String>> = fake.requests()[before..].iter().map(|r| decoded_segments(&r.path)).collect();
            let expected: Vec<Vec<String>> = [
                &["actions", "runners", "generate-jitconfig"][..],
                &["actions", "runners"],
                &["actions", "runners", "5"],
                &["actions", "jobs", "9"],
            ]
            .iter()
            .map(|tail| ["repos", owner, repo].iter().chain(tail.iter()).map(|s| (*s).to_owned()).collect())
            .collect();
            assert_eq!(seen, expected, "{owner}/{repo}");
            // The query stays ours: nothing from the name leaked into it.
            let last = fake.requests().into_iter().nth(before + 1).expect("list request");
            assert_eq!(last.q("per_page"), Some("100"), "{owner}/{repo}: {:?}", last.query);
        }
        fake.assert_no_problems();
    }

    #[tokio::test]
    async fn a_name_that_is_a_dot_segment_or_holds_a_slash_is_refused_before_any_request() {
        let fake = Fake::start(|_, _| unexpected()).await;
        let client = pat_client(&fake, &[]);
        for (owner, repo) in [
            ("octo-org", ".."),
            ("octo-org", "."),
            ("octo-org", ""),
            ("octo-org", "x/../../../orgs/other-org"),
            ("octo-org", "x\\..\\..\\orgs"),
            ("..", "x"),
            ("octo-org/..", "x"),
        ] {
            let job = repo_target(owner, repo);
            let e = client.generate_jit_config(&job, "rd-1", &labels(), 1).await.expect_err("refused");
            assert!(matches!(e, GitHubError::Permanent(_)), "{owner}/{repo}: {e}");
            assert!(client.delete_runner(&job, 5).await.is_err(), "{owner}/{repo}");
        }
        let org = JobContext { target: RunnerTarget::Org { org: "..".into() }, ..repo_target("octo-org", "x") };
        assert!(client.list_runners(&org).await.is_err());
        assert!(fake.requests().is_empty(), "requests were sent: {:?}", fake.paths());
    }

    trait WithOrg {
        fn clone_with_org(&self, org: &str) -> JobContext;
    }

    impl WithOrg for JobContext {
        fn clone_with_org(&self, org: &str) -> JobContext {
            JobContext { target: RunnerTarget::Org { org: org.into() }, owner: org.into(), ..self.clone() }
        }
    }
}
