//! How every GitHub call travels: URLs built segment by segment, the one retry helper
//! (rate limits, 5xx, timeouts), errors classified for the queue with any echoed credential
//! scrubbed, and the `Link` header's next page.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderMap, HeaderValue, USER_AGENT};
use reqwest::{Method, StatusCode, Url};
use serde::Deserialize;
use time::OffsetDateTime;

use super::GitHubError;
use crate::secret::Secret;

/// Sent on every request; GitHub refuses requests without a `User-Agent`.
pub const USER_AGENT_VALUE: &str = concat!("runner-dispatch/", env!("CARGO_PKG_VERSION"));
const API_VERSION: &str = "2022-11-28";
pub(super) const PER_PAGE: usize = 100;
/// A bound on pages followed, so a misbehaving server cannot keep us looping.
pub(super) const MAX_PAGES: usize = 100;
/// GitHub's advice for a secondary rate limit without `retry-after`: wait at least a minute.
const DEFAULT_RATE_LIMIT_WAIT: Duration = Duration::from_secs(60);
/// GitHub's `message` is quoted in errors up to this many characters.
const MAX_MESSAGE_CHARS: usize = 300;

/// Why a [`super::client::GitHubClient`] could not be built. Never contains a credential.
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

/// One HTTP answer, body already read.
pub(super) struct Reply {
    pub(super) status: StatusCode,
    pub(super) headers: HeaderMap,
    body: Vec<u8>,
}

impl Reply {
    pub(super) fn json<T: for<'de> Deserialize<'de>>(&self, method: &Method, path: &str) -> Result<T, GitHubError> {
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

    /// The `rel="next"` target of the `Link` header, if any.
    pub(super) fn next_link(&self) -> Option<String> {
        self.headers.get("link").and_then(|v| v.to_str().ok()).and_then(next_link)
    }
}

/// The HTTP client every call goes through: GitHub's headers, the policy's timeouts, no redirects.
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

/// The HTTP side of the client: the API base, the HTTP client and the retry policy.
pub(super) struct Transport {
    http: reqwest::Client,
    api: Url,
    policy: RetryPolicy,
}

impl Transport {
    pub(super) fn new(api: Url, policy: RetryPolicy) -> Result<Self, ClientSetupError> {
        Ok(Self { http: build_http(&policy)?, api, policy })
    }

    pub(super) fn api(&self) -> &Url {
        &self.api
    }

    pub(super) fn policy(&self) -> &RetryPolicy {
        &self.policy
    }

    /// The API URL of `path`, built segment by segment: each `/`-separated part is
    /// percent-encoded on its own (`?`, `#`, `%` included), so no part can add a query, a
    /// fragment or a path step. Names from payloads go through [`segment`] first, which
    /// refuses the ones holding a `/` or being a dot segment.
    pub(super) fn url(&self, path: &str) -> Result<Url, GitHubError> {
        let mut url = self.api.clone();
        url.path_segments_mut()
            .map_err(|()| GitHubError::Permanent("GITHUB_API_URL cannot carry a path".into()))?
            .pop_if_empty()
            .extend(path.trim_start_matches('/').split('/'));
        Ok(url)
    }

    /// Whether a URL a server handed us (a `Link` cursor) points at the API we were given:
    /// only such URLs get our credential.
    pub(super) fn is_api_origin(&self, url: &Url) -> bool {
        let api = &self.api;
        url.scheme() == api.scheme()
            && url.host_str() == api.host_str()
            && url.port_or_known_default() == api.port_or_known_default()
    }

    /// [`super::client::GitHubClient::send`] for App JWT calls, which run while a cache lock is held (so they must
    /// not touch the token cache).
    pub(super) async fn send_app(
        &self,
        method: Method,
        url: Url,
        body: Option<&serde_json::Value>,
        jwt: &Secret,
    ) -> Result<Reply, GitHubError> {
        self.send_raw(method, url, body, jwt, &[]).await.map_err(|(error, _)| error)
    }

    /// The retry loop. Errors carry the final HTTP status, when there was one.
    pub(super) async fn send_raw(
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
}

fn bearer_header(bearer: &Secret) -> Result<HeaderValue, GitHubError> {
    let mut value = HeaderValue::from_str(&format!("Bearer {}", bearer.expose()))
        .map_err(|_| GitHubError::Permanent("the GitHub token contains characters not allowed in a header".into()))?;
    value.set_sensitive(true);
    Ok(value)
}

/// A name from a payload, checked to stay one URL path segment: not empty, not `.` or
/// `..`, no `/` or `\\`. Other characters are percent-encoded by [`GitHubClient::url`].
pub(super) fn segment(name: &str) -> Result<&str, GitHubError> {
    if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\\']) {
        return Err(GitHubError::Permanent(format!(
            "{:?} is not a valid GitHub owner or repository name",
            crate::telemetry::loggable(name)
        )));
    }
    Ok(name)
}

/// The path and query of a URL, for logs and errors (never carries a credential).
pub(super) fn display_path(url: &Url) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
