//! `check-config [--pools-only]`: every problem of the pools file and the settings, each with its key.

use std::process::ExitCode;

use super::{load_pools_from_env, print_problems};
use crate::config::{GitHubAuth, Settings};

pub(super) fn check_config(pools_only: bool) -> ExitCode {
    let mut errors = 0usize;
    let pools = match load_pools_from_env() {
        Ok(p) => {
            for w in &p.warnings {
                eprintln!("{w}");
            }
            Some(p)
        }
        Err(e) => {
            errors += e.0.iter().filter(|p| !p.warning).count();
            print_problems(&e);
            None
        }
    };
    if !pools_only {
        match Settings::from_env() {
            Ok(s) => {
                if matches!(s.github_auth, GitHubAuth::None) {
                    eprintln!(
                        "warning: GITHUB_APP_ID/GITHUB_APP_PRIVATE_KEY or GITHUB_TOKEN: none set; only dry-run provisioning will work"
                    );
                }
                if let Some(p) = &pools {
                    for problem in crate::backends::azure_setting_problems(&s, p) {
                        errors += 1;
                        eprintln!("{problem}");
                    }
                }
            }
            Err(e) => {
                errors += e.0.len();
                print_problems(&e);
            }
        }
    }
    if errors > 0 {
        eprintln!("{errors} problem(s) found");
        return ExitCode::FAILURE;
    }
    if let Some(p) = pools {
        println!(
            "ok: {} pool(s): {}",
            p.pools.len(),
            p.pools.iter().map(|p| p.name.as_str()).collect::<Vec<_>>().join(", ")
        );
    }
    ExitCode::SUCCESS
}
