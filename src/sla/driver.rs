//! The smoke driver watching itself: a ticker task that asks to wake every 2 ms and records how
//! late it woke (the runtime's scheduling lag, which every measured reply also waits through),
//! and the process's CPU time over the run. When the lag's P99 passes `--max-driver-lag` or the
//! process used nearly every core, the driver says its figures may read high (and by about how
//! much), instead of passing its own queueing off as the target's latency.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How often the ticker asks to wake.
const TICK: Duration = Duration::from_millis(2);
/// CPU use (of every core) from which the driver counts as saturated.
const CPU_SATURATED: f64 = 90.0;

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
    pub saturated: bool,
}

impl DriverHealth {
    /// One line for people.
    pub fn line(&self) -> String {
        let cpu =
            self.cpu_percent.map_or("CPU unknown".to_string(), |c| format!("CPU {c:.0} % of {} cores", self.cores));
        if self.saturated {
            format!(
                "driver saturated (scheduling lag p99 {:.1} ms, bound {:.1} ms; {cpu}): figures may read high by up to {:.1} ms; \
                 run fewer chats at once, give the driver more CPU, or split the run over several runners and `sla merge`",
                self.lag_p99_ms, self.max_lag_ms, self.lag_p99_ms
            )
        } else {
            format!(
                "driver: scheduling lag p99 {:.1} ms (bound {:.1} ms), {cpu}: not saturated",
                self.lag_p99_ms, self.max_lag_ms
            )
        }
    }
}

/// Decides saturation from the figures.
pub fn saturated(lag_p99_ms: f64, max_lag: Duration, cpu_percent: Option<f64>) -> bool {
    lag_p99_ms > max_lag.as_secs_f64() * 1000.0 || cpu_percent.is_some_and(|c| c >= CPU_SATURATED)
}

/// The running watch.
pub struct DriverWatch {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<Histogram<u64>>,
    started: Instant,
    cpu_start: Option<Duration>,
}

impl DriverWatch {
    pub fn start() -> DriverWatch {
        let stop = CancellationToken::new();
        let s = stop.clone();
        let task = tokio::spawn(async move {
            // 1 µs to 60 s at 3 significant digits: fixed bounds, so creation cannot fail.
            let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds");
            let mut next = Instant::now() + TICK;
            loop {
                tokio::select! {
                    _ = s.cancelled() => return h,
                    _ = tokio::time::sleep_until(next) => {}
                }
                let late = Instant::now().saturating_duration_since(next).as_micros() as u64;
                h.saturating_record(late.max(1));
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
        let h = self.task.await.unwrap_or_else(|_| Histogram::new(3).expect("valid histogram"));
        let ms = |q: f64| if h.is_empty() { 0.0 } else { (h.value_at_quantile(q) as f64 / 10.0).round() / 100.0 };
        let lag_p99_ms = ms(0.99);
        DriverHealth {
            lag_p50_ms: ms(0.5),
            lag_p99_ms,
            lag_max_ms: if h.is_empty() { 0.0 } else { (h.max() as f64 / 10.0).round() / 100.0 },
            cpu_percent,
            cores,
            max_lag_ms: max_lag.as_secs_f64() * 1000.0,
            saturated: saturated(lag_p99_ms, max_lag, cpu_percent),
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

    #[test]
    fn saturation_is_lag_past_the_bound_or_every_core_busy() {
        let bound = Duration::from_millis(5);
        assert!(!saturated(0.4, bound, Some(35.0)));
        assert!(saturated(7.5, bound, Some(35.0)));
        assert!(saturated(0.4, bound, Some(95.0)));
        assert!(!saturated(0.4, bound, None));
    }

    #[tokio::test]
    async fn an_idle_runtime_reports_its_lag_and_cpu() {
        let w = DriverWatch::start();
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
