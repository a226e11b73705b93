//! `github-app-manifest`: a GitHub App manifest with exactly the permissions and events
//! the chosen runner scope, token mode and hook scope need.

use std::process::ExitCode;

use serde_json::{Map, Value, json};

/// Options of `github-app-manifest`.
#[derive(Debug, Clone, clap::Args)]
pub struct ManifestArgs {
    /// Where runners register: org | repo | enterprise.
    #[arg(long, default_value = "org")]
    pub scope: String,
    /// Which webhook reconcile reads deliveries of: app | org | repo.
    #[arg(long, default_value = "app")]
    pub hook_scope: String,
    /// The webhook URL, e.g. https://<app>.azurewebsites.net/api/github-webhook
    #[arg(long, default_value = "https://REPLACE-ME.azurewebsites.net/api/github-webhook")]
    pub webhook_url: String,
    /// The App's name (at most 34 characters, unique on GitHub).
    #[arg(long, default_value = "runner-dispatch")]
    pub name: String,
    /// For `check_job_queued = "never"`. Kept for scripts: Actions read stays in the
    /// manifest, since an App without it receives no `workflow_job` events at all.
    #[arg(long)]
    pub no_job_check: bool,
}

/// GitHub's limit on a GitHub App's name.
pub const MAX_APP_NAME_CHARS: usize = 34;

/// Builds the manifest.
///
/// # Errors
/// An unknown scope.
pub fn manifest(args: &ManifestArgs) -> Result<Value, String> {
    let name_chars = args.name.trim().chars().count();
    if name_chars == 0 || name_chars > MAX_APP_NAME_CHARS {
        return Err(format!(
            "--name must be 1 to {MAX_APP_NAME_CHARS} characters (GitHub's limit for App names); {name_chars} given"
        ));
    }
    let mut perms = Map::new();
    perms.insert("metadata".into(), json!("read"));
    match args.scope.as_str() {
        // Org runners: register, list and delete org self-hosted runners.
        "org" => {
            perms.insert("organization_self_hosted_runners".into(), json!("write"));
        }
        // Repository runners are managed under the repository administration permission.
        "repo" => {
            perms.insert("administration".into(), json!("write"));
        }
        "enterprise" => {
            return Err("enterprise runners cannot be managed by a GitHub App: use GITHUB_TOKEN with a token allowed to manage enterprise runners (manage_runners:enterprise)".into());
        }
        other => return Err(format!("--scope {other:?} is not one of: org, repo, enterprise")),
    }
    // Actions read: GitHub sends `workflow_job` only to Apps that hold it, and the job check
    // (GET /repos/{o}/{r}/actions/jobs/{id}) needs it too. `--no-job-check` cannot drop it.
    perms.insert("actions".into(), json!("read"));
    match args.hook_scope.as_str() {
        // App hook deliveries are read with the App JWT: no permission needed.
        "app" => {}
        "org" => {
            perms.insert("organization_hooks".into(), json!("write"));
        }
        "repo" => {
            perms.insert("repository_hooks".into(), json!("write"));
        }
        other => return Err(format!("--hook-scope {other:?} is not one of: app, org, repo")),
    }
    Ok(json!({
        "name": args.name,
        "url": "https://github.com/runner-dispatch/runner-dispatch",
        "description": "Starts one ephemeral self-hosted runner on Azure per queued workflow job.",
        "public": false,
        "hook_attributes": { "url": args.webhook_url, "active": args.hook_scope == "app" },
        "default_events": if args.hook_scope == "app" { json!(["workflow_job"]) } else { json!([]) },
        "default_permissions": perms,
    }))
}

/// Prints the manifest (stdout) and how to use it (stderr).
pub fn print(args: &ManifestArgs) -> ExitCode {
    match manifest(args) {
        Ok(m) => {
            println!("{}", serde_json::to_string_pretty(&m).unwrap_or_default());
            eprintln!(
                "Create the App from this manifest: POST it as the `manifest` form field to https://github.com/organizations/<org>/settings/apps/new (see docs/deploy.md), then store the App id and private key in Key Vault."
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(scope: &str, hook: &str) -> ManifestArgs {
        ManifestArgs {
            scope: scope.into(),
            hook_scope: hook.into(),
            webhook_url: "https://x/api/github-webhook".into(),
            name: "rd".into(),
            no_job_check: false,
        }
    }

    #[test]
    fn org_scope_with_app_hook_asks_for_runner_and_actions_permissions_only() {
        let m = manifest(&args("org", "app")).expect("ok");
        let p = m["default_permissions"].as_object().expect("perms");
        let mut keys: Vec<&str> = p.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, vec!["actions", "metadata", "organization_self_hosted_runners"]);
        assert_eq!(m["default_events"], json!(["workflow_job"]));
        assert_eq!(m["hook_attributes"]["url"], "https://x/api/github-webhook");
    }

    #[test]
    fn repo_scope_with_org_hook_uses_administration_and_org_hooks() {
        let m = manifest(&args("repo", "org")).expect("ok");
        assert_eq!(m["default_permissions"]["administration"], "write");
        assert_eq!(m["default_permissions"]["organization_hooks"], "write");
        assert!(m["default_permissions"].get("organization_self_hosted_runners").is_none());
        assert_eq!(m["hook_attributes"]["active"], false);
    }

    #[test]
    fn actions_read_stays_without_the_job_check_since_workflow_job_needs_it() {
        let m = manifest(&ManifestArgs { no_job_check: true, ..args("org", "app") }).expect("ok");
        assert_eq!(m["default_permissions"]["actions"], "read");
    }

    #[test]
    fn app_names_over_34_characters_are_refused() {
        let long = ManifestArgs { name: "runner-dispatch (a-long-organization)".into(), ..args("org", "app") };
        assert!(manifest(&long).expect_err("too long").contains("34"));
        let fits = ManifestArgs { name: "x".repeat(34), ..args("org", "app") };
        assert!(manifest(&fits).is_ok());
    }

    #[test]
    fn enterprise_scope_is_refused_with_the_alternative() {
        assert!(manifest(&args("enterprise", "app")).expect_err("refused").contains("GITHUB_TOKEN"));
    }
}
