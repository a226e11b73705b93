//! A fake Azure Resource Manager for the ARM backends, over any number of subscriptions and
//! resource groups (placements): container groups (ACI) and virtual machines (the VM lane),
//! each with create-only PUT, GET, DELETE and the paged list of a resource group; and what
//! the VM lane's `doctor` reads: the caller's permissions at a scope and gallery images.
//!
//! It answers as ARM does where the backends depend on it: secure values and `customData`
//! are never returned, a VM's instance view and `userData` only with `$expand`, and a VM
//! comes with a NIC and an OS disk that its DELETE takes when their `deleteOption` says so.

use std::collections::{BTreeMap, BTreeSet};

use axum::http::Method;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value, json};

use super::Schema;
use super::core::{Admitted, Canned, FakeServer, Seen, Service, now_rfc3339, page};
use crate::azure::aci::ACI_API_VERSION;
use crate::azure::vm::{COMPUTE_API_VERSION, GALLERY_API_VERSION, PERMISSIONS_API_VERSION};

/// ARM serving container groups and VMs; see [`Arm`].
pub type ArmFake = FakeServer<Arm>;

/// (subscription, resource group, name).
pub type GroupKey = (String, String, String);

/// What ARM holds, as a later GET returns it.
#[derive(Debug, Default)]
pub struct Arm {
    /// Container groups.
    pub groups: BTreeMap<GroupKey, Value>,
    /// Virtual machines (as stored: with their instance view, without `customData`).
    pub vms: BTreeMap<GroupKey, Value>,
    /// The NICs and OS disks the Compute provider made with each VM, by resource id: the
    /// VM they came with, and whether they go with it (`deleteOption: Delete`).
    pub attached: BTreeMap<String, (GroupKey, bool)>,
    /// `Microsoft.Authorization/permissions` actions by scope (lowercase); unlisted: `*`.
    pub permissions: BTreeMap<String, Vec<String>>,
    /// Gallery image (version) ids that exist (lowercase).
    pub images: BTreeSet<String>,
}

/// The resource types the fake holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    ContainerGroup,
    VirtualMachine,
}

impl Kind {
    const ALL: [Kind; 2] = [Kind::ContainerGroup, Kind::VirtualMachine];

    /// Resource provider and type, as in the path.
    fn path(self) -> (&'static str, &'static str) {
        match self {
            Kind::ContainerGroup => ("Microsoft.ContainerInstance", "containerGroups"),
            Kind::VirtualMachine => ("Microsoft.Compute", "virtualMachines"),
        }
    }

    fn api_version(self) -> &'static str {
        match self {
            Kind::ContainerGroup => ACI_API_VERSION,
            Kind::VirtualMachine => COMPUTE_API_VERSION,
        }
    }

    fn schema(self) -> Schema {
        match self {
            Kind::ContainerGroup => Schema::ContainerGroup,
            Kind::VirtualMachine => Schema::VirtualMachine,
        }
    }

    /// What a GET with `query` returns of a stored resource.
    fn read(self, stored: &Value, query: &str) -> Value {
        match self {
            Kind::ContainerGroup => stored.clone(),
            Kind::VirtualMachine => {
                let mut vm = stored.clone();
                for (field, expand) in [("instanceView", "$expand=instanceView"), ("userData", "$expand=userData")] {
                    if !query.split('&').any(|kv| kv == expand) {
                        vm["properties"].as_object_mut().map(|p| p.remove(field));
                    }
                }
                vm
            }
        }
    }

    /// What a list with `query` returns of a stored resource. A container group list has
    /// no instance views (the group's nor its containers'), only the provisioning state.
    fn listed(self, stored: &Value, query: &str) -> Value {
        match self {
            Kind::ContainerGroup => {
                let mut g = stored.clone();
                g["properties"].as_object_mut().map(|p| p.remove("instanceView"));
                for c in g["properties"]["containers"].as_array_mut().into_iter().flatten() {
                    c["properties"].as_object_mut().map(|p| p.remove("instanceView"));
                }
                g
            }
            Kind::VirtualMachine => self.read(stored, query),
        }
    }
}

/// What a request is about.
enum Target {
    /// A resource (name empty: the list of a resource group).
    Resource(Kind, GroupKey),
    /// `{scope}/providers/Microsoft.Authorization/permissions`, the scope lowercased.
    Permissions(String),
    /// A Compute Gallery image or image version, its id lowercased.
    Image(String),
}

const PERMISSIONS: &str = "/providers/microsoft.authorization/permissions";

fn target_of(path: &str) -> Option<Target> {
    let lower = path.to_ascii_lowercase();
    if let Some(scope) = lower.strip_suffix(PERMISSIONS) {
        return Some(Target::Permissions(scope.to_owned()));
    }
    if lower.contains("/providers/microsoft.compute/galleries/") {
        return Some(Target::Image(lower));
    }
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match parts.as_slice() {
        ["subscriptions", sub, "resourceGroups", rg, "providers", provider, kind, rest @ ..] if rest.len() <= 1 => {
            let kind = Kind::ALL.into_iter().find(|k| k.path() == (*provider, *kind))?;
            let name = rest.first().copied().unwrap_or_default();
            Some(Target::Resource(kind, ((*sub).to_owned(), (*rg).to_owned(), name.to_owned())))
        }
        _ => None,
    }
}

impl Arm {
    /// The group `name` in resource group `rg`, in whichever subscription.
    #[must_use]
    pub fn group(&self, rg: &str, name: &str) -> Option<&Value> {
        self.groups.iter().find(|((_, r, n), _)| r == rg && n == name).map(|(_, g)| g)
    }

    /// The group `name` wherever it is, to change its state in place.
    pub fn group_mut(&mut self, name: &str) -> Option<&mut Value> {
        self.groups.iter_mut().find(|((_, _, n), _)| n == name).map(|(_, g)| g)
    }

    /// Puts `group` (named by its `name`) in place, as if created earlier.
    pub fn insert(&mut self, subscription: &str, rg: &str, group: Value) {
        let name = group["name"].as_str().expect("a named group").to_owned();
        self.groups.insert((subscription.into(), rg.into(), name), group);
    }

    /// The VM `name` wherever it is, to change its state in place.
    pub fn vm_mut(&mut self, name: &str) -> Option<&mut Value> {
        self.vms.iter_mut().find(|((_, _, n), _)| n == name).map(|(_, vm)| vm)
    }

    /// Sets the power state of VM `name` (`PowerState/<state>`), as the boot script's
    /// power-off does.
    ///
    /// # Panics
    /// No such VM.
    pub fn set_power(&mut self, name: &str, state: &str) {
        let vm = self.vm_mut(name).expect("a VM");
        vm["properties"]["instanceView"]["statuses"][1]["code"] = json!(format!("PowerState/{state}"));
    }

    fn table(&mut self, kind: Kind) -> &mut BTreeMap<GroupKey, Value> {
        match kind {
            Kind::ContainerGroup => &mut self.groups,
            Kind::VirtualMachine => &mut self.vms,
        }
    }

    fn create(&mut self, kind: Kind, key: GroupKey, req: &Seen) -> Canned {
        if self.table(kind).contains_key(&key) {
            // Without If-None-Match, ARM would update the resource (and ACI redeploy a
            // finished group): never wanted, so the test fails loudly.
            let create_only = req.headers.get("if-none-match").is_some_and(|v| v == "*");
            assert!(create_only, "a PUT that would update or redeploy {}", key.2);
            return Self::error(
                412,
                "PreconditionFailed",
                "The condition specified using HTTP conditional header(s) is not met.",
            );
        }
        let body = req.body.clone().expect("a PUT body");
        let stored = match kind {
            Kind::ContainerGroup => created_group(&key, body),
            Kind::VirtualMachine => {
                self.attach(&key, &req.path, &body);
                created_vm(&key, &req.path, body)
            }
        };
        self.table(kind).insert(key, stored.clone());
        Canned::new(201, kind.read(&stored, ""))
    }

    /// The NIC and OS disk the Compute provider makes from a VM body.
    fn attach(&mut self, key: &GroupKey, path: &str, body: &Value) {
        let props = &body["properties"];
        let nic = &props["networkProfile"]["networkInterfaceConfigurations"][0];
        let disk = &props["storageProfile"]["osDisk"];
        let group_id = path.split("/providers/").next().unwrap_or_default();
        for (id, resource) in [("Microsoft.Network/networkInterfaces", nic), ("Microsoft.Compute/disks", disk)] {
            let name = resource["name"].as_str().unwrap_or_default();
            let delete = resource["deleteOption"] == "Delete" || resource["properties"]["deleteOption"] == "Delete";
            self.attached.insert(format!("{group_id}/providers/{id}/{name}"), (key.clone(), delete));
        }
    }

    fn delete(&mut self, kind: Kind, key: &GroupKey) -> Canned {
        if self.table(kind).remove(key).is_none() {
            return Canned::new(204, Value::Null);
        }
        match kind {
            Kind::ContainerGroup => Canned::new(200, json!({})),
            Kind::VirtualMachine => {
                self.attached.retain(|_, (vm, delete)| !(vm == key && *delete));
                Canned::new(202, Value::Null)
            }
        }
    }

    /// The resources of `kind` in a resource group, a page at a time; the next link keeps
    /// the query (`$expand`).
    fn list(&mut self, kind: Kind, base: &str, req: &Seen, (subscription, rg, _): &GroupKey) -> Canned {
        let all: Vec<Value> = self
            .table(kind)
            .iter()
            .filter(|((s, r, _), _)| s == subscription && r == rg)
            .map(|(_, v)| kind.listed(v, &req.query))
            .collect();
        let skip = req.param("$skiptoken").and_then(|v| v.parse().ok()).unwrap_or(0);
        let query: Vec<&str> = req.query.split('&').filter(|kv| !kv.starts_with("$skiptoken=")).collect();
        page(&all, skip, "nextLink", |next| format!("{base}{}?{}&$skiptoken={next}", req.path, query.join("&")))
    }
}

/// A container group as ARM keeps it: running, with no secure values.
fn created_group(key: &GroupKey, mut group: Value) -> Value {
    for container in group["properties"]["containers"].as_array_mut().into_iter().flatten() {
        for var in container["properties"]["environmentVariables"].as_array_mut().into_iter().flatten() {
            // A GET never returns secure values.
            var.as_object_mut().expect("env var").remove("secureValue");
        }
    }
    group["name"] = json!(key.2);
    group["properties"]["provisioningState"] = json!("Succeeded");
    group["properties"]["instanceView"] = json!({"state": "Running"});
    group["systemData"] = json!({"createdAt": now_rfc3339()});
    group
}

/// A VM as ARM keeps it: the body with an id, states and creation time, running, and no
/// `customData` (ARM never returns it).
fn created_vm(key: &GroupKey, path: &str, mut vm: Value) -> Value {
    vm["id"] = json!(path);
    vm["name"] = json!(key.2);
    vm["type"] = json!("Microsoft.Compute/virtualMachines");
    vm["properties"]["osProfile"].as_object_mut().map(|os| os.remove("customData"));
    vm["properties"]["provisioningState"] = json!("Succeeded");
    vm["properties"]["timeCreated"] = json!(now_rfc3339());
    vm["properties"]["vmId"] = json!("6a1b2c3d-0000-0000-0000-000000000000");
    vm["properties"]["instanceView"] =
        json!({ "statuses": [{ "code": "ProvisioningState/succeeded" }, { "code": "PowerState/running" }] });
    vm
}

/// The variables a VM body hands its runner: the env file its boot script (`customData`,
/// base64) writes, decoded. `None` when the body has no such script.
#[must_use]
pub fn vm_boot_env(body: &Value) -> Option<String> {
    let custom = body["properties"]["osProfile"]["customData"].as_str()?;
    let script = String::from_utf8(BASE64.decode(custom).ok()?).ok()?;
    let env = script.lines().find_map(|l| l.strip_prefix("echo '"))?.split('\'').next()?;
    String::from_utf8(BASE64.decode(env).ok()?).ok()
}

/// The value variable `name` has in a [`vm_boot_env`] (`NAME='value'`, shell-quoted).
#[must_use]
pub fn boot_env_value(env: &str, name: &str) -> Option<String> {
    let value = env.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix("='")?.strip_suffix('\''))?;
    Some(value.replace(r"'\''", "'"))
}

impl Service for Arm {
    const UNAUTHORIZED: (u16, &'static str) = (401, "InvalidAuthenticationToken");
    const NO_API_VERSION: &'static str = "MissingApiVersionParameter";
    const INVALID_BODY: &'static str = "InvalidRequestContent";

    fn error(status: u16, code: &str, message: &str) -> Canned {
        Canned::new(status, json!({"error": {"code": code, "message": message}}))
    }

    fn admit(req: &Seen) -> Result<Admitted, Canned> {
        let admitted = |api_version, schema| Ok(Admitted { api_version, schema });
        match target_of(&req.path) {
            Some(Target::Resource(kind, _)) => admitted(kind.api_version(), Some(kind.schema())),
            Some(Target::Permissions(_)) => admitted(PERMISSIONS_API_VERSION, None),
            Some(Target::Image(_)) => admitted(GALLERY_API_VERSION, None),
            None => Err(Self::error(404, "ResourceGroupNotFound", "no such path")),
        }
    }

    fn answer(&mut self, base: &str, req: &Seen) -> Canned {
        match (target_of(&req.path).expect("admitted"), &req.method) {
            (Target::Resource(kind, key), &Method::GET) if key.2.is_empty() => self.list(kind, base, req, &key),
            (Target::Resource(kind, key), &Method::PUT) if !key.2.is_empty() => self.create(kind, key, req),
            (Target::Resource(kind, key), &Method::GET) => match self.table(kind).get(&key) {
                Some(v) => Canned::new(200, kind.read(v, &req.query)),
                None => Self::error(404, "ResourceNotFound", "not found"),
            },
            (Target::Resource(kind, key), &Method::DELETE) if !key.2.is_empty() => self.delete(kind, &key),
            (Target::Permissions(scope), &Method::GET) => {
                let actions = self.permissions.get(&scope).cloned().unwrap_or_else(|| vec!["*".into()]);
                Canned::new(200, json!({ "value": [{ "actions": actions, "notActions": [] }] }))
            }
            (Target::Image(id), &Method::GET) if self.images.contains(&id) => {
                Canned::new(200, json!({ "id": req.path }))
            }
            (Target::Image(_), &Method::GET) => Self::error(404, "ResourceNotFound", "no such image"),
            _ => Self::error(405, "MethodNotAllowed", "not served by the fake"),
        }
    }
}
