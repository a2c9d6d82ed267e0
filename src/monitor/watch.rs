//! `monitor --watch`: what the live view remembers between sweeps (each check's state, since
//! when, and its last values) and the frame it draws. Drawing on the terminal is the binary's.

use std::collections::VecDeque;

use chrono::{DateTime, Utc};

use super::sweep::{Line, ProbeOutcome};
use crate::exit::ProbeState;
use crate::output::{Style, escape, table};
use crate::probe::Unit;

/// How many sweeps a sparkline shows.
pub const SPARK_WIDTH: usize = 20;

struct Row {
    probe: &'static str,
    check: String,
    target: Option<String>,
    state: ProbeState,
    skipped: bool,
    since: DateTime<Utc>,
    value: Option<f64>,
    unit: Unit,
    detail: String,
    values: VecDeque<Option<f64>>,
}

impl Row {
    fn line(&self) -> Line<'_> {
        let (check, detail) = (self.check.as_str(), self.detail.as_str());
        // The row's detail already starts with its target.
        let (state, skipped, value, unit) = (self.state, self.skipped, self.value, self.unit);
        Line { check, target: None, state, skipped, value, unit, detail }
    }
}

/// Every check seen so far, in the order first seen.
#[derive(Default)]
pub struct History {
    rows: Vec<Row>,
    sweeps: usize,
    last: Option<(DateTime<Utc>, f64, ProbeState)>,
}

impl History {
    /// Adds one sweep taken at `at` that lasted `elapsed_ms`.
    pub fn add(&mut self, probes: &[ProbeOutcome], at: DateTime<Utc>, elapsed_ms: f64) {
        self.sweeps += 1;
        let worst = super::once::MonitorReport::worst(probes);
        self.last = Some((at, elapsed_ms, worst));
        let mut seen = Vec::new();
        for p in probes {
            for l in p.lines() {
                seen.push(self.update(p.probe.name(), l, at));
            }
        }
        // A check not reported this sweep keeps its row, with a gap in its line.
        for (i, row) in self.rows.iter_mut().enumerate() {
            if !seen.contains(&i) {
                push(&mut row.values, None);
            }
        }
    }

    fn update(&mut self, probe: &'static str, l: Line<'_>, at: DateTime<Utc>) -> usize {
        let i = match self
            .rows
            .iter()
            .position(|r| r.probe == probe && r.check == l.check && r.target.as_deref() == l.target)
        {
            Some(i) => i,
            None => {
                let values = VecDeque::from(vec![None; self.sweeps.saturating_sub(1).min(SPARK_WIDTH - 1)]);
                self.rows.push(Row {
                    probe,
                    check: l.check.into(),
                    target: l.target.map(str::to_string),
                    state: l.state,
                    skipped: l.skipped,
                    since: at,
                    value: l.value,
                    unit: l.unit,
                    detail: String::new(),
                    values,
                });
                self.rows.len() - 1
            }
        };
        let row = &mut self.rows[i];
        if row.state != l.state || row.skipped != l.skipped {
            row.since = at;
        }
        (row.state, row.skipped, row.value, row.unit) = (l.state, l.skipped, l.value, l.unit);
        row.detail = l.detail_text();
        push(&mut row.values, l.value);
        i
    }

    /// The frame: a header, one row per check (state, value, since when, the last sweeps).
    pub fn frame(&self, every: &str, now: DateTime<Utc>, style: Style) -> String {
        let mut t = table(&["probe", "check", "state", "value", "since", "last sweeps", "detail"]);
        for r in &self.rows {
            let l = r.line();
            let since = whole_seconds((now - r.since).num_seconds().max(0) as u64);
            let values: Vec<Option<f64>> = r.values.iter().copied().collect();
            t.add_row(vec![
                r.probe.to_string(),
                escape(l.check),
                l.state_cell(style),
                l.value_text(),
                format!("{since} ago"),
                sparkline(&values),
                escape(&crate::output::truncate(&l.detail_text(), 60)),
            ]);
        }
        let head = match self.last {
            Some((at, ms, worst)) => format!(
                "broker-ops monitor, every {every}: {} at {} ({ms:.0} ms), sweep {}; q or Ctrl-C quits",
                worst.label(),
                at.format("%H:%M:%S"),
                self.sweeps
            ),
            None => format!("broker-ops monitor, every {every}: first sweep running; q or Ctrl-C quits"),
        };
        format!("{head}\n{t}\n")
    }
}

/// A sweep as plain lines (stdout not a terminal): `time probe check state value detail`.
pub fn plain_lines(probes: &[ProbeOutcome], at: DateTime<Utc>) -> Vec<String> {
    let t = at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let mut out = Vec::new();
    for p in probes {
        for l in p.lines() {
            let state = if l.skipped { "SKIPPED" } else { l.state.label() };
            let (name, check, v, detail) = (p.probe.name(), escape(l.check), l.value_text(), escape(&l.detail_text()));
            out.push(format!("{t} {name} {check} {state} {v} {detail}"));
        }
    }
    out
}

/// `20s`, `3m12s`, `2h5m`: how long a state has lasted, to the second.
fn whole_seconds(s: u64) -> String {
    if s < 60 { format!("{s}s") } else { crate::duration::format_duration(std::time::Duration::from_secs(s)) }
}

fn push(values: &mut VecDeque<Option<f64>>, v: Option<f64>) {
    if values.len() == SPARK_WIDTH {
        values.pop_front();
    }
    values.push_back(v);
}

/// Eight levels between the smallest and largest value shown; a gap is a space.
pub fn sparkline(values: &[Option<f64>]) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let known = values.iter().flatten().copied();
    let (lo, hi) = known.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    values
        .iter()
        .map(|v| match v {
            None => ' ',
            Some(_) if hi <= lo => BARS[0],
            Some(v) => BARS[(((v - lo) / (hi - lo)) * 7.0).round().clamp(0.0, 7.0) as usize],
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::rules::Probe;
    use crate::monitor::sweep::Status;
    use crate::probe::Rules;

    #[test]
    fn sparkline_scales_between_min_and_max_with_gaps() {
        assert_eq!(sparkline(&[Some(0.0), Some(7.0), None, Some(3.5)]), "▁█ ▅");
        assert_eq!(sparkline(&[Some(5.0), Some(5.0)]), "▁▁");
        assert_eq!(sparkline(&[]), "");
    }

    #[test]
    fn since_moves_only_when_the_state_changes() {
        let mut h = History::default();
        let rules = Rules::default();
        let at = |s: i64| DateTime::<Utc>::from_timestamp(1_700_000_000 + s, 0).unwrap();
        let probe = |state: ProbeState, v: f64| {
            let mut c = rules.unknown("latency", Unit::Ms, "");
            (c.state, c.value) = (state, Some(v));
            vec![ProbeOutcome {
                probe: Probe::AblyHealth,
                status: Status::Ran,
                state,
                elapsed_ms: 1.0,
                reason: None,
                checks: vec![c],
            }]
        };
        h.add(&probe(ProbeState::Ok, 10.0), at(0), 5.0);
        h.add(&probe(ProbeState::Ok, 20.0), at(10), 5.0);
        let f = h.frame("10s", at(20), Style::default());
        assert!(f.contains("20s ago") && f.contains("▁█"), "{f}");
        h.add(&probe(ProbeState::Critical, 1500.0), at(20), 5.0);
        let f = h.frame("10s", at(25), Style::default());
        assert!(f.contains("CRITICAL") && f.contains("5s ago") && f.contains("1500ms"), "{f}");
        assert!(f.starts_with("broker-ops monitor, every 10s: CRITICAL at"), "{f}");
    }
}
