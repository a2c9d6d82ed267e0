//! Latency histograms, shared by the smoke (`sla`) and the report (`analytics`): a small wrapper
//! around [`hdrhistogram::Histogram`]: microsecond resolution,
//! three significant digits, values up to one hour, and the HdrHistogram log format for
//! `--histogram-out` / `sla merge`.

use std::time::Duration;

use hdrhistogram::Histogram;

/// A value in ms rounded to the µs, as every report shows latencies.
pub fn r3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// The largest latency recorded exactly; longer ones are clamped (and still counted).
const MAX_US: u64 = 3_600_000_000;

#[derive(Debug, Clone)]
pub struct LatencyHistogram {
    hist: Histogram<u64>,
    /// The largest value recorded, exactly: the histogram itself only knows its bucket (60000 ms
    /// reads back as 60031 ms), and a reported maximum must be the real one.
    exact_max_us: Option<u64>,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self::new()
    }
}

impl LatencyHistogram {
    pub fn new() -> Self {
        // The bounds are constants that hdrhistogram accepts (1 <= low, high >= 2 * low, 3 digits).
        let hist = Histogram::new_with_bounds(1, MAX_US, 3).expect("valid histogram bounds");
        LatencyHistogram { hist, exact_max_us: None }
    }

    pub fn from_inner(hist: Histogram<u64>) -> Self {
        LatencyHistogram { hist, exact_max_us: None }
    }

    /// Notes a value known exactly to have been seen (the SQL's own maximum, when the rows
    /// recorded were rounded to their buckets).
    pub fn note_max_us(&mut self, us: u64) {
        let us = us.clamp(1, MAX_US);
        self.exact_max_us = Some(self.exact_max_us.map_or(us, |m| m.max(us)));
    }

    pub fn inner(&self) -> &Histogram<u64> {
        &self.hist
    }

    pub fn record(&mut self, d: Duration) {
        let us = (d.as_micros() as u64).clamp(1, MAX_US);
        // Cannot fail: the value is clamped into the histogram's range.
        let _ = self.hist.record(us);
        self.note_max_us(us);
    }

    /// Records `count` samples of `us` microseconds (clamped into the histogram's range).
    pub fn record_us(&mut self, us: u64, count: u64) {
        // Cannot fail on the value, which is clamped; a total count past u64 is not reachable
        // from event counts.
        let _ = self.hist.record_n(us.clamp(1, MAX_US), count);
        if count > 0 {
            self.note_max_us(us);
        }
    }

    /// Records `d` as wrk2 does for coordinated omission: when a sample took longer than the
    /// expected interval, the samples that should have been taken meanwhile are filled in.
    pub fn record_corrected(&mut self, d: Duration, expected_interval: Duration) {
        let us = (d.as_micros() as u64).clamp(1, MAX_US);
        let _ = self.hist.record_correct(us, (expected_interval.as_micros() as u64).max(1));
        self.note_max_us(us);
    }

    /// Adds `other`'s samples; counts that would overflow are an error.
    pub fn merge(&mut self, other: &LatencyHistogram) -> Result<(), String> {
        if self.hist.len().checked_add(other.hist.len()).is_none() {
            return Err("the histogram counts overflow when added up".into());
        }
        self.hist.add(&other.hist).map_err(|e| format!("adding histograms: {e:?}"))?;
        if let Some(m) = other.exact_max_us {
            self.note_max_us(m);
        }
        Ok(())
    }

    pub fn count(&self) -> u64 {
        self.hist.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hist.is_empty()
    }

    /// The value at percentile `p` (0..=100) in milliseconds, never above the exact maximum
    /// (a bucket's upper edge can be past every value in it).
    pub fn percentile_ms(&self, p: f64) -> f64 {
        let v = self.hist.value_at_percentile(p);
        self.exact_max_us.map_or(v, |m| v.min(m)) as f64 / 1000.0
    }

    pub fn min_ms(&self) -> f64 {
        if self.is_empty() { 0.0 } else { self.hist.min() as f64 / 1000.0 }
    }

    /// The largest value recorded: exact when it was recorded here (or noted), else the
    /// histogram's own.
    pub fn max_ms(&self) -> f64 {
        if self.is_empty() {
            return 0.0;
        }
        self.exact_max_us.unwrap_or_else(|| self.hist.max()) as f64 / 1000.0
    }

    pub fn mean_ms(&self) -> f64 {
        self.hist.mean() / 1000.0
    }

    /// How many recorded values are above `limit_ms`. Values in the same bucket as the limit
    /// (within 0.1 %) are not counted, so this never over-counts.
    pub fn count_above_ms(&self, limit_ms: f64) -> u64 {
        let limit_us = (limit_ms * 1000.0) as u64;
        self.hist
            .iter_recorded()
            .filter(|v| self.hist.lowest_equivalent(v.value_iterated_to()) > limit_us)
            .map(|v| v.count_at_value())
            .sum()
    }

    /// Counts in `bins` equal-width bins between the minimum and the 99.9th percentile (the
    /// last bin also holds everything above): `(upper bound ms, count)`.
    pub fn bins(&self, bins: usize) -> Vec<(f64, u64)> {
        if self.is_empty() || bins == 0 {
            return Vec::new();
        }
        let lo = self.hist.min() as f64;
        let hi = (self.hist.value_at_percentile(99.9) as f64).max(lo + 1.0);
        let width = (hi - lo) / bins as f64;
        let mut out: Vec<(f64, u64)> = (1..=bins).map(|i| ((lo + width * i as f64) / 1000.0, 0)).collect();
        for v in self.hist.iter_recorded() {
            let x = v.value_iterated_to() as f64;
            let i = (((x - lo) / width).floor() as usize).min(bins - 1);
            out[i].1 += v.count_at_value();
        }
        out
    }
}

/// A text histogram of `h`: one bar per bin.
pub fn histogram_text(h: &LatencyHistogram, width: usize) -> String {
    let bins = h.bins(12);
    let top = bins.iter().map(|b| b.1).max().unwrap_or(0).max(1);
    let mut s = String::new();
    for (upper, count) in bins {
        let bar = "█".repeat(((count as f64 / top as f64) * width as f64).round() as usize);
        s.push_str(&format!("{:>9} │{bar} {count}\n", format!("≤{:.0}ms", upper)));
    }
    s
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_maximum_is_the_value_recorded_not_its_buckets_edge() {
        let mut h = LatencyHistogram::new();
        h.record(Duration::from_secs(60));
        h.record(Duration::from_millis(5));
        assert_eq!(h.max_ms(), 60_000.0, "not 60031");
        assert_eq!(h.percentile_ms(100.0), 60_000.0, "no percentile above the maximum");
        let mut rounded = LatencyHistogram::new();
        rounded.record_us(59_998_208, 1);
        rounded.note_max_us(60_000_000);
        let mut all = LatencyHistogram::new();
        all.merge(&rounded).unwrap();
        assert_eq!(all.max_ms(), 60_000.0, "a noted maximum survives a merge");
    }

    use super::*;

    #[test]
    fn percentiles_and_counts_are_exact_to_three_digits() {
        let mut h = LatencyHistogram::new();
        for ms in 1..=1000 {
            h.record(Duration::from_millis(ms));
        }
        assert_eq!(h.count(), 1000);
        assert!((h.percentile_ms(50.0) - 500.0).abs() <= 0.5);
        assert!((h.percentile_ms(95.0) - 950.0).abs() <= 1.0);
        assert!((h.max_ms() - 1000.0).abs() <= 1.0);
        assert_eq!(h.count_above_ms(900.0), 100);
        let bins = h.bins(10);
        assert_eq!(bins.iter().map(|b| b.1).sum::<u64>(), 1000);
    }

    #[test]
    fn corrected_recording_fills_in_the_omitted_samples() {
        let mut h = LatencyHistogram::new();
        h.record_corrected(Duration::from_millis(1000), Duration::from_millis(100));
        assert_eq!(h.count(), 10, "1000 ms at a 100 ms interval stands for 10 samples");
    }
}
