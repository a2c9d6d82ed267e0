//! The path between the driver and the service, timed by the service's own clock.
//!
//! Ably stamps every message with the moment it took it (`timestamp`, ms since the epoch). For
//! each reply, the echo of the customer's message and the reply itself carry such a stamp, so
//! `(echo stamp − sent) + (read − reply stamp)` is what the way there and the way back added to
//! the reply time the driver measured: the service's own time (reply stamp − echo stamp) is
//! taken out. Its smallest value over the run is the floor (the path's own latency plus any clock
//! skew between Ably and this machine, both constant over a run; the stamps' whole milliseconds
//! make it up to 1 ms low); the mean above the floor is queueing on the way, by which the
//! figures read high. The mean, not the median: a percentile of the replies moves by the mean
//! delay of the replies around it, and queueing comes in bursts that a median of the delays
//! misses (docs/performance.md). So each sample keeps its reply's measured time too, and with
//! enough replies the mean is also taken among the replies around the P50 and around the P95:
//! a run whose bursts fell on its middle replies read 2.3 ms high at the P50 while the mean over
//! all of them was 1.9 ms.
//!
//! Why a witness beside the driver's ticker: at 100 chats at once the replies read 2-9 ms high
//! while the driver's own lag accounted for under 1 ms of it; the delay was in the stand-in
//! taking the message and fanning out the reply, which a watch of the driver cannot see.

use rand::{Rng, SeedableRng};
use serde::Serialize;

/// Samples kept for the figures (a uniform reservoir past that; the floor stays exact).
const KEPT: usize = 50_000;
/// Fewer replies than this are too few to tell queueing from noise.
const MIN_SAMPLES: u64 = 20;
/// The replies around a percentile: those ranked within this share of it (by measured time),
/// judged only with at least `MIN_SAMPLES` of them.
const BAND: f64 = 0.10;
/// The accuracy the figures claim: max(1 % of the reply P50, 2 ms). On a calm run the estimate
/// reads up to about 1 ms high (the floor is up to 1 ms low: whole-millisecond stamps), which
/// errs towards flagging; calm runs measured 0.6-1.6 ms, runs 2 ms or more high 2.7 ms and up.
const ABS_BOUND_MS: f64 = 2.0;
const REL_BOUND: f64 = 0.01;

/// Collects each reply's path time in ms (possibly negative under clock skew), with the reply
/// time the driver measured.
#[derive(Debug, Clone)]
pub struct PathWitness {
    /// (path ms, reply ms).
    kept: Vec<(f64, f64)>,
    seen: u64,
    floor: f64,
    rng: rand::rngs::StdRng,
}

impl Default for PathWitness {
    fn default() -> Self {
        PathWitness { kept: Vec::new(), seen: 0, floor: f64::INFINITY, rng: rand::rngs::StdRng::seed_from_u64(1) }
    }
}

impl PathWitness {
    pub fn record(&mut self, ms: f64, reply_ms: f64) {
        if !ms.is_finite() || !reply_ms.is_finite() {
            return;
        }
        self.seen += 1;
        self.floor = self.floor.min(ms);
        if self.kept.len() < KEPT {
            self.kept.push((ms, reply_ms));
        } else if let Ok(j) = usize::try_from(self.rng.random_range(0..self.seen))
            && j < KEPT
        {
            // Algorithm R: every sample so far is kept with the same chance.
            self.kept[j] = (ms, reply_ms);
        }
    }

    /// The mean path past the floor among the replies ranked within [`BAND`] of quantile `q` by
    /// their measured time; `None` with too few of them.
    fn around(&self, by_reply: &[(f64, f64)], q: f64) -> Option<f64> {
        let n = by_reply.len() as f64;
        let (lo, hi) =
            (((q - BAND).max(0.0) * n) as usize, (((q + BAND).min(1.0) * n).ceil() as usize).min(by_reply.len()));
        let band = by_reply.get(lo..hi)?;
        (band.len() as u64 >= MIN_SAMPLES)
            .then(|| band.iter().map(|(p, _)| p).sum::<f64>() / band.len() as f64 - self.floor)
    }

    /// The summary, judged against the reply P50 the run measured (ms).
    pub fn summary(&self, reply_p50_ms: Option<f64>) -> Option<PathHealth> {
        if self.kept.is_empty() {
            return None;
        }
        let mut v: Vec<f64> = self.kept.iter().map(|(p, _)| *p).collect();
        v.sort_by(f64::total_cmp);
        let p95 = v[((0.95 * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        let mut by_reply = self.kept.clone();
        by_reply.sort_by(|a, b| a.1.total_cmp(&b.1));
        let (at_p50, at_p95) = (self.around(&by_reply, 0.5), self.around(&by_reply, 0.95));
        let round = |x: f64| (x * 100.0).round() / 100.0;
        let over_mean = mean - self.floor;
        let bound = reply_p50_ms.map_or(ABS_BOUND_MS, |p| (p * REL_BOUND).max(ABS_BOUND_MS));
        Some(PathHealth {
            samples: self.seen,
            floor_ms: round(self.floor),
            over_floor_mean_ms: round(over_mean),
            over_floor_p95_ms: round(p95 - self.floor),
            over_floor_at_p50_ms: at_p50.map(round),
            over_floor_at_p95_ms: at_p95.map(round),
            bound_ms: round(bound),
            queued: self.seen >= MIN_SAMPLES && most(over_mean, at_p50, at_p95) > bound,
        })
    }
}

/// The largest of the mean past the floor and the means around the P50 and the P95 (those that
/// could be judged): what the run is flagged on, and by about how much its figures read high.
fn most(mean: f64, at_p50: Option<f64>, at_p95: Option<f64>) -> f64 {
    [at_p50, at_p95].into_iter().flatten().fold(mean, f64::max)
}

/// What the path to and from the service said about the run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PathHealth {
    /// Replies whose echo and reply both carried Ably's timestamp.
    pub samples: u64,
    /// The fastest path (its latency plus clock skew).
    pub floor_ms: f64,
    /// What the path added on average past its floor: by about this much the figures read high.
    pub over_floor_mean_ms: f64,
    pub over_floor_p95_ms: f64,
    /// The mean past the floor among the replies around the reply P50 (ranked within 10 % of
    /// it): by about this much the P50 reads high. `None` with fewer than 20 such replies.
    pub over_floor_at_p50_ms: Option<f64>,
    /// The same around the reply P95.
    pub over_floor_at_p95_ms: Option<f64>,
    /// Past this the run is flagged (the mean, or either of the two above): max(1 % of the
    /// reply P50, 2 ms).
    pub bound_ms: f64,
    pub queued: bool,
}

impl PathHealth {
    /// By about how much the figures may read high: the most of the mean and the means around
    /// the P50 and the P95.
    pub fn reads_high_ms(&self) -> f64 {
        most(self.over_floor_mean_ms, self.over_floor_at_p50_ms, self.over_floor_at_p95_ms)
    }

    /// One line for people.
    pub fn line(&self) -> String {
        let around = match (self.over_floor_at_p50_ms, self.over_floor_at_p95_ms) {
            (Some(a), Some(b)) => format!("; {a:.1} ms around the P50, {b:.1} ms around the P95"),
            _ => String::new(),
        };
        let figures = format!(
            "the way to and from the service added {:.1} ms on average past its fastest{around} ({:.1} ms at p95, \
             bound {:.1} ms, {} replies)",
            self.over_floor_mean_ms, self.over_floor_p95_ms, self.bound_ms, self.samples
        );
        if self.queued {
            format!(
                "path queued: {figures}: figures may read high by about {:.1} ms; the service's front (taking messages, \
                 fanning out replies) or the network was the bottleneck, not the AI",
                self.reads_high_ms()
            )
        } else {
            format!("path: {figures}: not queued")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Path samples whose replies took 40 ms plus the path (the service's time constant).
    fn witness(samples: impl IntoIterator<Item = f64>) -> PathWitness {
        let mut w = PathWitness::default();
        samples.into_iter().for_each(|s| w.record(s, 40.0 + s));
        w
    }

    #[test]
    fn bursts_on_the_middle_replies_are_caught_around_the_p50_when_the_mean_is_under_the_bound() {
        // Recorded shape (the pinned run at 100 at once that read 2.3 ms high at the P50): the
        // mean over all replies is under the bound, the replies around the P50 waited more.
        let mut w = PathWitness::default();
        for i in 0..400 {
            let service = 20.0 + f64::from(i) * 0.2; // 20-100 ms, spread evenly
            let path = if (160..240).contains(&i) { 4.0 } else { 1.5 };
            w.record(path, service + path);
        }
        let h = w.summary(Some(60.0)).unwrap();
        assert!(h.over_floor_mean_ms < h.bound_ms, "{h:?}");
        assert!(h.over_floor_at_p50_ms.unwrap() > 2.0, "{h:?}");
        assert!(h.queued, "{h:?}");
        assert!((h.reads_high_ms() - h.over_floor_at_p50_ms.unwrap()).abs() < 1e-9);
    }

    #[test]
    fn around_each_percentile_needs_20_replies_in_its_band() {
        let few = witness((0..60).map(|i| f64::from(i % 3))).summary(Some(40.0)).unwrap();
        assert_eq!(
            (few.over_floor_at_p50_ms, few.over_floor_at_p95_ms),
            (None, None),
            "12 replies per band are too few"
        );
    }

    #[test]
    fn a_steady_path_with_skew_is_not_queued() {
        // 40 ms of path and skew, 0.3 ms of jitter: the floor takes the constant away.
        let h = witness((0..400).map(|i| 40.0 + f64::from(i % 7) * 0.05)).summary(Some(45.0)).unwrap();
        assert!(!h.queued, "{h:?}");
        assert_eq!(h.floor_ms, 40.0);
        assert!(h.over_floor_mean_ms < 0.4);
    }

    #[test]
    fn a_calm_loopback_run_with_whole_millisecond_stamps_is_not_queued() {
        // Recorded shape: 0.2-0.4 ms of path, each leg's stamp truncated to the millisecond; calm
        // around each percentile too.
        let h = witness((0..400).map(|i| 0.3 + f64::from(i % 10) / 10.0 - 0.9)).summary(Some(40.0)).unwrap();
        assert!(h.over_floor_at_p50_ms.is_some() && h.over_floor_at_p95_ms.is_some(), "{h:?}");
        assert!(!h.queued, "{h:?}");
    }

    #[test]
    fn a_burst_now_and_then_is_caught_by_the_mean() {
        // Most replies pass at the floor, one in five waits 12 ms behind a fan-out of a hundred:
        // the median sees nothing, the percentiles move by the mean, 3 ms.
        let h = witness((0..400).map(|i| if i % 4 == 0 { 12.0 } else { 0.0 })).summary(Some(40.0)).unwrap();
        assert!(h.queued, "{h:?}");
        assert!((h.over_floor_mean_ms - 3.0).abs() < 0.01);
    }

    #[test]
    fn negative_skew_is_a_floor_like_any_other_and_the_bound_scales_with_the_replies() {
        let w = witness((0..400).map(|i| -12.0 + f64::from(i % 10)));
        let h = w.summary(Some(40.0)).unwrap();
        assert_eq!(h.floor_ms, -12.0);
        assert!(h.queued, "4.5 ms on average past the floor: {h:?}");
        assert!(!w.summary(Some(2000.0)).unwrap().queued, "within 1 % of 2 s replies");
    }

    #[test]
    fn too_few_replies_are_not_judged() {
        assert!(!witness((0..10).map(|i| f64::from(i) * 3.0)).summary(Some(40.0)).unwrap().queued);
        assert!(witness([]).summary(Some(1.0)).is_none());
        assert!(witness([f64::NAN, f64::INFINITY]).summary(Some(1.0)).is_none());
    }

    #[test]
    fn the_reservoir_is_bounded_and_the_floor_exact() {
        let mut w = PathWitness::default();
        for i in 0..(KEPT as u64 * 3) {
            w.record(5.0 + (i % 1000) as f64 / 100.0, 40.0);
        }
        w.record(0.5, 40.0);
        assert_eq!(w.kept.len(), KEPT);
        let h = w.summary(None).unwrap();
        assert_eq!(h.floor_ms, 0.5);
        assert!((h.over_floor_mean_ms - 9.5).abs() < 0.3, "{h:?}");
    }
}
