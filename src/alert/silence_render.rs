//! How silences and the history read in every format.

use std::io::{self, Write};

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::silence::{HistoryEntry, Silence};
use crate::output::{Render, Style, escape, table};

/// `alert silences`: active and recently ended, with who, why and when.
pub struct SilenceList {
    pub silences: Vec<Silence>,
    pub now: DateTime<Utc>,
}

fn at(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

fn state(s: &Silence, now: DateTime<Utc>) -> &'static str {
    match (s.is_active(now), &s.ended) {
        (true, _) => "active",
        (false, Some(_)) => "ended early",
        (false, None) => "expired",
    }
}

fn silence_json(s: &Silence, now: DateTime<Utc>) -> Value {
    let matchers: Vec<String> = s.matchers.iter().map(ToString::to_string).collect();
    json!({"id": s.id, "state": state(s, now), "matchers": matchers, "starts_at": s.starts_at,
           "ends_at": s.ends_at, "until": s.until(), "by": s.by, "reason": s.reason,
           "ended_by": s.ended.as_ref().map(|(_, by)| by)})
}

impl Render for SilenceList {
    fn table(&self, w: &mut dyn Write, _: Style) -> io::Result<()> {
        if self.silences.is_empty() {
            return writeln!(w, "no silences (active, or ended in the last 24 h)");
        }
        let mut t = table(&["id", "state", "matchers", "until", "by", "reason"]);
        for s in &self.silences {
            let m: Vec<String> = s.matchers.iter().map(ToString::to_string).collect();
            t.add_row(vec![
                s.id.clone(),
                state(s, self.now).to_string(),
                escape(&m.join(" ")),
                at(s.until()),
                escape(&s.by),
                escape(&s.reason),
            ]);
        }
        writeln!(w, "{t}")
    }

    fn json(&self) -> Value {
        let list: Vec<Value> = self.silences.iter().map(|s| silence_json(s, self.now)).collect();
        json!({"schema_version": 1, "silences": list})
    }

    fn ndjson(&self) -> Vec<Value> {
        self.silences.iter().map(|s| silence_json(s, self.now)).collect()
    }
}

/// A silence made or ended.
pub struct SilenceChanged {
    pub silence: Silence,
    pub action: &'static str,
}

impl Render for SilenceChanged {
    fn table(&self, w: &mut dyn Write, _: Style) -> io::Result<()> {
        let s = &self.silence;
        writeln!(w, "{} {}: {} (by {}: {})", self.action, s.id, escape(&s.describe()), escape(&s.by), escape(&s.reason))
    }

    fn json(&self) -> Value {
        json!({"schema_version": 1, "action": self.action, "silence": silence_json(&self.silence, Utc::now())})
    }
}

/// `alert history`: every ack and silence, newest first.
pub struct History(pub Vec<HistoryEntry>);

impl Render for History {
    fn table(&self, w: &mut dyn Write, _: Style) -> io::Result<()> {
        if self.0.is_empty() {
            return writeln!(w, "no acknowledgement or silence yet");
        }
        let mut t = table(&["at", "by", "action", "target", "reason"]);
        for h in &self.0 {
            t.add_row(vec![at(h.at), escape(&h.by), h.action.clone(), escape(&h.target), escape(&h.reason)]);
        }
        writeln!(w, "{t}")
    }

    fn json(&self) -> Value {
        json!({"schema_version": 1, "history": self.0})
    }

    fn ndjson(&self) -> Vec<Value> {
        self.0.iter().map(|h| json!(h)).collect()
    }
}
