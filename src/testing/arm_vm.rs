//! A fake of the ARM calls the VM backend makes: virtual machines (with the NIC and OS disk
//! the Compute provider makes from the body), permissions and gallery images. It answers as
//! ARM does where the backend depends on it: `customData` is never returned, a PUT with
//! `If-None-Match: *` on an existing VM is 412, a DELETE takes the NIC and disk whose
//! `deleteOption` is `Delete`. Every PUT body goes through the test's `check` (the JSON
//! Schema of Microsoft's model) and a failing body is refused with 400, as Azure would.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// Checks a PUT body: the problems found (none: valid).
pub type BodyCheck = Arc<dyn Fn(&Value) -> Vec<String> + Send + Sync>;

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct ArmCall {
    pub method: Method,
    /// Without the query.
    pub path: String,
    pub query: String,
    pub bearer: String,
    pub if_none_match: Option<String>,
    pub body: Value,
}

/// A refusal the fake answers a PUT with in one resource group.
#[derive(Debug, Clone)]
pub struct PutRefusal {
    /// Only for Spot bodies (`priority: Spot`).
    pub spot_only: bool,
    pub status: u16,
    pub code: String,
    pub message: String,
}

/// What the fake holds; tests read and change it through [`FakeArmVms::state`].
#[derive(Debug, Default)]
pub struct ArmVmState {
    pub calls: Vec<ArmCall>,
    /// By lowercased resource id.
    pub vms: BTreeMap<String, Value>,
    /// NICs and OS disks made with the VMs: resource id → the VM id they belong to.
    pub attached: BTreeMap<String, (String, bool)>,
    /// By lowercased resource group name.
    pub refusals: BTreeMap<String, PutRefusal>,
    /// Schema problems of PUT bodies (each also answered 400).
    pub body_problems: Vec<String>,
    /// `Microsoft.Authorization/permissions` answers by lowercased scope; unlisted: `*`.
    pub permissions: BTreeMap<String, Vec<String>>,
    /// Gallery image ids (lowercased) that exist.
    pub images: BTreeSet<String>,
    /// Items per list page (0: all on one).
    pub page_size: usize,
}

/// The fake ARM for virtual machines.
#[derive(Clone)]
pub struct FakeArmVms {
    pub state: Arc<Mutex<ArmVmState>>,
    check: BodyCheck,
}

impl FakeArmVms {
    #[must_use]
    pub fn new(check: BodyCheck) -> Self {
        Self { state: Arc::default(), check }
    }

    /// Serves it on 127.0.0.1: its base URL (the ARM URL to configure).
    pub async fn serve(&self) -> String {
        super::serve_fake(Router::new().fallback(handle).with_state(self.clone())).await.0
    }

    /// The fake's state, locked.
    ///
    /// # Panics
    /// A handler panicked while holding it.
    pub fn lock(&self) -> std::sync::MutexGuard<'_, ArmVmState> {
        self.state.lock().expect("fake ARM state")
    }

    /// Sets a VM's power state (`PowerState/<state>`), as the boot script's power-off does.
    pub fn set_power(&self, name: &str, state: &str) {
        let mut s = self.lock();
        for vm in s.vms.values_mut().filter(|v| v["name"] == name) {
            vm["properties"]["instanceView"]["statuses"][1]["code"] = json!(format!("PowerState/{state}"));
        }
    }
}

fn answer(status: u16, body: &Value) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, [("content-type", "application/json")], body.to_string()).into_response()
}

fn arm_error(status: u16, code: &str, message: &str) -> Response {
    answer(status, &json!({ "error": { "code": code, "message": message } }))
}

async fn handle(State(fake): State<FakeArmVms>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let path = uri.path().to_owned();
    let query = uri.query().unwrap_or_default().to_owned();
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
        .to_owned();
    let if_none_match = headers.get("if-none-match").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut s = fake.lock();
    s.calls.push(ArmCall {
        method: method.clone(),
        path: path.clone(),
        query: query.clone(),
        bearer: bearer.clone(),
        if_none_match: if_none_match.clone(),
        body: body.clone(),
    });
    if !bearer.starts_with("mi-token-for-") {
        return arm_error(401, "InvalidAuthenticationToken", "no managed identity token");
    }
    let lower = path.to_ascii_lowercase();
    if lower.ends_with("/providers/microsoft.authorization/permissions") {
        let scope = lower.trim_end_matches("/providers/microsoft.authorization/permissions");
        let actions = s.permissions.get(scope).cloned().unwrap_or_else(|| vec!["*".into()]);
        return answer(200, &json!({ "value": [{ "actions": actions, "notActions": [] }] }));
    }
    if lower.contains("/providers/microsoft.compute/galleries/") {
        return if s.images.contains(&lower) {
            answer(200, &json!({ "id": path }))
        } else {
            arm_error(404, "ResourceNotFound", "no such image")
        };
    }
    let Some(rest) = lower.split("/providers/microsoft.compute/virtualmachines").nth(1) else {
        return arm_error(404, "NotFound", "the fake knows virtual machines, permissions and gallery images");
    };
    if !query.contains("api-version=2024-11-01") {
        return arm_error(400, "InvalidApiVersionParameter", "expected api-version 2024-11-01");
    }
    let group = lower.split("/resourcegroups/").nth(1).and_then(|r| r.split('/').next()).unwrap_or_default().to_owned();
    match (method, rest.trim_start_matches('/')) {
        (Method::GET, "") => {
            let host = headers.get("host").and_then(|v| v.to_str().ok()).unwrap_or_default();
            list(&s, &lower, &query, &format!("http://{host}{path}"))
        }
        (Method::GET, _) => match s.vms.get(&lower) {
            Some(vm) => answer(200, &as_read(vm, &query)),
            None => arm_error(404, "ResourceNotFound", "no such VM"),
        },
        (Method::PUT, name) => {
            let problems = (fake.check)(&body);
            if !problems.is_empty() {
                s.body_problems.extend(problems.iter().cloned());
                return arm_error(400, "InvalidRequestContent", &problems.join("; "));
            }
            if s.vms.contains_key(&lower) {
                return if if_none_match.as_deref() == Some("*") {
                    arm_error(412, "PreconditionFailed", "the VM exists")
                } else {
                    arm_error(409, "PropertyChangeNotAllowed", "changing an existing VM")
                };
            }
            let spot = body["properties"]["priority"] == "Spot";
            if let Some(r) = s.refusals.get(&group).filter(|r| spot || !r.spot_only) {
                return arm_error(r.status, &r.code, &r.message);
            }
            let vm = created(&path, name, &body);
            let nic_delete = body["properties"]["networkProfile"]["networkInterfaceConfigurations"][0]["properties"]["deleteOption"]
                == "Delete";
            let disk_delete = body["properties"]["storageProfile"]["osDisk"]["deleteOption"] == "Delete";
            let group_id = lower.split("/providers/").next().unwrap_or_default().to_owned();
            s.attached.insert(
                format!("{group_id}/providers/microsoft.network/networkinterfaces/{name}-nic"),
                (lower.clone(), nic_delete),
            );
            s.attached.insert(
                format!("{group_id}/providers/microsoft.compute/disks/{name}-osdisk"),
                (lower.clone(), disk_delete),
            );
            s.vms.insert(lower, vm.clone());
            answer(201, &as_read(&vm, ""))
        }
        (Method::DELETE, _) => {
            if s.vms.remove(&lower).is_none() {
                return answer(204, &Value::Null);
            }
            s.attached.retain(|_, (vm, delete)| !(*vm == lower && *delete));
            answer(202, &Value::Null)
        }
        _ => arm_error(405, "MethodNotAllowed", "not a VM call"),
    }
}

/// The VM as ARM keeps it: the body, an id and name, states, and no `customData`.
fn created(path: &str, name: &str, body: &Value) -> Value {
    let mut vm = body.clone();
    vm["id"] = json!(path);
    vm["name"] = json!(name);
    vm["type"] = json!("Microsoft.Compute/virtualMachines");
    if let Some(os) = vm["properties"]["osProfile"].as_object_mut() {
        os.remove("customData");
    }
    vm["properties"]["provisioningState"] = json!("Succeeded");
    vm["properties"]["timeCreated"] = json!(
        time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
    );
    vm["properties"]["vmId"] = json!("6a1b2c3d-0000-0000-0000-000000000000");
    vm["properties"]["instanceView"] =
        json!({ "statuses": [{ "code": "ProvisioningState/succeeded" }, { "code": "PowerState/running" }] });
    vm
}

/// What a GET returns: the instance view only with `$expand=instanceView`; `userData`
/// (the runner never sets it) only with `$expand=userData`.
fn as_read(vm: &Value, query: &str) -> Value {
    let mut vm = vm.clone();
    if !query.contains("expand=instanceView") {
        if let Some(p) = vm["properties"].as_object_mut() {
            p.remove("instanceView");
        }
    }
    if !query.contains("expand=userData") {
        if let Some(p) = vm["properties"].as_object_mut() {
            p.remove("userData");
        }
    }
    vm
}

fn list(s: &ArmVmState, collection: &str, query: &str, url: &str) -> Response {
    let all: Vec<Value> = s
        .vms
        .iter()
        .filter(|(id, _)| id.rsplit_once('/').is_some_and(|(parent, _)| parent == collection))
        .map(|(_, vm)| as_read(vm, query))
        .collect();
    let skip: usize =
        query.split('&').find_map(|kv| kv.strip_prefix("skip=")).and_then(|n| n.parse().ok()).unwrap_or(0);
    let size = if s.page_size == 0 { all.len().max(1) } else { s.page_size };
    let page: Vec<Value> = all.iter().skip(skip).take(size).cloned().collect();
    let mut out = json!({ "value": page });
    if skip + size < all.len() {
        let base = query.split('&').filter(|kv| !kv.starts_with("skip=")).collect::<Vec<_>>().join("&");
        out["nextLink"] = json!(format!("{url}?{base}&skip={}", skip + size));
    }
    answer(200, &out)
}
