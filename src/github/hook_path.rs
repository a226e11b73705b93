//! Which webhook the client lists and redelivers, from the settings: the App's, an org's
//! or a repository's, and where its installation is found.

use crate::config::HookScope;

/// What `list_deliveries` and `redeliver` act on: `app/hook`, `orgs/{org}/hooks/{id}` or
/// `repos/{o}/{r}/hooks/{id}`, plus where to find the installation for the last two.
#[derive(Debug, Clone)]
pub(super) struct HookPath {
    pub(super) scope: HookScope,
    pub(super) prefix: Result<String, String>,
    /// `orgs/{org}` or `repos/{o}/{r}` for the installation lookup (org/repo hooks).
    pub(super) owner_path: Option<String>,
}

pub(super) fn hook_path(scope: HookScope, hook_id: Option<u64>, target: Option<&str>) -> HookPath {
    let target = target.map(|t| t.trim_matches('/'));
    match scope {
        HookScope::App => HookPath { scope, prefix: Ok("app/hook".into()), owner_path: None },
        HookScope::Org => {
            let org = target.map(|t| t.split('/').next().unwrap_or(t).to_owned());
            let prefix = match (&org, hook_id) {
                (Some(org), Some(id)) => Ok(format!("orgs/{org}/hooks/{id}")),
                (None, _) => Err("GITHUB_HOOK_SCOPE=org needs GITHUB_HOOK_OWNER (the organisation)".to_owned()),
                (_, None) => Err("GITHUB_HOOK_SCOPE=org needs GITHUB_HOOK_ID".to_owned()),
            };
            HookPath { scope, prefix, owner_path: org.map(|o| format!("orgs/{o}")) }
        }
        HookScope::Repo => {
            let repo = target.filter(|t| t.split('/').count() == 2 && !t.starts_with('/') && !t.ends_with('/'));
            let prefix = match (repo, hook_id) {
                (Some(repo), Some(id)) => Ok(format!("repos/{repo}/hooks/{id}")),
                (None, _) => Err("GITHUB_HOOK_SCOPE=repo needs GITHUB_HOOK_REPOSITORY (owner/repo)".to_owned()),
                (_, None) => Err("GITHUB_HOOK_SCOPE=repo needs GITHUB_HOOK_ID".to_owned()),
            };
            HookPath { scope, prefix, owner_path: repo.map(|r| format!("repos/{r}")) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hook_paths_follow_the_scope() {
        assert_eq!(hook_path(HookScope::App, None, None).prefix.as_deref(), Ok("app/hook"));
        let org = hook_path(HookScope::Org, Some(7), Some("octo-org"));
        assert_eq!(org.prefix.as_deref(), Ok("orgs/octo-org/hooks/7"));
        assert_eq!(org.owner_path.as_deref(), Some("orgs/octo-org"));
        // GITHUB_HOOK_REPOSITORY set with an org hook: the owner part is the org.
        assert_eq!(
            hook_path(HookScope::Org, Some(7), Some("octo-org/r")).prefix.as_deref(),
            Ok("orgs/octo-org/hooks/7")
        );
        let repo = hook_path(HookScope::Repo, Some(9), Some("o/r"));
        assert_eq!(repo.prefix.as_deref(), Ok("repos/o/r/hooks/9"));
        assert_eq!(repo.owner_path.as_deref(), Some("repos/o/r"));
        assert!(hook_path(HookScope::Repo, Some(9), Some("just-owner")).prefix.is_err());
        assert!(hook_path(HookScope::Org, None, Some("o")).prefix.is_err());
    }
}
