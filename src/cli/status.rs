//! `status [--json]`: per pool, the idle target and why, what the runners are doing, the
//! oldest one, and the last hour's idle runner-minutes and time to runner.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use crate::config::Settings;
use crate::provision::Provisioner;
use crate::reconcile::{PoolStatus, Reconciler};

pub async fn status(json: bool, state_dir: Option<&Path>) -> ExitCode {
    let settings = match Settings::from_env() {
        Ok(s) => s,
        Err(e) => {
            super::print_problems(&e);
            return ExitCode::FAILURE;
        }
    };
    let pools = match settings.load_pools() {
        Ok(p) => Arc::new(p),
        Err(e) => {
            super::print_problems(&e);
            return ExitCode::FAILURE;
        }
    };
    let (github, backends) = match crate::app::live_clients(&settings, &pools) {
        Ok(c) => (c.github as Arc<dyn crate::github::RunnerRegistry>, c.backends),
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    // The demand log a deployment writes: the state directory standalone, the Function
    // App's storage account when its blob endpoint is set.
    let demand =
        crate::app::demand_log(&settings, state_dir, state_dir.is_none() && settings.azure.state_blob_url.is_some());
    let provisioner = Arc::new(Provisioner::new(pools, github, backends).with_demand_log(demand));
    let report = Reconciler::new(provisioner, false).status().await;
    // A standalone server's spool: what waits to be provisioned, per pool.
    let spool = state_dir.map(|dir| (SpoolDepth::read(&crate::spool::Spool::existing(dir)), dir));
    if json {
        let mut value = serde_json::to_value(&report).unwrap_or_default();
        if let (Some((depth, _)), Some(pools)) = (&spool, value.as_array_mut()) {
            for pool in pools {
                let name = pool["pool"].as_str().unwrap_or_default();
                pool["spool_pending"] = depth.by_pool.get(name).copied().unwrap_or(0).into();
            }
        }
        println!("{}", serde_json::to_string_pretty(&value).unwrap_or_default());
    } else {
        if let Some((depth, dir)) = &spool {
            let max = settings.spool_max.unwrap_or(crate::spool::DEFAULT_SPOOL_MAX);
            print!("{}", depth.render(max, dir));
        }
        print!("{}", render(&report));
    }
    if report.iter().any(|p| !p.errors.is_empty()) { ExitCode::FAILURE } else { ExitCode::SUCCESS }
}

/// The requests a standalone spool holds.
#[derive(Debug, Default, PartialEq)]
pub struct SpoolDepth {
    pub pending: usize,
    pub failed: usize,
    /// Pending requests by the pool they name.
    pub by_pool: std::collections::BTreeMap<String, usize>,
}

impl SpoolDepth {
    #[must_use]
    pub fn read(spool: &crate::spool::Spool) -> Self {
        let pending = spool.pending();
        let mut by_pool = std::collections::BTreeMap::new();
        for item in &pending {
            *by_pool.entry(item.message.pool.clone()).or_insert(0) += 1;
        }
        Self { pending: pending.len(), failed: spool.failed().len(), by_pool }
    }

    /// One line: the depth against its cap, by pool, and the given-up requests.
    #[must_use]
    pub fn render(&self, max: usize, dir: &Path) -> String {
        let by: Vec<String> = self.by_pool.iter().map(|(p, n)| format!("{p} {n}")).collect();
        let by = if by.is_empty() { String::new() } else { format!(" ({})", by.join(", ")) };
        format!(
            "spool         {} pending{by} of at most {max} (RUNNER_DISPATCH_SPOOL_MAX), {} given up, in {}\n",
            self.pending,
            self.failed,
            dir.display()
        )
    }
}

/// Plain text, a few lines per pool.
#[must_use]
pub fn render(report: &[PoolStatus]) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    for p in report {
        let _ = writeln!(out, "pool {} ({}{})", p.pool, p.backend, if p.enabled { "" } else { ", disabled" });
        let mut targets = p.idle_target_by_target.values();
        let same = targets.next().is_some_and(|first| targets.all(|t| t == first));
        let target = match &p.idle_target {
            None => "none".to_owned(),
            Some(t) if same || p.idle_target_by_target.is_empty() => {
                format!("{} per target at {} ({})", t.count, p.idle_targets.join(", "), describe(&t.why))
            }
            Some(_) => {
                let each: Vec<String> = p
                    .idle_target_by_target
                    .iter()
                    .map(|(name, t)| format!("{name} {} ({})", t.count, describe(&t.why)))
                    .collect();
                each.join("; ")
            }
        };
        let _ = writeln!(out, "  idle target   {target}");
        let r = &p.runners;
        let _ = writeln!(
            out,
            "  runners       {} idle, {} busy, {} booting, {} failed starts",
            r.idle, r.busy, r.booting, r.failed_starts
        );
        if !p.placements.is_empty() {
            let by: Vec<String> = p.placements.iter().map(|(k, n)| format!("{k} {n}")).collect();
            let _ = writeln!(out, "  placements    {}", by.join(", "));
        }
        let _ = writeln!(out, "  oldest        {}", r.oldest_s.map_or("-".to_owned(), minutes));
        let t = &p.time_to_runner;
        let ttr = match (t.p50_s, t.p95_s) {
            (Some(a), Some(b)) => {
                format!("time to runner p50 {a} s, p95 {b} s ({} jobs, {} on idle runners)", t.jobs, t.on_idle_runner)
            }
            _ => "no jobs recorded".to_owned(),
        };
        let _ = writeln!(out, "  last hour     {:.1} idle runner-minutes; {ttr}", p.idle_runner_minutes_last_hour);
        for e in &p.errors {
            let _ = writeln!(out, "  ERROR         {e}");
        }
    }
    out
}

fn describe(why: &crate::idle::Why) -> String {
    match why {
        crate::idle::Why::Fixed => "idle_runners".to_owned(),
        crate::idle::Why::Window { index, window } => format!("idle_schedule[{index}]: {window}"),
        crate::idle::Why::Auto { arrivals_per_minute, cold_start_s, dispersion, floor, max } => {
            format!(
                "auto: {arrivals_per_minute} jobs/min x {cold_start_s} s cold start, burst dispersion {dispersion}, floor {floor}, max {max}"
            )
        }
    }
}

fn minutes(s: u64) -> String {
    if s >= 3600 { format!("{}h {:02}m", s / 3600, (s % 3600) / 60) } else { format!("{}m {:02}s", s / 60, s % 60) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::idle::{Target, Why};
    use crate::reconcile::Census;

    #[test]
    fn the_spool_line_gives_the_depth_by_pool_and_the_cap() {
        let dir = tempfile::tempdir().expect("tmp");
        let spool = crate::spool::Spool::existing(dir.path());
        assert_eq!(SpoolDepth::read(&spool), SpoolDepth::default(), "a missing spool reads as empty");
        assert!(!dir.path().join("pending").exists(), "reading created nothing");
        let spool = crate::spool::Spool::open(dir.path()).expect("open");
        for (job, pool) in [(1, "linux"), (2, "linux"), (3, "secure")] {
            let message = serde_json::from_value(serde_json::json!({"v": 1, "kind": "provision", "job_id": job,
                "run_id": 1, "repository": "o/r", "owner": "o", "labels": ["linux"], "pool": pool,
                "runner_name": format!("ghr-{job}"), "delivery_id": "d"}))
            .expect("message");
            let item = crate::spool::SpoolItem { message, attempts: 0 };
            assert!(spool.put_new(&item).expect("put"));
        }
        let depth = SpoolDepth::read(&spool);
        let line = depth.render(10, Path::new("/state"));
        assert_eq!(
            line,
            "spool         3 pending (linux 2, secure 1) of at most 10 (RUNNER_DISPATCH_SPOOL_MAX), 0 given up, in /state\n"
        );
    }

    #[test]
    fn the_text_names_the_target_and_why_and_every_count() {
        let p = PoolStatus {
            pool: "linux".into(),
            backend: "aci",
            enabled: true,
            idle_target: Some(Target {
                count: 4,
                why: Why::Window { index: 0, window: "mon-fri 07:00-19:00 UTC".into() },
            }),
            idle_targets: vec!["octo-org".into()],
            idle_target_by_target: [(
                "octo-org".to_owned(),
                Target { count: 4, why: Why::Window { index: 0, window: "mon-fri 07:00-19:00 UTC".into() } },
            )]
            .into(),
            runners: Census { idle: 3, busy: 12, booting: 1, failed_starts: 0, oldest_s: Some(7980) },
            placements: [("westeurope".to_owned(), 10), ("northeurope".to_owned(), 6)].into(),
            idle_runner_minutes_last_hour: 180.0,
            time_to_runner: crate::idle::demand::TimeToRunner {
                jobs: 40,
                on_idle_runner: 38,
                p50_s: Some(2),
                p95_s: Some(4),
            },
            errors: vec![],
        };
        let text = render(&[p]);
        assert!(text.contains("4 per target at octo-org (idle_schedule[0]: mon-fri 07:00-19:00 UTC)"), "{text}");
        assert!(text.contains("3 idle, 12 busy, 1 booting, 0 failed starts"), "{text}");
        assert!(text.contains("2h 13m"), "{text}");
        assert!(text.contains("placements    northeurope 6, westeurope 10"), "{text}");
        assert!(
            text.contains("180.0 idle runner-minutes; time to runner p50 2 s, p95 4 s (40 jobs, 38 on idle runners)"),
            "{text}"
        );
    }
}
