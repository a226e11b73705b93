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
use crate::azure::batch::{self, BatchPool};
use crate::azure::{AzureCredential, CredentialError};
use crate::config::{ConfigProblem, Pool, PoolKeys, PoolsConfig, Role, Settings};
use crate::provision::{ComputeBackend, ComputeRequest};

/// A kind of compute, as a pool's `backend` key names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Backend {
    Aci,
    Batch,
}

impl Backend {
    /// Every backend, in the order of [`Backend::index`]: the registration.
    pub const ALL: [Backend; 2] = [Backend::Aci, Backend::Batch];

    /// The name `backend = "..."` takes, and logs and dry-run records show.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Aci => "aci",
            Backend::Batch => "batch",
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
        }
    }

    /// Reads and checks this backend's keys of one pool; the compute part when the pool
    /// uses this backend and its keys are valid.
    pub(crate) fn parse_pool(self, keys: &mut PoolKeys<'_>, role: Role) -> Option<Compute> {
        match self {
            Backend::Aci => aci::parse_pool(keys, role).map(Compute::Aci),
            Backend::Batch => batch::parse_pool(keys, role).map(Compute::Batch),
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
        }
    }
}

/// Settings the pools need but the environment lacks, each named: asked of every backend
/// that at least one enabled pool uses.
#[must_use]
pub fn azure_setting_problems(settings: &Settings, pools: &PoolsConfig) -> Vec<ConfigProblem> {
    let mut problems: Vec<ConfigProblem> = Backend::ALL
        .into_iter()
        .flat_map(|kind| {
            let of_kind: Vec<&Pool> = pools.pools.iter().filter(|p| p.backend() == kind).map(AsRef::as_ref).collect();
            if of_kind.iter().any(|p| p.enabled) { kind.required_settings(settings, &of_kind) } else { Vec::new() }
        })
        .collect();
    // Placements without their own subscription_id take AZURE_SUBSCRIPTION_ID's: only now
    // is their subnet's subscription comparable (those with one were checked on parsing).
    problems.extend(crate::config::placement_subnet_problems(
        pools.pools.iter().map(AsRef::as_ref),
        settings.azure.subscription_id.as_deref(),
    ));
    problems
}

/// A pool's compute part: the settings of its backend, parsed and validated by that
/// backend's module.
#[derive(Debug, Clone, PartialEq)]
pub enum Compute {
    Aci(AciPool),
    Batch(BatchPool),
}

impl Compute {
    #[must_use]
    pub fn backend(&self) -> Backend {
        match self {
            Compute::Aci(_) => Backend::Aci,
            Compute::Batch(_) => Backend::Batch,
        }
    }

    /// The body the real backend would send for `request` (what the dry-run records),
    /// built by the same code, secrets not yet redacted.
    #[must_use]
    pub fn request_body(&self, pool: &Pool, request: &ComputeRequest) -> Value {
        match self {
            Compute::Aci(a) => aci::dry_run_body(pool, a, request),
            Compute::Batch(b) => batch::batch_task_body(pool, b, request),
        }
    }

    /// Pools with the same shared listing see each other's compute in `list` (Batch tasks
    /// of one Batch pool's job): reconcile acts on it once. `None`: the listing is the
    /// pool's own.
    #[must_use]
    pub fn shared_listing(&self) -> Option<&str> {
        match self {
            Compute::Aci(_) => None,
            Compute::Batch(b) => Some(&b.batch_pool_id),
        }
    }

    /// How long reconcile keeps a finished compute before deleting it.
    #[must_use]
    pub fn finished_retention(&self) -> Duration {
        match self {
            Compute::Aci(_) => Duration::ZERO,
            Compute::Batch(_) => batch::FINISHED_TASK_RETENTION,
        }
    }

    /// What a create quota is counted per, besides the backend: ACI's per region (with
    /// placements, their set: the backend pauses each placement itself, and the
    /// provisioner's gate closes only when all are paused), a Batch account's for the account.
    #[must_use]
    pub fn quota_scope(&self) -> String {
        match self {
            Compute::Aci(a) if !a.placements.is_empty() => a
                .placements
                .iter()
                .map(|p| format!("{}/{}", p.subscription_id.as_deref().unwrap_or_default(), p.location))
                .collect::<Vec<_>>()
                .join(","),
            Compute::Aci(a) => a.location.clone().unwrap_or_default(),
            Compute::Batch(_) => String::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
