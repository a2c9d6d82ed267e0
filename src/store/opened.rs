//! The mirror's two stores opened once: Redis and Postgres side by side, each `None` when not
//! configured, or the reason it could not be opened. The probes of one `monitor` sweep share
//! them, so a production database sees one pool per run rather than one per probe (every new
//! Postgres connection is a forked backend, and Supabase counts them).

use crate::config::Config;
use crate::redis_handle::Redis;

#[derive(Clone, Default)]
pub struct Connections {
    pub redis: Option<Result<Redis, Unavailable>>,
    pub postgres: Option<Result<super::postgres::Pg, Unavailable>>,
}

/// A store that could not be opened: why, and whose failure it was (a probe reports the
/// service's as CRITICAL, ours as UNKNOWN).
#[derive(Debug, Clone)]
pub struct Unavailable {
    pub fault: crate::exit::Fault,
    pub reason: String,
}

impl std::fmt::Display for Unavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.reason)
    }
}

impl From<super::MirrorError> for Unavailable {
    fn from(e: super::MirrorError) -> Self {
        Unavailable { fault: e.fault(), reason: e.to_string() }
    }
}

impl From<crate::redis_handle::RedisError> for Unavailable {
    fn from(e: crate::redis_handle::RedisError) -> Self {
        Unavailable { fault: e.fault(), reason: e.to_string() }
    }
}

impl Connections {
    /// The Redis side with the error as text (for callers that only report it).
    pub fn redis_or_reason(&self) -> Option<Result<Redis, String>> {
        self.redis.clone().map(|r| r.map_err(|u| u.reason))
    }
}

impl Connections {
    /// Both configured stores, opened at the same time.
    pub async fn open(config: &Config) -> Connections {
        Self::open_only(config, true, true).await
    }

    /// Only the stores asked for (and configured).
    pub async fn open_only(config: &Config, redis: bool, postgres: bool) -> Connections {
        let r = async { if redis { Redis::from_config(config).await } else { Ok(None) } };
        let p = async { if postgres { super::postgres::Pg::from_config(config).await } else { Ok(None) } };
        let (r, p) = tokio::join!(r, p);
        Connections {
            redis: r.map_err(Unavailable::from).transpose(),
            postgres: p.map_err(Unavailable::from).transpose(),
        }
    }
}
