//! `sla report`'s HTML page, written beside its Markdown and JSON with `--report-dir`: whether
//! the window held the SLO first (its P95 against the SLO, with the margin), then the reply time
//! per bucket with the SLO line and its figures as a table, the worst conversations (linked to
//! Chatwoot when configured) and the window's counts.

use super::SlaReport;
use crate::page::{Page, Table, Tone, esc, figure, list, para, table};

fn ms(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.1}"))
}

fn secs(ms: f64) -> String {
    crate::duration::format_duration(std::time::Duration::from_secs_f64(ms.max(0.0) / 1000.0))
}

impl SlaReport {
    /// The page; `links` are the files beside it (`(label, file name)`).
    pub fn html(&self, links: &[(&str, String)]) -> String {
        let (tone, verdict, because) = match self.reply_ms.p95 {
            None => (Tone::Neutral, "NO REPLIES".to_string(), "no reply in the window to judge the SLO by".to_string()),
            Some(p) if p <= self.slo_ms => (
                Tone::Good,
                "WITHIN THE SLO".to_string(),
                format!(
                    "reply P95 {} against the SLO of {}: {} to spare",
                    secs(p),
                    secs(self.slo_ms),
                    secs(self.slo_ms - p)
                ),
            ),
            Some(p) => (
                Tone::Bad,
                "OVER THE SLO".to_string(),
                format!(
                    "reply P95 {} against the SLO of {}: over by {}",
                    secs(p),
                    secs(self.slo_ms),
                    secs(p - self.slo_ms)
                ),
            ),
        };
        let mut page = Page::new(&format!("SLA report: {verdict}"), "broker-ops sla report", tone, &verdict);
        page.because(&because, tone);
        let w = &self.window;
        page.facts(&[
            ("window", format!("{} to {}", w.since.format("%Y-%m-%d %H:%M:%SZ"), w.until.format("%Y-%m-%d %H:%M:%SZ"))),
            ("buckets", format!("{} of {}", w.buckets, secs(w.by_seconds * 1000.0))),
            ("source", format!("{:?}", self.source)),
            ("replies paired by", self.reply_match.clone()),
        ]);
        if let Some(n) = &self.note {
            page.section("note", "Note", &para(n));
        }
        page.section("over-time", "Reply time per bucket", &self.buckets_html());
        page.section("worst", "Worst conversations", &self.worst_html());
        page.section("counts", "The window's counts", &list(&self.summary_lines()));
        page.footer(&format!("Written by broker-ops {} from {}.", env!("CARGO_PKG_VERSION"), self.headline()), links);
        page.finish()
    }

    fn buckets_html(&self) -> String {
        let chart = match self.replies {
            0 => "<p class=\"nodata\">no data: no reply in the window</p>".to_string(),
            _ => match super::chart::report_svg(self) {
                Ok(svg) => figure(
                    &svg,
                    &format!(
                        "Reply time P50, P95 and P99 per bucket against the SLO of {}, and replies over the SLO",
                        secs(self.slo_ms)
                    ),
                    "Reply time per bucket (lines, left axis) and replies over the SLO (bars, right axis)",
                ),
                Err(e) => para(&format!("the chart could not be drawn: {e}")),
            },
        };
        let rows = self.buckets.iter().map(|b| super::render::bucket_cells(b, "%Y-%m-%d %H:%M:%S"));
        let t = Table {
            caption: "Each bucket's figures (ms)",
            headers: &super::render::BUCKET_COLUMNS,
            rows: Table::text_rows(rows),
        };
        format!("{chart}{}", table(&t))
    }

    fn worst_html(&self) -> String {
        let rows = self.worst.iter().map(|w| {
            let name = match &w.link {
                Some(l) => format!("<a href=\"{}\">{}</a>", esc(l), esc(&w.conversation)),
                None => esc(&w.conversation),
            };
            vec![
                name,
                esc(&ms(w.slowest_ms)),
                esc(&w.unanswered.to_string()),
                esc(&w.over_slo.to_string()),
                esc(&w.messages.to_string()),
            ]
        });
        table(&Table {
            caption: "The conversations that waited longest",
            headers: &["conversation", "slowest (ms)", "unanswered", "over SLO", "messages"],
            rows: rows.collect(),
        })
    }
}
