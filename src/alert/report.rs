//! What an `alert` run did, in every output format.

use std::io::{self, Write};

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Value, json};

use super::Kind;
use super::email::Mail;
use super::model::Severity;
use super::state::{Channel, OutboxEntry};
use crate::output::{Render, Style, escape, escape_lines};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// The channel accepted it.
    Delivered,
    /// Not delivered now; kept in the outbox for the next run.
    Queued,
    /// The channel refused it for good (Slack 4xx, SMTP 5xx); retrying cannot help.
    Rejected,
    /// Not delivered and not kept (`alert test` keeps nothing).
    Failed,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Delivered => "delivered",
            Outcome::Queued => "queued",
            Outcome::Rejected => "rejected",
            Outcome::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct DeliveryResult {
    pub channel: Channel,
    pub address: String,
    pub kind: Kind,
    pub dedup_key: String,
    pub outcome: Outcome,
    pub attempts: u32,
    /// The error, or why it was queued; empty when delivered.
    pub detail: String,
    /// Delivered (or tried) from the outbox rather than raised in this run.
    pub from_outbox: bool,
}

/// What `--dry-run` would have sent.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Preview {
    pub slack: Option<Value>,
    pub email: Option<Mail>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AlertReport {
    pub command: &'static str,
    pub dry_run: bool,
    pub decision: Option<super::Decision>,
    pub dedup_key: Option<String>,
    pub incident_id: Option<String>,
    pub severity: Option<Severity>,
    pub next_reminder_at: Option<DateTime<Utc>>,
    pub deliveries: Vec<DeliveryResult>,
    pub outbox: Vec<OutboxEntry>,
    pub state: String,
    pub warnings: Vec<String>,
    pub preview: Option<Preview>,
}

impl AlertReport {
    pub fn new(command: &'static str, state: String) -> AlertReport {
        AlertReport {
            command,
            dry_run: false,
            decision: None,
            dedup_key: None,
            incident_id: None,
            severity: None,
            next_reminder_at: None,
            deliveries: Vec::new(),
            outbox: Vec::new(),
            state,
            warnings: Vec::new(),
            preview: None,
        }
    }

    /// Something was not delivered in this run (queued, rejected or failed).
    pub fn undelivered(&self) -> bool {
        self.deliveries.iter().any(|d| d.outcome != Outcome::Delivered)
    }
}

impl Render for AlertReport {
    fn table(&self, w: &mut dyn Write, style: Style) -> io::Result<()> {
        if let Some(d) = &self.decision {
            let what = match d {
                super::Decision::Quiet { next_reminder_at } => format!(
                    "quiet: already notified; next reminder after {}",
                    next_reminder_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                ),
                super::Decision::NothingOpen => "nothing open for this key: nothing sent".to_string(),
                d => d.as_str().to_string(),
            };
            let dry = if self.dry_run { " (dry run: nothing sent, state unchanged)" } else { "" };
            writeln!(w, "decision  {what}{dry}")?;
        }
        if let (Some(k), Some(s)) = (&self.dedup_key, self.severity) {
            let inc = self.incident_id.as_deref().map(|i| format!(", incident {i}")).unwrap_or_default();
            writeln!(w, "alert     {} {}{}", s.upper(), escape(k), escape(&inc))?;
        }
        for d in &self.deliveries {
            let outcome = match d.outcome {
                Outcome::Delivered => style.good(d.outcome.as_str()),
                _ => style.bad(d.outcome.as_str()),
            };
            let origin = if d.from_outbox { " (from outbox)" } else { "" };
            writeln!(
                w,
                "{:<9} {outcome} {} {} {}{origin}, {} attempt(s){}",
                d.channel,
                d.kind.as_str(),
                escape(&d.dedup_key),
                escape(&d.address),
                d.attempts,
                if d.detail.is_empty() { String::new() } else { format!(": {}", escape(&d.detail)) }
            )?;
        }
        if let Some(p) = &self.preview {
            if let Some(s) = &p.slack {
                writeln!(w, "--- slack payload ---")?;
                writeln!(w, "{}", serde_json::to_string_pretty(s).unwrap_or_default())?;
            }
            if let Some(m) = &p.email {
                writeln!(w, "--- email ---")?;
                writeln!(
                    w,
                    "From: {}\nTo: {}\nSubject: {}\nMessage-ID: {}",
                    escape(&m.from),
                    escape(&m.to.join(", ")),
                    escape(&m.subject),
                    escape(&m.message_id)
                )?;
                if let Some(r) = &m.in_reply_to {
                    let r = escape(r);
                    writeln!(w, "In-Reply-To: {r}\nReferences: {r}")?;
                }
                let (text, html) = (escape_lines(&m.text), escape_lines(&m.html));
                writeln!(w, "\n--- text/plain ---\n{text}\n--- text/html ---\n{html}")?;
            }
        }
        if self.command == "outbox" {
            for e in &self.outbox {
                writeln!(
                    w,
                    "{}  {:<5} {:<9} {}  queued {}  last error: {}",
                    e.id,
                    e.delivery.channel(),
                    e.kind.as_str(),
                    escape(&e.dedup_key),
                    e.queued_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    escape(&e.last_error)
                )?;
            }
        }
        writeln!(w, "outbox    {} waiting", self.outbox.len())?;
        writeln!(w, "state     {}", escape(&self.state))?;
        for warning in &self.warnings {
            writeln!(w, "{} {}", style.bad("warning  "), escape(warning))?;
        }
        Ok(())
    }

    fn json(&self) -> Value {
        let mut doc = json!({"schema_version": 1, "kind": "alert"});
        // The report is plain data with string keys: it always serialises.
        let body = serde_json::to_value(self).expect("report serialises");
        if let (Some(d), Some(b)) = (doc.as_object_mut(), body.as_object()) {
            d.extend(b.clone());
        }
        doc
    }
}
