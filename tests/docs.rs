//! The docs, checked against the code: every `runner-dispatch` command line quoted in a
//! code block parses with the real command-line parser, every pools file in the docs
//! passes the same validation as `check-config --pools-only`, every Bicep parameter the
//! docs set exists in infra/main.bicep, every pool, `[github]` and placement key and every
//! setting the code reads has its row in docs/configuration.md, every event is in
//! docs/operations.md, README's layout names every module, and every relative link
//! reaches its file and heading. Failures name the file and line, or the key.

use std::path::{Path, PathBuf};

use clap::Parser;
use runner_dispatch::cli::Cli;
use runner_dispatch::config::PoolsConfig;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The Markdown files a user reads.
fn docs() -> Vec<PathBuf> {
    let mut files = vec![
        root().join("README.md"),
        root().join("infra/README.md"),
        root().join("runner-image/README.md"),
        root().join("examples/webhooks/README.md"),
    ];
    for entry in std::fs::read_dir(root().join("docs")).expect("docs/") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "md") {
            files.push(path);
        }
    }
    files.sort();
    files
}

/// Each doc: its path, its name from the repository root (for messages), its text.
fn read_docs() -> Vec<(PathBuf, String, String)> {
    docs()
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).expect("read doc");
            let name = path.strip_prefix(root()).unwrap_or(&path).display().to_string();
            (path, name, text)
        })
        .collect()
}

/// Fenced code blocks: (language, first line number, text).
fn code_blocks(text: &str) -> Vec<(String, usize, String)> {
    let mut blocks = Vec::new();
    let mut current: Option<(String, usize, String)> = None;
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        if let Some(rest) = trimmed.strip_prefix("```") {
            match current.take() {
                Some(block) => blocks.push(block),
                None => current = Some((rest.trim().to_owned(), i + 2, String::new())),
            }
        } else if let Some((_, _, body)) = current.as_mut() {
            body.push_str(trimmed);
            body.push('\n');
        }
    }
    blocks
}

/// Shell words of one command, with `$VAR`, `$(...)` and `"$VAR"` standing for one word.
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut chars = line.chars().peekable();
    let (mut single, mut double, mut in_word) = (false, false, false);
    while let Some(c) = chars.next() {
        match c {
            '\'' if !double => {
                single = !single;
                in_word = true;
            }
            '"' if !single => {
                double = !double;
                in_word = true;
            }
            '$' if !single && chars.peek() == Some(&'(') => {
                let mut depth = 0;
                for d in chars.by_ref() {
                    match d {
                        '(' => depth += 1,
                        ')' => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                word.push('X');
                in_word = true;
            }
            c if c.is_whitespace() && !single && !double => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(word);
    }
    words
}

/// `runner-dispatch ...` command lines in shell code blocks, continuation lines joined,
/// leading `VAR=value` assignments and anything after a pipe, a redirect or `#` dropped.
fn command_lines() -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    for (_, name, text) in read_docs() {
        for (lang, first, body) in code_blocks(&text) {
            if !matches!(lang.as_str(), "" | "sh" | "bash" | "shell" | "console") {
                continue;
            }
            let joined = body.replace("\\\n", " ");
            for (offset, line) in joined.lines().enumerate() {
                let line = line.split(" #").next().unwrap_or("");
                let line = line.split(['|', '>', ';', '&']).next().unwrap_or("");
                let mut words = shell_words(line);
                while words.first().is_some_and(|w| w.contains('=') && !w.starts_with('-')) {
                    words.remove(0);
                }
                if words.first().map(String::as_str) == Some("runner-dispatch") {
                    out.push((format!("{name}:{}", first + offset), words));
                }
            }
        }
    }
    out
}

#[test]
fn every_runner_dispatch_command_line_in_the_docs_parses() {
    let lines = command_lines();
    assert!(lines.len() >= 10, "expected the docs' command lines, found {}", lines.len());
    let mut problems = Vec::new();
    for (at, words) in &lines {
        if let Err(e) = Cli::try_parse_from(words) {
            if !matches!(e.kind(), clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion) {
                problems.push(format!("{at}: `{}`: {}", words.join(" "), e.to_string().lines().next().unwrap_or("")));
            }
        }
    }
    assert!(problems.is_empty(), "command lines the CLI refuses:\n{}", problems.join("\n"));
}

#[test]
fn every_pools_file_in_the_docs_passes_check_config() {
    let mut checked = 0;
    let mut problems = Vec::new();
    for (_, name, text) in read_docs() {
        // A block with [github] is a whole file; a block with only [[pools]] adds pools to
        // the last whole file of the same document.
        let mut last_whole: Option<String> = None;
        for (lang, first, body) in code_blocks(&text) {
            if lang != "toml" || !body.contains("[[pools]]") {
                continue;
            }
            let file = if body.contains("[github]") {
                last_whole = Some(body.clone());
                body
            } else if let Some(base) = &last_whole {
                format!("{base}\n{body}")
            } else {
                continue;
            };
            checked += 1;
            if let Err(e) = PoolsConfig::parse(&file) {
                problems.push(format!("{name}:{first}:\n{e}"));
            }
        }
    }
    assert!(checked >= 2, "expected the docs' pools files, checked {checked}");
    assert!(problems.is_empty(), "pools files in the docs that check-config refuses:\n{}", problems.join("\n"));
}

#[test]
fn every_bicep_parameter_the_docs_set_exists() {
    let main = std::fs::read_to_string(root().join("infra/main.bicep")).expect("main.bicep");
    let declared: std::collections::BTreeSet<String> = main
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("param "))
        .filter_map(|rest| rest.split_whitespace().next())
        .map(str::to_owned)
        .collect();
    assert!(declared.len() > 10, "params of main.bicep: {declared:?}");
    let outputs: std::collections::BTreeSet<String> = main
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("output "))
        .filter_map(|rest| rest.split_whitespace().next())
        .map(str::to_owned)
        .collect();
    let camel = |s: &str| {
        s != "targetScope"
            && s.chars().next().is_some_and(|c| c.is_ascii_lowercase())
            && s.chars().all(|c| c.is_ascii_alphanumeric())
            && s.chars().any(|c| c.is_ascii_uppercase())
    };
    let mut named = 0;
    let mut problems = Vec::new();
    for (_, name, text) in read_docs() {
        for (i, line) in text.lines().enumerate() {
            // `param name = ...` (parameter files), `name = 'value'` or `name=value` in
            // backticks or on a --parameters line.
            let mut candidates = Vec::new();
            if let Some(rest) = line.trim_start().strip_prefix("param ") {
                candidates.extend(rest.split_whitespace().next());
            }
            // Backticked assignments count where the sentence is about the deployment
            // (host.json or Batch properties are written the same way elsewhere).
            let about_bicep = line.contains("deploy") || line.contains("parameter") || line.contains("Bicep");
            for part in line.split('`').skip(1).step_by(2).filter(|_| about_bicep) {
                match part.split_once('=') {
                    Some((lhs, _)) if camel(lhs.trim()) => candidates.push(lhs.trim()),
                    // A lone name in a sentence about the deployment: a parameter or an output.
                    None if camel(part) && !outputs.contains(part) => candidates.push(part),
                    _ => {}
                }
            }
            if line.contains("--parameters") {
                for word in line.split_whitespace() {
                    if let Some((lhs, _)) = word.split_once('=') {
                        if lhs.chars().all(|c| c.is_ascii_alphanumeric()) && !lhs.is_empty() {
                            candidates.push(lhs);
                        }
                    }
                }
            }
            for c in candidates {
                named += 1;
                if !declared.contains(c) {
                    problems.push(format!("{name}:{}: `{c}` is not a parameter of infra/main.bicep", i + 1));
                }
            }
        }
    }
    assert!(named >= 3, "expected the docs to name Bicep parameters, found {named}");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Every `event = "..."` the code emits, with the file that emits it.
fn emitted_events() -> std::collections::BTreeMap<String, String> {
    fn walk(dir: &Path, out: &mut std::collections::BTreeMap<String, String>) {
        for entry in std::fs::read_dir(dir).expect("read dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).expect("read");
                // Test modules name made-up events of other kinds; only the code counts.
                let code = text.split("#[cfg(test)]").next().unwrap_or("");
                for part in code.split("event = \"").skip(1) {
                    if let Some(name) = part.split('"').next() {
                        out.entry(name.to_owned()).or_insert_with(|| path.display().to_string());
                    }
                }
            }
        }
    }
    let mut out = std::collections::BTreeMap::new();
    walk(&root().join("src"), &mut out);
    out
}

#[test]
fn every_event_the_code_emits_is_documented_in_operations_md() {
    let ops = std::fs::read_to_string(root().join("docs/operations.md")).expect("operations.md");
    let events = emitted_events();
    assert!(events.len() > 30, "found only {} events: {events:?}", events.len());
    let missing: Vec<String> =
        events.iter().filter(|(e, _)| !ops.contains(&format!("`{e}`"))).map(|(e, at)| format!("{e} ({at})")).collect();
    assert!(missing.is_empty(), "events not in docs/operations.md's tables:\n{}", missing.join("\n"));
}

#[test]
fn the_readme_layout_names_every_module() {
    let readme = std::fs::read_to_string(root().join("README.md")).expect("README.md");
    let layout = readme.split("## Project layout").nth(1).expect("a Project layout section");
    let mut missing = Vec::new();
    for entry in std::fs::read_dir(root().join("src")).expect("src/") {
        let path = entry.expect("entry").path();
        let name = path.file_name().expect("name").to_string_lossy().into_owned();
        if name == "lib.rs" {
            continue;
        }
        let listed = if path.is_dir() { format!("src/{name}/") } else { format!("src/{name}") };
        if !layout.contains(&listed) {
            missing.push(listed);
        }
    }
    assert!(missing.is_empty(), "modules missing from README's layout: {missing:?}");
}

/// The strings of `const NAME: &[&str] = &[...]` in a source file: the key lists the code
/// keeps private (the common pool keys, `[github]`'s, a placement's).
fn const_str_list(file: &str, name: &str) -> Vec<String> {
    let text = std::fs::read_to_string(root().join(file)).expect("read source");
    let start = text.find(&format!("const {name}: &[&str]")).unwrap_or_else(|| panic!("{file} declares {name}"));
    let rest = &text[start..];
    let list = &rest[rest.find("&[").expect("a list") + 2..];
    let list = &list[list.find("&[").map_or(0, |i| i + 2)..];
    let list = &list[..list.find(']').expect("the list ends")];
    let keys: Vec<String> = list.split('"').skip(1).step_by(2).map(str::to_owned).collect();
    assert!(!keys.is_empty(), "{file}: {name} lists no keys");
    keys
}

/// The keys docs/configuration.md documents: backticked names in the first column of its
/// tables (`| `cpu`, `memory_gb` | ...` documents both).
fn documented_keys() -> (String, std::collections::BTreeSet<String>) {
    let text = std::fs::read_to_string(root().join("docs/configuration.md")).expect("docs/configuration.md");
    let keys = text
        .lines()
        .filter_map(|l| l.strip_prefix('|'))
        .filter_map(|l| l.split('|').next())
        .flat_map(|cell| cell.split('`').skip(1).step_by(2).map(str::to_owned).collect::<Vec<_>>())
        .collect();
    (text, keys)
}

#[test]
fn every_pool_and_github_key_is_documented_in_configuration_md() {
    use runner_dispatch::backends::Backend;
    let mut keys = const_str_list("src/config/pools_file.rs", "COMMON_POOL_KEYS");
    keys.extend(runner_dispatch::config::IDLE_POOL_KEYS.iter().map(|k| (*k).to_owned()));
    for backend in Backend::ALL {
        keys.extend(backend.pool_keys().iter().map(|k| (*k).to_owned()));
    }
    keys.extend(const_str_list("src/config/pools_file.rs", "GITHUB_KEYS"));
    assert!(keys.len() > 40, "expected every pool and [github] key, found {keys:?}");
    let (text, documented) = documented_keys();
    let mut missing: Vec<String> = keys.into_iter().filter(|k| !documented.contains(k)).collect();
    // A placement's keys are documented in the `placements` row's `{ ... }`.
    let placements_row = text.lines().find(|l| l.starts_with("| `placements` |")).expect("a `placements` row");
    let shape = placements_row.split('{').nth(1).and_then(|s| s.split('}').next()).expect("{ ... } in the row");
    for key in const_str_list("src/azure/arm.rs", "PLACEMENT_KEYS") {
        if !shape.split(',').any(|k| k.trim().trim_end_matches('?') == key) {
            missing.push(format!("placements: {key}"));
        }
    }
    missing.sort();
    missing.dedup();
    assert!(missing.is_empty(), "keys the code reads that docs/configuration.md has no table row for: {missing:?}");
}

/// Every environment variable the code reads (`get("NAME")`, `var("NAME")`,
/// `var_os("NAME")` and the like in src/, tests and fakes aside), and `RUST_LOG` where
/// the log filter comes from the environment.
fn settings_read() -> std::collections::BTreeMap<String, String> {
    fn is_setting(s: &str) -> bool {
        let upper = s.len() > 3
            && s.contains('_')
            && s.starts_with(|c: char| c.is_ascii_uppercase())
            && s.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
        upper || s.strip_prefix("AzureWebJobsStorage__").is_some_and(|r| !r.is_empty())
    }
    fn walk(dir: &Path, out: &mut std::collections::BTreeMap<String, String>) {
        for entry in std::fs::read_dir(dir).expect("read dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                if path.file_name().is_some_and(|n| n != "testing") {
                    walk(&path, out);
                }
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).expect("read");
                let code = text.split("#[cfg(test)]").next().unwrap_or("");
                let at = path.strip_prefix(root()).unwrap_or(&path).display().to_string();
                for (i, part) in code.split("(\"").enumerate().skip(1) {
                    let before = code.split("(\"").nth(i - 1).unwrap_or("");
                    // `env!("CARGO_PKG_VERSION")` is the build's, not a setting.
                    if before.ends_with("env!") {
                        continue;
                    }
                    if let Some((name, after)) = part.split_once('"') {
                        if after.starts_with(')') && is_setting(name) {
                            out.entry(name.to_owned()).or_insert_with(|| at.clone());
                        }
                    }
                }
                if code.contains("from_default_env") {
                    out.entry("RUST_LOG".to_owned()).or_insert(at);
                }
            }
        }
    }
    let mut out = std::collections::BTreeMap::new();
    walk(&root().join("src"), &mut out);
    out
}

#[test]
fn every_setting_the_code_reads_is_documented_in_configuration_md() {
    let settings = settings_read();
    for expected in ["GITHUB_WEBHOOK_SECRET", "AZURE_SUBSCRIPTION_ID", "RUNNER_DISPATCH_SPOOL_MAX", "RUST_LOG"] {
        assert!(settings.contains_key(expected), "the scan misses {expected}: {settings:?}");
    }
    let (_, documented) = documented_keys();
    let missing: Vec<String> =
        settings.iter().filter(|(s, _)| !documented.contains(*s)).map(|(s, at)| format!("{s} ({at})")).collect();
    assert!(
        missing.is_empty(),
        "settings the code reads that docs/configuration.md has no table row for:\n{}",
        missing.join("\n")
    );
}

/// GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors of a Markdown file's headings (code blocks skipped; a repeated heading
/// gets `-1`, `-2`, ... as on GitHub).
fn anchors(text: &str) -> std::collections::BTreeSet<String> {
    let mut seen = std::collections::BTreeMap::<String, usize>::new();
    let mut out = std::collections::BTreeSet::new();
    let mut in_code = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
        } else if let Some(heading) = line.strip_prefix('#').filter(|_| !in_code) {
            let slug = anchor(heading.trim_start_matches('#'));
            let n = seen.entry(slug.clone()).or_default();
            out.insert(if *n == 0 { slug.clone() } else { format!("{slug}-{n}") });
            *n += 1;
        }
    }
    out
}

#[test]
fn every_relative_link_in_the_docs_reaches_its_file_and_heading() {
    let mut checked = 0;
    let mut problems = Vec::new();
    for (path, name, text) in read_docs() {
        for (i, line) in text.lines().enumerate() {
            for part in line.split("](").skip(1) {
                let Some(target) = part.split(')').next() else { continue };
                if target.contains("://") || target.starts_with("mailto:") || target.contains(' ') {
                    continue;
                }
                checked += 1;
                let (file, fragment) = target.split_once('#').unwrap_or((target, ""));
                let linked = if file.is_empty() { path.clone() } else { path.parent().expect("dir").join(file) };
                if !linked.exists() {
                    problems.push(format!("{name}:{}: {target}: no such file", i + 1));
                    continue;
                }
                if !fragment.is_empty() {
                    let linked_text = std::fs::read_to_string(&linked).unwrap_or_default();
                    if !anchors(&linked_text).contains(fragment) {
                        problems.push(format!("{name}:{}: {target}: no heading with that anchor", i + 1));
                    }
                }
            }
        }
    }
    assert!(checked >= 20, "expected the docs' links, checked {checked}");
    assert!(problems.is_empty(), "links that lead nowhere:\n{}", problems.join("\n"));
}
