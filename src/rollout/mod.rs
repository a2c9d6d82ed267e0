//! `broker-ops rollout`: the `ENABLE_ABLY_REALTIME` rollout. Flags live in the app's Postgres
//! (tables of `contracts.flag_table`, made by `db migrate`); who is in is Unleash's
//! `flexibleRollout` on the conversation id ([`bucket`]); every change carries the version it
//! read (two operators at once: one wins, the other is told who changed it since) and writes an
//! audit row in the same transaction.

pub mod advance;
pub mod aftermath;
pub mod bucket;
pub mod cohorts;
pub mod export;
pub mod observe;
pub mod ops;
pub mod reader;
mod render;
pub mod staging;
pub mod store;
pub mod switch;
pub mod workflow;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Value, json};

pub use bucket::{Decision, Evaluator, Reason};
pub use render::{ChangeReport, HistoryReport, StatusReport, WhichReport, why as render_why};

use crate::config::ConfigError;
use crate::store::MirrorError;

/// A flag as its row holds it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Flag {
    #[serde(rename = "flag")]
    pub name: String,
    pub enabled: bool,
    pub percent: u8,
    pub stickiness: String,
    pub group_id: String,
    pub version: i64,
    pub updated_at: DateTime<Utc>,
    pub updated_by: String,
    pub reason: String,
}

impl Flag {
    /// A flag as `db migrate` creates it: off at 0 %, sticky on the conversation id.
    pub fn new(name: &str) -> Flag {
        Flag {
            name: name.to_string(),
            enabled: false,
            percent: 0,
            stickiness: bucket::STICKINESS.into(),
            group_id: name.to_string(),
            version: 1,
            updated_at: Utc::now(),
            updated_by: String::new(),
            reason: String::new(),
        }
    }

    /// What the audit records of a state.
    pub fn state(&self) -> Value {
        json!({"enabled": self.enabled, "percent": self.percent, "version": self.version})
    }
}

/// Who changes something, and with what command line (for the audit).
pub use crate::actor::Actor;

#[derive(Debug, thiserror::Error)]
pub enum RolloutError {
    /// Bad input: exit 2.
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Store(#[from] MirrorError),
    #[error(transparent)]
    Report(#[from] crate::analytics::ReportError),
    #[error("Postgres at {addr}: the rollout tables ({tables}) do not exist: create them with `broker-ops db migrate`")]
    NoTables { addr: String, tables: String },
    /// Someone changed the flag since it was read: exit 1, nothing changed.
    #[error(
        "flag {flag} was changed by {by} at {at} since you read it (version {read}, now {now}): nothing changed; \
         look again with `broker-ops rollout status`"
    )]
    Conflict { flag: String, by: String, at: DateTime<Utc>, read: i64, now: i64 },
    /// The change asked for is already in force: nothing written, exit 0.
    #[error("nothing to change: {0}")]
    NothingToChange(String),
    /// The change was shown and not confirmed: exit 1, nothing changed.
    #[error(transparent)]
    NotConfirmed(#[from] crate::exit::NotConfirmed),
}

impl crate::exit::Classified for RolloutError {
    fn kind(&self) -> crate::exit::ErrorKind {
        use crate::exit::ErrorKind;
        match self {
            RolloutError::Usage(_) => ErrorKind::Usage,
            RolloutError::Conflict { .. } => ErrorKind::Conflict,
            RolloutError::NothingToChange(_) => ErrorKind::NothingToChange,
            RolloutError::NotConfirmed(_) => ErrorKind::NotConfirmed,
            RolloutError::Report(e) => crate::exit::Classified::kind(e),
            _ => ErrorKind::CouldNotRun,
        }
    }
}

/// The longest flag name (Unleash's own limit) and conversation id taken.
pub const MAX_FLAG_NAME: usize = 100;
pub const MAX_CONVERSATION_ID: usize = 255;

/// A flag name as Unleash takes it on import: URL-friendly (letters, digits, `-`, `_`, `.`,
/// `~`), 1 to 100 characters. Anything else would be created here and refused by Unleash.
pub fn flag_name(s: &str) -> Result<String, String> {
    let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '~');
    if s.is_empty() || s.len() > MAX_FLAG_NAME || !s.chars().all(ok) {
        return Err(format!(
            "{:?} is not a flag name: 1 to {MAX_FLAG_NAME} letters, digits, '-', '_', '.' or '~' (Unleash's rule)",
            crate::output::escape(&s.chars().take(40).collect::<String>())
        ));
    }
    Ok(s.to_string())
}

/// A conversation id: 1 to 255 characters, no white space or control characters.
pub fn conversation_id(s: &str) -> Result<String, String> {
    if s.is_empty() || s.len() > MAX_CONVERSATION_ID || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "{:?} is not a conversation id: 1 to {MAX_CONVERSATION_ID} characters without spaces or control characters",
            crate::output::escape(&s.chars().take(40).collect::<String>())
        ));
    }
    Ok(s.to_string())
}

/// A planned change of a flag: what it was (with the version read) and what it will be.
#[derive(Debug, Clone)]
pub struct Change {
    pub action: Action,
    pub before: Flag,
    pub enabled: bool,
    pub percent: u8,
    pub reason: String,
}

/// What a change of the flag row is, for the audit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Set,
    Advance,
    Rollback,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Set => "set",
            Action::Advance => "advance",
            Action::Rollback => "rollback",
        }
    }
}

/// Checks a percentage given by the user.
pub fn percent(v: i64) -> Result<u8, RolloutError> {
    u8::try_from(v)
        .ok()
        .filter(|p| *p <= 100)
        .ok_or_else(|| RolloutError::Usage(format!("--percent {v} is outside 0..100")))
}

/// Checks a plan's steps: each a percentage, strictly increasing.
pub fn steps(text: &str) -> Result<Vec<u8>, RolloutError> {
    let mut out: Vec<u8> = Vec::new();
    for s in text.split(',').map(str::trim) {
        let v: i64 = s.parse().map_err(|_| RolloutError::Usage(format!("--steps: {s:?} is not a percentage")))?;
        let p = percent(v).map_err(|_| RolloutError::Usage(format!("--steps: {v} is outside 0..100")))?;
        if out.last().is_some_and(|last| *last >= p) {
            return Err(RolloutError::Usage(format!(
                "--steps {text}: the steps must increase ({p} after {})",
                out.last().copied().unwrap_or_default()
            )));
        }
        out.push(p);
    }
    if out.is_empty() {
        return Err(RolloutError::Usage("--steps: no step given".into()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_and_steps_are_checked() {
        assert_eq!(percent(50).unwrap(), 50);
        assert!(percent(101).unwrap_err().to_string().contains("outside 0..100"));
        assert!(percent(-1).is_err());
        assert_eq!(steps("10,50,100").unwrap(), [10, 50, 100]);
        assert!(steps("10,5").unwrap_err().to_string().contains("must increase"));
        assert!(steps("10,10").is_err());
        assert!(steps("10,x").unwrap_err().to_string().contains("\"x\""));
        assert!(steps("10,150").unwrap_err().to_string().contains("150"));
    }
}
