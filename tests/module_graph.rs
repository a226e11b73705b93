//! The import graph of src/ has no cycles (issue 24): between top-level modules, and
//! between files. An edge is a `crate::a::b` path, or a `super::x` path in a submodule,
//! outside comments and outside the `#[cfg(test)]` part of a file. One edge is declared and
//! left out: config's pool model holds each backend's compute part (`Pool::compute`, a
//! `backends::Compute`), and the backends read their pool keys with config's reader.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The one top-level edge allowed to close a cycle (see the module doc and README).
const DECLARED: (&str, &str) = ("config", "backends");

type Graph = BTreeMap<String, BTreeSet<String>>;

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/src"))
}

fn is_module(path: &str) -> bool {
    root().join(format!("{path}.rs")).exists() || root().join(path).join("mod.rs").exists()
}

/// Every `.rs` file under src/: its module path (`idle/demand`, `lib` for the root) and text.
fn files(dir: &Path, out: &mut Vec<(String, String)>) {
    for entry in std::fs::read_dir(dir).expect("src/") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let rel = path.strip_prefix(root()).expect("under src/").with_extension("");
            let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
            if parts.len() > 1 && parts.last().is_some_and(|l| l == "mod") {
                parts.pop();
            }
            out.push((parts.join("/"), std::fs::read_to_string(&path).expect("read")));
        }
    }
}

/// Up to two module segments (runs of `a-z` and `_`) after each `prefix` in `code`:
/// `crate::idle::demand::Record` gives `idle`, `demand`; `crate::config::Pool` gives `config`.
fn paths_after<'a>(code: &'a str, prefix: &str) -> Vec<Vec<&'a str>> {
    let segment = |s: &'a str| {
        let end = s.find(|c: char| !(c.is_ascii_lowercase() || c == '_')).unwrap_or(s.len());
        (end > 0).then(|| (&s[..end], &s[end..]))
    };
    code.match_indices(prefix)
        .filter_map(|(i, _)| {
            let (first, rest) = segment(&code[i + prefix.len()..])?;
            let second = rest.strip_prefix("::").and_then(segment).map(|(s, _)| s);
            Some([Some(first), second].into_iter().flatten().collect())
        })
        .collect()
}

fn graph(top: bool) -> Graph {
    let mut all = Vec::new();
    files(root(), &mut all);
    let mut edges = Graph::new();
    for (module, text) in &all {
        let text = text.split("#[cfg(test)]").next().unwrap_or_default();
        let code: String =
            text.lines().map(|l| l.split("//").next().unwrap_or_default()).collect::<Vec<_>>().join("\n");
        let parts: Vec<&str> = module.split('/').collect();
        let mut targets: Vec<String> = Vec::new();
        for p in paths_after(&code, "crate::") {
            let file = p.join("/");
            targets.push(if top || !is_module(&file) { p[0].to_owned() } else { file });
        }
        if !top && parts.len() >= 2 {
            let parent = parts[..parts.len() - 1].join("/");
            for p in paths_after(&code, "super::") {
                let sibling = format!("{parent}/{}", p[0]);
                targets.push(if root().join(format!("{sibling}.rs")).exists() { sibling } else { parent.clone() });
            }
        }
        let from = if top { parts[0].to_owned() } else { module.clone() };
        for to in targets {
            if to != from && !from.starts_with(&format!("{to}/")) && (from.as_str(), to.as_str()) != DECLARED {
                edges.entry(from.clone()).or_default().insert(to);
            }
        }
    }
    edges
}

/// A cycle as a path `a -> b -> ... -> a`, if there is one.
fn cycle(edges: &Graph) -> Option<Vec<String>> {
    fn visit(n: &str, edges: &Graph, done: &mut BTreeSet<String>, path: &mut Vec<String>) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|p| p == n) {
            let mut found = path[at..].to_vec();
            found.push(n.to_owned());
            return Some(found);
        }
        if done.contains(n) {
            return None;
        }
        path.push(n.to_owned());
        for next in edges.get(n).into_iter().flatten() {
            if let Some(found) = visit(next, edges, done, path) {
                return Some(found);
            }
        }
        path.pop();
        done.insert(n.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    edges.keys().find_map(|n| visit(n, edges, &mut done, &mut Vec::new()))
}

#[test]
fn top_level_modules_depend_on_each_other_without_a_cycle_but_the_declared_one() {
    let edges = graph(true);
    assert!(edges.get("provision").is_some_and(|e| e.contains("compute")), "the graph is read: {edges:?}");
    if let Some(c) = cycle(&edges) {
        panic!("top-level import cycle: {}", c.join(" -> "));
    }
}

#[test]
fn files_depend_on_each_other_without_a_cycle() {
    let edges = graph(false);
    assert!(edges.get("azure/aci").is_some_and(|e| e.contains("azure/arm")), "the graph is read: {edges:?}");
    if let Some(c) = cycle(&edges) {
        panic!("file import cycle: {}", c.join(" -> "));
    }
}
