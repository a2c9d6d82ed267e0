//! The smoke report: what was measured, each threshold's verdict, and its renderings (table,
//! JSON with a schema in docs/schemas/sla-smoke.schema.json, Markdown, JUnit XML).

use std::io::{self, Write};
use std::time::Duration;

use serde::Serialize;
use serde_json::{Value, json};

use super::chat::{Phase, Transport};
pub use super::figures::{ErrorCount, Percentiles};
pub use super::threshold::ThresholdResult;
use super::threshold::{Threshold, evaluate};
use super::{Aggregate, Schedule};
use crate::histogram::histogram_text;
pub(crate) use crate::histogram::r3;
use crate::output::{Render, Style, table};

#[derive(Debug, Clone)]
pub struct Mode {
    pub schedule: Schedule,
    pub turns: usize,
    pub transport: Transport,
    pub chats_planned: usize,
    /// How replies were matched to messages: the contract's reply field, or `first-after`.
    pub reply_match: crate::contracts::ReplyMatch,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Cleanup {
    pub resolved: usize,
    pub failed: usize,
    pub error: Option<String>,
}

impl Cleanup {
    /// Adds another batch's cleanup (a soak cleans up per interval).
    pub fn absorb(&mut self, o: Cleanup) {
        self.resolved += o.resolved;
        self.failed += o.failed;
        if self.error.is_none() {
            self.error = o.error;
        }
    }
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
    /// The driver's view of itself (`None` for merged runs: each run says so in its own report).
    pub driver: Option<super::driver::DriverHealth>,
    /// A soak's intervals.
    pub soak: Option<super::soak::SoakSummary>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PhaseStats {
    pub name: &'static str,
    #[serde(flatten)]
    pub ms: Percentiles,
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
    /// Typing start and stop, publish → the dashboard (null without extras).
    pub typing_ms: Option<Percentiles>,
    /// Read receipts, publish → the dashboard (null without extras).
    pub read_ms: Option<Percentiles>,
    /// Presence events the dashboards saw.
    pub presence: super::extras::PresenceSeen,
    pub phases: Vec<PhaseStats>,
    pub sla_events: Value,
    pub thresholds: Vec<ThresholdResult>,
    pub errors: Vec<ErrorCount>,
    pub aborted: Option<String>,
    pub interrupted: bool,
    pub cleanup: Option<Cleanup>,
    pub command: String,
    pub driver: Option<super::driver::DriverHealth>,
    /// What the way to and from the service added, by Ably's own stamps (null when polling, for
    /// merged runs, or without echoes of the customer's messages).
    pub path: Option<super::path::PathHealth>,
    pub soak: Option<super::soak::SoakSummary>,
    #[serde(skip)]
    pub aggregate: Aggregate,
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
    let reply_match = match &m.reply_match {
        crate::contracts::ReplyMatch::Field(f) => format!("field {f}"),
        crate::contracts::ReplyMatch::FirstAfter => "first-after".to_string(),
    };
    json!({"loop": lp, "concurrency": conc, "rate_per_s": rate, "turns": m.turns, "transport": transport,
           "reply_match": reply_match})
}

/// What a smoke run comes to, for the exit code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Passed,
    /// It ran and a threshold failed (or it was aborted or interrupted).
    Failed,
    /// No chat got as far as its first message: the target could not be used at all.
    CouldNotRun(String),
}

impl SmokeReport {
    /// What the run's two witnesses say of its figures (the driver's self-watch, then the path to
    /// the service), one line each, with whether it puts them in doubt: every rendering and
    /// `--strict` read them from here.
    pub fn witness_lines(&self) -> Vec<(String, bool)> {
        let driver = self.driver.as_ref().map(|d| (d.line(), d.saturated));
        let path = self.path.as_ref().map(|p| (p.line(), p.queued));
        driver.into_iter().chain(path).collect()
    }

    /// The witnesses' lines that put the figures in doubt.
    pub fn doubts(&self) -> Vec<String> {
        self.witness_lines().into_iter().filter(|(_, doubt)| *doubt).map(|(l, _)| l).collect()
    }

    /// Passed, failed, or could not run: when every chat that ran failed before its first
    /// message went in (refused, unreachable, hanging, 4xx/5xx), nothing about replies was
    /// measured, and that is not an SLA failure.
    pub fn verdict(&self) -> Verdict {
        let agg = &self.aggregate;
        if agg.total > 0 && agg.ok == 0 && agg.setup_failures == agg.failed {
            let example = self.errors.first().map(|e| e.example.as_str()).unwrap_or("no detail");
            return Verdict::CouldNotRun(format!(
                "could not use the target {}: every chat failed before its first message ({example})",
                self.target
            ));
        }
        if self.passed { Verdict::Passed } else { Verdict::Failed }
    }

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
        let planned = i.mode.as_ref().map_or(agg.total, |m| m.chats_planned);
        let intervals_failed = i.soak.as_ref().is_some_and(|s| s.interval_thresholds && !s.failed_intervals.is_empty());
        let passed = thresholds.iter().all(|t| t.passed)
            && agg.total > 0
            && i.aborted.is_none()
            && !i.interrupted
            && !intervals_failed;
        let reply_ms = Percentiles::of(&agg.reply());
        let path = agg.path.summary(reply_ms.as_ref().map(|p| p.p50));
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
            reply_ms,
            reply_corrected_ms: agg.corrected.as_ref().and_then(Percentiles::of),
            typing_ms: agg.phases.get(&Phase::Typing).and_then(Percentiles::of),
            read_ms: agg.phases.get(&Phase::Read).and_then(Percentiles::of),
            presence: agg.presence,
            phases,
            sla_events: json!({"warning": agg.warnings, "violation": agg.violations}),
            thresholds,
            errors,
            aborted: i.aborted,
            interrupted: i.interrupted,
            cleanup: i.cleanup,
            command: i.command,
            driver: i.driver,
            path,
            soak: i.soak,
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

    pub(crate) fn verdict_lines(&self) -> Vec<String> {
        self.thresholds
            .iter()
            .map(|t| {
                let shown = |v: f64| shown(t.unit, v);
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

    pub(crate) fn headline(&self) -> String {
        let mode = &self.mode;
        let how = match mode["loop"].as_str() {
            Some("closed") => format!("closed loop, {} at once", mode["concurrency"]),
            Some("open") => match &self.soak {
                Some(s) => format!(
                    "soak {} at {}/min, intervals of {}",
                    crate::duration::format_duration(Duration::from_secs_f64(s.duration_planned_ms / 1000.0)),
                    r3(s.rate_per_min),
                    crate::duration::format_duration(Duration::from_secs_f64(s.interval_ms / 1000.0)),
                ),
                None => format!("open loop, {}/s", mode["rate_per_s"]),
            },
            _ => "merged runs".into(),
        };
        // Under `first-after` a reply is only the first one after the message: say so.
        let weak = if mode["reply_match"] == "first-after" && mode["transport"] == "sse" {
            "; replies matched first-after (weaker)"
        } else {
            ""
        };
        format!(
            "sla smoke against {} ({how}; {} chats × {} turn(s), {}{weak})",
            self.target,
            self.chats.planned,
            mode["turns"].as_u64().unwrap_or(1),
            mode["transport"].as_str().unwrap_or("-")
        )
    }
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
        if let Some(s) = &self.soak {
            let line = format!(
                "intervals: {} of {} failed a threshold{}",
                s.failed_intervals.len(),
                s.intervals.len(),
                if s.interval_thresholds { "" } else { " (not judged: --interval-thresholds judges each)" }
            );
            let bad = s.interval_thresholds && !s.failed_intervals.is_empty();
            writeln!(w, "{}", if bad { style.bad(&line) } else { line })?;
        }
        if self.typing_ms.is_some() || self.read_ms.is_some() {
            writeln!(
                w,
                "presence seen by the dashboards: {} enter, {} leave",
                self.presence.enter, self.presence.leave
            )?;
        }
        if let Some(a) = &self.aborted {
            writeln!(w, "{}", style.bad(&format!("aborted early: {a} could no longer pass")))?;
        }
        if self.interrupted {
            writeln!(w, "{}", style.bad("interrupted: partial result"))?;
        }
        for (line, doubt) in self.witness_lines() {
            writeln!(w, "{}", if doubt { style.bad(&line) } else { line })?;
        }
        let verdict = if self.passed { style.good("PASSED") } else { style.bad("FAILED") };
        writeln!(w, "{verdict}")
    }

    fn json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

/// A threshold's figure for people, in its unit: a duration, a percentage or a count.
pub(crate) fn shown(unit: &str, v: f64) -> String {
    match unit {
        "ms" => crate::duration::format_duration(Duration::from_secs_f64(v.max(0.0) / 1000.0)),
        "ratio" => format!("{:.2}%", v * 100.0),
        _ => format!("{v:.0}"),
    }
}
