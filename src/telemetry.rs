//! Logging: JSON lines under the Functions host (stdout lands in Application Insights as
//! text, queried with `parse_json(message)`), readable lines locally.

use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Pretty,
}

impl LogFormat {
    /// The format `RUNNER_DISPATCH_LOG_FORMAT` names (`json`, or `pretty`/`text`); `None` for
    /// anything else.
    #[must_use]
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "json" => Some(LogFormat::Json),
            "pretty" | "text" => Some(LogFormat::Pretty),
            _ => None,
        }
    }
}

/// Installs the global subscriber (`RUST_LOG` filters; default `info`). Logs go to stdout
/// under the host (its console capture) and to stderr locally, so command output stays clean.
pub fn init(format: LogFormat, default_level: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let result = match format {
        LogFormat::Json => tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .with_env_filter(filter)
            .with_writer(std::io::stdout)
            .try_init(),
        // Colour only for a person at a terminal: escape codes in a file or a pipe are noise,
        // and a log reader that renders them could be fooled by them.
        LogFormat::Pretty => tracing_subscriber::fmt()
            .compact()
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .try_init(),
    };
    // A second init (tests) is harmless.
    let _ = result;
}

/// Longest untrusted value written to a log line, in characters.
pub const MAX_LOGGED_CHARS: usize = 200;

/// An untrusted value (from a payload or a header) made safe for a text log line: control
/// characters (newlines, ESC, ...) escaped so they cannot forge lines or colour a terminal,
/// and cut at [`MAX_LOGGED_CHARS`] so one header cannot make a megabyte line.
#[must_use]
pub fn loggable(value: &str) -> String {
    let mut out = String::with_capacity(value.len().min(MAX_LOGGED_CHARS + 8));
    for (i, c) in value.chars().enumerate() {
        if i == MAX_LOGGED_CHARS {
            out.push_str("...");
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loggable_escapes_control_characters_and_caps_length() {
        assert_eq!(loggable("a\nb\u{1b}[31mc\r"), "a\\nb\\u{1b}[31mc\\r");
        assert_eq!(loggable("plain-name_1.2"), "plain-name_1.2");
        let long = "x".repeat(10_000);
        assert_eq!(loggable(&long).chars().count(), MAX_LOGGED_CHARS + 3);
        // Non-ASCII letters are not control characters: they stay readable.
        assert_eq!(loggable("dock\u{212a}er"), "dock\u{212a}er");
    }
}
