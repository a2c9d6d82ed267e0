//! What a run does with an alert, given the incident open for its dedup key (if any).

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::model::{Alert, Severity};
use super::state::Incident;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Nothing open: a new incident, notified.
    Open,
    /// Open and last notified longer ago than the repeat interval: a reminder.
    Remind,
    /// Open at a lower severity: notified again at once, whatever the interval.
    Escalate,
    /// Open, and the alert groups a member not notified yet: notified again at once.
    Update,
    /// `resolved` for an open incident: one resolved notice, and the incident closes.
    Resolve,
    /// Open and notified recently: nothing is sent.
    Quiet { next_reminder_at: DateTime<Utc> },
    /// Open and acknowledged: no reminder (an escalation or a new member still notifies).
    Acknowledged,
    /// A silence covers it: nothing is sent while it lasts.
    Silenced { until: DateTime<Utc> },
    /// `resolved` with nothing open: nothing is sent.
    NothingOpen,
}

/// Serialised as its name (`"open"`, `"quiet"`, ...): the JSON report's `decision`.
impl serde::Serialize for Decision {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl Decision {
    pub fn as_str(&self) -> &'static str {
        match self {
            Decision::Open => "open",
            Decision::Remind => "remind",
            Decision::Escalate => "escalate",
            Decision::Update => "update",
            Decision::Resolve => "resolve",
            Decision::Quiet { .. } => "quiet",
            Decision::Acknowledged => "acknowledged",
            Decision::Silenced { .. } => "silenced",
            Decision::NothingOpen => "nothing-open",
        }
    }
}

pub fn decide(open: Option<&Incident>, alert: &Alert, now: DateTime<Utc>, repeat: Duration) -> Decision {
    let repeat = chrono::Duration::from_std(repeat).unwrap_or(chrono::Duration::MAX);
    match (alert.severity, open) {
        (Severity::Resolved, None) => Decision::NothingOpen,
        (Severity::Resolved, Some(_)) => Decision::Resolve,
        (_, None) => Decision::Open,
        (severity, Some(i)) if severity > i.severity => Decision::Escalate,
        (_, Some(i)) if alert.members.iter().any(|m| !i.members.contains(m)) => Decision::Update,
        (_, Some(i)) if i.ack.is_some() => Decision::Acknowledged,
        (_, Some(i)) => {
            let next = i.last_sent_at.checked_add_signed(repeat).unwrap_or(DateTime::<Utc>::MAX_UTC);
            if now >= next { Decision::Remind } else { Decision::Quiet { next_reminder_at: next } }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::model::AlertSource;

    fn alert(s: Severity) -> Alert {
        Alert::new(s, "Ably down", AlertSource { host: "h".into(), command: "c".into() }, Some("k".into()))
    }

    fn incident(s: Severity, sent_ago_min: i64, now: DateTime<Utc>) -> Incident {
        Incident {
            dedup_key: "k".into(),
            incident_id: "i".into(),
            severity: s,
            summary: "Ably down".into(),
            opened_at: now - chrono::Duration::hours(10),
            last_sent_at: now - chrono::Duration::minutes(sent_ago_min),
            notices: 1,
            slack_ts: None,
            results: Default::default(),
            members: vec!["a".into()],
            ack: None,
        }
    }

    #[test]
    fn an_acknowledged_incident_is_quiet_until_it_escalates_grows_or_resolves() {
        let now = Utc::now();
        let one_ms = Duration::from_millis(1);
        let w = Severity::Warning;
        let mut acked = incident(w, 240, now);
        acked.ack = Some(crate::alert::state::Ack { by: "alice".into(), at: now, reason: String::new() });
        assert_eq!(decide(Some(&acked), &alert(w), now, one_ms), Decision::Acknowledged, "no reminder");
        assert_eq!(decide(Some(&acked), &alert(Severity::Critical), now, one_ms), Decision::Escalate);
        let mut grown = alert(w);
        grown.members = vec!["a".into(), "b".into()];
        assert_eq!(decide(Some(&acked), &grown, now, one_ms), Decision::Update, "a new member notifies");
        assert_eq!(decide(Some(&acked), &alert(Severity::Resolved), now, one_ms), Decision::Resolve);
    }

    #[test]
    fn the_state_machine() {
        let now = Utc::now();
        let four_h = Duration::from_secs(4 * 3600);
        let w = Severity::Warning;
        assert_eq!(decide(None, &alert(w), now, four_h), Decision::Open);
        assert_eq!(decide(None, &alert(Severity::Resolved), now, four_h), Decision::NothingOpen);
        let recent = incident(w, 10, now);
        assert_eq!(
            decide(Some(&recent), &alert(w), now, four_h),
            Decision::Quiet { next_reminder_at: recent.last_sent_at + chrono::Duration::hours(4) }
        );
        assert_eq!(decide(Some(&recent), &alert(Severity::Info), now, four_h).as_str(), "quiet");
        assert_eq!(decide(Some(&incident(w, 240, now)), &alert(w), now, four_h), Decision::Remind);
        assert_eq!(decide(Some(&recent), &alert(Severity::Critical), now, four_h), Decision::Escalate);
        assert_eq!(decide(Some(&recent), &alert(Severity::Resolved), now, four_h), Decision::Resolve);
        assert_eq!(decide(Some(&recent), &alert(w), now, Duration::MAX).as_str(), "quiet");
        let mut grown = alert(w);
        grown.members = vec!["a".into(), "b".into()];
        assert_eq!(decide(Some(&recent), &grown, now, four_h), Decision::Update);
        grown.members = vec!["a".into()];
        assert_eq!(decide(Some(&recent), &grown, now, four_h).as_str(), "quiet", "a member already told of");
    }
}
