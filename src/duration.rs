//! Human durations (`500ms`, `5s`, `24h`) and times (RFC 3339 or relative like `-2h`).

use std::time::Duration;

use chrono::{DateTime, Utc};

/// Parses a human duration with `humantime` (`500ms`, `5s`, `1h30m`, `7d`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim()).map_err(|e| format!("invalid duration {text:?}: {e}"))
}

/// A duration that must be more than zero (intervals, time-outs, time to live).
pub fn parse_positive_duration(text: &str) -> Result<Duration, String> {
    let d = parse_duration(text)?;
    if d.is_zero() {
        return Err(format!("{text:?}: must be more than zero"));
    }
    Ok(d)
}

/// Formats a duration for people: `812ms`, `4.21s`, `3m12s`, `3h12m`, `6d23h` (at most two
/// units past a minute).
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms < 1000.0 {
        return format!("{ms:.0}ms");
    }
    if ms < 60_000.0 {
        return format!("{:.2}s", ms / 1000.0);
    }
    let s = d.as_secs();
    let units = [(s / 86_400, "d"), (s / 3600 % 24, "h"), (s / 60 % 60, "m"), (s % 60, "s")];
    let first = units.iter().position(|(n, _)| *n > 0).unwrap_or(3);
    units[first..(first + 2).min(4)].iter().filter(|(n, _)| *n > 0).map(|(n, u)| format!("{n}{u}")).collect()
}

/// Parses a point in time: RFC 3339 (`2026-11-26T10:00:00Z`) or relative to `now` (`-2h`,
/// `+7d`, `now`).
pub fn parse_time(text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    let t = text.trim();
    if t == "now" {
        return Ok(now);
    }
    if let Some(rel) = t.strip_prefix('+') {
        let d = parse_duration(rel)?;
        let d = chrono::Duration::from_std(d).map_err(|e| format!("{text:?}: {e}"))?;
        return Ok(now + d);
    }
    if let Some(rel) = t.strip_prefix('-') {
        let d = parse_duration(rel)?;
        let d = chrono::Duration::from_std(d).map_err(|e| format!("{text:?}: {e}"))?;
        return Ok(now - d);
    }
    DateTime::parse_from_rfc3339(t)
        .map(|dt| dt.with_timezone(&Utc))
        .map_err(|e| format!("invalid time {text:?} (RFC 3339 or relative like -2h): {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_round_trip_through_people() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("24h").unwrap(), Duration::from_secs(86_400));
        assert!(parse_duration("5 parsecs").is_err());
        assert_eq!(format_duration(Duration::from_millis(812)), "812ms");
        assert_eq!(format_duration(Duration::from_millis(4210)), "4.21s");
        assert_eq!(format_duration(Duration::from_secs(192)), "3m12s");
        assert_eq!(format_duration(Duration::from_secs(3 * 3600 + 12 * 60 + 5)), "3h12m");
        assert_eq!(format_duration(Duration::from_secs(7 * 86_400)), "7d");
        assert_eq!(format_duration(Duration::from_secs(7 * 86_400 - 1)), "6d23h");
    }

    #[test]
    fn times_are_absolute_or_relative() {
        let now = DateTime::parse_from_rfc3339("2026-11-26T12:00:00Z").unwrap().with_timezone(&Utc);
        assert_eq!(parse_time("-2h", now).unwrap().to_rfc3339(), "2026-11-26T10:00:00+00:00");
        assert_eq!(parse_time("2026-11-26T10:00:00Z", now).unwrap(), now - chrono::Duration::hours(2));
        assert!(parse_time("yesterday", now).is_err());
    }
}
