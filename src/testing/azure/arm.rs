//! A fake Azure Resource Manager for container groups, over any number of subscriptions
//! and resource groups (ACI placements), as `AciBackend` calls it: create-only PUT, GET,
//! DELETE and the paged list of a resource group.

use std::collections::BTreeMap;

use axum::http::Method;
use serde_json::{Value, json};

use super::Schema;
use super::core::{Canned, FakeServer, Seen, Service, now_rfc3339, page};
use crate::azure::aci::ACI_API_VERSION;

/// ARM serving container groups; see [`Arm`].
pub type ArmFake = FakeServer<Arm>;

/// (subscription, resource group, name).
pub type GroupKey = (String, String, String);

/// The container groups ARM holds, as a later GET returns them.
#[derive(Debug, Default)]
pub struct Arm {
    pub groups: BTreeMap<GroupKey, Value>,
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

    fn create(&mut self, key: GroupKey, req: &Seen) -> Canned {
        if self.groups.contains_key(&key) {
            // Without If-None-Match, ACI would update a running group or redeploy a finished
            // one: never wanted, so the test fails loudly.
            let create_only = req.headers.get("if-none-match").is_some_and(|v| v == "*");
            assert!(create_only, "a PUT that would update or redeploy container group {}", key.2);
            return Self::error(
                412,
                "PreconditionFailed",
                "The condition specified using HTTP conditional header(s) is not met.",
            );
        }
        let mut group = req.body.clone().expect("a PUT body");
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
        self.groups.insert(key, group.clone());
        Canned::new(201, group)
    }

    /// Like ARM's list: no instance views (the group's nor its containers'), only the
    /// provisioning state.
    fn list(&self, base: &str, req: &Seen, subscription: &str, rg: &str) -> Canned {
        let all: Vec<Value> = self
            .groups
            .iter()
            .filter(|((s, r, _), _)| s == subscription && r == rg)
            .map(|(_, g)| {
                let mut g = g.clone();
                g["properties"].as_object_mut().map(|p| p.remove("instanceView"));
                for c in g["properties"]["containers"].as_array_mut().into_iter().flatten() {
                    c["properties"].as_object_mut().map(|p| p.remove("instanceView"));
                }
                g
            })
            .collect();
        let skip = req.param("$skiptoken").and_then(|v| v.parse().ok()).unwrap_or(0);
        page(&all, skip, "nextLink", |next| {
            format!("{base}{}?api-version={ACI_API_VERSION}&$skiptoken={next}", req.path)
        })
    }
}

/// Subscription, resource group and group name (empty for the list) of a container group path.
fn scope_of(path: &str) -> Option<GroupKey> {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match parts.as_slice() {
        [
            "subscriptions",
            sub,
            "resourceGroups",
            rg,
            "providers",
            "Microsoft.ContainerInstance",
            "containerGroups",
            rest @ ..,
        ] if rest.len() <= 1 => {
            Some(((*sub).to_owned(), (*rg).to_owned(), rest.first().copied().unwrap_or_default().to_owned()))
        }
        _ => None,
    }
}

impl Service for Arm {
    const API_VERSION: &'static str = ACI_API_VERSION;
    const UNAUTHORIZED: (u16, &'static str) = (401, "InvalidAuthenticationToken");
    const NO_API_VERSION: &'static str = "MissingApiVersionParameter";
    const INVALID_BODY: &'static str = "InvalidRequestContent";

    fn error(status: u16, code: &str, message: &str) -> Canned {
        Canned::new(status, json!({"error": {"code": code, "message": message}}))
    }

    fn admit(req: &Seen) -> Result<Schema, Canned> {
        match scope_of(&req.path) {
            Some(_) => Ok(Schema::ContainerGroup),
            None => Err(Self::error(404, "ResourceGroupNotFound", "no such path")),
        }
    }

    fn answer(&mut self, base: &str, req: &Seen) -> Canned {
        let key = scope_of(&req.path).expect("admitted");
        match (&req.method, key.2.is_empty()) {
            (&Method::PUT, false) => self.create(key, req),
            (&Method::GET, false) => match self.groups.get(&key) {
                Some(g) => Canned::new(200, g.clone()),
                None => Self::error(404, "ResourceNotFound", "not found"),
            },
            (&Method::DELETE, false) => {
                if self.groups.remove(&key).is_some() {
                    Canned::new(200, json!({}))
                } else {
                    Canned::new(204, Value::Null)
                }
            }
            (&Method::GET, true) => self.list(base, req, &key.0, &key.1),
            _ => Self::error(405, "MethodNotAllowed", "not served by the fake"),
        }
    }
}
