//! Timestamps as GitHub writes them (RFC 3339): parsing, now, and the seconds between two.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Parses an RFC 3339 timestamp from GitHub.
#[must_use]
pub fn parse_time(s: Option<&str>) -> Option<OffsetDateTime> {
    s.and_then(|s| OffsetDateTime::parse(s, &Rfc3339).ok())
}

/// Now, as RFC 3339 (`None` only if the clock cannot be formatted).
#[must_use]
pub fn now_rfc3339() -> Option<String> {
    OffsetDateTime::now_utc().format(&Rfc3339).ok()
}

/// Seconds from `from` to `to` (or now), when both are known.
#[must_use]
pub fn seconds_between(from: Option<&str>, to: Option<&str>) -> Option<i64> {
    let from = parse_time(from)?;
    let to = match to {
        Some(t) => parse_time(Some(t))?,
        None => OffsetDateTime::now_utc(),
    };
    Some((to - from).whole_seconds())
}
