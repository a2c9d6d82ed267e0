//! The smoke driver watching itself: a ticker task that asks to wake every 2 ms and records how
//! late it woke (the runtime's scheduling lag, which every measured reply also waits through),
//! and the process's CPU time over the run. When the lag is *sustained* past `--max-driver-lag`
//! (at least 5 of any 50 consecutive ticks late past it, about 100 ms) or the process used nearly
//! every core, the driver says its figures may read high (and by about how much), instead of
//! passing its own queueing off as the target's latency.
//!
//! Why a window and not the lag's P99: on a run of a few hundred ticks the P99 is the single
//! worst tick, and the wake-ups of a machine that sat idle for a few seconds are 5-14 ms late on
//! their own (a CPU leaving a deep sleep state). That flagged 8 calm runs of 20; a driver short
//! of CPU is late tick after tick, which one or two slow wake-ups are not. A delay between the
//! driver and the service is not the driver's to see: [`super::path`] watches that.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How often the ticker asks to wake.
const TICK: Duration = Duration::from_millis(2);
/// CPU use (of every core) from which the driver counts as saturated.
const CPU_SATURATED: f64 = 90.0;
/// The window the lag is judged over, in ticks (about 100 ms).
const WINDOW: usize = 50;
/// Late ticks within one window that make the lag sustained (10 %).
const LATE_IN_WINDOW: u32 = 5;

/// What the driver saw of itself.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DriverHealth {
    pub lag_p50_ms: f64,
    pub lag_p99_ms: f64,
    pub lag_max_ms: f64,
    /// The process's CPU time over the run's wall time, as a share of every core (`None` where
    /// the system does not say).
    pub cpu_percent: Option<f64>,
    pub cores: usize,
    pub max_lag_ms: f64,
    /// The most ticks late past the bound within any 50 consecutive ticks (saturated from 5).
    pub late_in_window: u32,
    pub saturated: bool,
}

impl DriverHealth {
    /// One line for people.
    pub fn line(&self) -> String {
        let cpu =
            self.cpu_percent.map_or("CPU unknown".to_string(), |c| format!("CPU {c:.0} % of {} cores", self.cores));
        if self.saturated {
            format!(
                "driver saturated (scheduling lag p99 {:.1} ms, bound {:.1} ms, {} of {WINDOW} ticks late at worst; {cpu}): \
                 figures may read high by up to {:.1} ms; run fewer chats at once, give the driver more CPU, or split the \
                 run over several runners and `sla merge`",
                self.lag_p99_ms, self.max_lag_ms, self.late_in_window, self.lag_p99_ms
            )
        } else {
            format!(
                "driver: scheduling lag p99 {:.1} ms (bound {:.1} ms, {} of {WINDOW} ticks late at worst), {cpu}: not \
                 saturated; figures may read high by up to {:.1} ms",
                self.lag_p99_ms, self.max_lag_ms, self.late_in_window, self.lag_p99_ms
            )
        }
    }
}

/// Decides saturation: lag sustained past the bound, or nearly every core busy.
pub fn saturated(late_in_window: u32, cpu_percent: Option<f64>) -> bool {
    late_in_window >= LATE_IN_WINDOW || cpu_percent.is_some_and(|c| c >= CPU_SATURATED)
}

/// The most late ticks in any `WINDOW` consecutive ones, kept as the ticks come.
#[derive(Debug, Clone)]
pub struct LateWindow {
    bound_us: u64,
    recent: std::collections::VecDeque<bool>,
    late: u32,
    pub worst: u32,
}

impl LateWindow {
    pub fn new(bound: Duration) -> LateWindow {
        let bound_us = u64::try_from(bound.as_micros()).unwrap_or(u64::MAX);
        LateWindow { bound_us, recent: std::collections::VecDeque::with_capacity(WINDOW), late: 0, worst: 0 }
    }

    pub fn tick(&mut self, late_us: u64) {
        let is_late = late_us > self.bound_us;
        if self.recent.len() == WINDOW && self.recent.pop_front() == Some(true) {
            self.late -= 1;
        }
        self.recent.push_back(is_late);
        self.late += u32::from(is_late);
        self.worst = self.worst.max(self.late);
    }
}

/// The running watch.
pub struct DriverWatch {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<(Histogram<u64>, u32)>,
    started: Instant,
    cpu_start: Option<Duration>,
}

impl DriverWatch {
    /// Starts watching; `max_lag` is the bound a tick is late past.
    pub fn start(max_lag: Duration) -> DriverWatch {
        let stop = CancellationToken::new();
        let s = stop.clone();
        let task = tokio::spawn(async move {
            // 1 µs to 60 s at 3 significant digits: fixed bounds, so creation cannot fail.
            let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds");
            let mut window = LateWindow::new(max_lag);
            let mut next = Instant::now() + TICK;
            loop {
                tokio::select! {
                    _ = s.cancelled() => return (h, window.worst),
                    _ = tokio::time::sleep_until(next) => {}
                }
                let late = Instant::now().saturating_duration_since(next).as_micros() as u64;
                h.saturating_record(late.max(1));
                window.tick(late);
                next = Instant::now() + TICK;
            }
        });
        DriverWatch { stop, task, started: Instant::now(), cpu_start: process_cpu() }
    }

    pub async fn finish(self, max_lag: Duration) -> DriverHealth {
        self.stop.cancel();
        let wall = self.started.elapsed();
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let cpu_percent = match (self.cpu_start, process_cpu()) {
            (Some(a), Some(b)) if !wall.is_zero() => {
                Some(((b.saturating_sub(a)).as_secs_f64() / wall.as_secs_f64() / cores as f64 * 1000.0).round() / 10.0)
            }
            _ => None,
        };
        let (h, late_in_window) = self.task.await.unwrap_or_else(|_| (Histogram::new(3).expect("valid histogram"), 0));
        let ms = |q: f64| if h.is_empty() { 0.0 } else { (h.value_at_quantile(q) as f64 / 10.0).round() / 100.0 };
        let lag_p99_ms = ms(0.99);
        DriverHealth {
            lag_p50_ms: ms(0.5),
            lag_p99_ms,
            lag_max_ms: if h.is_empty() { 0.0 } else { (h.max() as f64 / 10.0).round() / 100.0 },
            cpu_percent,
            cores,
            max_lag_ms: max_lag.as_secs_f64() * 1000.0,
            late_in_window,
            saturated: saturated(late_in_window, cpu_percent),
        }
    }
}

/// The process's user + system CPU time, from `/proc/self/stat` (Linux; clock ticks of 1/100 s,
/// the fixed USER_HZ of Linux's user-space interface).
fn process_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may hold spaces; the fields after its closing parenthesis are fixed.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let (utime, stime): (u64, u64) = (f.get(11)?.parse().ok()?, f.get(12)?.parse().ok()?);
    Some(Duration::from_millis((utime + stime) * 10))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The worst window of a series of tick lags (µs) against a 5 ms bound.
    fn worst(series: impl IntoIterator<Item = u64>) -> u32 {
        let mut w = LateWindow::new(Duration::from_millis(5));
        series.into_iter().for_each(|l| w.tick(l));
        w.worst
    }

    #[test]
    fn saturation_is_sustained_lag_or_every_core_busy() {
        assert!(!saturated(0, Some(35.0)));
        assert!(!saturated(4, Some(35.0)));
        assert!(saturated(5, Some(35.0)));
        assert!(saturated(0, Some(95.0)));
        assert!(!saturated(0, None));
    }

    /// Recorded shapes: a calm run's first wake-up after idle (one tick 8.8 ms late, a second
    /// 5.1 ms, the rest 0.1-0.3 ms: the P99 of 150 ticks read 5.1 ms and flagged it); a driver
    /// short of CPU (tick after tick 6-12 ms late); a busy neighbour taking the core every
    /// fourth tick for 7 ms.
    #[test]
    fn a_wake_up_from_idle_is_not_saturation_and_sustained_lag_is() {
        let calm = [8_800, 5_100].into_iter().chain((0..148).map(|i| 100 + (i % 3) * 100));
        assert_eq!(worst(calm), 2);
        assert!(!saturated(2, Some(5.0)));
        let starved = (0..150).map(|i| 6_000 + (i % 7) * 1_000);
        assert_eq!(worst(starved), 50);
        let neighbour = (0..400).map(|i| if i % 4 == 0 { 7_000 } else { 300 });
        assert!(saturated(worst(neighbour), Some(40.0)), "12 or 13 of every 50 late");
        // Wake-ups spread over a long run never gather five in 100 ms.
        let long_calm = (0..30_000).map(|i| if i % 500 == 0 { 9_000 } else { 200 });
        assert_eq!(worst(long_calm), 1);
    }

    #[tokio::test]
    async fn an_idle_runtime_reports_its_lag_and_cpu() {
        let w = DriverWatch::start(Duration::from_millis(5));
        tokio::time::sleep(Duration::from_millis(50)).await;
        let h = w.finish(Duration::from_millis(5)).await;
        assert!(h.lag_p50_ms >= 0.0 && h.lag_p99_ms >= h.lag_p50_ms && h.lag_max_ms >= h.lag_p99_ms, "{h:?}");
        assert!(h.cores >= 1);
        if cfg!(target_os = "linux") {
            assert!(h.cpu_percent.is_some(), "{h:?}");
        }
        assert!(h.line().starts_with("driver"));
    }
}
