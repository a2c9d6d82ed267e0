//! Thresholds: `p95<5s`, `p99<=8s`, `max<30s`, `error_rate<1%`, `violations==0`.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    P50,
    P90,
    P95,
    P99,
    Max,
    ErrorRate,
    Violations,
    Warnings,
}

impl Metric {
    /// The percentile a latency metric stands for.
    pub fn percentile(self) -> Option<f64> {
        match self {
            Metric::P50 => Some(50.0),
            Metric::P90 => Some(90.0),
            Metric::P95 => Some(95.0),
            Metric::P99 => Some(99.0),
            Metric::Max => Some(100.0),
            _ => None,
        }
    }
}

/// What a latency threshold measures: the AI's reply (`p95`), or the delivery of typing
/// indicators (`typing_p95`) or read receipts (`read_p95`) to the broker's dashboard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Subject {
    Reply,
    Typing,
    Read,
}

/// A threshold's comparison is the one every limit uses; a threshold says what passes, so it
/// takes `<`, `<=` and `==` only (a smoke that passes when P95 is *over* a limit means nothing).
pub use crate::compare::Cmp as Op;

/// A parsed threshold. `limit` is in milliseconds for latencies, a fraction (0..1) for the
/// error rate, and a count for SLA events.
#[derive(Debug, Clone, PartialEq)]
pub struct Threshold {
    pub expr: String,
    pub of: Subject,
    pub metric: Metric,
    pub op: Op,
    pub limit: f64,
}

impl FromStr for Threshold {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let expr = s.trim().to_string();
        let expected = || format!("invalid threshold {s:?}: expected METRIC<VALUE, METRIC<=VALUE or METRIC==VALUE");
        let e = crate::compare::Expr::parse(&expr)
            .filter(|e| matches!(e.cmp, Op::Lt | Op::Le | Op::Eq))
            .ok_or_else(expected)?;
        let (full, op) = (e.left, e.cmp);
        let (of, name) = match (full.strip_prefix("typing_"), full.strip_prefix("read_")) {
            (Some(n), _) => (Subject::Typing, n),
            (_, Some(n)) => (Subject::Read, n),
            _ => (Subject::Reply, full),
        };
        let metric = match name {
            "p50" => Metric::P50,
            "p90" => Metric::P90,
            "p95" => Metric::P95,
            "p99" => Metric::P99,
            "max" => Metric::Max,
            "error_rate" => Metric::ErrorRate,
            "violations" => Metric::Violations,
            "warnings" => Metric::Warnings,
            _ => {
                return Err(format!(
                    "invalid threshold {s:?}: unknown metric {full:?} (p50, p90, p95, p99, max, error_rate, violations, \
                     warnings; typing_ and read_ before a percentile or max)"
                ));
            }
        };
        if of != Subject::Reply && metric.percentile().is_none() {
            return Err(format!(
                "invalid threshold {s:?}: typing_ and read_ go before a percentile or max, not {name}"
            ));
        }
        if metric == Metric::ErrorRate && !e.right.ends_with('%') {
            // A bare `1` could mean 1 % or 100 %: the smoke's error rate is written as k6 writes it.
            return Err(format!("invalid threshold {s:?}: {}", e.at(e.right, "error_rate takes a percentage like 1%")));
        }
        let limit = e
            .limit(crate::compare::Kind::of_metric(name), name)
            .map_err(|m| format!("invalid threshold {s:?}: {m}"))?;
        Ok(Threshold { expr, of, metric, op, limit })
    }
}

impl fmt::Display for Threshold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.expr)
    }
}

/// The defaults: the product's SLA (`[sla]`'s defaults).
pub fn defaults() -> Vec<Threshold> {
    let sla = crate::config::sla::Sla::default();
    of_sla(sla.slo.value, sla.error_budget.value)
}

/// The SLA as thresholds: P95 within `slo`, and no more than `budget` of chats without a reply.
pub fn of_sla(slo: std::time::Duration, budget: f64) -> Vec<Threshold> {
    let ms = slo.as_millis();
    let p95 = if ms.is_multiple_of(1000) { format!("p95<{}s", ms / 1000) } else { format!("p95<{ms}ms") };
    let errors = format!("error_rate<{}", crate::config::sla::percent(budget));
    // Built from a duration and a share already checked: they parse.
    vec![p95.parse().expect("an SLO threshold"), errors.parse().expect("an error-budget threshold")]
}

#[derive(Debug, Clone, Serialize)]
pub struct ThresholdResult {
    pub expr: String,
    pub of: Subject,
    pub metric: Metric,
    pub passed: bool,
    /// The observed value in the threshold's unit (ms, ratio or count); null when nothing
    /// could be measured (no replies at all).
    pub observed: Option<f64>,
    /// The observed latency in ms (null for rates and counts).
    pub observed_ms: Option<f64>,
    pub limit: f64,
    pub unit: &'static str,
    /// How far the observation is from the limit (observed − limit), same unit.
    pub margin: Option<f64>,
}

/// The observation a threshold is judged on.
fn observe(t: &Threshold, agg: &super::Aggregate) -> (Option<f64>, &'static str) {
    match t.metric {
        Metric::ErrorRate => (Some(if agg.total == 0 { 0.0 } else { agg.failed as f64 / agg.total as f64 }), "ratio"),
        Metric::Violations => (Some(agg.violations as f64), "count"),
        Metric::Warnings => (Some(agg.warnings as f64), "count"),
        m => {
            let h = judged(t, agg);
            let p = m.percentile().unwrap_or(100.0);
            ((!h.is_empty()).then(|| if p >= 100.0 { h.max_ms() } else { h.percentile_ms(p) }), "ms")
        }
    }
}

/// The latencies a latency threshold is judged on.
fn judged(t: &Threshold, agg: &super::Aggregate) -> super::LatencyHistogram {
    let phase = match t.of {
        Subject::Reply => return agg.judged_reply(),
        Subject::Typing => super::Phase::Typing,
        Subject::Read => super::Phase::Read,
    };
    agg.phases.get(&phase).cloned().unwrap_or_default()
}

pub fn evaluate(t: &Threshold, agg: &super::Aggregate) -> ThresholdResult {
    let (observed, unit) = observe(t, agg);
    let passed = observed.is_some_and(|o| t.op.holds(o, t.limit));
    ThresholdResult {
        expr: t.expr.clone(),
        of: t.of,
        metric: t.metric,
        passed,
        observed: observed.map(crate::histogram::r3),
        observed_ms: if unit == "ms" { observed.map(crate::histogram::r3) } else { None },
        limit: t.limit,
        unit,
        margin: observed.map(|o| crate::histogram::r3(o - t.limit)),
    }
}

/// Whether `t` has already failed for good, whatever the rest of the run brings.
pub fn cannot_pass(t: &Threshold, agg: &super::Aggregate, planned_chats: usize, planned_samples: u64) -> bool {
    let over = |count: f64, limit: f64, op: Op| match op {
        Op::Lt => count >= limit,
        // `>`/`>=` are refused at parse time; were one here, it could not fail early either.
        Op::Le | Op::Eq => count > limit,
        Op::Gt | Op::Ge => false,
    };
    match t.metric {
        Metric::ErrorRate => over(agg.failed as f64 / planned_chats.max(1) as f64, t.limit, t.op),
        Metric::Violations => over(agg.violations as f64, t.limit, t.op),
        Metric::Warnings => over(agg.warnings as f64, t.limit, t.op),
        m => {
            let h = judged(t, agg);
            // Two typing events (start, stop) per message.
            let samples = if t.of == Subject::Typing { planned_samples.saturating_mul(2) } else { planned_samples };
            let allowed = (1.0 - m.percentile().unwrap_or(100.0) / 100.0) * samples as f64;
            let above = h.count_above_ms(t.limit) as f64;
            above > allowed
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_latency_rate_and_count_thresholds() {
        let t: Threshold = "p95<5s".parse().unwrap();
        assert_eq!((t.metric, t.op, t.limit), (Metric::P95, Op::Lt, 5000.0));
        let t: Threshold = "p99 <= 750ms".parse().unwrap();
        assert_eq!((t.metric, t.op, t.limit), (Metric::P99, Op::Le, 750.0));
        let t: Threshold = "error_rate<1%".parse().unwrap();
        assert!((t.limit - 0.01).abs() < 1e-12);
        let t: Threshold = "violations==0".parse().unwrap();
        assert_eq!((t.metric, t.op, t.limit), (Metric::Violations, Op::Eq, 0.0));
        assert!("p42<1s".parse::<Threshold>().is_err());
        let t: Threshold = "typing_p95<500ms".parse().unwrap();
        assert_eq!((t.of, t.metric, t.limit), (Subject::Typing, Metric::P95, 500.0));
        assert_eq!("read_max<1s".parse::<Threshold>().unwrap().of, Subject::Read);
        assert!("typing_error_rate<1%".parse::<Threshold>().unwrap_err().contains("before a percentile"));
        assert!("error_rate<1".parse::<Threshold>().is_err());
        assert!("p95>1s".parse::<Threshold>().is_err());
        assert!("p95<fast".parse::<Threshold>().is_err());
        for bad in ["error_rate<200%", "error_rate<-1%", "error_rate<NaN%", "error_rate<inf%"] {
            assert!(bad.parse::<Threshold>().unwrap_err().contains("from 0% to 100%"), "{bad}");
        }
    }

    fn agg(replies_ms: &[u64], failed: usize, violations: u64) -> super::super::Aggregate {
        let mut a = super::super::Aggregate::default();
        let mut h = super::super::LatencyHistogram::new();
        for ms in replies_ms {
            h.record(std::time::Duration::from_millis(*ms));
        }
        a.phases.insert(super::super::Phase::Reply, h);
        a.total = replies_ms.len() + failed;
        a.ok = replies_ms.len();
        a.failed = failed;
        a.violations = violations;
        a
    }

    #[test]
    fn thresholds_are_judged_on_the_replies_with_their_margin() {
        let replies: Vec<u64> = (1..=100).collect();
        let r = evaluate(&"p95<100ms".parse().unwrap(), &agg(&replies, 0, 0));
        assert!(r.passed && r.unit == "ms", "{r:?}");
        assert!((r.observed.unwrap() - 95.0).abs() < 1.0, "{r:?}");
        assert!(r.margin.unwrap() < 0.0);
        let r = evaluate(&"p95<50ms".parse().unwrap(), &agg(&replies, 0, 0));
        assert!(!r.passed && r.margin.unwrap() > 40.0, "{r:?}");
        let r = evaluate(&"error_rate<1%".parse().unwrap(), &agg(&replies, 2, 0));
        assert!(!r.passed && (r.observed.unwrap() - 2.0 / 102.0).abs() < 1e-3, "{r:?}");
        assert!(!evaluate(&"violations==0".parse().unwrap(), &agg(&replies, 0, 1)).passed);
        assert!(!evaluate(&"p95<1s".parse().unwrap(), &agg(&[], 3, 0)).passed, "no replies: nothing passes");
    }

    #[test]
    fn a_run_aborts_only_once_a_threshold_can_no_longer_pass() {
        let p95: Threshold = "p95<100ms".parse().unwrap();
        // 100 chats planned: 5 slow replies are allowed by a P95, the 6th is not.
        assert!(!cannot_pass(&p95, &agg(&[500; 5], 0, 0), 100, 100));
        assert!(cannot_pass(&p95, &agg(&[500; 6], 0, 0), 100, 100));
        let rate: Threshold = "error_rate<10%".parse().unwrap();
        assert!(!cannot_pass(&rate, &agg(&[], 9, 0), 100, 100));
        assert!(cannot_pass(&rate, &agg(&[], 10, 0), 100, 100));
        let none: Threshold = "violations==0".parse().unwrap();
        assert!(cannot_pass(&none, &agg(&[], 0, 1), 100, 100));
    }
}
