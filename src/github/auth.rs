//! Who the client is to GitHub: a PAT, or a GitHub App (RS256 JWTs, installation tokens
//! minted with them, and the caches that spare GitHub a call per job).

use std::collections::HashMap;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::Method;
use serde::Deserialize;
use serde_json::json;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::sync::Mutex;

use super::transport::{ClientSetupError, Transport};
use super::{GitHubError, JobContext};
use crate::config::GitHubAuth;
use crate::secret::Secret;

/// App JWTs: GitHub allows at most 10 minutes; `iat` is backdated for clock drift.
const JWT_BACKDATE_SECS: i64 = 60;
const JWT_LIFETIME_SECS: i64 = 9 * 60;
/// Installation tokens live 1 h; renew this long before they expire.
const INSTALLATION_TOKEN_MARGIN: time::Duration = time::Duration::minutes(5);

/// An installation access token and when to stop using it.
#[derive(Debug, Clone)]
struct CachedToken {
    token: Secret,
    renew_at: OffsetDateTime,
}

/// GitHub App credentials and the caches that spare GitHub a call per job.
pub(super) struct AppAuth {
    app_id: String,
    key: EncodingKey,
    pub(super) default_installation: Option<u64>,
    /// Installation id → token. Held across the mint, so concurrent callers wait for one mint.
    tokens: Mutex<HashMap<u64, CachedToken>>,
    /// Lookup path (`orgs/{org}`, `repos/{o}/{r}`) → installation id.
    installations: Mutex<HashMap<String, u64>>,
}

pub(super) enum Auth {
    App(Box<AppAuth>),
    Token(Secret),
}

impl Auth {
    /// The credentials of the settings, the App key checked by signing once.
    pub(super) fn from_settings(auth: &GitHubAuth) -> Result<Self, ClientSetupError> {
        Ok(match auth {
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
        })
    }

    /// For `Debug`: the App id, never a credential.
    pub(super) fn describe(&self) -> String {
        match self {
            Auth::App(a) => format!("App({})", a.app_id),
            Auth::Token(_) => "Token([redacted])".to_owned(),
        }
    }
}

impl Auth {
    fn app(&self) -> Result<&AppAuth, GitHubError> {
        match self {
            Auth::App(a) => Ok(a),
            Auth::Token(_) => Err(GitHubError::Permanent(
                "this call needs GitHub App credentials (GITHUB_APP_ID and GITHUB_APP_PRIVATE_KEY), not a token".into(),
            )),
        }
    }

    /// A fresh App JWT (cheap: one RSA signature).
    pub(super) fn app_jwt(&self) -> Result<Secret, GitHubError> {
        self.app()?.jwt()
    }

    /// The bearer for calls about `job`: the PAT, or the installation token for the job's
    /// installation (from the payload, the settings, or looked up at `lookup()`).
    pub(super) async fn bearer_for_job(
        &self,
        transport: &Transport,
        job: &JobContext,
        lookup: impl FnOnce() -> Result<String, GitHubError> + Send,
    ) -> Result<Secret, GitHubError> {
        let app = match self {
            Auth::Token(t) => return Ok(t.clone()),
            Auth::App(a) => a,
        };
        if let Some(id) = job.installation_id.or(app.default_installation) {
            return app.installation_token(transport, id).await;
        }
        let owner_path = lookup()?;
        app.looked_up_installation_token(transport, &owner_path).await
    }

    /// Forgets a cached installation token that GitHub refused (revoked, or the App was reinstalled).
    pub(super) async fn forget_token(&self, token: &Secret) {
        if let Auth::App(app) = self {
            app.tokens.lock().await.retain(|_, c| c.token != *token);
        }
    }
}

impl AppAuth {
    /// A fresh App JWT (cheap: one RSA signature).
    fn jwt(&self) -> Result<Secret, GitHubError> {
        mint_jwt(&self.app_id, &self.key, OffsetDateTime::now_utc())
            .map_err(|_| GitHubError::Permanent("cannot sign the GitHub App JWT with the configured key".into()))
    }

    /// The installation token of the installation at `owner_path` (`orgs/{org}` or
    /// `repos/{o}/{r}`). An installation that is gone (the App was reinstalled) is dropped
    /// from the lookup cache so the next call looks again.
    pub(super) async fn looked_up_installation_token(
        &self,
        transport: &Transport,
        owner_path: &str,
    ) -> Result<Secret, GitHubError> {
        let installation_id = self.lookup_installation(transport, owner_path).await?;
        let result = self.installation_token(transport, installation_id).await;
        if matches!(result, Err(GitHubError::NotFound(_))) {
            self.installations.lock().await.remove(owner_path);
        }
        result
    }

    /// `GET /orgs/{org}/installation` or `GET /repos/{o}/{r}/installation` with the App JWT, cached.
    async fn lookup_installation(&self, transport: &Transport, owner_path: &str) -> Result<u64, GitHubError> {
        let mut cache = self.installations.lock().await;
        if let Some(id) = cache.get(owner_path) {
            return Ok(*id);
        }
        #[derive(Deserialize)]
        struct Installation {
            id: u64,
        }
        let jwt = self.jwt()?;
        let path = format!("{owner_path}/installation");
        let reply = transport.send_app(Method::GET, transport.url(&path)?, None, &jwt).await?;
        let installation: Installation = reply.json(&Method::GET, &path)?;
        tracing::debug!(lookup = owner_path, installation_id = installation.id, "found the GitHub App installation");
        cache.insert(owner_path.to_owned(), installation.id);
        Ok(installation.id)
    }

    /// The installation token, minted with the App JWT when missing or about to expire.
    pub(super) async fn installation_token(
        &self,
        transport: &Transport,
        installation_id: u64,
    ) -> Result<Secret, GitHubError> {
        let mut cache = self.tokens.lock().await;
        let now = OffsetDateTime::now_utc();
        if let Some(cached) = cache.get(&installation_id).filter(|c| c.renew_at > now) {
            return Ok(cached.token.clone());
        }
        #[derive(Deserialize)]
        struct AccessToken {
            token: String,
            expires_at: Option<String>,
        }
        let jwt = self.jwt()?;
        let path = format!("app/installations/{installation_id}/access_tokens");
        let reply = transport.send_app(Method::POST, transport.url(&path)?, Some(&json!({})), &jwt).await?;
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
