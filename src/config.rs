//! Settings from the environment and the pools file (`runners.toml`), validated so that
//! every problem is reported at once with the key it concerns.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use toml::{Table, Value};

use crate::duration::parse_duration;
use crate::pools::Glob;
use crate::secret::Secret;

/// The pools file used when neither `RUNNER_DISPATCH_CONFIG_TOML` nor a file is given
/// to `demo`: two pools (Linux on ACI, Windows on Batch) for the bundled sample webhooks.
pub const EMBEDDED_DEMO_CONFIG: &str = include_str!("../runners.example.toml");

/// One problem found in the settings or the pools file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// `pools[2].labels`, `github.allowed_owners`, or a setting name such as `GITHUB_WEBHOOK_SECRET`.
    pub key: String,
    pub message: String,
    /// Warnings are printed but do not fail `check-config`.
    pub warning: bool,
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

// ---------------------------------------------------------------------------
// Pools file types
// ---------------------------------------------------------------------------

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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    Aci,
    Batch,
}

impl Backend {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Aci => "aci",
            Backend::Batch => "batch",
        }
    }
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

/// One runner pool, with `[defaults]` already applied.
#[derive(Debug, Clone)]
pub struct Pool {
    pub name: String,
    /// Index in the file: the last tie-breaker.
    pub index: usize,
    pub backend: Backend,
    pub os: Os,
    /// As written (the runner registers with these).
    pub labels: Vec<String>,
    /// Lowercased, for matching.
    pub labels_lower: Vec<String>,
    pub image: String,
    pub cpu: f64,
    pub memory_gb: f64,
    pub max_runners: Option<u32>,
    pub subnet_id: Option<String>,
    pub image_pull_identity: Option<String>,
    pub identity: Option<String>,
    pub repositories: Vec<Glob>,
    pub tags: BTreeMap<String, String>,
    pub env: BTreeMap<String, String>,
    pub env_names: RunnerEnvNames,
    pub enabled: bool,
    pub batch_pool_id: Option<String>,
    pub run_on_host: bool,
    pub allow_readable_tokens: bool,
    pub name_prefix: String,
    pub runner_group_id: Option<u64>,
    /// True when `runner_group_id` was set on the pool itself, not inherited.
    pub own_runner_group: bool,
    /// The runner group's name, for `config.sh --runnergroup` in registration mode.
    pub runner_group_name: String,
    pub runner_ttl: Duration,
    pub runner_boot_timeout: Duration,
    pub runner_idle_timeout: Duration,
    pub resource_group: Option<String>,
    pub location: Option<String>,
}

impl Pool {
    /// The job id in one of this pool's runner names: exactly `<prefix>-<digits>` (ASCII
    /// digits only, no sign), else `None`.
    #[must_use]
    pub fn job_id_of(&self, runner_name: &str) -> Option<u64> {
        runner_name
            .strip_prefix(self.name_prefix.as_str())
            .and_then(|rest| rest.strip_prefix('-'))
            .and_then(parse_job_id)
    }

    /// `<prefix>-<job id>`: compute and runner name for a job.
    #[must_use]
    pub fn runner_name(&self, job_id: u64) -> String {
        format!("{}-{job_id}", self.name_prefix)
    }
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

    /// The job id in a runner name of any pool, when the name is exactly `<prefix>-<digits>`.
    #[must_use]
    pub fn job_id_of_runner(&self, runner_name: &str) -> Option<u64> {
        self.pools.iter().find_map(|p| p.job_id_of(runner_name))
    }

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
                cx.unknown_keys(t, "defaults", POOL_KEYS);
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

const POOL_KEYS: &[&str] = &[
    "name",
    "backend",
    "os",
    "labels",
    "image",
    "cpu",
    "memory_gb",
    "max_runners",
    "subnet_id",
    "image_pull_identity",
    "identity",
    "repositories",
    "tags",
    "env",
    "env_names",
    "enabled",
    "batch_pool_id",
    "run_on_host",
    "allow_readable_tokens",
    "name_prefix",
    "runner_group_id",
    "runner_group_name",
    "runner_ttl",
    "runner_boot_timeout",
    "runner_idle_timeout",
    "resource_group",
    "location",
];

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

/// ACI container group names: lowercase letters, digits and hyphens, 1–63, no hyphen at either end.
#[must_use]
pub fn is_valid_aci_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && !name.starts_with('-')
        && !name.ends_with('-')
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

impl Walker {
    fn error(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.problems.push(ConfigProblem { key: key.into(), message: message.into(), warning: false });
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

    #[allow(clippy::too_many_lines)]
    fn pool(&mut self, t: &Table, defaults: &Table, path: &str, index: usize, github: &GitHubConfig) -> Option<Pool> {
        self.unknown_keys(t, path, POOL_KEYS);
        let before = self.problems.iter().filter(|p| !p.warning).count();
        // A key on the pool wins; otherwise [defaults]; the reported path says which.
        let get = |k: &str| -> (Option<&Value>, String) {
            match t.get(k) {
                Some(v) => (Some(v), join(path, k)),
                None => (defaults.get(k), join("defaults", k)),
            }
        };
        macro_rules! read {
            ($method:ident, $key:expr) => {{
                let (v, p) = get($key);
                self.$method(v, &p)
            }};
        }
        let name = self.string(t.get("name"), &join(path, "name"));
        let name = match name {
            Some(n) if !n.trim().is_empty() => n,
            Some(_) => {
                self.error(join(path, "name"), "must not be empty");
                String::new()
            }
            None => {
                if !t.contains_key("name") {
                    self.error(join(path, "name"), "required: a unique name for the pool");
                }
                String::new()
            }
        };
        let backend = {
            let (v, p) = get("backend");
            if v.is_none() {
                self.error(join(path, "backend"), "required: \"aci\" or \"batch\"");
            }
            self.choice(v, &p, &[("aci", Backend::Aci), ("batch", Backend::Batch)])
        };
        let os = {
            let (v, p) = get("os");
            self.choice(v, &p, &[("linux", Os::Linux), ("windows", Os::Windows)]).unwrap_or(Os::Linux)
        };
        let labels = self.strings(t.get("labels"), &join(path, "labels")).unwrap_or_default();
        if labels.is_empty() {
            self.error(join(path, "labels"), "required: the labels jobs use to reach this pool (1 to 100)");
        } else if labels.len() > 100 {
            self.error(join(path, "labels"), "GitHub allows at most 100 labels per runner");
        }
        for (i, l) in labels.iter().enumerate() {
            if l.trim().is_empty() || l.contains(',') {
                self.error(format!("{path}.labels[{i}]"), "a label must be non-empty and contain no comma");
            }
        }
        let image = read!(string, "image").unwrap_or_default();
        if image.trim().is_empty() {
            self.error(join(path, "image"), "required: the runner container image");
        }
        let cpu = read!(number, "cpu").unwrap_or(2.0);
        let memory_gb = read!(number, "memory_gb").unwrap_or(4.0);
        if cpu <= 0.0 {
            self.error(get("cpu").1, "must be greater than zero");
        }
        if memory_gb <= 0.0 {
            self.error(get("memory_gb").1, "must be greater than zero");
        }
        let max_runners = {
            let (v, p) = get("max_runners");
            self.unsigned(v, &p).and_then(|n| {
                if n == 0 || n > u64::from(u32::MAX) {
                    self.error(p, "must be between 1 and 4294967295 (leave it out for no cap)");
                    None
                } else {
                    u32::try_from(n).ok()
                }
            })
        };
        let subnet_id = read!(string, "subnet_id");
        let image_pull_identity = read!(string, "image_pull_identity");
        let identity = read!(string, "identity");
        for (key, value) in
            [("subnet_id", &subnet_id), ("image_pull_identity", &image_pull_identity), ("identity", &identity)]
        {
            if let Some(v) = value {
                if !v.starts_with("/subscriptions/") {
                    self.error(get(key).1, "must be a full Azure resource id (/subscriptions/...)");
                }
            }
        }
        let repositories = {
            let (v, p) = get("repositories");
            self.globs(v, &p)
        };
        let mut tags = read!(string_map, "tags").unwrap_or_default();
        if let Some(Value::Table(dt)) = defaults.get("tags") {
            if t.contains_key("tags") {
                // Pool tags extend default tags; the pool wins on a clash.
                let base = self.string_map(Some(&Value::Table(dt.clone())), "defaults.tags").unwrap_or_default();
                for (k, v) in base {
                    tags.entry(k).or_insert(v);
                }
            }
        }
        for k in tags.keys() {
            if k.to_ascii_lowercase().starts_with("runner-dispatch") {
                self.error(
                    format!("{}.{k}", get("tags").1),
                    "tags starting with runner-dispatch are set by runner-dispatch itself",
                );
            }
        }
        let mut env = read!(string_map, "env").unwrap_or_default();
        if let Some(Value::Table(dt)) = defaults.get("env") {
            if t.contains_key("env") {
                let base = self.string_map(Some(&Value::Table(dt.clone())), "defaults.env").unwrap_or_default();
                for (k, v) in base {
                    env.entry(k).or_insert(v);
                }
            }
        }
        let env_names = self.env_names(get("env_names"));
        for k in env.keys() {
            if [&env_names.jitconfig, &env_names.token, &env_names.url, &env_names.name].contains(&k) {
                self.error(
                    format!("{}.{k}", get("env").1),
                    "is set by runner-dispatch; it cannot be overridden in env",
                );
            }
        }
        let enabled = read!(boolean, "enabled").unwrap_or(true);
        let batch_pool_id = read!(string, "batch_pool_id");
        let run_on_host = read!(boolean, "run_on_host").unwrap_or(false);
        let allow_readable_tokens = read!(boolean, "allow_readable_tokens").unwrap_or(false);
        let name_prefix = read!(string, "name_prefix").unwrap_or_else(|| "ghr".into());
        if !is_valid_aci_name(&name_prefix) || name_prefix.len() > 40 {
            self.error(
                get("name_prefix").1,
                "must be lowercase letters, digits and hyphens, at most 40 characters, no hyphen at either end (it starts every compute name)",
            );
        }
        let runner_group_id = read!(unsigned, "runner_group_id");
        let own_runner_group = t.contains_key("runner_group_id");
        let runner_group_name = read!(string, "runner_group_name").unwrap_or_else(|| "Default".into());
        let runner_ttl = read!(duration, "runner_ttl").unwrap_or(Duration::from_secs(6 * 3600));
        let runner_boot_timeout = read!(duration, "runner_boot_timeout").unwrap_or(Duration::from_secs(15 * 60));
        let runner_idle_timeout = read!(duration, "runner_idle_timeout").unwrap_or(Duration::from_secs(10 * 60));
        let resource_group = read!(string, "resource_group");
        let location = read!(string, "location");

        match backend {
            Some(Backend::Batch) => {
                if batch_pool_id.as_deref().is_none_or(str::is_empty) {
                    self.error(
                        join(path, "batch_pool_id"),
                        "required for backend = \"batch\": the Azure Batch pool id",
                    );
                }
                if github.token_mode == TokenMode::Registration && !allow_readable_tokens {
                    self.error(
                        join(path, "allow_readable_tokens"),
                        "token_mode = \"registration\" on a Batch pool puts a registration token in task settings that anyone who can read the Batch account can read; use token_mode = \"jit\" or set allow_readable_tokens = true",
                    );
                }
                if max_runners.is_some() {
                    self.warn(
                        get("max_runners").1,
                        "ignored for Batch pools: the Batch pool's autoscale limit caps runners and Batch queues the rest",
                    );
                }
            }
            Some(Backend::Aci) => {
                if run_on_host {
                    self.error(join(path, "run_on_host"), "only Batch pools can run the runner on the VM");
                }
            }
            None => {}
        }
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
            backend: backend?,
            os,
            labels,
            labels_lower,
            image,
            cpu,
            memory_gb,
            max_runners,
            subnet_id,
            image_pull_identity,
            identity,
            repositories,
            tags,
            env,
            env_names,
            enabled,
            batch_pool_id,
            run_on_host,
            allow_readable_tokens,
            name_prefix,
            runner_group_id,
            own_runner_group,
            runner_group_name,
            runner_ttl,
            runner_boot_timeout,
            runner_idle_timeout,
            resource_group,
            location,
        })
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
        let _ = github;
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

// ---------------------------------------------------------------------------
// Settings from the environment
// ---------------------------------------------------------------------------

/// How the process authenticates to GitHub.
#[derive(Debug, Clone)]
pub enum GitHubAuth {
    /// A GitHub App: JWT signed with its private key, then installation tokens.
    App {
        /// App id or client id (both are accepted as the JWT `iss`).
        app_id: String,
        private_key: Secret,
        installation_id: Option<u64>,
    },
    /// A personal access token (or any token with the needed scopes).
    Token(Secret),
    /// No credentials: only the dry-run backend works.
    None,
}

/// Which webhook `reconcile` asks for missed deliveries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookScope {
    App,
    Org,
    Repo,
}

/// Azure settings: where compute goes and how to reach it.
#[derive(Debug, Clone, Default)]
pub struct AzureSettings {
    pub subscription_id: Option<String>,
    pub resource_group: Option<String>,
    pub location: Option<String>,
    pub resource_manager_url: String,
    pub batch_account_url: Option<String>,
    pub batch_account_name: Option<String>,
    pub batch_account_key: Option<Secret>,
    pub client_id: Option<String>,
    pub tenant_id: Option<String>,
    pub client_secret: Option<Secret>,
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

/// Shortest `RUNNER_DISPATCH_ADMIN_TOKEN` accepted.
pub const MIN_ADMIN_TOKEN_CHARS: usize = 32;

/// Everything read from the environment (Function App settings).
#[derive(Debug, Clone)]
pub struct Settings {
    pub webhook_secrets: Vec<Secret>,
    pub github_auth: GitHubAuth,
    pub github_api_url: String,
    pub hook_scope: Option<HookScope>,
    pub hook_id: Option<u64>,
    /// `owner` or `owner/repo` for org and repo hooks (`GITHUB_HOOK_OWNER`, `GITHUB_HOOK_REPOSITORY`).
    pub hook_target: Option<String>,
    pub azure: AzureSettings,
    pub config_path: String,
    pub config_inline: Option<Secret>,
    /// `RUNNER_DISPATCH_ADMIN_TOKEN`: standalone only, the bearer token for the envelope
    /// routes; unset, standalone does not serve them.
    pub admin_token: Option<Secret>,
}

impl Settings {
    /// Reads settings through `lookup` (the process environment in production).
    ///
    /// # Errors
    /// Every missing or malformed setting, each named.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigErrors> {
        let get = |k: &str| lookup(k).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        let mut problems = Vec::new();
        let mut err =
            |key: &str, message: String| problems.push(ConfigProblem { key: key.into(), message, warning: false });

        let webhook_secrets: Vec<Secret> = get("GITHUB_WEBHOOK_SECRET")
            .map(|v| v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(Secret::from).collect())
            .unwrap_or_default();
        if webhook_secrets.is_empty() {
            err(
                "GITHUB_WEBHOOK_SECRET",
                "required: the webhook secret set on the GitHub App or hook (comma-separated to rotate)".into(),
            );
        }

        let installation_id = match get("GITHUB_APP_INSTALLATION_ID") {
            None => None,
            Some(v) => match v.parse::<u64>() {
                Ok(n) => Some(n),
                Err(_) => {
                    err("GITHUB_APP_INSTALLATION_ID", "must be a number".into());
                    None
                }
            },
        };
        let app_id = get("GITHUB_APP_ID").or_else(|| get("GITHUB_APP_CLIENT_ID"));
        let github_auth = match (app_id, get("GITHUB_APP_PRIVATE_KEY"), get("GITHUB_TOKEN")) {
            (Some(app_id), Some(key), _) => {
                // Key Vault and portal settings sometimes flatten newlines to "\n".
                let key = key.replace("\\n", "\n");
                if !key.contains("-----BEGIN") || !key.contains("PRIVATE KEY-----") {
                    err("GITHUB_APP_PRIVATE_KEY", "is not a PEM private key (expected -----BEGIN RSA PRIVATE KEY----- ...); paste the .pem file GitHub gave you".into());
                }
                GitHubAuth::App { app_id, private_key: Secret::new(key), installation_id }
            }
            (Some(_), None, _) => {
                err("GITHUB_APP_PRIVATE_KEY", "required with GITHUB_APP_ID / GITHUB_APP_CLIENT_ID".into());
                GitHubAuth::None
            }
            (None, Some(_), _) => {
                err("GITHUB_APP_ID", "required with GITHUB_APP_PRIVATE_KEY (the App id or client id)".into());
                GitHubAuth::None
            }
            (None, None, Some(token)) => GitHubAuth::Token(Secret::new(token)),
            (None, None, None) => GitHubAuth::None,
        };

        // A guessable token would open the envelope routes (provision, cleanup, reconcile).
        if get("RUNNER_DISPATCH_ADMIN_TOKEN").is_some_and(|t| t.len() < MIN_ADMIN_TOKEN_CHARS) {
            err(
                "RUNNER_DISPATCH_ADMIN_TOKEN",
                format!(
                    "too short: use at least {MIN_ADMIN_TOKEN_CHARS} random characters (e.g. `openssl rand -hex 32`)"
                ),
            );
        }
        let github_api_url = get("GITHUB_API_URL").unwrap_or_else(|| "https://api.github.com".into());
        if !github_api_url.starts_with("http://") && !github_api_url.starts_with("https://") {
            err("GITHUB_API_URL", format!("{github_api_url:?} must be an http(s) URL"));
        }
        let hook_scope = match get("GITHUB_HOOK_SCOPE").map(|s| s.to_ascii_lowercase()) {
            None => None,
            Some(s) => match s.as_str() {
                "app" => Some(HookScope::App),
                "org" => Some(HookScope::Org),
                "repo" => Some(HookScope::Repo),
                _ => {
                    err("GITHUB_HOOK_SCOPE", format!("{s:?} is not one of: app, org, repo"));
                    None
                }
            },
        };
        let hook_id = match get("GITHUB_HOOK_ID") {
            None => None,
            Some(v) => v.parse().map_or_else(
                |_| {
                    err("GITHUB_HOOK_ID", "must be a number".into());
                    None
                },
                Some,
            ),
        };
        if matches!(hook_scope, Some(HookScope::Org | HookScope::Repo)) && hook_id.is_none() {
            err("GITHUB_HOOK_ID", "required when GITHUB_HOOK_SCOPE is org or repo".into());
        }
        let hook_target = get("GITHUB_HOOK_REPOSITORY").or_else(|| get("GITHUB_HOOK_OWNER"));

        let resource_manager_url =
            get("AZURE_RESOURCE_MANAGER_URL").unwrap_or_else(|| "https://management.azure.com".into());
        let azure = AzureSettings {
            subscription_id: get("AZURE_SUBSCRIPTION_ID"),
            resource_group: get("AZURE_RESOURCE_GROUP"),
            location: get("AZURE_LOCATION"),
            resource_manager_url: resource_manager_url.trim_end_matches('/').to_owned(),
            batch_account_url: get("AZURE_BATCH_ACCOUNT_URL").map(|u| u.trim_end_matches('/').to_owned()),
            batch_account_name: get("AZURE_BATCH_ACCOUNT_NAME"),
            batch_account_key: get("AZURE_BATCH_ACCOUNT_KEY").map(Secret::new),
            client_id: get("AZURE_CLIENT_ID"),
            tenant_id: get("AZURE_TENANT_ID"),
            client_secret: get("AZURE_CLIENT_SECRET").map(Secret::new),
        };
        if azure.batch_account_key.is_some() && azure.batch_account_name.is_none() {
            err(
                "AZURE_BATCH_ACCOUNT_NAME",
                "required with AZURE_BATCH_ACCOUNT_KEY (Shared Key signs with the account name)".into(),
            );
        }
        if azure.client_secret.is_some() && (azure.client_id.is_none() || azure.tenant_id.is_none()) {
            err("AZURE_CLIENT_SECRET", "needs AZURE_CLIENT_ID and AZURE_TENANT_ID too (service principal)".into());
        }

        if !problems.is_empty() {
            return Err(ConfigErrors(problems));
        }
        Ok(Self {
            webhook_secrets,
            github_auth,
            github_api_url: github_api_url.trim_end_matches('/').to_owned(),
            hook_scope,
            hook_id,
            hook_target,
            azure,
            config_path: get("RUNNER_DISPATCH_CONFIG").unwrap_or_else(|| "runners.toml".into()),
            config_inline: get("RUNNER_DISPATCH_CONFIG_TOML").map(Secret::new),
            admin_token: get("RUNNER_DISPATCH_ADMIN_TOKEN").map(Secret::new),
        })
    }

    /// Reads settings from the process environment.
    ///
    /// # Errors
    /// See [`Settings::from_lookup`].
    pub fn from_env() -> Result<Self, ConfigErrors> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Loads the pools file: inline TOML first, then the file.
    ///
    /// # Errors
    /// The file cannot be read, or any validation problem.
    pub fn load_pools(&self) -> Result<PoolsConfig, ConfigErrors> {
        if let Some(inline) = &self.config_inline {
            return PoolsConfig::parse(inline.expose()).map_err(|mut e| {
                for p in &mut e.0 {
                    p.key = format!("RUNNER_DISPATCH_CONFIG_TOML: {}", p.key);
                }
                e
            });
        }
        let text = std::fs::read_to_string(&self.config_path).map_err(|e| {
            ConfigErrors(vec![ConfigProblem {
                key: "RUNNER_DISPATCH_CONFIG".into(),
                message: format!("cannot read pools file {:?}: {e}", self.config_path),
                warning: false,
            }])
        })?;
        PoolsConfig::parse(&text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn settings_report_every_missing_or_bad_variable() {
        let env = |k: &str| match k {
            "GITHUB_APP_ID" => Some("123".to_owned()),
            "GITHUB_APP_PRIVATE_KEY" => Some("not a key".to_owned()),
            "GITHUB_HOOK_SCOPE" => Some("org".to_owned()),
            _ => None,
        };
        let err = Settings::from_lookup(env).expect_err("broken");
        assert_eq!(keys(&err), vec!["GITHUB_WEBHOOK_SECRET", "GITHUB_APP_PRIVATE_KEY", "GITHUB_HOOK_ID"]);
        assert!(!err.to_string().contains("not a key"), "the key's value must not be echoed");
    }

    #[test]
    fn webhook_secrets_accept_a_comma_separated_list() {
        let s = Settings::from_lookup(|k| (k == "GITHUB_WEBHOOK_SECRET").then(|| "old, new".to_owned())).expect("ok");
        assert_eq!(s.webhook_secrets.len(), 2);
        assert_eq!(s.webhook_secrets[1].expose(), "new");
        assert!(matches!(s.github_auth, GitHubAuth::None));
    }
}
