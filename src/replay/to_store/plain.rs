//! The backfill's fast path, on the bulk connection: streams that do not exist yet, or that this
//! run created and nobody has written since, take plain `XADD`s; every other stream goes through
//! the script, as before. Exactly once without Lua on the common path:
//!
//! - a stream is *new* when `EXISTS` says so after a `WATCH` on it; the page's commands then go in
//!   one `MULTI`/`EXEC`, and if anyone wrote a watched stream in between, Redis drops the whole
//!   transaction and the page goes through the script, which skips what is there;
//! - a stream this run created goes on, on the next page, with explicit ids after its own last
//!   one (`ms-seq`): an `XADD *` by anyone since has a greater id, so ours is refused, and that
//!   conversation goes through the script, which skips what we wrote before the refusal.
//!
//! Why not the script for everything: Redis spends about 1.8 us per event turning the script's
//! arguments into Lua strings and back, twice what the `XADD` itself costs (docs/performance.md).

use std::collections::{HashMap, HashSet};

use super::script::{self, Page};
use super::{StreamRow, Written};
use crate::redis_handle::RedisError;
use crate::redis_handle::bulk::{self, Bulk, Reply};

/// Where a stream this run writes stands: the next id (`ms-seq`) and its newest event.
#[derive(Debug, Clone, Copy)]
struct Tail {
    ms: i64,
    seq: u64,
    newest: i64,
}

#[derive(Debug, Clone, Copy)]
enum How {
    /// Through the script: a stream that exists, events out of order or all expired, an id
    /// twice.
    Script,
    /// Plain, from this tail on.
    Plain(Tail),
    /// Plain if `EXISTS` says the stream is absent, else the script.
    Ask,
}

/// One conversation's part of the page and how it is written.
struct Plan<'a, R> {
    conv: &'a str,
    key: String,
    events: &'a [&'a R],
    /// What a plain write writes: the events inside the stream lifetime, in page order.
    fresh: Vec<&'a R>,
    expired: u64,
    how: How,
}

/// A conversation the script must finish, and how many of its events went in plainly first.
struct Redo {
    plan: usize,
    accepted: u64,
}

/// The bulk connection and what it remembers between pages.
pub(super) struct Plain {
    conn: Bulk,
    /// Streams the last page wrote plainly, by conversation: only these go on plainly (a
    /// conversation-order read meets a conversation on at most a run of consecutive pages).
    tails: HashMap<String, Tail>,
    out: Vec<u8>,
    replies: Vec<Reply>,
}

const WRITE: &str = "XADD backfill";
const SCRIPT: &str = "EVALSHA backfill";

impl Plain {
    pub fn new(conn: Bulk) -> Plain {
        Plain { conn, tails: HashMap::new(), out: Vec::with_capacity(512 * 1024), replies: Vec::new() }
    }

    pub async fn write<R: StreamRow>(
        &mut self,
        page: &Page<'_>,
        groups: &[(&str, Vec<&R>)],
    ) -> Result<Written, RedisError> {
        let mut plans: Vec<Plan<'_, R>> = groups.iter().map(|(c, events)| self.plan(page, c, events)).collect();
        let transaction = self.ask(page, &mut plans).await?;
        let mut total = Written::default();
        let redo = match self.send(page, &plans, transaction).await? {
            Some(results) => {
                let (redo, tails) = tally(page, &plans, &results, &mut total)?;
                self.tails = tails;
                self.replies = results; // its buffer, for the next page
                redo
            }
            None => {
                // The transaction was dropped: a watched stream was written in between.
                self.tails.clear();
                (0..plans.len()).map(|plan| Redo { plan, accepted: 0 }).collect()
            }
        };
        if !redo.is_empty() {
            self.redo(page, &plans, &redo, &mut total).await?;
        }
        Ok(total)
    }

    fn plan<'a, R: StreamRow>(&self, page: &Page<'_>, conv: &'a str, events: &'a [&'a R]) -> Plan<'a, R> {
        let key = page.contracts.stream_key(conv);
        let (mut fresh, mut expired) = (Vec::with_capacity(events.len()), 0);
        let mut ids = HashSet::with_capacity(events.len());
        let (mut sorted, mut twice, mut prev) = (true, false, i64::MIN);
        for e in events {
            let (id, ts) = (e.id(), e.timestamp_ms());
            if ts.saturating_add(page.ttl_ms) <= page.now {
                expired += 1;
                continue;
            }
            twice |= !ids.insert(id);
            sorted &= ts >= prev;
            prev = ts;
            fresh.push(*e);
        }
        let first = fresh.first().map(|e| e.timestamp_ms());
        let how = match (self.tails.get(conv), first) {
            (_, None) => How::Script,
            _ if !sorted || twice => How::Script,
            (Some(t), Some(first)) if first >= t.newest => How::Plain(*t),
            (Some(_), _) => How::Script,
            (None, _) => How::Ask,
        };
        Plan { conv, key, events, fresh, expired, how }
    }

    /// Asks, in one round trip, which streams not met before exist, after a `WATCH` on them
    /// (which the page's `EXEC` ends), and Redis's clock: a new stream's first id. Returns
    /// whether the page must go as a transaction (it asked).
    async fn ask<R>(&mut self, page: &Page<'_>, plans: &mut [Plan<'_, R>]) -> Result<bool, RedisError> {
        let asked: Vec<usize> = (0..plans.len()).filter(|&i| matches!(plans[i].how, How::Ask)).collect();
        if asked.is_empty() {
            return Ok(false);
        }
        self.out.clear();
        bulk::command(&mut self.out, 1 + asked.len());
        bulk::arg(&mut self.out, b"WATCH");
        for &i in &asked {
            bulk::arg(&mut self.out, plans[i].key.as_bytes());
        }
        bulk::encode(&mut self.out, &[b"TIME"]);
        for &i in &asked {
            bulk::encode(&mut self.out, &[b"EXISTS", plans[i].key.as_bytes()]);
        }
        let op = "WATCH/EXISTS backfill";
        self.conn.exchange(op, &self.out, 2 + asked.len(), &mut self.replies).await?;
        if self.replies[0] != Reply::Status {
            return Err(bulk::unexpected(op, page.addr, &self.replies[0]));
        }
        let ms = match &self.replies[1] {
            Reply::Array(t) => match t.as_slice() {
                [Reply::Bulk(Some(s)), Reply::Bulk(Some(us))] => s.saturating_mul(1000).saturating_add(us / 1000),
                _ => return Err(bulk::unexpected(op, page.addr, &self.replies[1])),
            },
            other => return Err(bulk::unexpected(op, page.addr, other)),
        };
        for (n, &i) in asked.iter().enumerate() {
            plans[i].how = match &self.replies[2 + n] {
                Reply::Int(0) => How::Plain(Tail { ms, seq: 0, newest: i64::MIN }),
                Reply::Int(_) => How::Script,
                other => return Err(bulk::unexpected(op, page.addr, other)),
            };
        }
        Ok(true)
    }

    /// Sends the page's commands, in a transaction when `transaction`: each command's answer,
    /// `None` when Redis dropped the transaction.
    async fn send<R: StreamRow>(
        &mut self,
        page: &Page<'_>,
        plans: &[Plan<'_, R>],
        transaction: bool,
    ) -> Result<Option<Vec<Reply>>, RedisError> {
        self.out.clear();
        if transaction {
            bulk::encode(&mut self.out, &[b"MULTI"]);
        }
        let mut commands = 0;
        for p in plans {
            commands += match p.how {
                How::Plain(t) => xadds(&mut self.out, page, p, t),
                How::Script | How::Ask => {
                    script::encode_call(&mut self.out, page, p.conv, p.events);
                    1
                }
            };
        }
        if !transaction {
            self.conn.exchange(WRITE, &self.out, commands, &mut self.replies).await?;
            return Ok(Some(std::mem::take(&mut self.replies)));
        }
        bulk::encode(&mut self.out, &[b"EXEC"]);
        self.conn.exchange(WRITE, &self.out, commands + 2, &mut self.replies).await?;
        // MULTI's OK, a QUEUED for each command, then EXEC's answer: each command's, or nil.
        if let Some(bad) = self.replies[..=commands].iter().find(|r| **r != Reply::Status) {
            return Err(bulk::unexpected(WRITE, page.addr, bad));
        }
        match self.replies.pop() {
            Some(Reply::Array(results)) if results.len() == commands => Ok(Some(results)),
            Some(Reply::Nil) => Ok(None),
            other => Err(bulk::unexpected(WRITE, page.addr, &other.unwrap_or(Reply::Nil))),
        }
    }

    /// Sends the conversations the plain writes could not finish through the script, and counts
    /// what it did: an event written plainly is one the script finds there, and was written
    /// once, by us.
    async fn redo<R: StreamRow>(
        &mut self,
        page: &Page<'_>,
        plans: &[Plan<'_, R>],
        redo: &[Redo],
        total: &mut Written,
    ) -> Result<(), RedisError> {
        self.out.clear();
        for r in redo {
            let p = &plans[r.plan];
            script::encode_call(&mut self.out, page, p.conv, p.events);
            self.tails.remove(p.conv);
        }
        self.conn.exchange(SCRIPT, &self.out, redo.len(), &mut self.replies).await?;
        for (r, reply) in redo.iter().zip(&self.replies) {
            let (w, s, x) = script::counts(SCRIPT, page.addr, reply)?;
            let ours = r.accepted.min(s);
            total.written += w + ours;
            total.skipped += s - ours;
            total.expired += x;
        }
        Ok(())
    }
}

/// Encodes a plain conversation's writes: its `XADD`s with explicit ids from `t` on, the
/// stream's expiry 24 h after its newest event, its score in the active set. Returns how many
/// commands.
fn xadds<R: StreamRow>(out: &mut Vec<u8>, page: &Page<'_>, p: &Plan<'_, R>, t: Tail) -> usize {
    let mut newest = t.newest;
    for (n, e) in p.fresh.iter().enumerate() {
        let (id, name, data, client, ts) = e.entry();
        bulk::command(out, 13);
        bulk::arg(out, b"XADD");
        bulk::arg(out, p.key.as_bytes());
        stream_id(out, t.ms, t.seq + n as u64);
        for (field, value) in [(&b"id"[..], id.as_bytes()), (b"name", name.as_bytes()), (b"data", data.as_bytes())] {
            bulk::arg(out, field);
            bulk::arg(out, value);
        }
        bulk::arg(out, b"clientId");
        bulk::arg(out, client.as_bytes());
        bulk::arg(out, b"timestamp");
        bulk::int_arg(out, ts);
        newest = newest.max(ts);
    }
    bulk::command(out, 3);
    bulk::arg(out, b"PEXPIREAT");
    bulk::arg(out, p.key.as_bytes());
    bulk::int_arg(out, newest.saturating_add(page.ttl_ms));
    bulk::command(out, 5);
    bulk::arg(out, b"ZADD");
    bulk::arg(out, page.active.as_bytes());
    bulk::arg(out, b"GT");
    bulk::int_arg(out, newest);
    bulk::arg(out, p.conv.as_bytes());
    p.fresh.len() + 2
}

fn stream_id(out: &mut Vec<u8>, ms: i64, seq: u64) {
    let (mut a, mut b) = (itoa::Buffer::new(), itoa::Buffer::new());
    let (ms, seq) = (a.format(ms).as_bytes(), b.format(seq).as_bytes());
    let mut id = [0u8; 48];
    id[..ms.len()].copy_from_slice(ms);
    id[ms.len()] = b'-';
    id[ms.len() + 1..ms.len() + 1 + seq.len()].copy_from_slice(seq);
    bulk::arg(out, &id[..ms.len() + 1 + seq.len()]);
}

/// Whether an `XADD` error is Redis refusing an id at or below the stream's last one: someone
/// wrote the stream since this run did.
fn refused(reply: &Reply) -> bool {
    matches!(reply, Reply::Error(e) if e.details().is_some_and(|d| d.contains("equal or smaller than the target stream top item")))
}

type Tallied = (Vec<Redo>, HashMap<String, Tail>);

/// Reads the page's answers: counts what the plain writes and the script calls did, and returns
/// the conversations left for the script and the tails the next page may go on from.
fn tally<R: StreamRow>(
    page: &Page<'_>,
    plans: &[Plan<'_, R>],
    results: &[Reply],
    total: &mut Written,
) -> Result<Tallied, RedisError> {
    let (mut redo, mut tails) = (Vec::new(), HashMap::new());
    let mut at = results.iter();
    let mut next = || at.next().unwrap_or(&Reply::Nil);
    for (i, p) in plans.iter().enumerate() {
        let How::Plain(t) = p.how else {
            let (w, s, x) = script::counts(SCRIPT, page.addr, next())?;
            total.written += w;
            total.skipped += s;
            total.expired += x;
            continue;
        };
        let (mut accepted, mut stopped) = (0u64, false);
        for _ in &p.fresh {
            match next() {
                Reply::Bulk(_) => accepted += 1,
                r if refused(r) => stopped = true,
                other => return Err(bulk::unexpected(WRITE, page.addr, other)),
            }
        }
        for _ in 0..2 {
            if let r @ Reply::Error(_) = next() {
                return Err(bulk::unexpected("PEXPIREAT/ZADD backfill", page.addr, r));
            }
        }
        if stopped {
            redo.push(Redo { plan: i, accepted });
            continue;
        }
        total.written += accepted;
        total.expired += p.expired;
        let newest = p.fresh.iter().map(|e| e.timestamp_ms()).max().unwrap_or(t.newest).max(t.newest);
        tails.insert(p.conv.to_string(), Tail { ms: t.ms, seq: t.seq + accepted, newest });
    }
    Ok((redo, tails))
}
