//! What the ARM backends (ACI, VM) share: one client that puts the token on every call,
//! listings that follow `nextLink` only within ARM, and the placements resolved against the
//! settings.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;

use super::credential::{AzureCredential, TokenSource, arm_scope};
use super::http::{AzureError, http_client, same_origin, transport_error};
use crate::compute::placement::{Pauses, Place, Refusal, create_in_order};
use crate::compute::{ComputeInfo, ComputeRequest, CreateOutcome, ProvisionError};
use crate::config::{Pool, PoolKeys, Settings};

/// One place an ARM pool's compute may go (`placements`): a region in a subscription and
/// resource group, with its own (regional) subnet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub location: String,
    /// Else `AZURE_SUBSCRIPTION_ID`.
    pub subscription_id: Option<String>,
    /// Else the pool's `resource_group`, else `AZURE_RESOURCE_GROUP`.
    pub resource_group: Option<String>,
    pub subnet_id: Option<String>,
}

/// The keys of one `placements` entry.
const PLACEMENT_KEYS: &[&str] = &["location", "subscription_id", "resource_group", "subnet_id"];

/// Where a pool's ARM compute goes: the keys the ACI and VM pools share.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Places {
    pub subnet_id: Option<String>,
    /// Else `AZURE_RESOURCE_GROUP`.
    pub resource_group: Option<String>,
    /// Else `AZURE_LOCATION`.
    pub location: Option<String>,
    /// In order of preference; empty: the one placement above.
    pub placements: Vec<Placement>,
}

/// Reads and checks `subnet_id`, `resource_group`, `location` and `placements`.
pub(crate) fn parse_places(keys: &mut PoolKeys<'_>) -> Places {
    let subnet_id = keys.resource_id("subnet_id");
    let resource_group = keys.resource_group("resource_group");
    let location = keys.string("location");
    let placements = parse_placements(keys, resource_group.as_deref());
    if !placements.is_empty() {
        // A location set on the pool beside placements is a contradiction; one inherited
        // from [defaults] is simply overridden. A subnet is regional, so neither may apply.
        let (_, location_key) = keys.raw("location");
        if location.is_some() && !location_key.starts_with("defaults.") {
            keys.error(location_key, "set each placement's location in placements, not location beside it");
        }
        if subnet_id.is_some() {
            let k = keys.key("subnet_id");
            keys.error(k, "subnets are regional: with placements, give each placement its own subnet_id");
        }
    }
    Places { subnet_id, resource_group, location, placements }
}

/// `placements = [{ location, subscription_id?, resource_group?, subnet_id? }, ...]`: every
/// problem with its key; duplicates (same subscription, resource group and location) too.
fn parse_placements(keys: &mut PoolKeys<'_>, pool_resource_group: Option<&str>) -> Vec<Placement> {
    let (v, key) = keys.raw("placements");
    let Some(v) = v else { return Vec::new() };
    let Some(list) = v.as_array().filter(|l| !l.is_empty()) else {
        keys.error(key, "must be a non-empty list: [{ location = \"westeurope\", subnet_id = \"...\" }, ...]");
        return Vec::new();
    };
    let mut out: Vec<Placement> = Vec::new();
    for (i, entry) in list.iter().enumerate() {
        let at = format!("{key}[{i}]");
        let Some(t) = entry.as_table() else {
            keys.error(at, "must be a table: { location, subscription_id, resource_group, subnet_id }");
            continue;
        };
        let mut ok = true;
        for k in t.keys().filter(|k| !PLACEMENT_KEYS.contains(&k.as_str())) {
            keys.error(
                format!("{at}.{k}"),
                "unknown key; a placement has location, subscription_id, resource_group and subnet_id",
            );
            ok = false;
        }
        let mut text = |k: &str| match t.get(k) {
            None => None,
            Some(toml::Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_owned()),
            Some(_) => {
                keys.error(format!("{at}.{k}"), "must be a non-empty string");
                ok = false;
                None
            }
        };
        let location = text("location");
        let subscription_id = text("subscription_id");
        let resource_group = text("resource_group");
        let subnet_id = text("subnet_id");
        let ids = [
            ("subscription_id", &subscription_id, crate::config::azure_names::check_subscription_id as fn(&str) -> _),
            ("resource_group", &resource_group, crate::config::azure_names::check_resource_group),
        ];
        for (k, value, check) in ids {
            if let Some(Err(e)) = value.as_deref().map(check) {
                keys.error(format!("{at}.{k}"), e);
                ok = false;
            }
        }
        if location.is_none() && !t.contains_key("location") {
            keys.error(format!("{at}.location"), "required: the region of this placement");
            ok = false;
        }
        if subnet_id.as_deref().is_some_and(|s| !s.starts_with("/subscriptions/")) {
            keys.error(format!("{at}.subnet_id"), "must be a full Azure resource id (/subscriptions/...)");
            ok = false;
        }
        let (Some(location), true) = (location, ok) else { continue };
        let placement = Placement { location, subscription_id, resource_group, subnet_id };
        // Azure compares all three without case.
        let same_text = |a: Option<&str>, b: Option<&str>| match (a, b) {
            (Some(a), Some(b)) => a.to_lowercase() == b.to_lowercase(),
            (a, b) => a == b,
        };
        let same = |a: &Placement, b: &Placement| {
            a.location.eq_ignore_ascii_case(&b.location)
                && same_text(a.subscription_id.as_deref(), b.subscription_id.as_deref())
                && same_text(
                    a.resource_group.as_deref().or(pool_resource_group),
                    b.resource_group.as_deref().or(pool_resource_group),
                )
        };
        if let Some(j) = out.iter().position(|p| same(p, &placement)) {
            keys.error(at, format!("duplicates {key}[{j}] (same subscription, resource group and location)"));
            continue;
        }
        out.push(placement);
    }
    out
}

/// Requests to Azure Resource Manager with the app's identity.
pub struct ArmClient {
    pub client: reqwest::Client,
    /// `AZURE_RESOURCE_MANAGER_URL`, without a trailing slash.
    pub url: String,
    token: TokenSource,
    /// The debug event each answer logs (`aci_request`, `vm_request`).
    event: &'static str,
}

impl ArmClient {
    /// `event`: the debug event each answer logs.
    #[must_use]
    pub fn new(settings: &Settings, credential: &AzureCredential, event: &'static str) -> Self {
        let url = settings.azure.resource_manager_url.trim_end_matches('/').to_owned();
        Self { client: http_client(), token: credential.token_source(arm_scope(&url)), url, event }
    }

    /// Sends `req` with a bearer token; a 401 drops the cached token so the next call gets a
    /// fresh one.
    ///
    /// # Errors
    /// No token, or the request did not complete (both retryable).
    pub async fn send(&self, what: &str, req: reqwest::RequestBuilder) -> Result<reqwest::Response, ProvisionError> {
        let token = self.token.token().await.map_err(|e| ProvisionError::retryable(e.to_string()))?;
        let response = req.bearer_auth(token.expose()).send().await.map_err(|e| transport_error(what, &e))?;
        tracing::debug!(event = self.event, what, status = response.status().as_u16(), "ARM answered");
        if response.status() == StatusCode::UNAUTHORIZED {
            self.token.invalidate().await;
        }
        Ok(response)
    }

    /// The JSON answer of a GET; `None` on 404.
    ///
    /// # Errors
    /// Any other failure, through `classify`.
    pub async fn get_json(
        &self,
        what: &str,
        url: &str,
        classify: impl Fn(&AzureError) -> ProvisionError,
    ) -> Result<Option<Value>, ProvisionError> {
        let response = self.send(what, self.client.get(url)).await?;
        match response.status() {
            StatusCode::NOT_FOUND => Ok(None),
            s if s.is_success() => response
                .json()
                .await
                .map(Some)
                .map_err(|e| ProvisionError::retryable(format!("{what}: unreadable answer: {e}"))),
            _ => Err(classify(&AzureError::from_response(response).await)),
        }
    }

    /// Every item of a listing, page after page (`nextLink`, only within ARM: a link
    /// elsewhere would receive our token).
    ///
    /// # Errors
    /// A failed page, through `classify`; a `nextLink` outside ARM (permanent).
    pub async fn list_all(
        &self,
        what: &str,
        first: String,
        classify: impl Fn(&AzureError) -> ProvisionError,
    ) -> Result<Vec<Value>, ProvisionError> {
        let mut url = first;
        let mut out = Vec::new();
        for _page in 0..1000 {
            let response = self.send(what, self.client.get(&url)).await?;
            if !response.status().is_success() {
                return Err(classify(&AzureError::from_response(response).await));
            }
            let mut page: Value = response
                .json()
                .await
                .map_err(|e| ProvisionError::retryable(format!("{what}: unreadable answer: {e}")))?;
            if let Some(items) = page.get_mut("value").and_then(Value::as_array_mut) {
                out.append(items);
            }
            match page["nextLink"].as_str().filter(|n| !n.is_empty()) {
                Some(next) if same_origin(&self.url, next) => url = next.to_owned(),
                Some(_) => {
                    return Err(ProvisionError::permanent(format!(
                        "{what}: nextLink points outside {}; not following it",
                        self.url
                    )));
                }
                None => return Ok(out),
            }
        }
        Ok(out)
    }
}

/// One placement, resolved against the settings: where a pool's compute may go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Site {
    pub subscription_id: String,
    pub resource_group: String,
    pub location: String,
    pub subnet_id: Option<String>,
    /// For logs, tags and `status`: the location, or `location/resource_group` when the
    /// pool has the location twice.
    pub label: String,
}

impl Site {
    /// Quotas are per subscription and region: a pause holds for every pool there.
    pub(crate) fn quota_key(&self) -> String {
        format!("{}/{}", self.subscription_id, self.location.to_ascii_lowercase())
    }

    pub(crate) fn scope_key(&self) -> String {
        format!("{}/{}", self.subscription_id, self.resource_group.to_ascii_lowercase())
    }
}

/// What a placement takes from the settings when it sets nothing itself.
#[derive(Debug, Clone, Default)]
pub struct SiteDefaults {
    pub subscription_id: Option<String>,
    pub resource_group: Option<String>,
    pub location: Option<String>,
}

impl SiteDefaults {
    #[must_use]
    pub fn from_settings(settings: &Settings) -> Self {
        let azure = &settings.azure;
        Self {
            subscription_id: azure.subscription_id.clone(),
            resource_group: azure.resource_group.clone(),
            location: azure.location.clone(),
        }
    }
}

/// A pool's placements in order of preference, resolved against the settings (one for a
/// pool without `placements`). `kind` names the backend in errors.
///
/// # Errors
/// A setting a placement needs is missing (permanent, naming it).
pub(crate) fn resolve_sites(
    pool: &str,
    kind: &str,
    places: &Places,
    defaults: &SiteDefaults,
) -> Result<Vec<Site>, ProvisionError> {
    let missing = |what: &str, setting: &str| {
        ProvisionError::permanent(format!("pool {pool} has no {what} and {setting} is not set"))
    };
    let subscription = |own: Option<&String>| {
        own.or(defaults.subscription_id.as_ref())
            .cloned()
            .ok_or_else(|| ProvisionError::permanent(format!("AZURE_SUBSCRIPTION_ID is not set: {kind} pools need it")))
    };
    let group = |own: Option<&String>| {
        own.or(places.resource_group.as_ref())
            .or(defaults.resource_group.as_ref())
            .cloned()
            .ok_or_else(|| missing("resource_group", "AZURE_RESOURCE_GROUP"))
    };
    if places.placements.is_empty() {
        let location = places
            .location
            .as_ref()
            .or(defaults.location.as_ref())
            .cloned()
            .ok_or_else(|| missing("location", "AZURE_LOCATION"))?;
        return Ok(vec![Site {
            subscription_id: subscription(None)?,
            resource_group: group(None)?,
            label: location.clone(),
            location,
            subnet_id: places.subnet_id.clone(),
        }]);
    }
    let mut sites = Vec::new();
    for p in &places.placements {
        let twice = places.placements.iter().filter(|q| q.location.eq_ignore_ascii_case(&p.location)).count() > 1;
        let resource_group = group(p.resource_group.as_ref())?;
        sites.push(Site {
            subscription_id: subscription(p.subscription_id.as_ref())?,
            label: if twice { format!("{}/{resource_group}", p.location) } else { p.location.clone() },
            resource_group,
            location: p.location.clone(),
            subnet_id: p.subnet_id.clone(),
        });
    }
    Ok(sites)
}

/// Every site's resource group once (placements may share one).
pub(crate) fn distinct_scopes(sites: &[Site]) -> Vec<&Site> {
    let mut seen = std::collections::HashSet::new();
    sites.iter().filter(|s| seen.insert(s.scope_key())).collect()
}

/// The compute named `name` in the first site that has it: the name is the same in all of
/// them, so compute made in any one (say, before a crash) is found before anything is created.
///
/// # Errors
/// A site could not be read.
pub(crate) async fn find_across<'a, F, Fut>(
    sites: &'a [Site],
    mut find_in: F,
) -> Result<Option<ComputeInfo>, ProvisionError>
where
    F: FnMut(&'a Site) -> Fut,
    Fut: Future<Output = Result<Option<ComputeInfo>, ProvisionError>>,
{
    for site in sites {
        if let Some(info) = find_in(site).await? {
            return Ok(Some(info));
        }
    }
    Ok(None)
}

/// Creates in the first site that takes it (see [`create_in_order`]): a refusal for quota or
/// capacity (`Err((error, true))` from `create_in`) pauses that site and the same attempt
/// tries the next, with the same request (the same JIT configuration: it is bound to the
/// runner name, not to a region).
///
/// # Errors
/// As [`create_in_order`].
pub(crate) async fn create_across<'a, F, Fut>(
    pool: &Pool,
    request: &ComputeRequest,
    sites: &'a [Site],
    pauses: &Pauses,
    mut create_in: F,
) -> Result<CreateOutcome, ProvisionError>
where
    F: FnMut(&'a Site) -> Fut,
    Fut: Future<Output = Result<CreateOutcome, (ProvisionError, bool)>>,
{
    let places: Vec<Place> = sites.iter().map(|s| Place { quota_key: s.quota_key(), label: s.label.clone() }).collect();
    create_in_order(&pool.name, &request.name, &places, pauses, |i| {
        let created = create_in(&sites[i]);
        async move {
            created
                .await
                .map_err(|(e, capacity)| if capacity { Refusal::QuotaOrCapacity(e) } else { Refusal::Other(e) })
        }
    })
    .await
}

/// `Some(wait)` when a pool spread over several sites has every one paused.
#[must_use]
pub(crate) fn all_paused(sites: &[Site], pauses: &Pauses) -> Option<Duration> {
    if sites.len() < 2 {
        return None;
    }
    let keys: Vec<String> = sites.iter().map(Site::quota_key).collect();
    pauses.all_paused(keys.iter().map(String::as_str))
}

/// How many runners of a pool each site holds, for `max_runners`: one list call per site,
/// reused for a few seconds and kept current by our own creates and deletes in between.
#[derive(Debug)]
pub struct ActiveCounts {
    ttl: Duration,
    /// By site scope (subscription/resource group) and pool.
    counts: Mutex<HashMap<(String, String), (Instant, usize)>>,
}

impl ActiveCounts {
    #[must_use]
    pub fn new(ttl: Duration) -> Self {
        Self { ttl, counts: Mutex::new(HashMap::new()) }
    }

    /// How long one list answer is reused.
    pub fn set_ttl(&mut self, ttl: Duration) {
        self.ttl = ttl;
    }

    /// One of ours created (or deleted) in `site`: known without asking ARM again.
    pub fn adjust(&self, pool: &str, site: &Site, created: bool) {
        if let Ok(mut counts) = self.counts.lock()
            && let Some((_, n)) = counts.get_mut(&(site.scope_key(), pool.to_owned()))
        {
            *n = if created { n.saturating_add(1) } else { n.saturating_sub(1) };
        }
    }

    /// The pool's runners across `sites` (each resource group once): a fresh count where
    /// the cache has one, else `count_in(site)`.
    ///
    /// # Errors
    /// A site could not be listed.
    pub async fn total<'a, F, Fut>(
        &self,
        pool: &str,
        sites: &'a [Site],
        mut count_in: F,
    ) -> Result<usize, ProvisionError>
    where
        F: FnMut(&'a Site) -> Fut,
        Fut: Future<Output = Result<usize, ProvisionError>>,
    {
        let mut total = 0;
        for site in distinct_scopes(sites) {
            let key = (site.scope_key(), pool.to_owned());
            if let Ok(counts) = self.counts.lock()
                && let Some((at, n)) = counts.get(&key)
                && at.elapsed() < self.ttl
            {
                total += *n;
                continue;
            }
            let n = count_in(site).await?;
            if let Ok(mut counts) = self.counts.lock() {
                counts.insert(key, (Instant::now(), n));
            }
            total += n;
        }
        Ok(total)
    }
}
