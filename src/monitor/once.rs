//! A cron run: the lock, the rule states, one sweep, the rules stepped, one alert per severity
//! through the alert capability, the states saved, the lock released.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::engine::{self, RuleResult};
use super::history::{HISTORY_DOC, History};
use super::machine::RuleState;
use super::ping::{Pinger, Signal};
use super::rules::{RuleSet, Severity};
use super::sweep::{self, ProbeOutcome, SweepRequest};
use crate::alert::{self, AlertError, AlertReport, AlertSource, Store, TryLock};
use crate::config::Config;
use crate::exit::ProbeState;

/// The name of the monitor's lock and of its rule-state document in the alert state.
pub const LOCK_NAME: &str = "monitor";
pub const STATE_DOC: &str = "monitor:rules";

pub struct MonitorRequest {
    pub sweep: SweepRequest,
    pub rules: RuleSet,
    pub alerts: alert::Options,
    pub state_dir: Option<PathBuf>,
    /// The dead-man's switch, pinged only by the run that holds the lock.
    pub ping: Option<Pinger>,
    /// A status page is written after the run: read the open incidents for it.
    pub status_page: bool,
}

/// What a run came to.
pub enum Ran {
    Swept(Box<MonitorReport>),
    /// Another run holds the lock: this one did nothing.
    LockedOut {
        holder: String,
        place: String,
    },
}

#[derive(Debug, Clone, Serialize)]
pub struct MonitorReport {
    pub schema_version: u32,
    pub run_id: String,
    pub started_at: DateTime<Utc>,
    pub elapsed_ms: f64,
    /// The worst state of the probes that ran (UNKNOWN when none could).
    pub state: ProbeState,
    pub rules_from: String,
    pub store: String,
    pub probes: Vec<ProbeOutcome>,
    pub rules: Vec<RuleResult>,
    pub alerts: Vec<AlertReport>,
    pub notes: Vec<String>,
    /// The recent sweeps, this one included (for the status page).
    #[serde(skip)]
    pub history: History,
    /// The incidents open after this run (read only for the status page).
    #[serde(skip)]
    pub incidents: Vec<crate::alert::state::Incident>,
}

impl MonitorReport {
    /// The sweep's state, from the probes that ran.
    pub fn worst(probes: &[ProbeOutcome]) -> ProbeState {
        probes.iter().filter(|p| p.counts()).map(|p| p.state).max().unwrap_or(ProbeState::Unknown)
    }

    /// One line for a ping body or a log: the state and what is not OK.
    pub fn summary(&self) -> String {
        let bad: Vec<String> = self
            .probes
            .iter()
            .filter(|p| p.counts() && p.state != ProbeState::Ok)
            .map(|p| format!("{} {}", p.probe.name(), p.state.label()))
            .collect();
        let firing: Vec<String> = self
            .rules
            .iter()
            .filter(|r| r.firing)
            .map(|r| match r.silenced_until {
                Some(t) => format!("{} (silenced until {} UTC)", r.name, t.format("%Y-%m-%d %H:%M")),
                None => r.name.clone(),
            })
            .collect();
        let firing = match (firing.is_empty(), self.state) {
            (false, _) => firing.join(", "),
            (true, ProbeState::Ok) => "none".to_string(),
            (true, _) => "none (nobody is paged)".to_string(),
        };
        format!(
            "MONITOR {} - {}; firing: {firing}",
            self.state.label(),
            if bad.is_empty() { "every probe OK".to_string() } else { bad.join(", ") },
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    #[error(transparent)]
    Alert(#[from] AlertError),
    #[error(transparent)]
    State(#[from] alert::StateError),
}

/// Who runs: written into the lock so that a run locked out can say who has it.
pub fn holder(run_id: &str) -> String {
    let host = AlertSource::this_host("monitor").host;
    format!("host={host} pid={} run={run_id} since={}", std::process::id(), Utc::now().to_rfc3339())
}

/// One cron run. The lock is released on every way out.
pub async fn sweep_once(config: &Config, req: &MonitorRequest) -> Result<Ran, MonitorError> {
    // A UUID, as the ping protocol wants its run id.
    let run_id = uuid::Uuid::new_v4().to_string();
    let run_id = run_id.as_str();
    let started = (Utc::now(), Instant::now());
    // One Redis connection and one Postgres pool for the whole run: the state, the lock and
    // every probe share them.
    let opened = crate::store::opened::Connections::open(config).await;
    let (mut store, fallback) =
        alert::open_store_on(config, req.state_dir.as_deref(), opened.redis_or_reason()).await?;
    let lock = match store.try_lock_named(LOCK_NAME, &holder(run_id)).await? {
        TryLock::Held(lock) => lock,
        TryLock::Busy { holder, place } => return Ok(Ran::LockedOut { holder, place }),
    };
    // Pinged only here, by the run that holds the lock: a run locked out must not tell the
    // switch that all is well while the holder may be stuck.
    let mut ping_notes = Vec::new();
    if let Some(p) = &req.ping {
        ping_notes.extend(p.start(run_id).await.err());
    }
    let result = locked(config, req, (run_id, started), (&mut store, &opened), fallback).await;
    let released = store.release_named(lock).await;
    if let Some(p) = &req.ping {
        let (signal, body) = match &result {
            Ok(r) => (Signal::of(r.state), r.summary()),
            Err(e) => (Signal::Fail, format!("MONITOR UNKNOWN - could not run: {e}")),
        };
        ping_notes.extend(p.finish(run_id, signal, &body).await.err());
    }
    let mut report = result?;
    report.notes.extend(ping_notes);
    released?;
    Ok(Ran::Swept(Box::new(report)))
}

async fn locked(
    config: &Config,
    req: &MonitorRequest,
    (run_id, (started_at, started)): (&str, (DateTime<Utc>, Instant)),
    (store, opened): (&mut Store, &crate::store::opened::Connections),
    fallback: Option<String>,
) -> Result<MonitorReport, MonitorError> {
    let mut notes: Vec<String> = fallback.into_iter().collect();
    let mut states = load_states(store, &mut notes).await?;
    let probes = sweep::sweep(config, &req.sweep, opened).await;
    let mut rules = engine::evaluate(&req.rules, &probes, &mut states, started_at);
    engine::apply_silences(&mut rules, &alert::silence::silences(store).await?, Utc::now());
    // Plain data with string keys: serialising cannot fail.
    store.put_doc(STATE_DOC, &serde_json::to_string(&states).expect("rule states serialise")).await?;
    let alerts = send_alerts(store, &rules, &req.alerts, &mut notes).await;
    if probes.iter().all(|p| !p.counts()) {
        notes.push("nothing to check: every probe was skipped (see each probe's reason)".into());
    }
    notes.extend(unpaged(MonitorReport::worst(&probes), &probes, &rules));
    let mut history = load_history(store, &mut notes).await?;
    history.record(&probes, MonitorReport::worst(&probes), started_at);
    // Plain data: serialising cannot fail.
    store.put_doc(HISTORY_DOC, &serde_json::to_string(&history).expect("history serialises")).await?;
    let incidents = match req.status_page {
        true => store.incidents().await?,
        false => Vec::new(),
    };
    Ok(MonitorReport {
        schema_version: 1,
        run_id: run_id.to_string(),
        started_at,
        elapsed_ms: started.elapsed().as_secs_f64() * 1000.0,
        state: MonitorReport::worst(&probes),
        rules_from: req.rules.origin.clone(),
        store: store.describe(),
        probes,
        rules,
        alerts,
        notes,
        history,
        incidents,
    })
}

/// The recent sweeps; an unreadable document starts afresh (with a note).
async fn load_history(store: &mut Store, notes: &mut Vec<String>) -> Result<History, MonitorError> {
    let Some(text) = store.doc(HISTORY_DOC).await? else { return Ok(History::default()) };
    Ok(serde_json::from_str(&text).unwrap_or_else(|e| {
        notes.push(format!("the saved sweep history was unreadable ({e}); it starts afresh"));
        History::default()
    }))
}

/// When the sweep is not OK but no rule fires, what pages nobody and why: rules failing but not
/// yet for long enough, and bad checks that no rule in force looks at. Said in every output, so
/// that a CRITICAL exit is never mistaken for "someone has been told".
fn unpaged(state: ProbeState, probes: &[ProbeOutcome], rules: &[RuleResult]) -> Option<String> {
    if state == ProbeState::Ok || rules.iter().any(|r| r.firing && r.silenced_until.is_none()) {
        return None;
    }
    let silenced: Vec<String> = rules
        .iter()
        .filter(|r| r.firing)
        .filter_map(|r| r.silence.as_ref().map(|s| format!("{}: {s}", r.name)))
        .collect();
    if !silenced.is_empty() {
        return Some(format!(
            "the sweep is {} and every firing rule is silenced, so nobody is paged ({})",
            state.label(),
            silenced.join("; ")
        ));
    }
    let pending: Vec<String> = rules
        .iter()
        .filter(|r| r.verdict == super::rules::Eval::Failing)
        .map(|r| format!("{} ({}/{} sweeps)", r.name, r.failing_sweeps, r.for_sweeps))
        .collect();
    let uncovered: Vec<String> = probes
        .iter()
        .filter(|p| p.counts())
        .flat_map(|p| p.checks.iter().map(move |c| (p.probe, c)))
        .filter(|(_, c)| c.state != ProbeState::Ok)
        .filter(|(p, c)| !rules.iter().any(|r| r.check == format!("{}.{}", p.name(), c.name)))
        .map(|(p, c)| format!("{}.{} {}", p.name(), c.name, c.state.label()))
        .collect();
    let mut why = Vec::new();
    if !pending.is_empty() {
        why.push(format!("failing, not yet firing: {}", pending.join(", ")));
    }
    if !uncovered.is_empty() {
        why.push(format!("no rule looks at: {}", uncovered.join(", ")));
    }
    if why.is_empty() {
        why.push("every rule on the bad checks passes or could not judge them".into());
    }
    Some(format!("the sweep is {} but no rule is firing, so nobody is paged ({})", state.label(), why.join("; ")))
}

/// The rules' memory; an unreadable document is started afresh (with a note) rather than
/// stopping the monitor.
async fn load_states(store: &mut Store, notes: &mut Vec<String>) -> Result<BTreeMap<String, RuleState>, MonitorError> {
    let Some(text) = store.doc(STATE_DOC).await? else { return Ok(BTreeMap::new()) };
    match serde_json::from_str(&text) {
        Ok(states) => Ok(states),
        Err(e) => {
            notes.push(format!("the saved rule states were unreadable ({e}); every rule starts afresh"));
            Ok(BTreeMap::new())
        }
    }
}

/// One alert per severity through the alert capability (which decides open, remind, update,
/// resolve or quiet, and keeps what it cannot deliver). A failure here is a note: the exit code
/// still says what the checks found.
async fn send_alerts(
    store: &mut Store,
    rules: &[RuleResult],
    opts: &alert::Options,
    notes: &mut Vec<String>,
) -> Vec<AlertReport> {
    if opts.channels.is_empty() {
        let firing = rules.iter().filter(|r| r.firing).count();
        notes.push(format!(
            "no alert channel is configured (SLACK_WEBHOOK_URL, SLACK_BOT_TOKEN, SMTP_URL): nothing is sent \
             ({firing} rule(s) firing)"
        ));
        return Vec::new();
    }
    let source = AlertSource::this_host("broker-ops monitor");
    // A severity held (a rule failing towards firing, none firing yet) is left as it is.
    let alerts: Vec<_> = [Severity::Critical, Severity::Warning]
        .into_iter()
        .filter_map(|s| engine::group_alert(s, rules, &source))
        .collect();
    // One lock and one flush of the outbox for both severities, not one each: what waits for a
    // channel that is down is retried once per run.
    match alert::send_all(store, alerts, opts).await {
        Ok(reports) => reports,
        Err(e) => {
            notes.push(format!("alerts not handled: {e}"));
            Vec::new()
        }
    }
}
