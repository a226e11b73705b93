//! Choosing the pool for a job: labels (case-insensitive subset), repository filters,
//! tightest fit, file order.

use std::cmp::Reverse;
use std::sync::Arc;

use crate::config::{Pool, PoolsConfig};

/// Why a pool does not fit a job (for `route` and logs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Misfit {
    Disabled,
    MissingLabels(Vec<String>),
    RepositoryNotListed,
}

impl std::fmt::Display for Misfit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Misfit::Disabled => f.write_str("disabled"),
            Misfit::MissingLabels(l) => write!(f, "lacks label(s) {}", l.join(", ")),
            Misfit::RepositoryNotListed => f.write_str("repository not in its repositories filter"),
        }
    }
}

/// Whether `pool` fits a job with these labels in this repository.
///
/// # Errors
/// The reason it does not.
pub fn fits(pool: &Pool, job_labels_lower: &[String], repository: Option<&str>) -> Result<(), Misfit> {
    if !pool.enabled {
        return Err(Misfit::Disabled);
    }
    let missing: Vec<String> = job_labels_lower.iter().filter(|l| !pool.labels_lower.contains(l)).cloned().collect();
    if !missing.is_empty() {
        return Err(Misfit::MissingLabels(missing));
    }
    if !pool.repositories.is_empty() {
        let listed = repository.is_some_and(|r| pool.repositories.iter().any(|g| g.matches(r)));
        if !listed {
            return Err(Misfit::RepositoryNotListed);
        }
    }
    Ok(())
}

/// [`fits`] without the reason: no allocation, for choosing among many pools.
fn fits_quickly(pool: &Pool, job_labels_lower: &[String], repository_lower: Option<&[u8]>) -> bool {
    pool.enabled
        && job_labels_lower.iter().all(|l| pool.labels_lower.iter().any(|p| p == l))
        && (pool.repositories.is_empty()
            || repository_lower.is_some_and(|r| pool.repositories.iter().any(|g| g.matches_lowercase(r))))
}

/// Lowercases and deduplicates job labels. An empty label list fits no pool
/// (GitHub always sends at least one label; none means a malformed payload).
#[must_use]
pub fn normalize_labels(labels: &[String]) -> Vec<String> {
    let mut v: Vec<String> = labels.iter().map(|l| l.trim().to_ascii_lowercase()).filter(|l| !l.is_empty()).collect();
    v.sort();
    v.dedup();
    v
}

/// The pool a job gets: among fitting pools, those whose `repositories` filter matched
/// beat unfiltered ones, then the fewest labels, then file order.
#[must_use]
pub fn choose_pool(config: &PoolsConfig, labels: &[String], repository: Option<&str>) -> Option<Arc<Pool>> {
    let job = normalize_labels(labels);
    if job.is_empty() {
        return None;
    }
    let repository = repository.map(str::to_ascii_lowercase);
    config
        .pools
        .iter()
        .filter(|p| fits_quickly(p, &job, repository.as_deref().map(str::as_bytes)))
        .min_by_key(|p| (Reverse(!p.repositories.is_empty()), p.labels_lower.len(), p.index))
        .cloned()
}

/// One line of `route`'s explanation.
#[derive(Debug, Clone)]
pub struct RouteLine {
    pub pool: String,
    pub verdict: Result<(), Misfit>,
    pub chosen: bool,
}

/// Every pool with whether it fits and which one is chosen (for `route`).
#[must_use]
pub fn explain_route(config: &PoolsConfig, labels: &[String], repository: Option<&str>) -> Vec<RouteLine> {
    let job = normalize_labels(labels);
    let chosen = choose_pool(config, labels, repository).map(|p| p.name.clone());
    config
        .pools
        .iter()
        .map(|p| RouteLine {
            pool: p.name.clone(),
            verdict: if job.is_empty() { Err(Misfit::MissingLabels(Vec::new())) } else { fits(p, &job, repository) },
            chosen: chosen.as_deref() == Some(p.name.as_str()),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::glob::Glob;

    fn cfg(pools: &str) -> PoolsConfig {
        PoolsConfig::parse(&format!("[github]\nallowed_owners=[\"o\"]\n{pools}")).expect("valid")
    }

    fn labels(l: &[&str]) -> Vec<String> {
        l.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn globs_match_case_insensitively_with_stars() {
        let g = Glob::new("Octo-Org/api-*");
        assert!(g.matches("octo-org/API-gateway"));
        assert!(g.matches("octo-org/api-"));
        assert!(!g.matches("octo-org/web"));
        assert!(Glob::new("*/*").matches("a/b"));
        assert!(Glob::new("o/a?c").matches("o/abc"));
        assert!(!Glob::new("o/a?c").matches("o/ac"));
    }

    #[test]
    fn the_tightest_fit_wins_then_file_order() {
        let c = cfg(r#"
[[pools]]
name = "big"
backend = "aci"
labels = ["self-hosted", "linux", "x64", "gpu"]
image = "i"
[[pools]]
name = "small"
backend = "aci"
labels = ["self-hosted", "LINUX", "x64"]
image = "i"
[[pools]]
name = "small-twin"
backend = "aci"
labels = ["self-hosted", "linux", "x64"]
image = "i"
"#);
        assert_eq!(choose_pool(&c, &labels(&["Linux"]), None).map(|p| p.name.clone()).as_deref(), Some("small"));
        assert_eq!(choose_pool(&c, &labels(&["gpu"]), None).map(|p| p.name.clone()).as_deref(), Some("big"));
        assert!(choose_pool(&c, &labels(&["windows"]), None).is_none());
        assert!(choose_pool(&c, &[], None).is_none());
    }

    #[test]
    fn a_matching_repository_filter_beats_a_tighter_unfiltered_pool() {
        let c = cfg(r#"
[[pools]]
name = "general"
backend = "aci"
labels = ["linux"]
image = "i"
[[pools]]
name = "api"
backend = "aci"
labels = ["linux", "x64"]
image = "i"
repositories = ["o/api-*"]
[[pools]]
name = "off"
backend = "aci"
labels = ["linux"]
image = "i"
repositories = ["o/*"]
enabled = false
"#);
        let pick = |r: &str| choose_pool(&c, &labels(&["linux"]), Some(r)).map(|p| p.name.clone());
        assert_eq!(pick("o/api-gw").as_deref(), Some("api"));
        assert_eq!(pick("o/web").as_deref(), Some("general"));
        let lines = explain_route(&c, &labels(&["linux"]), Some("o/web"));
        assert_eq!(lines[1].verdict, Err(Misfit::RepositoryNotListed));
        assert_eq!(lines[2].verdict, Err(Misfit::Disabled));
        assert!(lines[0].chosen);
    }

    #[test]
    fn the_quick_fit_agrees_with_the_explained_fit() {
        let c = cfg(r#"
[[pools]]
name = "a"
backend = "aci"
labels = ["Self-Hosted", "linux"]
image = "i"
repositories = ["Octo-Org/API-*", "o/x?z"]
[[pools]]
name = "b"
backend = "aci"
labels = ["linux", "x64"]
image = "i"
[[pools]]
name = "c"
backend = "aci"
labels = ["linux"]
image = "i"
enabled = false
"#);
        for l in [vec!["linux"], vec!["LINUX", "self-hosted"], vec!["x64"], vec!["gpu"], vec!["Linux", "X64"]] {
            let job = normalize_labels(&labels(&l));
            for r in [
                None,
                Some("octo-org/api-gw"),
                Some("OCTO-ORG/Api-1"),
                Some("o/xyz"),
                Some("o/xz"),
                Some("other/api-1"),
            ] {
                let lower = r.map(str::to_ascii_lowercase);
                for p in &c.pools {
                    assert_eq!(
                        fits_quickly(p, &job, lower.as_deref().map(str::as_bytes)),
                        fits(p, &job, r).is_ok(),
                        "pool {} labels {l:?} repository {r:?}",
                        p.name
                    );
                }
            }
        }
    }

    #[test]
    fn labels_fold_ascii_case_only_as_github_does() {
        let c = cfg(r#"
[[pools]]
name = "docker"
backend = "aci"
labels = ["docker", "LİNUX"]
image = "i"
"#);
        let pick = |l: &[&str]| choose_pool(&c, &labels(l), None).map(|p| p.name.clone());
        assert_eq!(pick(&["DOCKER"]).as_deref(), Some("docker"));
        // The Kelvin sign lowercases to `k` in Unicode; GitHub does not fold it.
        assert_eq!(pick(&["doc\u{212A}er"]), None);
        // `İ` lowercases to `i` + combining dot in Unicode; only its ASCII neighbours fold.
        assert_eq!(pick(&["li\u{307}nux"]), None);
        assert_eq!(pick(&["lİnux"]).as_deref(), Some("docker"));
        let lines = explain_route(&c, &labels(&["doc\u{212A}er"]), None);
        assert_eq!(lines[0].verdict, Err(Misfit::MissingLabels(vec!["doc\u{212A}er".into()])));
    }

    #[test]
    fn pools_that_differ_in_a_non_ascii_letter_are_not_reported_as_overlapping() {
        let c = cfg(r#"
[[pools]]
name = "a"
backend = "aci"
labels = ["docker"]
image = "i"
[[pools]]
name = "b"
backend = "aci"
labels = ["doc\u212Aer"]
image = "i"
[[pools]]
name = "c"
backend = "aci"
labels = ["DOCKER"]
image = "i"
"#);
        let overlaps: Vec<&str> = c.warnings.iter().map(|w| w.key.as_str()).collect();
        assert_eq!(overlaps, ["pools[2]"], "{:?}", c.warnings);
    }
}
