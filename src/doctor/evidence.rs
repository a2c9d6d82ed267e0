//! `doctor`'s second half: each contract with its value, where it came from, and what was found
//! in the real stores. Every look is bounded (SCAN with a cap, never KEYS; small samples; the
//! time-out) and reads only. A contract that the stores contradict is a mismatch, named with
//! what was found instead and the setting to change.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;
use sqlx::PgPool;

use crate::ably::AblyClient;
use crate::contracts::{Contracts, EventKind, id_text};
use crate::redis_handle::Redis;
use crate::store::postgres::{Deadline, limit_of};

/// What the stores say about one contract.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "verdict", content = "detail")]
pub enum Evidence {
    /// Found as the contract says.
    Match(String),
    /// Found otherwise: the contract does not fit this deployment.
    Mismatch(String),
    /// Nothing to judge by (the store is not configured, or holds nothing yet).
    NoEvidence(String),
}

#[derive(Debug, Clone, Serialize)]
pub struct ContractRow {
    pub key: &'static str,
    pub value: String,
    pub source: String,
    pub evidence: Evidence,
}

/// Keys examined by one SCAN walk at most.
const SCAN_CAP: usize = 20_000;

/// Every contract with its evidence.
pub async fn contracts(
    c: &Contracts,
    bull_prefix: &str,
    redis: Option<&mut Redis>,
    pg: Option<&crate::store::postgres::Pg>,
    ably: Option<&AblyClient>,
) -> Vec<ContractRow> {
    let mut found: BTreeMap<&'static str, Evidence> = BTreeMap::new();
    if let Some(r) = redis {
        // BullMQ's own streams and sorted sets are not the mirror's: never suggested.
        let bull = format!("{bull_prefix}:");
        found.insert("redis_stream", stream_evidence(r, c, &bull).await);
        found.insert("redis_active", active_evidence(r, c, &bull).await);
    }
    let mut sample = Vec::new();
    if let Some(pg) = pg {
        let (ev, rows) = table_evidence(&pg.pool, &pg.addr, c).await;
        found.insert("table", ev);
        sample = rows;
    }
    if let Some(ably) = ably {
        let (ev, messages) = channel_evidence(ably, c).await;
        found.insert("channel", ev);
        if !messages.is_empty() {
            sample = messages;
        }
    }
    found.extend(event_evidence(c, &sample));
    c.values()
        .into_iter()
        .map(|(key, value)| ContractRow {
            key,
            value,
            source: c.source_of(key).to_string(),
            evidence: found.remove(key).unwrap_or_else(|| none_for(key)),
        })
        .collect()
}

fn none_for(key: &str) -> Evidence {
    let why = match key {
        k if k.starts_with("token_") => "checked by `token verify` on a real token",
        "redis_stream" | "redis_active" => "REDIS_URL is not set",
        "table" => "DATABASE_URL is not set",
        "channel" => "ABLY_API_KEY is not set",
        _ => "no recent messages to judge by",
    };
    Evidence::NoEvidence(why.into())
}

/// The shape of a key or channel name with its ids replaced by `{id}` (runs of digits, and
/// the hex or uuid-looking segments).
pub fn shape(name: &str) -> String {
    fn put(seg: &mut String, out: &mut String) {
        let id_like = !seg.is_empty()
            && (seg.chars().all(|c| c.is_ascii_digit())
                || (seg.len() >= 8 && seg.chars().all(|c| c.is_ascii_hexdigit())));
        out.push_str(if id_like { "{id}" } else { seg });
        seg.clear();
    }
    let (mut out, mut seg) = (String::new(), String::new());
    for ch in name.chars() {
        if matches!(ch, ':' | '.' | '-' | '_' | '/') {
            put(&mut seg, &mut out);
            out.push(ch);
        } else {
            seg.push(ch);
        }
    }
    put(&mut seg, &mut out);
    out
}

/// SCANs keys matching `pattern` (of `kind` when given), up to [`SCAN_CAP`] examined.
async fn scan(r: &mut Redis, pattern: &str, kind: Option<&str>) -> Result<(Vec<String>, bool), String> {
    let (mut cursor, mut keys, mut examined) = (0u64, Vec::new(), 0usize);
    loop {
        let mut cmd = redis::cmd("SCAN");
        cmd.arg(cursor).arg("MATCH").arg(pattern).arg("COUNT").arg(1000);
        if let Some(k) = kind {
            cmd.arg("TYPE").arg(k);
        }
        let (next, batch): (u64, Vec<String>) =
            cmd.query_async(&mut r.conn).await.map_err(|e| format!("Redis SCAN at {}: {e}", r.addr))?;
        examined += 1000;
        keys.extend(batch);
        cursor = next;
        if cursor == 0 {
            return Ok((keys, false));
        }
        if examined >= SCAN_CAP {
            return Ok((keys, true));
        }
    }
}

fn count(n: usize, capped: bool) -> String {
    if capped { format!("{n}+ (SCAN stopped at {SCAN_CAP} keys)") } else { n.to_string() }
}

/// The most common shapes among `names`, as "N keys match X" lines.
fn shapes(names: &[String], strip: &str, what: &str) -> Option<String> {
    let mut by: BTreeMap<String, usize> = BTreeMap::new();
    for n in names {
        *by.entry(shape(n.strip_prefix(strip).unwrap_or(n))).or_default() += 1;
    }
    let mut v: Vec<(String, usize)> = by.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let top: Vec<String> =
        v.iter().take(3).map(|(s, n)| format!("{n} {what} match {}", s.replace("{id}", "*"))).collect();
    (!top.is_empty()).then(|| top.join("; "))
}

async fn stream_evidence(r: &mut Redis, c: &Contracts, bull: &str) -> Evidence {
    let glob = c.stream_glob();
    let shown = c.redis_stream.to_string().replace("{id}", "*");
    let (keys, capped) = match scan(r, &glob, None).await {
        Ok(k) => k,
        Err(e) => return Evidence::NoEvidence(e),
    };
    if !keys.is_empty() {
        return Evidence::Match(format!("{} keys match {shown}", count(keys.len(), capped)));
    }
    let all = format!("{}*", c.redis_prefix.replace('*', "\\*"));
    match scan(r, &all, Some("stream")).await.map(|(k, capped)| (without(k, bull), capped)) {
        Ok((streams, _)) if streams.is_empty() => {
            Evidence::NoEvidence(format!("no key matches {shown}, and Redis holds no streams at all"))
        }
        Ok((streams, _)) => Evidence::Mismatch(format!(
            "no key matches {shown}; {}; set contracts.redis_stream",
            shapes(&streams, &c.redis_prefix, "keys").unwrap_or_default()
        )),
        Err(e) => Evidence::NoEvidence(e),
    }
}

fn without(keys: Vec<String>, bull: &str) -> Vec<String> {
    keys.into_iter().filter(|k| !k.starts_with(bull)).collect()
}

async fn active_evidence(r: &mut Redis, c: &Contracts, bull: &str) -> Evidence {
    let key = c.active_key();
    let n: Result<u64, _> = redis::cmd("ZCARD").arg(&key).query_async(&mut r.conn).await;
    match n {
        Ok(n) if n > 0 => Evidence::Match(format!("sorted set of {n} conversations")),
        Ok(_) => {
            let all = format!("{}*", c.redis_prefix.replace('*', "\\*"));
            match scan(r, &all, Some("zset")).await.map(|(k, capped)| (without(k, bull), capped)) {
                Ok((sets, _)) if !sets.is_empty() => {
                    let names: Vec<&str> =
                        sets.iter().take(3).map(|s| s.strip_prefix(&c.redis_prefix).unwrap_or(s)).collect();
                    Evidence::Mismatch(format!(
                        "{} is missing; sorted sets found: {}; set contracts.redis_active",
                        c.redis_active,
                        names.join(", ")
                    ))
                }
                Ok(_) => Evidence::NoEvidence(format!("{} is missing, and no sorted set exists", c.redis_active)),
                Err(e) => Evidence::NoEvidence(e),
            }
        }
        Err(e) => Evidence::NoEvidence(format!("Redis ZCARD {key} at {}: {e}", r.addr)),
    }
}

/// A recent message: its channel, name and data.
type Sampled = (Option<String>, String, Value);

async fn table_evidence(pool: &PgPool, addr: &str, c: &Contracts) -> (Evidence, Vec<Sampled>) {
    let t = &c.table;
    match crate::store::postgres::table_exists(pool, addr, t).await {
        Err(e) => return (Evidence::NoEvidence(e.to_string()), Vec::new()),
        Ok(false) => return (Evidence::Mismatch(missing_table(pool, c).await), Vec::new()),
        Ok(true) => {}
    }
    // A table of the wrong shape: the mirror's reads fail on it, so it is no match.
    match crate::store::postgres::shape_of(pool, addr, t, crate::contracts::MIRROR_SHAPE).await {
        Ok(Some(d)) if !d.is_empty() => return (Evidence::Mismatch(d.join("; ")), Vec::new()),
        Err(e) => return (Evidence::NoEvidence(e.to_string()), Vec::new()),
        _ => {}
    }
    let since = chrono::Utc::now() - chrono::Duration::hours(24);
    let rows: Result<i64, _> =
        crate::store::postgres::scalar(&t.recent_count_sql()).bind(since).fetch_one(pool).within(limit_of(pool)).await;
    let sample: Vec<(String, String, Option<Value>)> = crate::store::postgres::statement_as(&t.recent_sample_sql())
        .bind(since)
        .bind(200i64)
        .fetch_all(pool)
        .within(limit_of(pool))
        .await
        .unwrap_or_default();
    let sample = sample.into_iter().map(|(ch, n, d)| (Some(ch), n, d.unwrap_or(Value::Null))).collect();
    match rows {
        Ok(n) => (Evidence::Match(format!("{t} exists; {n} rows in the last 24 h")), sample),
        Err(e) => (Evidence::NoEvidence(format!("Postgres at {addr}: counting rows of {t}: {e}")), sample),
    }
}

/// The table is missing: name the tables that have the mirror's columns, if any.
async fn missing_table(pool: &PgPool, c: &Contracts) -> String {
    let candidates: Vec<String> = crate::store::postgres::scalar(
        "SELECT table_schema || '.' || table_name FROM information_schema.columns \
         WHERE column_name IN ('id', 'conversation_id', 'channel', 'name', 'data', 'occurred_at') \
         AND table_schema NOT IN ('pg_catalog', 'information_schema') \
         GROUP BY 1 HAVING count(*) = 6 ORDER BY 1 LIMIT 5",
    )
    .fetch_all(pool)
    .within(limit_of(pool))
    .await
    .unwrap_or_default();
    if candidates.is_empty() {
        format!("{} does not exist (create it with `broker-ops db migrate`)", c.table)
    } else {
        format!("{} does not exist; {} has the mirror's columns; set contracts.table", c.table, candidates.join(", "))
    }
}

/// Active channels: do conversation channels follow the pattern? Then a few channels' history.
async fn channel_evidence(ably: &AblyClient, c: &Contracts) -> (Evidence, Vec<Sampled>) {
    let url = ably.url("channels?limit=200&by=id");
    let names: Vec<String> = match ably.get_page::<Value>("GET /channels", url).await {
        Ok(p) => p.items.iter().filter_map(|v| v.as_str().map(str::to_string)).collect(),
        Err(e) => return (Evidence::NoEvidence(e.to_string()), Vec::new()),
    };
    let matching: Vec<&String> = names.iter().filter(|n| c.conversation_of(n).is_some()).collect();
    let shown = c.channel.to_string().replace("{id}", "*");
    let (evidence, sampled): (Evidence, Vec<&String>) = match (matching.is_empty(), names.is_empty()) {
        (_, true) => (Evidence::NoEvidence("no active channels in Ably right now".into()), Vec::new()),
        (false, _) => (
            Evidence::Match(format!("{} of {} active channels match {shown}", matching.len(), names.len())),
            matching.into_iter().take(3).collect(),
        ),
        (true, false) => (
            Evidence::Mismatch(format!(
                "no active channel matches {shown}; {}; set contracts.channel",
                shapes(&names, "", "channels").unwrap_or_default()
            )),
            names.iter().take(3).collect(),
        ),
    };
    let mut messages = Vec::new();
    for ch in sampled {
        let enc: String = url::form_urlencoded::byte_serialize(ch.as_bytes()).collect();
        let url = ably.url(&format!("channels/{enc}/messages?limit=100"));
        if let Ok(page) = ably.get_page::<crate::ably::Message>("GET history", url).await {
            messages.extend(page.items.into_iter().map(|m| {
                let data = m.decoded_data();
                (Some(ch.clone()), m.name.unwrap_or_default(), data)
            }));
        }
    }
    (evidence, messages)
}

/// Event names and the reply field, judged on recent messages.
fn event_evidence(c: &Contracts, sample: &[Sampled]) -> Vec<(&'static str, Evidence)> {
    if sample.is_empty() {
        return Vec::new();
    }
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for (_, name, _) in sample {
        *seen.entry(name.as_str()).or_default() += 1;
    }
    let listed: Vec<String> = seen.iter().take(8).map(|(n, k)| format!("{n} ({k})")).collect();
    let of = format!("{} recent messages", sample.len());
    // `when`: why an event may be absent (`None`: it must be there).
    let judge = |key: &'static str, name: &str, when: Option<&str>| -> (&'static str, Evidence) {
        let ev = match (seen.get(name), when) {
            (Some(k), _) => Evidence::Match(format!("{k} of {of}")),
            (None, None) => {
                Evidence::Mismatch(format!("not among {of}; seen: {}; set contracts.{key}", listed.join(", ")))
            }
            (None, Some(when)) => Evidence::NoEvidence(format!("not among {of} ({when})")),
        };
        (key, ev)
    };
    let (late, extras) =
        (Some("sent only when a reply is late"), Some("sent only by apps with typing and read receipts"));
    let mut out = vec![
        judge("event_user", &c.event_user, None),
        judge("event_ai", &c.event_ai, None),
        judge("event_sla_warning", &c.event_sla_warning, late),
        judge("event_sla_violation", &c.event_sla_violation, late),
        judge("event_typing_start", &c.event_typing_start, extras),
        judge("event_typing_stop", &c.event_typing_stop, extras),
        judge("event_read", &c.event_read, extras),
    ];
    out.push(("reply_field", reply_evidence(c, sample)));
    out
}

fn reply_evidence(c: &Contracts, sample: &[Sampled]) -> Evidence {
    let Some(field) = c.reply.field() else {
        return Evidence::NoEvidence("first-after: replies are paired by order, nothing to check".into());
    };
    let replies: Vec<&Value> =
        sample.iter().filter(|(_, n, _)| c.event_kind(n) == Some(EventKind::Ai)).map(|(_, _, d)| d).collect();
    if replies.is_empty() {
        return Evidence::NoEvidence(format!("no {} among the recent messages", c.event_ai));
    }
    let with = replies.iter().filter(|d| d.get(field).and_then(id_text).is_some()).count();
    if with > 0 {
        return Evidence::Match(format!("{with} of {} replies carry {field}", replies.len()));
    }
    let mut fields: Vec<&str> =
        replies.iter().filter_map(|d| d.as_object()).flat_map(|o| o.keys()).map(String::as_str).collect();
    fields.sort_unstable();
    fields.dedup();
    Evidence::Mismatch(format!(
        "no {} carries {field}; their data has: {}; set contracts.reply_field (a field, or first-after)",
        c.event_ai,
        fields.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_replace_ids() {
        assert_eq!(shape("conv:4711:events"), "conv:{id}:events");
        assert_eq!(shape("chat-12"), "chat-{id}");
        assert_eq!(shape("conv:log:9f86d081884c7d65"), "conv:log:{id}");
        assert_eq!(shape("bull:broker:wait"), "bull:broker:wait");
        let names = vec!["p:conv:1:events".to_string(), "p:conv:2:events".to_string(), "p:other".to_string()];
        assert_eq!(shapes(&names, "p:", "keys").unwrap(), "2 keys match conv:*:events; 1 keys match other");
    }

    #[test]
    fn events_are_judged_on_the_sample() {
        let c = Contracts::default();
        let sample: Vec<Sampled> = vec![
            (None, "user:msg".into(), serde_json::json!({"messageId": 1})),
            (None, "message:ai".into(), serde_json::json!({"inReplyTo": 1})),
        ];
        let ev: BTreeMap<_, _> = event_evidence(&c, &sample).into_iter().collect();
        assert!(matches!(&ev["event_user"], Evidence::Mismatch(m) if m.contains("seen: message:ai (1), user:msg (1)")));
        assert!(matches!(&ev["event_ai"], Evidence::Match(_)));
        assert!(matches!(&ev["event_sla_warning"], Evidence::NoEvidence(_)));
        assert!(matches!(&ev["reply_field"], Evidence::Mismatch(m) if m.contains("their data has: inReplyTo")));
    }
}
