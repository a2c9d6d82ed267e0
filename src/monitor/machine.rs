//! A rule's for/recover state machine: consecutive failing sweeps before it fires, passing ones
//! before it resolves; an UNKNOWN sweep counts neither way.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::rules::{Eval, Rule};

/// A rule's memory between sweeps (kept with the alert state).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleState {
    /// Consecutive failing sweeps (0 after a passing one).
    pub failing: u32,
    /// Consecutive passing sweeps (0 after a failing one).
    pub passing: u32,
    pub firing: bool,
    /// When the current run of failing sweeps began (kept while the rule fires, cleared when
    /// it resolves): a notice says since when.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<DateTime<Utc>>,
}

/// What a sweep did to a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transition {
    Unchanged,
    Fired,
    Resolved,
}

impl RuleState {
    /// Counts the sweep's verdict: fires after `for` failing sweeps in a row, resolves after
    /// `recover` passing ones; an UNKNOWN sweep counts neither way and breaks neither run.
    pub fn step(&mut self, rule: &Rule, verdict: Eval, now: DateTime<Utc>) -> Transition {
        match verdict {
            Eval::Unknown => Transition::Unchanged,
            Eval::Failing => {
                (self.failing, self.passing) = (self.failing.saturating_add(1), 0);
                self.since.get_or_insert(now);
                if !self.firing && self.failing >= rule.for_sweeps {
                    self.firing = true;
                    return Transition::Fired;
                }
                Transition::Unchanged
            }
            Eval::Passing => {
                (self.passing, self.failing) = (self.passing.saturating_add(1), 0);
                if !self.firing {
                    self.since = None;
                }
                if self.firing && self.passing >= rule.recover_sweeps {
                    (self.firing, self.since) = (false, None);
                    return Transition::Resolved;
                }
                Transition::Unchanged
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::rules::RuleSet;

    #[test]
    fn a_rule_fires_after_for_sweeps_and_resolves_after_recover() {
        let mut rule = RuleSet::parse(
            "[[rules]]\nname = \"r\"\ncheck = \"ably_backlog.waiting\"\ncondition = \"value > 500\"\nseverity = \"warning\"\nfor = 2\nrecover = 2\n",
            "t",
        )
        .unwrap()
        .rules
        .remove(0);
        let mut s = RuleState::default();
        use Eval::*;
        let seen: Vec<Transition> =
            [Failing, Unknown, Passing, Failing, Failing, Failing, Passing, Unknown, Passing, Passing]
                .into_iter()
                .map(|e| s.step(&rule, e, Utc::now()))
                .collect();
        use Transition::*;
        assert_eq!(
            seen,
            [Unchanged, Unchanged, Unchanged, Unchanged, Fired, Unchanged, Unchanged, Unchanged, Resolved, Unchanged]
        );
        rule.for_sweeps = 1;
        let mut once = RuleState::default();
        let t0 = Utc::now();
        assert_eq!(once.step(&rule, Failing, t0), Fired);
        assert_eq!(once.step(&rule, Failing, t0 + chrono::Duration::minutes(1)), Unchanged);
        assert_eq!(once.since, Some(t0), "since is when the failing began");
        assert_eq!(once.step(&rule, Unknown, t0), Unchanged);
        assert_eq!(once.since, Some(t0));
    }
}
