//! Backfilling one mirror from the other, idempotent on the Ably message id: what both targets
//! share, and Postgres (`INSERT … ON CONFLICT (id) DO NOTHING`). Redis is [`super::to_redis`].

use sqlx::PgPool;

use crate::contracts::Table;
use crate::mirror::{MirrorError, MirroredEvent};

/// What one write did.
#[derive(Debug, Default, Clone, Copy)]
pub struct Written {
    pub written: u64,
    pub skipped: u64,
    pub expired: u64,
}

/// What a stream entry is made of: a parsed event, or one whose `data` is still JSON text.
pub trait StreamRow {
    fn conversation(&self) -> &str;
    fn timestamp_ms(&self) -> i64;
    fn entry(&self) -> (&str, &str, std::borrow::Cow<'_, str>, &str, i64);
}

impl StreamRow for MirroredEvent {
    fn conversation(&self) -> &str {
        &self.conversation_id
    }
    fn timestamp_ms(&self) -> i64 {
        self.timestamp_ms
    }
    fn entry(&self) -> (&str, &str, std::borrow::Cow<'_, str>, &str, i64) {
        let client = self.client_id.as_deref().unwrap_or("");
        (&self.id, &self.name, self.data.to_string().into(), client, self.timestamp_ms)
    }
}

impl StreamRow for super::RawEvent {
    fn conversation(&self) -> &str {
        &self.conversation_id
    }
    fn timestamp_ms(&self) -> i64 {
        self.timestamp_ms
    }
    fn entry(&self) -> (&str, &str, std::borrow::Cow<'_, str>, &str, i64) {
        let client = self.client_id.as_deref().unwrap_or("");
        (&self.id, &self.name, self.data.get().into(), client, self.timestamp_ms)
    }
}

pub struct PostgresTarget {
    pool: PgPool,
    addr: String,
    table: Table,
    dry_run: bool,
}

impl PostgresTarget {
    /// The table must exist, dry run or not: a replay never creates tables in someone's
    /// database (`broker-ops db migrate` does, when asked).
    pub async fn new(pool: PgPool, addr: String, table: Table, dry_run: bool) -> Result<Self, MirrorError> {
        crate::mirror::postgres::require_table(&pool, &addr, &table).await?;
        Ok(PostgresTarget { pool, addr, table, dry_run })
    }

    pub async fn write(&mut self, events: &[MirroredEvent]) -> Result<Written, MirrorError> {
        let n = events.len() as u64;
        let written = if self.dry_run {
            let ids: Vec<&str> = events.iter().map(|e| e.id.as_str()).collect();
            let present: i64 = sqlx::query_scalar(&self.table.count_ids_sql())
                .persistent(false)
                .bind(&ids)
                .fetch_one(&self.pool)
                .await
                .map_err(MirrorError::pg(format!("SELECT count(*) FROM {}", self.table), &self.addr))?;
            n - present.max(0) as u64
        } else {
            crate::mirror::postgres::insert(&self.pool, &self.addr, &self.table, events).await?
        };
        Ok(Written { written, skipped: n - written, expired: 0 })
    }
}
