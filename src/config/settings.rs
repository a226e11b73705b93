//! Settings from the environment (Function App settings): the only place that reads it.

use super::{ConfigErrors, ConfigProblem, PoolsConfig};
use crate::secret::Secret;

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
    /// The Function App's own Blob endpoint (`AzureWebJobsStorage__blobServiceUri`, or
    /// from `AzureWebJobsStorage__accountName`): where the idle runners' demand log lives
    /// under the host.
    pub state_blob_url: Option<String>,
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
    /// `RUNNER_DISPATCH_MAX_ATTEMPTS`: the attempt at which a failing request is given up;
    /// `None`: the default (`worker::DEFAULT_MAX_ATTEMPTS`, equal to host.json's
    /// `maxDequeueCount`).
    pub max_attempts: Option<u32>,
    /// `RUNNER_DISPATCH_SPOOL_MAX`: standalone, the most requests pending in the spool
    /// before deliveries get 503; `None`: `spool::DEFAULT_SPOOL_MAX`.
    pub spool_max: Option<usize>,
    /// `FUNCTIONS_CUSTOMHANDLER_PORT`: set by the Functions host, which then owns the
    /// envelope routes; `None` standalone.
    pub host_port: Option<u16>,
    /// `RUNNER_DISPATCH_LOG_FORMAT`: `json` or `pretty`/`text`; `None`: JSON under the host,
    /// text otherwise.
    pub log_format: Option<crate::telemetry::LogFormat>,
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

        let github_auth = github_auth(&get, &mut err);

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

        let azure = azure_settings(&get, &mut err);

        let mut at_least_one = |key: &str| -> Option<u64> {
            let v = get(key)?;
            let n = v.parse::<u64>().ok().filter(|n| *n > 0);
            if n.is_none() {
                err(key, format!("{v:?} is not a whole number of at least 1"));
            }
            n
        };
        let max_attempts = at_least_one("RUNNER_DISPATCH_MAX_ATTEMPTS").map(|n| u32::try_from(n).unwrap_or(u32::MAX));
        let spool_max = at_least_one("RUNNER_DISPATCH_SPOOL_MAX").map(|n| usize::try_from(n).unwrap_or(usize::MAX));
        let log_format = get("RUNNER_DISPATCH_LOG_FORMAT").and_then(|v| {
            let format = crate::telemetry::LogFormat::parse(&v.to_ascii_lowercase());
            if format.is_none() {
                err("RUNNER_DISPATCH_LOG_FORMAT", format!("{v:?} is not one of: json, pretty, text"));
            }
            format
        });
        let host_port = match get("FUNCTIONS_CUSTOMHANDLER_PORT") {
            None => None,
            Some(v) => {
                let port = v.parse::<u16>().ok();
                if port.is_none() {
                    err("FUNCTIONS_CUSTOMHANDLER_PORT", format!("{v:?} is not a port number"));
                }
                port
            }
        };

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
            max_attempts,
            spool_max,
            host_port,
            log_format,
        })
    }

    /// The pools file alone, from `RUNNER_DISPATCH_CONFIG_TOML` or `RUNNER_DISPATCH_CONFIG`
    /// (default `runners.toml`): for `check-config --pools-only`, `route` and the demo, which
    /// need no other setting.
    ///
    /// # Errors
    /// The file cannot be read, or any validation problem.
    pub fn load_pools_from_env() -> Result<super::PoolsConfig, ConfigErrors> {
        let get = |k: &str| std::env::var(k).ok().map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        Self::pools_only(
            get("RUNNER_DISPATCH_CONFIG").unwrap_or_else(|| "runners.toml".into()),
            get("RUNNER_DISPATCH_CONFIG_TOML"),
        )
        .load_pools()
    }

    /// Settings that name only where the pools file is: everything else empty (no GitHub
    /// credentials, so a server built on them runs dry).
    #[must_use]
    pub fn pools_only(config_path: String, config_inline: Option<String>) -> Self {
        Self {
            webhook_secrets: Vec::new(),
            github_auth: GitHubAuth::None,
            github_api_url: "https://api.github.com".into(),
            hook_scope: None,
            hook_id: None,
            hook_target: None,
            azure: AzureSettings::default(),
            config_path,
            config_inline: config_inline.map(Secret::new),
            admin_token: None,
            max_attempts: None,
            spool_max: None,
            host_port: None,
            log_format: None,
        }
    }

    /// The first of `GITHUB_WEBHOOK_SECRET`'s secrets (the one `send-webhook` signs with).
    #[must_use]
    pub fn signing_secret_from_env() -> Option<Secret> {
        std::env::var("GITHUB_WEBHOOK_SECRET")
            .ok()
            .and_then(|s| s.split(',').next().map(|s| s.trim().to_owned()))
            .filter(|s| !s.is_empty())
            .map(Secret::new)
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

/// How the process authenticates to GitHub: an App (id or client id, and its key), a
/// token, or nothing.
fn github_auth(get: &impl Fn(&str) -> Option<String>, err: &mut impl FnMut(&str, String)) -> GitHubAuth {
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
    match (app_id, get("GITHUB_APP_PRIVATE_KEY"), get("GITHUB_TOKEN")) {
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
    }
}

/// Where compute goes and how to reach it (every value optional: each backend names
/// what it needs).
fn azure_settings(get: &impl Fn(&str) -> Option<String>, err: &mut impl FnMut(&str, String)) -> AzureSettings {
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
        state_blob_url: get("AzureWebJobsStorage__blobServiceUri")
            .or_else(|| get("AzureWebJobsStorage__accountName").map(|a| format!("https://{a}.blob.core.windows.net")))
            .map(|u| u.trim_end_matches('/').to_owned()),
    };
    // Both are segments of every ARM URL: refuse anything that could leave its segment.
    if let Some(Err(e)) = azure.subscription_id.as_deref().map(super::azure_names::check_subscription_id) {
        err("AZURE_SUBSCRIPTION_ID", e);
    }
    if let Some(Err(e)) = azure.resource_group.as_deref().map(super::azure_names::check_resource_group) {
        err("AZURE_RESOURCE_GROUP", e);
    }
    if azure.batch_account_key.is_some() && azure.batch_account_name.is_none() {
        err(
            "AZURE_BATCH_ACCOUNT_NAME",
            "required with AZURE_BATCH_ACCOUNT_KEY (Shared Key signs with the account name)".into(),
        );
    }
    if azure.client_secret.is_some() && (azure.client_id.is_none() || azure.tenant_id.is_none()) {
        err("AZURE_CLIENT_SECRET", "needs AZURE_CLIENT_ID and AZURE_TENANT_ID too (service principal)".into());
    }
    azure
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(e: &ConfigErrors) -> Vec<&str> {
        e.0.iter().filter(|p| !p.warning).map(|p| p.key.as_str()).collect()
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
    fn the_subscription_and_resource_group_settings_must_stay_in_their_url_segment() {
        let env = |sub: &'static str, rg: &'static str| {
            move |k: &str| match k {
                "GITHUB_WEBHOOK_SECRET" => Some("s".to_owned()),
                "AZURE_SUBSCRIPTION_ID" => Some(sub.to_owned()),
                "AZURE_RESOURCE_GROUP" => Some(rg.to_owned()),
                _ => None,
            }
        };
        let err = Settings::from_lookup(env("sub/../../x", "rg/../../..")).expect_err("refused");
        assert_eq!(keys(&err), vec!["AZURE_SUBSCRIPTION_ID", "AZURE_RESOURCE_GROUP"]);
        Settings::from_lookup(env("00000000-0000-0000-0000-000000000000", "rg-runners")).expect("valid");
    }

    #[test]
    fn webhook_secrets_accept_a_comma_separated_list() {
        let s = Settings::from_lookup(|k| (k == "GITHUB_WEBHOOK_SECRET").then(|| "old, new".to_owned())).expect("ok");
        assert_eq!(s.webhook_secrets.len(), 2);
        assert_eq!(s.webhook_secrets[1].expose(), "new");
        assert!(matches!(s.github_auth, GitHubAuth::None));
    }
}
