//! The rollout's rows in Postgres: flags read and changed under optimistic concurrency, each
//! change with its audit row in the same transaction; overrides; the history.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row};

use super::bucket::InForce;
use super::{Actor, Change, Flag, RolloutError};
use crate::contracts::FlagTables;
use crate::store::MirrorError;
use crate::store::postgres::{Deadline, limit_of};

/// The rollout's database: a pool, its address (password removed) and the tables.
pub struct Db {
    pub pool: PgPool,
    pub addr: String,
    pub tables: FlagTables,
    /// Every round trip's deadline: the command's time-out.
    pub limit: std::time::Duration,
}

impl Db {
    /// The configured Postgres, with the three tables present.
    pub async fn open(config: &crate::config::Config) -> Result<Db, RolloutError> {
        let pg = crate::store::postgres::Pg::required(config).await?;
        Db::of(pg, config.contracts.flags.clone()).await
    }

    /// The rollout's tables in the database `pg` is connected to, checked present.
    pub async fn of(pg: crate::store::postgres::Pg, tables: FlagTables) -> Result<Db, RolloutError> {
        let crate::store::postgres::Pg { pool, addr } = pg;
        let (a, b, c): (bool, bool, bool) = crate::store::postgres::statement_as(&tables.exist_sql())
            .fetch_one(&pool)
            .within(limit_of(&pool))
            .await
            .map_err(MirrorError::pg("to_regclass", &addr))?;
        if !(a && b && c) {
            let names = [&tables.flags, &tables.overrides, &tables.audit].map(ToString::to_string).join(", ");
            return Err(RolloutError::NoTables { addr, tables: names });
        }
        let limit = limit_of(&pool);
        Ok(Db { pool, addr, tables, limit })
    }

    fn err(&self, op: &str) -> impl FnOnce(sqlx::Error) -> MirrorError + use<> {
        MirrorError::pg(op.to_string(), &self.addr)
    }

    /// Every flag.
    pub async fn flags(&self) -> Result<Vec<Flag>, RolloutError> {
        let rows = crate::store::postgres::statement(&self.tables.list_sql())
            .fetch_all(&self.pool)
            .within(self.limit)
            .await
            .map_err(self.err("SELECT flags"))?;
        rows.iter().map(|r| flag_of(r).map_err(|e| self.err("read flag")(e).into())).collect()
    }

    /// Flag `name`; an unknown one is a usage error naming the known ones.
    pub async fn flag(&self, name: &str) -> Result<Flag, RolloutError> {
        let row = crate::store::postgres::statement(&self.tables.flag_sql())
            .bind(name)
            .fetch_optional(&self.pool)
            .within(self.limit)
            .await
            .map_err(self.err("SELECT flag"))?;
        if let Some(row) = row {
            return flag_of(&row).map_err(|e| self.err("read flag")(e).into());
        }
        let all = self.flags().await?;
        let known: Vec<&str> = all.iter().map(|f| f.name.as_str()).collect();
        Err(RolloutError::Usage(format!(
            "unknown flag {name:?} (known: {}); `rollout set --create` makes a new one",
            if known.is_empty() { "none".to_string() } else { known.join(", ") }
        )))
    }

    /// Creates flag `name` off at 0 % with its audit row; an existing one is left as it is.
    pub async fn create(&self, name: &str, actor: &Actor, reason: &str) -> Result<Flag, RolloutError> {
        let mut tx = self.pool.begin().within(self.limit).await.map_err(self.err("BEGIN"))?;
        let row = crate::store::postgres::statement(&self.tables.create_sql())
            .bind(name)
            .bind(&actor.who)
            .bind(reason)
            .fetch_optional(&mut *tx)
            .within(self.limit)
            .await
            .map_err(self.err("INSERT flag"))?;
        if let Some(row) = row {
            let flag = flag_of(&row).map_err(self.err("read flag"))?;
            self.audit(&mut tx, &flag.name, "create", None, Some(flag.state()), reason, actor).await?;
            tx.commit().within(self.limit).await.map_err(self.err("COMMIT"))?;
        }
        self.flag(name).await
    }

    /// Applies a change if the flag is still at the version read; else [`RolloutError::Conflict`]
    /// and nothing changed. The audit row goes in the same transaction; the flag is read back
    /// after the commit.
    pub async fn apply(&self, change: &Change, actor: &Actor) -> Result<Flag, RolloutError> {
        let b = &change.before;
        let mut tx = self.pool.begin().within(self.limit).await.map_err(self.err("BEGIN"))?;
        let row = crate::store::postgres::statement(&self.tables.update_sql())
            .bind(&b.name)
            .bind(b.version)
            .bind(change.enabled)
            .bind(i32::from(change.percent))
            .bind(&actor.who)
            .bind(&change.reason)
            .fetch_optional(&mut *tx)
            .within(self.limit)
            .await
            .map_err(self.err("UPDATE flag"))?;
        let Some(row) = row else {
            drop(tx);
            return Err(self.conflict(&b.name, b.version).await);
        };
        let after = flag_of(&row).map_err(self.err("read flag"))?;
        let action = change.action.as_str();
        self.audit(&mut tx, &b.name, action, Some(b.state()), Some(after.state()), &change.reason, actor).await?;
        tx.commit().within(self.limit).await.map_err(self.err("COMMIT"))?;
        // Read back what the table holds now: that is what the app reads (a later change by
        // someone else shows here as a higher version, not as ours).
        self.flag(&b.name).await
    }

    /// The refusal of a change made against version `read` of flag `name`: who changed it since.
    async fn conflict(&self, name: &str, read: i64) -> RolloutError {
        match self.flag(name).await {
            Ok(now) => RolloutError::Conflict {
                flag: name.to_string(),
                by: now.updated_by,
                at: now.updated_at,
                read,
                now: now.version,
            },
            Err(e) => e,
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn audit(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
        flag: &str,
        action: &str,
        before: Option<Value>,
        after: Option<Value>,
        reason: &str,
        actor: &Actor,
    ) -> Result<(), RolloutError> {
        crate::store::postgres::statement(&self.tables.audit_sql())
            .bind(flag)
            .bind(&actor.who)
            .bind(action)
            .bind(before)
            .bind(after)
            .bind(reason)
            .bind(&actor.command)
            .execute(&mut **tx)
            .within(self.limit)
            .await
            .map_err(self.err("INSERT audit"))?;
        Ok(())
    }

    /// Sets (or with `enabled` `None` removes) the override of `conversation`, with its audit row.
    pub async fn set_override(
        &self,
        flag: &Flag,
        conversation: &str,
        enabled: Option<bool>,
        expires: Option<DateTime<Utc>>,
        reason: &str,
        actor: &Actor,
    ) -> Result<(), RolloutError> {
        let mut tx = self.pool.begin().within(self.limit).await.map_err(self.err("BEGIN"))?;
        // The same optimistic check as a change of the flag: the override was shown and
        // confirmed against this version of the flag.
        let version: Option<i64> = crate::store::postgres::scalar(&self.tables.lock_flag_sql())
            .bind(&flag.name)
            .fetch_optional(&mut *tx)
            .within(self.limit)
            .await
            .map_err(self.err("SELECT flag FOR UPDATE"))?;
        if version != Some(flag.version) {
            drop(tx);
            return Err(self.conflict(&flag.name, flag.version).await);
        }
        let after = match enabled {
            Some(on) => {
                crate::store::postgres::statement(&self.tables.override_sql())
                    .bind(&flag.name)
                    .bind(conversation)
                    .bind(on)
                    .bind(expires)
                    .bind(&actor.who)
                    .bind(reason)
                    .execute(&mut *tx)
                    .within(self.limit)
                    .await
                    .map_err(self.err("INSERT override"))?;
                Some(serde_json::json!({"conversation": conversation, "enabled": on, "expires_at": expires}))
            }
            None => {
                crate::store::postgres::statement(&self.tables.clear_override_sql())
                    .bind(&flag.name)
                    .bind(conversation)
                    .execute(&mut *tx)
                    .within(self.limit)
                    .await
                    .map_err(self.err("DELETE override"))?;
                Some(serde_json::json!({"conversation": conversation, "cleared": true}))
            }
        };
        self.audit(&mut tx, &flag.name, "override", None, after, reason, actor).await?;
        tx.commit().within(self.limit).await.map_err(self.err("COMMIT"))?;
        Ok(())
    }

    /// The overrides of `flag` in force now, for `ids` (`None`: all).
    pub async fn overrides(
        &self,
        flag: &str,
        ids: Option<&[String]>,
    ) -> Result<HashMap<String, InForce>, RolloutError> {
        let rows: Vec<(String, bool, Option<DateTime<Utc>>)> =
            crate::store::postgres::statement_as(&self.tables.overrides_sql())
                .bind(flag)
                .bind(Utc::now())
                .bind(ids)
                .fetch_all(&self.pool)
                .within(self.limit)
                .await
                .map_err(self.err("SELECT overrides"))?;
        Ok(rows.into_iter().map(|(c, enabled, expires)| (c, InForce { enabled, expires })).collect())
    }

    /// The newest `limit` audit rows of `flag`.
    pub async fn history(&self, flag: &str, limit: i64) -> Result<Vec<AuditRow>, RolloutError> {
        let rows = crate::store::postgres::statement(&self.tables.history_sql())
            .bind(flag)
            .bind(limit)
            .fetch_all(&self.pool)
            .within(self.limit)
            .await
            .map_err(self.err("SELECT audit"))?;
        rows.iter().map(|r| audit_of(r).map_err(|e| self.err("read audit")(e).into())).collect()
    }

    /// When the flag's current step (percentage and on/off) began.
    pub async fn step_started(&self, flag: &str) -> Result<Option<DateTime<Utc>>, RolloutError> {
        crate::store::postgres::scalar(&self.tables.step_started_sql())
            .bind(flag)
            .fetch_one(&self.pool)
            .within(self.limit)
            .await
            .map_err(|e| self.err("SELECT audit")(e).into())
    }

    /// Customer conversations (not test traffic) with an event in `[since, until)`, from the mirror.
    pub async fn active(
        &self,
        contracts: &crate::contracts::Contracts,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Vec<String>, RolloutError> {
        crate::store::postgres::scalar(&contracts.table.active_ids_sql())
            .bind(since)
            .bind(contracts.synthetic_like())
            .bind(until)
            .fetch_all(&self.pool)
            .within(self.limit)
            .await
            .map_err(|e| self.err(&format!("SELECT active conversations FROM {}", contracts.table))(e).into())
    }
}

/// One audit row.
#[derive(Debug, Clone, Serialize)]
pub struct AuditRow {
    pub id: i64,
    pub flag: String,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub action: String,
    pub before: Option<Value>,
    pub after: Option<Value>,
    pub reason: String,
    pub command: String,
}

fn flag_of(r: &PgRow) -> Result<Flag, sqlx::Error> {
    let percent: i32 = r.try_get("rollout_percent")?;
    Ok(Flag {
        name: r.try_get("name")?,
        enabled: r.try_get("enabled")?,
        // The table's CHECK keeps it within 0..=100.
        percent: u8::try_from(percent.clamp(0, 100)).unwrap_or(0),
        stickiness: r.try_get("stickiness")?,
        group_id: r.try_get("group_id")?,
        version: r.try_get("version")?,
        updated_at: r.try_get("updated_at")?,
        updated_by: r.try_get("updated_by")?,
        reason: r.try_get("reason")?,
    })
}

fn audit_of(r: &PgRow) -> Result<AuditRow, sqlx::Error> {
    Ok(AuditRow {
        id: r.try_get("id")?,
        flag: r.try_get("flag")?,
        at: r.try_get("at")?,
        actor: r.try_get("actor")?,
        action: r.try_get("action")?,
        before: r.try_get("before")?,
        after: r.try_get("after")?,
        reason: r.try_get("reason")?,
        command: r.try_get("command")?,
    })
}
