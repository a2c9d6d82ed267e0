//! The one comparison every limit is written with: smoke thresholds (`p95<5s`), probe rules
//! (`latency>300ms`), monitor conditions (`value > 5s`, `state == UNKNOWN`). One set of operators,
//! one way to split an expression around them, one evaluation.

use serde::Serialize;

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

#[cfg(test)]
mod tests {
    use super::*;

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
