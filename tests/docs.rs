//! The docs, checked against the code: every `runner-dispatch` command line quoted in a
//! code block parses with the real command-line parser, every pools file in the docs
//! passes the same validation as `check-config --pools-only`, and every Bicep parameter
//! the docs set exists in infra/main.bicep. Failures name the file and line.

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
    for path in docs() {
        let text = std::fs::read_to_string(&path).expect("read doc");
        let name = path.strip_prefix(root()).unwrap_or(&path).display().to_string();
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
    for path in docs() {
        let text = std::fs::read_to_string(&path).expect("read doc");
        let name = path.strip_prefix(root()).unwrap_or(&path).display().to_string();
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
    for path in docs() {
        let text = std::fs::read_to_string(&path).expect("read doc");
        let name = path.strip_prefix(root()).unwrap_or(&path).display().to_string();
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
