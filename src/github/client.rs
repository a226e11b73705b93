//! The live GitHub REST client: the one [`GitHubClient`] type, how it is built, and where
//! it points. Its calls are spread over the sibling files by concept: [`super::auth`]
//! (App JWT, installation tokens, PAT), [`super::transport`] (the one retry helper, error
//! mapping, pagination), [`super::runners`] (JIT, registration tokens, runners, runner
//! groups, jobs) and [`super::hooks`] (hook deliveries and redelivery).

use std::collections::HashMap;

use reqwest::Url;
use tokio::sync::Mutex;

use reqwest::{Method, StatusCode};

use super::auth::Auth;
use super::hook_path::{HookPath, hook_path};
use super::transport::{Reply, Transport};
use super::{GitHubError, JobContext, RegistrationToken};
use crate::config::Settings;
use crate::secret::Secret;

// The public paths of the client's types stay `github::client::*`.
pub use super::transport::{ClientSetupError, RetryPolicy, USER_AGENT_VALUE};

/// The live GitHub client: one per process, shared by every invocation.
pub struct GitHubClient {
    pub(super) transport: Transport,
    pub(super) web: String,
    pub(super) auth: Auth,
    pub(super) hook: Option<HookPath>,
    /// `api_prefix()` → registration token.
    pub(super) registration_tokens: Mutex<HashMap<String, RegistrationToken>>,
}

impl std::fmt::Debug for GitHubClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitHubClient")
            .field("api", &self.transport.api().as_str())
            .field("auth", &self.auth.describe())
            .finish_non_exhaustive()
    }
}

impl GitHubClient {
    /// Builds the client from the settings.
    ///
    /// # Errors
    /// No credentials (`GitHubAuth::None`: use the dry-run registry instead), a private key
    /// that is not a usable RSA PEM key (the error never quotes the key), or a bad API URL.
    pub fn new(settings: &Settings) -> Result<Self, ClientSetupError> {
        let auth = Auth::from_settings(&settings.github_auth)?;
        let mut base = settings.github_api_url.trim_end_matches('/').to_owned();
        base.push('/');
        let api = Url::parse(&base)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
            .ok_or_else(|| ClientSetupError::InvalidApiUrl(settings.github_api_url.clone()))?;
        let web = web_base_url(&api);
        let hook = settings.hook_scope.map(|scope| hook_path(scope, settings.hook_id, settings.hook_target.as_deref()));
        Ok(Self {
            transport: Transport::new(api, RetryPolicy::default())?,
            web,
            auth,
            hook,
            registration_tokens: Mutex::new(HashMap::new()),
        })
    }

    /// Replaces the timeouts and retry behaviour (tests use millisecond backoffs).
    ///
    /// # Errors
    /// The HTTP client cannot be rebuilt with the new connect timeout.
    pub fn with_retry_policy(mut self, policy: RetryPolicy) -> Result<Self, ClientSetupError> {
        self.transport = Transport::new(self.transport.api().clone(), policy)?;
        Ok(self)
    }

    /// The retry policy in use.
    #[must_use]
    pub fn retry_policy(&self) -> &RetryPolicy {
        self.transport.policy()
    }

    /// Sends one request with the policy's timeouts and retries. 2xx and the statuses in
    /// `accept` come back as a [`Reply`]; anything else as a classified [`GitHubError`].
    /// A 401 drops the bearer from the installation token cache, so the next call mints anew.
    pub(super) async fn send(
        &self,
        method: Method,
        url: Url,
        body: Option<&serde_json::Value>,
        bearer: &Secret,
        accept: &[u16],
    ) -> Result<Reply, GitHubError> {
        match self.transport.send_raw(method, url, body, bearer, accept).await {
            Ok(reply) => Ok(reply),
            Err((error, status)) => {
                if status == Some(StatusCode::UNAUTHORIZED) {
                    self.auth.forget_token(bearer).await;
                }
                Err(error)
            }
        }
    }

    /// [`Transport::url`].
    pub(super) fn url(&self, path: &str) -> Result<Url, GitHubError> {
        self.transport.url(path)
    }

    /// [`Transport::is_api_origin`].
    pub(super) fn is_api_origin(&self, url: &Url) -> bool {
        self.transport.is_api_origin(url)
    }

    /// A fresh App JWT.
    pub(super) fn app_jwt(&self) -> Result<Secret, GitHubError> {
        self.auth.app_jwt()
    }

    /// The bearer for calls about `job` (see [`Auth::bearer_for_job`]).
    pub(super) async fn bearer_for_job(
        &self,
        job: &JobContext,
        lookup: impl FnOnce() -> Result<String, GitHubError> + Send,
    ) -> Result<Secret, GitHubError> {
        self.auth.bearer_for_job(&self.transport, job, lookup).await
    }

    /// The web URL GitHub serves pages from (`https://github.com`, `https://ghes.example.com`).
    #[must_use]
    pub fn web_url(&self) -> &str {
        &self.web
    }
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
