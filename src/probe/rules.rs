//! Warn and crit rules of a probe: `latency>300ms`, `skew>2s`, `refused>0`, `subscribers<1`.
//! A rule names one of the probe's metrics; an unknown metric, a limit that is not a finite
//! number or a negative limit is refused rather than silently never firing.

use std::str::FromStr;

use serde::Serialize;

use super::{Check, Unit, fmt_num};
use crate::exit::ProbeState;

pub use crate::compare::Cmp;

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
        let e = crate::compare::Expr::parse(t).ok_or_else(|| {
            format!("invalid rule {s:?}: expected METRIC>VALUE (or >=, <, <=, ==), e.g. latency>300ms")
        })?;
        let (metric, cmp) = (e.left, e.cmp);
        if metric.is_empty() || !metric.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("invalid rule {s:?}: {}", e.at(metric, &format!("{metric:?} is not a metric name"))));
        }
        let kind = crate::compare::Kind::of_metric(metric);
        let limit = e.limit(kind, metric).map_err(|m| format!("invalid rule {s:?}: {m}"))?;
        Ok(Rule { metric: metric.to_string(), cmp, limit, text: t.to_string() })
    }
}

impl Rule {
    /// The monitoring-plugins range that alerts exactly when this rule holds (for values >= 0):
    /// `N` alerts above N, `N:` below N.
    pub(crate) fn range(&self) -> String {
        match self.cmp {
            Cmp::Gt | Cmp::Ge => fmt_num(self.limit),
            Cmp::Lt | Cmp::Le => format!("{}:", fmt_num(self.limit)),
            Cmp::Eq => format!("@{0}:{0}", fmt_num(self.limit)),
        }
    }

    fn breached(&self, v: f64) -> bool {
        self.cmp.holds(v, self.limit)
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
    /// The probe's defaults merged with the user's rules. `known` lists the probe's metrics: a
    /// rule on any other metric is refused, naming the ones that exist.
    pub fn new(
        defaults_warn: &[&str],
        defaults_crit: &[&str],
        warn: Vec<Rule>,
        crit: Vec<Rule>,
        known: &[&str],
    ) -> Result<Self, String> {
        if let Some(r) = warn.iter().chain(&crit).find(|r| !known.contains(&r.metric.as_str())) {
            return Err(format!(
                "rule {:?}: unknown metric {:?} (this probe has: {})",
                r.text,
                r.metric,
                known.join(", ")
            ));
        }
        let merge = |defaults: &[&str], given: Vec<Rule>| -> Vec<Rule> {
            let mut out: Vec<Rule> = defaults
                .iter()
                // The defaults are constants of the probes, proven to parse by their tests.
                .map(|d| d.parse::<Rule>().expect("constant rule"))
                .filter(|d| !given.iter().any(|g| g.metric == d.metric))
                .collect();
            out.extend(given);
            out
        };
        Ok(Rules { warn: merge(defaults_warn, warn), crit: merge(defaults_crit, crit) })
    }

    fn find<'a>(list: &'a [Rule], metric: &str) -> Option<&'a Rule> {
        list.iter().find(|r| r.metric == metric)
    }

    /// A check of `metric` with `value`, its state decided by the rules.
    pub fn check(&self, metric: &str, value: f64, unit: Unit, detail: impl Into<String>) -> Check {
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
            name: metric.to_string(),
            target: None,
            state,
            value: Some(value),
            unit,
            warn: warn.map(|r| r.limit),
            crit: crit.map(|r| r.limit),
            ranges: (warn.map(Rule::range).unwrap_or_default(), crit.map(Rule::range).unwrap_or_default()),
            detail: detail.into(),
        }
    }

    /// A check that failed without a value (the thing measured never happened).
    pub fn critical(&self, metric: &str, unit: Unit, reason: impl Into<String>) -> Check {
        Check { state: ProbeState::Critical, ..self.unknown(metric, unit, reason) }
    }

    /// A check whose measurement failed: CRITICAL when the service failed, UNKNOWN when the
    /// check could not be made on our side ([`crate::exit::Fault`]).
    pub fn failed(&self, metric: &str, unit: Unit, fault: crate::exit::Fault, reason: impl Into<String>) -> Check {
        Check { state: fault.state(), ..self.unknown(metric, unit, reason) }
    }

    /// A check that could not decide.
    pub fn unknown(&self, metric: &str, unit: Unit, reason: impl Into<String>) -> Check {
        Check {
            name: metric.to_string(),
            target: None,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::Unit;

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
        assert!("latency>NaN".parse::<Rule>().unwrap_err().contains("finite"));
        assert!("latency>-1".parse::<Rule>().unwrap_err().contains("negative"));
        let e = Rules::new(&[], &[], vec!["foo>1".parse().unwrap()], vec![], &["latency", "skew"]).unwrap_err();
        assert!(e.contains("unknown metric \"foo\" (this probe has: latency, skew)"), "{e}");
        let rules = Rules::new(
            &["latency>300ms"],
            &["latency>1s"],
            vec![],
            vec!["latency>500ms".parse().unwrap()],
            &["latency"],
        )
        .unwrap();
        assert_eq!(rules.check("latency", 100.0, Unit::Ms, "").state, ProbeState::Ok);
        assert_eq!(rules.check("latency", 400.0, Unit::Ms, "").state, ProbeState::Warning);
        assert_eq!(
            rules.check("latency", 600.0, Unit::Ms, "").state,
            ProbeState::Critical,
            "the given crit replaced the default"
        );
    }
}
