//! `route --labels a,b,c [--repository owner/name]`: which pool a job would get, and why not the others.

use std::process::ExitCode;

use super::{load_pools_from_env, print_problems};
use crate::routing::explain_route;

pub(super) fn route(labels: &[String], repository: Option<&str>) -> ExitCode {
    let pools = match load_pools_from_env() {
        Ok(p) => p,
        Err(e) => {
            print_problems(&e);
            return ExitCode::FAILURE;
        }
    };
    let lines = explain_route(&pools, labels, repository);
    let chosen = lines.iter().find(|l| l.chosen).map(|l| l.pool.clone());
    println!("job labels [{}]{}", labels.join(", "), repository.map(|r| format!(" in {r}")).unwrap_or_default());
    for (line, pool) in lines.iter().zip(&pools.pools) {
        let verdict = match (&line.verdict, line.chosen) {
            (Ok(()), true) => "CHOSEN".to_owned(),
            (Ok(()), false) => "fits, but loses on precedence".to_owned(),
            (Err(m), _) => format!("no: {m}"),
        };
        let filter = if pool.repositories.is_empty() {
            String::new()
        } else {
            format!(" repositories [{}]", pool.repositories.iter().map(|g| g.pattern()).collect::<Vec<_>>().join(", "))
        };
        println!("  {:<24} {:<40} labels [{}]{filter}", line.pool, verdict, pool.labels.join(", "));
    }
    match chosen {
        Some(p) => {
            println!("=> pool {p} (repository filter first, then fewest labels, then file order)");
            ExitCode::SUCCESS
        }
        None => {
            println!("=> no pool fits: the job would be acknowledged (200) and not provisioned");
            ExitCode::from(2)
        }
    }
}
