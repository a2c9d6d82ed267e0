//! Human durations (`500ms`, `5s`, `24h`) and times (RFC 3339 or relative like `-2h`).

use std::time::Duration;

use chrono::{DateTime, Utc};

/// The longest duration any flag or setting takes: 100 years. Past it, time arithmetic
/// (`now - since`, a Postgres interval) overflows; nothing an operator means is that long.
pub const MAX_DURATION: Duration = Duration::from_secs(100 * 365 * 86_400 + 25 * 86_400);

/// Parses a human duration with `humantime` (`500ms`, `5s`, `1h30m`, `7d`), at most
/// [`MAX_DURATION`]: a longer one is refused here, where it is typed, rather than overflowing
/// (or reaching a database) later.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(text.trim()).map_err(|e| format!("invalid duration {text:?}: {e}"))?;
    if d > MAX_DURATION {
        return Err(format!("{text:?} is longer than the longest duration taken, 100 years"));
    }
    Ok(d)
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

/// Parses a point in time: RFC 3339 (`2026-11-26T10:00:00Z`) or relative to `now` (`-2h` or
/// `2h` before it, `+7d` after it, `now`). One reading for every command's windows.
pub fn parse_time(text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    let t = text.trim();
    if t == "now" {
        return Ok(now);
    }
    if t.starts_with(|c: char| c.is_ascii_digit()) && humantime::parse_duration(t).is_ok() {
        return parse_time(&format!("-{t}"), now);
    }
    if let Some(rel) = t.strip_prefix('+') {
        let d = parse_duration(rel)?;
        let d = chrono::Duration::from_std(d).map_err(|e| format!("{text:?}: {e}"))?;
        return now.checked_add_signed(d).ok_or_else(|| format!("{text:?}: past the end of time"));
    }
    if let Some(rel) = t.strip_prefix('-') {
        let d = parse_duration(rel)?;
        let d = chrono::Duration::from_std(d).map_err(|e| format!("{text:?}: {e}"))?;
        return now.checked_sub_signed(d).ok_or_else(|| format!("{text:?}: before the start of time"));
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
        assert_eq!(parse_time("2h", now).unwrap(), parse_time("-2h", now).unwrap(), "one reading of windows");
        for huge in ["99999999999d", "300000y", "-300000y", "+300000y"] {
            let e = parse_time(huge, now).unwrap_err();
            assert!(e.contains("100 years"), "{huge}: {e}");
        }
        assert!(parse_duration("101y").unwrap_err().contains("longest duration taken, 100 years"));
        assert!(parse_duration("99y").is_ok());
    }
}
