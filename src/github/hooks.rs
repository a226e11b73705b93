//! The configured webhook (the App's, an org's or a repository's): listing its recent
//! deliveries and asking for a redelivery, which reconcile uses to recover missed webhooks.

use reqwest::{Method, Url};
use serde::Deserialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::auth::Auth;
use super::client::GitHubClient;
use super::hook_path::HookPath;
use super::transport::{MAX_PAGES, PER_PAGE, display_path};
use super::{Delivery, GitHubError};
use crate::config::HookScope;
use crate::secret::Secret;

impl GitHubClient {
    /// `GET /{hook}/deliveries` since `since` (newest first, paged by the `Link` cursor).
    pub(super) async fn hook_deliveries_since(&self, since: OffsetDateTime) -> Result<Vec<Delivery>, GitHubError> {
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
            if !self.is_api_origin(&next) {
                return Err(GitHubError::Permanent(format!(
                    "GET /{prefix}/deliveries: Link next points to another host ({})",
                    next.host_str().unwrap_or("?")
                )));
            }
            url = next;
        }
        Ok(all)
    }

    /// `POST /{hook}/deliveries/{id}/attempts`.
    pub(super) async fn redeliver_hook_delivery(&self, delivery_id: u64) -> Result<(), GitHubError> {
        let (hook, prefix) = self.hook()?;
        let bearer = self.bearer_for_hook(hook).await?;
        let path = format!("{prefix}/deliveries/{delivery_id}/attempts");
        self.send(Method::POST, self.url(&path)?, None, &bearer, &[]).await?;
        Ok(())
    }

    fn hook(&self) -> Result<(&HookPath, &str), GitHubError> {
        let hook = self.hook.as_ref().ok_or_else(|| {
            GitHubError::Permanent("GITHUB_HOOK_SCOPE is not set: no hook to list deliveries of".into())
        })?;
        let prefix = hook.prefix.as_deref().map_err(|e| GitHubError::Permanent(e.clone()))?;
        Ok((hook, prefix))
    }

    /// The bearer for hook delivery calls: the App JWT for the App's hook, else the
    /// installation token (or PAT) for the hook's owner.
    async fn bearer_for_hook(&self, hook: &HookPath) -> Result<Secret, GitHubError> {
        match (hook.scope, &self.auth) {
            (HookScope::App, _) => self.app_jwt(),
            (_, Auth::Token(t)) => Ok(t.clone()),
            (_, Auth::App(app)) => {
                if let Some(id) = app.default_installation {
                    return app.installation_token(&self.transport, id).await;
                }
                let owner_path = hook.owner_path.as_deref().ok_or_else(|| {
                    GitHubError::Permanent("GITHUB_HOOK_OWNER or GITHUB_HOOK_REPOSITORY is not set".into())
                })?;
                app.looked_up_installation_token(&self.transport, owner_path).await
            }
        }
    }

    async fn hook_deliveries_page(
        &self,
        url: Url,
        bearer: &Secret,
    ) -> Result<(Vec<DeliveryJson>, Option<String>), GitHubError> {
        let path = display_path(&url);
        let reply = self.send(Method::GET, url, None, bearer, &[]).await?;
        let items: Vec<DeliveryJson> = reply.json(&Method::GET, &path)?;
        Ok((items, reply.next_link()))
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
