//! Paged readers of the two mirrors.

use std::collections::HashMap;

use redis::aio::ConnectionManager;
use serde_json::Value;
use sqlx::{PgPool, Row};

use super::{Malformed, Selection};
use crate::contracts::Names;
use crate::mirror::{MirrorError, MirroredEvent};

/// One page of events (in order) and the malformed entries met on the way.
#[derive(Debug, Default)]
pub struct Page {
    pub events: Vec<MirroredEvent>,
    pub malformed: Vec<Malformed>,
    /// False once the source is exhausted.
    pub more: bool,
}

/// A mirror to read from, with its cursor.
pub enum Source {
    Redis(RedisSource),
    Postgres(PostgresSource),
}

impl Source {
    pub async fn next_page(&mut self) -> Result<Page, MirrorError> {
        match self {
            Source::Redis(r) => r.next_page().await,
            Source::Postgres(p) => p.next_page().await,
        }
    }
}

pub struct RedisSource {
    conn: ConnectionManager,
    addr: String,
    names: Names,
    sel: Selection,
    /// Conversations still to read, and the cursor in the current one.
    queue: Vec<String>,
    cursor: Option<String>,
}

impl RedisSource {
    /// Reads `sel.conversations`, or every conversation of the active set (oldest activity first).
    pub async fn new(
        mut conn: ConnectionManager,
        addr: String,
        names: Names,
        sel: Selection,
    ) -> Result<Self, MirrorError> {
        let mut queue = sel.conversations.clone();
        if queue.is_empty() {
            queue = redis::cmd("ZRANGE")
                .arg(names.active_key())
                .arg(0)
                .arg(-1)
                .query_async(&mut conn)
                .await
                .map_err(|source| MirrorError::Redis { op: "ZRANGE active", addr: addr.clone(), source })?;
        }
        queue.reverse();
        Ok(RedisSource { conn, addr, names, sel, queue, cursor: None })
    }

    async fn next_page(&mut self) -> Result<Page, MirrorError> {
        let mut page = Page::default();
        while let Some(conv) = self.queue.last().cloned() {
            let key = self.names.stream_key(&conv);
            // Stream ids start with the write time in ms: start the scan at the window's start.
            let start = match &self.cursor {
                Some(c) => format!("({c}"),
                None => self.sel.since.timestamp_millis().max(0).to_string(),
            };
            let entries: Vec<(String, HashMap<String, String>)> = redis::cmd("XRANGE")
                .arg(&key)
                .arg(&start)
                .arg("+")
                .arg("COUNT")
                .arg(self.sel.page_size)
                .query_async(&mut self.conn)
                .await
                .map_err(|source| MirrorError::Redis { op: "XRANGE", addr: self.addr.clone(), source })?;
            let full = entries.len() == self.sel.page_size;
            for (id, fields) in &entries {
                match event_of(&conv, &self.names, fields) {
                    Ok(e) if self.sel.wants(&e.name, e.timestamp_ms) => page.events.push(e),
                    Ok(_) => {}
                    Err(reason) => page.malformed.push(Malformed { position: format!("{key} {id}"), reason }),
                }
            }
            if full {
                self.cursor = entries.last().map(|(id, _)| id.clone());
            } else {
                self.queue.pop();
                self.cursor = None;
            }
            if !page.events.is_empty() || full {
                break;
            }
        }
        page.more = !self.queue.is_empty();
        Ok(page)
    }
}

fn event_of(conv: &str, names: &Names, f: &HashMap<String, String>) -> Result<MirroredEvent, String> {
    let get = |k: &str| f.get(k).ok_or_else(|| format!("missing field {k:?}"));
    let data = get("data")?;
    let data: Value = serde_json::from_str(data).map_err(|e| format!("data is not JSON: {e}"))?;
    let timestamp_ms = get("timestamp")?.parse::<i64>().map_err(|_| "timestamp is not a number".to_string())?;
    Ok(MirroredEvent {
        id: get("id")?.clone(),
        conversation_id: conv.to_string(),
        channel: names.channel_of(conv),
        name: get("name")?.clone(),
        data,
        client_id: f.get("clientId").filter(|c| !c.is_empty()).cloned(),
        timestamp_ms,
    })
}

pub struct PostgresSource {
    pool: PgPool,
    addr: String,
    sel: Selection,
    cursor: Option<(chrono::DateTime<chrono::Utc>, String)>,
    done: bool,
}

impl PostgresSource {
    pub fn new(pool: PgPool, addr: String, sel: Selection) -> Self {
        PostgresSource { pool, addr, sel, cursor: None, done: false }
    }

    async fn next_page(&mut self) -> Result<Page, MirrorError> {
        let mut page = Page::default();
        if self.done {
            return Ok(page);
        }
        let (after_t, after_id) = match &self.cursor {
            Some((t, id)) => (Some(*t), Some(id.clone())),
            None => (None, None),
        };
        let convs: Option<Vec<String>> = (!self.sel.conversations.is_empty()).then(|| self.sel.conversations.clone());
        let rows = sqlx::query(
            "SELECT id, conversation_id, channel, name, data, client_id, occurred_at FROM chat_events \
             WHERE occurred_at >= $1 AND occurred_at < $2 \
               AND ($3::text[] IS NULL OR conversation_id = ANY($3)) \
               AND ($4::timestamptz IS NULL OR (occurred_at, id) > ($4, $5)) \
             ORDER BY occurred_at, id LIMIT $6",
        )
        .persistent(false)
        .bind(self.sel.since)
        .bind(self.sel.until)
        .bind(convs)
        .bind(after_t)
        .bind(after_id)
        .bind(self.sel.page_size as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(|source| MirrorError::Postgres {
            op: "SELECT chat_events",
            addr: self.addr.clone(),
            source,
        })?;
        self.done = rows.len() < self.sel.page_size;
        for row in &rows {
            let id: String = row.get("id");
            let t: chrono::DateTime<chrono::Utc> = row.get("occurred_at");
            self.cursor = Some((t, id.clone()));
            let data: Option<Value> = row.try_get("data").ok().flatten();
            let name: String = row.get("name");
            match data {
                None => page
                    .malformed
                    .push(Malformed { position: format!("chat_events id {id}"), reason: "data is NULL".into() }),
                Some(data) if self.sel.name.as_ref().is_none_or(|p| p.matches(&name)) => {
                    page.events.push(MirroredEvent {
                        id,
                        conversation_id: row.get("conversation_id"),
                        channel: row.get("channel"),
                        name,
                        data,
                        client_id: row.get("client_id"),
                        timestamp_ms: t.timestamp_millis(),
                    })
                }
                Some(_) => {}
            }
        }
        page.more = !self.done;
        Ok(page)
    }
}
