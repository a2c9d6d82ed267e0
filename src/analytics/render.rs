//! The report as a table with a text chart, JSON, NDJSON (a line per bucket), Prometheus text
//! and Markdown.

use std::fmt::Write as _;
use std::io::{self, Write};

use serde_json::{Value, json};

use super::model::{ReplyStats, SlaReport};
use crate::output::{Render, Style, escape};

fn ms(v: Option<f64>) -> String {
    v.map_or("-".into(), |x| format!("{x:.0}"))
}

impl SlaReport {
    pub(super) fn headline(&self) -> String {
        let w = &self.window;
        format!(
            "SLA report from {:?}: {} to {} by {}, SLO {} ms, replies paired by {}",
            self.source,
            w.since.format("%Y-%m-%d %H:%M:%SZ"),
            w.until.format("%Y-%m-%d %H:%M:%SZ"),
            crate::duration::format_duration(std::time::Duration::from_secs_f64(w.by_seconds)),
            self.slo_ms,
            escape(&self.reply_match)
        )
    }

    pub(super) fn summary_lines(&self) -> Vec<String> {
        let r = &self.reply_ms;
        let mut out = vec![
            format!(
                "reply ms: count {}  p50 {}  p90 {}  p95 {}  p99 {}  max {}",
                r.count,
                ms(r.p50),
                ms(r.p90),
                ms(r.p95),
                ms(r.p99),
                ms(r.max)
            ),
            format!(
                "messages {}  replies {}  unanswered {}  pending {}  over SLO {} ({:.2} %)  sla:warning {}  sla:violation {}",
                self.messages,
                self.replies,
                self.unanswered,
                self.pending,
                self.over_slo.count,
                self.over_slo.rate * 100.0,
                self.sla_events.warnings,
                self.sla_events.violations
            ),
            format!(
                "typing and read events (counted apart): typing:start {}  typing:stop {}  read {}",
                self.extras.typing_start, self.extras.typing_stop, self.extras.read
            ),
            format!(
                "conversations: {} active now (last {}), {} in the window",
                self.conversations.active_now,
                crate::duration::format_duration(std::time::Duration::from_secs_f64(self.active_window_ms / 1000.0)),
                self.conversations.in_window
            ),
            match &self.excluded.prefix {
                Some(p) => format!(
                    "test traffic left out (prefix {}): {} conversations, {} messages, {} replies",
                    escape(p),
                    self.excluded.conversations,
                    self.excluded.messages,
                    self.excluded.replies
                ),
                None => "test traffic included (--include-test-traffic)".to_string(),
            },
        ];
        if self.unpaired_replies > 0 {
            out.push(format!("{} replies answer messages from before the window", self.unpaired_replies));
        }
        if self.excluded.replayed_copies > 0 {
            out.push(format!(
                "{} re-sent copies (events replay) left out: each message and reply counted once, at its own time",
                self.excluded.replayed_copies
            ));
        }
        let m = &self.malformed;
        if m.messages_without_id + m.replies_without_reply_field + m.duplicate_message_ids + m.unreadable_entries > 0 {
            out.push(format!(
                "malformed: {} messages without messageId, {} replies without {}, {} duplicate message ids, {} unreadable entries",
                m.messages_without_id,
                m.replies_without_reply_field,
                escape(&self.reply_match),
                m.duplicate_message_ids,
                m.unreadable_entries
            ));
        }
        out
    }

    /// One line per bucket: its P95 as a bar against the SLO (`│`), past the SLO in red.
    pub fn text_chart(&self, width: usize, style: Style) -> String {
        let top = self.buckets.iter().filter_map(|b| b.reply_ms.p95).fold(self.slo_ms * 1.25, f64::max);
        let slo_col = ((self.slo_ms / top) * width as f64).round() as usize;
        let mut s = String::new();
        for b in &self.buckets {
            let label = b.start.format("%m-%d %H:%M");
            let Some(p95) = b.reply_ms.p95 else {
                let _ = writeln!(s, "{label}  {:>7}  {}│", "-", " ".repeat(slo_col));
                continue;
            };
            let len = ((p95 / top) * width as f64).round() as usize;
            let mut bar: String = (0..width.max(slo_col + 1))
                .map(|i| match (i < len, i == slo_col) {
                    (_, true) => '│',
                    (true, false) => '█',
                    (false, false) => ' ',
                })
                .collect();
            bar = bar.trim_end().to_string();
            let bar = if p95 > self.slo_ms { style.bad(&bar) } else { bar };
            let _ = writeln!(s, "{label}  {:>7}  {bar}", format!("{p95:.0}"));
        }
        let _ = writeln!(s, "{:>21}{}└ SLO {} ms", "", " ".repeat(slo_col), self.slo_ms);
        s
    }

    /// The Markdown report of `--report-dir`.
    pub fn markdown(&self, chart_file: Option<&str>) -> String {
        let mut s = format!("# SLA report\n\n{}\n\n", self.headline());
        for l in self.summary_lines() {
            let _ = writeln!(s, "- {l}");
        }
        if let Some(n) = &self.note {
            let _ = writeln!(s, "\n**{n}**");
        }
        if let Some(f) = chart_file {
            let _ = writeln!(s, "\n![reply time per bucket]({f})");
        }
        s.push_str("\n## Buckets\n\n| start | messages | replies | p50 | p95 | p99 | max | unanswered | over SLO | warnings | violations |\n|---|---|---|---|---|---|---|---|---|---|---|\n");
        for b in &self.buckets {
            let r = &b.reply_ms;
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                b.start.to_rfc3339(),
                b.messages,
                b.replies,
                ms(r.p50),
                ms(r.p95),
                ms(r.p99),
                ms(r.max),
                b.unanswered,
                b.over_slo.count,
                b.sla_events.warnings,
                b.sla_events.violations
            );
        }
        if !self.worst.is_empty() {
            s.push_str("\n## Worst conversations\n\n| conversation | slowest ms | unanswered | over SLO | messages |\n|---|---|---|---|---|\n");
            for w in &self.worst {
                let name = match &w.link {
                    Some(l) => format!("[{}]({l})", w.conversation),
                    None => w.conversation.replace('|', "\\|"),
                };
                let _ = writeln!(
                    s,
                    "| {name} | {} | {} | {} | {} |",
                    ms(w.slowest_ms),
                    w.unanswered,
                    w.over_slo,
                    w.messages
                );
            }
        }
        s
    }

    fn prometheus(&self) -> String {
        let mut s = String::new();
        let g = |s: &mut String, name: &str, help: &str, kind: &str| {
            let _ =
                writeln!(s, "# HELP broker_ops_sla_report_{name} {help}\n# TYPE broker_ops_sla_report_{name} {kind}");
        };
        g(&mut s, "reply_seconds", "Reply time of answered customer messages in the window, by quantile.", "gauge");
        let r = &self.reply_ms;
        for (q, v) in [("0.5", r.p50), ("0.9", r.p90), ("0.95", r.p95), ("0.99", r.p99), ("1", r.max)] {
            if let Some(v) = v {
                let _ = writeln!(s, "broker_ops_sla_report_reply_seconds{{quantile=\"{q}\"}} {}", v / 1000.0);
            }
        }
        let counters = [
            ("messages_total", "Customer messages in the window.", self.messages),
            ("replies_total", "AI replies in the window.", self.replies),
            ("answered_total", "Customer messages answered within the reply time-out.", r.count),
            ("unanswered_total", "Customer messages whose reply time-out ran out unanswered.", self.unanswered),
            ("over_slo_total", "Answered messages whose reply took longer than the SLO.", self.over_slo.count),
            ("sla_warnings_total", "sla:warning events in the window.", self.sla_events.warnings),
            ("sla_violations_total", "sla:violation events in the window.", self.sla_events.violations),
            ("typing_starts_total", "Typing-start events in the window (not messages).", self.extras.typing_start),
            ("typing_stops_total", "Typing-stop events in the window (not messages).", self.extras.typing_stop),
            ("reads_total", "Read receipts in the window (not replies).", self.extras.read),
        ];
        for (name, help, v) in counters {
            g(&mut s, name, help, "counter");
            let _ = writeln!(s, "broker_ops_sla_report_{name} {v}");
        }
        g(&mut s, "conversations_active", "Conversations with an event in the active window.", "gauge");
        let _ = writeln!(s, "broker_ops_sla_report_conversations_active {}", self.conversations.active_now);
        g(&mut s, "slo_seconds", "The SLO the report judged against.", "gauge");
        let _ = writeln!(s, "broker_ops_sla_report_slo_seconds {}", self.slo_ms / 1000.0);
        s
    }
}

impl Render for SlaReport {
    fn table(&self, w: &mut dyn Write, style: Style) -> io::Result<()> {
        writeln!(w, "{}", self.headline())?;
        if let Some(n) = &self.note {
            writeln!(w, "{n}")?;
        }
        for l in self.summary_lines() {
            writeln!(w, "  {l}")?;
        }
        let mut t = crate::output::table(&[
            "bucket",
            "messages",
            "replies",
            "p50",
            "p95",
            "p99",
            "max",
            "unanswered",
            "over SLO",
            "warn",
            "viol",
        ]);
        for b in &self.buckets {
            t.add_row(bucket_cells(b, "%m-%d %H:%M"));
        }
        writeln!(w, "\n{t}\n\nP95 per bucket (ms):")?;
        write!(w, "{}", self.text_chart(40, style))?;
        if !self.worst.is_empty() {
            let mut t = crate::output::table(&["worst conversations", "slowest ms", "unanswered", "over SLO", "link"]);
            for x in &self.worst {
                t.add_row(vec![
                    escape(&x.conversation),
                    ms(x.slowest_ms),
                    x.unanswered.to_string(),
                    x.over_slo.to_string(),
                    x.link.clone().unwrap_or_default(),
                ]);
            }
            writeln!(w, "\n{t}")?;
        }
        Ok(())
    }

    fn json(&self) -> Value {
        // A struct of plain fields: serialising cannot fail.
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    fn ndjson(&self) -> Vec<Value> {
        self.buckets.iter().map(|b| json!(b)).collect()
    }

    fn as_prometheus(&self) -> Option<String> {
        Some(self.prometheus())
    }
}

/// The columns of [`bucket_cells`], named in full (the terminal table abbreviates the last two).
pub(super) const BUCKET_COLUMNS: [&str; 11] =
    ["start", "messages", "replies", "p50", "p95", "p99", "max", "unanswered", "over SLO", "warnings", "violations"];

/// A bucket's row, as the table and the HTML page show it: its start (in `time`'s format),
/// counts, reply percentiles in ms, unanswered, over the SLO, SLA warnings and violations.
pub(super) fn bucket_cells(b: &super::model::Bucket, time: &str) -> Vec<String> {
    let r: &ReplyStats = &b.reply_ms;
    vec![
        b.start.format(time).to_string(),
        b.messages.to_string(),
        b.replies.to_string(),
        ms(r.p50),
        ms(r.p95),
        ms(r.p99),
        ms(r.max),
        b.unanswered.to_string(),
        b.over_slo.count.to_string(),
        b.sla_events.warnings.to_string(),
        b.sla_events.violations.to_string(),
    ]
}
