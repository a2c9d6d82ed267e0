//! A monitor run in every format: a table for people, JSON and NDJSON, one monitoring-plugins
//! line with every check's perfdata, and the Prometheus text format (also written atomically
//! as a node_exporter textfile).

use std::io::{self, Write};
use std::path::Path;

use serde_json::{Value, json};

use super::once::MonitorReport;
use crate::exit::ProbeState;
use crate::output::{Render, Style, escape, table};

impl MonitorReport {
    fn probes_table(&self, style: Style) -> String {
        let mut t = table(&["probe", "check", "state", "value", "detail"]);
        for p in &self.probes {
            for l in p.lines() {
                let row = [
                    p.probe.name().to_string(),
                    escape(l.check),
                    l.state_cell(style),
                    l.value_text(),
                    escape(&l.detail_text()),
                ];
                t.add_row(row.to_vec());
            }
        }
        t.to_string()
    }

    fn rules_table(&self, style: Style) -> String {
        let mut t = table(&["rule", "check", "condition", "severity", "verdict", "sweeps", "firing"]);
        for r in &self.rules {
            let sweeps = match r.firing {
                true => format!("{}/{} passing", r.passing_sweeps, r.recover),
                false => format!("{}/{} failing", r.failing_sweeps, r.for_sweeps),
            };
            let firing = match (r.firing, r.silenced_until) {
                (_, Some(until)) => format!(
                    "{}silenced until {} UTC",
                    if r.firing { "FIRING, " } else { "" },
                    until.format("%Y-%m-%d %H:%M")
                ),
                (true, None) => style.bad("FIRING"),
                (false, None) => "no".into(),
            };
            t.add_row(vec![
                escape(&r.name),
                r.check.clone(),
                escape(&r.condition),
                r.severity.as_str().to_string(),
                format!("{:?}", r.verdict).to_lowercase(),
                sweeps,
                firing,
            ]);
        }
        t.to_string()
    }

    /// The Prometheus exposition: every probe's gauges, each rule's firing, the run's state,
    /// duration and time (the textfile's freshness can be alerted on).
    pub fn prometheus(&self) -> String {
        use prometheus_client::metrics::family::Family;
        use prometheus_client::metrics::gauge::Gauge;
        type Labels = Vec<(String, String)>;
        let mut registry = prometheus_client::registry::Registry::with_prefix("broker_ops");
        let gauges = crate::probe::Gauges::register(&mut registry);
        for p in self.probes.iter().filter(|p| p.counts()) {
            gauges.add(&p.report());
        }
        let firing = Family::<Labels, Gauge>::default();
        registry.register("monitor_rule_firing", "1 while a broker-ops monitor rule is firing", firing.clone());
        for r in &self.rules {
            let l =
                vec![("rule".to_string(), r.name.clone()), ("severity".to_string(), r.severity.as_str().to_string())];
            firing.get_or_create(&l).set(i64::from(r.firing));
        }
        let silenced = Family::<Labels, Gauge>::default();
        registry.register(
            "monitor_rule_silenced",
            "1 while a silence covers a broker-ops monitor rule (judged, not notified)",
            silenced.clone(),
        );
        for r in &self.rules {
            let l =
                vec![("rule".to_string(), r.name.clone()), ("severity".to_string(), r.severity.as_str().to_string())];
            silenced.get_or_create(&l).set(i64::from(r.silenced_until.is_some()));
        }
        let state = Gauge::<i64>::default();
        registry.register(
            "monitor_state",
            "Worst state of the last sweep: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN",
            state.clone(),
        );
        state.set(i64::from(self.state.code()));
        let unpaged = Gauge::<i64>::default();
        registry.register(
            "monitor_unpaged",
            "1 when the last sweep was not OK and no rule was firing unsilenced: nobody was paged",
            unpaged.clone(),
        );
        let paging = self.rules.iter().any(|r| r.firing && r.silenced_until.is_none());
        unpaged.set(i64::from(self.state != ProbeState::Ok && !paging));
        let seconds = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register("monitor_sweep_duration_seconds", "Wall time of the last sweep", seconds.clone());
        seconds.set(self.elapsed_ms / 1000.0);
        let at = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register("monitor_last_run_timestamp_seconds", "When the last sweep started (Unix time)", at.clone());
        at.set(self.started_at.timestamp_millis() as f64 / 1000.0);
        let mut out = String::new();
        // Encoding into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        out
    }

    /// One monitoring-plugins line: the state, what is wrong, and every check as perfdata.
    pub fn nagios(&self) -> String {
        let perf: Vec<String> = self
            .probes
            .iter()
            .flat_map(|p| p.checks.iter().map(move |c| (p, c)))
            .filter_map(|(p, c)| crate::probe::perfdata(c, &format!("{}.{}", p.probe.name(), c.label())))
            .collect();
        // Monitoring plugins must not put '|' in the text part.
        format!("{} | {}", escape(&self.summary()).replace('|', "/"), perf.join(" "))
    }

    /// Writes the Prometheus text to `path` atomically: a reader (node_exporter) sees the old
    /// file or the new one, never half of one, even if this process is killed while writing.
    pub fn write_textfile(&self, path: &Path) -> io::Result<()> {
        crate::fsutil::write_shared(path, &self.prometheus())
    }
}

impl Render for MonitorReport {
    fn table(&self, w: &mut dyn Write, style: Style) -> io::Result<()> {
        writeln!(w, "{}", self.probes_table(style))?;
        if !self.rules.is_empty() {
            writeln!(w, "{}", self.rules_table(style))?;
        }
        for a in &self.alerts {
            let Some(decision) = &a.decision else { continue };
            let deliveries: Vec<String> =
                a.deliveries.iter().map(|d| format!("{} {}", d.channel, d.outcome.as_str())).collect();
            let key = a.dedup_key.as_deref().unwrap_or("");
            let sent = if deliveries.is_empty() { String::new() } else { format!(" ({})", deliveries.join(", ")) };
            writeln!(w, "alert {key}: {}{sent}", decision.as_str())?;
        }
        for n in &self.notes {
            writeln!(w, "{}", crate::output::wrap(&format!("note: {}", escape(n)), 6))?;
        }
        let counted = self.probes.iter().filter(|p| p.counts()).count();
        let last = format!(
            "MONITOR {}: {counted} probe(s) ran, {} skipped, {} rule(s) firing, in {:.0} ms (run {})",
            match self.state {
                ProbeState::Ok => style.good("OK"),
                s => style.bad(s.label()),
            },
            self.probes.len() - counted,
            self.rules.iter().filter(|r| r.firing).count(),
            self.elapsed_ms,
            self.run_id
        );
        writeln!(w, "{}", crate::output::wrap(&last, 2))
    }

    fn json(&self) -> Value {
        json!(self)
    }

    /// One object per check, then one per rule, then the run's summary.
    fn ndjson(&self) -> Vec<Value> {
        let checks = self
            .probes
            .iter()
            .flat_map(|p| p.checks.iter().map(move |c| json!({"type": "check", "probe": p.probe, "check": c})));
        let rules = self.rules.iter().map(|r| json!({"type": "rule", "rule": r}));
        let run = json!({"type": "run", "run_id": self.run_id, "state": self.state, "elapsed_ms": self.elapsed_ms,
                         "probes": self.probes.iter().map(|p| json!({"probe": p.probe, "status": p.status,
                                   "state": p.state, "elapsed_ms": p.elapsed_ms, "reason": p.reason})).collect::<Vec<_>>(),
                         "alerts": self.alerts, "notes": self.notes});
        checks.chain(rules).chain(std::iter::once(run)).collect()
    }

    fn as_nagios(&self) -> Option<String> {
        Some(self.nagios())
    }

    fn as_prometheus(&self) -> Option<String> {
        Some(self.prometheus())
    }
}

/// `monitor rules`: the rules in force, and where they came from.
impl Render for super::rules::RuleSet {
    fn table(&self, w: &mut dyn Write, _style: Style) -> io::Result<()> {
        let mut t = table(&["rule", "check", "condition", "severity", "for", "recover", "labels", "runbook"]);
        for r in &self.rules {
            let labels: Vec<String> = r.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            t.add_row(vec![
                escape(&r.name),
                format!("{}.{}", r.probe.name(), r.metric),
                escape(&r.condition.text),
                r.severity.as_str().to_string(),
                r.for_sweeps.to_string(),
                r.recover_sweeps.to_string(),
                escape(&labels.join(",")),
                escape(r.runbook.as_deref().unwrap_or("")),
            ]);
        }
        writeln!(w, "{t}")?;
        writeln!(w, "{} rule(s) from {}", self.rules.len(), escape(&self.origin))
    }

    fn json(&self) -> Value {
        let rules: Vec<Value> = self
            .rules
            .iter()
            .map(|r| {
                json!({"name": r.name, "check": format!("{}.{}", r.probe.name(), r.metric),
                       "condition": r.condition.text, "severity": r.severity, "for": r.for_sweeps,
                       "recover": r.recover_sweeps, "labels": r.labels, "runbook": r.runbook})
            })
            .collect();
        json!({"schema_version": 1, "origin": self.origin, "rules": rules})
    }

    fn ndjson(&self) -> Vec<Value> {
        match self.json()["rules"].take() {
            Value::Array(rules) => rules,
            _ => Vec::new(),
        }
    }
}

/// A run that found another holding the lock: it did nothing, and says so in the chosen format
/// (a scheduler reading JSON or a status line must not read silence).
pub struct LockedOut {
    pub holder: String,
    pub place: String,
}

impl LockedOut {
    pub fn text(&self) -> String {
        format!("another monitor run holds the lock ({}) at {}: this run did nothing", self.holder, self.place)
    }
}

impl Render for LockedOut {
    fn table(&self, w: &mut dyn Write, _style: Style) -> io::Result<()> {
        writeln!(w, "{}", escape(&self.text()))
    }

    fn json(&self) -> Value {
        json!({"schema_version": 1, "locked_out": true, "holder": self.holder, "place": self.place,
               "note": self.text()})
    }

    fn as_nagios(&self) -> Option<String> {
        Some(format!("MONITOR OK - {}", escape(&self.text()).replace('|', "/")))
    }

    fn as_prometheus(&self) -> Option<String> {
        Some(
            "# HELP broker_ops_monitor_locked_out 1 when this run found another holding the lock and did nothing.\n\
             # TYPE broker_ops_monitor_locked_out gauge\nbroker_ops_monitor_locked_out 1\n"
                .to_string(),
        )
    }
}
