//! Chooses and builds the live GitHub client and Azure backends from the settings.

use std::sync::Arc;

use crate::config::{Backend, ConfigProblem, GitHubAuth, Pool, PoolsConfig, Settings};
use crate::github::RunnerRegistry;
use crate::provision::Backends;

/// Settings the pools need but the environment lacks, each named: asked of every backend
/// that at least one enabled pool uses.
#[must_use]
pub fn azure_setting_problems(settings: &Settings, pools: &PoolsConfig) -> Vec<ConfigProblem> {
    Backend::ALL
        .into_iter()
        .flat_map(|kind| {
            let of_kind: Vec<&Pool> = pools.pools.iter().filter(|p| p.backend() == kind).map(AsRef::as_ref).collect();
            if of_kind.iter().any(|p| p.enabled) { kind.required_settings(settings, &of_kind) } else { Vec::new() }
        })
        .collect()
}

/// The live GitHub client and Azure backends.
///
/// # Errors
/// Missing or unusable credentials and settings, in words.
pub fn live_clients(settings: &Settings, pools: &PoolsConfig) -> anyhow::Result<(Arc<dyn RunnerRegistry>, Backends)> {
    if matches!(settings.github_auth, GitHubAuth::None) {
        anyhow::bail!("no GitHub credentials: set GITHUB_APP_ID and GITHUB_APP_PRIVATE_KEY, or GITHUB_TOKEN");
    }
    let problems = azure_setting_problems(settings, pools);
    if !problems.is_empty() {
        anyhow::bail!(
            "missing Azure settings:\n{}",
            problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")
        );
    }
    let backends = crate::azure::live_backends(settings).map_err(|e| anyhow::anyhow!("Azure credentials: {e}"))?;
    let github =
        crate::github::client::GitHubClient::new(settings).map_err(|e| anyhow::anyhow!("GitHub client: {e}"))?;
    Ok((Arc::new(github), backends))
}

/// Live checks against GitHub and Azure; prints a line per check, returns the failures.
pub async fn live_checks(settings: &Settings, pools: &PoolsConfig) -> usize {
    use crate::config::RunnerScope;
    use crate::github::{JobContext, RunnerTarget};

    let mut failures = 0usize;
    let (github, backends) = match live_clients(settings, pools) {
        Ok(c) => c,
        Err(e) => {
            println!("FAIL  {e:#}");
            return 1;
        }
    };
    // GitHub: the credentials can mint a token and list runners where runners register.
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
    for target in targets {
        let owner = match &target {
            RunnerTarget::Org { org } => org.clone(),
            RunnerTarget::Repo { owner, .. } => owner.clone(),
            RunnerTarget::Enterprise { enterprise } => enterprise.clone(),
        };
        let job = JobContext { target: target.clone(), repository: format!("{owner}/-"), owner, installation_id: None };
        match github.list_runners(&job).await {
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
    if settings.hook_scope.is_some() {
        let since = time::OffsetDateTime::now_utc() - time::Duration::minutes(20);
        match github.list_deliveries(since).await {
            Ok(d) => println!(
                "ok    GitHub: hook deliveries readable ({} in the last 20 min): reconcile can redeliver",
                d.len()
            ),
            Err(e) => {
                failures += 1;
                println!("FAIL  GitHub: cannot read hook deliveries (GITHUB_HOOK_SCOPE/GITHUB_HOOK_ID): {e}");
            }
        }
    } else {
        println!("warn  GITHUB_HOOK_SCOPE not set: reconcile will not redeliver missed webhooks");
    }
    // Isolation: pools that carry something worth protecting need their own runner group,
    // restricted to selected repositories with public repositories off.
    let client = crate::github::client::GitHubClient::new(settings).ok();
    for pool in pools.pools.iter().filter(|p| p.enabled && (p.identity.is_some() || !p.repositories.is_empty())) {
        if pools.github.runner_scope == RunnerScope::Repo {
            println!("ok    pool {}: repository-scope runners are isolated per repository", pool.name);
            continue;
        }
        let group = pool.runner_group_id.unwrap_or(1);
        if !pool.own_runner_group || group == 1 {
            failures += 1;
            println!(
                "FAIL  pool {}: has repositories or an identity but uses runner group {group} (shared or Default): any repository that group admits can take its runners",
                pool.name
            );
            continue;
        }
        let Some(client) = &client else { continue };
        for org in &pools.github.allowed_owners {
            let job = JobContext {
                target: RunnerTarget::Org { org: org.clone() },
                repository: format!("{org}/-"),
                owner: org.clone(),
                installation_id: None,
            };
            match client.runner_group(&job, org, group).await {
                Ok(g) if g.visibility == "all" || g.allows_public_repositories => {
                    failures += 1;
                    println!(
                        "FAIL  pool {}: runner group {} ({}) in {org} has visibility {:?}{}: restrict it to the pool's repositories and turn public repositories off",
                        pool.name,
                        g.id,
                        g.name,
                        g.visibility,
                        if g.allows_public_repositories { " and allows public repositories" } else { "" }
                    );
                }
                Ok(g) => println!(
                    "ok    pool {}: runner group {} ({}) in {org} is restricted ({}), public repositories off",
                    pool.name, g.id, g.name, g.visibility
                ),
                Err(crate::github::GitHubError::NotFound(_)) => {}
                Err(e) => {
                    failures += 1;
                    println!("FAIL  pool {}: cannot read runner group {group} in {org}: {e}", pool.name);
                }
            }
        }
    }
    // Azure: each pool's compute can be listed with the app's identity.
    for pool in pools.pools.iter().filter(|p| p.enabled) {
        let backend = backends.for_pool(pool);
        match backend.list(pool).await {
            Ok(list) => println!(
                "ok    Azure: pool {} ({}) reachable, {} runner(s) now",
                pool.name,
                pool.backend().as_str(),
                list.len()
            ),
            Err(e) => {
                failures += 1;
                println!("FAIL  Azure: pool {} ({}): {e}", pool.name, pool.backend().as_str());
            }
        }
    }
    failures
}
