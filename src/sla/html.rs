//! The smoke's (and a merged run's) HTML page, written beside its Markdown and JSON: the verdict
//! and the threshold that decided it first, then latency over time with the SLO line, the
//! percentile spectrum, phases, SLA events, errors and the driver's self-watch, each chart
//! followed by its figures as a table.

use super::report::{SmokeReport, Verdict, shown};
use super::threshold::{Metric, Subject, ThresholdResult};
use crate::page::svg::{LineChart, Series, line_chart};
use crate::page::{Page, Table, Tone, esc, figure, para, pre, state_cell, table};

impl SmokeReport {
    /// The page; `links` are the files beside it (`(label, file name)`), `spectrum` the
    /// percentile spectrum's SVG when it is already drawn (else it is drawn here).
    pub fn html(&self, links: &[(&str, String)], spectrum: Option<&str>) -> String {
        let (tone, word) = match self.verdict() {
            Verdict::Passed => (Tone::Good, "PASSED".to_string()),
            Verdict::Failed => (Tone::Bad, "FAILED".to_string()),
            Verdict::CouldNotRun(_) => (Tone::Bad, "COULD NOT RUN".to_string()),
        };
        let mut page = Page::new(&format!("SLA smoke {word}: {}", self.target), "broker-ops sla smoke", tone, &word);
        page.because(&self.deciding(), tone);
        page.facts(&self.facts());
        page.section("thresholds", "Thresholds", &self.thresholds_table());
        page.section("over-time", "Reply time over the run", &self.over_time());
        if let Some(soak) = &self.soak {
            page.section("intervals", "Soak intervals", &intervals(soak));
        }
        page.section("spectrum", "Reply time by percentile", &self.spectrum(spectrum));
        page.section("events", "SLA events", &para(&self.events_line()));
        if !self.errors.is_empty() {
            let rows = self.errors.iter().map(|e| vec![e.kind.clone(), e.count.to_string(), e.example.clone()]);
            let t = Table {
                caption: "Errors by kind",
                headers: &["kind", "count", "example"],
                rows: Table::text_rows(rows),
            };
            page.section("errors", "Errors", &table(&t));
        }
        let witnesses: String = self.witness_lines().iter().map(|(line, _)| para(line)).collect();
        if !witnesses.is_empty() {
            page.section("driver", "The driver's self-watch", &witnesses);
        }
        page.section("command", "Command", &pre(&self.command));
        page.footer(
            &format!("Written by broker-ops {} for the run started {}.", env!("CARGO_PKG_VERSION"), self.started_at),
            links,
        );
        page.finish()
    }

    /// The threshold that decided the verdict: the first that failed, or the closest to failing.
    fn deciding(&self) -> String {
        if let Verdict::CouldNotRun(why) = self.verdict() {
            return why;
        }
        if let Some(a) = &self.aborted {
            return format!("aborted early: {a} could no longer pass");
        }
        if self.interrupted {
            return "interrupted before the end: the figures are of the chats that ran".into();
        }
        let failed = self.thresholds.iter().find(|t| !t.passed);
        let closest = || {
            self.thresholds.iter().filter(|t| t.margin.is_some()).min_by(|a, b| closeness(a).total_cmp(&closeness(b)))
        };
        match failed.or_else(closest) {
            Some(t) => threshold_line(t),
            None => "no threshold was set".into(),
        }
    }

    fn facts(&self) -> Vec<(&'static str, String)> {
        let c = &self.chats;
        vec![
            ("target", self.target.clone()),
            ("started", self.started_at.clone()),
            ("duration", shown("ms", self.duration_ms)),
            (
                "chats",
                format!(
                    "{} run, {} ok, {} failed, {} cancelled (planned {})",
                    c.total, c.ok, c.failed, c.cancelled, c.planned
                ),
            ),
            ("run", self.headline()),
        ]
    }

    fn thresholds_table(&self) -> String {
        let rows = self.thresholds.iter().map(|t| {
            let (word, tone) = if t.passed { ("PASS", Tone::Good) } else { ("FAIL", Tone::Bad) };
            vec![
                esc(&t.expr),
                esc(&t.observed.map_or("nothing measured".into(), |o| shown(t.unit, o))),
                esc(&shown(t.unit, t.limit)),
                esc(&t.margin.map_or("-".into(), |m| shown(t.unit, m.abs()))),
                state_cell(word, tone),
            ]
        });
        table(&Table {
            caption: "Each threshold, what was observed, and by how much it passed or failed",
            headers: &["threshold", "observed", "limit", "margin", "result"],
            rows: rows.collect(),
        })
    }

    /// The reply SLO, when a threshold sets one on the reply P95 (else any reply latency limit).
    fn slo_ms(&self) -> Option<f64> {
        let latency = |t: &&ThresholdResult| t.of == Subject::Reply && t.unit == "ms";
        let p95 = self.thresholds.iter().filter(latency).find(|t| t.metric == Metric::P95);
        p95.or_else(|| self.thresholds.iter().find(latency)).map(|t| t.limit)
    }

    fn over_time(&self) -> String {
        let slices = self.aggregate.timeline.slices();
        let width = self.aggregate.timeline.width().as_secs_f64();
        let xs = |f: fn(&super::timeline::Slice) -> f64| slices.iter().map(|s| (s.start_s, f(s))).collect::<Vec<_>>();
        let end = slices.last().map_or(0.0, |s| s.start_s + width);
        let chart = LineChart {
            label: &format!(
                "Reply time P50 and P95 per {} of the run{}",
                shown("ms", width * 1000.0),
                self.slo_ms().map_or(String::new(), |s| format!(", against the SLO of {}", shown("ms", s)))
            ),
            y_unit: "ms",
            series: vec![
                Series { name: "P50", points: xs(|s| s.p50_ms) },
                Series { name: "P95", points: xs(|s| s.p95_ms) },
            ],
            limit: self.slo_ms().map(|s| (s, "SLO")),
            x_ticks: vec![(0.0, "0 s".into()), (end, shown("ms", end * 1000.0))],
            empty: if self.mode["loop"] == "merged" {
                "a merged report carries histograms, not the time each reply came"
            } else {
                "no reply arrived"
            },
        };
        let rows = slices.iter().map(|s| {
            vec![
                shown("ms", s.start_s * 1000.0),
                s.replies.to_string(),
                format!("{:.1}", s.p50_ms),
                format!("{:.1}", s.p95_ms),
                format!("{:.1}", s.max_ms),
            ]
        });
        let t = Table {
            caption: "Reply time per slice of the run (ms)",
            headers: &["from", "replies", "p50", "p95", "max"],
            rows: Table::text_rows(rows),
        };
        format!("{}{}", line_chart(&chart), if slices.is_empty() { String::new() } else { table(&t) })
    }

    fn spectrum(&self, drawn: Option<&str>) -> String {
        let chart = match self.aggregate.reply().is_empty() {
            true => "<p class=\"nodata\">no data: no reply arrived</p>".to_string(),
            false => match drawn.map_or_else(|| self.spectrum_svg(), |s| Ok(s.to_string())) {
                Ok(svg) => {
                    figure(&svg, "Latency by percentile for each phase, in ms", "Latency by percentile, per phase")
                }
                Err(e) => para(&format!("the chart could not be drawn: {e}")),
            },
        };
        let mut rows: Vec<Vec<String>> = self.phases.iter().map(|p| percentile_cells(p.name, &p.ms)).collect();
        if let Some(c) = &self.reply_corrected_ms {
            rows.push(percentile_cells("reply (corrected)", c));
        }
        let t = Table {
            caption: "Phases (ms)",
            headers: &["phase", "count", "min", "p50", "p90", "p95", "p99", "max"],
            rows: Table::text_rows(rows),
        };
        format!("{chart}{}", table(&t))
    }

    fn events_line(&self) -> String {
        format!(
            "{} warnings and {} violations published by the worker for these chats.",
            self.sla_events["warning"], self.sla_events["violation"]
        )
    }
}

/// A row of the phases table: name, count, and min to max in ms.
fn percentile_cells(name: &str, m: &super::figures::Percentiles) -> Vec<String> {
    let f = |v: f64| format!("{v:.1}");
    vec![name.to_string(), m.count.to_string(), f(m.min), f(m.p50), f(m.p90), f(m.p95), f(m.p99), f(m.max)]
}

/// How near a threshold came to failing: its margin over its limit.
fn closeness(t: &ThresholdResult) -> f64 {
    t.margin.map_or(f64::MAX, |m| m.abs() / t.limit.abs().max(1e-9))
}

fn threshold_line(t: &ThresholdResult) -> String {
    match (t.observed, t.margin) {
        (Some(o), Some(m)) if t.passed => {
            format!("{}: observed {}, {} to spare", t.expr, shown(t.unit, o), shown(t.unit, m.abs()))
        }
        (Some(o), Some(m)) => {
            format!("{} failed: observed {}, over the limit by {}", t.expr, shown(t.unit, o), shown(t.unit, m.abs()))
        }
        _ => format!("{} failed: nothing to measure (no replies)", t.expr),
    }
}

fn intervals(soak: &super::soak::SoakSummary) -> String {
    let rows = soak.intervals.iter().map(|i| {
        let (word, tone) = if i.passed { ("PASS", Tone::Good) } else { ("FAIL", Tone::Bad) };
        let p95 = i.reply_ms.as_ref().map_or("-".into(), |r| format!("{:.1}", r.p95));
        vec![
            esc(&i.index.to_string()),
            esc(&i.start),
            esc(&i.chats.to_string()),
            esc(&format!("{:.2}%", i.error_rate * 100.0)),
            esc(&p95),
            state_cell(word, tone),
        ]
    });
    table(&Table {
        caption: "One row per interval of the soak",
        headers: &["interval", "start", "chats", "error rate", "reply p95 (ms)", "result"],
        rows: rows.collect(),
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::chat::Phase;
    use super::super::report::Inputs;
    use super::super::{Aggregate, threshold};
    use super::*;

    /// A run of `replies` replies over an hour (lognormal-ish spread), and one error whose text
    /// is markup.
    fn report(replies: u64) -> SmokeReport {
        let mut agg = Aggregate::default();
        let mut h = crate::histogram::LatencyHistogram::new();
        for (i, ms) in [120u64, 400, 800, 1500, 4000, 9000].iter().enumerate() {
            let n = replies / 6 + u64::from(i == 0) * (replies % 6);
            h.record_us(ms * 1000, n);
            for s in 0..3600u64 {
                if s % 6 == i as u64 && n > 0 {
                    agg.timeline.record(Duration::from_secs(s), Duration::from_millis(*ms));
                }
            }
        }
        agg.phases.insert(Phase::Reply, h);
        agg.total = replies as usize;
        agg.ok = agg.total.saturating_sub(1);
        agg.failed = 1;
        agg.errors.insert("timeout".into(), (1, "<img src=x onerror=alert(1)>".into()));
        SmokeReport::build(Inputs {
            driver: None,
            agg,
            thresholds: &threshold::of_sla(Duration::from_secs(5), 0.01),
            mode: None,
            target: "https://chat.example.com/<b>".into(),
            started_at: chrono::Utc::now(),
            duration: Duration::from_secs(3600),
            aborted: None,
            interrupted: false,
            cleanup: None,
            command: "broker-ops sla smoke".into(),
            soak: None,
        })
    }

    #[test]
    fn ten_million_replies_make_a_page_of_the_same_size_with_markup_as_text() {
        let big = report(10_000_000).html(&[("JSON", "r.json".into())], None);
        assert!(big.len() < 300 * 1024, "{} bytes", big.len());
        assert!(big.contains("&lt;img src=x onerror=alert(1)&gt;") && !big.contains("<img"), "escaped");
        assert!(big.contains("https://chat.example.com/&lt;b&gt;") && !big.contains("<b>"));
        assert!(big.contains("FAILED") && big.contains("p95&lt;5s failed"), "the deciding threshold first");
        let small = report(6).html(&[], None);
        assert!(small.len() < 300 * 1024);
    }
}
