//! `doctor`: checks the live settings and says what is wrong in words, one line per check
//! (`ok`, `warn`, `skip` or `FAIL`), then the number of problems.

use std::process::ExitCode;

use crate::app::{LiveClients, live_clients};
use crate::config::{DEFAULT_RUNNER_GROUP_ID, GitHubAuth, GitHubConfig, Pool, PoolsConfig, RunnerScope, Settings};
use crate::github::GroupRepositories;
use crate::github::client::GitHubClient;
use crate::github::{GitHubError, JobContext, RunnerRegistry, RunnerTarget};
use crate::glob::Glob;

/// Runs every check and prints one line per finding.
pub(super) async fn doctor() -> ExitCode {
    let mut failures = 0usize;
    let ok = |msg: &str| println!("ok    {msg}");
    let settings = match Settings::from_env() {
        Ok(s) => {
            ok("settings are complete and well-formed");
            s
        }
        Err(e) => {
            for p in &e.0 {
                println!("FAIL  {p}");
            }
            return ExitCode::FAILURE;
        }
    };
    let pools = match settings.load_pools() {
        Ok(p) => {
            ok(&format!("pools file: {} pool(s)", p.pools.len()));
            p
        }
        Err(e) => {
            for p in &e.0 {
                println!("FAIL  {p}");
            }
            return ExitCode::FAILURE;
        }
    };
    for w in &pools.warnings {
        println!("warn  {w}");
    }
    for p in crate::backends::azure_setting_problems(&settings, &pools) {
        failures += 1;
        println!("FAIL  {p}");
    }
    if matches!(settings.github_auth, GitHubAuth::None) {
        failures += 1;
        println!("FAIL  no GitHub credentials (GITHUB_APP_ID + GITHUB_APP_PRIVATE_KEY, or GITHUB_TOKEN)");
    }
    failures += live_checks(&settings, &pools).await;
    if failures > 0 {
        println!("{failures} problem(s)");
        ExitCode::FAILURE
    } else {
        println!("all checks passed");
        ExitCode::SUCCESS
    }
}

/// Live checks against GitHub and Azure with the clients `serve` would build; prints a
/// line per check, returns the failures.
async fn live_checks(settings: &Settings, pools: &PoolsConfig) -> usize {
    let LiveClients { github, backends } = match live_clients(settings, pools) {
        Ok(c) => c,
        Err(e) => {
            println!("FAIL  {e:#}");
            return 1;
        }
    };
    let mut failures = runner_access(&github, pools).await;
    failures += hook_access(&github, settings).await;
    failures += runner_group_isolation(&github, pools).await;
    // Azure: each pool's compute can be listed with the app's identity.
    for pool in pools.pools.iter().filter(|p| p.enabled) {
        for (place, reached) in backends.for_pool(pool).reach(pool).await {
            let place = if place.is_empty() { String::new() } else { format!(" {place}") };
            match reached {
                Ok(n) => println!(
                    "ok    Azure: pool {} ({}){place} reachable, {n} runner(s) now",
                    pool.name,
                    pool.backend().as_str(),
                ),
                Err(e) => {
                    failures += 1;
                    println!("FAIL  Azure: pool {} ({}){place}: {e}", pool.name, pool.backend().as_str());
                }
            }
        }
    }
    failures
}

/// A job context for calls about an owner rather than a job (no repository, no installation).
fn owner_job(target: RunnerTarget, owner: &str) -> JobContext {
    JobContext { target, repository: format!("{owner}/-"), owner: owner.to_owned(), installation_id: None }
}

/// GitHub: the credentials can mint a token and list runners where runners register.
async fn runner_access(github: &GitHubClient, pools: &PoolsConfig) -> usize {
    let targets: Vec<RunnerTarget> = match pools.github.runner_scope {
        RunnerScope::Org => pools.github.allowed_owners.iter().map(|o| RunnerTarget::Org { org: o.clone() }).collect(),
        RunnerScope::Enterprise => {
            vec![RunnerTarget::Enterprise { enterprise: pools.github.enterprise.clone().unwrap_or_default() }]
        }
        RunnerScope::Repo => Vec::new(),
    };
    if targets.is_empty() {
        println!("skip  runner_scope = \"repo\": runner access is checked per repository when jobs arrive");
    }
    let mut failures = 0;
    for target in targets {
        let owner = match &target {
            RunnerTarget::Org { org } => org.clone(),
            RunnerTarget::Repo { owner, .. } => owner.clone(),
            RunnerTarget::Enterprise { enterprise } => enterprise.clone(),
        };
        match github.list_runners(&owner_job(target.clone(), &owner)).await {
            Ok(list) => {
                let ours = list.iter().filter(|r| pools.job_id_of_runner(&r.name).is_some()).count();
                println!("ok    GitHub: /{} lists {} runner(s), {ours} of them ours", target.api_prefix(), list.len());
            }
            Err(e) => {
                failures += 1;
                println!("FAIL  GitHub: cannot list runners of /{}: {e}", target.api_prefix());
            }
        }
    }
    failures
}

/// GitHub: the hook's deliveries can be read, so reconcile can redeliver missed webhooks.
async fn hook_access(github: &GitHubClient, settings: &Settings) -> usize {
    if settings.hook_scope.is_none() {
        println!("warn  GITHUB_HOOK_SCOPE not set: reconcile will not redeliver missed webhooks");
        return 0;
    }
    let since = time::OffsetDateTime::now_utc() - time::Duration::minutes(20);
    match github.list_deliveries(since).await {
        Ok(d) => {
            println!(
                "ok    GitHub: hook deliveries readable ({} in the last 20 min): reconcile can redeliver",
                d.len()
            );
            0
        }
        Err(e) => {
            println!("FAIL  GitHub: cannot read hook deliveries (GITHUB_HOOK_SCOPE/GITHUB_HOOK_ID): {e}");
            1
        }
    }
}

/// Isolation: pools that carry something worth protecting (an identity, a repository
/// filter) or keep idle runners while something restricts who may use them need their own
/// runner group, admitting no more repositories than the pool does, public ones only when
/// `allow_public_repositories`.
async fn runner_group_isolation(github: &GitHubClient, pools: &PoolsConfig) -> usize {
    let gh = &pools.github;
    let mut failures = 0;
    let guarded = |p: &Pool| {
        p.enabled && (p.identity.is_some() || !p.repositories.is_empty() || p.keeps_restricted_idle_runners(gh))
    };
    for pool in pools.pools.iter().filter(|p| guarded(p)) {
        if gh.runner_scope == RunnerScope::Repo {
            println!("ok    pool {}: repository-scope runners are isolated per repository", pool.name);
            continue;
        }
        let group = pool.runner_group_id.unwrap_or(DEFAULT_RUNNER_GROUP_ID);
        if !pool.own_runner_group || group == DEFAULT_RUNNER_GROUP_ID {
            failures += 1;
            println!(
                "FAIL  pool {}: restricts who may use it but uses runner group {group} (shared or Default): any repository that group admits can take its runners",
                pool.name
            );
            continue;
        }
        for org in &gh.allowed_owners {
            let job = owner_job(RunnerTarget::Org { org: org.clone() }, org);
            let read = async {
                let g = github.runner_group(&job, org, group).await?;
                let selected = if g.visibility == "selected" {
                    Some(github.runner_group_repositories(&job, org, group).await?)
                } else {
                    None
                };
                Ok::<_, GitHubError>((g, selected))
            };
            match read.await {
                Ok((g, selected)) => {
                    let wider = group_wider_than_pool(
                        pool,
                        gh,
                        org,
                        &g.visibility,
                        g.allows_public_repositories,
                        selected.as_ref(),
                    );
                    if wider.is_empty() {
                        let listed = selected.map_or(String::new(), |s| {
                            format!(", {} repositories, each one the pool admits", s.repositories.len())
                        });
                        println!(
                            "ok    pool {}: runner group {} ({}) in {org} is restricted ({}{listed}), public repositories off",
                            pool.name, g.id, g.name, g.visibility
                        );
                    } else {
                        failures += 1;
                        println!(
                            "FAIL  pool {}: runner group {} ({}) in {org} {}: restrict it to the pool's repositories and turn public repositories off",
                            pool.name,
                            g.id,
                            g.name,
                            wider.join("; ")
                        );
                    }
                }
                Err(GitHubError::NotFound(_)) => {}
                Err(e) => {
                    failures += 1;
                    println!("FAIL  pool {}: cannot read runner group {group} in {org}: {e}", pool.name);
                }
            }
        }
    }
    failures
}

/// Whether `globs` (a `repositories` filter) admits every repository of `org`: no filter,
/// or one glob `<org>/*`.
fn admits_whole_org(globs: &[Glob], org: &str) -> bool {
    globs.is_empty()
        || globs.iter().any(|g| g.pattern().split_once('/').is_some_and(|(o, r)| r == "*" && Glob::new(o).matches(org)))
}

/// How a runner group of `org` admits more than `pool` does (its `repositories` and the
/// deployment's `allowed_repositories`), in words; empty when it admits no more.
/// `selected`: the group's repository list, read when its visibility is `selected`.
#[must_use]
pub fn group_wider_than_pool(
    pool: &Pool,
    github: &GitHubConfig,
    org: &str,
    visibility: &str,
    allows_public: bool,
    selected: Option<&GroupRepositories>,
) -> Vec<String> {
    let mut wider = Vec::new();
    let filters = [&pool.repositories, &github.allowed_repositories];
    let whole_org = filters.iter().all(|f| admits_whole_org(f, org));
    match (visibility, selected) {
        ("selected", Some(list)) => {
            let outside: Vec<&str> = list
                .repositories
                .iter()
                .filter(|r| !filters.iter().all(|f| f.is_empty() || f.iter().any(|g| g.matches(&r.full_name))))
                .map(|r| r.full_name.as_str())
                .collect();
            if !outside.is_empty() {
                wider.push(format!("admits {} outside the pool's repositories", outside.join(", ")));
            }
            let public: Vec<&str> =
                list.repositories.iter().filter(|r| r.is_public()).map(|r| r.full_name.as_str()).collect();
            if !public.is_empty() && !github.allow_public_repositories {
                wider.push(format!("admits public repositories {}", public.join(", ")));
            }
            let read = u64::try_from(list.repositories.len()).unwrap_or(u64::MAX);
            if list.total_count > read {
                wider.push(format!("admits {} repositories, more than the {read} doctor could read", list.total_count));
            }
        }
        ("selected", None) => wider.push("has visibility \"selected\" but its repositories were not read".into()),
        (other, _) if !whole_org => {
            wider.push(format!(
                "has visibility {other:?} (every{} repository of the organisation)",
                if other == "private" { " private" } else { "" }
            ));
        }
        _ => {}
    }
    if allows_public && !github.allow_public_repositories {
        wider.push("allows public repositories".into());
    }
    wider
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::github::GroupRepository;

    fn pools(github: &str, pool: &str) -> PoolsConfig {
        PoolsConfig::parse(&format!(
            "[github]\nallowed_owners = [\"octo-org\"]\n{github}\n[[pools]]\nname = \"p\"\nbackend = \"aci\"\nlabels = [\"l\"]\nimage = \"i\"\nrunner_group_id = 7\n{pool}\n"
        ))
        .expect("valid")
    }

    fn listed(names: &[&str]) -> GroupRepositories {
        let repositories: Vec<GroupRepository> = names
            .iter()
            .map(|n| GroupRepository { full_name: (*n).into(), private: true, visibility: Some("private".into()) })
            .collect();
        GroupRepositories { total_count: repositories.len() as u64, repositories }
    }

    #[test]
    fn a_group_is_measured_against_the_pools_repositories_and_the_deployments_allowlist() {
        let api = pools("", "repositories = [\"octo-org/api-*\"]");
        let wider = |c: &PoolsConfig, visibility: &str, list: Option<&GroupRepositories>| {
            group_wider_than_pool(&c.pools[0], &c.github, "octo-org", visibility, false, list)
        };
        assert!(wider(&api, "selected", Some(&listed(&["octo-org/api-gw", "octo-org/API-db"]))).is_empty());
        assert_eq!(
            wider(&api, "selected", Some(&listed(&["octo-org/api-gw", "octo-org/web"]))),
            ["admits octo-org/web outside the pool's repositories"]
        );
        assert_eq!(wider(&api, "all", None), ["has visibility \"all\" (every repository of the organisation)"]);
        assert_eq!(
            wider(&api, "private", None),
            ["has visibility \"private\" (every private repository of the organisation)"]
        );
        // A pool that admits the whole organisation is no narrower than such a group...
        let org = pools("", "repositories = [\"octo-org/*\"]");
        assert!(wider(&org, "all", None).is_empty());
        // ...unless the deployment admits fewer repositories.
        let allowlisted = pools("allowed_repositories = [\"octo-org/api\"]", "repositories = [\"octo-org/*\"]");
        assert!(!wider(&allowlisted, "all", None).is_empty());
        assert!(!wider(&allowlisted, "selected", Some(&listed(&["octo-org/web"]))).is_empty());
        // A list longer than what was read cannot be vouched for.
        let mut truncated = listed(&["octo-org/api-gw"]);
        truncated.total_count = 20_000;
        assert!(wider(&api, "selected", Some(&truncated))[0].contains("more than the 1 doctor could read"));
        // Public repositories: only with allow_public_repositories.
        assert_eq!(
            group_wider_than_pool(&api.pools[0], &api.github, "octo-org", "selected", true, Some(&listed(&[]))),
            ["allows public repositories"]
        );
        let public = pools("allow_public_repositories = true", "repositories = [\"octo-org/api-*\"]");
        assert!(
            group_wider_than_pool(&public.pools[0], &public.github, "octo-org", "selected", true, Some(&listed(&[])))
                .is_empty()
        );
    }
}
