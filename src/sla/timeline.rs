//! Reply times over the run, for the HTML report's "latency over time": one histogram per slice
//! of the run, by when each chat finished. At most 120 slices: when the run outlasts them, the
//! slices double in width and pairs merge (exactly, as histograms do), so a day's soak holds no
//! more than a minute's run (about 3 MB at 1 % precision).

use std::time::Duration;

use hdrhistogram::Histogram;

use super::chat::{ChatOutcome, Phase};

const MAX_SLICES: usize = 120;

#[derive(Debug, Clone)]
pub struct Timeline {
    width: Duration,
    slices: Vec<Histogram<u64>>,
}

impl Default for Timeline {
    fn default() -> Self {
        Timeline { width: Duration::from_secs(1), slices: Vec::new() }
    }
}

/// One slice's figures: its start from the run's, the replies in it and their percentiles.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Slice {
    pub start_s: f64,
    pub replies: u64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub max_ms: f64,
}

fn slice() -> Histogram<u64> {
    // 1 µs to an hour at 2 significant digits: fixed bounds, so creation cannot fail.
    Histogram::new_with_bounds(1, 3_600_000_000, 2).expect("valid histogram bounds")
}

impl Timeline {
    /// The chat that finished `at` into the run: its replies, in its slice.
    pub fn add(&mut self, at: Duration, o: &ChatOutcome) {
        for (_, d) in o.phases.iter().filter(|(p, _)| *p == Phase::Reply) {
            self.record(at, *d);
        }
    }

    pub fn record(&mut self, at: Duration, reply: Duration) {
        let mut i = (at.as_nanos() / self.width.as_nanos().max(1)) as usize;
        while i >= MAX_SLICES {
            self.coarsen();
            i = (at.as_nanos() / self.width.as_nanos().max(1)) as usize;
        }
        while self.slices.len() <= i {
            self.slices.push(slice());
        }
        let us = u64::try_from(reply.as_micros()).unwrap_or(u64::MAX).max(1);
        self.slices[i].saturating_record(us);
    }

    /// Twice as wide, pairs merged: the figures stay exact, only coarser in time.
    fn coarsen(&mut self) {
        self.width = self.width.saturating_mul(2);
        let old = std::mem::take(&mut self.slices);
        for pair in old.chunks(2) {
            let mut h = pair[0].clone();
            if let Some(b) = pair.get(1) {
                // Same bounds on both sides: adding cannot fail.
                let _ = h.add(b);
            }
            self.slices.push(h);
        }
    }

    pub fn width(&self) -> Duration {
        self.width
    }

    /// The slices with replies in them.
    pub fn slices(&self) -> Vec<Slice> {
        self.slices
            .iter()
            .enumerate()
            .filter(|(_, h)| !h.is_empty())
            .map(|(i, h)| Slice {
                start_s: i as f64 * self.width.as_secs_f64(),
                replies: h.len(),
                p50_ms: h.value_at_quantile(0.5) as f64 / 1000.0,
                p95_ms: h.value_at_quantile(0.95) as f64 / 1000.0,
                max_ms: h.max() as f64 / 1000.0,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_run_keeps_its_slices_bounded_and_its_counts_exact() {
        let mut t = Timeline::default();
        for s in 0..1000u64 {
            t.record(Duration::from_secs(s), Duration::from_millis(100 + s));
        }
        let slices = t.slices();
        assert!(slices.len() <= MAX_SLICES, "{}", slices.len());
        assert_eq!(t.width(), Duration::from_secs(16));
        assert_eq!(slices.iter().map(|s| s.replies).sum::<u64>(), 1000);
        let last = slices.last().unwrap();
        assert!((last.max_ms - 1099.0).abs() < 11.0, "{last:?}");
        assert!(Timeline::default().slices().is_empty());
    }
}
