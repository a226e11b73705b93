//! `doctor`: checks the live settings and says what is wrong in words, one line per check
//! (`ok`, `warn`, `skip` or `FAIL`), then the number of problems.

use std::process::ExitCode;

use crate::app::{LiveClients, live_clients};
use crate::config::{GitHubAuth, PoolsConfig, RunnerScope, Settings};
use crate::github::client::GitHubClient;
use crate::github::{GitHubError, JobContext, RunnerRegistry, RunnerTarget};

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

/// Isolation: pools that carry something worth protecting need their own runner group,
/// restricted to selected repositories with public repositories off.
async fn runner_group_isolation(github: &GitHubClient, pools: &PoolsConfig) -> usize {
    let mut failures = 0;
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
        for org in &pools.github.allowed_owners {
            let job = owner_job(RunnerTarget::Org { org: org.clone() }, org);
            match github.runner_group(&job, org, group).await {
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
