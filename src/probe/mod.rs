//! Probes (`ably health`, `ably backlog`, and the checks to come): checks with a value,
//! warn/crit rules and a state,
//! rendered as a table, JSON, a monitoring-plugins status line with perfdata, or the Prometheus
//! text exposition format. A check that cannot decide is UNKNOWN with its reason; the others
//! still report; the probe's state is the worst of its checks.

use std::io::{self, Write};

use serde::Serialize;
use serde_json::{Value, json};

use crate::exit::ProbeState;
use crate::output::{Render, Style, escape, table};

pub mod backlog;
pub mod health;
pub mod redis_health;
mod rules;

pub use rules::{Cmp, Rule, Rules};

/// The unit of a check's value, as perfdata writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Unit {
    Ms,
    S,
    Count,
    Ratio,
}

impl Unit {
    fn perfdata(self) -> &'static str {
        match self {
            Unit::Ms => "ms",
            Unit::S => "s",
            Unit::Count => "",
            Unit::Ratio => "",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// The check's one name: the same in tables, rules (`<probe>.<name>`), JSON, perfdata and
    /// Prometheus.
    pub name: String,
    /// What it was measured on when a probe measures the same thing on several (a channel's
    /// subscribers, a store's mirror lag): its own field, so the name stays the rule's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    pub state: ProbeState,
    pub value: Option<f64>,
    pub unit: Unit,
    pub warn: Option<f64>,
    pub crit: Option<f64>,
    /// The warn and crit rules as perfdata ranges.
    #[serde(skip)]
    pub ranges: (String, String),
    pub detail: String,
}

impl Check {
    /// The check as measured on `target`.
    pub fn at(self, target: impl Into<String>) -> Check {
        Check { target: Some(target.into()), ..self }
    }

    /// The name with its target, for a label that must be unique in a report
    /// (`subscribers@conversation:1`).
    pub fn label(&self) -> String {
        match &self.target {
            Some(t) => format!("{}@{t}", self.name),
            None => self.name.clone(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ProbeReport {
    /// `ably_health` or `ably_backlog`.
    pub kind: &'static str,
    pub checks: Vec<Check>,
}

impl ProbeReport {
    pub fn state(&self) -> ProbeState {
        self.checks.iter().map(|c| c.state).max().unwrap_or(ProbeState::Unknown)
    }

    fn title(&self) -> String {
        self.kind.replace('_', " ").to_uppercase()
    }

    /// One monitoring-plugins status line: `ABLY HEALTH OK - summary | 'label'=value[UOM];warn;crit;min;max ...`.
    pub fn nagios(&self) -> String {
        let state = self.state();
        let bad: Vec<String> = self
            .checks
            .iter()
            .filter(|c| c.state != ProbeState::Ok)
            .map(|c| format!("{} {}: {}", escape(&c.label()), c.state.label(), escape(&c.detail)))
            .collect();
        let summary = if bad.is_empty() { format!("{} checks OK", self.checks.len()) } else { bad.join("; ") };
        let perf: Vec<String> = self.checks.iter().filter_map(|c| perfdata(c, &c.label())).collect();
        // Monitoring plugins must not put '|' in the text part.
        let summary = summary.replace('|', "/");
        format!("{} {} - {} | {}", self.title(), state.label(), summary, perf.join(" "))
    }

    /// The Prometheus text exposition format: one gauge of values and one of states.
    pub fn prometheus(&self) -> String {
        let mut registry = prometheus_client::registry::Registry::with_prefix("broker_ops");
        Gauges::register(&mut registry).add(self);
        let mut out = String::new();
        // Encoding into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        out
    }
}

type Labels = Vec<(String, String)>;

/// The probe gauges of one exposition: any number of probes' checks, each family declared once
/// (a second `# TYPE` line for the same name would make the whole text invalid).
pub struct Gauges {
    values: prometheus_client::metrics::family::Family<
        Labels,
        prometheus_client::metrics::gauge::Gauge<f64, std::sync::atomic::AtomicU64>,
    >,
    states: prometheus_client::metrics::family::Family<Labels, prometheus_client::metrics::gauge::Gauge>,
    probes: prometheus_client::metrics::family::Family<Labels, prometheus_client::metrics::gauge::Gauge>,
}

impl Gauges {
    pub fn register(registry: &mut prometheus_client::registry::Registry) -> Gauges {
        let g = Gauges { values: Default::default(), states: Default::default(), probes: Default::default() };
        registry.register("check_value", "Value of a broker-ops probe check, in the unit label", g.values.clone());
        registry.register(
            "check_state",
            "State of a broker-ops probe check: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN",
            g.states.clone(),
        );
        registry.register(
            "probe_state",
            "State of a broker-ops probe: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN",
            g.probes.clone(),
        );
        g
    }

    pub fn add(&self, report: &ProbeReport) {
        for c in &report.checks {
            let mut labels =
                vec![("probe".to_string(), report.kind.to_string()), ("check".to_string(), c.name.clone())];
            labels.extend(c.target.iter().map(|t| ("target".to_string(), t.clone())));
            if let Some(v) = c.value {
                let mut l = labels.clone();
                l.push(("unit".to_string(), format!("{:?}", c.unit).to_lowercase()));
                self.values.get_or_create(&l).set(v);
            }
            self.states.get_or_create(&labels).set(i64::from(c.state.code()));
        }
        let probe = vec![("probe".to_string(), report.kind.to_string())];
        self.probes.get_or_create(&probe).set(i64::from(report.state().code()));
    }
}

/// One check as monitoring-plugins perfdata under `label`: `'label'=value[UOM];warn;crit;min;max`.
pub fn perfdata(c: &Check, label: &str) -> Option<String> {
    let v = c.value?;
    let min = if v >= 0.0 { "0" } else { "" };
    let max = if c.unit == Unit::Ratio { "1" } else { "" };
    let (warn, crit) = &c.ranges;
    Some(format!("'{}'={}{};{warn};{crit};{min};{max}", label.replace('\'', "\""), fmt_num(v), c.unit.perfdata()))
}

pub(crate) fn fmt_num(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 { format!("{}", v as i64) } else { format!("{v:.3}") }
}

/// A value in its unit, as people read it (`-` when there is none).
pub fn shown(v: Option<f64>, unit: Unit) -> String {
    match (v, unit) {
        (None, _) => "-".into(),
        (Some(v), Unit::Ms) => format!("{}ms", fmt_num(v)),
        (Some(v), Unit::S) => format!("{}s", fmt_num(v)),
        (Some(v), Unit::Ratio) => format!("{:.2}%", v * 100.0),
        (Some(v), Unit::Count) => fmt_num(v),
    }
}

impl Render for ProbeReport {
    fn table(&self, w: &mut dyn Write, style: Style) -> io::Result<()> {
        let mut t = table(&["check", "value", "warn", "crit", "state", "detail"]);
        for c in &self.checks {
            let state = match c.state {
                ProbeState::Ok => style.good("OK"),
                s => style.bad(s.label()),
            };
            t.add_row(vec![
                escape(&c.name),
                shown(c.value, c.unit),
                shown(c.warn, c.unit),
                shown(c.crit, c.unit),
                state,
                escape(&c.target.as_ref().map_or_else(|| c.detail.clone(), |t| format!("{t}: {}", c.detail))),
            ]);
        }
        writeln!(w, "{t}")?;
        writeln!(w, "{}: {}", self.title(), self.state().label())
    }

    fn json(&self) -> Value {
        json!({"schema_version": 1, "kind": self.kind, "state": self.state(), "checks": self.checks})
    }

    fn ndjson(&self) -> Vec<Value> {
        self.checks.iter().map(|c| json!(c)).collect()
    }

    fn as_nagios(&self) -> Option<String> {
        Some(self.nagios())
    }

    fn as_prometheus(&self) -> Option<String> {
        Some(self.prometheus())
    }
}

/// Runs `probe` within `limit`; past it, the probe is one CRITICAL check of `metric` saying so
/// (a service that does not answer in time is down for customers too), and the command still
/// ends on time.
pub async fn within(
    kind: &'static str,
    limit: std::time::Duration,
    rules: &Rules,
    (metric, unit): (&str, Unit),
    probe: impl std::future::Future<Output = ProbeReport>,
) -> ProbeReport {
    match tokio::time::timeout(limit, probe).await {
        Ok(r) => r,
        Err(_) => {
            let why = format!("the probe did not finish within {}", crate::duration::format_duration(limit));
            ProbeReport { kind, checks: vec![rules.critical(metric, unit, why)] }
        }
    }
}
