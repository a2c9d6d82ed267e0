//! Probes (`ably health`, `ably backlog`): checks with a value, warn/crit rules and a state,
//! rendered as a table, JSON, a monitoring-plugins status line with perfdata, or the Prometheus
//! text exposition format. A check that cannot decide is UNKNOWN with its reason; the others
//! still report; the probe's state is the worst of its checks.

use std::io::{self, Write};
use std::str::FromStr;

use serde::Serialize;
use serde_json::{Value, json};

use crate::exit::ProbeState;
use crate::output::{Render, Style, table};

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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Cmp {
    #[serde(rename = ">")]
    Gt,
    #[serde(rename = ">=")]
    Ge,
    #[serde(rename = "<")]
    Lt,
    #[serde(rename = "<=")]
    Le,
}

/// `latency>300ms`, `skew>2s`, `refused>0`, `subscribers<1`: a metric, a comparison, a limit.
/// Durations are kept in the metric's unit (ms for latencies, s for skews and ages).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rule {
    pub metric: String,
    pub cmp: Cmp,
    pub limit: f64,
    #[serde(skip)]
    pub text: String,
}

impl FromStr for Rule {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let (metric, cmp, value) = [(">=", Cmp::Ge), ("<=", Cmp::Le), (">", Cmp::Gt), ("<", Cmp::Lt)]
            .iter()
            .find_map(|(op, c)| t.split_once(op).map(|(a, b)| (a.trim(), *c, b.trim())))
            .ok_or_else(|| format!("invalid rule {s:?}: expected METRIC>VALUE (or >=, <, <=), e.g. latency>300ms"))?;
        if metric.is_empty() || !metric.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("invalid rule {s:?}: {metric:?} is not a metric name"));
        }
        let limit = match value.parse::<f64>() {
            Ok(v) => v,
            Err(_) => {
                let d = crate::duration::parse_duration(value).map_err(|e| format!("invalid rule {s:?}: {e}"))?;
                // Latencies are in ms; skews and ages in seconds.
                if metric.contains("latency") { d.as_secs_f64() * 1000.0 } else { d.as_secs_f64() }
            }
        };
        Ok(Rule { metric: metric.to_string(), cmp, limit, text: t.to_string() })
    }
}

impl Rule {
    /// The monitoring-plugins range that alerts exactly when this rule holds (for values >= 0):
    /// `N` alerts above N, `N:` below N.
    fn range(&self) -> String {
        match self.cmp {
            Cmp::Gt | Cmp::Ge => fmt_num(self.limit),
            Cmp::Lt | Cmp::Le => format!("{}:", fmt_num(self.limit)),
        }
    }

    fn breached(&self, v: f64) -> bool {
        match self.cmp {
            Cmp::Gt => v > self.limit,
            Cmp::Ge => v >= self.limit,
            Cmp::Lt => v < self.limit,
            Cmp::Le => v <= self.limit,
        }
    }
}

/// The warn and crit rules of a probe: defaults first, then the user's, which replace a
/// default for the same metric.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    pub warn: Vec<Rule>,
    pub crit: Vec<Rule>,
}

impl Rules {
    pub fn new(defaults_warn: &[&str], defaults_crit: &[&str], warn: Vec<Rule>, crit: Vec<Rule>) -> Self {
        let merge = |defaults: &[&str], given: Vec<Rule>| -> Vec<Rule> {
            let mut out: Vec<Rule> = defaults
                .iter()
                .map(|d| d.parse::<Rule>().expect("constant rule"))
                .filter(|d| !given.iter().any(|g| g.metric == d.metric))
                .collect();
            out.extend(given);
            out
        };
        Rules { warn: merge(defaults_warn, warn), crit: merge(defaults_crit, crit) }
    }

    fn find<'a>(list: &'a [Rule], metric: &str) -> Option<&'a Rule> {
        list.iter().find(|r| r.metric == metric)
    }

    /// A check of `metric` with `value`, its state decided by the rules.
    pub fn check(
        &self,
        name: impl Into<String>,
        metric: &str,
        value: f64,
        unit: Unit,
        detail: impl Into<String>,
    ) -> Check {
        let warn = Self::find(&self.warn, metric);
        let crit = Self::find(&self.crit, metric);
        let state = if crit.is_some_and(|r| r.breached(value)) {
            ProbeState::Critical
        } else if warn.is_some_and(|r| r.breached(value)) {
            ProbeState::Warning
        } else {
            ProbeState::Ok
        };
        Check {
            name: name.into(),
            metric: metric.to_string(),
            state,
            value: Some(value),
            unit,
            warn: warn.map(|r| r.limit),
            crit: crit.map(|r| r.limit),
            ranges: (warn.map(Rule::range).unwrap_or_default(), crit.map(Rule::range).unwrap_or_default()),
            detail: detail.into(),
        }
    }

    /// A check that could not decide.
    pub fn unknown(&self, name: impl Into<String>, metric: &str, unit: Unit, reason: impl Into<String>) -> Check {
        Check {
            name: name.into(),
            metric: metric.to_string(),
            state: ProbeState::Unknown,
            value: None,
            unit,
            warn: Self::find(&self.warn, metric).map(|r| r.limit),
            crit: Self::find(&self.crit, metric).map(|r| r.limit),
            ranges: Default::default(),
            detail: reason.into(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: String,
    #[serde(skip)]
    pub metric: String,
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
            .map(|c| format!("{} {}: {}", c.name, c.state.label(), c.detail))
            .collect();
        let summary = if bad.is_empty() { format!("{} checks OK", self.checks.len()) } else { bad.join("; ") };
        let perf: Vec<String> = self
            .checks
            .iter()
            .filter_map(|c| {
                let v = c.value?;
                let min = if v >= 0.0 { "0" } else { "" };
                let max = if c.unit == Unit::Ratio { "1" } else { "" };
                let (warn, crit) = &c.ranges;
                Some(format!(
                    "'{}'={}{};{warn};{crit};{min};{max}",
                    c.name.replace('\'', "\""),
                    fmt_num(v),
                    c.unit.perfdata()
                ))
            })
            .collect();
        // Monitoring plugins must not put '|' in the text part.
        let summary = summary.replace('|', "/");
        format!("{} {} - {} | {}", self.title(), state.label(), summary, perf.join(" "))
    }

    /// The Prometheus text exposition format: one gauge of values and one of states.
    pub fn prometheus(&self) -> String {
        use prometheus_client::encoding::text::encode;
        use prometheus_client::metrics::family::Family;
        use prometheus_client::metrics::gauge::Gauge;
        use prometheus_client::registry::Registry;
        type Labels = Vec<(String, String)>;
        let values = Family::<Labels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        let states = Family::<Labels, Gauge>::default();
        let probe = Family::<Labels, Gauge>::default();
        let mut registry = Registry::with_prefix("broker_ops");
        registry.register("check_value", "Value of a broker-ops probe check, in the unit label", values.clone());
        registry.register(
            "check_state",
            "State of a broker-ops probe check: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN",
            states.clone(),
        );
        registry.register(
            "probe_state",
            "State of a broker-ops probe: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN",
            probe.clone(),
        );
        for c in &self.checks {
            let labels = vec![("probe".to_string(), self.kind.to_string()), ("check".to_string(), c.name.clone())];
            if let Some(v) = c.value {
                let mut l = labels.clone();
                l.push(("unit".to_string(), format!("{:?}", c.unit).to_lowercase()));
                values.get_or_create(&l).set(v);
            }
            states.get_or_create(&labels).set(i64::from(c.state.code()));
        }
        probe.get_or_create(&vec![("probe".to_string(), self.kind.to_string())]).set(i64::from(self.state().code()));
        let mut out = String::new();
        // Encoding into a String cannot fail.
        let _ = encode(&mut out, &registry);
        out
    }
}

fn fmt_num(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 { format!("{}", v as i64) } else { format!("{v:.3}") }
}

fn shown(v: Option<f64>, unit: Unit) -> String {
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
                c.name.clone(),
                shown(c.value, c.unit),
                shown(c.warn, c.unit),
                shown(c.crit, c.unit),
                state,
                c.detail.clone(),
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
}

pub use crate::fsutil::write_atomically;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_parse_and_decide_states() {
        let r: Rule = "latency>300ms".parse().unwrap();
        assert_eq!((r.metric.as_str(), r.cmp, r.limit), ("latency", Cmp::Gt, 300.0));
        let r: Rule = "skew>2s".parse().unwrap();
        assert_eq!(r.limit, 2.0);
        let r: Rule = "oldest_wait>=30s".parse().unwrap();
        assert_eq!((r.cmp, r.limit), (Cmp::Ge, 30.0));
        assert!("latency".parse::<Rule>().is_err());
        assert!("lat ency>1".parse::<Rule>().is_err());
        let rules = Rules::new(&["latency>300ms"], &["latency>1s"], vec![], vec!["latency>500ms".parse().unwrap()]);
        assert_eq!(rules.check("time", "latency", 100.0, Unit::Ms, "").state, ProbeState::Ok);
        assert_eq!(rules.check("time", "latency", 400.0, Unit::Ms, "").state, ProbeState::Warning);
        assert_eq!(
            rules.check("time", "latency", 600.0, Unit::Ms, "").state,
            ProbeState::Critical,
            "the given crit replaced the default"
        );
    }
}
