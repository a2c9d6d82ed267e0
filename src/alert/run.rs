//! The four runs: send, test, flush and list the outbox; and the dry run of send.

use std::collections::HashSet;

use chrono::Utc;

use super::decide::Decision;
use super::deliver::{address_of, attempt, line, queued_or_rejected, render_all};
use super::report::{AlertReport, DeliveryResult, Outcome, Preview};
use super::state::{Channel, Delivery, Incident, OutboxEntry, StateError, Store};
use super::{Alert, AlertError, DeliveryError, Kind, Notice, Options, decide, silence};

/// Sends `alert` as its incident's state says: once when it opens, a reminder after the repeat
/// interval, at once when it escalates, one resolved notice when it closes. What cannot be
/// delivered is queued in the outbox, which is flushed (in order) before anything new is sent.
/// When another run holds the state's lock for longer than the lock wait, the alert itself is
/// queued (reported as such, exit 1): the next run decides and delivers it.
pub async fn send(store: &mut Store, alert: Alert, opts: &Options) -> Result<AlertReport, AlertError> {
    let mut reports = send_all(store, vec![alert], opts).await?;
    // One alert in, one report out.
    Ok(reports.pop().expect("a report per alert"))
}

/// Several alerts in one run (the monitor's one per severity): one lock and one flush of the
/// outbox for all, then each decided and delivered in turn, a report each (the flush's
/// deliveries in the first).
pub async fn send_all(store: &mut Store, alerts: Vec<Alert>, opts: &Options) -> Result<Vec<AlertReport>, AlertError> {
    if opts.channels.is_empty() {
        return Err(AlertError::NoChannel);
    }
    match store.lock().await {
        Ok(()) => {}
        Err(StateError::Locked { place, .. }) => {
            let mut reports = Vec::with_capacity(alerts.len());
            for alert in alerts {
                reports.push(queue_unlocked(store, alert, opts, place.clone()).await?);
            }
            return Ok(reports);
        }
        Err(e) => return Err(e.into()),
    }
    let result = send_locked(store, alerts, opts).await;
    let unlocked = store.unlock().await;
    let reports = result?;
    unlocked?;
    Ok(reports)
}

/// The lock is held elsewhere: the alert goes to the outbox as it is (an append needs no lock).
async fn queue_unlocked(
    store: &mut Store,
    alert: Alert,
    opts: &Options,
    place: String,
) -> Result<AlertReport, AlertError> {
    let mut report = AlertReport::new("send", store.describe());
    report.dedup_key = Some(alert.dedup_key.clone());
    report.severity = Some(alert.severity);
    let why = format!("another run held the alert state's lock at {place}; the next run delivers it");
    let key = alert.dedup_key.clone();
    let delivery = Delivery::Alert { alert: Box::new(alert), repeat_interval_secs: opts.repeat_interval.as_secs() };
    let entry = OutboxEntry::new(&key, "pending", Kind::Opened, delivery, why.clone());
    store.enqueue(&entry).await?;
    report.deliveries.push(DeliveryResult {
        channel: Channel::Alert,
        address: String::new(),
        kind: Kind::Opened,
        dedup_key: key,
        outcome: Outcome::Queued,
        attempts: 0,
        detail: why,
        from_outbox: false,
    });
    report.outbox = store.outbox().await?;
    Ok(report)
}

async fn send_locked(store: &mut Store, alerts: Vec<Alert>, opts: &Options) -> Result<Vec<AlertReport>, AlertError> {
    let mut first = AlertReport::new("send", store.describe());
    let blocked = flush_locked(store, opts, &mut first).await?;
    let mut first = Some(first);
    let mut reports = Vec::with_capacity(alerts.len());
    for alert in alerts {
        let mut report = first.take().unwrap_or_else(|| AlertReport::new("send", store.describe()));
        process(store, alert, opts.repeat_interval, opts, &blocked, &mut report).await?;
        reports.push(report);
    }
    let outbox = store.outbox().await?;
    for report in &mut reports {
        report.outbox = outbox.clone();
    }
    Ok(reports)
}

/// Decides one alert and delivers its notice. Write-ahead: the notice goes to the outbox and the
/// incident is recorded before any channel is tried; each channel's entry leaves the outbox as
/// soon as that channel accepted it. A run that dies part-way (`kill -9`, a stall) leaves what
/// was not delivered in the outbox for the next run, and never sends what was.
async fn process(
    store: &mut Store,
    alert: Alert,
    repeat_interval: std::time::Duration,
    opts: &Options,
    blocked: &HashSet<Channel>,
    report: &mut AlertReport,
) -> Result<(), StateError> {
    let now = Utc::now();
    let open = store.incident(&alert.dedup_key).await?;
    let mut decision = decide(open.as_ref(), &alert, now, repeat_interval);
    if kind_of(&decision).is_some_and(|k| k != Kind::Resolved)
        && let Some(s) = silence::covering(&silence::silences(store).await?, &subject_of(&alert), now)
    {
        // Judged, shown, not sent: the resolved notice of an open incident still goes.
        decision = Decision::Silenced { until: s.until() };
    }
    describe(report, &alert, &decision, open.as_ref());
    let Some(kind) = kind_of(&decision) else { return Ok(()) };
    let (incident_id, opened_at, n, thread) =
        next_notice(open.as_ref(), now, || uuid::Uuid::new_v4().simple().to_string());
    report.incident_id = Some(incident_id.clone());
    let notice = Notice { alert: alert.clone(), kind, incident_id, opened_at, at: now, test: false };
    let incident = match kind {
        Kind::Resolved => None,
        _ => Some(Incident {
            dedup_key: alert.dedup_key.clone(),
            incident_id: notice.incident_id.clone(),
            severity: open.as_ref().map_or(alert.severity, |i| i.severity.max(alert.severity)),
            summary: alert.summary.clone(),
            opened_at,
            last_sent_at: now,
            notices: n,
            slack_ts: thread.clone(),
            results: Default::default(),
            members: alert.members.clone(),
            // A new notice (an escalation, a new member) asks for a new acknowledgement.
            ack: None,
        }),
    };
    deliver_notice(store, &notice, (n, thread), incident, (opts, blocked), report).await
}

/// What a silence can match in a plain alert: its dedup key, severity and labels.
fn subject_of(alert: &Alert) -> silence::Subject {
    silence::Subject {
        dedup_key: alert.dedup_key.clone(),
        severity: alert.severity.as_str().to_string(),
        rule: alert.labels.get("rule").cloned(),
        labels: alert.labels.clone(),
    }
}

/// Write-ahead delivery of one notice: its entries queued and the incident recorded (or closed,
/// `None`) before any channel is tried, each entry removed once its channel accepted it.
pub(super) async fn deliver_notice(
    store: &mut Store,
    notice: &Notice,
    (n, thread): (u32, Option<String>),
    mut incident: Option<Incident>,
    (opts, blocked): (&Options, &HashSet<Channel>),
    report: &mut AlertReport,
) -> Result<(), StateError> {
    let (kind, key) = (notice.kind, notice.alert.dedup_key.as_str());
    let mut entries = Vec::new();
    for d in render_all(notice, n, thread, opts) {
        let entry = OutboxEntry::new(key, &notice.incident_id, kind, d, "not tried yet".into());
        store.enqueue(&entry).await?;
        entries.push(entry);
    }
    match &incident {
        Some(i) => store.put_incident(i).await?,
        None => store.close_incident(key).await?,
    }
    for entry in entries {
        let channel = entry.delivery.channel();
        let result = if blocked.contains(&channel) {
            Err(DeliveryError {
                dependency: channel.as_str(),
                operation: "deliver",
                address: address_of(&entry.delivery, opts),
                reason: format!("queued behind earlier {channel} notices still waiting in the outbox"),
                queueable: true,
                attempts: 0,
            })
        } else {
            attempt(&entry.delivery, opts).await
        };
        let out = line(&entry.delivery, opts, (kind, key, false), &result, queued_or_rejected);
        if out.outcome != Outcome::Queued {
            store.remove(&entry).await?;
        }
        if let Some(i) = &mut incident {
            if let Ok((_, Some(ts))) = &result {
                i.slack_ts.get_or_insert_with(|| ts.clone());
            }
            i.results.insert(channel.to_string(), out.outcome.as_str().to_string());
            store.put_incident(i).await?;
        }
        report.deliveries.push(out);
    }
    Ok(())
}

/// The next notice of the open incident (its id, when it opened, the mail number, the Slack
/// thread), or the first one of a new incident named by `new_id`.
fn next_notice(
    open: Option<&Incident>,
    now: chrono::DateTime<Utc>,
    new_id: impl FnOnce() -> String,
) -> (String, chrono::DateTime<Utc>, u32, Option<String>) {
    match open {
        Some(i) => (i.incident_id.clone(), i.opened_at, i.notices + 1, i.slack_ts.clone()),
        None => (new_id(), now, 1, None),
    }
}

fn kind_of(decision: &Decision) -> Option<Kind> {
    match decision {
        Decision::Open => Some(Kind::Opened),
        Decision::Remind => Some(Kind::Reminder),
        Decision::Escalate => Some(Kind::Escalated),
        Decision::Update => Some(Kind::Updated),
        Decision::Resolve => Some(Kind::Resolved),
        Decision::Quiet { .. } | Decision::NothingOpen | Decision::Acknowledged | Decision::Silenced { .. } => None,
    }
}

fn describe(report: &mut AlertReport, alert: &Alert, decision: &Decision, open: Option<&Incident>) {
    report.decision = Some(decision.clone());
    report.dedup_key = Some(alert.dedup_key.clone());
    report.severity = Some(alert.severity);
    report.incident_id = open.map(|i| i.incident_id.clone());
    if let Decision::Quiet { next_reminder_at } = decision {
        report.next_reminder_at = Some(*next_reminder_at);
    }
}

/// Delivers what waits in the outbox, oldest first. A channel that fails again keeps its
/// remaining entries (and any new notice) waiting, so order is kept per channel. Returns the
/// channels that are still blocked.
async fn flush_locked(
    store: &mut Store,
    opts: &Options,
    report: &mut AlertReport,
) -> Result<HashSet<Channel>, StateError> {
    let mut blocked = HashSet::new();
    for entry in store.outbox().await? {
        if let Delivery::Alert { alert, repeat_interval_secs } = &entry.delivery {
            // An alert queued while another run held the lock: decided now, in its turn.
            store.remove(&entry).await?;
            let repeat = std::time::Duration::from_secs(*repeat_interval_secs);
            process(store, (**alert).clone(), repeat, opts, &blocked, report).await?;
            continue;
        }
        let channel = entry.delivery.channel();
        if blocked.contains(&channel) {
            continue;
        }
        let result = attempt(&entry.delivery, opts).await;
        let done = line(&entry.delivery, opts, (entry.kind, &entry.dedup_key, true), &result, queued_or_rejected);
        match result {
            Ok((_, ts)) => {
                store.remove(&entry).await?;
                if let (Some(ts), Kind::Opened) = (ts, entry.kind) {
                    adopt_thread(store, &entry, ts).await?;
                }
            }
            Err(e) if e.queueable => {
                blocked.insert(channel);
            }
            // Refused for good: keeping it would block the channel for ever. The report (and
            // exit 1) is where it is seen.
            Err(_) => store.remove(&entry).await?,
        }
        report.deliveries.push(done);
    }
    Ok(blocked)
}

/// An incident whose first Slack message went out late (from the outbox) gets its thread now.
async fn adopt_thread(store: &mut Store, entry: &OutboxEntry, ts: String) -> Result<(), StateError> {
    if let Some(mut incident) = store.incident(&entry.dedup_key).await?
        && incident.incident_id == entry.incident_id
        && incident.slack_ts.is_none()
    {
        incident.slack_ts = Some(ts);
        store.put_incident(&incident).await?;
    }
    Ok(())
}

/// `alert flush`: delivers what waits, in order.
pub async fn flush(store: &mut Store, opts: &Options) -> Result<AlertReport, AlertError> {
    store.lock().await?;
    let mut report = AlertReport::new("flush", store.describe());
    let result = flush_locked(store, opts, &mut report).await;
    let listed = match result {
        Ok(_) => store.outbox().await,
        Err(e) => Err(e),
    };
    let unlocked = store.unlock().await;
    report.outbox = listed?;
    unlocked?;
    Ok(report)
}

/// `alert outbox`: what waits, oldest first.
pub async fn outbox(store: &mut Store) -> Result<AlertReport, AlertError> {
    let mut report = AlertReport::new("outbox", store.describe());
    report.outbox = store.outbox().await?;
    Ok(report)
}

/// `alert test`: a clearly marked test notice through every configured channel, each result
/// reported. Nothing is read from or written to the state: a test never opens an incident.
pub async fn test(alert: Alert, opts: &Options) -> Result<AlertReport, AlertError> {
    if opts.channels.is_empty() {
        return Err(AlertError::NoChannel);
    }
    let mut report = AlertReport::new("test", "none (a test keeps no state)".into());
    let now = Utc::now();
    let incident_id = format!("test-{}", uuid::Uuid::new_v4().simple());
    let notice =
        Notice { alert, kind: Kind::Test, incident_id: incident_id.clone(), opened_at: now, at: now, test: true };
    report.dedup_key = Some(notice.alert.dedup_key.clone());
    report.severity = Some(notice.alert.severity);
    report.incident_id = Some(incident_id);
    let deliveries = render_all(&notice, 1, None, opts);
    let results = futures::future::join_all(deliveries.iter().map(|d| attempt(d, opts))).await;
    for (delivery, result) in deliveries.iter().zip(results) {
        let key = notice.alert.dedup_key.as_str();
        report.deliveries.push(line(delivery, opts, (Kind::Test, key, false), &result, |_| Outcome::Failed));
    }
    Ok(report)
}

/// `alert send --dry-run`: the decision and the renderings, with nothing sent and no state
/// changed. Without a store (state unreadable) the alert is shown as if nothing were open.
pub async fn dry_run(store: Option<&mut Store>, alert: Alert, opts: &Options) -> Result<AlertReport, AlertError> {
    let now = Utc::now();
    let (open, state, waiting) = match store {
        Some(s) => (s.incident(&alert.dedup_key).await?, s.describe(), s.outbox().await?),
        None => (None, "none".to_string(), Vec::new()),
    };
    let mut report = AlertReport::new("send", state);
    report.dry_run = true;
    report.outbox = waiting;
    let decision = decide(open.as_ref(), &alert, now, opts.repeat_interval);
    describe(&mut report, &alert, &decision, open.as_ref());
    if let Some(kind) = kind_of(&decision) {
        let (incident_id, opened_at, n, thread) = next_notice(open.as_ref(), now, || "new".to_string());
        let notice = Notice { alert, kind, incident_id, opened_at, at: now, test: false };
        let mut preview = Preview::default();
        for d in render_all(&notice, n, thread, opts) {
            match d {
                Delivery::Slack { mut payload, thread_ts, .. } => {
                    if let Some(ts) = thread_ts {
                        payload["thread_ts"] = serde_json::json!(ts);
                    }
                    preview.slack = Some(payload);
                }
                Delivery::Email { mail } => preview.email = Some(mail),
                Delivery::Alert { .. } => {}
            }
        }
        report.preview = Some(preview);
    }
    Ok(report)
}
