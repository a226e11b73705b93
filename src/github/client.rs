//! The live GitHub REST client (App and PAT auth, JIT, registration tokens, runners, jobs, hook deliveries).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderMap, HeaderValue, USER_AGENT};
use reqwest::{Method, StatusCode, Url};
use serde::Deserialize;
use serde_json::json;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::sync::Mutex;

use super::{
    Delivery, GitHubError, JitConfig, JobContext, JobState, RegistrationToken, RunnerDeletion, RunnerInfo,
    RunnerRegistry, RunnerTarget,
};
use crate::config::{GitHubAuth, HookScope, Settings};
use crate::secret::Secret;

/// Sent on every request; GitHub refuses requests without a `User-Agent`.
pub const USER_AGENT_VALUE: &str = concat!("runner-dispatch/", env!("CARGO_PKG_VERSION"));
const API_VERSION: &str = "2022-11-28";
const PER_PAGE: usize = 100;
/// A bound on pages followed, so a misbehaving server cannot keep us looping.
const MAX_PAGES: usize = 100;
/// App JWTs: GitHub allows at most 10 minutes; `iat` is backdated for clock drift.
const JWT_BACKDATE_SECS: i64 = 60;
const JWT_LIFETIME_SECS: i64 = 9 * 60;
/// Installation tokens live 1 h; renew this long before they expire.
const INSTALLATION_TOKEN_MARGIN: time::Duration = time::Duration::minutes(5);
/// Registration tokens live 1 h; reuse one while it has more than this left.
const REGISTRATION_TOKEN_MIN_LEFT: time::Duration = time::Duration::minutes(10);
/// GitHub's advice for a secondary rate limit without `retry-after`: wait at least a minute.
const DEFAULT_RATE_LIMIT_WAIT: Duration = Duration::from_secs(60);
/// GitHub's `message` is quoted in errors up to this many characters.
const MAX_MESSAGE_CHARS: usize = 300;

/// Timeouts and retry behaviour of every call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts for 5xx, timeouts and connection errors (including the first).
    pub max_attempts: u32,
    /// Backoff before the second attempt; each further one waits 4× longer (jittered ±25 %).
    pub base_backoff: Duration,
    /// A rate limit asking for at most this wait is slept through once inside the call;
    /// longer ones are returned as [`GitHubError::RateLimited`] for the queue to retry.
    pub max_inline_rate_limit_wait: Duration,
    /// Whole-request timeout (connect, send, read the body).
    pub request_timeout: Duration,
    pub connect_timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            base_backoff: Duration::from_millis(200),
            max_inline_rate_limit_wait: Duration::from_secs(10),
            request_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    /// The jittered wait before attempt `attempt + 1` (`attempt` ≥ 1).
    fn backoff(&self, attempt: u32) -> Duration {
        let factor = 4u32.saturating_pow(attempt.saturating_sub(1));
        let base = self.base_backoff.saturating_mul(factor);
        base.mul_f64(rand::random_range(0.75..1.25))
    }
}

/// Why a [`GitHubClient`] could not be built. Never contains a credential.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientSetupError {
    #[error(
        "no GitHub credentials: set GITHUB_APP_ID (or GITHUB_APP_CLIENT_ID) with GITHUB_APP_PRIVATE_KEY, or GITHUB_TOKEN"
    )]
    NoCredentials,
    #[error("GITHUB_APP_PRIVATE_KEY {0}")]
    InvalidPrivateKey(&'static str),
    #[error("GITHUB_API_URL {0:?} is not a usable http(s) URL")]
    InvalidApiUrl(String),
    #[error("could not build the HTTP client: {0}")]
    Http(String),
}

/// An installation access token and when to stop using it.
#[derive(Debug, Clone)]
struct CachedToken {
    token: Secret,
    renew_at: OffsetDateTime,
}

/// GitHub App credentials and the caches that spare GitHub a call per job.
struct AppAuth {
    app_id: String,
    key: EncodingKey,
    default_installation: Option<u64>,
    /// Installation id → token. Held across the mint, so concurrent callers wait for one mint.
    tokens: Mutex<HashMap<u64, CachedToken>>,
    /// Lookup path (`orgs/{org}`, `repos/{o}/{r}`) → installation id.
    installations: Mutex<HashMap<String, u64>>,
}

enum Auth {
    App(Box<AppAuth>),
    Token(Secret),
}

/// What `list_deliveries` and `redeliver` act on: `app/hook`, `orgs/{org}/hooks/{id}` or
/// `repos/{o}/{r}/hooks/{id}`, plus where to find the installation for the last two.
#[derive(Debug, Clone)]
struct HookPath {
    scope: HookScope,
    prefix: Result<String, String>,
    /// `orgs/{org}` or `repos/{o}/{r}` for the installation lookup (org/repo hooks).
    owner_path: Option<String>,
}

/// The live GitHub client: one per process, shared by every invocation.
/// A runner group's access settings (`visibility`: `all`, `selected` or `private`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RunnerGroup {
    pub id: u64,
    pub name: String,
    pub visibility: String,
    #[serde(default)]
    pub allows_public_repositories: bool,
}

pub struct GitHubClient {
    http: reqwest::Client,
    api: Url,
    web: String,
    auth: Auth,
    hook: Option<HookPath>,
    policy: RetryPolicy,
    /// `api_prefix()` → registration token.
    registration_tokens: Mutex<HashMap<String, RegistrationToken>>,
}

impl std::fmt::Debug for GitHubClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let auth = match &self.auth {
            Auth::App(a) => format!("App({})", a.app_id),
            Auth::Token(_) => "Token([redacted])".to_owned(),
        };
        f.debug_struct("GitHubClient").field("api", &self.api.as_str()).field("auth", &auth).finish_non_exhaustive()
    }
}

/// One HTTP answer, body already read.
struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Reply {
    fn json<T: for<'de> Deserialize<'de>>(&self, method: &Method, path: &str) -> Result<T, GitHubError> {
        // serde's message can quote a value from the body (a token, a JIT config): give only
        // the kind and the place.
        serde_json::from_slice(&self.body).map_err(|e| {
            GitHubError::Transient(format!(
                "{method} {path}: {}: unexpected response body ({:?} error at line {} column {})",
                self.status.as_u16(),
                e.classify(),
                e.line(),
                e.column()
            ))
        })
    }
}

impl GitHubClient {
    /// Builds the client from the settings.
    ///
    /// # Errors
    /// No credentials (`GitHubAuth::None`: use the dry-run registry instead), a private key
    /// that is not a usable RSA PEM key (the error never quotes the key), or a bad API URL.
    pub fn new(settings: &Settings) -> Result<Self, ClientSetupError> {
        let auth = match &settings.github_auth {
            GitHubAuth::None => return Err(ClientSetupError::NoCredentials),
            GitHubAuth::Token(t) => Auth::Token(t.clone()),
            GitHubAuth::App { app_id, private_key, installation_id } => {
                let key = EncodingKey::from_rsa_pem(private_key.expose().as_bytes()).map_err(|_| {
                    ClientSetupError::InvalidPrivateKey(
                        "is not a PEM RSA private key (expected the .pem file GitHub generated for the App)",
                    )
                })?;
                // Parsing the PEM does not parse the RSA key itself; signing once does.
                mint_jwt(app_id, &key, OffsetDateTime::now_utc()).map_err(|_| {
                    ClientSetupError::InvalidPrivateKey("cannot sign an RS256 JWT (the key is damaged or not RSA)")
                })?;
                Auth::App(Box::new(AppAuth {
                    app_id: app_id.clone(),
                    key,
                    default_installation: *installation_id,
                    tokens: Mutex::new(HashMap::new()),
                    installations: Mutex::new(HashMap::new()),
                }))
            }
        };
        let mut base = settings.github_api_url.trim_end_matches('/').to_owned();
        base.push('/');
        let api = Url::parse(&base)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
            .ok_or_else(|| ClientSetupError::InvalidApiUrl(settings.github_api_url.clone()))?;
        let web = web_base_url(&api);
        let hook = settings.hook_scope.map(|scope| hook_path(scope, settings.hook_id, settings.hook_target.as_deref()));
        let policy = RetryPolicy::default();
        Ok(Self {
            http: build_http(&policy)?,
            api,
            web,
            auth,
            hook,
            policy,
            registration_tokens: Mutex::new(HashMap::new()),
        })
    }

    /// Replaces the timeouts and retry behaviour (tests use millisecond backoffs).
    ///
    /// # Errors
    /// The HTTP client cannot be rebuilt with the new connect timeout.
    pub fn with_retry_policy(mut self, policy: RetryPolicy) -> Result<Self, ClientSetupError> {
        self.http = build_http(&policy)?;
        self.policy = policy;
        Ok(self)
    }

    /// The retry policy in use.
    #[must_use]
    pub fn retry_policy(&self) -> &RetryPolicy {
        &self.policy
    }

    /// The web URL GitHub serves pages from (`https://github.com`, `https://ghes.example.com`).
    #[must_use]
    pub fn web_url(&self) -> &str {
        &self.web
    }

    /// The API URL of `path`, built segment by segment: each `/`-separated part is
    /// percent-encoded on its own (`?`, `#`, `%` included), so no part can add a query, a
    /// fragment or a path step. Names from payloads go through [`segment`] first, which
    /// refuses the ones holding a `/` or being a dot segment.
    fn url(&self, path: &str) -> Result<Url, GitHubError> {
        let mut url = self.api.clone();
        url.path_segments_mut()
            .map_err(|()| GitHubError::Permanent("GITHUB_API_URL cannot carry a path".into()))?
            .pop_if_empty()
            .extend(path.trim_start_matches('/').split('/'));
        Ok(url)
    }

    /// `orgs/{org}`, `repos/{o}/{r}` or `enterprises/{e}` with every name checked by [`segment`].
    fn target_prefix(target: &RunnerTarget) -> Result<String, GitHubError> {
        match target {
            RunnerTarget::Org { org } => segment(org)?,
            RunnerTarget::Repo { owner, repo } => {
                segment(owner)?;
                segment(repo)?
            }
            RunnerTarget::Enterprise { enterprise } => segment(enterprise)?,
        };
        Ok(target.api_prefix())
    }

    // -- Authentication -----------------------------------------------------------------

    fn app(&self) -> Result<&AppAuth, GitHubError> {
        match &self.auth {
            Auth::App(a) => Ok(a),
            Auth::Token(_) => Err(GitHubError::Permanent(
                "this call needs GitHub App credentials (GITHUB_APP_ID and GITHUB_APP_PRIVATE_KEY), not a token".into(),
            )),
        }
    }

    /// A fresh App JWT (cheap: one RSA signature).
    fn app_jwt(&self) -> Result<Secret, GitHubError> {
        let app = self.app()?;
        mint_jwt(&app.app_id, &app.key, OffsetDateTime::now_utc())
            .map_err(|_| GitHubError::Permanent("cannot sign the GitHub App JWT with the configured key".into()))
    }

    /// The bearer for calls about `job`: the PAT, or the installation token for the job's
    /// installation (from the payload, the settings, or looked up at `lookup()`).
    async fn bearer_for_job(
        &self,
        job: &JobContext,
        lookup: impl FnOnce() -> Result<String, GitHubError> + Send,
    ) -> Result<Secret, GitHubError> {
        let app = match &self.auth {
            Auth::Token(t) => return Ok(t.clone()),
            Auth::App(a) => a,
        };
        if let Some(id) = job.installation_id.or(app.default_installation) {
            return self.installation_token(app, id).await;
        }
        let owner_path = lookup()?;
        let id = self.lookup_installation(app, &owner_path).await?;
        self.installation_token_or_forget(app, id, &owner_path).await
    }

    /// Mints for a looked-up installation; one that is gone (the App was reinstalled) is
    /// dropped from the lookup cache so the next call looks again.
    async fn installation_token_or_forget(
        &self,
        app: &AppAuth,
        installation_id: u64,
        owner_path: &str,
    ) -> Result<Secret, GitHubError> {
        let result = self.installation_token(app, installation_id).await;
        if matches!(result, Err(GitHubError::NotFound(_))) {
            app.installations.lock().await.remove(owner_path);
        }
        result
    }

    /// The bearer for runner calls at the job's target.
    async fn runner_bearer(&self, job: &JobContext) -> Result<Secret, GitHubError> {
        self.bearer_for_job(job, || Self::installation_lookup_for_target(job)).await
    }

    /// `orgs/{org}` or `repos/{o}/{r}`: where to look up the installation for a runner call.
    fn installation_lookup_for_target(job: &JobContext) -> Result<String, GitHubError> {
        match &job.target {
            RunnerTarget::Org { .. } | RunnerTarget::Repo { .. } => Self::target_prefix(&job.target),
            RunnerTarget::Enterprise { enterprise } => Err(GitHubError::Permanent(format!(
                "enterprise {enterprise}: the GitHub App installation cannot be looked up for enterprise runners; \
                 set GITHUB_APP_INSTALLATION_ID or use the App's own webhook (its payloads carry the installation)"
            ))),
        }
    }

    /// `GET /orgs/{org}/installation` or `GET /repos/{o}/{r}/installation` with the App JWT, cached.
    async fn lookup_installation(&self, app: &AppAuth, owner_path: &str) -> Result<u64, GitHubError> {
        let mut cache = app.installations.lock().await;
        if let Some(id) = cache.get(owner_path) {
            return Ok(*id);
        }
        #[derive(Deserialize)]
        struct Installation {
            id: u64,
        }
        let jwt = self.app_jwt()?;
        let path = format!("{owner_path}/installation");
        let reply = self.send_app(Method::GET, self.url(&path)?, None, &jwt).await?;
        let installation: Installation = reply.json(&Method::GET, &path)?;
        tracing::debug!(lookup = owner_path, installation_id = installation.id, "found the GitHub App installation");
        cache.insert(owner_path.to_owned(), installation.id);
        Ok(installation.id)
    }

    /// The installation token, minted with the App JWT when missing or about to expire.
    async fn installation_token(&self, app: &AppAuth, installation_id: u64) -> Result<Secret, GitHubError> {
        let mut cache = app.tokens.lock().await;
        let now = OffsetDateTime::now_utc();
        if let Some(cached) = cache.get(&installation_id).filter(|c| c.renew_at > now) {
            return Ok(cached.token.clone());
        }
        #[derive(Deserialize)]
        struct AccessToken {
            token: String,
            expires_at: Option<String>,
        }
        let jwt = self.app_jwt()?;
        let path = format!("app/installations/{installation_id}/access_tokens");
        let reply = self.send_app(Method::POST, self.url(&path)?, Some(&json!({})), &jwt).await?;
        let minted: AccessToken = reply.json(&Method::POST, &path)?;
        let token = Secret::new(minted.token);
        // Unknown expiry: assume GitHub's documented hour, minus the margin.
        let expires_at = minted
            .expires_at
            .as_deref()
            .and_then(|s| OffsetDateTime::parse(s, &Rfc3339).ok())
            .unwrap_or(now + time::Duration::hours(1));
        let renew_at = expires_at - INSTALLATION_TOKEN_MARGIN;
        tracing::debug!(installation_id, %expires_at, "minted a GitHub App installation token");
        cache.insert(installation_id, CachedToken { token: token.clone(), renew_at });
        Ok(token)
    }

    /// Forgets a cached installation token that GitHub refused (revoked, or the App was reinstalled).
    async fn forget_token(&self, token: &Secret) {
        if let Auth::App(app) = &self.auth {
            app.tokens.lock().await.retain(|_, c| c.token != *token);
        }
    }

    /// The bearer for hook delivery calls: the App JWT for the App's hook, else the
    /// installation token (or PAT) for the hook's owner.
    async fn bearer_for_hook(&self, hook: &HookPath) -> Result<Secret, GitHubError> {
        match (hook.scope, &self.auth) {
            (HookScope::App, _) => self.app_jwt(),
            (_, Auth::Token(t)) => Ok(t.clone()),
            (_, Auth::App(app)) => {
                if let Some(id) = app.default_installation {
                    return self.installation_token(app, id).await;
                }
                let owner_path = hook.owner_path.as_deref().ok_or_else(|| {
                    GitHubError::Permanent("GITHUB_HOOK_OWNER or GITHUB_HOOK_REPOSITORY is not set".into())
                })?;
                let id = self.lookup_installation(app, owner_path).await?;
                self.installation_token_or_forget(app, id, owner_path).await
            }
        }
    }

    /// `GET /orgs/{org}/actions/runner-groups/{id}`: who may use the group, for `doctor`'s
    /// isolation check.
    ///
    /// # Errors
    /// As every call: not found, permission, rate limit, transport.
    pub async fn runner_group(&self, job: &JobContext, org: &str, id: u64) -> Result<RunnerGroup, GitHubError> {
        let bearer = self.runner_bearer(job).await?;
        let path = format!("orgs/{}/actions/runner-groups/{id}", segment(org)?);
        let reply = self.send(Method::GET, self.url(&path)?, None, &bearer, &[]).await?;
        reply.json(&Method::GET, &path)
    }

    fn hook(&self) -> Result<(&HookPath, &str), GitHubError> {
        let hook = self.hook.as_ref().ok_or_else(|| {
            GitHubError::Permanent("GITHUB_HOOK_SCOPE is not set: no hook to list deliveries of".into())
        })?;
        let prefix = hook.prefix.as_deref().map_err(|e| GitHubError::Permanent(e.clone()))?;
        Ok((hook, prefix))
    }

    // -- The one retry helper -----------------------------------------------------------

    /// Sends one request with the policy's timeouts and retries. 2xx and the statuses in
    /// `accept` come back as a [`Reply`]; anything else as a classified [`GitHubError`].
    /// A 401 drops the bearer from the installation token cache, so the next call mints anew.
    async fn send(
        &self,
        method: Method,
        url: Url,
        body: Option<&serde_json::Value>,
        bearer: &Secret,
        accept: &[u16],
    ) -> Result<Reply, GitHubError> {
        match self.send_raw(method, url, body, bearer, accept).await {
            Ok(reply) => Ok(reply),
            Err((error, status)) => {
                if status == Some(StatusCode::UNAUTHORIZED) {
                    self.forget_token(bearer).await;
                }
                Err(error)
            }
        }
    }

    /// [`Self::send`] for App JWT calls, which run while a cache lock is held (so they must
    /// not touch the token cache).
    async fn send_app(
        &self,
        method: Method,
        url: Url,
        body: Option<&serde_json::Value>,
        jwt: &Secret,
    ) -> Result<Reply, GitHubError> {
        self.send_raw(method, url, body, jwt, &[]).await.map_err(|(error, _)| error)
    }

    /// The retry loop. Errors carry the final HTTP status, when there was one.
    async fn send_raw(
        &self,
        method: Method,
        url: Url,
        body: Option<&serde_json::Value>,
        bearer: &Secret,
        accept: &[u16],
    ) -> Result<Reply, (GitHubError, Option<StatusCode>)> {
        let path = display_path(&url);
        let authorization = bearer_header(bearer).map_err(|e| (e, None))?;
        let mut attempt = 0u32;
        let mut waited_for_rate_limit = false;
        loop {
            attempt += 1;
            let started = Instant::now();
            let mut request = self
                .http
                .request(method.clone(), url.clone())
                .timeout(self.policy.request_timeout)
                .header(AUTHORIZATION, authorization.clone());
            if let Some(body) = body {
                request = request.json(body);
            }
            let outcome = match request.send().await {
                Ok(response) => {
                    let status = response.status();
                    let headers = response.headers().clone();
                    response.bytes().await.map(|b| Reply { status, headers, body: b.to_vec() })
                }
                Err(e) => Err(e),
            };
            let elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
            let reply = match outcome {
                Ok(reply) => reply,
                Err(e) => {
                    let what = describe_transport_error(&e);
                    tracing::debug!(%method, path = %path, attempt, elapsed_ms, error = %what, "GitHub request failed");
                    if attempt < self.policy.max_attempts {
                        tokio::time::sleep(self.policy.backoff(attempt)).await;
                        continue;
                    }
                    return Err((
                        GitHubError::Transient(format!("{method} {path}: {what} (after {attempt} attempts)")),
                        None,
                    ));
                }
            };
            let status = reply.status;
            tracing::debug!(%method, path = %path, status = status.as_u16(), attempt, elapsed_ms, "GitHub request");
            if status.is_success() || accept.contains(&status.as_u16()) {
                return Ok(reply);
            }
            let message = github_message(&reply.body, bearer);
            let describe = || format!("{method} {path}: {}{}", status.as_u16(), message_suffix(&message));

            if let Some(wait) = rate_limit_wait(status, &reply.headers, &message, OffsetDateTime::now_utc()) {
                if !waited_for_rate_limit && wait <= self.policy.max_inline_rate_limit_wait {
                    tracing::debug!(%method, path = %path, wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX), "GitHub rate limit: waiting once");
                    waited_for_rate_limit = true;
                    tokio::time::sleep(wait).await;
                    continue;
                }
                tracing::debug!(%method, path = %path, retry_after_s = wait.as_secs(), "GitHub rate limit");
                return Err((GitHubError::RateLimited { retry_after: wait }, Some(status)));
            }
            if status.is_server_error() {
                if attempt < self.policy.max_attempts {
                    tokio::time::sleep(self.policy.backoff(attempt)).await;
                    continue;
                }
                return Err((
                    GitHubError::Transient(format!("{} (after {attempt} attempts)", describe())),
                    Some(status),
                ));
            }
            let error = match status {
                StatusCode::NOT_FOUND => GitHubError::NotFound(describe()),
                StatusCode::CONFLICT => GitHubError::Conflict(describe()),
                // A timeout on GitHub's side, as an answer.
                StatusCode::REQUEST_TIMEOUT => GitHubError::Transient(describe()),
                _ => GitHubError::Permanent(describe()),
            };
            return Err((error, Some(status)));
        }
    }

    // -- Runners ------------------------------------------------------------------------

    /// Every runner at the target (optionally only those named `name`), page by page.
    async fn runners(&self, job: &JobContext, name: Option<&str>) -> Result<Vec<RunnerInfo>, GitHubError> {
        #[derive(Deserialize)]
        struct Page {
            runners: Vec<RunnerJson>,
        }
        let bearer = self.runner_bearer(job).await?;
        let path = format!("{}/actions/runners", Self::target_prefix(&job.target)?);
        let mut all = Vec::new();
        for page in 1..=MAX_PAGES {
            let mut url = self.url(&path)?;
            {
                let mut q = url.query_pairs_mut();
                if let Some(name) = name {
                    q.append_pair("name", name);
                }
                q.append_pair("per_page", &PER_PAGE.to_string());
                q.append_pair("page", &page.to_string());
            }
            let reply = self.send(Method::GET, url, None, &bearer, &[]).await?;
            let page: Page = reply.json(&Method::GET, &path)?;
            let n = page.runners.len();
            all.extend(page.runners.into_iter().map(RunnerJson::into_info));
            if n < PER_PAGE {
                break;
            }
        }
        Ok(all)
    }

    async fn hook_deliveries_page(
        &self,
        url: Url,
        bearer: &Secret,
    ) -> Result<(Vec<DeliveryJson>, Option<String>), GitHubError> {
        let path = display_path(&url);
        let reply = self.send(Method::GET, url, None, bearer, &[]).await?;
        let items: Vec<DeliveryJson> = reply.json(&Method::GET, &path)?;
        let next = reply.headers.get("link").and_then(|v| v.to_str().ok()).and_then(next_link);
        Ok((items, next))
    }
}

fn build_http(policy: &RetryPolicy) -> Result<reqwest::Client, ClientSetupError> {
    let mut headers = HeaderMap::new();
    headers.insert(USER_AGENT, HeaderValue::from_static(USER_AGENT_VALUE));
    headers.insert(ACCEPT, HeaderValue::from_static("application/vnd.github+json"));
    headers.insert("x-github-api-version", HeaderValue::from_static(API_VERSION));
    crate::tls::client_builder()
        .default_headers(headers)
        .connect_timeout(policy.connect_timeout)
        .timeout(policy.request_timeout)
        // Redirects would carry the Authorization header to wherever they point.
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| ClientSetupError::Http(e.to_string()))
}

fn bearer_header(bearer: &Secret) -> Result<HeaderValue, GitHubError> {
    let mut value = HeaderValue::from_str(&format!("Bearer {}", bearer.expose()))
        .map_err(|_| GitHubError::Permanent("the GitHub token contains characters not allowed in a header".into()))?;
    value.set_sensitive(true);
    Ok(value)
}

#[derive(serde::Serialize)]
struct JwtClaims<'a> {
    iat: i64,
    exp: i64,
    iss: &'a str,
}

/// An RS256 App JWT: `iat` 60 s in the past (clock drift), `exp` 9 min ahead (GitHub allows 10).
fn mint_jwt(app_id: &str, key: &EncodingKey, now: OffsetDateTime) -> Result<Secret, jsonwebtoken::errors::Error> {
    let now = now.unix_timestamp();
    let claims = JwtClaims { iat: now - JWT_BACKDATE_SECS, exp: now + JWT_LIFETIME_SECS, iss: app_id };
    jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, key).map(Secret::new)
}

fn hook_path(scope: HookScope, hook_id: Option<u64>, target: Option<&str>) -> HookPath {
    let target = target.map(|t| t.trim_matches('/'));
    match scope {
        HookScope::App => HookPath { scope, prefix: Ok("app/hook".into()), owner_path: None },
        HookScope::Org => {
            let org = target.map(|t| t.split('/').next().unwrap_or(t).to_owned());
            let prefix = match (&org, hook_id) {
                (Some(org), Some(id)) => Ok(format!("orgs/{org}/hooks/{id}")),
                (None, _) => Err("GITHUB_HOOK_SCOPE=org needs GITHUB_HOOK_OWNER (the organisation)".to_owned()),
                (_, None) => Err("GITHUB_HOOK_SCOPE=org needs GITHUB_HOOK_ID".to_owned()),
            };
            HookPath { scope, prefix, owner_path: org.map(|o| format!("orgs/{o}")) }
        }
        HookScope::Repo => {
            let repo = target.filter(|t| t.split('/').count() == 2 && !t.starts_with('/') && !t.ends_with('/'));
            let prefix = match (repo, hook_id) {
                (Some(repo), Some(id)) => Ok(format!("repos/{repo}/hooks/{id}")),
                (None, _) => Err("GITHUB_HOOK_SCOPE=repo needs GITHUB_HOOK_REPOSITORY (owner/repo)".to_owned()),
                (_, None) => Err("GITHUB_HOOK_SCOPE=repo needs GITHUB_HOOK_ID".to_owned()),
            };
            HookPath { scope, prefix, owner_path: repo.map(|r| format!("repos/{r}")) }
        }
    }
}

/// A name from a payload, checked to stay one URL path segment: not empty, not `.` or
/// `..`, no `/` or `\\`. Other characters are percent-encoded by [`GitHubClient::url`].
fn segment(name: &str) -> Result<&str, GitHubError> {
    if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\\']) {
        return Err(GitHubError::Permanent(format!(
            "{:?} is not a valid GitHub owner or repository name",
            crate::telemetry::loggable(name)
        )));
    }
    Ok(name)
}

/// The path and query of a URL, for logs and errors (never carries a credential).
fn display_path(url: &Url) -> String {
    match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_owned(),
    }
}

fn describe_transport_error(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "could not connect".into()
    } else if e.is_body() || e.is_decode() {
        "the response body could not be read".into()
    } else {
        // Without the URL; reqwest errors carry no headers.
        let mut s = "request failed".to_owned();
        let mut source = std::error::Error::source(e);
        while let Some(inner) = source {
            let _ = write!(s, ": {inner}");
            source = inner.source();
        }
        s
    }
}

/// GitHub's `message` from an error body, without the credential (should a server echo
/// it), shortened. Scrubbing comes first: a cut could leave half a token unrecognised.
fn github_message(body: &[u8], bearer: &Secret) -> String {
    #[derive(Deserialize)]
    struct ErrorBody {
        message: Option<String>,
    }
    let message = serde_json::from_slice::<ErrorBody>(body).ok().and_then(|b| b.message).unwrap_or_default();
    scrub(&message, bearer).chars().take(MAX_MESSAGE_CHARS).collect()
}

fn message_suffix(message: &str) -> String {
    if message.is_empty() { String::new() } else { format!(" {message}") }
}

/// Never let a credential through, even if a server echoed it back.
fn scrub(message: &str, bearer: &Secret) -> String {
    if bearer.is_empty() { message.to_owned() } else { message.replace(bearer.expose(), "[redacted]") }
}

/// How long GitHub asks us to wait, when the answer is a rate limit: 403/429 with
/// `retry-after` (seconds), or `x-ratelimit-remaining: 0` with `x-ratelimit-reset` (epoch
/// seconds); a 429, or a 403 whose message names a rate limit, without either waits a minute.
fn rate_limit_wait(status: StatusCode, headers: &HeaderMap, message: &str, now: OffsetDateTime) -> Option<Duration> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let wait = parse_rate_limit_headers(
        status.as_u16(),
        header("retry-after"),
        header("x-ratelimit-remaining"),
        header("x-ratelimit-reset"),
        now.unix_timestamp(),
    );
    wait.or_else(|| {
        let mentions_limit = message.to_ascii_lowercase().contains("rate limit");
        (status == StatusCode::TOO_MANY_REQUESTS || (status == StatusCode::FORBIDDEN && mentions_limit))
            .then_some(DEFAULT_RATE_LIMIT_WAIT)
    })
}

/// The header part of [`rate_limit_wait`], pure for tests.
fn parse_rate_limit_headers(
    status: u16,
    retry_after: Option<&str>,
    remaining: Option<&str>,
    reset: Option<&str>,
    now_epoch_s: i64,
) -> Option<Duration> {
    if status != 403 && status != 429 {
        return None;
    }
    if let Some(secs) = retry_after.and_then(|v| v.trim().parse::<u64>().ok()) {
        return Some(Duration::from_secs(secs));
    }
    if remaining.map(str::trim) == Some("0") {
        let reset = reset.and_then(|v| v.trim().parse::<i64>().ok())?;
        // Reset already passed (clock skew): a second is enough.
        let secs = u64::try_from(reset.saturating_sub(now_epoch_s)).unwrap_or(0).max(1);
        return Some(Duration::from_secs(secs));
    }
    None
}

/// The `rel="next"` target of a `Link` header.
fn next_link(header: &str) -> Option<String> {
    let mut rest = header;
    while let Some(start) = rest.find('<') {
        let after = &rest[start + 1..];
        let end = after.find('>')?;
        let target = &after[..end];
        let params_and_more = &after[end + 1..];
        // Parameters run until the next link (the next '<').
        let params = params_and_more.split('<').next().unwrap_or("");
        let is_next = params.split(';').any(|p| {
            let p = p.trim().trim_end_matches(',').trim();
            p.strip_prefix("rel=")
                .map(|v| v.trim_matches('"').split_ascii_whitespace().any(|r| r.eq_ignore_ascii_case("next")))
                .unwrap_or(false)
        });
        if is_next {
            return Some(target.to_owned());
        }
        rest = params_and_more;
    }
    None
}

/// The web URL for an API URL: `api.github.com` → `github.com`, `api.<x>` (GHE.com) →
/// `<x>`, `https://ghes.example.com/api/v3` → `https://ghes.example.com`.
fn web_base_url(api: &Url) -> String {
    let mut web = api.clone();
    web.set_query(None);
    web.set_fragment(None);
    let path = api.path().trim_end_matches('/');
    if path.ends_with("/api/v3") || path == "/api/v3" {
        let stripped = path.trim_end_matches("/api/v3").to_owned();
        web.set_path(&stripped);
    } else if let Some(host) = api.host_str().and_then(|h| h.strip_prefix("api.")) {
        let host = host.to_owned();
        if web.set_host(Some(&host)).is_err() {
            return api.as_str().trim_end_matches('/').to_owned();
        }
    }
    web.as_str().trim_end_matches('/').to_owned()
}

#[derive(Deserialize)]
struct RunnerJson {
    id: u64,
    name: String,
    status: String,
    #[serde(default)]
    busy: bool,
    #[serde(default)]
    labels: Vec<LabelJson>,
}

#[derive(Deserialize)]
struct LabelJson {
    name: String,
}

impl RunnerJson {
    fn into_info(self) -> RunnerInfo {
        RunnerInfo {
            id: self.id,
            name: self.name,
            online: self.status == "online",
            busy: self.busy,
            labels: self.labels.into_iter().map(|l| l.name).collect(),
        }
    }
}

#[derive(Deserialize)]
struct DeliveryJson {
    id: u64,
    guid: String,
    delivered_at: Option<String>,
    #[serde(default)]
    redelivery: bool,
    #[serde(default)]
    status: String,
    #[serde(default)]
    status_code: u16,
    #[serde(default)]
    event: String,
    action: Option<String>,
}

impl DeliveryJson {
    fn into_delivery(self) -> Delivery {
        Delivery {
            id: self.id,
            guid: self.guid,
            delivered_at: self.delivered_at.as_deref().and_then(|s| OffsetDateTime::parse(s, &Rfc3339).ok()),
            redelivery: self.redelivery,
            status: self.status,
            status_code: self.status_code,
            event: self.event,
            action: self.action,
        }
    }
}

fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme() && a.host_str() == b.host_str() && a.port_or_known_default() == b.port_or_known_default()
}

#[async_trait]
impl RunnerRegistry for GitHubClient {
    async fn generate_jit_config(
        &self,
        job: &JobContext,
        name: &str,
        labels: &[String],
        runner_group_id: u64,
    ) -> Result<JitConfig, GitHubError> {
        #[derive(Deserialize)]
        struct Jit {
            runner: RunnerId,
            encoded_jit_config: String,
        }
        #[derive(Deserialize)]
        struct RunnerId {
            id: u64,
        }
        let bearer = self.runner_bearer(job).await?;
        let path = format!("{}/actions/runners/generate-jitconfig", Self::target_prefix(&job.target)?);
        let body = json!({
            "name": name,
            "runner_group_id": runner_group_id,
            "labels": labels,
            "work_folder": "_work",
        });
        let reply = self.send(Method::POST, self.url(&path)?, Some(&body), &bearer, &[]).await?;
        let jit: Jit = reply.json(&Method::POST, &path)?;
        Ok(JitConfig { runner_id: jit.runner.id, encoded_jit_config: Secret::new(jit.encoded_jit_config) })
    }

    async fn registration_token(&self, job: &JobContext) -> Result<RegistrationToken, GitHubError> {
        #[derive(Deserialize)]
        struct Token {
            token: String,
            expires_at: String,
        }
        let prefix = Self::target_prefix(&job.target)?;
        let mut cache = self.registration_tokens.lock().await;
        let now = OffsetDateTime::now_utc();
        if let Some(t) = cache.get(&prefix).filter(|t| t.expires_at - now > REGISTRATION_TOKEN_MIN_LEFT) {
            return Ok(t.clone());
        }
        let bearer = self.runner_bearer(job).await?;
        let path = format!("{prefix}/actions/runners/registration-token");
        let reply = self.send(Method::POST, self.url(&path)?, None, &bearer, &[]).await?;
        let minted: Token = reply.json(&Method::POST, &path)?;
        let expires_at = OffsetDateTime::parse(&minted.expires_at, &Rfc3339).map_err(|_| {
            GitHubError::Transient(format!("POST /{path}: expires_at {:?} is not a date", minted.expires_at))
        })?;
        let token = RegistrationToken { token: Secret::new(minted.token), expires_at };
        cache.insert(prefix, token.clone());
        Ok(token)
    }

    async fn find_runner(&self, job: &JobContext, name: &str) -> Result<Option<RunnerInfo>, GitHubError> {
        // The `name` filter exists for org, repo and enterprise lists; match exactly anyway.
        Ok(self.runners(job, Some(name)).await?.into_iter().find(|r| r.name == name))
    }

    async fn list_runners(&self, job: &JobContext) -> Result<Vec<RunnerInfo>, GitHubError> {
        self.runners(job, None).await
    }

    async fn delete_runner(&self, job: &JobContext, runner_id: u64) -> Result<RunnerDeletion, GitHubError> {
        let bearer = self.runner_bearer(job).await?;
        let path = format!("{}/actions/runners/{runner_id}", Self::target_prefix(&job.target)?);
        let reply = self.send(Method::DELETE, self.url(&path)?, None, &bearer, &[404, 422]).await?;
        Ok(match reply.status.as_u16() {
            404 => RunnerDeletion::NotFound,
            422 => RunnerDeletion::Busy,
            _ => RunnerDeletion::Deleted,
        })
    }

    async fn job_state(&self, job: &JobContext, job_id: u64) -> Result<JobState, GitHubError> {
        #[derive(Deserialize)]
        struct Job {
            status: String,
            runner_name: Option<String>,
        }
        let Some((owner, name)) = job.repository.split_once('/') else {
            return Err(GitHubError::Permanent("the job's repository is not owner/name".into()));
        };
        let repository = format!("{}/{}", segment(owner)?, segment(name)?);
        let bearer = self.bearer_for_job(job, || Ok(format!("repos/{repository}"))).await?;
        let path = format!("repos/{repository}/actions/jobs/{job_id}");
        let reply = self.send(Method::GET, self.url(&path)?, None, &bearer, &[]).await?;
        let state: Job = reply.json(&Method::GET, &path)?;
        Ok(match state.status.as_str() {
            "queued" => JobState::Queued,
            "in_progress" => JobState::InProgress { runner_name: state.runner_name.filter(|n| !n.is_empty()) },
            "completed" => JobState::Completed,
            other => JobState::Other(other.to_owned()),
        })
    }

    async fn list_deliveries(&self, since: OffsetDateTime) -> Result<Vec<Delivery>, GitHubError> {
        let (hook, prefix) = self.hook()?;
        let bearer = self.bearer_for_hook(hook).await?;
        let mut url = self.url(&format!("{prefix}/deliveries"))?;
        url.query_pairs_mut().append_pair("per_page", &PER_PAGE.to_string());
        let mut all = Vec::new();
        for _ in 0..MAX_PAGES {
            let (items, next) = self.hook_deliveries_page(url, &bearer).await?;
            let mut reached_since = false;
            for item in items.into_iter().map(DeliveryJson::into_delivery) {
                match item.delivered_at {
                    Some(at) if at < since => reached_since = true,
                    _ => all.push(item),
                }
            }
            let Some(next) = next.filter(|_| !reached_since) else { break };
            let next = Url::parse(&next)
                .map_err(|_| GitHubError::Transient(format!("GET /{prefix}/deliveries: bad Link next URL")))?;
            // The cursor URL gets our credential: only follow it to the API we were given.
            if !same_origin(&next, &self.api) {
                return Err(GitHubError::Permanent(format!(
                    "GET /{prefix}/deliveries: Link next points to another host ({})",
                    next.host_str().unwrap_or("?")
                )));
            }
            url = next;
        }
        Ok(all)
    }

    async fn redeliver(&self, delivery_id: u64) -> Result<(), GitHubError> {
        let (hook, prefix) = self.hook()?;
        let bearer = self.bearer_for_hook(hook).await?;
        let path = format!("{prefix}/deliveries/{delivery_id}/attempts");
        self.send(Method::POST, self.url(&path)?, None, &bearer, &[]).await?;
        Ok(())
    }

    fn runner_url(&self, job: &JobContext) -> String {
        match &job.target {
            RunnerTarget::Org { org } => format!("{}/{org}", self.web),
            RunnerTarget::Repo { owner, repo } => format!("{}/{owner}/{repo}", self.web),
            RunnerTarget::Enterprise { enterprise } => format!("{}/enterprises/{enterprise}", self.web),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_link_finds_the_next_page_among_others() {
        let h = r#"<https://api.github.com/app/hook/deliveries?per_page=100&cursor=v1_12>; rel="next", <https://api.github.com/app/hook/deliveries?per_page=100>; rel="first""#;
        assert_eq!(
            next_link(h).as_deref(),
            Some("https://api.github.com/app/hook/deliveries?per_page=100&cursor=v1_12")
        );
        let h = r#"<https://api.github.com/resource?page=1>; rel="prev", <https://api.github.com/resource?page=3>; rel="next""#;
        assert_eq!(next_link(h).as_deref(), Some("https://api.github.com/resource?page=3"));
    }

    #[test]
    fn next_link_is_none_on_the_last_page_or_garbage() {
        assert_eq!(next_link(r#"<https://x/r?page=1>; rel="first", <https://x/r?page=1>; rel="prev""#), None);
        assert_eq!(next_link(""), None);
        assert_eq!(next_link("<unterminated; rel=\"next\""), None);
    }

    #[test]
    fn next_link_accepts_unquoted_and_multi_valued_rel_and_commas_in_urls() {
        assert_eq!(next_link("<https://x/r?a=1,2>; rel=next").as_deref(), Some("https://x/r?a=1,2"));
        assert_eq!(next_link(r#"<https://x/r?p=2>; rel="last next""#).as_deref(), Some("https://x/r?p=2"));
    }

    fn web(api: &str) -> String {
        web_base_url(&Url::parse(api).expect("url"))
    }

    #[test]
    fn web_url_is_derived_from_the_api_url() {
        assert_eq!(web("https://api.github.com/"), "https://github.com");
        assert_eq!(web("https://api.github.com"), "https://github.com");
        assert_eq!(web("https://ghes.example.com/api/v3"), "https://ghes.example.com");
        assert_eq!(web("https://ghes.example.com/api/v3/"), "https://ghes.example.com");
        assert_eq!(web("https://api.acme.ghe.com/"), "https://acme.ghe.com");
        assert_eq!(web("http://127.0.0.1:8080/"), "http://127.0.0.1:8080");
    }

    #[test]
    fn rate_limit_headers_give_the_wait() {
        assert_eq!(parse_rate_limit_headers(429, Some("1"), None, None, 0), Some(Duration::from_secs(1)));
        assert_eq!(parse_rate_limit_headers(403, Some(" 120 "), None, None, 0), Some(Duration::from_secs(120)));
        assert_eq!(
            parse_rate_limit_headers(403, None, Some("0"), Some("1700000030"), 1_700_000_000),
            Some(Duration::from_secs(30))
        );
        // A reset in the past still waits a moment.
        assert_eq!(
            parse_rate_limit_headers(403, None, Some("0"), Some("1699999990"), 1_700_000_000),
            Some(Duration::from_secs(1))
        );
    }

    #[test]
    fn other_answers_are_not_rate_limits() {
        // A plain permission 403 has requests left.
        assert_eq!(parse_rate_limit_headers(403, None, Some("4999"), Some("1700000030"), 1_700_000_000), None);
        assert_eq!(parse_rate_limit_headers(500, Some("5"), None, None, 0), None);
        assert_eq!(parse_rate_limit_headers(403, Some("soon"), None, None, 0), None);
        assert_eq!(parse_rate_limit_headers(403, None, Some("0"), None, 0), None);
    }

    #[test]
    fn secondary_limits_without_headers_wait_a_minute() {
        let now = OffsetDateTime::now_utc();
        let none = HeaderMap::new();
        assert_eq!(rate_limit_wait(StatusCode::TOO_MANY_REQUESTS, &none, "", now), Some(DEFAULT_RATE_LIMIT_WAIT));
        assert_eq!(
            rate_limit_wait(StatusCode::FORBIDDEN, &none, "You have exceeded a secondary rate limit", now),
            Some(DEFAULT_RATE_LIMIT_WAIT)
        );
        assert_eq!(rate_limit_wait(StatusCode::FORBIDDEN, &none, "Resource not accessible by integration", now), None);
    }

    #[test]
    fn backoff_grows_fourfold_with_jitter() {
        let p = RetryPolicy { base_backoff: Duration::from_millis(200), ..RetryPolicy::default() };
        for _ in 0..50 {
            let first = p.backoff(1);
            let second = p.backoff(2);
            assert!(first >= Duration::from_millis(150) && first <= Duration::from_millis(250), "{first:?}");
            assert!(second >= Duration::from_millis(600) && second <= Duration::from_millis(1000), "{second:?}");
        }
    }

    #[test]
    fn hook_paths_follow_the_scope() {
        assert_eq!(hook_path(HookScope::App, None, None).prefix.as_deref(), Ok("app/hook"));
        let org = hook_path(HookScope::Org, Some(7), Some("octo-org"));
        assert_eq!(org.prefix.as_deref(), Ok("orgs/octo-org/hooks/7"));
        assert_eq!(org.owner_path.as_deref(), Some("orgs/octo-org"));
        // GITHUB_HOOK_REPOSITORY set with an org hook: the owner part is the org.
        assert_eq!(
            hook_path(HookScope::Org, Some(7), Some("octo-org/r")).prefix.as_deref(),
            Ok("orgs/octo-org/hooks/7")
        );
        let repo = hook_path(HookScope::Repo, Some(9), Some("o/r"));
        assert_eq!(repo.prefix.as_deref(), Ok("repos/o/r/hooks/9"));
        assert_eq!(repo.owner_path.as_deref(), Some("repos/o/r"));
        assert!(hook_path(HookScope::Repo, Some(9), Some("just-owner")).prefix.is_err());
        assert!(hook_path(HookScope::Org, None, Some("o")).prefix.is_err());
    }

    #[test]
    fn github_message_is_extracted_and_shortened() {
        let none = Secret::default();
        assert_eq!(
            github_message(br#"{"message":"Bad credentials","documentation_url":"x"}"#, &none),
            "Bad credentials"
        );
        assert_eq!(github_message(b"<html>", &none), "");
        let long = format!(r#"{{"message":"{}"}}"#, "a".repeat(1000));
        assert_eq!(github_message(long.as_bytes(), &none).len(), MAX_MESSAGE_CHARS);
    }

    #[test]
    fn scrub_removes_an_echoed_credential() {
        let s = Secret::new("ghs_abc");
        assert_eq!(scrub("token ghs_abc is bad", &s), "token [redacted] is bad");
    }

    #[test]
    fn a_long_echoed_credential_is_scrubbed_before_the_message_is_cut() {
        let jwt = Secret::new(format!("eyJ.{}.sig", "x".repeat(600)));
        let body = json!({ "message": format!("could not decode {}", jwt.expose()) }).to_string();
        let message = github_message(body.as_bytes(), &jwt);
        assert_eq!(message, "could not decode [redacted]");
    }
}
