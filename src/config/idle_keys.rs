//! The `idle_*` pool keys: read and checked into a pool's [`IdlePolicy`], every problem
//! with its key. The policy and its target rule are [`crate::idle`]'s.

use crate::config::{PoolKeys, RunnerScope};
use crate::idle::{DEFAULT_AUTO_MAX, IdleBase, IdlePolicy, Window};
use crate::names;

/// The `idle_*` pool keys (each may sit in `[defaults]`).
pub const POOL_KEYS: &[&str] =
    &["idle_runners", "idle_runners_max", "idle_schedule", "idle_targets", "idle_runner_max_age"];

/// The most idle runners any count (`idle_runners`, `idle_runners_max`, a window's) may
/// ask for, per target. Far above what a region gives by default (ACI: 100 container
/// groups per subscription and region) and what GitHub's JIT pace creates in a reconcile
/// period (about 180 a minute): a larger figure is a typo, and it drives spending.
pub const MAX_IDLE_RUNNERS: u32 = 1000;

/// An idle count as written: a whole number from 0 to [`MAX_IDLE_RUNNERS`], else the
/// problem in words.
fn idle_count(v: &toml::Value) -> Result<u32, String> {
    match v {
        toml::Value::Integer(n) if *n >= 0 => u32::try_from(*n)
            .ok()
            .filter(|n| *n <= MAX_IDLE_RUNNERS)
            .ok_or_else(|| format!("{n} is more than {MAX_IDLE_RUNNERS}, the most idle runners a count may ask for")),
        _ => Err("must be a whole number of runners (0 or more)".into()),
    }
}

/// Reads and checks the `idle_*` keys of one pool: every problem with its key.
pub(super) fn parse_pool(keys: &mut PoolKeys<'_>) -> IdlePolicy {
    let mut policy = IdlePolicy::default();
    let (v, key) = keys.raw("idle_runners");
    let max = match keys.raw("idle_runners_max") {
        (Some(m), max_key) => idle_count(m).map_err(|e| keys.error(max_key, e)).ok(),
        (None, _) => None,
    };
    match v {
        None => {}
        Some(toml::Value::String(s)) if s == "auto" => {
            policy.base = IdleBase::Auto { max: max.unwrap_or(DEFAULT_AUTO_MAX) };
        }
        Some(n @ toml::Value::Integer(_)) => match idle_count(n) {
            Ok(n) => policy.base = IdleBase::Fixed(n),
            Err(e) => keys.error(key, e),
        },
        Some(_) => keys.error(key, "must be a whole number of runners (0 or more) or \"auto\""),
    }
    if max.is_some() && !policy.is_auto() {
        let k = keys.key("idle_runners_max");
        keys.warn(k, "only read with idle_runners = \"auto\"");
    }
    if let Some(age) = keys.duration("idle_runner_max_age") {
        policy.max_age = age;
    }
    policy.targets = keys.strings("idle_targets").unwrap_or_default();
    policy.schedule = parse_schedule(keys);
    check_targets(keys, &policy);
    if let Some(cap) = keys.max_runners {
        let most = match policy.base {
            IdleBase::Fixed(n) => n,
            IdleBase::Auto { max } => max,
        }
        .max(policy.schedule.iter().map(|w| w.idle_runners).max().unwrap_or(0));
        let per_target = u32::try_from(policy.targets.len().max(1)).unwrap_or(u32::MAX);
        if most.saturating_mul(per_target) > cap {
            let k = keys.key("idle_runners");
            keys.warn(
                k,
                format!("up to {most} idle runners per target ({per_target} target(s)) exceed max_runners = {cap}: top-ups stop at the cap and jobs wait for free slots"),
            );
        }
    }
    policy
}

fn parse_schedule(keys: &mut PoolKeys<'_>) -> Vec<Window> {
    let (v, key) = keys.raw("idle_schedule");
    let Some(v) = v else { return Vec::new() };
    let Some(list) = v.as_array() else {
        keys.error(key, "must be a list of windows: [{ days = \"mon-fri\", hours = \"07:00-19:00\", timezone = \"Europe/Amsterdam\", idle_runners = 4 }]");
        return Vec::new();
    };
    let mut windows: Vec<(usize, Window)> = Vec::new();
    for (i, entry) in list.iter().enumerate() {
        let at = format!("{key}[{i}]");
        let Some(t) = entry.as_table() else {
            keys.error(at, "must be a table: { days, hours, timezone, idle_runners }");
            continue;
        };
        let mut ok = true;
        for k in t.keys() {
            if !["days", "hours", "timezone", "idle_runners"].contains(&k.as_str()) {
                keys.error(format!("{at}.{k}"), "unknown key; a window has days, hours, timezone and idle_runners");
                ok = false;
            }
        }
        let text =
            |k: &str, default: Option<&str>| t.get(k).and_then(toml::Value::as_str).or(default).map(str::to_owned);
        let days = text("days", None);
        let hours = text("hours", None);
        let timezone = text("timezone", Some("UTC"));
        for (k, got) in [("days", &days), ("hours", &hours), ("timezone", &timezone)] {
            if got.is_none() {
                keys.error(format!("{at}.{k}"), if t.contains_key(k) { "must be a string" } else { "required" });
                ok = false;
            }
        }
        let idle = match t.get("idle_runners") {
            Some(n) => idle_count(n).map_err(|e| keys.error(format!("{at}.idle_runners"), e)).ok(),
            None => {
                keys.error(format!("{at}.idle_runners"), "required");
                None
            }
        };
        let (Some(days), Some(hours), Some(timezone), Some(idle), true) = (days, hours, timezone, idle, ok) else {
            continue;
        };
        match Window::parse(&days, &hours, &timezone, idle) {
            Ok(w) => {
                if let Some((j, _)) = windows.iter().find(|(_, other)| other.overlaps(&w)) {
                    keys.error(
                        at,
                        format!(
                            "overlaps {key}[{j}]: windows must not hold at the same time (the first would always win)"
                        ),
                    );
                } else {
                    windows.push((i, w));
                }
            }
            Err(problems) => {
                for (k, message) in problems {
                    keys.error(format!("{at}.{k}"), message);
                }
            }
        }
    }
    windows.into_iter().map(|(_, w)| w).collect()
}

/// `idle_targets`: org logins at org scope, `owner/repo` at repo scope (required there
/// when the pool keeps idle runners), nothing at enterprise scope.
fn check_targets(keys: &mut PoolKeys<'_>, policy: &IdlePolicy) {
    let key = keys.key("idle_targets");
    let scope = keys.github.runner_scope;
    for (i, t) in policy.targets.iter().enumerate() {
        let problem = match scope {
            RunnerScope::Org => names::check_owner(t).err().map(|e| format!("{e}: org scope takes org logins")),
            RunnerScope::Repo => match t.split_once('/') {
                Some((o, _)) => names::check_full_name(t, o).err(),
                None => Some(format!("{t:?} is not owner/repo: repo-scope runners register in one repository")),
            },
            RunnerScope::Enterprise => {
                Some("enterprise runners register in the enterprise; leave idle_targets out".into())
            }
        };
        if let Some(p) = problem {
            keys.error(format!("{key}[{i}]"), p);
        } else if let Some(owner) = t.split('/').next() {
            if !keys.github.allowed_owners.contains(&owner.to_ascii_lowercase()) {
                keys.error(format!("{key}[{i}]"), format!("{owner} is not in github.allowed_owners"));
            }
        }
    }
    if scope == RunnerScope::Repo && policy.is_on() && policy.targets.is_empty() {
        keys.error(keys.own_key("idle_targets"), "required with runner_scope = \"repo\" when the pool keeps idle runners: the owner/repo each idle runner registers in");
    }
}

#[cfg(test)]
mod tests {
    fn problems(pool_keys: &str, scope: &str) -> Vec<(String, bool)> {
        let text = format!(
            "[github]\nallowed_owners = [\"octo-org\"]\nrunner_scope = \"{scope}\"\n\n[[pools]]\nname = \"p\"\nbackend = \"aci\"\nlabels = [\"a\"]\nimage = \"i\"\n{pool_keys}\n"
        );
        match crate::config::PoolsConfig::parse(&text) {
            Ok(c) => c.warnings.iter().map(|w| (w.key.clone(), true)).collect(),
            Err(e) => e.0.iter().map(|p| (p.key.clone(), p.warning)).collect(),
        }
    }

    #[test]
    fn bad_windows_are_one_error_each_naming_their_key() {
        let keys = r#"idle_schedule = [
            { days = "mon-fry", hours = "07:00-19:00", idle_runners = 2 },
            { days = "mon", hours = "25:00-26:00", idle_runners = 2 },
            { days = "tue", hours = "07:00-08:00", timezone = "Mars/Olympus", idle_runners = 2 },
            { days = "wed", hours = "07:00-19:00", idle_runners = 2 },
            { days = "wed", hours = "18:00-20:00", idle_runners = 1 },
            { days = "thu", hours = "07:00-08:00", idle_runners = -1, size = 3 },
        ]"#;
        let found = problems(keys, "org");
        let errors: Vec<&str> = found.iter().filter(|(_, w)| !w).map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            errors,
            [
                "pools[0].idle_schedule[0].days",
                "pools[0].idle_schedule[1].hours",
                "pools[0].idle_schedule[2].timezone",
                "pools[0].idle_schedule[4]",
                "pools[0].idle_schedule[5].size",
                "pools[0].idle_schedule[5].idle_runners",
            ]
        );
    }

    #[test]
    fn idle_runners_take_a_count_or_auto_and_repo_scope_needs_targets() {
        let errors = |keys: &str, scope: &str| -> Vec<String> {
            problems(keys, scope).into_iter().filter(|(_, w)| !w).map(|(k, _)| k).collect()
        };
        assert_eq!(errors("idle_runners = \"many\"", "org"), ["pools[0].idle_runners"]);
        assert_eq!(errors("idle_runners = 2", "repo"), ["pools[0].idle_targets"]);
        assert!(errors("idle_runners = 2\nidle_targets = [\"octo-org/api\"]", "repo").is_empty());
        assert_eq!(errors("idle_runners = 2\nidle_targets = [\"other-org\"]", "org"), ["pools[0].idle_targets[0]"]);
        assert!(errors("idle_runners = \"auto\"\nidle_runners_max = 5", "org").is_empty());
    }

    #[test]
    fn a_target_above_max_runners_is_a_warning() {
        let found = problems("idle_runners = 8\nmax_runners = 5", "org");
        assert_eq!(found, [("pools[0].idle_runners".to_owned(), true)]);
    }
}
