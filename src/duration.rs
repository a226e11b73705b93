//! Human durations in the pools file: `90s`, `15m`, `6h`, `1h30m`, `2d`.

use std::time::Duration;

/// Parses `<n><unit>` groups (units `s`, `m`, `h`, `d`), e.g. `1h30m`.
///
/// # Errors
/// A message naming what is wrong, for `check-config` to print beside the key.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("empty duration; write e.g. \"15m\", \"6h\" or \"1h30m\"".into());
    }
    let mut total: u64 = 0;
    let mut number = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit: u64 = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return Err(format!("unknown unit {c:?} in {text:?}; use s, m, h or d")),
        };
        let n: u64 = number.parse().map_err(|_| format!("a number must come before {c:?} in {text:?}"))?;
        number.clear();
        total =
            n.checked_mul(unit).and_then(|v| total.checked_add(v)).ok_or_else(|| format!("{text:?} is too long"))?;
    }
    if !number.is_empty() {
        return Err(format!("{text:?} lacks a unit after {number}; use s, m, h or d"));
    }
    Ok(Duration::from_secs(total))
}

/// ISO 8601 duration (`PT6H`, `PT90S`) for Batch `maxWallClockTime`.
#[must_use]
pub fn to_iso8601(d: Duration) -> String {
    format!("PT{}S", d.as_secs())
}

/// Short form for logs and tables: `6h`, `15m`, `1h30m`.
#[must_use]
pub fn format_duration(d: Duration) -> String {
    let s = d.as_secs();
    let (h, m, sec) = (s / 3600, (s % 3600) / 60, s % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if sec > 0 || out.is_empty() {
        out.push_str(&format!("{sec}s"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_single_and_compound_units() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("2d"), Ok(Duration::from_secs(172_800)));
    }

    #[test]
    fn refuses_missing_or_unknown_units() {
        assert!(parse_duration("15").is_err());
        assert!(parse_duration("15x").is_err());
        assert!(parse_duration("h").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn formats_back_compactly() {
        assert_eq!(format_duration(Duration::from_secs(5400)), "1h30m");
        assert_eq!(to_iso8601(Duration::from_secs(21_600)), "PT21600S");
    }
}
