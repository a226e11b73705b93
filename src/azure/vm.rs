//! Azure virtual machines: one fresh VM per job (the lane for Docker jobs), through the ARM
//! REST API. Everything VM-specific lives here: the pool keys and their checks, the VM body
//! and its boot script, and the client. See docs/vm-lane.md for the reasoning.

use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::aci::ACTIVE_COUNT_TTL;
use super::aci::{TAG_PLACEMENT, TAG_POOL, is_valid_aci_name, quota_refusal, tagged_info, tags};
use super::arm::{
    ActiveCounts, ArmClient, Places, Site, SiteDefaults, all_paused, create_across, distinct_scopes, find_across,
    parse_places, resolve_sites,
};
use super::credential::AzureCredential;
use super::http::AzureError;
use crate::compute::placement::Pauses;
use crate::compute::{
    ComputeBackend, ComputeInfo, ComputeRequest, ComputeState, CreateOutcome, EnvValue, ProvisionError,
};
use crate::config::{Compute, ConfigProblem, Pool, PoolKeys, Role, Settings};
use crate::secret::Secret;

/// `Microsoft.Compute/virtualMachines`. Bodies keep to fields every version since
/// 2022-03-01 knows (NIC and disk `deleteOption`, `networkInterfaceConfigurations`).
pub const COMPUTE_API_VERSION: &str = "2024-11-01";
/// `networkProfile.networkApiVersion`: the Network API the Compute provider creates the
/// NIC with, from `networkInterfaceConfigurations` (the lowest value it accepts).
pub const NETWORK_API_VERSION: &str = "2020-11-01";
/// Reading a gallery image version (`doctor`).
pub const GALLERY_API_VERSION: &str = "2024-03-03";
/// `Microsoft.Authorization/permissions` (`doctor`): the caller's actions at a scope.
pub const PERMISSIONS_API_VERSION: &str = "2022-04-01";

/// The Linux admin account ARM requires. It gets an SSH key nobody holds the private half
/// of (see [`no_login_key`]): nobody logs in; the runner runs as `runner`.
pub const ADMIN_USERNAME: &str = "rdadmin";
/// Where the image installs the runner's entrypoint (runner-image/entrypoint.sh).
pub const ENTRYPOINT: &str = "/usr/local/bin/runner-entrypoint.sh";

/// The pool keys only VM pools read (they also read `subnet_id`, `resource_group`,
/// `location` and `placements`, which ACI declares).
pub const POOL_KEYS: &[&str] = &["vm_size", "os_disk", "os_disk_gb", "spot"];

/// Default `os_disk_gb` for a managed OS disk.
pub const DEFAULT_OS_DISK_GB: u32 = 64;

/// A VM pool's own settings (`backend = "vm"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmPool {
    pub vm_size: String,
    pub image: VmImage,
    pub os_disk: OsDisk,
    /// Managed: the disk size (default [`DEFAULT_OS_DISK_GB`]); ephemeral: must fit the
    /// size's cache disk (default: the image's size).
    pub os_disk_gb: Option<u32>,
    /// Spot priority, falling back to regular when Spot is refused at create.
    pub spot: bool,
    /// Subnet, resource group, location, placements: every placement has a subnet.
    pub places: Places,
}

/// `image`: a Compute Gallery image (version) id, or a marketplace URN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VmImage {
    Gallery(String),
    Marketplace { publisher: String, offer: String, sku: String, version: String },
}

/// `os_disk`: `ephemeral` (on the size's local disk: faster, free, gone with the VM) or
/// `managed` (Standard SSD).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OsDisk {
    Ephemeral,
    Managed,
}

/// Reads and checks the VM keys of a pool (see [`Role`]): kept on VM pools.
pub(crate) fn parse_pool(keys: &mut PoolKeys<'_>, role: Role) -> Option<VmPool> {
    let vm_size = keys.string("vm_size");
    let os_disk = {
        let (v, k) = keys.raw("os_disk");
        match v {
            None => Some(OsDisk::Managed),
            Some(toml::Value::String(s)) if s == "ephemeral" => Some(OsDisk::Ephemeral),
            Some(toml::Value::String(s)) if s == "managed" => Some(OsDisk::Managed),
            Some(_) => {
                keys.error(k, "must be \"ephemeral\" or \"managed\"");
                None
            }
        }
    };
    let os_disk_gb = keys.unsigned("os_disk_gb").map(|gb| u32::try_from(gb).unwrap_or(u32::MAX));
    let spot = keys.boolean("spot").unwrap_or(false);
    if role == Role::Unknown {
        return None;
    }
    if role == Role::Other {
        for k in POOL_KEYS {
            if keys.raw(k).1.starts_with("pools[") {
                keys.error(keys.own_key(k), "only VM pools (backend = \"vm\") read it");
            }
        }
        return None;
    }
    let places = parse_places(keys);
    if vm_size.as_deref().is_none_or(|s| s.trim().is_empty()) {
        keys.error(keys.own_key("vm_size"), "required for backend = \"vm\": the VM size, e.g. \"Standard_D4ads_v5\"");
    }
    if let Some(gb) = os_disk_gb
        && !(1..=4095).contains(&gb)
    {
        keys.error(keys.key("os_disk_gb"), "must be between 1 and 4095 (GB)");
    }
    let image = keys.string("image").and_then(|i| match parse_image(&i) {
        Ok(image) => Some(image),
        Err(e) => {
            keys.error(keys.key("image"), e);
            None
        }
    });
    let (os, os_key) = keys.raw("os");
    if os.and_then(toml::Value::as_str).is_some_and(|o| o.eq_ignore_ascii_case("windows")) {
        keys.error(os_key, "VM pools are Linux only for now (docs/vm-lane.md says what Windows would take)");
    }
    if places.placements.is_empty() && places.subnet_id.is_none() {
        keys.error(
            keys.own_key("subnet_id"),
            "required for backend = \"vm\": the subnet the VM's NIC joins (it gets no public IP)",
        );
    }
    for (i, p) in places.placements.iter().enumerate() {
        if p.subnet_id.is_none() {
            keys.error(
                format!("{}[{i}].subnet_id", keys.key("placements")),
                "required for backend = \"vm\": each placement's VMs join its subnet",
            );
        }
    }
    if let (Some(toml::Value::Table(env)), env_key) = keys.raw("env") {
        for name in env.keys().filter(|n| !is_shell_name(n)) {
            let bare = name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
            let at = if bare { format!("{env_key}.{name}") } else { format!("{env_key}.{name:?}") };
            keys.error(at, "VM pools pass env through a shell: letters, digits and _, not starting with a digit");
        }
    }
    Some(VmPool { vm_size: vm_size?, image: image?, os_disk: os_disk?, os_disk_gb, spot, places })
}

/// `image`: `/subscriptions/.../galleries/<g>/images/<i>[/versions/<v>]` or
/// `publisher:offer:sku:version`.
///
/// # Errors
/// Neither shape, in words.
pub fn parse_image(image: &str) -> Result<VmImage, String> {
    let image = image.trim();
    if image.starts_with("/subscriptions/") {
        let lower = image.to_ascii_lowercase();
        if !lower.contains("/providers/microsoft.compute/galleries/") || !lower.contains("/images/") {
            return Err("a resource id must be a Compute Gallery image or image version (.../providers/Microsoft.Compute/galleries/<gallery>/images/<image>[/versions/<version>])".into());
        }
        return Ok(VmImage::Gallery(image.to_owned()));
    }
    let parts: Vec<&str> = image.split(':').collect();
    match parts.as_slice() {
        [p, o, s, v] if parts.iter().all(|x| !x.is_empty() && x.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))) => {
            Ok(VmImage::Marketplace { publisher: (*p).into(), offer: (*o).into(), sku: (*s).into(), version: (*v).into() })
        }
        _ => Err("must be a Compute Gallery image version id (/subscriptions/...) or a marketplace image publisher:offer:sku:version".into()),
    }
}

/// A name a POSIX shell accepts for a variable.
fn is_shell_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Settings VM pools need and the environment lacks.
#[must_use]
pub fn required_settings(settings: &Settings, pools: &[(&Pool, &VmPool)]) -> Vec<ConfigProblem> {
    let az = &settings.azure;
    let mut out = Vec::new();
    if az.subscription_id.is_none() {
        out.push(ConfigProblem::required(
            "AZURE_SUBSCRIPTION_ID",
            "VM pools create virtual machines in this subscription",
        ));
    }
    let without_group = |v: &VmPool| {
        v.places.resource_group.is_none()
            && (v.places.placements.is_empty() || v.places.placements.iter().any(|p| p.resource_group.is_none()))
    };
    if az.resource_group.is_none() && pools.iter().any(|(_, v)| without_group(v)) {
        out.push(ConfigProblem::required("AZURE_RESOURCE_GROUP", "a VM pool sets no resource_group"));
    }
    if az.location.is_none() && pools.iter().any(|(_, v)| v.places.location.is_none() && v.places.placements.is_empty())
    {
        out.push(ConfigProblem::required("AZURE_LOCATION", "a VM pool sets no location"));
    }
    out
}

/// The VM part of a pool the VM backend was given.
fn vm_of(pool: &Pool) -> Result<&VmPool, ProvisionError> {
    match &pool.compute {
        Compute::Vm(v) => Ok(v),
        other => Err(ProvisionError::permanent(format!(
            "pool {} has backend = \"{}\", not \"vm\"",
            pool.name,
            other.backend().as_str()
        ))),
    }
}

// -------------------------------------------------------------------------------------
// The body
// -------------------------------------------------------------------------------------

/// The VM PUT body: one call creates the VM, its NIC (no public IP) and its OS disk, both
/// deleted with the VM. The runner's variables reach the VM only in `customData` (never
/// returned by ARM; see docs/vm-lane.md). Deterministic for a pool, request and site.
#[must_use]
pub fn vm_body(pool: &Pool, vm: &VmPool, request: &ComputeRequest, location: &str, subnet_id: &str) -> Value {
    let name = &request.name;
    let image = match &vm.image {
        VmImage::Gallery(id) => json!({ "id": id }),
        VmImage::Marketplace { publisher, offer, sku, version } => {
            json!({ "publisher": publisher, "offer": offer, "sku": sku, "version": version })
        }
    };
    let mut os_disk = json!({
        "name": format!("{name}-osdisk"),
        "createOption": "FromImage",
        "deleteOption": "Delete",
    });
    match vm.os_disk {
        OsDisk::Ephemeral => {
            // Ephemeral disks take ReadOnly caching only.
            os_disk["caching"] = json!("ReadOnly");
            os_disk["diffDiskSettings"] = json!({ "option": "Local" });
            if let Some(gb) = vm.os_disk_gb {
                os_disk["diskSizeGB"] = json!(gb);
            }
        }
        OsDisk::Managed => {
            os_disk["caching"] = json!("ReadWrite");
            os_disk["managedDisk"] = json!({ "storageAccountType": "StandardSSD_LRS" });
            os_disk["diskSizeGB"] = json!(vm.os_disk_gb.unwrap_or(DEFAULT_OS_DISK_GB));
        }
    }
    let mut properties = json!({
        "hardwareProfile": { "vmSize": vm.vm_size },
        "storageProfile": { "imageReference": image, "osDisk": os_disk },
        "osProfile": {
            "computerName": name,
            "adminUsername": ADMIN_USERNAME,
            "customData": BASE64.encode(boot_script(request)),
            "linuxConfiguration": {
                "disablePasswordAuthentication": true,
                "ssh": { "publicKeys": [{
                    "path": format!("/home/{ADMIN_USERNAME}/.ssh/authorized_keys"),
                    "keyData": no_login_key(name),
                }] },
            },
        },
        "networkProfile": {
            "networkApiVersion": NETWORK_API_VERSION,
            "networkInterfaceConfigurations": [{
                "name": format!("{name}-nic"),
                "properties": {
                    "primary": true,
                    "deleteOption": "Delete",
                    // No publicIPAddressConfiguration: the VM has no public IP; it reaches
                    // GitHub through the subnet's NAT gateway.
                    "ipConfigurations": [{
                        "name": "ipconfig1",
                        "properties": { "primary": true, "subnet": { "id": subnet_id } },
                    }],
                },
            }],
        },
    });
    if vm.spot {
        set_spot(&mut properties);
    }
    let mut body = json!({ "location": location, "tags": tags(pool, request), "properties": properties });
    if let Some(identity) = &pool.identity {
        body["identity"] = json!({ "type": "UserAssigned", "userAssignedIdentities": { identity: {} } });
    }
    body
}

/// Spot priority; evicted VMs are deleted (ephemeral OS disks allow nothing else), and the
/// price cap is the regular price (`-1`: never evicted for price).
fn set_spot(properties: &mut Value) {
    properties["priority"] = json!("Spot");
    properties["evictionPolicy"] = json!("Delete");
    properties["billingProfile"] = json!({ "maxPrice": -1 });
}

/// The same body at regular priority: the Spot fallback.
fn without_spot(body: &Value) -> Value {
    let mut body = body.clone();
    if let Some(p) = body["properties"].as_object_mut() {
        for k in ["priority", "evictionPolicy", "billingProfile"] {
            p.remove(k);
        }
    }
    body
}

/// The body the dry-run records: the first placement (or the pool's own location and
/// subnet), and the boot script built from the request with its secrets already replaced:
/// `customData` is base64, where a later text redaction could not find them.
#[must_use]
pub fn dry_run_body(pool: &Pool, vm: &VmPool, request: &ComputeRequest) -> Value {
    let (location, subnet) = match vm.places.placements.first() {
        Some(p) => (p.location.as_str(), p.subnet_id.as_deref()),
        None => (vm.places.location.as_deref().unwrap_or("<AZURE_LOCATION>"), vm.places.subnet_id.as_deref()),
    };
    let mut redacted = request.clone();
    for (_, v) in &mut redacted.env {
        if let EnvValue::Secret(_) = v {
            *v = EnvValue::Secret(Secret::new("[redacted]"));
        }
    }
    vm_body(pool, vm, &redacted, location, subnet.unwrap_or_default())
}

/// The first-boot script (cloud-init runs `customData` starting with `#!` once, as root).
/// It hands the runner's variables to the `runner` user through a file in `/run` (tmpfs,
/// 0600) that the runner's shell reads and deletes, removes every copy of itself the
/// provisioning left on disk, runs the image's entrypoint (which takes the secrets out of
/// the environment before the runner starts), and powers the VM off when the runner exits.
#[must_use]
pub fn boot_script(request: &ComputeRequest) -> String {
    let env: String = request
        .env
        .iter()
        .map(|(name, value)| {
            let v = match value {
                EnvValue::Plain(v) => v.as_str(),
                EnvValue::Secret(s) => s.expose(),
            };
            format!("{name}='{}'\n", v.replace('\'', r"'\''"))
        })
        .collect();
    BOOT_SCRIPT.replace("@ENV_BASE64@", &BASE64.encode(env)).replace("@ENTRYPOINT@", ENTRYPOINT)
}

const BOOT_SCRIPT: &str = r#"#!/bin/bash
# runner-dispatch: start the one runner of this VM, then power it off (docs/vm-lane.md).
set -euo pipefail
set +x
umask 077
dir=/run/runner-dispatch
install -d -m 0700 -o runner -g runner "$dir"
echo '@ENV_BASE64@' | base64 -d > "$dir/env"
chown runner:runner "$dir/env"
# The runner configuration must not outlive this boot: every copy of this script goes.
rm -f /var/lib/waagent/CustomData /var/lib/waagent/ovf-env.xml
rm -rf /var/lib/cloud/instance/user-data.txt* /var/lib/cloud/instance/scripts /var/lib/cloud/instance/obj.pkl
rm -rf /var/lib/cloud/instances/*/user-data.txt* /var/lib/cloud/instances/*/scripts /var/lib/cloud/instances/*/obj.pkl
rm -f -- "$0"
runuser -u runner -- /bin/bash -c 'set -a; . /run/runner-dispatch/env; set +a; rm -f /run/runner-dispatch/env; exec @ENTRYPOINT@' || true
systemctl poweroff
"#;

/// An OpenSSH ed25519 public key derived from the VM name, whose private key nobody has:
/// ARM requires a credential for the admin account, and this one opens nothing.
#[must_use]
pub fn no_login_key(name: &str) -> String {
    let point = Sha256::digest(format!("runner-dispatch no-login key for {name}").as_bytes());
    let mut blob = Vec::new();
    for part in [b"ssh-ed25519".as_slice(), &point[..]] {
        blob.extend_from_slice(&u32::try_from(part.len()).unwrap_or_default().to_be_bytes());
        blob.extend_from_slice(part);
    }
    format!("ssh-ed25519 {} runner-dispatch-no-login", BASE64.encode(blob))
}

// -------------------------------------------------------------------------------------
// Reading ARM answers
// -------------------------------------------------------------------------------------

/// The state of a VM from a GET with `$expand=instanceView` (or a list with it).
#[must_use]
pub fn vm_state(vm: &Value) -> ComputeState {
    let props = &vm["properties"];
    let provisioning = props["provisioningState"].as_str().unwrap_or_default().to_ascii_lowercase();
    if provisioning == "failed" {
        return ComputeState::Failed;
    }
    let power = props["instanceView"]["statuses"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["code"].as_str())
        .find_map(|c| c.strip_prefix("PowerState/"))
        .map(str::to_ascii_lowercase);
    match power.as_deref() {
        Some("running") => ComputeState::Running,
        Some("starting") => ComputeState::Pending,
        // The boot script powers the VM off when the runner exits: the job is over.
        Some("stopping" | "stopped" | "deallocating" | "deallocated") => ComputeState::Succeeded,
        _ => match provisioning.as_str() {
            "creating" | "updating" => ComputeState::Pending,
            "" => ComputeState::Unknown("no state reported".into()),
            other => ComputeState::Unknown(format!("provisioningState={other}")),
        },
    }
}

/// A VM's name is also its Linux host name (at most 64 characters; letters, digits and
/// hyphens): lowercase like the container groups, a prefix of at most 40 leaves room for
/// `-<20-digit job id>`.
pub(crate) fn name_prefix_problem(prefix: &str) -> Option<&'static str> {
    (!is_valid_aci_name(prefix) || prefix.len() > 40).then_some(
        "must be lowercase letters, digits and hyphens, at most 40 characters, no hyphen at either end (it starts every VM and host name)",
    )
}

/// A VM as [`ComputeInfo`].
#[must_use]
pub fn vm_info(vm: &Value) -> ComputeInfo {
    let created_at = [&vm["properties"]["timeCreated"], &vm["systemData"]["createdAt"]]
        .into_iter()
        .find_map(|v| v.as_str().and_then(|s| OffsetDateTime::parse(s, &Rfc3339).ok()));
    tagged_info(vm["name"].as_str().unwrap_or_default(), vm_state(vm), created_at, &vm["tags"])
}

/// Throttling and passing faults: later, same place.
const RETRYABLE_CODES: &[&str] = &[
    "TooManyRequests",
    "RequestThrottled",
    "SubscriptionRequestsThrottled",
    "ResourceRequestsThrottled",
    "InternalServerError",
    "InternalExecutionError",
    "GatewayTimeout",
    "ServiceUnavailable",
    "AnotherOperationInProgress",
    "RetryableError",
];

/// "This region has no room for this size now" (Microsoft's allocation-failure and
/// SKU-availability troubleshooting pages): another placement may take it.
const CAPACITY_CODES: &[&str] = &[
    "AllocationFailed",
    "ZonalAllocationFailed",
    "OverconstrainedAllocationRequest",
    "OverconstrainedZonalAllocationRequest",
    "SkuNotAvailable",
];

/// Quota (a code naming one, or `OperationNotAllowed` "... exceeding approved
/// standardDSv3Family Cores quota") or capacity.
fn quota_or_capacity(e: &AzureError) -> bool {
    quota_refusal(e) || e.code.as_deref().is_some_and(|c| CAPACITY_CODES.iter().any(|r| r.eq_ignore_ascii_case(c)))
}

/// VM errors by code first: quota and capacity are deferrals whatever the status.
fn classify(e: &AzureError, what: &str, secrets: &[&str]) -> ProvisionError {
    let detail = e.describe(secrets);
    let retryable_code = e.code.as_deref().is_some_and(|c| RETRYABLE_CODES.iter().any(|r| r.eq_ignore_ascii_case(c)));
    if e.status == 429
        || e.status >= 500
        || e.status == 401
        || e.status == 408
        || retryable_code
        || quota_or_capacity(e)
    {
        return ProvisionError::Retryable { reason: format!("{what}: {detail}"), retry_after: e.retry_after };
    }
    let hint = match e.code.as_deref().unwrap_or_default() {
        "AuthorizationFailed" | "LinkedAuthorizationFailed" => {
            " — the Function App's identity needs the VM lane role on the resource group, subnet join on the subnet and assign on the pool identity (infra/modules/vm-lane.bicep)"
        }
        "ImageNotFound" | "GalleryImageNotFound" | "InvalidTemplateDeployment" | "PlatformImageNotFound" => {
            " — check the pool's image (and that the identity can read the gallery)"
        }
        "InvalidResourceReference" | "SubnetNotFound" | "InvalidSubnet" => {
            " — check the pool's subnet_id (same region as the VM)"
        }
        "ResourceGroupNotFound" => " — create the resource group or fix the pool's resource_group",
        "MissingSubscriptionRegistration" => " — register the Microsoft.Compute and Microsoft.Network providers",
        _ => "",
    };
    ProvisionError::permanent(format!("{what}: {detail}{hint}"))
}

// -------------------------------------------------------------------------------------
// The client
// -------------------------------------------------------------------------------------

/// Virtual machines through ARM.
pub struct VmBackend {
    arm: ArmClient,
    defaults: SiteDefaults,
    /// By subscription/region: placements that refused a create for quota or capacity.
    pauses: Pauses,
    counts: ActiveCounts,
}

impl std::fmt::Debug for VmBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VmBackend").field("arm_url", &self.arm.url).finish_non_exhaustive()
    }
}

impl VmBackend {
    /// ARM endpoint, subscription, default resource group and location from the settings,
    /// as for ACI; a pool's own keys (or `placements`) win.
    #[must_use]
    pub fn new(settings: &Settings, credential: &AzureCredential) -> Self {
        Self {
            arm: ArmClient::new(settings, credential, "vm_request"),
            defaults: SiteDefaults::from_settings(settings),
            pauses: Pauses::default(),
            counts: ActiveCounts::new(ACTIVE_COUNT_TTL),
        }
    }

    /// How long `active_count` reuses one list answer.
    #[must_use]
    pub fn with_active_count_ttl(mut self, ttl: Duration) -> Self {
        self.counts.set_ttl(ttl);
        self
    }

    /// The pool's placements in order of preference.
    ///
    /// # Errors
    /// A setting a placement needs is missing (permanent, naming it).
    pub fn sites(&self, pool: &Pool) -> Result<Vec<Site>, ProvisionError> {
        resolve_sites(&pool.name, "VM", &vm_of(pool)?.places, &self.defaults)
    }

    fn vms_url(&self, site: &Site) -> String {
        format!(
            "{}/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Compute/virtualMachines",
            self.arm.url, site.subscription_id, site.resource_group
        )
    }

    fn vm_url(&self, site: &Site, name: &str) -> Result<String, ProvisionError> {
        if !is_valid_aci_name(name) {
            return Err(ProvisionError::permanent(format!(
                "{name:?} is not a valid runner VM name (lowercase letters, digits and hyphens, 1-63, no hyphen at either end)"
            )));
        }
        Ok(format!("{}/{name}?api-version={COMPUTE_API_VERSION}", self.vms_url(site)))
    }

    async fn find_in(&self, site: &Site, name: &str) -> Result<Option<ComputeInfo>, ProvisionError> {
        let url = format!("{}&$expand=instanceView", self.vm_url(site, name)?);
        let what = format!("VM get of {name} in {}", site.label);
        Ok(self.arm.get_json(&what, &url, |e| classify(e, &what, &[])).await?.as_ref().map(vm_info))
    }

    /// The pool's VMs (tag `runner-dispatch-pool`) in one resource group, with instance views.
    async fn list_in(&self, pool: &Pool, site: &Site) -> Result<Vec<ComputeInfo>, ProvisionError> {
        let what = format!("VM list in {} (subscription {})", site.resource_group, site.subscription_id);
        let url = format!("{}?api-version={COMPUTE_API_VERSION}&$expand=instanceView", self.vms_url(site));
        let vms = self.arm.list_all(&what, url, |e| classify(e, &what, &[])).await?;
        Ok(vms.iter().filter(|v| v["tags"][TAG_POOL].as_str() == Some(pool.name.as_str())).map(vm_info).collect())
    }

    /// One PUT, create-only. `Err((error, quota_or_capacity))`.
    async fn put(
        &self,
        url: &str,
        body: &Value,
        what: &str,
        secrets: &[&str],
    ) -> Result<CreateOutcome, (ProvisionError, bool)> {
        // If-None-Match: a PUT on an existing VM would update it; never that.
        let req = self.arm.client.put(url).header(reqwest::header::IF_NONE_MATCH, "*").json(body);
        let response = self.arm.send(what, req).await.map_err(|e| (e, false))?;
        let status = response.status();
        if status.is_success() {
            return Ok(CreateOutcome::Created);
        }
        let e = AzureError::from_response(response).await;
        let err = classify(&e, what, secrets);
        // Another worker created it: 412 where ARM honours If-None-Match; where it does not,
        // our PUT reads as an update of that VM, which may not change its customData.
        if status == StatusCode::PRECONDITION_FAILED
            || (status == StatusCode::CONFLICT && e.code_is("PropertyChangeNotAllowed"))
        {
            return Ok(CreateOutcome::AlreadyExists);
        }
        tracing::warn!(
            event = "vm_create_failed",
            what,
            status = status.as_u16(),
            code = e.code.as_deref().unwrap_or(""),
            retryable = err.is_retryable(),
            "ARM refused the VM"
        );
        let capacity = err.is_retryable() && quota_or_capacity(&e);
        Err((err, capacity))
    }

    /// One create in one placement: Spot first when the pool asks, then, if Spot is
    /// refused for quota or capacity, the same VM at regular priority at once.
    async fn create_in(
        &self,
        pool: &Pool,
        request: &ComputeRequest,
        site: &Site,
    ) -> Result<CreateOutcome, (ProvisionError, bool)> {
        let vm = vm_of(pool).map_err(|e| (e, false))?;
        let url = self.vm_url(site, &request.name).map_err(|e| (e, false))?;
        let subnet = site.subnet_id.as_deref().ok_or_else(|| {
            (ProvisionError::permanent(format!("pool {}: placement {} has no subnet_id", pool.name, site.label)), false)
        })?;
        if let Some((bad, _)) = request.env.iter().find(|(n, _)| !is_shell_name(n)) {
            return Err((
                ProvisionError::permanent(format!("pool {}: variable {bad:?} is not a shell name", pool.name)),
                false,
            ));
        }
        let mut body = vm_body(pool, vm, request, &site.location, subnet);
        if !vm.places.placements.is_empty() {
            body["tags"][TAG_PLACEMENT] = json!(site.label);
        }
        let custom_data = body["properties"]["osProfile"]["customData"].as_str().unwrap_or_default().to_owned();
        let mut secrets = request.secret_values();
        secrets.push(&custom_data);
        let what = format!("VM create of {} in {}", request.name, site.label);
        let outcome = match self.put(&url, &body, &what, &secrets).await {
            Err((e, true)) if vm.spot => {
                tracing::warn!(event = "vm_spot_refused", runner_name = %request.name, pool = %pool.name, placement = %site.label, reason = %e, "Spot refused; creating the VM at regular priority");
                self.put(&url, &without_spot(&body), &format!("{what} (regular priority)"), &secrets).await
            }
            other => other,
        };
        if outcome == Ok(CreateOutcome::Created) {
            self.counts.adjust(&pool.name, site, true);
        }
        outcome
    }

    /// Whether the app's identity holds every action in `needed` at `scope` (a resource id),
    /// from `Microsoft.Authorization/permissions`. `Ok(missing actions)`.
    async fn missing_actions(&self, scope: &str, needed: &[&str]) -> Result<Vec<String>, ProvisionError> {
        let what = format!("permissions at {scope}");
        let url = format!(
            "{}{scope}/providers/Microsoft.Authorization/permissions?api-version={PERMISSIONS_API_VERSION}",
            self.arm.url
        );
        let grants = self.arm.list_all(&what, url, |e| classify(e, &what, &[])).await?;
        Ok(needed.iter().filter(|a| !granted(&grants, a)).map(|a| (*a).to_owned()).collect())
    }

    /// `doctor` for one placement: the listing, then whether the identity may create and
    /// delete VMs there, join the subnet, assign the pool's identity, and read the image.
    async fn check_site(&self, pool: &Pool, vm: &VmPool, site: &Site) -> Result<usize, ProvisionError> {
        let n = self.list_in(pool, site).await?.len();
        let group = format!("/subscriptions/{}/resourceGroups/{}", site.subscription_id, site.resource_group);
        let mut problems = Vec::new();
        let mut check = |scope: &str, what: &str, missing: Vec<String>| {
            if !missing.is_empty() {
                problems.push(format!("lacks {} on {what} {scope}", missing.join(", ")));
            }
        };
        check(&group, "resource group", self.missing_actions(&group, GROUP_ACTIONS).await?);
        if let Some(subnet) = &site.subnet_id {
            check(subnet, "subnet", self.missing_actions(subnet, &[SUBNET_JOIN]).await?);
        }
        if let Some(identity) = &pool.identity {
            check(identity, "identity", self.missing_actions(identity, &[IDENTITY_ASSIGN]).await?);
        }
        if let VmImage::Gallery(id) = &vm.image {
            let what = format!("gallery image {id}");
            let url = format!("{}{id}?api-version={GALLERY_API_VERSION}", self.arm.url);
            if self.arm.get_json(&what, &url, |e| classify(e, &what, &[])).await?.is_none() {
                problems.push(format!("cannot find {what}"));
            }
        }
        if problems.is_empty() {
            Ok(n)
        } else {
            Err(ProvisionError::permanent(format!("the app's identity {}", problems.join("; "))))
        }
    }
}

/// What creating and deleting a runner VM takes on its resource group (the Compute
/// provider creates the NIC and disk on the caller's behalf, with the caller's rights).
pub const GROUP_ACTIONS: &[&str] = &[
    "Microsoft.Compute/virtualMachines/read",
    "Microsoft.Compute/virtualMachines/write",
    "Microsoft.Compute/virtualMachines/delete",
    "Microsoft.Network/networkInterfaces/write",
    "Microsoft.Network/networkInterfaces/delete",
    "Microsoft.Compute/disks/write",
    "Microsoft.Compute/disks/delete",
];
pub const SUBNET_JOIN: &str = "Microsoft.Network/virtualNetworks/subnets/join/action";
pub const IDENTITY_ASSIGN: &str = "Microsoft.ManagedIdentity/userAssignedIdentities/assign/action";

/// Whether a `permissions` answer grants `action`: some entry's `actions` match it and
/// none of that entry's `notActions` do (`*` matches any run of characters).
fn granted(grants: &[Value], action: &str) -> bool {
    let matches =
        |list: &Value| list.as_array().into_iter().flatten().filter_map(Value::as_str).any(|p| wildcard(p, action));
    grants.iter().any(|g| matches(&g["actions"]) && !matches(&g["notActions"]))
}

/// `pattern` with `*` wildcards against `text`, ignoring ASCII case.
fn wildcard(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.to_ascii_lowercase(), text.to_ascii_lowercase());
    let parts: Vec<&str> = p.split('*').collect();
    if parts.len() == 1 {
        return p == t;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !t.starts_with(first) || t.len() < first.len() + last.len() || !t.ends_with(last) {
        return false;
    }
    let mut rest = &t[first.len()..t.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

#[async_trait]
impl ComputeBackend for VmBackend {
    fn kind(&self) -> &'static str {
        "vm"
    }

    /// Looks in every placement: the name is the same in all of them.
    async fn find(&self, pool: &Pool, name: &str) -> Result<Option<ComputeInfo>, ProvisionError> {
        find_across(&self.sites(pool)?, |site| self.find_in(site, name)).await
    }

    /// Creates in the first placement that takes it (see [`create_in_order`]); in each,
    /// Spot falls back to regular priority before the placement counts as refusing.
    async fn create(&self, pool: &Pool, request: &ComputeRequest) -> Result<CreateOutcome, ProvisionError> {
        let sites = self.sites(pool)?;
        create_across(pool, request, &sites, &self.pauses, |site| self.create_in(pool, request, site)).await
    }

    /// One DELETE per placement; the NIC and OS disk go with the VM (`deleteOption`).
    async fn delete(&self, pool: &Pool, name: &str) -> Result<(), ProvisionError> {
        for site in self.sites(pool)? {
            let url = self.vm_url(&site, name)?;
            let what = format!("VM delete of {name} in {}", site.label);
            let response = self.arm.send(&what, self.arm.client.delete(&url)).await?;
            match response.status().as_u16() {
                200 | 202 => self.counts.adjust(&pool.name, &site, false),
                204 | 404 => {}
                _ => return Err(classify(&AzureError::from_response(response).await, &what, &[])),
            }
        }
        Ok(())
    }

    /// Every VM of the pool in every placement, with its power state.
    async fn list(&self, pool: &Pool) -> Result<Vec<ComputeInfo>, ProvisionError> {
        let sites = self.sites(pool)?;
        let mut out = Vec::new();
        for site in distinct_scopes(&sites) {
            out.extend(self.list_in(pool, site).await?);
        }
        Ok(out)
    }

    /// Every VM of the pool across placements, finished or not (a stopped VM is billed
    /// until it is deleted): `max_runners` caps what the pool costs. One list per resource
    /// group, reused for [`ACTIVE_COUNT_TTL`].
    async fn active_count(&self, pool: &Pool) -> Result<Option<usize>, ProvisionError> {
        let sites = self.sites(pool)?;
        let total = self
            .counts
            .total(&pool.name, &sites, |site| async move { Ok(self.list_in(pool, site).await?.len()) })
            .await?;
        Ok(Some(total))
    }

    fn paused_for(&self, pool: &Pool) -> Option<Duration> {
        all_paused(&self.sites(pool).ok()?, &self.pauses)
    }

    /// Each placement: listed, and the identity's rights to create there (see
    /// [`VmBackend::check_site`]).
    async fn reach(&self, pool: &Pool) -> Vec<(String, Result<usize, ProvisionError>)> {
        let (vm, sites) = match vm_of(pool).and_then(|vm| Ok((vm, self.sites(pool)?))) {
            Ok(x) => x,
            Err(e) => return vec![(String::new(), Err(e))],
        };
        let mut out = Vec::new();
        for site in &sites {
            let label = format!(
                "placement {} ({}): create VMs, join the subnet, read the image",
                site.label, site.resource_group
            );
            out.push((label, self.check_site(pool, vm, site).await));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_are_gallery_ids_or_marketplace_urns() {
        let g =
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/galleries/g/images/runner/versions/1.0.0";
        assert_eq!(parse_image(g), Ok(VmImage::Gallery(g.into())));
        assert_eq!(
            parse_image("Canonical:ubuntu-24_04-lts:server:latest"),
            Ok(VmImage::Marketplace {
                publisher: "Canonical".into(),
                offer: "ubuntu-24_04-lts".into(),
                sku: "server".into(),
                version: "latest".into()
            })
        );
        for bad in [
            "myacr.azurecr.io/runner:1",
            "a:b:c",
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Storage/x",
            "a:b:c:d e",
        ] {
            assert!(parse_image(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn power_states_map_to_compute_states() {
        let vm = |prov: &str, codes: &[&str]| {
            let statuses: Vec<Value> = codes.iter().map(|c| json!({ "code": c })).collect();
            json!({ "properties": { "provisioningState": prov, "instanceView": { "statuses": statuses } } })
        };
        assert_eq!(
            vm_state(&vm("Succeeded", &["ProvisioningState/succeeded", "PowerState/running"])),
            ComputeState::Running
        );
        assert_eq!(
            vm_state(&vm("Succeeded", &["ProvisioningState/succeeded", "PowerState/stopped"])),
            ComputeState::Succeeded
        );
        assert_eq!(vm_state(&vm("Creating", &["PowerState/starting"])), ComputeState::Pending);
        assert_eq!(vm_state(&vm("Creating", &[])), ComputeState::Pending);
        assert_eq!(vm_state(&vm("Failed", &["ProvisioningState/failed/AllocationFailed"])), ComputeState::Failed);
    }

    #[test]
    fn quota_and_capacity_codes_are_retryable_and_fail_over_and_bad_requests_are_not() {
        let e = |status, code: &str, message: &str| AzureError {
            status,
            code: Some(code.into()),
            message: Some(message.into()),
            retry_after: None,
        };
        let quota = e(
            409,
            "OperationNotAllowed",
            "Operation could not be completed as it results in exceeding approved standardDSv3Family Cores quota.",
        );
        for refusal in [
            &quota,
            &e(409, "QuotaExceeded", "m"),
            &e(409, "SkuNotAvailable", "m"),
            &e(200, "AllocationFailed", "m"),
            &e(409, "OverconstrainedAllocationRequest", "m"),
        ] {
            assert!(classify(refusal, "x", &[]).is_retryable() && quota_or_capacity(refusal), "{refusal:?}");
        }
        assert!(classify(&e(429, "TooManyRequests", "m"), "x", &[]).is_retryable());
        assert!(!quota_or_capacity(&e(429, "TooManyRequests", "m")), "throttling is not a reason to change region");
        let other = e(409, "OperationNotAllowed", "The VM is being deleted");
        assert!(!classify(&other, "x", &[]).is_retryable());
        assert!(!classify(&e(403, "LinkedAuthorizationFailed", "m"), "x", &[]).is_retryable());
    }

    #[test]
    fn permissions_honour_wildcards_and_not_actions() {
        let grants = vec![
            json!({ "actions": ["Microsoft.Compute/*", "*/read"], "notActions": ["Microsoft.Compute/disks/delete"] }),
        ];
        assert!(granted(&grants, "Microsoft.Compute/virtualMachines/write"));
        assert!(granted(&grants, "Microsoft.Network/virtualNetworks/read"));
        assert!(!granted(&grants, "Microsoft.Compute/disks/delete"));
        assert!(!granted(&grants, "Microsoft.Network/networkInterfaces/write"));
        assert!(granted(&[json!({ "actions": ["*"] })], SUBNET_JOIN));
    }

    #[test]
    fn the_no_login_key_is_an_openssh_ed25519_key_and_differs_per_vm() {
        let k = no_login_key("ghr-1");
        let b64 = k.split(' ').nth(1).expect("blob");
        let blob = BASE64.decode(b64).expect("base64");
        assert_eq!(&blob[..4], &11u32.to_be_bytes());
        assert_eq!(&blob[4..15], b"ssh-ed25519");
        assert_eq!(&blob[15..19], &32u32.to_be_bytes());
        assert_eq!(blob.len(), 19 + 32);
        assert_ne!(k, no_login_key("ghr-2"));
    }

    #[test]
    fn the_boot_script_quotes_values_and_carries_them_only_in_base64() {
        let request = ComputeRequest {
            name: "ghr-1".into(),
            purpose: crate::compute::Purpose::Idle { target: "o".into() },
            runner_id: None,
            env: vec![
                ("RUNNER_JITCONFIG".into(), EnvValue::Secret(Secret::new("s3cr3t-jit"))),
                ("QUOTED".into(), EnvValue::Plain("it's".into())),
            ],
        };
        let script = boot_script(&request);
        assert!(script.starts_with("#!/bin/bash\n"));
        assert!(!script.contains("s3cr3t-jit"));
        let b64 = script.split('\'').nth(1).expect("env line");
        let env = String::from_utf8(BASE64.decode(b64).expect("base64")).expect("utf8");
        assert_eq!(env, "RUNNER_JITCONFIG='s3cr3t-jit'\nQUOTED='it'\\''s'\n");
        assert!(script.contains(ENTRYPOINT) && script.contains("systemctl poweroff"));
    }
}
