//! Settings from the environment and the pools file (`runners.toml`), validated so that
//! every problem is reported at once with the key it concerns.
//!
//! - [`settings`]: the environment (Function App settings) to [`Settings`];
//! - [`pools_file`]: the TOML pools file to the model, every problem with its key;
//! - [`model`]: pools, the `[github]` section and the names they use;
//! - `idle_keys`: a pool's `idle_*` keys to its [`crate::idle::IdlePolicy`];
//! - [`azure_names`]: subscription ids and resource group names, checked before they reach a URL.

use std::fmt;

pub mod azure_names;
mod idle_keys;
mod model;
mod pools_file;
mod settings;

/// The `idle_*` pool keys (each may also sit in `[defaults]`).
pub use idle_keys::POOL_KEYS as IDLE_POOL_KEYS;
pub use model::*;
pub use pools_file::placement_subnet_problems;
pub(crate) use pools_file::{PoolKeys, Role};
pub use settings::*;

/// The pools file used when neither `RUNNER_DISPATCH_CONFIG_TOML` nor a file is given
/// to `demo`: three pools (Linux on ACI, Windows on Batch, Docker on a VM) for the bundled
/// sample webhooks.
pub const EMBEDDED_DEMO_CONFIG: &str = include_str!("../../runners.example.toml");

/// One problem found in the settings or the pools file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// `pools[2].labels`, `github.allowed_owners`, or a setting name such as `GITHUB_WEBHOOK_SECRET`.
    pub key: String,
    pub message: String,
    /// Warnings are printed but do not fail `check-config`.
    pub warning: bool,
}

impl ConfigProblem {
    /// A setting the pools need and the environment lacks.
    #[must_use]
    pub fn required(key: &str, why: &str) -> Self {
        Self { key: key.into(), message: format!("required: {why}"), warning: false }
    }
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = if self.warning { "warning" } else { "error" };
        write!(f, "{kind}: {}: {}", self.key, self.message)
    }
}

/// Every problem found; `Display` prints one per line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigProblem>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}
