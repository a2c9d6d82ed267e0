//! Silences ("this is planned") and acknowledgements ("I have it"), with their append-only
//! history, kept with the alert state under its lock.
//!
//! A silence is a set of matchers (`KEY=VALUE`, every one must match, as in Alertmanager) over
//! what an alert is about: its `dedup_key`, `severity`, `rule` and labels. While one matches, the
//! rule is still judged and shown, but no notice goes out; when it ends and the rule still
//! fires, the next notice says so.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::state::{StateError, Store};
use crate::actor::Actor;

/// The document silences are kept in.
pub const SILENCES_DOC: &str = "alert:silences";
/// The document of the history of acks and silences.
pub const HISTORY_DOC: &str = "alert:history";
/// Expired silences are listed (and kept) this long after they end.
pub const KEPT_AFTER_END: Duration = Duration::from_secs(24 * 3600);
/// The longest history kept (oldest entries go first).
const HISTORY_MAX: usize = 10_000;

/// One `KEY=VALUE` matcher.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Matcher {
    pub key: String,
    pub value: String,
}

impl std::str::FromStr for Matcher {
    type Err = String;

    fn from_str(s: &str) -> Result<Matcher, String> {
        let (k, v) = s.split_once('=').ok_or_else(|| format!("{s:?} is not KEY=VALUE"))?;
        let (k, v) = (k.trim(), v.trim());
        let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
        if k.is_empty() || !k.chars().all(ok) || v.is_empty() || v.chars().any(char::is_control) {
            return Err(format!("{s:?}: a key of letters, digits, '_', '-', '.' and a value on one line"));
        }
        Ok(Matcher { key: k.to_string(), value: v.to_string() })
    }
}

impl std::fmt::Display for Matcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}={}", self.key, self.value)
    }
}

/// What a silence can match: one rule (or one alert) with its severity, incident and labels.
#[derive(Debug, Clone, Default)]
pub struct Subject {
    pub dedup_key: String,
    pub severity: String,
    pub rule: Option<String>,
    pub labels: BTreeMap<String, String>,
}

impl Subject {
    fn value(&self, key: &str) -> Option<&str> {
        match key {
            "dedup_key" => Some(&self.dedup_key),
            "severity" => Some(&self.severity),
            "rule" => self.rule.as_deref(),
            label => self.labels.get(label).map(String::as_str),
        }
    }

    fn is_matched_by(&self, matchers: &[Matcher]) -> bool {
        matchers.iter().all(|m| self.value(&m.key) == Some(m.value.as_str()))
    }
}

/// A silence as kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Silence {
    pub id: String,
    pub matchers: Vec<Matcher>,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub by: String,
    pub reason: String,
    /// Ended before its time by `alert unsilence`: when and by whom.
    #[serde(default)]
    pub ended: Option<(DateTime<Utc>, String)>,
}

impl Silence {
    /// When it stops (or stopped) silencing.
    pub fn until(&self) -> DateTime<Utc> {
        self.ended.as_ref().map_or(self.ends_at, |(at, _)| (*at).min(self.ends_at))
    }

    pub fn is_active(&self, now: DateTime<Utc>) -> bool {
        self.starts_at <= now && now < self.until()
    }

    pub fn matches(&self, s: &Subject) -> bool {
        s.is_matched_by(&self.matchers)
    }

    pub fn describe(&self) -> String {
        let m: Vec<String> = self.matchers.iter().map(ToString::to_string).collect();
        format!("silence {} ({}) until {} UTC", self.id, m.join(" "), self.until().format("%Y-%m-%d %H:%M"))
    }
}

/// The active silence that covers `subject` and lasts longest, if any.
pub fn covering<'a>(silences: &'a [Silence], subject: &Subject, now: DateTime<Utc>) -> Option<&'a Silence> {
    silences.iter().filter(|s| s.is_active(now) && s.matches(subject)).max_by_key(|s| s.until())
}

/// One line of the history: who acknowledged or silenced what, when and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub at: DateTime<Utc>,
    pub by: String,
    /// `ack`, `silence` or `unsilence`.
    pub action: String,
    /// The incident (dedup key and id) or the silence (id and matchers).
    pub target: String,
    pub reason: String,
    pub command: String,
}

/// Why a silence or an ack was refused.
#[derive(Debug, thiserror::Error)]
pub enum SilenceError {
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    State(#[from] StateError),
}

impl crate::exit::Classified for SilenceError {
    fn kind(&self) -> crate::exit::ErrorKind {
        match self {
            SilenceError::Refused(_) => crate::exit::ErrorKind::Usage,
            SilenceError::State(_) => crate::exit::ErrorKind::CouldNotRun,
        }
    }
}

/// What `alert silence` asks for.
pub struct SilenceRequest {
    pub matchers: Vec<Matcher>,
    pub ends_at: DateTime<Utc>,
    pub reason: String,
    /// The longest a silence may last (`ALERT_SILENCE_MAX`).
    pub max: Duration,
}

/// Checks a silence before anything is written: a reason, an end in the future within the
/// maximum, and at least one subject it matches (a silence that hides nothing reassures wrongly).
pub fn check(req: &SilenceRequest, subjects: &[Subject], now: DateTime<Utc>) -> Result<(), SilenceError> {
    check_request(req, now)?;
    check_matches(req, subjects)
}

/// What can be refused before any state is read: the reason, the matchers, the end.
pub fn check_request(req: &SilenceRequest, now: DateTime<Utc>) -> Result<(), SilenceError> {
    let refused = |m: String| Err(SilenceError::Refused(m));
    if req.reason.trim().is_empty() {
        return refused("a silence needs --reason: say why, it is shown with every silenced rule".into());
    }
    if req.matchers.is_empty() {
        return refused("a silence needs at least one --match KEY=VALUE".into());
    }
    if req.ends_at <= now {
        return refused(format!("the silence would end in the past ({} UTC)", req.ends_at.format("%Y-%m-%d %H:%M")));
    }
    let max = chrono::Duration::from_std(req.max).unwrap_or(chrono::Duration::MAX);
    if req.ends_at - now > max {
        let max = crate::duration::format_duration(req.max);
        return refused(format!("the silence would last longer than the maximum ({max}, ALERT_SILENCE_MAX)"));
    }
    Ok(())
}

/// That the silence hides something that exists.
pub fn check_matches(req: &SilenceRequest, subjects: &[Subject]) -> Result<(), SilenceError> {
    if !subjects.iter().any(|s| s.is_matched_by(&req.matchers)) {
        let m: Vec<String> = req.matchers.iter().map(ToString::to_string).collect();
        let mut known: Vec<String> = subjects.iter().filter_map(|s| s.rule.clone()).collect();
        known.dedup();
        return Err(SilenceError::Refused(format!(
            "{} matches no rule and no open incident, so it would hide nothing (rules: {})",
            m.join(" "),
            if known.is_empty() { "none".into() } else { known.join(", ") }
        )));
    }
    Ok(())
}

/// Checks and adds a silence under the state's lock. `subjects` are what could be silenced
/// besides the open incidents (the monitor's rules in force).
pub async fn create(
    store: &mut Store,
    req: SilenceRequest,
    mut subjects: Vec<Subject>,
    actor: &Actor,
) -> Result<Silence, SilenceError> {
    under_lock(store, async move |store: &mut Store| {
        for i in store.incidents().await? {
            subjects.push(Subject {
                dedup_key: i.dedup_key.clone(),
                severity: i.severity.as_str().to_string(),
                rule: None,
                labels: BTreeMap::new(),
            });
        }
        check(&req, &subjects, Utc::now())?;
        Ok(add(store, req, actor).await?)
    })
    .await
}

/// Ends silence `id` now, under the state's lock.
pub async fn end(store: &mut Store, id: &str, actor: &Actor) -> Result<Silence, SilenceError> {
    under_lock(store, async |store: &mut Store| unsilence(store, id, actor).await).await
}

/// `work` under the state's lock (refused, nothing changed, while another run holds it), the
/// lock released on every way out.
pub(super) async fn under_lock<T>(
    store: &mut Store,
    work: impl AsyncFnOnce(&mut Store) -> Result<T, SilenceError>,
) -> Result<T, SilenceError> {
    match store.lock().await {
        Ok(()) => {}
        Err(StateError::Locked { place, .. }) => {
            return Err(SilenceError::Refused(format!(
                "another run holds the alert state's lock at {place}: nothing was changed; try again"
            )));
        }
        Err(e) => return Err(e.into()),
    }
    let result = work(store).await;
    let unlocked = store.unlock().await;
    let value = result?;
    unlocked?;
    Ok(value)
}

/// The silences kept (active and recently ended), oldest first.
pub async fn silences(store: &mut Store) -> Result<Vec<Silence>, StateError> {
    read_doc(store, SILENCES_DOC).await
}

/// Adds a checked silence and its history line (the caller holds the lock).
async fn add(store: &mut Store, req: SilenceRequest, actor: &Actor) -> Result<Silence, StateError> {
    let now = Utc::now();
    let mut all = silences(store).await?;
    let keep_after = chrono::Duration::from_std(KEPT_AFTER_END).unwrap_or(chrono::Duration::MAX);
    all.retain(|s| s.until() + keep_after > now);
    let silence = Silence {
        id: uuid::Uuid::new_v4().simple().to_string()[..8].to_string(),
        matchers: req.matchers,
        starts_at: now,
        ends_at: req.ends_at,
        by: actor.who.clone(),
        reason: req.reason,
        ended: None,
    };
    all.push(silence.clone());
    write_doc(store, SILENCES_DOC, &all).await?;
    let target =
        format!("{} ({})", silence.id, silence.matchers.iter().map(ToString::to_string).collect::<Vec<_>>().join(" "));
    record(store, actor, "silence", target, &silence.reason).await?;
    Ok(silence)
}

/// Ends silence `id` now (the caller holds the lock).
async fn unsilence(store: &mut Store, id: &str, actor: &Actor) -> Result<Silence, SilenceError> {
    let now = Utc::now();
    let mut all = silences(store).await?;
    let Some(s) = all.iter_mut().find(|s| s.id == id && s.is_active(now)) else {
        let active: Vec<String> = all.iter().filter(|s| s.is_active(now)).map(|s| s.id.clone()).collect();
        return Err(SilenceError::Refused(format!(
            "no active silence {id:?} (active: {})",
            if active.is_empty() { "none".into() } else { active.join(", ") }
        )));
    };
    s.ended = Some((now, actor.who.clone()));
    let ended = s.clone();
    write_doc(store, SILENCES_DOC, &all).await?;
    record(store, actor, "unsilence", ended.id.clone(), "").await?;
    Ok(ended)
}

/// Appends one line to the history.
pub async fn record(
    store: &mut Store,
    actor: &Actor,
    action: &str,
    target: String,
    reason: &str,
) -> Result<(), StateError> {
    let mut h: Vec<HistoryEntry> = read_doc(store, HISTORY_DOC).await?;
    h.push(HistoryEntry {
        at: Utc::now(),
        by: actor.who.clone(),
        action: action.into(),
        target,
        reason: reason.into(),
        command: actor.command.clone(),
    });
    let over = h.len().saturating_sub(HISTORY_MAX);
    h.drain(..over);
    write_doc(store, HISTORY_DOC, &h).await
}

/// The history, oldest first.
pub async fn history(store: &mut Store) -> Result<Vec<HistoryEntry>, StateError> {
    read_doc(store, HISTORY_DOC).await
}

async fn read_doc<T: serde::de::DeserializeOwned>(store: &mut Store, name: &str) -> Result<Vec<T>, StateError> {
    match store.doc(name).await? {
        None => Ok(Vec::new()),
        Some(text) => serde_json::from_str(&text).map_err(|e| StateError::Corrupt {
            place: store.describe(),
            entry: name.to_string(),
            reason: e.to_string(),
        }),
    }
}

async fn write_doc<T: Serialize>(store: &mut Store, name: &str, items: &[T]) -> Result<(), StateError> {
    // Plain data with string keys: serialising cannot fail.
    store.put_doc(name, &serde_json::to_string(items).expect("documents serialise")).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subject(rule: &str, severity: &str) -> Subject {
        Subject {
            dedup_key: format!("broker-ops-monitor:{severity}"),
            severity: severity.into(),
            rule: Some(rule.into()),
            labels: [("team".to_string(), "chat".to_string())].into(),
        }
    }

    #[test]
    fn every_matcher_must_match_and_a_silence_lives_from_start_to_end() {
        let now = Utc::now();
        let m = |s: &str| s.parse::<Matcher>().unwrap();
        let s = Silence {
            id: "abc".into(),
            matchers: vec![m("rule=ably-unreachable"), m("team=chat")],
            starts_at: now,
            ends_at: now + chrono::Duration::hours(1),
            by: "a".into(),
            reason: "migration".into(),
            ended: None,
        };
        assert!(s.matches(&subject("ably-unreachable", "critical")));
        assert!(!s.matches(&subject("queue-backing-up", "critical")));
        assert!(s.is_active(now) && !s.is_active(now + chrono::Duration::hours(2)));
        let mut ended = s.clone();
        ended.ended = Some((now + chrono::Duration::minutes(5), "b".into()));
        assert!(!ended.is_active(now + chrono::Duration::minutes(6)));
        assert!("nokey".parse::<Matcher>().is_err() && "=x".parse::<Matcher>().is_err());
    }

    #[test]
    fn a_silence_without_reason_too_long_past_or_hiding_nothing_is_refused() {
        let now = Utc::now();
        let subjects = [subject("ably-unreachable", "critical")];
        let req = |m: &str, hours: i64, reason: &str| SilenceRequest {
            matchers: vec![m.parse().unwrap()],
            ends_at: now + chrono::Duration::hours(hours),
            reason: reason.into(),
            max: Duration::from_secs(7 * 24 * 3600),
        };
        assert!(check(&req("rule=ably-unreachable", 2, "planned"), &subjects, now).is_ok());
        let err = |r: SilenceRequest| check(&r, &subjects, now).unwrap_err().to_string();
        assert!(err(req("rule=ably-unreachable", 2, " ")).contains("--reason"));
        assert!(err(req("rule=ably-unreachable", -1, "x")).contains("in the past"));
        assert!(err(req("rule=ably-unreachable", 24 * 8, "x")).contains("longer than the maximum"));
        assert!(err(req("rule=no-such-rule", 2, "x")).contains("matches no rule"));
    }
}
