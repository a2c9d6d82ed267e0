//! The report's window: `--since`/`--until` as a duration ago or an RFC 3339 time, and its
//! buckets (`--by`).

use std::time::Duration;

use chrono::{DateTime, Utc};

/// The most buckets a report may have (a chart and a table stay readable, the SQL small).
pub const MAX_BUCKETS: u64 = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    pub by: Duration,
}

/// A point in time as `sla report` takes it: what [`crate::duration::parse_time`] takes (RFC 3339,
/// `-2h`, `now`), and a bare duration (`24h`) meaning that long before `now`.
pub fn parse_when(text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    crate::duration::parse_time(text, now)
}

impl Window {
    /// The window from its arguments; `by` defaults to 5 m up to 2 h, 1 h up to 48 h, else 1 d.
    pub fn new(since: DateTime<Utc>, until: DateTime<Utc>, by: Option<Duration>) -> Result<Self, String> {
        if until <= since {
            return Err(format!("the window ends ({until}) before it starts ({since})"));
        }
        let span = (until - since).to_std().unwrap_or_default();
        let by = by.unwrap_or(match span.as_secs() {
            0..=7200 => Duration::from_secs(300),
            7201..=172_800 => Duration::from_secs(3600),
            _ => Duration::from_secs(86_400),
        });
        if by.is_zero() {
            return Err("--by must be longer than zero".into());
        }
        let w = Window { since, until, by };
        if w.buckets() as u64 > MAX_BUCKETS {
            return Err(format!("--by {} makes more than {MAX_BUCKETS} buckets", crate::duration::format_duration(by)));
        }
        Ok(w)
    }

    pub fn span(&self) -> Duration {
        (self.until - self.since).to_std().unwrap_or_default()
    }

    /// How many buckets: the last may be shorter than `by`.
    pub fn buckets(&self) -> usize {
        let (span, by) = (self.span().as_micros(), self.by.as_micros().max(1));
        span.div_ceil(by) as usize
    }

    /// The bucket of a time in the window (times outside fall in the first or last).
    pub fn bucket_of_us(&self, at_us: i64) -> usize {
        let since = self.since.timestamp_micros();
        let i = (at_us - since).max(0) as u128 / self.by.as_micros().max(1);
        (i as usize).min(self.buckets().saturating_sub(1))
    }

    /// Start and end of bucket `i`.
    pub fn bounds(&self, i: usize) -> (DateTime<Utc>, DateTime<Utc>) {
        let by = chrono::Duration::from_std(self.by).unwrap_or(chrono::Duration::MAX);
        let start = self.since + by * i as i32;
        (start, (start + by).min(self.until))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn buckets_cover_the_window_and_the_last_may_be_short() {
        let w =
            Window::new(t("2026-11-30T00:00:00Z"), t("2026-11-30T02:30:00Z"), Some(Duration::from_secs(3600))).unwrap();
        assert_eq!(w.buckets(), 3);
        assert_eq!(w.bounds(2), (t("2026-11-30T02:00:00Z"), t("2026-11-30T02:30:00Z")));
        assert_eq!(w.bucket_of_us(t("2026-11-30T01:59:59Z").timestamp_micros()), 1);
        assert_eq!(w.bucket_of_us(t("2026-11-30T02:00:00Z").timestamp_micros()), 2);
        assert_eq!(w.bucket_of_us(t("2026-12-01T00:00:00Z").timestamp_micros()), 2);
    }

    #[test]
    fn bad_windows_are_refused_and_by_has_a_sensible_default() {
        let (a, b) = (t("2026-11-30T00:00:00Z"), t("2026-11-30T01:00:00Z"));
        assert!(Window::new(b, a, None).unwrap_err().contains("ends"));
        assert!(Window::new(a, a, None).is_err());
        assert_eq!(Window::new(a, b, None).unwrap().by, Duration::from_secs(300));
        assert!(Window::new(a, b, Some(Duration::from_millis(1))).unwrap_err().contains("more than"));
        assert_eq!(parse_when("24h", b).unwrap(), b - chrono::Duration::hours(24));
        assert_eq!(parse_when("-1h", b).unwrap(), a, "the replay form works too");
        assert_eq!(parse_when("2026-11-30T00:00:00Z", b).unwrap(), a);
        assert_eq!(parse_when("now", b).unwrap(), b);
        assert!(parse_when("yesterday", b).is_err());
    }
}
