//! Reading the Redis mirror: the streams of the selected (or every active) conversation, in
//! conversation id order, several XRANGEs per round trip, with exclusive cursors.

use super::{Cursor, Page};
use crate::contracts::Contracts;
use crate::event::MirroredEvent;
use crate::redis_handle::Redis;
use crate::replay::{Malformed, Selection};
use crate::store::MirrorError;

pub struct RedisSource {
    redis: Redis,
    contracts: Contracts,
    sel: Selection,
    /// Conversations still to read, in reverse (the next one is last), and the entry id after
    /// which the current one continues.
    queue: Vec<String>,
    cursor: Option<String>,
    /// Entries and finished conversations so far: how many conversations fill a page.
    entries_seen: usize,
    convs_seen: usize,
}

impl RedisSource {
    /// Reads `sel.conversations`, or every conversation of the active set, in conversation id
    /// order (a stable order, so that a checkpoint can name where it stopped), from `at`.
    pub async fn new(mut redis: Redis, contracts: Contracts, sel: Selection, at: &Cursor) -> Result<Self, MirrorError> {
        let mut queue = sel.conversations.clone();
        if queue.is_empty() {
            let key = contracts.active_key();
            queue = redis::cmd("ZRANGE")
                .arg(&key)
                .arg(0)
                .arg(-1)
                .query_async(&mut redis.conn)
                .await
                .map_err(redis.err(&format!("ZRANGE {key}")))?;
        }
        queue.sort();
        queue.dedup();
        let mut cursor = None;
        match at {
            Cursor::Start => {}
            Cursor::Redis { conversation, after } => {
                queue.retain(|c| c >= conversation);
                if queue.first() == Some(conversation) {
                    cursor = after.clone();
                }
            }
            Cursor::Done => queue.clear(),
            other => return Err(MirrorError::Cursor(format!("a Redis replay cannot resume from {other:?}"))),
        }
        queue.reverse();
        Ok(RedisSource { redis, contracts, sel, queue, cursor, entries_seen: 0, convs_seen: 0 })
    }

    /// Where the next page starts.
    pub fn position(&self) -> Cursor {
        match self.queue.last() {
            Some(c) => Cursor::Redis { conversation: c.clone(), after: self.cursor.clone() },
            None => Cursor::Done,
        }
    }

    /// Upper bound of the events to read: the stream lengths of the conversations left.
    pub async fn estimate(&mut self) -> Result<u64, MirrorError> {
        // A finished or empty replay has nothing left; Redis refuses an empty pipeline.
        if self.queue.is_empty() {
            return Ok(0);
        }
        let mut pipe = redis::pipe();
        for c in &self.queue {
            pipe.cmd("XLEN").arg(self.contracts.stream_key(c));
        }
        let lens: Vec<u64> = pipe.query_async(&mut self.redis.conn).await.map_err(self.redis.err("XLEN"))?;
        Ok(lens.iter().sum())
    }

    /// Reads about `page_size` stream entries, going on to the next conversations when one ends.
    /// The XRANGEs of several conversations (as many as should fill the page, at most [`AHEAD`])
    /// go in one pipeline: most conversations are short, and a round trip each would dominate.
    /// Every entry read is used: a page holds at most `AHEAD` times `page_size` entries.
    pub(super) async fn next_page(&mut self) -> Result<Page, MirrorError> {
        let mut page = Page::default();
        let mut read = 0;
        while read < self.sel.page_size && !self.queue.is_empty() {
            let want = self.sel.page_size - read;
            // As many conversations as should fill the page, judging by those read so far.
            let per_conv = (self.entries_seen / self.convs_seen.max(1)).max(1);
            let ahead = want.div_ceil(per_conv).clamp(1, AHEAD);
            let batch: Vec<String> = self.queue.iter().rev().take(ahead).cloned().collect();
            let mut pipe = redis::pipe();
            for (i, conv) in batch.iter().enumerate() {
                // Stream ids start with the write time in ms: start the scan at the window's start.
                let start = match (&self.cursor, i) {
                    (Some(c), 0) => format!("({c}"),
                    _ => self.sel.since.timestamp_millis().max(0).to_string(),
                };
                pipe.cmd("XRANGE").arg(self.contracts.stream_key(conv)).arg(start).arg("+").arg("COUNT").arg(want);
            }
            // Field pairs in a Vec rather than a HashMap: five fields, looked up a few times each.
            let results: Vec<Vec<StreamEntry>> =
                pipe.query_async(&mut self.redis.conn).await.map_err(self.redis.err("XRANGE"))?;
            for (conv, entries) in batch.iter().zip(results) {
                let key = self.contracts.stream_key(conv);
                read += entries.len();
                self.entries_seen += entries.len();
                for (id, fields) in entries.iter() {
                    let read = if self.sel.raw {
                        raw_event_of(conv, &self.contracts, fields).map(|e| {
                            if self.sel.wants(&e.id, &e.name, e.timestamp_ms) {
                                page.raw.push(e)
                            }
                        })
                    } else {
                        event_of(conv, &self.contracts, fields).map(|e| {
                            if self.sel.wants(&e.id, &e.name, e.timestamp_ms) {
                                page.events.push(e)
                            }
                        })
                    };
                    if let Err(reason) = read {
                        page.malformed.push(Malformed { position: format!("{key} {id}"), reason });
                    }
                }
                if entries.len() == want {
                    // Maybe more in this conversation: the next page continues after its last entry.
                    self.cursor = entries.last().map(|(id, _)| id.clone());
                    break;
                }
                self.queue.pop();
                self.cursor = None;
                self.convs_seen += 1;
            }
            if self.cursor.is_some() {
                break;
            }
        }
        page.more = !self.queue.is_empty();
        Ok(page)
    }
}

/// A stream entry: its id and its field pairs.
type StreamEntry = (String, Vec<(String, String)>);

/// Conversations whose XRANGE go in one pipeline.
const AHEAD: usize = 16;

fn raw_event_of(conv: &str, contracts: &Contracts, f: &[(String, String)]) -> Result<crate::replay::RawEvent, String> {
    let field = |k: &str| f.iter().find(|(name, _)| name == k).map(|(_, v)| v);
    let get = |k: &str| field(k).ok_or_else(|| format!("missing field {k:?}"));
    let data =
        serde_json::value::RawValue::from_string(get("data")?.clone()).map_err(|e| format!("data is not JSON: {e}"))?;
    let timestamp_ms = get("timestamp")?.parse::<i64>().map_err(|_| "timestamp is not a number".to_string())?;
    Ok(crate::replay::RawEvent {
        id: get("id")?.clone(),
        conversation_id: conv.to_string(),
        channel: contracts.channel_of(conv),
        name: get("name")?.clone(),
        data,
        client_id: field("clientId").filter(|c| !c.is_empty()).cloned(),
        timestamp_ms,
    })
}

fn event_of(conv: &str, contracts: &Contracts, f: &[(String, String)]) -> Result<MirroredEvent, String> {
    raw_event_of(conv, contracts, f)?.parsed().map_err(|e| format!("data is not JSON: {e}"))
}
