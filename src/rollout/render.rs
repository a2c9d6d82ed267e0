//! What the rollout commands show: tables for people, JSON with stable shapes for scripts.

use std::io::{self, Write};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::store::AuditRow;
use super::{Action, Decision, Flag, Reason};
use crate::output::{Render, Style, escape, table};

pub struct StatusReport {
    pub flag: Flag,
    pub kill_switch: bool,
    /// When the current step (percentage, on/off) began, from the audit.
    pub step_since: Option<DateTime<Utc>>,
    pub active_window: Duration,
    /// Customer conversations with an event in the window, and how many of them are on.
    pub active: usize,
    pub on: usize,
    /// Overrides in force.
    pub overrides: usize,
    pub recent: Vec<AuditRow>,
}

fn state_text(f: &Flag) -> String {
    if f.enabled { format!("on at {} %", f.percent) } else { format!("off (last percentage {} %)", f.percent) }
}

impl Render for StatusReport {
    fn table(&self, w: &mut dyn Write, style: Style) -> io::Result<()> {
        let f = &self.flag;
        let state = if f.enabled && !self.kill_switch { style.good(&state_text(f)) } else { style.bad(&state_text(f)) };
        writeln!(w, "{}: {state} (version {})", escape(&f.name), f.version)?;
        if self.kill_switch {
            writeln!(w, "kill switch: ENABLE_ABLY_REALTIME=false in the environment: every conversation polls")?;
        }
        let since = self.step_since.map_or("-".into(), |t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
        writeln!(w, "since {since}, by {}: {}", escape(&f.updated_by), escape(&f.reason))?;
        let window = crate::duration::format_duration(self.active_window);
        writeln!(
            w,
            "active in the last {window}: {} conversations, {} on real-time, {} polling; {} overrides in force",
            self.active,
            self.on,
            self.active - self.on,
            self.overrides
        )?;
        if !self.recent.is_empty() {
            writeln!(w)?;
            HistoryReport { flag: f.name.clone(), rows: self.recent.clone() }.table(w, style)?;
        }
        Ok(())
    }

    fn json(&self) -> Value {
        let f = &self.flag;
        json!({"schema_version": 1, "kind": "rollout_status", "flag": f.name, "enabled": f.enabled,
               "percent": f.percent, "version": f.version, "updated_at": f.updated_at, "updated_by": f.updated_by,
               "reason": f.reason, "kill_switch": self.kill_switch, "step_since": self.step_since,
               "active_window_s": self.active_window.as_secs(), "active": self.active, "on": self.on,
               "off": self.active - self.on, "overrides": self.overrides, "recent": self.recent})
    }
}

pub struct WhichReport {
    pub flag: String,
    pub decisions: Vec<Decision>,
}

/// Why, in words.
pub fn why(d: &Decision) -> String {
    match d.reason {
        Reason::KillSwitch => "kill switch: ENABLE_ABLY_REALTIME=false in the environment".into(),
        Reason::FlagOff => "the flag is off".into(),
        Reason::Override => match d.override_expires {
            Some(t) => format!("override until {}", t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
            None => "override".into(),
        },
        Reason::Bucket if d.enabled => format!("bucket {} <= {} %", d.bucket, d.percent),
        Reason::Bucket => format!("bucket {} > {} %", d.bucket, d.percent),
    }
}

impl Render for WhichReport {
    /// Written row by row (a list can be a million long), in the house table style.
    fn table(&self, w: &mut dyn Write, style: Style) -> io::Result<()> {
        let shown: Vec<String> = self.decisions.iter().map(|d| escape(&d.conversation)).collect();
        let width = shown.iter().map(|s| s.chars().count()).max().unwrap_or(0).max("conversation".len());
        writeln!(w, " {:<width$}   real-time   why", "conversation")?;
        writeln!(w, "{}", "─".repeat(width + 30))?;
        for (d, c) in self.decisions.iter().zip(&shown) {
            let on = if d.enabled { style.good("on ") } else { style.bad("off") };
            writeln!(w, " {c:<width$}   {on}         {}", why(d))?;
        }
        Ok(())
    }

    fn json(&self) -> Value {
        json!(self.decisions)
    }

    fn ndjson(&self) -> Vec<Value> {
        self.decisions.iter().map(|d| json!(d)).collect()
    }

    fn write_json(&self, w: &mut dyn Write) -> io::Result<()> {
        serde_json::to_writer_pretty(&mut *w, &self.decisions).map_err(io::Error::from)
    }

    fn write_ndjson(&self, w: &mut dyn Write) -> io::Result<()> {
        for d in &self.decisions {
            serde_json::to_writer(&mut *w, d).map_err(io::Error::from)?;
            w.write_all(b"\n")?;
        }
        Ok(())
    }
}

pub struct ChangeReport {
    pub action: Action,
    pub before: Flag,
    pub after: Flag,
}

impl Render for ChangeReport {
    fn table(&self, w: &mut dyn Write, _style: Style) -> io::Result<()> {
        writeln!(
            w,
            "{} {}: {} -> {} (version {} -> {}), by {}",
            self.action.as_str(),
            escape(&self.after.name),
            state_text(&self.before),
            state_text(&self.after),
            self.before.version,
            self.after.version,
            escape(&self.after.updated_by)
        )
    }

    fn json(&self) -> Value {
        let a = &self.after;
        json!({"schema_version": 1, "kind": "rollout_change", "action": self.action, "flag": a.name,
               "enabled": a.enabled, "percent": a.percent, "version": a.version, "updated_at": a.updated_at,
               "updated_by": a.updated_by, "reason": a.reason, "before": self.before.state()})
    }
}

pub struct HistoryReport {
    pub flag: String,
    pub rows: Vec<AuditRow>,
}

fn brief(v: &Option<Value>) -> String {
    match v {
        None => "-".into(),
        Some(v) => match (v.get("enabled"), v.get("percent")) {
            (Some(e), Some(p)) => format!("{} {p} %", if e.as_bool() == Some(true) { "on" } else { "off" }),
            _ => escape(&v.to_string()),
        },
    }
}

impl Render for HistoryReport {
    fn table(&self, w: &mut dyn Write, _style: Style) -> io::Result<()> {
        let mut t = table(&["at", "who", "action", "from", "to", "reason"]);
        for r in &self.rows {
            t.add_row(vec![
                r.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                escape(&r.actor),
                r.action.clone(),
                brief(&r.before),
                brief(&r.after),
                escape(&r.reason),
            ]);
        }
        writeln!(w, "{t}")
    }

    fn json(&self) -> Value {
        json!({"schema_version": 1, "kind": "rollout_history", "flag": self.flag, "changes": self.rows})
    }

    fn ndjson(&self) -> Vec<Value> {
        self.rows.iter().map(|r| json!(r)).collect()
    }
}
