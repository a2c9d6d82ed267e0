//! The soak: a steady arrival rate for a duration, with a summary per interval. Each interval
//! keeps its own aggregate (a histogram per phase) and is dropped once summarised, so memory
//! stays flat over hours; the run's total is kept beside it. Chats count in the interval in
//! which they ended. With `--interval-thresholds` every interval is judged too: a soak that was
//! bad for one hour of twenty-four fails.

use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::json;
use tokio::sync::mpsc;

use super::Aggregate;
use super::chat::{ChatOutcome, Phase};
use super::figures::{ErrorCount, Percentiles};
use super::threshold::{Threshold, ThresholdResult, evaluate};

/// The most intervals a soak may have (a day at 10 s): the summaries are kept for the report.
pub const MAX_INTERVALS: u64 = 8_640;
/// The shortest interval.
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// How a soak runs.
#[derive(Clone, Debug)]
pub struct SoakPlan {
    pub duration: Duration,
    pub interval: Duration,
    /// Judge every interval against the thresholds, not only the whole run.
    pub interval_thresholds: bool,
    /// Where each interval's summary goes as it closes (the terminal line, the NDJSON file).
    pub records: Option<mpsc::UnboundedSender<IntervalRecord>>,
}

impl SoakPlan {
    /// Refuses a plan that cannot work, naming the limit.
    pub fn check(&self) -> Result<(), String> {
        if self.duration.is_zero() {
            return Err("--duration must be more than zero".into());
        }
        if self.interval < MIN_INTERVAL {
            return Err(format!("--interval must be at least {}", crate::duration::format_duration(MIN_INTERVAL)));
        }
        let n = self.duration.as_secs_f64() / self.interval.as_secs_f64();
        if n.ceil() as u64 > MAX_INTERVALS {
            return Err(format!(
                "--duration {} at --interval {} makes {:.0} intervals, over the limit of {MAX_INTERVALS}: take a longer --interval",
                crate::duration::format_duration(self.duration),
                crate::duration::format_duration(self.interval),
                n.ceil()
            ));
        }
        Ok(())
    }
}

/// One interval's summary: a line on the terminal, a record in the NDJSON file.
#[derive(Debug, Clone, Serialize)]
pub struct IntervalRecord {
    pub kind: &'static str,
    pub index: usize,
    pub start: String,
    pub end: String,
    pub seconds: f64,
    pub chats: usize,
    pub ok: usize,
    pub failed: usize,
    pub error_rate: f64,
    pub reply_ms: Option<Percentiles>,
    pub typing_ms: Option<Percentiles>,
    pub read_ms: Option<Percentiles>,
    pub sla_events: serde_json::Value,
    pub errors: Vec<ErrorCount>,
    pub thresholds: Vec<ThresholdResult>,
    /// Whether every threshold held in this interval.
    pub passed: bool,
    /// The driver's resident memory at the interval's end (Linux), to show it stays flat.
    pub rss_kib: Option<u64>,
}

impl IntervalRecord {
    /// One line for people.
    pub fn line(&self) -> String {
        let p = |x: &Option<Percentiles>| x.as_ref().map_or("-".to_string(), |p| format!("{:.0}ms", p.p95));
        let verdict = if self.passed { "ok" } else { "FAIL" };
        let failed: Vec<&str> = self.thresholds.iter().filter(|t| !t.passed).map(|t| t.expr.as_str()).collect();
        let why = if failed.is_empty() { String::new() } else { format!(" ({})", failed.join(", ")) };
        format!(
            "interval {} {}–{}: {} chats, {} failed ({:.1} %), reply p95 {}, typing p95 {}, read p95 {}: {verdict}{why}",
            self.index + 1,
            &self.start[11..19.min(self.start.len())],
            &self.end[11..19.min(self.end.len())],
            self.chats,
            self.failed,
            self.error_rate * 100.0,
            p(&self.reply_ms),
            p(&self.typing_ms),
            p(&self.read_ms),
        )
    }
}

/// The soak's part of the report.
#[derive(Debug, Clone, Serialize)]
pub struct SoakSummary {
    pub duration_planned_ms: f64,
    pub interval_ms: f64,
    pub rate_per_min: f64,
    pub interval_thresholds: bool,
    pub failed_intervals: Vec<usize>,
    pub intervals: Vec<IntervalRecord>,
}

/// The intervals as the run goes.
pub struct Intervals {
    plan: SoakPlan,
    rate_per_min: f64,
    current: Aggregate,
    started: chrono::DateTime<chrono::Utc>,
    opened: Instant,
    done: Vec<IntervalRecord>,
    /// Conversations of the current interval, cleaned up when it closes.
    pub conversations: Vec<u64>,
}

impl Intervals {
    pub fn new(plan: SoakPlan, rate_per_min: f64) -> Intervals {
        Intervals {
            plan,
            rate_per_min,
            current: Aggregate::default(),
            started: chrono::Utc::now(),
            opened: Instant::now(),
            done: Vec::new(),
            conversations: Vec::new(),
        }
    }

    pub fn every(&self) -> Duration {
        self.plan.interval
    }

    /// Whether another interval closes on the clock: the last one closes when the run ends, so
    /// that it takes in the chats still finishing and a soak of N intervals reports N.
    pub fn ticking(&self) -> bool {
        let planned = (self.plan.duration.as_secs_f64() / self.plan.interval.as_secs_f64()).ceil() as usize;
        self.done.len() + 1 < planned
    }

    pub fn add(&mut self, o: &ChatOutcome, open_loop: bool) {
        self.current.add(o, open_loop);
        self.conversations.extend(o.conversation_id);
    }

    /// Closes the current interval: summarises it, sends the summary on, starts the next.
    /// Returns the conversations it held.
    pub fn close(&mut self, thresholds: &[Threshold]) -> Vec<u64> {
        let agg = std::mem::take(&mut self.current);
        let end = chrono::Utc::now();
        let seconds = self.opened.elapsed().as_secs_f64();
        let results: Vec<ThresholdResult> = thresholds.iter().map(|t| evaluate(t, &agg)).collect();
        let record = IntervalRecord {
            kind: "sla_smoke_interval",
            index: self.done.len(),
            start: self.started.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            end: end.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            seconds: crate::histogram::r3(seconds),
            chats: agg.total,
            ok: agg.ok,
            failed: agg.failed,
            error_rate: if agg.total == 0 { 0.0 } else { agg.failed as f64 / agg.total as f64 },
            reply_ms: Percentiles::of(&agg.judged_reply()),
            typing_ms: agg.phases.get(&Phase::Typing).and_then(Percentiles::of),
            read_ms: agg.phases.get(&Phase::Read).and_then(Percentiles::of),
            sla_events: json!({"warning": agg.warnings, "violation": agg.violations}),
            errors: agg
                .errors
                .iter()
                .map(|(k, (n, ex))| ErrorCount { kind: k.clone(), count: *n, example: ex.clone() })
                .collect(),
            passed: results.iter().all(|t| t.passed),
            thresholds: results,
            rss_kib: rss_kib(),
        };
        if let Some(tx) = &self.plan.records {
            let _ = tx.send(record.clone());
        }
        self.done.push(record);
        self.started = end;
        self.opened = Instant::now();
        std::mem::take(&mut self.conversations)
    }

    pub fn summary(self) -> SoakSummary {
        let failed_intervals = self.done.iter().filter(|r| !r.passed).map(|r| r.index).collect();
        SoakSummary {
            duration_planned_ms: self.plan.duration.as_secs_f64() * 1000.0,
            interval_ms: self.plan.interval.as_secs_f64() * 1000.0,
            rate_per_min: self.rate_per_min,
            interval_thresholds: self.plan.interval_thresholds,
            failed_intervals,
            intervals: self.done,
        }
    }
}

/// This process's resident set size in KiB, from `/proc/self/status` (Linux).
pub fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(duration: u64, interval: u64) -> SoakPlan {
        SoakPlan {
            duration: Duration::from_secs(duration),
            interval: Duration::from_secs(interval),
            interval_thresholds: false,
            records: None,
        }
    }

    #[test]
    fn a_plan_is_refused_past_its_limits() {
        assert!(plan(120, 30).check().is_ok());
        assert!(plan(0, 30).check().unwrap_err().contains("--duration"));
        assert!(plan(60, 0).check().unwrap_err().contains("--interval"));
        let e = plan(100_000, 1).check().unwrap_err();
        assert!(e.contains("100000 intervals") && e.contains("8640"), "{e}");
    }

    #[test]
    fn each_interval_is_summarised_once_and_judged_on_its_own() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut iv = Intervals::new(SoakPlan { records: Some(tx), ..plan(60, 30) }, 60.0);
        let ok = ChatOutcome {
            conversation_id: Some(7),
            phases: vec![(Phase::Reply, Duration::from_millis(40))],
            ..Default::default()
        };
        iv.add(&ok, false);
        let t: Threshold = "p95<1s".parse().unwrap();
        assert_eq!(iv.close(std::slice::from_ref(&t)), vec![7]);
        let failed = ChatOutcome {
            failure: Some(super::super::chat::ChatFailure {
                kind: "no reply".into(),
                detail: "x".into(),
                setup: false,
            }),
            ..Default::default()
        };
        iv.add(&failed, false);
        assert!(iv.close(std::slice::from_ref(&t)).is_empty());
        let (a, b) = (rx.try_recv().unwrap(), rx.try_recv().unwrap());
        assert!(a.passed && a.chats == 1 && a.reply_ms.is_some(), "{a:?}");
        assert!(!b.passed && b.failed == 1 && b.reply_ms.is_none(), "{b:?}");
        assert!(b.line().contains("FAIL (p95<1s)"), "{}", b.line());
        let s = iv.summary();
        assert_eq!((s.intervals.len(), s.failed_intervals), (2, vec![1]));
    }
}
