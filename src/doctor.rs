//! `doctor`: checks the live settings and says what is wrong in words.

use std::process::ExitCode;

use crate::config::{GitHubAuth, Settings};

/// Runs every check and prints one line per finding.
pub async fn run() -> ExitCode {
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
    for p in crate::wiring::azure_setting_problems(&settings, &pools) {
        failures += 1;
        println!("FAIL  {p}");
    }
    if matches!(settings.github_auth, GitHubAuth::None) {
        failures += 1;
        println!("FAIL  no GitHub credentials (GITHUB_APP_ID + GITHUB_APP_PRIVATE_KEY, or GITHUB_TOKEN)");
    }
    failures += crate::wiring::live_checks(&settings, &pools).await;
    if failures > 0 {
        println!("{failures} problem(s)");
        ExitCode::FAILURE
    } else {
        println!("all checks passed");
        ExitCode::SUCCESS
    }
}
