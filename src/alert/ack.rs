//! `alert ack`: an open incident stops reminding. The acknowledgement is said where the incident
//! is followed (a reply in its Slack thread, a mail in its thread), kept in the history, and
//! undone by what needs a new look: an escalation or a new member. The resolved notice still comes.

use std::collections::HashSet;

use chrono::Utc;

use super::run::deliver_notice;
use super::silence::{self, SilenceError};
use super::state::{Ack, Incident, Store};
use super::{Alert, AlertReport, AlertSource, Kind, Notice, Options};
use crate::actor::Actor;

/// The incident named by its dedup key or its short id (at least 6 characters of the id).
pub fn find<'a>(open: &'a [Incident], which: &str) -> Result<&'a Incident, SilenceError> {
    let by_id = |i: &&Incident| which.len() >= 6 && i.incident_id.starts_with(which);
    if let Some(i) = open.iter().find(|i| i.dedup_key == which).or_else(|| open.iter().find(by_id)) {
        return Ok(i);
    }
    let names: Vec<String> = open.iter().map(|i| format!("{} ({})", i.dedup_key, i.short_id())).collect();
    Err(SilenceError::Refused(format!(
        "no open incident {which:?} (open: {})",
        if names.is_empty() { "none".to_string() } else { names.join(", ") }
    )))
}

/// Acknowledges the open incident `which` (dedup key or short id) for `actor`.
pub async fn acknowledge(
    store: &mut Store,
    which: &str,
    reason: &str,
    actor: &Actor,
    opts: &Options,
) -> Result<AlertReport, SilenceError> {
    silence::under_lock(store, async |store: &mut Store| locked(store, which, reason, actor, opts).await).await
}

async fn locked(
    store: &mut Store,
    which: &str,
    reason: &str,
    actor: &Actor,
    opts: &Options,
) -> Result<AlertReport, SilenceError> {
    let open = store.incidents().await?;
    let mut incident = find(&open, which)?.clone();
    if let Some(a) = &incident.ack {
        return Err(SilenceError::Refused(format!(
            "incident {} ({}) was already acknowledged by {} at {} UTC",
            incident.dedup_key,
            incident.short_id(),
            a.by,
            a.at.format("%Y-%m-%d %H:%M")
        )));
    }
    let now = Utc::now();
    incident.ack = Some(Ack { by: actor.who.clone(), at: now, reason: reason.to_string() });
    let target = format!("{} ({})", incident.dedup_key, incident.short_id());
    silence::record(store, actor, "ack", target, reason).await?;
    let mut alert = Alert::new(
        incident.severity,
        incident.summary.clone(),
        AlertSource::this_host(actor.command.clone()),
        Some(incident.dedup_key.clone()),
    );
    let why = if reason.trim().is_empty() { String::new() } else { format!(": {reason}") };
    alert.details = format!("Acknowledged by {}{why}. No reminders until it escalates, grows or resolves.", actor.who);
    alert.members = incident.members.clone();
    let notice = Notice {
        alert,
        kind: Kind::Acknowledged,
        incident_id: incident.incident_id.clone(),
        opened_at: incident.opened_at,
        at: now,
        test: false,
    };
    let n = incident.notices + 1;
    incident.notices = n;
    let thread = incident.slack_ts.clone();
    let mut report = AlertReport::new("ack", store.describe());
    report.dedup_key = Some(incident.dedup_key.clone());
    report.incident_id = Some(incident.incident_id.clone());
    report.severity = Some(incident.severity);
    deliver_notice(store, &notice, (n, thread), Some(incident), (opts, &HashSet::new()), &mut report).await?;
    report.outbox = store.outbox().await?;
    Ok(report)
}
