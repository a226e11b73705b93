//! Every compute backend, registered in one place.
//!
//! A backend is a module (its pool settings, their parsing and validation, its REST
//! client) plus a variant in [`Backend`] and [`Compute`] and a line in [`Backend::ALL`].
//! Everything else dispatches here through exhaustive matches, so the compiler lists what a
//! new backend must provide: its pool keys and parser, its constructor, the settings it
//! requires, its dry-run rendering, and how reconcile treats its listings.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::azure::aci::{self, AciPool};
use crate::azure::arm::Placement;
use crate::azure::batch::{self, BatchPool};
use crate::azure::vm::{self, VmPool};
use crate::azure::{AzureCredential, CredentialError};
use crate::compute::{ComputeBackend, ComputeRequest};
use crate::config::{ConfigProblem, Pool, PoolKeys, PoolsConfig, Role, Settings};

/// A kind of compute, as a pool's `backend` key names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Backend {
    Aci,
    Batch,
    /// A fresh virtual machine per job (Docker jobs).
    Vm,
}

impl Backend {
    /// Every backend, in the order of [`Backend::index`]: the registration.
    pub const ALL: [Backend; 3] = [Backend::Aci, Backend::Batch, Backend::Vm];

    /// The name `backend = "..."` takes, and logs and dry-run records show.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Aci => "aci",
            Backend::Batch => "batch",
            Backend::Vm => "vm",
        }
    }

    /// Position in [`Backend::ALL`].
    #[must_use]
    pub fn index(self) -> usize {
        self as usize
    }

    /// The pool keys this backend reads (beyond the common ones).
    #[must_use]
    pub fn pool_keys(self) -> &'static [&'static str] {
        match self {
            Backend::Aci => aci::POOL_KEYS,
            Backend::Batch => batch::POOL_KEYS,
            Backend::Vm => vm::POOL_KEYS,
        }
    }

    /// Reads and checks this backend's keys of one pool; the compute part when the pool
    /// uses this backend and its keys are valid.
    pub(crate) fn parse_pool(self, keys: &mut PoolKeys<'_>, role: Role) -> Option<Compute> {
        match self {
            Backend::Aci => aci::parse_pool(keys, role).map(Compute::Aci),
            Backend::Batch => batch::parse_pool(keys, role).map(Compute::Batch),
            Backend::Vm => vm::parse_pool(keys, role).map(Compute::Vm),
        }
    }

    /// What is wrong with `prefix` as the start of this backend's compute names
    /// (`<prefix>-<job id>`, `<prefix>-i-<8 hex>`, also the runner's name), if anything: each
    /// backend knows its own name rules, and every prefix leaves room for a 20-digit job id.
    #[must_use]
    pub fn name_prefix_problem(self, prefix: &str) -> Option<&'static str> {
        match self {
            Backend::Aci => aci::name_prefix_problem(prefix),
            Backend::Batch => batch::name_prefix_problem(prefix),
            Backend::Vm => vm::name_prefix_problem(prefix),
        }
    }

    /// The least cold start the idle-runner rule assumes for this backend's runners (the
    /// measured one reads short, see `idle::IdlePolicy::target`): a container's start, or a
    /// fresh VM's boot, which Microsoft puts at about two minutes for a VM with its
    /// extensions (Azure Compute Blog, "How GitHub Actions handles CI/CD scale", May 2022).
    #[must_use]
    pub fn cold_start_floor(self) -> Duration {
        match self {
            Backend::Aci | Backend::Batch => crate::idle::DEFAULT_COLD_START,
            Backend::Vm => Duration::from_secs(120),
        }
    }

    /// The live client.
    ///
    /// # Errors
    /// Unusable credentials in the settings.
    pub fn build(
        self,
        settings: &Settings,
        credential: &AzureCredential,
    ) -> Result<Arc<dyn ComputeBackend>, CredentialError> {
        Ok(match self {
            Backend::Aci => Arc::new(aci::AciBackend::new(settings, credential)),
            Backend::Batch => Arc::new(batch::BatchBackend::new(settings, credential)?),
            Backend::Vm => Arc::new(vm::VmBackend::new(settings, credential)),
        })
    }

    /// Settings the environment lacks for `pools` (all of this backend, at least one enabled).
    #[must_use]
    pub fn required_settings(self, settings: &Settings, pools: &[&Pool]) -> Vec<ConfigProblem> {
        match self {
            Backend::Aci => {
                let pools: Vec<(&Pool, &AciPool)> = pools
                    .iter()
                    .filter_map(|p| if let Compute::Aci(a) = &p.compute { Some((*p, a)) } else { None })
                    .collect();
                aci::required_settings(settings, &pools)
            }
            Backend::Batch => batch::required_settings(settings),
            Backend::Vm => {
                let pools: Vec<(&Pool, &VmPool)> = pools
                    .iter()
                    .filter_map(|p| if let Compute::Vm(v) = &p.compute { Some((*p, v)) } else { None })
                    .collect();
                vm::required_settings(settings, &pools)
            }
        }
    }
}

/// Settings the pools need but the environment lacks, each named: asked of every backend
/// that at least one enabled pool uses.
#[must_use]
pub fn azure_setting_problems(settings: &Settings, pools: &PoolsConfig) -> Vec<ConfigProblem> {
    let mut out: Vec<ConfigProblem> = Vec::new();
    for kind in Backend::ALL {
        let of_kind: Vec<&Pool> = pools.pools.iter().filter(|p| p.backend() == kind).map(AsRef::as_ref).collect();
        if of_kind.iter().any(|p| p.enabled) {
            // One problem per setting: ACI and VM pools need the same subscription.
            for p in kind.required_settings(settings, &of_kind) {
                if !out.iter().any(|o| o.key == p.key) {
                    out.push(p);
                }
            }
        }
    }
    // Placements without their own subscription_id take AZURE_SUBSCRIPTION_ID's: only now
    // is their subnet's subscription comparable (those with one were checked on parsing).
    out.extend(crate::config::placement_subnet_problems(
        pools.pools.iter().map(AsRef::as_ref),
        settings.azure.subscription_id.as_deref(),
    ));
    out
}

/// A pool's compute part: the settings of its backend, parsed and validated by that
/// backend's module.
#[derive(Debug, Clone, PartialEq)]
pub enum Compute {
    Aci(AciPool),
    Batch(BatchPool),
    Vm(VmPool),
}

impl Compute {
    #[must_use]
    pub fn backend(&self) -> Backend {
        match self {
            Compute::Aci(_) => Backend::Aci,
            Compute::Batch(_) => Backend::Batch,
            Compute::Vm(_) => Backend::Vm,
        }
    }

    /// The body the real backend would send for `request` (what the dry-run records),
    /// built by the same code, secrets not yet redacted.
    #[must_use]
    pub fn request_body(&self, pool: &Pool, request: &ComputeRequest) -> Value {
        match self {
            Compute::Aci(a) => aci::dry_run_body(pool, a, request),
            Compute::Batch(b) => batch::batch_task_body(pool, b, request),
            Compute::Vm(v) => vm::dry_run_body(pool, v, request),
        }
    }

    /// How long reconcile keeps a finished compute before deleting it.
    #[must_use]
    pub fn finished_retention(&self) -> Duration {
        match self {
            Compute::Aci(_) | Compute::Vm(_) => Duration::ZERO,
            Compute::Batch(_) => batch::FINISHED_TASK_RETENTION,
        }
    }

    /// What a create quota is counted per, besides the backend: ACI's per region (with
    /// placements, their set: the backend pauses each placement itself, and the
    /// provisioner's gate closes only when all are paused), a Batch account's for the account.
    #[must_use]
    pub fn quota_scope(&self) -> String {
        match self {
            Compute::Aci(a) => quota_scope(&a.placements, a.location.as_ref()),
            Compute::Vm(v) => quota_scope(&v.places.placements, v.places.location.as_ref()),
            Compute::Batch(_) => String::new(),
        }
    }
}

/// The regions an ARM pool creates in: its placements', else its own location.
fn quota_scope(placements: &[Placement], location: Option<&String>) -> String {
    if placements.is_empty() {
        return location.cloned().unwrap_or_default();
    }
    placements
        .iter()
        .map(|p| format!("{}/{}", p.subscription_id.as_deref().unwrap_or_default(), p.location))
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_backends_are_built_from_settings() {
        let s = Settings::from_lookup(|k| match k {
            "GITHUB_WEBHOOK_SECRET" => Some("w".into()),
            "AZURE_BATCH_ACCOUNT_URL" => Some("https://acct.westeurope.batch.azure.com".into()),
            "AZURE_BATCH_ACCOUNT_NAME" => Some("acct".into()),
            "AZURE_BATCH_ACCOUNT_KEY" => Some("a2V5".into()),
            _ => None,
        })
        .expect("settings");
        let b = live(&s).expect("backends");
        for kind in Backend::ALL {
            assert_eq!(b.get(kind).kind(), kind.as_str());
        }
    }

    #[test]
    fn each_backend_checks_name_prefixes_by_its_own_name_rules() {
        // A Batch task id may hold capitals and underscores; a container group name may not.
        assert!(Backend::Batch.name_prefix_problem("Build_Runners").is_none());
        assert!(Backend::Aci.name_prefix_problem("Build_Runners").is_some());
        for kind in Backend::ALL {
            assert!(kind.name_prefix_problem("ghr").is_none(), "{kind:?}");
            assert!(kind.name_prefix_problem("").is_some(), "{kind:?}");
            assert!(kind.name_prefix_problem(&"a".repeat(41)).is_some(), "{kind:?}: no room for a job id");
            assert!(kind.name_prefix_problem("-x").is_some(), "{kind:?}");
        }
        let batch = "[github]\nallowed_owners = [\"o\"]\n[[pools]]\nname = \"b\"\nbackend = \"batch\"\nlabels = [\"x\"]\nimage = \"i\"\nbatch_pool_id = \"p\"\nname_prefix = \"Build_Runners\"\n";
        assert!(crate::config::PoolsConfig::parse(batch).is_ok());
        let aci = batch
            .replace("backend = \"batch\"", "backend = \"aci\"\nlocation = \"westeurope\"")
            .replace("batch_pool_id = \"p\"\n", "");
        let errors = crate::config::PoolsConfig::parse(&aci).expect_err("ACI refuses it").to_string();
        assert!(errors.contains("pools[0].name_prefix"), "{errors}");
    }

    #[test]
    fn every_backend_is_listed_once_at_its_index() {
        for (i, b) in Backend::ALL.iter().enumerate() {
            assert_eq!(b.index(), i, "{b:?}");
        }
    }

    #[test]
    fn no_two_backends_claim_the_same_pool_key() {
        let mut seen = std::collections::BTreeSet::new();
        for b in Backend::ALL {
            for k in b.pool_keys() {
                assert!(seen.insert(*k), "{k} claimed twice");
            }
        }
    }

    #[test]
    fn settings_are_required_by_each_backend_an_enabled_pool_uses() {
        let settings = Settings::from_lookup(|k| (k == "GITHUB_WEBHOOK_SECRET").then(|| "w".to_owned())).expect("ok");
        let pools = crate::config::PoolsConfig::parse(crate::config::EMBEDDED_DEMO_CONFIG).expect("example");
        let keys = |p: &crate::config::PoolsConfig| -> Vec<String> {
            azure_setting_problems(&settings, p).into_iter().map(|p| p.key).collect()
        };
        // The example's pools set resource_group and location in [defaults].
        assert_eq!(keys(&pools), vec!["AZURE_SUBSCRIPTION_ID", "AZURE_BATCH_ACCOUNT_URL"]);
        let no_batch = crate::config::EMBEDDED_DEMO_CONFIG
            .replace("batch_pool_id = \"windows\"", "batch_pool_id = \"windows\"\nenabled = false");
        let pools = crate::config::PoolsConfig::parse(&no_batch).expect("example");
        assert_eq!(keys(&pools), vec!["AZURE_SUBSCRIPTION_ID"]);
        let no_location = crate::config::EMBEDDED_DEMO_CONFIG.replace("location = \"westeurope\"\n", "");
        let pools = crate::config::PoolsConfig::parse(&no_location).expect("example");
        assert_eq!(keys(&pools), vec!["AZURE_SUBSCRIPTION_ID", "AZURE_LOCATION", "AZURE_BATCH_ACCOUNT_URL"]);
    }
}

/// The live backends of every registered kind, sharing one credential chosen from the settings and
/// environment (see [`crate::azure::CredentialKind::choose`]).
///
/// # Errors
/// The credential cannot be built, or the Batch account key is not base64.
pub fn live(settings: &Settings) -> Result<Backends, CredentialError> {
    let credential = AzureCredential::from_settings(&settings.azure)?;
    Backends::try_build(|kind| kind.build(settings, &credential))
}

/// The backends, one per registered kind (complete by construction: see
/// [`Backend::ALL`]); a pool uses the one its `backend` names.
#[derive(Clone)]
pub struct Backends {
    /// Indexed by [`Backend::index`].
    by_kind: Vec<Arc<dyn ComputeBackend>>,
}

impl Backends {
    /// Every kind served by one backend (the dry-run).
    #[must_use]
    pub fn single(backend: Arc<dyn ComputeBackend>) -> Self {
        Self { by_kind: Backend::ALL.iter().map(|_| backend.clone()).collect() }
    }

    /// One backend per kind, built by `build`.
    ///
    /// # Errors
    /// The first kind `build` fails for.
    pub fn try_build<E>(build: impl FnMut(Backend) -> Result<Arc<dyn ComputeBackend>, E>) -> Result<Self, E> {
        Ok(Self { by_kind: Backend::ALL.into_iter().map(build).collect::<Result<_, E>>()? })
    }

    /// The backend of one kind.
    #[must_use]
    pub fn get(&self, kind: Backend) -> &Arc<dyn ComputeBackend> {
        &self.by_kind[kind.index()]
    }

    #[must_use]
    pub fn for_pool(&self, pool: &Pool) -> &Arc<dyn ComputeBackend> {
        self.get(pool.backend())
    }
}
