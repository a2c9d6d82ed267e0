//! The one expression language every limit is written in: smoke thresholds (`p95<5s`,
//! `error_rate<1%`), probe rules (`latency>300ms`), monitor conditions (`value > 5s`,
//! `state == UNKNOWN`), rollout gates (`--max-regression 1%`) and the sandbox's rates
//! (`--ai-error-rate 0.2`). One set of operators, one way to split an expression around them,
//! one parser of limits (a number, a share as `N%` or a fraction, a duration converted to the
//! unit of what it limits, a state), one evaluation, one error text that says where the mistake is.

use serde::Serialize;

use crate::exit::ProbeState;

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
    #[serde(rename = "==")]
    Eq,
}

impl Cmp {
    /// The comparisons as written, the two-character ones first so that `>=` is not read as `>`.
    pub const WRITTEN: [(&'static str, Cmp); 5] =
        [("==", Cmp::Eq), (">=", Cmp::Ge), ("<=", Cmp::Le), (">", Cmp::Gt), ("<", Cmp::Lt)];

    /// Whether `a <op> b`.
    pub fn holds(self, a: f64, b: f64) -> bool {
        match self {
            Cmp::Gt => a > b,
            Cmp::Ge => a >= b,
            Cmp::Lt => a < b,
            Cmp::Le => a <= b,
            Cmp::Eq => a == b,
        }
    }

    pub fn as_str(self) -> &'static str {
        Self::WRITTEN.iter().find(|(_, c)| *c == self).map_or("?", |(s, _)| s)
    }
}

/// `left <op> right`, each side trimmed, split at the first operator found (longest first);
/// `None` when there is none.
pub fn split(text: &str) -> Option<(&str, Cmp, &str)> {
    Cmp::WRITTEN.iter().find_map(|(op, c)| text.split_once(op).map(|(a, b)| (a.trim(), *c, b.trim())))
}

/// What a limit measures, so that a limit of another kind is refused: a duration compared with
/// a count, or a percentage with milliseconds, would never mean what it says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A duration held in milliseconds (latencies, reply percentiles).
    Millis,
    /// A duration held in seconds (skews, ages, lags).
    Seconds,
    /// A duration held in whole days (certificate expiry).
    Days,
    /// A share from 0 to 1, written `N%` or as the fraction.
    Share,
    /// A count or another plain number.
    Count,
}

impl Kind {
    /// The kind a metric's name says it is (the names every probe and report use): percentiles
    /// (`p95`) and `*latency` in ms, `skew`, `oldest_wait`, `mirror_lag` in s, `cert_expiry` in
    /// days, `error_rate` and `memory_used` shares, anything else a count.
    pub fn of_metric(metric: &str) -> Kind {
        let percentile = metric.strip_prefix('p').is_some_and(|n| n.parse::<u8>().is_ok());
        if percentile || metric == "max" || metric.contains("latency") {
            Kind::Millis
        } else if matches!(metric, "skew" | "oldest_wait" | "mirror_lag") {
            Kind::Seconds
        } else if metric == "cert_expiry" {
            Kind::Days
        } else if matches!(metric, "error_rate" | "memory_used") {
            Kind::Share
        } else {
            Kind::Count
        }
    }
}

/// A limit as written: a non-negative finite number in the kind's unit. `subject` names what it
/// limits, for the error.
pub fn limit(text: &str, kind: Kind, subject: &str) -> Result<f64, String> {
    let t = text.trim();
    if let Some(p) = t.strip_suffix('%') {
        if kind != Kind::Share {
            return Err(format!("{t:?} is a percentage, but {subject} is not a share"));
        }
        return percent(p, t);
    }
    if let Ok(v) = t.parse::<f64>() {
        return match v {
            v if !v.is_finite() => Err(format!("{t:?}: the limit must be a finite number")),
            v if v < 0.0 => Err(format!("{t:?}: the limit must not be negative")),
            v if kind == Kind::Share && v > 1.0 => {
                Err(format!("{t:?} is not a share from 0 to 1 (write {v}% or {})", v / 100.0))
            }
            v => Ok(v),
        };
    }
    let d = crate::duration::parse_duration(t)?;
    match kind {
        Kind::Millis => Ok(d.as_secs_f64() * 1000.0),
        Kind::Seconds => Ok(d.as_secs_f64()),
        Kind::Days => Ok(d.as_secs_f64() / 86_400.0),
        _ => Err(format!("{t:?} is a duration, but {subject} is not (compare it with a number)")),
    }
}

fn percent(number: &str, written: &str) -> Result<f64, String> {
    match number.trim().parse::<f64>() {
        Ok(p) if (0.0..=100.0).contains(&p) => Ok(p / 100.0),
        _ => Err(format!("{written:?} is not a percentage from 0% to 100%")),
    }
}

/// A share on its own (`--max-regression 1%`, `--ai-error-rate 0.2`, `error_budget`): `N%` or
/// a fraction from 0 to 1.
pub fn share(text: &str) -> Result<f64, String> {
    limit(text, Kind::Share, "a share")
}

/// A probe state as written in a condition (`CRITICAL`, any case).
pub fn state(text: &str) -> Result<ProbeState, String> {
    match text.trim().to_ascii_uppercase().as_str() {
        "OK" => Ok(ProbeState::Ok),
        "WARNING" => Ok(ProbeState::Warning),
        "UNKNOWN" => Ok(ProbeState::Unknown),
        "CRITICAL" => Ok(ProbeState::Critical),
        other => Err(format!("{other:?} is not a state (OK, WARNING, UNKNOWN, CRITICAL)")),
    }
}

/// `left <op> right` as written, with where the right side starts: every parser of an
/// expression says what is wrong and at which column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expr<'a> {
    pub text: &'a str,
    pub left: &'a str,
    pub cmp: Cmp,
    pub right: &'a str,
}

impl<'a> Expr<'a> {
    /// Split at the first operator (longest first); `None` when there is none.
    pub fn parse(text: &'a str) -> Option<Expr<'a>> {
        let (left, cmp, right) = split(text)?;
        Some(Expr { text, left, cmp, right })
    }

    /// The limit on the right, or the error pointing at it.
    pub fn limit(&self, kind: Kind, subject: &str) -> Result<f64, String> {
        limit(self.right, kind, subject).map_err(|m| self.at(self.right, &m))
    }

    /// `message`, saying the column where `part` (a slice of the text) starts.
    pub fn at(&self, part: &str, message: &str) -> String {
        let offset = (part.as_ptr() as usize).saturating_sub(self.text.as_ptr() as usize).min(self.text.len());
        let column = self.text.get(..offset).map_or(1, |s| s.chars().count() + 1);
        format!("column {column}: {message}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_parser_of_limits_with_units_shares_and_states() {
        assert_eq!(limit("5s", Kind::Millis, "p95"), Ok(5000.0));
        assert_eq!(limit("2s", Kind::Seconds, "skew"), Ok(2.0));
        assert_eq!(limit("21d", Kind::Days, "cert_expiry"), Ok(21.0));
        assert_eq!(limit("21", Kind::Days, "cert_expiry"), Ok(21.0));
        assert_eq!(limit("1%", Kind::Share, "error_rate"), Ok(0.01));
        assert_eq!(limit("0.9", Kind::Share, "memory_used"), Ok(0.9));
        assert!(limit("2", Kind::Share, "x").unwrap_err().contains("write 2% or 0.02"));
        assert!(limit("5%", Kind::Millis, "p95").unwrap_err().contains("is a percentage, but p95 is not a share"));
        assert!(limit("5s", Kind::Count, "waiting").unwrap_err().contains("is a duration, but waiting is not"));
        assert!(limit("-1", Kind::Count, "x").unwrap_err().contains("negative"));
        assert!(limit("NaN", Kind::Count, "x").unwrap_err().contains("finite"));
        for bad in ["200%", "-1%", "NaN%", "inf%", "1e400%"] {
            assert!(share(bad).unwrap_err().contains("from 0% to 100%"), "{bad}");
        }
        assert_eq!(state("critical"), Ok(ProbeState::Critical));
        assert!(state("BROKEN").is_err());
        assert_eq!(Kind::of_metric("p99"), Kind::Millis);
        assert_eq!(Kind::of_metric("deliver_latency"), Kind::Millis);
        assert_eq!(Kind::of_metric("oldest_wait"), Kind::Seconds);
        assert_eq!(Kind::of_metric("waiting"), Kind::Count);
    }

    #[test]
    fn errors_say_the_column_of_the_mistake() {
        let e = Expr::parse("p95 < 5x").unwrap();
        assert!(
            e.limit(Kind::Millis, "p95").unwrap_err().starts_with("column 7: "),
            "{:?}",
            e.limit(Kind::Millis, "p95")
        );
        let e = Expr::parse("latency>300ms").unwrap();
        assert_eq!(e.limit(Kind::Millis, "latency"), Ok(300.0));
    }

    #[test]
    fn operators_split_longest_first_and_hold_as_written() {
        assert_eq!(split("p95 <= 5s"), Some(("p95", Cmp::Le, "5s")));
        assert_eq!(split("latency>=300ms"), Some(("latency", Cmp::Ge, "300ms")));
        assert_eq!(split("violations==0"), Some(("violations", Cmp::Eq, "0")));
        assert_eq!(split("no operator"), None);
        assert!(Cmp::Lt.holds(1.0, 2.0) && !Cmp::Lt.holds(2.0, 2.0) && Cmp::Le.holds(2.0, 2.0));
        assert!(Cmp::Eq.holds(0.0, 0.0) && Cmp::Gt.holds(3.0, 2.0) && Cmp::Ge.holds(2.0, 2.0));
        assert_eq!(Cmp::Ge.as_str(), ">=");
    }
}
