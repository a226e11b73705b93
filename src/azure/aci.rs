//! Azure Container Instances: one container group per runner, through the ARM REST API.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::StatusCode;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::arm::{
    ActiveCounts, ArmClient, Placement, Places, Site, SiteDefaults, all_paused, create_across, distinct_scopes,
    find_across, parse_places, resolve_sites,
};
use super::credential::AzureCredential;
use super::http::{AzureError, registry_host};
use crate::compute::placement::Pauses;
use crate::compute::{
    ComputeBackend, ComputeInfo, ComputeRequest, ComputeState, CreateOutcome, EnvValue, ProvisionError, Purpose,
};
use crate::config::{Compute, ConfigProblem, Os, Pool, PoolKeys, Role, Settings};

/// The api-version we call. Bodies keep to the fields of 2023-05-01, which every newer
/// version accepts.
pub const ACI_API_VERSION: &str = "2025-09-01";

/// How long one list call answers `active_count` for a pool.
pub const ACTIVE_COUNT_TTL: Duration = Duration::from_secs(5);

/// Tags runner-dispatch sets on every container group.
/// Tag naming the pool.
pub const TAG_POOL: &str = "runner-dispatch-pool";
/// Tag marking idle capacity, with the registration target as its value.
pub const TAG_IDLE_TARGET: &str = "runner-dispatch-idle-target";
pub const TAG_JOB_ID: &str = "runner-dispatch-job-id";
pub const TAG_RUN_ID: &str = "runner-dispatch-run-id";
pub const TAG_REPOSITORY: &str = "runner-dispatch-repository";
pub const TAG_JOB_CREATED_AT: &str = "runner-dispatch-job-created-at";
/// The JIT runner id (cleanup deletes the group only for a job that ran on that runner).
pub const TAG_RUNNER_ID: &str = "runner-dispatch-runner-id";

/// The one container in each group.
pub const CONTAINER_NAME: &str = "runner";

/// Error codes that mean "not now": quota, capacity and throttling. Quotas are per
/// subscription and region across all pools, so they clear as other runners finish.
/// - `ContainerGroupQuotaReached`: core/group quota (`StandardCores`, ...), seen with 400.
/// - `ServiceUnavailable`: "requested resource is not available in the location" (409)
///   and "container group quota 'ContainerGroups' exceeded" (Microsoft troubleshooting articles).
/// - `RegistryErrorResponse`: the image registry answered with an error; retry later.
/// - the rest are ARM-wide throttling / capacity / transient codes; `OperationNotAllowed`
///   counts only when its message speaks of a quota.
const RETRYABLE_CODES: &[&str] = &[
    "ContainerGroupQuotaReached",
    "ServiceUnavailable",
    "RegistryErrorResponse",
    "TooManyRequests",
    "RequestThrottled",
    "SubscriptionRequestsThrottled",
    "ResourceRequestsThrottled",
    "QuotaExceeded",
    "AllocationFailed",
    "ZonalAllocationFailed",
    "InternalServerError",
    "GatewayTimeout",
    "AnotherOperationInProgress",
    "ResourceGroupBeingDeleted",
];

/// An ACI pool's own settings (`backend = "aci"`).
#[derive(Debug, Clone, PartialEq)]
pub struct AciPool {
    pub cpu: f64,
    pub memory_gb: f64,
    pub subnet_id: Option<String>,
    /// Else `AZURE_RESOURCE_GROUP`.
    pub resource_group: Option<String>,
    /// Else `AZURE_LOCATION`.
    pub location: Option<String>,
    /// `placements`, in order of preference; empty: the one placement above.
    pub placements: Vec<Placement>,
}

/// The pool keys only ACI reads.
pub const POOL_KEYS: &[&str] = &["cpu", "memory_gb", "subnet_id", "resource_group", "location", "placements"];

/// Reads and checks the ACI keys of a pool (see [`Role`]): kept on ACI pools.
pub(crate) fn parse_pool(keys: &mut PoolKeys<'_>, role: Role) -> Option<AciPool> {
    let cpu = keys.number("cpu").unwrap_or(2.0);
    let memory_gb = keys.number("memory_gb").unwrap_or(4.0);
    if cpu <= 0.0 {
        keys.error(keys.key("cpu"), "must be greater than zero");
    }
    if memory_gb <= 0.0 {
        keys.error(keys.key("memory_gb"), "must be greater than zero");
    }
    let Places { subnet_id, resource_group, location, placements } = parse_places(keys);
    (role == Role::Chosen).then_some(AciPool { cpu, memory_gb, subnet_id, resource_group, location, placements })
}

/// Settings ACI pools need and the environment lacks: the subscription always, the
/// resource group and location when a pool sets none.
#[must_use]
pub fn required_settings(settings: &Settings, pools: &[(&Pool, &AciPool)]) -> Vec<ConfigProblem> {
    let az = &settings.azure;
    let mut out = Vec::new();
    if az.subscription_id.is_none() {
        out.push(ConfigProblem::required(
            "AZURE_SUBSCRIPTION_ID",
            "ACI pools create container groups in this subscription",
        ));
    }
    let without_group = |a: &AciPool| {
        a.resource_group.is_none()
            && (a.placements.is_empty() || a.placements.iter().any(|p| p.resource_group.is_none()))
    };
    if az.resource_group.is_none() && pools.iter().any(|(_, a)| without_group(a)) {
        out.push(ConfigProblem::required("AZURE_RESOURCE_GROUP", "an ACI pool sets no resource_group"));
    }
    if az.location.is_none() && pools.iter().any(|(_, a)| a.location.is_none() && a.placements.is_empty()) {
        out.push(ConfigProblem::required("AZURE_LOCATION", "an ACI pool sets no location"));
    }
    out
}

/// The container group body the dry-run records: the pool's location, or a placeholder
/// for the setting.
#[must_use]
pub fn dry_run_body(pool: &Pool, aci: &AciPool, request: &ComputeRequest) -> Value {
    match aci.placements.first() {
        Some(p) => container_group_body_in(pool, aci, request, &p.location, p.subnet_id.as_deref()),
        None => container_group_body(pool, aci, request, aci.location.as_deref().unwrap_or("<AZURE_LOCATION>")),
    }
}

/// The ACI part of a pool the ACI backend was given.
fn aci_of(pool: &Pool) -> Result<&AciPool, ProvisionError> {
    match &pool.compute {
        Compute::Aci(a) => Ok(a),
        other => Err(ProvisionError::permanent(format!(
            "pool {} has backend = \"{}\", not \"aci\"",
            pool.name,
            other.backend().as_str()
        ))),
    }
}

/// ACI container group names: lowercase letters, digits and hyphens, 1–63, no hyphen at either end.
#[must_use]
pub fn is_valid_aci_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && !name.starts_with('-')
        && !name.ends_with('-')
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// A container group name is at most 63 characters: a prefix of at most 40 leaves room for
/// `-<20-digit job id>`.
pub(crate) fn name_prefix_problem(prefix: &str) -> Option<&'static str> {
    (!is_valid_aci_name(prefix) || prefix.len() > 40).then_some(
        "must be lowercase letters, digits and hyphens, at most 40 characters, no hyphen at either end (it starts every container group name)",
    )
}

/// The container group PUT body. Deterministic: the same pool and request give the same
/// JSON (no timestamps; tags carry the job's own `created_at`).
#[must_use]
pub fn container_group_body(pool: &Pool, aci: &AciPool, request: &ComputeRequest, location: &str) -> Value {
    container_group_body_in(pool, aci, request, location, aci.subnet_id.as_deref())
}

/// [`container_group_body`] for one placement: its location and (regional) subnet.
#[must_use]
pub fn container_group_body_in(
    pool: &Pool,
    aci: &AciPool,
    request: &ComputeRequest,
    location: &str,
    subnet: Option<&str>,
) -> Value {
    let env: Vec<Value> = request
        .env
        .iter()
        .map(|(name, value)| match value {
            EnvValue::Plain(v) => json!({ "name": name, "value": v }),
            // secureValue is write-only: GET never returns it.
            EnvValue::Secret(s) => json!({ "name": name, "secureValue": s.expose() }),
        })
        .collect();
    let mut properties = json!({
        "osType": match pool.os { Os::Linux => "Linux", Os::Windows => "Windows" },
        "restartPolicy": "Never",
        "containers": [{
            "name": CONTAINER_NAME,
            "properties": {
                "image": pool.image,
                "resources": { "requests": { "cpu": aci.cpu, "memoryInGB": aci.memory_gb } },
                "environmentVariables": env,
            }
        }],
    });
    if let (Some(identity), Some(server)) = (&pool.image_pull_identity, registry_host(&pool.image)) {
        properties["imageRegistryCredentials"] = json!([{ "server": server, "identity": identity }]);
    }
    if let Some(subnet) = subnet {
        properties["subnetIds"] = json!([{ "id": subnet }]);
    }
    let mut body = json!({
        "location": location,
        "tags": tags(pool, request),
        "properties": properties,
    });
    // User-assigned identities: the pull identity (ACR) and the jobs' own identity.
    let identities: BTreeMap<&str, Value> =
        [&pool.image_pull_identity, &pool.identity].into_iter().flatten().map(|id| (id.as_str(), json!({}))).collect();
    if !identities.is_empty() {
        body["identity"] = json!({ "type": "UserAssigned", "userAssignedIdentities": identities });
    }
    body
}

pub(crate) fn tags(pool: &Pool, request: &ComputeRequest) -> BTreeMap<String, String> {
    let mut tags = pool.tags.clone();
    tags.insert(TAG_POOL.into(), pool.name.clone());
    match &request.purpose {
        Purpose::Job(job) => {
            tags.insert(TAG_JOB_ID.into(), job.job_id.to_string());
            tags.insert(TAG_RUN_ID.into(), job.run_id.to_string());
            tags.insert(TAG_REPOSITORY.into(), job.repository.clone());
            if let Some(created) = &job.job_created_at {
                tags.insert(TAG_JOB_CREATED_AT.into(), created.clone());
            }
        }
        Purpose::Idle { target } => {
            tags.insert(TAG_IDLE_TARGET.into(), target.clone());
        }
    }
    if let Some(id) = request.runner_id {
        tags.insert(TAG_RUNNER_ID.into(), id.to_string());
    }
    tags
}

/// The state of a container group from a GET or list answer.
#[must_use]
pub fn container_group_state(group: &Value) -> ComputeState {
    let props = &group["properties"];
    let provisioning = props["provisioningState"].as_str().unwrap_or_default();
    if provisioning.eq_ignore_ascii_case("Failed") {
        return ComputeState::Failed;
    }
    let container = props["containers"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["name"] == CONTAINER_NAME).or_else(|| cs.first()));
    if let Some(current) = container.map(|c| &c["properties"]["instanceView"]["currentState"])
        && current["state"].as_str().is_some_and(|s| s.eq_ignore_ascii_case("Terminated"))
    {
        return if current["exitCode"].as_i64() == Some(0) { ComputeState::Succeeded } else { ComputeState::Failed };
    }
    match props["instanceView"]["state"].as_str().map(str::to_ascii_lowercase).as_deref() {
        Some("running") => return ComputeState::Running,
        Some("succeeded") => return ComputeState::Succeeded,
        // Stopped: someone stopped it, or it ended without our knowing how.
        Some("failed" | "stopped") => return ComputeState::Failed,
        Some("pending" | "waiting") => return ComputeState::Pending,
        _ => {}
    }
    match provisioning.to_ascii_lowercase().as_str() {
        "creating" | "pending" | "accepted" | "updating" | "repairing" => ComputeState::Pending,
        "" => ComputeState::Unknown("no state reported".into()),
        // List answers may omit the instance view: the group exists, its run state is unknown.
        other => ComputeState::Unknown(format!("provisioningState={other}")),
    }
}

/// A container group as [`ComputeInfo`].
#[must_use]
pub fn container_group_info(group: &Value) -> ComputeInfo {
    let parse = |v: &Value| v.as_str().and_then(|s| OffsetDateTime::parse(s, &Rfc3339).ok());
    let created_at = parse(&group["systemData"]["createdAt"]).or_else(|| {
        group["properties"]["containers"][0]["properties"]["instanceView"]["currentState"]["startTime"]
            .as_str()
            .and_then(|s| OffsetDateTime::parse(s, &Rfc3339).ok())
    });
    tagged_info(group["name"].as_str().unwrap_or_default(), container_group_state(group), created_at, &group["tags"])
}

/// A runner's compute from the tags runner-dispatch puts on its ARM resources (container
/// groups and VMs alike).
pub(crate) fn tagged_info(
    name: &str,
    state: ComputeState,
    created_at: Option<OffsetDateTime>,
    tags: &Value,
) -> ComputeInfo {
    let text = |key: &str| tags[key].as_str().map(str::to_owned);
    let number = |key: &str| tags[key].as_str().and_then(|v| v.parse().ok());
    ComputeInfo {
        created_at,
        pool: text(TAG_POOL),
        job_id: number(TAG_JOB_ID),
        run_id: number(TAG_RUN_ID),
        repository: text(TAG_REPOSITORY),
        job_created_at: text(TAG_JOB_CREATED_AT),
        idle_target: text(TAG_IDLE_TARGET),
        runner_id: number(TAG_RUNNER_ID),
        placement: text(TAG_PLACEMENT),
        ..ComputeInfo::new(name, state)
    }
}

/// ACI errors by code first: quota and capacity are deferrals whatever the status.
fn classify(e: &AzureError, what: &str, secrets: &[&str]) -> ProvisionError {
    let detail = e.describe(secrets);
    let retryable_code = e.code.as_deref().is_some_and(|c| RETRYABLE_CODES.iter().any(|r| r.eq_ignore_ascii_case(c)))
        || quota_refusal(e);
    if e.status == 429 || retryable_code || e.status >= 500 || e.status == 401 || e.status == 408 {
        return ProvisionError::Retryable { reason: format!("{what}: {detail}"), retry_after: e.retry_after };
    }
    let hint = match e.code.as_deref().unwrap_or_default() {
        "InaccessibleImage" => {
            " — check the pool's image name and tag, and that image_pull_identity has AcrPull on the registry"
        }
        "InvalidImageRegistryIdentity" => {
            " — image_pull_identity must be a user-assigned identity resource id with AcrPull on the registry"
        }
        "AuthorizationFailed" | "LinkedAuthorizationFailed" => {
            " — the Function App's identity needs Contributor on the resource group (and Managed Identity Operator on pool identities, Network Contributor on the subnet)"
        }
        "VirtualNetworkNotFound" | "SubnetNotFound" | "InvalidSubnet" => {
            " — check the pool's subnet_id (same region as the group, delegated to Microsoft.ContainerInstance/containerGroups)"
        }
        "ResourceGroupNotFound" => " — create the resource group or fix the pool's resource_group",
        "MissingSubscriptionRegistration" => " — register the Microsoft.ContainerInstance provider on the subscription",
        _ => "",
    };
    ProvisionError::permanent(format!("{what}: {detail}{hint}"))
}

/// Tag naming the placement a container group was created in (its label).
pub const TAG_PLACEMENT: &str = "runner-dispatch-placement";

/// Whether an ARM refusal is about quota or regional capacity (so another placement may
/// take the group), not about this request or a passing fault.
fn quota_or_capacity(e: &AzureError) -> bool {
    quota_refusal(e) || e.code.as_deref().is_some_and(|c| CAPACITY_CODES.iter().any(|r| r.eq_ignore_ascii_case(c)))
}

/// The retryable codes that mean "this region has no room now" rather than throttling or
/// a passing fault.
const CAPACITY_CODES: &[&str] = &["ServiceUnavailable", "AllocationFailed", "ZonalAllocationFailed"];

/// A quota refusal: a code naming a quota, or ARM's regional cores quota
/// (`OperationNotAllowed` "... exceeding approved Total Regional Cores quota").
pub(crate) fn quota_refusal(e: &AzureError) -> bool {
    e.code.as_deref().is_some_and(|c| c.to_ascii_lowercase().contains("quota"))
        || (e.code_is("OperationNotAllowed")
            && e.message.as_deref().is_some_and(|m| m.to_ascii_lowercase().contains("quota")))
}

/// Container groups through ARM.
pub struct AciBackend {
    arm: ArmClient,
    defaults: SiteDefaults,
    counts: ActiveCounts,
    /// By subscription/region: placements that refused a create for quota or capacity.
    pauses: Pauses,
}

impl std::fmt::Debug for AciBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AciBackend").field("arm_url", &self.arm.url).finish_non_exhaustive()
    }
}

impl AciBackend {
    /// The ARM endpoint, subscription, default resource group and location come from
    /// settings (`AZURE_RESOURCE_MANAGER_URL`, `AZURE_SUBSCRIPTION_ID`,
    /// `AZURE_RESOURCE_GROUP`, `AZURE_LOCATION`); a pool's `resource_group` and
    /// `location` (or its `placements`) win. Missing settings fail each call permanently
    /// with the name of the setting, so a deployment with Batch pools only needs none.
    #[must_use]
    pub fn new(settings: &Settings, credential: &AzureCredential) -> Self {
        Self {
            arm: ArmClient::new(settings, credential, "aci_request"),
            defaults: SiteDefaults::from_settings(settings),
            counts: ActiveCounts::new(ACTIVE_COUNT_TTL),
            pauses: Pauses::default(),
        }
    }

    /// How long `active_count` reuses one list answer.
    #[must_use]
    pub fn with_active_count_ttl(mut self, ttl: Duration) -> Self {
        self.counts.set_ttl(ttl);
        self
    }

    /// Replaces the HTTP client (timeouts, proxies).
    #[must_use]
    pub fn with_http_client(mut self, client: reqwest::Client) -> Self {
        self.arm.client = client;
        self
    }

    /// The pool's placements in order of preference, resolved against the settings (one
    /// for a pool without `placements`).
    ///
    /// # Errors
    /// A setting a placement needs is missing (permanent, naming it).
    pub fn sites(&self, pool: &Pool) -> Result<Vec<Site>, ProvisionError> {
        let aci = aci_of(pool)?;
        let places = Places {
            subnet_id: aci.subnet_id.clone(),
            resource_group: aci.resource_group.clone(),
            location: aci.location.clone(),
            placements: aci.placements.clone(),
        };
        resolve_sites(&pool.name, "ACI", &places, &self.defaults)
    }

    fn groups_url(&self, site: &Site) -> String {
        format!(
            "{}/subscriptions/{}/resourceGroups/{}/providers/Microsoft.ContainerInstance/containerGroups",
            self.arm.url, site.subscription_id, site.resource_group
        )
    }

    fn group_url(&self, site: &Site, name: &str) -> Result<String, ProvisionError> {
        if !is_valid_aci_name(name) {
            return Err(ProvisionError::permanent(format!(
                "{name:?} is not a valid container group name (lowercase letters, digits and hyphens, 1-63, no hyphen at either end)"
            )));
        }
        Ok(format!("{}/{name}?api-version={ACI_API_VERSION}", self.groups_url(site)))
    }

    /// The group named `name` in one placement.
    async fn find_in(&self, site: &Site, name: &str) -> Result<Option<ComputeInfo>, ProvisionError> {
        let url = self.group_url(site, name)?;
        let what = format!("ACI get of container group {name} in {}", site.label);
        let group = self.arm.get_json(&what, &url, |e| classify(e, &what, &[])).await?;
        Ok(group.as_ref().map(container_group_info))
    }

    /// The pool's container groups (tag `runner-dispatch-pool`) in one placement's
    /// resource group, as one list call reports them, following `nextLink`: without
    /// instance views, so most states are unknown.
    async fn list_tagged_in(&self, pool: &Pool, site: &Site) -> Result<Vec<ComputeInfo>, ProvisionError> {
        let what =
            format!("ACI list of container groups in {} (subscription {})", site.resource_group, site.subscription_id);
        let url = format!("{}?api-version={ACI_API_VERSION}", self.groups_url(site));
        let groups = self.arm.list_all(&what, url, |e| classify(e, &what, &[])).await?;
        Ok(groups
            .iter()
            .filter(|g| g["tags"][TAG_POOL].as_str() == Some(pool.name.as_str()))
            .map(container_group_info)
            .collect())
    }

    /// One create in one placement. `Err((error, quota_or_capacity))`.
    async fn create_in(
        &self,
        pool: &Pool,
        request: &ComputeRequest,
        site: &Site,
    ) -> Result<CreateOutcome, (ProvisionError, bool)> {
        let url = self.group_url(site, &request.name).map_err(|e| (e, false))?;
        let aci = aci_of(pool).map_err(|e| (e, false))?;
        let mut body = container_group_body_in(pool, aci, request, &site.location, site.subnet_id.as_deref());
        if !aci.placements.is_empty() {
            // Which placement took it, for status and reconcile's logs (the body of a pool
            // without placements stays exactly the builder's).
            body["tags"][TAG_PLACEMENT] = json!(site.label);
        }
        let secrets = request.secret_values();
        let what = format!("ACI create of container group {} in {}", request.name, site.label);
        // If-None-Match makes the PUT create-only where ARM honours it (412 otherwise):
        // a PUT on an existing group would update it, on a finished one redeploy it.
        let req = self.arm.client.put(&url).header(reqwest::header::IF_NONE_MATCH, "*").json(&body);
        let response = self.arm.send(&what, req).await.map_err(|e| (e, false))?;
        let status = response.status();
        if status.is_success() {
            self.counts.adjust(&pool.name, site, true);
            return Ok(CreateOutcome::Created);
        }
        let e = AzureError::from_response(response).await;
        let err = classify(&e, &what, &secrets);
        if (status == StatusCode::CONFLICT || status == StatusCode::PRECONDITION_FAILED) && !err.is_retryable() {
            // Another worker created it (capacity 409s, e.g. ServiceUnavailable, stay retryable).
            return Ok(CreateOutcome::AlreadyExists);
        }
        tracing::warn!(event = "aci_create_failed", name = %request.name, pool = %pool.name, placement = %site.label, status = status.as_u16(), code = e.code.as_deref().unwrap_or(""), retryable = err.is_retryable(), "ACI refused the container group");
        let capacity = err.is_retryable() && quota_or_capacity(&e);
        Err((err, capacity))
    }
}

#[async_trait]
impl ComputeBackend for AciBackend {
    fn kind(&self) -> &'static str {
        "aci"
    }

    /// Looks in every placement, in order: the name is the same in all of them, so a
    /// group made in any one (say, before a crash) is found before anything is created.
    async fn find(&self, pool: &Pool, name: &str) -> Result<Option<ComputeInfo>, ProvisionError> {
        find_across(&self.sites(pool)?, |site| self.find_in(site, name)).await
    }

    /// Creates in the first placement that takes it (see [`create_in_order`]): a refusal
    /// for quota or capacity pauses that placement and the same attempt tries the next,
    /// with the same request (the same JIT configuration: it is bound to the runner name,
    /// not to a region).
    async fn create(&self, pool: &Pool, request: &ComputeRequest) -> Result<CreateOutcome, ProvisionError> {
        let sites = self.sites(pool)?;
        create_across(pool, request, &sites, &self.pauses, |site| self.create_in(pool, request, site)).await
    }

    /// Deletes the group wherever it is: every placement is asked (a missing one is success).
    async fn delete(&self, pool: &Pool, name: &str) -> Result<(), ProvisionError> {
        for site in self.sites(pool)? {
            let url = self.group_url(&site, name)?;
            let what = format!("ACI delete of container group {name} in {}", site.label);
            let response = self.arm.send(&what, self.arm.client.delete(&url)).await?;
            match response.status().as_u16() {
                200 | 202 => self.counts.adjust(&pool.name, &site, false),
                204 | 404 => {}
                _ => return Err(classify(&AzureError::from_response(response).await, &what, &[])),
            }
        }
        Ok(())
    }

    /// Every compute of the pool in every placement, with its run state: the list API
    /// omits instance views, so groups it reports only as provisioned are read one by one.
    async fn list(&self, pool: &Pool) -> Result<Vec<ComputeInfo>, ProvisionError> {
        let sites = self.sites(pool)?;
        let mut out = Vec::new();
        for site in distinct_scopes(&sites) {
            for info in self.list_tagged_in(pool, site).await? {
                if !matches!(info.state, ComputeState::Unknown(_)) {
                    out.push(info);
                    continue;
                }
                // Deleted between the list and the read: gone, leave it out.
                if let Some(full) = self.find_in(site, &info.name).await? {
                    out.push(ComputeInfo {
                        state: full.state,
                        created_at: full.created_at.or(info.created_at),
                        ..info
                    });
                }
            }
        }
        Ok(out)
    }

    /// Across placements: `max_runners` caps the pool wherever its groups run.
    async fn active_count(&self, pool: &Pool) -> Result<Option<usize>, ProvisionError> {
        let sites = self.sites(pool)?;
        // One list call, no reads: a group that finished but is not deleted yet counts
        // until cleanup deletes it (it still holds ACI quota meanwhile).
        let total = self
            .counts
            .total(&pool.name, &sites, |site| async move {
                Ok(self.list_tagged_in(pool, site).await?.iter().filter(|c| !c.state.is_finished()).count())
            })
            .await?;
        Ok(Some(total))
    }

    /// Each placement's resource group, listed with the app's identity.
    async fn reach(&self, pool: &Pool) -> Vec<(String, Result<usize, ProvisionError>)> {
        let sites = match self.sites(pool) {
            Ok(s) => s,
            Err(e) => return vec![(String::new(), Err(e))],
        };
        if sites.len() < 2 {
            return vec![(String::new(), self.list(pool).await.map(|l| l.len()))];
        }
        let mut out = Vec::new();
        for site in &sites {
            let label =
                format!("placement {} ({}, subscription {})", site.label, site.resource_group, site.subscription_id);
            out.push((label, self.list_tagged_in(pool, site).await.map(|l| l.len())));
        }
        out
    }

    /// Every placement paused: come back when the earliest is free, before any GitHub
    /// call is spent on this request.
    fn paused_for(&self, pool: &Pool) -> Option<Duration> {
        all_paused(&self.sites(pool).ok()?, &self.pauses)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Value {
        let path = format!("{}/tests/fixtures/azure-aci/{name}", env!("CARGO_MANIFEST_DIR"));
        serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("json")
    }

    #[test]
    fn the_failed_get_example_is_failed_and_the_created_example_is_not_finished() {
        let failed = fixture("ContainerGroupsGet_Failed.2025-09-01.json");
        assert_eq!(container_group_state(&failed["responses"]["200"]["body"]), ComputeState::Failed);
        let created = fixture("ContainerGroupsCreateOrUpdate.2025-09-01.json");
        let state = container_group_state(&created["responses"]["201"]["body"]);
        assert!(!state.is_finished(), "{state:?}");
    }

    #[test]
    fn container_states_map_to_compute_states() {
        let g = |group: &str, container: Value| {
            json!({"properties": {"provisioningState": "Succeeded", "instanceView": {"state": group},
                "containers": [{"name": "runner", "properties": {"instanceView": {"currentState": container}}}]}})
        };
        assert_eq!(container_group_state(&g("Running", json!({"state": "Running"}))), ComputeState::Running);
        assert_eq!(
            container_group_state(&g("Succeeded", json!({"state": "Terminated", "exitCode": 0}))),
            ComputeState::Succeeded
        );
        assert_eq!(
            container_group_state(&g("Failed", json!({"state": "Terminated", "exitCode": 1}))),
            ComputeState::Failed
        );
        assert_eq!(container_group_state(&g("Pending", json!({"state": "Waiting"}))), ComputeState::Pending);
        assert_eq!(
            container_group_state(&json!({"properties": {"provisioningState": "Creating"}})),
            ComputeState::Pending
        );
    }

    #[test]
    fn quota_codes_are_retryable_whatever_the_status_and_bad_images_are_permanent() {
        let e = |status, code: &str| AzureError {
            status,
            code: Some(code.into()),
            message: Some("m".into()),
            retry_after: None,
        };
        assert!(classify(&e(400, "ContainerGroupQuotaReached"), "x", &[]).is_retryable());
        assert!(classify(&e(409, "ServiceUnavailable"), "x", &[]).is_retryable());
        assert!(classify(&e(400, "StandardCoresQuotaExceeded"), "x", &[]).is_retryable());
        let bad = classify(&e(400, "InaccessibleImage"), "x", &[]);
        assert!(!bad.is_retryable() && bad.to_string().contains("AcrPull"), "{bad}");
        assert!(!classify(&e(403, "AuthorizationFailed"), "x", &[]).is_retryable());
        assert!(!classify(&e(400, "InvalidRequestContent"), "x", &[]).is_retryable());
    }

    fn placement_problems(pool_keys: &str, defaults: &str) -> Vec<String> {
        let text = format!(
            "[github]\nallowed_owners = [\"o\"]\n[defaults]\n{defaults}\n[[pools]]\nname = \"p\"\nbackend = \"aci\"\nlabels = [\"a\"]\nimage = \"i\"\n{pool_keys}\n"
        );
        match crate::config::PoolsConfig::parse(&text) {
            Ok(_) => Vec::new(),
            Err(e) => e.0.iter().filter(|p| !p.warning).map(|p| p.key.clone()).collect(),
        }
    }

    #[test]
    fn bad_placements_are_named_by_their_keys() {
        let keys = r#"location = "westeurope"
subnet_id = "/subscriptions/s/resourceGroups/n/providers/Microsoft.Network/virtualNetworks/v/subnets/a"
placements = [
  { location = "westeurope", resource_group = "rg-a" },
  { resource_group = "rg-b" },
  { location = "WestEurope", resource_group = "rg-a" },
  { location = "northeurope", zone = "1", subnet_id = "subnets/x" },
]"#;
        assert_eq!(
            placement_problems(keys, ""),
            [
                "pools[0].placements[1].location",
                "pools[0].placements[2]",
                "pools[0].placements[3].zone",
                "pools[0].placements[3].subnet_id",
                "pools[0].location",
                "pools[0].subnet_id",
            ]
        );
        assert_eq!(placement_problems("placements = []", ""), ["pools[0].placements"]);
    }

    #[test]
    fn placements_override_a_location_from_defaults_and_keep_their_order() {
        let keys = r#"placements = [{ location = "northeurope" }, { location = "westeurope", subscription_id = "11111111-1111-1111-1111-111111111111" }]"#;
        assert!(placement_problems(keys, "location = \"westeurope\"\nresource_group = \"rg\"").is_empty());
        let text = format!(
            "[github]\nallowed_owners = [\"o\"]\n[[pools]]\nname = \"p\"\nbackend = \"aci\"\nlabels = [\"a\"]\nimage = \"i\"\nresource_group = \"rg\"\n{keys}\n"
        );
        let cfg = crate::config::PoolsConfig::parse(&text).expect("valid");
        let Compute::Aci(a) = &cfg.pools[0].compute else { panic!() };
        let order: Vec<&str> = a.placements.iter().map(|p| p.location.as_str()).collect();
        assert_eq!(order, ["northeurope", "westeurope"]);
    }
}
