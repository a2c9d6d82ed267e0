//! Revocation in Redis, at the key the app checks (`contracts.revocation_key`, e.g.
//! `resume:revoked:{jti}`): it holds the time it was revoked and expires with the token (`EXAT
//! exp`), so the set of live revocations never outgrows the live tokens.

use serde::Serialize;

use crate::contracts::RevocationKey;
use crate::redis_handle::{Redis, RedisError};

/// The outcome of `token revoke`.
#[derive(Debug, Clone, Serialize)]
pub struct Revocation {
    pub jti: String,
    pub revoked_at: String,
    pub until: i64,
    /// True when it had been revoked before (revoking twice is harmless).
    pub already: bool,
}

/// Revokes `jti` until `until` (seconds since the epoch), keeping the first revocation time.
pub async fn revoke(
    redis: &mut Redis,
    at_key: &RevocationKey,
    jti: &str,
    until: i64,
    now: i64,
) -> Result<Revocation, RedisError> {
    let k = at_key.key(&redis.prefix, jti);
    let at =
        chrono::DateTime::from_timestamp(now, 0).unwrap_or_default().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let set: Option<String> = redis::cmd("SET")
        .arg(&k)
        .arg(&at)
        .arg("NX")
        .arg("EXAT")
        .arg(until)
        .query_async(&mut redis.conn)
        .await
        .map_err(redis.err("SET NX EXAT"))?;
    if set.is_some() {
        return Ok(Revocation { jti: jti.to_string(), revoked_at: at, until, already: false });
    }
    let first: Option<String> =
        redis::cmd("GET").arg(&k).query_async(&mut redis.conn).await.map_err(redis.err("GET"))?;
    Ok(Revocation { jti: jti.to_string(), revoked_at: first.unwrap_or(at), until, already: true })
}

/// The revocation times of `jtis` (None where not revoked), in one round trip.
pub async fn check_many(
    redis: &mut Redis,
    at_key: &RevocationKey,
    jtis: &[&str],
) -> Result<Vec<Option<String>>, RedisError> {
    if jtis.is_empty() {
        return Ok(Vec::new());
    }
    let keys: Vec<String> = jtis.iter().map(|j| at_key.key(&redis.prefix, j)).collect();
    redis::cmd("MGET").arg(&keys).query_async(&mut redis.conn).await.map_err(redis.err("MGET"))
}

#[derive(Debug, Clone, Serialize)]
pub struct LiveRevocation {
    pub jti: String,
    pub revoked_at: String,
    /// Seconds until the revocation (and the token) expires.
    pub ttl_secs: i64,
}

/// Every live revocation.
pub async fn list(redis: &mut Redis, at_key: &RevocationKey) -> Result<Vec<LiveRevocation>, RedisError> {
    let pattern = at_key.glob(&redis.prefix);
    let mut cursor: u64 = 0;
    let mut keys: Vec<String> = Vec::new();
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut redis.conn)
            .await
            .map_err(redis.err("SCAN"))?;
        keys.extend(batch);
        cursor = next;
        if cursor == 0 {
            break;
        }
    }
    keys.sort();
    keys.dedup();
    let mut out = Vec::with_capacity(keys.len());
    for chunk in keys.chunks(500) {
        let mut pipe = redis::pipe();
        for k in chunk {
            pipe.get(k).ttl(k);
        }
        let vals: Vec<(Option<String>, i64)> = pipe.query_async(&mut redis.conn).await.map_err(redis.err("GET/TTL"))?;
        for (k, (at, ttl)) in chunk.iter().zip(vals) {
            if let Some(at) = at {
                let jti = at_key.jti_of(&redis.prefix, k).to_string();
                out.push(LiveRevocation { jti, revoked_at: at, ttl_secs: ttl });
            }
        }
    }
    Ok(out)
}
