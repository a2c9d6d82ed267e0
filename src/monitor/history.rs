//! The monitor's memory of its recent sweeps, kept beside the rule states (`monitor:history`):
//! each check's state and since when, and the last 30 sweeps' states, for the status page.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::sweep::ProbeOutcome;
use crate::exit::ProbeState;

pub const HISTORY_DOC: &str = "monitor:history";
/// Sweeps kept for the page's strips.
const KEEP: usize = 30;
/// Without two sweeps to measure the gap by, cron's usual minute.
const DEFAULT_GAP: Duration = Duration::from_secs(60);

/// Each check's state since when, and the last sweeps.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct History {
    #[serde(default)]
    pub since: BTreeMap<String, Since>,
    #[serde(default)]
    pub sweeps: Vec<Point>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Since {
    pub state: ProbeState,
    pub at: DateTime<Utc>,
}

/// One sweep: when, its state, and each check's state.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Point {
    pub at: DateTime<Utc>,
    pub state: ProbeState,
    pub checks: BTreeMap<String, ProbeState>,
}

/// A check's key: `probe.check`, with its target when the probe measures several.
pub fn key(probe: &str, check: &str, target: Option<&str>) -> String {
    match target {
        Some(t) => format!("{probe}.{check}[{t}]"),
        None => format!("{probe}.{check}"),
    }
}

impl History {
    /// Adds a sweep: its probes, its state, when it started.
    pub fn record(&mut self, probes: &[ProbeOutcome], state: ProbeState, at: DateTime<Utc>) {
        let mut checks = BTreeMap::new();
        for p in probes.iter().filter(|p| p.counts()) {
            for l in p.lines() {
                checks.insert(key(p.probe.name(), l.check, l.target), l.state);
            }
        }
        self.since = checks
            .iter()
            .map(|(k, s)| {
                let at = match self.since.get(k) {
                    Some(old) if old.state == *s => old.at,
                    _ => at,
                };
                (k.clone(), Since { state: *s, at })
            })
            .collect();
        self.sweeps.push(Point { at, state, checks });
        let extra = self.sweeps.len().saturating_sub(KEEP);
        self.sweeps.drain(..extra);
    }

    /// The usual time between sweeps: the median gap of those kept.
    pub fn usual_gap(&self) -> Duration {
        let mut gaps: Vec<Duration> =
            self.sweeps.windows(2).filter_map(|w| (w[1].at - w[0].at).to_std().ok()).collect();
        gaps.sort();
        gaps.get(gaps.len() / 2).copied().filter(|g| !g.is_zero()).unwrap_or(DEFAULT_GAP)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(at_s: i64) -> Point {
        Point { at: DateTime::from_timestamp(at_s, 0).unwrap(), state: ProbeState::Ok, checks: BTreeMap::new() }
    }

    #[test]
    fn the_usual_gap_is_the_median_and_the_history_is_bounded() {
        let mut h = History::default();
        assert_eq!(h.usual_gap(), DEFAULT_GAP);
        h.sweeps = vec![point(0), point(60), point(120), point(900), point(960)];
        assert_eq!(h.usual_gap(), Duration::from_secs(60), "one late sweep does not move it");
        for i in 0..100 {
            h.record(&[], ProbeState::Ok, DateTime::from_timestamp(10_000 + i * 3600, 0).unwrap());
        }
        assert_eq!(h.sweeps.len(), KEEP);
        assert_eq!(h.usual_gap(), Duration::from_secs(3600));
    }
}
