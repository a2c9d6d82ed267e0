//! The report from the Redis mirror (the last 24 h): each conversation's stream read in pages,
//! its events grouped exactly as the SQL groups them ([`Group`]), and added to the tally one
//! conversation at a time, so memory holds one conversation, never the window.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde_json::Value;

use super::tally::{Group, Tally, Worst};
use super::{ReportError, ReportRequest};
use crate::contracts::{Contracts, EventKind, Extra, id_text};
use crate::redis_handle::Redis;

/// Entries per XRANGE.
const PAGE: usize = 1000;

/// One entry of a stream, as far as the report needs it.
#[derive(Debug, Clone)]
pub struct Entry {
    pub id: String,
    pub kind: EventKind,
    pub data: Value,
    pub at_us: i64,
}

/// The tally of the window, and the conversations found to be test traffic (for
/// [`active_now`], which the active set alone cannot tell).
pub async fn tally(
    redis: &mut Redis,
    c: &Contracts,
    req: &ReportRequest,
) -> Result<(Tally, HashSet<String>), ReportError> {
    let w = &req.window;
    let mut convs = req.conversations.clone();
    if convs.is_empty() {
        let key = c.active_key();
        convs = redis::cmd("ZRANGEBYSCORE")
            .arg(&key)
            .arg(w.since.timestamp_millis())
            .arg("+inf")
            .query_async(&mut redis.conn)
            .await
            .map_err(redis.err(&format!("ZRANGEBYSCORE {key}")))?;
    }
    convs.sort();
    convs.dedup();
    let mut t = Tally::new(w.buckets(), req.top);
    let mut test = HashSet::new();
    for conv in &convs {
        let (entries, extras) = read(redis, c, conv, req, &mut t).await?;
        let is_test = add_conversation(&mut t, c, req, conv, entries);
        for (e, n) in Extra::ALL.into_iter().zip(extras) {
            t.extra(e, is_test || self::is_test(req.test_prefix(c), conv), n);
        }
        if is_test {
            test.insert(conv.clone());
        }
    }
    Ok((t.finish(), test))
}

/// The conversation's entries in the window (contract events only) and its typing and read
/// events counted (in `Extra::ALL` order); unreadable ones counted.
async fn read(
    redis: &mut Redis,
    c: &Contracts,
    conv: &str,
    req: &ReportRequest,
    t: &mut Tally,
) -> Result<(Vec<Entry>, [u64; 3]), ReportError> {
    let mut extras = [0u64; 3];
    let key = c.stream_key(conv);
    let (since, until) = (req.window.since.timestamp_micros(), req.window.until.timestamp_micros());
    let mut out = Vec::new();
    let mut start = "-".to_string();
    loop {
        let page: Vec<(String, HashMap<String, String>)> = redis::cmd("XRANGE")
            .arg(&key)
            .arg(&start)
            .arg("+")
            .arg("COUNT")
            .arg(PAGE)
            .query_async(&mut redis.conn)
            .await
            .map_err(redis.err(&format!("XRANGE {key}")))?;
        let full = page.len() == PAGE;
        for (sid, fields) in &page {
            let name = fields.get("name").map(String::as_str).unwrap_or_default();
            let (kind, extra) = (c.event_kind(name), c.extra_kind(name));
            if kind.is_none() && extra.is_none() {
                continue;
            }
            let Some(at_ms) = fields.get("timestamp").and_then(|s| s.parse::<i64>().ok()) else {
                t.unreadable += 1;
                continue;
            };
            let at_us = at_ms.saturating_mul(1000);
            if at_us < since || at_us >= until {
                continue;
            }
            let Some(kind) = kind else {
                let is_copy = fields.get("id").is_some_and(|id| crate::contracts::is_replay_copy(id));
                if let (Some(e), false) = (extra, is_copy) {
                    extras[e as usize] += 1;
                }
                continue;
            };
            let data = fields.get("data").and_then(|d| serde_json::from_str(d).ok()).unwrap_or(Value::Null);
            let id = fields.get("id").cloned().unwrap_or_else(|| sid.clone());
            if crate::contracts::is_replay_copy(&id) {
                // A re-sent copy: its time is the replay's, and its message already counts once.
                t.copies += 1;
                continue;
            }
            out.push(Entry { id, kind, data, at_us });
        }
        match page.last() {
            Some((last, _)) if full => start = format!("({last}"),
            _ => break,
        }
    }
    Ok((out, extras))
}

/// Groups one conversation's entries and adds them, its conversation counts and its worst;
/// returns whether it holds test traffic.
fn add_conversation(t: &mut Tally, c: &Contracts, req: &ReportRequest, conv: &str, mut entries: Vec<Entry>) -> bool {
    // Time order; at the same time a customer message before a reply (so first-after pairs them).
    entries
        .sort_by(|a, b| (a.at_us, a.kind != EventKind::User, &a.id).cmp(&(b.at_us, b.kind != EventKind::User, &b.id)));
    let groups = match c.reply.field() {
        Some(field) => by_field(req.test_prefix(c), conv, field, &entries),
        None => first_after(req.test_prefix(c), conv, &entries),
    };
    let (timeout, slo) = (req.reply_timeout.as_micros() as i64, req.slo.as_micros() as u64);
    let mut worst = Worst { conversation: conv.to_string(), slowest_us: None, unanswered: 0, over_slo: 0, messages: 0 };
    let (mut customer, mut test) = (false, false);
    for g in &groups {
        let fate = g.add_to(t, &req.window, timeout, slo);
        if g.synthetic {
            test = true;
            continue;
        }
        customer = true;
        if !g.keyless {
            worst.messages += g.msgs.min(1);
        }
        match fate {
            super::tally::Fate::Answered { us } => {
                worst.slowest_us = worst.slowest_us.max(Some(us));
                worst.over_slo += u64::from(us > slo);
            }
            super::tally::Fate::Unanswered => worst.unanswered += 1,
            _ => {}
        }
    }
    t.conversations += u64::from(customer);
    t.excluded_conversations += u64::from(test);
    t.offer(worst);
    test
}

/// Whether `id` (a conversation id or an `echoId`) starts with the test-traffic prefix.
fn is_test(prefix: Option<&str>, id: &str) -> bool {
    prefix.is_some_and(|p| id.starts_with(p))
}

/// A customer message whose `echoId` marks it as test traffic.
fn marked(prefix: Option<&str>, e: &Entry) -> bool {
    e.kind == EventKind::User && e.data.get("echoId").and_then(Value::as_str).is_some_and(|s| is_test(prefix, s))
}

fn count(g: &mut Group, kind: EventKind, at: i64) {
    match kind {
        EventKind::User => {
            g.msgs += 1;
            g.msg_at = Some(g.msg_at.map_or(at, |m| m.min(at)));
        }
        EventKind::Ai => {
            g.replies += 1;
            g.reply_at = Some(g.reply_at.map_or(at, |r| r.min(at)));
        }
        EventKind::SlaWarning => g.warnings += 1,
        EventKind::SlaViolation => g.violations += 1,
    }
}

/// Field pairing: one group per key (a message's `messageId`, a reply's reply field, an SLA
/// event's `messageId`); a row without its key is a group of its own.
fn by_field(test: Option<&str>, conv: &str, field: &str, entries: &[Entry]) -> Vec<Group> {
    let conv_marked = is_test(test, conv);
    let mut groups: BTreeMap<(bool, String), Group> = BTreeMap::new();
    for e in entries {
        let key = match e.kind {
            EventKind::Ai => e.data.get(field).and_then(id_text),
            _ => e.data.get("messageId").and_then(id_text),
        };
        let (keyless, k) = match key {
            Some(k) => (false, k),
            None => (true, e.id.clone()),
        };
        let g = groups.entry((keyless, k)).or_insert_with(|| Group { first_at: e.at_us, ..Group::default() });
        g.first_at = g.first_at.min(e.at_us);
        g.keyless |= keyless;
        g.synthetic |= conv_marked || marked(test, e);
        count(g, e.kind, e.at_us);
    }
    groups
        .into_values()
        .map(|mut g| {
            if g.msgs == 0 && !g.keyless {
                g.unpaired = g.replies;
            }
            g
        })
        .collect()
}

/// First-after pairing: every event its own group; a customer message gets the first reply at
/// or after it. The whole conversation is test traffic when one of its messages is marked.
fn first_after(test: Option<&str>, conv: &str, entries: &[Entry]) -> Vec<Group> {
    let synthetic = is_test(test, conv) || entries.iter().any(|e| marked(test, e));
    let mut next_reply: Option<i64> = None;
    let mut out: Vec<Group> = Vec::with_capacity(entries.len());
    // Backwards, so each message knows the first reply at or after it (a reply at the same
    // time as a message counts, as in the SQL's ordering).
    for e in entries.iter().rev() {
        let mut g = Group { first_at: e.at_us, synthetic, ..Group::default() };
        count(&mut g, e.kind, e.at_us);
        if e.kind == EventKind::Ai {
            next_reply = Some(e.at_us);
        }
        if e.kind == EventKind::User {
            g.reply_at = next_reply;
        }
        out.push(g);
    }
    out
}

/// Conversations of the active set with activity in the last `--active-window`: (customers,
/// test traffic: an id with the prefix, or a conversation the report found marked).
pub async fn active_now(
    redis: &mut Redis,
    c: &Contracts,
    req: &ReportRequest,
    found_test: &HashSet<String>,
) -> Result<(u64, u64), ReportError> {
    let key = c.active_key();
    let since = chrono::Utc::now() - chrono::Duration::from_std(req.active_window).unwrap_or(chrono::Duration::MAX);
    let ids: Vec<String> = redis::cmd("ZRANGEBYSCORE")
        .arg(&key)
        .arg(since.timestamp_millis())
        .arg("+inf")
        .query_async(&mut redis.conn)
        .await
        .map_err(redis.err(&format!("ZRANGEBYSCORE {key}")))?;
    let test = ids.iter().filter(|id| is_test(req.test_prefix(c), id) || found_test.contains(*id)).count() as u64;
    Ok((ids.len() as u64 - test, test))
}
