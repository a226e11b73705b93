//! The pools file's model: pools (a common part and a compute part per backend), the
//! `[github]` section, and the names runners get.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::ConfigProblem;
// The one declared cycle of the module graph: a pool holds its backend's part, and the
// backends take a pool (README, "Module graph"; tests/module_graph.rs).
pub use crate::backends::{Backend, Compute};
use crate::glob::Glob;

/// Where runners register with GitHub.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunnerScope {
    Org,
    Repo,
    Enterprise,
}

/// How the runner gets its credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenMode {
    /// One JIT config per runner: bound to one name, usable once.
    Jit,
    /// A registration token (legacy, weaker: it can register any number of runners).
    Registration,
}

/// When provisioning asks GitHub whether the job still waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckJobQueued {
    Stale,
    Always,
    Never,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Os {
    Linux,
    Windows,
}

impl Os {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Os::Linux => "linux",
            Os::Windows => "windows",
        }
    }
}

/// Default of `github.jit_per_minute`: about what GitHub allows an App for JIT runner configurations.
pub const DEFAULT_JIT_PER_MINUTE: u32 = 180;

/// `[github]`: who may get runners, and how runners register.
#[derive(Debug, Clone)]
pub struct GitHubConfig {
    pub runner_scope: RunnerScope,
    /// Enterprise slug, required when `runner_scope = "enterprise"`.
    pub enterprise: Option<String>,
    pub token_mode: TokenMode,
    /// Lowercased owner logins.
    pub allowed_owners: Vec<String>,
    pub allowed_repositories: Vec<Glob>,
    pub allow_public_repositories: bool,
    /// When non-empty, App deliveries from other installations get 403.
    pub allowed_installation_ids: Vec<u64>,
    pub check_job_queued: CheckJobQueued,
    /// Client-side pace of JIT configuration calls (GitHub allows about 180 a minute per
    /// App); 0 turns the pacing off (pauses learned from `Retry-After` still apply).
    pub jit_per_minute: u32,
}

impl GitHubConfig {
    /// Whether the allowlists admit a job of `repository` (`owner/name`) owned by `owner`:
    /// the owner and the repository globs. (Public repositories are checked where the
    /// payload says so.)
    ///
    /// # Errors
    /// Which allowlist refuses, in words.
    pub fn admits(&self, owner: &str, repository: &str) -> Result<(), String> {
        if !self.allowed_owners.contains(&owner.to_ascii_lowercase()) {
            return Err(format!("owner {owner} is not in github.allowed_owners"));
        }
        if !self.allowed_repositories.is_empty() && !self.allowed_repositories.iter().any(|g| g.matches(repository)) {
            return Err(format!("repository {repository} is not in github.allowed_repositories"));
        }
        Ok(())
    }

    /// Whether `github.allowed_installation_ids` admits a delivery through `installation_id`.
    ///
    /// # Errors
    /// Which installation is refused, or that there is none while the list is set.
    pub fn admits_installation(&self, installation_id: Option<u64>) -> Result<(), String> {
        if !self.allowed_installation_ids.is_empty() {
            match installation_id {
                Some(id) if self.allowed_installation_ids.contains(&id) => {}
                Some(id) => return Err(format!("installation {id} is not in github.allowed_installation_ids")),
                None => return Err("delivery has no installation and github.allowed_installation_ids is set".into()),
            }
        }
        Ok(())
    }
}

/// Names of the environment variables the runner container gets; a pool may rename
/// them for third-party images (`[pools.env_names]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunnerEnvNames {
    pub jitconfig: String,
    pub url: String,
    pub token: String,
    pub name: String,
    pub labels: String,
    pub group: String,
    pub ephemeral: String,
}

impl Default for RunnerEnvNames {
    fn default() -> Self {
        Self {
            jitconfig: "RUNNER_JITCONFIG".into(),
            url: "RUNNER_URL".into(),
            token: "RUNNER_TOKEN".into(),
            name: "RUNNER_NAME".into(),
            labels: "RUNNER_LABELS".into(),
            group: "RUNNER_GROUP".into(),
            ephemeral: "RUNNER_EPHEMERAL".into(),
        }
    }
}

/// One runner pool, with `[defaults]` already applied: what every backend reads, and the
/// compute part its backend parsed.
#[derive(Debug, Clone)]
pub struct Pool {
    pub name: String,
    /// Index in the file: the last tie-breaker.
    pub index: usize,
    pub os: Os,
    /// As written (the runner registers with these).
    pub labels: Vec<String>,
    /// Lowercased, for matching.
    pub labels_lower: Vec<String>,
    pub image: String,
    pub max_runners: Option<u32>,
    /// Pulls the image (ACR) on every backend.
    pub image_pull_identity: Option<String>,
    /// The Azure identity the pool's jobs get: common because the isolation rules (own
    /// runner group, shared identities) concern every pool that carries one.
    pub identity: Option<String>,
    pub repositories: Vec<Glob>,
    pub tags: BTreeMap<String, String>,
    pub env: BTreeMap<String, String>,
    pub env_names: RunnerEnvNames,
    pub enabled: bool,
    pub name_prefix: String,
    pub runner_group_id: Option<u64>,
    /// True when `runner_group_id` was set on the pool itself, not inherited.
    pub own_runner_group: bool,
    /// The runner group's name, for `config.sh --runnergroup` in registration mode.
    pub runner_group_name: String,
    pub runner_ttl: Duration,
    pub runner_boot_timeout: Duration,
    pub runner_idle_timeout: Duration,
    /// Idle runners kept ready (`idle_*` keys).
    pub idle: crate::idle::IdlePolicy,
    /// The backend and its own settings.
    pub compute: Compute,
}

impl Pool {
    /// The backend this pool's compute runs on.
    #[must_use]
    pub fn backend(&self) -> Backend {
        self.compute.backend()
    }

    /// The job id in one of this pool's runner names: exactly `<prefix>-<digits>` (ASCII
    /// digits only, no sign), else `None`.
    #[must_use]
    pub fn job_id_of(&self, runner_name: &str) -> Option<u64> {
        runner_name
            .strip_prefix(self.name_prefix.as_str())
            .and_then(|rest| rest.strip_prefix('-'))
            .and_then(parse_job_id)
    }

    /// What one of this pool's runner names is: the runner made for a job
    /// (`<prefix>-<job id>`) or an idle runner (`<prefix>-i-<8 hex>`); `None` for a name
    /// that is not this pool's.
    #[must_use]
    pub fn runner_kind(&self, runner_name: &str) -> Option<RunnerKind> {
        let rest = runner_name.strip_prefix(self.name_prefix.as_str())?.strip_prefix('-')?;
        if let Some(id) = parse_job_id(rest) {
            return Some(RunnerKind::Job(id));
        }
        let hex = rest.strip_prefix("i-")?;
        (hex.len() == IDLE_SUFFIX_LEN && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
            .then_some(RunnerKind::Idle)
    }

    /// `<prefix>-i-<8 hex>`: compute and runner name of an idle runner.
    #[must_use]
    pub fn idle_runner_name(&self, suffix: u32) -> String {
        format!("{}-i-{suffix:08x}", self.name_prefix)
    }

    /// What restricts who may use this pool, in the order of [`Restriction`]; empty: nobody
    /// is kept out. Its runners carry something a runner group must protect.
    #[must_use]
    pub fn restrictions(&self, github: &GitHubConfig) -> Vec<Restriction> {
        let subnet = match &self.compute {
            Compute::Aci(aci) if aci.subnet_id.is_some() => Some(Restriction::Subnet),
            Compute::Aci(aci) if aci.placements.iter().any(|p| p.subnet_id.is_some()) => {
                Some(Restriction::PlacementSubnet)
            }
            // A VM always sits in a subnet of yours (`subnet_id` is required).
            Compute::Vm(vm) if vm.places.subnet_id.is_some() => Some(Restriction::Subnet),
            Compute::Vm(_) => Some(Restriction::PlacementSubnet),
            _ => None,
        };
        [
            (!self.repositories.is_empty()).then_some(Restriction::Repositories),
            self.identity.is_some().then_some(Restriction::Identity),
            subnet,
            (!github.allowed_repositories.is_empty()).then_some(Restriction::AllowedRepositories),
            (!github.allowed_installation_ids.is_empty()).then_some(Restriction::AllowedInstallations),
        ]
        .into_iter()
        .flatten()
        .collect()
    }

    /// Whether the pool's runners may wait online before any job exists and carry
    /// something to protect: then its runner group must admit no more than it does.
    #[must_use]
    pub fn keeps_restricted_idle_runners(&self, github: &GitHubConfig) -> bool {
        self.idle.is_on() && !self.restrictions(github).is_empty()
    }

    /// `<prefix>-<job id>`: compute and runner name for a job.
    #[must_use]
    pub fn runner_name(&self, job_id: u64) -> String {
        format!("{}-{job_id}", self.name_prefix)
    }
}

/// What restricts who may use a pool (see [`Pool::restrictions`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restriction {
    /// `repositories`: the pool serves only these repositories.
    Repositories,
    /// `identity`: its jobs get an Azure identity.
    Identity,
    /// `subnet_id`: its runners sit in a private network.
    Subnet,
    /// A placement's `subnet_id`.
    PlacementSubnet,
    /// `github.allowed_repositories`: the deployment serves only these repositories.
    AllowedRepositories,
    /// `github.allowed_installation_ids`: the deployment serves only these installations.
    AllowedInstallations,
}

impl Restriction {
    /// The key that sets it: a pool key (under `pools[i].`) or a `github.` one.
    #[must_use]
    pub fn key(self) -> &'static str {
        match self {
            Restriction::Repositories => "repositories",
            Restriction::Identity => "identity",
            Restriction::Subnet => "subnet_id",
            Restriction::PlacementSubnet => "placements",
            Restriction::AllowedRepositories => "github.allowed_repositories",
            Restriction::AllowedInstallations => "github.allowed_installation_ids",
        }
    }

    /// Whether it is set on the pool (else on the deployment, in `[github]`).
    #[must_use]
    pub fn on_pool(self) -> bool {
        !matches!(self, Restriction::AllowedRepositories | Restriction::AllowedInstallations)
    }
}

/// GitHub's Default runner group: every organisation has it, shared by default.
pub const DEFAULT_RUNNER_GROUP_ID: u64 = 1;

/// The hex digits after `<prefix>-i-`.
pub const IDLE_SUFFIX_LEN: usize = 8;

/// What a runner of ours was made for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunnerKind {
    /// `<prefix>-<job id>`: made for a queued job (it may take another one).
    Job(u64),
    /// `<prefix>-i-<8 hex>`: made by reconcile as idle capacity.
    Idle,
}

/// The whole pools file.
#[derive(Debug, Clone)]
pub struct PoolsConfig {
    pub github: GitHubConfig,
    pub pools: Vec<Arc<Pool>>,
    /// Non-fatal findings (overlaps, shared identities), for `check-config`.
    pub warnings: Vec<ConfigProblem>,
}

impl PoolsConfig {
    #[must_use]
    pub fn pool(&self, name: &str) -> Option<&Arc<Pool>> {
        self.pools.iter().find(|p| p.name == name)
    }

    /// All distinct name prefixes: a runner or compute name with one of them is ours.
    #[must_use]
    pub fn name_prefixes(&self) -> Vec<String> {
        let mut v: Vec<String> = self.pools.iter().map(|p| p.name_prefix.clone()).collect();
        v.sort();
        v.dedup();
        v
    }

    /// Whether a runner name is one of ours: a job's runner or an idle one, of any pool.
    #[must_use]
    pub fn is_runner_name(&self, runner_name: &str) -> bool {
        self.pools.iter().any(|p| p.runner_kind(runner_name).is_some())
    }

    /// The job id in a runner name of any pool, when the name is exactly `<prefix>-<digits>`.
    #[must_use]
    pub fn job_id_of_runner(&self, runner_name: &str) -> Option<u64> {
        self.pools.iter().find_map(|p| p.job_id_of(runner_name))
    }
}

/// The job id of a runner name's tail: 1 to 20 ASCII digits and nothing else (`+12`,
/// ` 12` or `12x` are someone else's names).
#[must_use]
pub fn parse_job_id(digits: &str) -> Option<u64> {
    if digits.is_empty() || digits.len() > 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}
