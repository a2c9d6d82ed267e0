//! Reading the Postgres mirror: streaming queries of 100,000 rows in time order (or one page in
//! conversation order), keyset between them, the SQL from the table contract.

use futures::TryStreamExt;
use sqlx::{PgPool, Row};

use super::{Cursor, Page, PageSender};
use crate::contracts::Table;
use crate::contracts::sql::{After, ReadOrder, col};
use crate::replay::{Malformed, Selection};
use crate::store::MirrorError;
use crate::store::postgres::{Deadline, limit_of};

/// The order Postgres rows are read in: by time (timelines), or conversation by conversation
/// (backfilling Redis, which writes one stream at a time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    Time,
    Conversation,
}

/// Rows per query: 100,000, streamed, in either order. Each chunk runs with sorts and bitmap
/// scans off, so the plan is the index walk in key order whatever the statistics say (in
/// conversation order a chunk was once one page long, because a large LIMIT made the planner
/// sort the whole window; a query per 1,000-row page cost a third of a backfill's time).
const CHUNK: i64 = 100_000;

pub struct PostgresSource {
    pool: PgPool,
    addr: String,
    table: Table,
    sel: Selection,
    order: Order,
    cursor: Cursor,
}

impl PostgresSource {
    pub fn new(pool: PgPool, addr: String, table: Table, sel: Selection, order: Order, at: &Cursor) -> Self {
        PostgresSource { pool, addr, table, sel, order, cursor: at.clone() }
    }

    pub fn position(&self) -> Cursor {
        self.cursor.clone()
    }

    fn conversations(&self) -> Option<Vec<String>> {
        (!self.sel.conversations.is_empty()).then(|| self.sel.conversations.clone())
    }

    fn err(&self, op: &str) -> impl FnOnce(sqlx::Error) -> MirrorError + use<> {
        MirrorError::pg(format!("{op} {}", self.table), &self.addr)
    }

    /// The number of rows in the window (what a replay will read, malformed ones included).
    pub async fn estimate(&self) -> Result<u64, MirrorError> {
        let n: i64 = crate::store::postgres::scalar(&self.table.count_window_sql())
            .bind(self.sel.since)
            .bind(self.sel.until)
            .bind(self.conversations())
            .fetch_one(&self.pool)
            .within(limit_of(&self.pool))
            .await
            .map_err(self.err("SELECT count(*) FROM"))?;
        Ok(n.max(0) as u64)
    }

    /// Reads the window in chunks ([`CHUNK`] rows), each one streaming query (keyset from the
    /// last row), cut into pages as rows arrive; each page goes out with the position after it.
    /// The socket's flow control holds Postgres back while the writer is busy.
    pub(super) async fn stream(mut self, tx: PageSender) {
        let mut page = self.empty_page();
        let mut in_page = 0;
        loop {
            let sql = match self.sql() {
                Ok(Some(q)) => q,
                Ok(None) => break,
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            };
            let pool = self.pool.clone();
            let (at, id, conversation) = match &self.cursor {
                Cursor::PgTime { at, id } => (Some(*at), Some(id.clone()), None),
                Cursor::PgConversation { conversation, at, id } => {
                    (Some(*at), Some(id.clone()), Some(conversation.clone()))
                }
                _ => (None, None, None),
            };
            let mut q = crate::store::postgres::statement(&sql)
                .bind(self.sel.since)
                .bind(self.sel.until)
                .bind(self.conversations());
            if at.is_some() {
                q = q.bind(at).bind(id);
            }
            if conversation.is_some() {
                q = q.bind(conversation);
            }
            // Each chunk in a read-only transaction whose planner settings make the plan the
            // index walk in key order, whatever the statistics say (a freshly restored table
            // has none, and its estimates chose a full sort of the window).
            let limit = limit_of(&pool);
            let mut txn = match pool.begin().within(limit).await {
                Ok(t) => t,
                Err(source) => {
                    let _ = tx.send(Err(self.err("BEGIN")(source))).await;
                    return;
                }
            };
            for setting in crate::contracts::sql::STABLE_PLAN {
                if let Err(source) = crate::store::postgres::statement(setting).execute(&mut *txn).within(limit).await {
                    let _ = tx.send(Err(self.err("SET LOCAL")(source))).await;
                    return;
                }
            }
            let mut rows = q.bind(CHUNK).fetch(&mut *txn);
            let mut in_chunk = 0;
            loop {
                // A stall between rows ends the read as a stall anywhere else does.
                match rows.try_next().within(limit).await {
                    Ok(Some(row)) => {
                        self.take(&row, &mut page);
                        in_chunk += 1;
                        in_page += 1;
                        if in_page == self.sel.page_size {
                            page.more = true;
                            let full = std::mem::replace(&mut page, self.empty_page());
                            if tx.send(Ok((full, self.cursor.clone()))).await.is_err() {
                                return;
                            }
                            in_page = 0;
                        }
                    }
                    Ok(None) => break,
                    Err(source) => {
                        let e = self.err("SELECT FROM")(source);
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                }
            }
            drop(rows);
            // Read only: nothing to commit.
            let _ = txn.rollback().await;
            if in_chunk < CHUNK {
                break;
            }
        }
        self.cursor = Cursor::Done;
        let _ = tx.send(Ok((page, Cursor::Done))).await;
    }

    /// The next chunk's query from the current position (`None`: nothing left).
    fn sql(&self) -> Result<Option<String>, MirrorError> {
        let order = match self.order {
            Order::Time => ReadOrder::Time,
            Order::Conversation => ReadOrder::Conversation,
        };
        let after = match (&self.cursor, self.order) {
            (Cursor::Done, _) => return Ok(None),
            (Cursor::Start, _) => After::Start,
            (Cursor::PgTime { .. }, Order::Time) | (Cursor::PgConversation { .. }, Order::Conversation) => After::Key,
            (other, _) => {
                return Err(MirrorError::Cursor(format!("this Postgres replay cannot resume from {other:?}")));
            }
        };
        Ok(Some(self.table.read_sql(order, after)))
    }

    /// A page sized for what it will hold: grown by doubling, a page of 5,000 events was a
    /// dozen copies into fresh memory.
    fn empty_page(&self) -> Page {
        let mut page = Page::default();
        let n = self.sel.page_size.min(100_000);
        if self.sel.raw {
            page.raw.reserve(n)
        } else {
            page.events.reserve(n)
        }
        page
    }

    /// One row into the page (or its malformed list), moving the cursor past it.
    fn take(&mut self, row: &sqlx::postgres::PgRow, page: &mut Page) {
        let id: String = row.get(col::ID);
        let t: chrono::DateTime<chrono::Utc> = row.get(col::OCCURRED_AT);
        let conversation_id: String = row.get(col::CONVERSATION_ID);
        self.cursor = match self.order {
            Order::Time => Cursor::PgTime { at: t, id: id.clone() },
            Order::Conversation => {
                Cursor::PgConversation { conversation: conversation_id.clone(), at: t, id: id.clone() }
            }
        };
        let name: String = row.get(col::NAME);
        if !self.sel.wants_event(&id, &name) {
            return;
        }
        let malformed = |reason: String| Malformed { position: format!("{} id {id}", self.table), reason };
        // jsonb arrives as its JSON text: kept as it is, parsed only when the caller wants a tree.
        type Raw = sqlx::types::Json<Box<serde_json::value::RawValue>>;
        let data = match row.try_get::<Option<Raw>, _>(col::DATA) {
            Ok(Some(data)) => data.0,
            Ok(None) => return page.malformed.push(malformed("data is NULL".into())),
            Err(e) => return page.malformed.push(malformed(format!("data: {e}"))),
        };
        let raw = crate::replay::RawEvent {
            data,
            channel: row.get(col::CHANNEL),
            client_id: row.get(col::CLIENT_ID),
            timestamp_ms: t.timestamp_millis(),
            id: id.clone(),
            conversation_id,
            name,
        };
        if self.sel.raw {
            page.raw.push(raw);
        } else {
            match raw.parsed() {
                Ok(e) => page.events.push(e),
                Err(e) => page.malformed.push(malformed(format!("data: {e}"))),
            }
        }
    }
}
