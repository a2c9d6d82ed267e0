//! The rollout's operations, each from the configuration: read (`status`, `which`, `history`)
//! and change (`set`, `override`, `rollback`). A change is planned first (the flag read, with
//! its version) so that the command can show before → after and ask; then applied, refused if
//! someone changed the flag in between.

use std::time::Duration;

use chrono::Utc;

use super::bucket;
use super::render::{ChangeReport, HistoryReport, StatusReport, WhichReport};
use super::store::Db;
use super::switch::kill_switch;
use super::{Action, Actor, Change, Flag, RolloutError};
use crate::config::Config;

pub async fn status(config: &Config, flag: &str, active_window: Duration) -> Result<StatusReport, RolloutError> {
    let db = Db::open(config).await?;
    let f = db.flag(flag).await?;
    let since = db.step_started(flag).await?;
    let from = Utc::now() - chrono::Duration::from_std(active_window).unwrap_or(chrono::Duration::MAX);
    let active = db.active(&config.contracts, from, Utc::now()).await?;
    let overrides = db.overrides(flag, None).await?;
    let ks = kill_switch(config, flag);
    let (on, off) = super::cohorts::partition(&f, ks, &overrides, active);
    let recent = db.history(flag, 5).await?;
    Ok(StatusReport {
        flag: f,
        kill_switch: ks,
        step_since: since,
        active_window,
        active: on.len() + off.len(),
        on: on.len(),
        overrides: overrides.len(),
        recent,
    })
}

pub async fn which(config: &Config, flag: &str, ids: Vec<String>) -> Result<WhichReport, RolloutError> {
    let db = Db::open(config).await?;
    let f = db.flag(flag).await?;
    // Overrides are few: past a page of ids, reading them all beats sending every id.
    let overrides = db.overrides(flag, (ids.len() <= 1000).then_some(ids.as_slice())).await?;
    let ks = kill_switch(config, flag);
    let decisions = ids.iter().map(|id| bucket::decide(&f, ks, overrides.get(id).copied(), id)).collect();
    Ok(WhichReport { flag: f.name, decisions })
}

pub async fn history(config: &Config, flag: &str, limit: i64) -> Result<HistoryReport, RolloutError> {
    let db = Db::open(config).await?;
    db.flag(flag).await?;
    Ok(HistoryReport { flag: flag.to_string(), rows: db.history(flag, limit).await? })
}

/// A change read and ready to apply.
pub struct Planned {
    db: Db,
    pub change: Change,
}

impl Planned {
    pub(super) fn new(db: Db, change: Change) -> Planned {
        Planned { db, change }
    }

    /// What the flag is, when applying would change nothing: no write, no version bumped, no
    /// audit row (a write that changes nothing would still make a concurrent real change lose).
    pub fn unchanged(&self) -> ChangeReport {
        let b = &self.change.before;
        ChangeReport { action: self.change.action, before: b.clone(), after: b.clone() }
    }

    /// Applies it (refused if the flag changed since it was read).
    pub async fn apply(self, actor: &Actor) -> Result<ChangeReport, RolloutError> {
        let after = self.db.apply(&self.change, actor).await?;
        Ok(ChangeReport { action: self.change.action, before: self.change.before, after })
    }

    /// Whether applying it would change anything.
    pub fn changes_anything(&self) -> bool {
        self.change.enabled != self.change.before.enabled || self.change.percent != self.change.before.percent
    }
}

/// Plans `set --percent`: on at `percent` (creating the flag first when `create`).
pub async fn plan_set(
    config: &Config,
    flag: &str,
    percent: u8,
    reason: &str,
    create: Option<&Actor>,
) -> Result<Planned, RolloutError> {
    let db = Db::open(config).await?;
    let before = match create {
        Some(actor) => db.create(flag, actor, "created by rollout set --create").await?,
        None => db.flag(flag).await?,
    };
    let change = Change { action: Action::Set, before, enabled: true, percent, reason: reason.to_string() };
    Ok(Planned { db, change })
}

/// Plans a rollback: the flag off, its percentage kept for the record.
pub async fn plan_rollback(config: &Config, flag: &str, reason: &str) -> Result<Planned, RolloutError> {
    let db = Db::open(config).await?;
    let before = db.flag(flag).await?;
    let change = Change {
        action: Action::Rollback,
        enabled: false,
        percent: before.percent,
        before,
        reason: reason.to_string(),
    };
    Ok(Planned { db, change })
}

/// `on`, `off`, or remove the override.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverrideTo {
    On,
    Off,
    Clear,
}

/// An override about to be set: the flag and the conversation's decision as read.
pub struct OverrideRead {
    db: Db,
    flag: Flag,
    kill_switch: bool,
    conversation: String,
    /// The override in force now, if any.
    pub existing: Option<bucket::InForce>,
}

/// Reads the flag and the override of `conversation` (nothing written).
pub async fn read_override(config: &Config, flag: &str, conversation: &str) -> Result<OverrideRead, RolloutError> {
    let db = Db::open(config).await?;
    let f = db.flag(flag).await?;
    let kill_switch = kill_switch(config, flag);
    let ids = [conversation.to_string()];
    let existing = db.overrides(flag, Some(&ids)).await?.get(conversation).copied();
    Ok(OverrideRead { db, flag: f, kill_switch, conversation: conversation.to_string(), existing })
}

impl OverrideRead {
    /// Saves it (for `duration`, else until cleared) under the flag's version as read; returns
    /// the flag and the decision before and after.
    pub async fn save(
        self,
        to: OverrideTo,
        duration: Option<Duration>,
        reason: &str,
        actor: &Actor,
    ) -> Result<(Flag, bucket::Decision, bucket::Decision), RolloutError> {
        let (f, ks, id) = (&self.flag, self.kill_switch, self.conversation.as_str());
        let before = bucket::decide(f, ks, self.existing, id);
        let expires = duration.map(|d| Utc::now() + chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX));
        let enabled = match to {
            OverrideTo::On => Some(true),
            OverrideTo::Off => Some(false),
            OverrideTo::Clear => None,
        };
        self.db.set_override(f, id, enabled, expires, reason, actor).await?;
        let ids = [id.to_string()];
        let now = self.db.overrides(&f.name, Some(&ids)).await?.get(id).copied();
        let after = bucket::decide(f, ks, now, id);
        Ok((self.flag, before, after))
    }
}
