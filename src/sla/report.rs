//! The smoke report: what was measured, each threshold's verdict, and its renderings (table,
//! JSON with a schema in docs/schemas/sla-smoke.schema.json, Markdown, JUnit XML).

use std::io::{self, Write};
use std::time::Duration;

use serde::Serialize;
use serde_json::{Value, json};

use super::chat::{Phase, Transport};
use super::threshold::{Metric, Threshold};
use super::{Aggregate, LatencyHistogram, Schedule};
use crate::output::{Render, Style, table};

#[derive(Debug, Clone, Copy)]
pub struct Mode {
    pub schedule: Schedule,
    pub turns: usize,
    pub transport: Transport,
    pub chats_planned: usize,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Cleanup {
    pub resolved: usize,
    pub failed: usize,
    pub error: Option<String>,
}

pub struct Inputs<'a> {
    pub agg: Aggregate,
    pub thresholds: &'a [Threshold],
    pub mode: Option<Mode>,
    pub target: String,
    pub started_at: chrono::DateTime<chrono::Utc>,
    pub duration: Duration,
    pub aborted: Option<String>,
    pub interrupted: bool,
    pub cleanup: Option<Cleanup>,
    pub command: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Percentiles {
    pub count: u64,
    pub min: f64,
    pub p50: f64,
    pub p90: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
    pub mean: f64,
}

fn r3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

impl Percentiles {
    fn of(h: &LatencyHistogram) -> Option<Self> {
        (!h.is_empty()).then(|| Percentiles {
            count: h.count(),
            min: r3(h.min_ms()),
            p50: r3(h.percentile_ms(50.0)),
            p90: r3(h.percentile_ms(90.0)),
            p95: r3(h.percentile_ms(95.0)),
            p99: r3(h.percentile_ms(99.0)),
            max: r3(h.max_ms()),
            mean: r3(h.mean_ms()),
        })
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct PhaseStats {
    pub name: &'static str,
    #[serde(flatten)]
    pub ms: Percentiles,
}

#[derive(Debug, Clone, Serialize)]
pub struct ThresholdResult {
    pub expr: String,
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

#[derive(Debug, Clone, Serialize)]
pub struct ErrorCount {
    pub kind: String,
    pub count: usize,
    pub example: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Chats {
    pub planned: usize,
    pub total: usize,
    pub ok: usize,
    pub failed: usize,
    pub cancelled: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct SmokeReport {
    pub schema_version: u32,
    pub kind: &'static str,
    pub passed: bool,
    pub target: String,
    pub started_at: String,
    pub duration_ms: f64,
    pub mode: Value,
    pub chats: Chats,
    pub error_rate: f64,
    pub reply_ms: Option<Percentiles>,
    pub reply_corrected_ms: Option<Percentiles>,
    pub phases: Vec<PhaseStats>,
    pub sla_events: Value,
    pub thresholds: Vec<ThresholdResult>,
    pub errors: Vec<ErrorCount>,
    pub aborted: Option<String>,
    pub interrupted: bool,
    pub cleanup: Option<Cleanup>,
    pub command: String,
    #[serde(skip)]
    pub aggregate: Aggregate,
}

/// The observation a threshold is judged on.
fn observe(t: &Threshold, agg: &Aggregate) -> (Option<f64>, &'static str) {
    match t.metric {
        Metric::ErrorRate => (Some(if agg.total == 0 { 0.0 } else { agg.failed as f64 / agg.total as f64 }), "ratio"),
        Metric::Violations => (Some(agg.violations as f64), "count"),
        Metric::Warnings => (Some(agg.warnings as f64), "count"),
        m => {
            let h = agg.judged_reply();
            let p = m.percentile().unwrap_or(100.0);
            ((!h.is_empty()).then(|| if p >= 100.0 { h.max_ms() } else { h.percentile_ms(p) }), "ms")
        }
    }
}

pub fn evaluate(t: &Threshold, agg: &Aggregate) -> ThresholdResult {
    let (observed, unit) = observe(t, agg);
    let passed = observed.is_some_and(|o| t.op.holds(o, t.limit));
    ThresholdResult {
        expr: t.expr.clone(),
        metric: t.metric,
        passed,
        observed: observed.map(r3),
        observed_ms: if unit == "ms" { observed.map(r3) } else { None },
        limit: t.limit,
        unit,
        margin: observed.map(|o| r3(o - t.limit)),
    }
}

/// Whether `t` has already failed for good, whatever the rest of the run brings.
pub fn cannot_pass(t: &Threshold, agg: &Aggregate, planned_chats: usize, planned_samples: u64) -> bool {
    use super::threshold::Op;
    let over = |count: f64, limit: f64, op: Op| match op {
        Op::Lt => count >= limit,
        Op::Le | Op::Eq => count > limit,
    };
    match t.metric {
        Metric::ErrorRate => over(agg.failed as f64 / planned_chats.max(1) as f64, t.limit, t.op),
        Metric::Violations => over(agg.violations as f64, t.limit, t.op),
        Metric::Warnings => over(agg.warnings as f64, t.limit, t.op),
        m => {
            let h = agg.judged_reply();
            let allowed = (1.0 - m.percentile().unwrap_or(100.0) / 100.0) * planned_samples as f64;
            let above = h.count_above_ms(t.limit) as f64;
            above > allowed
        }
    }
}

fn mode_json(m: &Mode) -> Value {
    let (lp, conc, rate) = match m.schedule {
        Schedule::Closed { concurrency } => ("closed", Some(concurrency), None),
        Schedule::Open { rate_per_s, .. } => ("open", None, Some(rate_per_s)),
    };
    let transport = match m.transport {
        Transport::Sse => "sse",
        Transport::Poll => "poll",
    };
    json!({"loop": lp, "concurrency": conc, "rate_per_s": rate, "turns": m.turns, "transport": transport})
}

impl SmokeReport {
    pub fn build(i: Inputs<'_>) -> Self {
        let agg = i.agg;
        let thresholds: Vec<ThresholdResult> = i.thresholds.iter().map(|t| evaluate(t, &agg)).collect();
        let phases = Phase::ALL
            .iter()
            .filter_map(|p| agg.phases.get(p).and_then(Percentiles::of).map(|ms| PhaseStats { name: p.name(), ms }))
            .collect();
        let errors = agg
            .errors
            .iter()
            .map(|(k, (n, ex))| ErrorCount { kind: k.clone(), count: *n, example: ex.clone() })
            .collect();
        let planned = i.mode.map_or(agg.total, |m| m.chats_planned);
        let passed = thresholds.iter().all(|t| t.passed) && agg.total > 0 && i.aborted.is_none() && !i.interrupted;
        SmokeReport {
            schema_version: 1,
            kind: "sla_smoke",
            passed,
            target: i.target,
            started_at: i.started_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            duration_ms: r3(i.duration.as_secs_f64() * 1000.0),
            mode: i.mode.as_ref().map_or(json!({"loop": "merged"}), mode_json),
            chats: Chats { planned, total: agg.total, ok: agg.ok, failed: agg.failed, cancelled: agg.cancelled },
            error_rate: if agg.total == 0 { 0.0 } else { r3(agg.failed as f64 / agg.total as f64 * 1000.0) / 1000.0 },
            reply_ms: Percentiles::of(&agg.reply()),
            reply_corrected_ms: agg.corrected.as_ref().and_then(Percentiles::of),
            phases,
            sla_events: json!({"warning": agg.warnings, "violation": agg.violations}),
            thresholds,
            errors,
            aborted: i.aborted,
            interrupted: i.interrupted,
            cleanup: i.cleanup,
            command: i.command,
            aggregate: agg,
        }
    }

    /// Whether the corrected figures differ enough from the uncorrected ones to show both.
    fn corrected_differs(&self) -> bool {
        match (&self.reply_ms, &self.reply_corrected_ms) {
            (Some(a), Some(b)) => {
                (b.p95 - a.p95).abs() > (a.p95 * 0.01).max(2.0) || (b.p99 - a.p99).abs() > (a.p99 * 0.01).max(2.0)
            }
            _ => false,
        }
    }

    fn verdict_lines(&self) -> Vec<String> {
        self.thresholds
            .iter()
            .map(|t| {
                let shown = |v: f64| match t.unit {
                    "ms" => crate::duration::format_duration(Duration::from_secs_f64(v.max(0.0) / 1000.0)),
                    "ratio" => format!("{:.2}%", v * 100.0),
                    _ => format!("{v:.0}"),
                };
                match (t.observed, t.margin) {
                    (Some(o), Some(_)) if t.passed => format!("PASS {}: observed {}", t.expr, shown(o)),
                    (Some(o), Some(m)) => {
                        let by = if m >= 0.0 { shown(m) } else { shown(-m) };
                        format!("FAIL {}: observed {}, over the limit by {by}", t.expr, shown(o))
                    }
                    _ => format!("FAIL {}: nothing to measure (no replies)", t.expr),
                }
            })
            .collect()
    }

    fn headline(&self) -> String {
        let mode = &self.mode;
        let how = match mode["loop"].as_str() {
            Some("closed") => format!("closed loop, {} at once", mode["concurrency"]),
            Some("open") => format!("open loop, {}/s", mode["rate_per_s"]),
            _ => "merged runs".into(),
        };
        format!(
            "sla smoke against {} ({how}; {} chats × {} turn(s), {})",
            self.target,
            self.chats.planned,
            mode["turns"].as_u64().unwrap_or(1),
            mode["transport"].as_str().unwrap_or("-")
        )
    }

    /// The Markdown report written to `--report-dir`.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let verdict = if self.passed { "PASSED" } else { "FAILED" };
        s.push_str(&format!("# SLA smoke report: {verdict}\n\n"));
        s.push_str(&format!(
            "- target: `{}`\n- started: {}\n- duration: {:.1} s\n",
            self.target,
            self.started_at,
            self.duration_ms / 1000.0
        ));
        s.push_str(&format!("- run: {}\n- command: `{}`\n", self.headline(), self.command));
        s.push_str(&format!(
            "- chats: {} run, {} ok, {} failed, {} cancelled (planned {})\n",
            self.chats.total, self.chats.ok, self.chats.failed, self.chats.cancelled, self.chats.planned
        ));
        s.push_str(&format!(
            "- SLA events seen: {} warnings, {} violations\n\n",
            self.sla_events["warning"], self.sla_events["violation"]
        ));
        s.push_str("## Thresholds\n\n");
        for l in self.verdict_lines() {
            s.push_str(&format!("- {l}\n"));
        }
        s.push_str("\n## Phases (ms)\n\n| phase | count | min | p50 | p90 | p95 | p99 | max |\n|---|---|---|---|---|---|---|---|\n");
        for p in &self.phases {
            let m = &p.ms;
            s.push_str(&format!(
                "| {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} |\n",
                p.name, m.count, m.min, m.p50, m.p90, m.p95, m.p99, m.max
            ));
        }
        if let Some(c) = &self.reply_corrected_ms {
            s.push_str(&format!(
                "| reply (corrected) | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} |\n",
                c.count, c.min, c.p50, c.p90, c.p95, c.p99, c.max
            ));
        }
        if !self.errors.is_empty() {
            s.push_str("\n## Errors\n\n| kind | count | example |\n|---|---|---|\n");
            for e in &self.errors {
                s.push_str(&format!("| {} | {} | {} |\n", e.kind, e.count, e.example.replace('|', "\\|")));
            }
        }
        s.push_str("\n## Reply latency histogram\n\n```\n");
        s.push_str(&histogram_text(&self.aggregate.reply(), 40));
        s.push_str("```\n");
        s
    }

    /// JUnit XML: one test case per threshold.
    pub fn junit(&self) -> String {
        use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};
        let mut suite = TestSuite::new("broker-ops sla smoke");
        let verdicts = self.verdict_lines();
        for (t, line) in self.thresholds.iter().zip(verdicts) {
            let status = if t.passed {
                TestCaseStatus::success()
            } else {
                let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
                s.set_message(line.clone());
                s
            };
            let mut case = TestCase::new(format!("threshold {}", t.expr), status);
            case.set_classname("sla.smoke");
            case.set_system_out(line);
            suite.add_test_case(case);
        }
        if let Some(a) = &self.aborted {
            let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
            s.set_message(format!("aborted early: {a} could no longer pass"));
            suite.add_test_case(TestCase::new("run completed", s));
        }
        let mut report = Report::new("broker-ops");
        report.add_test_suite(suite);
        // Serialising into a String cannot fail for well-formed names, which ours are.
        report.to_string().unwrap_or_default()
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

impl Render for SmokeReport {
    fn table(&self, w: &mut dyn Write, style: Style) -> io::Result<()> {
        writeln!(w, "{}", self.headline())?;
        let mut t = table(&["phase", "count", "min", "p50", "p90", "p95", "p99", "max"]);
        let fmt = |v: f64| format!("{v:.1}ms");
        let mut rows: Vec<(&str, &Percentiles)> = self.phases.iter().map(|p| (p.name, &p.ms)).collect();
        if self.corrected_differs()
            && let Some(c) = &self.reply_corrected_ms
        {
            rows.push(("reply (corrected)", c));
        }
        for (name, m) in rows {
            t.add_row(vec![
                name.to_string(),
                m.count.to_string(),
                fmt(m.min),
                fmt(m.p50),
                fmt(m.p90),
                fmt(m.p95),
                fmt(m.p99),
                fmt(m.max),
            ]);
        }
        writeln!(w, "{t}")?;
        if !self.aggregate.reply().is_empty() {
            writeln!(w, "\nreply latency")?;
            write!(w, "{}", histogram_text(&self.aggregate.reply(), 40))?;
        }
        writeln!(
            w,
            "\nchats: {} ok, {} failed{} of {}; SLA events: {} warnings, {} violations",
            self.chats.ok,
            self.chats.failed,
            if self.chats.cancelled > 0 { format!(", {} cancelled", self.chats.cancelled) } else { String::new() },
            self.chats.planned,
            self.sla_events["warning"],
            self.sla_events["violation"]
        )?;
        for e in &self.errors {
            writeln!(w, "  {} × {}: {}", e.count, e.kind, e.example)?;
        }
        if let Some(c) = &self.cleanup {
            let tail = c.error.as_deref().map(|e| format!(" (warning: {e})")).unwrap_or_default();
            writeln!(
                w,
                "cleanup: {} conversations resolved and labelled smoke-test, {} failed{tail}",
                c.resolved, c.failed
            )?;
        }
        writeln!(w)?;
        for (line, t) in self.verdict_lines().iter().zip(&self.thresholds) {
            writeln!(w, "{}", if t.passed { style.good(line) } else { style.bad(line) })?;
        }
        if let Some(a) = &self.aborted {
            writeln!(w, "{}", style.bad(&format!("aborted early: {a} could no longer pass")))?;
        }
        if self.interrupted {
            writeln!(w, "{}", style.bad("interrupted: partial result"))?;
        }
        let verdict = if self.passed { style.good("PASSED") } else { style.bad("FAILED") };
        writeln!(w, "{verdict}")
    }

    fn json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}
