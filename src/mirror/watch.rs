//! Watching the mirror for one message: is Ably message `id` in the canary conversation's
//! Redis stream, in the Postgres table? Used by `mirror canary` (how long until it is) and
//! `mirror webhook-test` (whether a request's item was written). It reads only, except
//! [`Watch::trim`], which removes the canary conversation's own entries older than a day.

use std::time::Duration;

use tokio::time::Instant;

use crate::contracts::Contracts;
use crate::redis_handle::Redis;
use crate::store::postgres::{Deadline, limit_of};

/// How long a canary entry is kept in either store.
pub const KEEP: Duration = Duration::from_secs(24 * 3600);
/// Newest entries of the canary stream looked through: canaries and webhook tests only.
const SCAN: usize = 200;

/// The stores to watch; `None` where not configured or not usable.
pub struct Watch {
    pub redis: Option<Redis>,
    pub postgres: Option<crate::store::postgres::Pg>,
    pub contracts: Contracts,
}

/// The poll interval `elapsed` into a wait: fine at first, when the answer usually comes, so
/// that a latency is measured to a few milliseconds; coarser later, to spare the stores.
pub fn poll_interval(elapsed: Duration) -> Duration {
    match elapsed.as_millis() {
        0..1_000 => Duration::from_millis(2),
        1_000..5_000 => Duration::from_millis(10),
        _ => Duration::from_millis(50),
    }
}

/// A store that could not be watched, and why.
#[derive(Debug, Clone)]
pub struct Unusable {
    pub store: Store,
    pub reason: String,
    pub fault: crate::exit::Fault,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Store {
    Redis,
    Postgres,
}

impl Store {
    pub fn name(self) -> &'static str {
        match self {
            Store::Redis => "redis",
            Store::Postgres => "postgres",
        }
    }
}

impl Watch {
    /// The configured stores. One that is unset is left out; one that cannot be reached, or a
    /// table that does not exist, is left out with the reason.
    pub async fn open(config: &crate::config::Config) -> (Watch, Vec<Unusable>) {
        Self::of(config, &crate::store::opened::Connections::open(config).await).await
    }

    /// A watch on stores already opened (shared with other probes).
    pub async fn of(
        config: &crate::config::Config,
        opened: &crate::store::opened::Connections,
    ) -> (Watch, Vec<Unusable>) {
        let mut unusable = Vec::new();
        let redis = opened.redis.clone().transpose().unwrap_or_else(|u| {
            unusable.push(Unusable { store: Store::Redis, reason: u.reason, fault: u.fault });
            None
        });
        let postgres = match opened.postgres.clone().transpose() {
            Ok(Some(pg)) => {
                match crate::store::postgres::require_table(&pg.pool, &pg.addr, &config.contracts.table).await {
                    Ok(()) => Some(pg),
                    Err(e) => {
                        unusable.push(Unusable { store: Store::Postgres, reason: e.to_string(), fault: e.fault() });
                        None
                    }
                }
            }
            Ok(None) => None,
            Err(u) => {
                unusable.push(Unusable { store: Store::Postgres, reason: u.reason, fault: u.fault });
                None
            }
        };
        (Watch { redis, postgres, contracts: config.contracts.clone() }, unusable)
    }

    /// Whether `store` is being watched.
    pub fn watches(&self, store: Store) -> bool {
        match store {
            Store::Redis => self.redis.is_some(),
            Store::Postgres => self.postgres.is_some(),
        }
    }

    /// Whether `store` holds message `id`.
    pub async fn holds(&self, store: Store, id: &str) -> Result<bool, String> {
        match store {
            Store::Redis => self.in_redis(id).await,
            Store::Postgres => self.in_postgres(id).await,
        }
    }

    fn stream(&self) -> String {
        self.contracts.stream_key(&self.contracts.canary_conversation())
    }

    /// Whether the canary stream holds message `id`.
    pub async fn in_redis(&self, id: &str) -> Result<bool, String> {
        let Some(redis) = &self.redis else { return Ok(false) };
        let key = self.stream();
        let entries: Vec<(String, Vec<(String, String)>)> = redis::cmd("XREVRANGE")
            .arg(&key)
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(SCAN)
            .query_async(&mut redis.conn.clone())
            .await
            .map_err(|e| format!("Redis XREVRANGE {key} at {}: {e}", redis.addr))?;
        Ok(entries.iter().any(|(_, fields)| fields.iter().any(|(k, v)| k == "id" && v == id)))
    }

    /// Whether the table holds message `id`.
    pub async fn in_postgres(&self, id: &str) -> Result<bool, String> {
        let Some(crate::store::postgres::Pg { pool, addr }) = &self.postgres else { return Ok(false) };
        let table = &self.contracts.table;
        crate::store::postgres::scalar(&table.has_id_sql())
            .bind(id)
            .fetch_one(pool)
            .within(limit_of(pool))
            .await
            .map_err(|e| format!("Postgres SELECT FROM {table} at {addr}: {e}"))
    }

    /// Polls `found` until it says yes (the instant it did), the deadline passes (`None`), or a
    /// read fails (the error).
    pub async fn until<F, Fut>(deadline: Instant, mut found: F) -> Result<Option<Instant>, String>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<bool, String>>,
    {
        let start = Instant::now();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            // A read that hangs past the deadline is a "not seen", not a hung command.
            match tokio::time::timeout(left, found()).await {
                Ok(Ok(true)) => return Ok(Some(Instant::now())),
                Ok(Ok(false)) => {}
                Ok(Err(e)) => return Err(e),
                Err(_) => return Ok(None),
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            tokio::time::sleep(poll_interval(start.elapsed()).min(left)).await;
        }
    }

    /// Removes canary entries older than [`KEEP`] from both stores (the canary conversation's
    /// stream and its rows of the canary event, nothing else), within `limit`. Failures are
    /// reported, not fatal.
    pub async fn trim(&self, limit: std::time::Duration) -> Vec<String> {
        match tokio::time::timeout(limit, self.trim_now()).await {
            Ok(problems) => problems,
            Err(_) => vec![format!(
                "trimming old canaries took over {}: left for the next run",
                crate::duration::format_duration(limit)
            )],
        }
    }

    async fn trim_now(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let cutoff = chrono::Utc::now() - chrono::Duration::from_std(KEEP).unwrap_or_default();
        if let Some(redis) = &self.redis {
            let key = self.stream();
            // Stream ids start with their write time in ms: MINID drops what was written earlier.
            let r: Result<i64, _> = redis::cmd("XTRIM")
                .arg(&key)
                .arg("MINID")
                .arg(cutoff.timestamp_millis())
                .query_async(&mut redis.conn.clone())
                .await;
            if let Err(e) = r {
                problems.push(format!("Redis XTRIM {key} at {}: {e}", redis.addr));
            }
        }
        if let Some(crate::store::postgres::Pg { pool, addr }) = &self.postgres {
            let c = &self.contracts;
            let r = crate::store::postgres::statement(&c.table.trim_canary_sql())
                .bind(c.canary_conversation())
                .bind(&c.canary_event)
                .bind(cutoff)
                .execute(pool)
                .within(limit_of(pool))
                .await;
            if let Err(e) = r {
                problems.push(format!("Postgres DELETE old canaries FROM {} at {addr}: {e}", c.table));
            }
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polling_is_fine_first_and_coarser_later() {
        assert_eq!(poll_interval(Duration::ZERO), Duration::from_millis(2));
        assert_eq!(poll_interval(Duration::from_millis(999)), Duration::from_millis(2));
        assert_eq!(poll_interval(Duration::from_secs(2)), Duration::from_millis(10));
        assert_eq!(poll_interval(Duration::from_secs(30)), Duration::from_millis(50));
    }
}
