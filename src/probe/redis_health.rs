//! The Redis that holds the mirror and the queue, as customers depend on it: the mirror's
//! stream keys expire (a route that forgets `EXPIRE` grows Redis until it is full), memory is
//! below its limit, and nothing is evicted while a BullMQ queue lives there (BullMQ's docs ask
//! for `maxmemory-policy noeviction`: under any other policy queue keys can vanish, and jobs
//! with them, without an error anywhere).

use std::collections::HashMap;

use super::{Check, Rules, Unit};
use crate::contracts::Contracts;
use crate::exit::ProbeState;
use crate::redis_handle::Redis;

/// Stream keys sampled from the active set, at most.
pub const SAMPLE: usize = 200;
/// TTLs asked in one round trip.
const BATCH: usize = 100;
/// Expiry past the contract's lifetime that is still taken as "refreshed a moment ago".
pub const GRACE_SECS: u64 = 3600;

/// The expiry of the active conversations' streams, then memory and eviction.
pub async fn checks(redis: &mut Redis, contracts: &Contracts, queue_here: bool, rules: &Rules) -> Vec<Check> {
    let mut out = expiry(redis, contracts, rules).await;
    out.extend(memory(redis, queue_here, rules).await);
    out
}

/// What a sample of TTLs found.
#[derive(Debug, Default, PartialEq)]
pub struct Expiries {
    pub sampled: usize,
    pub without: usize,
    pub too_long: usize,
    pub example_without: Option<String>,
    pub example_long: Option<(String, i64)>,
}

/// Sorts `(key, ttl)` pairs: `-1` no expiry, `-2` gone (not counted), past `max_secs` too long.
pub fn tally(ttls: impl IntoIterator<Item = (String, i64)>, max_secs: u64) -> Expiries {
    let mut e = Expiries::default();
    for (key, ttl) in ttls {
        match ttl {
            -2 => continue,
            -1 => {
                e.without += 1;
                e.example_without.get_or_insert(key);
            }
            t if t > max_secs as i64 => {
                e.too_long += 1;
                e.example_long.get_or_insert((key, t));
            }
            _ => {}
        }
        e.sampled += 1;
    }
    e
}

async fn expiry(redis: &mut Redis, contracts: &Contracts, rules: &Rules) -> Vec<Check> {
    let active = contracts.active_key();
    let (sample, total) = match sample(redis, &active).await {
        Ok(s) => s,
        Err(e) => {
            let f = e.fault();
            return vec![
                rules.failed("no_expiry", Unit::Count, f, e.to_string()),
                rules.failed("long_expiry", Unit::Count, f, e.to_string()),
            ];
        }
    };
    let keys: Vec<String> = sample.iter().map(|c| contracts.stream_key(c)).collect();
    let mut ttls = Vec::with_capacity(keys.len());
    for batch in keys.chunks(BATCH) {
        let mut pipe = redis::pipe();
        for k in batch {
            pipe.cmd("TTL").arg(k);
        }
        match pipe.query_async::<Vec<i64>>(&mut redis.conn).await {
            Ok(t) => ttls.extend(batch.iter().cloned().zip(t)),
            Err(e) => {
                let e = redis.err("TTL")(e);
                let why = format!("{e} (stream keys of {active})");
                return vec![
                    rules.failed("no_expiry", Unit::Count, e.fault(), why.clone()),
                    rules.failed("long_expiry", Unit::Count, e.fault(), why),
                ];
            }
        }
    }
    let max = contracts.stream_ttl_secs + GRACE_SECS;
    let e = tally(ttls, max);
    let of = if total > sample.len() {
        format!("a sample of {} of the {total} conversations in {active}", e.sampled)
    } else {
        format!("{} stream keys of {active}", e.sampled)
    };
    let without = match &e.example_without {
        Some(k) => format!("{} of {of} have no expiry, e.g. {k}: the route must EXPIRE every stream", e.without),
        None => format!("every one of {of} expires"),
    };
    let long = match &e.example_long {
        Some((k, t)) => format!(
            "{} of {of} expire later than {} + {}, e.g. {k} in {}",
            e.too_long,
            crate::duration::format_duration(std::time::Duration::from_secs(contracts.stream_ttl_secs)),
            crate::duration::format_duration(std::time::Duration::from_secs(GRACE_SECS)),
            crate::duration::format_duration(std::time::Duration::from_secs(*t as u64)),
        ),
        None => format!("none of {of} expires later than the contract's lifetime"),
    };
    vec![
        rules.check("no_expiry", e.without as f64, Unit::Count, without),
        rules.check("long_expiry", e.too_long as f64, Unit::Count, long),
    ]
}

/// The most recent conversations of the active set (bounded) and the set's size.
async fn sample(redis: &mut Redis, active: &str) -> Result<(Vec<String>, usize), crate::redis_handle::RedisError> {
    let (ids, total): (Vec<String>, usize) = redis::pipe()
        .cmd("ZREVRANGE")
        .arg(active)
        .arg(0)
        .arg(SAMPLE as isize - 1)
        .cmd("ZCARD")
        .arg(active)
        .query_async(&mut redis.conn)
        .await
        .map_err(redis.err("ZREVRANGE"))?;
    Ok((ids, total))
}

/// `INFO memory` as its fields.
pub fn info_fields(text: &str) -> HashMap<&str, &str> {
    text.lines().filter(|l| !l.starts_with('#')).filter_map(|l| l.trim().split_once(':')).collect()
}

async fn memory(redis: &mut Redis, queue_here: bool, rules: &Rules) -> Vec<Check> {
    let info: String = match redis::cmd("INFO").arg("memory").query_async(&mut redis.conn).await {
        Ok(i) => i,
        Err(e) => {
            // A managed Redis may refuse INFO: we could not look, which is not Redis failing.
            let why = format!("{} (a managed Redis may not allow INFO)", redis.err("INFO memory")(e));
            return vec![
                rules.unknown("memory_used", Unit::Ratio, why.clone()),
                rules.unknown("evicting", Unit::Count, why),
            ];
        }
    };
    let f = info_fields(&info);
    let used = f.get("used_memory").and_then(|v| v.parse::<u64>().ok());
    let max = f.get("maxmemory").and_then(|v| v.parse::<u64>().ok());
    let policy = f.get("maxmemory_policy").copied().unwrap_or("unknown");
    let memory = match (used, max) {
        (Some(u), Some(m)) if m > 0 => rules.check(
            "memory_used",
            u as f64 / m as f64,
            Unit::Ratio,
            format!("{} of maxmemory {}", bytes(u), bytes(m)),
        ),
        (Some(u), _) => Check {
            state: ProbeState::Ok,
            ..rules.unknown(
                "memory_used",
                Unit::Ratio,
                format!("{} used; no maxmemory is set: Redis grows until the machine runs out", bytes(u)),
            )
        },
        _ => rules.unknown("memory_used", Unit::Ratio, "INFO memory has no used_memory"),
    };
    vec![memory, eviction(policy, queue_here, rules)]
}

fn eviction(policy: &str, queue_here: bool, rules: &Rules) -> Check {
    let evicts = policy != "noeviction";
    let detail = match (evicts, queue_here) {
        (false, _) => "maxmemory-policy noeviction".to_string(),
        (true, true) => format!(
            "maxmemory-policy {policy} while a BullMQ queue lives in this Redis: under memory pressure its keys \
             are evicted and jobs vanish silently (BullMQ requires noeviction)"
        ),
        (true, false) => format!("maxmemory-policy {policy}: mirror streams may be evicted before their expiry"),
    };
    let check = rules.check("evicting", if evicts { 1.0 } else { 0.0 }, Unit::Count, detail);
    // Without a queue here an evicting policy only shortens the mirror: a warning, not a page.
    if evicts && !queue_here { Check { state: check.state.min(ProbeState::Warning), ..check } } else { check }
}

fn bytes(n: u64) -> String {
    const MIB: f64 = 1024.0 * 1024.0;
    if n as f64 >= 1024.0 * MIB {
        format!("{:.2} GiB", n as f64 / (1024.0 * MIB))
    } else {
        format!("{:.1} MiB", n as f64 / MIB)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_are_sorted_into_none_too_long_and_gone() {
        let e = tally(
            [("a".to_string(), -1), ("b".to_string(), 100), ("c".to_string(), -2), ("d".to_string(), 999_999)],
            90_000,
        );
        assert_eq!((e.sampled, e.without, e.too_long), (3, 1, 1));
        assert_eq!(e.example_without.as_deref(), Some("a"));
        assert_eq!(e.example_long, Some(("d".to_string(), 999_999)));
    }

    #[test]
    fn info_memory_is_read_by_field() {
        let f = info_fields("# Memory\r\nused_memory:1024\r\nmaxmemory:0\r\nmaxmemory_policy:allkeys-lru\r\n");
        assert_eq!((f["used_memory"], f["maxmemory"], f["maxmemory_policy"]), ("1024", "0", "allkeys-lru"));
    }
}
