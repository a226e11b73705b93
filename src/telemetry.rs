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
    /// JSON under the Functions host or when `RUNNER_DISPATCH_LOG_FORMAT=json`.
    #[must_use]
    pub fn from_env() -> Self {
        match std::env::var("RUNNER_DISPATCH_LOG_FORMAT").ok().as_deref() {
            Some("json") => LogFormat::Json,
            Some("pretty" | "text") => LogFormat::Pretty,
            _ if std::env::var_os("FUNCTIONS_CUSTOMHANDLER_PORT").is_some() => LogFormat::Json,
            _ => LogFormat::Pretty,
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
        LogFormat::Pretty => {
            tracing_subscriber::fmt().compact().with_env_filter(filter).with_writer(std::io::stderr).try_init()
        }
    };
    // A second init (tests) is harmless.
    let _ = result;
}
