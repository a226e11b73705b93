//! Local fakes of the Azure services the backends call, for tests (feature `azure-fakes`):
//!
//! - [`identity`]: the managed identity endpoint, and [`azure_test!`](crate::azure_test),
//!   which runs a test in a child process pointed at it (the real `azure_identity` path);
//! - [`arm::ArmFake`]: ARM's container groups and virtual machines over any subscriptions
//!   and resource groups, with what the VM lane's `doctor` reads (permissions, images);
//! - [`batch::BatchFake`]: a Batch account's jobs and tasks (Entra ID or Shared Key);
//! - [`blob::BlobFake`]: the Function App's Blob storage (the idle runners' demand log).
//!
//! ARM and Batch share one core ([`core`]): each request recorded as received, its
//! credential and `api-version` checked, its body checked against Microsoft's model
//! ([`Schema`], as Azure would refuse it), and scripted answers: [`FakeServer::answer_next`]
//! for the next request, [`FakeServer::refuse`] for every matching one. Beside them, the
//! pools and requests the backend tests share.

pub mod arm;
pub mod batch;
pub mod blob;
pub mod core;
pub mod identity;

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::Value;

pub use self::core::{Canned, Credential, FakeServer, Seen};
use crate::azure::aci::{AciBackend, AciPool};
use crate::azure::batch::{BatchBackend, BatchPool};
use crate::azure::credential::{AzureCredential, CredentialKind};
use crate::azure::vm::{VmBackend, VmPool};
use crate::compute::{ComputeRequest, EnvValue, JobInfo, ProvisionError, Purpose};
use crate::config::{Compute, Pool, PoolsConfig, Settings};
use crate::secret::Secret;

/// `AZURE_SUBSCRIPTION_ID` of [`settings`].
pub const SUBSCRIPTION: &str = "00000000-0000-0000-0000-000000000000";
/// The token resource of the Batch data plane (for [`identity::token_for`]).
pub const BATCH_RESOURCE: &str = "https://batch.core.windows.net/";
/// The JIT configuration of [`jit_request`]: nothing may print it.
pub const JIT_SECRET: &str = "JIT-SECRET-eyJhbGciOiJub25lIn0-do-not-leak";
/// A user-assigned identity's client id.
pub const USER_ASSIGNED_CLIENT_ID: &str = "11111111-2222-3333-4444-555555555555";
/// `image_pull_identity` of the pools in `tests/fixtures/pools/azure.toml`.
pub const PULL_ID: &str =
    "/subscriptions/s/resourceGroups/id/providers/Microsoft.ManagedIdentity/userAssignedIdentities/acr-pull";
/// `identity` (the jobs' Azure identity) of pool `linux-aci`.
pub const JOBS_ID: &str =
    "/subscriptions/s/resourceGroups/id/providers/Microsoft.ManagedIdentity/userAssignedIdentities/jobs";
/// `subnet_id` of pool `linux-aci`.
pub const SUBNET: &str =
    "/subscriptions/s/resourceGroups/net/providers/Microsoft.Network/virtualNetworks/v/subnets/runners";

/// A request body model: Microsoft's SDK model as JSON Schema (`tests/fixtures/azure-schemas`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schema {
    /// ACI container group PUT.
    ContainerGroup,
    /// Batch add-job.
    BatchJob,
    /// Batch add-task.
    BatchTask,
    /// `Microsoft.Compute/virtualMachines` PUT.
    VirtualMachine,
}

impl Schema {
    fn validator(self) -> &'static jsonschema::Validator {
        static VALIDATORS: [OnceLock<jsonschema::Validator>; 4] =
            [OnceLock::new(), OnceLock::new(), OnceLock::new(), OnceLock::new()];
        let (i, file) = match self {
            Schema::ContainerGroup => (0, "aci-container-group.schema.json"),
            Schema::BatchJob => (1, "batch-job.schema.json"),
            Schema::BatchTask => (2, "batch-task.schema.json"),
            Schema::VirtualMachine => (3, "compute-virtual-machine.schema.json"),
        };
        VALIDATORS[i].get_or_init(|| {
            let path = format!("{}/tests/fixtures/azure-schemas/{file}", env!("CARGO_MANIFEST_DIR"));
            let schema: Value = serde_json::from_str(&std::fs::read_to_string(path).expect("schema")).expect("json");
            jsonschema::draft202012::new(&schema).expect("valid schema")
        })
    }

    /// What the model refuses in `body`, empty when Azure would accept it.
    #[must_use]
    pub fn errors(self, body: &Value) -> Vec<String> {
        self.validator().iter_errors(body).map(|e| format!("{} at {}", e, e.instance_path)).collect()
    }
}

/// `tests/fixtures/pools/azure.toml`: every ACI, Batch and VM pool shape the backend tests use.
pub const POOLS: &str = include_str!("../../../tests/fixtures/pools/azure.toml");

/// The pools of [`POOLS`].
///
/// # Panics
/// The file does not parse.
#[must_use]
pub fn pools() -> PoolsConfig {
    PoolsConfig::parse(POOLS).expect("azure test pools")
}

/// One pool of [`pools`].
///
/// # Panics
/// No such pool.
#[must_use]
pub fn pool(name: &str) -> Pool {
    pools().pool(name).map(|p| (**p).clone()).expect("pool")
}

/// The ACI part of an ACI pool.
///
/// # Panics
/// Another kind of pool.
#[must_use]
pub fn aci_part(pool: &Pool) -> &AciPool {
    match &pool.compute {
        Compute::Aci(a) => a,
        other => panic!("{} is a {other:?} pool", pool.name),
    }
}

/// The Batch part of a Batch pool.
///
/// # Panics
/// Another kind of pool.
#[must_use]
pub fn batch_part(pool: &Pool) -> &BatchPool {
    match &pool.compute {
        Compute::Batch(b) => b,
        other => panic!("{} is a {other:?} pool", pool.name),
    }
}

/// The VM part of a VM pool.
///
/// # Panics
/// Another kind of pool.
#[must_use]
pub fn vm_part(pool: &Pool) -> &VmPool {
    match &pool.compute {
        Compute::Vm(v) => v,
        other => panic!("{} is a {other:?} pool", pool.name),
    }
}

/// A JIT-mode request for job `job_id` of `octo-org/api` (run 9001, runner id 4242), with
/// [`JIT_SECRET`] and one plain variable.
#[must_use]
pub fn jit_request(pool: &Pool, job_id: u64) -> ComputeRequest {
    ComputeRequest {
        name: pool.runner_name(job_id),
        purpose: Purpose::Job(JobInfo {
            job_id,
            run_id: 9001,
            repository: "octo-org/api".into(),
            job_created_at: Some("2026-11-23T15:00:00Z".into()),
        }),
        runner_id: Some(4242),
        env: vec![
            ("RUNNER_JITCONFIG".into(), EnvValue::Secret(Secret::new(JIT_SECRET))),
            ("CUSTOM".into(), EnvValue::Plain("plain-value".into())),
        ],
    }
}

/// [`jit_request`] with the legacy registration mode's variables.
#[must_use]
pub fn registration_request(pool: &Pool, job_id: u64) -> ComputeRequest {
    let mut r = jit_request(pool, job_id);
    r.runner_id = None;
    r.env = vec![
        ("RUNNER_URL".into(), EnvValue::Plain("https://github.com/octo-org".into())),
        ("RUNNER_TOKEN".into(), EnvValue::Secret(Secret::new(JIT_SECRET))),
        ("RUNNER_NAME".into(), EnvValue::Plain(r.name.clone())),
        ("RUNNER_LABELS".into(), EnvValue::Plain(pool.labels.join(","))),
        ("RUNNER_GROUP".into(), EnvValue::Plain("1".into())),
        ("RUNNER_EPHEMERAL".into(), EnvValue::Plain("1".into())),
    ];
    r
}

/// Settings with ARM at `arm`, the Batch account at `batch`, [`SUBSCRIPTION`], and `extra`.
///
/// # Panics
/// The settings do not load.
#[must_use]
pub fn settings(arm: &str, batch: &str, extra: &[(&str, &str)]) -> Settings {
    let mut env: BTreeMap<String, String> = [
        ("GITHUB_WEBHOOK_SECRET", "whsec"),
        ("AZURE_SUBSCRIPTION_ID", SUBSCRIPTION),
        ("AZURE_RESOURCE_MANAGER_URL", arm),
        ("AZURE_BATCH_ACCOUNT_URL", batch),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    for (k, v) in extra {
        env.insert((*k).to_owned(), (*v).to_owned());
    }
    Settings::from_lookup(|k| env.get(k).cloned()).expect("settings")
}

/// The credential of `settings`: managed identity inside an [`azure_test!`](crate::azure_test).
///
/// # Panics
/// It is not the managed identity (not in an `azure_test!` child).
#[must_use]
pub fn credential(settings: &Settings) -> AzureCredential {
    let c = AzureCredential::from_settings(&settings.azure).expect("credential");
    assert_eq!(c.kind(), CredentialKind::ManagedIdentity, "IDENTITY_ENDPOINT selects managed identity");
    c
}

/// The ARM fake, wanting the managed identity's token for its own URL (the ARM audience
/// follows `AZURE_RESOURCE_MANAGER_URL`).
pub async fn start_arm() -> arm::ArmFake {
    FakeServer::start(|url| Credential::Bearer(identity::token_for(url))).await
}

/// The Batch fake, wanting the managed identity's Batch token, or `shared_key` signatures.
pub async fn start_batch(shared_key: Option<crate::azure::credential::SharedKey>) -> batch::BatchFake {
    FakeServer::start(|_| match shared_key {
        Some(key) => Credential::SharedKey(key),
        None => Credential::Bearer(identity::token_for(BATCH_RESOURCE)),
    })
    .await
}

/// The ACI backend against ARM at `arm`, with `extra` settings.
#[must_use]
pub fn aci(arm: &str, extra: &[(&str, &str)]) -> AciBackend {
    let s = settings(arm, "http://127.0.0.1:9", extra);
    AciBackend::new(&s, &credential(&s))
}

/// The Batch backend against the account at `url`, with `extra` settings.
///
/// # Panics
/// The backend cannot be built (a bad account key).
#[must_use]
pub fn batch(url: &str, extra: &[(&str, &str)]) -> BatchBackend {
    let s = settings("http://127.0.0.1:9", url, extra);
    BatchBackend::new(&s, &credential(&s)).expect("batch backend")
}

/// The VM backend against ARM at `arm`, with `extra` settings.
#[must_use]
pub fn vm(arm: &str, extra: &[(&str, &str)]) -> VmBackend {
    let s = settings(arm, "http://127.0.0.1:9", extra);
    VmBackend::new(&s, &credential(&s))
}

/// The `Retry-After` an error carries, if any.
#[must_use]
pub fn retry_after_of(e: &ProvisionError) -> Option<Duration> {
    match e {
        ProvisionError::Retryable { retry_after, .. } => *retry_after,
        ProvisionError::Deferred { retry_after, .. } => Some(*retry_after),
        ProvisionError::Permanent { .. } => None,
    }
}
