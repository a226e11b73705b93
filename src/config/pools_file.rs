//! The pools file: TOML to the model, walking the tree by hand so that every problem is
//! reported at once, each naming its key (`pools[2].labels`, `defaults.runner_ttl`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use toml::{Table, Value};

use super::model::*;
use super::{ConfigErrors, ConfigProblem};
use crate::duration::parse_duration;
use crate::glob::Glob;

impl PoolsConfig {
    /// Parses and validates a pools file, collecting every problem.
    ///
    /// # Errors
    /// All problems found (warnings are returned in `warnings` on success).
    pub fn parse(text: &str) -> Result<Self, ConfigErrors> {
        let table: Table = match text.parse::<Table>() {
            Ok(t) => t,
            Err(e) => {
                let msg = e.message().to_owned();
                let key = e
                    .span()
                    .map(|s| {
                        let line = text[..s.start.min(text.len())].matches('\n').count() + 1;
                        format!("line {line}")
                    })
                    .unwrap_or_else(|| "runners.toml".into());
                return Err(ConfigErrors(vec![ConfigProblem {
                    key,
                    message: format!("not valid TOML: {msg}"),
                    warning: false,
                }]));
            }
        };
        let mut cx = Walker::default();
        cx.unknown_keys(&table, "", &["github", "defaults", "pools"]);
        let github = cx.github(table.get("github"));
        let empty = Table::new();
        let defaults = match table.get("defaults") {
            None => &empty,
            Some(Value::Table(t)) => {
                cx.unknown_keys(t, "defaults", &pool_keys());
                for k in ["name", "labels"] {
                    if t.contains_key(k) {
                        cx.error(format!("defaults.{k}"), "is per pool; set it in each [[pools]]");
                    }
                }
                t
            }
            Some(_) => {
                cx.error("defaults", "must be a table ([defaults])");
                &empty
            }
        };
        let mut pools = Vec::new();
        match table.get("pools") {
            None => cx.error("pools", "no [[pools]] defined; add at least one"),
            Some(Value::Array(items)) => {
                if items.is_empty() {
                    cx.error("pools", "no [[pools]] defined; add at least one");
                }
                for (i, item) in items.iter().enumerate() {
                    let path = format!("pools[{i}]");
                    match item {
                        Value::Table(t) => {
                            if let Some(p) = cx.pool(t, defaults, &path, i, &github) {
                                pools.push(p);
                            }
                        }
                        _ => cx.error(path, "must be a table ([[pools]])"),
                    }
                }
            }
            Some(_) => cx.error("pools", "must be an array of tables ([[pools]])"),
        }
        cx.cross_checks(&pools, &github);
        let (errors, warnings): (Vec<_>, Vec<_>) = cx.problems.into_iter().partition(|p| !p.warning);
        if !errors.is_empty() {
            let mut all = errors;
            all.extend(warnings);
            return Err(ConfigErrors(all));
        }
        Ok(Self { github, pools: pools.into_iter().map(Arc::new).collect(), warnings })
    }
}

/// Placements whose `subnet_id` lies in another subscription than the placement's own: Azure
/// Container Instances puts a container group only in a subnet of its own subscription
/// (Microsoft's ACI virtual network page), so every create there would fail. A placement's
/// subscription is its `subscription_id`, else `default_subscription` (`AZURE_SUBSCRIPTION_ID`,
/// as `sites` resolves it); `None` checks only the placements that name theirs (the pools file
/// alone). Keys are `pools[i].placements[j].subnet_id`.
#[must_use]
pub fn placement_subnet_problems<'a>(
    pools: impl IntoIterator<Item = &'a Pool>,
    default_subscription: Option<&str>,
) -> Vec<ConfigProblem> {
    let mut out = Vec::new();
    for pool in pools {
        let placements = match &pool.compute {
            Compute::Aci(aci) => &aci.placements,
            Compute::Vm(vm) => &vm.places.placements,
            Compute::Batch(_) => continue,
        };
        for (j, p) in placements.iter().enumerate() {
            let (Some(subnet), Some(own)) = (&p.subnet_id, p.subscription_id.as_deref().or(default_subscription))
            else {
                continue;
            };
            // /subscriptions/{subscription}/resourceGroups/...: parsing checked the prefix.
            let theirs = subnet.split('/').nth(2).unwrap_or_default();
            if !theirs.eq_ignore_ascii_case(own) {
                out.push(ConfigProblem {
                    key: format!("pools[{}].placements[{j}].subnet_id", pool.index),
                    message: format!(
                        "is in subscription {theirs:?}, but the placement's runners go to subscription {own:?}; a container group or a VM's network interface needs its subnet in the same subscription"
                    ),
                    warning: false,
                });
            }
        }
    }
    out
}

/// The keys every pool has, whatever its backend.
const COMMON_POOL_KEYS: &[&str] = &[
    "name",
    "backend",
    "os",
    "labels",
    "image",
    "max_runners",
    "image_pull_identity",
    "identity",
    "repositories",
    "tags",
    "env",
    "env_names",
    "enabled",
    "name_prefix",
    "runner_group_id",
    "runner_group_name",
    "runner_ttl",
    "runner_boot_timeout",
    "runner_idle_timeout",
];

/// Every key a pool (or `[defaults]`) may set: the common ones, then each backend's.
fn pool_keys() -> Vec<&'static str> {
    let mut keys = COMMON_POOL_KEYS.to_vec();
    keys.extend_from_slice(super::idle_keys::POOL_KEYS);
    for b in Backend::ALL {
        keys.extend_from_slice(b.pool_keys());
    }
    keys
}

const GITHUB_KEYS: &[&str] = &[
    "runner_scope",
    "enterprise",
    "token_mode",
    "allowed_owners",
    "allowed_repositories",
    "allow_public_repositories",
    "allowed_installation_ids",
    "check_job_queued",
    "jit_per_minute",
];

/// How a backend's parser stands to one pool: its own backend, another's, or unknown
/// (`backend` missing or invalid). Its keys are read and checked on every pool (they may
/// come from `[defaults]`, shared by pools of every backend), so every problem is reported
/// at once; its compute part is kept only when chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Chosen,
    Other,
    Unknown,
}

/// One pool's keys, with `[defaults]` behind them: a key on the pool wins, and the path
/// reported with a problem says which was read. Backends read their own keys through it.
pub(crate) struct PoolKeys<'a> {
    walker: &'a mut Walker,
    table: &'a Table,
    defaults: &'a Table,
    path: &'a str,
    /// The `[github]` section (token mode, runner scope).
    pub github: &'a GitHubConfig,
    /// The common part's `max_runners`, when valid.
    pub max_runners: Option<u32>,
}

impl<'a> PoolKeys<'a> {
    /// The value as written (pool first, then `[defaults]`) and the key to report.
    pub fn raw(&self, k: &str) -> (Option<&'a Value>, String) {
        self.get(k)
    }

    pub fn unsigned(&mut self, k: &str) -> Option<u64> {
        let (v, p) = self.get(k);
        self.walker.unsigned(v, &p)
    }

    pub fn strings(&mut self, k: &str) -> Option<Vec<String>> {
        let (v, p) = self.get(k);
        self.walker.strings(v, &p)
    }

    fn get(&self, k: &str) -> (Option<&'a Value>, String) {
        match self.table.get(k) {
            Some(v) => (Some(v), join(self.path, k)),
            None => (self.defaults.get(k), join("defaults", k)),
        }
    }

    /// Where `k` is reported: `pools[i].k` when set on the pool, else `defaults.k`.
    pub fn key(&self, k: &str) -> String {
        self.get(k).1
    }

    /// `pools[i].k` always: for rules about the pool itself, wherever the value came from.
    pub fn own_key(&self, k: &str) -> String {
        join(self.path, k)
    }

    pub fn string(&mut self, k: &str) -> Option<String> {
        let (v, p) = self.get(k);
        self.walker.string(v, &p)
    }

    pub fn boolean(&mut self, k: &str) -> Option<bool> {
        let (v, p) = self.get(k);
        self.walker.boolean(v, &p)
    }

    pub fn number(&mut self, k: &str) -> Option<f64> {
        let (v, p) = self.get(k);
        self.walker.number(v, &p)
    }

    /// A string that must be a full Azure resource id.
    pub fn resource_id(&mut self, k: &str) -> Option<String> {
        let id = self.string(k)?;
        if !id.starts_with("/subscriptions/") {
            self.error(self.key(k), "must be a full Azure resource id (/subscriptions/...)");
        }
        Some(id)
    }

    /// A string that must be a resource group name: it is a segment of ARM URLs.
    pub fn resource_group(&mut self, k: &str) -> Option<String> {
        let name = self.string(k)?;
        if let Err(e) = super::azure_names::check_resource_group(&name) {
            self.error(self.key(k), e);
            return None;
        }
        Some(name)
    }

    pub fn error(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.walker.error(key, message);
    }

    pub fn warn(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.walker.warn(key, message);
    }
}

impl PoolKeys<'_> {
    pub fn duration(&mut self, k: &str) -> Option<Duration> {
        let (v, p) = self.get(k);
        self.walker.duration(v, &p)
    }

    fn pool_name(&mut self) -> String {
        let key = self.own_key("name");
        match self.walker.string(self.table.get("name"), &key) {
            Some(n) if !n.trim().is_empty() => n,
            Some(_) => {
                self.error(key, "must not be empty");
                String::new()
            }
            None => {
                if !self.table.contains_key("name") {
                    self.error(key, "required: a unique name for the pool");
                }
                String::new()
            }
        }
    }

    fn pool_labels(&mut self) -> Vec<String> {
        let key = self.own_key("labels");
        let labels = self.walker.strings(self.table.get("labels"), &key).unwrap_or_default();
        if labels.is_empty() {
            self.error(&key, "required: the labels jobs use to reach this pool (1 to 100)");
        } else if labels.len() > 100 {
            self.error(&key, "GitHub allows at most 100 labels per runner");
        }
        for (i, l) in labels.iter().enumerate() {
            if l.trim().is_empty() || l.contains(',') {
                self.error(format!("{key}[{i}]"), "a label must be non-empty and contain no comma");
            }
        }
        labels
    }

    fn max_runners(&mut self) -> Option<u32> {
        let (v, p) = self.get("max_runners");
        self.walker.unsigned(v, &p).and_then(|n| {
            if n == 0 || n > u64::from(u32::MAX) {
                self.error(p, "must be between 1 and 4294967295 (leave it out for no cap)");
                None
            } else {
                u32::try_from(n).ok()
            }
        })
    }

    /// A table of strings; the pool's extends `[defaults]`' (the pool wins on a clash).
    fn merged_map(&mut self, k: &str) -> BTreeMap<String, String> {
        let (v, p) = self.get(k);
        let mut map = self.walker.string_map(v, &p).unwrap_or_default();
        if let Some(Value::Table(dt)) = self.defaults.get(k) {
            if self.table.contains_key(k) {
                let base =
                    self.walker.string_map(Some(&Value::Table(dt.clone())), &join("defaults", k)).unwrap_or_default();
                for (k, v) in base {
                    map.entry(k).or_insert(v);
                }
            }
        }
        map
    }

    fn tags_and_env(&mut self) -> (BTreeMap<String, String>, BTreeMap<String, String>, RunnerEnvNames) {
        let tags = self.merged_map("tags");
        for k in tags.keys() {
            if k.to_ascii_lowercase().starts_with("runner-dispatch") {
                self.error(
                    format!("{}.{k}", self.key("tags")),
                    "tags starting with runner-dispatch are set by runner-dispatch itself",
                );
            }
        }
        let env = self.merged_map("env");
        let env_names = self.walker.env_names(self.get("env_names"));
        for k in env.keys() {
            if [&env_names.jitconfig, &env_names.token, &env_names.url, &env_names.name].contains(&k) {
                self.error(
                    format!("{}.{k}", self.key("env")),
                    "is set by runner-dispatch; it cannot be overridden in env",
                );
            }
        }
        (tags, env, env_names)
    }
}

/// Collects problems while reading the TOML tree by hand, so one bad key does not hide the next.
#[derive(Default)]
struct Walker {
    problems: Vec<ConfigProblem>,
}

fn join(path: &str, key: &str) -> String {
    // A key that is not a bare TOML key (empty, dotted, spaced) is shown quoted, as it is
    // written in TOML, so every problem names a key (`[""]` once gave an empty one).
    let bare = !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    let key = if bare { key.to_owned() } else { format!("{key:?}") };
    if path.is_empty() { key } else { format!("{path}.{key}") }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::String(_) => "a string",
        Value::Integer(_) => "an integer",
        Value::Float(_) => "a number",
        Value::Boolean(_) => "a boolean",
        Value::Datetime(_) => "a date",
        Value::Array(_) => "an array",
        Value::Table(_) => "a table",
    }
}

impl Walker {
    /// Records a problem once: backends that share keys (ACI and VM placements) both check them.
    fn error(&mut self, key: impl Into<String>, message: impl Into<String>) {
        let problem = ConfigProblem { key: key.into(), message: message.into(), warning: false };
        if !self.problems.contains(&problem) {
            self.problems.push(problem);
        }
    }

    fn warn(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.problems.push(ConfigProblem { key: key.into(), message: message.into(), warning: true });
    }

    fn unknown_keys(&mut self, t: &Table, path: &str, known: &[&str]) {
        for k in t.keys() {
            if !known.contains(&k.as_str()) {
                self.error(join(path, k), format!("unknown key; expected one of: {}", known.join(", ")));
            }
        }
    }

    fn string(&mut self, v: Option<&Value>, key: &str) -> Option<String> {
        match v? {
            Value::String(s) => Some(s.clone()),
            other => {
                self.error(key, format!("must be a string, found {}", type_name(other)));
                None
            }
        }
    }

    fn boolean(&mut self, v: Option<&Value>, key: &str) -> Option<bool> {
        match v? {
            Value::Boolean(b) => Some(*b),
            other => {
                self.error(key, format!("must be true or false, found {}", type_name(other)));
                None
            }
        }
    }

    fn number(&mut self, v: Option<&Value>, key: &str) -> Option<f64> {
        match v? {
            #[allow(clippy::cast_precision_loss)]
            Value::Integer(i) => Some(*i as f64),
            Value::Float(f) => Some(*f),
            other => {
                self.error(key, format!("must be a number, found {}", type_name(other)));
                None
            }
        }
    }

    fn unsigned(&mut self, v: Option<&Value>, key: &str) -> Option<u64> {
        match v? {
            Value::Integer(i) if *i >= 0 => Some(i.cast_unsigned()),
            Value::Integer(_) => {
                self.error(key, "must not be negative");
                None
            }
            other => {
                self.error(key, format!("must be a whole number, found {}", type_name(other)));
                None
            }
        }
    }

    fn strings(&mut self, v: Option<&Value>, key: &str) -> Option<Vec<String>> {
        match v? {
            Value::Array(items) => {
                let mut out = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    match item {
                        Value::String(s) => out.push(s.clone()),
                        other => {
                            self.error(format!("{key}[{i}]"), format!("must be a string, found {}", type_name(other)))
                        }
                    }
                }
                Some(out)
            }
            other => {
                self.error(key, format!("must be an array of strings, found {}", type_name(other)));
                None
            }
        }
    }

    fn string_map(&mut self, v: Option<&Value>, key: &str) -> Option<BTreeMap<String, String>> {
        match v? {
            Value::Table(t) => {
                let mut out = BTreeMap::new();
                for (k, item) in t {
                    match item {
                        Value::String(s) => {
                            out.insert(k.clone(), s.clone());
                        }
                        other => self.error(join(key, k), format!("must be a string, found {}", type_name(other))),
                    }
                }
                Some(out)
            }
            other => {
                self.error(key, format!("must be a table of strings, found {}", type_name(other)));
                None
            }
        }
    }

    fn duration(&mut self, v: Option<&Value>, key: &str) -> Option<Duration> {
        let s = self.string(v, key)?;
        match parse_duration(&s) {
            Ok(d) if d.is_zero() => {
                self.error(key, "must be longer than zero");
                None
            }
            Ok(d) => Some(d),
            Err(e) => {
                self.error(key, e);
                None
            }
        }
    }

    fn choice<T: Copy>(&mut self, v: Option<&Value>, key: &str, options: &[(&str, T)]) -> Option<T> {
        let s = self.string(v, key)?;
        if let Some((_, t)) = options.iter().find(|(n, _)| n.eq_ignore_ascii_case(&s)) {
            return Some(*t);
        }
        let names: Vec<&str> = options.iter().map(|(n, _)| *n).collect();
        self.error(key, format!("{s:?} is not one of: {}", names.join(", ")));
        None
    }

    fn globs(&mut self, v: Option<&Value>, key: &str) -> Vec<Glob> {
        let mut out = Vec::new();
        for (i, g) in self.strings(v, key).unwrap_or_default().into_iter().enumerate() {
            if g.matches('/').count() != 1 {
                self.error(
                    format!("{key}[{i}]"),
                    format!("{g:?} must look like \"owner/repo\" (globs allowed: \"octo-org/api-*\")"),
                );
                continue;
            }
            out.push(Glob::new(&g));
        }
        out
    }

    fn github(&mut self, v: Option<&Value>) -> GitHubConfig {
        let empty = Table::new();
        let t = match v {
            Some(Value::Table(t)) => t,
            Some(_) => {
                self.error("github", "must be a table ([github])");
                &empty
            }
            None => {
                self.error("github", "missing [github] section; at least github.allowed_owners is required");
                &empty
            }
        };
        self.unknown_keys(t, "github", GITHUB_KEYS);
        let runner_scope = self
            .choice(
                t.get("runner_scope"),
                "github.runner_scope",
                &[("org", RunnerScope::Org), ("repo", RunnerScope::Repo), ("enterprise", RunnerScope::Enterprise)],
            )
            .unwrap_or(RunnerScope::Org);
        let enterprise = self.string(t.get("enterprise"), "github.enterprise");
        if runner_scope == RunnerScope::Enterprise && enterprise.as_deref().is_none_or(str::is_empty) {
            self.error("github.enterprise", "required when runner_scope = \"enterprise\" (the enterprise slug)");
        }
        let token_mode = self
            .choice(
                t.get("token_mode"),
                "github.token_mode",
                &[("jit", TokenMode::Jit), ("registration", TokenMode::Registration)],
            )
            .unwrap_or(TokenMode::Jit);
        let allowed_owners = match self.strings(t.get("allowed_owners"), "github.allowed_owners") {
            Some(v) if !v.is_empty() => v.into_iter().map(|s| s.to_ascii_lowercase()).collect(),
            Some(_) | None if t.get("allowed_owners").is_some_and(|v| !matches!(v, Value::Array(_))) => Vec::new(),
            _ => {
                self.error(
                    "github.allowed_owners",
                    "required and must not be empty: list the organisations or users whose jobs may get runners",
                );
                Vec::new()
            }
        };
        let allowed_repositories = self.globs(t.get("allowed_repositories"), "github.allowed_repositories");
        let allow_public_repositories =
            self.boolean(t.get("allow_public_repositories"), "github.allow_public_repositories").unwrap_or(false);
        let allowed_installation_ids = match t.get("allowed_installation_ids") {
            None => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .filter_map(|(i, v)| self.unsigned(Some(v), &format!("github.allowed_installation_ids[{i}]")))
                .collect(),
            Some(other) => {
                self.error(
                    "github.allowed_installation_ids",
                    format!("must be an array of integers, found {}", type_name(other)),
                );
                Vec::new()
            }
        };
        let check_job_queued = self
            .choice(
                t.get("check_job_queued"),
                "github.check_job_queued",
                &[
                    ("stale", CheckJobQueued::Stale),
                    ("always", CheckJobQueued::Always),
                    ("never", CheckJobQueued::Never),
                ],
            )
            .unwrap_or(CheckJobQueued::Stale);
        let jit_per_minute = self
            .unsigned(t.get("jit_per_minute"), "github.jit_per_minute")
            .map_or(DEFAULT_JIT_PER_MINUTE, |v| u32::try_from(v).unwrap_or(u32::MAX));
        GitHubConfig {
            runner_scope,
            enterprise,
            token_mode,
            allowed_owners,
            allowed_repositories,
            allow_public_repositories,
            allowed_installation_ids,
            check_job_queued,
            jit_per_minute,
        }
    }

    /// One `[[pools]]` entry: the common part here, the compute part by each registered
    /// backend (see [`Role`]).
    fn pool(&mut self, t: &Table, defaults: &Table, path: &str, index: usize, github: &GitHubConfig) -> Option<Pool> {
        self.unknown_keys(t, path, &pool_keys());
        let before = self.problems.iter().filter(|p| !p.warning).count();
        let mut keys = PoolKeys { walker: self, table: t, defaults, path, github, max_runners: None };
        let name = keys.pool_name();
        let backend = {
            let (v, p) = keys.get("backend");
            if v.is_none() {
                let names: Vec<String> = Backend::ALL.iter().map(|b| format!("{:?}", b.as_str())).collect();
                keys.error(keys.own_key("backend"), format!("required: {}", names.join(" or ")));
            }
            let options: Vec<(&str, Backend)> = Backend::ALL.iter().map(|b| (b.as_str(), *b)).collect();
            keys.walker.choice(v, &p, &options)
        };
        let os = {
            let (v, p) = keys.get("os");
            keys.walker.choice(v, &p, &[("linux", Os::Linux), ("windows", Os::Windows)]).unwrap_or(Os::Linux)
        };
        let labels = keys.pool_labels();
        let image = keys.string("image").unwrap_or_default();
        if image.trim().is_empty() {
            keys.error(keys.own_key("image"), "required: the runner container image");
        }
        keys.max_runners = keys.max_runners();
        let image_pull_identity = keys.resource_id("image_pull_identity");
        let identity = keys.resource_id("identity");
        let repositories = {
            let (v, p) = keys.get("repositories");
            keys.walker.globs(v, &p)
        };
        let (tags, env, env_names) = keys.tags_and_env();
        let enabled = keys.boolean("enabled").unwrap_or(true);
        let name_prefix = keys.string("name_prefix").unwrap_or_else(|| "ghr".into());
        // Every compute name starts with it: the pool's backend says what its names allow.
        if let Some(problem) = backend.and_then(|b| b.name_prefix_problem(&name_prefix)) {
            keys.error(keys.key("name_prefix"), problem);
        }
        let runner_group_id = keys.unsigned("runner_group_id");
        let own_runner_group = t.contains_key("runner_group_id");
        let runner_group_name = keys.string("runner_group_name").unwrap_or_else(|| "Default".into());
        let runner_ttl = keys.duration("runner_ttl").unwrap_or(Duration::from_secs(6 * 3600));
        let runner_boot_timeout = keys.duration("runner_boot_timeout").unwrap_or(Duration::from_secs(15 * 60));
        let runner_idle_timeout = keys.duration("runner_idle_timeout").unwrap_or(Duration::from_secs(10 * 60));
        let mut compute = None;
        for kind in Backend::ALL {
            let role = match backend {
                None => Role::Unknown,
                Some(b) if b == kind => Role::Chosen,
                Some(_) => Role::Other,
            };
            let parsed = kind.parse_pool(&mut keys, role);
            if role == Role::Chosen {
                compute = parsed;
            }
        }
        let mut idle = super::idle_keys::parse_pool(&mut keys);
        if let Some(b) = backend {
            idle.cold_start_floor = b.cold_start_floor();
        }
        let max_runners = keys.max_runners;
        if identity.is_some()
            && !repositories.is_empty()
            && !own_runner_group
            && github.runner_scope != RunnerScope::Repo
        {
            self.error(
                join(path, "runner_group_id"),
                "a pool with repositories and an identity needs its own runner_group_id (restricted to those repositories, public repositories off) or runner_scope = \"repo\": GitHub gives a runner any job its runner group admits, so without it jobs of other repositories could use this identity",
            );
        }
        let failed = self.problems.iter().filter(|p| !p.warning).count() > before;
        if failed {
            return None;
        }
        // GitHub compares labels ASCII-case-insensitively: `doc\u{212A}er` (a Kelvin sign) is
        // not `docker`, though Unicode lowercases it so.
        let labels_lower = labels.iter().map(|l| l.to_ascii_lowercase()).collect();
        Some(Pool {
            name,
            index,
            os,
            labels,
            labels_lower,
            image,
            max_runners,
            image_pull_identity,
            identity,
            repositories,
            tags,
            env,
            env_names,
            enabled,
            name_prefix,
            runner_group_id,
            own_runner_group,
            runner_group_name,
            runner_ttl,
            runner_boot_timeout,
            runner_idle_timeout,
            idle,
            compute: compute?,
        })
    }

    /// A pool that restricts who may use it and keeps idle runners: an idle runner is
    /// online before any job exists, so GitHub gives it to any repository its runner group
    /// admits. Org and enterprise scope need a runner group set on the pool itself (one in
    /// `[defaults]` is shared by every pool) and not the Default group; repo scope needs every
    /// idle target to be a repository the pool and the deployment admit.
    fn idle_isolation(&mut self, pool: &Pool, github: &GitHubConfig) {
        if !pool.keeps_restricted_idle_runners(github) {
            return;
        }
        let at = |k: &str| format!("pools[{}].{k}", pool.index);
        let by: Vec<String> = pool
            .restrictions(github)
            .iter()
            .map(|r| if r.on_pool() { at(r.key()) } else { r.key().to_owned() })
            .collect();
        if github.runner_scope == RunnerScope::Repo {
            for (i, target) in pool.idle.targets.iter().enumerate() {
                let admitted = |globs: &[Glob]| globs.is_empty() || globs.iter().any(|g| g.matches(target));
                if !admitted(&pool.repositories) || !admitted(&github.allowed_repositories) {
                    self.error(
                        format!("{}[{i}]", at("idle_targets")),
                        format!("{target:?} is not a repository this pool admits ({}): its idle runners would serve that repository's jobs", by.join(", ")),
                    );
                }
            }
            return;
        }
        if pool.own_runner_group && pool.runner_group_id != Some(DEFAULT_RUNNER_GROUP_ID) {
            return;
        }
        let idle_key = if pool.idle.base == crate::idle::IdleBase::Fixed(0) { "idle_schedule" } else { "idle_runners" };
        self.error(
            at(idle_key),
            format!(
                "keeps idle runners, so it needs {} (set on the pool itself, not the Default group {DEFAULT_RUNNER_GROUP_ID}) because {} restrict{} who may use it: an idle runner is online before any job exists and GitHub gives it to any repository its runner group admits. Use a runner group restricted to the pool's repositories with public repositories off (`doctor` checks it)",
                at("runner_group_id"),
                by.join(", "),
                if by.len() == 1 { "s" } else { "" }
            ),
        );
    }

    fn env_names(&mut self, (v, path): (Option<&Value>, String)) -> RunnerEnvNames {
        let mut names = RunnerEnvNames::default();
        let Some(map) = self.string_map(v, &path) else { return names };
        for (k, value) in map {
            let slot = match k.as_str() {
                "RUNNER_JITCONFIG" => &mut names.jitconfig,
                "RUNNER_URL" => &mut names.url,
                "RUNNER_TOKEN" => &mut names.token,
                "RUNNER_NAME" => &mut names.name,
                "RUNNER_LABELS" => &mut names.labels,
                "RUNNER_GROUP" => &mut names.group,
                "RUNNER_EPHEMERAL" => &mut names.ephemeral,
                _ => {
                    self.error(join(&path, &k), "unknown runner variable; rename one of RUNNER_JITCONFIG, RUNNER_URL, RUNNER_TOKEN, RUNNER_NAME, RUNNER_LABELS, RUNNER_GROUP, RUNNER_EPHEMERAL");
                    continue;
                }
            };
            *slot = value;
        }
        names
    }

    fn cross_checks(&mut self, pools: &[Pool], github: &GitHubConfig) {
        for p in pools {
            self.idle_isolation(p, github);
        }
        self.problems.extend(placement_subnet_problems(pools, None));
        let mut names: BTreeMap<&str, usize> = BTreeMap::new();
        for p in pools {
            if let Some(first) = names.insert(p.name.as_str(), p.index) {
                self.error(
                    format!("pools[{}].name", p.index),
                    format!("{:?} is already the name of pools[{first}]", p.name),
                );
            }
        }
        // Identities shared across pools: each pool's jobs get the same Azure rights.
        let mut by_identity: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for p in pools.iter().filter(|p| p.enabled) {
            if let Some(id) = &p.identity {
                by_identity.entry(id.as_str()).or_default().push(p.name.as_str());
            }
        }
        for (id, users) in by_identity {
            if users.len() > 1 {
                self.warn(
                    format!("pools.identity ({id})"),
                    format!("shared by pools {}: their jobs all get the same Azure rights", users.join(", ")),
                );
            }
        }
        // Overlaps: two enabled pools with the same labels and the same repository filter
        // fit exactly the same jobs with equal precedence; the later one is never chosen.
        let enabled: Vec<&Pool> = pools.iter().filter(|p| p.enabled).collect();
        let mut seen: BTreeMap<(Vec<String>, Vec<String>), &str> = BTreeMap::new();
        for p in enabled {
            let mut labels = p.labels_lower.clone();
            labels.sort();
            labels.dedup();
            let mut repos: Vec<String> = p.repositories.iter().map(|g| g.pattern().to_owned()).collect();
            repos.sort();
            match seen.entry((labels, repos)) {
                std::collections::btree_map::Entry::Occupied(first) => {
                    let first = *first.get();
                    self.warn(
                        format!("pools[{}]", p.index),
                        format!("fits exactly the same jobs as pool {first:?} with equal precedence; {first:?} comes first in the file and always wins"),
                    );
                }
                std::collections::btree_map::Entry::Vacant(slot) => {
                    slot.insert(p.name.as_str());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::EMBEDDED_DEMO_CONFIG;

    fn keys(e: &ConfigErrors) -> Vec<&str> {
        e.0.iter().filter(|p| !p.warning).map(|p| p.key.as_str()).collect()
    }

    #[test]
    fn the_example_file_parses_without_errors() {
        let cfg = PoolsConfig::parse(EMBEDDED_DEMO_CONFIG).expect("example parses");
        assert!(cfg.pools.len() >= 2);
    }

    #[test]
    fn jit_pacing_defaults_to_180_a_minute_and_can_be_turned_off() {
        let cfg = PoolsConfig::parse(EMBEDDED_DEMO_CONFIG).expect("example parses");
        assert_eq!(cfg.github.jit_per_minute, DEFAULT_JIT_PER_MINUTE);
        let off = EMBEDDED_DEMO_CONFIG.replacen("[github]", "[github]\njit_per_minute = 0", 1);
        assert_eq!(PoolsConfig::parse(&off).expect("parses").github.jit_per_minute, 0);
        let bad = EMBEDDED_DEMO_CONFIG.replacen("[github]", "[github]\njit_per_minute = -1", 1);
        assert_eq!(keys(&PoolsConfig::parse(&bad).expect_err("negative")), vec!["github.jit_per_minute"]);
    }

    #[test]
    fn every_problem_is_reported_at_once_with_its_key() {
        let text = r#"
[github]
runner_scope = "galaxy"
allowed_owners = []
bogus = 1

[defaults]
runner_ttl = "6 hours"

[[pools]]
name = "a"
backend = "aci"
labels = []
image = "img"
cpu = "two"

[[pools]]
name = "b"
backend = "batch"
labels = ["x"]
image = "img"
"#;
        let err = PoolsConfig::parse(text).expect_err("broken file");
        let k = keys(&err);
        for expected in [
            "github.runner_scope",
            "github.allowed_owners",
            "github.bogus",
            "defaults.runner_ttl",
            "pools[0].labels",
            "pools[0].cpu",
            "pools[1].batch_pool_id",
        ] {
            assert!(k.contains(&expected), "missing {expected} in {k:?}");
        }
    }

    #[test]
    fn pool_keys_cascade_from_defaults_and_pools_override() {
        let text = r#"
[github]
allowed_owners = ["Octo-Org"]
[defaults]
name_prefix = "ci"
runner_group_id = 7
runner_ttl = "2h"
tags = { cost-center = "1", team = "platform" }
[[pools]]
name = "a"
backend = "aci"
labels = ["linux"]
image = "img"
tags = { team = "api" }
[[pools]]
name = "b"
backend = "aci"
labels = ["linux", "big"]
image = "img"
name_prefix = "big"
runner_group_id = 9
"#;
        let cfg = PoolsConfig::parse(text).expect("valid");
        let a = cfg.pool("a").expect("a");
        let b = cfg.pool("b").expect("b");
        assert_eq!(cfg.github.allowed_owners, vec!["octo-org"]);
        assert_eq!(a.name_prefix, "ci");
        assert_eq!(a.runner_group_id, Some(7));
        assert!(!a.own_runner_group);
        assert_eq!(a.runner_ttl, Duration::from_secs(7200));
        assert_eq!(a.tags.get("team").map(String::as_str), Some("api"));
        assert_eq!(a.tags.get("cost-center").map(String::as_str), Some("1"));
        assert_eq!(b.name_prefix, "big");
        assert_eq!(b.runner_group_id, Some(9));
        assert!(b.own_runner_group);
        assert_eq!(cfg.job_id_of_runner("big-42"), Some(42));
        assert_eq!(cfg.job_id_of_runner("other-42"), None);
    }

    #[test]
    fn identity_with_repositories_needs_its_own_runner_group() {
        let base = r#"
[github]
allowed_owners = ["octo-org"]
[defaults]
runner_group_id = 1
[[pools]]
name = "api"
backend = "aci"
labels = ["linux"]
image = "img"
repositories = ["octo-org/api-*"]
identity = "/subscriptions/s/resourceGroups/r/providers/Microsoft.ManagedIdentity/userAssignedIdentities/api"
"#;
        let err = PoolsConfig::parse(base).expect_err("refused");
        let p = err.0.iter().find(|p| p.key == "pools[0].runner_group_id").expect("named");
        assert!(p.message.contains("own runner_group_id"), "{}", p.message);
        let fixed = format!("{base}runner_group_id = 5\n");
        PoolsConfig::parse(&fixed).expect("own group accepted");
        let repo_scope = base.replace("[github]\n", "[github]\nrunner_scope = \"repo\"\n");
        PoolsConfig::parse(&repo_scope).expect("repo scope accepted");
    }

    /// A pool file with one ACI pool: `github` and `pool` lines added to the minimal one.
    fn one_pool(github: &str, pool: &str) -> String {
        format!(
            "[github]\nallowed_owners = [\"octo-org\"]\n{github}\n[defaults]\nrunner_group_id = 3\n[[pools]]\nname = \"p\"\nbackend = \"aci\"\nlabels = [\"linux\"]\nimage = \"img\"\n{pool}\n"
        )
    }

    #[test]
    fn a_restricted_pool_that_keeps_idle_runners_needs_its_own_runner_group() {
        let identity = "identity = \"/subscriptions/s/resourceGroups/r/providers/Microsoft.ManagedIdentity/userAssignedIdentities/api\"";
        let subnet =
            "subnet_id = \"/subscriptions/s/resourceGroups/r/providers/Microsoft.Network/virtualNetworks/v/subnets/a\"";
        let placements = "placements = [{ location = \"westeurope\", subnet_id = \"/subscriptions/s/resourceGroups/r/providers/Microsoft.Network/virtualNetworks/v/subnets/a\" }]";
        let cases: [(&str, String, &str, &str); 8] = [
            ("", "repositories = [\"octo-org/api-*\"]\nidle_runners = 2".into(), "pools[0].idle_runners", "pools[0].repositories"),
            ("", format!("{identity}\nidle_runners = \"auto\""), "pools[0].idle_runners", "pools[0].identity"),
            ("", format!("{subnet}\nidle_runners = 1"), "pools[0].idle_runners", "pools[0].subnet_id"),
            ("", format!("{placements}\nidle_runners = 1"), "pools[0].idle_runners", "pools[0].placements"),
            (
                "",
                "repositories = [\"octo-org/api\"]\nidle_schedule = [{ days = \"mon-fri\", hours = \"07:00-19:00\", idle_runners = 4 }]".into(),
                "pools[0].idle_schedule",
                "pools[0].repositories",
            ),
            ("allowed_repositories = [\"octo-org/api\"]", "idle_runners = 1".into(), "pools[0].idle_runners", "github.allowed_repositories"),
            ("allowed_installation_ids = [42]", "idle_runners = 1".into(), "pools[0].idle_runners", "github.allowed_installation_ids"),
            // Set on the pool, but the Default group: shared with every repository it admits.
            ("", "repositories = [\"octo-org/api\"]\nidle_runners = 1\nrunner_group_id = 1".into(), "pools[0].idle_runners", "pools[0].repositories"),
        ];
        for (github, pool, key, because) in cases {
            let err = PoolsConfig::parse(&one_pool(github, &pool)).expect_err(&pool);
            assert_eq!(keys(&err), vec![key], "{pool}");
            let m = &err.0[0].message;
            assert!(m.contains("pools[0].runner_group_id") && m.contains(because), "{pool}: {m}");
            // Its own group (not the Default one) is the fix.
            let own = format!("{}\nrunner_group_id = 9", pool.replace("runner_group_id = 1", ""));
            let cfg = PoolsConfig::parse(&one_pool(github, &own)).expect(&own);
            assert!(cfg.pools[0].own_runner_group);
        }
        // Without idle runners, or without a restriction, nothing changes.
        PoolsConfig::parse(&one_pool("", "repositories = [\"octo-org/api\"]\nidle_runners = 0")).expect("no idle");
        PoolsConfig::parse(&one_pool("", "idle_runners = 3")).expect("unrestricted");
        PoolsConfig::parse(&one_pool(
            "",
            "idle_runners = \"auto\"\nidle_runners_max = 0\nrepositories = [\"octo-org/api\"]",
        ))
        .expect("auto capped at zero keeps none");
    }

    #[test]
    fn a_vm_pool_that_keeps_idle_runners_needs_its_own_runner_group() {
        // A VM always sits in a subnet of yours: its idle runners are a restricted pool's.
        let vm = "[github]\nallowed_owners = [\"octo-org\"]\n[[pools]]\nname = \"d\"\nbackend = \"vm\"\nlabels = [\"docker\"]\nimage = \"Canonical:ubuntu-24_04-lts:server:latest\"\nvm_size = \"Standard_D2ads_v5\"\nlocation = \"westeurope\"\nsubnet_id = \"/subscriptions/s/resourceGroups/r/providers/Microsoft.Network/virtualNetworks/v/subnets/vm\"\nidle_runners = 2\n";
        let err = PoolsConfig::parse(vm).expect_err("no group of its own");
        assert_eq!(keys(&err), vec!["pools[0].idle_runners"]);
        assert!(err.0[0].message.contains("pools[0].subnet_id"), "{}", err.0[0].message);
        PoolsConfig::parse(&format!("{vm}runner_group_id = 9\n")).expect("its own group");
        PoolsConfig::parse(&vm.replace("idle_runners = 2", "idle_runners = 0")).expect("no idle runners");
    }

    #[test]
    fn auto_assumes_at_least_the_backends_typical_boot() {
        let vm = "[github]\nallowed_owners = [\"octo-org\"]\n[[pools]]\nname = \"d\"\nbackend = \"vm\"\nlabels = [\"docker\"]\nimage = \"Canonical:ubuntu-24_04-lts:server:latest\"\nvm_size = \"Standard_D2ads_v5\"\nlocation = \"westeurope\"\nsubnet_id = \"/subscriptions/s/resourceGroups/r/providers/Microsoft.Network/virtualNetworks/v/subnets/vm\"\nidle_runners = \"auto\"\nidle_runners_max = 100\nrunner_group_id = 9\n";
        let cfg = PoolsConfig::parse(vm).expect("vm pool");
        let idle = &cfg.pools[0].idle;
        assert_eq!(idle.cold_start_floor, std::time::Duration::from_secs(120));
        // A measured 90 s reads short for a VM: the rule works with two minutes, 10 jobs a
        // minute keep 20 booting, plus 2 x sqrt(20).
        let demand = crate::idle::Demand {
            arrivals_per_minute: 10.0,
            cold_start: Some(std::time::Duration::from_secs(90)),
            ..crate::idle::Demand::default()
        };
        assert_eq!(idle.target(jiff::Timestamp::UNIX_EPOCH, &demand).count, 29);
        // A container pool keeps the 60 s floor.
        let aci = PoolsConfig::parse(&one_pool("", "idle_runners = \"auto\"")).expect("aci pool");
        assert_eq!(aci.pools[0].idle.cold_start_floor, crate::idle::DEFAULT_COLD_START);
    }

    #[test]
    fn at_repo_scope_a_restricted_pools_idle_targets_must_be_repositories_it_admits() {
        let scope = "runner_scope = \"repo\"";
        let pool = "repositories = [\"octo-org/api-*\"]\nidle_runners = 1\nidle_targets = [\"octo-org/api-gw\", \"octo-org/web\"]";
        let err = PoolsConfig::parse(&one_pool(scope, pool)).expect_err("web is not admitted");
        assert_eq!(keys(&err), vec!["pools[0].idle_targets[1]"]);
        PoolsConfig::parse(&one_pool(scope, &pool.replace(", \"octo-org/web\"", ""))).expect("api-gw is");
    }

    #[test]
    fn subscription_ids_and_resource_groups_that_leave_their_url_segment_are_refused() {
        let text = |defaults: &str, pool: &str| {
            format!(
                "[github]\nallowed_owners = [\"o\"]\n[defaults]\n{defaults}\n[[pools]]\nname = \"p\"\nbackend = \"aci\"\nlabels = [\"a\"]\nimage = \"i\"\n{pool}\n"
            )
        };
        let placements = r#"placements = [
  { location = "westeurope", resource_group = "rg/../../.." },
  { location = "westeurope", subscription_id = "sub/../x" },
  { location = "northeurope", subscription_id = "00000000-0000-0000-0000-00000000000A", resource_group = "RG-a" },
  { location = "NorthEurope", subscription_id = "00000000-0000-0000-0000-00000000000a", resource_group = "rg-A" },
  { location = "westeurope", resource_group = "rg." },
]"#;
        let err = PoolsConfig::parse(&text("", placements)).expect_err("refused");
        assert_eq!(
            keys(&err),
            vec![
                "pools[0].placements[0].resource_group",
                "pools[0].placements[1].subscription_id",
                "pools[0].placements[3]",
                "pools[0].placements[4].resource_group",
            ]
        );
        assert!(err.0[0].message.contains("\"rg/../../..\""), "{}", err.0[0].message);
        let err = PoolsConfig::parse(&text("resource_group = \"a/b\"", "")).expect_err("defaults");
        assert_eq!(keys(&err), vec!["defaults.resource_group"]);
        let err = PoolsConfig::parse(&text("", "resource_group = \"../rg\"")).expect_err("pool");
        assert_eq!(keys(&err), vec!["pools[0].resource_group"]);
        PoolsConfig::parse(&text("resource_group = \"rg-runners_(prod).1\"", "")).expect("Azure's character set");
    }

    #[test]
    fn idle_counts_have_a_ceiling_named_by_their_key() {
        let text = |pool: &str| {
            format!(
                "[github]\nallowed_owners = [\"o\"]\n[[pools]]\nname = \"p\"\nbackend = \"aci\"\nlabels = [\"a\"]\nimage = \"i\"\n{pool}\n"
            )
        };
        for (pool, key) in [
            ("idle_runners = 9223372036854775807", "pools[0].idle_runners"),
            ("idle_runners = 1001", "pools[0].idle_runners"),
            ("idle_runners = \"auto\"\nidle_runners_max = 4294967296", "pools[0].idle_runners_max"),
            ("idle_runners = \"auto\"\nidle_runners_max = -1", "pools[0].idle_runners_max"),
            (
                "idle_schedule = [{ days = \"mon\", hours = \"07:00-08:00\", idle_runners = 5000 }]",
                "pools[0].idle_schedule[0].idle_runners",
            ),
        ] {
            let err = PoolsConfig::parse(&text(pool)).expect_err(pool);
            assert_eq!(keys(&err), vec![key], "{pool}");
        }
        let err = PoolsConfig::parse(&text("idle_runners = 9223372036854775807")).expect_err("huge");
        assert!(err.0[0].message.contains("1000"), "{}", err.0[0].message);
        let cfg = PoolsConfig::parse(&text("idle_runners = 1000")).expect("the ceiling itself");
        assert_eq!(cfg.pools[0].idle.base, crate::idle::IdleBase::Fixed(1000));
    }

    #[test]
    fn registration_mode_on_batch_needs_allow_readable_tokens() {
        let text = r#"
[github]
allowed_owners = ["o"]
token_mode = "registration"
[[pools]]
name = "w"
backend = "batch"
labels = ["windows"]
image = "img"
batch_pool_id = "win"
"#;
        let err = PoolsConfig::parse(text).expect_err("refused");
        assert_eq!(keys(&err), vec!["pools[0].allow_readable_tokens"]);
        PoolsConfig::parse(&format!("{text}allow_readable_tokens = true\n")).expect("accepted");
    }

    #[test]
    fn overlapping_pools_and_shared_identities_are_warnings() {
        let text = r#"
[github]
allowed_owners = ["o"]
[defaults]
identity = "/subscriptions/s/x"
[[pools]]
name = "a"
backend = "aci"
labels = ["Linux", "x64"]
image = "img"
[[pools]]
name = "b"
backend = "aci"
labels = ["x64", "linux"]
image = "img"
"#;
        let cfg = PoolsConfig::parse(text).expect("warnings only");
        let w: Vec<String> = cfg.warnings.iter().map(ToString::to_string).collect();
        assert!(w.iter().any(|m| m.contains("pools[1]") && m.contains("same jobs")), "{w:?}");
        assert!(w.iter().any(|m| m.contains("shared by pools a, b")), "{w:?}");
    }

    #[test]
    fn invalid_toml_names_the_line() {
        let err = PoolsConfig::parse("[github]\nallowed_owners = [\n").expect_err("bad toml");
        assert!(err.0[0].key.starts_with("line "), "{:?}", err.0);
    }

    #[test]
    fn backend_keys_are_checked_on_every_pool_and_kept_on_their_own() {
        let text = r#"
[github]
allowed_owners = ["o"]
[defaults]
batch_pool_id = "shared"
[[pools]]
name = "a"
backend = "aci"
labels = ["linux"]
image = "img"
cpu = 1.5
[[pools]]
name = "w"
backend = "batch"
labels = ["windows"]
image = "img"
"#;
        let cfg = PoolsConfig::parse(text).expect("valid");
        let a = cfg.pool("a").expect("a");
        assert_eq!(
            a.compute,
            Compute::Aci(crate::azure::AciPool {
                cpu: 1.5,
                memory_gb: 4.0,
                subnet_id: None,
                resource_group: None,
                location: None,
                placements: vec![],
            })
        );
        let w = cfg.pool("w").expect("w");
        assert_eq!(
            w.compute,
            Compute::Batch(crate::azure::BatchPool {
                batch_pool_id: "shared".into(),
                run_on_host: false,
                allow_readable_tokens: false
            })
        );
    }

    #[test]
    fn another_backends_keys_and_an_unknown_backend_still_report_every_problem() {
        let text = r#"
[github]
allowed_owners = ["o"]
[[pools]]
name = "a"
backend = "aci"
labels = ["linux"]
image = "img"
run_on_host = true
[[pools]]
name = "w"
backend = "batch"
labels = ["windows"]
image = "img"
batch_pool_id = "p"
memory_gb = "lots"
[[pools]]
name = "x"
backend = "lambda"
labels = ["x"]
image = "img"
cpu = 0
"#;
        let err = PoolsConfig::parse(text).expect_err("refused");
        assert_eq!(keys(&err), vec!["pools[0].run_on_host", "pools[1].memory_gb", "pools[2].backend", "pools[2].cpu"]);
        let backend = err.0.iter().find(|p| p.key == "pools[2].backend").expect("named");
        assert_eq!(backend.message, "\"lambda\" is not one of: aci, batch, vm");
    }

    #[test]
    fn a_placement_subnet_in_another_subscription_is_refused_by_its_key() {
        let sub = |s: &str| {
            format!("/subscriptions/{s}/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/v/subnets/aci")
        };
        let text = format!(
            "[github]\nallowed_owners = [\"o\"]\n[[pools]]\nname = \"p\"\nbackend = \"aci\"\nlabels = [\"a\"]\nimage = \"i\"\nresource_group = \"rg\"\nplacements = [\n  {{ location = \"westeurope\", subscription_id = \"AAAAAAAA-0000-0000-0000-00000000000A\", subnet_id = \"{}\" }},\n  {{ location = \"northeurope\", subscription_id = \"aaaaaaaa-0000-0000-0000-00000000000a\", subnet_id = \"{}\" }},\n  {{ location = \"swedencentral\", subnet_id = \"{}\" }},\n]\n",
            sub("aaaaaaaa-0000-0000-0000-00000000000a"),
            sub("bbbbbbbb-0000-0000-0000-00000000000b"),
            sub("bbbbbbbb-0000-0000-0000-00000000000b"),
        );
        // Parsing alone knows the subscription of the placements that name theirs.
        let e = PoolsConfig::parse(&text).expect_err("another subscription");
        assert_eq!(keys(&e), ["pools[0].placements[1].subnet_id"]);
        assert!(
            e.0[0].message.contains("\"bbbbbbbb-0000-0000-0000-00000000000b\"")
                && e.0[0].message.contains("\"aaaaaaaa-0000-0000-0000-00000000000a\""),
            "{}",
            e.0[0].message
        );
        // The third takes AZURE_SUBSCRIPTION_ID's: refused when that is another one.
        let cfg = PoolsConfig::parse(
            &text.replace(&sub("bbbbbbbb-0000-0000-0000-00000000000b"), &sub("aaaaaaaa-0000-0000-0000-00000000000a")),
        )
        .expect("all in aaaa");
        let pools: Vec<&Pool> = cfg.pools.iter().map(AsRef::as_ref).collect();
        assert!(placement_subnet_problems(pools.iter().copied(), None).is_empty());
        assert!(
            placement_subnet_problems(pools.iter().copied(), Some("AAAAAAAA-0000-0000-0000-00000000000A")).is_empty()
        );
        let found = placement_subnet_problems(pools.iter().copied(), Some("cccccccc-0000-0000-0000-00000000000c"));
        let found: Vec<&str> = found.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(found, ["pools[0].placements[2].subnet_id"]);
    }

    #[test]
    fn a_pool_without_a_backend_is_told_the_registered_ones() {
        let text = "[github]\nallowed_owners = [\"o\"]\n[[pools]]\nname = \"a\"\nlabels = [\"l\"]\nimage = \"img\"\n";
        let err = PoolsConfig::parse(text).expect_err("refused");
        assert_eq!(keys(&err), vec!["pools[0].backend"]);
        assert_eq!(err.0[0].message, "required: \"aci\" or \"batch\" or \"vm\"");
    }
}
