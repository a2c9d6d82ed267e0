//! `monitor --status-page FILE.html`: after each cron sweep, one self-contained page with every
//! probe and check (state, value, since when, a strip of the recent sweeps), the open incidents
//! and this sweep's notices, and the rules in force. It refreshes itself (a pause button stops
//! that) and says plainly when it is stale: not rewritten within three of the usual gaps
//! between sweeps, the monitor has stopped. Without its script it reads the same, with the time
//! after which it is stale written on it.
//!
//! The recent sweeps come from the monitor's own state ([`super::history`]).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::history::{History, key};
use super::once::MonitorReport;
use crate::alert::state::Incident;
use crate::exit::ProbeState;
use crate::page::{Page, Table, Tone, esc, state_cell, table};

/// The page is stale after this many usual gaps without a new sweep.
const STALE_AFTER_GAPS: u32 = 3;
/// The shortest gap the page counts with (back-to-back runs by hand are not a schedule).
const MIN_GAP: Duration = Duration::from_secs(30);

/// Writes the page for `report` (its history and incidents) to `path`, atomically: a reader or
/// a static file server never sees half a page.
pub fn write(path: &Path, report: &MonitorReport, now: DateTime<Utc>) -> std::io::Result<()> {
    crate::fsutil::write_shared(path, &page(report, &report.history, &report.incidents, now))
}

/// Checked before the first sweep: the page's directory exists and takes a file, and the path
/// is not something other than a regular file.
pub fn check_path(path: &Path) -> Result<(), String> {
    let shown = crate::output::escape(&path.display().to_string());
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err(format!("--status-page {shown}: {} is not a directory", dir.display())),
        Err(e) => return Err(format!("--status-page {shown}: its directory {}: {e}", dir.display())),
    }
    crate::fsutil::refuse_non_regular(path).map_err(|e| format!("--status-page {shown}: {e}"))?;
    let probe = dir.join(format!(".broker-ops-status-check-{}", std::process::id()));
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
        .map_err(|e| format!("--status-page {shown}: cannot write in {}: {e}", dir.display()))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

fn tone(s: ProbeState) -> Tone {
    match s {
        ProbeState::Ok => Tone::Good,
        ProbeState::Unknown => Tone::Neutral,
        ProbeState::Warning | ProbeState::Critical => Tone::Bad,
    }
}

fn ago(from: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let d = (now - from).to_std().unwrap_or_default();
    format!(
        "{} ({} ago)",
        from.format("%Y-%m-%d %H:%M:%S UTC"),
        crate::duration::format_duration(Duration::from_secs(d.as_secs()))
    )
}

/// The strip of a check's recent sweeps: one square each, and the counts in words.
fn strip(history: &History, key: &str) -> String {
    let states: Vec<Option<ProbeState>> = history.sweeps.iter().map(|p| p.checks.get(key).copied()).collect();
    let mut counts: BTreeMap<ProbeState, usize> = BTreeMap::new();
    for s in states.iter().flatten() {
        *counts.entry(*s).or_default() += 1;
    }
    let said: Vec<String> = counts.iter().rev().map(|(s, n)| format!("{n} {}", s.label())).collect();
    let label =
        format!("the last {} sweeps: {}", states.len(), if said.is_empty() { "none".into() } else { said.join(", ") });
    let mut svg = format!(
        "<svg class=\"strip\" width=\"{}\" height=\"12\" role=\"img\" aria-label=\"{}\">",
        states.len().max(1) * 5,
        esc(&label)
    );
    for (i, s) in states.iter().enumerate() {
        let colour = match s {
            None => "var(--line)",
            Some(ProbeState::Ok) => "var(--good)",
            Some(ProbeState::Unknown) => "var(--neutral)",
            Some(_) => "var(--bad)",
        };
        let h = if matches!(s, Some(ProbeState::Ok) | None) { 6 } else { 12 };
        let _ =
            write!(svg, "<rect x=\"{}\" y=\"{}\" width=\"4\" height=\"{h}\" style=\"fill:{colour}\"/>", i * 5, 12 - h);
    }
    svg.push_str("</svg>");
    svg
}

/// The page for `report`, the sweeps in `history` (this one recorded) and the open incidents.
pub fn page(report: &MonitorReport, history: &History, incidents: &[Incident], now: DateTime<Utc>) -> String {
    let firing: Vec<&str> = report.rules.iter().filter(|r| r.firing).map(|r| r.name.as_str()).collect();
    let verdict = match report.state {
        ProbeState::Ok => "OK".to_string(),
        s => s.label().to_string(),
    };
    let mut page =
        Page::new(&format!("broker-ops status: {verdict}"), "broker-ops monitor: status", tone(report.state), &verdict);
    let because = match firing.len() {
        0 => "no rule is firing".to_string(),
        n => format!("{n} rule(s) firing: {}", firing.join(", ")),
    };
    page.because(&because, if firing.is_empty() { Tone::Good } else { Tone::Bad });
    // A page is not called stale within a minute and a half, whatever the gap.
    let gap = history.usual_gap().max(MIN_GAP);
    let stale_at =
        report.started_at + chrono::Duration::from_std(gap * STALE_AFTER_GAPS).unwrap_or(chrono::Duration::MAX);
    page.header_markup(&format!(
        "<p id=\"stale\" class=\"because neutral\" role=\"status\">Made {}. Stale after {}: the monitor sweeps about every \
         {}, and a page not rewritten by then means it has stopped.</p>\
         <p><button type=\"button\" id=\"pause\" aria-pressed=\"false\" hidden>Pause auto-refresh</button></p>",
        esc(&report.started_at.format("%Y-%m-%d %H:%M:%S UTC").to_string()),
        esc(&stale_at.format("%Y-%m-%d %H:%M:%S UTC").to_string()),
        esc(&crate::duration::format_duration(gap))
    ));
    // Milliseconds: what every browser's Date.parse reads.
    let js_time = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    page.data("made", &js_time(report.started_at));
    page.data("stale-at", &js_time(stale_at));
    page.data("refresh-s", &gap.as_secs().clamp(30, 300).to_string());
    page.section("checks", "Probes and checks", &checks(report, history, now));
    page.section("incidents", "Open incidents", &incidents_table(incidents, now));
    page.section("notices", "This sweep's notices", &notices(report));
    page.section("rules", "Rules in force", &rules(report));
    page.footer(
        &format!(
            "Written by broker-ops {} monitor, run {}, rules from {}.",
            env!("CARGO_PKG_VERSION"),
            report.run_id,
            report.rules_from
        ),
        &[],
    );
    page.script(SCRIPT);
    page.finish()
}

fn checks(report: &MonitorReport, history: &History, now: DateTime<Utc>) -> String {
    let mut rows = Vec::new();
    for p in &report.probes {
        for l in p.lines() {
            let k = key(p.probe.name(), l.check, l.target);
            let state = match l.skipped {
                true => state_cell("skipped", Tone::Neutral),
                false => state_cell(l.state.label(), tone(l.state)),
            };
            let since = history.since.get(&k).map_or("-".to_string(), |s| ago(s.at, now));
            rows.push(vec![
                esc(&format!("{}.{}", p.probe.name(), l.check)),
                state,
                esc(&l.value_text()),
                esc(&since),
                if l.skipped { "-".into() } else { strip(history, &k) },
                esc(&l.detail_text()),
            ]);
        }
    }
    table(&Table {
        caption: "Every probe's checks this sweep, since when each is in its state, and the recent sweeps",
        headers: &["check", "state", "value", "since", "recent sweeps", "detail"],
        rows,
    })
}

fn incidents_table(incidents: &[Incident], now: DateTime<Utc>) -> String {
    let rows = incidents.iter().map(|i| {
        vec![
            esc(&i.summary),
            state_cell(i.severity.as_str(), Tone::Bad),
            esc(&ago(i.opened_at, now)),
            esc(&format!("{} ({} sent)", ago(i.last_sent_at, now), i.notices)),
            esc(&i.ack.as_ref().map_or("no".to_string(), |a| format!("{} at {}", a.by, a.at.format("%H:%M UTC")))),
        ]
    });
    table(&Table {
        caption: "Incidents open now, with their last notice",
        headers: &["summary", "severity", "opened", "last notice", "acknowledged"],
        rows: rows.collect(),
    })
}

fn notices(report: &MonitorReport) -> String {
    let rows = report.alerts.iter().filter_map(|a| {
        let decision = a.decision.as_ref()?;
        let deliveries: Vec<String> =
            a.deliveries.iter().map(|d| format!("{} {}", d.channel, d.outcome.as_str())).collect();
        Some(vec![
            a.dedup_key.clone().unwrap_or_default(),
            decision.as_str().to_string(),
            if deliveries.is_empty() { "-".into() } else { deliveries.join(", ") },
        ])
    });
    let mut s = table(&Table {
        caption: "What this sweep told the alert channels",
        headers: &["incident", "decision", "deliveries"],
        rows: Table::text_rows(rows),
    });
    for n in &report.notes {
        let _ = write!(s, "<p>{}</p>", esc(n));
    }
    s
}

fn rules(report: &MonitorReport) -> String {
    let rows = report.rules.iter().map(|r| {
        let (word, t) = match (r.firing, r.silenced_until) {
            (true, Some(_)) => ("firing, silenced", Tone::Neutral),
            (true, None) => ("firing", Tone::Bad),
            (false, _) if r.failing_sweeps > 0 => ("failing", Tone::Bad),
            (false, _) => ("quiet", Tone::Good),
        };
        let name = match &r.runbook {
            Some(link) => format!("<a href=\"{}\">{}</a>", esc(link), esc(&r.name)),
            None => esc(&r.name),
        };
        vec![
            name,
            esc(&format!("{} {}", r.check, r.condition)),
            esc(r.severity.as_str()),
            esc(&format!("{} / {}", r.for_sweeps, r.recover)),
            state_cell(word, t),
        ]
    });
    table(&Table {
        caption: "Each rule, what it watches, and how it stands",
        headers: &["rule", "condition", "severity", "for / recover", "now"],
        rows: rows.collect(),
    })
}

/// Says "stale" once the page outlives its deadline, and reloads it every sweep unless paused.
const SCRIPT: &str = "(function(){var b=document.body,s=document.getElementById('stale'),\
p=document.getElementById('pause'),staleAt=Date.parse(b.dataset.staleAt),made=Date.parse(b.dataset.made),\
every=Number(b.dataset.refreshS)*1000,paused=false;function look(){if(Date.now()>staleAt){s.className='because bad';\
s.textContent='STALE: this page was made '+Math.round((Date.now()-made)/60000)+' min ago and not rewritten since: \
the monitor has stopped (check its cron job or timer).';}}look();setInterval(look,10000);p.hidden=false;\
p.addEventListener('click',function(){paused=!paused;p.textContent=paused?'Resume auto-refresh':'Pause auto-refresh';\
p.setAttribute('aria-pressed',String(paused));});setInterval(function(){if(!paused){location.reload();}},every);})();";

#[cfg(test)]
mod tests {
    use super::*;

    use crate::monitor::history::Point;

    fn point(at_s: i64) -> Point {
        Point { at: DateTime::from_timestamp(at_s, 0).unwrap(), state: ProbeState::Ok, checks: BTreeMap::new() }
    }

    #[test]
    fn a_strip_says_its_counts_in_words() {
        let mut h = History::default();
        for s in [ProbeState::Ok, ProbeState::Critical, ProbeState::Ok] {
            let mut p = point(0);
            p.checks.insert("sla.p95".into(), s);
            h.sweeps.push(p);
        }
        let svg = strip(&h, "sla.p95");
        assert!(svg.contains("aria-label=\"the last 3 sweeps: 1 CRITICAL, 2 OK\""), "{svg}");
        assert_eq!(svg.matches("<rect").count(), 3);
    }
}
