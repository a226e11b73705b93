//! `idle_schedule` windows: days of the week and a span of wall-clock hours in an IANA
//! time zone. Wall-clock time is read through jiff's bundled time-zone database, so a
//! window written as `07:00-19:00` holds from 07:00 to 19:00 local time on both sides
//! of a daylight-saving change.

use jiff::Timestamp;
use jiff::civil::Weekday;
use jiff::tz::TimeZone;

/// Minutes in a day and in a week.
const DAY: u32 = 24 * 60;
const WEEK: u32 = 7 * DAY;

const DAY_NAMES: [(&str, &str); 7] = [
    ("mon", "monday"),
    ("tue", "tuesday"),
    ("wed", "wednesday"),
    ("thu", "thursday"),
    ("fri", "friday"),
    ("sat", "saturday"),
    ("sun", "sunday"),
];

/// One window of `idle_schedule`.
#[derive(Debug, Clone)]
pub struct Window {
    /// Bit `d` set: the window starts on day `d` (0 = Monday).
    days: u8,
    /// Minutes after local midnight; `end <= start` means the window crosses midnight and
    /// belongs to the day it starts on.
    start: u32,
    end: u32,
    tz: TimeZone,
    /// As written, for messages and `status`.
    pub timezone: String,
    pub days_text: String,
    pub hours_text: String,
    pub idle_runners: u32,
}

impl Window {
    /// Parses the three texts of a window.
    ///
    /// # Errors
    /// Which of `days`, `hours` or `timezone` is wrong, and why: `(key, message)`.
    pub fn parse(
        days: &str,
        hours: &str,
        timezone: &str,
        idle_runners: u32,
    ) -> Result<Self, Vec<(&'static str, String)>> {
        let mut problems = Vec::new();
        let day_bits = parse_days(days).map_err(|e| problems.push(("days", e))).unwrap_or(0);
        let (start, end) = parse_hours(hours).map_err(|e| problems.push(("hours", e))).unwrap_or((0, 0));
        let tz = TimeZone::get(timezone)
            .map_err(|_| {
                problems.push((
                    "timezone",
                    format!("unknown time zone {timezone:?}: use an IANA name such as \"Europe/Amsterdam\" or \"UTC\""),
                ));
            })
            .ok();
        match tz {
            Some(tz) if problems.is_empty() => Ok(Self {
                days: day_bits,
                start,
                end,
                tz,
                timezone: timezone.to_owned(),
                days_text: days.to_owned(),
                hours_text: hours.to_owned(),
                idle_runners,
            }),
            _ => Err(problems),
        }
    }

    /// Whether the window holds at `now`.
    #[must_use]
    pub fn holds(&self, now: Timestamp) -> bool {
        let local = now.to_zoned(self.tz.clone());
        let day = weekday_index(local.weekday());
        let minute = u32::from(local.hour().unsigned_abs()) * 60 + u32::from(local.minute().unsigned_abs());
        let starts_on = |d: usize| self.days & (1 << d) != 0;
        if self.start < self.end {
            starts_on(day) && (self.start..self.end).contains(&minute)
        } else {
            // Crosses midnight: the evening part on a listed day, the morning part on the
            // day after one.
            (starts_on(day) && minute >= self.start) || (starts_on((day + 6) % 7) && minute < self.end)
        }
    }

    /// The week's minutes this window covers, in UTC at the offset its zone has at `at`:
    /// half-open intervals within `0..WEEK` (a span crossing the week's end is split).
    fn utc_minutes(&self, at: Timestamp) -> Vec<(u32, u32)> {
        let offset_min = self.tz.to_offset(at).seconds() / 60;
        let shift = |m: u32| (i64::from(m) - i64::from(offset_min)).rem_euclid(i64::from(WEEK)) as u32;
        let length = if self.start < self.end { self.end - self.start } else { DAY - self.start + self.end };
        let mut spans = Vec::new();
        for d in 0..7 {
            if self.days & (1 << d) == 0 {
                continue;
            }
            let from = shift(d * DAY + self.start);
            let to = from + length;
            if to <= WEEK {
                spans.push((from, to));
            } else {
                spans.push((from, WEEK));
                spans.push((0, to - WEEK));
            }
        }
        spans
    }

    /// Whether two windows hold at some same moment. Each is laid on the week in UTC at
    /// the offset its zone has; the offsets of both zones are constant between two of
    /// their transitions, so the windows are compared once per span between consecutive
    /// transitions of either zone over the coming year (a span shorter than a week may
    /// report an overlap that its days never reach: the cautious side).
    #[must_use]
    pub fn overlaps(&self, other: &Window) -> bool {
        self.overlaps_during(other, Timestamp::now())
    }

    /// [`Window::overlaps`] over the year from `from`.
    #[must_use]
    pub fn overlaps_during(&self, other: &Window, from: Timestamp) -> bool {
        let until = from.checked_add(jiff::SignedDuration::from_hours(YEAR_HOURS)).unwrap_or(Timestamp::MAX);
        let mut instants = vec![from];
        for tz in [&self.tz, &other.tz] {
            instants.extend(tz.following(from).map(|t| t.timestamp()).take_while(|t| *t < until));
        }
        instants.sort();
        instants.dedup();
        instants.iter().any(|at| {
            let (a, b) = (self.utc_minutes(*at), other.utc_minutes(*at));
            a.iter().any(|x| b.iter().any(|y| x.0 < y.1 && y.0 < x.1))
        })
    }
}

/// A year and a day, in hours: every offset of a zone's yearly cycle, leap years too.
const YEAR_HOURS: i64 = 366 * 24;

fn weekday_index(w: Weekday) -> usize {
    usize::try_from(w.to_monday_zero_offset()).unwrap_or(0)
}

fn day_index(name: &str) -> Option<usize> {
    let name = name.trim().to_ascii_lowercase();
    DAY_NAMES.iter().position(|(short, long)| name == *short || name == *long)
}

/// `mon-fri`, `sat,sun`, `mon,wed-fri`, `fri-mon` (wraps), `daily`.
fn parse_days(text: &str) -> Result<u8, String> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("daily") || text == "*" {
        return Ok(0x7f);
    }
    let mut bits = 0u8;
    for part in text.split(',') {
        let unknown = |d: &str| {
            format!(
                "unknown day {:?} in {text:?}: use mon, tue, wed, thu, fri, sat, sun, ranges (mon-fri), lists (sat,sun) or \"daily\"",
                d.trim()
            )
        };
        match part.split_once('-') {
            Some((a, b)) => {
                let from = day_index(a).ok_or_else(|| unknown(a))?;
                let to = day_index(b).ok_or_else(|| unknown(b))?;
                let mut d = from;
                loop {
                    bits |= 1 << d;
                    if d == to {
                        break;
                    }
                    d = (d + 1) % 7;
                }
            }
            None => bits |= 1 << day_index(part).ok_or_else(|| unknown(part))?,
        }
    }
    Ok(bits)
}

/// `HH:MM` as minutes after midnight; `24:00` only where `allow_24` (an end).
fn parse_clock(text: &str, allow_24: bool) -> Result<u32, String> {
    let bad = || format!("{text:?} is not a time of day: use HH:MM from 00:00 to 23:59 (24:00 only as an end)");
    let (h, m) = text.trim().split_once(':').ok_or_else(bad)?;
    if h.len() != 2 || m.len() != 2 {
        return Err(bad());
    }
    let h: u32 = h.parse().map_err(|_| bad())?;
    let m: u32 = m.parse().map_err(|_| bad())?;
    match (h, m) {
        (24, 0) if allow_24 => Ok(DAY),
        (0..=23, 0..=59) => Ok(h * 60 + m),
        _ => Err(bad()),
    }
}

/// `07:00-19:00`; `22:00-06:00` crosses midnight; `00:00-24:00` is the whole day.
fn parse_hours(text: &str) -> Result<(u32, u32), String> {
    let (a, b) = text.split_once('-').ok_or_else(|| {
        format!("{text:?} is not a span of hours: write \"07:00-19:00\" (\"22:00-06:00\" crosses midnight)")
    })?;
    let start = parse_clock(a, false)?;
    let end = parse_clock(b, true)?;
    if start == end % DAY && end != DAY {
        return Err(format!("{text:?} is empty; write \"00:00-24:00\" for a whole day"));
    }
    if end == DAY && start == 0 {
        return Ok((0, DAY));
    }
    Ok((start, end % DAY))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn w(days: &str, hours: &str, tz: &str) -> Window {
        Window::parse(days, hours, tz, 3).unwrap()
    }

    #[test]
    fn a_weekday_window_holds_in_its_hours_and_not_at_the_weekend() {
        let office = w("mon-fri", "07:00-19:00", "Europe/Amsterdam");
        // Wednesday 2026-12-02, 08:00 in Amsterdam (CET, UTC+1).
        assert!(office.holds(at("2026-12-02T07:00:00Z")));
        assert!(!office.holds(at("2026-12-02T05:59:00Z")), "06:59 local");
        assert!(!office.holds(at("2026-12-02T18:00:00Z")), "19:00 local: the end is exclusive");
        assert!(!office.holds(at("2026-12-05T10:00:00Z")), "Saturday");
    }

    #[test]
    fn a_window_crossing_midnight_belongs_to_the_day_it_starts_on() {
        let night = w("fri", "22:00-06:00", "UTC");
        assert!(night.holds(at("2026-12-04T23:00:00Z")), "Friday 23:00");
        assert!(night.holds(at("2026-12-05T05:59:00Z")), "Saturday 05:59, still Friday's night");
        assert!(!night.holds(at("2026-12-05T06:00:00Z")));
        assert!(!night.holds(at("2026-12-04T03:00:00Z")), "Friday 03:00 is Thursday's night, not listed");
        assert!(!night.holds(at("2026-12-05T23:00:00Z")), "Saturday evening");
    }

    #[test]
    fn local_hours_hold_on_both_sides_of_a_daylight_saving_change() {
        let morning = w("sun", "01:00-04:00", "Europe/Amsterdam");
        // 2026-03-29: clocks go from 02:00 CET to 03:00 CEST.
        assert!(morning.holds(at("2026-03-29T00:30:00Z")), "01:30 CET");
        assert!(morning.holds(at("2026-03-29T01:30:00Z")), "03:30 CEST");
        assert!(!morning.holds(at("2026-03-29T02:00:00Z")), "04:00 CEST: over, one UTC hour earlier than in winter");
        let office = w("mon-fri", "07:00-19:00", "America/New_York");
        // Monday 2026-11-02, after the change to EST (UTC-5): 07:00 local is 12:00 UTC.
        assert!(!office.holds(at("2026-11-02T11:30:00Z")));
        assert!(office.holds(at("2026-11-02T12:00:00Z")));
        // Friday 2026-10-30, still EDT (UTC-4): 07:00 local is 11:00 UTC.
        assert!(office.holds(at("2026-10-30T11:30:00Z")));
    }

    #[test]
    fn day_lists_ranges_wrapping_ranges_and_daily_are_read() {
        assert_eq!(parse_days("mon-fri"), Ok(0b001_1111));
        assert_eq!(parse_days("sat,sun"), Ok(0b110_0000));
        assert_eq!(parse_days("Mon, wed-fri"), Ok(0b001_1101));
        assert_eq!(parse_days("fri-mon"), Ok(0b111_0001));
        assert_eq!(parse_days("daily"), Ok(0x7f));
        assert!(parse_days("mon-fry").unwrap_err().contains("\"fry\""));
        assert!(parse_days("").is_err());
    }

    #[test]
    fn bad_hours_are_refused_with_the_reason() {
        assert!(parse_hours("25:00-26:00").unwrap_err().contains("\"25:00\""));
        assert!(parse_hours("07:00").unwrap_err().contains("span"));
        assert!(parse_hours("07:00-07:00").unwrap_err().contains("empty"));
        assert!(parse_hours("24:00-06:00").is_err());
        assert!(parse_hours("7:00-19:00").is_err());
        assert_eq!(parse_hours("00:00-24:00"), Ok((0, DAY)));
        assert_eq!(parse_hours("22:00-24:00"), Ok((22 * 60, 0)));
    }

    #[test]
    fn an_unknown_time_zone_is_named() {
        let problems = Window::parse("mon", "07:00-08:00", "Europe/Atlantis", 1).unwrap_err();
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].0, "timezone");
        assert!(problems[0].1.contains("Europe/Atlantis"));
    }

    #[test]
    fn overlapping_windows_are_found_across_zones_and_midnight() {
        let office = w("mon-fri", "07:00-19:00", "Europe/Amsterdam");
        assert!(office.overlaps(&w("wed", "18:00-20:00", "Europe/Amsterdam")));
        assert!(!office.overlaps(&w("sat,sun", "00:00-24:00", "Europe/Amsterdam")));
        assert!(!office.overlaps(&w("mon-fri", "19:00-07:00", "Europe/Amsterdam")));
        // 18:30 UTC is 19:30 in Amsterdam in winter but 20:30 in summer: apart either way;
        // 17:30 UTC is 18:30 in winter, inside.
        assert!(!office.overlaps(&w("mon", "18:30-19:00", "UTC")));
        assert!(office.overlaps(&w("mon", "17:30-17:45", "UTC")));
        // Sunday night into Monday morning reaches Monday's office hours.
        assert!(office.overlaps(&w("sun", "22:00-08:00", "Europe/Amsterdam")));
    }

    #[test]
    fn windows_that_overlap_only_while_us_and_eu_daylight_saving_differ_are_found() {
        // New York 13:00-14:00 is 17:00-18:00 UTC in summer and 18:00-19:00 in winter;
        // London 17:00-18:00 is 16:00-17:00 UTC in summer and 17:00-18:00 in winter. They
        // meet only in the weeks between the two continents' changes (March and
        // October/November), which mid-January and mid-July never see.
        let new_york = w("mon-fri", "13:00-14:00", "America/New_York");
        let london = w("mon-fri", "17:00-18:00", "Europe/London");
        for from in ["2026-01-01T00:00:00Z", "2026-12-06T00:00:00Z", "2031-06-15T12:00:00Z"] {
            assert!(new_york.overlaps_during(&london, at(from)), "from {from}");
            assert!(london.overlaps_during(&new_york, at(from)), "from {from}");
        }
        assert!(new_york.overlaps(&london));
        // London 20:00-21:00 (19:00-21:00 UTC over the year) never meets New York's hour.
        assert!(!new_york.overlaps_during(&w("mon-fri", "20:00-21:00", "Europe/London"), at("2026-01-01T00:00:00Z")));
    }
}
